//! What Google answers, read into the runner's terms: a `generateContent`
//! body into the still (or why there is none), a polled operation into a
//! `RemoteStatus` with the clip's URI.

use super::errors::{content_policy, GoogleError, SAFETY_FINISH};
use crate::generator::{ApiError, RemoteStatus};
use crate::glabs::FailureKind;
use base64::Engine;
use serde_json::Value;

/// What `generateContent` answered, kept until the still is downloaded.
pub(super) enum Parked {
    Image { bytes: Vec<u8> },
    Refused(ApiError),
}

/// An answer that is not what the API documents.
pub(super) fn internal(message: String) -> ApiError {
    ApiError::Permanent {
        kind: FailureKind::ApiError,
        message,
    }
}

/// A `generateContent` answer: the image, or why there is none.
pub(super) fn read_still(body: &Value) -> Parked {
    if let Some(reason) = body
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
    {
        return Parked::Refused(content_policy(&format!("prompt blocked: {reason}")));
    }
    let Some(cand) = body.pointer("/candidates/0") else {
        return Parked::Refused(internal("Google answered without a candidate".into()));
    };
    let finish = cand
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or("");
    let parts = cand
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let image = parts.iter().find_map(|p| {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let d = p.get("inlineData").or_else(|| p.get("inline_data"))?;
        let mime = d
            .get("mimeType")
            .or_else(|| d.get("mime_type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        Some((mime.to_string(), d.get("data")?.as_str()?.to_string()))
    });
    match image {
        Some((mime, data)) => {
            if mime != "image/png" {
                // nbbuild stores, names and mirrors stills as PNG; Google's
                // image models answer PNG (outputMimeType cannot be set on
                // the Gemini API), so anything else is a change to look at.
                return Parked::Refused(internal(format!(
                    "Google answered a {mime} still; nbbuild stores stills as PNG (please report this)"
                )));
            }
            match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
                Ok(bytes) => Parked::Image { bytes },
                Err(_) => Parked::Refused(ApiError::Transient {
                    message: "Google's inline image is not valid base64".into(),
                    retry_after: None,
                }),
            }
        }
        None if SAFETY_FINISH.contains(&finish) => {
            let msg = cand
                .get("finishMessage")
                .and_then(Value::as_str)
                .unwrap_or("");
            Parked::Refused(content_policy(format!("{finish} {msg}").trim()))
        }
        None => Parked::Refused(internal(format!(
            "Google answered no image (finishReason {})",
            if finish.is_empty() { "none" } else { finish }
        ))),
    }
}

/// A polled operation: waiting, the sample's URI, or why there is none.
pub(super) fn read_operation(body: &Value) -> RemoteStatus {
    if body.get("done").and_then(Value::as_bool) != Some(true) {
        return RemoteStatus::Waiting;
    }
    if let Some(e) = body.get("error") {
        let g = GoogleError::from_value(0, e);
        // An operation's error codes are gRPC codes (3, 8, 13...), not HTTP.
        let http = match g.status.as_str() {
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => 400,
            "PERMISSION_DENIED" => 403,
            "NOT_FOUND" => 404,
            "RESOURCE_EXHAUSTED" => 429,
            "UNAVAILABLE" => 503,
            "DEADLINE_EXCEEDED" => 504,
            "INTERNAL" => 500,
            _ if g.code >= 400 => g.code,
            _ => 500,
        };
        let text = g.message.to_ascii_lowercase();
        if ["safety", "policy", "responsible ai", "blocked"]
            .iter()
            .any(|w| text.contains(w))
        {
            return RemoteStatus::Failed(content_policy(&g.message));
        }
        return RemoteStatus::Failed(GoogleError { code: http, ..g }.classify("the clip's model"));
    }
    let r = body.pointer("/response/generateVideoResponse");
    let uri = r
        .and_then(|r| r.pointer("/generatedSamples/0/video/uri"))
        .and_then(Value::as_str);
    match uri {
        Some(u) => RemoteStatus::Completed {
            results: vec![u.to_string()],
        },
        None => {
            let filtered = r
                .and_then(|r| r.get("raiMediaFilteredCount"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if filtered > 0 {
                let why = r
                    .and_then(|r| r.pointer("/raiMediaFilteredReasons/0"))
                    .and_then(Value::as_str)
                    .unwrap_or("raiMediaFilteredCount");
                RemoteStatus::Failed(content_policy(why))
            } else {
                RemoteStatus::Failed(internal("Google finished the clip without a sample".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_still_is_the_inline_part_that_is_not_a_thought() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nfinal");
        let thought = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\ndraft");
        let body = json!({"candidates": [{"content": {"parts": [
            {"text": "here"},
            {"inlineData": {"mimeType": "image/png", "data": thought}, "thought": true},
            {"inlineData": {"mimeType": "image/png", "data": png}}
        ]}, "finishReason": "STOP"}]});
        match read_still(&body) {
            Parked::Image { bytes } => assert!(bytes.ends_with(b"final")),
            Parked::Refused(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn safety_refusals_are_content_policy() {
        let blocked =
            json!({"candidates": [], "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}});
        let finished =
            json!({"candidates": [{"finishReason": "IMAGE_SAFETY", "finishMessage": "no"}]});
        for b in [blocked, finished] {
            match read_still(&b) {
                Parked::Refused(e) => assert_eq!(e.kind(), FailureKind::ContentPolicy),
                Parked::Image { .. } => panic!("an image from a refusal"),
            }
        }
        let filtered = json!({"done": true, "response": {"generateVideoResponse": {
            "raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["audio filtered"]}}});
        match read_operation(&filtered) {
            RemoteStatus::Failed(e) => assert_eq!(e.kind(), FailureKind::ContentPolicy),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn operations_wait_then_name_their_sample() {
        assert_eq!(read_operation(&json!({"name": "x"})), RemoteStatus::Waiting);
        let done = json!({"done": true, "response": {"generateVideoResponse": {
            "generatedSamples": [{"video": {"uri": "https://g/v1beta/files/a:download?alt=media"}}]}}});
        assert_eq!(
            read_operation(&done),
            RemoteStatus::Completed {
                results: vec!["https://g/v1beta/files/a:download?alt=media".into()]
            }
        );
        let failed =
            json!({"done": true, "error": {"code": 13, "status": "INTERNAL", "message": "boom"}});
        assert!(matches!(
            read_operation(&failed),
            RemoteStatus::Failed(ApiError::Transient { .. })
        ));
    }
}
