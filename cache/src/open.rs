//! Opening the store: the directories, sled's exclusive lock (and the
//! `LOCK` file that names its holder), recovery from an interrupted sled
//! snapshot, and the schema check that stamps a new database.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::lock::{self, pid_alive, LockInfo};
use crate::store::{fsync_dir, now_ms, now_secs, Trees};
use crate::{LocalObjects, ObjectStore, Result, Store, StoreError};

/// Version of the record layout. Stored in the `meta` tree; a store with any
/// other version is refused with [`StoreError::Schema`].
pub const SCHEMA_VERSION: u32 = 1;

const META_SCHEMA: &[u8] = b"schema_version";
const META_CREATED: &[u8] = b"created";

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
            Ok(opened) => opened,
            Err(e) => {
                let _ = fs::remove_file(&lock_path);
                return Err(e);
            }
        };
        let objects = LocalObjects::new(&root, t.sizes.clone());
        let mut store = Store {
            root,
            db,
            t,
            notices,
            write: Mutex::new(()),
            objects,
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
                let orphans = self.objects.list()?.len();
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
}
