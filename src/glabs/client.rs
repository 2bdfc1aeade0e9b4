//! The G-Labs HTTP client (reqwest): submit, poll, download, with every
//! failure turned into an `ApiError` class the runner knows how to treat.

use super::request::GenRequest;
use super::FailureKind;
use crate::generator::{GenInput, Generator};
use reqwest::StatusCode;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// Worth retrying after a pause: 429, 5xx, a network hiccup, a bad download.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The tunnel or the app is down: connection refused, tunnel error page (502/530).
    Down { message: String },
    /// 401: the API key is wrong or missing.
    Unauthorized,
    /// 404 on a task we submitted: G-Labs restarted and forgot it.
    Lost,
    /// 429: quota or rate limit. Backpressure, not failure: it paces the
    /// run and costs no attempt.
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// A submission was sent and no usable answer came back (the connection
    /// dropped, the answer timed out or was unreadable): the task may exist
    /// and be billed. Look it up before paying again.
    NoAnswer { message: String },
    /// Will not succeed if sent again as it is.
    Permanent { kind: FailureKind, message: String },
    /// A quota that waiting inside this run cannot bring back (Google's
    /// per-day quota, prepaid credits used up): the run stops launching at
    /// once instead of retrying into it; what was not sent is "not run".
    Exhausted { message: String },
}

impl ApiError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ApiError::Transient { .. } => FailureKind::ApiError,
            ApiError::Down { .. } => FailureKind::ConnectionRefused,
            ApiError::Unauthorized => FailureKind::ApiError,
            ApiError::Lost => FailureKind::ApiError,
            ApiError::RateLimited { .. } | ApiError::NoAnswer { .. } => FailureKind::ApiError,
            ApiError::Permanent { kind, .. } => *kind,
            ApiError::Exhausted { .. } => FailureKind::Halted,
        }
    }
    pub fn message(&self) -> String {
        match self {
            ApiError::Transient { message, .. }
            | ApiError::Down { message }
            | ApiError::RateLimited { message, .. }
            | ApiError::NoAnswer { message }
            | ApiError::Permanent { message, .. }
            | ApiError::Exhausted { message } => message.clone(),
            ApiError::Unauthorized => "the service refused the API key (401)".into(),
            ApiError::Lost => {
                "the service no longer knows the task (404): G-Labs was restarted, or a still Google answered was lost with the run".into()
            }
        }
    }
}

/// A polled task: what G-Labs says it is, and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// `type` of the status body (`image` / `video`), when G-Labs sends it.
    pub kind: Option<String>,
    /// `prompt` of the status body, when G-Labs sends it.
    pub prompt: Option<String>,
    pub status: RemoteStatus,
}

impl TaskView {
    /// False when the body names another type or another prompt than the
    /// task we submitted: after a restart G-Labs hands out ids again, so a
    /// recorded id can name someone else's task. Fields the body leaves out
    /// cannot be checked and are taken as matching (glabs.md documents both).
    pub fn is_ours(&self, kind: &str, prompt: &str) -> bool {
        let kind_ok = self
            .kind
            .as_deref()
            .is_none_or(|k| k.trim().to_ascii_lowercase().starts_with(kind));
        let prompt_ok = self
            .prompt
            .as_deref()
            .is_none_or(|p| p.trim() == prompt.trim());
        kind_ok && prompt_ok
    }
}

/// One task of `GET /api/tasks`.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    pub task_id: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    /// ISO 8601, as G-Labs writes it.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Listed {
    /// unix ms of `created_at`, when it can be read.
    pub fn created_ms(&self) -> Option<u64> {
        let t = chrono::DateTime::parse_from_rfc3339(self.created_at.as_deref()?).ok()?;
        u64::try_from(t.timestamp_millis()).ok()
    }

    /// Same type and prompt as ours (the check re-attach makes).
    pub fn is_ours(&self, kind: &str, prompt: &str) -> bool {
        TaskView {
            kind: self.kind.clone(),
            prompt: self.prompt.clone(),
            status: RemoteStatus::Waiting,
        }
        .is_ours(kind, prompt)
    }
}

/// What a status poll says.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteStatus {
    Waiting,
    Completed {
        results: Vec<String>,
    },
    /// The generation ended without a result, classified.
    Failed(ApiError),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub tasks_pending: u64,
    #[serde(default)]
    pub tasks_running: u64,
}

#[derive(Clone)]
pub struct Client {
    base: String,
    api_key: Option<String>,
    /// The ids G-Labs calls each model (`[models]` may change them).
    catalog: crate::models::Catalog,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Classify a task failure by its `error_code` (glabs.md, "Task error codes").
pub fn classify_task_error(code: i64, error: &str, detail: &str) -> ApiError {
    let text = format!("{error} {detail}").to_ascii_lowercase();
    let message = if detail.is_empty() {
        format!("G-Labs error {code}: {error}")
    } else {
        format!("G-Labs error {code}: {error} ({detail})")
    };
    match code {
        429 => ApiError::RateLimited {
            message,
            retry_after: None,
        },
        500 | 502 | 503 => ApiError::Transient {
            message,
            retry_after: None,
        },
        400 if ["policy", "safety", "blocked"]
            .iter()
            .any(|w| text.contains(w)) =>
        {
            ApiError::Permanent {
                kind: FailureKind::ContentPolicy,
                message,
            }
        }
        0 if text.contains("timeout") => ApiError::Permanent {
            kind: FailureKind::Timeout,
            message,
        },
        _ if text.contains("model")
            && (text.contains("not available")
                || text.contains("missing_model")
                || text.contains("unknown model")) =>
        {
            ApiError::Permanent {
                kind: FailureKind::ModelNotAvailable,
                message,
            }
        }
        _ => ApiError::Permanent {
            kind: FailureKind::ApiError,
            message,
        },
    }
}

/// `Retry-After`, capped at `cap`: in seconds (the form G-Labs and
/// OpenAI-style servers send) or as an HTTP date (RFC 9110 allows both).
pub fn retry_after(resp: &reqwest::Response, cap: Duration) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(v, std::time::SystemTime::now()).map(|d| d.min(cap))
}

/// A `Retry-After` value as a wait from `now`; a date in the past is no wait.
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

async fn error_text(resp: reqwest::Response) -> String {
    let body = resp.text().await.unwrap_or_default();
    let from_json = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str().map(str::to_string)));
    let mut text = from_json.unwrap_or(body);
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

impl Client {
    pub fn new(base: &str, api_key: Option<String>) -> Result<Client, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| ApiError::Permanent {
                kind: FailureKind::ApiError,
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            catalog: crate::models::Catalog::default(),
            http,
        })
    }

    /// Send each model under the id this catalog gives it for G-Labs.
    pub fn with_catalog(mut self, catalog: crate::models::Catalog) -> Client {
        self.catalog = catalog;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn with_key(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => req.header("X-API-Key", k),
            None => req,
        }
    }

    fn network_error(&self, e: reqwest::Error) -> ApiError {
        crate::generator::network_error(e, "G-Labs", &self.base)
    }

    async fn http_error(&self, resp: reqwest::Response) -> ApiError {
        let status = resp.status();
        let after = retry_after(&resp, Duration::from_secs(300));
        let text = error_text(resp).await;
        let message = format!("G-Labs answered {status}: {text}");
        match status.as_u16() {
            401 => ApiError::Unauthorized,
            429 => ApiError::RateLimited {
                message,
                retry_after: after,
            },
            502 | 521 | 522 | 523 | 530 => ApiError::Down {
                message: format!(
                    "the tunnel answered {status}: the G-Labs app or its tunnel is down"
                ),
            },
            s if s >= 500 => ApiError::Transient {
                message,
                retry_after: after,
            },
            400 if text.to_ascii_uppercase().contains("MISSING_MODEL")
                || text.to_ascii_lowercase().contains("model") =>
            {
                ApiError::Permanent {
                    kind: FailureKind::ModelNotAvailable,
                    message,
                }
            }
            400 if ["policy", "safety", "blocked"]
                .iter()
                .any(|w| text.to_ascii_lowercase().contains(w)) =>
            {
                ApiError::Permanent {
                    kind: FailureKind::ContentPolicy,
                    message,
                }
            }
            403 => ApiError::Permanent {
                kind: FailureKind::ApiError,
                message: format!("{message} (the G-Labs plan may not allow the API)"),
            },
            _ => ApiError::Permanent {
                kind: FailureKind::ApiError,
                message,
            },
        }
    }

    /// `GET /api/health` (no key needed), and then one authenticated call so a
    /// wrong key is found before anything is spent.
    pub async fn health(&self) -> Result<Health, ApiError> {
        let resp = self
            .http
            .get(format!("{}/api/health", self.base))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if !resp.status().is_success() {
            return Err(self.http_error(resp).await);
        }
        let body = resp.text().await.map_err(|e| self.network_error(e))?;
        let health: Health = serde_json::from_str(&body).map_err(|_| ApiError::Down {
            message: format!(
                "{} answered /api/health with something that is not G-Labs (a tunnel error page?)",
                self.base
            ),
        })?;
        let resp = self
            .with_key(self.http.get(format!("{}/api/tasks", self.base)))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(ApiError::Unauthorized);
        }
        Ok(health)
    }

    /// Queue one task; its G-Labs task id.
    pub async fn submit(&self, input: &GenInput) -> Result<String, ApiError> {
        let mut req = GenRequest::new(input);
        if let Some(id) = self
            .catalog
            .wire_id(crate::models::Provider::Glabs, &input.params.model)
        {
            req.body["model"] = serde_json::Value::String(id);
        }
        let resp = self
            .with_key(self.http.post(format!("{}{}", self.base, req.path())))
            .json(&req.body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| match self.network_error(e) {
                // Sent, maybe created and billed, but no answer.
                ApiError::Transient { message, .. } => ApiError::NoAnswer { message },
                other => other,
            })?;
        if !resp.status().is_success() {
            return Err(self.http_error(resp).await);
        }
        #[derive(Deserialize)]
        struct Submitted {
            task_id: String,
        }
        let s: Submitted = resp.json().await.map_err(|e| ApiError::NoAnswer {
            message: format!("unreadable submit answer: {}", e.without_url()),
        })?;
        if s.task_id.is_empty()
            || s.task_id.len() > 64
            || !s
                .task_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ApiError::Permanent {
                kind: FailureKind::ApiError,
                message: format!("G-Labs returned an unusable task id {:?}", s.task_id),
            });
        }
        Ok(s.task_id)
    }

    pub async fn status(&self, task_id: &str) -> Result<TaskView, ApiError> {
        let resp = self
            .with_key(
                self.http
                    .get(format!("{}/api/status/{}", self.base, task_id)),
            )
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ApiError::Lost);
        }
        if !resp.status().is_success() {
            return Err(self.http_error(resp).await);
        }
        #[derive(Deserialize)]
        struct Status {
            status: String,
            #[serde(default, rename = "type")]
            kind: Option<String>,
            #[serde(default)]
            prompt: Option<String>,
            #[serde(default)]
            results: Vec<String>,
            #[serde(default)]
            error_code: Option<i64>,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            error_detail: Option<serde_json::Value>,
        }
        let s: Status = resp.json().await.map_err(|e| ApiError::Transient {
            message: format!("unreadable status answer: {}", e.without_url()),
            retry_after: None,
        })?;
        let status = match s.status.as_str() {
            "completed" if !s.results.is_empty() => RemoteStatus::Completed { results: s.results },
            "completed" => {
                RemoteStatus::Failed(classify_task_error(0, "completed without results", ""))
            }
            "failed" | "error" | "cancelled" | "stopped" => {
                RemoteStatus::Failed(classify_task_error(
                    s.error_code.unwrap_or(0),
                    &s.error.unwrap_or_default(),
                    &match s.error_detail {
                        Some(serde_json::Value::String(d)) => d,
                        Some(serde_json::Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    },
                ))
            }
            _ => RemoteStatus::Waiting,
        };
        Ok(TaskView {
            kind: s.kind,
            prompt: s.prompt,
            status,
        })
    }

    /// `GET /api/tasks`: the most recent tasks (G-Labs keeps 50), newest
    /// first, to find the task of a submission whose answer was lost.
    pub async fn list_tasks(&self) -> Result<Vec<Listed>, ApiError> {
        let resp = self
            .with_key(self.http.get(format!("{}/api/tasks", self.base)))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if !resp.status().is_success() {
            return Err(self.http_error(resp).await);
        }
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            tasks: Vec<Listed>,
        }
        let l: List = resp.json().await.map_err(|e| ApiError::Transient {
            message: format!("unreadable task list: {}", e.without_url()),
            retry_after: None,
        })?;
        Ok(l.tasks)
    }

    /// Ask G-Labs to stop a task (after our own timeout).
    pub async fn stop(&self, task_id: &str) {
        let _ = self
            .with_key(
                self.http
                    .post(format!("{}/api/stop/{}", self.base, task_id)),
            )
            .timeout(Duration::from_secs(10))
            .send()
            .await;
    }

    /// The URL G-Labs gave, re-based onto our base URL: results carry the
    /// app's own bind address, which is unreachable through a tunnel.
    pub fn rebase(&self, url: &str) -> String {
        let path = match url.find("://") {
            Some(i) => match url[i + 3..].find('/') {
                Some(j) => &url[i + 3 + j..],
                None => "/",
            },
            None if url.starts_with('/') => url,
            None => return format!("{}/{}", self.base, url),
        };
        format!("{}{}", self.base, path)
    }

    /// Download a produced file into `out` (at most `limit` bytes), chunk
    /// by chunk; its size.
    pub async fn download_to(
        &self,
        url: &str,
        limit: u64,
        out: &mut std::fs::File,
    ) -> Result<u64, ApiError> {
        let resp = self
            .with_key(self.http.get(self.rebase(url)))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if !resp.status().is_success() {
            return Err(match self.http_error(resp).await {
                ApiError::Permanent { message, .. } => ApiError::Transient {
                    message: format!("download failed: {message}"),
                    retry_after: None,
                },
                other => other,
            });
        }
        crate::generator::stream_to(resp, limit, out).await
    }
}

/// A reqwest error with its causes, without the URL (callers name it).
pub fn describe(e: &reqwest::Error) -> String {
    let mut parts = vec![e
        .to_string()
        .split(" for url")
        .next()
        .unwrap_or_default()
        .to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

/// Read a response body, refusing one larger than `limit`.
pub async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(format!(
            "the file is larger than the {} MB limit",
            limit / 1_000_000
        ));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("download interrupted: {}", e.without_url()))?
    {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(format!(
                "the file is larger than the {} MB limit",
                limit / 1_000_000
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Generator for Client {
    fn route(&self) -> &'static str {
        "glabs"
    }
    fn location(&self) -> String {
        self.base.clone()
    }
    async fn health(&self) -> Result<Health, ApiError> {
        Client::health(self).await
    }
    async fn submit(&self, input: &GenInput) -> Result<String, ApiError> {
        Client::submit(self, input).await
    }
    async fn status(&self, id: &str) -> Result<TaskView, ApiError> {
        Client::status(self, id).await
    }
    async fn list_tasks(&self) -> Result<Vec<Listed>, ApiError> {
        Client::list_tasks(self).await
    }
    async fn download_to(
        &self,
        url: &str,
        limit: u64,
        out: &mut std::fs::File,
    ) -> Result<u64, ApiError> {
        Client::download_to(self, url, limit, out).await
    }
    async fn stop(&self, id: &str) {
        Client::stop(self, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 02 Dec 2026 01:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 01:00:42 GMT", now),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 00:59:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: no wait"
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn results_are_rebased_onto_our_base_url() {
        let c = Client::new("https://abc.trycloudflare.com/", None).unwrap();
        assert_eq!(
            c.rebase("http://127.0.0.1:8765/api/files/image_001.png"),
            "https://abc.trycloudflare.com/api/files/image_001.png"
        );
        assert_eq!(
            c.rebase("/api/files/x.mp4"),
            "https://abc.trycloudflare.com/api/files/x.mp4"
        );
    }

    #[test]
    fn a_task_of_another_type_or_prompt_is_not_ours() {
        let view = |kind: Option<&str>, prompt: Option<&str>| TaskView {
            kind: kind.map(str::to_string),
            prompt: prompt.map(str::to_string),
            status: RemoteStatus::Waiting,
        };
        assert!(view(Some("image"), Some("a cat")).is_ours("image", "a cat"));
        assert!(!view(Some("image"), Some("a dog")).is_ours("image", "a cat"));
        assert!(!view(Some("video"), Some("a cat")).is_ours("image", "a cat"));
        assert!(view(None, None).is_ours("video", "a cat"));
    }

    #[test]
    fn task_errors_map_to_runner_classes() {
        // Backpressure, not failure: paced, never an attempt (issue 17).
        assert!(matches!(
            classify_task_error(429, "quota", ""),
            ApiError::RateLimited { .. }
        ));
        assert!(matches!(
            classify_task_error(500, "internal", ""),
            ApiError::Transient { .. }
        ));
        assert_eq!(
            classify_task_error(400, "Prompt blocked by safety filter", "").kind(),
            FailureKind::ContentPolicy
        );
        assert_eq!(
            classify_task_error(400, "invalid argument", "").kind(),
            FailureKind::ApiError
        );
        assert_eq!(
            classify_task_error(0, "Timeout: no result generated", "").kind(),
            FailureKind::Timeout
        );
        assert_eq!(
            classify_task_error(0, "No active accounts available", "").kind(),
            FailureKind::ApiError
        );
        assert_eq!(
            classify_task_error(403, "login", "").kind(),
            FailureKind::ApiError
        );
        assert_eq!(
            classify_task_error(499, "stopped", "").kind(),
            FailureKind::ApiError
        );
    }
}
