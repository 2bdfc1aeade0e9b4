//! Looking without touching: counts for `cache stats`, the full `verify`
//! (every object re-hashed, every reference checked), and the leftover
//! files both report.

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::hash::COPY_BUF;
use crate::{Problem, ProblemKind, Result, Stats, Store, StoreError, TaskRecord, VerifyReport};

impl Store {
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
        for (_, id, len) in self.objects.files()? {
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
        for (path, id, len) in self.objects.files()? {
            let Some(id) = id else {
                rep.problems.push(Problem {
                    kind: ProblemKind::StrayFile,
                    what: path.display().to_string(),
                    detail: "not named like an object".to_string(),
                });
                continue;
            };
            if let Err(StoreError::CorruptObject { detail, .. }) =
                self.objects.check_size(&id, &path, len)
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

    /// Files in `tmp/`, `quarantine/` and interrupted sled snapshots:
    /// (path, kind, is stale).
    pub(crate) fn leftovers(&self) -> Vec<(PathBuf, ProblemKind, bool)> {
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
}
