//! What G-Labs answers about its tasks: a polled task and where it stands,
//! one entry of the task list, and `/api/health`. The runner reads every
//! route's answers in these shapes (`generator` re-exports them).

use super::errors::ApiError;
use serde::Deserialize;

/// A polled task: what G-Labs says it is, and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// `type` of the status body (`image` / `video`), when G-Labs sends it.
    pub kind: Option<String>,
    /// `prompt` of the status body, when G-Labs sends it.
    pub prompt: Option<String>,
    pub status: RemoteStatus,
}

impl TaskView {
    /// False when the body names another type or another prompt than the
    /// task we submitted: after a restart G-Labs hands out ids again, so a
    /// recorded id can name someone else's task. Fields the body leaves out
    /// cannot be checked and are taken as matching (glabs.md documents both).
    pub fn is_ours(&self, kind: &str, prompt: &str) -> bool {
        let kind_ok = self
            .kind
            .as_deref()
            .is_none_or(|k| k.trim().to_ascii_lowercase().starts_with(kind));
        let prompt_ok = self
            .prompt
            .as_deref()
            .is_none_or(|p| p.trim() == prompt.trim());
        kind_ok && prompt_ok
    }
}

/// One task of `GET /api/tasks`.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    pub task_id: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    /// ISO 8601, as G-Labs writes it.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Listed {
    /// unix ms of `created_at`, when it can be read.
    pub fn created_ms(&self) -> Option<u64> {
        let t = chrono::DateTime::parse_from_rfc3339(self.created_at.as_deref()?).ok()?;
        u64::try_from(t.timestamp_millis()).ok()
    }

    /// Same type and prompt as ours (the check re-attach makes).
    pub fn is_ours(&self, kind: &str, prompt: &str) -> bool {
        TaskView {
            kind: self.kind.clone(),
            prompt: self.prompt.clone(),
            status: RemoteStatus::Waiting,
        }
        .is_ours(kind, prompt)
    }
}

/// What a status poll says.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteStatus {
    Waiting,
    Completed {
        results: Vec<String>,
    },
    /// The generation ended without a result, classified.
    Failed(ApiError),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub tasks_pending: u64,
    #[serde(default)]
    pub tasks_running: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_of_another_type_or_prompt_is_not_ours() {
        let view = |kind: Option<&str>, prompt: Option<&str>| TaskView {
            kind: kind.map(str::to_string),
            prompt: prompt.map(str::to_string),
            status: RemoteStatus::Waiting,
        };
        assert!(view(Some("image"), Some("a cat")).is_ours("image", "a cat"));
        assert!(!view(Some("image"), Some("a dog")).is_ours("image", "a cat"));
        assert!(!view(Some("video"), Some("a cat")).is_ours("image", "a cat"));
        assert!(view(None, None).is_ours("video", "a cat"));
    }
}
