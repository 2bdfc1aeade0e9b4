//! The read path: a local miss asks the team cache; a record from a trusted
//! writer whose every object verifies is pulled into the local store, and
//! the task is fresh ("fresh (team cache)"), with no call and no credit.
//!
//! At plan time the lookups go in rounds, each a batch of parallel GETs:
//! the keys the plan knows, then, once pulls have settled their picks, the
//! keys of their consumers, until a round pulls nothing. The decider never
//! sees the network: it reads the local store, which the pulls have filled.
//!
//! Before paying for a task (the executor), [`Remote::before_paying`] asks
//! again and handles claims: someone may have finished, or be working on,
//! the same task since the plan was made.

use super::claims::{self, ClaimGuard};
use super::client::Fault;
use super::record::{Rejected, RemoteRecord};
use super::Remote;
use crate::plan::{Decider, Reason, Status};
use futures_util::StreamExt;
use nbbuild_cache::Store;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Lookups in flight at once.
pub const PARALLEL: usize = 32;

/// What the team cache holds for a key.
pub enum Lookup {
    Hit(RemoteRecord),
    Miss,
    Ignored(Rejected),
    Failed(Fault),
}

/// What a task's builder does next.
pub enum Gate {
    /// Pulled: the task is fresh from the team cache.
    Pulled,
    /// Build it, holding the claim when there is one.
    Build(Option<ClaimGuard>),
}

/// One task to ask about.
#[derive(Clone)]
pub struct Want {
    pub key: String,
    pub label: String,
    /// The local preimage (the record's hashes to the same key).
    pub preimage: serde_json::Value,
    pub candidates: u32,
}

/// Store work off the runtime's workers; None when the task panicked.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

impl Remote {
    pub async fn lookup(&self, key: &str) -> Lookup {
        match self.client.get(&self.layout.record(key)).await {
            Ok(None) => Lookup::Miss,
            Ok(Some((bytes, _))) => {
                match RemoteRecord::verified(&bytes, key, &|k| self.cfg.trusts(k)) {
                    Ok(r) => Lookup::Hit(r),
                    Err(why) => Lookup::Ignored(why),
                }
            }
            Err(f) => Lookup::Failed(f),
        }
    }

    /// Bytes first (each verified), then the candidates into the local
    /// record. Ok(false) when the record's objects are not all there.
    pub async fn pull(
        &self,
        store: &Arc<Store>,
        want: &Want,
        rec: &RemoteRecord,
    ) -> Result<bool, String> {
        let usable: Vec<_> = rec
            .candidates
            .iter()
            .filter(|c| c.slot < want.candidates)
            .cloned()
            .collect();
        if usable.is_empty() {
            return Ok(false);
        }
        for c in &usable {
            let (st, id) = (store.clone(), c.blake3.clone());
            if blocking(move || st.has_object(&id)).await.unwrap_or(false) {
                continue;
            }
            let bytes = match self.cas.get(&c.blake3, c.size).await {
                Ok(super::cas::Got::Bytes(b)) => b,
                Ok(super::cas::Got::Missing) => {
                    self.ignore(
                        &want.key,
                        &want.label,
                        &format!("its object {} is not in the team cache", &c.blake3[..12]),
                    );
                    return Ok(false);
                }
                Ok(super::cas::Got::Corrupt(why)) => {
                    self.ignore(
                        &want.key,
                        &want.label,
                        &format!("its object {} is corrupt ({why})", &c.blake3[..12]),
                    );
                    return Ok(false);
                }
                Err(f) => return Err(f.describe()),
            };
            let st = store.clone();
            match blocking(move || st.put_bytes(&bytes)).await {
                Some(Ok(id)) if id == c.blake3 => {}
                Some(Ok(id)) => return Err(format!("stored {id}, expected {}", c.blake3)),
                Some(Err(e)) => return Err(format!("the local store: {e}")),
                None => return Err("internal error while storing".into()),
            }
        }
        let (st, w) = (store.clone(), want.clone());
        let committed = blocking(move || -> Result<(), String> {
            let local = st
                .ensure_task(&w.key, &w.label, &w.preimage)
                .map_err(|e| e.to_string())?;
            for c in &usable {
                let held = local.candidate(c.slot);
                if held.is_some_and(|h| !crate::plan::is_flagged(h)) {
                    continue;
                }
                let cand = RemoteRecord::candidate(c);
                if let Some(v) = &cand.qa {
                    if v.verdict != nbbuild_cache::Outcome::Unreviewed && !v.reviewer.is_empty() {
                        let _ = st.put_verdict(&cand.object, &v.reviewer, v);
                    }
                }
                st.commit_candidate(&w.key, cand)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await;
        match committed {
            Some(Ok(())) => {
                self.mark_pulled(&want.key);
                Ok(true)
            }
            Some(Err(e)) => Err(format!("the local store: {e}")),
            None => Err("internal error while committing".into()),
        }
    }

    /// Look up and pull one key: Ok(true) when it was pulled.
    pub async fn fetch(&self, store: &Arc<Store>, want: &Want) -> bool {
        match self.lookup(&want.key).await {
            Lookup::Hit(rec) => self.pull(store, want, &rec).await.unwrap_or(false),
            Lookup::Ignored(why) => {
                self.ignore(&want.key, &want.label, &why.describe());
                false
            }
            Lookup::Miss | Lookup::Failed(_) => false,
        }
    }

    /// Plan-time pulls, in rounds (see the module doc). Returns the keys pulled.
    pub async fn pull_for_plan(&self, store: &Arc<Store>, decider: &Arc<Decider>) -> Vec<String> {
        let mut asked: BTreeSet<String> = BTreeSet::new();
        let mut pulled = Vec::new();
        loop {
            if self.client.breaker.is_open() {
                break;
            }
            let d = decider.clone();
            let Some(plan) = blocking(move || d.plan()).await else {
                break;
            };
            let wants: Vec<Want> = plan
                .items
                .iter()
                .filter(|i| {
                    matches!(&i.status, Status::Stale(r) if !matches!(r, Reason::Forced | Reason::UpstreamChanges { .. }))
                })
                .filter_map(|i| {
                    let key = i.key.clone()?;
                    let pre = i.preimage.as_ref()?.to_value();
                    Some(Want {
                        key,
                        label: format!("{} {}", i.kind.as_str(), i.name),
                        preimage: pre,
                        candidates: decider.compiled.tasks[i.task].params.candidates,
                    })
                })
                .filter(|w| asked.insert(w.key.clone()))
                .collect();
            if wants.is_empty() {
                break;
            }
            let results: Vec<(String, bool)> = futures_util::stream::iter(wants)
                .map(|w| async move {
                    let ok = self.fetch(store, &w).await;
                    (w.key, ok)
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            let before = pulled.len();
            pulled.extend(results.into_iter().filter(|(_, ok)| *ok).map(|(k, _)| k));
            if pulled.len() == before {
                break;
            }
        }
        pulled
    }

    /// Just before the first paid call of a task: pull it if its record
    /// landed meanwhile; else claim it; if someone else holds a live claim,
    /// wait (holding no generation slot, so the rest of the build goes on)
    /// for their record until the lease runs out, then take the claim over.
    /// A failing remote never stops the build: it says build, unclaimed.
    pub async fn before_paying(
        &self,
        store: &Arc<Store>,
        want: &Want,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Gate {
        let path = self.layout.claim(&want.key);
        let mut waited = false;
        let mut pause = Duration::from_millis(50);
        let max_pause =
            (self.cfg.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            match self.lookup(&want.key).await {
                Lookup::Hit(rec) => {
                    if let Ok(true) = self.pull(store, want, &rec).await {
                        return Gate::Pulled;
                    }
                }
                Lookup::Ignored(why) => self.ignore(&want.key, &want.label, &why.describe()),
                Lookup::Miss => {}
                Lookup::Failed(_) => return Gate::Build(None),
            }
            if stop() {
                return Gate::Build(None);
            }
            let now = crate::exec::runner::now_ms();
            let seen = if self.mode() == super::Mode::ReadWrite {
                match claims::create(&self.client, &path, &self.me, &want.key, now).await {
                    Ok(Some(etag)) => return self.claimed(store, want, &path, etag).await,
                    Ok(None) => match claims::read(&self.client, &path).await {
                        Ok(Some(s)) => s,
                        // Released meanwhile: look again.
                        Ok(None) => continue,
                        Err(_) => return Gate::Build(None),
                    },
                    Err(Fault::Refused(why)) => {
                        self.say_read_only(&format!("the bucket refused a write ({why})"));
                        continue;
                    }
                    Err(_) => return Gate::Build(None),
                }
            } else {
                match claims::read(&self.client, &path).await {
                    Ok(Some(s)) => s,
                    Ok(None) => return Gate::Build(None),
                    Err(_) => return Gate::Build(None),
                }
            };
            let stale = seen.body.as_ref().is_none_or(|b| b.stale(now));
            if stale {
                if self.mode() == super::Mode::ReadOnly {
                    return Gate::Build(None);
                }
                match claims::replace(&self.client, &path, &seen.etag, &self.me, &want.key, now)
                    .await
                {
                    Ok(Some(etag)) => {
                        self.takeovers.fetch_add(1, Ordering::SeqCst);
                        let owner = seen.body.map(|b| b.owner).unwrap_or_else(|| "?".into());
                        (self.info)(format!(
                            "team cache: {} was claimed by {owner}, whose lease ran out: taking it over",
                            want.label
                        ));
                        return self.claimed(store, want, &path, etag).await;
                    }
                    // Someone else took it over first, or it went: look again.
                    Ok(None) => continue,
                    Err(_) => return Gate::Build(None),
                }
            }
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::SeqCst);
                if self.cfg.verbose {
                    let owner = seen
                        .body
                        .as_ref()
                        .map(|b| b.owner.clone())
                        .unwrap_or_default();
                    (self.info)(format!(
                        "team cache: {} is being built by {owner}: waiting for its record",
                        want.label
                    ));
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(max_pause);
        }
    }

    /// The claim at `path` is ours (made, or taken over) with this ETag:
    /// hold it while the task builds. Its record may have landed between
    /// the lookup and the claim (its writer then removed its claim): then
    /// pull it and let the claim go.
    async fn claimed(&self, store: &Arc<Store>, want: &Want, path: &str, etag: String) -> Gate {
        let guard = ClaimGuard::hold(
            self.client.clone(),
            path.to_string(),
            etag,
            self.me.clone(),
            want.key.clone(),
        );
        if let Lookup::Hit(rec) = self.lookup(&want.key).await {
            if let Ok(true) = self.pull(store, want, &rec).await {
                guard.release().await;
                return Gate::Pulled;
            }
        }
        Gate::Build(Some(guard))
    }
}
