//! The JSON API behind the page (documented in docs/review.md). Handlers
//! do their work on the blocking pool: the store and the flow file are
//! plain blocking I/O.

use super::access::Unavailable;
use super::flow_edit::{pick_value, set_pick, set_prompt, write_flow, EditError};
use super::quote::{quote as make_quote, spend_id, Quote};
use super::server::{App, Busy};
use super::snapshot::{self, find_task, gates_of, load, plan_summary, task_id, Extra, Loaded};
use crate::commands::plan::make_plan;
use crate::compile::Compiled;
use crate::error::Error;
use crate::progress::{Event, Reporter};
use crate::settings::Settings;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// An answer other than 200: status and a JSON body with `error`.
pub struct ApiError(StatusCode, Value);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError(status, json!({"error": msg.into()}))
    }
    fn from_error(e: Error) -> ApiError {
        let status = match e.kind {
            crate::error::ErrorKind::Usage | crate::error::ErrorKind::Invalid => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(
            status,
            json!({"error": e.message, "causes": e.causes, "hint": e.hint}),
        )
    }
    fn changed() -> ApiError {
        ApiError(
            StatusCode::CONFLICT,
            json!({"error": "the flow changed on disk since the page read it: nothing was written; the page reloads it",
                   "reload": true}),
        )
    }
    fn busy(u: Unavailable) -> ApiError {
        ApiError(
            StatusCode::CONFLICT,
            json!({"error": u.describe(), "build_running": u.holder.is_some()}),
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::from_error(e)
    }
}

impl From<EditError> for ApiError {
    fn from(e: EditError) -> Self {
        match e {
            EditError::Changed => ApiError::changed(),
            EditError::Failed(e) => ApiError::from_error(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

type ApiResult = Result<Value, ApiError>;

/// Run `f` on the blocking pool and answer its JSON.
async fn blocking(app: Arc<App>, f: impl FnOnce(&App) -> ApiResult + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(move || f(&app)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn writable(app: &App) -> Result<(), ApiError> {
    if app.read_only {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this page is read-only (nbbuild review --read-only)",
        ));
    }
    Ok(())
}

fn compiled(l: &Loaded) -> Result<&std::sync::Arc<Compiled>, ApiError> {
    l.compiled.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "the flow has errors (`nbbuild validate` lists them): fix them first",
        )
    })
}

fn task<'a>(c: &'a Compiled, id: &str) -> Result<&'a crate::compile::Task, ApiError> {
    find_task(c, id).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no task {id:?} in the flow (it may have been removed): the page reloads"), "reload": true}),
        )
    })
}

fn extra(app: &App) -> Extra {
    Extra {
        read_only: app.read_only,
        store_note: None,
        busy: app
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| (b.tasks.clone(), b.log.clone())),
        media_base: "/media/".into(),
        media_ext: false,
    }
}

// ----------------------------------------------------------------------
// GET /api/state

pub async fn state(State(app): State<Arc<App>>) -> Response {
    blocking(app, |app| Ok(state_now(app))).await
}

pub fn state_now(app: &App) -> Value {
    let l = match load(&app.build) {
        Ok(l) => l,
        Err(e) => {
            return json!({"error": e.to_string(), "read_only": app.read_only, "tabs": [], "tasks": []})
        }
    };
    let ex = extra(app);
    let read = snapshot::read_live(&app.access, &l, &ex);
    match read {
        Ok(snap) => {
            app.media
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(snap.media);
            *app.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(snap.state.clone());
            snap.state
        }
        Err(u) => {
            let last = app.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut v = last.unwrap_or_else(|| {
                json!({"flow": {"path": l.s.project.flow_path.display().to_string(),
                                "name": l.s.project.flow.name, "rev": l.rev},
                       "read_only": app.read_only, "tabs": [], "tasks": [], "plan": null,
                       "findings": [], "busy": null})
            });
            v["store"] = json!({"note": u.describe(), "build_running": u.holder.is_some()});
            v
        }
    }
}

// ----------------------------------------------------------------------
// POST /api/pick

#[derive(Deserialize)]
pub struct PickReq {
    task: String,
    candidate: u32,
    rev: String,
}

pub async fn pick(State(app): State<Arc<App>>, Json(req): Json<PickReq>) -> Response {
    blocking(app, move |app| pick_now(app, &req)).await
}

fn pick_now(app: &App, req: &PickReq) -> ApiResult {
    writable(app)?;
    let l = load(&app.build)?;
    if l.rev != req.rev {
        return Err(ApiError::changed());
    }
    let c = compiled(&l)?;
    let t = task(c, &req.task)?;
    let gates = gates_of(&l.s.project.flow, t);
    if gates.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{} feeds no approve gate: there is nothing to pick for",
                t.label()
            ),
        ));
    }
    if t.row.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "picks for one row of a dynamic node are not supported yet (PatchWork keeps one page per row): pick in PatchWork",
        ));
    }
    let gate_nodes: Vec<usize> = gates.iter().map(|g| g.index).collect();
    let r = app.access.with(|store| -> ApiResult {
        let plan = make_plan(&l.s, c, store);
        // An earlier key's take may be picked too (the user likes it better).
        let rec = plan
            .items
            .iter()
            .find(|i| i.task == t.index)
            .and_then(|i| snapshot::record_for(&(store.clone() as snapshot::Shared), i, t))
            .map(|(r, _)| r)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{} has no candidates yet: build it first", t.label()),
                )
            })?;
        let n = t.params.candidates;
        let cand = candidate(&rec, t, req.candidate)?;
        let value = pick_value(&l.s, t, cand, store)?;
        let layout = crate::output::Layout::new(&l.s.out, &l.s.project.flow.name);
        let dir = std::path::absolute(&l.s.project.dir).unwrap_or_else(|_| l.s.project.dir.clone());
        let gallery: Vec<String> = rec
            .candidates
            .iter()
            .filter(|x| x.slot < n)
            .map(|x| {
                if x.slot == cand.slot {
                    return value.clone();
                }
                x.url.clone().unwrap_or_else(|| {
                    let a = layout.asset(t.kind, &t.label(), x.slot);
                    a.strip_prefix(&dir)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| a.to_string_lossy().into_owned())
                })
            })
            .collect();
        let rev = write_flow(
            &l.s.project.flow_path,
            &l.s.cache_dir.join("backups"),
            &req.rev,
            |raw| {
                for &g in &gate_nodes {
                    set_pick(raw, t.tab, g, t.kind, &value, &gallery)?;
                }
                Ok(())
            },
        )?;
        let after = after_edit(app, store)?;
        Ok(json!({"ok": true, "rev": rev, "value": value, "plan": after}))
    });
    let v = r.map_err(ApiError::busy)??;
    app.emit("changed", json!({"why": "pick"}));
    Ok(v)
}

/// What a plain build would now build, read again from the file on disk.
fn after_edit(app: &App, store: &Arc<nbbuild_cache::Store>) -> ApiResult {
    let l = load(&app.build)?;
    let c = compiled(&l)?;
    let plan = make_plan(&l.s, c, store);
    Ok(plan_summary(c, &plan))
}

// ----------------------------------------------------------------------
// POST /api/flag

#[derive(Deserialize)]
pub struct FlagReq {
    task: String,
    candidate: u32,
    flagged: bool,
    #[serde(default)]
    reasons: Vec<String>,
}

pub async fn flag(State(app): State<Arc<App>>, Json(req): Json<FlagReq>) -> Response {
    blocking(app, move |app| flag_now(app, &req)).await
}

fn flag_now(app: &App, req: &FlagReq) -> ApiResult {
    writable(app)?;
    let l = load(&app.build)?;
    let c = compiled(&l)?;
    let t = task(c, &req.task)?;
    let reasons: Vec<String> = req
        .reasons
        .iter()
        .map(|r| r.trim().chars().take(200).collect::<String>())
        .filter(|r| !r.is_empty())
        .take(10)
        .collect();
    let r = app.access.with(|store| -> ApiResult {
        let plan = make_plan(&l.s, c, store);
        let item = plan
            .items
            .iter()
            .find(|i| i.task == t.index)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "task not planned"))?;
        let (Some(key), Some(rec)) = (item.key.clone(), item.record.clone()) else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{} has no candidates under its current inputs: the next plain build makes new ones", t.label()),
            ));
        };
        let cand = candidate(&rec, t, req.candidate)?;
        let v = nbbuild_cache::Verdict {
            verdict: if req.flagged {
                nbbuild_cache::Outcome::Flagged
            } else {
                nbbuild_cache::Outcome::Clean
            },
            tells: reasons.clone(),
            confidence: None,
            reviewer: crate::qa::HUMAN_REVIEWER.into(),
            at: crate::exec::runner::now_ms(),
        };
        let store_err = |e: nbbuild_cache::StoreError| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the store failed: {e}"),
            )
        };
        store
            .put_verdict(&cand.object, crate::qa::HUMAN_REVIEWER, &v)
            .map_err(store_err)?;
        store
            .update_candidate(&key, cand.slot, |x| x.qa = Some(v.clone()))
            .map_err(store_err)?;
        let after = after_edit(app, store)?;
        Ok(json!({"ok": true, "flagged": req.flagged, "plan": after}))
    });
    let v = r.map_err(ApiError::busy)??;
    app.emit("changed", json!({"why": "flag"}));
    Ok(v)
}

// ----------------------------------------------------------------------
// POST /api/quote and /api/reroll

#[derive(Deserialize)]
pub struct QuoteReq {
    task: String,
    #[serde(default)]
    prompt: Option<String>,
}

pub async fn quote(State(app): State<Arc<App>>, Json(req): Json<QuoteReq>) -> Response {
    blocking(app, move |app| {
        let l = load(&app.build)?;
        let r = app
            .access
            .with(|store| quote_for(app, &l, &req.task, req.prompt.as_deref(), store));
        let (q, _) = r.map_err(ApiError::busy)??;
        let mut v = q.json;
        v["rev"] = json!(l.rev);
        Ok(v)
    })
    .await
}

/// A prompt edit: (tab, node index, new text).
type PromptEdit = (usize, usize, String);

/// The quote for a re-roll of `task`, with the page's prompt edit (if it
/// changes anything); also the edited text to write.
fn quote_for(
    app: &App,
    l: &Loaded,
    task_id_: &str,
    prompt: Option<&str>,
    store: &Arc<nbbuild_cache::Store>,
) -> Result<(Quote, Option<PromptEdit>), ApiError> {
    let c = compiled(l)?;
    let t = task(c, task_id_)?;
    let now = make_plan(&l.s, c, store);
    let stale_now: BTreeSet<String> = now.stale().map(|i| task_id(&c.tasks[i.task])).collect();
    let edit = match prompt {
        Some(p) if p != t.prompt => {
            let (node, plain) = snapshot::prompt_node(&l.s.project.flow, t).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "this task has no prompt node to edit",
                )
            })?;
            if !plain || t.row.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "only a plain prompt can be edited here (templates and dynamic rows: edit them in PatchWork)",
                ));
            }
            if p.trim().is_empty() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "the prompt is empty",
                ));
            }
            Some((t.tab, node.index, p.to_string()))
        }
        _ => None,
    };
    let q = match &edit {
        None => make_quote(&l.s, c, t, store, &stale_now)?,
        Some((tab, idx, text)) => {
            let (s2, c2) = edited(app, l, *tab, *idx, text)?;
            let c2 = std::sync::Arc::new(c2);
            let t2 = task(&c2, task_id_)?;
            make_quote(&s2, &c2, t2, store, &stale_now)?
        }
    };
    Ok((q, edit))
}

/// The flow with a prompt edit applied in memory, compiled.
fn edited(
    app: &App,
    l: &Loaded,
    tab: usize,
    idx: usize,
    text: &str,
) -> Result<(Settings, Compiled), ApiError> {
    let mut raw = l.s.project.flow.raw.clone();
    set_prompt(&mut raw, tab, idx, text)?;
    let flow = crate::flow::Flow::from_value(raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.message))?;
    let mut s2 = Settings::resolve(&app.build)?;
    s2.project.flow = flow;
    let (findings, c2) = s2.project.check(s2.candidates, s2.ref_image.as_deref());
    let c2 = c2.ok_or_else(|| {
        let errs: Vec<String> = findings
            .iter()
            .filter(|f| f.is_error())
            .map(|f| f.to_string())
            .collect();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the edited prompt makes the flow invalid: {}",
                errs.join("; ")
            ),
        )
    })?;
    Ok((s2, c2))
}

#[derive(Deserialize)]
pub struct RerollReq {
    task: String,
    #[serde(default)]
    prompt: Option<String>,
    quote: String,
    rev: String,
}

pub async fn reroll(State(app): State<Arc<App>>, Json(req): Json<RerollReq>) -> Response {
    let a = app.clone();
    blocking(app, move |_| reroll_now(&a, &req)).await
}

fn reroll_now(app: &Arc<App>, req: &RerollReq) -> ApiResult {
    writable(app)?;
    if app.busy.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "a re-roll is running: wait until it is done",
        ));
    }
    let l = load(&app.build)?;
    if l.rev != req.rev {
        return Err(ApiError::changed());
    }
    let store = app.access.hold().map_err(ApiError::busy)?;
    let started = (|| {
        let (q, edit) = quote_for(app, &l, &req.task, req.prompt.as_deref(), &store)?;
        if q.id != req.quote {
            let mut v = q.json.clone();
            v["rev"] = json!(l.rev);
            return Err(ApiError(
                StatusCode::CONFLICT,
                json!({"error": "the quote no longer matches what a re-roll would spend: nothing was spent; here is the new quote",
                       "stale_quote": true, "quote": v}),
            ));
        }
        if let Some((tab, idx, text)) = &edit {
            write_flow(
                &l.s.project.flow_path,
                &l.s.cache_dir.join("backups"),
                &req.rev,
                |raw| set_prompt(raw, *tab, *idx, text),
            )?;
        }
        Ok(q)
    })();
    let q = match started {
        Ok(q) => q,
        Err(e) => {
            drop(store);
            app.access.release();
            return Err(e);
        }
    };
    let spend: Vec<String> = q.json["spend"]["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    *app.busy.lock().unwrap_or_else(|e| e.into_inner()) = Some(Busy {
        tasks: spend,
        log: Vec::new(),
    });
    let mut args = app.build.clone();
    args.only = vec![q.selector.clone()];
    let (qid, tid) = (q.id.clone(), req.task.clone());
    let hooks = crate::commands::build::Hooks {
        store: Some(store),
        reporter: Some(Arc::new(Live { app: app.clone() })),
        check_plan: Some(Box::new(move |_s, c, p| {
            if spend_id(c, p, &tid) == qid {
                Ok(())
            } else {
                Err(Error::usage(
                    "the plan changed between the quote and the re-roll: nothing was spent",
                )
                .hint("ask for a new quote on the page"))
            }
        })),
    };
    let a = app.clone();
    let handle = std::thread::spawn(move || {
        let r = crate::commands::build::run_with(&args, &hooks);
        drop(hooks);
        a.access.release();
        *a.busy.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let (ok, msg) = match r {
            Ok(0) => (true, "re-roll done".to_string()),
            Ok(_) => (
                false,
                "re-roll finished with failures (Generations/errors.json)".to_string(),
            ),
            Err(e) => (false, e.to_string()),
        };
        a.emit("done", json!({"ok": ok, "message": msg}));
        a.emit("changed", json!({"why": "re-roll"}));
    });
    if let Some(old) = app
        .reroll
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(handle)
    {
        let _ = old.join();
    }
    app.emit("changed", json!({"why": "re-roll started"}));
    Ok(json!({"ok": true, "started": true, "quote": q.id}))
}

/// Progress of the page's re-roll, to the page (server-sent events).
struct Live {
    app: Arc<App>,
}

impl Live {
    fn line(&self, s: String) {
        if let Some(b) = self
            .app
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            b.log.push(s.clone());
            if b.log.len() > 200 {
                b.log.remove(0);
            }
        }
        self.app.emit("progress", json!({"line": s}));
    }
}

impl Reporter for Live {
    fn event(&self, e: Event) {
        match e {
            Event::Start {
                tasks,
                calls,
                credits,
                unit,
            } => self.line(format!(
                "building {tasks} task(s): {calls} call(s), about {}",
                unit.format(credits)
            )),
            Event::Submitted {
                task,
                slot,
                attempt,
            } => self.line(format!(
                "{task} c{}: submitted (attempt {attempt})",
                slot + 1
            )),
            Event::Accepted { task, slot } => {
                self.line(format!("{task} c{}: accepted (one call paid)", slot + 1))
            }
            Event::Reattached { task, slot } => {
                self.line(format!("{task} c{}: re-attached", slot + 1))
            }
            Event::Retry {
                task, slot, why, ..
            } => self.line(format!("{task} c{}: retrying ({why})", slot + 1)),
            Event::CandidateDone { task, slot } => {
                self.line(format!("{task} c{}: arrived", slot + 1));
                self.app.emit("changed", json!({"why": "candidate"}));
            }
            Event::CandidateFailed { task, slot, why } => {
                self.line(format!("{task} c{}: failed: {why}", slot + 1))
            }
            Event::TaskDone { task, state, note } => self.line(format!(
                "{task}: {state}{}",
                if note.is_empty() {
                    String::new()
                } else {
                    format!(" ({note})")
                }
            )),
            Event::Warn(m) => self.line(format!("warning: {m}")),
            Event::Info(m) => self.line(m),
        }
    }
}

/// Candidate `k` (1-based, as the page names it) among the task's first N.
fn candidate<'r>(
    rec: &'r nbbuild_cache::TaskRecord,
    t: &crate::compile::Task,
    k: u32,
) -> Result<&'r nbbuild_cache::Candidate, ApiError> {
    (1..=t.params.candidates)
        .contains(&k)
        .then(|| rec.candidate(k - 1))
        .flatten()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{} has no candidate {k}", t.label()),
            )
        })
}
