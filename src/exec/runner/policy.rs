//! Retry and polling settings, and the clock the runner stamps records with.

use super::*;

/// Retry and polling settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Submissions per candidate for transient failures (429, 5xx, network, bad file).
    pub attempts: u32,
    /// First backoff; doubles per attempt, with jitter.
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub poll_start: Duration,
    pub poll_max: Duration,
    /// Largest file accepted from G-Labs.
    pub download_limit: u64,
    /// Backpressure (429s) gives up after this long without any progress.
    pub max_wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 3,
            backoff: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            poll_start: Duration::from_millis(100),
            poll_max: Duration::from_secs(5),
            download_limit: 1024 * 1024 * 1024,
            max_wait: Duration::from_secs(600),
        }
    }
}

impl Policy {
    pub(super) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(r) = retry_after {
            return r.min(self.backoff_max);
        }
        crate::backoff::exponential(self.backoff, attempt, self.backoff_max)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
