//! Object files: `objects/ab/cdef...`, written once through `tmp/` (fsync,
//! rename, directory fsync), never changed; their sizes are recorded in the
//! `objects` tree for the size check on every read.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::hash::{hash_bytes, is_object_id, COPY_BUF, EMPTY_OBJECT};
use crate::store::{fsync_dir, lock_guard};
use crate::{ObjectId, Result, Store, StoreError};

impl Store {
    /// `objects/ab/cdef...` (the path whether or not the object exists).
    /// An id that is not 64 lowercase hex chars gives a path inside
    /// `objects/invalid/` that never exists.
    pub fn object_path(&self, id: &str) -> PathBuf {
        if is_object_id(id) {
            self.root.join("objects").join(&id[..2]).join(&id[2..])
        } else {
            self.root
                .join("objects")
                .join("invalid")
                .join("not-an-object-id")
        }
    }

    pub fn has_object(&self, id: &str) -> bool {
        is_object_id(id) && self.object_path(id).is_file()
    }

    pub(crate) fn remember(&self, id: &str) {
        lock_guard(&self.session_objects).insert(id.to_string());
    }

    /// Is a complete object file already there (right size)?
    fn object_present(&self, id: &str, size: u64) -> bool {
        fs::metadata(self.object_path(id)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// The same bytes are being stored again and a file of the right size
    /// is there: is it rotten (then it is kept under `quarantine/` and the
    /// caller installs the good bytes over it)? Only this dedup path pays a
    /// re-hash; a same-size file is never trusted blindly.
    fn replace_rotten(&self, id: &str) -> Result<bool> {
        match self.check_object(id) {
            Ok(_) => Ok(false),
            Err(StoreError::CorruptObject { .. }) => {
                self.quarantine_copy(id)?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn new_tmp(&self) -> Result<tempfile::NamedTempFile> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&format!("obj-{}-", std::process::id()))
            .tempfile_in(&dir)
            .map_err(|e| {
                StoreError::io(format!("creating a temporary file in {}", dir.display()), e)
            })
    }

    /// Durably move a fully written, fsynced temp file to its object path.
    pub(crate) fn install(&self, tmp: tempfile::NamedTempFile, id: &str, size: u64) -> Result<()> {
        let dest = self.object_path(id);
        let parent = dest.parent().expect("object path has a parent");
        if !parent.is_dir() {
            fs::create_dir_all(parent)
                .map_err(|e| StoreError::io(format!("creating {}", parent.display()), e))?;
            fsync_dir(&self.root.join("objects"))?;
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
                    fsync_dir(&self.root.join("objects"))?;
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
        self.t.objects.insert(id.as_bytes(), &size.to_be_bytes())?;
        Ok(())
    }

    /// Store `bytes`; returns their id. Durable (fsynced, renamed, directory
    /// fsynced) when this returns.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<ObjectId> {
        let id = hash_bytes(bytes);
        self.remember(&id);
        if self.object_present(&id, bytes.len() as u64) && !self.replace_rotten(&id)? {
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

    /// Copy `path` into a new temporary file of the store, hashing as it
    /// streams (constant memory): the file, its blake3 and its size.
    pub(crate) fn copy_to_tmp(
        &self,
        path: &Path,
    ) -> Result<(tempfile::NamedTempFile, ObjectId, u64)> {
        let mut src = fs::File::open(path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
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
                Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| StoreError::io(format!("writing {}", tmp_path.display()), e))?;
            size += n as u64;
        }
        Ok((tmp, hasher.finalize().to_hex().to_string(), size))
    }

    /// Copy the file at `path` into the store, hashing as it streams
    /// (constant memory); returns (id, size). Durable when this returns.
    pub fn put_file(&self, path: &Path) -> Result<(ObjectId, u64)> {
        let (tmp, id, size) = self.copy_to_tmp(path)?;
        self.remember(&id);
        if self.object_present(&id, size) && !self.replace_rotten(&id)? {
            return Ok((id, size)); // the temp file is deleted on drop
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io(format!("writing {}", tmp.path().display()), e))?;
        self.install(tmp, &id, size)?;
        Ok((id, size))
    }

    fn recorded_size(&self, id: &str) -> Result<Option<u64>> {
        Ok(self.t.objects.get(id.as_bytes())?.and_then(|v| {
            let arr: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(arr))
        }))
    }

    /// Open an object for streaming after the size check (no re-hash).
    pub fn open_object(&self, id: &str) -> Result<(fs::File, u64)> {
        if !is_object_id(id) {
            return Err(StoreError::BadObjectId(id.to_string()));
        }
        let path = self.object_path(id);
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

    /// Read a whole object. The size is always checked; with `verify` the
    /// bytes are re-hashed too (and returned only when they match). Either
    /// failure is [`StoreError::CorruptObject`] naming the object.
    pub fn read_object(&self, id: &str, verify: bool) -> Result<Vec<u8>> {
        let (mut f, len) = self.open_object(id)?;
        let path = self.object_path(id);
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

    /// Every file under `objects/`: (path, name-derived id if well formed, size).
    pub(crate) fn object_files(&self) -> Result<Vec<(PathBuf, Option<ObjectId>, u64)>> {
        let objects = self.root.join("objects");
        let mut out = Vec::new();
        let rd = fs::read_dir(&objects)
            .map_err(|e| StoreError::io(format!("listing {}", objects.display()), e))?;
        let mut dirs: Vec<_> = rd.flatten().collect();
        dirs.sort_by_key(|e| e.file_name());
        for d in dirs {
            let dpath = d.path();
            let dname = d.file_name().to_string_lossy().into_owned();
            if !dpath.is_dir() {
                let len = d.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((dpath, None, len));
                continue;
            }
            let rd = fs::read_dir(&dpath)
                .map_err(|e| StoreError::io(format!("listing {}", dpath.display()), e))?;
            let mut files: Vec<_> = rd.flatten().collect();
            files.sort_by_key(|e| e.file_name());
            for f in files {
                let fname = f.file_name().to_string_lossy().into_owned();
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                let id = format!("{dname}{fname}");
                let ok = dname.len() == 2 && is_object_id(&id) && f.path().is_file();
                out.push((f.path(), ok.then_some(id), len));
            }
        }
        Ok(out)
    }
}
