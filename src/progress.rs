//! Progress reporting: a small trait the engine calls, with a terminal
//! implementation (indicatif bars) and a plain one (one line per event).
//! Only this file knows about indicatif.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the engine tells the user while it works.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run starts: tasks to build, calls planned, the estimate (in
    /// `unit`: credits on G-Labs, US dollars on Google).
    Start {
        tasks: usize,
        calls: u64,
        credits: f64,
        unit: crate::models::Unit,
    },
    /// A candidate was submitted (attempt 1..).
    Submitted {
        task: String,
        slot: u32,
        attempt: u32,
    },
    /// The service accepted a submission: one call is paid (a 429 or an
    /// error answer is not).
    Accepted { task: String, slot: u32 },
    /// Re-attached to a G-Labs task submitted by an earlier run.
    Reattached { task: String, slot: u32 },
    /// A candidate will be retried.
    Retry {
        task: String,
        slot: u32,
        attempt: u32,
        why: String,
        wait: Duration,
    },
    /// A candidate arrived and is stored.
    CandidateDone { task: String, slot: u32 },
    /// A candidate failed for good.
    CandidateFailed {
        task: String,
        slot: u32,
        why: String,
    },
    /// A task reached a final state (`task` names its kind and label:
    /// `image scene02`).
    TaskDone {
        task: String,
        state: &'static str,
        note: String,
    },
    /// Something the user should know, once.
    Warn(String),
    /// Informational line (not shown with -q).
    Info(String),
}

/// The run's first line: `building 5 task(s): 20 call(s), about 20 credits`.
pub fn start_line(tasks: usize, calls: u64, credits: f64, unit: crate::models::Unit) -> String {
    format!(
        "building {tasks} task(s): {calls} call(s), about {}",
        unit.format(credits)
    )
}

/// A task's final line: `built image scene02 (new)`, or for a failure the
/// reason a person can act on: `failed image scene04: reference ... unavailable`.
pub fn task_line(task: &str, state: &str, note: &str) -> String {
    match (state, note.is_empty()) {
        (_, true) => format!("{state:>8} {task}"),
        ("failed" | "skipped", false) => format!("{state:>8} {task}: {note}"),
        _ => format!("{state:>8} {task} ({note})"),
    }
}

pub trait Reporter: Send + Sync {
    fn event(&self, e: Event);
    /// Stop drawing (before the final summary is printed).
    fn finish(&self) {}
}

/// Prints nothing (for --json runs with -q, and benchmarks).
pub struct Silent;
impl Reporter for Silent {
    fn event(&self, _e: Event) {}
}

/// One line per event on stderr; the default when stderr is not a terminal.
pub struct Plain {
    pub verbose: bool,
    pub quiet: bool,
}

impl Reporter for Plain {
    fn event(&self, e: Event) {
        match e {
            Event::Warn(m) => eprintln!("warning: {m}"),
            _ if self.quiet => {}
            Event::Start {
                tasks,
                calls,
                credits,
                unit,
            } => eprintln!("{}", start_line(tasks, calls, credits, unit)),
            Event::Submitted {
                task,
                slot,
                attempt,
            } if self.verbose || attempt > 1 => {
                eprintln!("  {task} c{}: submitted (attempt {attempt})", slot + 1)
            }
            Event::Reattached { task, slot } => eprintln!(
                "  {task} c{}: re-attached to the task an earlier run submitted",
                slot + 1
            ),
            Event::Retry {
                task,
                slot,
                attempt,
                why,
                wait,
            } => eprintln!(
                "  {task} c{}: attempt {attempt} failed ({why}); retrying in {:.1}s",
                slot + 1,
                wait.as_secs_f64()
            ),
            Event::CandidateDone { task, slot } if self.verbose => {
                eprintln!("  {task} c{}: stored", slot + 1)
            }
            Event::CandidateFailed { task, slot, why } => {
                eprintln!("  {task} c{}: failed: {why}", slot + 1)
            }
            Event::TaskDone { state: "fresh", .. } if !self.verbose => {}
            Event::TaskDone { task, state, note } => {
                eprintln!("{}", task_line(&task, state, &note))
            }
            Event::Info(m) => eprintln!("{m}"),
            _ => {}
        }
    }
}

/// Bars on a terminal: one overall bar (tasks, calls, credits) and a line
/// per candidate in flight (task, candidate, attempt, elapsed).
pub struct Fancy {
    multi: MultiProgress,
    overall: ProgressBar,
    lines: Mutex<BTreeMap<(String, u32), (ProgressBar, Instant)>>,
    /// (calls made, calls planned, estimated credits)
    calls: Mutex<(u64, u64, String)>,
}

impl Fancy {
    pub fn new() -> Fancy {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(Duration::from_millis(200));
        Fancy {
            multi,
            overall,
            lines: Mutex::new(BTreeMap::new()),
            calls: Mutex::new((0, 0, String::new())),
        }
    }

    fn line(&self, task: &str, slot: u32, msg: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let (bar, _) = lines.entry((task.to_string(), slot)).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("  {spinner} {prefix:24} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(format!("{task} c{}", slot + 1));
            b.enable_steady_tick(Duration::from_millis(200));
            (b, Instant::now())
        });
        bar.set_message(msg);
    }

    fn drop_line(&self, task: &str, slot: u32) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((b, _)) = lines.remove(&(task.to_string(), slot)) {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
    }
}

impl Default for Fancy {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for Fancy {
    fn event(&self, e: Event) {
        match e {
            Event::Start {
                tasks,
                calls,
                credits,
                unit,
            } => {
                self.overall.set_length(tasks as u64);
                let cost = unit.format(credits);
                self.overall
                    .set_message(format!("0/{calls} calls  ~{cost}"));
                *self.calls.lock().unwrap_or_else(|e| e.into_inner()) = (0, calls, cost);
            }
            Event::Submitted {
                task,
                slot,
                attempt,
            } => self.line(&task, slot, format!("attempt {attempt}")),
            Event::Accepted { task, slot } => {
                self.line(&task, slot, "at G-Labs".into());
                let mut c = self.calls.lock().unwrap_or_else(|e| e.into_inner());
                c.0 += 1;
                self.overall
                    .set_message(format!("{}/{} calls  ~{}", c.0, c.1, c.2));
            }
            Event::Reattached { task, slot } => self.line(&task, slot, "re-attached".into()),
            Event::Retry {
                task,
                slot,
                attempt,
                why,
                ..
            } => self.line(
                &task,
                slot,
                format!("attempt {attempt} failed: {why}; retrying"),
            ),
            Event::CandidateDone { task, slot } => self.drop_line(&task, slot),
            Event::CandidateFailed { task, slot, why } => {
                self.drop_line(&task, slot);
                self.multi
                    .suspend(|| eprintln!("  {task} c{}: failed: {why}", slot + 1));
            }
            Event::TaskDone { task, state, note } => {
                self.overall.inc(1);
                if state != "fresh" {
                    self.multi
                        .suspend(|| eprintln!("{}", task_line(&task, state, &note)));
                }
            }
            Event::Warn(m) => self.multi.suspend(|| eprintln!("warning: {m}")),
            Event::Info(m) => self.multi.suspend(|| eprintln!("{m}")),
        }
    }

    fn finish(&self) {
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, (b, _)) in lines {
            b.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}
