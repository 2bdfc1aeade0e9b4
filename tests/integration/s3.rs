//! A real S3-compatible server inside the test process: s3s-fs (objects as
//! files under a folder) behind s3s's SigV4 verification, on a loopback port
//! of its own, with a known access key and secret. Nothing to install.
//!
//! Conditional writes: s3s-fs implements `If-None-Match: *` and `If-Match`
//! on PutObject (412 when the condition fails), but checks the condition and
//! then writes without a lock, so two racing writers could both pass. R2 and
//! S3 make the check and the write one atomic step; so does this server, by
//! serialising every request that changes the bucket (PUT, POST, DELETE).
//! `conditional_writes_are_atomic` in remote.rs checks that it does.
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let s3 = start_s3(dir.path());
//! // s3.endpoint, s3.bucket (already created), s3.access_key, s3.secret_key
//! ```

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const ACCESS_KEY: &str = "NBBUILDTESTACCESSKEY";
pub const SECRET_KEY: &str = "nbbuild-test-secret-0123456789abcdefghij";
pub const BUCKET: &str = "nbbuild-test";
/// The public base URL tests give the mirror (never fetched).
pub const PUBLIC_URL: &str = "https://pub.nbbuild.test";

/// Requests the server received, by method.
#[derive(Debug, Default)]
pub struct Requests {
    pub put: AtomicU64,
    pub head: AtomicU64,
    pub get: AtomicU64,
    pub post: AtomicU64,
    pub other: AtomicU64,
}

impl Requests {
    fn record(&self, m: &hyper::Method) {
        let c = match *m {
            hyper::Method::PUT => &self.put,
            hyper::Method::HEAD => &self.head,
            hyper::Method::GET => &self.get,
            hyper::Method::POST => &self.post,
            _ => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// A bucket that exists (created empty at start).
    pub bucket: String,
    /// The server's data folder: objects are `root/BUCKET/KEY`.
    pub root: PathBuf,
    pub requests: Arc<Requests>,
    pub port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// Where the server keeps the object `key` of the test bucket.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(&self.bucket).join(key)
    }
    pub fn puts(&self) -> u64 {
        self.requests.put.load(Ordering::Relaxed)
    }
    pub fn heads(&self) -> u64 {
        self.requests.head.load(Ordering::Relaxed)
    }
    pub fn posts(&self) -> u64 {
        self.requests.post.load(Ordering::Relaxed)
    }
    /// A mirror configuration for this server (right credentials).
    pub fn r2_config(&self) -> nbbuild::mirror::r2::R2Config {
        nbbuild::mirror::r2::R2Config::new(
            &self.endpoint,
            &self.bucket,
            PUBLIC_URL,
            Some(nbbuild::mirror::r2::AccessKey {
                id: self.access_key.clone(),
                secret: self.secret_key.clone(),
            }),
        )
    }
}

impl S3Server {
    /// Kill the server: the listener closes and every open connection is
    /// cut (its runtime goes), so later requests are refused.
    pub fn kill(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Start s3s-fs on `127.0.0.1:0` serving `root`, with the bucket
/// [`BUCKET`] created. The server runs on its own thread and runtime (so
/// any test, async or not, can use it) until the returned value is dropped.
pub fn start_s3(root: &Path) -> S3Server {
    start_s3_on(root, 0)
}

/// [`start_s3`] on a given port (0: any free one).
pub fn start_s3_on(root: &Path, port: u16) -> S3Server {
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let root = root.canonicalize().unwrap();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Requests::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();

    let fs = s3s_fs::FileSystem::new(&root).unwrap();
    let service = {
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        b.build()
    };
    let counts = requests.clone();
    let thread = std::thread::Builder::new()
        .name(format!("s3s-fs {addr}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listener, service, counts, rx));
        })
        .unwrap();
    S3Server {
        endpoint: format!("http://{addr}"),
        access_key: ACCESS_KEY.to_string(),
        secret_key: SECRET_KEY.to_string(),
        bucket: BUCKET.to_string(),
        root,
        requests,
        port: addr.port(),
        shutdown: Some(tx),
        thread: Some(thread),
    }
}

async fn serve(
    listener: std::net::TcpListener,
    service: s3s::service::S3Service,
    counts: Arc<Requests>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    // One writer at a time: conditional writes check and write atomically.
    let writes = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        let socket = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = &mut stop => break,
        };
        let _ = socket.set_nodelay(true);
        let (svc, counts, writes) = (service.clone(), counts.clone(), writes.clone());
        let handler =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                counts.record(req.method());
                let (svc, writes) = (svc.clone(), writes.clone());
                async move {
                    let changes = matches!(
                        *req.method(),
                        hyper::Method::PUT | hyper::Method::POST | hyper::Method::DELETE
                    );
                    let _one = if changes {
                        Some(writes.lock().await)
                    } else {
                        None
                    };
                    hyper::service::Service::call(&svc, req).await
                }
            });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(socket), handler)
                .await;
        });
    }
}
