//! Side tables: small records about objects and URLs that are not task
//! records: QA verdicts, uploads and the URLs nbbuild published, URL
//! downloads, the file-hash cache, pins, the run log and `meta` values.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hash::is_object_id;
use crate::store::{now_ms, pair_key, split_pair};
use crate::{ObjectId, Pin, Result, Store, StoreError, Verdict};

#[derive(Serialize, Deserialize)]
pub(crate) struct FileHashEntry {
    pub(crate) size: u64,
    /// i128 as a decimal string (JSON numbers lose precision past 2^53)
    pub(crate) mtime_ns: String,
    pub(crate) hash: String,
}

impl Store {
    pub fn verdict(&self, object: &str, reviewer: &str) -> Result<Option<Verdict>> {
        match self.t.verdicts.get(pair_key(object, reviewer))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(|e| {
                StoreError::Corrupt {
                    what: format!("verdict on {object} by {reviewer}"),
                    detail: e.to_string(),
                }
            })?)),
            None => Ok(None),
        }
    }

    /// Flushed.
    pub fn put_verdict(&self, object: &str, reviewer: &str, v: &Verdict) -> Result<()> {
        self.t
            .verdicts
            .insert(pair_key(object, reviewer), serde_json::to_vec(v)?)?;
        self.flush()
    }

    /// The public URL of `object` on `mirror`, if uploaded.
    pub fn upload(&self, object: &str, mirror: &str) -> Result<Option<String>> {
        Ok(self
            .t
            .uploads
            .get(pair_key(object, mirror))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Flushed. The URL also names its object from now on
    /// ([`Store::url_object`]): a flow that comes back holding it (the
    /// PatchWork round trip) is keyed by the same content.
    pub fn put_upload(&self, object: &str, mirror: &str, url: &str) -> Result<()> {
        self.t
            .uploads
            .insert(pair_key(object, mirror), url.as_bytes())?;
        if is_object_id(object) {
            self.t.published.insert(url.as_bytes(), object.as_bytes())?;
        }
        self.flush()
    }

    /// Let every URL recorded as an upload name its object (stores written
    /// before uploads did so themselves). Idempotent; flushed.
    pub fn index_published_urls(&self) -> Result<usize> {
        let mut n = 0;
        for kv in self.t.uploads.iter() {
            let (k, url) = kv?;
            let Some((object, _mirror)) = split_pair(&k) else {
                continue;
            };
            if is_object_id(&object) && self.t.published.get(&url)?.is_none() {
                self.t.published.insert(url, object.as_bytes())?;
                n += 1;
            }
        }
        self.flush()?;
        Ok(n)
    }

    /// A value of the store's own `meta` tree (schema, migrations done).
    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .t
            .meta
            .get(format!("x:{name}"))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Flushed.
    pub fn put_meta(&self, name: &str, value: &str) -> Result<()> {
        self.t.meta.insert(format!("x:{name}"), value.as_bytes())?;
        self.flush()
    }

    /// The object behind a URL: what was downloaded from it (an http(s)
    /// reference), or what nbbuild published there.
    pub fn url_object(&self, url: &str) -> Result<Option<ObjectId>> {
        let v = match self.t.url_objects.get(url.as_bytes())? {
            Some(v) => Some(v),
            None => self.t.published.get(url.as_bytes())?,
        };
        Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Flushed.
    pub fn put_url_object(&self, url: &str, object: &str) -> Result<()> {
        if !is_object_id(object) {
            return Err(StoreError::BadObjectId(object.to_string()));
        }
        self.t
            .url_objects
            .insert(url.as_bytes(), object.as_bytes())?;
        self.flush()
    }

    fn file_hash_key(path: &Path) -> Vec<u8> {
        let p = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            p.as_os_str().as_bytes().to_vec()
        }
        #[cfg(not(unix))]
        {
            p.to_string_lossy().as_bytes().to_vec()
        }
    }

    /// The content hash recorded for the local file at `path` (canonicalized)
    /// if its size and mtime are still the recorded ones.
    pub fn file_hash(&self, path: &Path, size: u64, mtime_ns: i128) -> Result<Option<ObjectId>> {
        let Some(v) = self.t.file_hashes.get(Self::file_hash_key(path))? else {
            return Ok(None);
        };
        let Ok(e) = serde_json::from_slice::<FileHashEntry>(&v) else {
            return Ok(None); // a cache entry: unreadable means unknown
        };
        if e.size == size && e.mtime_ns == mtime_ns.to_string() && is_object_id(&e.hash) {
            Ok(Some(e.hash))
        } else {
            Ok(None)
        }
    }

    /// Not flushed on its own (a lost entry only costs a re-hash); the next
    /// flushed write or close makes it durable.
    pub fn put_file_hash(&self, path: &Path, size: u64, mtime_ns: i128, hash: &str) -> Result<()> {
        if !is_object_id(hash) {
            return Err(StoreError::BadObjectId(hash.to_string()));
        }
        let e = FileHashEntry {
            size,
            mtime_ns: mtime_ns.to_string(),
            hash: hash.to_string(),
        };
        self.t
            .file_hashes
            .insert(Self::file_hash_key(path), serde_json::to_vec(&e)?)?;
        Ok(())
    }

    /// Keep `object` through every gc (user picks etc.). Flushed.
    pub fn pin(&self, object: &str, why: &str) -> Result<()> {
        if !is_object_id(object) {
            return Err(StoreError::BadObjectId(object.to_string()));
        }
        let p = Pin {
            object: object.to_string(),
            why: why.to_string(),
            at: now_ms(),
        };
        self.t
            .pins
            .insert(pair_key(object, why), serde_json::to_vec(&p)?)?;
        self.flush()
    }

    /// Remove every pin of `object`; returns how many there were. Flushed.
    pub fn unpin(&self, object: &str) -> Result<usize> {
        let mut n = 0;
        for kv in self.t.pins.scan_prefix(pair_key(object, "")) {
            let (k, _) = kv?;
            if split_pair(&k).is_some_and(|(o, _)| o == object) {
                self.t.pins.remove(k)?;
                n += 1;
            }
        }
        if n > 0 {
            self.flush()?;
        }
        Ok(n)
    }

    /// All pins, sorted by object.
    pub fn pins(&self) -> Result<Vec<Pin>> {
        let mut out = Vec::new();
        for kv in self.t.pins.iter() {
            let (k, v) = kv?;
            let pin = serde_json::from_slice::<Pin>(&v).unwrap_or_else(|_| {
                let (object, why) = split_pair(&k).unwrap_or_default();
                Pin { object, why, at: 0 }
            });
            out.push(pin);
        }
        Ok(out)
    }

    pub fn is_pinned(&self, object: &str) -> Result<bool> {
        Ok(self
            .t
            .pins
            .scan_prefix(pair_key(object, ""))
            .next()
            .transpose()?
            .is_some())
    }

    /// Append to the run log. Flushed.
    pub fn append_run(&self, run: &serde_json::Value) -> Result<()> {
        let id = self.db.generate_id()?;
        self.t
            .runs
            .insert(id.to_be_bytes(), serde_json::to_vec(run)?)?;
        self.flush()
    }

    /// The run log, oldest first.
    pub fn runs(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        for kv in self.t.runs.iter() {
            let (k, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                what: format!("run log entry {}", String::from_utf8_lossy(&k)),
                detail: e.to_string(),
            })?);
        }
        Ok(out)
    }
}
