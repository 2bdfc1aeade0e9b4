//! `nbbuild spend`: the ledger. Every build records its summary in the store;
//! this lists each run's calls, cost, route, flow and outcome, with totals per
//! day and per flow. The figures are the builds' own `--json` summaries.
//! G-Labs credits and Google dollars are summed apart, never together.

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
    /// The route (`glabs`, `google`); runs recorded before there was a
    /// second route were all G-Labs.
    provider: String,
    /// G-Labs credits (0 on Google runs).
    credits: f64,
    /// Google US dollars (0 on G-Labs runs): never added to credits.
    usd: f64,
    /// `ok`, `failed` (something failed) or `nothing to do`.
    outcome: String,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Total {
    runs: u64,
    image_calls: u64,
    video_calls: u64,
    credits: f64,
    usd: f64,
}

impl Total {
    fn add(&mut self, r: &Run) {
        self.runs += 1;
        self.image_calls += r.image_calls;
        self.video_calls += r.video_calls;
        self.credits += r.credits;
        self.usd += r.usd;
    }
    /// `12 credits`, `$0.27`, or `12 credits + $0.27` (two sums, never one).
    fn money(&self) -> String {
        money(self.credits, self.usd)
    }
}

fn money(credits: f64, usd: f64) -> String {
    use crate::models::Unit;
    match (credits > 0.0, usd > 0.0) {
        (_, false) => Unit::Credits.format(credits),
        (false, true) => Unit::Usd.format(usd),
        (true, true) => format!(
            "{} + {}",
            Unit::Credits.format(credits),
            Unit::Usd.format(usd)
        ),
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
        provider: s["provider"].as_str().unwrap_or("glabs").to_string(),
        credits: s["credits"].as_f64().unwrap_or(0.0),
        usd: s["usd"].as_f64().unwrap_or(0.0),
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
    for r in &ledger.runs {
        println!(
            "{}  {:>4} image + {:>3} video  {:>12}  {:<6} {:<13} {}",
            r.at,
            r.image_calls,
            r.video_calls,
            money(r.credits, r.usd),
            r.provider,
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
            "  {d}  {:>3} run(s)  {:>5} call(s)  {:>12}",
            t.runs,
            t.image_calls + t.video_calls,
            t.money()
        );
    }
    println!("per flow:");
    for (f, t) in &ledger.per_flow {
        println!(
            "  {:>3} run(s)  {:>5} call(s)  {:>12}  {f}",
            t.runs,
            t.image_calls + t.video_calls,
            t.money()
        );
    }
    println!(
        "total: {} run(s), {} image + {} video call(s), {}",
        ledger.total.runs,
        ledger.total.image_calls,
        ledger.total.video_calls,
        ledger.total.money()
    );
    Ok(0)
}
