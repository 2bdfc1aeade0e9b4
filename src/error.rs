//! The program's errors: what users see as `error:` / `caused by:` / `hint:`
//! lines, and the exit code each maps to.
//!
//! A failed *task* is not an error of the program: it is reported by the
//! build and turns into exit code 1 there.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad arguments, no flow found, a selector matching nothing.
    Usage,
    /// The flow or the configuration is invalid.
    Invalid,
    /// Something outside failed in a way the run cannot go on from
    /// (store locked, server unreachable, disk full).
    Environment,
    /// Work ran and some of it failed permanently (exit 1).
    Failed,
    /// A bug.
    Internal,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn env(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Environment, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn io(what: impl Into<String>, e: &std::io::Error) -> Self {
        let mut err = Self::env(what).cause(e.to_string());
        err.hint = io_hint(e);
        err
    }
    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Failed => 1,
            _ => 2,
        }
    }
}

fn io_hint(e: &std::io::Error) -> Option<String> {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => Some("check the path".into()),
        K::PermissionDenied | K::ReadOnlyFilesystem => Some(
            "check the folder's permissions, or choose another with --out / --cache-dir".into(),
        ),
        K::StorageFull | K::QuotaExceeded => {
            Some("free some disk space and run again: nothing already stored is lost".into())
        }
        _ => None,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        for c in &self.causes {
            write!(f, "\ncaused by: {c}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<nbbuild_cache::StoreError> for Error {
    fn from(e: nbbuild_cache::StoreError) -> Self {
        let mut err = Error::env(e.to_string());
        err.hint = e.hint();
        err
    }
}

impl Error {
    /// A store error under a headline naming the store.
    pub fn store(dir: &std::path::Path, e: nbbuild_cache::StoreError) -> Self {
        let mut err =
            Error::env(format!("cannot open the store in {}", dir.display())).cause(e.to_string());
        err.hint = e.hint();
        err
    }
}
