//! Object files: `objects/ab/cdef...`, written once through `tmp/` (fsync,
//! rename, directory fsync), never changed; their sizes are recorded in the
//! `objects` tree for the size check on every read.
//!
//! [`LocalObjects`] is the store's object directory and implements
//! [`ObjectStore`]; its inherent methods are the local-only part (paths,
//! open files, the size record, quarantine). The `impl Store` block at the
//! end is the store's public face for objects, and forwards here.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::hash::{hash_bytes, is_object_id, COPY_BUF, EMPTY_OBJECT};
use crate::store::{fsync_dir, lock_guard, now_secs};
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
    /// object id -> size, u64 big-endian (the sled `objects` tree)
    sizes: sled::Tree,
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
    pub(crate) fn new(root: &Path, sizes: sled::Tree) -> LocalObjects {
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

    // ------------------------------------------------------------------
    // writing

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

    /// Copy `src` into a new temporary file, hashing as it streams
    /// (constant memory): the file (not yet synced), its blake3 and its
    /// size. `what` names the source in errors.
    fn stage(
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

    /// Install a staged copy unless a good copy is already there.
    fn finish_put(&self, tmp: tempfile::NamedTempFile, id: &str, size: u64) -> Result<()> {
        self.remember(id);
        if self.present(id, size) && !self.replace_rotten(id)? {
            return Ok(()); // the temp file is deleted on drop
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io(format!("writing {}", tmp.path().display()), e))?;
        self.install(tmp, id, size)
    }

    /// [`ObjectStore::put`] from the file at `path`, named in errors.
    pub(crate) fn put_file(&self, path: &Path) -> Result<(ObjectId, u64)> {
        let (tmp, id, size) = self.copy_to_tmp(path)?;
        self.finish_put(tmp, &id, size)?;
        Ok((id, size))
    }

    // ------------------------------------------------------------------
    // reading

    fn recorded_size(&self, id: &str) -> Result<Option<u64>> {
        Ok(self.sizes.get(id.as_bytes())?.and_then(|v| {
            let arr: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(arr))
        }))
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

    /// A fresh path under `quarantine/` for object `id`.
    fn quarantine_path(&self, id: &str) -> Result<PathBuf> {
        let qdir = &self.quarantine;
        fs::create_dir_all(qdir)
            .map_err(|e| StoreError::io(format!("creating {}", qdir.display()), e))?;
        let base = format!("{id}.corrupt-{}", now_secs());
        let mut p = qdir.join(&base);
        let mut k = 2;
        while p.exists() {
            p = qdir.join(format!("{base}-{k}"));
            k += 1;
        }
        Ok(p)
    }

    /// Keep the current file of `id` under `quarantine/` (a hard link, or a
    /// copy where links are not possible) so it can be replaced in place.
    pub(crate) fn quarantine_copy(&self, id: &str) -> Result<Option<PathBuf>> {
        let path = self.path(id);
        if !path.is_file() {
            return Ok(None);
        }
        let to = self.quarantine_path(id)?;
        if fs::hard_link(&path, &to).is_err() {
            fs::copy(&path, &to).map_err(|e| {
                StoreError::io(format!("copying {} to {}", path.display(), to.display()), e)
            })?;
        }
        if let Some(d) = to.parent() {
            fsync_dir(d)?;
        }
        Ok(Some(to))
    }

    /// Move the file of well-formed object `id` into `quarantine/` and
    /// forget its size (not flushed). `None` when there was no file.
    pub(crate) fn quarantine(&self, id: &str) -> Result<Option<PathBuf>> {
        let path = self.path(id);
        if !path.is_file() {
            return Ok(None);
        }
        let to = self.quarantine_path(id)?;
        match fs::rename(&path, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::io(
                    format!("moving {} to {}", path.display(), to.display()),
                    e,
                ))
            }
        }
        if let Some(d) = path.parent() {
            fsync_dir(d)?;
        }
        if let Some(d) = to.parent() {
            fsync_dir(d)?;
        }
        self.sizes.remove(id.as_bytes())?;
        Ok(Some(to))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `LocalObjects` in a fresh directory, with a throwaway sled tree.
    fn local() -> (tempfile::TempDir, LocalObjects) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("objects")).unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let sizes = db.open_tree("objects").unwrap();
        let objects = LocalObjects::new(dir.path(), sizes);
        (dir, objects)
    }

    fn get_bytes(s: &dyn ObjectStore, id: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        s.get(id, &mut out)?;
        Ok(out)
    }

    /// Overwrite the object file with other bytes of the same length.
    fn rot(objects: &LocalObjects, id: &str) {
        let p = objects.path(id);
        let mut perm = fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&p, perm).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        bytes[0] ^= 0xff;
        fs::write(&p, bytes).unwrap();
    }

    #[test]
    fn put_then_get_round_trips() {
        let (_dir, objects) = local();
        let store: &dyn ObjectStore = &objects;
        let (id, size) = store.put(&mut &b"hello world"[..]).unwrap();
        assert_eq!(id, hash_bytes(b"hello world"));
        assert_eq!(size, 11);
        assert_eq!(get_bytes(store, &id).unwrap(), b"hello world");
        // The same bytes again: the same id, one file.
        assert_eq!(
            store.put(&mut &b"hello world"[..]).unwrap(),
            (id.clone(), 11)
        );
        assert_eq!(store.list().unwrap(), vec![id.clone()]);
        // Through the inherent byte path, too.
        assert_eq!(objects.put_bytes(b"hello world").unwrap(), id);
        assert_eq!(objects.read(&id, true).unwrap(), b"hello world");
    }

    #[test]
    fn the_empty_object_round_trips() {
        let (_dir, objects) = local();
        let (id, size) = objects.put(&mut io::empty()).unwrap();
        assert_eq!((id.as_str(), size), (EMPTY_OBJECT, 0));
        assert!(get_bytes(&objects, &id).unwrap().is_empty());
    }

    #[test]
    fn has_tells_presence() {
        let (_dir, objects) = local();
        let id = hash_bytes(b"abc");
        assert!(!objects.has(&id));
        objects.put(&mut &b"abc"[..]).unwrap();
        assert!(objects.has(&id));
        assert!(!objects.has("not-an-id"));
        assert!(!objects.has(&id.to_uppercase()));
    }

    #[test]
    fn list_is_sorted_and_skips_strays() {
        let (dir, objects) = local();
        let mut ids: Vec<ObjectId> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| objects.put(&mut s.as_bytes()).unwrap().0)
            .collect();
        ids.sort();
        fs::write(dir.path().join("objects").join("stray"), b"x").unwrap();
        fs::create_dir_all(dir.path().join("objects").join("zz")).unwrap();
        fs::write(dir.path().join("objects").join("zz").join("nope"), b"x").unwrap();
        assert_eq!(objects.list().unwrap(), ids);
    }

    #[test]
    fn delete_removes_and_tolerates_absence() {
        let (_dir, objects) = local();
        let (id, _) = objects.put(&mut &b"doomed"[..]).unwrap();
        let fan_out = objects.path(&id).parent().unwrap().to_path_buf();
        objects.delete(&id).unwrap();
        assert!(!objects.has(&id));
        assert!(objects.list().unwrap().is_empty());
        assert!(!fan_out.exists(), "the emptied fan-out directory goes too");
        assert_eq!(objects.recorded_size(&id).unwrap(), None);
        assert!(matches!(
            get_bytes(&objects, &id),
            Err(StoreError::MissingObject(_))
        ));
        objects.delete(&id).unwrap();
        assert!(matches!(
            objects.delete("bad"),
            Err(StoreError::BadObjectId(_))
        ));
        // Put again after delete: back, with its size recorded.
        objects.put(&mut &b"doomed"[..]).unwrap();
        assert_eq!(get_bytes(&objects, &id).unwrap(), b"doomed");
    }

    #[test]
    fn a_rotten_object_is_caught() {
        let (_dir, objects) = local();
        let (id, _) = objects.put(&mut &b"precious bytes"[..]).unwrap();
        rot(&objects, &id);
        // Same size: only the hash can tell.
        assert!(objects.read(&id, false).is_ok());
        let err = objects.read(&id, true).unwrap_err();
        assert!(
            matches!(&err, StoreError::CorruptObject { id: bad, .. } if *bad == id),
            "{err:?}"
        );
        let mut out = Vec::new();
        assert!(matches!(
            objects.get(&id, &mut out),
            Err(StoreError::CorruptObject { .. })
        ));
        // Putting the good bytes again replaces the rotten file and keeps it
        // under quarantine/.
        objects.put(&mut &b"precious bytes"[..]).unwrap();
        assert_eq!(objects.read(&id, true).unwrap(), b"precious bytes");
        assert_eq!(fs::read_dir(&objects.quarantine).unwrap().count(), 1);
    }

    #[test]
    fn read_object_with_verify_catches_rot_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = store.put_bytes(b"an image").unwrap();
        rot(store.objects(), &id);
        assert!(store.read_object(&id, false).is_ok());
        assert!(matches!(
            store.read_object(&id, true),
            Err(StoreError::CorruptObject { .. })
        ));
        assert!(matches!(
            store.objects().get(&id, &mut io::sink()),
            Err(StoreError::CorruptObject { .. })
        ));
    }

    #[test]
    fn a_wrong_size_is_caught_without_hashing() {
        let (_dir, objects) = local();
        let (id, _) = objects.put(&mut &b"twelve bytes"[..]).unwrap();
        let p = objects.path(&id);
        let mut perm = fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&p, perm).unwrap();
        fs::write(&p, b"short").unwrap();
        assert!(matches!(
            objects.read(&id, false),
            Err(StoreError::CorruptObject { .. })
        ));
    }

    #[test]
    fn writes_are_remembered_for_gc() {
        let (_dir, objects) = local();
        let (a, _) = objects.put(&mut &b"a"[..]).unwrap();
        let b = objects.put_bytes(b"b").unwrap();
        let mut session = objects.session();
        session.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(session, want);
    }
}
