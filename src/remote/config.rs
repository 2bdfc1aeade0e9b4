//! The team cache's settings, merged once (flag > env > file > default):
//! where it is (`s3://BUCKET[/PREFIX]`), how to reach it (the mirror's R2
//! variables), what this machine may do there (mode, signing key), whom it
//! believes (trusted keys), and how long a claim lasts.

use super::sign::{PublicKey, SigningKey};
use crate::mirror::r2::AccessKey;
use std::fmt;
use std::time::Duration;

/// A claim lasts this long unless renewed: longer than the slowest
/// generation (a quality clip can take ten minutes), renewed every third of
/// it while its task runs.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(20 * 60);

/// `s3://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub bucket: String,
    /// Without leading or trailing slashes; empty for the bucket's root.
    pub prefix: String,
}

impl RemoteUrl {
    pub fn parse(s: &str) -> Result<RemoteUrl, String> {
        let rest = s
            .trim()
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{s}` is not an s3://BUCKET[/PREFIX] URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok_bucket = !bucket.is_empty()
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok_bucket {
            return Err(format!("`{bucket}` in `{s}` is not a bucket name"));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!(
                "the prefix `{prefix}` in `{s}` is not a plain path"
            ));
        }
        Ok(RemoteUrl {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// What this machine does with the team cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads hits, claims what it pays for, writes what it built.
    ReadWrite,
    /// Reads hits and respects others' claims; writes nothing.
    ReadOnly,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s.trim() {
            "read-write" | "rw" => Ok(Mode::ReadWrite),
            "read-only" | "ro" => Ok(Mode::ReadOnly),
            other => Err(format!(
                "remote mode `{other}` is not read-write or read-only"
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "read-write",
            Mode::ReadOnly => "read-only",
        }
    }
}

/// The `[remote]` section of nbbuild.toml.
#[derive(Debug, Default, serde::Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RemoteSection {
    pub url: Option<String>,
    pub mode: Option<String>,
    /// Public keys (`ed25519:<hex>`) whose records this machine believes.
    #[serde(default)]
    pub trusted: Vec<String>,
}

/// Everything the team cache needs, resolved.
#[derive(Clone)]
pub struct RemoteConfig {
    pub url: RemoteUrl,
    pub endpoint: String,
    /// None: anonymous (reads of a public bucket; read-only).
    pub access_key: Option<AccessKey>,
    /// The mode asked for; [`RemoteConfig::mode`] is what it can be.
    pub requested: Mode,
    /// None: this machine cannot sign (read-only).
    pub signing: Option<SigningKey>,
    pub trusted: Vec<PublicKey>,
    pub lease: Duration,
    /// Connect and read timeouts of every request.
    pub timeout: Duration,
    /// Shown with `-v`: why each record was ignored.
    pub verbose: bool,
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url.to_string())
            .field("endpoint", &crate::mirror::r2::authority(&self.endpoint))
            .field("requested", &self.requested)
            .field("trusted", &self.trusted.len())
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// The mode this machine runs in, and why it is read-only when it is.
    pub fn mode(&self) -> (Mode, Option<&'static str>) {
        match (self.requested, &self.signing, &self.access_key) {
            (Mode::ReadOnly, _, _) => (Mode::ReadOnly, Some("asked for (--remote-mode read-only)")),
            (_, None, _) => (Mode::ReadOnly, Some("no signing key (NBBUILD_REMOTE_SIGNING_KEY; `nbbuild remote keygen` makes one)")),
            (_, _, None) => (Mode::ReadOnly, Some("no write credentials (R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY)")),
            _ => (Mode::ReadWrite, None),
        }
    }

    /// Whether a record signed by `key` is believed: a listed key, or this
    /// machine's own.
    pub fn trusts(&self, key: &PublicKey) -> bool {
        self.trusted.contains(key) || self.signing.as_ref().is_some_and(|s| &s.public() == key)
    }

    /// Resolve from the flag or env value (`cli_url`, `cli_mode`: clap has
    /// merged flag and env), the file's section, the mirror section (for the
    /// endpoint) and the environment `env`. Ok(None): no team cache.
    pub fn resolve(
        cli_url: Option<&str>,
        cli_mode: Option<&str>,
        file: &RemoteSection,
        mirror: &crate::mirror::R2Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<RemoteConfig>, String> {
        let var = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(url) = cli_url
            .map(str::to_string)
            .filter(|u| !u.trim().is_empty())
            .or_else(|| file.url.clone())
        else {
            return Ok(None);
        };
        if url.trim() == "none" {
            return Ok(None);
        }
        let url = RemoteUrl::parse(&url)?;
        let requested = match cli_mode.map(str::to_string).or_else(|| file.mode.clone()) {
            Some(m) => Mode::parse(&m)?,
            None => Mode::ReadWrite,
        };
        let account_url = |a: String| format!("https://{a}.r2.cloudflarestorage.com");
        let endpoint = var("R2_ENDPOINT")
            .or_else(|| var("R2_ACCOUNT_ID").map(account_url))
            .or_else(|| mirror.endpoint.clone().filter(|e| !e.is_empty()))
            .or_else(|| {
                mirror
                    .account_id
                    .clone()
                    .filter(|a| !a.is_empty())
                    .map(account_url)
            })
            .ok_or("the team cache needs an endpoint: set R2_ENDPOINT or R2_ACCOUNT_ID")?;
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(format!(
                "the team cache endpoint `{}` is not an http(s) URL",
                crate::mirror::r2::authority(&endpoint)
            ));
        }
        let access_key = match (
            var("R2_ACCESS_KEY_ID").or_else(|| var("AWS_ACCESS_KEY_ID")),
            var("R2_SECRET_ACCESS_KEY").or_else(|| var("AWS_SECRET_ACCESS_KEY")),
        ) {
            (Some(id), Some(secret)) => Some(AccessKey { id, secret }),
            (None, None) => None,
            _ => {
                return Err("R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY must be set together".into())
            }
        };
        let signing = match var("NBBUILD_REMOTE_SIGNING_KEY") {
            Some(s) => Some(SigningKey::parse(&s).map_err(|e| {
                format!("NBBUILD_REMOTE_SIGNING_KEY is not a signing key ({e}; `nbbuild remote keygen` makes one)")
            })?),
            None => None,
        };
        let mut trusted = Vec::new();
        let env_trusted = var("NBBUILD_REMOTE_TRUSTED").unwrap_or_default();
        for k in file
            .trusted
            .iter()
            .map(String::as_str)
            .chain(env_trusted.split(','))
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            let key = PublicKey::parse(k).map_err(|e| {
                if SigningKey::parse(k).is_ok() {
                    "a trusted key is a signing key: list public keys only (the `public` of `nbbuild remote keygen`)".to_string()
                } else {
                    format!("trusted key `{k}`: {e}")
                }
            })?;
            if !trusted.contains(&key) {
                trusted.push(key);
            }
        }
        let ms = |k: &str| var(k).and_then(|v| v.parse::<u64>().ok());
        let lease = ms("NBBUILD_REMOTE_LEASE_MS")
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_LEASE)
            .max(Duration::from_millis(100));
        let timeout = ms("NBBUILD_REMOTE_TIMEOUT_MS")
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(3));
        Ok(Some(RemoteConfig {
            url,
            endpoint,
            access_key,
            requested,
            signing,
            trusted,
            lease,
            timeout,
            verbose: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::r2::env_of;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let u = RemoteUrl::parse("s3://team-cache/studio/a/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("team-cache", "studio/a")
        );
        assert_eq!(u.to_string(), "s3://team-cache/studio/a");
        assert_eq!(RemoteUrl::parse("s3://b").unwrap().prefix, "");
        for bad in [
            "https://b/x",
            "s3://",
            "s3://B/x",
            "s3://b/../x",
            "s3://b/x//y",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_signing_key_or_no_credentials_is_read_only_and_says_why() {
        let none = RemoteSection::default();
        let m = crate::mirror::R2Settings::default();
        let c = RemoteConfig::resolve(
            Some("s3://b/p"),
            None,
            &none,
            &m,
            &env_of(&[
                ("R2_ENDPOINT", "http://127.0.0.1:9"),
                ("R2_ACCESS_KEY_ID", "id"),
                ("R2_SECRET_ACCESS_KEY", "sec"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.mode().0, Mode::ReadOnly);
        assert!(c.mode().1.unwrap().contains("signing key"));
        let key = SigningKey::generate().unwrap();
        let secret: &'static str = Box::leak(key.to_secret_string().into_boxed_str());
        let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([
            ("R2_ENDPOINT", "http://127.0.0.1:9"),
            ("NBBUILD_REMOTE_SIGNING_KEY", secret),
        ]));
        let c = RemoteConfig::resolve(Some("s3://b"), None, &none, &m, &env_of(pairs))
            .unwrap()
            .unwrap();
        assert_eq!(c.mode().0, Mode::ReadOnly);
        assert!(c.mode().1.unwrap().contains("credentials"));
        // Its own key is trusted without being listed.
        assert!(c.trusts(&key.public()));
        assert!(!c.trusts(&SigningKey::generate().unwrap().public()));
        // The Debug output holds no secret.
        assert!(!format!("{c:?}").contains(secret));
    }

    #[test]
    fn a_signing_key_in_the_trust_list_is_refused_without_echoing_it() {
        let key = SigningKey::generate().unwrap();
        let section = RemoteSection {
            trusted: vec![key.to_secret_string()],
            ..Default::default()
        };
        let err = match RemoteConfig::resolve(
            Some("s3://b"),
            None,
            &section,
            &crate::mirror::R2Settings::default(),
            &env_of(&[("R2_ENDPOINT", "http://127.0.0.1:9")]),
        ) {
            Err(e) => e,
            Ok(_) => panic!("accepted a signing key as trusted"),
        };
        assert!(err.contains("signing key"), "{err}");
        assert!(!err.contains(&key.to_secret_string()[20..]), "{err}");
    }

    #[test]
    fn no_url_is_no_team_cache() {
        let c = RemoteConfig::resolve(
            None,
            Some("read-only"),
            &RemoteSection::default(),
            &crate::mirror::R2Settings::default(),
            &env_of(&[]),
        )
        .unwrap();
        assert!(c.is_none());
    }
}
