//! `nbbuild review`: the review half of the loop, in the browser.
//!
//! A local HTTP server (axum) shows every generation task of the flow with
//! its candidates, and lets a person pick (written into the flow in
//! PatchWork's own fields), flag by hand, and re-roll at a cost the plan
//! quotes. One file per concept:
//!
//! - `access`: the store, opened only while a request reads or acts, so a
//!   build from another terminal is never blocked;
//! - `flow_read`: the flow as one request reads it, and the page's task ids;
//! - `snapshot`: flow + store + plan read into the page's view model;
//! - `flow_edit`: picks and prompt edits written atomically, with a backup,
//!   refused when the file changed on disk;
//! - `quote`: what a re-roll spends and what it invalidates, from the plan;
//! - `security`: token -> cookie, Host allowlist, CSRF, headers;
//! - `api/`: the JSON API (docs/review.md): the shared frame and the
//!   state (`mod.rs`), picks and flags (`pick`), quotes and re-rolls (`reroll`);
//! - `server`: routes, media by content hash, server-sent events;
//! - `export`: the page as static files.

pub mod access;
pub mod api;
mod assets;
pub mod export;
pub mod flow_edit;
pub mod flow_read;
pub mod quote;
pub mod security;
pub mod server;
pub mod snapshot;

/// blake3 of bytes, shortened: the page's handle on a version of the flow file.
pub fn rev_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..16].to_string()
}
