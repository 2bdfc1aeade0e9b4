//! Polling one remote generation until it ends, at the right moment: close
//! to the latency the run has seen for its model, and densely around it.

use super::*;

/// Latencies seen in this run, per model: when to poll next (issue 11.4).
#[derive(Default)]
pub struct Latencies {
    seen: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<Duration>>>,
}

impl Latencies {
    /// How long a finished task of `model` took (submit to noticed done).
    pub fn seen(&self, model: &str, took: Duration) {
        let mut m = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.entry(model.to_string()).or_default();
        v.push_back(took);
        if v.len() > 8 {
            v.pop_front();
        }
    }

    /// The wait before the next poll of a task of `model` running for
    /// `elapsed`: until the fastest recent finish, then densely (a twentieth
    /// of that latency, at least 20 ms, at most `poll_start`) for half as long
    /// again, about ten polls; None (the default schedule) when nothing was
    /// seen yet or the task is past that window, so a slow server is never
    /// hammered.
    pub fn next_poll(&self, model: &str, elapsed: Duration, p: &Policy) -> Option<Duration> {
        let m = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let expected = *m.get(model)?.iter().min()?;
        // Never below 20 ms, unless the policy's own floor is lower.
        let floor = Duration::from_millis(20).min(p.poll_start);
        let dense = (expected / 20).clamp(floor, p.poll_start.max(floor));
        if elapsed + dense < expected {
            Some((expected - elapsed).min(p.poll_max))
        } else if elapsed < expected + expected / 2 {
            Some(dense)
        } else {
            None
        }
    }
}

pub(super) enum Polled {
    Done(Vec<String>),
    Failed(ApiError),
    Lost,
    /// The id names a task of another type or prompt (G-Labs restarted and
    /// handed the id out again): never adopted.
    NotOurs(String),
    TimedOut,
    Error(ApiError),
    Stopped,
}

pub(super) async fn poll(ctx: &Ctx, job: &CandidateJob, id: &str, submitted_ms: u64) -> Polled {
    let elapsed_before = Duration::from_millis(now_ms().saturating_sub(submitted_ms));
    let started = Instant::now()
        .checked_sub(elapsed_before)
        .unwrap_or_else(Instant::now);
    let deadline = Instant::now() + job.timeout.saturating_sub(elapsed_before);
    let mut errors = 0;
    let (kind, prompt) = (job.request.kind_name(), job.request.prompt.as_str());
    loop {
        if ctx.interrupted() {
            return Polled::Stopped;
        }
        let status = match ctx.generator.status(id).await {
            Ok(view) if !view.is_ours(kind, prompt) => {
                return Polled::NotOurs(format!(
                    "a {} task for {:?}",
                    view.kind.as_deref().unwrap_or("?"),
                    crate::qa::excerpt(view.prompt.as_deref().unwrap_or(""), 60)
                ))
            }
            Ok(view) => Ok(view.status),
            Err(e) => Err(e),
        };
        match status {
            Ok(RemoteStatus::Completed { results }) => {
                ctx.latencies.seen(&job.model, started.elapsed());
                return Polled::Done(results);
            }
            Ok(RemoteStatus::Failed(e)) => return Polled::Failed(e),
            Ok(RemoteStatus::Waiting) => errors = 0,
            Err(ApiError::Lost) => return Polled::Lost,
            Err(
                e @ (ApiError::Transient { .. }
                | ApiError::Down { .. }
                | ApiError::RateLimited { .. }),
            ) => {
                errors += 1;
                // A poll that fails costs nothing: keep trying for a while
                // (the tunnel may be restarting) before giving up.
                if errors > 8 {
                    return Polled::Error(e);
                }
            }
            Err(e) => return Polled::Error(e),
        }
        if Instant::now() >= deadline {
            return Polled::TimedOut;
        }
        // Poll after a fifth of the time the task has taken so far (at least
        // poll_start, at most poll_max): a fast server is not slowed down by
        // the poll interval (the result is noticed within ~20% of its
        // latency), and a slow one is not hammered (a 60 s clip takes ~30 polls).
        // Once the run has seen this model finish, wait until about then and
        // poll densely around it instead.
        let interval = ctx
            .latencies
            .next_poll(&job.model, started.elapsed(), &ctx.policy)
            .unwrap_or_else(|| {
                started
                    .elapsed()
                    .div_f64(5.0)
                    .clamp(ctx.policy.poll_start, ctx.policy.poll_max)
            });
        let wait = interval.min(deadline.saturating_duration_since(Instant::now()));
        ctx.sleep(wait).await;
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;

    #[test]
    fn polls_densely_around_the_expected_finish_whatever_the_policy() {
        let l = Latencies::default();
        let p = Policy::default();
        assert_eq!(
            l.next_poll("m", Duration::ZERO, &p),
            None,
            "nothing seen yet"
        );
        l.seen("m", Duration::from_secs(2));
        // Wait until the expected finish, then a twentieth of it apart.
        assert_eq!(
            l.next_poll("m", Duration::from_millis(500), &p),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            l.next_poll("m", Duration::from_millis(1990), &p),
            Some(Duration::from_millis(100))
        );
        // Past one and a half times the expected latency: the default schedule.
        assert_eq!(l.next_poll("m", Duration::from_secs(4), &p), None);
        // A policy polling faster than 20 ms (benchmarks) never panics.
        let fast = Policy {
            poll_start: Duration::from_millis(1),
            ..Policy::default()
        };
        l.seen("fast", Duration::from_millis(10));
        assert_eq!(
            l.next_poll("fast", Duration::from_millis(10), &fast),
            Some(Duration::from_millis(1))
        );
    }
}
