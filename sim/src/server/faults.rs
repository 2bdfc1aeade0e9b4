//! Fault injection and every pseudo-random decision: dropped connections
//! and a dead server, injected 500s, rate limits, lost tasks and lost
//! answers, error pages served as files, planted flaws, and the words that
//! make a prompt fail.
//!
//! Every roll is a pure function of the seed, a label and a counter, so a
//! run with the same seed and the same request order injects the same faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::state::Shared;
use super::tasks::Outcome;

impl Shared {
    /// A pseudo-random number in [0, 1) from the seed, a label and a counter.
    fn unit(&self, label: &str, parts: &[&[u8]]) -> f64 {
        let mut h = blake3::Hasher::new();
        h.update(&self.config.seed.to_le_bytes());
        h.update(&(label.len() as u64).to_le_bytes());
        h.update(label.as_bytes());
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let b = h.finalize();
        let mut x = [0u8; 8];
        x.copy_from_slice(&b.as_bytes()[..8]);
        (u64::from_le_bytes(x) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn roll(&self, label: &str, counter: &AtomicU64, rate: f64) -> bool {
        if rate.is_nan() || rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed);
        self.unit(label, &[&n.to_le_bytes()]) < rate
    }

    /// An injected 500 (counted when it fires).
    pub(super) fn roll_error(&self) -> bool {
        let hit = self.roll("error", &self.error_rolls, self.config.error_rate);
        if hit {
            self.lock().stats.errors += 1;
        }
        hit
    }

    pub(super) fn roll_drop(&self) -> bool {
        self.roll("drop", &self.drop_rolls, self.config.drop_rate)
    }

    /// An error page served as a file (counted when it fires).
    pub(super) fn roll_bad_file(&self) -> bool {
        let hit = self.roll("bad-file", &self.bad_file_rolls, self.config.bad_file_rate);
        if hit {
            self.lock().stats.bad_files += 1;
        }
        hit
    }

    pub(super) fn roll_lose_answer(&self) -> bool {
        self.roll(
            "lose-answer",
            &self.lose_answer_rolls,
            self.config.lose_answer_rate,
        )
    }

    pub(super) fn count_drop(&self) {
        self.lock().stats.dropped += 1;
    }

    pub(super) fn is_flawed(&self, prompt: &str, variant: u64) -> bool {
        let rate = self.config.flaw_rate;
        if rate.is_nan() || rate <= 0.0 {
            return false;
        }
        rate >= 1.0 || self.unit("flaw", &[prompt.as_bytes(), &variant.to_le_bytes()]) < rate
    }

    /// True when `word` is set and the prompt contains it (ignoring case).
    fn word_in(word: &Option<String>, prompt: &str) -> bool {
        match word {
            Some(w) if !w.is_empty() => prompt.to_lowercase().contains(&w.to_lowercase()),
            _ => false,
        }
    }

    /// Counts a submit; true when it is the `rate_limit_every`-th (counted
    /// as rate limited).
    pub(super) fn rate_limit_due(&self) -> bool {
        let n = self.submits.fetch_add(1, Ordering::SeqCst) + 1;
        let hit = self
            .config
            .rate_limit_every
            .is_some_and(|every| every > 0 && n.is_multiple_of(every));
        if hit {
            self.lock().stats.rate_limited += 1;
        }
        hit
    }

    /// What the `accepted`-th accepted task with this prompt will do once
    /// its latency has passed.
    pub(super) fn outcome(&self, accepted: u64, prompt: &str) -> Outcome {
        if self
            .config
            .lose_every
            .is_some_and(|n| n > 0 && accepted.is_multiple_of(n))
        {
            Outcome::Lose
        } else if Self::word_in(&self.config.policy_word, prompt) {
            Outcome::Policy
        } else if Self::word_in(&self.config.timeout_word, prompt) {
            Outcome::Timeout
        } else {
            Outcome::Complete
        }
    }

    /// After the `accepted`-th accepted submit: die when that is
    /// `die_after_submits`.
    pub(super) fn die_if_due(&self, accepted: u64) {
        if self.config.die_after_submits.is_some_and(|n| accepted >= n) {
            self.dead.store(true, Ordering::SeqCst);
            let _ = self.die_tx.send(true);
        }
    }
}

/// A response whose body fails at once, so hyper aborts the connection
/// without having sent anything.
pub(super) fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by the simulator"))
    });
    Response::new(Body::from_stream(stream))
}

/// The layer in front of every route: dropped connections (`drop_rate`, never
/// on `/sim/*`) and a dead server.
pub(super) async fn middleware(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if s.dead.load(Ordering::SeqCst) {
        s.count_drop();
        return dropped();
    }
    if !req.uri().path().starts_with("/sim/") && s.roll_drop() {
        s.count_drop();
        return dropped();
    }
    next.run(req).await
}
