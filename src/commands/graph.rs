//! `nbbuild graph`: the task graph as dot, mermaid or JSON.

use crate::cli::{GraphArgs, GraphFormat};
use crate::compile::{Compiled, InputSource};
use crate::error::{Error, Result};
use crate::project::Project;
use serde_json::json;

pub fn run(args: &GraphArgs) -> Result<i32> {
    let project = Project::load(args.flow.as_deref())?;
    let compiled = super::findings::compile_or_fail(
        &project,
        crate::DEFAULT_CANDIDATES,
        args.ref_image.as_deref(),
        true,
    )?;
    let text = match args.format {
        GraphFormat::Dot => dot(&compiled),
        GraphFormat::Mermaid => mermaid(&compiled),
        GraphFormat::Json => {
            serde_json::to_string_pretty(&to_json(&compiled))
                .map_err(|e| Error::internal(e.to_string()))?
                + "\n"
        }
    };
    print!("{text}");
    Ok(0)
}

fn edges(c: &Compiled) -> Vec<(usize, usize)> {
    let mut e: Vec<(usize, usize)> = c
        .tasks
        .iter()
        .flat_map(|t| t.deps().map(move |d| (d, t.index)))
        .collect();
    e.sort();
    e.dedup();
    e
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(c: &Compiled) -> String {
    let mut out = String::from(
        "digraph nbbuild {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    for &i in &c.order {
        let t = &c.tasks[i];
        let shape = if t.kind == crate::compile::TaskKind::Video {
            ", style=rounded"
        } else {
            ""
        };
        out.push_str(&format!(
            "  t{} [label=\"{}\\n{} · {} #{}\"{}];\n",
            i,
            esc(&t.label()),
            t.kind.as_str(),
            esc(&t.tab_name),
            t.node_id,
            shape
        ));
    }
    for (a, b) in edges(c) {
        out.push_str(&format!("  t{a} -> t{b};\n"));
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(c: &Compiled) -> String {
    let mut out = String::from("flowchart LR\n");
    for &i in &c.order {
        let t = &c.tasks[i];
        let label = format!(
            "{}<br/>{} · {} #{}",
            t.label(),
            t.kind.as_str(),
            t.tab_name,
            t.node_id
        )
        .replace('"', "'");
        if t.kind == crate::compile::TaskKind::Video {
            out.push_str(&format!("  t{i}([\"{label}\"])\n"));
        } else {
            out.push_str(&format!("  t{i}[\"{label}\"]\n"));
        }
    }
    for (a, b) in edges(c) {
        out.push_str(&format!("  t{a} --> t{b}\n"));
    }
    out
}

pub fn to_json(c: &Compiled) -> serde_json::Value {
    let tasks: Vec<_> = c
        .order
        .iter()
        .map(|&i| {
            let t = &c.tasks[i];
            let inputs: Vec<_> = t
                .inputs
                .iter()
                .map(|inp| {
                    let (from, value) = match &inp.source {
                        InputSource::File(p) => ("file", json!(p)),
                        InputSource::Url(u) => ("url", json!(u)),
                        InputSource::Task(d) => ("task", json!(c.tasks[*d].label())),
                    };
                    json!({"slot": inp.slot, "from": from, "value": value, "gate": inp.gate})
                })
                .collect();
            json!({
                "id": t.index, "name": t.label(), "node_name": t.name, "kind": t.kind,
                "tab": t.tab_name, "node_id": t.node_id, "title": t.title, "row": t.row.map(|r| r + 1),
                "model": t.params.model, "inputs": inputs,
            })
        })
        .collect();
    let edges: Vec<_> = edges(c)
        .into_iter()
        .map(|(a, b)| json!({"from": c.tasks[a].label(), "to": c.tasks[b].label()}))
        .collect();
    json!({"tasks": tasks, "edges": edges})
}
