//! Lost answers: a submission sent whose answer never came is looked up at
//! the service (same type and prompt, created after the send, recorded for
//! no slot) and adopted instead of paid again.

use super::marks::blocking;
use super::*;

/// A submission sent and not yet resolved (answered and recorded, or
/// failed), counted per (type, prompt) while it lives.
pub(super) struct Outstanding<'a> {
    ctx: &'a Ctx,
    key: (TaskKind, String),
}

impl<'a> Outstanding<'a> {
    pub(super) fn key(job: &CandidateJob) -> (TaskKind, String) {
        (job.kind, job.request.prompt.clone())
    }
    pub(super) fn new(ctx: &'a Ctx, job: &CandidateJob) -> Outstanding<'a> {
        let key = Self::key(job);
        *ctx.outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        Outstanding { ctx, key }
    }
    pub(super) fn count(ctx: &Ctx, job: &CandidateJob) -> usize {
        ctx.outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&Self::key(job))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        let mut m = self
            .ctx
            .outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// How far G-Labs' clock may lag ours when matching `created_at`.
pub(super) const CLOCK_SKEW_MS: u64 = 5_000;

/// A submission sent at `since` whose answer never came: find its task in
/// `GET /api/tasks` (same type and prompt, created after the send, not
/// recorded for any slot), record it and return its id; None when none
/// appears within a short grace period. Adoptions are serialized, so two
/// slots never take the same task.
/// What looking for a submission's task found.
pub(super) enum Looked {
    /// Our task, now recorded: poll it instead of paying again.
    Adopted(String),
    /// The service's list was read and holds no task of ours since then:
    /// nothing was created, so sending again pays once.
    Absent,
    /// The list could not be read: whether a task exists is not known.
    Unknown,
}

pub(super) async fn adopt(
    ctx: &Ctx,
    job: &CandidateJob,
    since: u64,
    attempt: u32,
) -> Result<Looked, Failure> {
    let mut listed_once = false;
    let _one_at_a_time = ctx.adopting.lock().await;
    let (kind, prompt) = (job.request.kind_name(), job.request.prompt.as_str());
    for round in 0..3u32 {
        if round > 0 {
            ctx.sleep(ctx.policy.backoff * round).await;
        }
        // Another slot's submission with this prompt may have created its
        // task and not recorded it yet: wait until those are resolved
        // (bounded: each send times out).
        let started = Instant::now();
        while Outstanding::count(ctx, job) > 0 && started.elapsed() < Duration::from_secs(150) {
            if ctx.interrupted() {
                return Ok(Looked::Unknown);
            }
            ctx.sleep(Duration::from_millis(20)).await;
        }
        let Ok(listed) = ctx.generator.list_tasks().await else {
            continue;
        };
        listed_once = true;
        let store = ctx.store.clone();
        let known: std::collections::HashSet<String> = blocking(move || {
            Ok(store
                .tasks()?
                .iter()
                .flat_map(|(_, r)| r.remote_ids().map(str::to_string).collect::<Vec<_>>())
                .collect())
        })
        .await
        .map_err(|m| Failure {
            candidate: Some(job.slot),
            kind: FailureKind::Store,
            attempts: attempt,
            message: m,
        })?;
        // The listing must name type and prompt: an anonymous task is never adopted.
        let found = listed
            .into_iter()
            .filter(|t| t.kind.is_some() && t.prompt.is_some() && t.is_ours(kind, prompt))
            .filter(|t| !known.contains(&t.task_id))
            .filter(|t| t.created_ms().is_none_or(|c| c + CLOCK_SKEW_MS >= since))
            .min_by_key(|t| t.created_ms().unwrap_or(u64::MAX));
        if let Some(t) = found {
            let f = InFlight {
                slot: job.slot,
                remote_task: t.task_id.clone(),
                attempt,
                submitted: since,
            };
            record(ctx, job, f).await.map_err(|m| Failure {
                candidate: Some(job.slot),
                kind: FailureKind::Store,
                attempts: attempt,
                message: m,
            })?;
            ctx.report.event(Event::Info(format!(
                "  {} c{}: the submission's answer was lost; adopted G-Labs task {} instead of paying again",
                job.task,
                job.slot + 1,
                t.task_id
            )));
            return Ok(Looked::Adopted(t.task_id));
        }
    }
    Ok(if listed_once {
        Looked::Absent
    } else {
        Looked::Unknown
    })
}
