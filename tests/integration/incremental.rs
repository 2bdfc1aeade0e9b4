//! The incremental contract (nbbuild.md 3-4): what each kind of edit
//! rebuilds, and nothing more. Every case starts from a fully built flow.

use crate::harness::{fast_sim, node_mut, Sim, Test};
use serde_json::json;
use std::collections::BTreeMap;

const C: &str = "2"; // candidates per task in these tests

fn built() -> (Sim, Test) {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert_eq!(r.json()["tasks"]["built"], 7);
    let st = sim.stats();
    assert_eq!((st.image_submits, st.video_submits), (10, 4));
    assert_eq!(r.json()["calls"]["image"], 10);
    assert_eq!(r.json()["calls"]["video"], 4);
    (sim, t)
}

/// Plan: task name -> (status, reason kind).
fn plan(t: &Test) -> BTreeMap<String, (String, String)> {
    let r = t.run(&["plan", "--candidates", C, "--json"]);
    r.assert_code(0);
    r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let key = format!(
                "{}:{}",
                x["kind"].as_str().unwrap(),
                x["name"].as_str().unwrap()
            );
            (
                key,
                (
                    x["status"].as_str().unwrap().to_string(),
                    x["reason"]["kind"]["reason"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        })
        .collect()
}

fn stale(t: &Test) -> Vec<String> {
    plan(t)
        .into_iter()
        .filter(|(_, (s, _))| s == "stale")
        .map(|(k, _)| k)
        .collect()
}

/// Build and return (image tasks, video tasks, built tasks): the tasks
/// as the simulator counted them, after checking the summary agrees.
fn rebuild(t: &Test, sim: &Sim) -> (u64, u64, u64) {
    let before = sim.stats();
    let r = t.build(sim, &["--candidates", C]);
    r.assert_code(0);
    let after = sim.stats();
    let paid = (
        after.image_submits - before.image_submits,
        after.video_submits - before.video_submits,
    );
    let s = r.json();
    assert_eq!(
        (
            s["calls"]["image"].as_u64().unwrap(),
            s["calls"]["video"].as_u64().unwrap()
        ),
        paid,
        "the summary's calls are what the simulator was asked for"
    );
    (paid.0, paid.1, s["tasks"]["built"].as_u64().unwrap())
}

#[test]
fn editing_a_prompt_rebuilds_that_task_and_the_consumers_of_its_pick() {
    let (sim, t) = built();
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 5)["properties"]["text"] = json!("a new living-room prompt")
    });
    let p = plan(&t);
    assert_eq!(p["image:scene02"], ("stale".into(), "key_changed".into()));
    assert_eq!(
        p["video:scene02"],
        ("stale".into(), "upstream_changes".into())
    );
    assert_eq!(stale(&t), vec!["image:scene02", "video:scene02"]);
    // scene02's still is rebuilt; the clip consumes its auto-pick, so it follows.
    assert_eq!(rebuild(&t, &sim), (2, 2, 2));
    assert!(stale(&t).is_empty());
}

#[test]
fn a_user_pick_shields_consumers_from_upstream_edits() {
    let (sim, t) = built();
    // The user approves a still of scene 1 in PatchWork: scene 2 and the clip consume the pick.
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 4)["properties"]["_lastApprovedData"] = json!("refs/avatar.png")
    });
    assert_eq!(
        rebuild(&t, &sim),
        (2, 2, 2),
        "scene02 image and video consume the new pick"
    );
    // Now editing scene 1's prompt rebuilds only scene 1.
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 1)["properties"]["text"] = json!("another kitchen")
    });
    assert_eq!(stale(&t), vec!["image:scene01"]);
    assert_eq!(rebuild(&t, &sim), (2, 0, 1));
}

#[test]
fn changing_a_pick_rebuilds_only_what_consumes_it() {
    let (sim, t) = built();
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 7)["properties"]["_lastApprovedData"] = json!("refs/product.png")
    });
    assert_eq!(stale(&t), vec!["video:scene02"]);
    let p = plan(&t);
    assert_eq!(p["video:scene02"].1, "key_changed");
    assert_eq!(rebuild(&t, &sim), (0, 2, 1));
}

#[test]
fn reference_bytes_rebuild_consumers_but_moving_the_file_rebuilds_nothing() {
    let (sim, t) = built();
    // Move and rename the avatar, and point the flow at the new place.
    std::fs::create_dir_all(t.path().join("assets/people")).unwrap();
    std::fs::rename(
        t.path().join("refs/avatar.png"),
        t.path().join("assets/people/hero.png"),
    )
    .unwrap();
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 2)["properties"]["imageData"] = json!("assets/people/hero.png")
    });
    assert!(stale(&t).is_empty());
    assert_eq!(rebuild(&t, &sim), (0, 0, 0));
    // New bytes of the same size under the same name (the last byte, the
    // IEND checksum, changed: the key is the bytes, not the picture), so a
    // hash cache that trusted path and size without the mtime would miss
    // it: scene01 and, through its pick, its consumers.
    let hero = t.path().join("assets/people/hero.png");
    let mut bytes = std::fs::read(&hero).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&hero, &bytes).unwrap();
    let p = plan(&t);
    assert_eq!(p["image:scene01"], ("stale".into(), "key_changed".into()));
    assert_eq!(
        stale(&t),
        vec!["image:scene01", "image:scene02", "video:scene02"]
    );
    assert_eq!(rebuild(&t, &sim), (4, 2, 3));
}

#[test]
fn layout_titles_and_ui_state_rebuild_nothing() {
    let (sim, t) = built();
    t.edit_json("ad.nbflow", |v| {
        for tab in 0..2 {
            for n in v["tabs"][tab]["graphData"]["nodes"].as_array_mut().unwrap() {
                n["pos"] = json!([n["pos"][0].as_f64().unwrap_or(0.0) + 100.0, 5]);
                n["size"] = json!([500, 500]);
                n["properties"]["_advancedOpen"] = json!(true);
                n["properties"]["_pinned"] = json!(true);
            }
        }
        node_mut(v, 0, 3)["title"] = json!("Scene 1 — kitchen, morning (v2)");
        node_mut(v, 0, 1)["properties"]["variableName"] = json!("kitchenPrompt");
        v["tabs"][0]["canvasState"] = json!({"offsetX": -300, "offsetY": 40, "scale": 1.5});
        v["tabs"][0]["graphData"]["groups"] = json!([{"title": "Act 1", "bounding": [0, 0, 800, 600], "color": "#3f789e", "font_size": 24}]);
    });
    assert!(stale(&t).is_empty());
    assert_eq!(rebuild(&t, &sim), (0, 0, 0));
}

#[test]
fn only_rerolls_exactly_the_selected_tasks() {
    let (sim, t) = built();
    let before = sim.stats();
    let r = t.build(&sim, &["--candidates", C, "--only", "scene01"]);
    r.assert_code(0);
    let s = r.json();
    assert_eq!(s["calls"]["image"], 2);
    assert_eq!(s["calls"]["video"], 0);
    assert_eq!(s["tasks"]["built"], 1);
    let after = sim.stats();
    assert_eq!(after.image_submits - before.image_submits, 2);
    assert_eq!(after.video_submits, before.video_submits);
    // Dependents are left stale for the next plain run; the old candidates are in the history.
    assert_eq!(stale(&t), vec!["image:scene02", "video:scene02"]);
    let show = t.run(&["cache", "show", "scene01", "--json"]).json();
    let history = show["tasks"][0]["record"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["candidates"].as_array().unwrap().len(), 2);
    // A glob and a TAB/ID selector; rows are selected together.
    let r = t.build(
        &sim,
        &[
            "--candidates",
            C,
            "--only",
            "b-roll-*",
            "--only",
            "BRoll/10",
        ],
    );
    r.assert_code(0);
    assert_eq!(r.json()["calls"]["image"], 6);
    assert_eq!(r.json()["calls"]["video"], 2);
}

#[test]
fn only_with_an_unknown_name_lists_the_closest() {
    let (_sim, t) = built();
    let r = t.run(&["plan", "--only", "scene7"]);
    r.assert_code(2);
    assert!(r.stderr.contains("matches no task"), "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l == "caused by: closest names: scene01, scene02, scene09, b-roll-product"),
        "{}",
        r.stderr
    );
}

#[test]
fn plan_calls_nothing_and_prices_the_work() {
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    // A server that does not exist: plan never contacts it.
    let r = t.run(&[
        "plan",
        "--candidates",
        C,
        "--json",
        "--server",
        "http://127.0.0.1:9",
    ]);
    r.assert_code(0);
    let v = r.json();
    assert_eq!(v["calls"]["image"], 10);
    assert_eq!(v["calls"]["video"], 4);
    // 10 stills at 1 credit, 2 fast clips at 10, 2 relaxed clips at 0.
    assert_eq!(v["credits"], 30.0);
    assert_eq!(v["summary"]["stale"], 7);
    assert!(
        !t.path().join(".nbbuild").exists()
            || t.run(&["cache", "ls", "--json"]).json()["tasks"]
                .as_array()
                .unwrap()
                .is_empty()
    );
    // Prices can be overridden beside the flow.
    let t = t.write("nbbuild.toml", "[prices]\nnano_banana_2 = 2.5\n");
    assert_eq!(
        t.run(&["plan", "--candidates", C, "--json"]).json()["credits"],
        45.0
    );
}

#[test]
fn budget_refuses_a_plan_above_it() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = t.build(&sim, &["--candidates", C, "--budget", "10"]);
    r.assert_code(2);
    assert!(r.stderr.contains("over the budget of 10"), "{}", r.stderr);
    assert_eq!(sim.submits(), 0);
    t.build(&sim, &["--candidates", C, "--budget", "30"])
        .assert_code(0);
}

#[test]
fn explain_shows_the_changed_fields_and_the_prompt_diff() {
    let (_sim, t) = built();
    t.edit_json("ad.nbflow", |v| {
        let text = node_mut(v, 0, 5)["properties"]["text"]
            .as_str()
            .unwrap()
            .replace("living room", "sun room");
        node_mut(v, 0, 5)["properties"]["text"] = json!(text);
        node_mut(v, 0, 6)["properties"]["aspectRatio"] = json!("1:1");
    });
    let r = t.run(&["explain", "--candidates", C, "scene02"]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("stale: prompt, aspect_ratio changed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("aspect_ratio: 9:16 -> 1:1"),
        "{}",
        r.stdout
    );
    // The prompt diff: the stored line out, the current line in.
    let diff_line = |sign: &str, text: &str| {
        r.stdout
            .lines()
            .any(|l| l.trim_start().starts_with(sign) && l.contains(text))
    };
    assert!(diff_line("- ", "\"Scene 2 - living room\""), "{}", r.stdout);
    assert!(diff_line("+ ", "\"Scene 2 - sun room\""), "{}", r.stdout);
    assert!(!diff_line("- ", "sun room"), "{}", r.stdout);
    assert!(!diff_line("+ ", "living room"), "{}", r.stdout);
    // The video consumes scene02's pick: its key is not known yet.
    assert!(
        r.stdout.contains("consumes scene02, which will be rebuilt"),
        "{}",
        r.stdout
    );
    let j = t
        .run(&[
            "explain",
            "ad.nbflow",
            "scene02",
            "--candidates",
            C,
            "--json",
        ])
        .json();
    let image = j["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["current"]["kind"] == "image")
        .unwrap();
    let fields: Vec<&str> = image["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["prompt", "aspect_ratio"]);
    assert_eq!(image["stored"]["aspect_ratio"], "9:16");
    // A fresh task says so.
    let fresh = t.run(&["explain", "--candidates", C, "scene01"]);
    assert!(fresh.stdout.contains("fresh"), "{}", fresh.stdout);
}

#[test]
fn retries_cannot_push_spending_past_the_budget() {
    // Every still is flagged, so QA re-rolls push spending past the plan's
    // estimate (5 stills = 5 credits); the budget stops launching at 7,
    // even with three candidates in flight at once, and the run says so.
    let sim = Sim::start(nbbuild_sim::SimConfig {
        flaw_rate: 1.0,
        slots: 5,
        ..fast_sim()
    });
    let t = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("NBBUILD_QA_URL", &format!("{}/v1", sim.url))
        .env("NBBUILD_QA_MODEL", "sim-vision");
    let r = t.build(
        &sim,
        &[
            "--candidates",
            "1",
            "--mode",
            "images",
            "--budget",
            "7",
            "--concurrency",
            "3",
        ],
    );
    r.assert_code(1);
    assert!(
        r.stderr.contains("budget of 7 credits would be passed"),
        "{}",
        r.stderr
    );
    assert_eq!(
        sim.stats().image_submits,
        7,
        "exactly the budget, never more"
    );
    assert!(r.json()["credits"].as_f64().unwrap() <= 7.0);
}
