//! Every way a G-Labs call can fail, as the `ApiError` class the runner
//! acts on: an HTTP answer that is not a success, and a task that ended in
//! an `error_code` (glabs.md, "Task error codes").

use super::FailureKind;
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

/// Whether an error text (lower case) says the content policy refused the
/// prompt: the words G-Labs passes on from Google's safety filters.
fn refused_by_policy(lower: &str) -> bool {
    ["policy", "safety", "blocked"]
        .iter()
        .any(|w| lower.contains(w))
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
        400 if refused_by_policy(&text) => ApiError::Permanent {
            kind: FailureKind::ContentPolicy,
            message,
        },
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

/// An HTTP answer that is not a success, classified by its status and the
/// `error` text of its body.
pub(super) async fn from_response(resp: reqwest::Response) -> ApiError {
    let status = resp.status();
    let after = crate::http::retry_after(&resp, Duration::from_secs(300));
    let text = error_text(resp).await;
    let message = format!("G-Labs answered {status}: {text}");
    match status.as_u16() {
        401 => ApiError::Unauthorized,
        429 => ApiError::RateLimited {
            message,
            retry_after: after,
        },
        502 | 521 | 522 | 523 | 530 => ApiError::Down {
            message: format!("the tunnel answered {status}: the G-Labs app or its tunnel is down"),
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
        400 if refused_by_policy(&text.to_ascii_lowercase()) => ApiError::Permanent {
            kind: FailureKind::ContentPolicy,
            message,
        },
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

/// The `error` of a JSON body, else the body itself; at most 300 bytes.
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

#[cfg(test)]
mod tests {
    use super::*;

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
