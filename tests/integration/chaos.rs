//! Chaos: a build of 50 tasks killed with SIGKILL at random moments, rerun
//! each time. It must complete, never ask again for a candidate it holds,
//! leave a store that verifies after every kill, and leave every output flow
//! absent or whole. `cargo test chaos -- --ignored` runs the long form.

use crate::harness::{Sim, Test};
use std::time::{Duration, Instant};

fn held(t: &Test) -> usize {
    let dir = t.path().join(".nbbuild");
    if !dir.join("db").exists() {
        return 0;
    }
    let s = nbbuild_cache::Store::open(&dir).expect("the store opens after a kill");
    let report = s.verify().unwrap();
    assert!(report.is_ok(), "verify after a kill: {:?}", report.problems);
    s.tasks()
        .unwrap()
        .iter()
        .map(|(_, r)| r.candidates.len())
        .sum()
}

fn outputs_whole(t: &Test) {
    let Ok(entries) = std::fs::read_dir(t.path().join("Generations")) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "nbflow" || x == "json") {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "half-written {}",
                p.display()
            );
        }
    }
}

fn chaos(kills: usize, seed: u64) {
    let sim = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 120,
        video_latency_ms: 200,
        ..Default::default()
    });
    let flow = nbbuild::synth::flow(25, "refs/avatar.png");
    let t = Test::new()
        .fixture("demo.nbflow", "unused.json")
        .write("chaos.nbflow", flow.to_string());
    let total = 50;
    let args = [
        "build",
        "chaos.nbflow",
        "--server",
        sim.url.as_str(),
        "--candidates",
        "1",
        "--concurrency",
        "5",
        "-q",
        "--no-progress",
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    for k in 0..kills {
        let missing = total - held(&t);
        if missing == 0 {
            break;
        }
        let before = sim.submits();
        let mut child = t.command(&args).spawn().unwrap();
        // Kill at a random moment: some rounds before the first submission lands, most mid-run.
        let delay = Duration::from_millis(rng.u64(20..900));
        let start = Instant::now();
        while start.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        child.wait().unwrap();
        let sent = (sim.submits() - before) as usize;
        assert!(
            sent <= missing,
            "round {k}: sent {sent} while only {missing} candidates were missing"
        );
        outputs_whole(&t);
    }
    let missing = total - held(&t);
    let before = sim.submits();
    let r = t.build(&sim, &["chaos.nbflow", "--candidates", "1"]);
    r.assert_code(0);
    let s = r.json();
    assert_eq!(
        s["tasks"]["built"].as_u64().unwrap() + s["tasks"]["fresh"].as_u64().unwrap(),
        total as u64
    );
    assert!((sim.submits() - before) as usize <= missing);
    assert_eq!(held(&t), total);
    outputs_whole(&t);
}

#[test]
fn chaos_resume_three_kills() {
    chaos(3, 42);
}

#[test]
#[ignore = "long form: 20 kills (cargo test chaos -- --ignored)"]
fn chaos_resume_twenty_kills() {
    for seed in 0..3 {
        chaos(20, seed);
    }
}
