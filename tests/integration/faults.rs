//! Faults injected by the simulator: each run ends, errors.json names the
//! right kinds, unaffected work is built, and a rerun pays only for what is
//! missing.

use crate::harness::{error_kinds, fast_sim, node_mut, props, Sim, Test};
use nbbuild_sim::SimConfig;
use serde_json::json;

/// Whatever the fault did, the store holds nothing verify rejects.
fn store_verifies(t: &Test) {
    t.run(&["cache", "verify"]).assert_code(0);
}

fn demo() -> Test {
    Test::new().fixture("demo-offline.nbflow", "ad.nbflow")
}

fn set_prompt(t: &Test, tab: usize, id: i64, text: &str) {
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, tab, id)["properties"]["text"] = json!(text)
    });
}

#[test]
fn content_policy_fails_its_task_skips_dependents_and_builds_the_rest() {
    let sim = Sim::start(SimConfig {
        policy_word: Some("forbidden".into()),
        ..fast_sim()
    });
    let t = demo();
    set_prompt(&t, 0, 1, "a forbidden kitchen scene");
    let run = t.build(&sim, &["--candidates", "2"]);
    run.assert_code(1);
    let s = run.json();
    assert_eq!(s["tasks"]["failed"], 1);
    assert_eq!(
        s["tasks"]["skipped"], 2,
        "scene02 image and video consume scene01"
    );
    assert_eq!(s["tasks"]["built"], 4);
    let errors = t.errors_json().expect("errors.json");
    assert_eq!(
        error_kinds(&errors),
        vec![
            "content_policy",
            "content_policy",
            "skipped_upstream_failed",
            "skipped_upstream_failed"
        ]
    );
    let e = &errors["errors"][0];
    assert_eq!(e["tab"], "Mainbody");
    assert_eq!(e["node_id"], 3);
    assert_eq!(e["title"], "Generate: Scene 1 kitchen");
    assert_eq!(e["attempts"], 2, "content policy is retried once");
    assert!(e["prompt"].as_str().unwrap().contains("forbidden"));
    // scene01: 2 candidates x 2 attempts; the three B-roll rows: 2 each;
    // scene02 (skipped): none.
    assert_eq!(sim.stats().image_submits, 4 + 6);
    // The output still shows what was built.
    assert_eq!(
        props(&t.generated(), 1, 4)["_savedImages"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    store_verifies(&t);
}

#[test]
fn timeouts_are_reported_not_retried_blindly() {
    let sim = Sim::start(SimConfig {
        timeout_word: Some("slowpoke".into()),
        ..fast_sim()
    });
    let t = demo();
    set_prompt(&t, 1, 9, "slowpoke reveal of the box");
    let run = t.build(&sim, &["--candidates", "2"]);
    run.assert_code(1);
    let errors = t.errors_json().unwrap();
    assert_eq!(error_kinds(&errors), vec!["timeout", "timeout"]);
    assert_eq!(errors["errors"][0]["name"], "scene09");
    assert_eq!(
        sim.stats().video_submits,
        2 + 2,
        "each timed-out candidate was sent once"
    );
    assert_eq!(run.json()["tasks"]["built"], 6);
    store_verifies(&t);
}

#[test]
fn rate_limits_lost_tasks_and_dropped_connections_are_absorbed() {
    for (what, config) in [
        (
            "429 every 3rd submit",
            SimConfig {
                rate_limit_every: Some(3),
                ..fast_sim()
            },
        ),
        (
            "every 4th task lost",
            SimConfig {
                lose_every: Some(4),
                ..fast_sim()
            },
        ),
        (
            "5% dropped connections",
            SimConfig {
                drop_rate: 0.05,
                seed: 7,
                ..fast_sim()
            },
        ),
    ] {
        let sim = Sim::start(config);
        let t = demo();
        let run = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
        run.assert_code(0);
        let s = run.json();
        assert_eq!(s["tasks"]["built"], 5, "{what}: {}", run.stderr);
        assert!(t.errors_json().is_none(), "{what}");
        // Each of the 10 candidates is stored once, whatever it took.
        let g = t.generated();
        assert_eq!(
            props(&g, 0, 3)["_savedImages"].as_array().unwrap().len(),
            2,
            "{what}"
        );
        store_verifies(&t);
    }
}

#[test]
fn server_errors_end_the_run_with_api_errors_and_a_rerun_completes() {
    let sim = Sim::start(SimConfig {
        error_rate: 0.3,
        seed: 3,
        ..fast_sim()
    });
    let t = demo();
    let run = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    if let Some(e) = t.errors_json() {
        assert!(
            error_kinds(&e)
                .iter()
                .all(|k| k == "api_error" || k == "skipped_upstream_failed"),
            "{e:#}"
        );
    }
    store_verifies(&t);
    let healthy = Sim::start(fast_sim());
    let again = t.build(&healthy, &["--candidates", "2", "--mode", "images"]);
    again.assert_code(0);
    assert!(
        t.errors_json().is_none(),
        "a clean run removes the stale errors.json"
    );
}

#[test]
fn server_going_down_mid_run_keeps_what_arrived() {
    let sim = Sim::start(SimConfig {
        die_after_submits: Some(4),
        ..fast_sim()
    });
    let t = demo();
    let run = t.build(
        &sim,
        &[
            "--candidates",
            "2",
            "--mode",
            "images",
            "--concurrency",
            "2",
        ],
    );
    run.assert_code(1);
    let errors = t.errors_json().expect("errors.json");
    assert!(
        error_kinds(&errors).contains(&"connection_refused".to_string()),
        "{errors:#}"
    );
    assert!(
        run.stderr.contains("no new work is launched"),
        "{}",
        run.stderr
    );
    store_verifies(&t);
    let received = 4;
    // A healthy server: only the missing candidates are requested.
    let healthy = Sim::start(fast_sim());
    let again = t.build(&healthy, &["--candidates", "2", "--mode", "images"]);
    again.assert_code(0);
    assert!(
        healthy.stats().image_submits <= 10 - received + 2,
        "at most the in-flight ones are sent again: {}",
        healthy.stats().image_submits
    );
    assert!(healthy.stats().image_submits >= 10 - received);
}

#[test]
fn lost_tasks_after_a_server_restart_are_resubmitted() {
    let sim = Sim::start(SimConfig {
        image_latency_ms: 400,
        ..fast_sim()
    });
    let t = demo();
    let child = t
        .command(&[
            "build",
            "--server",
            &sim.url,
            "--candidates",
            "2",
            "--mode",
            "images",
            "-q",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sim.wait_for_submits(3);
    sim.restart(); // G-Labs restarted: every task id it had is gone
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["tasks"]["built"], 5);
    assert!(
        sim.stats().image_submits > 10,
        "the lost ones were submitted again"
    );
    store_verifies(&t);
}

#[test]
fn ctrl_c_stops_launching_writes_what_is_done_and_resumes() {
    let sim = Sim::start(SimConfig {
        image_latency_ms: 600,
        slots: 2,
        ..fast_sim()
    });
    let t = demo();
    let child = t
        .command(&[
            "build",
            "--server",
            &sim.url,
            "--candidates",
            "2",
            "--mode",
            "images",
            "--concurrency",
            "2",
            "--no-progress",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sim.wait_for_submits(3);
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stderr.contains("generated flow:"),
        "outputs are written for what is done: {stderr}"
    );
    let sent = sim.submits();
    assert!(sent < 10, "it stopped launching ({sent} sent)");
    t.run(&["cache", "verify"]).assert_code(0);
    let again = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    again.assert_code(0);
    assert!(sim.submits() - sent <= 10, "no candidate paid twice");
}

#[test]
fn error_pages_served_as_results_are_never_stored() {
    // A third of the downloads are a tunnel's HTML error page (status 200):
    // fetched again, never stored; every candidate ends up a real PNG.
    let sim = Sim::start(SimConfig {
        bad_file_rate: 0.3,
        seed: 5,
        ..fast_sim()
    });
    let t = demo();
    let run = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    run.assert_code(0);
    let g = t.generated();
    for (tab, id) in [(0, 3), (0, 6), (1, 4)] {
        for u in props(&g, tab, id)["_savedImages"].as_array().unwrap() {
            let path = u
                .as_str()
                .unwrap()
                .strip_prefix("file://")
                .unwrap()
                .to_string();
            assert!(nbbuild_sim::media::is_png(&std::fs::read(path).unwrap()));
        }
    }
    store_verifies(&t);

    // Every download bad: each attempt fails, nothing is stored.
    let broken = Sim::start(SimConfig {
        bad_file_rate: 1.0,
        ..fast_sim()
    });
    let t = demo();
    let run = t.build(
        &broken,
        &["--candidates", "1", "--mode", "images", "--only", "scene01"],
    );
    run.assert_code(1);
    let errors = t.errors_json().unwrap();
    assert_eq!(error_kinds(&errors), vec!["api_error"]);
    assert!(
        errors["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid PNG"),
        "{errors:#}"
    );
    assert_eq!(
        broken.stats().image_submits,
        3,
        "3 attempts, each re-downloaded before giving up"
    );
    let stats = t.run(&["cache", "stats", "--json"]).json();
    assert_eq!(stats["stats"]["candidates"], 0);
}
