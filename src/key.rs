//! Task keys: a blake3 hash of an explicit, ordered preimage.
//!
//! The preimage is a plain struct (fixed field order, no hash maps) holding
//! everything that determines a task's result and nothing else; see
//! docs/keys.md. The store keeps the preimage beside each key, so `explain`
//! can diff the same struct that was hashed.

use crate::compile::{Task, TaskKind};
use serde::{Deserialize, Serialize};

/// Bumped whenever the preimage or its serialization changes; the store's
/// records are then migrated from their stored preimages (`migrate.rs`), so
/// a new format never makes anyone pay again.
///
/// 2: image inputs by content only (no URL identities); the candidate count
/// left the key (candidates are samples: slots c1..cN under one key).
pub const KEY_VERSION: u32 = 2;

/// What an image input contributes to a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ImageId {
    /// The blake3 of the image's bytes, whatever names it: a local path, a
    /// `file://` URL, a URL nbbuild published or downloaded before, or one
    /// of nbbuild's own candidates.
    Bytes { blake3: String },
    /// Only in version-1 preimages (read for migration and `explain`): a
    /// URL was keyed as itself.
    Url { url: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInput {
    pub slot: usize,
    #[serde(flatten)]
    pub id: ImageId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage {
    pub key_version: u32,
    pub kind: TaskKind,
    /// The model id sent to the API.
    pub model: String,
    /// The fully resolved prompt text of the task's row.
    pub prompt: String,
    pub aspect_ratio: String,
    pub resolution: String,
    pub duration: Option<u32>,
    pub video_mode: Option<String>,
    pub negative_prompt: Option<String>,
    pub seed: Option<String>,
    /// Image inputs in slot order.
    pub images: Vec<ImageInput>,
}

impl Preimage {
    /// The preimage of `task` given the identity of each of its image inputs
    /// (in the task's input order).
    pub fn new(task: &Task, images: Vec<ImageInput>) -> Preimage {
        let p = &task.params;
        let mut images = images;
        images.sort_by_key(|i| i.slot);
        Preimage {
            key_version: KEY_VERSION,
            kind: task.kind,
            model: p.model.clone(),
            prompt: task.prompt.clone(),
            aspect_ratio: p.aspect_ratio.clone(),
            resolution: p.resolution.clone(),
            duration: p.duration,
            video_mode: p.video_mode.clone(),
            negative_prompt: p.negative_prompt.clone(),
            seed: p.seed.clone(),
            images,
        }
    }

    /// Canonical bytes: serde_json of the struct (fields in declaration order).
    pub fn canonical(&self) -> Vec<u8> {
        // A plain struct of strings and numbers: serialization cannot fail,
        // and a silent empty preimage would give every task the same key.
        serde_json::to_vec(self).expect("a preimage serializes")
    }

    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"nbbuild-task-key\0");
        h.update(&self.canonical());
        h.finalize().to_hex().to_string()
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    pub fn from_value(v: &serde_json::Value) -> Option<Preimage> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// One field that differs between two preimages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub old: String,
    pub new: String,
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

fn show_image(v: Option<&serde_json::Value>) -> String {
    let Some(v) = v else {
        return "(none)".into();
    };
    match (v["blake3"].as_str(), v["url"].as_str()) {
        (Some(h), _) => format!("bytes {}", &h[..h.len().min(12)]),
        (None, Some(u)) => u.to_string(),
        _ => show(v),
    }
}

/// Field-by-field differences, in preimage order, derived from the
/// serialized preimages (so a field added to `Preimage` is diffed without
/// anyone remembering to). Images are compared per slot.
pub fn diff(old: &Preimage, new: &Preimage) -> Vec<Change> {
    diff_values(&old.to_value(), &new.to_value())
}

/// [`diff`] over serialized preimages (a stored one may be of an older
/// key version).
pub fn diff_values(old: &serde_json::Value, new: &serde_json::Value) -> Vec<Change> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut fields: Vec<&String> = b.keys().collect();
    fields.extend(a.keys().filter(|k| !b.contains_key(*k)));
    let mut out = Vec::new();
    let null = serde_json::Value::Null;
    for f in fields {
        let (x, y) = (a.get(f).unwrap_or(&null), b.get(f).unwrap_or(&null));
        if f == "images" {
            let by_slot =
                |v: &serde_json::Value| -> std::collections::BTreeMap<u64, serde_json::Value> {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|i| Some((i["slot"].as_u64()?, i.clone())))
                        .collect()
                };
            let (xs, ys) = (by_slot(x), by_slot(y));
            let slots: std::collections::BTreeSet<u64> =
                xs.keys().chain(ys.keys()).copied().collect();
            for slot in slots {
                let (o, n) = (show_image(xs.get(&slot)), show_image(ys.get(&slot)));
                if o != n {
                    out.push(Change {
                        field: format!("image {slot}"),
                        old: o,
                        new: n,
                    });
                }
            }
        } else if x != y {
            out.push(Change {
                field: f.clone(),
                old: show(x),
                new: show(y),
            });
        }
    }
    out
}
