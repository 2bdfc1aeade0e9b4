//! Runs one candidate: submit, record the G-Labs task id, poll, download,
//! check, commit. Knows nothing of the graph; the scheduler calls it.

use super::state::Failure;
use super::Ctx;
use crate::compile::TaskKind;
use crate::generator::{ApiError, GenInput, RemoteStatus};
use crate::glabs::FailureKind;
use crate::progress::Event;
use nbbuild_cache::{Candidate, InFlight};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Retry and polling settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Submissions per candidate for transient failures (429, 5xx, network, bad file).
    pub attempts: u32,
    /// First backoff; doubles per attempt, with jitter.
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub poll_start: Duration,
    pub poll_max: Duration,
    /// Largest file accepted from G-Labs.
    pub download_limit: u64,
    /// Backpressure (429s) gives up after this long without any progress.
    pub max_wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 3,
            backoff: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            poll_start: Duration::from_millis(100),
            poll_max: Duration::from_secs(5),
            download_limit: 1024 * 1024 * 1024,
            max_wait: Duration::from_secs(600),
        }
    }
}

impl Policy {
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(r) = retry_after {
            return r.min(self.backoff_max);
        }
        crate::backoff::exponential(self.backoff, attempt, self.backoff_max)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct CandidateJob {
    pub task: String,
    pub key: String,
    pub slot: u32,
    pub kind: TaskKind,
    pub model: String,
    /// What one call costs, in the route's unit (reserved against the budget).
    pub price: f64,
    pub timeout: Duration,
    pub request: Arc<GenInput>,
    /// A G-Labs task an earlier run submitted for this slot.
    pub resume: Option<InFlight>,
    /// Where this slot's QA attempt numbering starts: after the flagged
    /// attempts an earlier run kept (so their qa_loop files stay).
    pub qa_numbering: u32,
    /// A re-roll: the history set the replaced candidate goes to when (and
    /// only when) the new one is committed.
    pub reroll: Option<String>,
    /// When an earlier run sent a submission for this slot and never
    /// recorded its answer (unix ms): looked up before paying again.
    pub submitting: Option<u64>,
    /// Served before lower ones when slots are scarce (the task's
    /// critical-path length).
    pub priority: u64,
}

enum Step {
    /// Backpressure (429): wait as told and send again; costs no attempt.
    Pace {
        why: String,
        retry_after: Option<Duration>,
    },
    /// A transient failure: retry after a backoff while the budget lasts.
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    /// Resubmit at once (content policy once, lost tasks), outside the transient budget.
    Again {
        why: String,
    },
    Fail(FailureKind, String),
}

/// Produce one candidate slot: generate it, then (stills, with a reviewer)
/// review it and re-roll that slot alone while it is flagged, up to
/// `--qa-attempts` re-rolls. `Ok` once a candidate is durable in the store;
/// the second value is a `qa_exhausted` failure when the last one is still
/// flagged (it stays in the gallery, marked).
pub async fn run(
    ctx: &Ctx,
    mut job: CandidateJob,
) -> Result<(Candidate, Option<Failure>), Failure> {
    let mut rerolls = 0;
    loop {
        let cand = generate(ctx, &job).await?;
        job.resume = None;
        // What the re-roll replaced is filed; QA re-rolls of the new take
        // replace only that take.
        job.reroll = None;
        let Some(reviewer) = ctx
            .reviewer
            .as_ref()
            .filter(|_| job.kind == TaskKind::Image)
        else {
            ctx.publish_soon(&job.task, job.kind, &job.key, job.slot, &cand.object);
            return Ok((cand, None));
        };
        let review = super::review(ctx, reviewer.as_ref(), &cand.object).await;
        let verdict = review.to_verdict(&reviewer.id(), now_ms());
        let flagged = review.is_flagged();
        let store = ctx.store.clone();
        let (key, slot, v) = (job.key.clone(), job.slot, verdict.clone());
        let _ = tokio::task::spawn_blocking(move || {
            store.update_candidate(&key, slot, |c| {
                c.qa = Some(v);
                c.qa_attempts = job.qa_numbering + rerolls;
            })
        })
        .await;
        let cand = Candidate {
            qa: Some(verdict),
            qa_attempts: job.qa_numbering + rerolls,
            ..cand
        };
        if !flagged {
            ctx.publish_soon(&job.task, job.kind, &job.key, job.slot, &cand.object);
            return Ok((cand, None));
        }
        if rerolls >= ctx.qa_attempts {
            let message = format!(
                "still flagged after {} re-roll(s): {}",
                rerolls,
                if review.tells.is_empty() {
                    "no tell named".to_string()
                } else {
                    review.tells.join("; ")
                }
            );
            let f = Failure {
                candidate: Some(job.slot),
                kind: FailureKind::QaExhausted,
                attempts: rerolls + 1,
                message,
            };
            ctx.publish_soon(&job.task, job.kind, &job.key, job.slot, &cand.object);
            return Ok((cand, Some(f)));
        }
        rerolls += 1;
        ctx.report.event(Event::Retry {
            task: job.task.clone(),
            slot: job.slot,
            attempt: rerolls,
            why: format!("flagged by QA ({})", review.tells.join("; ")),
            wait: Duration::ZERO,
        });
    }
}

/// Generate one candidate. `Ok` once it is durable in the store.
async fn generate(ctx: &Ctx, job: &CandidateJob) -> Result<Candidate, Failure> {
    // Submissions made for this candidate (also by an earlier run); what
    // errors.json reports as `attempts`.
    let mut attempt = job.resume.as_ref().map(|f| f.attempt).unwrap_or(0);
    // Retry budgets: transient failures, content-policy rejections, lost tasks.
    let mut transient = 0;
    // Backoffs on answers that said nothing about the generation (5xx to a
    // submit): they grow, but spend no attempt.
    let mut paced = 0;
    let mut policy_retries = 0;
    let mut lost = 0;
    let mut remote = job
        .resume
        .as_ref()
        .map(|f| (f.remote_task.clone(), f.submitted));
    // A submission an earlier run sent without recording its answer.
    let mut pending = job.submitting.filter(|_| remote.is_none());
    let fail = |kind, attempts, message: String| Failure {
        candidate: Some(job.slot),
        kind,
        attempts,
        message,
    };
    loop {
        let permit = ctx
            .slots
            .clone()
            .acquire_owned(job.priority)
            .await
            .map_err(|_| fail(FailureKind::ApiError, attempt, "scheduler closed".into()))?;
        let (id, submitted) = match remote.take() {
            Some((id, submitted)) => {
                ctx.report.event(Event::Reattached {
                    task: job.task.clone(),
                    slot: job.slot,
                });
                (id, submitted)
            }
            None => {
                if ctx.stopping() {
                    return Err(fail(FailureKind::Halted, attempt, ctx.stop_reason()));
                }
                // A mark left by a crash: that submission may have created
                // (and billed) a task. Look before paying again.
                if let Some(at) = pending.take() {
                    match adopt(ctx, job, at, attempt).await? {
                        Some(id) => {
                            remote = Some((id, at));
                            drop(permit);
                            continue;
                        }
                        None => clear_mark(ctx, job).await,
                    }
                }
                if let Err(msg) = ctx.reserve(job.price) {
                    return Err(fail(FailureKind::Halted, attempt, msg));
                }
                attempt += 1;
                ctx.report.event(Event::Submitted {
                    task: job.task.clone(),
                    slot: job.slot,
                    attempt,
                });
                let sent_at = now_ms();
                // Recorded (flushed) before sending: a lost answer or a crash
                // from here on is looked up before anything is paid again.
                mark(ctx, job, sent_at, attempt)
                    .await
                    .map_err(|m| fail(FailureKind::Store, attempt, m))?;
                let out = Outstanding::new(ctx, job);
                match ctx.generator.submit(&job.request).await {
                    Ok(id) => {
                        accepted(ctx, job);
                        let f = InFlight {
                            slot: job.slot,
                            remote_task: id.clone(),
                            attempt,
                            submitted: now_ms(),
                        };
                        let submitted = f.submitted;
                        // Recorded before polling: a rerun after a crash re-attaches instead of paying again.
                        let recorded = record(ctx, job, f).await;
                        drop(out);
                        recorded.map_err(|m| fail(FailureKind::Store, attempt, m))?;
                        (id, submitted)
                    }
                    Err(ApiError::NoAnswer { message }) => {
                        drop(out);
                        match adopt(ctx, job, sent_at, attempt).await? {
                            Some(id) => {
                                accepted(ctx, job);
                                (id, sent_at)
                            }
                            None => {
                                // Not created after all (or not findable): the
                                // one case that spends an attempt on no answer.
                                clear_mark(ctx, job).await;
                                drop(permit);
                                ctx.release(job.price);
                                let why = format!(
                                    "{message} (no task of ours appeared at {})",
                                    ctx.generator.title()
                                );
                                if retry_later(ctx, job, &mut transient, attempt, &why, None).await
                                {
                                    continue;
                                }
                                return Err(fail(FailureKind::ApiError, attempt, why));
                            }
                        }
                    }
                    Err(e) => {
                        // G-Labs answered: no task was created.
                        drop(out);
                        clear_mark(ctx, job).await;
                        drop(permit);
                        ctx.release(job.price);
                        match on_error(ctx, &e) {
                            // 429, or a 5xx answer to the submit: G-Labs said
                            // nothing about the generation, so no attempt is
                            // spent; --max-wait without progress ends it.
                            Step::Pace { why, retry_after } => {
                                let wait = retry_after.unwrap_or(ctx.policy.backoff);
                                pace(ctx, job, attempt, &why, wait)
                                    .await
                                    .map_err(|(kind, m)| fail(kind, attempt, m))?;
                                continue;
                            }
                            Step::Retry { why, retry_after } => {
                                paced += 1;
                                let wait = ctx.policy.backoff(paced, retry_after);
                                pace(ctx, job, attempt, &why, wait)
                                    .await
                                    .map_err(|(kind, m)| fail(kind, attempt, m))?;
                                continue;
                            }
                            Step::Again { why } => return Err(fail(e.kind(), attempt, why)),
                            Step::Fail(kind, msg) => return Err(fail(kind, attempt, msg)),
                        }
                    }
                }
            }
        };
        // Poll until the task ends, our timeout passes, or the run stops.
        let outcome = poll(ctx, job, &id, submitted).await;
        let step = match outcome {
            Polled::Done(results) => match fetch(ctx, job, &results).await {
                Ok(bytes) => {
                    // G-Labs is done with it: the slot is free while the
                    // store makes the candidate durable.
                    drop(permit);
                    let cand = commit(ctx, job, &id, bytes)
                        .await
                        .map_err(|m| fail(FailureKind::Store, attempt, m))?;
                    return Ok(cand);
                }
                // The result itself is bad (an error page, a cut-off file, three
                // times): only a new generation helps.
                Err((true, why)) => Step::Retry {
                    why,
                    retry_after: None,
                },
                // The result exists at G-Labs but did not come through: keep
                // the task and fetch it again rather than paying for another.
                Err((false, why)) => {
                    drop(permit);
                    if retry_later(ctx, job, &mut transient, attempt, &why, None).await {
                        remote = Some((id, submitted));
                        continue;
                    }
                    return Err(fail(
                        FailureKind::ApiError,
                        attempt,
                        format!(
                            "{why} (the {} task is kept: the next run fetches its result)",
                            ctx.generator.title()
                        ),
                    ));
                }
            },
            Polled::Failed(e) => match e {
                ApiError::Permanent {
                    kind: FailureKind::ContentPolicy,
                    message,
                } if policy_retries == 0 => {
                    // Content policy: once more, then permanent.
                    policy_retries += 1;
                    Step::Again { why: message }
                }
                e => on_error(ctx, &e),
            },
            Polled::NotOurs(what) => {
                lost += 1;
                if lost <= ctx.policy.attempts {
                    // Never store it: it is another prompt's result.
                    Step::Again {
                        why: format!(
                            "G-Labs task {id} is not ours ({what}): G-Labs restarted and reused the id; resubmitting"
                        ),
                    }
                } else {
                    Step::Fail(
                        FailureKind::ApiError,
                        format!("G-Labs keeps answering for another task ({what})"),
                    )
                }
            }
            Polled::Lost => {
                lost += 1;
                if lost <= ctx.policy.attempts {
                    // G-Labs restarted: resubmit without spending a transient retry.
                    Step::Again {
                        why: if ctx.generator.route() == "google" {
                            "Google no longer knows it (an operation gone, or a still answered to an earlier run, which Google cannot look up): resubmitting".into()
                        } else {
                            "G-Labs forgot the task (restarted?): resubmitting".into()
                        },
                    }
                } else {
                    Step::Fail(
                        FailureKind::ApiError,
                        format!("{} keeps losing this task", ctx.generator.title()),
                    )
                }
            }
            Polled::TimedOut => {
                ctx.generator.stop(&id).await;
                Step::Fail(
                    FailureKind::Timeout,
                    format!(
                        "no result after {}s (the node's timeout)",
                        job.timeout.as_secs()
                    ),
                )
            }
            // Polling failed, not the task: keep the G-Labs task (never pay
            // for it again) and re-attach after a pause, or on the next run.
            Polled::Error(e) => {
                drop(permit);
                let why = e.message();
                let transient_error = matches!(e, ApiError::Transient { .. });
                if transient_error
                    && retry_later(ctx, job, &mut transient, attempt, &why, None).await
                {
                    remote = Some((id, submitted));
                    continue;
                }
                if !transient_error {
                    on_error(ctx, &e); // stops the run for a dead server or a refused key
                }
                return Err(fail(
                    e.kind(),
                    attempt,
                    format!(
                        "{why} (the {} task is kept: the next run re-attaches to it)",
                        ctx.generator.title()
                    ),
                ));
            }
            Polled::Stopped => {
                // Keep the in-flight record: the next run re-attaches to it.
                return Err(fail(FailureKind::Halted, attempt, ctx.stop_reason()));
            }
        };
        drop(permit);
        // The G-Labs task is over (or abandoned): forget it.
        let store = ctx.store.clone();
        let (key, slot) = (job.key.clone(), job.slot);
        let _ = tokio::task::spawn_blocking(move || store.clear_in_flight(&key, slot)).await;
        match step {
            Step::Pace { why, retry_after } => {
                let wait = retry_after.unwrap_or(ctx.policy.backoff);
                pace(ctx, job, attempt, &why, wait)
                    .await
                    .map_err(|(kind, m)| fail(kind, attempt, m))?;
            }
            Step::Again { why } if !ctx.stopping() => {
                ctx.report.event(Event::Retry {
                    task: job.task.clone(),
                    slot: job.slot,
                    attempt,
                    why,
                    wait: Duration::ZERO,
                });
            }
            Step::Again { .. } => {
                return Err(fail(FailureKind::Halted, attempt, ctx.stop_reason()))
            }
            Step::Retry { why, retry_after }
                if retry_later(ctx, job, &mut transient, attempt, &why, retry_after).await => {}
            Step::Retry { why, .. } => return Err(fail(FailureKind::ApiError, attempt, why)),
            Step::Fail(kind, msg) => return Err(fail(kind, attempt, msg)),
        }
    }
}

/// Latencies seen in this run, per model: when to poll next (issue 11.4).
#[derive(Default)]
pub struct Latencies {
    seen: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<Duration>>>,
}

impl Latencies {
    /// How long a finished task of `model` took (submit to noticed done).
    pub fn seen(&self, model: &str, took: Duration) {
        let mut m = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.entry(model.to_string()).or_default();
        v.push_back(took);
        if v.len() > 8 {
            v.pop_front();
        }
    }

    /// The wait before the next poll of a task of `model` running for
    /// `elapsed`: until the fastest recent finish, then densely (a twentieth
    /// of that latency, at least 20 ms, at most `poll_start`) for half as long
    /// again, about ten polls; None (the default schedule) when nothing was
    /// seen yet or the task is past that window, so a slow server is never
    /// hammered.
    pub fn next_poll(&self, model: &str, elapsed: Duration, p: &Policy) -> Option<Duration> {
        let m = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let expected = *m.get(model)?.iter().min()?;
        // Never below 20 ms, unless the policy's own floor is lower.
        let floor = Duration::from_millis(20).min(p.poll_start);
        let dense = (expected / 20).clamp(floor, p.poll_start.max(floor));
        if elapsed + dense < expected {
            Some((expected - elapsed).min(p.poll_max))
        } else if elapsed < expected + expected / 2 {
            Some(dense)
        } else {
            None
        }
    }
}

/// A submission G-Labs accepted: counted, the cap may climb, progress made.
fn accepted(ctx: &Ctx, job: &CandidateJob) {
    ctx.count_call(job.kind);
    ctx.report.event(Event::Accepted {
        task: job.task.clone(),
        slot: job.slot,
    });
    ctx.slots.success();
    ctx.last_progress
        .store(now_ms(), std::sync::atomic::Ordering::SeqCst);
}

/// Wait out backpressure for `wait` (capped at the largest backoff): no
/// attempt is spent. Err once `max_wait` passed without any progress in the
/// run.
async fn pace(
    ctx: &Ctx,
    job: &CandidateJob,
    attempt: u32,
    why: &str,
    wait: Duration,
) -> Result<(), (FailureKind, String)> {
    let last = ctx.last_progress.load(std::sync::atomic::Ordering::SeqCst);
    let stalled = Duration::from_millis(now_ms().saturating_sub(last));
    if stalled > ctx.policy.max_wait {
        return Err((
            FailureKind::ApiError,
            format!(
                "{} kept pushing back ({why}) for {}s without any progress (--max-wait): giving up",
                ctx.generator.title(),
                stalled.as_secs()
            ),
        ));
    }
    if ctx.stopping() {
        return Err((FailureKind::Halted, ctx.stop_reason()));
    }
    let wait = wait.min(ctx.policy.backoff_max);
    ctx.report.event(Event::Retry {
        task: job.task.clone(),
        slot: job.slot,
        attempt,
        why: format!("{why}: paced, no attempt spent"),
        wait,
    });
    ctx.sleep(wait).await;
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, nbbuild_cache::StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("the store failed: {e}")),
        Err(e) => Err(format!("the store task failed: {e}")),
    }
}

async fn mark(ctx: &Ctx, job: &CandidateJob, at: u64, attempt: u32) -> Result<(), String> {
    let (store, key, slot) = (ctx.store.clone(), job.key.clone(), job.slot);
    blocking(move || store.record_submitting(&key, nbbuild_cache::Submitting { slot, at, attempt }))
        .await
}

async fn clear_mark(ctx: &Ctx, job: &CandidateJob) {
    let (store, key, slot) = (ctx.store.clone(), job.key.clone(), job.slot);
    let _ = blocking(move || store.clear_submitting(&key, slot)).await;
}

async fn record(ctx: &Ctx, job: &CandidateJob, f: InFlight) -> Result<(), String> {
    let (store, key) = (ctx.store.clone(), job.key.clone());
    blocking(move || store.record_in_flight(&key, f.slot, f))
        .await
        .map_err(|e| format!("cannot record the remote task in the store: {e}"))
}

/// A submission sent and not yet resolved (answered and recorded, or
/// failed), counted per (type, prompt) while it lives.
struct Outstanding<'a> {
    ctx: &'a Ctx,
    key: (TaskKind, String),
}

impl<'a> Outstanding<'a> {
    fn key(job: &CandidateJob) -> (TaskKind, String) {
        (job.kind, job.request.prompt.clone())
    }
    fn new(ctx: &'a Ctx, job: &CandidateJob) -> Outstanding<'a> {
        let key = Self::key(job);
        *ctx.outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        Outstanding { ctx, key }
    }
    fn count(ctx: &Ctx, job: &CandidateJob) -> usize {
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
const CLOCK_SKEW_MS: u64 = 5_000;

/// A submission sent at `since` whose answer never came: find its task in
/// `GET /api/tasks` (same type and prompt, created after the send, not
/// recorded for any slot), record it and return its id; None when none
/// appears within a short grace period. Adoptions are serialized, so two
/// slots never take the same task.
async fn adopt(
    ctx: &Ctx,
    job: &CandidateJob,
    since: u64,
    attempt: u32,
) -> Result<Option<String>, Failure> {
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
                return Ok(None);
            }
            ctx.sleep(Duration::from_millis(20)).await;
        }
        let Ok(listed) = ctx.generator.list_tasks().await else {
            continue;
        };
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
            return Ok(Some(t.task_id));
        }
    }
    Ok(None)
}

/// Back off before another try after a transient failure, while the
/// budget of transient retries lasts and the run is not stopping. False: no
/// more tries.
async fn retry_later(
    ctx: &Ctx,
    job: &CandidateJob,
    transient: &mut u32,
    attempt: u32,
    why: &str,
    retry_after: Option<Duration>,
) -> bool {
    if *transient + 1 >= ctx.policy.attempts || ctx.stopping() {
        return false;
    }
    *transient += 1;
    let wait = ctx.policy.backoff(*transient, retry_after);
    ctx.report.event(Event::Retry {
        task: job.task.clone(),
        slot: job.slot,
        attempt,
        why: why.to_string(),
        wait,
    });
    ctx.sleep(wait).await;
    true
}

fn on_error(ctx: &Ctx, e: &ApiError) -> Step {
    match e {
        ApiError::Transient {
            message,
            retry_after,
        } => Step::Retry {
            why: message.clone(),
            retry_after: *retry_after,
        },
        ApiError::Down { message } => {
            ctx.halt(message);
            Step::Fail(FailureKind::ConnectionRefused, message.clone())
        }
        ApiError::Unauthorized => {
            ctx.halt(&format!("{} refused the API key", ctx.generator.title()));
            Step::Fail(FailureKind::ApiError, e.message())
        }
        ApiError::Exhausted { message } => {
            ctx.halt(message);
            Step::Fail(FailureKind::Halted, ctx.stop_reason())
        }
        ApiError::Lost | ApiError::NoAnswer { .. } => Step::Retry {
            why: e.message(),
            retry_after: None,
        },
        ApiError::RateLimited {
            message,
            retry_after,
        } => {
            ctx.slots.backoff();
            Step::Pace {
                why: message.clone(),
                retry_after: *retry_after,
            }
        }
        ApiError::Permanent { kind, message } => Step::Fail(*kind, message.clone()),
    }
}

enum Polled {
    Done(Vec<String>),
    Failed(ApiError),
    Lost,
    /// The id names a task of another type or prompt (G-Labs restarted and
    /// handed the id out again): never adopted.
    NotOurs(String),
    TimedOut,
    Error(ApiError),
    Stopped,
}

async fn poll(ctx: &Ctx, job: &CandidateJob, id: &str, submitted_ms: u64) -> Polled {
    let elapsed_before = Duration::from_millis(now_ms().saturating_sub(submitted_ms));
    let started = Instant::now()
        .checked_sub(elapsed_before)
        .unwrap_or_else(Instant::now);
    let deadline = Instant::now() + job.timeout.saturating_sub(elapsed_before);
    let mut errors = 0;
    let (kind, prompt) = (job.request.kind_name(), job.request.prompt.as_str());
    loop {
        if ctx.interrupted() {
            return Polled::Stopped;
        }
        let status = match ctx.generator.status(id).await {
            Ok(view) if !view.is_ours(kind, prompt) => {
                return Polled::NotOurs(format!(
                    "a {} task for {:?}",
                    view.kind.as_deref().unwrap_or("?"),
                    crate::qa::excerpt(view.prompt.as_deref().unwrap_or(""), 60)
                ))
            }
            Ok(view) => Ok(view.status),
            Err(e) => Err(e),
        };
        match status {
            Ok(RemoteStatus::Completed { results }) => {
                ctx.latencies.seen(&job.model, started.elapsed());
                return Polled::Done(results);
            }
            Ok(RemoteStatus::Failed(e)) => return Polled::Failed(e),
            Ok(RemoteStatus::Waiting) => errors = 0,
            Err(ApiError::Lost) => return Polled::Lost,
            Err(
                e @ (ApiError::Transient { .. }
                | ApiError::Down { .. }
                | ApiError::RateLimited { .. }),
            ) => {
                errors += 1;
                // A poll that fails costs nothing: keep trying for a while
                // (the tunnel may be restarting) before giving up.
                if errors > 8 {
                    return Polled::Error(e);
                }
            }
            Err(e) => return Polled::Error(e),
        }
        if Instant::now() >= deadline {
            return Polled::TimedOut;
        }
        // Poll after a fifth of the time the task has taken so far (at least
        // poll_start, at most poll_max): a fast server is not slowed down by
        // the poll interval (the result is noticed within ~20% of its
        // latency), and a slow one is not hammered (a 60 s clip takes ~30 polls).
        // Once the run has seen this model finish, wait until about then and
        // poll densely around it instead.
        let interval = ctx
            .latencies
            .next_poll(&job.model, started.elapsed(), &ctx.policy)
            .unwrap_or_else(|| {
                started
                    .elapsed()
                    .div_f64(5.0)
                    .clamp(ctx.policy.poll_start, ctx.policy.poll_max)
            });
        let wait = interval.min(deadline.saturating_duration_since(Instant::now()));
        ctx.sleep(wait).await;
    }
}

/// Download the result to a temporary file beside the store (streamed: a
/// large clip is never held in memory) and check it is what was asked for.
/// Err((true, why)): the result itself is bad; Err((false, why)): it did not
/// come through.
async fn fetch(
    ctx: &Ctx,
    job: &CandidateJob,
    results: &[String],
) -> Result<tempfile::NamedTempFile, (bool, String)> {
    let url = results
        .first()
        .ok_or((true, "the service returned no result file".to_string()))?;
    let mut last = String::new();
    let mut bad = false;
    for attempt in 0..3 {
        let mut tmp = tempfile::Builder::new()
            .prefix("download-")
            .tempfile_in(ctx.store.root().join("tmp"))
            .map_err(|e| {
                (
                    false,
                    format!("cannot create a temporary file in the store: {e}"),
                )
            })?;
        match ctx
            .generator
            .download_to(url, ctx.policy.download_limit, tmp.as_file_mut())
            .await
        {
            Ok(size) => {
                let path = tmp.path().to_path_buf();
                let kind = job.kind;
                let ok = tokio::task::spawn_blocking(move || media_ok(&path, kind))
                    .await
                    .unwrap_or(false);
                if ok {
                    return Ok(tmp);
                }
                // A tunnel error page or a cut-off file: fetch it again before
                // paying for a new generation.
                bad = true;
                last = format!(
                    "the downloaded file is not a valid {} ({size} bytes)",
                    if job.kind == TaskKind::Image {
                        "PNG"
                    } else {
                        "MP4"
                    }
                );
            }
            Err(e) => {
                bad = false;
                last = format!("download failed: {}", e.message());
            }
        }
        ctx.sleep(ctx.policy.poll_start * (attempt + 1)).await;
    }
    Err((bad, last))
}

/// A PNG that decodes its header, or an MP4 whose top-level boxes (`ftyp`
/// first, a `moov`) add up to the file's size: a truncated file or an HTML
/// error page fails. Reads only box headers of a clip.
fn media_ok(path: &std::path::Path, kind: TaskKind) -> bool {
    use nbbuild_cache::media;
    if kind == TaskKind::Image {
        return std::fs::read(path).is_ok_and(|b| media::is_png(&b));
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    f.metadata()
        .is_ok_and(|m| media::is_mp4_in(&mut f, m.len()))
}

async fn commit(
    ctx: &Ctx,
    job: &CandidateJob,
    remote: &str,
    file: tempfile::NamedTempFile,
) -> Result<Candidate, String> {
    let store = ctx.store.clone();
    let key = job.key.clone();
    let slot = job.slot;
    let mime = if job.kind == TaskKind::Image {
        "image/png"
    } else {
        "video/mp4"
    };
    let remote = remote.to_string();
    let route = ctx.generator.route().to_string();
    let reroll = job.reroll.clone();
    let res = tokio::task::spawn_blocking(move || {
        // The object is durable before the record names it.
        let (object, size) = store.put_file(file.path())?;
        drop(file);
        let cand = Candidate {
            slot,
            object,
            mime: mime.into(),
            size,
            created: now_ms(),
            qa: None,
            qa_attempts: 0,
            url: None,
            remote_task: Some(remote),
            route: Some(route),
        };
        store.commit_replacing(&key, cand.clone(), reroll.as_deref())?;
        Ok::<_, nbbuild_cache::StoreError>(cand)
    })
    .await;
    match res {
        Ok(Ok(c)) => {
            ctx.last_progress
                .store(now_ms(), std::sync::atomic::Ordering::SeqCst);
            ctx.report.event(Event::CandidateDone {
                task: job.task.clone(),
                slot: job.slot,
            });

            Ok(c)
        }
        Ok(Err(e)) => {
            ctx.halt(&format!("the store cannot commit: {e}"));
            Err(format!("cannot store the candidate: {e}"))
        }
        Err(e) => Err(format!("cannot store the candidate: {e}")),
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;

    #[test]
    fn polls_densely_around_the_expected_finish_whatever_the_policy() {
        let l = Latencies::default();
        let p = Policy::default();
        assert_eq!(
            l.next_poll("m", Duration::ZERO, &p),
            None,
            "nothing seen yet"
        );
        l.seen("m", Duration::from_secs(2));
        // Wait until the expected finish, then a twentieth of it apart.
        assert_eq!(
            l.next_poll("m", Duration::from_millis(500), &p),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            l.next_poll("m", Duration::from_millis(1990), &p),
            Some(Duration::from_millis(100))
        );
        // Past one and a half times the expected latency: the default schedule.
        assert_eq!(l.next_poll("m", Duration::from_secs(4), &p), None);
        // A policy polling faster than 20 ms (benchmarks) never panics.
        let fast = Policy {
            poll_start: Duration::from_millis(1),
            ..Policy::default()
        };
        l.seen("fast", Duration::from_millis(10));
        assert_eq!(
            l.next_poll("fast", Duration::from_millis(10), &fast),
            Some(Duration::from_millis(1))
        );
    }
}
