//! `nbbuild plan`: what a build would run, why, and what it would cost.
//! Calls nothing; never writes the store.

use super::settings::Settings;
use crate::cli::BuildArgs;
use crate::compile::{Compiled, TaskKind};
use crate::error::{Error, Result};
use crate::holder::{StoreRead, Tasks};
use crate::plan::{plan, Plan, PlanOptions, PlanView, Status};
use nbbuild_cache::TaskRecord;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The store (itself, or through the build holding it) and the reference
/// files, as planning sees them.
pub struct StoreView<'a> {
    pub store: &'a dyn StoreRead,
    /// The flow's folder: relative reference paths start there.
    pub dir: &'a Path,
}

impl PlanView for StoreView<'_> {
    fn record(&self, key: &str) -> Option<TaskRecord> {
        self.store.task(key).ok().flatten()
    }
    fn previous(&self, label: &str, kind: TaskKind) -> Option<(String, TaskRecord)> {
        let mut found: Vec<_> = self
            .store
            .tasks(Tasks::Named(label))
            .ok()?
            .into_iter()
            .filter(|(_, r)| r.preimage.get("kind").and_then(|k| k.as_str()) == Some(kind.as_str()))
            .collect();
        found.sort_by_key(|(_, r)| r.updated);
        found.pop()
    }
    /// blake3 of a local reference, from the store's cache while the file
    /// is unchanged (the same recipe as `exec::inputs::Inputs::file_hash`).
    fn file_hash(&self, p: &str) -> std::result::Result<String, String> {
        let p = p.strip_prefix("file://").unwrap_or(p);
        let path = match Path::new(p) {
            abs if abs.is_absolute() => abs.to_path_buf(),
            rel => self.dir.join(rel),
        };
        let unreadable = |e: &dyn std::fmt::Display| {
            format!("cannot read reference image {}: {e}", path.display())
        };
        let meta = std::fs::metadata(&path).map_err(|e| unreadable(&e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let canon: PathBuf = path.canonicalize().unwrap_or(path.clone());
        if let Ok(Some(h)) = self.store.file_hash(&canon, meta.len(), mtime) {
            return Ok(h);
        }
        let (h, _) = nbbuild_cache::hash_file(&path).map_err(|e| unreadable(&e))?;
        self.store.remember_file_hash(&canon, meta.len(), mtime, &h);
        Ok(h)
    }
}

pub fn make_plan(s: &Settings, compiled: &Compiled, store: &dyn StoreRead) -> Plan {
    let view = StoreView {
        store,
        dir: &s.project.dir,
    };
    plan(
        compiled,
        &view,
        &PlanOptions {
            images_only: s.images_only,
            only: s.only.as_ref(),
            prices: &s.prices,
        },
    )
}

pub fn run(args: &BuildArgs) -> Result<i32> {
    let s = Settings::resolve(args)?;
    let compiled = s.compile()?;
    let s = s.with_only(&compiled)?;
    let store = s.open_reader()?;
    let p = make_plan(&s, &compiled, &*store);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan_json(&s, &compiled, &p))
                .map_err(|e| Error::internal(e.to_string()))?
        );
    } else {
        print_plan(&compiled, &p, true, &mut std::io::stdout());
    }
    Ok(0)
}

pub fn plan_json(s: &Settings, compiled: &Compiled, p: &Plan) -> serde_json::Value {
    let tasks: Vec<_> = p
        .items
        .iter()
        .map(|i| {
            let t = &compiled.tasks[i.task];
            let (status, reason) = match &i.status {
                Status::Fresh => ("fresh", serde_json::Value::Null),
                Status::Stale(r) => ("stale", json!({"kind": r, "text": r.describe()})),
                Status::Skipped { why } => ("skipped", json!({"text": why})),
                Status::Blocked { why } => ("blocked", json!({"text": why})),
            };
            json!({
                "name": i.name, "kind": i.kind, "tab": t.tab_name, "node_id": t.node_id, "title": t.title,
                "row": t.row.map(|r| r + 1), "key": i.key, "status": status, "reason": reason,
                "calls": i.calls, "credits": i.credits,
            })
        })
        .collect();
    json!({
        "flow": s.project.flow_path.display().to_string(),
        "tasks": tasks,
        "summary": {
            "total": p.items.len(),
            "fresh": p.fresh_count(),
            "stale": p.stale().count(),
        },
        "calls": {"image": p.image_calls, "video": p.video_calls},
        "credits": p.credits,
    })
}

/// The plan as people read it; `all` lists fresh tasks too.
pub fn print_plan(compiled: &Compiled, p: &Plan, all: bool, out: &mut dyn std::io::Write) {
    for i in &p.items {
        let t = &compiled.tasks[i.task];
        let kind = if t.kind == TaskKind::Image {
            "image"
        } else {
            "video"
        };
        let line = match &i.status {
            Status::Fresh if !all => continue,
            Status::Fresh => format!("  fresh    {kind} {}", i.name),
            Status::Stale(r) => format!(
                "  stale    {kind} {}: {} ({} call{})",
                i.name,
                r.describe(),
                i.calls,
                if i.calls == 1 { "" } else { "s" }
            ),
            Status::Skipped { why } if !all => {
                let _ = why;
                continue;
            }
            Status::Skipped { why } => format!("  skipped  {kind} {}: {why}", i.name),
            Status::Blocked { why } => format!("  blocked  {kind} {}: {why}", i.name),
        };
        let _ = writeln!(out, "{line}");
    }
    let stale = p.stale().count();
    let _ = writeln!(
        out,
        "plan: {} task{}, {} fresh, {} to build: {} image + {} video call{}, about {} credits",
        p.items.len(),
        if p.items.len() == 1 { "" } else { "s" },
        p.fresh_count(),
        stale,
        p.image_calls,
        p.video_calls,
        if p.image_calls + p.video_calls == 1 {
            ""
        } else {
            "s"
        },
        fmt_credits(p.credits)
    );
}

pub fn fmt_credits(c: f64) -> String {
    if (c - c.round()).abs() < 1e-9 {
        format!("{c:.0}")
    } else {
        format!("{c:.1}")
    }
}
