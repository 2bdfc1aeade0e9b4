//! Validation of G-Labs submits: a JSON body becomes a [`Submit`] or the
//! message of a 400, following `glabs.md` (models, aspect ratios, reference
//! images, modes, lengths, resolutions, upscales).

use serde_json::Value;

use crate::server::http::decode_image_text;
use crate::server::tasks::{Kind, Submit};

const IMAGE_MODELS: &[&str] = &["nano_banana_2", "nano_banana_pro", "nano_banana_2_lite"];
const IMAGE_ASPECTS: &[&str] = &["1:1", "3:4", "4:3", "9:16", "16:9"];
const VIDEO_MODELS: &[&str] = &[
    "veo_31_fast",
    "veo_31_lite",
    "veo_31_quality",
    "veo_31_lite_relaxed",
];
const VIDEO_ASPECTS: &[&str] = &["16:9", "9:16"];
const VIDEO_LENGTHS: &[u64] = &[4, 6, 8];

/// A submit of `kind` from its body, or the message of the 400 it earns.
pub(super) fn parse_submit(kind: Kind, bytes: &[u8]) -> Result<Submit, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("Empty request body".into());
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("Invalid JSON body: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("Invalid JSON body: expected an object".into());
    };
    let prompt = match obj.get("prompt") {
        Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
        _ => return Err("Missing required field: prompt".into()),
    };
    let string_field = |name: &str| -> Result<Option<String>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("Invalid field: {name} must be a string")),
        }
    };
    let string_list = |name: &str| -> Result<Option<Vec<String>>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("Invalid field: {name} must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("Invalid field: {name} must be a list")),
        }
    };
    let refs = decode_references(obj.get("reference_images"))?;
    match kind {
        Kind::Image => {
            let model = string_field("model")?.unwrap_or_else(|| "nano_banana_2".into());
            if !IMAGE_MODELS.contains(&model.as_str()) {
                return Err(format!(
                    "Invalid model: {model} (expected one of {})",
                    IMAGE_MODELS.join(", ")
                ));
            }
            let aspect = string_field("aspect_ratio")?.unwrap_or_else(|| "1:1".into());
            if !IMAGE_ASPECTS.contains(&aspect.as_str()) {
                return Err(format!(
                    "Invalid aspect_ratio: {aspect} (expected one of {})",
                    IMAGE_ASPECTS.join(", ")
                ));
            }
            if refs.len() > 10 {
                return Err(format!(
                    "Too many reference_images: {} (at most 10)",
                    refs.len()
                ));
            }
            let upscale = string_list("upscale")?.unwrap_or_default();
            let suffix = match upscale.as_slice() {
                [] => String::new(),
                [u] if u == "2K" || u == "4K" => format!("_{u}"),
                _ => return Err("Invalid upscale: expected [\"2K\"] or [\"4K\"]".into()),
            };
            Ok(Submit {
                kind,
                prompt,
                aspect,
                outputs: vec![suffix],
                seconds: 0,
            })
        }
        Kind::Video => {
            let model = match string_field("model")? {
                Some(m) if !m.is_empty() => m,
                _ => return Err("MISSING_MODEL".into()),
            };
            if !VIDEO_MODELS.contains(&model.as_str()) {
                return Err(format!(
                    "Invalid model: {model} (expected one of {})",
                    VIDEO_MODELS.join(", ")
                ));
            }
            let aspect = string_field("aspect_ratio")?.unwrap_or_else(|| "16:9".into());
            if !VIDEO_ASPECTS.contains(&aspect.as_str()) {
                return Err(format!(
                    "Invalid aspect_ratio: {aspect} (expected one of {})",
                    VIDEO_ASPECTS.join(", ")
                ));
            }
            if refs.len() > 3 {
                return Err(format!(
                    "Too many reference_images: {} (at most 3)",
                    refs.len()
                ));
            }
            if let Some(mode) = string_field("mode")? {
                let want = match mode.as_str() {
                    "text_to_video" => 0,
                    "start_image" => 1,
                    "start_end_image" => 2,
                    _ => {
                        return Err(format!(
                            "Invalid mode: {mode} (expected text_to_video, start_image or start_end_image)"
                        ))
                    }
                };
                if refs.len() != want {
                    return Err(format!(
                        "Mode {mode} needs {want} reference image(s), got {}",
                        refs.len()
                    ));
                }
            }
            let seconds = match obj.get("video_length") {
                None | Some(Value::Null) => 8,
                Some(v) => match v.as_u64() {
                    Some(n) if VIDEO_LENGTHS.contains(&n) => n as u32,
                    _ => return Err("Invalid video_length: expected 4, 6 or 8".into()),
                },
            };
            let resolutions = string_list("resolution")?.unwrap_or_else(|| vec!["720p".into()]);
            if resolutions.is_empty() || resolutions.iter().any(|r| r.trim().is_empty()) {
                return Err("Invalid resolution: expected a list such as [\"720p\"]".into());
            }
            let outputs = if resolutions.len() == 1 {
                vec![String::new()]
            } else {
                resolutions
                    .iter()
                    .map(|r| {
                        let clean: String =
                            r.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                        format!("_{clean}")
                    })
                    .collect()
            };
            Ok(Submit {
                kind,
                prompt,
                aspect,
                outputs,
                seconds,
            })
        }
    }
}

/// Decode `reference_images`: data URIs, raw base64, or `{"data", "name"}`
/// objects. Returns the decoded bytes.
fn decode_references(v: Option<&Value>) -> Result<Vec<Vec<u8>>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("Invalid field: reference_images must be a list".into()),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = match item {
                Value::String(s) => s.as_str(),
                Value::Object(o) => match o.get("data") {
                    Some(Value::String(s)) => s.as_str(),
                    _ => {
                        return Err(format!(
                            "Invalid reference image {i}: an object needs a base64 \"data\" field"
                        ))
                    }
                },
                _ => {
                    return Err(format!(
                        "Invalid reference image {i}: expected a string or an object"
                    ))
                }
            };
            decode_image_text(text).map_err(|e| format!("Invalid reference image {i}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_decode() {
        let v = json!([{"data": "aGVsbG8=", "name": "x.png"}, "aGk="]);
        assert_eq!(decode_references(Some(&v)).unwrap().len(), 2);
    }
}
