//! The executor: the scheduler decides what runs when (dependency order,
//! the concurrency cap), the runner (`runner.rs`) runs one candidate.
//!
//! Every task gets a tokio task that waits for its inputs, computes its key,
//! and either finds it fresh in the store or generates the missing
//! candidates. At most `concurrency` candidates hold a G-Labs slot at once
//! (a semaphore permit from submit to download).

#[cfg(test)]
mod fake;
pub mod inputs;
pub mod limiter;
pub mod runner;
pub mod scheduler;
pub mod state;

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

/// The review of a stored object by `reviewer`: from the verdict cache when
/// this reviewer judged these bytes before, else asked (and cached unless
/// unreviewed). QA calls take no generation slot.
pub async fn review(ctx: &Ctx, reviewer: &dyn Reviewer, object: &str) -> Review {
    let id = reviewer.id();
    if let Ok(Some(v)) = ctx.store.verdict(object, &id) {
        return Review::from_verdict(&v);
    }
    let bytes = match ctx.store.read_object(object, true) {
        Ok(b) => b,
        Err(e) => return Review::unreviewed(format!("cannot read the candidate: {e}")),
    };
    ctx.qa_calls.fetch_add(1, Ordering::SeqCst);
    let r = reviewer
        .review(&bytes, &ctx.store.object_path(object))
        .await;
    if r.is_cacheable() {
        let _ = ctx
            .store
            .put_verdict(object, &id, &r.to_verdict(&id, runner::now_ms()));
    }
    r
}

/// Review the stored stills of a task that this reviewer has not judged
/// (QA newly on, or another reviewer); true when any verdict was written.
async fn review_stored(ctx: &Ctx, key: &str, rec: &TaskRecord, n: u32) -> bool {
    let Some(reviewer) = ctx.reviewer.as_ref() else {
        return false;
    };
    let id = reviewer.id();
    let mut wrote = false;
    for c in rec.candidates.iter().filter(|c| c.slot < n) {
        // A person's verdict (the review page) wins over automatic QA.
        if c.qa.as_ref().is_some_and(|v| {
            (v.reviewer == id || v.reviewer == crate::qa::HUMAN_REVIEWER)
                && v.verdict != nbbuild_cache::Outcome::Unreviewed
        }) {
            continue;
        }
        let r = review(ctx, reviewer.as_ref(), &c.object).await;
        let v = r.to_verdict(&id, runner::now_ms());
        let store = ctx.store.clone();
        let (key, slot) = (key.to_string(), c.slot);
        let _ = tokio::task::spawn_blocking(move || {
            store.update_candidate(&key, slot, |cand| cand.qa = Some(v))
        })
        .await;
        wrote = true;
    }
    wrote
}

/// Ask the decider about task `i` with the live picks (store reads and
/// file hashes run on a blocking thread, never on the runtime's workers).
async fn decide(decider: &Arc<Decider>, i: usize, picks: &BTreeMap<usize, String>) -> PlanItem {
    let (d, p) = (decider.clone(), picks.clone());
    match tokio::task::spawn_blocking(move || d.decide(i, &p, &BTreeMap::new())).await {
        Ok(item) => item,
        Err(e) => {
            let mut item = decider.decide(i, picks, &BTreeMap::new());
            item.status = Status::Blocked {
                why: format!("internal error while deciding: {e}"),
            };
            item
        }
    }
}

async fn run_task(
    ctx: &Ctx,
    decider: &Arc<Decider>,
    i: usize,
    picks: BTreeMap<usize, String>,
    priority: u64,
    report: &mpsc::UnboundedSender<Completion>,
) -> TaskOutcome {
    let task = &decider.compiled.tasks[i];
    let skip = decider.skip(i);
    // What it needs: the same decision the plan made, now with the live picks.
    let n = task.params.candidates;
    let mut item = decide(decider, i, &picks).await;
    if skip.is_none() && task.kind == TaskKind::Image && ctx.reviewer.is_some() {
        if let (Some(key), Some(rec)) = (item.key.clone(), item.record.clone()) {
            if review_stored(ctx, &key, &rec, n).await {
                item = decide(decider, i, &picks).await;
            }
        }
    }
    let current = |rec: Option<&TaskRecord>| {
        rec.map(|r| {
            r.candidates
                .iter()
                .filter(|c| c.slot < n)
                .cloned()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    let reason = match &item.status {
        Status::Blocked { why } => {
            return failed(item.key, FailureKind::ReferenceUnavailable, why.clone())
        }
        Status::Skipped { why } => {
            let complete = item.record.as_ref().is_some_and(|r| judge(r, n).is_none());
            let mut o = TaskOutcome::new(if complete {
                TaskState::Fresh
            } else {
                TaskState::NotRun
            });
            o.key = item.key.clone();
            o.candidates = current(item.record.as_ref());
            if !complete {
                o.note = why.clone();
            }
            return o;
        }
        Status::Fresh => {
            let mut o = fresh_outcome(
                item.key.clone().unwrap_or_default(),
                current(item.record.as_ref()),
            );
            if let (Some(r), Some(k)) = (&ctx.remote, &item.key) {
                if r.was_pulled(k) {
                    o.note = TEAM_CACHE.into();
                }
            }
            // An input of an --only task kept as stored although incomplete.
            if item.record.as_ref().is_some_and(|r| judge(r, n).is_some()) {
                o.state = TaskState::NotRun;
                o.note = "input of an --only task: kept as stored".into();
            }
            return o;
        }
        Status::Stale(reason) => reason.clone(),
    };
    let mut reason = reason;
    let (Some(key), Some(preimage)) = (item.key.clone(), item.preimage.clone()) else {
        return failed(
            None,
            FailureKind::Internal,
            "the key of a task whose inputs exist is unknown".into(),
        );
    };
    let label = task.label();
    if ctx.stopping() {
        let mut o = TaskOutcome::new(TaskState::NotRun);
        o.key = Some(key);
        o.candidates = current(item.record.as_ref());
        o.note = ctx.stop_reason();
        return o;
    }
    let store = ctx.store.clone();
    let (k, l, v) = (key.clone(), label.clone(), preimage.to_value());
    let mut rec = match tokio::task::spawn_blocking(move || store.ensure_task(&k, &l, &v)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            ctx.halt(&format!("the store failed: {e}"));
            return failed(Some(key), FailureKind::Store, format!("store: {e}"));
        }
        Err(e) => return failed(Some(key), FailureKind::Internal, e.to_string()),
    };
    let _ = report.send(Completion::Generating(i));
    // Input bytes, then one job per slot the decider says to generate. A
    // re-roll replaces each slot only when its new candidate is committed, so
    // a failed re-roll leaves what was there.
    let mut refs: Vec<RefImage> = Vec::new();
    for inp in &task.inputs {
        let r = match &inp.source {
            InputSource::File(p) => ctx.inputs.file_bytes(p),
            InputSource::Url(u) => ctx.inputs.url_bytes(u).await,
            InputSource::Task(d) => {
                ctx.inputs
                    .object_bytes(&picks[d], &format!("input-{}.png", inp.slot))
                    .await
            }
        };
        match r {
            Ok(r) => refs.push(r),
            Err(m) => return failed(Some(key), FailureKind::ReferenceUnavailable, m),
        }
    }
    // The team cache, just before the first paid call: pulled if its
    // record landed since the plan, else claimed (or waited for while
    // another machine holds a live claim on it).
    let mut claim = None;
    if let (Some(remote), false) = (&ctx.remote, matches!(reason, Reason::Forced)) {
        let want = crate::remote::pull::Want {
            key: key.clone(),
            label: format!("{} {}", task.kind.as_str(), label),
            preimage: preimage.to_value(),
            candidates: n,
        };
        match remote
            .before_paying(&ctx.store, &want, &|| ctx.stopping())
            .await
        {
            crate::remote::pull::Gate::Build(c) => claim = c,
            crate::remote::pull::Gate::Pulled => {
                let again = decide(decider, i, &picks).await;
                match (&again.status, again.record.clone()) {
                    (Status::Fresh, _) => {
                        let mut o = fresh_outcome(key, current(again.record.as_ref()));
                        o.note = TEAM_CACHE.into();
                        return o;
                    }
                    (Status::Stale(r), Some(newer)) => {
                        reason = r.clone();
                        rec = newer;
                    }
                    _ => {}
                }
            }
        }
    }
    let request = Arc::new(GenInput::new(task, refs));
    let timeout = Duration::from_millis(task.params.timeout_ms);
    let forced = matches!(reason, Reason::Forced);
    // One history set per re-roll, named by when it started.
    let reroll = forced.then(|| format!("re-roll (--only) {}", runner::now_ms()));
    let mut jobs = Vec::new();
    for slot in slots_to_generate(&reason, Some(&rec), n) {
        jobs.push(runner::run(
            ctx,
            CandidateJob {
                task: label.clone(),
                key: key.clone(),
                slot,
                kind: task.kind,
                model: task.params.model.clone(),
                price: ctx.prices.of(task),
                timeout,
                request: request.clone(),
                resume: rec.in_flight_for(slot).cloned(),
                qa_numbering: rec
                    .candidate(slot)
                    .filter(|c| !forced && is_flagged(c))
                    .map_or(0, |c| c.qa_attempts + 1),
                reroll: reroll.clone(),
                submitting: rec.submitting_for(slot).map(|m| m.at),
                priority,
            },
        ));
    }
    // Slots finish in any order; consumers start as soon as the pick is
    // known: the first slot, in order, that is held or done and not flagged.
    let generating: Vec<u32> = slots_to_generate(&reason, Some(&rec), n);
    let mut done: BTreeMap<u32, Option<nbbuild_cache::Candidate>> = BTreeMap::new();
    let mut pending: futures_util::stream::FuturesUnordered<_> = jobs
        .into_iter()
        .zip(generating.iter().copied())
        .map(|(job, slot)| async move { (slot, job.await) })
        .collect();
    let mut results = Vec::new();
    let mut pick_sent = false;
    while let Some((slot, r)) = futures_util::StreamExt::next(&mut pending).await {
        let clean = match &r {
            Ok((c, None)) => Some(c.clone()),
            _ => None,
        };
        done.insert(slot, clean);
        results.push(r);
        if pick_sent {
            continue;
        }
        let mut known = None;
        for s in 0..n {
            match (generating.contains(&s), done.get(&s)) {
                (false, _) => match rec.candidate(s) {
                    Some(c) if !is_flagged(c) => {
                        known = Some(c.clone());
                        break;
                    }
                    _ => continue,
                },
                (true, Some(Some(c))) => {
                    known = Some(c.clone());
                    break;
                }
                (true, Some(None)) => continue,
                (true, None) => break,
            }
        }
        if let Some(c) = known {
            let _ = report.send(Completion::Pick(i, c.object.clone()));
            pick_sent = true;
        }
    }
    let mut failures = Vec::new();
    for r in results {
        if let Ok((_, Some(f))) = r {
            failures.push(f);
        } else if let Err(f) = r {
            ctx.report.event(Event::CandidateFailed {
                task: label.clone(),
                slot: f.candidate.unwrap_or(0),
                why: f.message.clone(),
            });
            failures.push(f);
        }
    }
    let store = ctx.store.clone();
    let k = key.clone();
    let rec = tokio::task::spawn_blocking(move || store.task(&k).ok().flatten())
        .await
        .ok()
        .flatten()
        .unwrap_or(rec);
    // A candidate out of QA attempts is reported (qa_exhausted) but stays in
    // the gallery: the task is built and its consumers go on.
    let mut o = TaskOutcome::new(
        if failures.iter().all(|f| f.kind == FailureKind::QaExhausted) {
            TaskState::Built
        } else {
            TaskState::Failed
        },
    );
    // Up to the team cache in the background once complete; the claim goes
    // after the record (or now, when there is nothing to write).
    if let Some(remote) = &ctx.remote {
        if o.state == TaskState::Built && judge(&rec, n).is_none() {
            remote.push_soon(&ctx.store, &key, n, claim.take());
        } else if let Some(c) = claim.take() {
            remote.release_soon(c);
        }
    }
    o.key = Some(key);
    o.candidates = current(Some(&rec));
    o.note = reason.describe();
    // Not started because the run stopped: not a failure of the task.
    if !failures.is_empty() && failures.iter().all(|f| f.kind == FailureKind::Halted) {
        o.state = TaskState::NotRun;
        o.note = failures[0].message.clone();
        failures.clear();
    }
    o.failures = failures;
    o
}
/// The note of a task made fresh by a record from the team cache.
pub const TEAM_CACHE: &str = "fresh (team cache)";

fn fresh_outcome(key: String, candidates: Vec<nbbuild_cache::Candidate>) -> TaskOutcome {
    let mut o = TaskOutcome::new(TaskState::Fresh);
    o.key = Some(key);
    o.candidates = candidates;
    o
}

fn failed(key: Option<String>, kind: FailureKind, message: String) -> TaskOutcome {
    let mut o = TaskOutcome::new(TaskState::Failed);
    o.key = key;
    o.failures.push(Failure {
        candidate: None,
        kind,
        attempts: 0,
        message,
    });
    o
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod critical_path_tests {
    use super::*;

    #[test]
    fn the_chain_that_bounds_the_run_comes_first() {
        let text = crate::synth::chain_flow(3, 2, "refs/avatar.png").to_string();
        let flow = crate::flow::Flow::parse(&text).unwrap();
        let exists = |_: &str| true;
        let c = crate::compile::compile(
            &flow,
            &crate::compile::CompileOptions {
                candidates: 1,
                ref_image: None,
                file_exists: &exists,
            },
        )
        .unwrap();
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
