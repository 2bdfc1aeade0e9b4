//! The store's generation, and memos that hold until the store next changes.
//!
//! A memo is a value a caller keeps in the store that is valid exactly as
//! long as nothing else in the store is written: the no-op build's stamp
//! (issue 11.7) says "with these inputs and this store, the build had
//! nothing to do", which stays true until a record changes.
//!
//! Every tree the store writes is a [`Table`], and the compiler sees to it
//! that no write goes around one: a table's write first makes sure the
//! generation moved on since the last memo was taken (one extra meta write
//! per burst of writes: the generation is a fresh `generate_id`, never
//! handed out twice, not even across a crash), then writes. sled applies a
//! tree's writes in order, so a write that survives a crash has its new
//! generation with it. Another process writing the store moves the
//! generation the same way, because it writes through the same tables.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::store::lock_guard;
use crate::{Result, Store};

const META_GENERATION: &str = "generation";
const MEMO_PREFIX: &str = "memo:";

/// What the tables of one store share: the raw meta tree the generation
/// and memos live in, and whether the generation moved since the last memo.
pub(crate) struct Changes {
    db: sled::Db,
    meta: sled::Tree,
    /// True: the stored generation was written after the last memo was
    /// taken (by this handle), so writes need not move it again.
    moved: AtomicBool,
    /// One writer of a new generation at a time.
    moving: Mutex<()>,
    /// Writes hold it shared; taking a memo holds it alone, so no write can
    /// slip in between reading the generation and storing the memo.
    memo: RwLock<()>,
}

impl Changes {
    pub(crate) fn new(db: &sled::Db, meta: &sled::Tree) -> Arc<Changes> {
        Arc::new(Changes {
            db: db.clone(),
            meta: meta.clone(),
            moved: AtomicBool::new(false),
            moving: Mutex::new(()),
            memo: RwLock::new(()),
        })
    }

    /// Run a write, the generation moved first.
    fn write<T>(&self, f: impl FnOnce() -> sled::Result<T>) -> sled::Result<T> {
        let _shared = self.memo.read().unwrap_or_else(|p| p.into_inner());
        if !self.moved.load(Ordering::SeqCst) {
            let _one = lock_guard(&self.moving);
            if !self.moved.load(Ordering::SeqCst) {
                let next = self.db.generate_id()?;
                self.meta.insert(META_GENERATION, &next.to_be_bytes())?;
                self.moved.store(true, Ordering::SeqCst);
            }
        }
        f()
    }

    fn generation(&self) -> sled::Result<u64> {
        Ok(self
            .meta
            .get(META_GENERATION)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }
}

/// A sled tree whose every write moves the store's generation first. Reads
/// go straight through.
#[derive(Clone)]
pub(crate) struct Table {
    tree: sled::Tree,
    changes: Arc<Changes>,
}

impl Table {
    pub(crate) fn new(tree: sled::Tree, changes: &Arc<Changes>) -> Table {
        Table {
            tree,
            changes: changes.clone(),
        }
    }

    pub(crate) fn insert<K, V>(&self, key: K, value: V) -> sled::Result<Option<sled::IVec>>
    where
        K: AsRef<[u8]>,
        V: Into<sled::IVec>,
    {
        self.changes.write(|| self.tree.insert(key, value))
    }

    pub(crate) fn remove<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<sled::IVec>> {
        self.changes.write(|| self.tree.remove(key))
    }

    pub(crate) fn apply_batch(&self, batch: sled::Batch) -> sled::Result<()> {
        self.changes.write(|| self.tree.apply_batch(batch))
    }

    pub(crate) fn get<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<sled::IVec>> {
        self.tree.get(key)
    }

    pub(crate) fn iter(&self) -> sled::Iter {
        self.tree.iter()
    }

    pub(crate) fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> sled::Iter {
        self.tree.scan_prefix(prefix)
    }

    pub(crate) fn len(&self) -> usize {
        self.tree.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

impl Store {
    /// The store's generation: it changes whenever anything in the store is
    /// written, by this handle or any other.
    pub fn generation(&self) -> Result<u64> {
        Ok(self.t.changes.generation()?)
    }

    /// Keep `value` under `name` until the store is next written: after any
    /// write (a record, a verdict, a pin, an upload, a run logged, anything
    /// but another memo), [`Store::memo`] no longer returns it.
    pub fn put_memo(&self, name: &str, value: &[u8]) -> Result<()> {
        let c = &self.t.changes;
        let _alone = c.memo.write().unwrap_or_else(|p| p.into_inner());
        let mut v = c.generation()?.to_be_bytes().to_vec();
        v.extend_from_slice(value);
        c.meta.insert(format!("{MEMO_PREFIX}{name}"), v)?;
        // The next write moves the generation past this memo.
        c.moved.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// The memo kept under `name`, if nothing was written since.
    pub fn memo(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let c = &self.t.changes;
        let _shared = c.memo.read().unwrap_or_else(|p| p.into_inner());
        let Some(v) = c.meta.get(format!("{MEMO_PREFIX}{name}"))? else {
            return Ok(None);
        };
        let Some((at, value)) = v.split_first_chunk::<8>() else {
            return Ok(None);
        };
        Ok((u64::from_be_bytes(*at) == c.generation()?).then(|| value.to_vec()))
    }
}
