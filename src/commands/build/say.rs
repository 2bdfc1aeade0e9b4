//! What a build says: references it cannot have, repairs, the summary
//! lines, and a build with nothing to do said again from its stamp.

use crate::error::{Error, Result};
use crate::exec::{RunReport, TaskState};
use crate::output::Layout;
use crate::plan::Status;
use crate::repair::Outcome;
use crate::settings::Settings;
use serde_json::json;
use std::time::Instant;

/// Say again what the last build with nothing to do said (its stamp holds:
/// uptodate.rs), log the run, and keep the stamp for the next one.
pub(super) fn replay(
    s: &Settings,
    store: &nbbuild_cache::Store,
    mut stamp: crate::uptodate::Stamp,
    started: Instant,
) -> Result<i32> {
    if !s.quiet {
        eprint!("{}{}", stamp.findings, stamp.printed);
    }
    stamp.summary["duration_ms"] = json!(started.elapsed().as_millis() as u64);
    let _ =
        store.append_run(&json!({"at": crate::exec::runner::now_ms(), "summary": stamp.summary}));
    crate::uptodate::remember(store, &stamp);
    if s.json {
        println!(
            "{}",
            serde_json::to_string(&stamp.summary).map_err(|e| Error::internal(e.to_string()))?
        );
    }
    Ok(0)
}

/// Say what the verified reads found: objects put back from a good copy,
/// and candidates lost (no good copy), each with its task.
pub(super) fn report_repairs(repairs: &[Outcome], quiet: bool) {
    for o in repairs {
        match o {
            Outcome::Repaired { .. } if !quiet => eprintln!("warning: {}", o.describe()),
            Outcome::Repaired { .. } | Outcome::Intact { .. } => {}
            Outcome::Lost { .. } | Outcome::Failed { .. } => eprintln!("error: {}", o.describe()),
        }
    }
    if repairs.iter().any(|o| matches!(o, Outcome::Lost { .. })) {
        eprintln!(
            "hint: `nbbuild plan` shows those tasks stale (candidate corrupted in the store); \
             the next build regenerates those candidates"
        );
    }
}

/// Blocked tasks grouped by why (a reference that cannot be had), with
/// the tasks each blocks, in flow order.
pub(super) fn blocked_references(
    compiled: &crate::compile::Compiled,
    plan: &crate::plan::Plan,
) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for item in &plan.items {
        if let Status::Blocked { why } = &item.status {
            let t = &compiled.tasks[item.task];
            let name = format!("{} {}", t.kind.as_str(), item.name);
            match out.iter_mut().find(|(w, _)| w == why) {
                Some((_, tasks)) => tasks.push(name),
                None => out.push((why.clone(), vec![name])),
            }
        }
    }
    out
}

pub(super) fn summary_text(
    prices: &crate::plan::Prices,
    r: &RunReport,
    w: &crate::output::Written,
    layout: &Layout,
    total: usize,
    published: Option<&crate::mirror::publish::Published>,
) -> String {
    let count = |st: TaskState| r.outcomes.iter().filter(|o| o.state == st).count();
    let mut lines = vec![format!(
        "done: {total} tasks: {} built, {} fresh, {} failed, {} skipped, {} not run; {} image + {} video call(s), {}",
        count(TaskState::Built),
        count(TaskState::Fresh),
        count(TaskState::Failed),
        count(TaskState::Skipped),
        count(TaskState::NotRun),
        r.image_calls,
        r.video_calls,
        prices.format(r.credits)
    )];
    if let Some(p) = &w.flow {
        lines.push(format!("generated flow: {}", p.display()));
    }
    lines.push(format!(
        "assets: {} ({} files)",
        layout.out.join("Assets").join(&layout.wf).display(),
        w.assets
    ));
    match published {
        Some(p) => lines.push(format!("mirror: {} file(s) uploaded this run; the generated flow holds their public URLs", p.uploaded + r.uploads)),
        None if w.assets > 0 => lines.push("warning: no mirror configured (--mirror r2|dir:PATH): the generated flow holds file:// URLs, which PatchWork cannot open".into()),
        None => {}
    }
    if let Some(e) = &w.errors {
        lines.push(format!("failures: {}", e.display()));
    }
    if let Some(h) = &r.halted {
        lines.push(format!(
            "stopped early: {}",
            h.trim_start_matches("not started: ")
        ));
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}
