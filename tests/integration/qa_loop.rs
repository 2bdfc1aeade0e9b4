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
    assert_eq!(sim.stats().qa_reviews, 10);
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

#[test]
fn some_flaws_are_rerolled_and_nothing_is_reviewed_twice() {
    let sim = Sim::start(SimConfig {
        flaw_rate: 0.4,
        seed: 11,
        ..fast_sim()
    });
    let t = qa_test(&sim, "sim-vision");
    let r = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    let s = r.json();
    let images = s["calls"]["image"].as_u64().unwrap();
    assert!(
        images > 10,
        "some of the 10 stills were flagged and re-rolled ({images} calls)"
    );
    assert_eq!(
        s["calls"]["qa"].as_u64().unwrap(),
        images,
        "each still reviewed exactly once"
    );
    assert!(!qa_loop_files(&t).is_empty());
    // Every current still is clean, or listed as qa_exhausted.
    let exhausted = t
        .errors_json()
        .map(|e| e["errors"].as_array().unwrap().len())
        .unwrap_or(0);
    let shown = t.run(&["cache", "ls", "--json"]).json();
    let flagged_tasks = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"].as_str().unwrap().contains("flagged"))
        .count();
    assert!(flagged_tasks <= exhausted);

    // Rerun: only what is still flagged is regenerated, and only new stills are reviewed.
    let again = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    let s2 = again.json();
    assert_eq!(s2["calls"]["qa"], s2["calls"]["image"], "{}", again.stderr);
    if exhausted == 0 {
        assert_eq!(s2["calls"]["image"], 0);
    }
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
    let s = r.json();
    assert_eq!(s["calls"]["qa"], 10, "10 stills reviewed, 4 clips not");
    assert!(sim.stats().peak_in_flight <= 2);
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
