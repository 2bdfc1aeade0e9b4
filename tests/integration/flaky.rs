//! A flaky tunnel's first run completes, and a lost answer is never paid
//! twice (issue 17). Money is counted by the simulator: the tasks it created
//! must equal the candidates the flow needs, exactly.

use crate::harness::{fast_sim, Sim, Test};
use nbbuild_sim::SimConfig;

/// Stills of the demo with `--mode images`, times candidates.
const NEEDED: u64 = 5 * 2;

fn images(t: &Test, sim: &Sim, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec!["--mode", "images", "--candidates", "2"];
    args.extend_from_slice(extra);
    t.build(sim, &args)
}

fn assert_every_candidate_once(t: &Test, sim: &Sim, run: &crate::harness::Run) {
    let created = sim.created();
    assert_eq!(
        created.len() as u64,
        NEEDED,
        "the simulator created exactly the candidates the flow needs: {created:#?}\nthe build said:\n{}",
        run.stderr
    );
    // And each one created is the one stored: no task paid and dropped.
    let store = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
    let stored: std::collections::BTreeSet<String> = store
        .tasks()
        .unwrap()
        .iter()
        .flat_map(|(_, r)| r.candidates.iter().filter_map(|c| c.remote_task.clone()))
        .collect();
    for c in &created {
        assert!(
            stored.contains(&c.task_id),
            "task {} paid, never stored",
            c.task_id
        );
    }
    // And every candidate stored is its own task's: no two slots share one.
    let slots: usize = store
        .tasks()
        .unwrap()
        .iter()
        .map(|(_, r)| r.candidates.len())
        .sum();
    assert_eq!(
        (slots as u64, stored.len() as u64),
        (NEEDED, NEEDED),
        "candidates stored, and distinct tasks behind them\nthe build said:\n{}",
        run.stderr
    );
}

#[test]
fn a_lost_answer_is_adopted_not_paid_twice() {
    let sim = Sim::start(SimConfig {
        lose_answer_rate: 0.4,
        seed: 3,
        ..fast_sim()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = images(&t, &sim, &[]);
    r.assert_code(0);
    let st = sim.stats();
    assert!(st.answers_lost > 0, "the fault fired: {st:?}");
    assert!(r.stderr.contains("adopted G-Labs task"), "{}", r.stderr);
    assert_every_candidate_once(&t, &sim, &r);
    // The summary counts the adopted ones as the calls they were.
    assert_eq!(r.json()["calls"]["image"], NEEDED);
}

#[test]
fn backpressure_paces_the_run_and_never_uses_up_attempts() {
    // Capacity 1 against 5 in flight, and slow: a candidate is answered 429
    // many times over before a slot frees.
    let sim = Sim::start(SimConfig {
        capacity: Some(1),
        image_latency_ms: 300,
        ..fast_sim()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = images(&t, &sim, &["--concurrency", "5"]);
    r.assert_code(0);
    let st = sim.stats();
    assert!(st.capacity_refused >= 3, "the fault fired: {st:?}");
    assert_every_candidate_once(&t, &sim, &r);
    assert!(t.errors_json().is_none());
}

#[test]
fn backpressure_without_progress_gives_up_after_max_wait_and_says_so() {
    // Every submission is answered 429.
    let sim = Sim::start(SimConfig {
        rate_limit_every: Some(1),
        ..fast_sim()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = images(&t, &sim, &["--max-wait", "1"]);
    r.assert_code(1);
    assert_eq!(sim.stats().image_submits, 0);
    assert!(r.stderr.contains("--max-wait"), "{}", r.stderr);
}

#[test]
fn a_bad_tunnel_days_first_run_builds_everything_and_pays_once() {
    // The bad tunnel day: 500s, drops, lost answers, 429s.
    let sim = Sim::start(SimConfig {
        error_rate: 0.2,
        drop_rate: 0.05,
        lose_answer_rate: 0.1,
        rate_limit_every: Some(5),
        seed: 5,
        ..fast_sim()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = images(&t, &sim, &[]);
    r.assert_code(0);
    let st = sim.stats();
    assert!(
        st.rate_limited > 0 && st.answers_lost > 0,
        "faults fired: {st:?}"
    );
    assert_every_candidate_once(&t, &sim, &r);
}

/// Issue 17's done-when, whole flow (stills and the clips made from them,
/// two tabs, chains and a dynamic fan-out): the first run on a bad tunnel
/// day builds every task; the simulator created exactly the candidates the
/// flow needs, and with `lose_every 7` exactly those plus the tasks the
/// simulator itself lost.
#[test]
fn a_bad_tunnel_days_first_run_of_the_whole_flow_builds_every_task() {
    for lose_every in [None, Some(7)] {
        let sim = Sim::start(SimConfig {
            error_rate: 0.2,
            drop_rate: 0.05,
            lose_answer_rate: 0.1,
            rate_limit_every: Some(5),
            lose_every,
            seed: 11,
            ..fast_sim()
        });
        let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
        let r = t.build(&sim, &["--candidates", "2"]);
        r.assert_code(0);
        let s = r.json();
        assert_eq!(s["tasks"]["built"], 7, "{lose_every:?}: {}", r.stderr);
        let created = sim.created();
        let lost = created.iter().filter(|c| c.forgotten).count() as u64;
        // 5 stills and 2 clips, 2 candidates each.
        assert_eq!(
            created.len() as u64,
            14 + lost,
            "{lose_every:?}: {:?}",
            sim.stats()
        );
        if lose_every.is_some() {
            assert!(lost > 0, "the simulator lost tasks: {:?}", sim.stats());
        }
        let st = sim.stats();
        assert!(st.errors > 0 && st.rate_limited > 0, "faults fired: {st:?}");
    }
}
