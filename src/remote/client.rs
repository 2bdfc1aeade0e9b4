//! The S3 requests the team cache makes, each behind the circuit breaker,
//! with short timeouts, and every answer sorted into what callers act on:
//! there, missing, lost a conditional write, refused, or down.
//!
//! The client is built like the mirror's (`mirror::r2::base_config`: one
//! rustls/ring HTTP client, path-style, region auto), with its own short
//! timeouts and a single retry: a slow cache costs a build seconds, never
//! minutes.

use super::breaker::Breaker;
use super::config::RemoteConfig;
use aws_sdk_s3::config::{Credentials, SharedHttpClient};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use std::sync::Arc;
use std::time::Duration;

/// Why a request did not do what was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 404.
    Missing,
    /// 412 or 409: a conditional write lost (the object is there, or the
    /// ETag changed).
    Lost,
    /// 401 / 403: these credentials may not do this (not a failure of the
    /// remote: the breaker does not count it).
    Refused(String),
    /// No answer, a timeout, a server error, or the circuit is open.
    Down(String),
}

impl Fault {
    pub fn describe(&self) -> String {
        match self {
            Fault::Missing => "not found".into(),
            Fault::Lost => "a conditional write lost".into(),
            Fault::Refused(m) | Fault::Down(m) => m.clone(),
        }
    }
}

/// A conditional write.
pub enum Condition<'a> {
    /// `If-None-Match: *`: only if nothing is there.
    Absent,
    /// `If-Match: <etag>`: only if what is there has this ETag.
    Matches(&'a str),
}

/// Requests in flight at once: enough to fill a link with small objects,
/// few enough that a burst (a thousand tasks landing at once) queues here,
/// where waiting costs nothing, rather than at the server, where it would
/// run into the timeouts.
pub const IN_FLIGHT: usize = 32;

pub struct Client {
    s3: aws_sdk_s3::Client,
    permits: tokio::sync::Semaphore,
    bucket: String,
    host: String,
    pub breaker: Arc<Breaker>,
    redact: Vec<String>,
}

impl Client {
    pub fn new(cfg: &RemoteConfig, http: SharedHttpClient, breaker: Arc<Breaker>) -> Client {
        let mut b = crate::mirror::r2::base_config(&cfg.endpoint, http)
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(cfg.timeout)
                    .read_timeout(cfg.timeout)
                    .build(),
            );
        let mut redact = Vec::new();
        match &cfg.access_key {
            Some(k) => {
                redact.push(k.secret.clone());
                redact.push(k.id.clone());
                b = b.credentials_provider(Credentials::new(
                    &k.id,
                    &k.secret,
                    None,
                    None,
                    "R2_ACCESS_KEY_ID",
                ));
            }
            None => b = b.allow_no_auth(),
        }
        redact.retain(|s| s.len() >= 4);
        redact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Client {
            s3: aws_sdk_s3::Client::from_conf(b.build()),
            permits: tokio::sync::Semaphore::new(IN_FLIGHT),
            bucket: cfg.url.bucket.clone(),
            host: crate::mirror::r2::authority(&cfg.endpoint).to_string(),
            breaker,
            redact,
        }
    }

    fn clean(&self, s: String) -> String {
        self.redact
            .iter()
            .fold(s, |s, secret| s.replace(secret.as_str(), "***"))
    }

    /// A place among the requests in flight; the breaker is asked again
    /// once one is free (it may have opened while this one queued).
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Fault> {
        let p = self
            .permits
            .acquire()
            .await
            .map_err(|_| Fault::Down("the team cache client is closed".into()))?;
        self.gate()?;
        Ok(p)
    }

    fn gate(&self) -> Result<(), Fault> {
        if self.breaker.allows() {
            Ok(())
        } else {
            Err(Fault::Down(
                "the team cache is switched off for this run after repeated failures".into(),
            ))
        }
    }

    /// Sort a failed call, and tell the breaker.
    fn fault<E>(&self, op: &str, e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Fault
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let f = match (status, &e) {
            (Some(404), _) => Fault::Missing,
            (Some(409 | 412), _) => Fault::Lost,
            (Some(s @ (401 | 403)), _) => {
                Fault::Refused(format!("{op}: HTTP {s} (credentials refused)"))
            }
            (Some(s), SdkError::ServiceError(_)) if s < 500 && s != 429 => {
                Fault::Refused(format!("{op}: HTTP {s}"))
            }
            (Some(s), _) => Fault::Down(format!("{op}: HTTP {s} from {}", self.host)),
            (None, SdkError::TimeoutError(_)) => {
                Fault::Down(format!("{op}: timed out reaching {}", self.host))
            }
            (None, _) => Fault::Down(format!(
                "{op}: cannot reach {}: {}",
                self.host,
                crate::mirror::r2::chain(&e)
            )),
        };
        match &f {
            Fault::Down(m) => self.breaker.failure(&self.clean(m.clone())),
            _ => self.breaker.success(),
        }
        match f {
            Fault::Down(m) => Fault::Down(self.clean(m)),
            Fault::Refused(m) => Fault::Refused(self.clean(m)),
            other => other,
        }
    }

    /// A call's result: a success tells the breaker, a failure is sorted
    /// (and counted) by [`Client::fault`].
    fn settle<T, E>(
        &self,
        op: &str,
        r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    ) -> Result<T, Fault>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match r {
            Ok(v) => {
                self.breaker.success();
                Ok(v)
            }
            Err(e) => Err(self.fault(op, e)),
        }
    }

    /// The object's bytes and ETag; Ok(None) when it is not there.
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, Fault> {
        self.gate()?;
        let _permit = self.permit().await?;
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                match out.body.collect().await {
                    Ok(b) => {
                        self.breaker.success();
                        Ok(Some((b.into_bytes().to_vec(), etag)))
                    }
                    Err(e) => {
                        let m = self.clean(format!("reading {key}: {e}"));
                        self.breaker.failure(&m);
                        Err(Fault::Down(m))
                    }
                }
            }
            Err(e) => match self.fault("get", e) {
                Fault::Missing => Ok(None),
                f => Err(f),
            },
        }
    }

    pub async fn has(&self, key: &str) -> Result<bool, Fault> {
        self.gate()?;
        let _permit = self.permit().await?;
        let r = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match self.settle("head", r) {
            Ok(_) => Ok(true),
            Err(Fault::Missing) => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// A conditional write; Ok(the new ETag).
    pub async fn put(
        &self,
        key: &str,
        body: ByteStream,
        mime: &str,
        cond: Condition<'_>,
    ) -> Result<String, Fault> {
        self.gate()?;
        let _permit = self.permit().await?;
        let req = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(mime)
            .body(body);
        let req = match cond {
            Condition::Absent => req.if_none_match("*"),
            Condition::Matches(etag) => req.if_match(etag),
        };
        let out = self.settle("put", req.send().await)?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    pub async fn delete(&self, key: &str) -> Result<(), Fault> {
        self.gate()?;
        let _permit = self.permit().await?;
        let r = self
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match self.settle("delete", r) {
            Ok(_) | Err(Fault::Missing) => Ok(()),
            Err(f) => Err(f),
        }
    }

    /// Every key under `prefix`, sorted; at most `limit`.
    pub async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, Fault> {
        self.gate()?;
        let _permit = self.permit().await?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let page = self.settle("list", req.send().await)?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() || out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        out.sort();
        Ok(out)
    }
}
