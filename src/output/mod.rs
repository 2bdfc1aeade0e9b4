//! What a build leaves on disk: `Assets/` (stills and clips), the
//! `-generated.nbflow` for review, and `errors.json`. Every file is written
//! to a temporary name and renamed; the input flow is never touched.

pub mod fingerprint;

use crate::compile::{Compiled, TaskKind};
use crate::exec::{RunReport, TaskState};
use crate::flow::{Flow, Kind};
use crate::repair::Repairer;
use nbbuild_cache::{Candidate, Store};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Workflow code and iteration from the flow's name: `XYZG1-V0-3` gives
/// (`XYZG1`, `v0-3`); a name without such a suffix gives (slug, `latest`).
pub fn workflow_parts(name: &str) -> (String, String) {
    let lower = name.to_ascii_lowercase();
    if let Some(pos) = lower.rfind("-v") {
        let ver = &lower[pos + 2..];
        let ok = !ver.is_empty()
            && ver
                .split('-')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        let wf = safe_component(&name[..pos]);
        if ok && !wf.is_empty() {
            return (wf, format!("v{ver}"));
        }
    }
    let s = crate::names::slug(name);
    (
        if s.is_empty() { "workflow".into() } else { s },
        "latest".into(),
    )
}

pub use crate::names::safe_component;

/// Write `bytes` to `path` atomically: a temporary file beside it, synced, renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbbuild-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    readable(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Temporary files are created private (0600); outputs are ordinary files
/// (0644), as the user's other files are.
fn readable(f: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = f;
    Ok(())
}

/// Copy a candidate's object to `dest` unless it is already there. A placed
/// copy carries the candidate's size and creation time as its mtime, so a
/// no-op build checks each asset with one `stat` (no re-hash, no look at the
/// store); a file the user changed (new mtime or size) is replaced.
///
/// The copy is verified: hashed as it streams into a temporary file, renamed
/// onto `dest` only when it matched. A rotten (or missing) object is repaired
/// first (`repair.rs`); `Ok(false)` when it could not be (the candidate is
/// then out of its slot and reported, and nothing is placed).
fn place(store: &Store, repair: &Repairer, c: &Candidate, dest: &Path) -> std::io::Result<bool> {
    let stamp = std::time::UNIX_EPOCH + std::time::Duration::from_millis(c.created);
    if let Ok(meta) = std::fs::metadata(dest) {
        if c.size > 0 && meta.len() == c.size && meta.modified().ok() == Some(stamp) {
            return Ok(true);
        }
    }
    let copy = || store.copy_object_to(&c.object, dest, Some(stamp));
    match copy() {
        Ok(_) => Ok(true),
        Err(e) if crate::repair::repairable(&e) => {
            let outcome = repair.repair_blocking(&c.object);
            if outcome.usable() {
                copy().map_err(io_error)?;
                Ok(true)
            } else if let crate::repair::Outcome::Failed { error, .. } = outcome {
                Err(std::io::Error::other(error))
            } else {
                Ok(false)
            }
        }
        Err(e) => Err(io_error(e)),
    }
}

/// A store error as an I/O error, keeping the OS error's kind (a full disk
/// stays "storage full", so the hint fits).
fn io_error(e: nbbuild_cache::StoreError) -> std::io::Error {
    match e {
        nbbuild_cache::StoreError::Io { context, source } => {
            std::io::Error::new(source.kind(), format!("{context}: {source}"))
        }
        other => std::io::Error::other(other.to_string()),
    }
}

/// One row's candidate URLs (row None for nodes without dynamic rows).
type RowUrls = (Option<usize>, Vec<String>);

#[derive(Debug, Clone)]
pub struct Layout {
    pub out: PathBuf,
    pub wf: String,
    pub ver: String,
}

impl Layout {
    pub fn new(out: &Path, flow_name: &str) -> Layout {
        let (wf, ver) = workflow_parts(flow_name);
        Layout {
            // Absolute once, so file:// URLs need no lookup per asset.
            out: std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf()),
            wf,
            ver,
        }
    }
    pub fn asset(&self, kind: TaskKind, label: &str, slot: u32) -> PathBuf {
        let (folder, ext) = match kind {
            TaskKind::Image => ("generated-images", "png"),
            TaskKind::Video => ("generated-videos", "mp4"),
        };
        self.out
            .join("Assets")
            .join(&self.wf)
            .join(folder)
            .join(&self.ver)
            .join(format!("{}-c{}.{ext}", safe_component(label), slot + 1))
    }
    /// An earlier take (from the store's history), named by its content so
    /// no later re-roll ever rewrites it.
    pub fn earlier_take(&self, kind: TaskKind, label: &str, object: &str) -> PathBuf {
        let current = self.asset(kind, label, 0);
        let ext = current
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("png")
            .to_string();
        let hash12: String = object.chars().take(12).collect();
        current.with_file_name(format!("{}-earlier-{hash12}.{ext}", safe_component(label)))
    }
    pub fn qa_attempt(&self, label: &str, slot: u32, attempt: u32) -> PathBuf {
        self.out
            .join("Assets")
            .join(&self.wf)
            .join("qa_loop")
            .join(&self.ver)
            .join(format!(
                "{}-c{}-r{attempt}.png",
                safe_component(label),
                slot + 1
            ))
    }
    pub fn generations(&self) -> PathBuf {
        self.out.join("Generations")
    }
}

/// Public URLs of what the mirror published; anything missing is shown by
/// the `file://` URL of its local copy (which PatchWork cannot open).
#[derive(Debug, Default, Clone)]
pub struct Urls {
    /// Object hash -> URL.
    pub objects: BTreeMap<String, String>,
    /// A reference's `imageData` as written -> URL.
    pub refs: BTreeMap<String, String>,
    /// `--ref-image`, as given (the key of its URL in `refs`).
    pub ref_image: Option<String>,
}

impl Urls {
    fn candidate(&self, c: &Candidate, asset: &Path) -> String {
        self.objects
            .get(&c.object)
            .cloned()
            .unwrap_or_else(|| file_url(asset))
    }
}

pub fn file_url(p: &Path) -> String {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    format!("file://{}", abs.display())
}

/// Earlier takes listed after the current candidates of a task.
pub const EARLIER_TAKES: usize = 8;

pub struct Written {
    pub flow: Option<PathBuf>,
    pub errors: Option<PathBuf>,
    pub assets: usize,
    /// Flagged QA attempts placed under `qa_loop/`.
    pub qa_files: usize,
}

fn flagged(c: &Candidate) -> bool {
    c.qa.as_ref()
        .is_some_and(|v| v.verdict == nbbuild_cache::Outcome::Flagged)
}

/// Place assets, write the generated flow and errors.json.
#[allow(clippy::too_many_arguments)]
pub fn write(
    store: &Store,
    repair: &Repairer,
    flow: &Flow,
    compiled: &Compiled,
    report: &RunReport,
    layout: &Layout,
    urls: &Urls,
    now: chrono::DateTime<chrono::Local>,
) -> std::io::Result<Written> {
    // Candidate URLs per generation node, rows in order.
    let mut per_node: BTreeMap<(usize, i64), Vec<RowUrls>> = BTreeMap::new();
    let mut assets = 0;
    let mut qa_files = 0;
    for t in &compiled.tasks {
        let o = &report.outcomes[t.index];
        if o.candidates.is_empty() {
            continue;
        }
        let mut shown = Vec::new();
        // Candidates QA flagged stay in the gallery, after the clean ones, so
        // the selected index 0 is a usable one whenever there is one.
        let mut ordered: Vec<&Candidate> = o.candidates.iter().collect();
        ordered.sort_by_key(|c| flagged(c));
        for c in ordered {
            let dest = layout.asset(t.kind, &t.label(), c.slot);
            // A candidate lost to corruption is out of the gallery (reported).
            if place(store, repair, c, &dest)? {
                assets += 1;
                shown.push(urls.candidate(c, &dest));
            }
        }
        let rec = o.key.as_ref().and_then(|k| store.task(k).ok().flatten());
        // Earlier takes after the current ones, newest first, as PatchWork
        // lists them: a take liked before a re-roll can still be picked.
        // Index 0 (the auto-pick) stays the current first candidate.
        if let Some(rec) = &rec {
            let mut seen: std::collections::BTreeSet<&str> =
                o.candidates.iter().map(|c| c.object.as_str()).collect();
            let earlier = rec
                .history
                .iter()
                .rev()
                .flat_map(|h| h.candidates.iter())
                .filter(|c| !flagged(c))
                .filter(|c| seen.insert(c.object.as_str()))
                .take(EARLIER_TAKES);
            for c in earlier {
                let dest = layout.earlier_take(t.kind, &t.label(), &c.object);
                if place(store, repair, c, &dest)? {
                    assets += 1;
                    // Published when it was current: its public URL stays good.
                    shown.push(match (urls.objects.get(&c.object), &c.url) {
                        (Some(u), _) | (None, Some(u)) => u.clone(),
                        (None, None) => file_url(&dest),
                    });
                }
            }
        }
        // Every flagged attempt, current or replaced, under qa_loop/.
        let reviewed = o.candidates.iter().any(|c| c.qa.is_some());
        if let Some(rec) = rec.as_ref().filter(|_| reviewed) {
            let attempts = rec
                .candidates
                .iter()
                .chain(rec.history.iter().flat_map(|h| h.candidates.iter()));
            for c in attempts.filter(|c| flagged(c)) {
                if place(
                    store,
                    repair,
                    c,
                    &layout.qa_attempt(&t.label(), c.slot, c.qa_attempts + 1),
                )? {
                    qa_files += 1;
                }
            }
        }
        if shown.is_empty() {
            continue;
        }
        per_node
            .entry((t.tab, t.node_id))
            .or_default()
            .push((t.row, shown));
    }
    let mut raw = flow.raw.clone();
    for tab in &flow.tabs {
        for node in &tab.nodes {
            let key = (tab.index, node.id);
            if node.kind.is_generation() {
                if let Some(rows) = per_node.get(&key) {
                    let urls: Vec<String> =
                        rows.iter().flat_map(|(_, u)| u.iter().cloned()).collect();
                    if let Some(props) = props_mut(&mut raw, tab.index, node.index) {
                        fill_generation(props, node.kind, &urls);
                    }
                }
            } else if node.kind == Kind::Approve {
                let Some((up, _)) = tab.source(node, 0) else {
                    continue;
                };
                let Some(rows) = per_node.get(&(tab.index, up.id)) else {
                    continue;
                };
                if let Some(props) = props_mut(&mut raw, tab.index, node.index) {
                    fill_gate(props, up.kind, rows);
                }
            } else if node.kind == Kind::Reference {
                // A local image (or --ref-image for an empty node) the mirror published.
                let written = node
                    .prop_str("imageData")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .or(urls.ref_image.clone());
                if let Some(url) = written.and_then(|w| urls.refs.get(&w)) {
                    if let Some(props) = props_mut(&mut raw, tab.index, node.index) {
                        set(props, "imageData", json!(url));
                    }
                }
            }
        }
    }
    let gen_dir = layout.generations();
    let stem = safe_component(&flow.name);
    let stem = if stem.is_empty() {
        "flow".to_string()
    } else {
        stem
    };
    let mut text = serde_json::to_string_pretty(&raw).map_err(std::io::Error::other)?;
    text.push('\n');
    // A rebuild that changes nothing points at the newest generated flow
    // instead of adding an identical copy; anything else gets a new file
    // (never overwriting one).
    let path = match newest_generated(&gen_dir, &stem)
        .filter(|p| std::fs::read(p).is_ok_and(|b| b == text.as_bytes()))
    {
        Some(same) => same,
        None => {
            let base = format!("{stem}-generated-{}", now.format("%Y%m%d-%H%M%S"));
            let mut path = gen_dir.join(format!("{base}.nbflow"));
            let mut k = 2;
            while path.exists() {
                path = gen_dir.join(format!("{base}-{k}.nbflow"));
                k += 1;
            }
            write_atomic(&path, text.as_bytes())?;
            path
        }
    };

    let errors_path = gen_dir.join("errors.json");
    let entries = error_entries(compiled, report);
    let errors = if entries.is_empty() {
        let _ = std::fs::remove_file(&errors_path);
        None
    } else {
        let doc = crate::schema::ErrorsFile {
            schema: (),
            flow: &flow.name,
            generated: path.file_name().and_then(|n| n.to_str()),
            errors: entries,
        };
        write_atomic(
            &errors_path,
            (serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)? + "\n").as_bytes(),
        )?;
        Some(errors_path)
    };
    Ok(Written {
        qa_files,
        flow: Some(path),
        errors,
        assets,
    })
}

fn props_mut(raw: &mut Value, tab: usize, index: usize) -> Option<&mut Map<String, Value>> {
    let node = raw
        .get_mut("tabs")?
        .get_mut(tab)?
        .get_mut("graphData")?
        .get_mut("nodes")?
        .get_mut(index)?
        .as_object_mut()?;
    if !node.get("properties").is_some_and(Value::is_object) {
        node.insert("properties".into(), json!({}));
    }
    node.get_mut("properties")?.as_object_mut()
}

/// Replace a key's value in place (keeping its position) or append it.
fn set(props: &mut Map<String, Value>, key: &str, v: Value) {
    props.insert(key.to_string(), v);
}

fn fill_generation(props: &mut Map<String, Value>, kind: Kind, urls: &[String]) {
    if kind == Kind::Video {
        set(props, "_savedVideos", json!(urls));
        set(props, "_savedVideoUrl", json!(urls.first()));
        set(props, "_savedGalleryIndex", json!(0));
    } else {
        set(props, "_savedImages", json!(urls));
        set(props, "_savedPreviewIndex", json!(0));
    }
}

fn fill_gate(props: &mut Map<String, Value>, upstream: Kind, rows: &[RowUrls]) {
    let urls: Vec<String> = rows.iter().flat_map(|(_, u)| u.iter().cloned()).collect();
    let (saved, gallery, saved_gallery) = if upstream == Kind::Video {
        (
            "_savedApprovalVideos",
            "galleryVideos",
            "_savedGalleryVideos",
        )
    } else {
        (
            "_savedApprovalImages",
            "galleryImages",
            "_savedGalleryImages",
        )
    };
    set(props, saved, json!(urls));
    set(props, "lastData", json!(urls.first()));
    // 0.8.x gallery fields: filled where the gate has them.
    for k in [gallery, saved_gallery] {
        if props.contains_key(k) {
            set(props, k, json!(urls));
        }
    }
    for k in ["galleryIndex", "_savedGalleryIndex", "_pageIndex"] {
        if props.contains_key(k) {
            set(props, k, json!(0));
        }
    }
    if props.contains_key("_pages") {
        let pages: Vec<&Vec<String>> = rows.iter().map(|(_, u)| u).collect();
        set(props, "_pages", json!(pages));
    }
}

fn error_entries<'a>(
    compiled: &'a Compiled,
    report: &'a RunReport,
) -> Vec<crate::schema::ErrorEntry<'a>> {
    let mut out = Vec::new();
    for t in &compiled.tasks {
        let o = &report.outcomes[t.index];
        if !matches!(o.state, TaskState::Failed | TaskState::Skipped) && o.failures.is_empty() {
            continue;
        }
        let prompt: String = t.prompt.chars().take(200).collect();
        for f in &o.failures {
            out.push(crate::schema::ErrorEntry {
                tab: &t.tab_name,
                node_id: t.node_id,
                title: &t.title,
                name: t.label(),
                row: t.row.map(|r| r + 1),
                candidate: f.candidate.map(|c| c + 1),
                kind: f.kind,
                attempts: f.attempts,
                message: &f.message,
                prompt: prompt.clone(),
            });
        }
    }
    out
}

/// The newest `{stem}-generated-*.nbflow` in `dir` (names sort by time).
fn newest_generated(dir: &Path, stem: &str) -> Option<PathBuf> {
    let prefix = format!("{stem}-generated-");
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "nbflow")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    newest
}
