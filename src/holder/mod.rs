//! Reads while a build holds the store.
//!
//! sled admits one process. The process that holds the store (a build)
//! serves a small read-only endpoint on a Unix socket inside the store
//! directory (`server`); the read commands (`plan`, `explain`, `cache
//! ls|show|stats`, `status`) read through [`StoreRead`]: the store itself
//! when they can open it, else a client of that endpoint (`client`). Writes
//! are never offered: a second build or `cache gc` is still refused, naming
//! the holder. See docs/holder.md for the protocol.

pub mod client;
pub mod live;
pub mod server;

use crate::error::{Error, Result};
use nbbuild_cache::{Stats, Store, StoreError, TaskRecord};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Version of the socket protocol. A holder speaking another version is
/// treated like one that does not answer (today's "in use" error).
pub const PROTOCOL: u32 = 1;

/// Folder of the socket inside the store (mode 0700, so that no other user
/// can reach the socket, not even in the moment between bind and chmod).
pub const SOCKET_DIR: &str = "holder";
pub const SOCKET_NAME: &str = "holder.sock";

/// `DIR/holder/holder.sock`.
pub fn socket_path(store_root: &Path) -> PathBuf {
    store_root.join(SOCKET_DIR).join(SOCKET_NAME)
}

/// Which task records to list.
#[derive(Debug, Clone, Copy)]
pub enum Tasks<'a> {
    /// Every record, sorted by key.
    All,
    /// Records whose name is exactly this, sorted by key.
    Named(&'a str),
    /// Records whose key starts with this, sorted by key.
    KeyPrefix(&'a str),
}

/// What the read commands need from the store. Two implementations: the
/// store itself, and [`client::HolderClient`] (the same answers, through
/// the process that holds it).
pub trait StoreRead {
    /// The store directory (absolute).
    fn root(&self) -> &Path;
    fn task(&self, key: &str) -> Result<Option<TaskRecord>>;
    fn tasks(&self, which: Tasks) -> Result<Vec<(String, TaskRecord)>>;
    fn stats(&self) -> Result<Stats>;
    /// The hash recorded for a local file with this size and mtime.
    fn file_hash(&self, path: &Path, size: u64, mtime_ns: i128) -> Result<Option<String>>;
    /// Remember a file's hash (a cache of it). Only the store itself keeps
    /// it: the holder's endpoint takes no writes.
    fn remember_file_hash(&self, _path: &Path, _size: u64, _mtime_ns: i128, _hash: &str) {}
    /// The run log, oldest first.
    fn runs(&self) -> Result<Vec<serde_json::Value>>;
    /// The object behind a URL nbbuild downloaded or published.
    fn url_object(&self, url: &str) -> Result<Option<String>>;
}

impl StoreRead for Store {
    fn root(&self) -> &Path {
        Store::root(self)
    }
    fn task(&self, key: &str) -> Result<Option<TaskRecord>> {
        Ok(Store::task(self, key)?)
    }
    fn tasks(&self, which: Tasks) -> Result<Vec<(String, TaskRecord)>> {
        Ok(match which {
            Tasks::All => Store::tasks(self)?,
            Tasks::Named(n) => self.find_by_name(n)?,
            Tasks::KeyPrefix(p) => self.find_by_prefix(p)?,
        })
    }
    fn stats(&self) -> Result<Stats> {
        Ok(Store::stats(self)?)
    }
    fn file_hash(&self, path: &Path, size: u64, mtime_ns: i128) -> Result<Option<String>> {
        Ok(Store::file_hash(self, path, size, mtime_ns)?)
    }
    fn remember_file_hash(&self, path: &Path, size: u64, mtime_ns: i128, hash: &str) {
        let _ = self.put_file_hash(path, size, mtime_ns, hash);
    }
    fn runs(&self) -> Result<Vec<serde_json::Value>> {
        Ok(Store::runs(self)?)
    }
    fn url_object(&self, url: &str) -> Result<Option<String>> {
        Ok(Store::url_object(self, url)?)
    }
}

/// How long a store held by another process is retried when its holder
/// serves no reads (it may be starting up, or closing the store).
const SETTLE: Duration = Duration::from_millis(1500);

/// The store opened for reading: itself, or through its holder. (One per
/// command, so the size of the `Store` variant does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Reader {
    Store(Store),
    Holder(client::HolderClient),
}

impl std::ops::Deref for Reader {
    type Target = dyn StoreRead;
    fn deref(&self) -> &Self::Target {
        match self {
            Reader::Store(s) => s,
            Reader::Holder(c) => c,
        }
    }
}

/// Open the store in `dir` for reading: directly when it is free, else
/// through the process that holds it. Only a holder that does not answer
/// (hung, an older nbbuild, a command that serves no reads) gives the
/// "in use" error naming it.
pub fn open_read(dir: &Path) -> Result<Reader> {
    let start = std::time::Instant::now();
    loop {
        let locked = match Store::open(dir) {
            Ok(store) => {
                crate::migrate::run(&store).map_err(|e| Error::store(dir, e))?;
                return Ok(Reader::Store(store));
            }
            Err(e) if e.is_locked() => e,
            Err(e) => return Err(Error::store(dir, e)),
        };
        let root = match &locked {
            StoreError::Locked { dir, .. } => dir.clone(),
            _ => dir.to_path_buf(),
        };
        match client::HolderClient::connect(&root) {
            Ok(c) => return Ok(Reader::Holder(c)),
            Err(client::ConnectError::NotServing(_)) if start.elapsed() < SETTLE => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(why) => return Err(unanswered(dir, locked, &why)),
        }
    }
}

/// Today's "in use" error, with why its holder could not answer instead.
pub fn unanswered(dir: &Path, locked: StoreError, why: &client::ConnectError) -> Error {
    Error::store(dir, locked).cause(format!("reading through it: {why}"))
}

/// Run `f` with an address for the socket of `store_root`. A path too long
/// for a socket address (about 108 bytes) is reached through
/// `/proc/self/fd/N/` of its folder instead.
pub(crate) fn with_socket_addr<T>(
    store_root: &Path,
    f: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let path = socket_path(store_root);
    if path.as_os_str().len() < 100 {
        return f(&path);
    }
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(store_root.join(SOCKET_DIR))?;
    let short = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd()));
    let r = f(&short);
    drop(dir);
    r
}
