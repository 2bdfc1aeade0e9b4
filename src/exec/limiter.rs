//! The cap on candidates in flight at G-Labs, adaptive (issue 11.5): a 429
//! lowers it to three quarters (multiplicative decrease, about CUBIC's 0.7;
//! halving fell far below a server's capacity), and never above the number
//! of our submissions the server had accepted and not yet finished when it
//! refused, when it held any (it was full with those: a burst of 5 at a
//! server holding 3 goes to 3 at once). A run of successes as long as the cap raises it by one,
//! never above `--concurrency` and never below 1. The cap a 429 came at is
//! remembered: climbing stops at the ceiling (what the server held when it
//! refused, below the cap it refused at), and only a long run of successes
//! there (eight times the cap) probes one higher, so a server with a fixed
//! capacity is asked past it rarely. The cap drops once per burst, as TCP
//! halves once per window: 429s to submissions sent before the last
//! decrease say what that decrease already answered (two refusals from one
//! burst took the cap to 2, where the long probe kept it for seconds). A
//! permit is held from submission until the service reports the generation
//! done (its capacity is free then, while the file comes down); QA takes
//! none.
//!
//! Waiting candidates are served by priority, highest first (the scheduler
//! passes the longest latency-weighted path from the candidate's task to
//! the end of the graph, as ninja and n2 order their work), and in arrival
//! order among equals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    limit: usize,
    /// The highest cap worth trying: one below where the last 429 came.
    ceiling: usize,
    in_flight: usize,
    /// Permits whose submission the server accepted (it holds the task).
    accepted: usize,
    successes: usize,
    /// Decreases so far: a permit remembers the epoch it was taken in.
    epoch: u64,
    closed: bool,
    /// Waiting tickets, best first: (higher priority, earlier arrival).
    queue: std::collections::BTreeSet<(std::cmp::Reverse<u64>, u64)>,
    arrivals: u64,
}

#[derive(Debug)]
pub struct Limiter {
    max: usize,
    /// False: the cap stays at `max` whatever the server says (for
    /// comparison in benchmarks).
    adaptive: bool,
    state: Mutex<State>,
    changed: Notify,
    peak: AtomicUsize,
}

/// Held while a candidate is at G-Labs; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    epoch: u64,
    accepted: bool,
}

impl Permit {
    /// The cap's epoch when this permit was taken: pass it to
    /// [`Limiter::backoff`] if the submission made under it is refused.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.limiter.lock();
        st.in_flight -= 1;
        if self.accepted {
            st.accepted -= 1;
        }
        drop(st);
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
            adaptive: true,
            state: Mutex::new(State {
                limit: max,
                ceiling: max,
                in_flight: 0,
                accepted: 0,
                successes: 0,
                epoch: 0,
                closed: false,
                queue: std::collections::BTreeSet::new(),
                arrivals: 0,
            }),
            changed: Notify::new(),
            peak: AtomicUsize::new(0),
        }
    }

    /// A cap that never moves (benchmarks compare it with the adaptive one).
    pub fn fixed(mut self) -> Limiter {
        self.adaptive = false;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a slot under the present cap, served by `priority`.
    pub async fn acquire_owned(self: Arc<Self>, priority: u64) -> Result<Permit, Closed> {
        let ticket = {
            let mut st = self.lock();
            st.arrivals += 1;
            let t = (std::cmp::Reverse(priority), st.arrivals);
            st.queue.insert(t);
            t
        };
        // Leaves the queue however the wait ends (served, closed, dropped).
        struct Waiting<'a>(&'a Limiter, (std::cmp::Reverse<u64>, u64));
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.lock().queue.remove(&self.1);
                self.0.changed.notify_waiters();
            }
        }
        let watch = self.clone();
        let waiting = Waiting(&watch, ticket);
        loop {
            let notified = watch.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(Closed);
                }
                let first = st.queue.first() == Some(&ticket);
                if first && st.in_flight < st.limit {
                    st.queue.remove(&ticket);
                    st.in_flight += 1;
                    self.peak.fetch_max(st.in_flight, Ordering::Relaxed);
                    let epoch = st.epoch;
                    drop(st);
                    drop(waiting);
                    return Ok(Permit {
                        limiter: self,
                        epoch,
                        accepted: false,
                    });
                }
            }
            notified.await;
        }
    }

    /// The server pushed back (429) on a submission made under a permit of
    /// `epoch`: lower the cap to three quarters, and to what the server held
    /// of ours, unless the cap was lowered since that submission was sent.
    pub fn backoff(&self, epoch: u64) {
        if !self.adaptive {
            return;
        }
        let mut st = self.lock();
        if epoch < st.epoch {
            return;
        }
        st.epoch += 1;
        // None of ours held: the refusal says nothing about our share.
        let held = if st.accepted > 0 {
            st.accepted
        } else {
            usize::MAX
        };
        st.ceiling = st.limit.saturating_sub(1).min(held).max(1);
        st.limit = (st.limit * 3 / 4).min(st.ceiling).max(1);
        st.successes = 0;
    }

    /// The submission made under `permit` was accepted: the server holds it
    /// until the permit is dropped. After as many in a row as the cap, raise
    /// the cap by one, up to the ceiling; at the ceiling, after eight times
    /// as many, probe one above it.
    pub fn success(&self, permit: &mut Permit) {
        let mut st = self.lock();
        if !permit.accepted {
            permit.accepted = true;
            st.accepted += 1;
        }
        if !self.adaptive {
            return;
        }
        st.successes += 1;
        let raise = if st.limit < st.ceiling {
            st.successes >= st.limit
        } else {
            st.limit < self.max && st.successes >= 8 * st.limit
        };
        if raise {
            st.limit += 1;
            st.ceiling = st.ceiling.max(st.limit);
            st.successes = 0;
            drop(st);
            self.changed.notify_waiters();
        }
    }

    /// The present epoch (the number of decreases so far).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
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

    /// One accepted submission: take a permit, have it accepted, give it back.
    async fn succeed(l: &Arc<Limiter>) {
        let mut p = l.clone().acquire_owned(0).await.unwrap();
        l.success(&mut p);
    }

    #[tokio::test]
    async fn drops_on_pushback_and_climbs_back_by_one_after_a_run_of_successes() {
        let l = Arc::new(Limiter::new(4));
        assert_eq!(l.limit(), 4);
        l.backoff(l.epoch());
        assert_eq!(l.limit(), 3);
        l.backoff(l.epoch());
        assert_eq!(l.limit(), 2);
        l.backoff(l.epoch());
        assert_eq!(l.limit(), 1, "never below 1");
        // The last 429 came at 1: one is the ceiling until a long run there
        // (8 successes) probes 2.
        for _ in 0..7 {
            succeed(&l).await;
        }
        assert_eq!(l.limit(), 1);
        succeed(&l).await;
        assert_eq!(l.limit(), 2);
        for _ in 0..200 {
            succeed(&l).await;
        }
        assert_eq!(l.limit(), 4, "never above the maximum");
    }

    #[tokio::test]
    async fn climbing_stops_below_the_cap_a_429_came_at() {
        let l = Arc::new(Limiter::new(5));
        l.backoff(l.epoch()); // at 5, with none of ours held
        assert_eq!(l.limit(), 3);
        for _ in 0..3 {
            succeed(&l).await;
        }
        assert_eq!(l.limit(), 4, "3 -> 4 after a run of 3");
        for _ in 0..31 {
            succeed(&l).await;
        }
        assert_eq!(l.limit(), 4, "4 is the ceiling until 32 successes there");
        succeed(&l).await;
        assert_eq!(l.limit(), 5);
    }

    #[tokio::test]
    async fn refusals_of_one_burst_lower_the_cap_once_to_what_the_server_held() {
        let l = Arc::new(Limiter::new(5));
        let mut burst = Vec::new();
        for _ in 0..5 {
            burst.push(l.clone().acquire_owned(0).await.unwrap());
        }
        // A server holding 3 accepts three of the five and refuses two.
        for p in burst.iter_mut().take(3) {
            l.success(p);
        }
        let (a, b) = (burst.pop().unwrap(), burst.pop().unwrap());
        l.backoff(a.epoch());
        l.backoff(b.epoch());
        drop((a, b));
        assert_eq!(l.limit(), 3, "one decrease for one burst, to the 3 held");
        drop(burst);
        // Climbing stops there: only a long run probes 4.
        for _ in 0..23 {
            succeed(&l).await;
        }
        assert_eq!(l.limit(), 3);
        // A refusal of a submission sent under the lowered cap counts again.
        let c = l.clone().acquire_owned(0).await.unwrap();
        l.backoff(c.epoch());
        assert_eq!(l.limit(), 2);
    }

    #[tokio::test]
    async fn the_longest_path_is_served_first() {
        let l = Arc::new(Limiter::new(1));
        let held = l.clone().acquire_owned(0).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for prio in [1u64, 30, 5, 30] {
            let (l, order) = (l.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let p = l.acquire_owned(prio).await.unwrap();
                order.lock().unwrap().push(prio);
                tokio::task::yield_now().await;
                drop(p);
            }));
            // Queued in this order before the slot frees.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![30, 30, 5, 1]);
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_queue() {
        let l = Arc::new(Limiter::new(1));
        let held = l.clone().acquire_owned(0).await.unwrap();
        let high = tokio::spawn(l.clone().acquire_owned(100));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        high.abort();
        let _ = high.await;
        drop(held);
        // The aborted high-priority ticket does not block a low one.
        let low = l.clone().acquire_owned(1).await.unwrap();
        drop(low);
    }

    #[tokio::test]
    async fn no_more_in_flight_than_the_cap() {
        let l = Arc::new(Limiter::new(3));
        l.backoff(l.epoch()); // cap 2
        l.backoff(l.epoch()); // cap 1
        assert_eq!(l.limit(), 1);
        let a = l.clone().acquire_owned(0).await.unwrap();
        let waiting = tokio::spawn(l.clone().acquire_owned(0));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second waits under a cap of 1");
        drop(a);
        let b = waiting.await.unwrap().unwrap();
        assert_eq!(l.peak(), 1);
        drop(b);
        l.close();
        assert!(l.clone().acquire_owned(0).await.is_err());
    }
}
