//! The flow as one request of the page reads it (its exact bytes and
//! their `rev`, the settings, the task graph), and the page's handles on
//! its tasks: their ids, the approve gates they feed, their prompt node.
//! `flow_edit` writes what this reads.

use crate::cli::BuildArgs;
use crate::compile::{Compiled, Task};
use crate::error::{Error, Result};
use crate::flow::{Finding, Flow, Kind, Node};
use crate::settings::Settings;

/// The flow as read for one request: its exact bytes (and their `rev`), the
/// settings, and the task graph when the flow is valid.
pub struct Loaded {
    pub s: Settings,
    pub compiled: Option<std::sync::Arc<Compiled>>,
    pub findings: Vec<Finding>,
    pub bytes: Vec<u8>,
    pub rev: String,
}

/// Read the flow and the settings. The bytes and the parsed flow are the
/// same version of the file (read again until two reads agree).
pub fn load(build: &BuildArgs) -> Result<Loaded> {
    let path = crate::project::flow_path(build.flow.as_deref())?;
    for _ in 0..5 {
        let before = std::fs::read(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))?;
        let s = Settings::resolve(build)?;
        let after = std::fs::read(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))?;
        if before != after {
            continue;
        }
        let (findings, compiled) = s.project.check(s.candidates, s.ref_image.as_deref());
        return Ok(Loaded {
            rev: super::rev_of(&after),
            bytes: after,
            s,
            compiled: compiled.map(std::sync::Arc::new),
            findings,
        });
    }
    Err(Error::env(format!(
        "{} keeps changing while it is read",
        path.display()
    ))
    .hint("wait until whatever writes it is done"))
}

/// A stable id for a task on the page and in the API: `TAB-ID` or `TAB-ID-rROW`.
pub fn task_id(t: &Task) -> String {
    match t.row {
        Some(r) => format!("{}-{}-r{}", t.tab, t.node_id, r + 1),
        None => format!("{}-{}", t.tab, t.node_id),
    }
}

pub fn find_task<'a>(c: &'a Compiled, id: &str) -> Option<&'a Task> {
    c.tasks.iter().find(|t| task_id(t) == id)
}

/// The approve gates a task's node feeds directly (their slot 0).
pub fn gates_of<'a>(flow: &'a Flow, t: &Task) -> Vec<&'a Node> {
    let Some(tab) = flow.tabs.get(t.tab) else {
        return Vec::new();
    };
    tab.nodes
        .iter()
        .filter(|n| n.kind == Kind::Approve)
        .filter(|n| tab.source(n, 0).is_some_and(|(src, _)| src.id == t.node_id))
        .collect()
}

/// The prompt node feeding a task (slot 0), and whether its text is the
/// task's whole prompt (a plain prompt, editable from the page).
pub fn prompt_node<'a>(flow: &'a Flow, t: &Task) -> Option<(&'a Node, bool)> {
    let tab = flow.tabs.get(t.tab)?;
    let node = tab.node(t.node_id)?;
    let (src, _) = tab.source(node, 0)?;
    (src.kind == Kind::Prompt).then(|| {
        let plain = !src.prop_bool("templateMode") && !src.prop_bool("dynamicMode");
        (src, plain)
    })
}
