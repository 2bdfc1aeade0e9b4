//! HTTP plumbing every room shares: the API-key check, the body limit,
//! base64 image payloads, and JSON error answers.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::json;

use super::state::Shared;

/// Request bodies above this answer 413.
const MAX_BODY: usize = 50 << 20;
/// Bodies are drained up to this size so the client reads the 413; beyond
/// it the connection is closed.
const DRAIN_LIMIT: usize = 256 << 20;

impl Shared {
    /// `Ok` when no key is configured or the request carries it.
    pub(super) fn authorized(&self, headers: &HeaderMap, bearer_too: bool) -> bool {
        let Some(key) = &self.config.api_key else {
            return true;
        };
        let given = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        if given == Some(key.as_str()) {
            return true;
        }
        if bearer_too {
            if let Some(auth) = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
            {
                if auth.strip_prefix("Bearer ").map(str::trim) == Some(key.as_str()) {
                    return true;
                }
            }
        }
        false
    }
}

/// Read a request body of at most [`MAX_BODY`] bytes; above that, 413.
pub(super) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large (max 50 MB)",
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| error(StatusCode::BAD_REQUEST, "Could not read request body"))?;
        total += chunk.len();
        if total > DRAIN_LIMIT {
            return Err(too_large());
        }
        if total <= MAX_BODY {
            buf.extend_from_slice(&chunk);
        }
    }
    if total > MAX_BODY {
        return Err(too_large());
    }
    Ok(buf)
}

/// Bytes from a data URI or raw base64 (standard or URL-safe alphabet,
/// padding optional, whitespace ignored).
pub(super) fn decode_image_text(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err("URLs cannot be fetched: send the image bytes as base64".into());
    }
    let payload = if let Some(rest) = text.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| "malformed data URI".to_string())?;
        if !meta.ends_with(";base64") {
            return Err("data URI is not base64".into());
        }
        data
    } else {
        text
    };
    let clean: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    if clean.is_empty() {
        return Err("no data".into());
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = STANDARD
        .decode(&clean)
        .or_else(|_| STANDARD_NO_PAD.decode(&clean))
        .or_else(|_| URL_SAFE.decode(&clean))
        .or_else(|_| URL_SAFE_NO_PAD.decode(&clean))
        .map_err(|_| "not valid base64".to_string())?;
    if bytes.is_empty() {
        return Err("no data".into());
    }
    Ok(bytes)
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

pub(super) fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "Invalid or missing API key")
}

pub(super) fn internal_error() -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// HTTP 429 with `Retry-After: 1`.
pub(super) fn rate_limited(message: impl Into<String>) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

pub(super) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_text_decodes() {
        let d = decode_image_text("data:image/png;base64,aGVsbG8=").unwrap();
        assert_eq!(d, b"hello");
        assert_eq!(decode_image_text("aGVsbG8").unwrap(), b"hello");
        assert!(decode_image_text("https://x/y.png").is_err());
        assert!(decode_image_text("!!!").is_err());
    }
}
