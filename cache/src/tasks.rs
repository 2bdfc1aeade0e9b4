//! Task records: one per task key, holding the current candidates, the
//! in-flight and submitting marks, and the history of replaced candidate
//! sets; plus the `task_names` index and key-format re-keying.

use std::fs;

use crate::hash::is_object_id;
use crate::store::{lock_guard, now_ms, pair_key, split_pair};
use crate::{Candidate, HistorySet, InFlight, Result, Store, StoreError, Submitting, TaskRecord};

impl Store {
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
            let path = self.objects.path(&cand.object);
            let meta = match fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => return Err(StoreError::MissingObject(cand.object.clone())),
            };
            self.objects.check_size(&cand.object, &path, meta.len())?;
            cand.size = meta.len();
            self.objects.remember(&cand.object);
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
}
