//! The G-Labs room: the routes of `glabs.md` (`/api/*`): health, image and
//! video submits, status and result polls, the task list, stop, and file
//! downloads, and the JSON shapes they answer with.

mod checks;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::faults::dropped;
use super::http::{error, internal_error, rate_limited, read_body, unauthorized};
use super::lifecycle::Admission;
use super::state::Shared;
use super::tasks::{Kind, Status, Task};

/// The G-Labs routes, for the router in `server`.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/image/generate", post(submit_image))
        .route("/api/video/generate", post(submit_video))
        .route("/api/status/{id}", get(status))
        .route("/api/result/{id}", get(result))
        .route("/api/files/{name}", get(file))
        .route("/api/tasks", get(tasks))
        .route("/api/stop/{id}", post(stop))
}

/// A task as the status endpoints show it (a struct, so the keys keep the
/// documented order whatever serde_json's features).
#[derive(Serialize)]
struct TaskView<'a> {
    task_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    prompt: &'a str,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_detail: Option<&'a str>,
}

impl Task {
    fn view(&self, base: &str) -> TaskView<'_> {
        let mut v = TaskView {
            task_id: &self.id,
            kind: self.kind.name(),
            status: self.status.name(),
            prompt: &self.prompt,
            created_at: &self.created_at,
            results: None,
            completed_at: None,
            error_code: None,
            error: None,
            error_detail: None,
        };
        match self.status {
            Status::Completed => {
                v.results = Some(
                    self.results
                        .iter()
                        .map(|name| format!("{base}/api/files/{name}"))
                        .collect(),
                );
                v.completed_at = Some(self.completed_at.as_deref().unwrap_or(&self.created_at));
            }
            Status::Failed => {
                let (code, error, detail) = self
                    .error
                    .as_ref()
                    .map(|(c, e, d)| (*c, e.as_str(), d.as_str()))
                    .unwrap_or((0, "", ""));
                v.error_code = Some(code);
                v.error = Some(error);
                v.error_detail = Some(detail);
            }
            Status::Pending | Status::Running => {}
        }
        v
    }
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        server: &'static str,
        uptime: u64,
        tasks_pending: usize,
        tasks_running: usize,
    }
    let st = s.lock();
    Json(Health {
        status: "ok",
        server: "G-Labs Webhook",
        uptime: s.started.elapsed().as_secs(),
        tasks_pending: st.pending,
        tasks_running: st.running,
    })
    .into_response()
}

async fn submit_image(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    submit(s, Kind::Image, headers, body).await
}

async fn submit_video(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    submit(s, Kind::Video, headers, body).await
}

async fn submit(s: Arc<Shared>, kind: Kind, headers: HeaderMap, body: Body) -> Response {
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if s.rate_limit_due() {
        return rate_limited("rate limited");
    }
    if s.roll_error() {
        return internal_error();
    }
    let req = match checks::parse_submit(kind, &bytes) {
        Ok(req) => req,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match s.accept(req) {
        Admission::AtCapacity(cap) => rate_limited(format!(
            "server at capacity ({cap} tasks pending or running)"
        )),
        Admission::AnswerLost => dropped(),
        Admission::Created(id) => accepted(id),
    }
}

/// The 202 of an accepted submit.
fn accepted(id: String) -> Response {
    #[derive(Serialize)]
    struct Accepted {
        task_id: String,
        status: &'static str,
        poll_url: String,
    }
    let poll_url = format!("/api/status/{id}");
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            task_id: id,
            status: "pending",
            poll_url,
        }),
    )
        .into_response()
}

fn task_not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("Task {id} not found"))
}

/// What both polls check before they look the task up: the key, then the
/// profile's share of 500s.
fn poll_refused(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    if !s.authorized(headers, false) {
        return Some(unauthorized());
    }
    if s.roll_error() {
        return Some(internal_error());
    }
    None
}

async fn status(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = poll_refused(&s, &headers) {
        return refused;
    }
    let st = s.lock();
    match st.tasks.get(&id) {
        Some(task) => Json(task.view(&s.base)).into_response(),
        None => task_not_found(&id),
    }
}

async fn result(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = poll_refused(&s, &headers) {
        return refused;
    }
    let st = s.lock();
    let Some(task) = st.tasks.get(&id) else {
        return task_not_found(&id);
    };
    match task.status {
        Status::Completed => Json(task.view(&s.base)).into_response(),
        Status::Failed => (StatusCode::BAD_REQUEST, Json(task.view(&s.base))).into_response(),
        other => error(
            StatusCode::BAD_REQUEST,
            format!("Task {id} is not completed (status: {})", other.name()),
        ),
    }
}

/// Download a produced file. Bytes are made on the first download (off the
/// async threads) and kept.
async fn file(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    if s.roll_bad_file() {
        // What a tunnel answers when the app behind it hiccups: an HTML page, with 200.
        return (
            StatusCode::OK,
            [("content-type", "text/html")],
            "<html><body><h1>502 Bad Gateway</h1>cloudflared</body></html>",
        )
            .into_response();
    }
    let entry = s.lock().files.get(&name).cloned();
    let Some((recipe, cached)) = entry else {
        return error(StatusCode::NOT_FOUND, format!("File {name} not found"));
    };
    let mime = recipe.mime();
    let padding = s.config.clip_padding;
    let bytes = match cached {
        Some(b) => b,
        None => {
            let made = tokio::task::spawn_blocking(move || recipe.make(padding)).await;
            let Ok(made) = made else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "Could not read file");
            };
            let made = Bytes::from(made);
            if let Some(entry) = s.lock().files.get_mut(&name) {
                entry.1 = Some(made.clone());
            }
            made
        }
    };
    ([(header::CONTENT_TYPE, mime)], bytes).into_response()
}

async fn tasks(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    let st = s.lock();
    #[derive(Serialize)]
    struct List<'a> {
        tasks: Vec<TaskView<'a>>,
        total: usize,
    }
    let list = st
        .recent
        .iter()
        .rev()
        .filter_map(|id| st.tasks.get(id))
        .take(50)
        .map(|t| t.view(&s.base))
        .collect();
    Json(List {
        tasks: list,
        total: st.tasks.len(),
    })
    .into_response()
}

async fn stop(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    match s.stop_task(&id) {
        None => task_not_found(&id),
        Some(Status::Pending | Status::Running) => Json(
            json!({ "task_id": id, "status": "failed", "stopped": true, "message": "Task stopped" }),
        )
        .into_response(),
        Some(was) => Json(json!({
            "task_id": id,
            "status": was.name(),
            "stopped": false,
            "message": "Task already finished",
        }))
        .into_response(),
    }
}
