//! What an R2 mirror needs, resolved from flags, environment and
//! nbbuild.toml, and the one S3 HTTP client and base settings every S3
//! user of nbbuild shares (the mirror, the team cache).

use super::*;

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

/// An environment of fixed pairs, for the tests of what a config reads
/// from it (this one and the team cache's).
#[cfg(test)]
pub(crate) fn env_of(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
