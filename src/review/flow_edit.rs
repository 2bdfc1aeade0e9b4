//! Edits the review page makes to the flow file: a pick on an approve gate
//! (PatchWork's own fields) and a prompt's text.
//!
//! Every edit is made on the exact bytes the page read (`rev`): when the
//! file changed on disk since, nothing is written and the page reloads.
//! The previous version is kept under `<store>/backups/`, the new one is
//! written to a temporary file beside the flow and renamed over it, and
//! every field the edit does not own keeps its value and its key order.

use crate::compile::{Task, TaskKind};
use crate::error::{Error, Result};
use crate::output::Layout;
use crate::settings::Settings;
use nbbuild_cache::{Candidate, Store};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an edit was not written.
#[derive(Debug)]
pub enum EditError {
    /// The file is not the version the page read.
    Changed,
    Failed(Error),
}

impl From<Error> for EditError {
    fn from(e: Error) -> Self {
        EditError::Failed(e)
    }
}

/// Apply `edit` to the flow at `path` if its bytes are still version `rev`;
/// returns the new version's rev.
pub fn write_flow(
    path: &Path,
    backups: &Path,
    rev: &str,
    edit: impl FnOnce(&mut Value) -> Result<()>,
) -> std::result::Result<String, EditError> {
    let bytes = read(path)?;
    if super::rev_of(&bytes) != rev {
        return Err(EditError::Changed);
    }
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Error::invalid(format!("{} is not UTF-8 text", path.display())))?;
    let mut raw: Value = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!("cannot read {} as JSON", path.display())).cause(e.to_string())
    })?;
    edit(&mut raw)?;
    let mut out = serde_json::to_string_pretty(&raw).map_err(|e| Error::internal(e.to_string()))?;
    if text.ends_with('\n') {
        out.push('\n');
    }
    // Never write a flow nbbuild itself could not read back.
    crate::flow::Flow::parse(&out)
        .map_err(|e| Error::internal(format!("the edited flow does not parse: {}", e.message)))?;
    backup(path, backups, &bytes)?;
    // Last look before the rename: a write that landed meanwhile wins.
    if super::rev_of(&read(path)?) != rev {
        return Err(EditError::Changed);
    }
    replace(path, out.as_bytes())?;
    Ok(super::rev_of(out.as_bytes()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))
}

/// `backups/<stem>-<YYYYMMDD-HHMMSS-mmm>.nbflow`, never overwriting one.
fn backup(path: &Path, backups: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .map(crate::names::safe_component)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "flow".into());
    let now = chrono::Local::now();
    let base = format!("{stem}-{}", now.format("%Y%m%d-%H%M%S-%3f"));
    let mut dest = backups.join(format!("{base}.nbflow"));
    let mut k = 2;
    while dest.exists() {
        dest = backups.join(format!("{base}-{k}.nbflow"));
        k += 1;
    }
    crate::output::write_atomic(&dest, bytes).map_err(|e| {
        Error::io(format!("cannot keep a backup in {}", backups.display()), &e)
            .cause("the flow was not changed")
    })?;
    Ok(dest)
}

/// Write `bytes` over `path` by a temporary file beside it and a rename,
/// keeping the file's permissions.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::io(format!("cannot write {}", path.display()), &e);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let perms = std::fs::metadata(path).map_err(io)?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbbuild-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().set_permissions(perms).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

fn props_mut(raw: &mut Value, tab: usize, index: usize) -> Result<&mut Map<String, Value>> {
    let node = raw
        .get_mut("tabs")
        .and_then(|t| t.get_mut(tab))
        .and_then(|t| t.get_mut("graphData"))
        .and_then(|g| g.get_mut("nodes"))
        .and_then(|n| n.get_mut(index))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::internal(format!("node {index} of tab {tab} is gone")))?;
    if !node.get("properties").is_some_and(Value::is_object) {
        node.insert("properties".into(), json!({}));
    }
    node.get_mut("properties")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::internal("properties is not an object"))
}

/// A pick as PatchWork records it on an approve gate: the approved take in
/// `_lastApprovedData`, `lastData` and `_savedApprovalImages`/`Videos`; the
/// gallery fields (where the gate has them) list the current takes with the
/// pick selected.
pub fn set_pick(
    raw: &mut Value,
    tab: usize,
    gate_index: usize,
    kind: TaskKind,
    value: &str,
    gallery: &[String],
) -> Result<()> {
    let props = props_mut(raw, tab, gate_index)?;
    let (saved, gal, saved_gal, media) = match kind {
        TaskKind::Image => (
            "_savedApprovalImages",
            "galleryImages",
            "_savedGalleryImages",
            "image",
        ),
        TaskKind::Video => (
            "_savedApprovalVideos",
            "galleryVideos",
            "_savedGalleryVideos",
            "video",
        ),
    };
    let index = gallery.iter().position(|g| g == value).unwrap_or(0);
    props.insert("_lastApprovedData".into(), json!(value));
    props.insert("lastData".into(), json!(value));
    props.insert(saved.into(), json!([value]));
    for k in [gal, saved_gal] {
        if props.contains_key(k) {
            props.insert(k.into(), json!(gallery));
        }
    }
    for k in ["galleryIndex", "_savedGalleryIndex"] {
        if props.contains_key(k) {
            props.insert(k.into(), json!(index));
        }
    }
    if props.contains_key("_savedApprovalIndex") {
        props.insert("_savedApprovalIndex".into(), json!(0));
    }
    if props.contains_key("_savedCurrentMediaType") {
        props.insert("_savedCurrentMediaType".into(), json!(media));
    }
    Ok(())
}

/// A plain prompt's new text.
pub fn set_prompt(raw: &mut Value, tab: usize, node_index: usize, text: &str) -> Result<()> {
    props_mut(raw, tab, node_index)?.insert("text".into(), json!(text));
    Ok(())
}

/// The value a pick of candidate `c` is written as: its mirrored URL, or
/// without a mirror a path to a copy of its bytes under
/// `Assets/{WF}/picks/{VER}/`, named by content so that a later re-roll
/// (which rewrites the `-cN` assets) never changes a pick. Either way the
/// build reads it back by content: the same bytes, the same key.
pub fn pick_value(s: &Settings, t: &Task, c: &Candidate, store: &Store) -> Result<String> {
    if let Some(url) = c.url.as_ref().filter(|u| !u.is_empty()) {
        return Ok(url.clone());
    }
    let layout = Layout::new(&s.out, &s.project.flow.name);
    let ext = match t.kind {
        TaskKind::Image => "png",
        TaskKind::Video => "mp4",
    };
    let name = format!(
        "{}-c{}-{}.{ext}",
        crate::names::safe_component(&t.label()),
        c.slot + 1,
        &c.object[..12.min(c.object.len())]
    );
    let dest = layout
        .out
        .join("Assets")
        .join(&layout.wf)
        .join("picks")
        .join(&layout.ver)
        .join(name);
    let same = std::fs::metadata(&dest).is_ok_and(|m| m.len() == c.size && c.size > 0)
        && nbbuild_cache::hash_file(&dest).is_ok_and(|(h, _)| h == c.object);
    if !same {
        let bytes = store.read_object(&c.object, true).map_err(|e| {
            Error::env(format!(
                "candidate {} cannot be read from the store",
                c.slot + 1
            ))
            .cause(e.to_string())
            .hint("`nbbuild cache verify` checks the store")
        })?;
        crate::output::write_atomic(&dest, &bytes)
            .map_err(|e| Error::io(format!("cannot write {}", dest.display()), &e))?;
    }
    let dir = std::path::absolute(&s.project.dir).unwrap_or_else(|_| s.project.dir.clone());
    Ok(match dest.strip_prefix(&dir) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => dest.to_string_lossy().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pick_fills_patchworks_fields_and_keeps_the_rest() {
        let mut raw = json!({"tabs": [{"graphData": {"nodes": [{"id": 4, "properties": {
            "mode": "approve", "_lastApprovedData": null, "lastData": null,
            "_savedApprovalImages": [], "galleryImages": [], "galleryIndex": 0, "zzz": 1}}]}}]});
        let g = vec!["a.png".to_string(), "b.png".to_string()];
        set_pick(&mut raw, 0, 0, TaskKind::Image, "b.png", &g).unwrap();
        let p = &raw["tabs"][0]["graphData"]["nodes"][0]["properties"];
        assert_eq!(p["_lastApprovedData"], "b.png");
        assert_eq!(p["lastData"], "b.png");
        assert_eq!(p["_savedApprovalImages"], json!(["b.png"]));
        assert_eq!(p["galleryImages"], json!(["a.png", "b.png"]));
        assert_eq!(p["galleryIndex"], 1);
        assert!(
            p.get("_savedGalleryImages").is_none(),
            "absent fields stay absent"
        );
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(keys.first().map(|s| s.as_str()), Some("mode"));
        assert_eq!(keys.last().map(|s| s.as_str()), Some("zzz"));
    }

    #[test]
    fn a_changed_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.nbflow");
        std::fs::write(&p, "{\"format\": \"ducted-project\", \"tabs\": []}\n").unwrap();
        let r = write_flow(&p, &dir.path().join("b"), "0000", |_| Ok(()));
        assert!(matches!(r, Err(EditError::Changed)));
        assert!(
            !dir.path().join("b").exists(),
            "no backup for an edit not made"
        );
    }
}
