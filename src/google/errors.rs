//! Google's error answers, `{"error": {"code", "message", "status",
//! "details"}}`, and its safety refusals, turned into the runner's classes
//! (docs/providers.md, "Errors").

use crate::generator::ApiError;
use crate::glabs::FailureKind;
use serde_json::Value;
use std::time::Duration;

/// The longest wait a `RetryInfo` can ask for before we call it a stall.
const RETRY_CAP: Duration = Duration::from_secs(300);

/// The parts of an error body the map reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GoogleError {
    pub code: u16,
    pub status: String,
    pub message: String,
    /// `google.rpc.RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
    /// `google.rpc.QuotaFailure` violations' `quotaId`s.
    pub quota_ids: Vec<String>,
    /// `google.rpc.ErrorInfo.reason` (`API_KEY_INVALID`, ...).
    pub reasons: Vec<String>,
}

/// `"45.837906927s"` (a protobuf Duration as JSON) as a duration.
pub fn parse_delay(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

impl GoogleError {
    /// Read an error object (the value of `"error"`), or a whole body.
    pub fn parse(http_status: u16, body: &str) -> GoogleError {
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        GoogleError::from_value(http_status, v.get("error").unwrap_or(&v))
    }

    pub fn from_value(http_status: u16, e: &Value) -> GoogleError {
        let mut g = GoogleError {
            code: e
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(http_status),
            status: e
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            ..GoogleError::default()
        };
        if g.code == 0 {
            g.code = http_status;
        }
        for d in e
            .get("details")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ty = d.get("@type").and_then(Value::as_str).unwrap_or("");
            if ty.ends_with("google.rpc.RetryInfo") {
                g.retry_delay = d
                    .get("retryDelay")
                    .and_then(Value::as_str)
                    .and_then(parse_delay);
            } else if ty.ends_with("google.rpc.QuotaFailure") {
                for v in d
                    .get("violations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(q) = v.get("quotaId").and_then(Value::as_str) {
                        g.quota_ids.push(q.to_string());
                    }
                }
            } else if ty.ends_with("google.rpc.ErrorInfo") {
                if let Some(r) = d.get("reason").and_then(Value::as_str) {
                    g.reasons.push(r.to_string());
                }
            }
        }
        g
    }

    /// The API's own words, short (never a key: Google does not echo it).
    fn said(&self) -> String {
        let mut m = self.message.trim().to_string();
        if m.len() > 300 {
            let mut cut = 300;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        let status = if self.status.is_empty() {
            String::new()
        } else {
            format!(" {}", self.status)
        };
        format!("Google answered {}{status}: {m}", self.code)
    }

    fn per_day(&self) -> Option<&str> {
        self.quota_ids
            .iter()
            .find(|q| q.contains("PerDay"))
            .map(String::as_str)
    }

    /// The runner's class. `model` is the Google id the request named (for
    /// a 404 on it).
    pub fn classify(&self, model: &str) -> ApiError {
        let said = self.said();
        let key_refused = self.reasons.iter().any(|r| r == "API_KEY_INVALID")
            || self.message.contains("API key not valid");
        match self.code {
            401 => ApiError::Unauthorized,
            400 | 403 if key_refused => ApiError::Unauthorized,
            429 | 402 => match self.per_day() {
                // Retrying into a per-day quota only spends the run's time:
                // it stays in effect until it resets (midnight Pacific).
                Some(q) => ApiError::Exhausted {
                    message: format!(
                        "Google's per-day quota for {model} is used up ({q}); it resets at midnight Pacific time. \
                         Every candidate made so far is kept: rerun then, or build on the other route (--provider glabs)"
                    ),
                },
                None if self.code == 402 => ApiError::Exhausted {
                    message: format!(
                        "{said} (the project's prepaid credits are used up: top them up in Google AI Studio, then rerun)"
                    ),
                },
                None => ApiError::RateLimited {
                    message: said,
                    retry_after: self.retry_delay.map(|d| d.min(RETRY_CAP)),
                },
            },
            404 => ApiError::Permanent {
                kind: FailureKind::ModelNotAvailable,
                message: format!(
                    "{said}; Google does not offer model {model} (retired?): set its current id under [models] in nbbuild.toml, e.g. nano_banana_2 = \"gemini-3.1-flash-image\" (docs/providers.md)"
                ),
            },
            500 | 503 | 504 => ApiError::Transient {
                message: said,
                retry_after: self.retry_delay.map(|d| d.min(RETRY_CAP)),
            },
            s if s >= 500 => ApiError::Transient {
                message: said,
                retry_after: None,
            },
            // 400 INVALID_ARGUMENT / FAILED_PRECONDITION, 403 PERMISSION_DENIED,
            // 499 CANCELLED: sending it again as it is will not help.
            _ => ApiError::Permanent {
                kind: FailureKind::ApiError,
                message: said,
            },
        }
    }
}

/// Finish reasons of a candidate that mean the safety filter refused it.
pub const SAFETY_FINISH: &[&str] = &[
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "NO_IMAGE",
    "BLOCKLIST",
    "SPII",
];

/// A content-policy refusal, with what Google said.
pub fn content_policy(what: &str) -> ApiError {
    ApiError::Permanent {
        kind: FailureKind::ContentPolicy,
        message: format!(
            "Google's safety filter refused it ({what}); reword the prompt or change the reference images"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: u16, status: &str, details: Value) -> String {
        serde_json::json!({"error": {"code": code, "message": "m", "status": status, "details": details}})
            .to_string()
    }

    #[test]
    fn retry_info_paces_a_rate_limit() {
        let b = body(
            429,
            "RESOURCE_EXHAUSTED",
            serde_json::json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45.837906927s"}
            ]),
        );
        match GoogleError::parse(429, &b).classify("m") {
            ApiError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after.unwrap().as_millis(), 45_837)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_per_day_quota_stops_launching() {
        let b = body(
            429,
            "RESOURCE_EXHAUSTED",
            serde_json::json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]),
        );
        let e = GoogleError::parse(429, &b).classify("gemini-3.1-flash-image");
        assert!(matches!(e, ApiError::Exhausted { .. }), "{e:?}");
        assert!(e.message().contains("midnight Pacific"));
    }

    #[test]
    fn statuses_map_to_classes() {
        let class = |code, status: &str| {
            GoogleError::parse(code, &body(code, status, serde_json::json!([]))).classify("m")
        };
        assert_eq!(class(400, "INVALID_ARGUMENT").kind(), FailureKind::ApiError);
        assert_eq!(
            class(403, "PERMISSION_DENIED").kind(),
            FailureKind::ApiError
        );
        assert_eq!(
            class(404, "NOT_FOUND").kind(),
            FailureKind::ModelNotAvailable
        );
        assert!(class(404, "NOT_FOUND").message().contains("[models]"));
        for c in [500, 503, 504] {
            assert!(
                matches!(class(c, "UNAVAILABLE"), ApiError::Transient { .. }),
                "{c}"
            );
        }
        let key = body(
            400,
            "INVALID_ARGUMENT",
            serde_json::json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]),
        );
        assert_eq!(
            GoogleError::parse(400, &key).classify("m"),
            ApiError::Unauthorized
        );
        // Not JSON at all (a proxy page): still classified by the HTTP status.
        assert!(matches!(
            GoogleError::parse(503, "<html>").classify("m"),
            ApiError::Transient { .. }
        ));
    }
}
