//! The store's one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::lock::{pid_alive, since_text};

/// Everything that can go wrong in the store. `Display` reads like what a
/// user sees; [`StoreError::hint`] adds what to do about it when there is
/// something to do.
#[derive(Debug)]
pub enum StoreError {
    /// A file-system operation failed; `context` says which one and on what.
    Io { context: String, source: io::Error },
    /// Another process has the store open for writing.
    Locked {
        /// Process named in `DIR/LOCK` (0 when the file was unreadable).
        pid: u32,
        /// When that process opened the store (unix seconds, 0 if unknown).
        since: u64,
        /// Its command line, as recorded in `DIR/LOCK`.
        command: String,
        /// The store directory.
        dir: PathBuf,
    },
    /// The database was written with a schema this build does not know.
    Schema { found: u32, expected: u32 },
    /// Something on disk is not what it should be: an object whose bytes do
    /// not hash to its name, a truncated file, an unreadable record.
    Corrupt { what: String, detail: String },
    /// An object that a record or caller needs is not in the object directory.
    MissingObject(String),
    /// A string that should be an object id (64 lowercase hex) is not.
    BadObjectId(String),
    /// No task record under this key (call `ensure_task` first).
    UnknownTask(String),
    /// The task has no candidate in this slot.
    UnknownCandidate { key: String, slot: u32 },
    /// Any other error from the embedded database.
    Db(String),
    /// A record could not be encoded or decoded as JSON.
    Json(String),
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    /// What the user can do about it, if anything.
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::Locked { pid, dir, .. } => {
                let lock = dir.join("LOCK");
                let db = dir.join("db").join("db");
                if *pid == 0 {
                    Some(format!(
                        "another nbbuild is using this store; wait for it to finish or stop it \
                         (`fuser {}` or `lsof {}` shows which process holds it)",
                        db.display(),
                        db.display()
                    ))
                } else if *pid == std::process::id() {
                    Some(
                        "this process already has the store open; reuse that handle \
                         (Store is Send + Sync, share it through an Arc)"
                            .to_string(),
                    )
                } else if pid_alive(*pid) {
                    Some(format!(
                        "wait for it to finish, or stop it (kill {pid}); the lock is released \
                         when that process exits"
                    ))
                } else {
                    Some(format!(
                        "process {pid} no longer exists, so {} is stale, but another process \
                         still holds the database lock; `fuser {}` or `lsof {}` shows which; \
                         stop it and retry",
                        lock.display(),
                        db.display(),
                        db.display()
                    ))
                }
            }
            StoreError::Schema { found, expected } if found > expected => Some(format!(
                "this store was written by a newer nbbuild (schema {found}); use that \
                 version, or move the .nbbuild directory aside to start an empty store"
            )),
            StoreError::Schema { .. } => Some(
                "this store was written by an older, incompatible nbbuild; move the .nbbuild \
                 directory aside to start an empty store (cached results will be regenerated)"
                    .to_string(),
            ),
            StoreError::Corrupt { .. } => Some(
                "run `nbbuild cache verify` for a full report; a damaged object can be \
                 deleted, the tasks using it are then rebuilt"
                    .to_string(),
            ),
            StoreError::MissingObject(_) => Some(
                "run `nbbuild cache verify` to see which records refer to missing objects"
                    .to_string(),
            ),
            StoreError::UnknownTask(_) => {
                Some("the task must be recorded with ensure_task before use".to_string())
            }
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                Some("check the permissions of the .nbbuild directory".to_string())
            }
            StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                Some("the disk is full; free some space (`nbbuild cache gc` may help)".to_string())
            }
            _ => None,
        }
    }

    /// True for the "store is in use" error.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Locked { .. })
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { context, source } => write!(f, "{context}: {source}"),
            StoreError::Locked {
                pid,
                since,
                command,
                dir,
            } => {
                if *pid == 0 {
                    write!(
                        f,
                        "the store in {} is in use by another process",
                        dir.display()
                    )
                } else {
                    let who = if *pid == std::process::id() {
                        " (this process)"
                    } else {
                        ""
                    };
                    write!(
                        f,
                        "the store in {} is in use by process {pid}{who}",
                        dir.display()
                    )?;
                    if !command.is_empty() {
                        write!(f, " (`{command}`")?;
                        if *since > 0 {
                            write!(f, ", {}", since_text(*since))?;
                        }
                        write!(f, ")")?;
                    } else if *since > 0 {
                        write!(f, " ({})", since_text(*since))?;
                    }
                    Ok(())
                }
            }
            StoreError::Schema { found, expected } => write!(
                f,
                "the store has schema version {found}, this nbbuild understands version {expected}"
            ),
            StoreError::Corrupt { what, detail } => write!(f, "{what} is corrupt: {detail}"),
            StoreError::MissingObject(id) => write!(f, "object {id} is missing from the store"),
            StoreError::BadObjectId(id) => write!(
                f,
                "{id:?} is not an object id (expected 64 lowercase hex characters)"
            ),
            StoreError::UnknownTask(key) => write!(f, "no task with key {key} in the store"),
            StoreError::UnknownCandidate { key, slot } => {
                write!(f, "task {key} has no candidate in slot {slot}")
            }
            StoreError::Db(msg) => write!(f, "store database error: {msg}"),
            StoreError::Json(msg) => write!(f, "store record encoding error: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(source) => StoreError::Io {
                context: "store database I/O".to_string(),
                source,
            },
            sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                what: "the store database".to_string(),
                detail: match at {
                    Some(at) => format!("sled reported corruption at {at:?}"),
                    None => "sled reported corruption".to_string(),
                },
            },
            other => StoreError::Db(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> StoreError {
        StoreError::Json(e.to_string())
    }
}
