//! The JSON API behind the page (documented in docs/review.md): the frame
//! every handler shares (errors as JSON answers, the blocking pool, the
//! lookups of a task and a candidate) and `GET /api/state`. The handlers
//! that change something are beside it: `pick` (picks and flags) and
//! `reroll` (quotes and re-rolls). Handlers do their work on the blocking
//! pool: the store and the flow file are plain blocking I/O.

mod pick;
mod reroll;

pub use pick::{flag, pick};
pub use reroll::{quote, reroll};

use super::access::Unavailable;
use super::flow_edit::EditError;
use super::flow_read::{find_task, load, Loaded};
use super::server::App;
use super::snapshot::{self, plan_summary, Extra};
use crate::commands::plan::make_plan;
use crate::compile::Compiled;
use crate::error::Error;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
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

/// What a plain build would now build, read again from the file on disk.
fn after_edit(app: &App, store: &Arc<nbbuild_cache::Store>) -> ApiResult {
    let l = load(&app.build)?;
    let c = compiled(&l)?;
    let plan = make_plan(&l.s, c, store);
    Ok(plan_summary(c, &plan))
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
