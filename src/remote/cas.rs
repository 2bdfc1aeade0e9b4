//! Object bytes in the team cache (`v1/cas/<ab>/<blake3>`), with the same
//! five operations and guarantees as the store's `ObjectStore` trait
//! (cache/src/object_store.rs), async because they cross the network:
//!
//! - `get` hands on only bytes that hash to the id asked for;
//! - `put` of bytes already there is cheap and harmless (a HEAD first, then
//!   `If-None-Match: *`, so the first writer's copy is never replaced);
//! - an object never changes;
//! - `delete` refuses: nbbuild never deletes from the team cache (a record
//!   may point at any object; Bazel's "missing digest" is what deleting
//!   blobs under live records gives).

use super::client::{Client, Condition, Fault};
use super::layout::Layout;
use aws_sdk_s3::primitives::ByteStream;
use std::path::Path;
use std::sync::Arc;

pub struct RemoteCas {
    pub client: Arc<Client>,
    pub layout: Layout,
}

/// What a `get` found.
#[derive(Debug)]
pub enum Got {
    Bytes(Vec<u8>),
    Missing,
    /// Bytes that do not hash to their name (or have another size than the
    /// record says): never handed on.
    Corrupt(String),
}

impl RemoteCas {
    /// Object `id`, verified against its blake3 and `size`.
    pub async fn get(&self, id: &str, size: u64) -> Result<Got, Fault> {
        let Some((bytes, _)) = self.client.get(&self.layout.cas(id)).await? else {
            return Ok(Got::Missing);
        };
        let got = nbbuild_cache::hash_bytes(&bytes);
        if got != id {
            return Ok(Got::Corrupt(format!("its bytes hash to {got}")));
        }
        if bytes.len() as u64 != size {
            return Ok(Got::Corrupt(format!(
                "{} bytes, the record says {size}",
                bytes.len()
            )));
        }
        Ok(Got::Bytes(bytes))
    }

    /// Upload the file of object `id` unless it is there. Ok(true) when
    /// this call stored it.
    pub async fn put(&self, id: &str, path: &Path, mime: &str) -> Result<bool, Fault> {
        let key = self.layout.cas(id);
        if self.client.has(&key).await? {
            return Ok(false);
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| Fault::Refused(format!("cannot read {}: {e}", path.display())))?;
        match self.client.put(&key, body, mime, Condition::Absent).await {
            Ok(_) => Ok(true),
            // Someone put the same bytes first.
            Err(Fault::Lost) => Ok(false),
            Err(f) => Err(f),
        }
    }

    pub async fn has(&self, id: &str) -> Result<bool, Fault> {
        self.client.has(&self.layout.cas(id)).await
    }

    /// Object ids held, sorted (at most `limit`).
    pub async fn list(&self, limit: usize) -> Result<Vec<String>, Fault> {
        let keys = self.client.list(&self.layout.cas_prefix(), limit).await?;
        Ok(keys.iter().map(|k| Layout::id_of(k).to_string()).collect())
    }

    pub async fn delete(&self, _id: &str) -> Result<(), Fault> {
        Err(Fault::Refused(
            "nbbuild never deletes objects from the team cache".into(),
        ))
    }
}
