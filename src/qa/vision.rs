//! The `vision` reviewer: one OpenAI-compatible chat-completions request per
//! image, the image inline as a data URL, a JSON-schema (or JSON-mode)
//! verdict back.

use super::{
    excerpt, parse_verdict, system_prompt, BoxFuture, Review, Reviewer, VisionConfig,
    PROMPT_VERSION, USER_TEXT,
};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The `vision` reviewer for `cfg`.
pub fn vision(cfg: VisionConfig) -> Box<dyn Reviewer> {
    let endpoint = endpoint(&cfg.base_url);
    let id = vision_id(&cfg.base_url, &cfg.model, PROMPT_VERSION);
    let http = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    Box::new(Vision {
        endpoint,
        id,
        cfg,
        http,
        json_object: AtomicBool::new(false),
        no_temperature: AtomicBool::new(false),
    })
}

/// The reviewer id of a vision reviewer: `vision:{model}@{host[:port]}#{prompt_version}`.
/// Only the host of `base_url` is used (never a path, query or user info).
pub fn vision_id(base_url: &str, model: &str, prompt_version: &str) -> String {
    format!("vision:{model}@{}#{prompt_version}", host_of(base_url))
}

fn host_of(base_url: &str) -> String {
    let parsed = reqwest::Url::parse(base_url.trim()).ok();
    match parsed
        .as_ref()
        .and_then(|u| u.host_str().map(|h| (h, u.port())))
    {
        Some((h, Some(p))) => format!("{h}:{p}"),
        Some((h, None)) => h.to_string(),
        // Not a URL: keep whatever looks like a host, drop user info and path.
        None => {
            let s = base_url.trim();
            let s = s.split_once("://").map_or(s, |(_, r)| r);
            let s = s.split(['/', '?', '#']).next().unwrap_or("");
            let s = s.rsplit_once('@').map_or(s, |(_, h)| h);
            if s.is_empty() {
                "?".into()
            } else {
                s.to_string()
            }
        }
    }
}

/// `{base_url}/chat/completions`, unless the base already ends with it.
fn endpoint(base_url: &str) -> String {
    let base = base_url.trim().trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        base.to_string()
    } else {
        format!("{base}/chat/completions")
    }
}

struct Vision {
    cfg: VisionConfig,
    endpoint: String,
    id: String,
    http: reqwest::Client,
    /// The server rejected `json_schema`: ask for `json_object` from now on.
    json_object: AtomicBool,
    /// The server rejected `temperature: 0` (some reasoning models do).
    no_temperature: AtomicBool,
}

/// The optional parts one request carried.
#[derive(Clone, Copy)]
struct Sent {
    schema: bool,
    temperature: bool,
}

/// Why one request did not give a verdict.
enum Failure {
    /// Worth another attempt (after `wait` if the server said so).
    Retry {
        message: String,
        wait: Option<Duration>,
    },
    /// The server rejected the request itself (400 not about the response
    /// format, 401, 404, ...): sending it again will not help.
    Fatal(String),
    /// The server rejected an optional part of the request; send it again
    /// without (does not use up an attempt).
    Downgraded,
}

impl Reviewer for Vision {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn review<'a>(&'a self, png: &'a [u8], _path: &'a Path) -> BoxFuture<'a, Review> {
        Box::pin(async move {
            let data_url = format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(png)
            );
            let attempts = self.cfg.attempts.max(1);
            let mut attempt = 0;
            let mut downgrades = 0;
            let mut last = String::new();
            while attempt < attempts {
                attempt += 1;
                match self.once(&data_url).await {
                    Ok(review) => return review,
                    Err(Failure::Fatal(message)) => {
                        return Review::unreviewed(self.scrub(&message));
                    }
                    Err(Failure::Downgraded) if downgrades < 2 => {
                        downgrades += 1;
                        attempt -= 1;
                    }
                    Err(Failure::Downgraded) => {
                        last = "the server rejected the request format".into();
                    }
                    Err(Failure::Retry { message, wait }) => {
                        last = message;
                        if attempt < attempts {
                            tokio::time::sleep(wait.unwrap_or_else(|| backoff(attempt))).await;
                        }
                    }
                }
            }
            Review::unreviewed(self.scrub(&format!(
                "no usable answer from {} after {attempts} attempt(s): {last}",
                self.id
            )))
        })
    }
}

/// 200 ms doubling, with up to 50% jitter, at most 5 s.
fn backoff(attempt: u32) -> Duration {
    crate::backoff::exponential(Duration::from_millis(200), attempt, Duration::from_secs(5))
}

impl Vision {
    /// The request body, and what optional parts it carries.
    fn body(&self, data_url: &str) -> (Value, Sent) {
        let sent = Sent {
            schema: !self.json_object.load(Ordering::Relaxed),
            temperature: !self.no_temperature.load(Ordering::Relaxed),
        };
        let response_format = if !sent.schema {
            json!({"type": "json_object"})
        } else {
            json!({
                "type": "json_schema",
                "json_schema": {
                    "name": "qa_verdict",
                    "strict": true,
                    "schema": {
                        "type": "object",
                        "properties": {
                            "verdict": {"type": "string", "enum": ["clean", "flagged"]},
                            "tells": {"type": "array", "items": {"type": "string"}},
                            "confidence": {
                                "type": "number",
                                "description": "0 (unsure) to 1 (certain)"
                            }
                        },
                        "required": ["verdict", "tells", "confidence"],
                        "additionalProperties": false
                    }
                }
            })
        };
        let mut body = json!({
            "model": self.cfg.model,
            "messages": [
                {"role": "system", "content": system_prompt()},
                {"role": "user", "content": [
                    {"type": "text", "text": USER_TEXT},
                    {"type": "image_url", "image_url": {"url": data_url}}
                ]}
            ],
            "response_format": response_format,
        });
        if sent.temperature {
            body["temperature"] = json!(0);
        }
        (body, sent)
    }

    async fn once(&self, data_url: &str) -> Result<Review, Failure> {
        let (body, sent) = self.body(data_url);
        let mut req = self.http.post(&self.endpoint).json(&body);
        if let Some(key) = &self.cfg.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| Failure::Retry {
            message: network_message(&e),
            wait: None,
        })?;
        let status = resp.status();
        let wait = crate::http::retry_after(&resp, Duration::from_secs(30));
        let bytes = resp.bytes().await.map_err(|e| Failure::Retry {
            message: network_message(&e),
            wait: None,
        })?;
        if !status.is_success() {
            return Err(self.http_failure(status, &bytes, wait, sent));
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| Failure::Retry {
            message: format!(
                "the answer is not JSON: {}",
                excerpt(String::from_utf8_lossy(&bytes).trim(), 120)
            ),
            wait: None,
        })?;
        let malformed = |message: String| Failure::Retry {
            message,
            wait: None,
        };
        let message = body
            .pointer("/choices/0/message")
            .ok_or_else(|| malformed("the answer has no choices[0].message".into()))?;
        if let Some(refusal) = message
            .get("refusal")
            .and_then(Value::as_str)
            .filter(|r| !r.trim().is_empty())
        {
            return Err(malformed(format!(
                "the model refused: {}",
                excerpt(refusal.trim(), 200)
            )));
        }
        let content = match message.get("content") {
            Some(Value::String(s)) => s.clone(),
            // Some servers answer with content parts.
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        };
        if content.trim().is_empty() {
            return Err(malformed("the answer is empty".into()));
        }
        parse_verdict(&content).map_err(|e| malformed(format!("malformed answer: {e}")))
    }

    fn http_failure(
        &self,
        status: StatusCode,
        body: &[u8],
        wait: Option<Duration>,
        sent: Sent,
    ) -> Failure {
        let said = server_message(body);
        let message = if said.is_empty() {
            format!("HTTP {status} from {}", self.endpoint)
        } else {
            format!("HTTP {status} from {}: {said}", self.endpoint)
        };
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            return Failure::Retry { message, wait };
        }
        if status == StatusCode::BAD_REQUEST {
            let lower = said.to_ascii_lowercase();
            // Decided on what this request carried, not on the flags, which a
            // concurrent review may have flipped meanwhile.
            if sent.temperature && lower.contains("temperature") {
                self.no_temperature.store(true, Ordering::Relaxed);
                return Failure::Downgraded;
            }
            if sent.schema {
                self.json_object.store(true, Ordering::Relaxed);
                return Failure::Downgraded;
            }
        }
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                " (check NBBUILD_QA_KEY)"
            }
            StatusCode::NOT_FOUND => {
                " (check NBBUILD_QA_URL, usually ending in /v1, and that the model exists on the server)"
            }
            _ => "",
        };
        Failure::Fatal(format!("{message}{hint}"))
    }

    /// Remove the key from anything that might be shown.
    fn scrub(&self, text: &str) -> String {
        match &self.cfg.api_key {
            Some(k) if !k.is_empty() => text.replace(k.as_str(), "***"),
            _ => text.to_string(),
        }
    }
}

/// A reqwest error without its URL, with its source chain.
fn network_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut out = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// `error.message` (OpenAI shape), `error` as a string, or the body's start.
fn server_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        if let Some(m) = v
            .pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str)
        {
            return excerpt(m.trim(), 300);
        }
    }
    excerpt(text.trim(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_and_host() {
        assert_eq!(
            endpoint("http://127.0.0.1:11434/v1/"),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
        assert_eq!(
            endpoint("https://api.openai.com/v1/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(
            host_of("http://user:pw@127.0.0.1:8080/v1"),
            "127.0.0.1:8080"
        );
        assert_eq!(host_of("localhost:8080/v1"), "localhost:8080");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_millis(200));
        assert!(backoff(1) <= Duration::from_millis(300));
        assert!(backoff(20) <= Duration::from_millis(7500));
    }
}
