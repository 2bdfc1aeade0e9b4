//! The Google room: the Gemini API routes nbbuild's google route uses
//! (`/v1beta/*`), on the same port as G-Labs: the model list (the key
//! check), `generateContent` for stills (synchronous: the image comes back
//! inline once the task's latency has passed), `predictLongRunning` for clips
//! (an operation to poll), operation polls, and clip downloads (a 302 to the
//! file, as Google redirects).
//!
//! The fault options keep their meaning in Google's shapes: `rate_limit_every`
//! and `capacity` answer 429 `RESOURCE_EXHAUSTED` with a per-minute
//! `QuotaFailure` and a `RetryInfo`; `daily_quota` answers every submit past
//! it with a per-day `QuotaFailure`; `error_rate` answers 503 `UNAVAILABLE`;
//! `policy_word` makes a still finish with `IMAGE_SAFETY` and a clip with
//! `raiMediaFilteredCount`; `lose_every` forgets an operation (polls answer
//! 404) or drops a still's answer; `drop_rate`, `lose_answer_rate` and
//! `die_after_submits` act as in the G-Labs room. Submissions are counted in
//! the same `image_submits` / `video_submits`.

mod checks;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};

use super::faults::dropped;
use super::http::read_body;
use super::lifecycle::Admission;
use super::state::Shared;
use super::tasks::{Kind, Status};
use crate::media;

/// The Google routes, for the router in `server`.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1beta/models", get(list_models))
        .route("/v1beta/models/{call}", post(call))
        .route("/v1beta/models/{model}/operations/{op}", get(operation))
        .route("/v1beta/files/{file}", get(file))
}

/// `{"error": {"code", "message", "status", "details"}}`, Google's shape.
fn google_error(code: StatusCode, status: &str, message: &str, details: Value) -> Response {
    let body = json!({"error": {
        "code": code.as_u16(), "message": message, "status": status, "details": details,
    }});
    (code, Json(body)).into_response()
}

fn key_invalid() -> Response {
    google_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com"}]),
    )
}

/// 429 with a `QuotaFailure` naming `quota_id` and a `RetryInfo` (Google
/// sends no `Retry-After`).
fn exhausted(quota_id: &str, message: &str) -> Response {
    google_error(
        StatusCode::TOO_MANY_REQUESTS,
        "RESOURCE_EXHAUSTED",
        message,
        json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_requests", "quotaId": quota_id}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.000000001s"}
        ]),
    )
}

fn per_minute() -> Response {
    exhausted(
        "GenerateRequestsPerMinutePerProjectPerModel",
        "You exceeded your current quota, please check your plan and billing details.",
    )
}

fn unavailable() -> Response {
    google_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        "The model is overloaded. Please try again later.",
        json!([]),
    )
}

impl Shared {
    /// `x-goog-api-key` equal to the configured key (or no key configured).
    fn google_authorized(&self, headers: &HeaderMap) -> bool {
        match &self.config.api_key {
            None => true,
            Some(key) => {
                headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) == Some(key.as_str())
            }
        }
    }

    /// Counts a Google submit against `daily_quota`; true when past it.
    fn past_daily_quota(&self) -> bool {
        let Some(quota) = self.config.daily_quota else {
            return false;
        };
        let n = self.google_submits.fetch_add(1, Ordering::SeqCst);
        let past = n >= quota;
        if past {
            let mut st = self.lock();
            st.stats.rate_limited += 1;
            st.stats.daily_quota_refused += 1;
        }
        past
    }
}

async fn list_models(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.google_authorized(&headers) {
        return key_invalid();
    }
    let models: Vec<Value> = checks::IMAGE_MODELS
        .iter()
        .chain(checks::VIDEO_MODELS)
        .map(|m| json!({"name": format!("models/{m}")}))
        .collect();
    Json(json!({ "models": models })).into_response()
}

/// `POST /v1beta/models/{model}:generateContent` or `:predictLongRunning`.
async fn call(
    State(s): State<Arc<Shared>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((model, method)) = call.split_once(':') else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found", json!([]));
    };
    let kind = match method {
        "generateContent" => Kind::Image,
        "predictLongRunning" => Kind::Video,
        _ => return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found", json!([])),
    };
    if !s.google_authorized(&headers) {
        return key_invalid();
    }
    let known = match kind {
        Kind::Image => checks::IMAGE_MODELS,
        Kind::Video => checks::VIDEO_MODELS,
    };
    if !known.contains(&model) {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("models/{model} is not found for API version v1beta, or is not supported for {method}. Call ListModels to see the list of available models and their supported methods."),
            json!([]),
        );
    }
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if s.past_daily_quota() {
        return exhausted(
            "GenerateRequestsPerDayPerProjectPerModel",
            "You exceeded your current quota (requests per day). Please retry after the quota resets.",
        );
    }
    if s.rate_limit_due() {
        return per_minute();
    }
    if s.roll_error() {
        return unavailable();
    }
    let parsed = match kind {
        Kind::Image => checks::parse_still(&bytes),
        Kind::Video => checks::parse_clip(&bytes),
    };
    let req = match parsed {
        Ok(r) => r,
        Err(m) => return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &m, json!([])),
    };
    let id = match s.accept(req) {
        Admission::AtCapacity(_) => return per_minute(),
        Admission::AnswerLost => return dropped(),
        Admission::Created(id) => id,
    };
    match kind {
        Kind::Video => {
            Json(json!({ "name": format!("models/{model}/operations/{id}") })).into_response()
        }
        Kind::Image => still_answer(&s, &id, model).await,
    }
}

/// Wait for a still's task to end, then answer as `generateContent` does.
async fn still_answer(s: &Arc<Shared>, id: &str, model: &str) -> Response {
    let ended = loop {
        if s.stopped.load(Ordering::SeqCst) {
            return unavailable();
        }
        {
            let st = s.lock();
            match st.tasks.get(id) {
                // Forgotten (`lose_every`, a restart): the answer never comes.
                None => break None,
                Some(t) if matches!(t.status, Status::Completed | Status::Failed) => {
                    break Some((t.status, t.results.first().cloned(), t.error.clone()))
                }
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let Some((status, file, error)) = ended else {
        return dropped();
    };
    if status == Status::Failed {
        return match error.map(|e| e.0) {
            Some(400) => Json(json!({"candidates": [{
                "finishReason": "IMAGE_SAFETY",
                "finishMessage": "Unable to show the generated image: it may violate the usage policies.",
                "index": 0
            }], "modelVersion": model}))
            .into_response(),
            _ => google_error(
                StatusCode::GATEWAY_TIMEOUT,
                "DEADLINE_EXCEEDED",
                "Deadline expired before operation could complete.",
                json!([]),
            ),
        };
    }
    let Some(name) = file else {
        return unavailable();
    };
    let Some(bytes) = file_bytes(s, &name).await else {
        return unavailable();
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // Gemini 3 image models think, and may show an interim image: a small
    // one here, marked as a thought, which a client must skip.
    let thought = tokio::task::spawn_blocking(|| media::still("a draft", 0, 32, 32, false))
        .await
        .unwrap_or_default();
    Json(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Composing the scene.", "thought": true},
                {"inlineData": {"mimeType": "image/png", "data": b64(&thought)}, "thought": true},
                {"inlineData": {"mimeType": "image/png", "data": b64(&bytes)}, "thoughtSignature": "c2ln"}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"candidatesTokenCount": 1120},
        "modelVersion": model
    }))
    .into_response()
}

/// A produced file's bytes, made once (off the async threads) and kept.
async fn file_bytes(s: &Arc<Shared>, name: &str) -> Option<Bytes> {
    let (recipe, cached) = s.lock().files.get(name).cloned()?;
    if let Some(b) = cached {
        return Some(b);
    }
    let padding = s.config.clip_padding;
    let made = Bytes::from(
        tokio::task::spawn_blocking(move || recipe.make(padding))
            .await
            .ok()?,
    );
    if let Some(entry) = s.lock().files.get_mut(name) {
        entry.1 = Some(made.clone());
    }
    Some(made)
}

/// `GET /v1beta/models/{model}/operations/{op}`.
async fn operation(
    State(s): State<Arc<Shared>>,
    Path((model, op)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !s.google_authorized(&headers) {
        return key_invalid();
    }
    if s.roll_error() {
        return unavailable();
    }
    let name = format!("models/{model}/operations/{op}");
    let st = s.lock();
    let Some(task) = st.tasks.get(&op).filter(|t| t.kind == Kind::Video) else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Operation {name} not found"),
            json!([]),
        );
    };
    let body = match task.status {
        Status::Pending | Status::Running => json!({ "name": name }),
        Status::Completed => {
            let samples: Vec<Value> = task
                .results
                .iter()
                .map(|f| json!({"video": {"uri": format!("{}/v1beta/files/{f}:download?alt=media", s.base)}}))
                .collect();
            json!({"name": name, "done": true, "response": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": {"generatedSamples": samples}
            }})
        }
        Status::Failed => match task.error.as_ref().map(|e| e.0) {
            Some(400) => json!({"name": name, "done": true, "response": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": {
                    "raiMediaFilteredCount": 1,
                    "raiMediaFilteredReasons": ["The video could not be generated: it may violate the usage guidelines. You will not be charged for blocked videos."]
                }
            }}),
            // `timeout_word`: the operation never finishes (the node's timeout ends it).
            Some(0) => json!({ "name": name }),
            _ => json!({"name": name, "done": true,
                "error": {"code": 1, "status": "CANCELLED", "message": "The operation was cancelled."}}),
        },
    };
    Json(body).into_response()
}

/// `GET /v1beta/files/{name}:download?alt=media`: the key is checked, then
/// a 302 to the file, as Google redirects to its storage.
async fn file(
    State(s): State<Arc<Shared>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !s.google_authorized(&headers) {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "The caller does not have permission",
            json!([]),
        );
    }
    let Some(name) = file.strip_suffix(":download") else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found", json!([]));
    };
    if !s.lock().files.contains_key(name) {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("File {name} not found (Google keeps clips two days)"),
            json!([]),
        );
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("/api/files/{name}"))],
    )
        .into_response()
}
