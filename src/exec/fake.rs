//! An in-memory [`Generator`] for unit tests of the executor: every
//! submission is logged, answered at once, and completes on its first poll
//! with a small valid PNG or MP4 whose bytes are unique to the submission.
//! Faults are opt-in: a point after which the service is down, holds
//! that keep chosen submissions waiting until released, and submissions
//! whose connection drops before anything is created.

use crate::compile::TaskKind;
use crate::generator::{ApiError, GenInput, Generator, Health, Listed, RemoteStatus, TaskView};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: String,
    pub kind: TaskKind,
    pub prompt: String,
}

#[derive(Default)]
pub(super) struct Inner {
    log: Vec<Submitted>,
    /// Submitted and not yet downloaded.
    open: HashMap<String, Submitted>,
    /// Ids kept waiting until `release`.
    held: std::collections::HashSet<String>,
}

#[derive(Default)]
pub struct Fake {
    pub(super) inner: Mutex<Inner>,
    /// After this many accepted submissions the service is down.
    pub down_after: Option<usize>,
    /// Hold a submission when this says so (by its 0-based index in the log
    /// and its request): it stays "waiting" until released.
    #[allow(clippy::type_complexity)]
    pub hold: Option<Box<dyn Fn(usize, &GenInput) -> bool + Send + Sync>>,
    /// The first this-many submissions get no answer and create nothing
    /// (the connection dropped before the request reached the service);
    /// the task list, always readable, shows that nothing was created.
    pub drop_first: std::sync::atomic::AtomicUsize,
}

impl Fake {
    pub fn log(&self) -> Vec<Submitted> {
        self.lock().log.clone()
    }
    pub fn submits(&self) -> usize {
        self.lock().log.len()
    }
    /// Let one held submission complete.
    pub fn release(&self, id: &str) {
        self.lock().held.remove(id);
    }
    /// Let every held submission complete.
    pub fn release_all(&self) {
        self.lock().held.clear();
    }
    /// Submissions still held.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Generator for Fake {
    fn route(&self) -> &'static str {
        "fake"
    }
    fn location(&self) -> String {
        "memory".into()
    }
    async fn health(&self) -> Result<Health, ApiError> {
        Ok(serde_json::from_value(serde_json::json!({"status": "ok"})).expect("health"))
    }
    async fn submit(&self, input: &GenInput) -> Result<String, ApiError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .drop_first
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(ApiError::NoAnswer {
                message: "connection dropped before the request was sent".into(),
            });
        }
        let mut g = self.lock();
        if self.down_after.is_some_and(|n| g.log.len() >= n) {
            return Err(ApiError::Down {
                message: "the fake service is down".into(),
            });
        }
        // Unique across fakes: no two submissions ever produce the same bytes.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let s = Submitted {
            id: format!("fake-{n}"),
            kind: input.kind,
            prompt: input.prompt.clone(),
        };
        if self.hold.as_ref().is_some_and(|h| h(g.log.len(), input)) {
            g.held.insert(s.id.clone());
        }
        g.log.push(s.clone());
        g.open.insert(s.id.clone(), s.clone());
        Ok(s.id)
    }
    async fn status(&self, id: &str) -> Result<TaskView, ApiError> {
        let g = self.lock();
        let Some(s) = g.log.iter().find(|s| s.id == id) else {
            return Err(ApiError::Lost);
        };
        let status = if g.held.contains(id) {
            RemoteStatus::Waiting
        } else {
            RemoteStatus::Completed {
                results: vec![format!("fake://{id}")],
            }
        };
        Ok(TaskView {
            kind: Some(
                match s.kind {
                    TaskKind::Image => "image",
                    TaskKind::Video => "video",
                }
                .into(),
            ),
            prompt: Some(s.prompt.clone()),
            status,
        })
    }
    async fn list_tasks(&self) -> Result<Vec<Listed>, ApiError> {
        Ok(Vec::new())
    }
    async fn download_to(
        &self,
        url: &str,
        _limit: u64,
        out: &mut std::fs::File,
    ) -> Result<u64, ApiError> {
        use std::io::Write;
        let id = url.trim_start_matches("fake://");
        let s = self.lock().open.remove(id).ok_or(ApiError::Lost)?;
        let n: u64 = id.trim_start_matches("fake-").parse().unwrap_or(0);
        let bytes = match s.kind {
            TaskKind::Image => nbbuild_sim::media::still(&s.prompt, n, 32, 32, false),
            TaskKind::Video => nbbuild_sim::media::clip(&s.prompt, n, 1),
        };
        out.write_all(&bytes).map_err(|e| ApiError::Transient {
            message: e.to_string(),
            retry_after: None,
        })?;
        Ok(bytes.len() as u64)
    }
    async fn stop(&self, _: &str) {}
}
