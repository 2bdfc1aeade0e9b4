//! `nbbuild cache verify [--repair]`: check every object against its hash
//! and every record against the objects, and repair what can be.

use super::{open, print_json};
use crate::cli::CacheArgs;
use crate::error::Result;
use crate::output::Layout;
use crate::repair::{Outcome, Repairer};
use nbbuild_cache::ProblemKind;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

pub fn run(a: &CacheArgs, repair: bool, out: Option<&Path>) -> Result<i32> {
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
        let problems = r
            .problems
            .iter()
            .map(|p| crate::schema::Problem {
                kind: p.kind.as_str(),
                what: &p.what,
                detail: &p.detail,
                harmless: p.kind.is_harmless(),
                repaired: fixed(p),
            })
            .collect();
        print_json(&crate::schema::CacheVerify {
            schema: (),
            ok,
            objects_checked: r.objects_checked,
            bytes_checked: r.bytes_checked,
            problems,
            repair,
            assets: layout
                .as_ref()
                .map(|l| l.out.join("Assets").display().to_string()),
            repairs: serde_json::to_value(&repairs).unwrap_or_default(),
        })?;
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
