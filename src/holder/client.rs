//! The other side of the holder's socket: the same reads as the store
//! itself, asked of the process that holds it.

use super::{Tasks, PROTOCOL};
use crate::error::{Error, Result};
use nbbuild_cache::{Stats, TaskRecord};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// A holder that has not said hello by then is treated as hung.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// One answer (a `cache stats` of a large store walks every object file).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the holder's endpoint cannot be used.
#[derive(Debug)]
pub enum ConnectError {
    /// No socket, or nobody listening on it (an older nbbuild, a command
    /// that serves no reads, a holder starting up or just gone).
    NotServing(std::io::Error),
    /// The socket belongs to another user.
    NoAccess(std::io::Error),
    /// Connected, but no proper hello in time.
    NoAnswer(String),
    /// A holder speaking another protocol version.
    Incompatible { proto: u32, nbbuild: String },
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::NotServing(e) => write!(f, "it serves no reads ({e})"),
            ConnectError::NoAccess(e) => write!(f, "its endpoint is not open to this user ({e})"),
            ConnectError::NoAnswer(why) => write!(f, "its endpoint does not answer ({why})"),
            ConnectError::Incompatible { proto, nbbuild } => write!(
                f,
                "it is nbbuild {nbbuild}, whose endpoint speaks protocol {proto}, not {PROTOCOL}"
            ),
        }
    }
}

/// What the holder says about itself.
#[derive(Debug, Clone, Deserialize)]
pub struct Hello {
    pub proto: u32,
    #[serde(default)]
    pub nbbuild: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub root: String,
}

struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

pub struct HolderClient {
    root: PathBuf,
    hello: Hello,
    conn: Mutex<Conn>,
}

fn connect_within(root: &Path, timeout: Duration) -> Result<UnixStream, ConnectError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = root.to_path_buf();
    // A holder that never accepts leaves connect blocked once its backlog is
    // full: give up on it after the timeout.
    std::thread::spawn(move || {
        let _ = tx.send(super::with_socket_addr(&root, |p| UnixStream::connect(p)));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(ConnectError::NoAccess(e))
        }
        Ok(Err(e)) => Err(ConnectError::NotServing(e)),
        Err(_) => Err(ConnectError::NoAnswer(format!(
            "no connection within {}s",
            timeout.as_secs()
        ))),
    }
}

impl HolderClient {
    /// Connect to the holder of the store in `root` and check that it
    /// speaks this protocol.
    pub fn connect(root: &Path) -> Result<HolderClient, ConnectError> {
        let stream = connect_within(root, HELLO_TIMEOUT)?;
        let no_answer = |e: std::io::Error| ConnectError::NoAnswer(e.to_string());
        stream
            .set_read_timeout(Some(HELLO_TIMEOUT))
            .map_err(no_answer)?;
        stream
            .set_write_timeout(Some(HELLO_TIMEOUT))
            .map_err(no_answer)?;
        let writer = stream.try_clone().map_err(no_answer)?;
        let mut conn = Conn {
            reader: BufReader::new(stream),
            writer,
        };
        let answer = exchange(&mut conn, &json!({"op": "hello", "proto": PROTOCOL}))
            .map_err(|e| ConnectError::NoAnswer(io_text(&e, HELLO_TIMEOUT)))?;
        let hello: Hello = match answer {
            Answer::Ok(v) => serde_json::from_value(v)
                .map_err(|e| ConnectError::NoAnswer(format!("a hello that is not one: {e}")))?,
            Answer::Err { message, .. } => return Err(ConnectError::NoAnswer(message)),
        };
        if hello.proto != PROTOCOL {
            return Err(ConnectError::Incompatible {
                proto: hello.proto,
                nbbuild: hello.nbbuild,
            });
        }
        for s in [conn.reader.get_ref(), &conn.writer] {
            s.set_read_timeout(Some(ANSWER_TIMEOUT))
                .map_err(no_answer)?;
            s.set_write_timeout(Some(ANSWER_TIMEOUT))
                .map_err(no_answer)?;
        }
        Ok(HolderClient {
            root: root.to_path_buf(),
            hello,
            conn: Mutex::new(conn),
        })
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    fn call<T: DeserializeOwned>(&self, req: Value) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let lost = |why: String| {
            Error::env(format!(
                "process {} holding the store in {} stopped answering",
                self.hello.pid,
                self.root.display()
            ))
            .cause(why)
            .hint("run the command again; once that process is gone the store opens directly")
        };
        match exchange(&mut conn, &req).map_err(|e| lost(io_text(&e, ANSWER_TIMEOUT)))? {
            Answer::Ok(v) => serde_json::from_value(v)
                .map_err(|e| lost(format!("an answer that does not decode: {e}"))),
            Answer::Err { message, hint } => {
                let mut err = Error::env(message);
                err.hint = hint;
                Err(err)
            }
        }
    }

    /// Live progress of the build holding the store; `None` when the
    /// holder is not building.
    pub fn status(&self) -> Result<Option<Value>> {
        self.call(json!({"op": "status"}))
    }
}

/// An I/O error as the user reads it; a read timeout says how long it waited.
fn io_text(e: &std::io::Error, waited: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {}s", waited.as_secs())
        }
        _ => e.to_string(),
    }
}

enum Answer {
    Ok(Value),
    Err {
        message: String,
        hint: Option<String>,
    },
}

/// One request line out, one answer line back.
fn exchange(conn: &mut Conn, req: &Value) -> std::io::Result<Answer> {
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.writer.write_all(&line)?;
    conn.writer.flush()?;
    let mut answer = String::new();
    if conn.reader.read_line(&mut answer)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the connection closed",
        ));
    }
    let mut v: Value = serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::other(format!("an answer that is not JSON: {e}")))?;
    if let Some(ok) = v.get_mut("ok") {
        return Ok(Answer::Ok(ok.take()));
    }
    let err = v.get("error");
    Ok(Answer::Err {
        message: err
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("the holder gave no answer")
            .to_string(),
        hint: err
            .and_then(|e| e.get("hint"))
            .and_then(|m| m.as_str())
            .map(str::to_string),
    })
}

impl super::StoreRead for HolderClient {
    fn root(&self) -> &Path {
        &self.root
    }
    fn task(&self, key: &str) -> Result<Option<TaskRecord>> {
        self.call(json!({"op": "task", "key": key}))
    }
    fn tasks(&self, which: Tasks) -> Result<Vec<(String, TaskRecord)>> {
        self.call(match which {
            Tasks::All => json!({"op": "tasks"}),
            Tasks::Named(n) => json!({"op": "tasks", "name": n}),
            Tasks::KeyPrefix(p) => json!({"op": "tasks", "prefix": p}),
        })
    }
    fn stats(&self) -> Result<Stats> {
        self.call(json!({"op": "stats"}))
    }
    fn file_hash(&self, path: &Path, size: u64, mtime_ns: i128) -> Result<Option<String>> {
        let Some(p) = path.to_str() else {
            return Ok(None); // not sendable as JSON: the caller hashes the file
        };
        self.call(
            json!({"op": "file_hash", "path": p, "size": size, "mtime_ns": mtime_ns.to_string()}),
        )
    }
    fn runs(&self) -> Result<Vec<Value>> {
        self.call(json!({"op": "runs"}))
    }
    fn url_object(&self, url: &str) -> Result<Option<String>> {
        self.call(json!({"op": "url_object", "url": url}))
    }
}
