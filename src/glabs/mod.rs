//! The G-Labs generation API: the request shapes, the HTTP client, and the
//! failure classes the runner acts on. The simulator lives in the
//! `nbbuild-sim` crate and speaks the same protocol over loopback.

pub mod client;
pub mod request;

pub use client::{ApiError, Client, Health, RemoteStatus, TaskView};
pub use request::{GenRequest, RefImage};

use serde::Serialize;

/// Failure kinds as `errors.json` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    ContentPolicy,
    Timeout,
    ConnectionRefused,
    ModelNotAvailable,
    DanglingLink,
    ApiError,
    QaExhausted,
    SkippedUpstreamFailed,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::ContentPolicy => "content_policy",
            FailureKind::Timeout => "timeout",
            FailureKind::ConnectionRefused => "connection_refused",
            FailureKind::ModelNotAvailable => "model_not_available",
            FailureKind::DanglingLink => "dangling_link",
            FailureKind::ApiError => "api_error",
            FailureKind::QaExhausted => "qa_exhausted",
            FailureKind::SkippedUpstreamFailed => "skipped_upstream_failed",
        }
    }
}
