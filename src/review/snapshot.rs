//! The page's view model: the flow, the store and the plan read into one
//! JSON document (docs/review.md, "GET /api/state"), plus the media it may
//! show, by content hash.
//!
//! Freshness is never decided here: every task's state is the plan's
//! (`plan::plan`, through `commands::plan::make_plan`).

use super::flow_read::{gates_of, prompt_node, task_id, Loaded};
use crate::compile::{Compiled, InputSource, Task, TaskKind};
use crate::flow::Flow;
use crate::holder::StoreRead;
use crate::output::Layout;
use crate::plan::{Plan, Status};
use crate::settings::Settings;
use nbbuild_cache::{Candidate, Store, TaskRecord};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The candidates the page shows for a task: the record under its planned
/// key, else (the key changed, or is not known until an input is rebuilt)
/// the newest record of the same task, which the next build replaces.
/// The flag says whether it is the current key's.
pub fn record_for(
    store: &Shared,
    item: &crate::plan::PlanItem,
    t: &Task,
) -> Option<(TaskRecord, bool)> {
    if let Some(r) = &item.record {
        return Some((r.clone(), true));
    }
    let view = crate::commands::plan::StoreView::new(
        store.clone(),
        store.root().to_path_buf(),
        Default::default(),
    );
    crate::plan::PlanView::previous(&view, &t.label(), t.kind).map(|(_, r)| (r, false))
}

pub fn mime_of(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Image => "image/png",
        TaskKind::Video => "video/mp4",
    }
}

fn mime_of_path(p: &Path) -> &'static str {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("mp4") => "video/mp4",
        _ => "image/png",
    }
}

/// A file the page may show, by the blake3 of its content.
#[derive(Debug, Clone)]
pub struct Media {
    pub mime: &'static str,
    pub path: PathBuf,
}

/// What the server adds that is not in the flow or the store.
#[derive(Default)]
pub struct Extra {
    pub read_only: bool,
    /// The store could not be read (a build from another terminal holds it).
    pub store_note: Option<String>,
    /// The re-roll running from the page, if any: (task ids, log lines).
    pub busy: Option<(Vec<String>, Vec<String>)>,
    /// Where media is served: `/media/` (server) or `media/` (export).
    pub media_base: String,
    /// Whether media names carry an extension (static export).
    pub media_ext: bool,
}

pub struct Snapshot {
    pub rev: String,
    pub state: Value,
    pub media: BTreeMap<String, Media>,
}

/// The store as the page reads it: the store itself, or a build's holder.
pub type Shared = Arc<dyn StoreRead + Send + Sync>;

struct Ctx<'a> {
    s: &'a Settings,
    compiled: &'a std::sync::Arc<Compiled>,
    plan: &'a Plan,
    store: &'a Shared,
    extra: &'a Extra,
    media: BTreeMap<String, Media>,
}

impl Ctx<'_> {
    fn src(&mut self, hash: &str, media: Media) -> String {
        let ext = if self.extra.media_ext {
            match media.mime {
                "video/mp4" => ".mp4",
                "image/jpeg" => ".jpg",
                "image/webp" => ".webp",
                _ => ".png",
            }
        } else {
            ""
        };
        self.media.entry(hash.to_string()).or_insert(media);
        format!("{}{hash}{ext}", self.extra.media_base)
    }

    fn object_src(&mut self, object: &str, mime: &'static str) -> Option<String> {
        let path = nbbuild_cache::object_file(self.store.root(), object)?;
        Some(self.src(object, Media { mime, path }))
    }

    /// The object a gate's pick (a URL or a path, as written in the flow) is,
    /// by content: a mirrored URL of a candidate, a URL the store
    /// downloaded, or a local file.
    fn pick_object(&self, value: &str, among: &[&Candidate]) -> Option<String> {
        if let Some(c) = among
            .iter()
            .find(|c| c.url.as_deref() == Some(value) || c.object == value)
        {
            return Some(c.object.clone());
        }
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return self.store.url_object(value).ok().flatten();
        }
        if lower.starts_with("data:") {
            return None;
        }
        crate::exec::inputs::local_file_hash(self.store.as_ref(), &self.s.project.dir, value).ok()
    }
}

/// The snapshot, from the store when it is free, else through the holder of
/// a build running elsewhere (its endpoint answers reads), so the page and
/// `nbbuild picks` work during a build.
pub fn read_live(
    access: &super::access::StoreAccess,
    l: &Loaded,
    extra: &Extra,
) -> Result<Snapshot, super::access::Unavailable> {
    let direct = access.with(|store| read(l, &(store.clone() as Shared), Some(store), extra));
    match direct {
        Err(u) if u.holder.is_some() => {
            match crate::holder::client::HolderClient::connect(access.dir()) {
                Ok(c) => {
                    let mut snap = read(l, &(Arc::new(c) as Shared), None, extra);
                    snap.state["store"]["build_running"] = json!(true);
                    snap.state["store"]["note"] = json!(u.describe());
                    Ok(snap)
                }
                Err(_) => Err(u),
            }
        }
        other => other,
    }
}

/// Everything the page shows, read from the store (`local` when this
/// process holds it, so unknown reference URLs may be fetched) or through
/// the holder of a build running elsewhere.
pub fn read(l: &Loaded, store: &Shared, local: Option<&Arc<Store>>, extra: &Extra) -> Snapshot {
    let s = &l.s;
    let mut state = json!({
        "flow": {
            "path": s.project.flow_path.display().to_string(),
            "name": s.project.flow.name,
            "rev": l.rev,
        },
        "read_only": extra.read_only,
        "store": {"note": extra.store_note},
        "busy": extra.busy.as_ref().map(|(t, log)| json!({"tasks": t, "log": log})),
        "findings": l.findings.iter().filter(|f| f.is_error()).map(|f| f.to_string()).collect::<Vec<_>>(),
        "tabs": [],
        "tasks": [],
        "plan": null,
    });
    let Some(compiled) = &l.compiled else {
        return Snapshot {
            rev: l.rev.clone(),
            state,
            media: BTreeMap::new(),
        };
    };
    let plan = crate::commands::plan::make_decider(s, compiled, store.clone(), local).plan();
    let mut cx = Ctx {
        s,
        compiled,
        plan: &plan,
        store,
        extra,
        media: BTreeMap::new(),
    };
    let errors = read_errors(s);
    let busy: BTreeSet<&str> = extra
        .busy
        .as_ref()
        .map(|(t, _)| t.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for item in &plan.items {
        let t = &compiled.tasks[item.task];
        tasks.push(task_json(&mut cx, t, item, &errors, &busy));
    }
    // Consumers: tasks whose inputs come from this task or through its gates.
    let consumers = consumers(compiled, &s.project.flow);
    for tj in tasks.iter_mut() {
        let id = tj["id"].as_str().unwrap_or("").to_string();
        tj["lineage"]["consumers"] = json!(consumers.get(&id).cloned().unwrap_or_default());
    }
    let mut tabs = Vec::new();
    for tab in &s.project.flow.tabs {
        // Tasks are compiled tab by tab, each tab in dependency order.
        let ids: Vec<String> = compiled
            .tasks
            .iter()
            .filter(|t| t.tab == tab.index)
            .map(task_id)
            .collect();
        tabs.push(json!({"index": tab.index, "name": tab.name, "tasks": ids}));
    }
    state["tabs"] = json!(tabs);
    state["tasks"] = json!(tasks);
    state["plan"] = plan_summary(compiled, &plan);
    Snapshot {
        rev: l.rev.clone(),
        state,
        media: cx.media,
    }
}

/// What a plain build would now build, and its cost (the plan's own numbers).
pub fn plan_summary(compiled: &Compiled, plan: &Plan) -> Value {
    let stale: Vec<Value> = plan
        .stale()
        .map(|i| {
            let t = &compiled.tasks[i.task];
            let reason = match &i.status {
                Status::Stale(r) => r.describe(),
                _ => String::new(),
            };
            json!({"id": task_id(t), "name": i.name, "kind": i.kind, "reason": reason,
                   "calls": i.calls, "credits": i.credits})
        })
        .collect();
    json!({
        "stale": stale,
        "fresh": plan.fresh_count(),
        "total": plan.items.len(),
        "calls": {"image": plan.image_calls, "video": plan.video_calls},
        "credits": plan.credits,
        // What `credits` amounts are in: G-Labs credits or US dollars.
        "unit": plan.unit.as_str(),
    })
}

fn flagged(c: &Candidate) -> bool {
    c.qa.as_ref()
        .is_some_and(|v| v.verdict == nbbuild_cache::Outcome::Flagged)
}

fn verdict_json(c: &Candidate) -> Value {
    match &c.qa {
        Some(v) => json!({
            "verdict": v.verdict, "tells": v.tells, "confidence": v.confidence,
            "reviewer": v.reviewer, "human": v.reviewer == crate::qa::HUMAN_REVIEWER,
        }),
        None => Value::Null,
    }
}

fn task_json(
    cx: &mut Ctx,
    t: &Task,
    item: &crate::plan::PlanItem,
    errors: &BTreeMap<(String, i64, Option<usize>), Vec<String>>,
    busy: &BTreeSet<&str>,
) -> Value {
    let id = task_id(t);
    let n = t.params.candidates;
    let found = record_for(cx.store, item, t);
    let earlier = found.as_ref().is_some_and(|(_, cur)| !cur);
    let rec = found.as_ref().map(|(r, _)| r);
    let current: Vec<&Candidate> = rec
        .map(|r| r.candidates.iter().filter(|c| c.slot < n).collect())
        .unwrap_or_default();
    let auto = rec.and_then(|r| crate::plan::pick(&r.candidates, n).map(|c| c.object.clone()));
    let flow = &cx.s.project.flow;
    let gates = gates_of(flow, t);
    // The user's pick on the (first) gate this task feeds.
    let pick_value = gates
        .iter()
        .find_map(|g| g.prop_str("_lastApprovedData").filter(|v| !v.is_empty()))
        .map(str::to_string);
    let pick_object = pick_value
        .as_deref()
        .and_then(|v| cx.pick_object(v, &current));
    let mime = mime_of(t.kind);
    let mut cands = Vec::new();
    for c in &current {
        let src = cx.object_src(&c.object, mime);
        cands.push(json!({
            "k": c.slot + 1,
            "object": c.object,
            "src": src,
            "mime": mime,
            "qa": verdict_json(c),
            "flagged": flagged(c),
            "auto_pick": auto.as_deref() == Some(c.object.as_str()),
            "picked": pick_object.as_deref() == Some(c.object.as_str()),
            "url": c.url,
            "created": c.created,
            "size": c.size,
        }));
    }
    let mut history = Vec::new();
    if let Some(r) = rec {
        for h in r.history.iter().rev().take(12) {
            let mut hc = Vec::new();
            for c in &h.candidates {
                let src = cx.object_src(&c.object, mime);
                hc.push(json!({"k": c.slot + 1, "object": c.object, "src": src,
                               "qa": verdict_json(c), "flagged": flagged(c), "created": c.created}));
            }
            history.push(json!({"replaced": h.replaced, "reason": h.reason, "candidates": hc}));
        }
    }
    let (status, reason) = match &item.status {
        Status::Fresh => ("fresh", String::new()),
        Status::Stale(r) => ("stale", r.describe()),
        Status::Skipped { why } => ("skipped", why.clone()),
        Status::Blocked { why } => ("blocked", why.clone()),
    };
    let failure = errors.get(&(t.tab_name.clone(), t.node_id, t.row));
    let in_flight = rec.map_or(0, |r| r.in_flight.len());
    let state = if busy.contains(id.as_str()) {
        "running"
    } else if status == "stale" && failure.is_some() {
        "failed"
    } else if current.iter().any(|c| flagged(c)) {
        "flagged"
    } else if status == "stale" && in_flight > 0 {
        "in_flight"
    } else {
        status
    };
    let (prompt_node, editable) = match prompt_node(flow, t) {
        Some((p, plain)) => (Some(p.id), plain && t.row.is_none()),
        None => (None, false),
    };
    let mut from = Vec::new();
    for inp in &t.inputs {
        from.push(input_json(cx, t, inp));
    }
    json!({
        "id": id,
        "name": t.label(),
        "node_name": t.name,
        "kind": t.kind,
        "tab": t.tab,
        "tab_name": t.tab_name,
        "node_id": t.node_id,
        "title": t.title,
        "row": t.row.map(|r| r + 1),
        "model": t.params.model,
        "state": state,
        "status": status,
        "reason": reason,
        "calls": item.calls,
        "credits": item.credits,
        "unit": cx.plan.unit.as_str(),
        "error": failure.map(|f| f.join("; ")),
        "in_flight": in_flight,
        "earlier_key": earlier,
        "key": item.key,
        "key_short": item.key.as_ref().map(|k| k[..12.min(k.len())].to_string()),
        "prompt": t.prompt,
        "prompt_node": prompt_node,
        "prompt_editable": editable,
        "gates": gates.iter().map(|g| json!({"node_id": g.id, "title": g.title})).collect::<Vec<_>>(),
        "pickable": !gates.is_empty() && t.row.is_none(),
        "pick": pick_value.as_ref().map(|v| json!({
            "value": v,
            "candidate": current.iter().find(|c| pick_object.as_deref() == Some(c.object.as_str())).map(|c| c.slot + 1),
        })),
        "candidates": cands,
        "history": history,
        "lineage": {"from": from, "consumers": []},
    })
}

fn input_json(cx: &mut Ctx, t: &Task, inp: &crate::compile::TaskInput) -> Value {
    let what = match (t.kind, inp.slot) {
        (TaskKind::Video, 1) => "start frame".to_string(),
        (TaskKind::Video, 2) => "end frame".to_string(),
        (_, s) => format!("image {s}"),
    };
    let gate = inp.gate;
    match &inp.source {
        InputSource::Task(d) => {
            let dt = &cx.compiled.tasks[*d];
            let n = dt.params.candidates;
            let rec = cx
                .plan
                .items
                .iter()
                .find(|i| i.task == *d)
                .and_then(|i| record_for(cx.store, i, dt));
            let changes =
                rec.as_ref().is_some_and(|(_, cur)| !cur) || cx.plan.stale().any(|i| i.task == *d);
            let obj = rec
                .as_ref()
                .and_then(|(r, _)| crate::plan::pick(&r.candidates, n).map(|c| c.object.clone()));
            let k = obj.as_ref().and_then(|o| {
                rec.as_ref()
                    .and_then(|(r, _)| r.candidates.iter().find(|c| &c.object == o))
                    .map(|c| c.slot + 1)
            });
            let src = obj
                .as_deref()
                .and_then(|o| cx.object_src(o, mime_of(dt.kind)));
            json!({"slot": inp.slot, "what": what, "gate": gate, "task": task_id(dt),
                   "text": match (k, changes) {
                       (Some(k), false) => format!("{} (auto-pick c{k})", dt.label()),
                       (Some(k), true) => format!("{} (auto-pick c{k}, rebuilt by the next build)", dt.label()),
                       (None, _) => format!("{} (not built yet)", dt.label()),
                   },
                   "src": src})
        }
        InputSource::File(p) | InputSource::Url(p) => {
            let source = if gate.is_some() { "pick" } else { "reference" };
            let lower = p.to_ascii_lowercase();
            let local = !(lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("data:"));
            let mut src = None;
            if local {
                if let Ok(h) =
                    crate::exec::inputs::local_file_hash(cx.store.as_ref(), &cx.s.project.dir, p)
                {
                    let path = crate::exec::inputs::resolve(&cx.s.project.dir, p);
                    src = Some(cx.src(
                        &h,
                        Media {
                            mime: mime_of_path(&path),
                            path,
                        },
                    ));
                }
            } else if let Ok(Some(obj)) = cx.store.url_object(p) {
                src = cx.object_src(&obj, "image/png");
            }
            let shown: String = if p.len() > 120 {
                format!(
                    "{}…",
                    &p[..p.char_indices().nth(117).map_or(p.len(), |(i, _)| i)]
                )
            } else {
                p.clone()
            };
            json!({"slot": inp.slot, "what": what, "gate": gate, "task": null,
                   "text": format!("{source}: {shown}"), "src": src})
        }
    }
}

/// Task id -> ids of the tasks that consume it (directly, or through one of
/// its gates holding a user pick).
fn consumers(c: &Compiled, flow: &Flow) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &c.tasks {
        let gates: BTreeSet<i64> = gates_of(flow, t).iter().map(|g| g.id).collect();
        let mut list = Vec::new();
        for u in &c.tasks {
            let uses = u.inputs.iter().any(|i| {
                i.source == InputSource::Task(t.index)
                    || (u.tab == t.tab
                        && t.row.is_none()
                        && i.gate.is_some_and(|g| gates.contains(&g)))
            });
            if uses {
                list.push(task_id(u));
            }
        }
        list.dedup();
        out.insert(task_id(t), list);
    }
    out
}

/// `Generations/errors.json` of the last build: messages by (tab, node id, row).
fn read_errors(s: &Settings) -> BTreeMap<(String, i64, Option<usize>), Vec<String>> {
    let layout = Layout::new(&s.out, &s.project.flow.name);
    let mut out: BTreeMap<_, Vec<String>> = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(layout.generations().join("errors.json")) else {
        return out;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return out;
    };
    for e in v["errors"].as_array().into_iter().flatten() {
        let (Some(tab), Some(id)) = (e["tab"].as_str(), e["node_id"].as_i64()) else {
            continue;
        };
        let row = e["row"].as_u64().and_then(|r| (r as usize).checked_sub(1));
        let msg = match e["candidate"].as_u64() {
            Some(k) => format!(
                "c{k}: {} ({})",
                e["message"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or("")
            ),
            None => format!(
                "{} ({})",
                e["message"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or("")
            ),
        };
        out.entry((tab.to_string(), id, row)).or_default().push(msg);
    }
    out
}
