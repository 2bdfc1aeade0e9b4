//! `POST /api/pick` and `POST /api/flag`: a person's choice among a task's
//! candidates, written into the flow (a pick, in PatchWork's own fields)
//! or into the store (a flag, as the human reviewer's verdict).

use super::{after_edit, blocking, candidate, compiled, task, writable, ApiError, ApiResult};
use crate::commands::plan::make_plan;
use crate::review::flow_edit::{pick_value, set_pick, write_flow};
use crate::review::flow_read::{gates_of, load};
use crate::review::server::App;
use crate::review::snapshot;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

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
