//! The executor: the scheduler (`scheduler.rs`) says what starts when, each
//! started task (`task.rs`) decides and generates its slots, the runner
//! (`runner/`) runs one candidate, the limiter (`limiter.rs`) caps what is
//! in flight.
//!
//! A task is started once its inputs' picks are known; it computes its key
//! and either finds it fresh in the store or generates the missing
//! candidates. At most `concurrency` candidates hold a slot at the service
//! at once (from submission until the service reports them done).

#[cfg(test)]
mod fake;
pub mod inputs;
pub mod limiter;
pub mod runner;
pub mod scheduler;
pub mod state;
mod task;

use crate::compile::{InputSource, TaskKind};
use crate::generator::{GenInput, Generator, RefImage};
use crate::glabs::FailureKind;
use crate::plan::{is_flagged, judge, slots_to_generate, Decider, PlanItem, Reason, Status};
use crate::progress::{Event, Reporter};
use crate::qa::{Review, Reviewer};
use inputs::Inputs;
use nbbuild_cache::{Store, TaskRecord};
use runner::{CandidateJob, Policy};
use scheduler::{Action, Completion, Scheduler};
pub use state::{Failure, TaskOutcome, TaskState};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use task::{failed, run_task};
pub use task::{review, TEAM_CACHE};
use tokio::sync::{mpsc, Notify};

/// How a run treats each task.
#[derive(Clone)]
pub struct ExecOptions {
    pub concurrency: usize,
    /// Serve waiting candidates by critical-path length (the default);
    /// false: first come, first served (for comparison in benchmarks).
    pub critical_path_first: bool,
    /// Lower the cap on a 429 and raise it after successes (the default);
    /// false: a fixed cap (for comparison in benchmarks).
    pub adaptive: bool,
    pub policy: Policy,
    /// Stop launching once this many credits would be spent.
    pub budget: Option<f64>,
    pub prices: crate::plan::Prices,
    /// Visual QA of stills; None when QA is off.
    pub reviewer: Option<Arc<dyn Reviewer>>,
    /// Re-rolls allowed per flagged candidate.
    pub qa_attempts: u32,
    /// Publish each candidate as soon as it is stored (and past QA).
    pub mirror: Option<EagerMirror>,
    /// Puts back stored inputs whose verified read fails (see `repair.rs`).
    pub repair: Option<Arc<crate::repair::Repairer>>,
    /// The team cache: asked (and claimed) before paying, written after.
    pub remote: Option<Arc<crate::remote::Remote>>,
}

pub use crate::mirror::publish::EagerMirror;

/// Shared by every task of a run.
pub struct Ctx {
    pub store: Arc<Store>,
    pub generator: Arc<dyn Generator>,
    pub inputs: Inputs,
    pub report: Arc<dyn Reporter>,
    pub policy: Policy,
    /// The adaptive cap on candidates at G-Labs.
    pub slots: Arc<limiter::Limiter>,
    /// Held while a lost answer is looked up and its task recorded, so two
    /// slots never adopt the same task.
    pub adopting: tokio::sync::Mutex<()>,
    /// Submissions sent and not yet answered and recorded, per (type,
    /// prompt): an adoption waits until the other ones with its prompt are
    /// resolved, so it never takes a task whose answer is still on its way.
    pub outstanding: Mutex<std::collections::HashMap<(TaskKind, String), usize>>,
    /// unix ms of the last submission accepted or candidate stored: with
    /// `policy.max_wait`, how long backpressure may last without progress.
    pub last_progress: AtomicU64,
    /// Latencies seen per model, for polling close to the expected finish.
    pub latencies: runner::Latencies,
    pub image_calls: AtomicU64,
    pub video_calls: AtomicU64,

    pub qa_calls: AtomicU64,
    pub reviewer: Option<Arc<dyn Reviewer>>,
    pub qa_attempts: u32,
    pub remote: Option<Arc<crate::remote::Remote>>,
    mirror: Option<EagerMirror>,
    uploads: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    uploaded: Arc<AtomicU64>,
    spent_milli: AtomicU64,
    budget: Option<f64>,
    prices: crate::plan::Prices,
    /// Ctrl-C: stop launching and stop polling.
    interrupted: AtomicBool,
    /// Why nothing more is launched (server down, store failing, Ctrl-C).
    halted: Mutex<Option<String>>,
    wake: Notify,
}

impl Ctx {
    pub fn stopping(&self) -> bool {
        self.halted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
    pub fn stop_reason(&self) -> String {
        self.halted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "stopped".into())
    }
    /// Stop launching new work (the first reason is kept).
    pub fn halt(&self, why: &str) {
        let mut h = self.halted.lock().unwrap_or_else(|e| e.into_inner());
        if h.is_none() {
            *h = Some(format!("not started: {why}"));
            drop(h);
            self.report.event(Event::Warn(format!(
                "{why}: no new work is launched; what arrived is kept"
            )));
        }
    }
    /// Upload a stored candidate in the background; the publish step after
    /// the run catches (and reports) anything that did not make it.
    pub fn publish_soon(&self, label: &str, kind: TaskKind, key: &str, slot: u32, object: &str) {
        let Some(m) = &self.mirror else { return };
        let handle = crate::mirror::publish::eager(
            m,
            &self.store,
            &self.uploaded,
            crate::mirror::publish::Landed {
                label,
                kind,
                key,
                slot,
                object,
            },
        );
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Ctrl-C.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.halt("interrupted");
        self.wake.notify_waiters();
    }
    /// Sleep, cut short by Ctrl-C.
    pub async fn sleep(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wake.notified() => {}
        }
    }
    /// A submission G-Labs accepted.
    pub fn count_call(&self, kind: TaskKind) {
        match kind {
            TaskKind::Image => self.image_calls.fetch_add(1, Ordering::SeqCst),
            TaskKind::Video => self.video_calls.fetch_add(1, Ordering::SeqCst),
        };
    }
    pub fn spent(&self) -> f64 {
        self.spent_milli.load(Ordering::SeqCst) as f64 / 1000.0
    }
    fn price_milli(price: f64) -> u64 {
        (price * 1000.0).round() as u64
    }
    /// Reserve the price of one call of `model` before submitting it, so
    /// concurrent candidates cannot pass the budget together. Refused (and
    /// the run stops launching) when it would pass the budget.
    pub fn reserve(&self, price: f64) -> Result<(), String> {
        let price = Self::price_milli(price);
        let limit = self.budget.map(|b| (b * 1000.0).round() as u64);
        let mut cur = self.spent_milli.load(Ordering::SeqCst);
        loop {
            if limit.is_some_and(|l| cur + price > l) {
                let msg = format!(
                    "the budget of {} would be passed ({} spent)",
                    self.prices.format(self.budget.unwrap_or(0.0)),
                    self.prices.format(cur as f64 / 1000.0)
                );
                self.halt(&msg);
                return Err(format!("not started: {msg}"));
            }
            match self.spent_milli.compare_exchange(
                cur,
                cur + price,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }
    /// Give back a reservation whose submission G-Labs did not accept.
    pub fn release(&self, price: f64) {
        let _ = self
            .spent_milli
            .fetch_sub(Self::price_milli(price), Ordering::SeqCst);
    }
}

pub struct RunReport {
    pub outcomes: Vec<TaskOutcome>,
    /// Reference images the mirror refused (candidates' failures sit in their outcomes).
    pub publish_failures: Vec<String>,
    pub image_calls: u64,
    pub video_calls: u64,
    pub qa_calls: u64,
    /// Files the mirror received while the run went on.
    pub uploads: u64,
    pub credits: f64,
    pub interrupted: bool,
    pub halted: Option<String>,
}

pub struct Executor {
    pub ctx: Arc<Ctx>,
    pub opts: ExecOptions,
}

impl Executor {
    pub fn new(
        store: Arc<Store>,
        generator: Arc<dyn Generator>,
        dir: &std::path::Path,
        report: Arc<dyn Reporter>,
        opts: ExecOptions,
    ) -> Executor {
        let ctx = Ctx {
            inputs: Inputs::new(store.clone(), dir).repairing(opts.repair.clone()),
            store,
            generator,
            report,
            policy: opts.policy.clone(),
            slots: Arc::new({
                let l = limiter::Limiter::new(opts.concurrency.max(1));
                if opts.adaptive {
                    l
                } else {
                    l.fixed()
                }
            }),
            adopting: tokio::sync::Mutex::new(()),
            outstanding: Mutex::new(std::collections::HashMap::new()),
            last_progress: AtomicU64::new(runner::now_ms()),
            latencies: runner::Latencies::default(),
            image_calls: AtomicU64::new(0),
            video_calls: AtomicU64::new(0),

            qa_calls: AtomicU64::new(0),
            reviewer: opts.reviewer.clone(),
            qa_attempts: opts.qa_attempts,
            remote: opts.remote.clone(),
            mirror: opts.mirror.clone(),
            uploads: Mutex::new(Vec::new()),
            uploaded: Arc::new(AtomicU64::new(0)),
            spent_milli: AtomicU64::new(0),
            budget: opts.budget,
            prices: opts.prices.clone(),
            interrupted: AtomicBool::new(false),
            halted: Mutex::new(None),
            wake: Notify::new(),
        };
        Executor {
            ctx: Arc::new(ctx),
            opts,
        }
    }

    /// Run every task the decider's flow holds; returns when all reached a
    /// final state. The scheduler (`scheduler.rs`) says what starts when;
    /// each started task runs on its own tokio task and reports back on one
    /// channel of completions.
    pub async fn run(&self, decider: Arc<Decider>) -> RunReport {
        let compiled = decider.compiled.clone();
        let n = compiled.tasks.len();
        let priorities = if self.opts.critical_path_first {
            critical_path(&compiled)
        } else {
            vec![0; n]
        };
        let mut sched = Scheduler::new(
            compiled.tasks.iter().map(|t| t.deps().collect()).collect(),
            (0..n).map(|i| decider.skip(i).is_some()).collect(),
            compiled.tasks.iter().map(|t| t.label()).collect(),
        );
        let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
        let mut actions = sched.begin();
        while !sched.finished() {
            for action in std::mem::take(&mut actions) {
                match action {
                    Action::Start { task, picks } => {
                        let (ctx, decider, events) =
                            (self.ctx.clone(), decider.clone(), tx.clone());
                        let priority = priorities[task];
                        let inner = tokio::spawn(async move {
                            run_task(&ctx, &decider, task, picks, priority, &events).await
                        });
                        let tx = tx.clone();
                        let ctx = self.ctx.clone();
                        tokio::spawn(async move {
                            let outcome = match inner.await {
                                Ok(o) => o,
                                Err(e) => {
                                    ctx.halt("an internal error stopped one task");
                                    failed(
                                        None,
                                        FailureKind::Internal,
                                        format!("internal error: {e}"),
                                    )
                                }
                            };
                            let _ = tx.send(Completion::Done(task, outcome));
                        });
                    }
                    Action::Finished { task } => {
                        let t = &compiled.tasks[task];
                        let Some(outcome) = sched.outcome(task) else {
                            continue;
                        };
                        self.ctx.report.event(Event::TaskDone {
                            task: format!("{} {}", t.kind.as_str(), t.label()),
                            state: outcome.state.as_str(),
                            note: match outcome.failures.first() {
                                Some(f)
                                    if matches!(
                                        outcome.state,
                                        TaskState::Failed | TaskState::Skipped
                                    ) =>
                                {
                                    f.message.clone()
                                }
                                _ => outcome.note.clone(),
                            },
                        });
                    }
                }
            }
            if sched.finished() {
                break;
            }
            // The executor holds a sender, so this never ends before every
            // started task has reported.
            match rx.recv().await {
                Some(c) => actions = sched.on(c),
                None => break,
            }
        }
        // Uploads started as candidates landed.
        let uploads =
            std::mem::take(&mut *self.ctx.uploads.lock().unwrap_or_else(|e| e.into_inner()));
        for u in uploads {
            let _ = u.await;
        }
        RunReport {
            outcomes: sched.into_outcomes(),
            publish_failures: Vec::new(),
            image_calls: self.ctx.image_calls.load(Ordering::SeqCst),
            video_calls: self.ctx.video_calls.load(Ordering::SeqCst),
            qa_calls: self.ctx.qa_calls.load(Ordering::SeqCst),
            uploads: self.ctx.uploaded.load(Ordering::SeqCst),
            credits: self.ctx.spent(),
            interrupted: self.ctx.interrupted(),
            halted: self
                .ctx
                .halted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Each task's priority: the longest latency-weighted path from it to the
/// end of the graph (a clip weighs about ten stills), so the chain that
/// bounds the run starts first.
pub fn critical_path(c: &crate::compile::Compiled) -> Vec<u64> {
    let weight = |i: usize| match c.tasks[i].kind {
        TaskKind::Image => 1,
        TaskKind::Video => 10,
    };
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); c.tasks.len()];
    for t in &c.tasks {
        for d in t.deps() {
            consumers[d].push(t.index);
        }
    }
    let mut path = vec![0u64; c.tasks.len()];
    // Dependency order reversed: every consumer is done before its input.
    for &i in c.order.iter().rev() {
        path[i] = weight(i) + consumers[i].iter().map(|&k| path[k]).max().unwrap_or(0);
    }
    path
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod critical_path_tests {
    use super::*;

    #[test]
    fn the_chain_that_bounds_the_run_comes_first() {
        let c = crate::synth::compile_chain(3, 2, 1);
        let p = critical_path(&c);
        let of = |kind: TaskKind, name: &str| {
            let t = c
                .tasks
                .iter()
                .find(|t| t.kind == kind && t.label() == name)
                .unwrap_or_else(|| panic!("{name}"));
            p[t.index]
        };
        // still 1 -> still 2 -> still 3, each also animated (a clip weighs 10).
        assert_eq!(of(TaskKind::Image, "scene03"), 11);
        assert_eq!(of(TaskKind::Image, "scene02"), 12);
        assert_eq!(of(TaskKind::Image, "scene01"), 13);
        assert_eq!(of(TaskKind::Video, "scene01"), 10);
        // Independent stills wait behind all of it.
        assert_eq!(of(TaskKind::Image, "scene04"), 1);
    }
}
