//! Repair before paying. When a verified read finds a stored object rotten
//! (or gone), look for an identical copy nbbuild knows, check it by hash,
//! and put it back; only when there is none are the candidates holding it
//! taken out of their slots, so the plan shows their tasks stale ("candidate
//! corrupted in the store") and the next build regenerates them.
//!
//! The copies, in the order tried: the candidate's asset under `Assets/`
//! (and its `qa_loop/` file when QA flagged it), every mirror the store
//! records an upload to (`dir:` by its path, `r2` by its public URL), and
//! every http(s) URL the object was downloaded from. Each is hashed as it is
//! copied into the store (`Store::restore_object`); a copy that does not
//! hash to the object's id is never used. The rotten file is kept under
//! `.nbbuild/quarantine/`.
//!
//! One repair per object per run, however many hand-ons hit it at once; the
//! outcomes are reported at the end (`Repairer::outcomes`).

use crate::compile::TaskKind;
use crate::output::Layout;
use nbbuild_cache::{Holder, Restore, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest copy fetched over HTTP for a repair.
const MAX_FETCH: u64 = 4 << 30;

/// What became of one rotten or missing object.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Outcome {
    /// It hashed right when looked at again (repaired meanwhile).
    Intact { object: String },
    /// A good copy was put back.
    Repaired {
        object: String,
        /// What the verified read found.
        detail: String,
        /// Where the good copy came from (a path or URL).
        from: String,
        /// Where the rotten file was kept.
        quarantined: Option<String>,
        candidates: Vec<Holder>,
    },
    /// No good copy: the rotten file is quarantined and the candidates that
    /// held it are out of their slots.
    Lost {
        object: String,
        detail: String,
        quarantined: Option<String>,
        /// Each copy looked at, and why it could not be used.
        tried: Vec<String>,
        /// The current candidates taken out of their slots.
        candidates: Vec<Holder>,
    },
    /// The repair itself failed (an I/O error of the store).
    Failed { object: String, error: String },
}

impl Outcome {
    pub fn object(&self) -> &str {
        match self {
            Outcome::Intact { object }
            | Outcome::Repaired { object, .. }
            | Outcome::Lost { object, .. }
            | Outcome::Failed { object, .. } => object,
        }
    }
    /// The object is good again (intact or repaired).
    pub fn usable(&self) -> bool {
        matches!(self, Outcome::Intact { .. } | Outcome::Repaired { .. })
    }
    /// One line for people, naming the candidates and tasks.
    pub fn describe(&self) -> String {
        let short = |o: &str| o.chars().take(12).collect::<String>();
        match self {
            Outcome::Intact { object } => format!("object {} is intact", short(object)),
            Outcome::Repaired {
                object,
                detail,
                from,
                quarantined,
                candidates,
            } => format!(
                "object {} ({}) was corrupt in the store ({detail}); put back from {from}{}",
                short(object),
                names(candidates),
                kept(quarantined)
            ),
            Outcome::Lost {
                object,
                detail,
                quarantined,
                tried,
                candidates,
            } => format!(
                "{} corrupted in the store (object {}: {detail}), and no good copy was found ({}){}",
                if candidates.is_empty() {
                    "an object no current candidate holds is".to_string()
                } else {
                    format!("candidate {} is", names(candidates))
                },
                short(object),
                if tried.is_empty() {
                    "nbbuild knows no other copy".to_string()
                } else {
                    format!("tried {}", tried.join("; "))
                },
                kept(quarantined)
            ),
            Outcome::Failed { object, error } => {
                format!("cannot repair object {}: {error}", short(object))
            }
        }
    }
}

fn kept(q: &Option<String>) -> String {
    q.as_deref()
        .map(|q| format!("; the rotten file is kept at {q}"))
        .unwrap_or_default()
}

/// `scene01 c1 (task 3f2a9c0d1b2e)`, several joined by commas.
pub fn names(h: &[Holder]) -> String {
    if h.is_empty() {
        return "no current candidate".to_string();
    }
    h.iter()
        .map(|h| {
            format!(
                "{} c{} (task {})",
                h.name,
                h.slot + 1,
                h.key.chars().take(12).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The detail of a verified read's failure, for the report.
pub fn detail_of(e: &StoreError) -> String {
    match e {
        StoreError::CorruptObject { detail, .. } => detail.clone(),
        StoreError::MissingObject(_) => "has no file".to_string(),
        other => other.to_string(),
    }
}

/// Whether a verified read's failure is one a repair can fix.
pub fn repairable(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::CorruptObject { .. } | StoreError::MissingObject(_)
    )
}

enum Source {
    Local(PathBuf),
    Http(String),
}

impl Source {
    fn shown(&self) -> String {
        match self {
            Source::Local(p) => p.display().to_string(),
            Source::Http(u) => u.clone(),
        }
    }
}

/// A `file://` URL as a path (percent-decoded), if it is one.
fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let b = rest.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
    }
    #[cfg(not(unix))]
    {
        Some(PathBuf::from(String::from_utf8_lossy(&out).into_owned()))
    }
}

type Slot = Arc<tokio::sync::OnceCell<Outcome>>;

pub struct Repairer {
    store: Arc<Store>,
    /// Where the build's assets are (None: no flow known, e.g. `cache verify`
    /// on a bare store).
    layout: Option<Layout>,
    http: reqwest::Client,
    done: Mutex<BTreeMap<String, Slot>>,
}

impl Repairer {
    pub fn new(store: Arc<Store>, layout: Option<Layout>) -> Repairer {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap_or_default();
        Repairer {
            store,
            layout,
            http,
            done: Mutex::new(BTreeMap::new()),
        }
    }

    /// Repair `object`, which a verified read refused: it is checked again
    /// (that check's finding is what is reported), then put back from a good
    /// copy or given up. Once per object per run: later calls get the first
    /// one's outcome.
    pub async fn repair(&self, object: &str) -> Outcome {
        let cell = self
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(object.to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| self.run(object)).await.clone()
    }

    /// [`Repairer::repair`] from blocking code (the output step, `cache
    /// verify`): on the current multi-thread runtime if there is one, else
    /// on a small one of its own.
    pub fn repair_blocking(&self, object: &str) -> Outcome {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => tokio::task::block_in_place(|| h.block_on(self.repair(object))),
            Err(_) => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(self.repair(object)),
                Err(err) => Outcome::Failed {
                    object: object.to_string(),
                    error: format!("cannot start a runtime: {err}"),
                },
            },
        }
    }

    /// Every repair made, by object (intact ones left out).
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|c| c.get().cloned())
            .filter(|o| !matches!(o, Outcome::Intact { .. }))
            .collect()
    }

    /// Candidates lost this run (no good copy).
    pub fn lost(&self) -> usize {
        self.outcomes()
            .iter()
            .filter(|o| matches!(o, Outcome::Lost { .. } | Outcome::Failed { .. }))
            .count()
    }

    fn sources(&self, object: &str, holders: &[Holder]) -> Result<Vec<Source>, StoreError> {
        let mut out: Vec<Source> = Vec::new();
        if let Some(layout) = &self.layout {
            for h in holders {
                let kind = match h.kind.as_str() {
                    "image" => TaskKind::Image,
                    "video" => TaskKind::Video,
                    _ => continue,
                };
                if h.current {
                    out.push(Source::Local(layout.asset(kind, &h.name, h.slot)));
                }
                if h.flagged && kind == TaskKind::Image {
                    out.push(Source::Local(layout.qa_attempt(
                        &h.name,
                        h.slot,
                        h.qa_attempts + 1,
                    )));
                }
            }
        }
        for (_, url) in self.store.uploads_of(object)? {
            match file_url_path(&url) {
                Some(p) => out.push(Source::Local(p)),
                None if url.starts_with("http://") || url.starts_with("https://") => {
                    out.push(Source::Http(url))
                }
                None => {}
            }
        }
        for url in self.store.urls_of(object)? {
            out.push(Source::Http(url));
        }
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|s| seen.insert(s.shown()));
        Ok(out)
    }

    async fn run(&self, object: &str) -> Outcome {
        let failed = |e: StoreError| Outcome::Failed {
            object: object.to_string(),
            error: e.to_string(),
        };
        let detail = match self.store.check_object(object) {
            Ok(_) => {
                return Outcome::Intact {
                    object: object.to_string(),
                }
            }
            Err(e) if repairable(&e) => detail_of(&e),
            Err(e) => return failed(e),
        };
        let holders = match self.store.holders(object) {
            Ok(h) => h,
            Err(e) => return failed(e),
        };
        let sources = match self.sources(object, &holders) {
            Ok(s) => s,
            Err(e) => return failed(e),
        };
        let current: Vec<Holder> = holders.into_iter().filter(|h| h.current).collect();
        let mut tried = Vec::new();
        for src in sources {
            let shown = src.shown();
            let restored = match &src {
                Source::Local(p) if !p.is_file() => {
                    tried.push(format!("{shown}: not there"));
                    continue;
                }
                Source::Local(p) => self.store.restore_object(object, p),
                Source::Http(url) => match self.fetch(url).await {
                    Ok(tmp) => self.store.restore_object(object, tmp.path()),
                    Err(why) => {
                        tried.push(format!("{shown}: {why}"));
                        continue;
                    }
                },
            };
            match restored {
                Ok(Restore::Restored { quarantined }) => {
                    return Outcome::Repaired {
                        object: object.to_string(),
                        detail,
                        from: shown,
                        quarantined: quarantined.map(|q| q.display().to_string()),
                        candidates: current,
                    }
                }
                Ok(Restore::Mismatch { .. }) => {
                    tried.push(format!("{shown}: holds other bytes"));
                }
                // The copy cannot be read (not the store failing).
                Err(StoreError::Io { context, source }) if matches!(&src, Source::Local(p) if context.ends_with(&p.display().to_string())) =>
                {
                    tried.push(format!("{shown}: {source}"));
                }
                Err(e) => return failed(e),
            }
        }
        let quarantined = match self.store.quarantine_object(object) {
            Ok(q) => q,
            Err(e) => return failed(e),
        };
        let taken = match self
            .store
            .forget_corrupt(object, &detail, quarantined.as_deref())
        {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        Outcome::Lost {
            object: object.to_string(),
            detail,
            quarantined: quarantined.map(|q| q.display().to_string()),
            tried,
            candidates: if taken.is_empty() { current } else { taken },
        }
    }

    /// Download `url` into a temporary file in the store's `tmp/`.
    async fn fetch(&self, url: &str) -> Result<tempfile::NamedTempFile, String> {
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| crate::http::describe(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("repair-")
            .tempfile_in(self.store.root().join("tmp"))
            .map_err(|e| format!("cannot create a temporary file: {e}"))?;
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            n += chunk.len() as u64;
            if n > MAX_FETCH {
                return Err(format!("larger than {} GiB", MAX_FETCH >> 30));
            }
            tmp.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        Ok(tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_decode() {
        assert_eq!(
            file_url_path("file:///m/a%20b/c%25d.png"),
            Some(PathBuf::from("/m/a b/c%d.png"))
        );
        assert_eq!(file_url_path("file:///x%2"), Some(PathBuf::from("/x%2")));
        assert_eq!(file_url_path("https://x/y"), None);
    }
}
