//! Writing objects. Bytes are copied into a temporary file in `tmp/` (same
//! file system as `objects/`), hashed as they stream, fsynced, renamed to
//! their object path and the directory fsynced; then the size is recorded.
//! Bytes already there (right size, and intact when re-hashed) are not
//! written again; a rotten file in the way is kept under `quarantine/` and
//! replaced.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::hash::{hash_bytes, COPY_BUF};
use crate::store::fsync_dir;
use crate::{LocalObjects, ObjectId, Result, StoreError};

impl LocalObjects {
    /// Store `bytes`; returns their id. Hashed first, so bytes already
    /// there are not written again. Durable (fsynced, renamed, directory
    /// fsynced) when this returns.
    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<ObjectId> {
        let id = hash_bytes(bytes);
        self.remember(&id);
        if self.present(&id, bytes.len() as u64) && !self.replace_rotten(&id)? {
            return Ok(id);
        }
        let mut tmp = self.new_tmp()?;
        let tmp_path = tmp.path().to_path_buf();
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| StoreError::io(format!("writing {}", tmp_path.display()), e))?;
        self.install(tmp, &id, bytes.len() as u64)?;
        Ok(id)
    }

    /// [`ObjectStore::put`](crate::ObjectStore::put) from the file at `path`, named in errors.
    pub(crate) fn put_file(&self, path: &Path) -> Result<(ObjectId, u64)> {
        let (tmp, id, size) = self.copy_to_tmp(path)?;
        self.finish_put(tmp, &id, size)?;
        Ok((id, size))
    }

    /// Copy the file at `path` into a new temporary file of the store,
    /// hashing as it streams: the file, its blake3 and its size.
    pub(crate) fn copy_to_tmp(
        &self,
        path: &Path,
    ) -> Result<(tempfile::NamedTempFile, ObjectId, u64)> {
        let mut src = fs::File::open(path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        self.stage(&mut src, &path.display().to_string())
    }

    /// Copy `src` into a new temporary file, hashing as it streams
    /// (constant memory): the file (not yet synced), its blake3 and its
    /// size. `what` names the source in errors.
    pub(super) fn stage(
        &self,
        src: &mut dyn Read,
        what: &str,
    ) -> Result<(tempfile::NamedTempFile, ObjectId, u64)> {
        let mut tmp = self.new_tmp()?;
        let tmp_path = tmp.path().to_path_buf();
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; COPY_BUF];
        let mut size = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(format!("reading {what}"), e)),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| StoreError::io(format!("writing {}", tmp_path.display()), e))?;
            size += n as u64;
        }
        Ok((tmp, hasher.finalize().to_hex().to_string(), size))
    }

    /// Install a staged copy unless a good copy is already there.
    pub(super) fn finish_put(
        &self,
        tmp: tempfile::NamedTempFile,
        id: &str,
        size: u64,
    ) -> Result<()> {
        self.remember(id);
        if self.present(id, size) && !self.replace_rotten(id)? {
            return Ok(()); // the temp file is deleted on drop
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io(format!("writing {}", tmp.path().display()), e))?;
        self.install(tmp, id, size)
    }

    /// Is a complete object file already there (right size)?
    fn present(&self, id: &str, size: u64) -> bool {
        fs::metadata(self.path(id)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// The same bytes are being stored again and a file of the right size
    /// is there: is it rotten (then it is kept under `quarantine/` and the
    /// caller installs the good bytes over it)? Only this dedup path pays a
    /// re-hash; a same-size file is never trusted blindly.
    fn replace_rotten(&self, id: &str) -> Result<bool> {
        match self.check(id) {
            Ok(_) => Ok(false),
            Err(StoreError::CorruptObject { .. }) => {
                self.quarantine_copy(id)?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn new_tmp(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(&format!("obj-{}-", std::process::id()))
            .tempfile_in(&self.tmp)
            .map_err(|e| {
                StoreError::io(
                    format!("creating a temporary file in {}", self.tmp.display()),
                    e,
                )
            })
    }

    /// Durably move a fully written, fsynced temp file to its object path.
    pub(crate) fn install(&self, tmp: tempfile::NamedTempFile, id: &str, size: u64) -> Result<()> {
        let dest = self.path(id);
        let parent = dest.parent().expect("object path has a parent");
        if !parent.is_dir() {
            fs::create_dir_all(parent)
                .map_err(|e| StoreError::io(format!("creating {}", parent.display()), e))?;
            fsync_dir(&self.dir)?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = tmp
                .as_file()
                .set_permissions(fs::Permissions::from_mode(0o444));
        }
        // Retry once if the fan-out directory vanished in between (a gc
        // removes directories it emptied).
        let mut tmp = tmp;
        for attempt in 0..2 {
            match tmp.persist(&dest) {
                Ok(_) => break,
                Err(e) if attempt == 0 && e.error.kind() == io::ErrorKind::NotFound => {
                    tmp = e.file;
                    fs::create_dir_all(parent)
                        .map_err(|e| StoreError::io(format!("creating {}", parent.display()), e))?;
                    fsync_dir(&self.dir)?;
                }
                Err(e) => {
                    return Err(StoreError::io(
                        format!("moving an object into {}", dest.display()),
                        e.error,
                    ))
                }
            }
        }
        fsync_dir(parent)?;
        self.sizes.insert(id.as_bytes(), &size.to_be_bytes())?;
        Ok(())
    }
}
