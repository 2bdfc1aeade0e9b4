//! The HTTP server: routes, the page and its assets, media by content hash
//! (with range requests, for clips), server-sent events, and a watcher that
//! notices builds from other terminals without touching the store.

use super::access::StoreAccess;
use super::security::{guard, Guard};
use super::snapshot::Media;
use crate::cli::BuildArgs;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{broadcast, watch};

/// A re-roll started from the page.
pub struct Busy {
    pub tasks: Vec<String>,
    pub log: Vec<String>,
}

/// Everything the handlers share.
pub struct App {
    pub build: BuildArgs,
    pub flow_path: PathBuf,
    pub access: Arc<StoreAccess>,
    pub read_only: bool,
    pub guard: Arc<Guard>,
    /// Media the page may ask for: content hash -> file.
    pub media: RwLock<BTreeMap<String, Media>>,
    /// The last state read with the store open (shown while a build holds it).
    pub last: Mutex<Option<serde_json::Value>>,
    pub busy: Arc<Mutex<Option<Busy>>>,
    /// Server-sent events: (event name, JSON data).
    pub events: broadcast::Sender<(String, String)>,
    /// The re-roll thread, joined before the server exits.
    pub reroll: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub shutdown: watch::Receiver<bool>,
}

impl App {
    pub fn emit(&self, event: &str, data: serde_json::Value) {
        let _ = self.events.send((event.to_string(), data.to_string()));
    }
}

pub fn router(app: Arc<App>) -> Router {
    let g = app.guard.clone();
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/favicon.svg", get(favicon))
        .route("/media/{hash}", get(media))
        .route("/api/state", get(super::api::state))
        .route("/api/events", get(events))
        .route("/api/pick", post(super::api::pick))
        .route("/api/flag", post(super::api::flag))
        .route("/api/quote", post(super::api::quote))
        .route("/api/reroll", post(super::api::reroll))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(g, guard))
        .with_state(app)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

async fn index(State(app): State<Arc<App>>) -> Response {
    let html = super::assets::page(&app.guard.csrf, false);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        super::assets::APP_JS,
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        super::assets::FAVICON,
    )
        .into_response()
}

async fn app_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        super::assets::APP_CSS,
    )
        .into_response()
}

/// One range of a `Range: bytes=...` header over a file of `len` bytes:
/// `Some(Ok((start, end_inclusive)))`, `Some(Err(()))` when unsatisfiable,
/// `None` when absent or not a single byte range (then the whole file).
fn parse_range(h: &HeaderMap, len: u64) -> Option<Result<(u64, u64), ()>> {
    let v = h.get(header::RANGE)?.to_str().ok()?.trim();
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(r))
}

/// Media by content hash: only hashes the page was shown, never a path.
async fn media(
    State(app): State<Arc<App>>,
    UrlPath(hash): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let found = if nbbuild_cache::is_object_id(&hash) {
        app.media
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned()
    } else {
        None
    };
    let Some(m) = found else {
        return (StatusCode::NOT_FOUND, "no such media").into_response();
    };
    serve_file(&m, &hash, &headers).await
}

async fn serve_file(m: &Media, hash: &str, headers: &HeaderMap) -> Response {
    let Ok(mut f) = tokio::fs::File::open(&m.path).await else {
        return (StatusCode::NOT_FOUND, "media is gone").into_response();
    };
    let Ok(len) = f.metadata().await.map(|x| x.len()) else {
        return (StatusCode::NOT_FOUND, "media is gone").into_response();
    };
    let etag = format!("\"{hash}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(hash))
    {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let b = Response::builder()
        .header(header::CONTENT_TYPE, m.mime)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(
            header::CACHE_CONTROL,
            "private, max-age=31536000, immutable",
        );
    let (status, start, end) = match parse_range(headers, len) {
        Some(Err(())) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let b = if status == StatusCode::PARTIAL_CONTENT {
        b.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
    } else {
        b
    };
    if start > 0 && f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read media").into_response();
    }
    // Streamed in chunks: a clip is never held in memory.
    let stream = futures_util::stream::unfold((f, count), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (left.min(256 * 1024)) as usize];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from(buf)),
                    (f, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    b.status(status)
        .header(header::CONTENT_LENGTH, count)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Server-sent events: `changed` (read the state again), `progress` (a
/// re-roll's log line), `build` (a build from another terminal started or
/// ended), `done` (the page's re-roll finished).
async fn events(
    State(app): State<Arc<App>>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = app.events.subscribe();
    let stop = app.shutdown.clone();
    let stream = futures_util::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
        tokio::select! {
            r = rx.recv() => match r {
                Ok((name, data)) => {
                    let ev = SseEvent::default().event(name).data(data);
                    Some((Ok(ev), (rx, stop)))
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let ev = SseEvent::default().event("changed").data("{}");
                    Some((Ok(ev), (rx, stop)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            _ = stop.changed() => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

/// Every 0.7 s: did the flow file change, did a build from another
/// terminal take or give back the store, and while one runs, did it store a
/// candidate or end a task (asked of its holder, never of the store)?
pub async fn watch_outside(app: Arc<App>) {
    let stat = |p: &PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let mut flow = stat(&app.flow_path);
    let mut holder = app.access.other_holder().map(|h| h.pid);
    let mut progress = None;
    let mut stop = app.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(700)) => {}
            _ = stop.changed() => return,
        }
        let now = stat(&app.flow_path);
        if now != flow {
            flow = now;
            app.emit("changed", serde_json::json!({"why": "flow"}));
        }
        let h = app.access.other_holder();
        let pid = h.as_ref().map(|h| h.pid);
        // A build elsewhere: follow it through its holder, and refresh the
        // page whenever a candidate lands or a task ends.
        if pid.is_some() && pid == holder {
            let dir = app.access.dir().to_path_buf();
            let now = tokio::task::spawn_blocking(move || {
                let live = crate::holder::client::HolderClient::connect(&dir)
                    .ok()?
                    .status()
                    .ok()??;
                Some((
                    live["candidates"]["stored"].clone(),
                    live["tasks"]["done"].clone(),
                    live["calls"].clone(),
                ))
            })
            .await
            .ok()
            .flatten();
            if now.is_some() && now != progress {
                progress = now;
                app.emit(
                    "changed",
                    serde_json::json!({"why": "outside build progress"}),
                );
            }
        }
        if pid != holder {
            holder = pid;
            match h {
                Some(h) => app.emit("build", serde_json::json!({"running": true, "pid": h.pid})),
                None => {
                    app.emit("build", serde_json::json!({"running": false}));
                    app.emit("changed", serde_json::json!({"why": "build ended"}));
                }
            }
        }
    }
}
