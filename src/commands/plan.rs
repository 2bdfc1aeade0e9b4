//! `nbbuild plan`: what a build would run, why, and what it would cost.
//! Calls nothing; never writes the store.

use crate::cli::BuildArgs;
use crate::compile::{Compiled, InputSource, TaskKind};
use crate::error::{Error, Result};
use crate::exec::inputs::Inputs;
use crate::holder::{Reader, StoreRead, Tasks};
use crate::plan::{Decider, Plan, PlanOptions, PlanView, Status};
use crate::settings::Settings;
use nbbuild_cache::{Store, TaskRecord};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// The store (itself, or through the build holding it) and the reference
/// files, as planning sees them.
pub struct StoreView {
    pub store: Arc<dyn StoreRead + Send + Sync>,
    /// The flow's folder: relative reference paths start there.
    pub dir: PathBuf,
    /// References that could not be had, with why (from the reference step).
    pub unavailable: BTreeMap<String, String>,
    /// Hashes of local references already looked up, by (path as written,
    /// size, mtime): a thousand tasks sharing one reference look it up once.
    pub hashed: std::sync::Mutex<std::collections::HashMap<(String, u64, i128), String>>,
}

impl StoreView {
    pub fn new(
        store: Arc<dyn StoreRead + Send + Sync>,
        dir: PathBuf,
        unavailable: BTreeMap<String, String>,
    ) -> StoreView {
        StoreView {
            store,
            dir,
            unavailable,
            hashed: Default::default(),
        }
    }
}

impl PlanView for StoreView {
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
    /// blake3 of a local reference (the same recipe the build uses).
    fn file_hash(&self, p: &str) -> std::result::Result<String, String> {
        let stamp = std::fs::metadata(crate::exec::inputs::resolve(&self.dir, p))
            .ok()
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128);
                (p.to_string(), m.len(), mtime)
            });
        let memo = |g: &mut std::sync::MutexGuard<'_, _>| {
            stamp
                .as_ref()
                .and_then(|k| std::collections::HashMap::get(g, k).cloned())
        };
        if let Some(h) = memo(&mut self.hashed.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(h);
        }
        let h = crate::exec::inputs::local_file_hash(self.store.as_ref(), &self.dir, p)?;
        if let Some(k) = stamp {
            self.hashed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(k, h.clone());
        }
        Ok(h)
    }
    /// The content behind a URL, without the network: `file://` and `data:`
    /// locally; http(s) from what the store remembers (downloaded before, or
    /// published by nbbuild).
    fn url_hash(&self, url: &str) -> std::result::Result<String, String> {
        if let Some(why) = self.unavailable.get(url) {
            return Err(why.clone());
        }
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("file://") {
            return self.file_hash(url);
        }
        if lower.starts_with("data:") {
            return crate::exec::inputs::decode_data_url(url)
                .map(|b| nbbuild_cache::hash_bytes(&b));
        }
        match self.store.url_object(url) {
            Ok(Some(obj)) => Ok(obj),
            Ok(None) => Err(format!(
                "reference {url}: its content is unknown (not fetched yet: run without --offline, or after the running build)"
            )),
            Err(e) => Err(format!("cannot look up reference {url}: {}", e.message)),
        }
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
) -> BTreeMap<String, String> {
    let inputs = Inputs::new(store.clone(), &s.project.dir);
    let urls = input_urls(compiled);
    if s.offline || urls.is_empty() {
        return BTreeMap::new();
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
    unavailable
}

/// The decider for this run: the one place that says what is fresh, stale
/// or blocked, used by `plan`, `explain` and `build` (also while it runs).
/// `local` is the store when this process holds it: only then are unknown
/// reference URLs fetched (the store remembers them).
pub fn make_decider(
    s: &Settings,
    compiled: &Arc<Compiled>,
    store: Arc<dyn StoreRead + Send + Sync>,
    local: Option<&Arc<Store>>,
) -> Arc<Decider> {
    let unavailable = match local {
        Some(st) => reference_step(s, compiled, st),
        None => BTreeMap::new(),
    };
    let view = StoreView::new(store, s.project.dir.clone(), unavailable);
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

/// The plan of `compiled` over a store this process holds.
pub fn make_plan(s: &Settings, compiled: &Arc<Compiled>, store: &Arc<Store>) -> Plan {
    make_decider(s, compiled, store.clone(), Some(store)).plan()
}

/// The store as planning sees it, without the reference step (the
/// references are known once a plan over it was made).
pub fn store_view(s: &Settings, store: &Arc<Store>) -> StoreView {
    StoreView::new(store.clone(), s.project.dir.clone(), BTreeMap::new())
}

/// The decider over what `open_reader` gave: the store itself, or the build
/// holding it.
pub fn decider_for(s: &Settings, compiled: &Arc<Compiled>, reader: Reader) -> Arc<Decider> {
    match reader {
        Reader::Store(st) => {
            let st = Arc::new(st);
            make_decider(s, compiled, st.clone(), Some(&st))
        }
        Reader::Holder(c) => make_decider(s, compiled, Arc::new(c), None),
    }
}

pub fn run(args: &BuildArgs) -> Result<i32> {
    let s = Settings::resolve(args)?;
    let compiled = Arc::new(s.compile()?);
    let s = s.with_only(&compiled)?;
    let decider = decider_for(&s, &compiled, s.open_reader()?);
    let (p, team) = match s.remote()? {
        None => (decider.plan(), BTreeSet::new()),
        Some(cfg) => with_team_cache(cfg, &decider)?,
    };
    if args.json {
        let v = plan_json(&s, &compiled, &p, Some(&team));
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::internal(e.to_string()))?
        );
    } else {
        print_plan_marked(&compiled, &p, true, &mut std::io::stdout(), &team);
    }
    Ok(0)
}

/// The plan with the team cache's believed records laid over the store
/// (looked up, not pulled: `plan` never writes the store), and the keys
/// they cover.
fn with_team_cache(
    cfg: crate::remote::RemoteConfig,
    decider: &Arc<Decider>,
) -> Result<(Plan, BTreeSet<String>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
    let view = Arc::new(crate::remote::view::RemoteView::new(decider.view.clone()));
    let over = Arc::new(Decider::new(
        decider.compiled.clone(),
        view.clone(),
        decider.opts.clone(),
    ));
    runtime.block_on(async {
        let say: crate::remote::breaker::Warn = Arc::new(|m| eprintln!("warning: {m}"));
        let note: crate::remote::breaker::Warn = Arc::new(|m| eprintln!("{m}"));
        let remote = crate::remote::Remote::new(cfg, say, note);
        view.fill(&remote, &over).await;
    });
    Ok((over.plan(), view.from_team()))
}

/// The plan as `plan --json` prints it; `team` holds the keys the team
/// cache made fresh (None: no team cache configured).
pub fn plan_json<'a>(
    s: &Settings,
    compiled: &'a Compiled,
    p: &'a Plan,
    team: Option<&BTreeSet<String>>,
) -> crate::schema::PlanDoc<'a> {
    let tasks = p
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
            crate::schema::PlanTask {
                name: &i.name,
                kind: i.kind,
                tab: &t.tab_name,
                node_id: t.node_id,
                title: &t.title,
                row: t.row.map(|r| r + 1),
                key: i.key.as_deref(),
                status,
                reason,
                calls: i.calls,
                credits: credits_of(p.unit, i.credits),
                usd: usd_of(p.unit, i.credits),
                team_cache: team.map(|k| i.key.as_ref().is_some_and(|key| k.contains(key))),
            }
        })
        .collect();
    crate::schema::PlanDoc {
        schema: (),
        flow: s.project.flow_path.display().to_string(),
        tasks,
        summary: crate::schema::PlanSummary {
            total: p.items.len(),
            fresh: p.fresh_count(),
            stale: p.stale().count(),
            blocked: p
                .items
                .iter()
                .filter(|i| matches!(i.status, Status::Blocked { .. }))
                .count(),
        },
        calls: crate::schema::PlanCalls {
            image: p.image_calls,
            video: p.video_calls,
        },
        provider: s.provider.as_str(),
        unit: p.unit.as_str(),
        credits: credits_of(p.unit, p.credits),
        usd: usd_of(p.unit, p.credits),
    }
}

/// An amount as the `credits` field of a JSON summary: the amount on
/// G-Labs, 0 on Google (dollars go in `usd`; the two are never added).
pub fn credits_of(unit: crate::models::Unit, amount: f64) -> f64 {
    if unit == crate::models::Unit::Credits {
        amount
    } else {
        0.0
    }
}

/// An amount as the `usd` field of a JSON summary (0 on G-Labs).
pub fn usd_of(unit: crate::models::Unit, amount: f64) -> f64 {
    if unit == crate::models::Unit::Usd {
        amount
    } else {
        0.0
    }
}

/// The plan as people read it; `all` lists fresh tasks too.
pub fn print_plan(compiled: &Compiled, p: &Plan, all: bool, out: &mut dyn std::io::Write) {
    print_plan_marked(compiled, p, all, out, &BTreeSet::new())
}

/// [`print_plan`], with the fresh tasks whose record is in the team cache
/// (`team`, by key) marked so.
pub fn print_plan_marked(
    compiled: &Compiled,
    p: &Plan,
    all: bool,
    out: &mut dyn std::io::Write,
    team: &BTreeSet<String>,
) {
    for i in &p.items {
        let t = &compiled.tasks[i.task];
        let kind = if t.kind == TaskKind::Image {
            "image"
        } else {
            "video"
        };
        let line = match &i.status {
            Status::Fresh if !all => continue,
            Status::Fresh if i.key.as_ref().is_some_and(|k| team.contains(k)) => {
                format!("  fresh    {kind} {} (team cache)", i.name)
            }
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
    let blocked = p
        .items
        .iter()
        .filter(|i| matches!(i.status, Status::Blocked { .. }))
        .count();
    let blocked_note = if blocked > 0 {
        format!("; {blocked} blocked, not in the cost")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "plan: {} task{}, {} fresh, {} to build: {} image + {} video call{}, about {}{blocked_note}",
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
        p.unit.format(p.credits)
    );
}

pub use crate::models::fmt_credits;
