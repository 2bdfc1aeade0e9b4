//! Never pay twice, sharper (issue 12): an image input is its content, so
//! the PatchWork round trip plans nothing; candidates are samples, not
//! inputs; a re-roll keeps what you had until the new take exists; a
//! reference that cannot be had blocks only its tasks, before any call.
//! Money is counted by the simulator.

use crate::harness::{error_kinds, fast_sim, node_mut, Sim, Test};
use serde_json::{json, Value};

fn plan(t: &Test, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--json"];
    args.extend_from_slice(extra);
    let r = t.run(&args);
    r.assert_code(0);
    r.json()
}

fn planned_calls(p: &Value) -> u64 {
    p["calls"]["image"].as_u64().unwrap() + p["calls"]["video"].as_u64().unwrap()
}

fn stale(p: &Value) -> Vec<String> {
    p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "stale")
        .map(|t| {
            format!(
                "{}:{}",
                t["kind"].as_str().unwrap(),
                t["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// The newest generated flow becomes the input, as after opening it in
/// PatchWork and saving.
fn take_generated_as_input(t: &Test) {
    let g = t.generated();
    std::fs::write(
        t.path().join("ad.nbflow"),
        serde_json::to_string_pretty(&g).unwrap(),
    )
    .unwrap();
}

#[test]
fn round_trips_through_the_generated_flow_plan_and_pay_nothing() {
    for mirror in [false, true] {
        let sim = Sim::start(fast_sim());
        let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
        let mirror_dir = t.path().join("mirror");
        let spec = format!("dir:{}", mirror_dir.display());
        let mut extra = vec!["--candidates", "2"];
        if mirror {
            extra.extend(["--mirror", spec.as_str()]);
        }
        t.build(&sim, &extra).assert_code(0);
        let paid = sim.submits();
        assert!(paid > 0);
        take_generated_as_input(&t);
        if mirror {
            // The references now name the mirror's copies, not refs/.
            let v: Value = serde_json::from_str(&t.read("ad.nbflow")).unwrap();
            let r = node_mut(&mut v.clone(), 0, 2)["properties"]["imageData"].clone();
            assert!(
                r.as_str().unwrap().contains("mirror"),
                "the generated flow points references at the mirror: {r}"
            );
        }
        let p = plan(&t, &["--candidates", "2"]);
        assert_eq!(planned_calls(&p), 0, "mirror {mirror}: {:?}", stale(&p));
        let again = t.build(&sim, &extra);
        again.assert_code(0);
        assert_eq!(sim.submits(), paid, "mirror {mirror}: the round trip paid");
    }
}

#[test]
fn a_pick_naming_the_auto_pick_rebuilds_nothing_and_another_pick_exactly_its_consumers() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--candidates", "2"]).assert_code(0);
    let paid = sim.submits();
    let asset = |k: u32| {
        let p = t.path().join(format!(
            "Assets/XYZG1/generated-images/v0-3/scene01-c{k}.png"
        ));
        assert!(p.exists(), "{}", p.display());
        p
    };
    // The gate's pick set to the file URL of the current auto-pick (c1).
    let auto = format!("file://{}", asset(1).canonicalize().unwrap().display());
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 4)["properties"]["_lastApprovedData"] = json!(auto)
    });
    let p = plan(&t, &["--candidates", "2"]);
    assert_eq!(planned_calls(&p), 0, "{:?}", stale(&p));
    // The same pick as a path relative to the flow.
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 4)["properties"]["_lastApprovedData"] =
            json!("Assets/XYZG1/generated-images/v0-3/scene01-c1.png")
    });
    assert_eq!(planned_calls(&plan(&t, &["--candidates", "2"])), 0);
    // Another candidate: exactly what consumes the gate.
    let other = format!("file://{}", asset(2).canonicalize().unwrap().display());
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 4)["properties"]["_lastApprovedData"] = json!(other)
    });
    let p = plan(&t, &["--candidates", "2"]);
    assert_eq!(stale(&p), vec!["image:scene02", "video:scene02"]);
    let quoted = planned_calls(&p);
    t.build(&sim, &["--candidates", "2"]).assert_code(0);
    assert_eq!(
        sim.submits() - paid,
        quoted,
        "the build spent what the plan quoted"
    );
}

#[test]
fn candidates_are_samples_raising_generates_only_the_missing_and_lowering_is_free() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--mode", "images", "--candidates", "2"])
        .assert_code(0);
    let stills = sim.stats().image_submits / 2;
    assert!(stills >= 3);
    // Raising: only slots c3 and c4 of each still.
    let p = plan(&t, &["--mode", "images", "--candidates", "4"]);
    assert_eq!(planned_calls(&p), stills * 2);
    let before = sim.stats().image_submits;
    t.build(&sim, &["--mode", "images", "--candidates", "4"])
        .assert_code(0);
    assert_eq!(sim.stats().image_submits - before, stills * 2);
    // Lowering: free, and nothing is regenerated.
    let p = plan(&t, &["--mode", "images", "--candidates", "1"]);
    assert_eq!(planned_calls(&p), 0, "{:?}", stale(&p));
    let before = sim.stats().image_submits;
    t.build(&sim, &["--mode", "images", "--candidates", "1"])
        .assert_code(0);
    assert_eq!(sim.stats().image_submits, before);
}

#[test]
fn a_failed_reroll_keeps_the_old_candidates_current() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--mode", "images", "--candidates", "2"])
        .assert_code(0);
    let before = t.generated();
    let takes = |g: &Value| node_mut(&mut g.clone(), 0, 3)["properties"]["_savedImages"].clone();
    let old = takes(&before);
    assert_eq!(old.as_array().unwrap().len(), 2);
    // A server that rejects every call for scene 1's prompt.
    let failing = Sim::start(nbbuild_sim::SimConfig {
        policy_word: Some("kitchen".into()),
        ..fast_sim()
    });
    let r = t.build(
        &failing,
        &["--mode", "images", "--candidates", "2", "--only", "scene01"],
    );
    r.assert_code(1);
    assert!(failing.stats().image_submits >= 2, "the re-roll was tried");
    let after = t.generated();
    let now = takes(&after);
    assert_eq!(
        now.as_array().unwrap()[..2],
        old.as_array().unwrap()[..2],
        "the old takes stay current and first"
    );
    // And the next plain run pays nothing: the task is still complete.
    let p = plan(&t, &["--mode", "images", "--candidates", "2"]);
    assert_eq!(planned_calls(&p), 0, "{:?}", stale(&p));
}

#[test]
fn an_unreachable_reference_blocks_only_its_tasks_before_any_call() {
    let sim = Sim::start(fast_sim());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: nothing listens there
    let url = format!("http://127.0.0.1:{port}/product.png");
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 1, 3)["properties"]["imageData"] = json!(url)
    });
    let p = plan(&t, &["--mode", "images", "--candidates", "1"]);
    let blocked: Vec<String> = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "blocked")
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!blocked.is_empty());
    assert!(
        blocked.iter().all(|n| n.starts_with("b-roll")),
        "{blocked:?}"
    );
    // The plan leaves them out of its cost, and says so.
    assert_eq!(p["summary"]["blocked"], blocked.len());
    let human = t.run(&["plan", "--mode", "images", "--candidates", "1"]);
    assert!(
        human
            .stdout
            .contains(&format!("{} blocked, not in the cost", blocked.len())),
        "{}",
        human.stdout
    );
    let quoted = planned_calls(&p);
    let r = t.build(&sim, &["--mode", "images", "--candidates", "1"]);
    r.assert_code(1);
    let said = r.stderr.find(&url).expect("the URL is named");
    assert!(
        r.stderr[said..].contains("blocks: image b-roll"),
        "{}",
        r.stderr
    );
    // Everything else was built, and exactly what the plan quoted was paid.
    assert_eq!(sim.submits(), quoted);
    let errors = t.errors_json().expect("errors.json");
    let kinds = error_kinds(&errors);
    assert!(
        kinds.iter().all(|k| k == "reference_unavailable"),
        "{kinds:?}"
    );
    assert_eq!(kinds.len(), blocked.len());
    // --fail-fast spends nothing at all.
    let t2 = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t2.edit_json("ad.nbflow", |v| {
        node_mut(v, 1, 3)["properties"]["imageData"] = json!(url)
    });
    let before = sim.submits();
    let r = t2.build(
        &sim,
        &["--mode", "images", "--candidates", "1", "--fail-fast"],
    );
    r.assert_code(2);
    assert_eq!(sim.submits(), before);
}

/// A store written with the version-1 recipe (the candidate count in the
/// key, URL inputs keyed as URLs) is migrated on open: nothing is paid again.
#[test]
fn a_store_from_the_previous_key_format_stays_fresh() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--mode", "images", "--candidates", "2"])
        .assert_code(0);
    let paid = sim.submits();
    // Rewrite every record as the previous release wrote it.
    {
        let store = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
        for (key, rec) in store.tasks().unwrap() {
            let mut v1 = serde_json::Map::new();
            for (k, val) in rec.preimage.as_object().unwrap() {
                if k == "images" {
                    v1.insert("candidates".into(), json!(2));
                }
                let val = if k == "key_version" {
                    json!(1)
                } else {
                    val.clone()
                };
                v1.insert(k.clone(), val);
            }
            let v1 = Value::Object(v1);
            let mut h = blake3::Hasher::new();
            h.update(b"nbbuild-task-key\0");
            h.update(&serde_json::to_vec(&v1).unwrap());
            let old_key = h.finalize().to_hex().to_string();
            store.rekey_task(&key, &old_key, v1).unwrap();
        }
        store.put_meta("key_version", "1").unwrap();
    }
    let p = plan(&t, &["--mode", "images", "--candidates", "2"]);
    assert_eq!(planned_calls(&p), 0, "{:?}", stale(&p));
    t.build(&sim, &["--mode", "images", "--candidates", "2"])
        .assert_code(0);
    assert_eq!(sim.submits(), paid);
}

/// The ledger agrees with each build's own summary and with the simulator.
#[test]
fn spend_lists_every_run_and_agrees_with_the_builds() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let a = t.build(&sim, &["--mode", "images", "--candidates", "1"]);
    a.assert_code(0);
    let b = t.build(&sim, &["--candidates", "1"]);
    b.assert_code(0);
    let r = t.run(&["spend", "--json"]);
    r.assert_code(0);
    let l = r.json();
    let runs = l["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (run, build) in runs.iter().zip([a.json(), b.json()]) {
        assert_eq!(run["image_calls"], build["calls"]["image"]);
        assert_eq!(run["video_calls"], build["calls"]["video"]);
        assert_eq!(run["credits"], build["credits"]);
    }
    let s = sim.stats();
    assert_eq!(l["total"]["image_calls"], s.image_submits);
    assert_eq!(l["total"]["video_calls"], s.video_submits);
    assert_eq!(l["total"]["runs"], 2);
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    assert_eq!(l["per_day"][&today]["runs"], 2);
    // --since tomorrow: nothing; a bad date: a usage error.
    let tomorrow = (chrono::Local::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let none = t.run(&["spend", "--json", "--since", &tomorrow]).json();
    assert_eq!(none["runs"].as_array().unwrap().len(), 0);
    t.run(&["spend", "--since", "last tuesday"]).assert_code(2);
    let human = t.run(&["spend"]);
    assert!(human.stdout.contains("total: 2 run(s)"), "{}", human.stdout);
}

/// Earlier takes stay reachable: after a re-roll, the generated flow lists
/// the new candidates first and then the replaced ones, so a take liked
/// before the re-roll can still be picked, and picking it pays nothing.
#[test]
fn earlier_takes_follow_the_current_ones_in_the_generated_flow() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--mode", "images", "--candidates", "2"])
        .assert_code(0);
    let takes = |g: &Value| -> Vec<String> {
        node_mut(&mut g.clone(), 0, 3)["properties"]["_savedImages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect()
    };
    let read = |u: &str| std::fs::read(u.strip_prefix("file://").unwrap()).unwrap();
    let before: Vec<Vec<u8>> = takes(&t.generated()).iter().map(|u| read(u)).collect();
    assert_eq!(before.len(), 2);
    t.build(
        &sim,
        &["--mode", "images", "--candidates", "2", "--only", "scene01"],
    )
    .assert_code(0);
    let after = takes(&t.generated());
    assert_eq!(
        after.len(),
        4,
        "2 new takes, then the 2 earlier ones: {after:?}"
    );
    let bytes: Vec<Vec<u8>> = after.iter().map(|u| read(u)).collect();
    assert!(
        !before.contains(&bytes[0]) && !before.contains(&bytes[1]),
        "new takes first"
    );
    assert!(
        before.contains(&bytes[2]) && before.contains(&bytes[3]),
        "then the earlier ones"
    );
    // The gate's gallery offers them too. The re-roll left scene02 stale
    // (its input's pick changed); picking the earlier take scene02 was built
    // from (the old c1) makes it fresh again for nothing, and picking the
    // other earlier take rebuilds exactly scene02.
    let gate = node_mut(&mut t.generated(), 0, 4)["properties"].clone();
    assert!(gate.to_string().contains(&after[2]), "{gate:#}");
    let args = ["--mode", "images", "--candidates", "2"];
    assert_eq!(stale(&plan(&t, &args)), vec!["image:scene02"]);
    let pick = |k: usize| {
        let u = after[k].clone();
        t.edit_json("ad.nbflow", |v| {
            node_mut(v, 0, 4)["properties"]["_lastApprovedData"] = json!(u)
        });
    };
    pick(2);
    assert!(stale(&plan(&t, &args)).is_empty());
    pick(3);
    assert_eq!(stale(&plan(&t, &args)), vec!["image:scene02"]);
}
