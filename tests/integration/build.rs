//! The main job against the simulator over loopback: full builds, no-op
//! rebuilds, the concurrency cap, outputs.

use crate::harness::{error_kinds, fast_sim, props, Sim, Test};
use nbbuild_sim::media::{is_mp4, is_png};
use serde_json::Value;

fn urls(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect()
}

fn file_of(url: &str) -> std::path::PathBuf {
    url.strip_prefix("file://").expect("a file:// URL").into()
}

#[test]
fn two_tab_flow_builds_completely_then_rebuilds_nothing() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let run = t.build(&sim, &["--candidates", "2"]);
    run.assert_code(0);
    let s = run.json();
    assert_eq!(s["tasks"]["total"], 7);
    assert_eq!(s["tasks"]["built"], 7, "{}", run.stderr);
    assert_eq!(s["calls"]["image"], 10);
    assert_eq!(s["calls"]["video"], 4);
    assert!(s["errors"].is_null());
    let stats = sim.stats();
    assert_eq!((stats.image_submits, stats.video_submits), (10, 4));

    // Every generation node holds --candidates URLs per row, each a valid file.
    let g = t.generated();
    for (tab, id, n, video) in [
        (0, 3, 2, false),
        (0, 6, 2, false),
        (0, 9, 2, true),
        (1, 4, 6, false),
        (1, 10, 2, true),
    ] {
        let p = props(&g, tab, id);
        let list = urls(if video {
            &p["_savedVideos"]
        } else {
            &p["_savedImages"]
        });
        assert_eq!(list.len(), n, "tab {tab} node {id}");
        for u in &list {
            let bytes = std::fs::read(file_of(u)).unwrap();
            assert!(
                if video {
                    is_mp4(&bytes)
                } else {
                    is_png(&bytes)
                },
                "{u}"
            );
        }
        if video {
            assert_eq!(p["_savedVideoUrl"].as_str(), Some(list[0].as_str()));
        }
    }
    // Gates show their upstream's candidates; the user's pick is kept.
    let gate = props(&g, 0, 4);
    assert_eq!(
        urls(&gate["_savedApprovalImages"]),
        urls(&props(&g, 0, 3)["_savedImages"])
    );
    assert!(gate["_lastApprovedData"].is_null());
    assert_eq!(
        props(&g, 1, 8)["_lastApprovedData"],
        "refs/scene09-take2.png"
    );
    // Disabled and muted nodes are left as they were.
    let input: Value = serde_json::from_str(&t.read("ad.nbflow")).unwrap();
    assert_eq!(props(&g, 1, 6), props(&input, 1, 6));
    assert_eq!(props(&g, 1, 12), props(&input, 1, 12));
    // The input flow is untouched.
    assert_eq!(
        t.read("ad.nbflow"),
        std::fs::read_to_string(crate::harness::fixtures().join("demo-offline.nbflow")).unwrap()
    );

    // Second run: zero submissions, by our count and by the server's.
    let again = t.build(&sim, &["--candidates", "2"]);
    again.assert_code(0);
    let s2 = again.json();
    assert_eq!(s2["tasks"]["fresh"], 7);
    assert_eq!(s2["calls"]["image"], 0);
    assert_eq!(s2["calls"]["video"], 0);
    assert_eq!(sim.stats().image_submits, 10);
    assert_eq!(sim.stats().video_submits, 4);
    // Nothing changed: the run points at the same generated flow rather than
    // adding an identical copy.
    assert_eq!(s2["output"], s["output"]);
    assert_eq!(
        std::fs::read_dir(t.path().join("Generations"))
            .unwrap()
            .count(),
        1
    );
    // A change gives a new file, never overwriting the first.
    t.edit_json("ad.nbflow", |v| {
        crate::harness::node_mut(v, 0, 3)["properties"]["aspectRatio"] = serde_json::json!("1:1")
    });
    let third = t.build(&sim, &["--candidates", "2"]);
    third.assert_code(0);
    assert_ne!(third.json()["output"], s["output"]);
    assert_eq!(
        std::fs::read_dir(t.path().join("Generations"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn stills_differ_by_prompt_and_candidate() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--candidates", "2", "--mode", "images"])
        .assert_code(0);
    let g = t.generated();
    let mut all = Vec::new();
    for (tab, id) in [(0, 3), (0, 6), (1, 4)] {
        for u in urls(&props(&g, tab, id)["_savedImages"]) {
            all.push(std::fs::read(file_of(&u)).unwrap());
        }
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "every still is different");
}

#[test]
fn concurrency_cap_is_never_exceeded() {
    for cap in [1usize, 3] {
        let sim = Sim::start(nbbuild_sim::SimConfig {
            slots: 50,
            ..fast_sim()
        });
        let flow = nbbuild::synth::flow(6, "refs/avatar.png");
        let t = Test::new()
            .fixture("demo.nbflow", "unused.txt")
            .write("bench.nbflow", flow.to_string());
        let run = t.build(
            &sim,
            &[
                "bench.nbflow",
                "--candidates",
                "3",
                "--concurrency",
                &cap.to_string(),
                "--mode",
                "images",
            ],
        );
        run.assert_code(0);
        let stats = sim.stats();
        assert_eq!(stats.image_submits, 18);
        assert!(
            stats.peak_in_flight <= cap as u64,
            "cap {cap}: peak {}",
            stats.peak_in_flight
        );
        assert_eq!(
            stats.peak_in_flight, cap as u64,
            "the cap is used, not just respected"
        );
    }
}

#[test]
fn concurrency_above_five_is_a_usage_error() {
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let run = t.run(&["build", "--concurrency", "6", "--sim"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("--concurrency 6 is out of range"),
        "{}",
        run.stderr
    );
}

#[test]
fn mode_images_then_full_run_builds_only_the_videos() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let first = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    first.assert_code(0);
    assert_eq!(first.json()["calls"]["video"], 0);
    assert_eq!(sim.stats().image_submits, 10);
    let second = t.build(&sim, &["--candidates", "2"]);
    second.assert_code(0);
    let s = second.json();
    assert_eq!(s["calls"]["image"], 0);
    assert_eq!(s["calls"]["video"], 4);
    assert_eq!(s["tasks"]["built"], 2);
    // Counted by the simulator too: no still was asked for again.
    let st = sim.stats();
    assert_eq!((st.image_submits, st.video_submits), (10, 4));
}

#[test]
fn no_server_configured_is_a_clear_error_before_any_call() {
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let run = t.run(&["build"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("no G-Labs server is configured"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: pass --server URL"));
    assert!(!t.path().join("Generations").exists());
}

#[test]
fn dead_tunnel_is_one_clear_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let run = t.run(&["build", "--server", &format!("http://127.0.0.1:{port}")]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("G-Labs is not reachable"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint:") && run.stderr.contains("tunnel"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("error:").count(),
        1,
        "one error, not one per task:\n{}",
        run.stderr
    );
}

#[test]
fn wrong_api_key_is_refused_before_spending() {
    let sim = Sim::start(nbbuild_sim::SimConfig {
        api_key: Some("right-key-123".into()),
        ..fast_sim()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let run = t.build(&sim, &["--api-key", "wrong-key-456"]);
    run.assert_code(2);
    assert!(run.stderr.contains("refused the API key"), "{}", run.stderr);
    assert!(!run.stderr.contains("wrong-key-456") && !run.stdout.contains("wrong-key-456"));
    assert_eq!(sim.submits(), 0);
    // The right key works, and is not stored anywhere.
    let ok = t.build(
        &sim,
        &[
            "--api-key",
            "right-key-123",
            "--candidates",
            "1",
            "--mode",
            "images",
        ],
    );
    ok.assert_code(0);
    assert!(!ok.stderr.contains("right-key-123"));
    for entry in walk(t.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(13).any(|w| w == b"right-key-123"),
            "key found in {}",
            entry.display()
        );
    }
    let _ = error_kinds;
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn outputs_are_ordinary_readable_files() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    r.assert_code(0);
    let flow = r.json()["output"].as_str().unwrap().to_string();
    let asset = t
        .path()
        .join("Assets/XYZG1/generated-images/v0-3/scene01-c1.png");
    for p in [std::path::PathBuf::from(flow), asset] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", p.display());
    }
}

/// Run `nbbuild` with `args` to the end, sampling its peak resident memory
/// (VmHWM, a high-water mark, so a late sample still sees an early peak).
/// Returns the run and the peak in bytes.
fn run_measuring_memory(t: &Test, args: &[&str]) -> (crate::harness::Run, u64) {
    let mut child = t
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb * 1024);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    let run = crate::harness::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(peak > 0, "no memory sample of the build");
    (run, peak)
}

/// The bytes the simulator serves for the candidate of `name` in `slot`.
fn served_bytes(t: &Test, sim: &Sim, name: &str, slot: u32) -> Vec<u8> {
    let store = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
    let (_, rec) = store
        .find_by_name(name)
        .unwrap()
        .into_iter()
        .find(|(_, r)| r.candidates.iter().any(|c| c.mime == "video/mp4"))
        .expect("the clip task");
    let id = rec
        .candidates
        .iter()
        .find(|c| c.slot == slot)
        .and_then(|c| c.remote_task.clone())
        .expect("the candidate's G-Labs task");
    drop(store);
    sim.rt.block_on(async {
        let status: Value = reqwest::get(format!("{}/api/status/{id}", sim.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = status["results"][0].as_str().unwrap().to_string();
        reqwest::get(url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    })
}

#[test]
fn large_clips_stream_through_to_disk() {
    const CLIP: u64 = 24_000_000;
    let bucket = tempfile::tempdir().unwrap();
    let s3 = crate::s3::start_s3(bucket.path());
    // Published to an R2 mirror too, so the uploads (in parts) are measured.
    let build_args = |sim: &Sim| {
        vec![
            "build".to_string(),
            "--server".into(),
            sim.url.clone(),
            "--candidates".into(),
            "2".into(),
            "--mirror".into(),
            "r2".into(),
            "--json".into(),
            "--no-progress".into(),
        ]
    };
    let project = || {
        Test::new()
            .fixture("demo-offline.nbflow", "ad.nbflow")
            .env("R2_ENDPOINT", &s3.endpoint)
            .env("R2_BUCKET", &s3.bucket)
            .env("R2_PUBLIC_URL", crate::s3::PUBLIC_URL)
            .env("R2_ACCESS_KEY_ID", &s3.access_key)
            .env("R2_SECRET_ACCESS_KEY", &s3.secret_key)
    };
    // The same build with small clips: the memory a build takes anyway.
    let small = Sim::start(fast_sim());
    let t = project();
    let args = build_args(&small);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (r, baseline) = run_measuring_memory(&t, &args);
    r.assert_code(0);

    // 4 clips padded to 24 MB each: stored and placed whole, byte for byte
    // what G-Labs served, without ever holding a clip in memory.
    let sim = Sim::start(nbbuild_sim::SimConfig {
        clip_padding: CLIP,
        ..fast_sim()
    });
    let t = project();
    let args = build_args(&sim);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (r, peak) = run_measuring_memory(&t, &args);
    r.assert_code(0);
    assert_eq!(sim.stats().video_submits, 4);
    let clip = t
        .path()
        .join("Assets/XYZG1/generated-videos/v0-3/scene09-c1.mp4");
    let bytes = std::fs::read(&clip).unwrap();
    assert!(bytes.len() as u64 > CLIP);
    assert!(is_mp4(&bytes));
    assert!(
        bytes == served_bytes(&t, &sim, "scene09", 0),
        "the placed clip differs from what G-Labs served"
    );
    let url = props(&t.generated(), 1, 10)["_savedVideos"][0]
        .as_str()
        .unwrap()
        .to_string();
    let key = url
        .strip_prefix(&format!("{}/", crate::s3::PUBLIC_URL))
        .unwrap();
    assert!(
        std::fs::read(s3.object_path(key)).unwrap() == bytes,
        "the published clip differs"
    );
    assert!(
        peak < baseline + CLIP / 2,
        "peak memory {} MiB with {} MiB clips, {} MiB with small ones",
        peak >> 20,
        CLIP >> 20,
        baseline >> 20
    );
    eprintln!("peak {} MiB, baseline {} MiB", peak >> 20, baseline >> 20);
    t.run(&["cache", "verify"]).assert_code(0);
}

/// The no-op skip (output/fingerprint.rs) never leaves outputs missing: an
/// asset deleted after a build is put back by the next no-op build, and an
/// edit of the flow that changes no key still gives a new generated flow.
#[test]
fn a_no_op_build_puts_back_a_deleted_asset_and_follows_flow_edits() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let first = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    first.assert_code(0);
    // Two no-op builds: the second one finds the outputs as the first left them.
    for _ in 0..2 {
        let r = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
        r.assert_code(0);
        assert_eq!(r.json()["output"], first.json()["output"]);
    }
    let asset = t
        .path()
        .join("Assets/XYZG1/generated-images/v0-3/scene01-c1.png");
    let bytes = std::fs::read(&asset).unwrap();
    std::fs::remove_file(&asset).unwrap();
    let r = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    r.assert_code(0);
    assert_eq!(std::fs::read(&asset).unwrap(), bytes, "the asset is back");
    assert_eq!(sim.stats().image_submits, 5, "and nothing was paid for it");
    // Moving a node changes no key but does change the generated flow.
    t.edit_json("ad.nbflow", |v| {
        crate::harness::node_mut(v, 0, 3)["pos"] = serde_json::json!([12, 34])
    });
    let moved = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    moved.assert_code(0);
    assert_eq!(moved.json()["calls"]["image"], 0);
    assert_ne!(moved.json()["output"], first.json()["output"]);
    let mut g = t.generated();
    assert_eq!(
        crate::harness::node_mut(&mut g, 0, 3)["pos"],
        serde_json::json!([12, 34])
    );
}
