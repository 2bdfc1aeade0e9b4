//! The simulator's visual-QA reviewer, in the OpenAI chat-completions shape:
//! it finds the image in the messages and flags it when it carries the
//! planted-flaw marker ([`crate::media::has_flaw`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::clock::unix_now;
use super::http::{decode_image_text, read_body};
use super::state::Shared;
use crate::media;

/// The model id the reviewer answers as when the request names none.
pub const REVIEWER_MODEL: &str = "nbbuild-sim-reviewer";

/// The reviewer's routes (`/v1/*`), for the router in `server`.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
}

fn openai_error(status: StatusCode, message: impl Into<String>, kind: &str) -> Response {
    (
        status,
        Json(json!({
            "error": {
                "message": message.into(),
                "type": kind,
                "param": null,
                "code": null,
            }
        })),
    )
        .into_response()
}

/// Every `image_url` in the messages, in order.
fn image_urls(messages: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for m in messages {
        let Some(parts) = m.get("content").and_then(Value::as_array) else {
            continue;
        };
        for p in parts {
            let url = match p.get("image_url") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => o.get("url").and_then(Value::as_str).map(str::to_string),
                _ => None,
            };
            if let Some(u) = url {
                out.push(u);
            }
        }
    }
    out
}

async fn chat_completions(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !s.authorized(&headers, true) {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing API key",
            "invalid_request_error",
        );
    }
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => {
            let status = r.status();
            return openai_error(
                status,
                "Could not read the request body",
                "invalid_request_error",
            );
        }
    };
    let bad = |m: String| openai_error(StatusCode::BAD_REQUEST, m, "invalid_request_error");
    let req: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad(format!("Invalid JSON body: {e}")),
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad("Missing required field: messages".into());
    };
    let urls = image_urls(messages);
    if urls.is_empty() {
        return bad("No image found in the messages: send it as an image_url data URL".into());
    }
    let mut flagged = false;
    for (i, url) in urls.iter().enumerate() {
        let bytes = match decode_image_text(url) {
            Ok(b) => b,
            Err(e) => return bad(format!("Image {i} could not be decoded: {e}")),
        };
        if !media::is_png(&bytes) {
            return bad(format!("Image {i} could not be decoded: not a PNG image"));
        }
        flagged |= media::has_flaw(&bytes);
    }
    s.count_review();
    let verdict = if flagged {
        json!({"verdict": "flagged", "tells": ["extra finger on left hand"], "confidence": 0.93})
    } else {
        json!({"verdict": "clean", "tells": [], "confidence": 0.97})
    };
    let content = verdict.to_string();
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(REVIEWER_MODEL)
        .to_string();
    let n = s.qa_calls.fetch_add(1, Ordering::Relaxed) + 1;
    let prompt_tokens = 85 * urls.len() as u64
        + messages
            .iter()
            .map(|m| m.to_string().len() as u64 / 40)
            .sum::<u64>()
            .min(100_000);
    let completion_tokens = (content.len() as u64 / 4).max(1);
    Json(json!({
        "id": format!("chatcmpl-sim{n:08x}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
    .into_response()
}

async fn models(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers, true) {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing API key",
            "invalid_request_error",
        );
    }
    Json(json!({
        "object": "list",
        "data": [{"id": REVIEWER_MODEL, "object": "model", "created": 0, "owned_by": "nbbuild-sim"}],
    }))
    .into_response()
}
