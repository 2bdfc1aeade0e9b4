//! The task table: what a task is, the states it goes through, and the
//! table that holds the tasks, their produced files, the counters and the
//! log of every task created. Pure data: the lifecycle that moves tasks
//! through it is in `lifecycle`.

use std::collections::{HashMap, VecDeque};

use axum::body::Bytes;

use super::files::Recipe;
use crate::{CreatedTask, SimStats};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Image,
    Video,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Video => "video",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Pending,
    Running,
    Completed,
    Failed,
}

impl Status {
    pub(super) fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }
}

/// What a task will do once its latency has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Complete,
    Policy,
    Timeout,
    Lose,
}

/// A validated submit.
pub(super) struct Submit {
    pub(super) kind: Kind,
    pub(super) prompt: String,
    pub(super) aspect: String,
    /// One produced file per entry; the entry is a file-name suffix
    /// (empty for none).
    pub(super) outputs: Vec<String>,
    pub(super) seconds: u32,
}

pub(super) struct Task {
    pub(super) id: String,
    pub(super) kind: Kind,
    pub(super) prompt: String,
    pub(super) aspect: String,
    pub(super) outputs: Vec<String>,
    pub(super) seconds: u32,
    pub(super) variant: u64,
    pub(super) flaw: bool,
    pub(super) outcome: Outcome,
    pub(super) status: Status,
    pub(super) created_at: String,
    pub(super) completed_at: Option<String>,
    pub(super) results: Vec<String>,
    pub(super) error: Option<(i64, String, String)>,
}

#[derive(Default)]
pub(super) struct TaskState {
    pub(super) tasks: HashMap<String, Task>,
    /// Ids in submit order (may name forgotten tasks).
    pub(super) recent: VecDeque<String>,
    pub(super) queue: VecDeque<String>,
    pub(super) pending: usize,
    pub(super) running: usize,
    pub(super) epoch: u64,
    pub(super) next_id: u32,
    pub(super) accepted: u64,
    pub(super) variants: HashMap<(Kind, String), u64>,
    /// Produced files: how to make them, and their bytes once made.
    pub(super) files: HashMap<String, (Recipe, Option<Bytes>)>,
    pub(super) next_file: u64,
    pub(super) stats: SimStats,
    /// Every task created, in order, and where each id is in it.
    pub(super) log: Vec<CreatedTask>,
    pub(super) log_index: HashMap<String, usize>,
}

impl TaskState {
    pub(super) fn mark_forgotten(&mut self, id: &str) {
        if let Some(&i) = self.log_index.get(id) {
            self.log[i].forgotten = true;
        }
    }

    pub(super) fn note_in_flight(&mut self) {
        let now = (self.pending + self.running) as u64;
        if now > self.stats.peak_in_flight {
            self.stats.peak_in_flight = now;
        }
    }

    /// Forget every task, as a restart does; returns how many there were.
    pub(super) fn forget_all(&mut self) -> usize {
        let n = self.tasks.len();
        self.stats.lost += n as u64;
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.mark_forgotten(&id);
        }
        self.epoch += 1;
        self.tasks.clear();
        self.recent.clear();
        self.queue.clear();
        self.pending = 0;
        self.running = 0;
        n
    }
}
