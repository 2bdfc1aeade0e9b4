//! A build's live progress, for `nbbuild status` and the holder's other
//! readers: fed from the same progress events the terminal shows (a
//! [`LiveReporter`] fans them out), read as one JSON snapshot.
//!
//! Events name a task by its label; an image and a video task may share one.
//! Such a label is resolved to the task of that label whose inputs are done
//! (else the first one not done, in dependency order): exact when the clip
//! consumes the still, as usual; if both ran at once, a call could be counted
//! under the wrong kind (the totals stay right).

use crate::compile::{Compiled, TaskKind};
use crate::plan::{Plan, Prices};
use crate::progress::{Event, Reporter};
use crate::schema::{
    LiveCalls, LiveCandidates, LiveCredits, LiveFailure, LiveFlight, LiveLatency, LiveTasks,
    LiveView,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct TaskInfo {
    label: String,
    kind: TaskKind,
    price: f64,
    deps: Vec<usize>,
}

/// One candidate between its submission and its arrival (or failure).
struct Flight {
    task: usize,
    slot: u32,
    attempt: u32,
    /// "submitted", "re-attached" or "retrying".
    state: &'static str,
    /// When this attempt was submitted (or re-attached).
    since: Instant,
    /// Whether `since` is a submission of this run (its latency counts).
    timed: bool,
}

/// What the build has done so far. Every count comes from progress events.
pub struct Live {
    started: Instant,
    started_ms: u64,
    flow: String,
    concurrency: u32,
    phase: &'static str,
    tasks: Vec<TaskInfo>,
    /// Task indices by label, in dependency order.
    by_label: BTreeMap<String, Vec<usize>>,
    /// Final state of each task once it has one.
    done: Vec<Option<&'static str>>,
    started_task: Vec<bool>,
    flights: Vec<Flight>,
    /// Submissions, by kind (image, video).
    calls: [u64; 2],
    credits: f64,
    /// What `credits` is counted in (the route's unit).
    unit: crate::models::Unit,
    stored: [u64; 2],
    failed: [u64; 2],
    /// (sum of ms, count) of submission-to-stored times, by kind.
    latency: [(f64, u64); 2],
    failures: Vec<LiveFailure>,
    warnings: Vec<String>,
    quote: Option<Quote>,
    summary: Option<Value>,
}

struct Quote {
    tasks: usize,
    calls: [u64; 2],
    credits: f64,
}

fn k(kind: TaskKind) -> usize {
    match kind {
        TaskKind::Image => 0,
        TaskKind::Video => 1,
    }
}

impl Live {
    pub fn new(compiled: &Compiled, prices: &Prices, flow: &str, concurrency: u32) -> Live {
        let tasks: Vec<TaskInfo> = compiled
            .tasks
            .iter()
            .map(|t| TaskInfo {
                label: t.label(),
                kind: t.kind,
                price: prices.of(t),
                deps: t.deps().collect(),
            })
            .collect();
        let mut live = Live::with_tasks(tasks, &compiled.order, flow, concurrency);
        live.unit = prices.unit;
        live
    }

    fn with_tasks(tasks: Vec<TaskInfo>, order: &[usize], flow: &str, concurrency: u32) -> Live {
        let mut by_label: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in order {
            by_label.entry(tasks[i].label.clone()).or_default().push(i);
        }
        let n = tasks.len();
        Live {
            started: Instant::now(),
            started_ms: crate::exec::runner::now_ms(),
            flow: flow.to_string(),
            concurrency: concurrency.max(1),
            phase: "planning",
            tasks,
            by_label,
            done: vec![None; n],
            started_task: vec![false; n],
            flights: Vec::new(),
            calls: [0; 2],
            credits: 0.0,
            unit: crate::models::Unit::Credits,
            stored: [0; 2],
            failed: [0; 2],
            latency: [(0.0, 0); 2],
            failures: Vec::new(),
            warnings: Vec::new(),
            quote: None,
            summary: None,
        }
    }

    /// The plan's quote: what the run is expected to call and spend.
    pub fn quote(&mut self, plan: &Plan) {
        self.quote = Some(Quote {
            tasks: plan.stale().count(),
            calls: [plan.image_calls, plan.video_calls],
            credits: plan.credits,
        });
    }

    /// What the build is doing: "planning", "generating", "publishing",
    /// "writing outputs", "done".
    pub fn phase(&mut self, phase: &'static str) {
        self.phase = phase;
    }

    /// The run's summary, as recorded in the store.
    pub fn finish(&mut self, summary: Value) {
        self.phase = "done";
        self.summary = Some(summary);
    }

    fn resolve(&self, label: &str) -> Option<usize> {
        let cands = self.by_label.get(label)?;
        let open = |i: &&usize| self.done[**i].is_none();
        cands
            .iter()
            .filter(open)
            .find(|&&i| self.tasks[i].deps.iter().all(|d| self.done[*d].is_some()))
            .or_else(|| cands.iter().find(open))
            .or(cands.first())
            .copied()
    }

    fn flight(&self, label: &str, slot: u32) -> Option<usize> {
        self.flights
            .iter()
            .position(|f| f.slot == slot && self.tasks[f.task].label == label)
    }

    pub fn apply(&mut self, e: &Event) {
        let now = Instant::now();
        match e {
            Event::Start {
                tasks,
                calls,
                credits,
                ..
            } => {
                self.phase = "generating";
                if self.quote.is_none() {
                    self.quote = Some(Quote {
                        tasks: *tasks,
                        calls: [*calls, 0],
                        credits: *credits,
                    });
                }
            }
            Event::Submitted {
                task,
                slot,
                attempt,
            } => {
                let i = self.flight(task, *slot).map(|f| self.flights[f].task);
                let Some(i) = i.or_else(|| self.resolve(task)) else {
                    return;
                };
                self.started_task[i] = true;
                let fl = Flight {
                    task: i,
                    slot: *slot,
                    attempt: *attempt,
                    state: "submitting",
                    since: now,
                    timed: true,
                };
                match self.flight(task, *slot) {
                    Some(f) => self.flights[f] = fl,
                    None => self.flights.push(fl),
                }
            }
            // Paid: counted once, however many 429s came before.
            Event::Accepted { task, slot } => {
                let Some(f) = self.flight(task, *slot) else {
                    return;
                };
                let i = self.flights[f].task;
                self.calls[k(self.tasks[i].kind)] += 1;
                self.credits += self.tasks[i].price;
                self.flights[f].state = "submitted";
            }
            Event::Reattached { task, slot } => {
                let Some(i) = self.resolve(task) else { return };
                self.started_task[i] = true;
                let fl = Flight {
                    task: i,
                    slot: *slot,
                    attempt: 0,
                    state: "re-attached",
                    since: now,
                    timed: false,
                };
                match self.flight(task, *slot) {
                    Some(f) => self.flights[f] = fl,
                    None => self.flights.push(fl),
                }
            }
            Event::Retry { task, slot, .. } => {
                if let Some(f) = self.flight(task, *slot) {
                    self.flights[f].state = "retrying";
                }
            }
            Event::CandidateDone { task, slot } => {
                let Some(f) = self.flight(task, *slot) else {
                    return;
                };
                let fl = self.flights.remove(f);
                let kind = k(self.tasks[fl.task].kind);
                self.stored[kind] += 1;
                if fl.timed {
                    self.latency[kind].0 += (now - fl.since).as_secs_f64() * 1e3;
                    self.latency[kind].1 += 1;
                }
            }
            Event::CandidateFailed { task, slot, why } => {
                let i = match self.flight(task, *slot) {
                    Some(f) => Some(self.flights.remove(f).task),
                    None => self.resolve(task),
                };
                if let Some(i) = i {
                    self.failed[k(self.tasks[i].kind)] += 1;
                }
                self.failures.push(LiveFailure {
                    task: task.clone(),
                    candidate: slot + 1,
                    why: why.clone(),
                });
            }
            Event::TaskDone { task, state, .. } => {
                if let Some(i) = self.resolve(task) {
                    self.done[i] = Some(state);
                    self.flights.retain(|f| f.task != i);
                }
            }
            Event::Warn(m) => {
                if self.warnings.len() < 50 {
                    self.warnings.push(m.clone());
                }
            }
            Event::Info(_) => {}
        }
    }

    fn mean_latency(&self, kind: usize) -> Option<f64> {
        let (sum, n) = self.latency[kind];
        (n > 0).then(|| sum / n as f64)
    }

    /// Time left, from the latencies seen so far: the calls not yet made and
    /// what the ones in flight still need, spread over the concurrency cap.
    /// `None` until a latency of every kind still to come has been seen.
    fn eta_ms(&self, now: Instant) -> Option<f64> {
        let planned = self.quote.as_ref().map(|q| q.calls).unwrap_or([0, 0]);
        let mut work = 0.0;
        for (kind, &planned) in planned.iter().enumerate() {
            let flying: Vec<&Flight> = self
                .flights
                .iter()
                .filter(|f| k(self.tasks[f.task].kind) == kind)
                .collect();
            let left =
                planned.saturating_sub(self.stored[kind] + self.failed[kind] + flying.len() as u64);
            if left == 0 && flying.is_empty() {
                continue;
            }
            let mean = self.mean_latency(kind)?;
            work += left as f64 * mean;
            for f in flying {
                work += (mean - (now - f.since).as_secs_f64() * 1e3).max(0.0);
            }
        }
        Some(work / self.concurrency as f64)
    }

    /// The live view (`status --json` during a build), as JSON.
    pub fn snapshot(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    pub fn view(&self) -> LiveView<'_> {
        let now = Instant::now();
        let count = |s: &str| self.done.iter().filter(|d| **d == Some(s)).count();
        let done = self.done.iter().filter(|d| d.is_some()).count();
        let running = (0..self.tasks.len())
            .filter(|&i| {
                self.done[i].is_none()
                    && (self.started_task[i] || self.flights.iter().any(|f| f.task == i))
            })
            .count();
        let in_flight = self
            .flights
            .iter()
            .map(|f| {
                let t = &self.tasks[f.task];
                LiveFlight {
                    task: &t.label,
                    kind: t.kind,
                    candidate: f.slot + 1,
                    attempt: f.attempt,
                    state: f.state,
                    elapsed_ms: (now - f.since).as_millis() as u64,
                }
            })
            .collect();
        let q = self.quote.as_ref();
        let ms = |v: Option<f64>| v.map(|x| x.round() as u64);
        LiveView {
            schema: (),
            running: self.phase != "done",
            pid: std::process::id(),
            flow: &self.flow,
            phase: self.phase,
            started_ms: self.started_ms,
            elapsed_ms: (now - self.started).as_millis() as u64,
            tasks: LiveTasks {
                total: self.tasks.len(),
                to_build: q.map(|q| q.tasks),
                done,
                running,
                waiting: self.tasks.len() - done - running,
                built: count("built"),
                fresh: count("fresh"),
                failed: count("failed"),
                skipped: count("skipped"),
                not_run: count("not run"),
            },
            calls: LiveCalls {
                made: self.calls[0] + self.calls[1],
                image: self.calls[0],
                video: self.calls[1],
                planned: q.map(|q| q.calls[0] + q.calls[1]),
                planned_image: q.map(|q| q.calls[0]),
                planned_video: q.map(|q| q.calls[1]),
            },
            credits: LiveCredits {
                spent: self.credits,
                quote: q.map(|q| q.credits),
                unit: self.unit.as_str(),
            },
            candidates: LiveCandidates {
                stored: self.stored[0] + self.stored[1],
                failed: self.failed[0] + self.failed[1],
            },
            in_flight,
            failures: &self.failures,
            warnings: &self.warnings,
            latency_ms: LiveLatency {
                image: ms(self.mean_latency(0)),
                video: ms(self.mean_latency(1)),
            },
            eta_ms: ms(self.eta_ms(now)),
            summary: self.summary.as_ref(),
        }
    }
}

/// Passes every event on to the terminal's reporter and into [`Live`].
pub struct LiveReporter {
    pub inner: Arc<dyn Reporter>,
    pub live: Arc<Mutex<Live>>,
}

impl Reporter for LiveReporter {
    fn event(&self, e: Event) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply(&e);
        self.inner.event(e);
    }
    fn finish(&self) {
        self.inner.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Image `s1` (1 credit), then video `s1` (10 credits) consuming it.
    fn live() -> Live {
        let t = |label: &str, kind, price, deps: Vec<usize>| TaskInfo {
            label: label.into(),
            kind,
            price,
            deps,
        };
        let mut l = Live::with_tasks(
            vec![
                t("s1", TaskKind::Image, 1.0, vec![]),
                t("s1", TaskKind::Video, 10.0, vec![0]),
            ],
            &[0, 1],
            "f.nbflow",
            2,
        );
        l.quote = Some(Quote {
            tasks: 2,
            calls: [2, 1],
            credits: 12.0,
        });
        l
    }

    fn submitted(slot: u32, attempt: u32) -> Event {
        Event::Submitted {
            task: "s1".into(),
            slot,
            attempt,
        }
    }

    /// Submitted and accepted: one call paid.
    fn send(l: &mut Live, slot: u32, attempt: u32) {
        l.apply(&submitted(slot, attempt));
        l.apply(&Event::Accepted {
            task: "s1".into(),
            slot,
        });
    }

    #[test]
    fn a_submission_paced_by_429s_is_one_call() {
        let mut l = live();
        for _ in 0..3 {
            l.apply(&submitted(0, 1));
            l.apply(&Event::Retry {
                task: "s1".into(),
                slot: 0,
                attempt: 1,
                why: "G-Labs answered 429: paced, no attempt spent".into(),
                wait: std::time::Duration::from_millis(10),
            });
        }
        assert_eq!(l.snapshot()["calls"]["image"], 0, "nothing paid yet");
        send(&mut l, 0, 1);
        let v = l.snapshot();
        assert_eq!(v["calls"]["image"], 1);
        assert_eq!(v["credits"]["spent"], 1.0);
    }

    #[test]
    fn a_shared_label_is_the_task_whose_inputs_are_done() {
        let mut l = live();
        send(&mut l, 0, 1);
        send(&mut l, 1, 1);
        let v = l.snapshot();
        assert_eq!(v["calls"]["image"], 2);
        assert_eq!(v["calls"]["video"], 0);
        assert_eq!(v["tasks"]["running"], 1);
        assert_eq!(v["tasks"]["waiting"], 1);
        for slot in 0..2 {
            l.apply(&Event::CandidateDone {
                task: "s1".into(),
                slot,
            });
        }
        l.apply(&Event::TaskDone {
            task: "s1".into(),
            state: "built",
            note: String::new(),
        });
        send(&mut l, 0, 1);
        let v = l.snapshot();
        assert_eq!(v["calls"]["video"], 1);
        assert_eq!(v["credits"]["spent"], 12.0);
        assert_eq!(v["tasks"]["done"], 1);
        assert_eq!(v["tasks"]["built"], 1);
        assert_eq!(v["in_flight"][0]["kind"], "video");
        assert_eq!(v["candidates"]["stored"], 2);
        // A clip still to come, and no clip latency seen: unknown.
        assert_eq!(v["eta_ms"], Value::Null);
        assert!(v["latency_ms"]["image"].is_u64());
    }

    #[test]
    fn a_retry_keeps_the_candidate_in_flight_and_counts_the_new_call() {
        let mut l = live();
        send(&mut l, 0, 1);
        l.apply(&Event::Retry {
            task: "s1".into(),
            slot: 0,
            attempt: 1,
            why: "HTTP 503".into(),
            wait: std::time::Duration::from_millis(10),
        });
        let v = l.snapshot();
        assert_eq!(v["in_flight"].as_array().unwrap().len(), 1);
        assert_eq!(v["in_flight"][0]["state"], "retrying");
        send(&mut l, 0, 2);
        l.apply(&Event::CandidateFailed {
            task: "s1".into(),
            slot: 0,
            why: "content policy".into(),
        });
        let v = l.snapshot();
        assert_eq!(v["calls"]["made"], 2);
        assert_eq!(v["in_flight"].as_array().unwrap().len(), 0);
        assert_eq!(v["candidates"]["failed"], 1);
        assert_eq!(v["failures"][0]["candidate"], 1);
        assert_eq!(v["failures"][0]["why"], "content policy");
    }

    #[test]
    fn time_left_spreads_the_remaining_calls_over_the_cap() {
        let mut l = live();
        l.quote = Some(Quote {
            tasks: 1,
            calls: [4, 0],
            credits: 4.0,
        });
        // One still stored, one in flight just submitted, a still takes 1 s:
        // 2 calls not made (2 s) + about 1 s in flight, over 2 at a time.
        l.stored[0] = 1;
        l.latency[0] = (1000.0, 1);
        send(&mut l, 1, 1);
        let eta = l.snapshot()["eta_ms"].as_u64().unwrap();
        assert!((1400..=1500).contains(&eta), "{eta}");
        // No latency seen yet: unknown rather than zero.
        let mut fresh = live();
        fresh.apply(&submitted(0, 1));
        assert_eq!(fresh.snapshot()["eta_ms"], Value::Null);
    }
}
