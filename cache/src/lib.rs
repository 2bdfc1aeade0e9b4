//! nbbuild's store: sled records plus a content-addressed object directory.
//!
//! The crate knows nothing about `.nbflow` files; it stores bytes (named by
//! their blake3) and records about task keys. See `docs/store.md` for the
//! on-disk layout and the guarantees.
//!
//! All methods are blocking (they fsync); call them from `spawn_blocking`
//! in async code. [`Store`] is `Send + Sync`: share one handle through an
//! `Arc`; a second `Store::open` of the same directory fails with
//! [`StoreError::Locked`], even in the same process.

mod error;
mod lock;
mod records;
mod repair;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use lock::{pid_alive, LockInfo};
pub use records::{
    Candidate, Corrupted, GcReport, HistorySet, InFlight, Pin, Problem, ProblemKind, Stats,
    Submitting, TaskRecord, Verdict, VerifyReport,
};
pub use repair::{Holder, Restore};

/// Version of the record layout. Stored in the `meta` tree; a store with any
/// other version is refused with [`StoreError::Schema`].
pub const SCHEMA_VERSION: u32 = 1;

/// 64 lowercase hex chars of a blake3 hash.
pub type ObjectId = String;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// blake3 of the empty input: the only object that may be an empty file.
pub const EMPTY_OBJECT: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

const META_SCHEMA: &[u8] = b"schema_version";
const META_CREATED: &[u8] = b"created";
const COPY_BUF: usize = 1 << 20;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}

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

/// The live process holding the store in `dir`, as its `LOCK` file names
/// it, without opening the store (so asking never gets in that process's
/// way). `None` when nobody holds it or the holder is gone.
pub fn holder(dir: &Path) -> Option<LockInfo> {
    lock::read_lock(&dir.join("LOCK")).filter(|i| pid_alive(i.pid))
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

fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("syncing directory {}", dir.display()), e))
}

fn lock_guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn split_pair(k: &[u8]) -> Option<(String, String)> {
    let i = k.iter().rposition(|&b| b == 0)?;
    Some((
        String::from_utf8_lossy(&k[..i]).into_owned(),
        String::from_utf8_lossy(&k[i + 1..]).into_owned(),
    ))
}

#[derive(Serialize, Deserialize)]
struct FileHashEntry {
    size: u64,
    /// i128 as a decimal string (JSON numbers lose precision past 2^53)
    mtime_ns: String,
    hash: String,
}

/// The trees of the sled database; see docs/store.md.
struct Trees {
    meta: sled::Tree,
    tasks: sled::Tree,
    task_names: sled::Tree,
    objects: sled::Tree,
    verdicts: sled::Tree,
    uploads: sled::Tree,
    url_objects: sled::Tree,
    /// URL nbbuild published -> the object it published there (not a
    /// reference that keeps the object alive: the mirror holds a copy).
    published: sled::Tree,
    file_hashes: sled::Tree,
    pins: sled::Tree,
    runs: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Trees> {
        Ok(Trees {
            meta: db.open_tree("meta")?,
            tasks: db.open_tree("tasks")?,
            task_names: db.open_tree("task_names")?,
            objects: db.open_tree("objects")?,
            verdicts: db.open_tree("verdicts")?,
            uploads: db.open_tree("uploads")?,
            url_objects: db.open_tree("url_objects")?,
            published: db.open_tree("published")?,
            file_hashes: db.open_tree("file_hashes")?,
            pins: db.open_tree("pins")?,
            runs: db.open_tree("runs")?,
        })
    }
}

/// The store: one sled database for records, one directory of objects.
pub struct Store {
    root: PathBuf,
    db: sled::Db,
    t: Trees,
    notices: Vec<String>,
    /// Serializes read-modify-write of records within this process.
    write: Mutex<()>,
    /// Objects written (or re-put) through this handle: gc keeps them, since
    /// a commit referring to them may be on its way.
    session_objects: Mutex<HashSet<ObjectId>>,
    /// When this handle opened the store: tmp files older than this are stale.
    opened: SystemTime,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

fn open_sled(path: &Path) -> std::result::Result<sled::Db, sled::Error> {
    let path = path.to_path_buf();
    // sled has internal unwraps; a garbage database must not take the
    // caller down with it.
    match std::panic::catch_unwind(move || sled::Config::new().path(path).open()) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            Err(sled::Error::ReportableBug(format!(
                "sled panicked while opening: {msg}"
            )))
        }
    }
}

/// Move every `snap.*.generating` file of the sled directory into
/// `root/quarantine/` as `<name>.corrupt-<unix secs>`. (Renaming in place
/// would not do: sled considers every file whose name starts with `snap.`.)
fn quarantine_generating(db_dir: &Path, root: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut moved = Vec::new();
    let entries = match fs::read_dir(db_dir) {
        Ok(e) => e,
        Err(_) => return Ok(moved),
    };
    let qdir = root.join("quarantine");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            fs::create_dir_all(&qdir)
                .map_err(|e| StoreError::io(format!("creating {}", qdir.display()), e))?;
            let to = qdir.join(format!("{name}.corrupt-{}", now_secs()));
            fs::rename(entry.path(), &to).map_err(|e| {
                StoreError::io(
                    format!("moving {} to {}", entry.path().display(), to.display()),
                    e,
                )
            })?;
            moved.push((entry.path(), to));
        }
    }
    if !moved.is_empty() {
        fsync_dir(db_dir)?;
        fsync_dir(&qdir)?;
    }
    Ok(moved)
}

impl Store {
    /// Open (creating) the store in `dir` (e.g. `.nbbuild/`).
    pub fn open(dir: &Path) -> Result<Store> {
        let mkdir = |p: &Path| {
            fs::create_dir_all(p)
                .map_err(|e| StoreError::io(format!("creating {}", p.display()), e))
        };
        mkdir(dir)?;
        // Absolute, so that a later chdir of the process changes nothing.
        let root = fs::canonicalize(dir)
            .map_err(|e| StoreError::io(format!("resolving {}", dir.display()), e))?;
        mkdir(&root.join("objects"))?;
        mkdir(&root.join("tmp"))?;
        let db_dir = root.join("db");
        let lock_path = root.join("LOCK");
        let mut notices = Vec::new();

        let locked = |root: &Path| {
            let info = lock::read_lock(&root.join("LOCK"));
            StoreError::Locked {
                pid: info.as_ref().map_or(0, |i| i.pid),
                since: info.as_ref().map_or(0, |i| i.since),
                command: info.map(|i| i.command).unwrap_or_default(),
                dir: root.to_path_buf(),
            }
        };

        let mut attempt = 0;
        let mut recovered = false;
        let db = loop {
            match open_sled(&db_dir) {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) => {
                    // The lock belongs to a live process named in LOCK: say so
                    // at once. Otherwise the holder may be starting up (LOCK
                    // not written yet) or a handle of this process that is
                    // being dropped: give it a moment.
                    let info = lock::read_lock(&lock_path);
                    let named_alive = info
                        .as_ref()
                        .is_some_and(|i| pid_alive(i.pid) && i.pid != std::process::id());
                    let ours = info.as_ref().is_some_and(|i| i.pid == std::process::id());
                    if named_alive || ours || attempt >= 20 {
                        return Err(locked(&root));
                    }
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(sled::Error::Corruption { .. }) if !recovered => {
                    recovered = true;
                    let moved = quarantine_generating(&db_dir, &root)?;
                    if moved.is_empty() {
                        return Err(StoreError::Corrupt {
                            what: format!("the store database in {}", db_dir.display()),
                            detail: "sled reports corruption and there is no interrupted \
                                     snapshot file to set aside"
                                .to_string(),
                        });
                    }
                    let names: Vec<String> = moved
                        .iter()
                        .map(|(from, to)| format!("{} -> {}", from.display(), to.display()))
                        .collect();
                    notices.push(format!(
                        "the store database reported corruption on open; set aside {} \
                         interrupted sled snapshot file(s) ({}) and reopened it",
                        moved.len(),
                        names.join(", ")
                    ));
                }
                Err(sled::Error::Corruption { .. }) => {
                    return Err(StoreError::Corrupt {
                        what: format!("the store database in {}", db_dir.display()),
                        detail: "sled still reports corruption after the interrupted \
                                 snapshot files were set aside in quarantine/"
                            .to_string(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };

        // We hold sled's exclusive lock now; LOCK is ours to (over)write.
        if let Some(old) = lock::read_lock(&lock_path) {
            if old.pid != std::process::id() {
                let state = if pid_alive(old.pid) {
                    "which no longer holds it"
                } else {
                    "which is no longer running"
                };
                notices.push(format!(
                    "replaced a stale lock file left by process {} (`{}`), {state}; \
                     that run did not finish cleanly",
                    old.pid, old.command
                ));
            }
        }
        lock::write_lock(&lock_path, &LockInfo::current())
            .map_err(|e| StoreError::io(format!("writing {}", lock_path.display()), e))?;

        let t = match Trees::open(&db) {
            Ok(t) => t,
            Err(e) => {
                let _ = fs::remove_file(&lock_path);
                return Err(e);
            }
        };
        let mut store = Store {
            root,
            db,
            t,
            notices,
            write: Mutex::new(()),
            session_objects: Mutex::new(HashSet::new()),
            opened: SystemTime::now(),
        };
        // On error the store is dropped here, which removes LOCK.
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&mut self) -> Result<()> {
        match self.t.meta.get(META_SCHEMA)? {
            Some(v) => {
                let s = String::from_utf8_lossy(&v);
                let found: u32 = s.trim().parse().map_err(|_| StoreError::Corrupt {
                    what: "the store's schema version".to_string(),
                    detail: format!("{s:?} is not a number"),
                })?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                if !self.t.tasks.is_empty() {
                    return Err(StoreError::Schema {
                        found: 0,
                        expected: SCHEMA_VERSION,
                    });
                }
                // A new database beside existing objects means the records
                // were lost (db/ deleted, or sled came up empty).
                let orphans = self
                    .object_files()?
                    .iter()
                    .filter(|(_, id, _)| id.is_some())
                    .count();
                if orphans > 0 {
                    self.notices.push(format!(
                        "the store database in {} is new, but objects/ already holds {orphans} \
                         object(s): the records about them were lost, so their tasks will be \
                         rebuilt; `nbbuild cache gc` frees their space",
                        self.root.join("db").display()
                    ));
                }
                self.t
                    .meta
                    .insert(META_SCHEMA, SCHEMA_VERSION.to_string().as_bytes())?;
                self.t
                    .meta
                    .insert(META_CREATED, now_ms().to_string().as_bytes())?;
                self.flush()?;
            }
        }
        Ok(())
    }

    /// The store directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Things `open` did that the user should hear about (corruption
    /// recovery, a stale lock from a run that did not finish).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Make everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Flush, release the lock and close. (Dropping does the same but cannot
    /// report a failed flush.)
    pub fn close(self) -> Result<()> {
        self.flush()
    }

    // ------------------------------------------------------------------
    // objects

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

    fn remember(&self, id: &str) {
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
    fn install(&self, tmp: tempfile::NamedTempFile, id: &str, size: u64) -> Result<()> {
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

    fn check_size(&self, id: &str, path: &Path, len: u64) -> Result<()> {
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

    // ------------------------------------------------------------------
    // task records

    fn decode_task(key: &[u8], v: &[u8]) -> Result<TaskRecord> {
        serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
            what: format!("task record {}", String::from_utf8_lossy(key)),
            detail: e.to_string(),
        })
    }

    pub fn task(&self, key: &str) -> Result<Option<TaskRecord>> {
        match self.t.tasks.get(key.as_bytes())? {
            Some(v) => Ok(Some(Self::decode_task(key.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// Create the record, or update its name and preimage (candidates,
    /// in-flight tasks and history are kept). Flushed when something changed.
    pub fn ensure_task(
        &self,
        key: &str,
        name: &str,
        preimage: &serde_json::Value,
    ) -> Result<TaskRecord> {
        let (rec, changed) = {
            let _g = lock_guard(&self.write);
            self.ensure_task_locked(key, name, preimage)?
        };
        if changed {
            self.flush()?;
        }
        Ok(rec)
    }

    /// [`Store::ensure_task`] for many tasks with a single flush at the end
    /// (planning a whole flow).
    pub fn ensure_tasks<'a, I>(&self, items: I) -> Result<Vec<TaskRecord>>
    where
        I: IntoIterator<Item = (&'a str, &'a str, &'a serde_json::Value)>,
    {
        let mut out = Vec::new();
        let mut any = false;
        {
            let _g = lock_guard(&self.write);
            for (key, name, preimage) in items {
                let (rec, changed) = self.ensure_task_locked(key, name, preimage)?;
                any |= changed;
                out.push(rec);
            }
        }
        if any {
            self.flush()?;
        }
        Ok(out)
    }

    fn ensure_task_locked(
        &self,
        key: &str,
        name: &str,
        preimage: &serde_json::Value,
    ) -> Result<(TaskRecord, bool)> {
        let old = self.task(key)?;
        let (rec, old_name) = match old {
            Some(r) if r.name == name && &r.preimage == preimage => return Ok((r, false)),
            Some(mut r) => {
                let old_name = std::mem::replace(&mut r.name, name.to_string());
                r.preimage = preimage.clone();
                r.updated = now_ms();
                (r, Some(old_name))
            }
            None => {
                let now = now_ms();
                (
                    TaskRecord {
                        name: name.to_string(),
                        preimage: preimage.clone(),
                        created: now,
                        updated: now,
                        ..TaskRecord::default()
                    },
                    None,
                )
            }
        };
        // No transaction needed: the name index is written first and
        // cleaned last, and find_by_name checks every hit against the
        // record, so a crash in between leaves at most a dangling index
        // entry (ignored), never a record its name cannot find.
        self.t
            .task_names
            .insert(pair_key(name, key), &[] as &[u8])?;
        self.t
            .tasks
            .insert(key.as_bytes(), serde_json::to_vec(&rec)?)?;
        if let Some(old) = old_name {
            if old != name {
                self.t.task_names.remove(pair_key(&old, key))?;
            }
        }
        Ok((rec, true))
    }

    /// Read-modify-write of one existing record under the write mutex,
    /// without flushing. `f` may refuse by returning an error (nothing is
    /// written then).
    fn modify_task<R>(&self, key: &str, f: impl FnOnce(&mut TaskRecord) -> Result<R>) -> Result<R> {
        let _g = lock_guard(&self.write);
        let mut rec = self
            .task(key)?
            .ok_or_else(|| StoreError::UnknownTask(key.to_string()))?;
        let r = f(&mut rec)?;
        rec.updated = now_ms();
        self.t
            .tasks
            .insert(key.as_bytes(), serde_json::to_vec(&rec)?)?;
        Ok(r)
    }

    /// Record a G-Labs task id for `slot` (replacing any earlier one for the
    /// slot). Flushed before returning, so poll only after this returns.
    pub fn record_in_flight(&self, key: &str, slot: u32, mut remote: InFlight) -> Result<()> {
        remote.slot = slot;
        if remote.submitted == 0 {
            remote.submitted = now_ms();
        }
        self.modify_task(key, |rec| {
            rec.in_flight.retain(|f| f.slot != slot);
            rec.in_flight.push(remote);
            rec.in_flight.sort_by_key(|f| f.slot);
            rec.submitting.retain(|f| f.slot != slot);
            Ok(())
        })?;
        self.flush()
    }

    /// Record, before a submission is sent, that `slot` is being submitted
    /// (replacing an earlier mark). Flushed: a crash or a lost answer after
    /// this leaves a mark the next attempt resolves before paying again.
    pub fn record_submitting(&self, key: &str, mark: Submitting) -> Result<()> {
        self.modify_task(key, |rec| {
            rec.submitting.retain(|f| f.slot != mark.slot);
            rec.submitting.push(mark);
            rec.submitting.sort_by_key(|f| f.slot);
            Ok(())
        })?;
        self.flush()
    }

    /// The server answered without creating a task (or none was found to
    /// adopt): forget the mark.
    pub fn clear_submitting(&self, key: &str, slot: u32) -> Result<()> {
        let changed = self.modify_task(key, |rec| {
            let before = rec.submitting.len();
            rec.submitting.retain(|f| f.slot != slot);
            Ok(before != rec.submitting.len())
        })?;
        if changed {
            self.flush()?;
        }
        Ok(())
    }

    pub fn clear_in_flight(&self, key: &str, slot: u32) -> Result<()> {
        let changed = self.modify_task(key, |rec| {
            let before = rec.in_flight.len();
            rec.in_flight.retain(|f| f.slot != slot);
            Ok(before != rec.in_flight.len())
        })?;
        if changed {
            self.flush()?;
        }
        Ok(())
    }

    /// Set candidate `cand.slot` and clear that slot's in-flight entry, in
    /// one record write, flushed before returning. The object must already
    /// be in the store ([`StoreError::MissingObject`] otherwise); `size` is
    /// taken from the object file and `created` defaults to now. A replaced
    /// candidate with a different object goes to history (reason
    /// "slot N replaced"), so its bytes stay reachable.
    pub fn commit_candidate(&self, key: &str, cand: Candidate) -> Result<()> {
        self.commit_replacing(key, cand, None)
    }

    /// [`Store::commit_candidate`], with a replaced candidate filed in the
    /// history set named `set` (`None`: a set of its own, "slot N
    /// replaced"). Slots of one re-roll name the same set, and land in it as
    /// each replacement commits: the old candidate stays current until then,
    /// so a failed re-roll loses nothing.
    pub fn commit_replacing(
        &self,
        key: &str,
        mut cand: Candidate,
        set: Option<&str>,
    ) -> Result<()> {
        if !is_object_id(&cand.object) {
            return Err(StoreError::BadObjectId(cand.object));
        }
        if cand.created == 0 {
            cand.created = now_ms();
        }
        self.modify_task(key, |rec| {
            // Checked under the write lock, which gc holds throughout, so
            // the object cannot be collected between this check and the
            // record write.
            let path = self.object_path(&cand.object);
            let meta = match fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => return Err(StoreError::MissingObject(cand.object.clone())),
            };
            self.check_size(&cand.object, &path, meta.len())?;
            cand.size = meta.len();
            self.remember(&cand.object);
            let slot = cand.slot;
            rec.in_flight.retain(|f| f.slot != slot);
            rec.submitting.retain(|f| f.slot != slot);
            // The slot is held again.
            rec.corrupted.retain(|c| c.slot != slot);
            if let Some(i) = rec.candidates.iter().position(|c| c.slot == slot) {
                let old = rec.candidates.remove(i);
                if old.object != cand.object {
                    match (set, rec.history.last_mut()) {
                        (Some(name), Some(last)) if last.reason == name => {
                            last.candidates.push(old);
                            last.candidates.sort_by_key(|c| c.slot);
                        }
                        _ => rec.history.push(HistorySet {
                            replaced: now_ms(),
                            reason: set
                                .map_or_else(|| format!("slot {slot} replaced"), str::to_string),
                            candidates: vec![old],
                        }),
                    }
                }
            }
            rec.candidates.push(cand);
            rec.candidates.sort_by_key(|c| c.slot);
            Ok(())
        })?;
        self.flush()
    }

    /// Update one current candidate in place (QA verdict, url, flags);
    /// flushed. The slot cannot be changed; a changed object must exist.
    pub fn update_candidate(
        &self,
        key: &str,
        slot: u32,
        f: impl FnOnce(&mut Candidate),
    ) -> Result<()> {
        self.modify_task(key, |rec| {
            let c = rec
                .candidates
                .iter_mut()
                .find(|c| c.slot == slot)
                .ok_or_else(|| StoreError::UnknownCandidate {
                    key: key.to_string(),
                    slot,
                })?;
            let old_object = c.object.clone();
            f(c);
            c.slot = slot;
            if c.object != old_object && !self.has_object(&c.object) {
                return Err(StoreError::MissingObject(c.object.clone()));
            }
            Ok(())
        })?;
        self.flush()
    }

    /// Re-roll: move the current candidate set into history (timestamp and
    /// `reason`), leaving no candidates. In-flight entries are kept (they are
    /// uncommitted work, usable by the new set). Flushed.
    pub fn start_reroll(&self, key: &str, reason: &str) -> Result<()> {
        let changed = self.modify_task(key, |rec| {
            if rec.candidates.is_empty() {
                return Ok(false);
            }
            let candidates = std::mem::take(&mut rec.candidates);
            rec.history.push(HistorySet {
                replaced: now_ms(),
                reason: reason.to_string(),
                candidates,
            });
            Ok(true)
        })?;
        if changed {
            self.flush()?;
        }
        Ok(())
    }

    /// Every task record, sorted by key.
    pub fn tasks(&self) -> Result<Vec<(String, TaskRecord)>> {
        self.collect_tasks(self.t.tasks.iter())
    }

    fn collect_tasks(&self, iter: sled::Iter) -> Result<Vec<(String, TaskRecord)>> {
        let mut out = Vec::new();
        for kv in iter {
            let (k, v) = kv?;
            let rec = Self::decode_task(&k, &v)?;
            out.push((String::from_utf8_lossy(&k).into_owned(), rec));
        }
        Ok(out)
    }

    /// Tasks whose recorded name is exactly `name`, sorted by key.
    pub fn find_by_name(&self, name: &str) -> Result<Vec<(String, TaskRecord)>> {
        let mut out = Vec::new();
        for kv in self.t.task_names.scan_prefix(pair_key(name, "")) {
            let (k, _) = kv?;
            let Some((n, key)) = split_pair(&k) else {
                continue;
            };
            if n != name {
                continue;
            }
            if let Some(rec) = self.task(&key)? {
                if rec.name == name {
                    out.push((key, rec));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Tasks whose key starts with `key_prefix`, sorted by key.
    pub fn find_by_prefix(&self, key_prefix: &str) -> Result<Vec<(String, TaskRecord)>> {
        self.collect_tasks(self.t.tasks.scan_prefix(key_prefix.as_bytes()))
    }

    /// Every distinct task name, sorted (for "did you mean" suggestions).
    pub fn task_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for kv in self.t.task_names.iter() {
            let (k, _) = kv?;
            if let Some((n, key)) = split_pair(&k) {
                if names.last() != Some(&n) && self.task(&key)?.is_some_and(|r| r.name == n) {
                    names.push(n);
                }
            }
        }
        Ok(names)
    }

    // ------------------------------------------------------------------
    // side tables

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

    /// Move the record under `old` to `new` with `preimage` (a key-format
    /// migration), in one atomic write, flushed. When `new` already holds a
    /// record (two old keys that now mean the same task), the one with more
    /// candidates stays current and the other's candidates go to its history,
    /// so nothing paid for is lost.
    pub fn rekey_task(&self, old: &str, new: &str, preimage: serde_json::Value) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let _g = lock_guard(&self.write);
        let Some(mut moved) = self.task(old)? else {
            return Ok(());
        };
        moved.preimage = preimage;
        let rec = match self.task(new)? {
            None => moved,
            Some(there) => {
                let (mut keep, other) = if there.candidates.len() >= moved.candidates.len() {
                    (there, moved)
                } else {
                    (moved, there)
                };
                if !other.candidates.is_empty() {
                    keep.history.push(HistorySet {
                        replaced: now_ms(),
                        reason: "merged by a key-format migration".into(),
                        candidates: other.candidates,
                    });
                }
                keep.history.extend(other.history);
                keep.history.sort_by_key(|h| h.replaced);
                for f in other.in_flight {
                    if keep.in_flight_for(f.slot).is_none() {
                        keep.in_flight.push(f);
                    }
                }
                keep.in_flight.sort_by_key(|f| f.slot);
                keep.created = keep.created.min(other.created);
                keep
            }
        };
        let mut batch = sled::Batch::default();
        batch.insert(new.as_bytes(), serde_json::to_vec(&rec)?);
        batch.remove(old.as_bytes());
        self.t.tasks.apply_batch(batch)?;
        drop(_g);
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

    // ------------------------------------------------------------------
    // maintenance

    /// Every file under `objects/`: (path, name-derived id if well formed, size).
    fn object_files(&self) -> Result<Vec<(PathBuf, Option<ObjectId>, u64)>> {
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

    /// Files in `tmp/`, `quarantine/` and interrupted sled snapshots:
    /// (path, kind, is stale).
    fn leftovers(&self) -> Vec<(PathBuf, ProblemKind, bool)> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(self.root.join("tmp")) {
            for e in rd.flatten() {
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|t| t < self.opened)
                    .unwrap_or(true);
                out.push((e.path(), ProblemKind::TmpLeftover, stale));
            }
        }
        if let Ok(rd) = fs::read_dir(self.root.join("quarantine")) {
            for e in rd.flatten() {
                out.push((e.path(), ProblemKind::Quarantined, true));
            }
        }
        // Anything else named *.corrupt-* in the root, and interrupted
        // snapshots in the sled directory (reported, never touched: sled
        // may be writing one right now).
        if let Ok(rd) = fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains(".corrupt-") {
                    out.push((e.path(), ProblemKind::Quarantined, true));
                }
            }
        }
        if let Ok(rd) = fs::read_dir(self.root.join("db")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".generating") || name.contains(".corrupt-") {
                    out.push((e.path(), ProblemKind::Quarantined, false));
                }
            }
        }
        out
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        for (_, rec) in self.tasks()? {
            s.tasks += 1;
            s.candidates += rec.candidates.len() as u64;
            s.history_sets += rec.history.len() as u64;
            s.history_candidates += rec
                .history
                .iter()
                .map(|h| h.candidates.len() as u64)
                .sum::<u64>();
            s.in_flight += rec.in_flight.len() as u64;
        }
        for (_, id, len) in self.object_files()? {
            if id.is_some() {
                s.objects += 1;
                s.object_bytes += len;
            }
        }
        s.verdicts = self.t.verdicts.len() as u64;
        s.uploads = self.t.uploads.len() as u64;
        s.url_objects = self.t.url_objects.len() as u64;
        s.file_hashes = self.t.file_hashes.len() as u64;
        s.pins = self.t.pins.len() as u64;
        s.runs = self.t.runs.len() as u64;
        s.tmp_files = self
            .leftovers()
            .iter()
            .filter(|l| l.1 == ProblemKind::TmpLeftover)
            .count() as u64;
        s.db_bytes = self.db.size_on_disk().unwrap_or(0);
        Ok(s)
    }

    /// Re-hash every object; check that every object a record needs exists;
    /// report leftovers. Never modifies anything.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let mut buf = vec![0u8; COPY_BUF];
        for (path, id, len) in self.object_files()? {
            let Some(id) = id else {
                rep.problems.push(Problem {
                    kind: ProblemKind::StrayFile,
                    what: path.display().to_string(),
                    detail: "not named like an object".to_string(),
                });
                continue;
            };
            if let Err(StoreError::CorruptObject { detail, .. }) = self.check_size(&id, &path, len)
            {
                rep.problems.push(Problem {
                    kind: ProblemKind::CorruptObject,
                    what: id,
                    detail: format!("{detail} ({})", path.display()),
                });
                continue;
            }
            let mut f = match fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    rep.problems.push(Problem {
                        kind: ProblemKind::CorruptObject,
                        what: id,
                        detail: format!("cannot open {}: {e}", path.display()),
                    });
                    continue;
                }
            };
            let mut hasher = blake3::Hasher::new();
            let mut n_read = 0u64;
            let read_err = loop {
                match f.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => {
                        hasher.update(&buf[..n]);
                        n_read += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Some(e),
                }
            };
            rep.objects_checked += 1;
            rep.bytes_checked += n_read;
            if let Some(e) = read_err {
                rep.problems.push(Problem {
                    kind: ProblemKind::CorruptObject,
                    what: id,
                    detail: format!("read error in {}: {e}", path.display()),
                });
                continue;
            }
            let actual = hasher.finalize().to_hex().to_string();
            if actual != id {
                rep.problems.push(Problem {
                    kind: ProblemKind::CorruptObject,
                    what: id,
                    detail: format!("its bytes hash to {actual} ({})", path.display()),
                });
            }
        }

        // Name the tasks that hold each corrupt object.
        if rep
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::CorruptObject)
        {
            let tasks = self.tasks()?;
            for p in rep
                .problems
                .iter_mut()
                .filter(|p| p.kind == ProblemKind::CorruptObject)
            {
                let mut held = Vec::new();
                for (key, rec) in &tasks {
                    for c in rec.candidates.iter().filter(|c| c.object == p.what) {
                        held.push(format!(
                            "current candidate c{} of {} (task {key})",
                            c.slot + 1,
                            rec.name
                        ));
                    }
                    for c in rec.history.iter().flat_map(|h| h.candidates.iter()) {
                        if c.object == p.what {
                            held.push(format!(
                                "a replaced candidate c{} of {} (task {key})",
                                c.slot + 1,
                                rec.name
                            ));
                        }
                    }
                }
                if !held.is_empty() {
                    p.detail = format!("{}; it is {}", p.detail, held.join(", "));
                }
            }
        }

        // records -> objects
        for kv in self.t.tasks.iter() {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let rec = match serde_json::from_slice::<TaskRecord>(&v) {
                Ok(r) => r,
                Err(e) => {
                    rep.problems.push(Problem {
                        kind: ProblemKind::BadRecord,
                        what: format!("task {key}"),
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            for c in &rec.candidates {
                if !self.has_object(&c.object) {
                    rep.problems.push(Problem {
                        kind: ProblemKind::MissingObject,
                        what: c.object.clone(),
                        detail: format!(
                            "current candidate {} of task {key} ({}) has no object file",
                            c.slot, rec.name
                        ),
                    });
                }
            }
            for c in &rec.corrupted {
                rep.problems.push(Problem {
                    kind: ProblemKind::CorruptCandidate,
                    what: c.object.clone(),
                    detail: format!(
                        "candidate c{} of task {key} ({}) was taken out of its slot: its object \
                         was corrupt ({}){} and no good copy was found; the next build \
                         regenerates it",
                        c.slot + 1,
                        rec.name,
                        c.detail,
                        c.quarantined
                            .as_deref()
                            .map(|q| format!(" (kept at {q})"))
                            .unwrap_or_default()
                    ),
                });
            }
            for (i, h) in rec.history.iter().enumerate() {
                for c in &h.candidates {
                    if !self.has_object(&c.object) {
                        rep.problems.push(Problem {
                            kind: ProblemKind::MissingObject,
                            what: c.object.clone(),
                            detail: format!(
                                "candidate {} of history set {i} of task {key} ({}) has no \
                                 object file",
                                c.slot, rec.name
                            ),
                        });
                    }
                }
            }
        }
        for kv in self.t.url_objects.iter() {
            let (k, v) = kv?;
            let id = String::from_utf8_lossy(&v).into_owned();
            if !self.has_object(&id) {
                rep.problems.push(Problem {
                    kind: ProblemKind::MissingObject,
                    what: id,
                    detail: format!(
                        "downloaded copy of {} has no object file",
                        String::from_utf8_lossy(&k)
                    ),
                });
            }
        }
        for pin in self.pins()? {
            if !self.has_object(&pin.object) {
                rep.problems.push(Problem {
                    kind: ProblemKind::MissingObject,
                    what: pin.object.clone(),
                    detail: format!("pinned ({}) but has no object file", pin.why),
                });
            }
        }
        for tree in [&self.t.verdicts, &self.t.runs] {
            for kv in tree.iter() {
                let (k, v) = kv?;
                if serde_json::from_slice::<serde_json::Value>(&v).is_err() {
                    rep.problems.push(Problem {
                        kind: ProblemKind::BadRecord,
                        what: String::from_utf8_lossy(&k).replace('\0', "/"),
                        detail: "not valid JSON".to_string(),
                    });
                }
            }
        }

        for (path, kind, _) in self.leftovers() {
            let detail = match kind {
                ProblemKind::TmpLeftover => {
                    "temporary file left by an interrupted write (gc removes it)"
                }
                _ if path.extension().is_some_and(|e| e == "generating") => {
                    "interrupted sled snapshot (sled discards or replaces it)"
                }
                _ => "set aside by corruption recovery (gc removes it)",
            };
            rep.problems.push(Problem {
                kind,
                what: path.display().to_string(),
                detail: detail.to_string(),
            });
        }
        Ok(rep)
    }

    /// Garbage collection; see docs/store.md for the rules. With `dry_run`
    /// nothing is changed and the report says what would be.
    pub fn gc(&self, keep_history: usize, dry_run: bool) -> Result<GcReport> {
        let mut rep = GcReport {
            dry_run,
            ..GcReport::default()
        };
        // Hold the write lock throughout so no record changes under us.
        let _g = lock_guard(&self.write);

        let mut referenced: HashSet<String> = HashSet::new();
        let mut trimmed: BTreeMap<String, TaskRecord> = BTreeMap::new();
        for (key, mut rec) in self.tasks()? {
            if rec.history.len() > keep_history {
                let drop_n = rec.history.len() - keep_history;
                rec.history.drain(..drop_n);
                rep.history_sets_removed += drop_n as u64;
                trimmed.insert(key.clone(), rec.clone());
            }
            referenced.extend(rec.objects().map(str::to_string));
        }
        for kv in self.t.url_objects.iter() {
            let (_, v) = kv?;
            referenced.insert(String::from_utf8_lossy(&v).into_owned());
        }
        for kv in self.t.file_hashes.iter() {
            let (_, v) = kv?;
            if let Ok(e) = serde_json::from_slice::<FileHashEntry>(&v) {
                referenced.insert(e.hash);
            }
        }
        for kv in self.t.pins.iter() {
            let (k, _) = kv?;
            if let Some((o, _)) = split_pair(&k) {
                referenced.insert(o);
            }
        }
        referenced.extend(lock_guard(&self.session_objects).iter().cloned());

        // Records first: if we crash midway, an object may survive one more
        // gc, but no kept record ever points at a removed object.
        if !dry_run {
            for (key, rec) in &trimmed {
                let mut rec = rec.clone();
                rec.updated = now_ms();
                self.t
                    .tasks
                    .insert(key.as_bytes(), serde_json::to_vec(&rec)?)?;
            }
            if !trimmed.is_empty() {
                self.flush()?;
            }
        }

        let mut touched_dirs = HashSet::new();
        for (path, id, len) in self.object_files()? {
            let Some(id) = id else { continue };
            if referenced.contains(&id) {
                continue;
            }
            rep.objects_removed += 1;
            rep.bytes_freed += len;
            if !dry_run {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StoreError::io(format!("removing {}", path.display()), e))
                    }
                }
                self.t.objects.remove(id.as_bytes())?;
                if let Some(p) = path.parent() {
                    touched_dirs.insert(p.to_path_buf());
                }
            }
        }
        for d in touched_dirs {
            // Remove fan-out directories that became empty (fails if not).
            if fs::remove_dir(&d).is_err() {
                let _ = fsync_dir(&d);
            }
        }

        for (path, kind, stale) in self.leftovers() {
            let removable = stale
                && (kind == ProblemKind::TmpLeftover
                    || path.starts_with(self.root.join("quarantine")));
            if removable {
                rep.leftovers_removed += 1;
                if !dry_run {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        if !dry_run {
            self.flush()?;
        }
        Ok(rep)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.db.flush();
        // We still hold sled's lock, so nobody else can have rewritten LOCK;
        // still, only remove it if it names us.
        let lock_path = self.root.join("LOCK");
        if lock::read_lock(&lock_path).is_some_and(|i| i.pid == std::process::id()) {
            let _ = fs::remove_file(&lock_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Store>();
    }

    #[test]
    fn empty_object_constant() {
        assert_eq!(hash_bytes(b""), EMPTY_OBJECT);
    }

    #[test]
    fn pair_keys_split() {
        assert_eq!(
            split_pair(&pair_key("a\0b", "c")),
            Some(("a\0b".to_string(), "c".to_string()))
        );
    }
}
