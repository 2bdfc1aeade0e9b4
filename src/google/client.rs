//! The Gemini API client (reqwest) behind the `Generator` trait.
//!
//! Stills: `generateContent` answers synchronously with the image inline.
//! `submit` makes the call and parks the answer (the bytes, or the safety
//! refusal) in memory under a synthetic id; `status` reports it, and
//! `download_to` writes it. So the runner treats both routes alike: a
//! refusal goes through its content-policy path (retried once), and the
//! still is committed the way a G-Labs file is. The parked answer lives only
//! in this process: Google offers no way to look a still up again, so a
//! build killed between Google's answer and the commit (a few milliseconds)
//! pays for that still again on the next run; its recorded id then answers
//! `Lost` and the runner resubmits.
//!
//! Clips: `predictLongRunning` answers with an operation `name`, which the
//! runner records before polling (a killed build re-attaches to it);
//! `status` polls `GET v1beta/{name}`; the sample's URI is downloaded with
//! the key header, following redirects, and the key is sent to Google's own
//! host only.

use super::answers::{internal, read_operation, read_still, Parked};
use super::errors::GoogleError;
use super::request;
use crate::compile::TaskKind;
use crate::generator::{ApiError, GenInput, Generator, Health, Listed, RemoteStatus, TaskView};
use crate::glabs::FailureKind;
use crate::models::{Catalog, Provider};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Google's public endpoint.
pub const DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";

/// The prefix of a parked still's synthetic id.
const STILL: &str = "still-";
/// The URL scheme `status` hands `download_to` for a parked still.
const INLINE: &str = "inline:";

pub struct Client {
    base: String,
    api_key: Option<String>,
    catalog: Catalog,
    /// Redirects are followed by hand (downloads), so the key goes to
    /// Google's host only.
    http: reqwest::Client,
    parked: Mutex<HashMap<String, Parked>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("google::Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(base: &str, api_key: Option<String>, catalog: Catalog) -> Result<Client, ApiError> {
        let http =
            crate::generator::http_client(|b| b.redirect(reqwest::redirect::Policy::none()))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            catalog,
            http,
            parked: Mutex::new(HashMap::new()),
        })
    }

    fn with_key(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => req.header("x-goog-api-key", k),
            None => req,
        }
    }

    fn model_id(&self, input: &GenInput) -> Result<String, ApiError> {
        self.catalog
            .wire_id(Provider::Google, &input.params.model)
            .ok_or_else(|| ApiError::Permanent {
                kind: FailureKind::ModelNotAvailable,
                message: format!(
                    "{} has no Google equivalent: build it with --provider glabs, or name a Google id for it under [models] in nbbuild.toml",
                    input.params.model
                ),
            })
    }

    fn network_error(&self, e: reqwest::Error) -> ApiError {
        crate::generator::network_error(e, "Google's Gemini API", &self.base)
    }

    async fn error_of(&self, resp: reqwest::Response, model: &str) -> ApiError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        GoogleError::parse(status, &body).classify(model)
    }

    fn park(&self, p: Parked) -> String {
        let id = format!(
            "{STILL}{:016x}{:08x}",
            fastrand::u64(..),
            std::process::id()
        );
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), p);
        id
    }

    /// POST `v1beta/models/{model}:{method}` with `body`; the JSON answer.
    /// A call that was sent and got no answer, or an unreadable one, may
    /// have been billed: `NoAnswer`.
    async fn call_model(
        &self,
        model: &str,
        method: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        let resp = self
            .with_key(
                self.http
                    .post(format!("{}/v1beta/models/{model}:{method}", self.base)),
            )
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.sent_error(e))?;
        if !resp.status().is_success() {
            return Err(self.error_of(resp, model).await);
        }
        resp.json().await.map_err(|e| ApiError::NoAnswer {
            message: format!("unreadable {method} answer: {}", e.without_url()),
        })
    }

    async fn submit_still(&self, input: &GenInput, model: &str) -> Result<String, ApiError> {
        let body = request::still_body(input);
        let answer = self
            .call_model(model, "generateContent", &body, Duration::from_secs(300))
            .await?;
        Ok(self.park(read_still(&answer)))
    }

    async fn submit_clip(&self, input: &GenInput, model: &str) -> Result<String, ApiError> {
        let body = request::clip_body(input);
        let body = self
            .call_model(model, "predictLongRunning", &body, Duration::from_secs(120))
            .await?;
        let name = body.get("name").and_then(Value::as_str).unwrap_or("");
        let usable = !name.is_empty()
            && name.len() <= 300
            && name.starts_with("models/")
            && !name.contains("..")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !usable {
            return Err(internal(format!(
                "Google returned an unusable operation name {name:?}"
            )));
        }
        Ok(name.to_string())
    }

    /// A request that was sent and got no answer may have been billed.
    fn sent_error(&self, e: reqwest::Error) -> ApiError {
        match self.network_error(e) {
            ApiError::Transient { message, .. } => ApiError::NoAnswer { message },
            other => other,
        }
    }

    /// GET `url`, following up to 10 redirects; the key header only on
    /// requests to the configured host (a redirect to a storage host must not
    /// carry it).
    async fn get_following(&self, url: &str) -> Result<reqwest::Response, ApiError> {
        let bad = |what: String| ApiError::Transient {
            message: what,
            retry_after: None,
        };
        let base = reqwest::Url::parse(&self.base)
            .map_err(|_| internal(format!("{} is not a URL", self.base)))?;
        let mut at = reqwest::Url::parse(url)
            .or_else(|_| base.join(url))
            .map_err(|_| bad("Google returned a clip URI that is not a URL".into()))?;
        for _ in 0..10 {
            let same_host = at.origin() == base.origin();
            let mut req = self.http.get(at.clone());
            if same_host {
                req = self.with_key(req);
            }
            let resp = req.send().await.map_err(|e| self.network_error(e))?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| bad("a redirect without a Location".into()))?;
            at = at
                .join(next)
                .map_err(|_| bad("a redirect to something that is not a URL".into()))?;
        }
        Err(bad("more than 10 redirects".into()))
    }
}

#[async_trait::async_trait]
impl Generator for Client {
    fn route(&self) -> &'static str {
        "google"
    }
    fn location(&self) -> String {
        self.base.clone()
    }
    /// `GET v1beta/models?pageSize=1` with the key: reachable, and the key
    /// accepted, before anything is spent. Google has no health endpoint.
    async fn health(&self) -> Result<Health, ApiError> {
        let resp = self
            .with_key(
                self.http
                    .get(format!("{}/v1beta/models?pageSize=1", self.base)),
            )
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if !resp.status().is_success() {
            return Err(match self.error_of(resp, "").await {
                // Whatever a model list refuses is about the key or the project.
                ApiError::Permanent { message, .. } => ApiError::Down { message },
                other => other,
            });
        }
        Ok(Health {
            status: "ok".into(),
            server: "Gemini API".into(),
            tasks_pending: 0,
            tasks_running: 0,
        })
    }
    async fn submit(&self, input: &GenInput) -> Result<String, ApiError> {
        let model = self.model_id(input)?;
        match input.kind {
            TaskKind::Image => self.submit_still(input, &model).await,
            TaskKind::Video => self.submit_clip(input, &model).await,
        }
    }
    async fn status(&self, id: &str) -> Result<TaskView, ApiError> {
        let view = |status| TaskView {
            kind: None,
            prompt: None,
            status,
        };
        if id.starts_with(STILL) {
            let parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            return match parked.get(id) {
                Some(Parked::Image { .. }) => Ok(view(RemoteStatus::Completed {
                    results: vec![format!("{INLINE}{id}")],
                })),
                Some(Parked::Refused(e)) => Ok(view(RemoteStatus::Failed(e.clone()))),
                // Answered to a process that is gone: Google cannot find it again.
                None => Err(ApiError::Lost),
            };
        }
        let resp = self
            .with_key(self.http.get(format!("{}/v1beta/{id}", self.base)))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(ApiError::Lost);
        }
        if !resp.status().is_success() {
            return Err(self.error_of(resp, id).await);
        }
        let body: Value = resp.json().await.map_err(|e| ApiError::Transient {
            message: format!("unreadable operation: {}", e.without_url()),
            retry_after: None,
        })?;
        Ok(view(read_operation(&body)))
    }
    /// Google lists no generations: a lost answer cannot be adopted.
    async fn list_tasks(&self) -> Result<Vec<Listed>, ApiError> {
        Ok(Vec::new())
    }
    /// Write a parked still, or download a clip's URI, into `out`.
    async fn download_to(
        &self,
        url: &str,
        limit: u64,
        out: &mut std::fs::File,
    ) -> Result<u64, ApiError> {
        use std::io::Write;
        if let Some(id) = url.strip_prefix(INLINE) {
            let parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            let Some(Parked::Image { bytes }) = parked.get(id) else {
                return Err(ApiError::Lost);
            };
            out.write_all(bytes).map_err(|e| ApiError::Transient {
                message: format!("cannot write the still: {e}"),
                retry_after: None,
            })?;
            let size = bytes.len() as u64;
            drop(parked);
            // Committed by the runner next; this process needs it no more.
            self.parked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            return Ok(size);
        }
        let resp = self.get_following(url).await?;
        if !resp.status().is_success() {
            let e = self.error_of(resp, "").await;
            return Err(ApiError::Transient {
                message: format!("download failed: {}", e.message()),
                retry_after: None,
            });
        }
        crate::generator::stream_to(resp, limit, out).await
    }
    /// Veo operations cannot be cancelled on the Gemini API; a still is over
    /// when its answer arrives.
    async fn stop(&self, id: &str) {
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Google's clip URI answers a redirect to its storage: the key goes to
    /// Google's host, never to the host redirected to.
    #[tokio::test]
    async fn downloads_follow_redirects_and_keep_the_key_on_googles_host() {
        use axum::http::HeaderMap;
        use axum::response::IntoResponse;
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<(&'static str, bool)>>> = Arc::default();
        let serve = |app: axum::Router| async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
            format!("http://{addr}")
        };
        let s2 = seen.clone();
        let storage = serve(axum::Router::new().route(
            "/blob",
            axum::routing::get(move |h: HeaderMap| async move {
                s2.lock()
                    .unwrap()
                    .push(("storage", h.contains_key("x-goog-api-key")));
                "clip bytes"
            }),
        ))
        .await;
        let s1 = seen.clone();
        let target = format!("{storage}/blob");
        let google = serve(axum::Router::new().route(
            "/v1beta/files/{f}",
            axum::routing::get(move |h: HeaderMap| async move {
                s1.lock()
                    .unwrap()
                    .push(("google", h.contains_key("x-goog-api-key")));
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, target)],
                )
                    .into_response()
            }),
        ))
        .await;
        let c = Client::new(&google, Some("secret".into()), Catalog::default()).unwrap();
        let mut out = tempfile::tempfile().unwrap();
        let uri = format!("{google}/v1beta/files/abc:download?alt=media");
        assert_eq!(c.download_to(&uri, 1 << 20, &mut out).await.unwrap(), 10);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![("google", true), ("storage", false)]
        );
    }
}
