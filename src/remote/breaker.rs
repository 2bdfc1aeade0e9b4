//! A remote that is down, slow or failing never fails a build, and is not
//! asked again and again: after [`THRESHOLD`] failures in a row the circuit
//! opens and every later request fails at once, without the network, for
//! the rest of the run. The first failure is said once, as a warning; the
//! rest are counted.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Failures in a row that open the circuit.
pub const THRESHOLD: u32 = 3;

/// Where the one warning goes (the build's progress reporter).
pub type Warn = Arc<dyn Fn(String) + Send + Sync>;

pub struct Breaker {
    what: String,
    in_a_row: AtomicU32,
    open: AtomicBool,
    warned: AtomicBool,
    errors: AtomicU64,
    warn: Warn,
}

impl Breaker {
    /// `what` names the remote in the warning (`s3://bucket/prefix`).
    pub fn new(what: String, warn: Warn) -> Breaker {
        Breaker {
            what,
            in_a_row: AtomicU32::new(0),
            open: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            warn,
        }
    }

    /// Whether a request may be sent.
    pub fn allows(&self) -> bool {
        !self.open.load(Ordering::SeqCst)
    }

    pub fn is_open(&self) -> bool {
        !self.allows()
    }

    pub fn success(&self) {
        self.in_a_row.store(0, Ordering::SeqCst);
    }

    /// A request that did not get an answer (or got a server error).
    pub fn failure(&self, why: &str) {
        self.errors.fetch_add(1, Ordering::SeqCst);
        if !self.warned.swap(true, Ordering::SeqCst) {
            (self.warn)(format!(
                "the team cache {} is not answering ({why}); the build goes on locally",
                self.what
            ));
        }
        if self.in_a_row.fetch_add(1, Ordering::SeqCst) + 1 >= THRESHOLD {
            self.open.store(true, Ordering::SeqCst);
        }
    }

    /// Requests that failed this run.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn opens_after_failures_in_a_row_and_warns_once() {
        let said = Arc::new(Mutex::new(Vec::new()));
        let s = said.clone();
        let b = Breaker::new(
            "s3://b".into(),
            Arc::new(move |m| s.lock().unwrap().push(m)),
        );
        b.failure("refused");
        b.success();
        b.failure("refused");
        b.failure("refused");
        assert!(b.allows(), "a success in between resets the count");
        b.failure("refused");
        assert!(!b.allows());
        assert_eq!(b.errors(), 4);
        let said = said.lock().unwrap();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("s3://b") && said[0].contains("goes on locally"));
    }
}
