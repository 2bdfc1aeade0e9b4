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

mod cycles;
mod params;
mod prompts;
mod tracing;

use cycles::node_order;
use prompts::resolve_prompt_node;
use tracing::resolve_gen;

use crate::flow::{Finding, Flow, Kind, Node, Tab};
use crate::models::IMAGE_MODEL;
use crate::names::{base_name, NameSet};
use crate::prompt::{fill, placeholders, PromptValue};
use petgraph::algo::toposort;
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
                    params: params::params(node, kind, &g.inputs, opts.candidates),
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
