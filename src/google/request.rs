//! Request bodies for Google's Gemini API, built from a protocol-neutral
//! [`GenInput`] (docs/providers.md): `generateContent` for stills,
//! `predictLongRunning` for clips.

use crate::compile::TaskKind;
use crate::generator::{GenInput, RefImage};
use base64::Engine;
use serde_json::{json, Value};

/// The MIME type of an image from its first bytes (Google takes png, jpeg,
/// webp, heic, heif; anything else is sent as PNG and refused there).
pub fn sniff_mime(b: &[u8]) -> &'static str {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        "image/webp"
    } else if b.len() >= 12 && &b[4..8] == b"ftyp" && (&b[8..12] == b"heic" || &b[8..12] == b"heix")
    {
        "image/heic"
    } else {
        "image/png"
    }
}

fn b64(r: &RefImage) -> String {
    base64::engine::general_purpose::STANDARD.encode(r.bytes.as_slice())
}

/// `imageSize` from a node's resolution: `1K`, `2K`, `4K` (uppercase K:
/// Google rejects lowercase), or `512`.
pub fn image_size(resolution: &str) -> String {
    crate::models::price_tier(TaskKind::Image, resolution)
}

/// `POST v1beta/models/{model}:generateContent`: the prompt, then each
/// reference as an `inline_data` part in slot order; images only.
pub fn still_body(input: &GenInput) -> Value {
    let mut parts = vec![json!({ "text": input.prompt })];
    for r in &input.refs {
        parts.push(json!({
            "inline_data": { "mime_type": sniff_mime(&r.bytes), "data": b64(r) }
        }));
    }
    json!({
        "contents": [{ "role": "user", "parts": parts }],
        "generationConfig": {
            "responseModalities": ["IMAGE"],
            "imageConfig": {
                "aspectRatio": input.params.aspect_ratio,
                "imageSize": image_size(&input.params.resolution),
            }
        }
    })
}

/// `POST v1beta/models/{model}:predictLongRunning`: the prompt with the
/// start frame (`image`) and end frame (`lastFrame`) as the node's mode
/// asks, and the parameters Veo takes on the Gemini API.
pub fn clip_body(input: &GenInput) -> Value {
    let p = &input.params;
    let frame =
        |r: &RefImage| json!({ "bytesBase64Encoded": b64(r), "mimeType": sniff_mime(&r.bytes) });
    let mut instance = json!({ "prompt": input.prompt });
    let mode = p.video_mode.as_deref().unwrap_or("text_to_video");
    let with_frames = mode != "text_to_video" && !input.refs.is_empty();
    if with_frames {
        instance["image"] = frame(&input.refs[0]);
        if mode == "start_end_image" {
            if let Some(end) = input.refs.get(1) {
                instance["lastFrame"] = frame(end);
            }
        }
    }
    let resolution = p.resolution.trim().to_ascii_lowercase();
    // 1080p and 4k clips are 8 seconds on Veo 3.1.
    let duration = if resolution == "1080p" || resolution == "4k" {
        8
    } else {
        p.duration.unwrap_or(8)
    };
    let mut parameters = json!({
        "aspectRatio": p.aspect_ratio,
        "resolution": resolution,
        "durationSeconds": duration,
        // Image input allows adults only (and only that in the EU, UK, CH, MENA).
        "personGeneration": if with_frames { "allow_adult" } else { "allow_all" },
    });
    if let Some(n) = p
        .negative_prompt
        .as_deref()
        .filter(|n| !n.trim().is_empty())
    {
        parameters["negativePrompt"] = json!(n);
    }
    // `seed` and `generateAudio` are not sent: the SDK refuses both on the
    // Gemini API (notes/gemini-api.md); the seed still belongs to the key.
    json!({ "instances": [instance], "parameters": parameters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Params;
    use std::sync::Arc;

    fn input(kind: TaskKind, mode: Option<&str>, refs: usize) -> GenInput {
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        GenInput {
            kind,
            prompt: "a kitchen".into(),
            params: Params {
                model: "nano_banana_2".into(),
                aspect_ratio: "9:16".into(),
                resolution: if kind == TaskKind::Image {
                    "2k"
                } else {
                    "1080p"
                }
                .into(),
                duration: (kind == TaskKind::Video).then_some(6),
                video_mode: mode.map(str::to_string),
                negative_prompt: Some("blur".into()),
                seed: Some("7".into()),
                candidates: 4,
                timeout_ms: 1,
            },
            refs: (0..refs)
                .map(|i| RefImage {
                    name: format!("r{i}.png"),
                    bytes: Arc::new(png.clone()),
                })
                .collect(),
        }
    }

    #[test]
    fn stills_send_prompt_then_refs_in_slot_order_images_only() {
        let b = still_body(&input(TaskKind::Image, None, 2));
        let parts = b["contents"][0]["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0]["text"], "a kitchen");
        assert_eq!(parts[1]["inline_data"]["mime_type"], "image/png");
        assert_eq!(
            b["generationConfig"]["responseModalities"],
            json!(["IMAGE"])
        );
        assert_eq!(b["generationConfig"]["imageConfig"]["imageSize"], "2K");
        assert_eq!(b["generationConfig"]["imageConfig"]["aspectRatio"], "9:16");
        assert!(b.to_string().find("candidateCount").is_none());
    }

    #[test]
    fn clips_send_frames_and_force_8_seconds_at_1080p() {
        let b = clip_body(&input(TaskKind::Video, Some("start_end_image"), 2));
        let i = &b["instances"][0];
        assert!(i["image"]["bytesBase64Encoded"].is_string());
        assert_eq!(i["lastFrame"]["mimeType"], "image/png");
        assert_eq!(b["parameters"]["durationSeconds"], 8);
        assert_eq!(b["parameters"]["personGeneration"], "allow_adult");
        assert_eq!(b["parameters"]["negativePrompt"], "blur");
        assert!(b["parameters"].get("seed").is_none());
        let t = clip_body(&input(TaskKind::Video, Some("text_to_video"), 0));
        assert!(t["instances"][0].get("image").is_none());
        assert_eq!(t["parameters"]["personGeneration"], "allow_all");
    }

    #[test]
    fn mime_types_are_read_from_the_bytes() {
        assert_eq!(sniff_mime(&[0xff, 0xd8, 0xff, 0xe0]), "image/jpeg");
        assert_eq!(sniff_mime(b"RIFF....WEBPVP8 "), "image/webp");
    }
}
