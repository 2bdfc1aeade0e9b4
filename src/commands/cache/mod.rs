//! `nbbuild cache ls|show|stats|verify|gc|path`: inspect and maintain the store.

mod gc;
mod ls;
mod path;
mod show;
mod stats;
mod verify;

use crate::cli::{CacheArgs, CacheCommand};
use crate::error::{Error, Result};
use crate::exec::runner::now_ms;
use crate::holder::Reader;
use nbbuild_cache::{Store, TaskRecord};
use std::path::PathBuf;

/// The store folder: `--cache-dir`, else `.nbbuild/` beside the flow.
pub(crate) fn store_dir(a: &CacheArgs) -> Result<PathBuf> {
    if let Some(d) = &a.cache_dir {
        return Ok(d.clone());
    }
    let flow = crate::project::flow_path(a.flow.as_deref())
        .map_err(|e| e.hint("pass --cache-dir DIR or --flow FLOW to say which store"))?;
    let dir = flow
        .parent()
        .map(|p| p.to_path_buf())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(dir.join(".nbbuild"))
}

/// The folder of an existing store.
pub(crate) fn existing_store_dir(a: &CacheArgs) -> Result<PathBuf> {
    let dir = store_dir(a)?;
    if !dir.join("db").exists() {
        return Err(Error::usage(format!("no store in {}", dir.display()))
            .hint("a build creates it; or point at one with --cache-dir"));
    }
    Ok(dir)
}

/// The store, for writing (and for `verify`, which must not race a build).
fn open(a: &CacheArgs) -> Result<Store> {
    let dir = existing_store_dir(a)?;
    Store::open(&dir).map_err(|e| Error::store(&dir, e))
}

/// The store, for reading: itself, or through the build holding it.
pub(crate) fn open_read(a: &CacheArgs) -> Result<Reader> {
    crate::holder::open_read(&existing_store_dir(a)?)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).map_err(|e| Error::internal(e.to_string()))?
    );
    Ok(())
}

/// Enforced candidate count of a record, from its preimage.
fn wanted(r: &TaskRecord) -> u64 {
    r.preimage
        .get("candidates")
        .and_then(|v| v.as_u64())
        .unwrap_or(r.candidates.len() as u64)
}

fn status(r: &TaskRecord) -> String {
    let n = wanted(r);
    let have = r
        .candidates
        .iter()
        .filter(|c| u64::from(c.slot) < n)
        .count() as u64;
    let flagged = r
        .candidates
        .iter()
        .filter(|c| {
            c.qa.as_ref()
                .is_some_and(|v| v.verdict == nbbuild_cache::Outcome::Flagged)
        })
        .count();
    if !r.in_flight.is_empty() {
        format!("{have}/{n}, {} in flight", r.in_flight.len())
    } else if have < n {
        format!("partial {have}/{n}")
    } else if flagged > 0 {
        format!("complete, {flagged} flagged")
    } else {
        "complete".into()
    }
}

fn age(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn run(cmd: &CacheCommand) -> Result<i32> {
    match cmd {
        CacheCommand::Path(a) => path::run(a),
        CacheCommand::Ls(a) => ls::run(a),
        CacheCommand::Show { what, args } => show::run(what, args),
        CacheCommand::Stats(a) => stats::run(a),
        CacheCommand::Verify { repair, out, args } => verify::run(args, *repair, out.as_deref()),
        CacheCommand::Gc {
            keep_history,
            dry_run,
            args,
        } => gc::run(*keep_history, *dry_run, args),
    }
}
