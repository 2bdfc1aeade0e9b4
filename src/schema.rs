//! The JSON nbbuild writes for scripts, as types: the build summary
//! (`--json`, also kept in the store's run log), `plan --json`,
//! `errors.json`, `explain --json`, `cache ... --json` and `status --json`
//! (a running build's live view, see holder.md, or the last run). Every
//! document carries `schema`, bumped when a field changes meaning or goes
//! away; new fields may appear within a version. docs/json.md lists them.

use crate::glabs::FailureKind;
use crate::key::{Change, Preimage};
use nbbuild_cache::{GcReport, Stats, TaskRecord};
use serde::Serialize;

/// The version of every document below.
pub const SCHEMA: u32 = 1;

fn schema() -> u32 {
    SCHEMA
}

/// The build summary: `nbbuild --json` on stdout, and each run's entry in
/// the store's run log (`nbbuild spend` reads it).
#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub flow: String,
    /// The generated flow written (or reused when nothing changed).
    pub output: Option<String>,
    /// `errors.json`, when something failed.
    pub errors: Option<String>,
    pub tasks: SummaryTasks,
    pub calls: SummaryCalls,
    /// Files the mirror received, when a mirror is configured.
    pub uploads: Option<u64>,
    /// `glabs` or `google`.
    pub provider: &'static str,
    /// `credits` or `usd`: what `credits` / `usd` below count.
    pub unit: &'static str,
    pub credits: f64,
    pub usd: f64,
    /// Rotten stored objects found this run, and what was done.
    pub repairs: serde_json::Value,
    /// The team cache's counts (hits, uploads, waits, ...), when configured.
    pub remote: Option<serde_json::Value>,
    pub duration_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct SummaryTasks {
    pub total: usize,
    pub fresh: usize,
    pub built: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Submissions the service accepted in this run (retries included), and QA
/// reviews asked.
#[derive(Debug, Serialize)]
pub struct SummaryCalls {
    pub image: u64,
    pub video: u64,
    pub qa: u64,
}

/// `nbbuild plan --json`: the quote, before anything is spent.
#[derive(Debug, Serialize)]
pub struct PlanDoc<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub flow: String,
    pub tasks: Vec<PlanTask<'a>>,
    pub summary: PlanSummary,
    /// Calls the build would make.
    pub calls: PlanCalls,
    pub provider: &'static str,
    pub unit: &'static str,
    pub credits: f64,
    pub usd: f64,
}

#[derive(Debug, Serialize)]
pub struct PlanTask<'a> {
    pub name: &'a str,
    pub kind: crate::compile::TaskKind,
    pub tab: &'a str,
    pub node_id: i64,
    pub title: &'a str,
    /// 1-based dynamic row.
    pub row: Option<usize>,
    pub key: Option<&'a str>,
    /// `fresh`, `stale`, `skipped`, `blocked`.
    pub status: &'static str,
    /// Why, when not fresh: `{kind, text}` for stale (the kind is the
    /// reason's fields), `{text}` otherwise; null when fresh.
    pub reason: serde_json::Value,
    pub calls: u32,
    pub credits: f64,
    pub usd: f64,
    /// Fresh because its record came from the team cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_cache: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct PlanSummary {
    pub total: usize,
    pub fresh: usize,
    pub stale: usize,
    pub blocked: usize,
}

#[derive(Debug, Serialize)]
pub struct PlanCalls {
    pub image: u64,
    pub video: u64,
}

/// `Generations/errors.json`: one entry per permanent failure.
#[derive(Debug, Serialize)]
pub struct ErrorsFile<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub flow: &'a str,
    /// The generated flow this run wrote (its file name).
    pub generated: Option<&'a str>,
    pub errors: Vec<ErrorEntry<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ErrorEntry<'a> {
    pub tab: &'a str,
    pub node_id: i64,
    pub title: &'a str,
    /// The task's name (`scene07`, `b-roll-row2`).
    pub name: String,
    /// 1-based dynamic row.
    pub row: Option<usize>,
    /// 1-based candidate, or null for the whole task.
    pub candidate: Option<u32>,
    pub kind: FailureKind,
    pub attempts: u32,
    pub message: &'a str,
    /// The prompt's first 200 characters.
    pub prompt: String,
}

/// `nbbuild explain --json`.
#[derive(Debug, Serialize)]
pub struct Explained<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub tasks: Vec<ExplainedTask<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ExplainedTask<'a> {
    pub name: &'a str,
    pub key: Option<&'a str>,
    /// `fresh: ...`, `stale: ...`, `blocked: ...`.
    pub status: String,
    /// The preimage the key is computed from now.
    pub current: Option<&'a Preimage>,
    /// The preimage stored under the key, or under the previous key.
    pub stored: Option<Preimage>,
    pub previous_key: Option<&'a str>,
    /// Field by field, what changed since the previous key.
    pub changes: Vec<Change>,
}

/// `nbbuild cache path --json`.
#[derive(Debug, Serialize)]
pub struct CachePath {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub path: String,
}

/// `nbbuild cache ls --json`.
#[derive(Debug, Serialize)]
pub struct CacheList<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub tasks: Vec<CacheRow<'a>>,
}

#[derive(Debug, Serialize)]
pub struct CacheRow<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub kind: Option<&'a serde_json::Value>,
    /// `complete`, `partial 2/4`, `complete, 1 flagged`, `3/4, 1 in flight`.
    pub status: String,
    pub candidates: usize,
    pub wanted: u64,
    pub in_flight: usize,
    pub history: usize,
    pub updated_ms: u64,
}

/// `nbbuild cache show --json`.
#[derive(Debug, Serialize)]
pub struct CacheShow<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub tasks: Vec<CacheShown<'a>>,
}

#[derive(Debug, Serialize)]
pub struct CacheShown<'a> {
    pub key: &'a str,
    pub record: &'a TaskRecord,
}

/// `nbbuild cache stats --json`.
#[derive(Debug, Serialize)]
pub struct CacheStats<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub path: String,
    pub stats: &'a Stats,
}

/// `nbbuild cache gc --json`.
#[derive(Debug, Serialize)]
pub struct CacheGc<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub gc: &'a GcReport,
}

/// `nbbuild cache verify --json`.
#[derive(Debug, Serialize)]
pub struct CacheVerify<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    pub ok: bool,
    pub objects_checked: u64,
    pub bytes_checked: u64,
    pub problems: Vec<Problem<'a>>,
    pub repair: bool,
    /// The assets folder repairs were taken from, if any.
    pub assets: Option<String>,
    pub repairs: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    pub kind: &'a str,
    pub what: &'a str,
    pub detail: &'a str,
    pub harmless: bool,
    pub repaired: bool,
}

/// `nbbuild status --json` while a build runs: its live view, as the
/// holder's `status` operation answers it (docs/holder.md). Every count
/// comes from the progress events the terminal shows.
#[derive(Debug, Serialize)]
pub struct LiveView<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    /// False once `phase` is `done`.
    pub running: bool,
    pub pid: u32,
    pub flow: &'a str,
    /// `planning`, `generating`, `publishing`, `writing outputs`, `done`.
    pub phase: &'static str,
    pub started_ms: u64,
    pub elapsed_ms: u64,
    pub tasks: LiveTasks,
    pub calls: LiveCalls,
    pub credits: LiveCredits,
    pub candidates: LiveCandidates,
    pub in_flight: Vec<LiveFlight<'a>>,
    pub failures: &'a [LiveFailure],
    pub warnings: &'a [String],
    /// Mean submission-to-stored time per kind, this run's submissions only.
    pub latency_ms: LiveLatency,
    /// A rough estimate of the time left; null until it can be made.
    pub eta_ms: Option<u64>,
    /// The run's summary as recorded, once `phase` is `done`.
    pub summary: Option<&'a serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct LiveTasks {
    pub total: usize,
    /// Stale tasks in the plan's quote (null before the plan).
    pub to_build: Option<usize>,
    pub done: usize,
    pub running: usize,
    pub waiting: usize,
    pub built: usize,
    pub fresh: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_run: usize,
}

/// Submissions sent (`made`: retries count again), and the plan's calls.
#[derive(Debug, Serialize)]
pub struct LiveCalls {
    pub made: u64,
    pub image: u64,
    pub video: u64,
    pub planned: Option<u64>,
    pub planned_image: Option<u64>,
    pub planned_video: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct LiveCredits {
    pub spent: f64,
    pub quote: Option<f64>,
    /// `credits` or `usd`.
    pub unit: &'static str,
}

#[derive(Debug, Serialize)]
pub struct LiveCandidates {
    pub stored: u64,
    pub failed: u64,
}

/// A candidate between its submission (or re-attachment) and its arrival.
#[derive(Debug, Serialize)]
pub struct LiveFlight<'a> {
    pub task: &'a str,
    pub kind: crate::compile::TaskKind,
    /// 1-based.
    pub candidate: u32,
    pub attempt: u32,
    pub state: &'static str,
    pub elapsed_ms: u64,
}

/// A candidate that failed for good.
#[derive(Debug, Clone, Serialize)]
pub struct LiveFailure {
    pub task: String,
    /// 1-based.
    pub candidate: u32,
    pub why: String,
}

#[derive(Debug, Serialize)]
pub struct LiveLatency {
    pub image: Option<u64>,
    pub video: Option<u64>,
}

/// `nbbuild status --json` when no build is running: the last entry of
/// the store's run log (`{at, summary}`), null when none is recorded.
#[derive(Debug, Serialize)]
pub struct LastRun<'a> {
    #[serde(serialize_with = "version")]
    pub schema: (),
    /// Always false: a running build answers with its [`LiveView`].
    pub running: bool,
    pub last_run: Option<&'a serde_json::Value>,
}

/// Writes [`SCHEMA`] for the unit `schema` field every document has.
fn version<S: serde::Serializer>(_: &(), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u32(schema())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_says_its_schema_first() {
        let v = serde_json::to_value(CachePath {
            schema: (),
            path: "/p/.nbbuild".into(),
        })
        .unwrap();
        assert_eq!(v["schema"], SCHEMA);
        let text = serde_json::to_string(&ErrorsFile {
            schema: (),
            flow: "F",
            generated: None,
            errors: vec![],
        })
        .unwrap();
        assert!(text.starts_with(r#"{"schema":1,"#), "{text}");
    }
}
