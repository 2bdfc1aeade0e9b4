//! nbbuild's store: sled records plus a content-addressed object directory.
//!
//! The crate knows nothing about `.nbflow` files; it stores bytes (named by
//! their blake3) and records about task keys. See `docs/store.md` for the
//! on-disk layout and the guarantees.
//!
//! All methods are blocking (they fsync); call them from `spawn_blocking`
//! in async code. [`Store`] is `Send + Sync`: share one handle through an
//! `Arc`; a second `Store::open` of the same directory fails with
//! [`StoreError::Locked`], even in the same process.
//!
//! # The rooms
//!
//! One concept per file; each `impl Store` block lives with its concept.
//!
//! ```text
//! store.rs         the Store handle, its sled trees, flush/close/drop, plumbing
//! open.rs          open: the lock, sled corruption recovery, the schema check
//! generation.rs    the tables whose writes move the store's generation, and
//!                  memos that hold until the store next changes
//! hash.rs          object ids and blake3 hashing
//! object_store.rs  the ObjectStore trait: get, put, has, list, delete
//! objects/         LocalObjects, the object directory behind that trait:
//!   mod.rs         the type and the trait impl, paths, listing, removing,
//!                  and the Store's object methods (put, open, read, paths)
//!   write.rs       writing through tmp/: fsync, rename, directory fsync
//!   read.rs        opening and reading, after the size check
//!   quarantine.rs  setting rotten files aside under quarantine/
//!   tests.rs       the unit tests
//! tasks.rs         task records: ensure, in-flight and submitting marks,
//!                  commits, re-rolls, re-keying, finders
//! tables.rs        side tables: verdicts, uploads, published URLs, URL
//!                  objects, file hashes, pins, the run log, meta
//! verify.rs        looking without touching: stats, verify, leftovers
//! gc.rs            garbage collection
//! repair.rs        verified hand-on, restore and quarantine of objects
//! records.rs       the record types kept in the trees (JSON)
//! lock.rs          the LOCK file naming the holder
//! error.rs         StoreError
//! ```

mod error;
mod gc;
mod generation;
mod hash;
mod lock;
pub mod media;
mod object_store;
mod objects;
mod open;
mod records;
mod repair;
mod store;
mod tables;
mod tasks;
mod verify;

pub use error::StoreError;
pub use hash::{hash_bytes, hash_file, is_object_id, object_file, ObjectId, EMPTY_OBJECT};
pub use lock::{holder, pid_alive, LockInfo};
pub use object_store::ObjectStore;
pub use objects::LocalObjects;
pub use open::SCHEMA_VERSION;
pub use records::{
    Candidate, Corrupted, GcReport, HistorySet, InFlight, Outcome, Pin, Problem, ProblemKind,
    Stats, Submitting, TaskRecord, Verdict, VerifyReport,
};
pub use repair::{Holder, Restore};
pub use store::Store;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
