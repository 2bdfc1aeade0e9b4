//! The up-to-date stamp (issue 11.7, src/uptodate.rs): a build with nothing
//! to do is told without planning, and only while nothing that decides has
//! changed. Each case leaves a stamp, changes one thing, and checks what a
//! user would see: the work is done (or the file is back) as without a stamp.

use crate::harness::{fast_sim, node_mut, Run, Sim, Test};
use serde_json::json;

const C: &str = "2";
const STAMP_USED: &str = "up to date: the last build's stamp holds";

/// A built flow whose last build had nothing to do (so a stamp is left).
/// NBBUILD_TIMINGS names the phases, the stamp's among them; it is set for
/// every command of the test, so it is one of the unchanged inputs.
fn stamped() -> (Sim, Test) {
    let (sim, t, _) = stamped_with_run();
    // The stamp is there: the next build is told by it (and keeps it).
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert!(used(&r), "{}", r.stderr);
    (sim, t)
}

/// [`stamped`], and the no-op build that planned and left the stamp.
fn stamped_with_run() -> (Sim, Test, Run) {
    let sim = Sim::start(fast_sim());
    let t = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("NBBUILD_TIMINGS", "1");
    t.build(&sim, &["--candidates", C]).assert_code(0);
    // The first build after one that made calls writes the outputs again
    // (its tasks are fresh now, not built); the next finds them as it
    // left them, plans, and leaves the stamp.
    let mut last = None;
    for _ in 0..2 {
        let r = t.build(&sim, &["--candidates", C]);
        r.assert_code(0);
        assert!(!used(&r), "these no-op builds plan: {}", r.stderr);
        last = Some(r);
    }
    (sim, t, last.unwrap())
}

fn used(r: &Run) -> bool {
    r.stderr.contains(STAMP_USED)
}

/// Calls the simulator was asked for during `f`, and the run.
fn calls(sim: &Sim, f: impl FnOnce() -> Run) -> ((u64, u64), Run) {
    let before = sim.stats();
    let r = f();
    let after = sim.stats();
    (
        (
            after.image_submits - before.image_submits,
            after.video_submits - before.video_submits,
        ),
        r,
    )
}

/// What a person reads, without the timing lines.
fn said(r: &Run) -> String {
    r.stderr
        .lines()
        .filter(|l| !l.starts_with("timing:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_build_with_nothing_to_do_says_the_same_without_planning() {
    let (sim, t, planned) = stamped_with_run();
    let told = t.build(&sim, &["--candidates", C]);
    told.assert_code(0);
    assert!(used(&told), "{}", told.stderr);
    assert!(
        !told.stderr.contains("ms  plan\n"),
        "no plan was made: {}",
        told.stderr
    );
    // Same words, same summary (but the duration) as the build that planned.
    assert_eq!(said(&planned), said(&told));
    let (mut a, mut b) = (planned.json(), told.json());
    a["duration_ms"] = json!(0);
    b["duration_ms"] = json!(0);
    assert_eq!(a, b);
    assert_eq!(a["tasks"]["fresh"], 7);
    assert_eq!(sim.stats().image_submits, 10, "no call was made");
    // The stamp holds for the next build too, and -q --json still prints
    // the summary alone.
    let quiet = t.build(&sim, &["--candidates", C, "-q"]);
    quiet.assert_code(0);
    assert!(
        used(&quiet),
        "-q and --json only choose how the result is shown"
    );
    assert_eq!(said(&quiet), "");
    assert_eq!(quiet.json()["tasks"]["fresh"], 7);
}

#[test]
fn a_prompt_edit_after_the_stamp_is_built() {
    let (sim, t) = stamped();
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 5)["properties"]["text"] = json!("a new living-room prompt")
    });
    let (paid, r) = calls(&sim, || t.build(&sim, &["--candidates", C]));
    r.assert_code(0);
    assert!(!used(&r));
    assert_eq!(
        paid,
        (2, 2),
        "the edited still and the clip made from its pick"
    );
}

#[test]
fn a_deleted_asset_after_the_stamp_is_put_back() {
    let (sim, t) = stamped();
    let assets = t.path().join("Assets");
    let one = walk(&assets)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("an asset");
    std::fs::remove_file(&one).unwrap();
    let (paid, r) = calls(&sim, || t.build(&sim, &["--candidates", C]));
    r.assert_code(0);
    assert!(!used(&r));
    assert_eq!(paid, (0, 0));
    assert!(one.exists(), "{} is back", one.display());
}

#[test]
fn a_changed_reference_or_option_is_planned_again() {
    let (sim, t) = stamped();
    // The same bytes, touched: planned (the stamp cannot know), nothing paid.
    let avatar = t.path().join("refs/avatar.png");
    let bytes = std::fs::read(&avatar).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&avatar, &bytes).unwrap();
    let (paid, r) = calls(&sim, || t.build(&sim, &["--candidates", C]));
    r.assert_code(0);
    assert!(!used(&r), "a touched reference is looked at again");
    assert_eq!(paid, (0, 0));
    // New bytes: the stills made from it and the clips from their picks.
    let mut changed = bytes.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    let r = t.build(&sim, &["--candidates", C]);
    assert!(used(&r), "the stamp was left again");
    std::fs::write(&avatar, &changed).unwrap();
    let (paid, r) = calls(&sim, || t.build(&sim, &["--candidates", C]));
    r.assert_code(0);
    assert!(!used(&r));
    assert!(paid.0 > 0, "new reference bytes are built: {paid:?}");
    // Another option: planned again, and it decides (3 candidates: one more each).
    t.build(&sim, &["--candidates", C]).assert_code(0);
    let (paid, r) = calls(&sim, || t.build(&sim, &["--candidates", "3"]));
    r.assert_code(0);
    assert!(!used(&r));
    assert!(
        paid.0 > 0,
        "--candidates 3 adds a candidate per still: {paid:?}"
    );
}

#[test]
fn a_changed_setting_file_or_variable_is_planned_again() {
    let (sim, t) = stamped();
    // nbbuild.toml's candidates decide: one more candidate per still.
    std::fs::write(t.path().join("nbbuild.toml"), "candidates = 3\n").unwrap();
    let (paid, r) = calls(&sim, || t.build(&sim, &[]));
    r.assert_code(0);
    assert!(!used(&r), "nbbuild.toml is an input");
    assert!(
        paid.0 > 0,
        "candidates = 3 adds a candidate per still: {paid:?}"
    );
    // A variable nbbuild reads, set to its default: planned again, nothing
    // paid. (Two no-op builds after one that made calls leave the stamp.)
    for _ in 0..2 {
        t.build(&sim, &[]).assert_code(0);
    }
    let r = t.build(&sim, &[]);
    assert!(used(&r), "the stamp was left again: {}", r.stderr);
    let mut c = t.command(&["build", "--server", &sim.url, "--json", "--no-progress"]);
    c.env("NBBUILD_BACKOFF_MS", "20")
        .env("NBBUILD_PROVIDER", "glabs");
    let before = sim.stats();
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(STAMP_USED));
    assert_eq!(sim.stats().image_submits, before.image_submits);
}

#[test]
fn a_build_with_a_mirror_always_plans() {
    let sim = Sim::start(fast_sim());
    let t = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("NBBUILD_TIMINGS", "1");
    let mirror = t.path().join("public");
    let m = format!("dir:{}", mirror.display());
    for _ in 0..4 {
        let r = t.build(&sim, &["--candidates", C, "--mirror", &m]);
        r.assert_code(0);
        assert!(!used(&r), "the mirror is checked by every build");
    }
}

#[test]
fn a_build_of_part_of_the_flow_always_plans() {
    let (sim, t) = stamped();
    for _ in 0..3 {
        let r = t.build(&sim, &["--candidates", C, "--only", "scene01"]);
        r.assert_code(0);
        assert!(!used(&r), "--only says what it selects: {}", r.stderr);
    }
    // And the whole flow's stamp is gone only if the store was written:
    // the --only builds logged their runs, so the next whole build plans.
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert!(!used(&r));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
