//! One task of a run, from the moment its inputs' picks are known: ask
//! the decider (again, with the live picks), settle it fresh from the store
//! or generate the slots it names, hand its pick down as soon as it is
//! known, and end with its outcome. QA of stored stills is here too: it
//! decides whether a stored task is still fresh.

use super::*;

/// The review of a stored object by `reviewer`: from the verdict cache when
/// this reviewer judged these bytes before, else asked (and cached unless
/// unreviewed). QA calls take no generation slot.
pub async fn review(ctx: &Ctx, reviewer: &dyn Reviewer, object: &str) -> Review {
    let id = reviewer.id();
    if let Ok(Some(v)) = ctx.store.verdict(object, &id) {
        return Review::from_verdict(&v);
    }
    let bytes = match ctx.store.read_object(object, true) {
        Ok(b) => b,
        Err(e) => return Review::unreviewed(format!("cannot read the candidate: {e}")),
    };
    ctx.qa_calls.fetch_add(1, Ordering::SeqCst);
    let r = reviewer
        .review(&bytes, &ctx.store.object_path(object))
        .await;
    if r.is_cacheable() {
        let _ = ctx
            .store
            .put_verdict(object, &id, &r.to_verdict(&id, runner::now_ms()));
    }
    r
}

/// Review the stored stills of a task that this reviewer has not judged
/// (QA newly on, or another reviewer); true when any verdict was written.
async fn review_stored(ctx: &Ctx, key: &str, rec: &TaskRecord, n: u32) -> bool {
    let Some(reviewer) = ctx.reviewer.as_ref() else {
        return false;
    };
    let id = reviewer.id();
    let mut wrote = false;
    for c in rec.candidates.iter().filter(|c| c.slot < n) {
        // A person's verdict (the review page) wins over automatic QA.
        if c.qa.as_ref().is_some_and(|v| {
            (v.reviewer == id || v.reviewer == crate::qa::HUMAN_REVIEWER)
                && v.verdict != nbbuild_cache::Outcome::Unreviewed
        }) {
            continue;
        }
        let r = review(ctx, reviewer.as_ref(), &c.object).await;
        let v = r.to_verdict(&id, runner::now_ms());
        let store = ctx.store.clone();
        let (key, slot) = (key.to_string(), c.slot);
        let _ = tokio::task::spawn_blocking(move || {
            store.update_candidate(&key, slot, |cand| cand.qa = Some(v))
        })
        .await;
        wrote = true;
    }
    wrote
}

/// Ask the decider about task `i` with the live picks (store reads and
/// file hashes run on a blocking thread, never on the runtime's workers).
async fn decide(decider: &Arc<Decider>, i: usize, picks: &BTreeMap<usize, String>) -> PlanItem {
    let (d, p) = (decider.clone(), picks.clone());
    match tokio::task::spawn_blocking(move || d.decide(i, &p, &BTreeMap::new())).await {
        Ok(item) => item,
        Err(e) => {
            let mut item = decider.decide(i, picks, &BTreeMap::new());
            item.status = Status::Blocked {
                why: format!("internal error while deciding: {e}"),
            };
            item
        }
    }
}

pub(super) async fn run_task(
    ctx: &Ctx,
    decider: &Arc<Decider>,
    i: usize,
    picks: BTreeMap<usize, String>,
    priority: u64,
    report: &mpsc::UnboundedSender<Completion>,
) -> TaskOutcome {
    let task = &decider.compiled.tasks[i];
    let skip = decider.skip(i);
    // What it needs: the same decision the plan made, now with the live picks.
    let n = task.params.candidates;
    let mut item = decide(decider, i, &picks).await;
    if skip.is_none() && task.kind == TaskKind::Image && ctx.reviewer.is_some() {
        if let (Some(key), Some(rec)) = (item.key.clone(), item.record.clone()) {
            if review_stored(ctx, &key, &rec, n).await {
                item = decide(decider, i, &picks).await;
            }
        }
    }
    let current = |rec: Option<&TaskRecord>| {
        rec.map(|r| {
            r.candidates
                .iter()
                .filter(|c| c.slot < n)
                .cloned()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    let reason = match &item.status {
        Status::Blocked { why } => {
            return failed(item.key, FailureKind::ReferenceUnavailable, why.clone())
        }
        Status::Skipped { why } => {
            let complete = item.record.as_ref().is_some_and(|r| judge(r, n).is_none());
            let mut o = TaskOutcome::new(if complete {
                TaskState::Fresh
            } else {
                TaskState::NotRun
            });
            o.key = item.key.clone();
            o.candidates = current(item.record.as_ref());
            if !complete {
                o.note = why.clone();
            }
            return o;
        }
        Status::Fresh => {
            let mut o = fresh_outcome(
                item.key.clone().unwrap_or_default(),
                current(item.record.as_ref()),
            );
            if let (Some(r), Some(k)) = (&ctx.remote, &item.key) {
                if r.was_pulled(k) {
                    o.note = TEAM_CACHE.into();
                }
            }
            // An input of an --only task kept as stored although incomplete.
            if item.record.as_ref().is_some_and(|r| judge(r, n).is_some()) {
                o.state = TaskState::NotRun;
                o.note = "input of an --only task: kept as stored".into();
            }
            return o;
        }
        Status::Stale(reason) => reason.clone(),
    };
    let mut reason = reason;
    let (Some(key), Some(preimage)) = (item.key.clone(), item.preimage.clone()) else {
        return failed(
            None,
            FailureKind::Internal,
            "the key of a task whose inputs exist is unknown".into(),
        );
    };
    let label = task.label();
    if ctx.stopping() {
        let mut o = TaskOutcome::new(TaskState::NotRun);
        o.key = Some(key);
        o.candidates = current(item.record.as_ref());
        o.note = ctx.stop_reason();
        return o;
    }
    let store = ctx.store.clone();
    let (k, l, v) = (key.clone(), label.clone(), preimage.to_value());
    let mut rec = match tokio::task::spawn_blocking(move || store.ensure_task(&k, &l, &v)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            ctx.halt(&format!("the store failed: {e}"));
            return failed(Some(key), FailureKind::Store, format!("store: {e}"));
        }
        Err(e) => return failed(Some(key), FailureKind::Internal, e.to_string()),
    };
    let _ = report.send(Completion::Generating(i));
    // Input bytes, then one job per slot the decider says to generate. A
    // re-roll replaces each slot only when its new candidate is committed, so
    // a failed re-roll leaves what was there.
    let mut refs: Vec<RefImage> = Vec::new();
    for inp in &task.inputs {
        let r = match &inp.source {
            InputSource::File(p) => ctx.inputs.file_bytes(p),
            InputSource::Url(u) => ctx.inputs.url_bytes(u).await,
            InputSource::Task(d) => {
                ctx.inputs
                    .object_bytes(&picks[d], &format!("input-{}.png", inp.slot))
                    .await
            }
        };
        match r {
            Ok(r) => refs.push(r),
            Err(m) => return failed(Some(key), FailureKind::ReferenceUnavailable, m),
        }
    }
    // The team cache, just before the first paid call: pulled if its
    // record landed since the plan, else claimed (or waited for while
    // another machine holds a live claim on it).
    let mut claim = None;
    if let (Some(remote), false) = (&ctx.remote, matches!(reason, Reason::Forced)) {
        let want = crate::remote::pull::Want {
            key: key.clone(),
            label: format!("{} {}", task.kind.as_str(), label),
            preimage: preimage.to_value(),
            candidates: n,
        };
        match remote
            .before_paying(&ctx.store, &want, &|| ctx.stopping())
            .await
        {
            crate::remote::pull::Gate::Build(c) => claim = c,
            crate::remote::pull::Gate::Pulled => {
                let again = decide(decider, i, &picks).await;
                match (&again.status, again.record.clone()) {
                    (Status::Fresh, _) => {
                        let mut o = fresh_outcome(key, current(again.record.as_ref()));
                        o.note = TEAM_CACHE.into();
                        return o;
                    }
                    (Status::Stale(r), Some(newer)) => {
                        reason = r.clone();
                        rec = newer;
                    }
                    _ => {}
                }
            }
        }
    }
    let request = Arc::new(GenInput::new(task, refs));
    let timeout = Duration::from_millis(task.params.timeout_ms);
    let forced = matches!(reason, Reason::Forced);
    // One history set per re-roll, named by when it started.
    let reroll = forced.then(|| format!("re-roll (--only) {}", runner::now_ms()));
    let mut jobs = Vec::new();
    for slot in slots_to_generate(&reason, Some(&rec), n) {
        jobs.push(runner::run(
            ctx,
            CandidateJob {
                task: label.clone(),
                key: key.clone(),
                slot,
                kind: task.kind,
                model: task.params.model.clone(),
                price: ctx.prices.of(task),
                timeout,
                request: request.clone(),
                resume: rec.in_flight_for(slot).cloned(),
                qa_numbering: rec
                    .candidate(slot)
                    .filter(|c| !forced && is_flagged(c))
                    .map_or(0, |c| c.qa_attempts + 1),
                reroll: reroll.clone(),
                submitting: rec.submitting_for(slot).map(|m| m.at),
                priority,
            },
        ));
    }
    // Slots finish in any order; consumers start as soon as the pick is
    // known: the first slot, in order, that is held or done and not flagged.
    let generating: Vec<u32> = slots_to_generate(&reason, Some(&rec), n);
    let mut done: BTreeMap<u32, Option<nbbuild_cache::Candidate>> = BTreeMap::new();
    let mut pending: futures_util::stream::FuturesUnordered<_> = jobs
        .into_iter()
        .zip(generating.iter().copied())
        .map(|(job, slot)| async move { (slot, job.await) })
        .collect();
    let mut results = Vec::new();
    let mut pick_sent = false;
    while let Some((slot, r)) = futures_util::StreamExt::next(&mut pending).await {
        let clean = match &r {
            Ok((c, None)) => Some(c.clone()),
            _ => None,
        };
        done.insert(slot, clean);
        results.push(r);
        if pick_sent {
            continue;
        }
        let mut known = None;
        for s in 0..n {
            match (generating.contains(&s), done.get(&s)) {
                (false, _) => match rec.candidate(s) {
                    Some(c) if !is_flagged(c) => {
                        known = Some(c.clone());
                        break;
                    }
                    _ => continue,
                },
                (true, Some(Some(c))) => {
                    known = Some(c.clone());
                    break;
                }
                (true, Some(None)) => continue,
                (true, None) => break,
            }
        }
        if let Some(c) = known {
            let _ = report.send(Completion::Pick(i, c.object.clone()));
            pick_sent = true;
        }
    }
    let mut failures = Vec::new();
    for r in results {
        if let Ok((_, Some(f))) = r {
            failures.push(f);
        } else if let Err(f) = r {
            ctx.report.event(Event::CandidateFailed {
                task: label.clone(),
                slot: f.candidate.unwrap_or(0),
                why: f.message.clone(),
            });
            failures.push(f);
        }
    }
    let store = ctx.store.clone();
    let k = key.clone();
    let rec = tokio::task::spawn_blocking(move || store.task(&k).ok().flatten())
        .await
        .ok()
        .flatten()
        .unwrap_or(rec);
    // A candidate out of QA attempts is reported (qa_exhausted) but stays in
    // the gallery: the task is built and its consumers go on.
    let mut o = TaskOutcome::new(
        if failures.iter().all(|f| f.kind == FailureKind::QaExhausted) {
            TaskState::Built
        } else {
            TaskState::Failed
        },
    );
    // Up to the team cache in the background once complete; the claim goes
    // after the record (or now, when there is nothing to write).
    if let Some(remote) = &ctx.remote {
        if o.state == TaskState::Built && judge(&rec, n).is_none() {
            remote.push_soon(&ctx.store, &key, n, claim.take());
        } else if let Some(c) = claim.take() {
            remote.release_soon(c);
        }
    }
    o.key = Some(key);
    o.candidates = current(Some(&rec));
    o.note = reason.describe();
    // Not started because the run stopped: not a failure of the task.
    if !failures.is_empty() && failures.iter().all(|f| f.kind == FailureKind::Halted) {
        o.state = TaskState::NotRun;
        o.note = failures[0].message.clone();
        failures.clear();
    }
    o.failures = failures;
    o
}
/// The note of a task made fresh by a record from the team cache.
pub const TEAM_CACHE: &str = "fresh (team cache)";

fn fresh_outcome(key: String, candidates: Vec<nbbuild_cache::Candidate>) -> TaskOutcome {
    let mut o = TaskOutcome::new(TaskState::Fresh);
    o.key = Some(key);
    o.candidates = candidates;
    o
}

pub(super) fn failed(key: Option<String>, kind: FailureKind, message: String) -> TaskOutcome {
    let mut o = TaskOutcome::new(TaskState::Failed);
    o.key = key;
    o.failures.push(Failure {
        candidate: None,
        kind,
        attempts: 0,
        message,
    });
    o
}
