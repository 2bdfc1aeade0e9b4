//! Unit tests of the executor against the in-memory generator
//! (`fake.rs`), the real store on disk and the real decider: the scheduler
//! starts consumers on their input's pick, and the plan's quote is what a build spends (a seeded property test).

use super::fake::Fake;
use super::runner::Policy;
use super::{ExecOptions, Executor, RunReport, TaskState};
use crate::commands::plan::StoreView;
use crate::compile::{compile, CompileOptions, Compiled, TaskKind};
use crate::flow::Flow;
use crate::plan::{Decider, Plan, PlanOptions};
use crate::progress::Silent;
use nbbuild_cache::Store;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Project {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    flow: Value,
    candidates: u32,
    opts: PlanOptions,
}

impl Project {
    fn new(flow: Value) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("refs")).unwrap();
        write_png(dir.path(), "refs/avatar.png", 0);
        write_png(dir.path(), "refs/other.png", 1);
        let store = Arc::new(Store::open(&dir.path().join(".nbbuild")).unwrap());
        Project {
            dir,
            store,
            flow,
            candidates: 2,
            opts: PlanOptions::default(),
        }
    }

    fn compiled(&self) -> Compiled {
        let flow = Flow::parse(&self.flow.to_string()).unwrap();
        let root = self.dir.path().to_path_buf();
        let exists = move |p: &str| root.join(p).exists();
        compile(
            &flow,
            &CompileOptions {
                candidates: self.candidates,
                ref_image: None,
                file_exists: &exists,
            },
        )
        .unwrap()
    }

    fn decider(&self) -> Arc<Decider> {
        let view = StoreView::new(
            self.store.clone(),
            self.dir.path().to_path_buf(),
            Default::default(),
        );
        Arc::new(Decider::new(
            Arc::new(self.compiled()),
            Arc::new(view),
            self.opts.clone(),
        ))
    }

    fn plan(&self) -> Plan {
        self.decider().plan()
    }

    fn build(&self, fake: Arc<Fake>, concurrency: usize) -> RunReport {
        let exec = Executor::new(
            self.store.clone(),
            fake,
            self.dir.path(),
            Arc::new(Silent),
            ExecOptions {
                concurrency,
                critical_path_first: true,
                adaptive: true,
                policy: fast_policy(),
                budget: None,
                prices: Default::default(),
                reviewer: None,
                qa_attempts: 0,
                mirror: None,
                repair: None,
                remote: None,
            },
        );
        let decider = self.decider();
        runtime().block_on(exec.run(decider))
    }
}

fn fast_policy() -> Policy {
    Policy {
        backoff: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        poll_start: Duration::from_millis(1),
        poll_max: Duration::from_millis(5),
        ..Policy::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn write_png(dir: &Path, rel: &str, variant: u64) {
    std::fs::write(
        dir.join(rel),
        nbbuild_sim::media::still("reference", variant, 24, 24, false),
    )
    .unwrap();
}

/// Every node of `flow` whose `type` ends with `ty`.
fn nodes_of<'a>(flow: &'a mut Value, ty: &str) -> Vec<&'a mut Value> {
    flow["tabs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|t| t["graphData"]["nodes"].as_array_mut().unwrap().iter_mut())
        .filter(|n| n["type"].as_str().is_some_and(|t| t.ends_with(ty)))
        .collect()
}

/// A bad tunnel day: a submission whose connection dropped, when the
/// service's list shows nothing was created, is sent again without spending
/// an attempt (it said nothing about a generation, like a 5xx to a submit):
/// five drops in a row, more than the three attempts, still build the
/// candidate, paying once.
#[test]
fn dropped_submissions_that_created_nothing_spend_no_attempt() {
    let mut p = Project::new(crate::synth::chain_flow(1, 0, "refs/avatar.png"));
    p.candidates = 1;
    p.opts.images_only = true;
    let fake = Arc::new(Fake {
        drop_first: 5.into(),
        ..Fake::default()
    });
    let report = p.build(fake.clone(), 1);
    assert_eq!(
        report
            .outcomes
            .iter()
            .filter(|o| o.state == TaskState::Built)
            .count(),
        1,
        "{:?}",
        report.outcomes
    );
    assert_eq!(fake.submits(), 1, "one task created, one paid");
    assert_eq!(report.image_calls, 1);
}

#[test]
fn a_consumer_is_submitted_while_its_input_still_has_candidates_out() {
    // scene01 -> scene02 (anchored on scene01's pick), 4 candidates each.
    let mut p = Project::new(crate::synth::chain_flow(2, 0, "refs/avatar.png"));
    p.candidates = 4;
    p.opts.images_only = true;
    let plan = p.plan();
    let head = &plan.items[plan
        .items
        .iter()
        .position(|i| i.kind == TaskKind::Image && i.name == "scene01")
        .unwrap()];
    let (head_key, head_prompt) = (
        head.key.clone().unwrap(),
        p.compiled().tasks[head.task].prompt.clone(),
    );
    let prompt = head_prompt.clone();
    let fake = Arc::new(Fake {
        hold: Some(Box::new(move |_, input| input.prompt == prompt)),
        ..Fake::default()
    });
    // Release scene01's c1 alone (its id is in the store before it is
    // polled), then wait for scene02 while c2..c4 are still held.
    let watcher = {
        let (fake, store) = (fake.clone(), p.store.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut released = false;
            while Instant::now() < deadline {
                if !released {
                    if let Some(f) = store
                        .task(&head_key)
                        .ok()
                        .flatten()
                        .and_then(|r| r.in_flight_for(0).cloned())
                    {
                        fake.release(&f.remote_task);
                        released = true;
                    }
                }
                let consumer_sent = fake.log().iter().any(|s| s.prompt != head_prompt);
                if consumer_sent {
                    let held = fake.held();
                    fake.release_all();
                    return Some(held);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            fake.release_all();
            None
        })
    };
    let report = p.build(fake.clone(), 5);
    let held_when_consumer_sent = watcher.join().unwrap();
    assert_eq!(
        held_when_consumer_sent,
        Some(3),
        "scene02 was not submitted while scene01's c2..c4 were still out"
    );
    assert_eq!(report.image_calls, 8);
    assert_eq!(fake.submits(), 8);
}

/// One seeded edit of the project, as a user makes them between builds.
fn edit(p: &mut Project, rng: &mut fastrand::Rng, round: u64) -> String {
    match rng.u32(0..7) {
        0 => {
            let mut prompts = nodes_of(&mut p.flow, "/Prompt");
            let i = rng.usize(0..prompts.len());
            let text = prompts[i]["properties"]["text"]
                .as_str()
                .unwrap()
                .to_string();
            prompts[i]["properties"]["text"] = Value::String(format!("{text} (edit {round})"));
            format!("prompt {i} edited")
        }
        1 => {
            write_png(p.dir.path(), "refs/avatar.png", 100 + round);
            "reference bytes replaced".into()
        }
        2 => {
            let mut gates: Vec<&mut Value> = nodes_of(&mut p.flow, "/Media")
                .into_iter()
                .filter(|n| n["properties"]["mode"] == "approve")
                .collect();
            let i = rng.usize(0..gates.len());
            let pick = match rng.u32(0..3) {
                0 => Value::Null,
                1 => Value::String("refs/other.png".into()),
                _ => Value::String("refs/avatar.png".into()),
            };
            gates[i]["properties"]["_lastApprovedData"] = pick.clone();
            format!("gate {i} pick set to {pick}")
        }
        3 => {
            p.candidates = rng.u32(1..=4);
            format!("--candidates {}", p.candidates)
        }
        4 => {
            p.opts.images_only = !p.opts.images_only;
            format!("--mode images {}", p.opts.images_only)
        }
        5 => {
            let n = p.compiled().tasks.len();
            let t = rng.usize(0..n);
            p.opts.only = Some(BTreeSet::from([t]));
            format!("--only task {t}")
        }
        _ => {
            p.opts.only = None;
            "a plain run".into()
        }
    }
}

/// Issue 11.1: with no fault injected, a build makes exactly the calls its
/// plan quoted, whatever was edited since the last build; after an
/// interrupted build, the next plan quotes exactly what is left.
#[test]
fn a_build_spends_exactly_what_its_plan_quoted() {
    for seed in 0..12u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut p = Project::new(crate::synth::chain_flow(3, 2, "refs/avatar.png"));
        let mut history = Vec::new();
        for round in 0..8u64 {
            history.push(edit(&mut p, &mut rng, round));
            let plan = p.plan();
            let quoted = plan.image_calls + plan.video_calls;
            // One build in five is cut off (the service goes down) after a few calls.
            let cut = (rng.u32(0..5) == 0 && quoted > 1).then(|| rng.usize(1..quoted as usize));
            let fake = Arc::new(Fake {
                down_after: cut,
                ..Fake::default()
            });
            let report = p.build(fake.clone(), 5);
            let spent = fake.submits() as u64;
            assert_eq!(
                spent,
                report.image_calls + report.video_calls,
                "seed {seed}: the report counts what was submitted"
            );
            match cut {
                None => assert_eq!(
                    spent,
                    quoted,
                    "seed {seed} round {round}: quoted {quoted}, spent {spent} after {history:?}\nplan: {:?}\nbuilt: {:?}",
                    plan.items
                        .iter()
                        .map(|i| (i.kind, &i.name, &i.status, i.calls))
                        .collect::<Vec<_>>(),
                    report
                        .outcomes
                        .iter()
                        .map(|o| (&o.state, &o.note, o.failures.len()))
                        .collect::<Vec<_>>()
                ),
                Some(_) => {
                    assert!(spent <= quoted, "seed {seed}: an interrupted build spent more than quoted");
                    history.push(format!("interrupted after {spent} calls"));
                }
            }
            // A complete plain build leaves nothing to do: what it handed
            // down is what the next plan sees.
            if cut.is_none() && p.opts.only.is_none() {
                let after = p.plan();
                let left = after.image_calls
                    + if p.opts.images_only {
                        0
                    } else {
                        after.video_calls
                    };
                assert_eq!(
                    left, 0,
                    "seed {seed} round {round}: still stale after a full build ({history:?})"
                );
            }
        }
        // And a plain rerun of the last state is free.
        p.opts.only = None;
        let left = p.plan();
        let fake = Arc::new(Fake::default());
        p.build(fake.clone(), 5);
        assert_eq!(fake.submits() as u64, left.image_calls + left.video_calls);
        let again = p.plan();
        assert_eq!(again.image_calls + again.video_calls, 0, "seed {seed}");
    }
}
