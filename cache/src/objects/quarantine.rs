//! Quarantine: rotten object files are never deleted outright but set aside
//! under `quarantine/<id>.corrupt-<unix secs>` (gc removes them later), either
//! as a copy kept while good bytes are installed over the file, or by moving
//! the file out of `objects/` when there is no good copy to put back.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::store::{fsync_dir, now_secs};
use crate::{LocalObjects, Result, StoreError};

impl LocalObjects {
    /// Keep the current file of `id` under `quarantine/` (a hard link, or a
    /// copy where links are not possible) so it can be replaced in place.
    pub(crate) fn quarantine_copy(&self, id: &str) -> Result<Option<PathBuf>> {
        let path = self.path(id);
        if !path.is_file() {
            return Ok(None);
        }
        let to = self.quarantine_path(id)?;
        if fs::hard_link(&path, &to).is_err() {
            fs::copy(&path, &to).map_err(|e| {
                StoreError::io(format!("copying {} to {}", path.display(), to.display()), e)
            })?;
        }
        if let Some(d) = to.parent() {
            fsync_dir(d)?;
        }
        Ok(Some(to))
    }

    /// Move the file of well-formed object `id` into `quarantine/` and
    /// forget its size (not flushed). `None` when there was no file.
    pub(crate) fn quarantine(&self, id: &str) -> Result<Option<PathBuf>> {
        let path = self.path(id);
        if !path.is_file() {
            return Ok(None);
        }
        let to = self.quarantine_path(id)?;
        match fs::rename(&path, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::io(
                    format!("moving {} to {}", path.display(), to.display()),
                    e,
                ))
            }
        }
        if let Some(d) = path.parent() {
            fsync_dir(d)?;
        }
        if let Some(d) = to.parent() {
            fsync_dir(d)?;
        }
        self.sizes.remove(id.as_bytes())?;
        Ok(Some(to))
    }

    /// A fresh path under `quarantine/` for object `id`.
    fn quarantine_path(&self, id: &str) -> Result<PathBuf> {
        let qdir = &self.quarantine;
        fs::create_dir_all(qdir)
            .map_err(|e| StoreError::io(format!("creating {}", qdir.display()), e))?;
        let base = format!("{id}.corrupt-{}", now_secs());
        let mut p = qdir.join(&base);
        let mut k = 2;
        while p.exists() {
            p = qdir.join(format!("{base}-{k}"));
            k += 1;
        }
        Ok(p)
    }
}
