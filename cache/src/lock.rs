//! The `LOCK` info file.
//!
//! The real mutual exclusion is sled's exclusive `flock` on `db/db`, which the
//! kernel releases when the holder dies, so a crashed run never leaves the
//! store blocked. `LOCK` only records who holds it, so that a second opener
//! can name the process in its error message.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::now_secs;

/// Content of `DIR/LOCK`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LockInfo {
    pub pid: u32,
    /// unix seconds
    #[serde(default)]
    pub since: u64,
    #[serde(default)]
    pub command: String,
}

impl LockInfo {
    pub(crate) fn current() -> LockInfo {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        LockInfo {
            pid: std::process::id(),
            since: now_secs(),
            command,
        }
    }
}

/// Read `path`; `None` when absent or unreadable.
pub(crate) fn read_lock(path: &Path) -> Option<LockInfo> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Write `path` atomically (temp file beside it, then rename).
pub(crate) fn write_lock(path: &Path, info: &LockInfo) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension(format!("new-{}", info.pid));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(info).map_err(std::io::Error::other)?)?;
        f.write_all(b"\n")?;
    }
    fs::rename(&tmp, path)
}

/// The live process holding the store in `dir`, as its `LOCK` file names
/// it, without opening the store (so asking never gets in that process's
/// way). `None` when nobody holds it or the holder is gone.
pub fn holder(dir: &Path) -> Option<LockInfo> {
    read_lock(&dir.join("LOCK")).filter(|i| pid_alive(i.pid))
}

/// `kill(pid, 0)`: does the process exist? (EPERM means it exists but
/// belongs to someone else.)
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 performs no action, only the permission and
    // existence checks.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if rc == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// "since 3m 12s" style text for a unix-seconds timestamp.
pub(crate) fn since_text(since: u64) -> String {
    let now = now_secs();
    if since > now {
        return format!("since unix time {since}");
    }
    let d = now - since;
    let ago = if d < 60 {
        format!("{d}s")
    } else if d < 3600 {
        format!("{}m {}s", d / 60, d % 60)
    } else if d < 86400 {
        format!("{}h {}m", d / 3600, (d % 3600) / 60)
    } else {
        format!("{}d {}h", d / 86400, (d % 86400) / 3600)
    };
    format!("running for {ago}")
}
