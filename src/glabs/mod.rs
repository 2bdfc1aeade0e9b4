//! The G-Labs generation API: the request shapes (`request`), the HTTP
//! client (`client`), what it answers (`answers`), and the failure classes
//! the runner acts on (`errors`). The simulator lives in the `nbbuild-sim`
//! crate and speaks the same protocol over loopback.

pub mod answers;
pub mod client;
pub mod errors;
pub mod request;

pub use answers::{Health, Listed, RemoteStatus, TaskView};
pub use client::Client;
pub use errors::ApiError;
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
    /// A reference image could not be had (missing file, dead URL, not an
    /// image): reported before any call; the task is not sent.
    ReferenceUnavailable,
    /// The local store failed (full disk, I/O error): never an API error.
    Store,
    /// A local file could not be written or read (outside the store).
    LocalFile,
    /// A bug in nbbuild.
    Internal,
    /// Not sent (or no longer polled) because the run stopped launching:
    /// Ctrl-C, a dead server, a refused key, the budget, a failing store.
    /// The task is "not run", never failed for it.
    Halted,
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
            FailureKind::ReferenceUnavailable => "reference_unavailable",
            FailureKind::Store => "store",
            FailureKind::LocalFile => "local_file",
            FailureKind::Internal => "internal",
            FailureKind::Halted => "halted",
        }
    }
}
