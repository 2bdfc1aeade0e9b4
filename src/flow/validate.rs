//! Structural checks of a parsed flow: the checks of PatchWork's own pre-run
//! check (nbflow.md section 7) that need no graph resolution. What needs the
//! resolved graph (cycles, references, rows, upstream types) is reported by
//! `compile`; `Project::check` (project.rs) runs both.

use super::document::{Flow, Kind, Node, Tab};
use super::finding::Finding;
use crate::prompt::placeholders;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use crate::models::IMAGE_MODEL;

pub struct ValidateOptions {
    /// The candidate count the runner enforces (`--candidates`).
    pub candidates: u32,
}

pub fn validate(flow: &Flow, opts: &ValidateOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut unknown_types = BTreeSet::new();
    for tab in &flow.tabs {
        check_ids(tab, &mut out);
        check_links(tab, &mut out);
        for node in &tab.nodes {
            match node.kind {
                Kind::Image => check_image(tab, node, opts, &mut out),
                Kind::Video => check_video(tab, node, opts, &mut out),
                Kind::Prompt => check_prompt(tab, node, &mut out),
                Kind::Unknown if unknown_types.insert(node.type_name.clone()) => {
                    out.push(
                        Finding::warning(
                            "unknown-node-type",
                            format!("{}.type", node.path()),
                            format!(
                                "unknown node type {:?}: kept as it is, not executed",
                                node.type_name
                            ),
                        )
                        .on(&tab.name, node)
                        .hint("a generation node that depends on it cannot be built"),
                    );
                }
                _ => {}
            }
        }
    }
    out
}

fn check_ids(tab: &Tab, out: &mut Vec<Finding>) {
    let mut seen: BTreeMap<i64, &Node> = BTreeMap::new();
    for node in &tab.nodes {
        if let Some(first) = seen.get(&node.id) {
            out.push(
                Finding::error(
                    "duplicate-id",
                    format!("{}.id", node.path()),
                    format!(
                        "node id {} is used twice in this tab (also by {:?} at {})",
                        node.id,
                        first.title,
                        first.path()
                    ),
                )
                .on(&tab.name, node)
                .hint("node ids must be unique within a tab; re-export the tab from PatchWork"),
            );
        } else {
            seen.insert(node.id, node);
        }
    }
}

fn check_links(tab: &Tab, out: &mut Vec<Finding>) {
    let dangling_hint =
        "PatchWork treats this as a broken file: delete and redraw the link in the editor";
    for (_, path) in &tab.bad_links {
        out.push(
            Finding::error(
                "dangling-link",
                path.clone(),
                "malformed link entry: expected [id, source, slot, target, slot, type]",
            )
            .in_tab(tab.index, &tab.name)
            .hint(dangling_hint),
        );
    }
    let mut ids = BTreeSet::new();
    for link in &tab.links {
        let lpath = format!("tabs[{}].graphData.links[{}]", tab.index, link.index);
        if !ids.insert(link.id) {
            out.push(
                Finding::error(
                    "duplicate-id",
                    lpath.clone(),
                    format!("link id {} appears twice in the links table", link.id),
                )
                .in_tab(tab.index, &tab.name)
                .hint(dangling_hint),
            );
        }
        let src = tab.node(link.src);
        let dst = tab.node(link.dst);
        let (Some(src), Some(dst)) = (src, dst) else {
            let missing = if src.is_none() { link.src } else { link.dst };
            let f = Finding::error(
                "link-missing-node",
                lpath,
                format!(
                    "link {} names node {} which does not exist in this tab",
                    link.id, missing
                ),
            )
            .hint(dangling_hint);
            // Name the end that does exist, so the user can find the link.
            out.push(match dst.or(src) {
                Some(n) => f.on(&tab.name, n),
                None => f.in_tab(tab.index, &tab.name),
            });
            continue;
        };
        let Some(input) = dst.inputs.get(link.dst_slot) else {
            out.push(
                Finding::error(
                    "link-missing-slot",
                    lpath,
                    format!(
                        "link {} targets input slot {} of node {}, which has {} inputs",
                        link.id,
                        link.dst_slot,
                        dst.id,
                        dst.inputs.len()
                    ),
                )
                .on(&tab.name, dst)
                .hint(dangling_hint),
            );
            continue;
        };
        let Some(output) = src.outputs.get(link.src_slot) else {
            out.push(
                Finding::error(
                    "link-missing-slot",
                    lpath,
                    format!(
                        "link {} leaves output slot {} of node {}, which has {} outputs",
                        link.id,
                        link.src_slot,
                        src.id,
                        src.outputs.len()
                    ),
                )
                .on(&tab.name, src)
                .hint(dangling_hint),
            );
            continue;
        };
        if input.link != Some(link.id) || !output.links.contains(&link.id) {
            let whom = if input.link != Some(link.id) {
                format!("input {} of node {}", link.dst_slot, dst.id)
            } else {
                format!("output {} of node {}", link.src_slot, src.id)
            };
            out.push(
                Finding::error(
                    "dangling-link",
                    lpath,
                    format!(
                        "link {} is in the links table but {} does not name it",
                        link.id, whom
                    ),
                )
                .on(&tab.name, dst)
                .hint(dangling_hint),
            );
        }
    }
    for node in &tab.nodes {
        for (slot, input) in node.inputs.iter().enumerate() {
            let Some(id) = input.link else { continue };
            let ok = tab
                .link(id)
                .is_some_and(|l| l.dst == node.id && l.dst_slot == slot);
            if !ok {
                out.push(
                    Finding::error(
                        "dangling-link",
                        format!("{}.inputs[{slot}].link", node.path()),
                        format!("input {slot} ({:?}) names link {id}, which the links table does not confirm", input.name),
                    )
                    .on(&tab.name, node)
                    .hint(dangling_hint),
                );
            }
        }
        for (slot, output) in node.outputs.iter().enumerate() {
            for (k, &id) in output.links.iter().enumerate() {
                let ok = tab
                    .link(id)
                    .is_some_and(|l| l.src == node.id && l.src_slot == slot);
                if !ok {
                    out.push(
                        Finding::error(
                            "dangling-link",
                            format!("{}.outputs[{slot}].links[{k}]", node.path()),
                            format!("output {slot} ({:?}) names link {id}, which the links table does not confirm", output.name),
                        )
                        .on(&tab.name, node)
                        .hint(dangling_hint),
                    );
                }
            }
        }
    }
}

fn check_count(tab: &Tab, node: &Node, opts: &ValidateOptions, out: &mut Vec<Finding>) {
    // 0.7.x files have no outputCount at all: nothing to warn about, the
    // runner's count applies either way.
    if let Some(v) = node.prop("outputCount") {
        if v.as_u64() != Some(u64::from(opts.candidates)) {
            out.push(
                Finding::warning(
                    "output-count",
                    node.prop_path("outputCount"),
                    format!("outputCount is {v}; the runner makes {} candidates per task", opts.candidates),
                )
                .on(&tab.name, node)
                .hint("set outputCount in PatchWork, or pass --candidates to change the enforced count"),
            );
        }
    }
}

fn check_image(tab: &Tab, node: &Node, opts: &ValidateOptions, out: &mut Vec<Finding>) {
    match node.prop("model") {
        Some(Value::String(m)) if m == IMAGE_MODEL => {}
        other => {
            let what = match other {
                None => "no model is set (G-Labs would silently fall back to an older model)"
                    .to_string(),
                Some(v) => format!("model is {v}, not {IMAGE_MODEL:?}"),
            };
            out.push(
                Finding::warning(
                    "image-model",
                    node.prop_path("model"),
                    format!("{what}; the runner sends {IMAGE_MODEL:?}"),
                )
                .on(&tab.name, node)
                .hint(format!(
                    "set the model to {IMAGE_MODEL} in PatchWork to silence this"
                )),
            );
        }
    }
    check_count(tab, node, opts, out);
    let slots = node.inputs.len().saturating_sub(1);
    if let Some(v) = node.prop("imageCount") {
        if v.as_u64() != Some(slots as u64) {
            out.push(
                Finding::error(
                    "image-count",
                    node.prop_path("imageCount"),
                    format!("imageCount is {v} but the node has {slots} image input slot(s)"),
                )
                .on(&tab.name, node)
                .hint("add or remove image slots in PatchWork so they match imageCount"),
            );
        }
    }
}

fn check_video(tab: &Tab, node: &Node, opts: &ValidateOptions, out: &mut Vec<Finding>) {
    check_count(tab, node, opts, out);
    if node.inputs.len() != 3 {
        out.push(
            Finding::error(
                "veo-inputs",
                format!("{}.inputs", node.path()),
                format!("a Veo3 node needs exactly 3 inputs (prompt, start frame, end frame); this one has {}", node.inputs.len()),
            )
            .on(&tab.name, node)
            .hint("recreate the node in PatchWork"),
        );
    }
    if let Some(v) = node.prop("negativePrompt") {
        if !v.is_string() {
            out.push(
                Finding::error("negative-prompt-type", node.prop_path("negativePrompt"), format!("negativePrompt must be a string, found {}", type_name(v)))
                    .on(&tab.name, node)
                    .hint("write the negative prompt as plain text (a non-string breaks PatchWork's import)"),
            );
        }
    }
    if let Some(v) = node.prop("durationSeconds") {
        match v.as_str() {
            Some("4" | "6" | "8") => {}
            Some(s) => out.push(
                Finding::error(
                    "duration",
                    node.prop_path("durationSeconds"),
                    format!("durationSeconds is {s:?}; Veo 3.1 makes 4, 6 or 8 second clips"),
                )
                .on(&tab.name, node)
                .hint("use \"4\", \"6\" or \"8\""),
            ),
            None => out.push(
                Finding::error(
                    "duration-type",
                    node.prop_path("durationSeconds"),
                    format!(
                        "durationSeconds must be a string such as \"8\", found {}",
                        type_name(v)
                    ),
                )
                .on(&tab.name, node)
                .hint("PatchWork writes the duration as a string: \"4\", \"6\" or \"8\""),
            ),
        }
    }
}

fn check_prompt(tab: &Tab, node: &Node, out: &mut Vec<Finding>) {
    let dynamic = node.prop_bool("dynamicMode");
    if dynamic {
        match node.prop("dynamicRows") {
            Some(Value::Array(rows)) => {
                for (i, r) in rows.iter().enumerate() {
                    if !r.is_string() {
                        out.push(
                            Finding::error(
                                "dynamic-row-type",
                                format!("{}[{i}]", node.prop_path("dynamicRows")),
                                format!(
                                    "dynamic row {} is {}, not a plain string",
                                    i + 1,
                                    type_name(r)
                                ),
                            )
                            .on(&tab.name, node)
                            .hint("rows must be flat strings: edit the row in PatchWork"),
                        );
                    }
                }
                if rows.is_empty() {
                    out.push(
                        Finding::error(
                            "dynamic-rows",
                            node.prop_path("dynamicRows"),
                            "dynamicMode is on but there are no rows",
                        )
                        .on(&tab.name, node)
                        .hint("add rows or switch dynamic mode off"),
                    );
                }
            }
            _ => out.push(
                Finding::error(
                    "dynamic-rows",
                    node.prop_path("dynamicRows"),
                    "dynamicMode is on but dynamicRows is not a list",
                )
                .on(&tab.name, node)
                .hint("add rows or switch dynamic mode off"),
            ),
        }
    }
    if node.prop_bool("templateMode") && !dynamic {
        let text = node.prop_str("text").unwrap_or("");
        let names = placeholders(text);
        for name in &names {
            let linked = node
                .inputs
                .iter()
                .any(|i| &i.name == name && i.link.is_some());
            if !linked {
                out.push(
                    Finding::error(
                        "template-placeholder",
                        node.prop_path("text"),
                        format!("placeholder {{{name}}} has no linked input of that name: it would be sent to the model literally"),
                    )
                    .on(&tab.name, node)
                    .hint(format!("link a prompt into an input named {name:?}, or remove {{{name}}} from the text")),
                );
            }
        }
        for (slot, input) in node.inputs.iter().enumerate() {
            if !names.iter().any(|n| n == &input.name) {
                out.push(
                    Finding::error(
                        "template-input",
                        format!("{}.inputs[{slot}].name", node.path()),
                        format!(
                            "input {:?} is not a placeholder of the template text",
                            input.name
                        ),
                    )
                    .on(&tab.name, node)
                    .hint(format!(
                        "add {{{}}} to the text, or remove the input",
                        input.name
                    )),
                );
            }
        }
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
