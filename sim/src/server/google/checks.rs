//! Validation of Gemini API submits, as Google answers them: a
//! `generateContent` or `predictLongRunning` body becomes a [`Submit`] or the
//! message of a 400 `INVALID_ARGUMENT`.

use serde_json::Value;

use crate::server::http::decode_image_text;
use crate::server::tasks::{Kind, Submit};

/// The image models this simulated Gemini API serves (the GA ids).
pub(super) const IMAGE_MODELS: &[&str] = &[
    "gemini-3.1-flash-image",
    "gemini-3-pro-image",
    "gemini-2.5-flash-image",
];
/// The Veo 3.1 models it serves.
pub(super) const VIDEO_MODELS: &[&str] = &[
    "veo-3.1-generate-preview",
    "veo-3.1-fast-generate-preview",
    "veo-3.1-lite-generate-preview",
];
const IMAGE_ASPECTS: &[&str] = &[
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
];
const IMAGE_SIZES: &[&str] = &["512", "1K", "2K", "4K"];
const VIDEO_RESOLUTIONS: &[&str] = &["720p", "1080p", "4k"];

/// A `generateContent` body.
pub(super) fn parse_still(bytes: &[u8]) -> Result<Submit, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let parts = v
        .pointer("/contents/0/parts")
        .and_then(Value::as_array)
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    let mut prompt = String::new();
    let mut images = 0;
    for p in parts {
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            prompt.push_str(t);
        } else if let Some(d) = p.get("inline_data").or_else(|| p.get("inlineData")) {
            let data = d.get("data").and_then(Value::as_str).unwrap_or("");
            decode_image_text(data).map_err(|e| format!("Invalid inline_data: {e}"))?;
            images += 1;
        }
    }
    if prompt.trim().is_empty() {
        return Err("* GenerateContentRequest.contents[0].parts: a text part is required".into());
    }
    if images > 14 {
        return Err(format!("Too many images: {images} (at most 14)"));
    }
    let cfg = v.get("generationConfig").cloned().unwrap_or(Value::Null);
    if cfg
        .get("candidateCount")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return Err("Multiple candidates is not enabled for this model".into());
    }
    let aspect = cfg
        .pointer("/imageConfig/aspectRatio")
        .and_then(Value::as_str)
        .unwrap_or("1:1")
        .to_string();
    if !IMAGE_ASPECTS.contains(&aspect.as_str()) {
        return Err(format!("Unsupported aspect ratio: {aspect}"));
    }
    let size = cfg
        .pointer("/imageConfig/imageSize")
        .and_then(Value::as_str)
        .unwrap_or("1K");
    if !IMAGE_SIZES.contains(&size) {
        return Err(format!(
            "Unsupported image size: {size} (1K, 2K or 4K, with an uppercase K)"
        ));
    }
    Ok(Submit {
        kind: Kind::Image,
        prompt,
        aspect,
        outputs: vec![String::new()],
        seconds: 0,
    })
}

/// A `predictLongRunning` body.
pub(super) fn parse_clip(bytes: &[u8]) -> Result<Submit, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let inst = v
        .pointer("/instances/0")
        .ok_or("instances is not specified")?;
    let prompt = inst
        .get("prompt")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty())
        .ok_or("instances[0].prompt is required")?
        .to_string();
    for f in ["image", "lastFrame"] {
        if let Some(img) = inst.get(f) {
            let data = img
                .get("bytesBase64Encoded")
                .and_then(Value::as_str)
                .unwrap_or("");
            decode_image_text(data).map_err(|e| format!("Invalid instances[0].{f}: {e}"))?;
            if img.get("mimeType").and_then(Value::as_str).is_none() {
                return Err(format!("instances[0].{f}.mimeType is required"));
            }
        }
    }
    if inst.get("lastFrame").is_some() && inst.get("image").is_none() {
        return Err("lastFrame needs image".into());
    }
    let p = v.get("parameters").cloned().unwrap_or(Value::Null);
    let aspect = p
        .get("aspectRatio")
        .and_then(Value::as_str)
        .unwrap_or("16:9")
        .to_string();
    if !["16:9", "9:16"].contains(&aspect.as_str()) {
        return Err(format!("Unsupported aspect ratio: {aspect}"));
    }
    let res = p
        .get("resolution")
        .and_then(Value::as_str)
        .unwrap_or("720p");
    if !VIDEO_RESOLUTIONS.contains(&res) {
        return Err(format!("Unsupported resolution: {res}"));
    }
    let seconds = match p.get("durationSeconds") {
        None => 8,
        Some(d) => match d.as_u64() {
            Some(n @ (4 | 6 | 8)) => n as u32,
            _ => return Err("durationSeconds must be 4, 6 or 8".into()),
        },
    };
    if res != "720p" && seconds != 8 {
        return Err(format!("durationSeconds must be 8 at {res}"));
    }
    if inst.get("image").is_some()
        && p.get("personGeneration").and_then(Value::as_str) == Some("allow_all")
    {
        return Err("personGeneration allow_all is not supported for image input".into());
    }
    Ok(Submit {
        kind: Kind::Video,
        prompt,
        aspect,
        outputs: vec![String::new()],
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stills_need_a_prompt_and_one_candidate() {
        let ok = json!({"contents": [{"parts": [{"text": "a cat"}]}],
            "generationConfig": {"imageConfig": {"aspectRatio": "9:16", "imageSize": "2K"}}});
        assert_eq!(
            parse_still(ok.to_string().as_bytes()).unwrap().aspect,
            "9:16"
        );
        let many = json!({"contents": [{"parts": [{"text": "a cat"}]}], "generationConfig": {"candidateCount": 2}});
        assert!(parse_still(many.to_string().as_bytes()).is_err());
        let lower = json!({"contents": [{"parts": [{"text": "a cat"}]}],
            "generationConfig": {"imageConfig": {"imageSize": "2k"}}});
        assert!(parse_still(lower.to_string().as_bytes()).is_err());
    }

    #[test]
    fn clips_at_1080p_are_8_seconds() {
        let b = json!({"instances": [{"prompt": "a walk"}], "parameters": {"resolution": "1080p", "durationSeconds": 6}});
        assert!(parse_clip(b.to_string().as_bytes()).is_err());
        let b = json!({"instances": [{"prompt": "a walk"}], "parameters": {"resolution": "720p", "durationSeconds": 6, "aspectRatio": "9:16"}});
        assert_eq!(parse_clip(b.to_string().as_bytes()).unwrap().seconds, 6);
    }
}
