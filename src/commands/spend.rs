//! `nbbuild spend`: the ledger. Every build records its summary in the store;
//! this lists each run's calls, credits, flow and outcome, with totals per
//! day and per flow. The figures are the builds' own `--json` summaries.

use crate::cli::SpendArgs;
use crate::error::{Error, Result};
use chrono::TimeZone;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
struct Run {
    /// Local date and time the run ended.
    at: String,
    day: String,
    flow: String,
    image_calls: u64,
    video_calls: u64,
    credits: f64,
    /// `ok`, `failed` (something failed) or `nothing to do`.
    outcome: String,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Total {
    runs: u64,
    image_calls: u64,
    video_calls: u64,
    credits: f64,
}

impl Total {
    fn add(&mut self, r: &Run) {
        self.runs += 1;
        self.image_calls += r.image_calls;
        self.video_calls += r.video_calls;
        self.credits += r.credits;
    }
}

#[derive(Debug, Serialize)]
struct Ledger {
    schema: u32,
    runs: Vec<Run>,
    per_day: BTreeMap<String, Total>,
    per_flow: BTreeMap<String, Total>,
    total: Total,
}

fn run_of(v: &Value) -> Option<Run> {
    let at = v["at"].as_u64()?;
    let s = &v["summary"];
    let when = chrono::Local.timestamp_millis_opt(at as i64).single()?;
    let n = |p: &str| s.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (image_calls, video_calls) = (n("/calls/image"), n("/calls/video"));
    let outcome = if n("/tasks/failed") + n("/tasks/skipped") > 0 || !s["errors"].is_null() {
        "failed"
    } else if image_calls + video_calls == 0 {
        "nothing to do"
    } else {
        "ok"
    };
    Some(Run {
        at: when.format("%Y-%m-%d %H:%M:%S").to_string(),
        day: when.format("%Y-%m-%d").to_string(),
        flow: s["flow"].as_str().unwrap_or("?").to_string(),
        image_calls,
        video_calls,
        credits: s["credits"].as_f64().unwrap_or(0.0),
        outcome: outcome.into(),
    })
}

pub fn run(a: &SpendArgs) -> Result<i32> {
    if let Some(d) = &a.since {
        if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
            return Err(Error::usage(format!("--since {d:?} is not a date"))
                .hint("use YYYY-MM-DD, e.g. --since 2026-11-01"));
        }
    }
    // Through the build holding the store, when one runs.
    let store = super::cache::open_read(&a.store)?;
    let records = store.runs()?;
    let runs: Vec<Run> = records
        .iter()
        .filter_map(run_of)
        .filter(|r| {
            a.since
                .as_ref()
                .is_none_or(|d| r.day.as_str() >= d.as_str())
        })
        .collect();
    let mut ledger = Ledger {
        schema: 1,
        runs: Vec::new(),
        per_day: BTreeMap::new(),
        per_flow: BTreeMap::new(),
        total: Total::default(),
    };
    for r in &runs {
        ledger.per_day.entry(r.day.clone()).or_default().add(r);
        ledger.per_flow.entry(r.flow.clone()).or_default().add(r);
        ledger.total.add(r);
    }
    ledger.runs = runs;
    if a.store.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&ledger).map_err(|e| Error::internal(e.to_string()))?
        );
        return Ok(0);
    }
    let credits = super::plan::fmt_credits;
    for r in &ledger.runs {
        println!(
            "{}  {:>4} image + {:>3} video  {:>8} credits  {:<13} {}",
            r.at,
            r.image_calls,
            r.video_calls,
            credits(r.credits),
            r.outcome,
            r.flow
        );
    }
    if ledger.runs.is_empty() {
        println!(
            "no runs recorded{}",
            a.since
                .as_ref()
                .map(|d| format!(" since {d}"))
                .unwrap_or_default()
        );
        return Ok(0);
    }
    println!("\nper day:");
    for (d, t) in &ledger.per_day {
        println!(
            "  {d}  {:>3} run(s)  {:>5} call(s)  {:>8} credits",
            t.runs,
            t.image_calls + t.video_calls,
            credits(t.credits)
        );
    }
    println!("per flow:");
    for (f, t) in &ledger.per_flow {
        println!(
            "  {:>3} run(s)  {:>5} call(s)  {:>8} credits  {f}",
            t.runs,
            t.image_calls + t.video_calls,
            credits(t.credits)
        );
    }
    println!(
        "total: {} run(s), {} image + {} video call(s), {} credits",
        ledger.total.runs,
        ledger.total.image_calls,
        ledger.total.video_calls,
        credits(ledger.total.credits)
    );
    Ok(0)
}
