//! The team cache: a bucket on R2 (any S3 API with conditional writes)
//! shared by every machine of a team, as a store of results and as the
//! coordinator that keeps two machines from paying for one task. No new
//! server. See docs/remote.md.
//!
//! ```text
//! config.rs   --remote s3://BUCKET[/PREFIX], mode, keys, lease: resolved once
//! layout.rs   where bytes, records and claims live in the bucket
//! client.rs   the S3 requests, short timeouts, answers sorted into faults
//! breaker.rs  repeated failures switch the remote off for the run, said once
//! sign.rs     Ed25519 keys per writer
//! record.rs   the signed record of a task, and what makes one believed
//! cas.rs      object bytes: the ObjectStore shape, over the network
//! claims.rs   create, renew, take over and release a task's claim
//! pull.rs     verified records into the local store (plan time and before paying)
//! push.rs     objects, then the record, in the background; then the claim goes
//! view.rs     `nbbuild plan`'s look at the team cache, without writing the store
//! ```
//!
//! The plan stays pure: remote hits are pulled into the local store before
//! the decider looks, so a hit is simply a fresh task whose record came
//! from the team.

pub mod breaker;
pub mod cas;
pub mod claims;
pub mod client;
pub mod config;
pub mod layout;
pub mod pull;
pub mod push;
pub mod record;
pub mod sign;
pub mod view;

use breaker::{Breaker, Warn};
use cas::RemoteCas;
use claims::Identity;
use client::Client;
pub use config::{Mode, RemoteConfig};
use layout::Layout;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the team cache did in one run (the summary's `remote` object).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counts {
    /// Tasks made fresh by a record pulled from the team cache.
    pub hits: u64,
    /// Records this run wrote.
    pub uploads: u64,
    /// Objects this run uploaded.
    pub objects: u64,
    /// Tasks that waited for another machine's claim.
    pub waits: u64,
    /// Stale claims taken over.
    pub takeovers: u64,
    /// Records not believed (untrusted writer, bad signature...).
    pub ignored: u64,
    /// Requests that failed.
    pub errors: u64,
}

/// One run's handle on the team cache.
pub struct Remote {
    pub cfg: RemoteConfig,
    pub client: Arc<Client>,
    pub cas: RemoteCas,
    pub layout: Layout,
    pub me: Identity,
    read_only: AtomicBool,
    said_read_only: AtomicBool,
    info: Warn,
    hits: AtomicU64,
    uploads: AtomicU64,
    objects: AtomicU64,
    waits: AtomicU64,
    takeovers: AtomicU64,
    /// Keys whose record was not believed, each counted once.
    ignored: Mutex<BTreeSet<String>>,
    /// Keys pulled this run.
    pulled: Mutex<BTreeSet<String>>,
    pushes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Background uploads at once, so that a burst of finished tasks leaves
    /// room among the client's requests for the lookups and claims that
    /// stand before paid calls.
    push_slots: Arc<tokio::sync::Semaphore>,
}

/// Tasks uploading at once (see `Remote::push_slots`).
pub const PUSHES: usize = 8;

impl Remote {
    /// The handle (no network call). `warn` gets the one warning of a
    /// failing remote, `info` the read-only notice and, with `-v`, each
    /// ignored record. Must be called inside a tokio runtime.
    pub fn new(cfg: RemoteConfig, warn: Warn, info: Warn) -> Arc<Remote> {
        let breaker = Arc::new(Breaker::new(cfg.url.to_string(), warn));
        let client = Arc::new(Client::new(&cfg, crate::mirror::r2::http_client(), breaker));
        let layout = Layout::new(&cfg.url);
        let (mode, why) = cfg.mode();
        let remote = Arc::new(Remote {
            cas: RemoteCas {
                client: client.clone(),
                layout: layout.clone(),
            },
            client,
            layout,
            me: Identity::new(cfg.lease),
            read_only: AtomicBool::new(mode == Mode::ReadOnly),
            said_read_only: AtomicBool::new(false),
            info,
            hits: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            ignored: Mutex::new(BTreeSet::new()),
            pulled: Mutex::new(BTreeSet::new()),
            pushes: Mutex::new(Vec::new()),
            push_slots: Arc::new(tokio::sync::Semaphore::new(PUSHES)),
            cfg,
        });
        if let Some(why) = why {
            remote.say_read_only(why);
        }
        remote
    }

    pub fn mode(&self) -> Mode {
        if self.read_only.load(Ordering::SeqCst) {
            Mode::ReadOnly
        } else {
            Mode::ReadWrite
        }
    }

    /// Switch to read-only, saying why once.
    pub fn say_read_only(&self, why: &str) {
        self.read_only.store(true, Ordering::SeqCst);
        if !self.said_read_only.swap(true, Ordering::SeqCst) {
            (self.info)(format!(
                "team cache {} is read-only for this run: {why}",
                self.cfg.url
            ));
        }
    }

    /// A record that is not believed: counted once per key, and said with -v.
    pub fn ignore(&self, key: &str, label: &str, why: &str) {
        let first = self
            .ignored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string());
        if first && self.cfg.verbose {
            (self.info)(format!(
                "team cache: ignored the record of {label} ({}): {why}",
                &key[..key.len().min(12)]
            ));
        }
    }

    pub fn was_pulled(&self, key: &str) -> bool {
        self.pulled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn mark_pulled(&self, key: &str) {
        if self
            .pulled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string())
        {
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            hits: self.hits.load(Ordering::SeqCst),
            uploads: self.uploads.load(Ordering::SeqCst),
            objects: self.objects.load(Ordering::SeqCst),
            waits: self.waits.load(Ordering::SeqCst),
            takeovers: self.takeovers.load(Ordering::SeqCst),
            ignored: self.ignored.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            errors: self.client.breaker.errors(),
        }
    }

    /// The summary's `remote` object.
    pub fn summary(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.counts()).unwrap_or_default();
        v["url"] = self.cfg.url.to_string().into();
        v["mode"] = self.mode().as_str().into();
        v["reachable"] = (!self.client.breaker.is_open()).into();
        v
    }

    /// Wait for the background uploads started this run.
    pub async fn finish(&self) {
        let pushes = std::mem::take(&mut *self.pushes.lock().unwrap_or_else(|e| e.into_inner()));
        for p in pushes {
            let _ = p.await;
        }
    }
}
