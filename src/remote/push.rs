//! The write path: once a task's candidates are committed locally, its
//! objects and then its signed record go up in the background (the build
//! never waits for them until it ends), and then its claim is removed.
//!
//! Order matters: a record is written only after every object it names is
//! in the bucket, so a reader that believes a record finds its bytes; and a
//! claim goes only after the record, so a machine that finds no claim finds
//! the record. Every write uses `If-None-Match: *`: the first record of a
//! key wins and is never overwritten (a second generation of the same
//! inputs is a different image, not a correction).

use super::claims::ClaimGuard;
use super::client::{Condition, Fault};
use super::record::RemoteRecord;
use super::{Mode, Remote};
use aws_sdk_s3::primitives::ByteStream;
use nbbuild_cache::Store;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Remote {
    /// Upload task `key`'s first `n` candidates and its record in the
    /// background, then release `claim`. Nothing when read-only (the claim,
    /// if any, is still released).
    pub fn push_soon(
        self: &Arc<Self>,
        store: &Arc<Store>,
        key: &str,
        n: u32,
        claim: Option<ClaimGuard>,
    ) {
        let (me, store, key) = (self.clone(), store.clone(), key.to_string());
        let handle = tokio::spawn(async move {
            if me.mode() == Mode::ReadWrite {
                let _slot = me.push_slots.clone().acquire_owned().await;
                me.push(&store, &key, n).await;
            }
            if let Some(c) = claim {
                c.release().await;
            }
        });
        self.pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Release a claim in the background (its task did not complete).
    pub fn release_soon(&self, claim: ClaimGuard) {
        let handle = tokio::spawn(claim.release());
        self.pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    async fn push(&self, store: &Arc<Store>, key: &str, n: u32) {
        let Some(signing) = self.cfg.signing.clone() else {
            return;
        };
        let (st, k) = (store.clone(), key.to_string());
        let Ok(Ok(Some(local))) = tokio::task::spawn_blocking(move || st.task(&k)).await else {
            return;
        };
        let Some(record) = RemoteRecord::from_local(key, &local, n) else {
            return;
        };
        for c in &record.candidates {
            match self
                .cas
                .put(&c.blake3, &store.object_path(&c.blake3), &c.mime)
                .await
            {
                Ok(true) => {
                    self.objects.fetch_add(1, Ordering::SeqCst);
                }
                Ok(false) => {}
                Err(Fault::Refused(why)) => {
                    self.say_read_only(&format!("the bucket refused a write ({why})"));
                    return;
                }
                Err(_) => return,
            }
        }
        let signed = record.sign(&signing, crate::exec::runner::now_ms());
        match self
            .client
            .put(
                &self.layout.record(key),
                ByteStream::from(signed.to_bytes()),
                "application/json",
                Condition::Absent,
            )
            .await
        {
            Ok(_) => {
                self.uploads.fetch_add(1, Ordering::SeqCst);
            }
            // Another machine's record of this key was first: it stays.
            Err(Fault::Lost) => {}
            Err(Fault::Refused(why)) => {
                self.say_read_only(&format!("the bucket refused a write ({why})"))
            }
            Err(_) => {}
        }
    }
}
