//! The store handle: one sled database for records, one directory of
//! objects. The methods live in the rooms named in the crate doc; this file
//! holds what they share: the trees, flush/close/drop, and the plumbing
//! (clock, directory fsync, the write mutex, two-part sled keys).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::generation::{Changes, Table};
use crate::{lock, LocalObjects, Result, StoreError};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("syncing directory {}", dir.display()), e))
}

pub(crate) fn lock_guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

pub(crate) fn split_pair(k: &[u8]) -> Option<(String, String)> {
    let i = k.iter().rposition(|&b| b == 0)?;
    Some((
        String::from_utf8_lossy(&k[..i]).into_owned(),
        String::from_utf8_lossy(&k[i + 1..]).into_owned(),
    ))
}

/// The trees of the sled database; see docs/store.md. (The `objects` tree
/// of object sizes belongs to [`LocalObjects`].)
/// Each is a [`Table`]: its writes move the store's generation.
pub(crate) struct Trees {
    pub(crate) meta: Table,
    pub(crate) tasks: Table,
    pub(crate) task_names: Table,
    pub(crate) verdicts: Table,
    pub(crate) uploads: Table,
    pub(crate) url_objects: Table,
    /// URL nbbuild published -> the object it published there (not a
    /// reference that keeps the object alive: the mirror holds a copy).
    pub(crate) published: Table,
    pub(crate) file_hashes: Table,
    pub(crate) pins: Table,
    pub(crate) runs: Table,
    /// The `objects` tree of sizes, handed to [`LocalObjects`].
    pub(crate) sizes: Table,
    pub(crate) changes: Arc<Changes>,
}

impl Trees {
    pub(crate) fn open(db: &sled::Db) -> Result<Trees> {
        let meta = db.open_tree("meta")?;
        let changes = Changes::new(db, &meta);
        let table = |name: &str| -> Result<Table> { Ok(Table::new(db.open_tree(name)?, &changes)) };
        Ok(Trees {
            meta: Table::new(meta.clone(), &changes),
            tasks: table("tasks")?,
            task_names: table("task_names")?,
            verdicts: table("verdicts")?,
            uploads: table("uploads")?,
            url_objects: table("url_objects")?,
            published: table("published")?,
            file_hashes: table("file_hashes")?,
            pins: table("pins")?,
            runs: table("runs")?,
            sizes: table("objects")?,
            changes: changes.clone(),
        })
    }
}

/// The store: one sled database for records, one directory of objects.
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) db: sled::Db,
    pub(crate) t: Trees,
    pub(crate) notices: Vec<String>,
    /// Serializes read-modify-write of records within this process.
    pub(crate) write: Mutex<()>,
    /// `objects/`, `tmp/`, `quarantine/` and the `objects` tree.
    pub(crate) objects: LocalObjects,
    /// When this handle opened the store: tmp files older than this are stale.
    pub(crate) opened: SystemTime,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

impl Store {
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
    fn pair_keys_split() {
        assert_eq!(
            split_pair(&pair_key("a\0b", "c")),
            Some(("a\0b".to_string(), "c".to_string()))
        );
    }
}
