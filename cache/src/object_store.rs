//! The object-store trait: where object bytes live, named by their blake3.
//!
//! The store's records (sled) say which objects matter; an [`ObjectStore`]
//! only keeps bytes. [`crate::LocalObjects`] is the object directory of a
//! store (`objects/ab/cdef...`); a team cache on R2 is meant to implement the
//! same five methods.
//!
//! Keep it at five. sccache's storage trait grew to some fifteen methods and
//! every backend had to grow with it. Behaviour that is not "keep these
//! bytes" belongs in a wrapper type that holds other object stores and
//! implements this trait itself:
//!
//! - read-only: a wrapper whose `put` and `delete` refuse;
//! - layered (local in front of a team cache): `get` tries the local store
//!   and fills it from the remote one, `put` writes through, `has` asks both;
//! - accounting, logging, rate limits: a wrapper that counts and forwards.
//!
//! What every implementation guarantees:
//!
//! - `get` never hands on bytes that do not hash to the id asked for: it
//!   hashes while it streams and fails with [`StoreError::CorruptObject`] on
//!   a mismatch. What already reached `out` must then be thrown away (write
//!   to a temporary, rename only on `Ok`).
//! - `put` is durable when it returns, and storing bytes that are already
//!   there is cheap and harmless (objects are content-addressed).
//! - An object, once put, never changes: the same id always names the same
//!   bytes.
//!
//! Local-only operations (file paths, `fs::File` handles, quarantine) are
//! inherent methods of `LocalObjects`, not part of this trait: a remote
//! store has no paths.
//!
//! [`StoreError::CorruptObject`]: crate::StoreError::CorruptObject

use std::io::{Read, Write};

use crate::{ObjectId, Result};

/// Content-addressed object bytes; see the module documentation for the
/// guarantees and for where further behaviour goes (wrappers, not methods).
pub trait ObjectStore: Send + Sync {
    /// Stream object `id` into `out`, hashing it as it goes: `Ok(size)` only
    /// when the bytes hash to `id`. Otherwise [`StoreError::CorruptObject`],
    /// [`StoreError::MissingObject`] or [`StoreError::BadObjectId`], and
    /// whatever reached `out` must be thrown away.
    ///
    /// [`StoreError::CorruptObject`]: crate::StoreError::CorruptObject
    /// [`StoreError::MissingObject`]: crate::StoreError::MissingObject
    /// [`StoreError::BadObjectId`]: crate::StoreError::BadObjectId
    fn get(&self, id: &str, out: &mut dyn Write) -> Result<u64>;

    /// Store everything `src` yields up to its end, hashing as it streams
    /// (constant memory): (id, size). Durable when this returns.
    fn put(&self, src: &mut dyn Read) -> Result<(ObjectId, u64)>;

    /// Is object `id` there? Presence only: `get` is what checks the bytes.
    /// `false` for a malformed id.
    fn has(&self, id: &str) -> bool;

    /// Every object held, sorted by id.
    fn list(&self) -> Result<Vec<ObjectId>>;

    /// Remove object `id`. Removing an object that is not there is not an
    /// error (another process or an earlier attempt may have removed it).
    fn delete(&self, id: &str) -> Result<()>;
}
