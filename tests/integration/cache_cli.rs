//! `nbbuild cache` on a store a real build filled.

use crate::harness::{fast_sim, Sim, Test};

fn built() -> (Sim, Test) {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--candidates", "2", "--mode", "images"])
        .assert_code(0);
    (sim, t)
}

#[test]
fn ls_show_stats_path() {
    let (_sim, t) = built();
    let ls = t.run(&["cache", "ls", "--json"]);
    ls.assert_code(0);
    let v = ls.json();
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 5);
    assert!(
        tasks
            .iter()
            .all(|t| t["status"] == "complete" && t["candidates"] == 2),
        "{v:#}"
    );

    let show = t.run(&["cache", "show", "scene01", "--json"]);
    show.assert_code(0);
    let rec = &show.json()["tasks"][0]["record"];
    assert_eq!(rec["preimage"]["model"], "nano_banana_2");
    // Candidates are samples, not inputs: the count is not in the key.
    assert!(rec["preimage"].get("candidates").is_none(), "{rec:#}");
    assert_eq!(rec["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(rec["candidates"][0]["mime"], "image/png");

    let human = t.run(&["cache", "show", "scene01"]);
    assert!(
        human.stdout.contains("preimage:") && human.stdout.contains("candidates:"),
        "{}",
        human.stdout
    );

    let missing = t.run(&["cache", "show", "scene77"]);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("scene01"),
        "lists the names it has: {}",
        missing.stderr
    );

    let stats = t.run(&["cache", "stats", "--json"]).json();
    assert_eq!(stats["stats"]["candidates"], 10);
    assert_eq!(stats["stats"]["objects"], 10);

    let path = t.run(&["cache", "path"]);
    assert_eq!(path.stdout.trim(), "./.nbbuild");
}

#[test]
fn verify_names_a_corrupted_object() {
    let (_sim, t) = built();
    t.run(&["cache", "verify"]).assert_code(0);
    let rec = t.run(&["cache", "show", "scene01", "--json"]).json();
    let object = rec["tasks"][0]["record"]["candidates"][0]["object"]
        .as_str()
        .unwrap()
        .to_string();
    let p = t
        .path()
        .join(".nbbuild/objects")
        .join(&object[..2])
        .join(&object[2..]);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let mut perms = std::fs::metadata(&p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&p, perms).unwrap();
    std::fs::write(&p, bytes).unwrap();
    let v = t.run(&["cache", "verify", "--json"]);
    v.assert_code(1);
    let report = v.json();
    assert_eq!(report["ok"], false);
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "corrupt_object"
                && p["what"].as_str().unwrap().contains(&object[..12])),
        "{report:#}"
    );
}

#[test]
fn gc_dry_run_changes_nothing_and_gc_keeps_current_candidates() {
    let (sim, t) = built();
    // A re-roll moves scene01's candidates to history; the plain run after it
    // rebuilds scene02, whose input (scene01's pick) changed.
    t.build(
        &sim,
        &["--candidates", "2", "--mode", "images", "--only", "scene01"],
    )
    .assert_code(0);
    let follow = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    assert_eq!(follow.json()["calls"]["image"], 2);
    let before = t.run(&["cache", "stats", "--json"]).json();
    assert_eq!(before["stats"]["history_sets"], 1);
    let dry = t
        .run(&["cache", "gc", "--keep-history", "0", "--dry-run", "--json"])
        .json();
    assert_eq!(dry["gc"]["history_sets_removed"], 1);
    assert_eq!(
        t.run(&["cache", "stats", "--json"]).json()["stats"],
        before["stats"]
    );
    let gc = t
        .run(&["cache", "gc", "--keep-history", "0", "--json"])
        .json();
    assert_eq!(gc["gc"]["history_sets_removed"], 1);
    assert!(gc["gc"]["objects_removed"].as_u64().unwrap() >= 1);
    t.run(&["cache", "verify"]).assert_code(0);
    // Everything current is still there: a plain build is a no-op.
    let submitted = sim.stats();
    let again = t.build(&sim, &["--candidates", "2", "--mode", "images"]);
    again.assert_code(0);
    assert_eq!(again.json()["calls"]["image"], 0);
    assert_eq!(
        sim.stats(),
        submitted,
        "the simulator was asked for nothing"
    );
}

#[test]
fn a_second_writer_is_refused_naming_the_first() {
    let sim = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 2000,
        ..fast_sim()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let mut first = t
        .command(&[
            "build",
            "--server",
            &sim.url,
            "--candidates",
            "1",
            "--mode",
            "images",
            "-q",
        ])
        .spawn()
        .unwrap();
    sim.wait_for_submits(1);
    let second = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    second.assert_code(2);
    assert!(
        second.stderr.contains(&first.id().to_string()),
        "names the pid: {}",
        second.stderr
    );
    assert!(second.stderr.contains("hint:"), "{}", second.stderr);
    let status = first.wait().unwrap();
    assert!(status.success(), "the first build finishes unharmed");
    t.run(&["cache", "verify"]).assert_code(0);
}

/// A reader holding the store for a moment (the review page, `plan` in
/// another terminal) makes a build wait, not fail: it says so and goes on
/// once the store is free.
#[test]
fn a_build_waits_for_a_brief_reader_instead_of_failing() {
    use std::io::BufRead;
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--candidates", "1", "--mode", "images"])
        .assert_code(0);
    // This test process reads the store (no socket: a reader, not a build).
    let held = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
    let mut build = t
        .command(&[
            "build",
            "--server",
            &sim.url,
            "--candidates",
            "2",
            "--mode",
            "images",
            "-q",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(build.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for process"), "{line}");
    drop(held);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    let status = build.wait().unwrap();
    assert!(
        status.success(),
        "the build went on once the reader let go: {rest}"
    );
    assert_eq!(
        sim.stats().image_submits,
        10,
        "5 stills, 1 then 1 more candidate each"
    );
}
