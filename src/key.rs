//! Task keys: a blake3 hash of an explicit, ordered preimage.
//!
//! The preimage is a plain struct (fixed field order, no hash maps) holding
//! everything that determines a task's result and nothing else; see
//! docs/keys.md. The store keeps the preimage beside each key, so `explain`
//! can diff the same struct that was hashed.

use crate::compile::{Task, TaskKind};
use serde::{Deserialize, Serialize};

/// Bumped whenever the preimage or its serialization changes.
pub const KEY_VERSION: u32 = 1;

/// What an image input contributes to a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ImageId {
    /// A local file or a candidate nbbuild picked: the blake3 of its bytes.
    Bytes { blake3: String },
    /// A reference or pick given as a URL: the URL itself (PatchWork's
    /// upload URLs are immutable, and planning must work offline).
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
    pub candidates: u32,
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
            candidates: p.candidates,
            images,
        }
    }

    /// Canonical bytes: serde_json of the struct (fields in declaration order).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
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

fn show<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v).unwrap_or_default() {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// Field-by-field differences, in preimage order. Images are compared per slot.
pub fn diff(old: &Preimage, new: &Preimage) -> Vec<Change> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(Change {
                field: name.to_string(),
                old: a,
                new: b,
            });
        }
    };
    field(
        "key_version",
        show(&old.key_version),
        show(&new.key_version),
    );
    field("kind", show(&old.kind), show(&new.kind));
    field("model", show(&old.model), show(&new.model));
    field("prompt", old.prompt.clone(), new.prompt.clone());
    field(
        "aspect_ratio",
        show(&old.aspect_ratio),
        show(&new.aspect_ratio),
    );
    field("resolution", show(&old.resolution), show(&new.resolution));
    field("duration", show(&old.duration), show(&new.duration));
    field("video_mode", show(&old.video_mode), show(&new.video_mode));
    field(
        "negative_prompt",
        show(&old.negative_prompt),
        show(&new.negative_prompt),
    );
    field("seed", show(&old.seed), show(&new.seed));
    field("candidates", show(&old.candidates), show(&new.candidates));
    let slots: std::collections::BTreeSet<usize> = old
        .images
        .iter()
        .chain(&new.images)
        .map(|i| i.slot)
        .collect();
    for slot in slots {
        let get = |p: &Preimage| {
            p.images
                .iter()
                .find(|i| i.slot == slot)
                .map(|i| match &i.id {
                    ImageId::Bytes { blake3 } => {
                        format!("bytes {}", &blake3[..blake3.len().min(12)])
                    }
                    ImageId::Url { url } => url.clone(),
                })
                .unwrap_or_else(|| "(none)".into())
        };
        field(&format!("image {slot}"), get(old), get(new));
    }
    out
}
