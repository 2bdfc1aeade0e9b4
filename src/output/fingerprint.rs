//! The no-op skip (issue 11.7): a build whose outputs would come out exactly
//! as the last build left them does not write them again.
//!
//! The fingerprint hashes everything the output step reads: the flow file's
//! bytes, where outputs go, every task's outcome (state, key, current
//! candidates with their verdicts and URLs, failures), the earlier takes
//! its record lists, and the published URLs. It is kept in the store's meta
//! table per output folder, with what was written and a cheap picture of
//! the output folders as the step left them (each folder's mtime and the
//! generated flow's size and mtime). A later build that computes the same
//! fingerprint and finds the folders unchanged reuses what was written.
//! Deleting or adding a file in an output folder changes that folder's
//! mtime, so the step runs again and puts missing assets back.

use super::{Layout, Urls, Written};
use crate::compile::Compiled;
use crate::exec::RunReport;
use nbbuild_cache::{Candidate, Store, TaskRecord};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the meta table keeps for one output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Last {
    fingerprint: String,
    flow: Option<PathBuf>,
    errors: Option<PathBuf>,
    assets: usize,
    qa_files: usize,
    folders: Vec<(PathBuf, Option<i128>)>,
    flow_stamp: Option<(u64, i128)>,
}

/// The fingerprint of the outputs a build would write. `flow_hash` is the
/// hash of the flow text this build parsed (`Project::source_hash`), not of
/// the file now: an edit saved during the build must not pass for what the
/// outputs were written from. `record` gives each task's stored record (for
/// its earlier takes and QA attempts).
pub fn of<'a>(
    flow_hash: &str,
    compiled: &Compiled,
    report: &RunReport,
    layout: &Layout,
    urls: &Urls,
    record: &dyn Fn(usize) -> Option<&'a TaskRecord>,
) -> String {
    let mut h = Feed(blake3::Hasher::new());
    h.str("nbbuild outputs v1");
    h.str(flow_hash);
    h.str(&layout.out.to_string_lossy());
    h.str(&layout.wf);
    h.str(&layout.ver);
    for map in [&urls.objects, &urls.refs] {
        h.num(map.len() as u64);
        for (k, v) in map {
            h.str(k);
            h.str(v);
        }
    }
    h.opt(urls.ref_image.as_deref());
    for t in &compiled.tasks {
        let o = &report.outcomes[t.index];
        h.str(&t.label());
        h.str(t.kind.as_str());
        h.num(t.params.candidates as u64);
        h.str(o.state.as_str());
        h.opt(o.key.as_deref());
        h.num(o.candidates.len() as u64);
        for c in &o.candidates {
            h.candidate(c);
        }
        h.num(o.failures.len() as u64);
        for f in &o.failures {
            h.num(f.candidate.map_or(u64::MAX, u64::from));
            h.str(f.kind.as_str());
            h.str(&f.message);
        }
        match o.key.as_ref().and(record(t.index)) {
            Some(rec) => {
                // What the gallery and qa_loop/ draw from.
                h.num(rec.candidates.len() as u64);
                for c in &rec.candidates {
                    h.candidate(c);
                }
                h.num(rec.history.len() as u64);
                for c in rec.history.iter().flat_map(|s| s.candidates.iter()) {
                    h.candidate(c);
                }
            }
            None => h.str("no record"),
        }
    }
    h.0.finalize().to_hex().to_string()
}

/// Length-prefixed fields, so no two different inputs hash alike.
struct Feed(blake3::Hasher);

impl Feed {
    fn num(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.num(s.len() as u64);
        self.0.update(s.as_bytes());
    }
    fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.num(1);
                self.str(s);
            }
            None => self.num(0),
        }
    }
    fn candidate(&mut self, c: &Candidate) {
        self.num(c.slot as u64);
        self.str(&c.object);
        self.num(c.size);
        self.num(c.created);
        self.num(c.qa_attempts as u64);
        self.opt(c.url.as_deref());
        self.opt(c.qa.as_ref().map(|v| v.verdict.as_str()));
        self.opt(c.qa.as_ref().map(|v| v.reviewer.as_str()));
    }
}

fn meta_name(layout: &Layout) -> String {
    format!("outputs:{}", layout.out.display())
}

fn folders(layout: &Layout) -> Vec<PathBuf> {
    let assets = layout.out.join("Assets").join(&layout.wf);
    vec![
        assets.join("generated-images").join(&layout.ver),
        assets.join("generated-videos").join(&layout.ver),
        assets.join("qa_loop").join(&layout.ver),
        layout.generations(),
    ]
}

fn mtime_ns(p: &Path) -> Option<i128> {
    let m = std::fs::metadata(p).ok()?.modified().ok()?;
    let d = m.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_nanos() as i128)
}

/// A file's size and mtime (ns): the cheap picture of it that a later look
/// compares (also the up-to-date stamp's, uptodate.rs).
pub(crate) fn stamp(p: &Path) -> Option<(u64, i128)> {
    let meta = std::fs::metadata(p).ok()?;
    Some((meta.len(), mtime_ns(p)?))
}

fn picture(layout: &Layout, fingerprint: &str, w: &Written) -> Last {
    Last {
        fingerprint: fingerprint.to_string(),
        flow: w.flow.clone(),
        errors: w.errors.clone(),
        assets: w.assets,
        qa_files: w.qa_files,
        folders: folders(layout)
            .into_iter()
            .map(|f| {
                let t = mtime_ns(&f);
                (f, t)
            })
            .collect(),
        flow_stamp: w.flow.as_deref().and_then(stamp),
    }
}

/// What the last build wrote, when its outputs would come out the same
/// and nothing in the output folders changed since.
pub fn unchanged(store: &Store, layout: &Layout, fingerprint: &str) -> Option<Written> {
    let text = store.meta(&meta_name(layout)).ok()??;
    let last: Last = serde_json::from_str(&text).ok()?;
    if last.fingerprint != fingerprint {
        return None;
    }
    let now = Written {
        flow: last.flow.clone(),
        errors: last.errors.clone(),
        assets: last.assets,
        qa_files: last.qa_files,
    };
    (picture(layout, fingerprint, &now) == last).then_some(now)
}

/// Whether the output folders are as the last build left them (the
/// up-to-date stamp's check: what it printed names those outputs).
pub fn as_left(store: &Store, layout: &Layout) -> bool {
    let Some(text) = store.meta(&meta_name(layout)).ok().flatten() else {
        return false;
    };
    let Ok(last) = serde_json::from_str::<Last>(&text) else {
        return false;
    };
    unchanged(store, layout, &last.fingerprint).is_some()
}

/// Remember what this build wrote (best effort: without it the next no-op
/// build just writes again).
pub fn remember(store: &Store, layout: &Layout, fingerprint: &str, w: &Written) {
    if let Ok(text) = serde_json::to_string(&picture(layout, fingerprint, w)) {
        let _ = store.put_meta(&meta_name(layout), &text);
    }
}
