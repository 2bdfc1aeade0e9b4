//! Request bodies, built from a compiled task as glabs.md maps them.

use crate::compile::TaskKind;
use crate::generator::GenInput;
use base64::Engine;
use serde_json::{json, Value};

/// One reference image, as bytes (G-Labs cannot fetch URLs).
#[derive(Debug, Clone)]
pub struct RefImage {
    pub name: String,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

/// A ready-to-send generation request (one candidate).
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub kind: TaskKind,
    pub body: Value,
}

impl GenRequest {
    pub fn new(input: &GenInput) -> GenRequest {
        let (task, p) = (input, &input.params);
        let images: Vec<Value> = input
            .refs
            .iter()
            .map(|r| {
                json!({
                    "data": base64::engine::general_purpose::STANDARD.encode(r.bytes.as_slice()),
                    "name": r.name,
                })
            })
            .collect();
        let mut body = json!({
            "prompt": task.prompt,
            "model": p.model,
            "aspect_ratio": p.aspect_ratio,
        });
        let obj = body.as_object_mut().expect("object literal");
        match task.kind {
            TaskKind::Image => {
                if !images.is_empty() {
                    obj.insert("reference_images".into(), Value::Array(images));
                }
                if let r @ ("2K" | "4K") = p.resolution.to_ascii_uppercase().as_str() {
                    obj.insert("upscale".into(), json!([r]));
                }
            }
            TaskKind::Video => {
                let mode = p
                    .video_mode
                    .clone()
                    .unwrap_or_else(|| "text_to_video".into());
                if mode != "text_to_video" {
                    obj.insert("reference_images".into(), Value::Array(images));
                }
                obj.insert("mode".into(), json!(mode));
                obj.insert("resolution".into(), json!([p.resolution]));
                obj.insert("video_length".into(), json!(p.duration.unwrap_or(8)));
            }
        }
        GenRequest {
            kind: task.kind,
            body,
        }
    }

    pub fn path(&self) -> &'static str {
        match self.kind {
            TaskKind::Image => "/api/image/generate",
            TaskKind::Video => "/api/video/generate",
        }
    }
}
