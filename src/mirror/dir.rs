//! `dir:PATH`: publish by copying into a folder; URLs are `file://`.

use super::{check_key, encode_path, BoxFuture, Mirror, MirrorError};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DirMirror {
    root: PathBuf,
}

impl DirMirror {
    /// A mirror into `root` (made absolute; created on first use).
    pub fn new(root: &Path) -> Result<DirMirror, MirrorError> {
        let root = std::path::absolute(root).map_err(|e| {
            MirrorError::new(format!("mirror folder {}: {e}", root.display()))
                .hint("give dir:PATH an existing or creatable folder")
        })?;
        Ok(DirMirror { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn url(&self, key: &str) -> String {
        let abs = self.root.join(key);
        format!("file://{}", encode_path(&abs.to_string_lossy()))
    }
}

fn io_error(what: String, e: std::io::Error) -> MirrorError {
    use std::io::ErrorKind as K;
    let hint = match e.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem => "check the folder's permissions",
        K::StorageFull => "free some disk space",
        K::NotFound => "check the path",
        _ => "check the mirror folder",
    };
    MirrorError::new(format!("{what}: {e}")).hint(hint)
}

/// Copy `src` to `dest` unless a file of the same size is there; via a
/// temporary file in the destination folder and a rename, so no reader ever
/// sees half a file. With `expect`, the copy's bytes are hashed and renamed
/// into place only when they hash to it.
fn copy_into(src: &Path, dest: &Path, expect: Option<&str>) -> Result<(), MirrorError> {
    let len = std::fs::metadata(src)
        .map_err(|e| io_error(format!("cannot read {}", src.display()), e))?
        .len();
    if let Ok(m) = std::fs::metadata(dest) {
        if m.is_file() && m.len() == len {
            return Ok(());
        }
    }
    let parent = dest.parent().unwrap_or(dest);
    std::fs::create_dir_all(parent)
        .map_err(|e| io_error(format!("cannot create {}", parent.display()), e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbbuild-")
        .suffix(".part")
        .tempfile_in(parent)
        .map_err(|e| io_error(format!("cannot write in {}", parent.display()), e))?;
    let mut input = std::fs::File::open(src)
        .map_err(|e| io_error(format!("cannot read {}", src.display()), e))?;
    std::io::copy(&mut input, tmp.as_file_mut())
        .map_err(|e| io_error(format!("cannot copy to {}", dest.display()), e))?;
    if let Some(expected) = expect {
        // The copy's bytes, read back from the page cache: what is checked
        // is what lands at dest (see Store::copy_object_to for why not in
        // the copy loop).
        use std::io::{Read, Seek, SeekFrom};
        let f = tmp.as_file_mut();
        let reading = |e| io_error(format!("cannot read back {}", dest.display()), e);
        f.seek(SeekFrom::Start(0)).map_err(reading)?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(reading(e)),
            }
        }
        let actual = hasher.finalize().to_hex().to_string();
        if actual != expected {
            // The temporary file is removed on drop: dest never sees it.
            return Err(MirrorError::mismatch(src, expected, &actual));
        }
    }
    tmp.persist(dest)
        .map_err(|e| io_error(format!("cannot write {}", dest.display()), e.error))?;
    Ok(())
}

impl Mirror for DirMirror {
    fn id(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    fn publish_checked<'a>(
        &'a self,
        path: &'a Path,
        key: &'a str,
        _mime: &'a str,
        blake3: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, MirrorError>> {
        Box::pin(async move {
            check_key(key)?;
            let src = path.to_path_buf();
            let dest = self.root.join(key);
            let expect = blake3.map(str::to_string);
            tokio::task::spawn_blocking(move || copy_into(&src, &dest, expect.as_deref()))
                .await
                .map_err(|e| MirrorError::new(format!("copy task failed: {e}")))??;
            Ok(self.url(key))
        })
    }

    fn check<'a>(&'a self) -> BoxFuture<'a, Result<(), MirrorError>> {
        Box::pin(async move {
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&root)
                    .map_err(|e| io_error(format!("cannot create {}", root.display()), e))?;
                tempfile::tempfile_in(&root)
                    .map_err(|e| io_error(format!("cannot write in {}", root.display()), e))?;
                Ok(())
            })
            .await
            .map_err(|e| MirrorError::new(format!("check task failed: {e}")))?
        })
    }
}
