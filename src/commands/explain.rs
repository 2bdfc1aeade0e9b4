//! `nbbuild explain [FLOW] SEL`: why each selected task is fresh or stale,
//! from the very preimage that was hashed: the stored one beside the
//! current one, field by field, prompts as a line diff.

use crate::cli::{BuildArgs, ExplainArgs};
use crate::error::{Error, Result};
use crate::key::{diff, Preimage};
use crate::plan::{PlanItem, Status};
use crate::settings::Settings;
use std::path::PathBuf;
use std::sync::Arc;

pub fn run(a: &ExplainArgs) -> Result<i32> {
    let (flow, sel) = match a.args.as_slice() {
        [sel] => (None, sel.clone()),
        [flow, sel] => (Some(PathBuf::from(flow)), sel.clone()),
        _ => return Err(Error::usage("explain takes [FLOW] SEL")),
    };
    let build = BuildArgs {
        flow,
        cache_dir: a.cache_dir.clone(),
        ref_image: a.ref_image.clone(),
        candidates: a.candidates,
        quiet: true,
        ..BuildArgs::default()
    };
    let s = Settings::resolve(&build)?;
    let compiled = Arc::new(s.compile()?);
    let chosen = crate::selector::resolve(&compiled, std::slice::from_ref(&sel), "selector")?;
    let plan = super::plan::decider_for(&s, &compiled, s.open_reader()?).plan();
    let items: Vec<&PlanItem> = plan
        .items
        .iter()
        .filter(|i| chosen.contains(&i.task))
        .collect();
    if a.json {
        let out: Vec<_> = items
            .iter()
            .map(|i| {
                let stored = i
                    .record
                    .as_ref()
                    .and_then(|r| Preimage::from_value(&r.preimage));
                let changes = match (&i.previous, &i.preimage) {
                    (Some((_, old)), Some(new)) => diff(old, new),
                    _ => Vec::new(),
                };
                crate::schema::ExplainedTask {
                    name: &i.name,
                    key: i.key.as_deref(),
                    status: verdict(i),
                    current: i.preimage.as_ref(),
                    stored: stored.or(i.previous.as_ref().map(|p| p.1.clone())),
                    previous_key: i.previous.as_ref().map(|p| p.0.as_str()),
                    changes,
                }
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::schema::Explained {
                schema: (),
                tasks: out
            })
            .map_err(|e| Error::internal(e.to_string()))?
        );
        return Ok(0);
    }
    for i in items {
        let t = &compiled.tasks[i.task];
        println!(
            "{} ({} · tab {:?} · node #{} {:?})",
            i.name,
            t.kind.as_str(),
            t.tab_name,
            t.node_id,
            t.title
        );
        println!("  verdict: {}", verdict(i));
        match &i.key {
            Some(k) => println!("  key:     {k}"),
            None => println!("  key:     not known until its inputs are rebuilt"),
        }
        if let (Some((old_key, old)), Some(new)) = (&i.previous, &i.preimage) {
            println!(
                "  stored under {}, which differs in:",
                &old_key[..16.min(old_key.len())]
            );
            for c in diff(old, new) {
                if c.field == "prompt" {
                    println!("    prompt:");
                    for line in line_diff(&c.old, &c.new) {
                        println!("      {line}");
                    }
                } else {
                    println!("    {}: {} -> {}", c.field, c.old, c.new);
                }
            }
        } else if let Some(p) = &i.preimage {
            println!("  preimage:");
            for line in serde_json::to_string_pretty(p).unwrap_or_default().lines() {
                println!("    {line}");
            }
        }
        println!();
    }
    Ok(0)
}

fn verdict(i: &PlanItem) -> String {
    match &i.status {
        Status::Fresh => "fresh: the store holds every candidate under this key".into(),
        Status::Stale(r) => format!("stale: {}", r.describe()),
        Status::Skipped { why } => format!("not built in this mode: {why}"),
        Status::Blocked { why } => format!("blocked: {why}"),
    }
}

/// A minimal line diff (longest common subsequence): `- old`, `+ new`, `  same`.
pub fn line_diff(old: &str, new: &str) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() * b.len() > 4_000_000 {
        return vec![
            format!("- ({} lines)", a.len()),
            format!("+ ({} lines)", b.len()),
        ];
    }
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_diff_marks_changes() {
        let d = super::line_diff("a\nb\nc", "a\nB\nc\nd");
        assert_eq!(d, vec!["  a", "+ B", "- b", "  c", "+ d"]);
    }
}
