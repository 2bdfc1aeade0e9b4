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

mod adopt;
mod fetch;
mod marks;
mod policy;
mod poll;

use adopt::{adopt, Looked, Outstanding};
use fetch::{commit, fetch};
use marks::{clear_mark, mark, record};
pub use policy::{now_ms, Policy};
pub use poll::Latencies;
use poll::{poll, Polled};

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

pub(super) enum Step {
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
pub(super) async fn generate(ctx: &Ctx, job: &CandidateJob) -> Result<Candidate, Failure> {
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
        let mut permit = Some(
            ctx.slots
                .clone()
                .acquire_owned(job.priority)
                .await
                .map_err(|_| fail(FailureKind::ApiError, attempt, "scheduler closed".into()))?,
        );
        // The cap's epoch this submission is sent in (see Limiter::backoff).
        let epoch = permit.as_ref().map(|p| p.epoch()).unwrap_or_default();
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
                        Looked::Adopted(id) => {
                            remote = Some((id, at));
                            drop(permit.take());
                            continue;
                        }
                        Looked::Absent | Looked::Unknown => clear_mark(ctx, job).await,
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
                        accepted(ctx, job, &mut permit);
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
                        let looked = adopt(ctx, job, sent_at, attempt).await?;
                        if let Looked::Adopted(id) = looked {
                            accepted(ctx, job, &mut permit);
                            (id, sent_at)
                        } else {
                            clear_mark(ctx, job).await;
                            drop(permit.take());
                            ctx.release(job.price);
                            let why = format!(
                                "{message} (no task of ours appeared at {})",
                                ctx.generator.title()
                            );
                            // Not created (the service's list holds no task of
                            // ours): like a 5xx to a submit, that said nothing
                            // about a generation, so it is sent again with a
                            // growing backoff and no attempt spent (--max-wait
                            // without progress ends it); three drops in a row
                            // failed a candidate on a bad tunnel day. Not
                            // findable (the list cannot be read): the one case
                            // that spends an attempt on no answer, so an unseen
                            // task is paid for a bounded number of times.
                            if matches!(looked, Looked::Absent) {
                                paced += 1;
                                let wait = ctx.policy.backoff(paced, None);
                                pace(ctx, job, attempt, &why, wait)
                                    .await
                                    .map_err(|(kind, m)| fail(kind, attempt, m))?;
                                continue;
                            }
                            if retry_later(ctx, job, &mut transient, attempt, &why, None).await {
                                continue;
                            }
                            return Err(fail(FailureKind::ApiError, attempt, why));
                        }
                    }
                    Err(e) => {
                        // G-Labs answered: no task was created.
                        drop(out);
                        clear_mark(ctx, job).await;
                        drop(permit.take());
                        ctx.release(job.price);
                        match on_error(ctx, &e, epoch) {
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
            // The service is done with it: its slot is free while the file
            // comes down and the store makes the candidate durable.
            Polled::Done(results) => match fetch_released(ctx, job, &results, &mut permit).await {
                Ok(bytes) => {
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
                    drop(permit.take());
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
                e => on_error(ctx, &e, epoch),
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
                drop(permit.take());
                let why = e.message();
                let transient_error = matches!(e, ApiError::Transient { .. });
                if transient_error
                    && retry_later(ctx, job, &mut transient, attempt, &why, None).await
                {
                    remote = Some((id, submitted));
                    continue;
                }
                if !transient_error {
                    on_error(ctx, &e, epoch); // stops the run for a dead server or a refused key
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
        drop(permit.take());
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

/// The result of a finished generation, its slot given back first: the
/// service's capacity is free once it reports done.
async fn fetch_released(
    ctx: &Ctx,
    job: &CandidateJob,
    results: &[String],
    permit: &mut Option<super::limiter::Permit>,
) -> Result<tempfile::NamedTempFile, (bool, String)> {
    drop(permit.take());
    fetch(ctx, job, results).await
}

/// A submission G-Labs accepted: counted, the cap may climb, progress made.
pub(super) fn accepted(ctx: &Ctx, job: &CandidateJob, permit: &mut Option<super::limiter::Permit>) {
    ctx.count_call(job.kind);
    ctx.report.event(Event::Accepted {
        task: job.task.clone(),
        slot: job.slot,
    });
    if let Some(p) = permit.as_mut() {
        ctx.slots.success(p);
    }
    ctx.last_progress
        .store(now_ms(), std::sync::atomic::Ordering::SeqCst);
}

/// Wait out backpressure for `wait` (capped at the largest backoff): no
/// attempt is spent. Err once `max_wait` passed without any progress in the
/// run.
pub(super) async fn pace(
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

/// Back off before another try after a transient failure, while the
/// budget of transient retries lasts and the run is not stopping. False: no
/// more tries.
pub(super) async fn retry_later(
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

/// What to do about an error to a request made in the cap's `epoch`.
pub(super) fn on_error(ctx: &Ctx, e: &ApiError, epoch: u64) -> Step {
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
            ctx.slots.backoff(epoch);
            Step::Pace {
                why: message.clone(),
                retry_after: *retry_after,
            }
        }
        ApiError::Permanent { kind, message } => Step::Fail(*kind, message.clone()),
    }
}
