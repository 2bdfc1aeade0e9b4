//! `r2`: Cloudflare R2 (or any S3-compatible server) through aws-sdk-s3.
//!
//! Region `auto`, path-style addressing, request checksums only where the
//! API requires them (R2 rejects some of the SDK's default flexible-checksum
//! uploads), one explicit rustls HTTP client on the `ring` provider (the
//! crate's default features, which would bring their own TLS stacks, are off,
//! so every S3 config must be handed this client).
//!
//! Credentials: `R2_ACCESS_KEY_ID` / `R2_SECRET_ACCESS_KEY`, else the
//! standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables, else an
//! AWS profile (`AWS_PROFILE`, `~/.aws/credentials`). No instance-metadata
//! lookups. Secrets never appear in an error, the id or a `Debug` output.

use super::{check_key, encode_path, nonempty, BoxFuture, Mirror, MirrorError, R2Settings};
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedHttpClient,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod config;
mod errors;
mod multipart;

#[cfg(test)]
pub(crate) use config::env_of;
pub use config::{base_config, http_client, AccessKey, R2Config};
pub use errors::{authority, chain};
use errors::{status, strip_userinfo, Errors};

const MIB: u64 = 1024 * 1024;
/// Files above this go up with multipart upload.
pub const MULTIPART_THRESHOLD: u64 = 16 * MIB;
/// Part size of multipart uploads (every part but the last has this size, as
/// R2 requires; S3's minimum is 5 MiB).
pub const PART_SIZE: u64 = 8 * MIB;
/// Parts in flight at once for one object.
pub const PART_CONCURRENCY: usize = 4;
/// Attempts per request (the SDK's standard retry: exponential backoff with
/// jitter on throttling, 5xx, timeouts and connection errors).
pub const MAX_ATTEMPTS: u32 = 3;
/// Content-addressed keys never change content.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// What a mirror actually did, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    uploads: AtomicU64,
    multipart: AtomicU64,
    skipped: AtomicU64,
    bytes: AtomicU64,
}

pub struct R2Mirror {
    client: Client,
    bucket: String,
    endpoint_host: String,
    public_url: String,
    multipart_threshold: u64,
    part_size: u64,
    part_concurrency: usize,
    /// Strings that must never leave this module (keys of the credentials in use).
    redact: Arc<Vec<String>>,
    stats: Arc<Stats>,
}

impl fmt::Debug for R2Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("R2Mirror")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint_host)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl R2Mirror {
    /// Build the client. No network call (see [`Mirror::check`]).
    pub async fn connect(config: R2Config) -> Result<R2Mirror, MirrorError> {
        let http = http_client();
        let mut redact = Vec::new();
        let mut s3 = base_config(&config.endpoint, http.clone())
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard()
                    .with_max_attempts(config.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(500)),
            )
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            );
        match &config.access_key {
            Some(k) => {
                redact.push(k.id.clone());
                redact.push(k.secret.clone());
                s3 = s3.credentials_provider(Credentials::new(
                    &k.id,
                    &k.secret,
                    None,
                    None,
                    "R2_ACCESS_KEY_ID",
                ));
            }
            None => {
                for v in [
                    "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY",
                    "AWS_SESSION_TOKEN",
                ] {
                    if let Some(s) = nonempty(std::env::var(v).ok()) {
                        redact.push(s);
                    }
                }
                let provider_config = ProviderConfig::without_region()
                    .with_http_client(http)
                    .with_region(Some(Region::new("us-east-1")));
                let chain = CredentialsProviderChain::first_try(
                    "Environment",
                    EnvironmentVariableCredentialsProvider::new(),
                )
                .or_else(
                    "Profile",
                    ProfileFileCredentialsProvider::builder()
                        .configure(&provider_config)
                        .build(),
                );
                s3 = s3.credentials_provider(chain);
            }
        }
        // Longest first, so a secret containing the id is redacted whole.
        redact.retain(|s| s.len() >= 4);
        redact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(R2Mirror {
            client: Client::from_conf(s3.build()),
            bucket: config.bucket,
            endpoint_host: authority(&config.endpoint).to_string(),
            public_url: config.public_url.trim_end_matches('/').to_string(),
            multipart_threshold: config.multipart_threshold,
            part_size: config.part_size.max(5 * MIB),
            part_concurrency: config.part_concurrency.max(1),
            redact: Arc::new(redact),
            stats: Arc::default(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    /// Objects actually sent (single PUT or completed multipart upload).
    pub fn uploads(&self) -> u64 {
        self.stats.uploads.load(Ordering::Relaxed)
    }
    /// Of [`uploads`](Self::uploads), those sent as multipart uploads.
    pub fn multipart_uploads(&self) -> u64 {
        self.stats.multipart.load(Ordering::Relaxed)
    }
    /// Publishes that found the object already there and sent nothing.
    pub fn skipped(&self) -> u64 {
        self.stats.skipped.load(Ordering::Relaxed)
    }
    /// Bytes sent.
    pub fn bytes_sent(&self) -> u64 {
        self.stats.bytes.load(Ordering::Relaxed)
    }

    /// The public URL of `key`.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{}", self.public_url, encode_path(key))
    }

    fn errors(&self) -> Errors {
        Errors {
            bucket: self.bucket.clone(),
            host: self.endpoint_host.clone(),
            redact: self.redact.clone(),
        }
    }

    /// The size of the object at `key`, or `None` when there is none.
    async fn remote_size(&self, key: &str) -> Result<Option<u64>, MirrorError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(-1).max(0) as u64)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.errors().sdk("publish", Some(key), e)),
        }
    }

    /// One PutObject. The file (at most `multipart_threshold` bytes) is
    /// read into memory and hashed first, so what is checked is what is
    /// sent, and a mismatch is refused before any request.
    async fn put_single(
        &self,
        path: &Path,
        key: &str,
        mime: &str,
        expect: Option<&str>,
    ) -> Result<u64, MirrorError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| MirrorError::new(format!("cannot read {}: {e}", path.display())))?;
        if let Some(expected) = expect {
            let actual = blake3::hash(&bytes).to_hex().to_string();
            if actual != expected {
                return Err(MirrorError::mismatch(path, expected, &actual));
            }
        }
        let len = bytes.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(mime)
            .cache_control(CACHE_CONTROL)
            .content_length(len as i64)
            .body(ByteStream::from(bytes))
            // As for bodies streamed from files: SigV4 covers the headers,
            // TLS the body; the bytes were hashed with blake3 above.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.errors().sdk("upload", Some(key), e))?;
        Ok(len)
    }
}

impl Mirror for R2Mirror {
    fn id(&self) -> String {
        format!("r2:{}@{}", self.bucket, self.endpoint_host)
    }

    fn publish_checked<'a>(
        &'a self,
        path: &'a Path,
        key: &'a str,
        mime: &'a str,
        blake3: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, MirrorError>> {
        Box::pin(async move {
            check_key(key)?;
            let mut len = tokio::fs::metadata(path)
                .await
                .map_err(|e| MirrorError::new(format!("cannot read {}: {e}", path.display())))?
                .len();
            if self.remote_size(key).await? == Some(len) {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(self.url(key));
            }
            if len > self.multipart_threshold {
                self.put_multipart(path, key, mime, len, blake3).await?;
                self.stats.multipart.fetch_add(1, Ordering::Relaxed);
            } else {
                len = self.put_single(path, key, mime, blake3).await?;
            }
            self.stats.uploads.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(len, Ordering::Relaxed);
            Ok(self.url(key))
        })
    }

    fn check<'a>(&'a self) -> BoxFuture<'a, Result<(), MirrorError>> {
        Box::pin(async move {
            // ListObjectsV2 rather than HeadBucket: an R2 token scoped to
            // "Object Read & Write" may list a bucket's objects, and the error
            // body tells a missing bucket from refused credentials.
            self.client
                .list_objects_v2()
                .bucket(&self.bucket)
                .max_keys(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.errors().sdk("check", None, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_drops_scheme_userinfo_and_path() {
        assert_eq!(
            authority("https://acc.r2.cloudflarestorage.com/"),
            "acc.r2.cloudflarestorage.com"
        );
        assert_eq!(authority("http://u:pw@127.0.0.1:9000/x"), "127.0.0.1:9000");
        assert_eq!(strip_userinfo("http://u:pw@h:1/p"), "http://h:1");
    }
}
