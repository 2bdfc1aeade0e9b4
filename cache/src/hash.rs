//! Object ids: the blake3 of an object's bytes, as 64 lowercase hex chars.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// 64 lowercase hex chars of a blake3 hash.
pub type ObjectId = String;

/// blake3 of the empty input: the only object that may be an empty file.
pub const EMPTY_OBJECT: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

/// Read and copy buffer size for streaming objects.
pub(crate) const COPY_BUF: usize = 1 << 20;

/// Is `id` a well-formed object id (64 lowercase hex chars)?
pub fn is_object_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where object `id` lives in the store rooted at `root`, without opening
/// the store (sled's lock is not needed to read bytes: objects are written
/// once, by rename, and never change). `None` for a malformed id.
pub fn object_file(root: &Path, id: &str) -> Option<PathBuf> {
    is_object_id(id).then(|| root.join("objects").join(&id[..2]).join(&id[2..]))
}

/// The object id of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> ObjectId {
    blake3::hash(bytes).to_hex().to_string()
}

/// Stream `path` through blake3 without writing it anywhere: (id, size).
pub fn hash_file(path: &Path) -> Result<(ObjectId, u64)> {
    let mut f = fs::File::open(path)
        .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
    hash_reader(&mut f).map_err(|e| StoreError::io(format!("reading {}", path.display()), e))
}

/// Stream a reader through blake3 to its end: (id, size).
pub(crate) fn hash_reader(r: &mut impl Read) -> io::Result<(ObjectId, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; COPY_BUF];
    let mut size = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((hasher.finalize().to_hex().to_string(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_constant() {
        assert_eq!(hash_bytes(b""), EMPTY_OBJECT);
    }
}
