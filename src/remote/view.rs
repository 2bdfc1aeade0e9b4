//! What `nbbuild plan` sees of the team cache: the plan never writes the
//! store, so instead of pulling, believed remote records are laid over the
//! local ones (a [`PlanView`] wrapper). Their bytes are checked when a
//! build pulls them; until then the plan's "fresh (team cache)" is a quote.

use super::pull::{Lookup, PARALLEL};
use super::record::RemoteRecord;
use super::Remote;
use crate::compile::TaskKind;
use crate::plan::{Decider, PlanView, Reason, Status};
use futures_util::StreamExt;
use nbbuild_cache::TaskRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

/// The local view, with the team cache's believed records over it.
pub struct RemoteView {
    pub local: Arc<dyn PlanView>,
    remote: RwLock<BTreeMap<String, TaskRecord>>,
}

impl RemoteView {
    pub fn new(local: Arc<dyn PlanView>) -> RemoteView {
        RemoteView {
            local,
            remote: RwLock::new(BTreeMap::new()),
        }
    }

    /// Keys whose record came from the team cache.
    pub fn from_team(&self) -> BTreeSet<String> {
        self.remote
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Look up, in parallel rounds, every stale task's key the decider
    /// knows (see `pull.rs`), laying each believed record over the local one.
    pub async fn fill(&self, remote: &Remote, decider: &Decider) {
        let mut asked = BTreeSet::new();
        loop {
            if remote.client.breaker.is_open() {
                return;
            }
            let plan = decider.plan();
            let wants: Vec<(String, String)> = plan
                .items
                .iter()
                .filter(|i| {
                    matches!(&i.status, Status::Stale(r) if !matches!(r, Reason::Forced | Reason::UpstreamChanges { .. }))
                })
                .filter_map(|i| Some((i.key.clone()?, format!("{} {}", i.kind.as_str(), i.name))))
                .filter(|(k, _)| asked.insert(k.clone()))
                .collect();
            if wants.is_empty() {
                return;
            }
            let found: Vec<(String, RemoteRecord)> = futures_util::stream::iter(wants)
                .map(|(k, label)| async move {
                    match remote.lookup(&k).await {
                        Lookup::Hit(r) => Some((k, r)),
                        Lookup::Ignored(why) => {
                            remote.ignore(&k, &label, &why.describe());
                            None
                        }
                        Lookup::Miss | Lookup::Failed(_) => None,
                    }
                })
                .buffer_unordered(PARALLEL)
                .filter_map(|x| async move { x })
                .collect()
                .await;
            if found.is_empty() {
                return;
            }
            let mut map = self.remote.write().unwrap_or_else(|e| e.into_inner());
            for (k, r) in found {
                let mut rec = self.local.record(&k).unwrap_or_else(|| TaskRecord {
                    name: r.name.clone(),
                    preimage: r.preimage.clone(),
                    ..Default::default()
                });
                for c in &r.candidates {
                    let held = rec
                        .candidate(c.slot)
                        .is_some_and(|h| !crate::plan::is_flagged(h));
                    if !held {
                        rec.candidates.retain(|h| h.slot != c.slot);
                        rec.candidates.push(RemoteRecord::candidate(c));
                    }
                }
                rec.candidates.sort_by_key(|c| c.slot);
                map.insert(k, rec);
            }
        }
    }
}

impl PlanView for RemoteView {
    fn record(&self, key: &str) -> Option<TaskRecord> {
        if let Some(r) = self
            .remote
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Some(r.clone());
        }
        self.local.record(key)
    }
    fn previous(&self, label: &str, kind: TaskKind) -> Option<(String, TaskRecord)> {
        self.local.previous(label, kind)
    }
    fn file_hash(&self, path: &str) -> Result<String, String> {
        self.local.file_hash(path)
    }
    fn url_hash(&self, url: &str) -> Result<String, String> {
        self.local.url_hash(url)
    }
}
