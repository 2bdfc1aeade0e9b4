//! Garbage collection: trim history, then remove every object no record,
//! URL download, file hash, pin or this session refers to, and stale
//! leftovers. The rules are in docs/store.md.

use std::collections::{BTreeMap, HashSet};
use std::fs;

use crate::store::{lock_guard, now_ms, split_pair};
use crate::tables::FileHashEntry;
use crate::{GcReport, LocalObjects, ProblemKind, Result, Store, TaskRecord};

impl Store {
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
        referenced.extend(self.objects.session());

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
        for (_, id, len) in self.objects.files()? {
            let Some(id) = id else { continue };
            if referenced.contains(&id) {
                continue;
            }
            rep.objects_removed += 1;
            rep.bytes_freed += len;
            if !dry_run {
                touched_dirs.insert(self.objects.remove(&id)?);
            }
        }
        for d in touched_dirs {
            // Remove fan-out directories that became empty (fails if not).
            LocalObjects::tidy_dir(&d);
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
