//! `POST /api/quote` and `POST /api/reroll`: what re-rolling a task (with
//! the page's prompt edit, if any) would spend, and the re-roll itself, run
//! as a build on a thread of its own and reported to the page as it goes.

use super::{blocking, compiled, task, writable, ApiError, ApiResult};
use crate::commands::plan::make_plan;
use crate::compile::Compiled;
use crate::error::Error;
use crate::progress::{start_line, Event, Reporter};
use crate::review::flow_edit::{set_prompt, write_flow};
use crate::review::flow_read::{load, prompt_node, task_id, Loaded};
use crate::review::quote::{quote as make_quote, spend_id, Quote};
use crate::review::server::{App, Busy};
use crate::settings::Settings;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

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
            let (node, plain) = prompt_node(&l.s.project.flow, t).ok_or_else(|| {
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
            } => self.line(start_line(tasks, calls, credits, unit)),
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
