//! The up-to-date stamp (issue 11.7): a build with nothing to do, told
//! without compiling or planning, as make and ninja tell it from stamps.
//!
//! A build that had nothing to do (every task fresh or skipped, QA settled,
//! the outputs as the last build left them, nothing failed, exit 0) keeps a
//! stamp in the store as a *memo*: a value the store forgets on its next
//! write of any kind (`nbbuild_cache::Store::put_memo`). The stamp holds a
//! digest of every input the build read, the local reference files as the
//! plan saw them (size and mtime), and what the build printed. The next
//! build with the same digest, the same reference files and the output
//! folders unchanged (`output::fingerprint::as_left`) prints the same
//! (the flow's warnings included) and exits 0 without validating,
//! compiling, planning, starting a runtime, fingerprinting or writing an
//! output: the flow's bytes are in the digest, so validation would find
//! what it found then. Anything else runs the whole build, which decides as always: the
//! stamp can skip work only when nothing that decides could have changed.
//!
//! What the digest covers: this binary (path, size, mtime), the working
//! folder, the command line (less `--json`, `-q` and `--no-progress`, which
//! only choose how the result is shown, and less the API key), nbbuild.toml's
//! text, the environment variables nbbuild and its mirror read (NBBUILD_*,
//! GLABS_*, GEMINI_*, R2_*, AWS_*, less any key, secret, token or password:
//! hashed, never stored; and less NBBUILD_TIMINGS), the flow file's path and the hash of the bytes
//! parsed, and the resolved output and cache folders. The store's state is
//! the memo's own condition. A build with a team cache (`--remote`), a
//! mirror or `--only` never uses the stamp (see [`applies`]).

use crate::cli::BuildArgs;
use crate::compile::{Compiled, InputSource};
use crate::output::fingerprint::stamp as file_stamp;
use crate::settings::Settings;
use nbbuild_cache::Store;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const MEMO: &str = "uptodate";

/// What a build with nothing to do leaves for the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    /// The digest of the build's inputs ([`inputs`]).
    pub inputs: String,
    /// Each local reference file the plan read: path, size, mtime (ns).
    pub files: Vec<(PathBuf, u64, i128)>,
    /// The flow's findings (warnings) as validation printed them.
    pub findings: String,
    /// What the build printed on stderr after the settings (the plan line
    /// and the summary), shown again unless `-q`.
    pub printed: String,
    /// The `--json` summary; its `duration_ms` is this run's.
    pub summary: serde_json::Value,
}

/// The digest of everything a build reads but the store and the reference
/// files (see the module doc).
pub fn inputs(args: &BuildArgs, s: &Settings) -> String {
    let mut h = blake3::Hasher::new();
    let mut field = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field("nbbuild uptodate v1");
    field(env!("CARGO_PKG_VERSION"));
    let exe = std::env::current_exe().ok();
    field(&format!(
        "{exe:?} {:?}",
        exe.as_deref().and_then(file_stamp)
    ));
    field(&format!("{:?}", std::env::current_dir().ok()));
    let mut shown = args.clone();
    shown.json = false;
    shown.quiet = false;
    shown.no_progress = false;
    shown.api_key = None;
    field(&format!("{shown:?}"));
    field(&std::fs::read_to_string(s.project.dir.join("nbbuild.toml")).unwrap_or_default());
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .filter(|(k, _)| {
            ["NBBUILD_", "GLABS_", "GEMINI_", "R2_", "AWS_"]
                .iter()
                .any(|p| k.starts_with(p))
                && !["KEY", "SECRET", "TOKEN", "PASSWORD"]
                    .iter()
                    .any(|w| k.contains(w))
                // Only shows how long the phases took.
                && k != "NBBUILD_TIMINGS"
        })
        .collect();
    env.sort();
    field(&format!("{env:?}"));
    field(&s.project.flow_path.display().to_string());
    field(&s.project.source_hash);
    field(&s.out.display().to_string());
    field(&s.cache_dir.display().to_string());
    h.finalize().to_hex().to_string()
}

/// The local reference files `compiled` reads, as they are now.
pub fn files(s: &Settings, compiled: &Compiled) -> Vec<(PathBuf, u64, i128)> {
    let mut paths: Vec<PathBuf> = compiled
        .tasks
        .iter()
        .flat_map(|t| &t.inputs)
        .filter_map(|i| match &i.source {
            InputSource::File(p) => Some(p.as_str()),
            InputSource::Url(u) if u.to_ascii_lowercase().starts_with("file://") => {
                Some(u.as_str())
            }
            _ => None,
        })
        .map(|p| crate::exec::inputs::resolve(&s.project.dir, p))
        .collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|p| {
            // A missing file blocks its tasks: no stamp is left then.
            let (size, mtime) = file_stamp(&p).unwrap_or((u64::MAX, -1));
            (p, size, mtime)
        })
        .collect()
}

/// Whether this build may use (and leave) a stamp at all: not with a team
/// cache (another machine's records can land at any time), nor with a
/// mirror (every build checks that the mirror still answers), nor for a
/// part of the flow (`--only` says what its selectors matched).
pub fn applies(s: &Settings) -> bool {
    matches!(s.remote, Ok(None))
        && s.mirror == crate::mirror::MirrorSpec::None
        && s.only_selectors.is_empty()
}

/// The stamp the last build left, when it still holds: nothing written to
/// the store since, the same inputs, its reference files as they were, and
/// the output folders as it left them.
pub fn check(store: &Store, inputs: &str, layout: &crate::output::Layout) -> Option<Stamp> {
    let bytes = store.memo(MEMO).ok()??;
    let stamp: Stamp = serde_json::from_slice(&bytes).ok()?;
    (stamp.inputs == inputs
        && stamp
            .files
            .iter()
            .all(|(p, size, mtime)| file_stamp(p) == Some((*size, *mtime)))
        && crate::output::fingerprint::as_left(store, layout))
    .then_some(stamp)
}

/// Leave `stamp` for the next build (best effort: without it the next build
/// just plans).
pub fn remember(store: &Store, stamp: &Stamp) {
    if let Ok(bytes) = serde_json::to_vec(stamp) {
        let _ = store.put_memo(MEMO, &bytes);
    }
}
