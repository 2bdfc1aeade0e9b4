//! `--mirror r2` in a real build: every candidate and local reference in the
//! bucket under the documented keys, public URLs in the generated flow, no
//! upload twice, a refusing server stopped before anything is spent.

use crate::harness::{fast_sim, props, Sim, Test};
use crate::s3::{start_s3, S3Server, PUBLIC_URL};
use serde_json::Value;

fn with_r2(t: Test, s3: &S3Server, secret: &str) -> Test {
    t.env("R2_ENDPOINT", &s3.endpoint)
        .env("R2_BUCKET", &s3.bucket)
        .env("R2_PUBLIC_URL", PUBLIC_URL)
        .env("R2_ACCESS_KEY_ID", &s3.access_key)
        .env("R2_SECRET_ACCESS_KEY", secret)
}

fn all_urls(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains("://") => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| all_urls(x, out)),
        Value::Object(m) => m.values().for_each(|x| all_urls(x, out)),
        _ => {}
    }
}

#[test]
fn r2_build_publishes_everything_once_under_readable_keys() {
    let bucket_dir = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket_dir.path());
    let sim = Sim::start(fast_sim());
    let t = with_r2(
        Test::new().fixture("demo-offline.nbflow", "ad.nbflow"),
        &s3,
        &s3.secret_key,
    );
    let r = t.build(&sim, &["--candidates", "2", "--mirror", "r2"]);
    r.assert_code(0);
    // 14 candidates + 2 local references, each PUT once (counted by the S3
    // server, not by the build): a background upload and a publish-phase
    // upload of the same file would make 17 or more.
    assert_eq!(r.json()["uploads"], 16, "{}", r.stderr);
    assert_eq!(s3.puts(), 16);
    let objects = crate::build::walk(&bucket_dir.path().join(&s3.bucket));
    assert_eq!(objects.len(), 16, "{objects:?}");
    let g = t.generated();
    let mut urls = Vec::new();
    for tab in 0..2 {
        for n in g["tabs"][tab]["graphData"]["nodes"].as_array().unwrap() {
            let p = &n["properties"];
            for k in [
                "_savedImages",
                "_savedVideos",
                "_savedApprovalImages",
                "_savedApprovalVideos",
                "imageData",
            ] {
                if n["properties"]["_disabled"] != true {
                    all_urls(&p[k], &mut urls);
                }
            }
        }
    }
    assert!(urls.len() >= 16 + 14);
    for u in &urls {
        assert!(u.starts_with(PUBLIC_URL), "{u}");
    }
    // Keys: {WF}/{VER}/{task}-c{k}-{hash12}.png and refs/{hash}.png, bytes intact.
    let img = props(&g, 0, 3)["_savedImages"][0]
        .as_str()
        .unwrap()
        .to_string();
    let key = img.strip_prefix(&format!("{PUBLIC_URL}/")).unwrap();
    assert!(
        key.starts_with("XYZG1/v0-3/scene01-c1-") && key.ends_with(".png"),
        "{key}"
    );
    let local = std::fs::read(
        t.path()
            .join("Assets/XYZG1/generated-images/v0-3/scene01-c1.png"),
    )
    .unwrap();
    assert_eq!(std::fs::read(s3.object_path(key)).unwrap(), local);
    let reference = props(&g, 0, 2)["imageData"].as_str().unwrap().to_string();
    let rkey = reference.strip_prefix(&format!("{PUBLIC_URL}/")).unwrap();
    assert!(
        rkey.starts_with("refs/") && rkey.ends_with(".png"),
        "{rkey}"
    );
    assert_eq!(
        std::fs::read(s3.object_path(rkey)).unwrap(),
        std::fs::read(t.path().join("refs/avatar.png")).unwrap()
    );
    // The input keeps its local path.
    assert!(t
        .read("ad.nbflow")
        .contains("\"imageData\": \"refs/avatar.png\""));

    // Second build: nothing uploaded, the same URLs.
    let puts = s3.puts();
    let again = t.build(&sim, &["--candidates", "2"]);
    again.assert_code(0);
    assert_eq!(again.json()["uploads"], 0);
    assert_eq!(s3.puts(), puts);
    assert_eq!(
        props(&t.generated(), 0, 3)["_savedImages"][0]
            .as_str()
            .unwrap(),
        img
    );
    // The store records the URL.
    let show = t.run(&["cache", "show", "scene01", "--json"]).json();
    assert!(show["tasks"][0]["record"]["candidates"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with(PUBLIC_URL));
}

#[test]
fn a_refusing_mirror_stops_the_build_before_any_call() {
    let bucket_dir = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket_dir.path());
    let sim = Sim::start(fast_sim());
    let t = with_r2(
        Test::new().fixture("demo-offline.nbflow", "ad.nbflow"),
        &s3,
        "not-the-secret-123456",
    );
    let r = t.build(&sim, &["--candidates", "1"]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("the r2 mirror is not usable"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    assert!(!r.stderr.contains("not-the-secret-123456"));
    assert_eq!(sim.submits(), 0);
    // A missing bucket too.
    let t = t
        .env("R2_SECRET_ACCESS_KEY", &s3.secret_key)
        .env("R2_BUCKET", "no-such-bucket");
    let r = t.build(&sim, &["--candidates", "1"]);
    r.assert_code(2);
    assert!(r.stderr.contains("no-such-bucket"), "{}", r.stderr);
    assert_eq!(sim.submits(), 0);
}

#[test]
fn dir_mirror_copies_and_links_file_urls() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let published = t.path().join("published");
    let r = t.build(
        &sim,
        &[
            "--candidates",
            "1",
            "--mode",
            "images",
            "--mirror",
            &format!("dir:{}", published.display()),
        ],
    );
    r.assert_code(0);
    let url = props(&t.generated(), 0, 3)["_savedImages"][0]
        .as_str()
        .unwrap()
        .to_string();
    let path = url.strip_prefix("file://").unwrap();
    assert!(path.starts_with(published.to_str().unwrap()), "{url}");
    assert!(nbbuild_sim::media::is_png(&std::fs::read(path).unwrap()));
}

#[test]
fn candidates_are_uploaded_as_they_land_not_at_the_end() {
    let bucket_dir = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket_dir.path());
    // One slot and slow stills: the run is far from over when we look.
    let sim = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 400,
        slots: 1,
        ..fast_sim()
    });
    let t = with_r2(
        Test::new().fixture("demo-offline.nbflow", "ad.nbflow"),
        &s3,
        &s3.secret_key,
    );
    let mut child = t
        .command(&[
            "build",
            "--server",
            &sim.url,
            "--candidates",
            "2",
            "--mode",
            "images",
            "--concurrency",
            "1",
            "-q",
        ])
        .spawn()
        .unwrap();
    let in_bucket = || {
        crate::build::walk(&bucket_dir.path().join(&s3.bucket))
            .iter()
            .filter(|p| p.to_string_lossy().contains("/XYZG1/v0-3/"))
            .count()
    };
    crate::harness::wait_until("2 candidates in the bucket", || in_bucket() >= 2);
    // Read after the uploads were seen: still generating. Uploading only
    // in the publish phase, after the generation phase, would have all 10
    // submitted by now (8 more stills take 3.2 s on the one slot).
    let submitted = sim.submits();
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        submitted < 10,
        "uploads came only after every still was generated ({submitted} submitted)"
    );
    assert!(still_running, "…while the build was still generating");
}
