//! SDK errors turned into [`MirrorError`]s with hints, secrets redacted.

use super::*;

/// The HTTP status of a failed call, when a response came back.
pub(super) fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Turns SDK errors into [`MirrorError`]s with hints, redacting secrets.
#[derive(Clone)]
pub(super) struct Errors {
    pub(super) bucket: String,
    pub(super) host: String,
    pub(super) redact: Arc<Vec<String>>,
}

impl Errors {
    pub(super) fn clean(&self, s: &str) -> String {
        let mut s = s.to_string();
        for secret in self.redact.iter() {
            s = s.replace(secret.as_str(), "***");
        }
        s
    }

    pub(super) fn sdk<E>(
        &self,
        op: &str,
        key: Option<&str>,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> MirrorError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let target = match key {
            Some(k) => format!("`{k}` in bucket `{}` at {}", self.bucket, self.host),
            None => format!("bucket `{}` at {}", self.bucket, self.host),
        };
        let creds_hint = "check R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY: the S3 credentials of an R2 API token with Object Read & Write on this bucket";
        let status = status(&e);
        let code = e.code().map(str::to_string);
        let detail = e.message().map(str::to_string);
        let err = match &e {
            SdkError::DispatchFailure(d) if !d.is_io() && !d.is_timeout() && is_credentials(&e) => {
                no_credentials(op, &target)
            }
            SdkError::DispatchFailure(d) => {
                let what = if d.is_timeout() {
                    "timed out reaching"
                } else {
                    "cannot reach"
                };
                MirrorError::new(format!("{op} failed: {what} {}: {}", self.host, chain(&e)))
                    .hint("check R2_ENDPOINT / R2_ACCOUNT_ID and the network")
                    .retryable(!d.is_user())
            }
            SdkError::TimeoutError(_) => {
                MirrorError::new(format!("{op} of {target} timed out")).retryable(true)
            }
            SdkError::ConstructionFailure(_) if is_credentials(&e) => no_credentials(op, &target),
            SdkError::ConstructionFailure(_) => {
                MirrorError::new(format!("{op} of {target} failed: {}", chain(&e)))
            }
            SdkError::ResponseError(_) => MirrorError::new(format!(
                "{op} of {target}: unreadable response: {}",
                chain(&e)
            ))
            .retryable(true),
            _ => {
                let code_s = code.as_deref().unwrap_or("");
                let said = match (&code, &detail) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.clone(),
                    (None, Some(m)) => m.clone(),
                    (None, None) => format!("HTTP {}", status.unwrap_or(0)),
                };
                let creds = matches!(
                    code_s,
                    "InvalidAccessKeyId"
                        | "SignatureDoesNotMatch"
                        | "AccessDenied"
                        | "InvalidToken"
                        | "ExpiredToken"
                        | "Unauthorized"
                        | "NotSignedUp"
                        | "InvalidSecurity"
                ) || matches!(status, Some(401 | 403));
                if code_s == "NoSuchBucket"
                    || (key.is_none() && code.is_none() && status == Some(404))
                {
                    MirrorError::new(format!(
                        "bucket `{}` does not exist at {} ({said})",
                        self.bucket, self.host
                    ))
                    .hint("create the bucket, or fix R2_BUCKET / [mirror] bucket (and the account or endpoint)")
                } else if creds {
                    MirrorError::new(format!("{op} of {target}: credentials refused ({said})"))
                        .hint(creds_hint)
                } else {
                    let transient = matches!(status, Some(429 | 500..=599))
                        || matches!(
                            code_s,
                            "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout"
                        );
                    MirrorError::new(format!("{op} of {target} failed ({said})"))
                        .retryable(transient)
                }
            }
        };
        MirrorError {
            message: self.clean(&err.message),
            hint: err.hint.map(|h| self.clean(&h)),
            retryable: err.retryable,
            mismatch: false,
        }
    }
}

/// Whether a failure before any request was sent is about credentials.
pub(super) fn is_credentials(e: &(dyn std::error::Error + 'static)) -> bool {
    let text = chain(e);
    text.contains("credential") || text.contains("identity")
}

pub(super) fn no_credentials(op: &str, target: &str) -> MirrorError {
    MirrorError::new(format!("{op} of {target}: no credentials found"))
        .hint("set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY (the S3 credentials of an R2 API token), or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or an AWS profile")
}

/// The messages of an error's sources, outermost first, without repeats
/// (`dispatch failure: io error: ... Connection refused (os error 111)`).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// `host[:port]` of a URL, without scheme, user info or path.
pub fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    host.rsplit_once('@').map_or(host, |(_, h)| h)
}

/// A URL with any `user:password@` removed, for messages.
pub(super) fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://{}", authority(url)),
        None => authority(url).to_string(),
    }
}
