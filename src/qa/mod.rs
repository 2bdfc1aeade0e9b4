//! Visual QA: reviewers that look at a generated still for anatomical tells
//! (nbbuild.md section 6) and answer clean, flagged or unreviewed.
//!
//! Three reviewers share one verdict format,
//! `{"verdict": "clean"|"flagged", "tells": [...], "confidence": 0..1}`:
//!
//! - [`vision`]: an OpenAI-compatible chat-completions endpoint (cloud APIs,
//!   Ollama, llama.cpp, vLLM, and the simulator's own reviewer);
//! - [`command`]: a local program given the image path, printing the JSON;
//! - `off`: no reviewer at all (the caller simply has none).
//!
//! A reviewer never turns a failure into a clean verdict: after its retries
//! it answers [`Outcome::Unreviewed`] with the reason in [`Review::detail`].
//! Verdicts are cached by the caller under (image hash, [`Reviewer::id`]);
//! the id changes with the kind, the model, the endpoint host and
//! [`PROMPT_VERSION`], so changing any of them re-reviews.

mod command;
mod vision;

use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

pub use command::command;
pub use vision::{vision, vision_id};

/// A boxed, sendable future (the reviewer trait stays object-safe).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The version of the reviewing prompt and verdict contract. Part of every
/// reviewer id: bump it when [`system_prompt`] or [`TELLS`] change in a way
/// that should re-review cached images.
pub const PROMPT_VERSION: &str = "p1";

/// The reviewer id of verdicts a person gave on the review page
/// (`nbbuild review`): stored like any reviewer's, under (image hash,
/// `human`), and on the candidate itself, where it wins over automatic QA
/// (the build never re-reviews a candidate a person judged).
pub const HUMAN_REVIEWER: &str = "human";

/// Exactly the tells nbbuild.md section 6 lists, and nothing else.
pub const TELLS: &[&str] = &[
    "extra or missing fingers",
    "two left or two right hands",
    "melted or garbled faces",
    "impossible or garbled limbs",
    "hands passing through objects",
];

/// What a review concluded (the store's type: verdicts are stored as it).
pub use nbbuild_cache::Outcome;

/// One reviewer's answer on one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    pub outcome: Outcome,
    /// The tells the reviewer named (may be empty even when flagged).
    pub tells: Vec<String>,
    /// The reviewer's confidence, 0..=1, when it gave one.
    pub confidence: Option<f64>,
    /// Why unreviewed, or the model's note.
    pub detail: String,
}

impl Review {
    /// A failed review: the reason goes in `detail`.
    pub fn unreviewed(detail: impl Into<String>) -> Review {
        Review {
            outcome: Outcome::Unreviewed,
            tells: Vec::new(),
            confidence: None,
            detail: detail.into(),
        }
    }

    pub fn is_clean(&self) -> bool {
        self.outcome == Outcome::Clean
    }

    pub fn is_flagged(&self) -> bool {
        self.outcome == Outcome::Flagged
    }

    /// Whether the answer is worth storing under (image hash, reviewer id).
    /// An unreviewed answer is not: the next run should ask again.
    pub fn is_cacheable(&self) -> bool {
        self.outcome != Outcome::Unreviewed
    }

    /// The store's record of this review by `reviewer` at `at` (unix ms).
    pub fn to_verdict(&self, reviewer: &str, at: u64) -> nbbuild_cache::Verdict {
        nbbuild_cache::Verdict {
            verdict: self.outcome,
            tells: self.tells.clone(),
            confidence: self.confidence,
            reviewer: reviewer.to_string(),
            at,
        }
    }

    /// A review read back from the store (an unknown verdict string reads as
    /// unreviewed, never as clean).
    pub fn from_verdict(v: &nbbuild_cache::Verdict) -> Review {
        Review {
            outcome: v.verdict,
            tells: v.tells.clone(),
            confidence: v.confidence,
            detail: String::new(),
        }
    }
}

/// A visual-QA reviewer.
pub trait Reviewer: Send + Sync {
    /// Identity for the verdict cache: kind + model + endpoint host +
    /// PROMPT_VERSION (e.g. `vision:gpt-4o-mini@api.openai.com#p1`,
    /// `command:<cmd>#p1`). Never a secret.
    fn id(&self) -> String;

    /// Review one PNG (bytes, and a path to the same bytes on disk for the
    /// command reviewer). Never returns Clean on a failure: after retries,
    /// Unreviewed with the reason in `detail`.
    fn review<'a>(&'a self, png: &'a [u8], path: &'a std::path::Path) -> BoxFuture<'a, Review>;
}

/// Settings of the [`vision`] reviewer.
#[derive(Clone)]
pub struct VisionConfig {
    /// Base URL as OpenAI clients take it (`http://127.0.0.1:11434/v1`);
    /// `/chat/completions` is appended (unless it is already there).
    pub base_url: String,
    /// The model name the server knows (`gpt-4o-mini`, `llava`, `qwen2.5vl:7b`).
    pub model: String,
    /// Sent as `Authorization: Bearer KEY` when set. Never logged or returned.
    pub api_key: Option<String>,
    /// Per request.
    pub timeout: Duration,
    /// Tries per image (malformed answers, refusals, 429, 5xx, network
    /// errors) before answering unreviewed; at least 1.
    pub attempts: u32,
}

/// Default per-request timeout: local vision models on a CPU are slow.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default tries per image.
pub const DEFAULT_ATTEMPTS: u32 = 3;

impl VisionConfig {
    /// `base_url` and `model` with no key and the default timeout and attempts.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> VisionConfig {
        VisionConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
        }
    }
}

impl std::fmt::Debug for VisionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("VisionConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// Vision settings from the environment (`NBBUILD_QA_URL`,
/// `NBBUILD_QA_MODEL`, `NBBUILD_QA_KEY`), each overridable by the caller;
/// None when `NBBUILD_QA_URL` is unset or empty. An unset model is left
/// empty (the caller fills it from `[qa] model` or refuses).
pub fn vision_from_env() -> Option<VisionConfig> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let url = var("NBBUILD_QA_URL")?;
    let mut cfg = VisionConfig::new(url, var("NBBUILD_QA_MODEL").unwrap_or_default());
    cfg.api_key = var("NBBUILD_QA_KEY");
    Some(cfg)
}

/// The system prompt of the vision reviewer: names exactly [`TELLS`], says
/// what to ignore, and asks for the JSON verdict only.
pub fn system_prompt() -> String {
    let mut p = String::from(
        "You are a visual QA reviewer for AI-generated images. Inspect the image for \
         these anatomical defects, and only these:\n",
    );
    for t in TELLS {
        p.push_str("- ");
        p.push_str(t);
        p.push('\n');
    }
    p.push_str(
        "Ignore everything else: do not judge prompt adherence (whether the image matches \
         what was asked for), composition, style, lighting or image quality, and ignore any \
         text, lettering, captions, logos or signage in the image, garbled or not. \
         Report a defect only when you can actually see it; an image with no people or \
         creatures, or whose hands, faces and limbs look natural, is clean.\n\
         Answer only with one JSON object, no prose and no code fences: \
         {\"verdict\": \"clean\" or \"flagged\", \"tells\": [the defects you found, each named \
         as in the list above, optionally followed by where it is], \"confidence\": a number \
         from 0 to 1}. Use \"flagged\" with the tells listed when you see at least one defect, \
         otherwise \"clean\" with an empty tells list.",
    );
    p
}

/// The text part of the user message that carries the image.
pub(crate) const USER_TEXT: &str =
    "Review this image for the anatomical defects listed. Answer with the JSON verdict only.";

/// Parse a reviewer's answer: the first JSON object in `text` (tolerating
/// code fences, surrounding prose and a leading `<think>...</think>`) with
/// `verdict` clean or flagged.
/// Anything else is an error describing what was wrong.
pub fn parse_verdict(text: &str) -> Result<Review, String> {
    // Reasoning models served locally may think aloud first.
    let text = text
        .rsplit_once("</think>")
        .map_or(text, |(_, after)| after);
    let obj = first_json_object(text).ok_or_else(|| {
        format!(
            "no JSON object in the answer: {}",
            excerpt(text.trim(), 120)
        )
    })?;
    let verdict = obj
        .get("verdict")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase());
    let outcome = match verdict.as_deref() {
        Some("clean") => Outcome::Clean,
        Some("flagged") => Outcome::Flagged,
        Some(other) => return Err(format!("verdict {other:?} is neither clean nor flagged")),
        None => return Err("the answer has no verdict".into()),
    };
    let tells = match obj.get("tells") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|t| match t {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .filter(|s| !s.is_empty())
            .collect(),
        Some(Value::String(s)) if !s.trim().is_empty() => vec![s.trim().to_string()],
        _ => Vec::new(),
    };
    let confidence = obj
        .get("confidence")
        .and_then(|c| match c {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        })
        .filter(|c| c.is_finite())
        .map(|c| c.clamp(0.0, 1.0));
    let detail = ["note", "reason", "explanation", "notes"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .map(|s| excerpt(s.trim(), 500))
        .unwrap_or_default();
    Ok(Review {
        outcome,
        tells,
        confidence,
        detail,
    })
}

/// The first `{...}` in `text` that parses as a JSON object, prose around
/// it ignored: serde_json's stream deserializer reads one value from each
/// `{` and stops where it ends.
fn first_json_object(text: &str) -> Option<serde_json::Map<String, Value>> {
    text.match_indices('{').find_map(|(open, _)| {
        match serde_json::Deserializer::from_str(&text[open..])
            .into_iter::<Value>()
            .next()
        {
            Some(Ok(Value::Object(map))) => Some(map),
            _ => None,
        }
    })
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// A reviewer under a fixed identity: the built-in simulator's reviewer
/// listens on a new port every run, and its verdicts must still be cached.
pub struct Named {
    pub inner: Box<dyn Reviewer>,
    pub id: String,
}

impl Reviewer for Named {
    fn id(&self) -> String {
        self.id.clone()
    }
    fn review<'a>(&'a self, png: &'a [u8], path: &'a std::path::Path) -> BoxFuture<'a, Review> {
        self.inner.review(png, path)
    }
}

/// Identity of the built-in simulator's reviewer.
pub const SIM_REVIEWER_ID: &str = "sim#p1";
