//! `nbbuild review --export DIR`: the page as static files, with the media
//! it shows, to share (read-only; opens from disk without a server).

use super::access::StoreAccess;
use super::flow_read::load;
use super::snapshot::{read_live, Extra};
use crate::cli::BuildArgs;
use crate::error::{Error, Result};
use crate::output::write_atomic;
use std::path::Path;

pub fn run(build: &BuildArgs, dir: &Path) -> Result<i32> {
    let l = load(build)?;
    let access = StoreAccess::new(&l.s.cache_dir);
    let extra = Extra {
        read_only: true,
        media_base: "media/".into(),
        media_ext: true,
        ..Extra::default()
    };
    let snap = read_live(&access, &l, &extra).map_err(|u| {
        Error::env(format!(
            "cannot read the store in {}",
            l.s.cache_dir.display()
        ))
        .cause(u.describe())
        .hint("export again when the build is done")
    })?;
    let io =
        |what: &Path, e: std::io::Error| Error::io(format!("cannot write {}", what.display()), &e);
    let w = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        write_atomic(&p, bytes).map_err(|e| io(&p, e))
    };
    let mut state = snap.state;
    state["read_only"] = serde_json::json!(true);
    state["exported"] = serde_json::json!(chrono::Local::now().to_rfc3339());
    let json = serde_json::to_string(&state).map_err(|e| Error::internal(e.to_string()))?;
    // A script, not a JSON file: pages opened from disk cannot fetch.
    w(
        "state.js",
        format!("window.NBBUILD_STATE = {};\n", json.replace("</", "<\\/")).as_bytes(),
    )?;
    w("index.html", super::assets::page("", true).as_bytes())?;
    w("app.js", super::assets::APP_JS.as_bytes())?;
    w("app.css", super::assets::APP_CSS.as_bytes())?;
    w("favicon.svg", super::assets::FAVICON.as_bytes())?;
    let mut copied = 0;
    for (hash, m) in &snap.media {
        let ext = match m.mime {
            "video/mp4" => "mp4",
            "image/jpeg" => "jpg",
            "image/webp" => "webp",
            _ => "png",
        };
        let dest = dir.join("media").join(format!("{hash}.{ext}"));
        let src_len = std::fs::metadata(&m.path).map(|x| x.len()).ok();
        if src_len.is_some() && std::fs::metadata(&dest).map(|x| x.len()).ok() == src_len {
            continue;
        }
        copy_atomic(&m.path, &dest).map_err(|e| io(&dest, e))?;
        copied += 1;
    }
    let tasks = state["tasks"].as_array().map_or(0, |t| t.len());
    eprintln!(
        "exported {tasks} task(s) and {} media file(s) ({copied} copied now) to {}; open {}",
        snap.media.len(),
        dir.display(),
        dir.join("index.html").display()
    );
    Ok(0)
}

/// Copy by a temporary file beside `dest` and a rename (a clip is streamed,
/// never read whole).
fn copy_atomic(src: &Path, dest: &Path) -> std::io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbbuild-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let mut f = std::fs::File::open(src)?;
    std::io::copy(&mut f, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}
