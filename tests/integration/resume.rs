//! A run killed with SIGKILL and rerun never pays again for a candidate it
//! had received, and re-attaches to G-Labs tasks still running.

use std::collections::BTreeSet;

use crate::harness::{held, unadopted, wait_until, Held, Sim, Test};

/// The default `--concurrency`: at most this many submissions can be
/// between G-Labs' answer and the flushed in-flight record at a kill.
const CONCURRENCY: usize = 3;

#[test]
fn killed_run_resumes_without_paying_twice() {
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
    // Every G-Labs task id the store ever recorded as in flight: each must
    // end up as a stored candidate (re-attached, not paid again).
    let mut recorded: BTreeSet<String> = BTreeSet::new();
    // Tasks created in a round that the store did not know after its kill:
    // the answer was on its way back (adoption of lost answers is not in
    // yet, so the next run pays for the candidate again).
    let mut unrecorded = 0;
    let mut before = Held::default();
    for round in 0..2u64 {
        let created_before = sim.created().len();
        let mut child = t.command(&args).spawn().unwrap();
        // Kill while tasks are in flight: after the round's 3rd submission,
        // and in the second round a little later into the polling.
        let target = sim.submits() + 3;
        wait_until("3 submissions in the round", || {
            sim.submits() >= target || child.try_wait().unwrap().is_some()
        });
        std::thread::sleep(std::time::Duration::from_millis(150 * round));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the run ended before the kill"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let h = held(&t);
        assert!(
            h.candidates.len() < 10,
            "round {round}: the kill landed too late to test anything"
        );
        let known = h.ids();
        // What was recorded before this round is still known: re-attached
        // (in flight or stored), never dropped for a new submission.
        for id in before.in_flight.values() {
            assert!(
                known.contains(id),
                "round {round}: recorded task {id} abandoned"
            );
        }
        let new: Vec<String> = sim.created()[created_before..]
            .iter()
            .map(|c| c.task_id.clone())
            .collect();
        let lost_answers = new.iter().filter(|id| !known.contains(*id)).count();
        assert!(
            lost_answers <= CONCURRENCY,
            "round {round}: {lost_answers} tasks created that the store does not know"
        );
        eprintln!(
            "round {round}: {} stored, {} in flight, {lost_answers} unrecorded",
            h.candidates.len(),
            h.in_flight.len()
        );
        unrecorded += lost_answers;
        recorded.extend(h.in_flight.values().cloned());
        before = h;
    }
    // The final run pays exactly for the slots neither stored, nor in
    // flight, nor sent before the last kill without their answer recorded
    // (those are found at G-Labs and adopted).
    let pending = unadopted(&sim, &before);
    let missing = 10 - before.candidates.len() - before.in_flight.len() - pending;
    let submits_before = sim.submits();
    let run = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    run.assert_code(0);
    let s = run.json();
    assert_eq!(
        s["tasks"]["built"].as_u64().unwrap() + s["tasks"]["fresh"].as_u64().unwrap(),
        5
    );
    let sent = (sim.submits() - submits_before) as usize;
    assert_eq!(
        sent,
        missing,
        "{} stored and {} in flight before the rerun",
        before.candidates.len(),
        before.in_flight.len()
    );
    assert!(
        run.stderr.is_empty() || !run.stderr.contains("error"),
        "{}",
        run.stderr
    );
    let end = held(&t);
    assert_eq!(end.candidates.len(), 10);
    assert!(end.in_flight.is_empty(), "{:?}", end.in_flight);
    let stored: BTreeSet<String> = end.candidates.values().flatten().cloned().collect();
    assert!(
        !recorded.is_empty(),
        "no kill found a task in flight: re-attaching was not tested"
    );
    for id in &recorded {
        assert!(
            stored.contains(id),
            "recorded task {id} was not re-attached"
        );
    }
    // Over the whole test: exactly the 10 candidates. A submission whose
    // answer was on its way when a kill landed was marked before it was
    // sent, and adopted by the next run instead of paid again.
    let _ = unrecorded;
    assert_eq!(sim.submits() as usize, 10);
}
