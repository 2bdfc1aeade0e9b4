//! Publishing: every candidate and every local reference image goes to the
//! mirror under a content-addressed, readable key, once. The store remembers
//! (object, mirror) -> URL, so the same bytes are never uploaded twice; the
//! mirror itself confirms with a HEAD before re-uploading after the store was
//! wiped. A failed upload is a failure of that candidate's publication, not a
//! lost generation: the candidate stays stored and the next run tries again.
//!
//! Every upload is verified: the mirror hashes the bytes as they stream and
//! abandons the upload on a mismatch before the destination holds the object.
//! A rotten stored candidate is then repaired (`repair.rs`) and published
//! from the good copy, or, with none, taken out of its slot and reported;
//! its rotten bytes are never published.

use crate::compile::{Compiled, TaskKind};
use crate::exec::{Failure, RunReport};
use crate::flow::Kind;
use crate::glabs::FailureKind;
use crate::mirror::{candidate_key, ref_key, Mirror, MirrorError};
use crate::output::Layout;
use crate::project::Project;
use crate::repair::{Outcome, Repairer};
use nbbuild_cache::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Uploads in flight at once.
const PARALLEL: usize = 4;

pub struct Published {
    /// Object hash -> public URL.
    pub objects: BTreeMap<String, String>,
    /// A reference's `imageData` as written in the flow -> public URL.
    pub refs: BTreeMap<String, String>,
    pub uploaded: u64,
}

struct Job {
    task: Option<usize>,
    slot: Option<u32>,
    object: String,
    path: PathBuf,
    key: String,
    mime: &'static str,
    /// For references: `imageData` as written.
    written: Option<String>,
}

/// Publish one job, verified; a rotten stored candidate is repaired and
/// published again. `Ok(None)`: it could not be repaired (reported by the
/// repairer), nothing was published.
async fn publish_job(
    mirror: &dyn Mirror,
    repair: &Repairer,
    job: &Job,
) -> Result<Option<String>, MirrorError> {
    let send = || mirror.publish_checked(&job.path, &job.key, job.mime, Some(&job.object));
    match send().await {
        Ok(url) => Ok(Some(url)),
        Err(e) if e.mismatch && job.task.is_some() => match repair.repair(&job.object).await {
            o if o.usable() => send().await.map(Some),
            Outcome::Failed { error, .. } => Err(MirrorError::new(format!(
                "{} (and the repair failed: {error})",
                e.message
            ))),
            _ => Ok(None),
        },
        Err(e) => Err(e),
    }
}

/// Publish what the run produced or holds; failures are added to the outcomes.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    store: &Arc<Store>,
    mirror: &dyn Mirror,
    repair: &Repairer,
    project: &Project,
    compiled: &Compiled,
    report: &mut RunReport,
    layout: &Layout,

    ref_image: Option<&str>,
) -> Published {
    let (flow, dir) = (&project.flow, project.dir.as_path());
    let mirror_id = mirror.id();
    let mut out = Published {
        objects: BTreeMap::new(),
        refs: BTreeMap::new(),
        uploaded: 0,
    };
    let mut jobs = Vec::new();
    for t in &compiled.tasks {
        for c in &report.outcomes[t.index].candidates {
            if out.objects.contains_key(&c.object) {
                continue;
            }
            if let Ok(Some(url)) = store.upload(&c.object, &mirror_id) {
                out.objects.insert(c.object.clone(), url);
                continue;
            }
            let (ext, mime) = if t.kind == TaskKind::Image {
                ("png", "image/png")
            } else {
                ("mp4", "video/mp4")
            };
            jobs.push(Job {
                task: Some(t.index),
                slot: Some(c.slot),
                object: c.object.clone(),
                path: store.object_path(&c.object),
                key: candidate_key(&layout.wf, &layout.ver, &t.label(), c.slot, &c.object, ext),
                mime,
                written: None,
            });
        }
    }
    // Local reference images (and --ref-image for unwired ones).
    for node in flow.nodes().filter(|n| n.kind == Kind::Reference) {
        let written = match node
            .prop_str("imageData")
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(s) => s.to_string(),
            None => match ref_image {
                Some(r) => r.to_string(),
                None => continue,
            },
        };
        let lower = written.to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("data:")
            || out.refs.contains_key(&written)
            || jobs
                .iter()
                .any(|j| j.written.as_deref() == Some(written.as_str()))
        {
            continue;
        }
        let path = {
            let p = Path::new(written.strip_prefix("file://").unwrap_or(&written));
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let Ok((hash, _)) = nbbuild_cache::hash_file(&path) else {
            continue;
        };
        if let Ok(Some(url)) = store.upload(&hash, &mirror_id) {
            out.refs.insert(written, url);
            continue;
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .filter(|e| e.len() <= 5)
            .unwrap_or_else(|| "png".into());
        let mime = match ext.as_str() {
            "jpg" | "jpeg" => "image/jpeg",
            "webp" => "image/webp",
            _ => "image/png",
        };
        jobs.push(Job {
            task: None,
            slot: None,
            key: ref_key(&hash, &ext),
            object: hash,
            path,
            mime,
            written: Some(written),
        });
    }
    for chunk in jobs.chunks(PARALLEL) {
        let results =
            futures_util::future::join_all(chunk.iter().map(|j| publish_job(mirror, repair, j)))
                .await;
        for (job, r) in chunk.iter().zip(results) {
            match r {
                Ok(None) => {}
                Ok(Some(url)) => {
                    out.uploaded += 1;
                    let _ = store.put_upload(&job.object, &mirror_id, &url);
                    if let (Some(t), Some(slot)) = (job.task, job.slot) {
                        if let Some(key) = &report.outcomes[t].key {
                            let u = url.clone();
                            let _ = store.update_candidate(key, slot, |c| c.url = Some(u));
                        }
                    }
                    match &job.written {
                        Some(w) => {
                            out.refs.insert(w.clone(), url);
                        }
                        None => {
                            out.objects.insert(job.object.clone(), url);
                        }
                    }
                }
                Err(e) => {
                    let failure = Failure {
                        candidate: job.slot,
                        kind: FailureKind::ApiError,
                        attempts: 1,
                        message: format!("publishing to the mirror failed: {e}"),
                    };
                    match job.task {
                        Some(t) => report.outcomes[t].failures.push(failure),
                        None => report.publish_failures.push(format!(
                            "reference {}: {}",
                            job.written.as_deref().unwrap_or("?"),
                            failure.message
                        )),
                    }
                }
            }
        }
    }
    out
}

/// The mirror and the key layout, for uploads as candidates land.
#[derive(Clone)]
pub struct EagerMirror {
    pub mirror: Arc<dyn crate::mirror::Mirror>,
    pub wf: String,
    pub ver: String,
}

/// A candidate just stored, to publish at once.
pub struct Landed<'a> {
    pub label: &'a str,
    pub kind: TaskKind,
    pub key: &'a str,
    pub slot: u32,
    pub object: &'a str,
}

/// Upload a candidate in the background as soon as it is stored (and past
/// QA), so the bucket fills while the build runs; never delays it. Store
/// calls run on blocking threads. The publish step after the build takes
/// whatever this did not.
pub fn eager(
    m: &EagerMirror,
    store: &Arc<Store>,
    uploaded: &Arc<std::sync::atomic::AtomicU64>,
    c: Landed<'_>,
) -> tokio::task::JoinHandle<()> {
    let (ext, mime) = if c.kind == TaskKind::Image {
        ("png", "image/png")
    } else {
        ("mp4", "video/mp4")
    };
    let object_key = super::candidate_key(&m.wf, &m.ver, c.label, c.slot, c.object, ext);
    let (m, store, uploaded) = (m.clone(), store.clone(), uploaded.clone());
    let (key, slot, object) = (c.key.to_string(), c.slot, c.object.to_string());
    tokio::spawn(async move {
        let id = m.mirror.id();
        let (st, obj, mid) = (store.clone(), object.clone(), id.clone());
        let known = tokio::task::spawn_blocking(move || st.upload(&obj, &mid))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        if known.is_some() {
            return;
        }
        if let Ok(url) = m
            .mirror
            .publish_checked(
                &store.object_path(&object),
                &object_key,
                mime,
                Some(&object),
            )
            .await
        {
            let _ = tokio::task::spawn_blocking(move || {
                let _ = store.put_upload(&object, &id, &url);
                let _ = store.update_candidate(&key, slot, |c| c.url = Some(url));
            })
            .await;
            uploaded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    })
}
