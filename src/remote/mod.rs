//! The team cache: a bucket on R2 (any S3 API with conditional writes)
//! shared by every machine of a team. See docs/remote.md.
//!
//! ```text
//! config.rs   --remote s3://BUCKET[/PREFIX], mode, keys, lease: resolved once
//! layout.rs   where bytes, records and claims live in the bucket
//! sign.rs     Ed25519 keys per writer
//! record.rs   the signed record of a task, and what makes one believed
//! ```

pub mod config;
pub mod layout;
pub mod record;
pub mod sign;

pub use config::{Mode, RemoteConfig};
