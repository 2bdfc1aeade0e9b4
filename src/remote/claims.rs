//! Claims (`v1/claims/<key>`): so two machines never pay for one task.
//!
//! - Created with `If-None-Match: *` before the first paid call: of two
//!   machines starting the same task at once, exactly one succeeds.
//! - The body says who (owner, run) and until when (`expires`, unix ms):
//!   a lease longer than the slowest generation, renewed with `If-Match` on
//!   the claim's ETag every third of the lease while the task runs.
//! - Removed once the task's record has landed (never before: a machine
//!   that sees no claim must find the record).
//! - A claim past its lease (plus a margin for clock skew) is taken over
//!   with `If-Match` on the stale claim's ETag: of two machines taking it
//!   over at once, exactly one succeeds.

use super::client::{Client, Condition, Fault};
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClaimBody {
    pub format: u32,
    pub key: String,
    /// The machine and process (`host:pid`).
    pub owner: String,
    /// This build's run id.
    pub run: String,
    pub lease_ms: u64,
    /// unix ms
    pub expires: u64,
}

impl ClaimBody {
    /// Past its lease by more than the skew margin (a tenth of the lease,
    /// at most a minute).
    pub fn stale(&self, now_ms: u64) -> bool {
        let margin = (self.lease_ms / 10).min(60_000);
        now_ms > self.expires.saturating_add(margin)
    }
}

/// Who this build is, in its claims.
#[derive(Debug, Clone)]
pub struct Identity {
    pub owner: String,
    pub run: String,
    pub lease: Duration,
}

impl Identity {
    pub fn new(lease: Duration) -> Identity {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".into());
        let mut r = [0u8; 8];
        let _ = getrandom::getrandom(&mut r);
        Identity {
            owner: format!("{host}:{}", std::process::id()),
            run: r.iter().map(|b| format!("{b:02x}")).collect(),
            lease,
        }
    }

    fn body(&self, key: &str, now_ms: u64) -> ClaimBody {
        ClaimBody {
            format: 1,
            key: key.to_string(),
            owner: self.owner.clone(),
            run: self.run.clone(),
            lease_ms: self.lease.as_millis() as u64,
            expires: now_ms + self.lease.as_millis() as u64,
        }
    }
}

/// Write a fresh claim of ours on `key` at `path`, if `cond` holds; the
/// new ETag.
async fn put_ours(
    client: &Client,
    path: &str,
    me: &Identity,
    key: &str,
    now_ms: u64,
    cond: Condition<'_>,
) -> Result<String, Fault> {
    let body = ByteStream::from(serde_json::to_vec(&me.body(key, now_ms)).unwrap_or_default());
    client.put(path, body, "application/json", cond).await
}

/// A claim as read: its body (None when unreadable) and ETag.
pub struct Seen {
    pub body: Option<ClaimBody>,
    pub etag: String,
}

/// Create the claim. Ok(Some(etag)): this build holds it; Ok(None):
/// someone else does.
pub async fn create(
    client: &Client,
    path: &str,
    me: &Identity,
    key: &str,
    now_ms: u64,
) -> Result<Option<String>, Fault> {
    match put_ours(client, path, me, key, now_ms, Condition::Absent).await {
        Ok(etag) => Ok(Some(etag)),
        Err(Fault::Lost) => Ok(None),
        Err(f) => Err(f),
    }
}

/// The claim there now, if any.
pub async fn read(client: &Client, path: &str) -> Result<Option<Seen>, Fault> {
    Ok(client.get(path).await?.map(|(bytes, etag)| Seen {
        body: serde_json::from_slice(&bytes).ok(),
        etag,
    }))
}

/// Replace the claim whose ETag is `etag` with a fresh one of ours (a
/// renewal, or the takeover of a stale claim). Ok(Some(new etag)), or
/// Ok(None) when the claim changed meanwhile.
pub async fn replace(
    client: &Client,
    path: &str,
    etag: &str,
    me: &Identity,
    key: &str,
    now_ms: u64,
) -> Result<Option<String>, Fault> {
    match put_ours(client, path, me, key, now_ms, Condition::Matches(etag)).await {
        Ok(etag) => Ok(Some(etag)),
        Err(Fault::Lost | Fault::Missing) => Ok(None),
        Err(f) => Err(f),
    }
}

/// A claim this build holds: renewed in the background until released.
pub struct ClaimGuard {
    client: Arc<Client>,
    path: String,
    etag: Arc<Mutex<String>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl ClaimGuard {
    pub fn hold(
        client: Arc<Client>,
        path: String,
        etag: String,
        me: Identity,
        key: String,
    ) -> ClaimGuard {
        let etag = Arc::new(Mutex::new(etag));
        let (c, p, e) = (client.clone(), path.clone(), etag.clone());
        let renewer = tokio::spawn(async move {
            let every = (me.lease / 3).max(Duration::from_millis(30));
            loop {
                tokio::time::sleep(every).await;
                let current = e.lock().unwrap_or_else(|x| x.into_inner()).clone();
                match replace(&c, &p, &current, &me, &key, crate::exec::runner::now_ms()).await {
                    Ok(Some(new)) => *e.lock().unwrap_or_else(|x| x.into_inner()) = new,
                    // Taken over (we were too slow): nothing more to renew.
                    Ok(None) => return,
                    // The remote is down: try again next time.
                    Err(_) if c.breaker.allows() => {}
                    Err(_) => return,
                }
            }
        });
        ClaimGuard {
            client,
            path,
            etag,
            renewer,
        }
    }

    /// Stop renewing and remove the claim if it is still ours (a claim
    /// taken over by someone else is left alone).
    pub async fn release(self) {
        self.renewer.abort();
        let ours = self.etag.lock().unwrap_or_else(|x| x.into_inner()).clone();
        if let Ok(Some(seen)) = read(&self.client, &self.path).await {
            if seen.etag == ours {
                let _ = self.client.delete(&self.path).await;
            }
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_stale_only_past_its_lease_and_the_margin() {
        let b = ClaimBody {
            format: 1,
            key: "k".into(),
            owner: "h:1".into(),
            run: "r".into(),
            lease_ms: 10_000,
            expires: 100_000,
        };
        assert!(!b.stale(100_000));
        assert!(!b.stale(101_000));
        assert!(b.stale(101_001));
        // A long lease's margin is capped at a minute.
        let long = ClaimBody {
            lease_ms: 3_600_000,
            ..b
        };
        assert!(long.stale(100_000 + 60_001));
    }
}
