//! The cap on candidates in flight at G-Labs, adaptive (issue 11.5): a 429
//! halves it (multiplicative decrease), a run of successes as long as the
//! cap raises it by one, never above `--concurrency` and never below 1. A
//! permit is held from submission to download; QA takes none.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    successes: usize,
    closed: bool,
}

#[derive(Debug)]
pub struct Limiter {
    max: usize,
    state: Mutex<State>,
    changed: Notify,
    peak: AtomicUsize,
}

/// Held while a candidate is at G-Labs; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.lock().in_flight -= 1;
        self.limiter.changed.notify_waiters();
    }
}

/// The limiter was closed (the run is over).
#[derive(Debug)]
pub struct Closed;

impl Limiter {
    pub fn new(max: usize) -> Limiter {
        let max = max.max(1);
        Limiter {
            max,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                successes: 0,
                closed: false,
            }),
            changed: Notify::new(),
            peak: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a slot under the present cap.
    pub async fn acquire_owned(self: Arc<Self>) -> Result<Permit, Closed> {
        let watch = self.clone();
        loop {
            let notified = watch.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(Closed);
                }
                if st.in_flight < st.limit {
                    st.in_flight += 1;
                    self.peak.fetch_max(st.in_flight, Ordering::Relaxed);
                    drop(st);
                    return Ok(Permit { limiter: self });
                }
            }
            notified.await;
        }
    }

    /// The server pushed back (429): halve the cap.
    pub fn backoff(&self) {
        let mut st = self.lock();
        st.limit = (st.limit / 2).max(1);
        st.successes = 0;
    }

    /// A submission was accepted: after as many in a row as the cap, raise it by one.
    pub fn success(&self) {
        let mut st = self.lock();
        st.successes += 1;
        if st.successes >= st.limit && st.limit < self.max {
            st.limit += 1;
            st.successes = 0;
            drop(st);
            self.changed.notify_waiters();
        }
    }

    /// The present cap.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// The most permits ever held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn halves_on_pushback_and_climbs_back_by_one_after_a_run_of_successes() {
        let l = Arc::new(Limiter::new(4));
        assert_eq!(l.limit(), 4);
        l.backoff();
        assert_eq!(l.limit(), 2);
        l.backoff();
        l.backoff();
        assert_eq!(l.limit(), 1, "never below 1");
        l.success();
        assert_eq!(l.limit(), 2);
        l.success();
        assert_eq!(l.limit(), 2, "a run as long as the cap");
        l.success();
        assert_eq!(l.limit(), 3);
        for _ in 0..20 {
            l.success();
        }
        assert_eq!(l.limit(), 4, "never above the maximum");
    }

    #[tokio::test]
    async fn no_more_in_flight_than_the_cap() {
        let l = Arc::new(Limiter::new(3));
        l.backoff(); // cap 1
        let a = l.clone().acquire_owned().await.unwrap();
        let waiting = tokio::spawn(l.clone().acquire_owned());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second waits under a cap of 1");
        drop(a);
        let b = waiting.await.unwrap().unwrap();
        assert_eq!(l.peak(), 1);
        drop(b);
        l.close();
        assert!(l.clone().acquire_owned().await.is_err());
    }
}
