//! Reading objects. Every open checks the file's size against the size
//! recorded when it was written (cheap, catches truncation). Re-hashing the
//! bytes is asked for: `read` with `verify`, `check`, and
//! [`ObjectStore::get`] (in mod.rs), which hashes as it streams.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use crate::hash::{hash_bytes, is_object_id, EMPTY_OBJECT};
use crate::{LocalObjects, ObjectStore, Result, StoreError};

impl LocalObjects {
    /// Read a whole object. The size is always checked; with `verify` the
    /// bytes are re-hashed too (and returned only when they match).
    pub(crate) fn read(&self, id: &str, verify: bool) -> Result<Vec<u8>> {
        let (mut f, len) = self.open(id)?;
        let path = self.path(id);
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes)
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
        if bytes.len() as u64 != len {
            return Err(StoreError::CorruptObject {
                id: id.to_string(),
                path,
                detail: "it changed size while being read".to_string(),
            });
        }
        if verify {
            let actual = hash_bytes(&bytes);
            if actual != id {
                return Err(StoreError::CorruptObject {
                    id: id.to_string(),
                    path,
                    detail: format!("its bytes hash to {actual}"),
                });
            }
        }
        Ok(bytes)
    }

    /// Re-hash one object without copying it: `Ok(size)` when intact.
    pub(crate) fn check(&self, id: &str) -> Result<u64> {
        self.get(id, &mut io::sink())
    }

    /// Open an object for streaming after the size check (no re-hash).
    pub(crate) fn open(&self, id: &str) -> Result<(fs::File, u64)> {
        if !is_object_id(id) {
            return Err(StoreError::BadObjectId(id.to_string()));
        }
        let path = self.path(id);
        let f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingObject(id.to_string()))
            }
            Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
        };
        let len = f
            .metadata()
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?
            .len();
        self.check_size(id, &path, len)?;
        Ok((f, len))
    }

    /// Is `len`, the size of the file at `path`, right for object `id`?
    pub(crate) fn check_size(&self, id: &str, path: &Path, len: u64) -> Result<()> {
        let corrupt = |detail: String| StoreError::CorruptObject {
            id: id.to_string(),
            path: path.to_path_buf(),
            detail,
        };
        match self.recorded_size(id)? {
            Some(rec) if rec != len => Err(corrupt(format!(
                "it is {len} bytes, the store recorded {rec} bytes"
            ))),
            None if len == 0 && id != EMPTY_OBJECT => Err(corrupt("it is empty".to_string())),
            _ => Ok(()),
        }
    }

    /// The size recorded for `id` when it was written, if any.
    pub(super) fn recorded_size(&self, id: &str) -> Result<Option<u64>> {
        Ok(self.sizes.get(id.as_bytes())?.and_then(|v| {
            let arr: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(arr))
        }))
    }
}
