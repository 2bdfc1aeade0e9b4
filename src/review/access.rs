//! The store, held only while a request reads or acts.
//!
//! The store is a single-process sled database: while the review server
//! holds it, a build from another terminal cannot start. So the server
//! never keeps it open: each read opens it, reads, and closes it again. A
//! re-roll started from the page holds it for its duration (the build runs
//! in this process and shares the handle, so the page can still read).
//! When another process holds it, reads fail with [`Unavailable`] and the
//! page shows what it read last, saying a build is running.

use nbbuild_cache::{LockInfo, Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why the store cannot be read right now.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// The process holding it, when its LOCK file names it.
    pub holder: Option<LockInfo>,
    pub message: String,
}

impl Unavailable {
    /// One line for the page.
    pub fn describe(&self) -> String {
        match &self.holder {
            Some(h) => format!(
                "a build is running (process {}: {}); the page shows what it read before and refreshes when it ends",
                h.pid,
                short_command(&h.command)
            ),
            None => self.message.clone(),
        }
    }
}

fn short_command(c: &str) -> String {
    let c = c.trim();
    let words: Vec<&str> = c.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        // Never show what follows a key option.
        if i > 0 && words[i - 1] == "--api-key" {
            out.push("***".into());
            continue;
        }
        if w.starts_with("--api-key=") {
            out.push("--api-key=***".into());
            continue;
        }
        let base = if i == 0 {
            Path::new(w)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(w)
                .to_string()
        } else {
            w.to_string()
        };
        out.push(base);
    }
    let s = out.join(" ");
    if s.len() > 120 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

pub struct StoreAccess {
    dir: PathBuf,
    /// The handle a running re-roll holds.
    held: Mutex<Option<Arc<Store>>>,
    /// Serializes opening within this process (sled allows one handle).
    opening: Mutex<()>,
}

impl StoreAccess {
    pub fn new(dir: &Path) -> StoreAccess {
        StoreAccess {
            dir: dir.to_path_buf(),
            held: Mutex::new(None),
            opening: Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Another process holding the store, read from its LOCK file (without
    /// touching the store itself).
    pub fn other_holder(&self) -> Option<LockInfo> {
        nbbuild_cache::holder(&self.dir).filter(|i| i.pid != std::process::id())
    }

    /// Run `f` with the store: the handle a re-roll holds, else one opened
    /// for this call only and closed before returning. Blocking.
    pub fn with<R>(&self, f: impl FnOnce(&Arc<Store>) -> R) -> Result<R, Unavailable> {
        if let Some(s) = self.held() {
            return Ok(f(&s));
        }
        let _g = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = self.held() {
            return Ok(f(&s));
        }
        if let Some(h) = self.other_holder() {
            return Err(Unavailable {
                holder: Some(h),
                message: String::new(),
            });
        }
        let store = Arc::new(self.open()?);
        let r = f(&store);
        drop(store);
        Ok(r)
    }

    /// Open the store and keep it until [`StoreAccess::release`] (a re-roll).
    pub fn hold(&self) -> Result<Arc<Store>, Unavailable> {
        let _g = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = self.held() {
            return Ok(s);
        }
        let s = Arc::new(self.open()?);
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
        Ok(s)
    }

    pub fn release(&self) {
        let s = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(s);
    }

    fn held(&self) -> Option<Arc<Store>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn open(&self) -> Result<Store, Unavailable> {
        Store::open(&self.dir).map_err(|e| match e {
            StoreError::Locked { .. } => Unavailable {
                holder: self.other_holder(),
                message: format!("the store is busy: {e}"),
            },
            other => Unavailable {
                holder: None,
                message: format!("cannot open the store in {}: {other}", self.dir.display()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_never_show_a_key() {
        let s = super::short_command("/usr/bin/nbbuild build --api-key sekrit --sim");
        assert_eq!(s, "nbbuild build --api-key *** --sim");
    }
}
