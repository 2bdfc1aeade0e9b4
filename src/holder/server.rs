//! The holder's endpoint: while this process holds the store, other
//! processes read it through a Unix socket in `DIR/holder/`.
//!
//! Newline-delimited JSON, one request line and one answer line at a time;
//! every operation reads. Threads of its own (one per connection, a few at
//! most), so that the build's runtime never waits on a reader.

use super::live::Live;
use super::{socket_path, with_socket_addr, PROTOCOL, SOCKET_DIR};
use nbbuild_cache::Store;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Connections served at once; more are told to come back.
const MAX_CONNECTIONS: usize = 8;
/// Longest request line (requests are small; this bounds a bad client).
const MAX_REQUEST: u64 = 64 * 1024;
/// A connection with no request for this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// The running endpoint. Dropping it stops serving, waits for the readers
/// being answered (they hold the store) and removes the socket.
pub struct Holder {
    root: PathBuf,
    /// The listening socket (owned by the accept thread until it ends).
    listener_fd: std::os::fd::RawFd,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
    conns: Arc<Conns>,
}

/// The connections being served: a clone of each stream (to end it) and
/// each thread (to wait for it).
#[derive(Default)]
struct Conns {
    streams: Mutex<BTreeMap<u64, UnixStream>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Conns {
    fn active(&self) -> usize {
        let mut t = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|h| !h.is_finished());
        t.len()
    }
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    /// Carries the client's `proto`; the client judges the answer.
    Hello {},
    Task {
        key: String,
    },
    Tasks {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        prefix: Option<String>,
    },
    Stats,
    FileHash {
        path: String,
        size: u64,
        mtime_ns: String,
    },
    Runs,
    UrlObject {
        url: String,
    },
    Status,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `DIR/holder/`, owned by this user and open to nobody else.
fn private_dir(root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join(SOCKET_DIR);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if !m.is_dir() => {
            return Err(std::io::Error::other(format!(
                "{} is not a folder",
                dir.display()
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?
        }
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let m = std::fs::symlink_metadata(&dir)?;
    if m.uid() != me || m.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} belongs to another user or is open to others",
            dir.display()
        )));
    }
    Ok(dir)
}

impl Holder {
    /// Serve reads of `store` (which this process holds) and, when given,
    /// the live progress of the build.
    pub fn start(store: Arc<Store>, live: Option<Arc<Mutex<Live>>>) -> std::io::Result<Holder> {
        let root = store.root().to_path_buf();
        private_dir(&root)?;
        let path = socket_path(&root);
        // Left by a holder that was killed: we hold the store now, so nobody
        // else can be serving it.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = with_socket_addr(&root, |p| UnixListener::bind(p))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Conns::default());
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let accept = std::thread::Builder::new()
            .name("nbbuild-holder".into())
            .spawn(move || {
                let mut next_id = 0u64;
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut s = match conn {
                        Ok(s) => s,
                        Err(_) => {
                            // Out of descriptors or the like: do not spin.
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    };
                    if conns2.active() >= MAX_CONNECTIONS {
                        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                        let _ = s.write_all(
                            b"{\"error\":{\"message\":\"the holder is busy; try again\"}}\n",
                        );
                        continue;
                    }
                    let Ok(clone) = s.try_clone() else { continue };
                    next_id += 1;
                    let id = next_id;
                    lock(&conns2.streams).insert(id, clone);
                    let (store, live, conns3) = (store.clone(), live.clone(), conns2.clone());
                    let spawned = std::thread::Builder::new()
                        .name("nbbuild-holder-conn".into())
                        .spawn(move || {
                            serve(s, &store, live.as_deref());
                            lock(&conns3.streams).remove(&id);
                        });
                    match spawned {
                        Ok(h) => lock(&conns2.threads).push(h),
                        Err(_) => {
                            lock(&conns2.streams).remove(&id);
                        }
                    }
                }
            })?;
        Ok(Holder {
            root,
            listener_fd,
            stop,
            accept: Some(accept),
            conns,
        })
    }

    pub fn socket(&self) -> PathBuf {
        socket_path(&self.root)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop: shutting the listening socket down makes a
        // blocked accept fail on Linux; a connection wakes it anywhere (and
        // neither needs the other, so a deleted socket file cannot hang us).
        // SAFETY: the fd is the listener's, which the accept thread keeps
        // open until it has seen `stop`.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        let _ = with_socket_addr(&self.root, |p| UnixStream::connect(p));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Then end the connections being served.
        for c in lock(&self.conns.streams).values() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        // Their threads hold the store: it must close before the process ends.
        let threads = std::mem::take(&mut *lock(&self.conns.threads));
        for t in threads {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

/// Answer one connection's requests until it closes or idles.
fn serve(s: UnixStream, store: &Store, live: Option<&Mutex<Live>>) {
    let _ = s.set_read_timeout(Some(IDLE));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = s.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(s);
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_REQUEST).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with('\n') => {
                let _ = writer.write_all(b"{\"error\":{\"message\":\"request too long\"}}\n");
                return;
            }
            Ok(_) => {}
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(req) => answer(req, store, live),
            Err(e) => {
                json!({"error": {"message": format!("not a request this holder knows: {e}")}})
            }
        };
        let mut out = serde_json::to_vec(&answer).unwrap_or_else(|e| {
            format!("{{\"error\":{{\"message\":\"cannot encode the answer: {e}\"}}}}").into_bytes()
        });
        out.push(b'\n');
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

fn answer(req: Request, store: &Store, live: Option<&Mutex<Live>>) -> Value {
    fn ok<T: serde::Serialize>(r: Result<T, nbbuild_cache::StoreError>) -> Value {
        match r {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({"error": {"message": e.to_string(), "hint": e.hint()}}),
        }
    }
    match req {
        Request::Hello {} => json!({"ok": {
            "proto": PROTOCOL,
            "nbbuild": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "root": store.root().display().to_string(),
        }}),
        Request::Task { key } => ok(store.task(&key)),
        Request::Tasks {
            name: Some(n),
            prefix: _,
        } => ok(store.find_by_name(&n)),
        Request::Tasks {
            name: None,
            prefix: Some(p),
        } => ok(store.find_by_prefix(&p)),
        Request::Tasks {
            name: None,
            prefix: None,
        } => ok(store.tasks()),
        Request::Stats => ok(store.stats()),
        Request::FileHash {
            path,
            size,
            mtime_ns,
        } => match mtime_ns.parse::<i128>() {
            Ok(m) => ok(store.file_hash(Path::new(&path), size, m)),
            Err(_) => {
                json!({"error": {"message": format!("mtime_ns {mtime_ns:?} is not a number")}})
            }
        },
        Request::Runs => ok(store.runs()),
        Request::UrlObject { url } => ok(store.url_object(&url)),
        Request::Status => {
            let snap = live.map(|l| lock(l).snapshot());
            json!({ "ok": snap })
        }
    }
}
