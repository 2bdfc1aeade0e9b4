//! Visual QA in the build: flagged stills re-rolled alone, attempts kept
//! under qa_loop/, exhaustion reported, verdicts never asked twice.

use crate::harness::{error_kinds, fast_sim, props, Sim, Test};
use nbbuild_sim::SimConfig;

fn qa_test(sim: &Sim, model: &str) -> Test {
    Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("NBBUILD_QA_URL", &format!("{}/v1", sim.url))
        .env("NBBUILD_QA_MODEL", model)
}

fn qa_loop_files(t: &Test) -> Vec<String> {
    let dir = t.path().join("Assets/XYZG1/qa_loop/v0-3");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn flagged_stills_are_rerolled_until_exhausted_and_reported() {
    let sim = Sim::start(SimConfig {
        flaw_rate: 1.0,
        ..fast_sim()
    });
    let t = qa_test(&sim, "sim-vision");
    let r = t.build(
        &sim,
        &[
            "--candidates",
            "1",
            "--mode",
            "images",
            "--qa-attempts",
            "1",
        ],
    );
    r.assert_code(1);
    let s = r.json();
    // Every still is flagged: each of the 5 is generated, flagged, re-rolled once, flagged again.
    assert_eq!(s["calls"]["image"], 10);
    assert_eq!(s["calls"]["qa"], 10);
    assert_eq!(sim.stats().image_submits, 10);
    assert_eq!(sim.stats().qa_reviews, 10);
    assert_eq!(flagged_in_store(&t), 5);
    assert_eq!(
        s["tasks"]["built"], 5,
        "out of QA attempts still counts as built: the candidates stay"
    );
    let errors = t.errors_json().unwrap();
    assert_eq!(error_kinds(&errors), vec!["qa_exhausted"; 5]);
    assert_eq!(errors["errors"][0]["attempts"], 2);
    // Both flagged attempts of each candidate are kept.
    let files = qa_loop_files(&t);
    assert_eq!(files.len(), 10, "{files:?}");
    assert!(
        files.contains(&"scene01-c1-r1.png".to_string())
            && files.contains(&"scene01-c1-r2.png".to_string()),
        "{files:?}"
    );
    // The flagged candidate stays in the gallery.
    assert_eq!(
        props(&t.generated(), 0, 3)["_savedImages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Stale again on the next plain run; a clean server clears it.
    let plan = t
        .run(&["plan", "--candidates", "1", "--mode", "images", "--json"])
        .json();
    assert_eq!(plan["summary"]["stale"], 5);
    assert_eq!(plan["tasks"][0]["reason"]["kind"]["reason"], "qa_flagged");
    // Another flawed run re-rolls them again; its attempts number on (r3, r4),
    // so the earlier qa_loop files are kept. (scene02 consumes scene01's new
    // pick, so it is a new task and numbers from r1 again: 4 x 4 + 2.)
    let again = t.build(
        &sim,
        &[
            "--candidates",
            "1",
            "--mode",
            "images",
            "--qa-attempts",
            "1",
        ],
    );
    again.assert_code(1);
    let files = qa_loop_files(&t);
    assert_eq!(files.len(), 18, "{files:?}");
    assert!(
        files.contains(&"scene01-c1-r4.png".to_string()),
        "{files:?}"
    );
    let clean = Sim::start(fast_sim());
    let t = t.env("NBBUILD_QA_URL", &format!("{}/v1", clean.url));
    let r = t.build(
        &clean,
        &[
            "--candidates",
            "1",
            "--mode",
            "images",
            "--qa-attempts",
            "1",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.json()["calls"]["image"], 5);
    assert!(t.errors_json().is_none());
}

/// The sum of N over `cache ls` statuses "complete, N flagged".
fn flagged_in_store(t: &Test) -> u64 {
    let shown = t.run(&["cache", "ls", "--json"]).json();
    shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| {
            x["status"]
                .as_str()
                .unwrap()
                .strip_prefix("complete, ")?
                .strip_suffix(" flagged")?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn exhausted_in_errors(t: &Test) -> u64 {
    t.errors_json()
        .map(|e| {
            error_kinds(&e)
                .iter()
                .filter(|k| *k == "qa_exhausted")
                .count() as u64
        })
        .unwrap_or(0)
}

#[test]
fn some_flaws_are_rerolled_and_nothing_is_reviewed_twice() {
    // Seed 4 plants flaws in these variants of the five prompts (in the
    // simulator's log): FFFF, FCC, CC, CC, CFF. With 2 candidates and one
    // re-roll each, whatever the order the slots draw in: the first prompt's
    // two candidates are both flagged twice (exhausted), the last one's
    // second candidate too, and the FCC one is re-rolled once to clean.
    let sim = Sim::start(SimConfig {
        flaw_rate: 0.4,
        seed: 4,
        ..fast_sim()
    });
    let t = qa_test(&sim, "sim-vision");
    let args = [
        "--candidates",
        "2",
        "--mode",
        "images",
        "--qa-attempts",
        "1",
    ];
    let r = t.build(&sim, &args);
    r.assert_code(1);
    let st = sim.stats();
    let flawed = sim.created().iter().filter(|c| c.flaw).count() as u64;
    assert_eq!(flawed, 7);
    let exhausted = exhausted_in_errors(&t);
    assert_eq!(exhausted, 3);
    // Every flawed still is re-rolled once more, except those out of
    // re-rolls; every still (and only those) reviewed exactly once.
    assert_eq!(st.image_submits, 10 + flawed - exhausted);
    assert_eq!(st.qa_reviews, st.image_submits, "{st:?}");
    let errors = t.errors_json().unwrap();
    assert_eq!(error_kinds(&errors), vec!["qa_exhausted"; 3]);
    // The store agrees: the exhausted candidates are the flagged ones.
    assert_eq!(flagged_in_store(&t), exhausted);
    // Every flagged attempt is kept under qa_loop/.
    assert_eq!(
        qa_loop_files(&t).len() as u64,
        flawed,
        "{:?}",
        qa_loop_files(&t)
    );

    // Rerun: only the 3 flagged candidates are regenerated (all clean now),
    // and only the new stills are reviewed.
    let again = t.build(&sim, &args);
    again.assert_code(0);
    let st2 = sim.stats();
    assert_eq!(st2.image_submits - st.image_submits, 3);
    assert_eq!(st2.qa_reviews - st.qa_reviews, 3);
    let flawed2 = sim.created().iter().filter(|c| c.flaw).count() as u64 - flawed;
    assert_eq!(flawed2, 0);
    assert!(t.errors_json().is_none());
    // Nothing in use is flagged any more. (A consumer of a still whose
    // flagged c1 was re-rolled clean consumes the new c1: its old record,
    // flags and all, stays in the store under the old key.)
    let plan = t.run(&["plan", "--candidates", "2", "--mode", "images", "--json"]);
    assert_eq!(
        plan.json()["calls"]["image"],
        0,
        "plan after the rerun:\n{}\nrerun stderr:\n{}",
        plan.stdout,
        again.stderr
    );
    let s2 = again.json();
    assert_eq!(s2["calls"]["image"], 3, "the summary agrees");
    assert_eq!(s2["calls"]["qa"], 3);

    // And a third run is a no-op.
    let third = t.build(&sim, &args);
    third.assert_code(0);
    assert_eq!(sim.stats(), st2);
}

#[test]
fn changing_the_reviewer_reviews_again_without_regenerating() {
    let sim = Sim::start(fast_sim());
    let t = qa_test(&sim, "reviewer-a");
    let r = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    r.assert_code(0);
    assert_eq!(r.json()["calls"]["qa"], 5);
    let same = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    assert_eq!(same.json()["calls"]["qa"], 0);
    let t = t.env("NBBUILD_QA_MODEL", "reviewer-b");
    let other = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    other.assert_code(0);
    let s = other.json();
    assert_eq!(s["calls"]["qa"], 5);
    assert_eq!(s["calls"]["image"], 0);
    assert_eq!(sim.stats().qa_reviews, 10);
}

#[test]
fn videos_are_not_reviewed_and_qa_takes_no_generation_slot() {
    let sim = Sim::start(SimConfig {
        slots: 20,
        ..fast_sim()
    });
    let t = qa_test(&sim, "sim-vision");
    let r = t.build(&sim, &["--candidates", "2", "--concurrency", "2"]);
    r.assert_code(0);
    let st = sim.stats();
    assert_eq!((st.image_submits, st.video_submits), (10, 4));
    assert_eq!(st.qa_reviews, 10, "10 stills reviewed, 4 clips not");
    assert_eq!(st.peak_in_flight, 2);

    // A reviewer that takes 300 ms, leaving a marker while it works. With
    // 2 permits and generations slower than a review, a run whose reviews
    // take no permit has 2 tasks at G-Labs while a review is under way; one
    // whose reviews held a permit could never have more than 1.
    let sim = Sim::start(SimConfig {
        slots: 20,
        image_latency_ms: 400,
        video_latency_ms: 400,
        ..fast_sim()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let marks = t.path().join("reviewing");
    std::fs::create_dir_all(&marks).unwrap();
    let judge = t.path().join("judge.sh");
    std::fs::write(
        &judge,
        format!(
            "#!/bin/sh\nm='{}'/$$\ntouch \"$m\"\nsleep 0.3\nrm \"$m\"\necho '{{\"verdict\": \"clean\", \"tells\": []}}'\n",
            marks.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&judge, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let judge = judge.display().to_string();
    let mut child = t
        .command(&[
            "build",
            "--server",
            &sim.url,
            "--candidates",
            "2",
            "--concurrency",
            "2",
            "--qa",
            "command",
            "--qa-command",
            &judge,
            "--json",
            "--no-progress",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reviewing = || -> Vec<std::ffi::OsString> {
        let mut v: Vec<_> = std::fs::read_dir(&marks)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let (mut samples, mut peak) = (0, 0);
    while child.try_wait().unwrap().is_none() {
        let during = reviewing();
        if !during.is_empty() {
            let n = sim.in_flight();
            // Counted only when a review that was under way before the
            // reading is still under way after it.
            if reviewing().iter().any(|m| during.contains(m)) {
                samples += 1;
                peak = peak.max(n);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["calls"]["qa"], 10, "{s}");
    assert!(samples > 0, "no review was seen under way");
    assert_eq!(
        peak, 2,
        "tasks at G-Labs while a review was under way ({samples} samples)"
    );
    assert_eq!(sim.stats().peak_in_flight, 2);
}

#[test]
fn without_a_reviewer_the_run_says_qa_is_off() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    r.assert_code(0);
    assert_eq!(
        r.stderr.matches("visual QA is off").count(),
        1,
        "{}",
        r.stderr
    );
    let bad = t.run(&["build", "--qa", "vision", "--server", &sim.url]);
    bad.assert_code(2);
    assert!(bad.stderr.contains("NBBUILD_QA_URL"), "{}", bad.stderr);
}
