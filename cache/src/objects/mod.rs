//! The object directory: `objects/ab/cdef...`, each file written once and
//! never changed, its size recorded in the `objects` tree for the size check
//! on every read.
//!
//! [`LocalObjects`] is the store's object directory and implements
//! [`ObjectStore`]; its inherent methods are the local-only part. This file
//! holds the type, the trait implementation, what the whole directory shares
//! (paths, the session's ids, listing, removing) and, at the end, the
//! store's public face for objects, which forwards here. The rest lives
//! beside it:
//!
//! ```text
//! write.rs       putting bytes: staged in tmp/, fsync, rename, directory fsync
//! read.rs        opening and reading, always after the size check
//! quarantine.rs  setting rotten files aside under quarantine/
//! tests.rs       the unit tests
//! ```

mod quarantine;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::generation::Table;
use crate::hash::{is_object_id, COPY_BUF};
use crate::store::{fsync_dir, lock_guard};
use crate::{ObjectId, ObjectStore, Result, Store, StoreError};

/// The object directory of a store: `objects/` for the objects, `tmp/` to
/// stage writes (same file system, so the rename is atomic), `quarantine/`
/// for rotten files set aside, and the `objects` tree of sizes.
pub struct LocalObjects {
    /// `objects/`
    dir: PathBuf,
    /// `tmp/`
    tmp: PathBuf,
    /// `quarantine/` (created when first needed)
    quarantine: PathBuf,
    /// object id -> size, u64 big-endian (the sled `objects` tree, a
    /// [`Table`]: writes move the store's generation).
    /// Written by `install` (write.rs), read by `recorded_size` (read.rs),
    /// removed by `remove` (here) and `quarantine` (quarantine.rs).
    sizes: Table,
    /// Objects written (or re-put) through this handle: gc keeps them, since
    /// a commit referring to them may be on its way. Remembered before the
    /// file is installed, so a gc in between cannot take it.
    session: Mutex<HashSet<ObjectId>>,
}

impl std::fmt::Debug for LocalObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalObjects")
            .field("dir", &self.dir)
            .finish()
    }
}

impl ObjectStore for LocalObjects {
    fn get(&self, id: &str, out: &mut dyn Write) -> Result<u64> {
        let (mut f, len) = self.open(id)?;
        let path = self.path(id);
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; COPY_BUF.min(len.max(1) as usize)];
        let mut total = 0u64;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| StoreError::io(format!("writing a copy of object {id}"), e))?;
            total += n as u64;
        }
        let corrupt = |detail: String| StoreError::CorruptObject {
            id: id.to_string(),
            path: path.clone(),
            detail,
        };
        if total != len {
            return Err(corrupt(format!(
                "it changed size while being read ({len} -> {total} bytes)"
            )));
        }
        let actual = hasher.finalize().to_hex().to_string();
        if actual != id {
            return Err(corrupt(format!("its bytes hash to {actual}")));
        }
        Ok(total)
    }

    fn put(&self, src: &mut dyn Read) -> Result<(ObjectId, u64)> {
        let (tmp, id, size) = self.stage(src, "the source")?;
        self.finish_put(tmp, &id, size)?;
        Ok((id, size))
    }

    fn has(&self, id: &str) -> bool {
        is_object_id(id) && self.path(id).is_file()
    }

    fn list(&self) -> Result<Vec<ObjectId>> {
        Ok(self
            .files()?
            .into_iter()
            .filter_map(|(_, id, _)| id)
            .collect())
    }

    fn delete(&self, id: &str) -> Result<()> {
        if !is_object_id(id) {
            return Err(StoreError::BadObjectId(id.to_string()));
        }
        Self::tidy_dir(&self.remove(id)?);
        Ok(())
    }
}

impl LocalObjects {
    /// The objects of the store rooted at `root` (whose `objects/` and
    /// `tmp/` exist); `sizes` is its sled `objects` tree.
    pub(crate) fn new(root: &Path, sizes: Table) -> LocalObjects {
        LocalObjects {
            dir: root.join("objects"),
            tmp: root.join("tmp"),
            quarantine: root.join("quarantine"),
            sizes,
            session: Mutex::new(HashSet::new()),
        }
    }

    /// `objects/ab/cdef...` (the path whether or not the object exists).
    /// An id that is not 64 lowercase hex chars gives a path inside
    /// `objects/invalid/` that never exists.
    pub(crate) fn path(&self, id: &str) -> PathBuf {
        if is_object_id(id) {
            self.dir.join(&id[..2]).join(&id[2..])
        } else {
            self.dir.join("invalid").join("not-an-object-id")
        }
    }

    pub(crate) fn remember(&self, id: &str) {
        lock_guard(&self.session).insert(id.to_string());
    }

    /// The objects written (or re-put, or committed) through this handle.
    pub(crate) fn session(&self) -> Vec<ObjectId> {
        lock_guard(&self.session).iter().cloned().collect()
    }

    /// Every file under `objects/`: (path, name-derived id if well formed,
    /// size), sorted by path.
    pub(crate) fn files(&self) -> Result<Vec<(PathBuf, Option<ObjectId>, u64)>> {
        let objects = &self.dir;
        let mut out = Vec::new();
        let rd = fs::read_dir(objects)
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

    // ------------------------------------------------------------------
    // removing

    /// Remove the file (if any) and the size record of well-formed object
    /// `id`, without syncing: returns the fan-out directory the file was in,
    /// for [`LocalObjects::tidy_dir`] (gc removes many objects and tidies
    /// each directory once).
    pub(crate) fn remove(&self, id: &str) -> Result<PathBuf> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(format!("removing {}", path.display()), e)),
        }
        self.sizes.remove(id.as_bytes())?;
        Ok(path
            .parent()
            .expect("object path has a parent")
            .to_path_buf())
    }

    /// Remove a fan-out directory that became empty, else sync it.
    pub(crate) fn tidy_dir(dir: &Path) {
        if fs::remove_dir(dir).is_err() {
            let _ = fsync_dir(dir);
        }
    }
}

impl Store {
    /// The store's object directory, as an [`ObjectStore`] (and the local
    /// operations of [`LocalObjects`]).
    pub fn objects(&self) -> &LocalObjects {
        &self.objects
    }

    /// `objects/ab/cdef...` (the path whether or not the object exists).
    /// An id that is not 64 lowercase hex chars gives a path inside
    /// `objects/invalid/` that never exists.
    pub fn object_path(&self, id: &str) -> PathBuf {
        self.objects.path(id)
    }

    pub fn has_object(&self, id: &str) -> bool {
        self.objects.has(id)
    }

    /// Store `bytes`; returns their id. Durable (fsynced, renamed, directory
    /// fsynced) when this returns.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<ObjectId> {
        self.objects.put_bytes(bytes)
    }

    /// Copy the file at `path` into the store, hashing as it streams
    /// (constant memory); returns (id, size). Durable when this returns.
    pub fn put_file(&self, path: &Path) -> Result<(ObjectId, u64)> {
        self.objects.put_file(path)
    }

    /// Open an object for streaming after the size check (no re-hash).
    pub fn open_object(&self, id: &str) -> Result<(fs::File, u64)> {
        self.objects.open(id)
    }

    /// Read a whole object. The size is always checked; with `verify` the
    /// bytes are re-hashed too (and returned only when they match). Either
    /// failure is [`StoreError::CorruptObject`] naming the object.
    pub fn read_object(&self, id: &str, verify: bool) -> Result<Vec<u8>> {
        self.objects.read(id, verify)
    }
}
