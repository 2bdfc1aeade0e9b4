//! The states a task goes through in one run, and what it leaves behind.

use crate::glabs::FailureKind;
use nbbuild_cache::Candidate;
use serde::Serialize;

/// A task's state. The scheduler moves each task forward only:
/// `Waiting` -> `Running` -> one of the final states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Some input task has not finished yet. Nothing is known of its key.
    Waiting,
    /// Inputs are known and the key computed; candidates are being generated.
    /// At least one G-Labs call may be in flight.
    Running,
    /// The store held a full, acceptable candidate set under the key: no call.
    Fresh,
    /// Every missing candidate was generated and committed in this run.
    Built,
    /// At least one candidate failed permanently; the others stay stored, so
    /// the next run asks only for the missing ones.
    Failed,
    /// An input task failed or was skipped: nothing was sent.
    Skipped,
    /// Left for a later run (`--mode images`, outside `--only`, stopped by
    /// Ctrl-C or by the budget). What the store holds is still used.
    NotRun,
}

impl TaskState {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Running => "running",
            TaskState::Fresh => "fresh",
            TaskState::Built => "built",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::NotRun => "not run",
        }
    }
}

/// One permanent failure, as `errors.json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Candidate slot (0-based), or None for the whole task.
    pub candidate: Option<u32>,
    pub kind: FailureKind,
    pub attempts: u32,
    pub message: String,
}

/// What a task ended with.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    pub state: TaskState,
    /// The task's key, once its inputs were known.
    pub key: Option<String>,
    /// The current candidates under the key, by slot.
    pub candidates: Vec<Candidate>,
    pub failures: Vec<Failure>,
    /// Why it is in its state, for humans (`new`, `prompt changed` ...).
    pub note: String,
}

impl TaskOutcome {
    pub fn new(state: TaskState) -> Self {
        TaskOutcome {
            state,
            key: None,
            candidates: Vec::new(),
            failures: Vec::new(),
            note: String::new(),
        }
    }
    /// The object downstream consumers take: the plan's rule
    /// ([`crate::plan::pick`]) over the current candidates.
    pub fn pick(&self) -> Option<&Candidate> {
        crate::plan::pick(&self.candidates, u32::MAX)
    }
    /// Usable downstream: there is something to consume.
    pub fn usable(&self) -> bool {
        matches!(self.state, TaskState::Fresh | TaskState::Built)
            || (self.state == TaskState::NotRun && !self.candidates.is_empty())
    }
}
