//! The google route (issue 15): the real binary, the real Gemini client,
//! and the simulator's Google room (`/v1beta/*`) over loopback.

use crate::harness::{error_kinds, fast_sim, held, node_mut, wait_until, Sim, Test};

/// A key the simulator requires; it must never show up anywhere.
const KEY: &str = "AIzaSy-test-KEY-4f1c9d0e7b2a";

fn google_sim(config: nbbuild_sim::SimConfig) -> Sim {
    Sim::start(nbbuild_sim::SimConfig {
        api_key: Some(KEY.into()),
        ..config
    })
}

fn project() -> Test {
    Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("GEMINI_API_KEY", KEY)
}

/// Every candidate the store holds: (task name, slot, route, remote id).
fn candidates(t: &Test) -> Vec<(String, u32, Option<String>, Option<String>)> {
    let store = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
    let mut out = Vec::new();
    for (_, r) in store.tasks().unwrap() {
        for c in &r.candidates {
            out.push((
                r.name.clone(),
                c.slot,
                c.route.clone(),
                c.remote_task.clone(),
            ));
        }
    }
    out
}

#[test]
fn a_two_tab_flow_builds_on_google_and_glabs_then_reuses_every_candidate() {
    let sim = google_sim(fast_sim());
    let t = project();

    // The plan quotes dollars on this route, credits on the other.
    let plan = t.run(&[
        "plan",
        "--provider",
        "google",
        "--candidates",
        "2",
        "--json",
    ]);
    plan.assert_code(0);
    let p = plan.json();
    assert_eq!(p["unit"], "usd");
    assert_eq!(p["credits"], 0.0);
    // Twice: 5 stills at $0.067 (1K), a Veo 3.1 Fast clip of 8 s at
    // $0.10/s and a relaxed (Lite) clip of 6 s at $0.05/s (720p).
    let usd = p["usd"].as_f64().unwrap();
    let want = 2.0 * (5.0 * 0.067 + 8.0 * 0.10 + 6.0 * 0.05);
    assert!((usd - want).abs() < 1e-6, "{usd}");
    let human = t.run(&["plan", "--provider", "google", "--candidates", "2"]);
    assert!(human.stdout.contains("about $2.87"), "{}", human.stdout);
    let glabs_plan = t.run(&["plan", "--candidates", "2"]);
    assert!(
        glabs_plan.stdout.contains("credits"),
        "{}",
        glabs_plan.stdout
    );

    let run = t.build(&sim, &["--provider", "google", "--candidates", "2"]);
    run.assert_code(0);
    let s = run.json();
    assert_eq!(s["provider"], "google");
    assert_eq!(s["tasks"]["failed"], 0);
    assert_eq!(s["tasks"]["built"], s["tasks"]["total"]);
    assert_eq!(s["calls"]["image"], 10);
    assert_eq!(s["calls"]["video"], 4);
    assert_eq!(s["credits"], 0.0, "dollars are never reported as credits");
    assert!((s["usd"].as_f64().unwrap() - usd).abs() < 1e-6);
    let stats = sim.stats();
    assert_eq!((stats.image_submits, stats.video_submits), (10, 4));

    // Every candidate says it came by the google route, clips from their operation.
    let held = candidates(&t);
    assert_eq!(held.len(), 14);
    for (name, slot, route, remote) in &held {
        assert_eq!(route.as_deref(), Some("google"), "{name} c{}", slot + 1);
        assert!(remote.is_some(), "{name} c{}", slot + 1);
    }
    assert_eq!(
        held.iter()
            .filter(|c| c.3.as_deref().unwrap().contains("/operations/"))
            .count(),
        4
    );
    let show = t.run(&["cache", "show", "scene01"]);
    assert!(show.stdout.contains("route: google"), "{}", show.stdout);

    // The stored still is the final image, not the thought image before it.
    let store = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
    for (_, r) in store.tasks().unwrap() {
        for c in r.candidates.iter().filter(|c| c.mime == "image/png") {
            let bytes = store.read_object(&c.object, true).unwrap();
            let info = png::Decoder::new(std::io::Cursor::new(bytes))
                .read_info()
                .unwrap()
                .info()
                .clone();
            assert!(
                info.width > 32 && info.height > 32,
                "{}: a thought image was stored",
                r.name
            );
        }
    }
    drop(store);

    // The key names the model, not the route: G-Labs pays for nothing.
    let t = t.env("GLABS_API_KEY", KEY);
    let again = t.build(&sim, &["--provider", "glabs", "--candidates", "2"]);
    again.assert_code(0);
    let a = again.json();
    assert_eq!(a["tasks"]["fresh"], a["tasks"]["total"]);
    assert_eq!(a["calls"]["image"], 0);
    assert_eq!(a["calls"]["video"], 0);
    assert_eq!(sim.submits(), 14, "switching provider submitted something");

    // The ledger keeps dollars and credits apart.
    let spend = t.run(&["spend", "--json"]);
    spend.assert_code(0);
    let l = spend.json();
    assert_eq!(l["runs"][0]["provider"], "google");
    assert!((l["total"]["usd"].as_f64().unwrap() - usd).abs() < 1e-6);
    assert_eq!(l["total"]["credits"], 0.0);
    let human = t.run(&["spend"]);
    assert!(human.stdout.contains("$2.87"), "{}", human.stdout);
}

#[test]
fn each_google_error_class_lands_in_errors_json_with_its_kind() {
    let sim = google_sim(nbbuild_sim::SimConfig {
        policy_word: Some("freckles".into()),
        ..fast_sim()
    });
    let t = project().write(
        "nbbuild.toml",
        // Scene 9's clip is relaxed: Veo 3.1 Lite, under an id Google retired.
        "[models]\nveo_31_lite_relaxed = \"veo-3.1-lite-generate-retired\"\n",
    );
    // Google refuses this ratio: 400 INVALID_ARGUMENT.
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 1, 4)["properties"]["aspectRatio"] = "7:3".into();
    });
    let run = t.build(&sim, &["--provider", "google", "--candidates", "1"]);
    run.assert_code(1);
    let errors = t.errors_json().expect("errors.json");
    let kinds = error_kinds(&errors);
    for k in ["content_policy", "model_not_available", "api_error"] {
        assert!(
            kinds.iter().any(|x| x == k),
            "{k} missing: {kinds:?}\n{}",
            run.stderr
        );
    }
    let entry = |kind: &str| {
        errors["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap()
            .clone()
    };
    // Safety: retried once, then permanent, and never stored.
    assert_eq!(entry("content_policy")["attempts"], 2);
    let model = entry("model_not_available");
    assert!(
        model["message"].as_str().unwrap().contains("[models]"),
        "{model}"
    );
    let api = entry("api_error");
    assert!(
        api["message"]
            .as_str()
            .unwrap()
            .contains("INVALID_ARGUMENT"),
        "the API's own message is kept: {api}"
    );
    for (name, slot, _, _) in candidates(&t) {
        assert_ne!(
            name,
            "scene01",
            "a refused still was stored (c{})",
            slot + 1
        );
    }
}

#[test]
fn retry_info_and_503s_are_retried_to_a_complete_build() {
    let sim = google_sim(nbbuild_sim::SimConfig {
        rate_limit_every: Some(3),
        error_rate: 0.3,
        seed: 5,
        ..fast_sim()
    });
    let t = project();
    let run = t.build(&sim, &["--provider", "google", "--candidates", "2"]);
    run.assert_code(0);
    let stats = sim.stats();
    assert!(stats.rate_limited > 0 && stats.errors > 0, "{stats:?}");
    // 429s and 503s create nothing: exactly one submission per candidate.
    assert_eq!((stats.image_submits, stats.video_submits), (10, 4));
}

#[test]
fn a_daily_quota_stops_launching_at_once() {
    let quota = 3;
    let sim = google_sim(nbbuild_sim::SimConfig {
        daily_quota: Some(quota),
        ..fast_sim()
    });
    let t = project();
    let run = t.build(
        &sim,
        &[
            "--provider",
            "google",
            "--candidates",
            "4",
            "--mode",
            "images",
        ],
    );
    run.assert_code(1);
    assert!(
        run.stderr.contains("per-day quota") && run.stderr.contains("midnight Pacific"),
        "{}",
        run.stderr
    );
    let stats = sim.stats();
    assert_eq!(stats.image_submits, quota);
    // Refusals after the first are only those already on their way (at most
    // one per slot), not retries into the quota.
    assert!((1..=3).contains(&stats.daily_quota_refused), "{stats:?}");
    assert_eq!(candidates(&t).len() as u64, quota, "what was made is kept");
}

/// Operation names the build holding the store has recorded, read through it.
fn recorded_operations(t: &Test) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if s.contains("/operations/") => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for name in ["scene02", "scene09"] {
        let r = t.run(&["cache", "show", name, "--json"]);
        if r.code == 0 {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.stdout) {
                walk(&v, &mut out);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_killed_build_reattaches_to_its_recorded_operations() {
    // Clips take long enough that the kill lands while they run.
    let sim = google_sim(nbbuild_sim::SimConfig {
        image_latency_ms: 30,
        video_latency_ms: 6_000,
        ..Default::default()
    });
    let t = project();
    let args = [
        "build",
        "--server",
        sim.url.as_str(),
        "--provider",
        "google",
        "--candidates",
        "1",
        "--no-progress",
        "-q",
    ];
    let mut child = t.command(&args).spawn().unwrap();
    let mut before = Vec::new();
    wait_until("both clips' operations recorded", || {
        before = recorded_operations(&t);
        before.len() >= 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(sim.stats().video_submits, 2);
    let h = held(&t);
    assert!(
        h.in_flight
            .values()
            .filter(|id| id.contains("/operations/"))
            .count()
            == 2,
        "the kill must leave both operations in flight: {h:?}"
    );

    let run = t.build(&sim, &["--provider", "google", "--candidates", "1"]);
    run.assert_code(0);
    assert_eq!(
        sim.stats().video_submits,
        2,
        "a recorded operation was paid again"
    );
    let mut clips: Vec<String> = candidates(&t)
        .into_iter()
        .filter_map(|c| c.3)
        .filter(|id| id.contains("/operations/"))
        .collect();
    clips.sort();
    assert_eq!(clips, before);
}

#[test]
fn the_key_never_appears_in_any_file_or_output() {
    let sim = google_sim(nbbuild_sim::SimConfig {
        policy_word: Some("freckles".into()),
        ..fast_sim()
    });
    // Passed on the command line this time, not through the environment.
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let mut outputs = Vec::new();
    let run = t.build(
        &sim,
        &[
            "--provider",
            "google",
            "--api-key",
            KEY,
            "--candidates",
            "1",
            "-v",
        ],
    );
    run.assert_code(1); // scene01 is refused
    outputs.push(run.stdout + &run.stderr);
    for args in [
        vec!["cache", "show", "scene02", "--json"],
        vec!["cache", "ls", "--json"],
        vec!["spend", "--json"],
        vec!["status", "--json"],
        vec!["plan", "--provider", "google", "--api-key", KEY],
    ] {
        let r = t.run(&args);
        outputs.push(r.stdout + &r.stderr);
    }
    // A wrong key is refused before anything is spent, without echoing either key.
    let before = sim.submits();
    let wrong = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("GEMINI_API_KEY", "AIzaSy-wrong-key-0000");
    let r = wrong.build(&sim, &["--provider", "google"]);
    r.assert_code(2);
    assert!(r.stderr.contains("GEMINI_API_KEY"), "{}", r.stderr);
    assert!(
        !(r.stdout.clone() + &r.stderr).contains("wrong-key"),
        "{}",
        r.stderr
    );
    assert_eq!(sim.submits(), before);
    outputs.push(r.stdout + &r.stderr);

    for o in &outputs {
        assert!(!o.contains(KEY), "the key was printed:\n{o}");
    }
    let mut files = 0;
    let mut stack = vec![t.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                files += 1;
                assert!(
                    !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                    "the key is in {}",
                    p.display()
                );
            }
        }
    }
    assert!(
        files > 10,
        "the store and outputs were searched ({files} files)"
    );
}

#[test]
fn provider_comes_from_flag_env_or_file_and_sim_runs_offline() {
    let t = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .write("nbbuild.toml", "provider = \"google\"\n");
    // No key, no server: the built-in simulator speaks the Gemini API too.
    let run = t.run(&[
        "build",
        "--sim",
        "--candidates",
        "1",
        "--mode",
        "images",
        "--json",
        "-q",
    ]);
    run.assert_code(0);
    let s = run.json();
    assert_eq!(s["provider"], "google");
    assert_eq!(s["calls"]["image"], 5);
    // The environment beats the file, and the store serves the other route.
    let env = t
        .command(&[
            "build",
            "--sim",
            "--candidates",
            "1",
            "--mode",
            "images",
            "--json",
            "-q",
        ])
        .env("NBBUILD_PROVIDER", "glabs")
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&env.stdout).unwrap();
    assert_eq!(s["provider"], "glabs");
    assert_eq!(s["calls"]["image"], 0);
    // Without --sim, Google needs a key: said before anything is spent.
    let t2 = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = t2.run(&["build", "--provider", "google"]);
    r.assert_code(2);
    assert!(r.stderr.contains("GEMINI_API_KEY"), "{}", r.stderr);
}

#[test]
fn models_section_renames_what_the_glabs_wire_says_too() {
    let sim = Sim::start(fast_sim());
    // An id this G-Labs does not know: its 400 proves the override was sent.
    let t = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .write(
            "nbbuild.toml",
            "[models]\nnano_banana_2 = { glabs = \"nano_banana_9\" }\n",
        );
    let run = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    run.assert_code(1);
    let kinds = error_kinds(&t.errors_json().expect("errors.json"));
    assert!(
        kinds.iter().any(|k| k == "model_not_available"),
        "{kinds:?}\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("nano_banana_9"), "{}", run.stderr);
}
