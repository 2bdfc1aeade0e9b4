//! Verified hand-on and repair. Every object the engine hands on (copied to
//! `Assets/`, uploaded, sent to the generator) goes through a read that
//! hashes it with blake3 while it streams and refuses it on a mismatch,
//! before anything reaches the destination. A rotten object can be put back
//! from an identical copy (checked by hash as it is copied in), the rotten
//! file kept under `quarantine/`; with no good copy, the candidates holding
//! it are taken out of their slots, so their tasks show stale.
//!
//! The store knows no layout of `Assets/` nor any mirror: the caller finds
//! the copies (see `src/repair.rs` of the engine) and hands them to
//! [`Store::restore_object`].

use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::hash::{hash_reader, is_object_id};
use crate::store::{lock_guard, now_ms, pair_key, split_pair};
use crate::{Corrupted, ObjectId, ObjectStore, Result, Store, StoreError, TaskRecord};

/// A task record's candidate that holds an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub key: String,
    /// The task's name (`scene01`).
    pub name: String,
    /// `image` or `video`, from the preimage (empty if unknown).
    pub kind: String,
    /// 0-based
    pub slot: u32,
    /// A current candidate (else one in a history set).
    pub current: bool,
    /// Flagged by QA (so a copy may sit under `qa_loop/`).
    pub flagged: bool,
    pub qa_attempts: u32,
}

/// What [`Store::restore_object`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The copy hashed to the object's id and is in place; the file it
    /// replaced (if there was one) was moved here.
    Restored { quarantined: Option<PathBuf> },
    /// The copy is not the object: nothing was changed.
    Mismatch { actual: ObjectId, size: u64 },
}

fn holders_of(key: &str, rec: &TaskRecord, id: &str, out: &mut Vec<Holder>) {
    let kind = rec
        .preimage
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let current = rec.candidates.iter().map(|c| (c, true));
    let history = rec
        .history
        .iter()
        .flat_map(|h| h.candidates.iter())
        .map(|c| (c, false));
    for (c, current) in current.chain(history) {
        if c.object == id {
            out.push(Holder {
                key: key.to_string(),
                name: rec.name.clone(),
                kind: kind.clone(),
                slot: c.slot,
                current,
                flagged: c
                    .qa
                    .as_ref()
                    .is_some_and(|v| v.verdict == crate::Outcome::Flagged),
                qa_attempts: c.qa_attempts,
            });
        }
    }
}

impl Store {
    /// Stream object `id` into `out`, hashing it as it goes. `Ok(size)` only
    /// when the bytes hash to `id` (and the size is the recorded one);
    /// otherwise [`StoreError::CorruptObject`], and whatever reached `out`
    /// must be thrown away: write to a temporary and rename only on `Ok`
    /// ([`Store::copy_object_to`] does that for files).
    pub fn copy_object(&self, id: &str, out: &mut dyn Write) -> Result<u64> {
        self.objects.get(id, out)
    }

    /// Copy object `id` to the file `dest`: into a temporary file beside it,
    /// whose bytes are then hashed; given the mtime `modified` (if any) and
    /// mode 0644, synced, and renamed onto `dest` only when they hash to
    /// `id`. On any error `dest` is untouched and the temporary file is gone.
    ///
    /// The copy itself is the kernel's (`io::copy`: copy_file_range, or a
    /// reflink where the file system makes one) and the hash is taken of the
    /// copy, read back from the page cache, while another thread fsyncs it:
    /// so what is checked is exactly what lands at `dest`, no link or reflink
    /// bypasses the check, and the hash hides behind the fsync (a 1 GiB copy
    /// measured the same with and without it; hashing in a user-space copy
    /// loop instead was 2x slower: `examples/verify_bench.rs`,
    /// docs/performance.md).
    pub fn copy_object_to(
        &self,
        id: &str,
        dest: &Path,
        modified: Option<SystemTime>,
    ) -> Result<u64> {
        let (mut src, len) = self.objects.open(id)?;
        let path = self.objects.path(id);
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".nbbuild-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| {
                StoreError::io(format!("creating a temporary file in {}", dir.display()), e)
            })?;
        let writing = |e| StoreError::io(format!("writing {}", dest.display()), e);
        let copied = io::copy(&mut src, tmp.as_file_mut()).map_err(writing)?;
        let corrupt = |detail: String| StoreError::CorruptObject {
            id: id.to_string(),
            path: path.clone(),
            detail,
        };
        if copied != len {
            return Err(corrupt(format!(
                "it changed size while being read ({len} -> {copied} bytes)"
            )));
        }
        if let Some(t) = modified {
            tmp.as_file().set_modified(t).map_err(writing)?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(writing)?;
        }
        // The fsync (disk-bound) runs beside the hash (CPU-bound): the
        // rename waits for both.
        let syncing = tmp.as_file().try_clone().map_err(writing)?;
        let f = tmp.as_file_mut();
        let (hashed, synced) = std::thread::scope(|scope| {
            let sync = scope.spawn(move || syncing.sync_all());
            let hashed = f
                .seek(SeekFrom::Start(0))
                .and_then(|_| hash_reader(f))
                .map(|(id, _)| id);
            let synced = sync
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the fsync thread panicked")));
            (hashed, synced)
        });
        let actual = hashed.map_err(writing)?;
        if actual != id {
            return Err(corrupt(format!("its bytes hash to {actual}")));
        }
        synced.map_err(writing)?;
        tmp.persist(dest).map_err(|e| writing(e.error))?;
        Ok(len)
    }

    /// Re-hash one object without copying it: `Ok(size)` when intact.
    pub fn check_object(&self, id: &str) -> Result<u64> {
        self.objects.check(id)
    }

    /// Put a good copy of object `id` back from the file `from`: it is
    /// hashed as it is copied into `tmp/`, and only when it hashes to `id`
    /// is the current object file (if any) moved to `quarantine/` and the
    /// copy installed in its place (atomically: a reader sees the old file
    /// or the new one, never none). Durable when this returns.
    pub fn restore_object(&self, id: &str, from: &Path) -> Result<Restore> {
        if !is_object_id(id) {
            return Err(StoreError::BadObjectId(id.to_string()));
        }
        let (tmp, actual, size) = self.objects.copy_to_tmp(from)?;
        if actual != id {
            return Ok(Restore::Mismatch { actual, size });
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io(format!("writing {}", tmp.path().display()), e))?;
        let quarantined = self.objects.quarantine_copy(id)?;
        self.objects.remember(id);
        self.objects.install(tmp, id, size)?;
        self.flush()?;
        Ok(Restore::Restored { quarantined })
    }

    /// Move the file of object `id` out of `objects/` into `quarantine/`
    /// (not deleted: it can be inspected; `gc` removes it later). `None`
    /// when there was no file.
    pub fn quarantine_object(&self, id: &str) -> Result<Option<PathBuf>> {
        if !is_object_id(id) {
            return Err(StoreError::BadObjectId(id.to_string()));
        }
        let to = self.objects.quarantine(id)?;
        if to.is_some() {
            self.flush()?;
        }
        Ok(to)
    }

    /// Every candidate (current or in history) of every task that holds
    /// object `id`, by task key. Scans all records: for the rare repair path.
    pub fn holders(&self, id: &str) -> Result<Vec<Holder>> {
        let mut out = Vec::new();
        for (key, rec) in self.tasks()? {
            holders_of(&key, &rec, id, &mut out);
        }
        Ok(out)
    }

    /// The (mirror id, public URL) pairs object `id` was uploaded to.
    pub fn uploads_of(&self, id: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for kv in self.t.uploads.scan_prefix(pair_key(id, "")) {
            let (k, v) = kv?;
            if let Some((o, mirror)) = split_pair(&k) {
                if o == id {
                    out.push((mirror, String::from_utf8_lossy(&v).into_owned()));
                }
            }
        }
        Ok(out)
    }

    /// The http(s) URLs whose download is object `id` (`url_objects`).
    pub fn urls_of(&self, id: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for kv in self.t.url_objects.iter() {
            let (k, v) = kv?;
            if v.as_ref() == id.as_bytes() {
                out.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        Ok(out)
    }

    /// Object `id` is corrupt and no good copy exists: take every current
    /// candidate holding it out of its slot (recorded in the task's
    /// `corrupted` list with `detail` and where the file was `quarantined`,
    /// so the plan shows the task stale for that slot), drop it from history
    /// sets, and forget the URLs that were downloaded into it (so they are
    /// fetched again). Returns the current candidates taken out. Flushed.
    pub fn forget_corrupt(
        &self,
        id: &str,
        detail: &str,
        quarantined: Option<&Path>,
    ) -> Result<Vec<Holder>> {
        let mut taken = Vec::new();
        {
            let _g = lock_guard(&self.write);
            for (key, mut rec) in self.tasks()? {
                let mut found = Vec::new();
                holders_of(&key, &rec, id, &mut found);
                if found.is_empty() {
                    continue;
                }
                for h in found.iter().filter(|h| h.current) {
                    rec.corrupted.retain(|c| c.slot != h.slot);
                    rec.corrupted.push(Corrupted {
                        slot: h.slot,
                        object: id.to_string(),
                        detail: detail.to_string(),
                        quarantined: quarantined.map(|p| p.display().to_string()),
                        at: now_ms(),
                    });
                }
                rec.corrupted.sort_by_key(|c| c.slot);
                rec.candidates.retain(|c| c.object != id);
                for h in &mut rec.history {
                    h.candidates.retain(|c| c.object != id);
                }
                rec.history.retain(|h| !h.candidates.is_empty());
                rec.updated = now_ms();
                self.t
                    .tasks
                    .insert(key.as_bytes(), serde_json::to_vec(&rec)?)?;
                taken.extend(found.into_iter().filter(|h| h.current));
            }
            for url in self.urls_of(id)? {
                self.t.url_objects.remove(url.as_bytes())?;
            }
        }
        self.flush()?;
        Ok(taken)
    }
}
