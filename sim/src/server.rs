//! The G-Labs protocol: routes, task lifecycle and fault injection.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::{media, qa, CreatedTask, SimConfig, SimStats};

/// Request bodies above this answer 413.
pub(crate) const MAX_BODY: usize = 50 << 20;
/// Bodies are drained up to this size so the client reads the 413; beyond
/// it the connection is closed.
const DRAIN_LIMIT: usize = 256 << 20;

const IMAGE_MODELS: &[&str] = &["nano_banana_2", "nano_banana_pro", "nano_banana_2_lite"];
const IMAGE_ASPECTS: &[&str] = &["1:1", "3:4", "4:3", "9:16", "16:9"];
const VIDEO_MODELS: &[&str] = &[
    "veo_31_fast",
    "veo_31_lite",
    "veo_31_quality",
    "veo_31_lite_relaxed",
];
const VIDEO_ASPECTS: &[&str] = &["16:9", "9:16"];
const VIDEO_LENGTHS: &[u64] = &[4, 6, 8];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Image,
    Video,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Video => "video",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Completed,
    Failed,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }
}

/// What a task will do once its latency has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Complete,
    Policy,
    Timeout,
    Lose,
}

/// How to make a produced file's bytes (made on download).
#[derive(Clone, Debug)]
enum Recipe {
    Still {
        prompt: String,
        variant: u64,
        width: u32,
        height: u32,
        flaw: bool,
    },
    Clip {
        prompt: String,
        variant: u64,
        seconds: u32,
        width: u32,
        height: u32,
    },
}

/// A validated submit.
struct Submit {
    kind: Kind,
    prompt: String,
    aspect: String,
    /// One produced file per entry; the entry is a file-name suffix
    /// (empty for none).
    outputs: Vec<String>,
    seconds: u32,
}

struct Task {
    id: String,
    kind: Kind,
    prompt: String,
    aspect: String,
    outputs: Vec<String>,
    seconds: u32,
    variant: u64,
    flaw: bool,
    outcome: Outcome,
    status: Status,
    created_at: String,
    completed_at: Option<String>,
    results: Vec<String>,
    error: Option<(i64, String, String)>,
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

#[derive(Default)]
struct TaskState {
    tasks: HashMap<String, Task>,
    /// Ids in submit order (may name forgotten tasks).
    recent: VecDeque<String>,
    queue: VecDeque<String>,
    pending: usize,
    running: usize,
    epoch: u64,
    next_id: u32,
    accepted: u64,
    variants: HashMap<(Kind, String), u64>,
    /// Produced files: how to make them, and their bytes once made.
    files: HashMap<String, (Recipe, Option<Bytes>)>,
    next_file: u64,
    stats: SimStats,
    /// Every task created, in order, and where each id is in it.
    log: Vec<CreatedTask>,
    log_index: HashMap<String, usize>,
}

impl TaskState {
    fn mark_forgotten(&mut self, id: &str) {
        if let Some(&i) = self.log_index.get(id) {
            self.log[i].forgotten = true;
        }
    }

    fn note_in_flight(&mut self) {
        let now = (self.pending + self.running) as u64;
        if now > self.stats.peak_in_flight {
            self.stats.peak_in_flight = now;
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) base: String,
    started: Instant,
    state: Mutex<TaskState>,
    submits: AtomicU64,
    error_rolls: AtomicU64,
    drop_rolls: AtomicU64,
    bad_file_rolls: AtomicU64,
    lose_answer_rolls: AtomicU64,
    pub(crate) qa_calls: AtomicU64,
    dead: AtomicBool,
    stopped: AtomicBool,
    die_tx: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, addr: SocketAddr) -> Arc<Shared> {
        let dead = config.die_after_submits == Some(0);
        let (die_tx, _) = watch::channel(dead);
        Arc::new(Shared {
            config,
            base: format!("http://{addr}"),
            started: Instant::now(),
            state: Mutex::new(TaskState::default()),
            submits: AtomicU64::new(0),
            error_rolls: AtomicU64::new(0),
            drop_rolls: AtomicU64::new(0),
            bad_file_rolls: AtomicU64::new(0),
            lose_answer_rolls: AtomicU64::new(0),
            qa_calls: AtomicU64::new(0),
            dead: AtomicBool::new(dead),
            stopped: AtomicBool::new(false),
            die_tx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, TaskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> SimStats {
        self.lock().stats
    }

    pub(crate) fn in_flight(&self) -> u64 {
        let st = self.lock();
        (st.pending + st.running) as u64
    }

    pub(crate) fn created(&self) -> Vec<CreatedTask> {
        self.lock().log.clone()
    }

    pub(crate) fn count_review(&self) {
        self.lock().stats.qa_reviews += 1;
    }

    /// Forget every task; returns how many were forgotten.
    pub(crate) fn restart(&self) -> usize {
        let mut st = self.lock();
        let n = st.tasks.len();
        st.stats.lost += n as u64;
        let ids: Vec<String> = st.tasks.keys().cloned().collect();
        for id in ids {
            st.mark_forgotten(&id);
        }
        st.epoch += 1;
        st.tasks.clear();
        st.recent.clear();
        st.queue.clear();
        st.pending = 0;
        st.running = 0;
        n
    }

    pub(crate) fn stop_workers(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// A pseudo-random number in [0, 1) from the seed, a label and a counter.
    fn unit(&self, label: &str, parts: &[&[u8]]) -> f64 {
        let mut h = blake3::Hasher::new();
        h.update(&self.config.seed.to_le_bytes());
        h.update(&(label.len() as u64).to_le_bytes());
        h.update(label.as_bytes());
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let b = h.finalize();
        let mut x = [0u8; 8];
        x.copy_from_slice(&b.as_bytes()[..8]);
        (u64::from_le_bytes(x) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn roll(&self, label: &str, counter: &AtomicU64, rate: f64) -> bool {
        if rate.is_nan() || rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed);
        self.unit(label, &[&n.to_le_bytes()]) < rate
    }

    /// An injected 500 (counted when it fires).
    fn roll_error(&self) -> bool {
        let hit = self.roll("error", &self.error_rolls, self.config.error_rate);
        if hit {
            self.lock().stats.errors += 1;
        }
        hit
    }

    fn roll_drop(&self) -> bool {
        self.roll("drop", &self.drop_rolls, self.config.drop_rate)
    }

    /// An error page served as a file (counted when it fires).
    fn roll_bad_file(&self) -> bool {
        let hit = self.roll("bad-file", &self.bad_file_rolls, self.config.bad_file_rate);
        if hit {
            self.lock().stats.bad_files += 1;
        }
        hit
    }

    fn roll_lose_answer(&self) -> bool {
        self.roll(
            "lose-answer",
            &self.lose_answer_rolls,
            self.config.lose_answer_rate,
        )
    }

    fn count_drop(&self) {
        self.lock().stats.dropped += 1;
    }

    fn is_flawed(&self, prompt: &str, variant: u64) -> bool {
        let rate = self.config.flaw_rate;
        if rate.is_nan() || rate <= 0.0 {
            return false;
        }
        rate >= 1.0 || self.unit("flaw", &[prompt.as_bytes(), &variant.to_le_bytes()]) < rate
    }

    /// An 8-hex-digit id: a bijection of a counter that is never reset, so
    /// ids are never reused (not even after a restart).
    fn task_id(&self, n: u32) -> String {
        let mut x = n.wrapping_add(self.config.seed as u32);
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        format!("{x:08x}")
    }

    /// `Ok` when no key is configured or the request carries it.
    pub(crate) fn authorized(&self, headers: &HeaderMap, bearer_too: bool) -> bool {
        let Some(key) = &self.config.api_key else {
            return true;
        };
        let given = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        if given == Some(key.as_str()) {
            return true;
        }
        if bearer_too {
            if let Some(auth) = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
            {
                if auth.strip_prefix("Bearer ").map(str::trim) == Some(key.as_str()) {
                    return true;
                }
            }
        }
        false
    }

    fn word_in(word: &Option<String>, prompt: &str) -> bool {
        match word {
            Some(w) if !w.is_empty() => prompt.to_lowercase().contains(&w.to_lowercase()),
            _ => false,
        }
    }

    /// Accept a validated submit: queue it and answer 202 (or 429 when
    /// `capacity` tasks are held, or a dropped connection when the answer is
    /// to be lost).
    fn accept(self: &Arc<Self>, req: Submit) -> Response {
        let mut guard = self.lock();
        let st = &mut *guard;
        // Checked under the same lock as the insert, so concurrent submits
        // can never push the held tasks past the capacity.
        if let Some(cap) = self.config.capacity {
            if st.pending + st.running >= cap {
                st.stats.rate_limited += 1;
                st.stats.capacity_refused += 1;
                drop(guard);
                return rate_limited(format!(
                    "server at capacity ({cap} tasks pending or running)"
                ));
            }
        }
        st.accepted += 1;
        let accepted = st.accepted;
        match req.kind {
            Kind::Image => st.stats.image_submits += 1,
            Kind::Video => st.stats.video_submits += 1,
        }
        let variant = {
            let count = st
                .variants
                .entry((req.kind, req.prompt.clone()))
                .or_insert(0);
            *count += 1;
            *count
        };
        let id = self.task_id(st.next_id);
        st.next_id = st.next_id.wrapping_add(1);
        let outcome = if self
            .config
            .lose_every
            .is_some_and(|n| n > 0 && accepted.is_multiple_of(n))
        {
            Outcome::Lose
        } else if Self::word_in(&self.config.policy_word, &req.prompt) {
            Outcome::Policy
        } else if Self::word_in(&self.config.timeout_word, &req.prompt) {
            Outcome::Timeout
        } else {
            Outcome::Complete
        };
        let flaw = req.kind == Kind::Image && self.is_flawed(&req.prompt, variant);
        st.log_index.insert(id.clone(), st.log.len());
        st.log.push(CreatedTask {
            task_id: id.clone(),
            kind: req.kind.name().to_string(),
            prompt: req.prompt.clone(),
            variant,
            flaw,
            forgotten: false,
            answer_lost: false,
        });
        let task = Task {
            id: id.clone(),
            kind: req.kind,
            prompt: req.prompt,
            aspect: req.aspect,
            outputs: req.outputs,
            seconds: req.seconds,
            variant,
            flaw,
            outcome,
            status: Status::Pending,
            created_at: iso_now(),
            completed_at: None,
            results: Vec::new(),
            error: None,
        };
        st.tasks.insert(id.clone(), task);
        st.recent.push_back(id.clone());
        st.queue.push_back(id.clone());
        st.pending += 1;
        st.note_in_flight();
        self.pump(st);
        drop(guard);

        if self.config.die_after_submits.is_some_and(|n| accepted >= n) {
            self.dead.store(true, Ordering::SeqCst);
            let _ = self.die_tx.send(true);
        }
        // The task exists and runs; only its answer is lost on the way back.
        if self.roll_lose_answer() {
            let mut st = self.lock();
            st.stats.answers_lost += 1;
            if let Some(&i) = st.log_index.get(&id) {
                st.log[i].answer_lost = true;
            }
            return dropped();
        }
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

    /// Start pending tasks while slots are free.
    fn pump(self: &Arc<Self>, st: &mut TaskState) {
        let slots = self.config.slots.max(1);
        while st.running < slots {
            let Some(id) = st.queue.pop_front() else {
                break;
            };
            let Some(task) = st.tasks.get_mut(&id) else {
                continue;
            };
            if task.status != Status::Pending {
                continue;
            }
            task.status = Status::Running;
            st.pending -= 1;
            st.running += 1;
            let base = match task.kind {
                Kind::Image => self.config.image_latency_ms,
                Kind::Video => self.config.video_latency_ms,
            };
            // The safety filter answers sooner than a generation.
            let latency = match task.outcome {
                Outcome::Policy => base / 4,
                _ => base,
            };
            let me = Arc::clone(self);
            let epoch = st.epoch;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(latency)).await;
                me.finish(&id, epoch);
            });
        }
        st.note_in_flight();
    }

    /// A running task's latency has passed.
    fn finish(self: &Arc<Self>, id: &str, epoch: u64) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.epoch != epoch {
            return;
        }
        let Some(task) = st.tasks.get_mut(id) else {
            return;
        };
        if task.status != Status::Running {
            return;
        }
        st.running -= 1;
        match task.outcome {
            Outcome::Complete => {
                for suffix in &task.outputs {
                    st.next_file += 1;
                    let n = st.next_file;
                    let (name, recipe) = match task.kind {
                        Kind::Image => {
                            let (width, height) = media::still_size(&task.aspect);
                            (
                                format!("image_{n:03}{suffix}.png"),
                                Recipe::Still {
                                    prompt: task.prompt.clone(),
                                    variant: task.variant,
                                    width,
                                    height,
                                    flaw: task.flaw,
                                },
                            )
                        }
                        Kind::Video => {
                            let (width, height) = media::clip_size(&task.aspect);
                            (
                                format!("video_{n:03}{suffix}.mp4"),
                                Recipe::Clip {
                                    prompt: task.prompt.clone(),
                                    variant: task.variant,
                                    seconds: task.seconds,
                                    width,
                                    height,
                                },
                            )
                        }
                    };
                    st.files.insert(name.clone(), (recipe, None));
                    task.results.push(name);
                }
                task.status = Status::Completed;
                task.completed_at = Some(iso_now());
            }
            Outcome::Policy => {
                task.status = Status::Failed;
                task.error = Some((
                    400,
                    "Prompt blocked by safety filter".into(),
                    "PUBLIC_ERROR_UNSAFE_GENERATION: the prompt was blocked by the safety filter"
                        .into(),
                ));
            }
            Outcome::Timeout => {
                task.status = Status::Failed;
                task.error = Some((
                    0,
                    "Timeout: no result generated".into(),
                    "No media was produced within the time limit".into(),
                ));
            }
            Outcome::Lose => {
                st.tasks.remove(id);
                st.stats.lost += 1;
                st.mark_forgotten(id);
            }
        }
        self.pump(st);
    }
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

/// The TCP listener, closed for good once the simulated server "dies".
struct SimListener {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    die: watch::Receiver<bool>,
}

impl axum::serve::Listener for SimListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            if *self.die.borrow() {
                self.inner = None;
            }
            let Some(listener) = &self.inner else {
                return std::future::pending().await;
            };
            tokio::select! {
                r = listener.accept() => match r {
                    Ok(conn) => {
                        if *self.die.borrow() {
                            continue; // dropping the stream closes it
                        }
                        return conn;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                changed = self.die.changed() => {
                    if changed.is_err() {
                        // The sender is gone: no death will come.
                        return std::future::pending().await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: oneshot::Receiver<()>,
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let listener = SimListener {
        inner: Some(listener),
        addr,
        die: shared.die_tx.subscribe(),
    };
    let app = router(shared);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = shutdown.await;
        })
        .await;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/image/generate", post(submit_image))
        .route("/api/video/generate", post(submit_video))
        .route("/api/status/{id}", get(status))
        .route("/api/result/{id}", get(result))
        .route("/api/files/{name}", get(file))
        .route("/api/tasks", get(tasks))
        .route("/api/stop/{id}", post(stop))
        .route("/v1/chat/completions", post(qa::chat_completions))
        .route("/v1/models", get(qa::models))
        .route("/sim/stats", get(sim_stats))
        .route("/sim/restart", post(sim_restart))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), faults))
        .with_state(shared)
}

/// A response whose body fails at once, so hyper aborts the connection
/// without having sent anything.
fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by the simulator"))
    });
    Response::new(Body::from_stream(stream))
}

/// Dropped connections (`drop_rate`) and a dead server.
async fn faults(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if s.dead.load(Ordering::SeqCst) {
        s.count_drop();
        return dropped();
    }
    if !req.uri().path().starts_with("/sim/") && s.roll_drop() {
        s.count_drop();
        return dropped();
    }
    next.run(req).await
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "Invalid or missing API key")
}

fn internal_error() -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// HTTP 429 with `Retry-After: 1`.
fn rate_limited(message: impl Into<String>) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Read a request body of at most [`MAX_BODY`] bytes; above that, 413.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large (max 50 MB)",
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| error(StatusCode::BAD_REQUEST, "Could not read request body"))?;
        total += chunk.len();
        if total > DRAIN_LIMIT {
            return Err(too_large());
        }
        if total <= MAX_BODY {
            buf.extend_from_slice(&chunk);
        }
    }
    if total > MAX_BODY {
        return Err(too_large());
    }
    Ok(buf)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found")
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
    let n = s.submits.fetch_add(1, Ordering::SeqCst) + 1;
    if s.config
        .rate_limit_every
        .is_some_and(|every| every > 0 && n.is_multiple_of(every))
    {
        s.lock().stats.rate_limited += 1;
        return rate_limited("rate limited");
    }
    if s.roll_error() {
        return internal_error();
    }
    match parse_submit(kind, &bytes) {
        Ok(req) => s.accept(req),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

fn parse_submit(kind: Kind, bytes: &[u8]) -> Result<Submit, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("Empty request body".into());
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("Invalid JSON body: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("Invalid JSON body: expected an object".into());
    };
    let prompt = match obj.get("prompt") {
        Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
        _ => return Err("Missing required field: prompt".into()),
    };
    let string_field = |name: &str| -> Result<Option<String>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("Invalid field: {name} must be a string")),
        }
    };
    let string_list = |name: &str| -> Result<Option<Vec<String>>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("Invalid field: {name} must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("Invalid field: {name} must be a list")),
        }
    };
    let refs = decode_references(obj.get("reference_images"))?;
    match kind {
        Kind::Image => {
            let model = string_field("model")?.unwrap_or_else(|| "nano_banana_2".into());
            if !IMAGE_MODELS.contains(&model.as_str()) {
                return Err(format!(
                    "Invalid model: {model} (expected one of {})",
                    IMAGE_MODELS.join(", ")
                ));
            }
            let aspect = string_field("aspect_ratio")?.unwrap_or_else(|| "1:1".into());
            if !IMAGE_ASPECTS.contains(&aspect.as_str()) {
                return Err(format!(
                    "Invalid aspect_ratio: {aspect} (expected one of {})",
                    IMAGE_ASPECTS.join(", ")
                ));
            }
            if refs.len() > 10 {
                return Err(format!(
                    "Too many reference_images: {} (at most 10)",
                    refs.len()
                ));
            }
            let upscale = string_list("upscale")?.unwrap_or_default();
            let suffix = match upscale.as_slice() {
                [] => String::new(),
                [u] if u == "2K" || u == "4K" => format!("_{u}"),
                _ => return Err("Invalid upscale: expected [\"2K\"] or [\"4K\"]".into()),
            };
            Ok(Submit {
                kind,
                prompt,
                aspect,
                outputs: vec![suffix],
                seconds: 0,
            })
        }
        Kind::Video => {
            let model = match string_field("model")? {
                Some(m) if !m.is_empty() => m,
                _ => return Err("MISSING_MODEL".into()),
            };
            if !VIDEO_MODELS.contains(&model.as_str()) {
                return Err(format!(
                    "Invalid model: {model} (expected one of {})",
                    VIDEO_MODELS.join(", ")
                ));
            }
            let aspect = string_field("aspect_ratio")?.unwrap_or_else(|| "16:9".into());
            if !VIDEO_ASPECTS.contains(&aspect.as_str()) {
                return Err(format!(
                    "Invalid aspect_ratio: {aspect} (expected one of {})",
                    VIDEO_ASPECTS.join(", ")
                ));
            }
            if refs.len() > 3 {
                return Err(format!(
                    "Too many reference_images: {} (at most 3)",
                    refs.len()
                ));
            }
            if let Some(mode) = string_field("mode")? {
                let want = match mode.as_str() {
                    "text_to_video" => 0,
                    "start_image" => 1,
                    "start_end_image" => 2,
                    _ => {
                        return Err(format!(
                            "Invalid mode: {mode} (expected text_to_video, start_image or start_end_image)"
                        ))
                    }
                };
                if refs.len() != want {
                    return Err(format!(
                        "Mode {mode} needs {want} reference image(s), got {}",
                        refs.len()
                    ));
                }
            }
            let seconds = match obj.get("video_length") {
                None | Some(Value::Null) => 8,
                Some(v) => match v.as_u64() {
                    Some(n) if VIDEO_LENGTHS.contains(&n) => n as u32,
                    _ => return Err("Invalid video_length: expected 4, 6 or 8".into()),
                },
            };
            let resolutions = string_list("resolution")?.unwrap_or_else(|| vec!["720p".into()]);
            if resolutions.is_empty() || resolutions.iter().any(|r| r.trim().is_empty()) {
                return Err("Invalid resolution: expected a list such as [\"720p\"]".into());
            }
            let outputs = if resolutions.len() == 1 {
                vec![String::new()]
            } else {
                resolutions
                    .iter()
                    .map(|r| {
                        let clean: String =
                            r.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                        format!("_{clean}")
                    })
                    .collect()
            };
            Ok(Submit {
                kind,
                prompt,
                aspect,
                outputs,
                seconds,
            })
        }
    }
}

/// Decode `reference_images`: data URIs, raw base64, or `{"data", "name"}`
/// objects. Returns the decoded bytes.
fn decode_references(v: Option<&Value>) -> Result<Vec<Vec<u8>>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("Invalid field: reference_images must be a list".into()),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = match item {
                Value::String(s) => s.as_str(),
                Value::Object(o) => match o.get("data") {
                    Some(Value::String(s)) => s.as_str(),
                    _ => {
                        return Err(format!(
                            "Invalid reference image {i}: an object needs a base64 \"data\" field"
                        ))
                    }
                },
                _ => {
                    return Err(format!(
                        "Invalid reference image {i}: expected a string or an object"
                    ))
                }
            };
            decode_image_text(text).map_err(|e| format!("Invalid reference image {i}: {e}"))
        })
        .collect()
}

/// Bytes from a data URI or raw base64 (standard or URL-safe alphabet,
/// padding optional, whitespace ignored).
pub(crate) fn decode_image_text(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err("URLs cannot be fetched: send the image bytes as base64".into());
    }
    let payload = if let Some(rest) = text.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| "malformed data URI".to_string())?;
        if !meta.ends_with(";base64") {
            return Err("data URI is not base64".into());
        }
        data
    } else {
        text
    };
    let clean: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    if clean.is_empty() {
        return Err("no data".into());
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = STANDARD
        .decode(&clean)
        .or_else(|_| STANDARD_NO_PAD.decode(&clean))
        .or_else(|_| URL_SAFE.decode(&clean))
        .or_else(|_| URL_SAFE_NO_PAD.decode(&clean))
        .map_err(|_| "not valid base64".to_string())?;
    if bytes.is_empty() {
        return Err("no data".into());
    }
    Ok(bytes)
}

fn task_not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("Task {id} not found"))
}

async fn status(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    if s.roll_error() {
        return internal_error();
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
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    if s.roll_error() {
        return internal_error();
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
    let mime = match recipe {
        Recipe::Still { .. } => "image/png",
        Recipe::Clip { .. } => "video/mp4",
    };
    let padding = s.config.clip_padding;
    let bytes = match cached {
        Some(b) => b,
        None => {
            let made = tokio::task::spawn_blocking(move || match recipe {
                Recipe::Still {
                    prompt,
                    variant,
                    width,
                    height,
                    flaw,
                } => media::still(&prompt, variant, width, height, flaw),
                Recipe::Clip {
                    prompt,
                    variant,
                    seconds,
                    width,
                    height,
                } => media::pad(
                    media::clip_sized(&prompt, variant, seconds, width, height),
                    padding,
                ),
            })
            .await;
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
    let mut guard = s.lock();
    let st = &mut *guard;
    let Some(task) = st.tasks.get_mut(&id) else {
        return task_not_found(&id);
    };
    let was = task.status;
    if matches!(was, Status::Pending | Status::Running) {
        task.status = Status::Failed;
        task.error = Some((
            499,
            "Stopped by user".into(),
            "The task was cancelled through the API".into(),
        ));
        if was == Status::Pending {
            st.pending -= 1;
        } else {
            st.running -= 1;
            s.pump(st);
        }
        Json(json!({ "task_id": id, "status": "failed", "stopped": true, "message": "Task stopped" }))
            .into_response()
    } else {
        Json(json!({
            "task_id": id,
            "status": was.name(),
            "stopped": false,
            "message": "Task already finished",
        }))
        .into_response()
    }
}

async fn sim_stats(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    Json(s.stats()).into_response()
}

async fn sim_restart(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    let n = s.restart();
    Json(json!({ "status": "restarted", "forgotten": n })).into_response()
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-04-01T10:20:30.123Z`.
pub(crate) fn iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        now.subsec_millis()
    )
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn ids_are_unique_hex() {
        let s = Shared::new(SimConfig::default(), "127.0.0.1:1".parse().unwrap());
        let ids: std::collections::HashSet<String> = (0..10_000).map(|n| s.task_id(n)).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|i| i.len() == 8 && i.chars().all(|c| c.is_ascii_hexdigit())));
    }

    #[test]
    fn references_decode() {
        let d = decode_image_text("data:image/png;base64,aGVsbG8=").unwrap();
        assert_eq!(d, b"hello");
        assert_eq!(decode_image_text("aGVsbG8").unwrap(), b"hello");
        assert!(decode_image_text("https://x/y.png").is_err());
        assert!(decode_image_text("!!!").is_err());
        let v = json!([{"data": "aGVsbG8=", "name": "x.png"}, "aGk="]);
        assert_eq!(decode_references(Some(&v)).unwrap().len(), 2);
    }
}
