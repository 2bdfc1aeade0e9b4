//! What every room shares: the options, the task table behind one lock,
//! and the counters behind the pseudo-random rolls.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use super::tasks::TaskState;
use crate::{CreatedTask, SimConfig, SimStats};

/// The simulator's state, shared by every handler and every task timer.
pub(crate) struct Shared {
    pub(super) config: SimConfig,
    pub(super) base: String,
    pub(super) started: Instant,
    pub(super) state: Mutex<TaskState>,
    pub(super) submits: AtomicU64,
    pub(super) error_rolls: AtomicU64,
    pub(super) drop_rolls: AtomicU64,
    pub(super) bad_file_rolls: AtomicU64,
    pub(super) lose_answer_rolls: AtomicU64,
    pub(super) qa_calls: AtomicU64,
    /// Gemini API submits counted against `daily_quota`.
    pub(super) google_submits: AtomicU64,
    pub(super) dead: AtomicBool,
    pub(super) stopped: AtomicBool,
    pub(super) die_tx: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, addr: SocketAddr) -> Arc<Shared> {
        let dead = config.die_after_submits == Some(0);
        let (die_tx, _) = watch::channel(dead);
        Arc::new(Shared {
            config,
            base: format!("http://{addr}"),
            started: Instant::now(),
            state: Mutex::new(TaskState::default()),
            submits: AtomicU64::new(0),
            error_rolls: AtomicU64::new(0),
            drop_rolls: AtomicU64::new(0),
            bad_file_rolls: AtomicU64::new(0),
            lose_answer_rolls: AtomicU64::new(0),
            qa_calls: AtomicU64::new(0),
            google_submits: AtomicU64::new(0),
            dead: AtomicBool::new(dead),
            stopped: AtomicBool::new(false),
            die_tx,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, TaskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> SimStats {
        self.lock().stats
    }

    pub(crate) fn in_flight(&self) -> u64 {
        let st = self.lock();
        (st.pending + st.running) as u64
    }

    pub(crate) fn created(&self) -> Vec<CreatedTask> {
        self.lock().log.clone()
    }

    pub(super) fn count_review(&self) {
        self.lock().stats.qa_reviews += 1;
    }

    /// Forget every task; returns how many were forgotten.
    pub(crate) fn restart(&self) -> usize {
        self.lock().forget_all()
    }

    pub(crate) fn stop_workers(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}
