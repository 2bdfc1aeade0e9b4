//! The G-Labs HTTP client (reqwest): submit, poll, list, download and
//! stop, behind the `Generator` trait. Failures are classified in
//! `errors`, the answers' shapes are in `answers`.

use super::answers::{Health, Listed, RemoteStatus, TaskView};
use super::errors::{classify_task_error, from_response, ApiError};
use super::request::GenRequest;
use super::FailureKind;
use crate::generator::{GenInput, Generator};
use reqwest::StatusCode;
use serde::Deserialize;
use std::time::Duration;

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

impl Client {
    pub fn new(base: &str, api_key: Option<String>) -> Result<Client, ApiError> {
        let http = crate::generator::http_client(|b| b.pool_max_idle_per_host(8))?;
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
}

#[async_trait::async_trait]
impl Generator for Client {
    fn route(&self) -> &'static str {
        "glabs"
    }
    fn location(&self) -> String {
        self.base.clone()
    }

    /// `GET /api/health` (no key needed), and then one authenticated call so a
    /// wrong key is found before anything is spent.
    async fn health(&self) -> Result<Health, ApiError> {
        let resp = self
            .http
            .get(format!("{}/api/health", self.base))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if !resp.status().is_success() {
            return Err(from_response(resp).await);
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
    async fn submit(&self, input: &GenInput) -> Result<String, ApiError> {
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
            return Err(from_response(resp).await);
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

    async fn status(&self, task_id: &str) -> Result<TaskView, ApiError> {
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
            return Err(from_response(resp).await);
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
    async fn list_tasks(&self) -> Result<Vec<Listed>, ApiError> {
        let resp = self
            .with_key(self.http.get(format!("{}/api/tasks", self.base)))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if !resp.status().is_success() {
            return Err(from_response(resp).await);
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
    async fn stop(&self, task_id: &str) {
        let _ = self
            .with_key(
                self.http
                    .post(format!("{}/api/stop/{}", self.base, task_id)),
            )
            .timeout(Duration::from_secs(10))
            .send()
            .await;
    }

    /// Download a produced file into `out` (at most `limit` bytes), chunk
    /// by chunk; its size.
    async fn download_to(
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
            return Err(match from_response(resp).await {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
