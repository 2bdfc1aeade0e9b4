//! A simulator of the G-Labs generation API, and of Google's Gemini API, for
//! nbbuild's tests and offline demos: a real HTTP server on loopback that
//! speaks the protocol described in `glabs.md` (submit, poll, download) and,
//! on the same port, the `/v1beta/*` calls of the google route
//! (docs/providers.md), with latency, a bounded number of
//! slots, fault injection, deterministic synthetic media ([`media`]) and an
//! OpenAI-style chat-completions reviewer (`POST /v1/chat/completions`) that
//! flags stills carrying a planted flaw.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = nbbuild_sim::start(nbbuild_sim::SimConfig::default(), 0).await?;
//! println!("G-Labs at {}", sim.url());
//! let stats = sim.stats().await;
//! sim.shutdown().await;
//! # let _ = stats; Ok(()) }
//! ```

pub mod media;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the simulator behaves. `Default` gives a well-behaved server with the
/// documented latencies and five slots.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// When set, every call but `GET /api/health` and `GET /api/files/*`
    /// needs `X-API-Key` equal to it (the reviewer also takes
    /// `Authorization: Bearer KEY`), else 401.
    pub api_key: Option<String>,
    /// Time from the start of running to completed, for stills.
    pub image_latency_ms: u64,
    /// Time from the start of running to completed, for clips.
    pub video_latency_ms: u64,
    /// Tasks that run at once; the rest wait as `pending`.
    pub slots: usize,
    /// Share of stills with a planted anatomical flaw (0..=1).
    pub flaw_rate: f64,
    /// Every Nth submit answers HTTP 429 with `Retry-After: 1`.
    pub rate_limit_every: Option<u64>,
    /// Share of submits and polls answering HTTP 500 (pseudo-random from
    /// `seed`).
    pub error_rate: f64,
    /// A task whose prompt contains it (case-insensitive) fails with
    /// error_code 400, `Prompt blocked by safety filter`.
    pub policy_word: Option<String>,
    /// A task whose prompt contains it (case-insensitive) fails after its
    /// latency with error_code 0, `Timeout: no result generated`.
    pub timeout_word: Option<String>,
    /// Every Nth accepted task is forgotten when it would have finished:
    /// polls then get 404, as after an app restart.
    pub lose_every: Option<u64>,
    /// Share of requests (all but `/sim/*`) whose connection is dropped
    /// without a response.
    pub drop_rate: f64,
    /// After N accepted submits the server stops accepting connections and
    /// drops every further request.
    pub die_after_submits: Option<u64>,
    /// Seed of every pseudo-random decision.
    pub seed: u64,
    /// Extra bytes appended to every clip (as an ISO BMFF `free` box) to
    /// stand in for large production clips (memory and upload benchmarks).
    pub clip_padding: u64,
    /// Share of file downloads answered with an HTML error page (status
    /// 200), as a tunnel does when the app behind it hiccups.
    pub bad_file_rate: f64,
    /// Share of accepted submits whose answer is lost: the task is created,
    /// counted and runs to completion, then the connection is dropped before
    /// the 202 reaches the client (pseudo-random from `seed`), as when a
    /// tunnel loses the way back.
    pub lose_answer_rate: f64,
    /// At most this many tasks pending or running: a submit arriving while
    /// that many are held answers HTTP 429 with `Retry-After: 1` and creates
    /// nothing (`Some(0)` refuses every submit). `None`: no limit beyond the
    /// queue.
    pub capacity: Option<usize>,
    /// Google's per-day quota: the Gemini API room answers every submit
    /// after the first N with 429 `RESOURCE_EXHAUSTED` and a per-day
    /// `QuotaFailure` (until the simulator restarts: a day, in effect).
    pub daily_quota: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: None,
            image_latency_ms: 300,
            video_latency_ms: 3000,
            slots: 5,
            flaw_rate: 0.0,
            rate_limit_every: None,
            error_rate: 0.0,
            policy_word: None,
            timeout_word: None,
            lose_every: None,
            drop_rate: 0.0,
            die_after_submits: None,
            seed: 0,
            clip_padding: 0,
            bad_file_rate: 0.0,
            lose_answer_rate: 0.0,
            capacity: None,
            daily_quota: None,
        }
    }
}

/// Counters since the simulator started, as served by `GET /sim/stats`.
///
/// The first four say what was asked for and paid; the rest say which
/// injected faults fired, so a test can show that its fault happened.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct SimStats {
    /// Image tasks created (accepted submits, the lost answers included):
    /// what a real G-Labs would bill.
    pub image_submits: u64,
    /// Video tasks created, likewise.
    pub video_submits: u64,
    /// Answered reviews on `POST /v1/chat/completions`.
    pub qa_reviews: u64,
    /// The most generation tasks ever held pending or running at once.
    pub peak_in_flight: u64,
    /// Requests whose connection was dropped before any handler ran
    /// (`drop_rate`, or the server dead after `die_after_submits`).
    pub dropped: u64,
    /// Submits answered 429 (`rate_limit_every` and `capacity`).
    pub rate_limited: u64,
    /// Injected HTTP 500s (`error_rate`), on submits and polls.
    pub errors: u64,
    /// Tasks forgotten: by `lose_every` when they would have finished, and
    /// every task held at a restart.
    pub lost: u64,
    /// Downloads answered with an HTML error page (`bad_file_rate`).
    pub bad_files: u64,
    /// Submits whose task was created but whose answer was dropped
    /// (`lose_answer_rate`); counted in `image_submits`/`video_submits` too.
    pub answers_lost: u64,
    /// Submits refused with 429 because `capacity` tasks were held (also
    /// counted in `rate_limited`, never in the submit counts).
    pub capacity_refused: u64,
    /// Gemini API submits refused past `daily_quota` (also counted in
    /// `rate_limited`, never in the submit counts).
    pub daily_quota_refused: u64,
}

/// A task the simulator created (what a real G-Labs would bill), in
/// creation order, kept after the task is forgotten: tests compare it with
/// what the client stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CreatedTask {
    pub task_id: String,
    /// `image` or `video`.
    #[serde(rename = "type")]
    pub kind: String,
    pub prompt: String,
    /// 1 for the first task of this type and prompt, 2 for the next, ...
    pub variant: u64,
    /// A still with a planted flaw (`flaw_rate`), which the reviewer flags.
    pub flaw: bool,
    /// Forgotten by `lose_every` or a restart (polls answer 404).
    pub forgotten: bool,
    /// Its 202 answer was dropped (`lose_answer_rate`).
    pub answer_lost: bool,
}

/// A running simulator. Dropping it stops the server too (without waiting);
/// [`SimHandle::shutdown`] stops it and waits.
pub struct SimHandle {
    /// The bound address (127.0.0.1 and the port).
    pub addr: SocketAddr,
    shared: Arc<server::Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters so far.
    pub async fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// Forget every task, like a restart of the G-Labs app: later polls of
    /// old ids answer 404. Produced files stay downloadable.
    pub async fn restart(&self) {
        self.shared.restart();
    }

    /// Generation tasks pending or running now.
    pub async fn in_flight(&self) -> u64 {
        self.shared.in_flight()
    }

    /// Every task created since start, in creation order.
    pub async fn created(&self) -> Vec<CreatedTask> {
        self.shared.created()
    }

    /// Stop serving and wait for the server task (at most a few seconds,
    /// then it is aborted).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut join) = self.join.take() {
            if tokio::time::timeout(Duration::from_secs(3), &mut join)
                .await
                .is_err()
            {
                join.abort();
            }
        }
        self.shared.stop_workers();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Bind `127.0.0.1:port` (0 = an ephemeral port) and serve on the current
/// tokio runtime in a spawned task.
pub async fn start(config: SimConfig, port: u16) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let shared = server::Shared::new(config, addr);
    let (tx, rx) = oneshot::channel();
    let join = tokio::spawn(server::serve(listener, shared.clone(), rx));
    Ok(SimHandle {
        addr,
        shared,
        shutdown: Some(tx),
        join: Some(join),
    })
}

/// Start, print `G-Labs simulator listening on http://127.0.0.1:PORT` to
/// stderr, and serve until Ctrl-C.
pub async fn serve_forever(config: SimConfig, port: u16) -> std::io::Result<()> {
    let sim = start(config, port).await?;
    eprintln!("G-Labs simulator listening on {}", sim.url());
    let result = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    result
}
