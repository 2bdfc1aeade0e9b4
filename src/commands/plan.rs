//! `nbbuild plan`: what a build would run, why, and what it would cost.
//! Calls nothing; never writes the store.

use super::settings::Settings;
use crate::cli::BuildArgs;
use crate::compile::{Compiled, InputSource, TaskKind};
use crate::error::{Error, Result};
use crate::exec::inputs::Inputs;
use crate::plan::{Decider, Plan, PlanOptions, PlanView, Status};
use nbbuild_cache::{Store, TaskRecord};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The store (and reference files) as planning sees them.
pub struct StoreView {
    pub store: Arc<Store>,
    pub inputs: Arc<Inputs>,
    /// References that could not be had, with why (from the reference step).
    pub unavailable: BTreeMap<String, String>,
}

impl PlanView for StoreView {
    fn record(&self, key: &str) -> Option<TaskRecord> {
        self.store.task(key).ok().flatten()
    }
    fn previous(&self, label: &str, kind: TaskKind) -> Option<(String, TaskRecord)> {
        let mut found: Vec<_> = self
            .store
            .find_by_name(label)
            .ok()?
            .into_iter()
            .filter(|(_, r)| r.preimage.get("kind").and_then(|k| k.as_str()) == Some(kind.as_str()))
            .collect();
        found.sort_by_key(|(_, r)| r.updated);
        found.pop()
    }
    fn file_hash(&self, path: &str) -> std::result::Result<String, String> {
        self.inputs.file_hash(path)
    }
    fn url_hash(&self, url: &str) -> std::result::Result<String, String> {
        if let Some(why) = self.unavailable.get(url) {
            return Err(why.clone());
        }
        self.inputs.url_hash(url)
    }
}

/// Every URL an image input of `compiled` names.
fn input_urls(compiled: &Compiled) -> Vec<String> {
    let mut urls: Vec<String> = compiled
        .tasks
        .iter()
        .flat_map(|t| &t.inputs)
        .filter_map(|i| match &i.source {
            InputSource::Url(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// The reference step: every URL input whose content the store does not
/// know is fetched once and checked to be an image (unless `offline`), so
/// that keys are by content and nothing is paid for before a reference is
/// known to be there.
pub fn reference_step(
    s: &Settings,
    compiled: &Compiled,
    store: &Arc<Store>,
) -> (Arc<Inputs>, BTreeMap<String, String>) {
    let inputs = Arc::new(Inputs::new(store.clone(), &s.project.dir));
    let urls = input_urls(compiled);
    if s.offline || urls.is_empty() {
        return (inputs, BTreeMap::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let unavailable = match rt {
        Ok(rt) => rt.block_on(inputs.prefetch(&urls)),
        Err(e) => urls
            .into_iter()
            .map(|u| (u, format!("cannot start the runtime to fetch it: {e}")))
            .collect(),
    };
    (inputs, unavailable)
}

/// The decider for this run: the one place that says what is fresh, stale
/// or blocked, used by `plan`, `explain` and `build` (also while it runs).
pub fn make_decider(s: &Settings, compiled: &Arc<Compiled>, store: &Arc<Store>) -> Arc<Decider> {
    let (inputs, unavailable) = reference_step(s, compiled, store);
    let view = StoreView {
        store: store.clone(),
        inputs,
        unavailable,
    };
    Arc::new(Decider::new(
        compiled.clone(),
        Arc::new(view),
        PlanOptions {
            images_only: s.images_only,
            only: s.only.clone(),
            prices: s.prices.clone(),
        },
    ))
}

pub fn make_plan(s: &Settings, compiled: &Arc<Compiled>, store: &Arc<Store>) -> Plan {
    make_decider(s, compiled, store).plan()
}

pub fn run(args: &BuildArgs) -> Result<i32> {
    let s = Settings::resolve(args)?;
    let compiled = Arc::new(s.compile()?);
    let s = s.with_only(&compiled)?;
    let store = Arc::new(s.open_store()?);
    let p = make_plan(&s, &compiled, &store);
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
