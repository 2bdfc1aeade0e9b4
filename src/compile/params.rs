//! Request parameters of a generation node (model, aspect ratio,
//! resolution, duration, mode...), from the node's properties.

use super::*;

pub(super) fn params(
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
pub(super) fn video_model(node: &Node) -> String {
    crate::models::video_model(node.prop_str("veoModel"), node.prop_str("model"))
}
