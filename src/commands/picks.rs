//! `nbbuild picks`: every approve gate's pick, keyed by tab and node id
//! (what a team's sheet sync needs). Reads the flow; the store, when it can
//! be read, names which candidate each pick is.

use crate::cli::{BuildArgs, PicksArgs};
use crate::error::{Error, Result};
use crate::flow::Kind;
use crate::review::access::StoreAccess;
use crate::review::flow_read::load;
use crate::review::snapshot::{read_live, Extra};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub fn run(a: &PicksArgs) -> Result<i32> {
    let build = BuildArgs {
        flow: a.flow.clone(),
        cache_dir: a.cache_dir.clone(),
        candidates: a.candidates,
        ref_image: a.ref_image.clone(),
        ..BuildArgs::default()
    };
    let l = load(&build)?;
    // Gate (tab, node id) -> the candidate its pick is, from the store.
    let mut known: BTreeMap<(usize, i64), Option<u64>> = BTreeMap::new();
    let mut note = None;
    if l.compiled.is_some() && l.s.cache_dir.exists() {
        let access = StoreAccess::new(&l.s.cache_dir);
        match read_live(&access, &l, &Extra::default()) {
            Ok(snap) => {
                for t in snap.state["tasks"].as_array().into_iter().flatten() {
                    let tab = t["tab"].as_u64().unwrap_or(0) as usize;
                    let k = t["pick"]["candidate"].as_u64();
                    for g in t["gates"].as_array().into_iter().flatten() {
                        if let Some(id) = g["node_id"].as_i64() {
                            known.insert((tab, id), k);
                        }
                    }
                }
            }
            Err(u) => note = Some(u.describe()),
        }
    }
    let flow = &l.s.project.flow;
    let names = l.compiled.as_ref().map(|c| &c.names);
    let mut rows = Vec::new();
    for tab in &flow.tabs {
        for node in tab.nodes.iter().filter(|n| n.kind == Kind::Approve) {
            let up = tab.source(node, 0).map(|(u, _)| u);
            let upstream = up.map(|u| {
                names
                    .and_then(|n| n.get(&(tab.index, u.id)))
                    .map(|(_, name)| name.clone())
                    .unwrap_or_else(|| u.title.clone())
            });
            let kind = match up.map(|u| u.kind) {
                Some(Kind::Video) => "video",
                Some(Kind::Image) => "image",
                _ => "",
            };
            let pick = node
                .prop_str("_lastApprovedData")
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            rows.push(json!({
                "tab": tab.name,
                "tab_index": tab.index,
                "node_id": node.id,
                "title": node.title,
                "upstream": upstream,
                "upstream_node_id": up.map(|u| u.id),
                "kind": kind,
                "status": if pick.is_some() { "picked" } else { "pending" },
                "candidate": known.get(&(tab.index, node.id)).cloned().flatten(),
                "pick": pick,
            }));
        }
    }
    if let Some(n) = &note {
        eprintln!("note: {n}: candidate numbers are left out");
    }
    let out = if a.json {
        serde_json::to_string_pretty(&json!({
            "flow": l.s.project.flow_path.display().to_string(),
            "picks": rows,
        }))
        .map_err(|e| Error::internal(e.to_string()))?
            + "\n"
    } else if a.csv {
        csv(&rows)
    } else {
        table(&rows)
    };
    print!("{out}");
    Ok(0)
}

const COLUMNS: [&str; 8] = [
    "tab",
    "node_id",
    "title",
    "upstream",
    "kind",
    "status",
    "candidate",
    "pick",
];

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// RFC 4180: a field with a comma, quote or line break is quoted.
fn csv(rows: &[Value]) -> String {
    let esc = |s: String| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = COLUMNS.join(",") + "\n";
    for r in rows {
        let line: Vec<String> = COLUMNS.iter().map(|c| esc(cell(&r[*c]))).collect();
        out += &line.join(",");
        out.push('\n');
    }
    out
}

fn table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "no approve gate in this flow\n".into();
    }
    let mut out = String::new();
    for r in rows {
        let what = match r["candidate"].as_u64() {
            Some(k) => format!("candidate {k}: {}", cell(&r["pick"])),
            None if r["pick"].is_null() => "no pick".to_string(),
            None => cell(&r["pick"]),
        };
        out += &format!(
            "{}/{:<4} {:<28} {:<20} {}\n",
            cell(&r["tab"]),
            cell(&r["node_id"]),
            cell(&r["title"]),
            format!("{} {}", cell(&r["kind"]), cell(&r["upstream"])),
            what
        );
    }
    out
}
