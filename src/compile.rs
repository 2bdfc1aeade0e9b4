//! Flow -> DAG of tasks.
//!
//! One task per (active generation node, dynamic row). Prompts are resolved
//! (plain, template, dynamic), image inputs are traced through approve gates
//! and preview nodes to a local file, a URL (reference, pick, or a disabled
//! node's saved result) or another task's first good candidate. Edges run
//! from a task to every task consuming its output.
//!
//! Pure: the only outside knowledge, whether a local reference file exists,
//! comes in through `CompileOptions::file_exists`.

use crate::flow::{Finding, Flow, Kind, Node, Tab};
use crate::models::IMAGE_MODEL;
use crate::names::{base_name, NameSet};
use crate::prompt::{fill, placeholders, PromptValue};
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub struct CompileOptions<'a> {
    /// Candidates per task (`--candidates`).
    pub candidates: u32,
    /// `--ref-image`: the image used by reference nodes that hold none.
    pub ref_image: Option<&'a str>,
    /// Whether a local reference path (as written in the flow) exists.
    pub file_exists: &'a dyn Fn(&str) -> bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Image,
    Video,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Image => "image",
            TaskKind::Video => "video",
        }
    }
}

/// Where one image input of a task comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// A local file, as written in the flow (relative to the flow's folder) or given by `--ref-image`.
    File(String),
    /// An http(s), file or data URL: a reference, a user's pick, or a disabled node's saved result.
    Url(String),
    /// The first good candidate of another task (index into `Compiled::tasks`).
    Task(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInput {
    /// Input slot on the generation node (1.. for images; 1 = start frame, 2 = end frame for videos).
    pub slot: usize,
    pub source: InputSource,
    /// The approve gate the input passed through, if any.
    pub gate: Option<i64>,
}

/// Request parameters: everything sent to the API besides the prompt and images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The model's name (models.rs): what it is, not the id a provider
    /// calls it.
    pub model: String,
    pub aspect_ratio: String,
    pub resolution: String,
    /// Video length in seconds.
    pub duration: Option<u32>,
    /// G-Labs video mode: `text_to_video`, `start_image`, `start_end_image`.
    pub video_mode: Option<String>,
    pub negative_prompt: Option<String>,
    pub seed: Option<String>,
    pub candidates: u32,
    /// Not part of the key: how long one attempt may take.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub index: usize,
    pub tab: usize,
    pub tab_name: String,
    pub node_id: i64,
    /// Index of the node in its tab's `graphData.nodes`.
    pub node_index: usize,
    pub title: String,
    /// The node's human name (`scene07`); rows share it.
    pub name: String,
    /// 0-based dynamic row, if the node fans out.
    pub row: Option<usize>,
    pub kind: TaskKind,
    pub prompt: String,
    pub params: Params,
    pub inputs: Vec<TaskInput>,
}

impl Task {
    /// Name of this task in files and progress lines: `scene07`, `b-roll-row2`.
    pub fn label(&self) -> String {
        match self.row {
            Some(r) => format!("{}-row{}", self.name, r + 1),
            None => self.name.clone(),
        }
    }
    /// Tasks that must finish before this one can start.
    pub fn deps(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs.iter().filter_map(|i| match i.source {
            InputSource::Task(t) => Some(t),
            _ => None,
        })
    }
}

#[derive(Debug)]
pub struct Compiled {
    pub tasks: Vec<Task>,
    /// Node `i` is task `i`; an edge runs from a producer to its consumer.
    pub graph: DiGraph<usize, ()>,
    /// Task indices in dependency order.
    pub order: Vec<usize>,
    /// Name of every generation node, active or not, by (tab, node id).
    pub names: BTreeMap<(usize, i64), (TaskKind, String)>,
    pub warnings: Vec<Finding>,
}

impl Compiled {
    /// The task of (tab, node id, row).
    pub fn find(&self, tab: usize, node_id: i64, row: Option<usize>) -> Option<&Task> {
        self.tasks
            .iter()
            .find(|t| t.tab == tab && t.node_id == node_id && t.row == row)
    }
}

/// Value of a node input as seen at node level (before rows fan out).
#[derive(Debug, Clone)]
enum NodeSource {
    File(String),
    Url(String),
    Gen(i64),
}

struct GenNode {
    rows: Option<usize>,
    prompt: PromptValue,
    inputs: Vec<(usize, NodeSource, Option<i64>)>,
}

pub fn compile(flow: &Flow, opts: &CompileOptions) -> Result<Compiled, Vec<Finding>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    // Names first, over every generation node so that switching a node off
    // and on again never renames the others.
    let mut names = BTreeMap::new();
    let mut sets: BTreeMap<TaskKind, NameSet> = BTreeMap::new();
    for node in flow.nodes() {
        let kind = match node.kind {
            Kind::Image => TaskKind::Image,
            Kind::Video => TaskKind::Video,
            _ => continue,
        };
        let fallback = format!("{}-{}", kind.as_str(), node.id);
        let name = sets
            .entry(kind)
            .or_default()
            .unique(&base_name(&node.title, &fallback));
        names.insert((node.tab, node.id), (kind, name));
    }

    let mut tasks: Vec<Task> = Vec::new();
    for tab in &flow.tabs {
        let Some(order) = node_order(tab, &mut errors) else {
            continue;
        };
        let mut prompts: BTreeMap<i64, Option<PromptValue>> = BTreeMap::new();
        let mut gens: BTreeMap<i64, Option<GenNode>> = BTreeMap::new();
        for &ni in &order {
            let node = &tab.nodes[ni];
            match node.kind {
                Kind::Prompt => {
                    let v = resolve_prompt_node(tab, node, &prompts, &mut errors);
                    prompts.insert(node.id, v);
                }
                Kind::Image | Kind::Video if !node.is_inactive() => {
                    let g =
                        resolve_gen(tab, node, &prompts, &gens, opts, &mut errors, &mut warnings);
                    gens.insert(node.id, g);
                }
                _ => {}
            }
        }
        // Tasks, in the tab's dependency order.
        let mut index_of: BTreeMap<(i64, Option<usize>), usize> = BTreeMap::new();
        for &ni in &order {
            let node = &tab.nodes[ni];
            let Some(Some(g)) = gens.get(&node.id) else {
                continue;
            };
            let rows: Vec<Option<usize>> = match g.rows {
                Some(n) => (0..n).map(Some).collect(),
                None => vec![None],
            };
            let (kind, name) = names[&(tab.index, node.id)].clone();
            for row in rows {
                let mut inputs = Vec::new();
                let mut ok = true;
                for (slot, src, gate) in &g.inputs {
                    let source = match src {
                        NodeSource::File(p) => InputSource::File(p.clone()),
                        NodeSource::Url(u) => InputSource::Url(u.clone()),
                        NodeSource::Gen(up) => {
                            let up_rows =
                                gens.get(up).and_then(|g| g.as_ref()).and_then(|g| g.rows);
                            let key = (*up, if up_rows.is_some() { row } else { None });
                            match index_of.get(&key) {
                                Some(&t) => InputSource::Task(t),
                                None => {
                                    ok = false;
                                    break;
                                }
                            }
                        }
                    };
                    inputs.push(TaskInput {
                        slot: *slot,
                        source,
                        gate: *gate,
                    });
                }
                if !ok {
                    continue;
                }
                let index = tasks.len();
                index_of.insert((node.id, row), index);
                tasks.push(Task {
                    index,
                    tab: tab.index,
                    tab_name: tab.name.clone(),
                    node_id: node.id,
                    node_index: node.index,
                    title: node.title.clone(),
                    name: name.clone(),
                    row,
                    kind,
                    prompt: g.prompt.row(row).to_string(),
                    params: params(node, kind, &g.inputs, opts.candidates),
                    inputs,
                });
            }
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let mut graph = DiGraph::with_capacity(tasks.len(), tasks.len());
    for t in &tasks {
        graph.add_node(t.index);
    }
    for t in &tasks {
        for d in t.deps() {
            graph.add_edge(NodeIndex::new(d), NodeIndex::new(t.index), ());
        }
    }
    let order = match toposort(&graph, None) {
        Ok(o) => o.into_iter().map(|n| graph[n]).collect(),
        // Unreachable: node-level cycles were rejected above.
        Err(_) => {
            return Err(vec![Finding::error(
                "cycle",
                "",
                "the task graph has a cycle",
            )])
        }
    };
    Ok(Compiled {
        tasks,
        graph,
        order,
        names,
        warnings,
    })
}

/// Dependency order of a tab's nodes, or None (with a finding) when links form a cycle.
fn node_order(tab: &Tab, errors: &mut Vec<Finding>) -> Option<Vec<usize>> {
    let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(tab.nodes.len(), tab.links.len());
    let mut idx = BTreeMap::new();
    for (i, n) in tab.nodes.iter().enumerate() {
        idx.entry(n.id).or_insert_with(|| g.add_node(i));
    }
    for l in &tab.links {
        if let (Some(&a), Some(&b)) = (idx.get(&l.src), idx.get(&l.dst)) {
            g.add_edge(a, b, ());
        }
    }
    match toposort(&g, None) {
        Ok(order) => Some(order.into_iter().map(|n| g[n]).collect()),
        Err(_) => {
            for scc in tarjan_scc(&g) {
                let cyclic = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
                if !cyclic {
                    continue;
                }
                let path = cycle_path(&g, &scc);
                let first = &tab.nodes[g[path[0]]];
                let shown: Vec<String> = path
                    .iter()
                    .chain(std::iter::once(&path[0]))
                    .map(|&n| {
                        let node = &tab.nodes[g[n]];
                        format!("{:?} (#{})", node.title, node.id)
                    })
                    .collect();
                errors.push(
                    Finding::error("cycle", first.path(), format!("the links form a cycle: {}", shown.join(" -> ")))
                        .on(&tab.name, first)
                        .hint("a node cannot consume its own output: remove one of these links in PatchWork"),
                );
            }
            None
        }
    }
}

/// One simple cycle through the nodes of a strongly connected component.
fn cycle_path(g: &DiGraph<usize, ()>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let inside = |n: &NodeIndex| scc.contains(n);
    let start = *scc.iter().min().unwrap_or(&scc[0]);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = g.neighbors(cur).filter(inside).min();
        match next {
            Some(n) if n == start => return path,
            Some(n) if path.contains(&n) => {
                let pos = path.iter().position(|&p| p == n).unwrap_or(0);
                return path.split_off(pos);
            }
            Some(n) => {
                path.push(n);
                cur = n;
            }
            None => return path,
        }
        if path.len() > scc.len() {
            return path;
        }
    }
}

fn resolve_prompt_node(
    tab: &Tab,
    node: &Node,
    prompts: &BTreeMap<i64, Option<PromptValue>>,
    errors: &mut Vec<Finding>,
) -> Option<PromptValue> {
    let text = node.prop_str("text").unwrap_or("");
    if node.prop_bool("dynamicMode") {
        let rows = match node.prop("dynamicRows") {
            Some(Value::Array(rows)) => rows
                .iter()
                .map(|r| r.as_str().unwrap_or("").to_string())
                .collect(),
            _ => Vec::new(),
        };
        return Some(PromptValue::Rows(rows));
    }
    if !node.prop_bool("templateMode") {
        return Some(PromptValue::Single(text.to_string()));
    }
    let mut values: BTreeMap<String, PromptValue> = BTreeMap::new();
    let mut rows: Option<(usize, String)> = None;
    for name in placeholders(text) {
        let Some(slot) = node
            .inputs
            .iter()
            .position(|i| i.name == name && i.link.is_some())
        else {
            continue; // reported by validate
        };
        let (src, _) = tab.source(node, slot)?;
        if src.kind != Kind::Prompt {
            errors.push(
                Finding::error(
                    "prompt-source",
                    format!("{}.inputs[{slot}]", node.path()),
                    format!(
                        "placeholder {{{name}}} is fed by {:?} (#{}), which is not a prompt",
                        src.title, src.id
                    ),
                )
                .on(&tab.name, node)
                .hint("link a Prompt node into this input"),
            );
            return None;
        }
        let v = prompts.get(&src.id)?.clone()?;
        if let Some(n) = v.rows() {
            match &rows {
                Some((m, other)) if *m != n => {
                    errors.push(
                        Finding::error(
                            "dynamic-length-mismatch",
                            format!("{}.inputs[{slot}]", node.path()),
                            format!("dynamic inputs have different numbers of rows: {{{other}}} has {m}, {{{name}}} has {n}"),
                        )
                        .on(&tab.name, node)
                        .hint("rows are paired by index: give every dynamic prompt feeding this template the same number of rows"),
                    );
                    return None;
                }
                Some(_) => {}
                None => rows = Some((n, name.clone())),
            }
        }
        values.insert(name, v);
    }
    let fill_row = |r: Option<usize>| fill(text, |name| values.get(name).map(|v| v.row(r)));
    Some(match rows {
        Some((n, _)) => PromptValue::Rows((0..n).map(|r| fill_row(Some(r))).collect()),
        None => PromptValue::Single(fill_row(None)),
    })
}

fn is_url(s: &str) -> bool {
    let l = s.trim_start().to_ascii_lowercase();
    l.starts_with("http://")
        || l.starts_with("https://")
        || l.starts_with("file://")
        || l.starts_with("data:")
}

fn classify(s: &str) -> NodeSource {
    if is_url(s) {
        NodeSource::Url(s.to_string())
    } else {
        NodeSource::File(s.to_string())
    }
}

/// The selected saved result of a (disabled) generation node.
fn saved_result(node: &Node) -> Option<String> {
    let (list, index_key) = match node.kind {
        Kind::Video => {
            if let Some(u) = node.prop_str("_savedVideoUrl") {
                return Some(u.to_string());
            }
            ("_savedVideos", "_savedGalleryIndex")
        }
        _ => ("_savedImages", "_savedPreviewIndex"),
    };
    let urls = node.saved_urls(list);
    let i = node.prop(index_key).and_then(Value::as_u64).unwrap_or(0) as usize;
    urls.get(i).or_else(|| urls.first()).cloned()
}

#[allow(clippy::too_many_arguments)]
fn resolve_gen(
    tab: &Tab,
    node: &Node,
    prompts: &BTreeMap<i64, Option<PromptValue>>,
    gens: &BTreeMap<i64, Option<GenNode>>,
    opts: &CompileOptions,
    errors: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) -> Option<GenNode> {
    let before = errors.len();
    // Prompt: slot 0.
    let prompt = match tab.source(node, 0) {
        Some((src, _)) if src.kind == Kind::Prompt => prompts.get(&src.id).cloned().flatten(),
        Some((src, _)) => {
            errors.push(
                Finding::error(
                    "prompt-source",
                    format!("{}.inputs[0]", node.path()),
                    format!(
                        "the prompt input is fed by {:?} (#{}), which is not a prompt",
                        src.title, src.id
                    ),
                )
                .on(&tab.name, node)
                .hint("link a Prompt node into the prompt input"),
            );
            None
        }
        None => {
            errors.push(
                Finding::error(
                    "no-prompt",
                    format!("{}.inputs[0]", node.path()),
                    "nothing is linked into the prompt input",
                )
                .on(&tab.name, node)
                .hint(
                    "link a Prompt node into slot 0, or switch the node off (_disabled) to skip it",
                ),
            );
            None
        }
    };
    // Image inputs.
    let slots: Vec<usize> = match node.kind {
        Kind::Video if node.prop_str("mode") == Some("text-to-video") => Vec::new(),
        Kind::Video => vec![1, 2],
        _ => (1..node.inputs.len()).collect(),
    };
    let mut inputs = Vec::new();
    for slot in slots {
        if node.inputs.get(slot).and_then(|i| i.link).is_none() {
            continue;
        }
        if let Some((src, gate)) = resolve_image(tab, node, slot, gens, opts, errors) {
            inputs.push((slot, src, gate));
        }
    }
    if node.kind == Kind::Video
        && node.prop_str("mode") != Some("text-to-video")
        && inputs.is_empty()
        && errors.len() == before
    {
        warnings.push(
            Finding::warning(
                "veo-no-frames",
                format!("{}.inputs", node.path()),
                "frames-to-video node with no frame linked: sent as text-to-video",
            )
            .on(&tab.name, node)
            .hint("link a start frame, or set the node's mode to text-to-video"),
        );
    }
    let prompt = prompt?;
    if errors.len() != before {
        return None;
    }
    // Rows: the prompt's and every upstream task's, paired by index.
    let mut rows: Option<(usize, String)> = prompt.rows().map(|n| (n, "its prompt".to_string()));
    for (_, src, _) in &inputs {
        if let NodeSource::Gen(up) = src {
            let Some(Some(g)) = gens.get(up) else {
                return None;
            };
            if let Some(n) = g.rows {
                let what = format!("upstream node #{up}");
                match &rows {
                    Some((m, other)) if *m != n => {
                        errors.push(
                            Finding::error(
                                "dynamic-length-mismatch",
                                node.path(),
                                format!("inputs have different numbers of dynamic rows: {other} has {m}, {what} has {n}"),
                            )
                            .on(&tab.name, node)
                            .hint("rows are paired by index: make the dynamic lists the same length"),
                        );
                        return None;
                    }
                    Some(_) => {}
                    None => rows = Some((n, what)),
                }
            }
        }
    }
    Some(GenNode {
        rows: rows.map(|(n, _)| n),
        prompt,
        inputs,
    })
}

fn resolve_image(
    tab: &Tab,
    consumer: &Node,
    slot: usize,
    gens: &BTreeMap<i64, Option<GenNode>>,
    opts: &CompileOptions,
    errors: &mut Vec<Finding>,
) -> Option<(NodeSource, Option<i64>)> {
    let input_path = format!("{}.inputs[{slot}]", consumer.path());
    let mut gate = None;
    let (mut src, _) = tab.source(consumer, slot)?;
    // Follow preview nodes and gates (bounded: the tab is acyclic).
    for _ in 0..=tab.nodes.len() {
        match src.kind {
            Kind::Reference | Kind::Preview | Kind::MediaOther => {
                if src.kind != Kind::Reference {
                    if let Some((up, _)) = tab.source(src, 0) {
                        src = up;
                        continue;
                    }
                }
                return match src.prop_str("imageData") {
                    Some(s) if !s.trim().is_empty() => {
                        let s = s.trim();
                        if !is_url(s) && !(opts.file_exists)(s) {
                            errors.push(
                                Finding::error("missing-ref-file", src.prop_path("imageData"), format!("reference image {s:?} does not exist"))
                                    .on(&tab.name, src)
                                    .hint("paths are relative to the flow's folder: fix the path or load the image in PatchWork"),
                            );
                            return None;
                        }
                        Some((classify(s), gate))
                    }
                    _ => match opts.ref_image {
                        Some(r) => Some((NodeSource::File(r.to_string()), gate)),
                        None => {
                            errors.push(
                                Finding::error("ref-no-image", src.prop_path("imageData"), format!("reference node feeding {:?} holds no image", consumer.title))
                                    .on(&tab.name, src)
                                    .hint("load an image into it in PatchWork, or pass --ref-image PATH for unwired refs"),
                            );
                            None
                        }
                    },
                };
            }
            Kind::Approve => {
                gate = Some(src.id);
                if let Some(pick) = src.prop_str("_lastApprovedData").filter(|s| !s.is_empty()) {
                    return Some((classify(pick), gate));
                }
                match tab.source(src, 0) {
                    Some((up, _)) if up.kind.is_generation() && !up.is_inactive() => {
                        return gens
                            .get(&up.id)
                            .and_then(|g| g.as_ref())
                            .map(|_| (NodeSource::Gen(up.id), gate));
                    }
                    Some((up, _)) if up.kind.is_generation() => {
                        let held = src
                            .prop_str("lastData")
                            .map(str::to_string)
                            .or_else(|| saved_result(up));
                        return match held {
                            Some(u) => Some((classify(&u), gate)),
                            None => {
                                errors.push(
                                    Finding::error(
                                        "nothing-to-consume",
                                        src.path(),
                                        format!("approve gate has no pick and its upstream {:?} (#{}) is switched off with no saved result", up.title, up.id),
                                    )
                                    .on(&tab.name, src)
                                    .hint("switch the upstream node on, or approve an image in PatchWork"),
                                );
                                None
                            }
                        };
                    }
                    Some((up, _)) => {
                        src = up;
                        continue;
                    }
                    None => {
                        return match src.prop_str("lastData") {
                            Some(u) => Some((classify(u), gate)),
                            None => {
                                errors.push(
                                    Finding::error(
                                        "nothing-to-consume",
                                        src.path(),
                                        "approve gate has no input and no pick",
                                    )
                                    .on(&tab.name, src)
                                    .hint("link a generation node into the gate"),
                                );
                                None
                            }
                        };
                    }
                }
            }
            Kind::Image | Kind::Video => {
                if src.is_inactive() {
                    return match saved_result(src) {
                        Some(u) => Some((classify(&u), gate)),
                        None => {
                            errors.push(
                                Finding::error(
                                    "nothing-to-consume",
                                    input_path,
                                    format!(
                                        "{:?} (#{}) is switched off and holds no result",
                                        src.title, src.id
                                    ),
                                )
                                .on(&tab.name, consumer)
                                .hint("switch it on so it is built, or remove the link"),
                            );
                            None
                        }
                    };
                }
                return gens
                    .get(&src.id)
                    .and_then(|g| g.as_ref())
                    .map(|_| (NodeSource::Gen(src.id), gate));
            }
            Kind::Prompt | Kind::Unknown => {
                let what = if src.kind == Kind::Prompt {
                    "a prompt".to_string()
                } else {
                    format!("a node of unknown type {:?}", src.type_name)
                };
                errors.push(
                    Finding::error(
                        "unknown-type-upstream",
                        input_path,
                        format!("image input {slot} is fed by {what}: {:?} (#{})", src.title, src.id),
                    )
                    .on(&tab.name, consumer)
                    .hint("nbbuild cannot produce an image from it: link a reference, an approve gate or a generation node"),
                );
                return None;
            }
        }
    }
    None
}

fn params(
    node: &Node,
    kind: TaskKind,
    inputs: &[(usize, NodeSource, Option<i64>)],
    candidates: u32,
) -> Params {
    let s = |k: &str, d: &str| {
        node.prop_str(k)
            .filter(|v| !v.is_empty())
            .unwrap_or(d)
            .to_string()
    };
    let seed = node.prop("seed").map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let negative = node
        .prop_str("negativePrompt")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let timeout = |d: u64| {
        node.prop("timeout")
            .and_then(Value::as_u64)
            .filter(|&t| t > 0)
            .unwrap_or(d)
    };
    match kind {
        TaskKind::Image => Params {
            model: IMAGE_MODEL.to_string(),
            aspect_ratio: s("aspectRatio", "9:16"),
            resolution: s("resolution", "1K"),
            duration: None,
            video_mode: None,
            negative_prompt: None,
            seed,
            candidates,
            timeout_ms: timeout(300_000),
        },
        TaskKind::Video => {
            let has = |slot| inputs.iter().any(|(s, _, _)| *s == slot);
            let mode = if node.prop_str("mode") == Some("text-to-video") || (!has(1) && !has(2)) {
                "text_to_video"
            } else if has(2) {
                "start_end_image"
            } else {
                "start_image"
            };
            Params {
                model: video_model(node),
                aspect_ratio: s("aspectRatio", "9:16"),
                resolution: s("resolution", "720p"),
                duration: Some(
                    node.prop_str("durationSeconds")
                        .and_then(|d| d.trim().parse().ok())
                        .unwrap_or(8),
                ),
                video_mode: Some(mode.to_string()),
                negative_prompt: negative,
                seed,
                candidates,
                timeout_ms: timeout(600_000),
            }
        }
    }
}

/// The video model's name from `veoModel` (0.8.x) or the `model` string.
fn video_model(node: &Node) -> String {
    crate::models::video_model(node.prop_str("veoModel"), node.prop_str("model"))
}
