//! What the runner talks to: a generation service behind one small trait.
//!
//! A [`Generator`] takes one candidate's request ([`GenInput`]), answers with
//! a remote id, reports that id's status, and hands over the produced file.
//! The G-Labs client (`glabs/`) implements it over HTTP; [`Unreachable`]
//! stands in when no server is configured and nothing has to be generated;
//! unit tests of the scheduler use an in-memory fake (`exec/fake.rs`).
//! Every failure is already classified ([`ApiError`]): the runner decides
//! what to do from the class alone, whatever the protocol.

use crate::compile::{Params, Task, TaskKind};
pub use crate::glabs::RefImage;
pub use crate::glabs::{ApiError, Health, Listed, RemoteStatus, TaskView};
use async_trait::async_trait;

/// One candidate's request, protocol-neutral: each generator builds its own
/// wire body from it.
#[derive(Debug, Clone)]
pub struct GenInput {
    pub kind: TaskKind,
    pub prompt: String,
    pub params: Params,
    /// Reference images in slot order, as bytes.
    pub refs: Vec<RefImage>,
}

impl GenInput {
    pub fn new(task: &Task, refs: Vec<RefImage>) -> GenInput {
        GenInput {
            kind: task.kind,
            prompt: task.prompt.clone(),
            params: task.params.clone(),
            refs,
        }
    }

    /// `image` / `video`, as status bodies and task lists name the type.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            TaskKind::Image => "image",
            TaskKind::Video => "video",
        }
    }
}

#[async_trait]
pub trait Generator: Send + Sync {
    /// The route that made a candidate (`glabs`, `google`): recorded with it.
    fn route(&self) -> &'static str;
    /// The service, for messages (`G-Labs`, `Google's Gemini API`).
    fn title(&self) -> &'static str {
        match self.route() {
            "google" => "Google's Gemini API",
            _ => "G-Labs",
        }
    }
    /// Where it is, for messages (a base URL; never a key).
    fn location(&self) -> String;
    /// Reachable, and the credentials accepted, before anything is spent.
    async fn health(&self) -> Result<Health, ApiError>;
    /// Queue one generation; the remote id to poll. `ApiError::NoAnswer`
    /// when it was sent and may exist (the runner looks it up before paying
    /// again).
    async fn submit(&self, input: &GenInput) -> Result<String, ApiError>;
    /// Where a submitted generation stands. `RemoteStatus::Failed` carries
    /// the classified failure.
    async fn status(&self, id: &str) -> Result<TaskView, ApiError>;
    /// Recent generations, newest first, to find a submission whose answer
    /// was lost. A service that cannot list answers an empty list.
    async fn list_tasks(&self) -> Result<Vec<Listed>, ApiError>;
    /// Stream a produced file (`url` from `RemoteStatus::Completed`) into
    /// `out`, at most `limit` bytes; its size.
    async fn download_to(
        &self,
        url: &str,
        limit: u64,
        out: &mut std::fs::File,
    ) -> Result<u64, ApiError>;
    /// Ask the service to stop a generation (after our own timeout).
    async fn stop(&self, id: &str);
}

/// The HTTP client of a generation route: 10 s to connect, 5 minutes for
/// any answer (a still can take that long); `tune` adds what the route
/// needs on top (its pool, its redirect policy).
pub fn http_client(
    tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, ApiError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(300));
    tune(builder).build().map_err(|e| ApiError::Permanent {
        kind: crate::glabs::FailureKind::ApiError,
        message: format!("cannot build the HTTP client: {e}"),
    })
}

/// Stream a produced file's body into `out`, at most `limit` bytes (a
/// larger one is refused before or while it arrives): the download loop of
/// every route. Its size.
pub async fn stream_to(
    mut resp: reqwest::Response,
    limit: u64,
    out: &mut std::fs::File,
) -> Result<u64, ApiError> {
    use std::io::Write;
    let too_big = || ApiError::Transient {
        message: format!("the file is larger than the {} MB limit", limit / 1_000_000),
        retry_after: None,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let mut size = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| ApiError::Transient {
        message: format!("download interrupted: {}", crate::http::describe(&e)),
        retry_after: None,
    })? {
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_big());
        }
        out.write_all(&chunk).map_err(|e| ApiError::Transient {
            message: format!("cannot write the download: {e}"),
            retry_after: None,
        })?;
    }
    Ok(size)
}

/// A request that got no HTTP answer, classified the same way for every
/// route: refused connection = the service is down (the run halts),
/// timeout or a cut connection = transient. `service` names it in
/// messages (`G-Labs`, `the Gemini API`), `base` is its URL (never a key).
pub fn network_error(e: reqwest::Error, service: &str, base: &str) -> ApiError {
    if e.is_connect() {
        ApiError::Down {
            message: format!("cannot connect to {service} at {base}"),
        }
    } else if e.is_timeout() {
        ApiError::Transient {
            message: format!("{service} at {base} did not answer in time"),
            retry_after: None,
        }
    } else {
        // Without the URL in reqwest's message: it is ours and adds nothing.
        ApiError::Transient {
            message: format!(
                "connection to {service} failed: {}",
                crate::http::describe(&e)
            ),
            retry_after: None,
        }
    }
}

/// No server configured: a run with nothing to generate needs none, and
/// anything that tries to reach one is told so (it halts the run).
pub struct Unreachable;

impl Unreachable {
    fn down() -> ApiError {
        ApiError::Down {
            message: "no generation server is configured (pass --server URL or --sim)".into(),
        }
    }
}

#[async_trait]
impl Generator for Unreachable {
    fn route(&self) -> &'static str {
        "none"
    }
    fn location(&self) -> String {
        "no server".into()
    }
    async fn health(&self) -> Result<Health, ApiError> {
        Err(Self::down())
    }
    async fn submit(&self, _: &GenInput) -> Result<String, ApiError> {
        Err(Self::down())
    }
    async fn status(&self, _: &str) -> Result<TaskView, ApiError> {
        Err(Self::down())
    }
    async fn list_tasks(&self) -> Result<Vec<Listed>, ApiError> {
        Err(Self::down())
    }
    async fn download_to(&self, _: &str, _: u64, _: &mut std::fs::File) -> Result<u64, ApiError> {
        Err(Self::down())
    }
    async fn stop(&self, _: &str) {}
}
