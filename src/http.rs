//! Small reqwest helpers every HTTP edge shares (the generation routes,
//! reference downloads, the vision reviewer, repairs): an error described
//! without its URL, a body read with a size cap, and `Retry-After`.

use std::time::{Duration, SystemTime};

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

/// `Retry-After`, capped at `cap`: in seconds (the form G-Labs and
/// OpenAI-style servers send) or as an HTTP date (RFC 9110 allows both).
pub fn retry_after(resp: &reqwest::Response, cap: Duration) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(v, SystemTime::now()).map(|d| d.min(cap))
}

/// A `Retry-After` value as a wait from `now`; a date in the past is no wait.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
}
