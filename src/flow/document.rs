//! The `.nbflow` document: the raw JSON (kept for round-trip output) plus a
//! typed, lenient view of tabs, nodes and links.
//!
//! Parsing never panics and is forgiving about the variants real PatchWork
//! files have (0.7.x legacy types, `inputs: null`, missing labels ...).
//! Only problems that make the file unreadable as a flow are errors here;
//! everything semantic is a finding of `validate`.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;

/// The whole document.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The JSON exactly as read (key order preserved), for round-trip output.
    pub raw: Value,
    pub name: String,
    pub version: String,
    pub tabs: Vec<Tab>,
}

#[derive(Debug, Clone)]
pub struct Tab {
    pub index: usize,
    pub name: String,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    /// Link table entries that are not 6-element arrays of the right types.
    pub bad_links: Vec<(usize, String)>,
    /// Node id -> index of its first node in `nodes`.
    node_at: HashMap<i64, usize>,
    /// Link id -> index of its first entry in `links`.
    link_at: HashMap<i64, usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Prompt,
    Image,
    Video,
    Reference,
    Approve,
    Preview,
    /// A Media node whose `mode` is something else.
    MediaOther,
    Unknown,
}

impl Kind {
    pub fn is_generation(self) -> bool {
        matches!(self, Kind::Image | Kind::Video)
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub tab: usize,
    /// Index in `graphData.nodes`.
    pub index: usize,
    pub id: i64,
    pub type_name: String,
    pub kind: Kind,
    pub title: String,
    pub mode: i64,
    pub properties: Map<String, Value>,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
}

impl Node {
    /// Not executed: switched off by the user or muted/bypassed in LiteGraph.
    pub fn is_inactive(&self) -> bool {
        self.mode != 0 || self.prop_bool("_disabled")
    }
    pub fn prop(&self, key: &str) -> Option<&Value> {
        self.properties.get(key).filter(|v| !v.is_null())
    }
    pub fn prop_str(&self, key: &str) -> Option<&str> {
        self.prop(key).and_then(Value::as_str)
    }
    pub fn prop_bool(&self, key: &str) -> bool {
        self.prop(key).and_then(Value::as_bool).unwrap_or(false)
    }
    pub fn path(&self) -> String {
        format!("tabs[{}].graphData.nodes[{}]", self.tab, self.index)
    }
    pub fn prop_path(&self, key: &str) -> String {
        format!("{}.properties.{}", self.path(), key)
    }
    /// URL strings held in a result list property (`_savedImages` ...).
    pub fn saved_urls(&self, key: &str) -> Vec<String> {
        match self.prop(key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub ty: String,
    pub link: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub ty: String,
    pub links: Vec<i64>,
}

/// `[linkId, sourceNodeId, sourceSlot, targetNodeId, targetSlot, dataType]`
#[derive(Debug, Clone)]
pub struct Link {
    /// Index in `graphData.links`.
    pub index: usize,
    pub id: i64,
    pub src: i64,
    pub src_slot: usize,
    pub dst: i64,
    pub dst_slot: usize,
    pub ty: String,
}

/// Why a file could not be read as a flow at all.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} (at {})", self.message, self.path)
        }
    }
}

fn perr(path: impl Into<String>, message: impl Into<String>) -> ParseError {
    ParseError {
        path: path.into(),
        message: message.into(),
        hint: None,
    }
}

impl Flow {
    /// Parse a document from its text.
    pub fn parse(text: &str) -> Result<Flow, ParseError> {
        let raw: Value = serde_json::from_str(text).map_err(|e| ParseError {
            path: String::new(),
            message: format!(
                "not valid JSON: {} at line {}, column {}",
                strip_location(&e.to_string()),
                e.line(),
                e.column()
            ),
            hint: Some(
                "the file may be truncated or hand-edited; re-export it from PatchWork".into(),
            ),
        })?;
        Flow::from_value(raw)
    }

    pub fn from_value(raw: Value) -> Result<Flow, ParseError> {
        let top = raw
            .as_object()
            .ok_or_else(|| perr("", "the document is not a JSON object"))?;
        match top.get("format").and_then(Value::as_str) {
            Some("ducted-project") => {}
            other => {
                return Err(ParseError {
                    path: "format".into(),
                    message: match other {
                        Some(f) => format!(
                            "not an .nbflow file: format is {f:?}, expected \"ducted-project\""
                        ),
                        None => {
                            "not an .nbflow file: no \"format\": \"ducted-project\" field".into()
                        }
                    },
                    hint: Some("nbbuild reads PatchWork project files (.nbflow)".into()),
                })
            }
        }
        let name = top
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("untitled")
            .to_string();
        let version = top
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let tabs_v = top
            .get("tabs")
            .and_then(Value::as_array)
            .ok_or_else(|| perr("tabs", "\"tabs\" is missing or not a list"))?;
        let mut tabs = Vec::with_capacity(tabs_v.len());
        for (ti, tv) in tabs_v.iter().enumerate() {
            tabs.push(parse_tab(ti, tv)?);
        }
        Ok(Flow {
            raw,
            name,
            version,
            tabs,
        })
    }

    /// The document as text: same values, same key order as read (plus any
    /// changes made to `raw`).
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.raw).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn node(&self, tab: usize, id: i64) -> Option<&Node> {
        self.tabs.get(tab)?.node(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.tabs.iter().flat_map(|t| t.nodes.iter())
    }
}

impl Tab {
    pub fn node(&self, id: i64) -> Option<&Node> {
        self.node_at.get(&id).map(|&i| &self.nodes[i])
    }
    pub fn link(&self, id: i64) -> Option<&Link> {
        self.link_at.get(&id).map(|&i| &self.links[i])
    }
    /// The node feeding `node`'s input `slot`, with the link, if the input is
    /// linked and the link resolves.
    pub fn source(&self, node: &Node, slot: usize) -> Option<(&Node, &Link)> {
        let link_id = node.inputs.get(slot)?.link?;
        let link = self.link(link_id)?;
        Some((self.node(link.src)?, link))
    }
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn parse_tab(ti: usize, tv: &Value) -> Result<Tab, ParseError> {
    let path = format!("tabs[{ti}]");
    let obj = tv
        .as_object()
        .ok_or_else(|| perr(&path, "a tab is not a JSON object"))?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("tab {}", ti + 1));
    let empty = Map::new();
    let graph = match obj.get("graphData") {
        Some(Value::Object(g)) => g,
        None | Some(Value::Null) => &empty,
        Some(_) => {
            return Err(perr(
                format!("{path}.graphData"),
                "graphData is not an object",
            ))
        }
    };
    let mut nodes = Vec::new();
    match graph.get("nodes") {
        Some(Value::Array(ns)) => {
            for (ni, nv) in ns.iter().enumerate() {
                nodes.push(parse_node(ti, ni, nv)?);
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(perr(
                format!("{path}.graphData.nodes"),
                "nodes is not a list",
            ))
        }
    }
    let mut links = Vec::new();
    let mut bad_links = Vec::new();
    match graph.get("links") {
        Some(Value::Array(ls)) => {
            for (li, lv) in ls.iter().enumerate() {
                match parse_link(li, lv) {
                    Some(l) => links.push(l),
                    None => bad_links.push((li, format!("{path}.graphData.links[{li}]"))),
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(perr(
                format!("{path}.graphData.links"),
                "links is not a list",
            ))
        }
    }
    let mut node_at = HashMap::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        node_at.entry(n.id).or_insert(i);
    }
    let mut link_at = HashMap::with_capacity(links.len());
    for (i, l) in links.iter().enumerate() {
        link_at.entry(l.id).or_insert(i);
    }
    Ok(Tab {
        index: ti,
        name,
        nodes,
        links,
        bad_links,
        node_at,
        link_at,
    })
}

fn as_index(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

fn parse_link(index: usize, lv: &Value) -> Option<Link> {
    // The array form is what PatchWork writes; LiteGraph's object form is
    // accepted too.
    match lv {
        Value::Array(a) if a.len() >= 5 => Some(Link {
            index,
            id: a[0].as_i64()?,
            src: a[1].as_i64()?,
            src_slot: as_index(&a[2])?,
            dst: a[3].as_i64()?,
            dst_slot: as_index(&a[4])?,
            ty: a.get(5).and_then(Value::as_str).unwrap_or("*").to_string(),
        }),
        Value::Object(o) => Some(Link {
            index,
            id: o.get("id")?.as_i64()?,
            src: o.get("origin_id")?.as_i64()?,
            src_slot: as_index(o.get("origin_slot")?)?,
            dst: o.get("target_id")?.as_i64()?,
            dst_slot: as_index(o.get("target_slot")?)?,
            ty: o
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        }),
        _ => None,
    }
}

fn kind_of(type_name: &str, props: &Map<String, Value>) -> Kind {
    let media_mode = || match props.get("mode").and_then(Value::as_str) {
        Some("reference") | None => Kind::Reference,
        Some("approve") => Kind::Approve,
        Some("preview") => Kind::Preview,
        Some(_) => Kind::MediaOther,
    };
    match type_name {
        "nanobanana/Prompt" => Kind::Prompt,
        "nanobanana/NanobananaAPI" => Kind::Image,
        "nanobanana/Veo3" => Kind::Video,
        "nanobanana/Media" => media_mode(),
        "nanobanana/ReferenceImage" => Kind::Reference,
        "nanobanana/Approval" => Kind::Approve,
        _ => Kind::Unknown,
    }
}

fn parse_node(ti: usize, ni: usize, nv: &Value) -> Result<Node, ParseError> {
    let path = format!("tabs[{ti}].graphData.nodes[{ni}]");
    let obj = nv
        .as_object()
        .ok_or_else(|| perr(&path, "a node is not a JSON object"))?;
    let id = obj
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| perr(format!("{path}.id"), "a node has no numeric id"))?;
    let type_name = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let properties = match obj.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    let kind = kind_of(&type_name, &properties);
    let title = obj
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mode = obj.get("mode").and_then(Value::as_i64).unwrap_or(0);
    let inputs = match obj.get("inputs") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| Input {
                name: i
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                ty: i
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                link: i.get("link").and_then(Value::as_i64),
            })
            .collect(),
        _ => Vec::new(),
    };
    let outputs = match obj.get("outputs") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|o| Output {
                name: o
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                ty: o
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                links: match o.get("links") {
                    Some(Value::Array(ls)) => ls.iter().filter_map(Value::as_i64).collect(),
                    _ => Vec::new(),
                },
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Node {
        tab: ti,
        index: ni,
        id,
        type_name,
        kind,
        title,
        mode,
        properties,
        inputs,
        outputs,
    })
}
