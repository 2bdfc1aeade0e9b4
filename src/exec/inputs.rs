//! Input images: their identity for the key, and their bytes for the request.
//!
//! Local files are identified by the blake3 of their bytes (the store
//! remembers (path, size, mtime) -> hash, so unchanged files are not
//! re-hashed); http(s) references are downloaded once and kept in the
//! store; picks nbbuild made are store objects already.

use crate::glabs::RefImage;
use crate::repair::Repairer;
use base64::Engine;
use nbbuild_cache::{Store, StoreError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest reference image accepted (G-Labs bodies are at most 50 MiB).
pub const MAX_REF_BYTES: u64 = 30 * 1024 * 1024;

pub struct Inputs {
    store: Arc<Store>,
    dir: PathBuf,
    http: reqwest::Client,
    bytes: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// Puts back a stored object whose verified read failed.
    repair: Option<Arc<Repairer>>,
}

impl Inputs {
    pub fn new(store: Arc<Store>, dir: &Path) -> Inputs {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Inputs {
            store,
            dir: dir.to_path_buf(),
            http,
            bytes: Mutex::new(HashMap::new()),
            repair: None,
        }
    }

    /// Repair rotten stored inputs through `repair` before they are sent.
    pub fn repairing(mut self, repair: Option<Arc<Repairer>>) -> Inputs {
        self.repair = repair;
        self
    }

    /// The bytes of stored object `object`, only when they hash to its id;
    /// a rotten or missing one is repaired first when it can be.
    async fn verified(&self, object: &str) -> Result<Vec<u8>, StoreError> {
        match self.store.read_object(object, true) {
            Err(e) if crate::repair::repairable(&e) => match &self.repair {
                Some(r) => {
                    let outcome = r.repair(object).await;
                    if outcome.usable() {
                        self.store.read_object(object, true)
                    } else {
                        Err(e)
                    }
                }
                None => Err(e),
            },
            r => r,
        }
    }

    pub fn resolve(&self, p: &str) -> PathBuf {
        resolve(&self.dir, p)
    }

    /// blake3 of a local file's bytes, from the store's cache when the file
    /// has not changed.
    pub fn file_hash(&self, p: &str) -> Result<String, String> {
        local_file_hash(self.store.as_ref(), &self.dir, p)
    }

    /// Fetch, once, every http(s) URL whose content the store does not know,
    /// and check each is an image; the ones that cannot be had, with why.
    pub async fn prefetch(&self, urls: &[String]) -> std::collections::BTreeMap<String, String> {
        let unknown: Vec<&String> = urls
            .iter()
            .filter(|u| {
                let l = u.to_ascii_lowercase();
                (l.starts_with("http://") || l.starts_with("https://"))
                    && !matches!(self.store.url_object(u), Ok(Some(_)))
            })
            .collect();
        let fetched =
            futures_util::future::join_all(unknown.iter().map(|u| self.url_bytes(u))).await;
        unknown
            .into_iter()
            .zip(fetched)
            .filter_map(|(u, r)| r.err().map(|e| (u.clone(), e)))
            .collect()
    }

    fn cached(&self, k: &str) -> Option<Arc<Vec<u8>>> {
        self.bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k)
            .cloned()
    }

    fn remember(&self, k: &str, b: Vec<u8>) -> Arc<Vec<u8>> {
        let b = Arc::new(b);
        self.bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k.to_string(), b.clone());
        b
    }

    pub fn file_bytes(&self, p: &str) -> Result<RefImage, String> {
        let path = self.resolve(p);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("ref.png")
            .to_string();
        let key = format!("file:{}", path.display());
        if let Some(b) = self.cached(&key) {
            return Ok(RefImage { name, bytes: b });
        }
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("cannot read reference image {}: {e}", path.display()))?;
        if meta.len() > MAX_REF_BYTES {
            return Err(format!(
                "reference image {} is {} MB; the limit is {} MB",
                path.display(),
                meta.len() / 1_000_000,
                MAX_REF_BYTES / 1_000_000
            ));
        }
        let b = std::fs::read(&path)
            .map_err(|e| format!("cannot read reference image {}: {e}", path.display()))?;
        Ok(RefImage {
            name,
            bytes: self.remember(&key, b),
        })
    }

    /// The bytes of one of nbbuild's candidates, to send as an input: hashed
    /// before they are handed on (a rotten object is never sent).
    pub async fn object_bytes(&self, object: &str, name: &str) -> Result<RefImage, String> {
        let key = format!("object:{object}");
        if let Some(b) = self.cached(&key) {
            return Ok(RefImage {
                name: name.into(),
                bytes: b,
            });
        }
        let b = self.verified(object).await.map_err(|e| {
            let lost = crate::repair::repairable(&e);
            format!(
                "stored candidate {object} cannot be sent: {e}{}",
                if lost {
                    " (no good copy was found; the next build regenerates it)"
                } else {
                    ""
                }
            )
        })?;
        Ok(RefImage {
            name: name.into(),
            bytes: self.remember(&key, b),
        })
    }

    /// Bytes behind a URL: `file://` and `data:` locally, http(s) downloaded
    /// once and kept in the store.
    pub async fn url_bytes(&self, url: &str) -> Result<RefImage, String> {
        let lower = url.to_ascii_lowercase();
        let name = url
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && n.len() < 100)
            .unwrap_or("ref.png")
            .to_string();
        if lower.starts_with("file://") {
            return self.file_bytes(url);
        }
        if lower.starts_with("data:") {
            let b = decode_data_url(url)?;
            return Ok(RefImage {
                name: "ref.png".into(),
                bytes: Arc::new(b),
            });
        }
        if let Some(b) = self.cached(url) {
            return Ok(RefImage { name, bytes: b });
        }
        // Verified (a rotten copy is fetched again from the URL by the
        // repair, or below when there is no repairer).
        if let Ok(Some(obj)) = self.store.url_object(url) {
            if let Ok(b) = self.verified(&obj).await {
                return Ok(RefImage {
                    name,
                    bytes: self.remember(url, b),
                });
            }
        }
        let resp = self.http.get(url).send().await.map_err(|e| {
            format!("cannot download reference {url}: {} (G-Labs needs the bytes, so nbbuild fetches URL references once and keeps them in the store)", crate::http::describe(&e))
        })?;
        if !resp.status().is_success() {
            return Err(format!(
                "cannot download reference {url}: HTTP {}",
                resp.status()
            ));
        }
        let b = crate::http::read_limited(resp, MAX_REF_BYTES)
            .await
            .map_err(|e| format!("reference {url}: {e}"))?;
        if !is_image(&b) {
            return Err(format!(
                "reference {url} is not an image ({} bytes that are not PNG, JPEG, WebP or GIF: an error page?)",
                b.len()
            ));
        }
        if let Ok(obj) = self.store.put_bytes(&b) {
            let _ = self.store.put_url_object(url, &obj);
        }
        Ok(RefImage {
            name,
            bytes: self.remember(url, b),
        })
    }
}

/// blake3 of a local reference (`p` as the flow names it, relative to
/// `dir`), from the store's (path, size, mtime) cache while the file is
/// unchanged; a new hash is remembered when the store takes writes.
pub fn local_file_hash(
    store: &dyn crate::holder::StoreRead,
    dir: &Path,
    p: &str,
) -> Result<String, String> {
    let path = resolve(dir, p);
    let unreadable =
        |e: &dyn std::fmt::Display| format!("cannot read reference image {}: {e}", path.display());
    let meta = std::fs::metadata(&path).map_err(|e| unreadable(&e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let canon = path.canonicalize().unwrap_or(path.clone());
    if let Ok(Some(h)) = store.file_hash(&canon, meta.len(), mtime) {
        return Ok(h);
    }
    let (h, _) = nbbuild_cache::hash_file(&path).map_err(|e| unreadable(&e))?;
    store.remember_file_hash(&canon, meta.len(), mtime, &h);
    Ok(h)
}

/// A path as a flow names it (relative to the flow's folder `dir`, absolute,
/// or a percent-encoded `file://` URL).
pub fn resolve(dir: &Path, p: &str) -> PathBuf {
    let decoded;
    let p = match p.strip_prefix("file://") {
        Some(rest) => {
            decoded = percent_encoding::percent_decode_str(rest)
                .decode_utf8_lossy()
                .into_owned();
            decoded.as_str()
        }
        None => p,
    };
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

pub fn decode_data_url(url: &str) -> Result<Vec<u8>, String> {
    let data = url.split_once(',').map(|(_, d)| d).unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("data URL is not base64: {e}"))
}

/// PNG, JPEG, WebP or GIF, by their signatures.
pub fn is_image(b: &[u8]) -> bool {
    b.starts_with(b"\x89PNG\r\n\x1a\n")
        || b.starts_with(&[0xff, 0xd8, 0xff])
        || (b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP")
        || b.starts_with(b"GIF87a")
        || b.starts_with(b"GIF89a")
}
