//! What the store records about a submission, on blocking threads: the
//! "submitting" mark flushed before a send, and the remote id recorded
//! before polling.

use super::*;

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, nbbuild_cache::StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("the store failed: {e}")),
        Err(e) => Err(format!("the store task failed: {e}")),
    }
}

pub(super) async fn mark(
    ctx: &Ctx,
    job: &CandidateJob,
    at: u64,
    attempt: u32,
) -> Result<(), String> {
    let (store, key, slot) = (ctx.store.clone(), job.key.clone(), job.slot);
    blocking(move || store.record_submitting(&key, nbbuild_cache::Submitting { slot, at, attempt }))
        .await
}

pub(super) async fn clear_mark(ctx: &Ctx, job: &CandidateJob) {
    let (store, key, slot) = (ctx.store.clone(), job.key.clone(), job.slot);
    let _ = blocking(move || store.clear_submitting(&key, slot)).await;
}

pub(super) async fn record(ctx: &Ctx, job: &CandidateJob, f: InFlight) -> Result<(), String> {
    let (store, key) = (ctx.store.clone(), job.key.clone());
    blocking(move || store.record_in_flight(&key, f.slot, f))
        .await
        .map_err(|e| format!("cannot record the remote task in the store: {e}"))
}
