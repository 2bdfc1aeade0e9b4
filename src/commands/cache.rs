//! `nbbuild cache ls|show|stats|verify|gc|path`: inspect and maintain the store.

use crate::cli::{CacheArgs, CacheCommand};
use crate::error::{Error, Result};
use crate::exec::runner::now_ms;
use crate::holder::{Reader, Tasks};
use crate::output::Layout;
use crate::repair::{Outcome, Repairer};
use nbbuild_cache::{ProblemKind, Store, TaskRecord};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

fn print_json(v: &serde_json::Value) -> Result<()> {
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
        .filter(|c| c.qa.as_ref().is_some_and(|v| v.verdict == "flagged"))
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
        CacheCommand::Path(a) => {
            let dir = store_dir(a)?;
            if a.json {
                print_json(&json!({"path": dir.display().to_string()}))?;
            } else {
                println!("{}", dir.display());
            }
            Ok(0)
        }
        CacheCommand::Ls(a) => {
            let store = open_read(a)?;
            let mut tasks = store.tasks(Tasks::All)?;
            tasks.sort_by(|x, y| x.1.name.cmp(&y.1.name).then(y.1.updated.cmp(&x.1.updated)));
            if a.json {
                let rows: Vec<_> = tasks
                    .iter()
                    .map(|(k, r)| {
                        json!({"key": k, "name": r.name, "kind": r.preimage.get("kind"), "status": status(r), "candidates": r.candidates.len(),
                               "wanted": wanted(r), "in_flight": r.in_flight.len(), "history": r.history.len(), "updated_ms": r.updated})
                    })
                    .collect();
                print_json(&json!({"tasks": rows}))?;
            } else {
                println!(
                    "{:<28} {:<6} {:<24} {:>5}  KEY",
                    "NAME", "KIND", "STATUS", "AGE"
                );
                for (k, r) in &tasks {
                    let kind = r
                        .preimage
                        .get("kind")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?");
                    println!(
                        "{:<28} {:<6} {:<24} {:>5}  {}",
                        r.name,
                        kind,
                        status(r),
                        age(r.updated),
                        &k[..12.min(k.len())]
                    );
                }
                println!("{} task record(s)", tasks.len());
            }
            Ok(0)
        }
        CacheCommand::Show { what, args } => {
            let store = open_read(args)?;
            let mut found = store.tasks(Tasks::Named(what))?;
            if found.is_empty() && what.len() >= 4 && what.chars().all(|c| c.is_ascii_hexdigit()) {
                found = store.tasks(Tasks::KeyPrefix(&what.to_ascii_lowercase()))?;
            }
            if found.is_empty() {
                let mut names: Vec<String> = store
                    .tasks(Tasks::All)?
                    .into_iter()
                    .map(|(_, r)| r.name)
                    .collect();
                names.sort();
                names.dedup();
                return Err(Error::usage(format!("the store holds no task {what:?}"))
                    .cause(format!("names: {}", names.join(", ")))
                    .hint("give a task name (scene07) or a key prefix from `nbbuild cache ls`"));
            }
            found.sort_by_key(|(_, r)| std::cmp::Reverse(r.updated));
            if args.json {
                let rows: Vec<_> = found
                    .iter()
                    .map(|(k, r)| json!({"key": k, "record": r}))
                    .collect();
                print_json(&json!({"tasks": rows}))?;
                return Ok(0);
            }
            for (k, r) in &found {
                println!("task {} ({})", r.name, status(r));
                println!("key  {k}");
                println!("updated {} ago", age(r.updated));
                println!("preimage:");
                for line in serde_json::to_string_pretty(&r.preimage)
                    .unwrap_or_default()
                    .lines()
                {
                    println!("  {line}");
                }
                println!("candidates:");
                for c in &r.candidates {
                    let qa =
                        c.qa.as_ref()
                            .map(|v| format!("{} {}", v.verdict, v.tells.join("; ")))
                            .unwrap_or_else(|| "not reviewed".into());
                    println!(
                        "  c{} {} {} bytes {}  route: {}  qa: {}  url: {}",
                        c.slot + 1,
                        &c.object[..16],
                        c.size,
                        c.mime,
                        // Stores from before the second route: all G-Labs.
                        c.route.as_deref().unwrap_or("glabs"),
                        qa.trim(),
                        c.url.as_deref().unwrap_or("-")
                    );
                }
                for f in &r.in_flight {
                    println!(
                        "  c{} in flight: remote task {} (attempt {}, {} ago)",
                        f.slot + 1,
                        f.remote_task,
                        f.attempt,
                        age(f.submitted)
                    );
                }
                if !r.history.is_empty() {
                    println!("history:");
                    for h in &r.history {
                        let objs: Vec<String> = h
                            .candidates
                            .iter()
                            .map(|c| format!("c{} {}", c.slot + 1, &c.object[..12]))
                            .collect();
                        println!(
                            "  {} ago, {}: {}",
                            age(h.replaced),
                            h.reason,
                            objs.join(", ")
                        );
                    }
                }
                println!();
            }
            Ok(0)
        }
        CacheCommand::Stats(a) => {
            let store = open_read(a)?;
            let s = store.stats()?;
            if a.json {
                print_json(&json!({"path": store.root().display().to_string(), "stats": s}))?;
            } else {
                println!("store       {}", store.root().display());
                println!("tasks       {}", s.tasks);
                println!(
                    "candidates  {} current, {} in {} history set(s)",
                    s.candidates, s.history_candidates, s.history_sets
                );
                println!("in flight   {}", s.in_flight);
                println!(
                    "objects     {} ({:.1} MB)",
                    s.objects,
                    s.object_bytes as f64 / 1e6
                );
                println!("verdicts    {}", s.verdicts);
                println!("uploads     {}", s.uploads);
                println!("runs        {}", s.runs);
                println!("database    {:.1} MB", s.db_bytes as f64 / 1e6);
            }
            Ok(0)
        }
        CacheCommand::Verify { repair, out, args } => verify(args, *repair, out.as_deref()),
        CacheCommand::Gc {
            keep_history,
            dry_run,
            args,
        } => {
            let store = open(args)?;
            let r = store.gc(*keep_history, *dry_run)?;
            if args.json {
                print_json(&json!({"gc": r}))?;
            } else {
                let verb = if *dry_run { "would free" } else { "freed" };
                println!(
                    "{verb} {:.1} MB: {} object(s), {} history set(s), {} leftover file(s)",
                    r.bytes_freed as f64 / 1e6,
                    r.objects_removed,
                    r.history_sets_removed,
                    r.leftovers_removed
                );
            }
            Ok(0)
        }
    }
}

/// Where the flow's assets are, for repairs from them: the flow given with
/// `--flow` (or the single one in the current folder), its name and `--out`
/// (else nbbuild.toml's `out`, else its folder). None without a flow.
fn assets_layout(a: &CacheArgs, out: Option<&Path>) -> Option<Layout> {
    let flow_path = match &a.flow {
        Some(p) => p.clone(),
        None => crate::project::discover(Path::new(".")).ok()?,
    };
    let text = crate::project::read_text(&flow_path).ok()?;
    let flow = crate::flow::Flow::parse(&text).ok()?;
    let dir = flow_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let out = match out {
        Some(o) => o.to_path_buf(),
        None => crate::config::FileConfig::load(&dir)
            .ok()
            .and_then(|f| f.out)
            .map(|o| dir.join(o))
            .unwrap_or(dir),
    };
    Some(Layout::new(&out, &flow.name))
}

fn verify(a: &CacheArgs, repair: bool, out: Option<&Path>) -> Result<i32> {
    let store = Arc::new(open(a)?);
    let r = store.verify()?;
    let mut repairs: Vec<Outcome> = Vec::new();
    let layout = if repair { assets_layout(a, out) } else { None };
    if repair {
        if layout.is_none() && !a.json {
            eprintln!("note: no flow found (pass --flow FLOW): assets under Assets/ are not looked at, only mirrors and URLs");
        }
        let repairer = Repairer::new(store.clone(), layout.clone());
        let objects: BTreeSet<&str> = r
            .problems
            .iter()
            .filter(|p| {
                matches!(
                    p.kind,
                    ProblemKind::CorruptObject | ProblemKind::MissingObject
                )
            })
            .filter(|p| nbbuild_cache::is_object_id(&p.what))
            .map(|p| p.what.as_str())
            .collect();
        for o in objects {
            repairer.repair_blocking(o);
        }
        repairs = repairer.outcomes();
    }
    let fixed = |p: &nbbuild_cache::Problem| {
        matches!(
            p.kind,
            ProblemKind::CorruptObject | ProblemKind::MissingObject
        ) && repairs.iter().any(|o| o.object() == p.what && o.usable())
    };
    let lost = repairs.iter().filter(|o| !o.usable()).count();
    let remaining = r
        .problems
        .iter()
        .filter(|p| !p.kind.is_harmless() && !fixed(p))
        .count();
    let ok = remaining == 0;
    if a.json {
        let problems: Vec<_> = r.problems.iter().map(|p| json!({"kind": p.kind.as_str(), "what": p.what, "detail": p.detail, "harmless": p.kind.is_harmless(), "repaired": fixed(p)})).collect();
        print_json(&json!({
            "ok": ok,
            "objects_checked": r.objects_checked,
            "bytes_checked": r.bytes_checked,
            "problems": problems,
            "repair": repair,
            "assets": layout.as_ref().map(|l| l.out.join("Assets").display().to_string()),
            "repairs": repairs,
        }))?;
    } else {
        for p in &r.problems {
            let sev = if p.kind.is_harmless() {
                "note"
            } else {
                "problem"
            };
            println!("{sev}: {} {}: {}", p.kind.as_str(), p.what, p.detail);
        }
        for o in &repairs {
            let sev = if o.usable() { "repaired" } else { "lost" };
            println!("{sev}: {}", o.describe());
        }
        let corrupt = r.problems.iter().any(|p| {
            matches!(
                p.kind,
                ProblemKind::CorruptObject | ProblemKind::MissingObject
            )
        });
        if corrupt && !repair {
            println!("hint: `nbbuild cache verify --repair` puts back good copies where nbbuild knows one");
        }
        if lost > 0 {
            println!("hint: `nbbuild plan` shows the tasks stale (candidate corrupted in the store); the next build regenerates them");
        }
        println!(
            "{}: {} objects ({:.1} MB) re-hashed, {} problem(s){}",
            if ok { "ok" } else { "FAILED" },
            r.objects_checked,
            r.bytes_checked as f64 / 1e6,
            remaining,
            if repair {
                format!(
                    ", {} repaired",
                    repairs.iter().filter(|o| o.usable()).count()
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if ok { 0 } else { 1 })
}
