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

/// An access key pair. `Debug` shows neither half.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessKey(***)")
    }
}

/// Everything an [`R2Mirror`] needs, resolved.
#[derive(Debug, Clone)]
pub struct R2Config {
    /// `https://<account>.r2.cloudflarestorage.com`, or any S3 endpoint.
    pub endpoint: String,
    pub bucket: String,
    /// Base of the public URLs (the bucket's r2.dev URL or custom domain).
    pub public_url: String,
    /// Explicit credentials; `None` uses the AWS variables and profiles.
    pub access_key: Option<AccessKey>,
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub part_concurrency: usize,
    pub max_attempts: u32,
}

impl R2Config {
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        public_url: impl Into<String>,
        access_key: Option<AccessKey>,
    ) -> R2Config {
        R2Config {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            public_url: public_url.into(),
            access_key,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
            part_concurrency: PART_CONCURRENCY,
            max_attempts: MAX_ATTEMPTS,
        }
    }

    /// Settings from the file, overridden by the environment `env`:
    /// `R2_ENDPOINT` or `R2_ACCOUNT_ID` (-> `https://<account>.r2.cloudflarestorage.com`),
    /// `R2_BUCKET`, `R2_PUBLIC_URL`, `R2_ACCESS_KEY_ID` + `R2_SECRET_ACCESS_KEY`.
    pub fn resolve(
        settings: &R2Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<R2Config, MirrorError> {
        let var = |k: &str| nonempty(env(k));
        let account_url = |a: String| format!("https://{a}.r2.cloudflarestorage.com");
        let endpoint = var("R2_ENDPOINT")
            .or_else(|| var("R2_ACCOUNT_ID").map(account_url))
            .or_else(|| nonempty(settings.endpoint.clone()))
            .or_else(|| nonempty(settings.account_id.clone()).map(account_url));
        let bucket = var("R2_BUCKET").or_else(|| nonempty(settings.bucket.clone()));
        let public_url = var("R2_PUBLIC_URL").or_else(|| nonempty(settings.public_url.clone()));

        let mut missing = Vec::new();
        if endpoint.is_none() {
            missing.push("R2_ACCOUNT_ID (or R2_ENDPOINT)");
        }
        if bucket.is_none() {
            missing.push("R2_BUCKET");
        }
        if public_url.is_none() {
            missing.push("R2_PUBLIC_URL");
        }
        let (Some(endpoint), Some(bucket), Some(public_url)) = (endpoint, bucket, public_url)
        else {
            return Err(MirrorError::new(format!("the r2 mirror is not configured: {} not set", missing.join(", ")))
                .hint("set them in the environment or in nbbuild.toml's [mirror] section (endpoint/account_id, bucket, public_url), or use --mirror none"));
        };
        for (what, url) in [("endpoint", &endpoint), ("public URL", &public_url)] {
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || authority(url).is_empty()
            {
                return Err(MirrorError::new(format!("the r2 {what} `{}` is not an http(s) URL", strip_userinfo(url)))
                    .hint("e.g. R2_ENDPOINT=https://<account>.r2.cloudflarestorage.com, R2_PUBLIC_URL=https://pub-<id>.r2.dev"));
            }
        }
        if bucket.contains('/') {
            return Err(
                MirrorError::new(format!("R2_BUCKET `{bucket}` is not a bucket name"))
                    .hint("the bare bucket name, without slashes"),
            );
        }
        let access_key = match (var("R2_ACCESS_KEY_ID"), var("R2_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(AccessKey { id, secret }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(MirrorError::new("R2_ACCESS_KEY_ID is set but R2_SECRET_ACCESS_KEY is not")
                    .hint("set both (an R2 API token's S3 credentials), or neither to use the AWS variables or profile"))
            }
            (None, Some(_)) => {
                return Err(MirrorError::new("R2_SECRET_ACCESS_KEY is set but R2_ACCESS_KEY_ID is not")
                    .hint("set both (an R2 API token's S3 credentials), or neither to use the AWS variables or profile"))
            }
        };
        Ok(R2Config::new(endpoint, bucket, public_url, access_key))
    }
}

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

/// The one HTTP client of the S3 SDK: hyper 1 + rustls on `ring` (the same
/// rustls and provider as reqwest's), native root certificates.
pub fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The S3 settings every client of nbbuild shares (the mirror, the team
/// cache): region `auto`, path-style addressing, checksums only where the
/// API requires them, and `http` as the one HTTP client. Retries, timeouts
/// and credentials are each caller's.
pub fn base_config(endpoint: &str, http: SharedHttpClient) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new("auto"))
        .endpoint_url(endpoint.trim_end_matches('/'))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
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

    async fn put_multipart(
        &self,
        path: &Path,
        key: &str,
        mime: &str,
        len: u64,
        expect: Option<&str>,
    ) -> Result<(), MirrorError> {
        // At most 10 000 parts: grow the part size for huge files.
        let part_size = self.part_size.max(len.div_ceil(10_000).div_ceil(MIB) * MIB);
        let parts = len.div_ceil(part_size);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(mime)
            .cache_control(CACHE_CONTROL)
            .send()
            .await
            .map_err(|e| self.errors().sdk("start multipart upload", Some(key), e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(MirrorError::new(format!(
                "the server started a multipart upload of `{key}` without an upload id"
            ))
            .retryable(true));
        };
        let result = self
            .upload_parts(path, key, &upload_id, part_size, parts, len, expect)
            .await;
        let completed = match result {
            Ok(completed) => completed,
            Err(e) => {
                self.abort(key, &upload_id).await;
                return Err(e);
            }
        };
        if let Err(e) = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
        {
            self.abort(key, &upload_id).await;
            return Err(self.errors().sdk("complete multipart upload", Some(key), e));
        }
        Ok(())
    }

    /// Upload parts `1..=parts`, at most `part_concurrency` at once, each
    /// streamed from the file (a clip is never held in memory). With
    /// `expect`, the whole file is hashed first: a mismatch is known before
    /// any part is sent, and the destination never holds the object. Store
    /// objects are immutable files, so what was hashed is what is sent.
    #[allow(clippy::too_many_arguments)]
    async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
        part_size: u64,
        parts: u64,
        len: u64,
        expect: Option<&str>,
    ) -> Result<Vec<CompletedPart>, MirrorError> {
        if let Some(expected) = expect {
            let p = path.to_path_buf();
            let hashed = tokio::task::spawn_blocking(move || nbbuild_cache::hash_file(&p))
                .await
                .map_err(|e| MirrorError::new(format!("hashing task failed: {e}")))?
                .map_err(|e| MirrorError::new(format!("cannot read {}: {e}", path.display())))?;
            if hashed.0 != expected || hashed.1 != len {
                return Err(MirrorError::mismatch(path, expected, &hashed.0));
            }
        }
        let mut set = tokio::task::JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::with_capacity(parts as usize);
        let mut next = 1u64;
        let mut first_error: Option<MirrorError> = None;
        loop {
            while first_error.is_none() && next <= parts && set.len() < self.part_concurrency {
                let n = next;
                next += 1;
                let offset = (n - 1) * part_size;
                let size = part_size.min(len - offset);
                let client = self.client.clone();
                let (bucket, key, upload_id) =
                    (self.bucket.clone(), key.to_string(), upload_id.to_string());
                let path: PathBuf = path.to_path_buf();
                let errors = self.errors();
                set.spawn(async move {
                    let body = ByteStream::read_from()
                        .path(&path)
                        .offset(offset)
                        .length(Length::Exact(size))
                        .build()
                        .await
                        .map_err(|e| {
                            MirrorError::new(format!("cannot read {}: {e}", path.display()))
                        })?;
                    let out = client
                        .upload_part()
                        .bucket(bucket)
                        .key(&key)
                        .upload_id(upload_id)
                        .part_number(n as i32)
                        .content_length(size as i64)
                        .body(body)
                        .customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(|e| errors.sdk(&format!("upload part {n}"), Some(&key), e))?;
                    Ok::<_, MirrorError>(
                        CompletedPart::builder()
                            .set_e_tag(out.e_tag().map(str::to_string))
                            .part_number(n as i32)
                            .build(),
                    )
                });
            }
            match set.join_next().await {
                None => break,
                Some(Ok(Ok(part))) => done.push(part),
                Some(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(MirrorError::new(format!("upload task failed: {e}")));
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        done.sort_by_key(|p| p.part_number());
        Ok(done)
    }

    /// Best effort: a failed abort leaves parts the bucket's lifecycle rule
    /// (R2 default: 7 days) cleans up.
    async fn abort(&self, key: &str, upload_id: &str) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
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

/// The HTTP status of a failed call, when a response came back.
fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Turns SDK errors into [`MirrorError`]s with hints, redacting secrets.
#[derive(Clone)]
struct Errors {
    bucket: String,
    host: String,
    redact: Arc<Vec<String>>,
}

impl Errors {
    fn clean(&self, s: &str) -> String {
        let mut s = s.to_string();
        for secret in self.redact.iter() {
            s = s.replace(secret.as_str(), "***");
        }
        s
    }

    fn sdk<E>(
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
fn is_credentials(e: &(dyn std::error::Error + 'static)) -> bool {
    let text = chain(e);
    text.contains("credential") || text.contains("identity")
}

fn no_credentials(op: &str, target: &str) -> MirrorError {
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
fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://{}", authority(url)),
        None => authority(url).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn env_wins_over_file_and_account_id_makes_the_endpoint() {
        let file = R2Settings {
            endpoint: Some("https://file.example".into()),
            account_id: None,
            bucket: Some("filebucket".into()),
            public_url: Some("https://pub.file.example/".into()),
        };
        let c = R2Config::resolve(
            &file,
            &env_of(&[("R2_ACCOUNT_ID", "abc123"), ("R2_BUCKET", "envbucket")]),
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://abc123.r2.cloudflarestorage.com");
        assert_eq!(c.bucket, "envbucket");
        assert_eq!(c.public_url, "https://pub.file.example/");
        assert!(c.access_key.is_none());

        let c = R2Config::resolve(&file, &env_of(&[])).unwrap();
        assert_eq!(c.endpoint, "https://file.example");
    }

    #[test]
    fn missing_settings_are_named() {
        let e =
            R2Config::resolve(&R2Settings::default(), &env_of(&[("R2_BUCKET", "b")])).unwrap_err();
        assert!(e.message.contains("R2_ACCOUNT_ID"), "{e}");
        assert!(e.message.contains("R2_PUBLIC_URL"), "{e}");
        assert!(!e.message.contains("R2_BUCKET"), "{e}");
        assert!(e.hint.is_some());
    }

    #[test]
    fn half_a_key_pair_is_refused_without_showing_it() {
        let e = R2Config::resolve(
            &R2Settings::default(),
            &env_of(&[
                ("R2_ENDPOINT", "http://127.0.0.1:9"),
                ("R2_BUCKET", "b"),
                ("R2_PUBLIC_URL", "https://p.example"),
                ("R2_SECRET_ACCESS_KEY", "s3cr3t-value"),
            ]),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("s3cr3t-value"));
        let c = R2Config::resolve(
            &R2Settings::default(),
            &env_of(&[
                ("R2_ENDPOINT", "http://127.0.0.1:9"),
                ("R2_BUCKET", "b"),
                ("R2_PUBLIC_URL", "https://p.example"),
                ("R2_ACCESS_KEY_ID", "AKID-value"),
                ("R2_SECRET_ACCESS_KEY", "s3cr3t-value"),
            ]),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t-value") && !shown.contains("AKID-value"),
            "{shown}"
        );
    }

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
