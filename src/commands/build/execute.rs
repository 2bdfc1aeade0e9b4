//! Generating what the plan says is stale: the server (or the built-in
//! simulator) checked before anything is spent, the executor run with the
//! retry policy; and the outcome of a plan with nothing to generate.

use crate::error::{Error, ErrorKind, Result};
use crate::exec::runner::Policy;
use crate::exec::{ExecOptions, Executor, RunReport, TaskOutcome, TaskState};
use crate::generator::{ApiError, Generator, Unreachable};
use crate::glabs::Client;
use crate::models::Provider;
use crate::output::Layout;
use crate::plan::Status;
use crate::progress::{Event, Reporter};
use crate::repair::Repairer;
use crate::settings::{QaSetting, Settings};
use std::sync::Arc;
use std::time::Duration;

/// Generate what the plan says is stale, against the configured server (or
/// the built-in simulator).
#[allow(clippy::too_many_arguments)]
pub(super) async fn execute(
    s: &Settings,
    decider: &Arc<crate::plan::Decider>,
    store: &Arc<nbbuild_cache::Store>,
    plan: &crate::plan::Plan,
    report: Arc<dyn Reporter>,
    mirror: Option<Arc<dyn crate::mirror::Mirror>>,
    layout: &Layout,
    repair: Arc<Repairer>,
    remote: Option<Arc<crate::remote::Remote>>,
) -> Result<RunReport> {
    let calls = plan.image_calls + plan.video_calls;

    // Nothing stale: no server needed at all.
    let sim;
    let needs_sim = s.sim && (calls > 0 || matches!(s.qa, QaSetting::Sim));
    // With nothing to generate up front (a run only for QA reviews), a
    // configured server is still used: a flagged still is re-rolled there.
    let (base, key) = if calls == 0 && !needs_sim && s.server.is_none() {
        sim = None;
        (None, None)
    } else if s.sim {
        // One simulator speaks both protocols on one port.
        let h = crate::commands::sim::BuiltIn::start().await?;
        let url = h.url();
        sim = Some(h);
        (Some(url), None)
    } else {
        sim = None;
        match (&s.server, s.provider) {
            (Some(u), Provider::Glabs) => (Some(u.clone()), s.api_key.clone()),
            (Some(u), Provider::Google) => match &s.api_key {
                Some(k) => (Some(u.clone()), Some(k.clone())),
                None if calls > 0 => {
                    return Err(Error::usage(format!("{calls} call(s) to make on Google's Gemini API but no API key"))
                        .hint("set GEMINI_API_KEY (a key from Google AI Studio) or pass --api-key; --sim --provider google runs offline"))
                }
                None => (Some(u.clone()), None),
            },
            (None, _) => {
                return Err(Error::usage(format!("{calls} call(s) to make but no G-Labs server is configured"))
                    .hint("pass --server URL (or set GLABS_SERVER) with GLABS_API_KEY, --provider google with GEMINI_API_KEY, or --sim to use the built-in simulator"))
            }
        }
    };
    let generator: Arc<dyn Generator> = match (&base, s.provider) {
        (Some(base), Provider::Glabs) => Arc::new(
            Client::new(base, key)
                .map_err(|e| Error::internal(e.message()))?
                .with_catalog(s.catalog.clone()),
        ),
        (Some(base), Provider::Google) => Arc::new(
            crate::google::Client::new(base, key, s.catalog.clone())
                .map_err(|e| Error::internal(e.message()))?,
        ),
        (None, _) => Arc::new(Unreachable),
    };
    if calls > 0 {
        check_server(generator.as_ref()).await?;
    }
    let reviewer = s.qa.reviewer(base.as_deref());
    let stale_stills = plan
        .items
        .iter()
        .any(|i| i.kind == crate::compile::TaskKind::Image && matches!(i.status, Status::Stale(_)));
    if matches!(s.qa, QaSetting::Off { unconfigured: true }) && stale_stills {
        report.event(Event::Warn("visual QA is off: no reviewer is configured (set NBBUILD_QA_URL and NBBUILD_QA_MODEL, or --qa-command; see docs/qa.md)".into()));
    }
    let opts = ExecOptions {
        concurrency: s.concurrency as usize,
        critical_path_first: true,
        adaptive: true,
        policy: Policy {
            max_wait: s.max_wait,
            ..policy_from_env()
        },
        budget: s.budget,
        prices: s.prices.clone(),
        reviewer,
        qa_attempts: s.qa_attempts,
        mirror: mirror.map(|m| crate::exec::EagerMirror {
            mirror: m,
            wf: layout.wf.clone(),
            ver: layout.ver.clone(),
        }),
        repair: Some(repair),
        remote,
    };
    let exec = Executor::new(
        store.clone(),
        generator,
        &s.project.dir,
        report.clone(),
        opts,
    );
    report.event(Event::Start {
        tasks: plan.stale().count(),
        calls,
        credits: plan.credits,
        unit: plan.unit,
    });
    let ctx = exec.ctx.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctx.interrupt();
        }
    });
    let r = exec.run(decider.clone()).await;
    interrupt.abort();
    if let Some(h) = sim {
        h.shutdown().await;
    }
    Ok(r)
}

/// One clear error for a dead tunnel or a wrong key, before anything is spent.
pub(super) async fn check_server(client: &dyn Generator) -> Result<()> {
    let mut health = client.health().await;
    for wait in [200, 1000] {
        match health {
            Err(ApiError::Transient { .. } | ApiError::RateLimited { .. }) => {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                health = client.health().await;
            }
            _ => break,
        }
    }
    let google = client.route() == "google";
    match health {
        Ok(_) => Ok(()),
        Err(ApiError::Unauthorized) if google => Err(Error::new(ErrorKind::Environment, format!("Google's Gemini API at {} refused the API key", client.location()))
            .hint("check GEMINI_API_KEY (or --api-key): a key from Google AI Studio, for a project with the Gemini API enabled")),
        Err(ApiError::Unauthorized) => Err(Error::new(ErrorKind::Environment, format!("G-Labs at {} refused the API key", client.location()))
            .hint("check GLABS_API_KEY (or --api-key): it is the key shown in G-Labs' Webhook settings")),
        Err(e @ (ApiError::Down { .. } | ApiError::Exhausted { .. })) if google => Err(Error::new(ErrorKind::Environment, format!("Google's Gemini API is not usable at {}", client.location()))
            .cause(e.message())
            .hint("check the network and the project in Google AI Studio (billing, region), or build on the other route with --provider glabs")),
        Err(e @ ApiError::Down { .. }) => Err(Error::new(ErrorKind::Environment, format!("G-Labs is not reachable at {}", client.location()))
            .cause(e.message())
            .hint("is the G-Labs app running? A tunnel URL changes whenever the tunnel restarts: copy the new one into --server / GLABS_SERVER")),
        Err(e) => Err(Error::new(ErrorKind::Environment, format!("{} at {} is not healthy", client.title(), client.location())).cause(e.message()).hint("try again in a minute")),
    }
}

/// Retry timings. `NBBUILD_BACKOFF_MS` shortens the first backoff (tests and
/// demos against the simulator); the defaults suit the real service.
pub(super) fn policy_from_env() -> Policy {
    let mut p = Policy::default();
    if let Some(ms) = std::env::var("NBBUILD_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        p.backoff = Duration::from_millis(ms);
        p.backoff_max = Duration::from_millis(ms.saturating_mul(8).max(1));
    }
    p
}

/// The mirror the settings ask for, opened and checked (bucket reachable,
/// credentials accepted) before anything is spent.
pub(super) async fn open_mirror(s: &Settings) -> Result<Option<Arc<dyn crate::mirror::Mirror>>> {
    let m = crate::mirror::open(&s.mirror, &s.r2)
        .await
        .map_err(|e| mirror_error(&s.mirror, e))?;
    if let Some(m) = &m {
        m.check().await.map_err(|e| mirror_error(&s.mirror, e))?;
    }
    Ok(m.map(Arc::from))
}

pub(super) fn mirror_error(
    spec: &crate::mirror::MirrorSpec,
    e: crate::mirror::MirrorError,
) -> Error {
    let mut err = Error::env(format!("the {spec} mirror is not usable")).cause(e.message.clone());
    err.hint = e.hint.clone().or(Some("fix the mirror settings (docs/mirror.md), or pass --mirror none to keep local file:// URLs".into()));
    err
}

/// The run's outcome when nothing is stale: every task as the store holds it.
pub(super) fn settled_report(
    compiled: &crate::compile::Compiled,
    plan: &crate::plan::Plan,
    remote: Option<&crate::remote::Remote>,
) -> RunReport {
    let mut outcomes: Vec<TaskOutcome> = (0..compiled.tasks.len())
        .map(|_| TaskOutcome::new(TaskState::NotRun))
        .collect();
    for item in &plan.items {
        let n = compiled.tasks[item.task].params.candidates;
        let o = &mut outcomes[item.task];
        o.key = item.key.clone();
        if let Some(rec) = item.record.clone() {
            o.state = if crate::plan::judge(&rec, n).is_none() {
                TaskState::Fresh
            } else {
                TaskState::NotRun
            };
            o.candidates = rec.candidates.into_iter().filter(|c| c.slot < n).collect();
        }
        if let (Some(r), Some(k)) = (remote, &item.key) {
            if r.was_pulled(k) {
                o.note = crate::exec::TEAM_CACHE.into();
            }
        }
    }
    RunReport {
        outcomes,
        publish_failures: Vec::new(),
        image_calls: 0,
        video_calls: 0,
        qa_calls: 0,
        uploads: 0,
        credits: 0.0,
        interrupted: false,
        halted: None,
    }
}

/// With QA on, whether every stored still was judged by this reviewer
/// already (otherwise the run has reviews to make, even with nothing stale).
pub(super) fn qa_settled(
    s: &Settings,
    compiled: &crate::compile::Compiled,
    plan: &crate::plan::Plan,
) -> bool {
    let Some(id) = s.qa.id() else { return true };
    let judged = |c: &nbbuild_cache::Candidate| {
        c.qa.as_ref().is_some_and(|v| {
            (v.reviewer == id || v.reviewer == crate::qa::HUMAN_REVIEWER)
                && v.verdict != nbbuild_cache::Outcome::Unreviewed
        })
    };
    plan.items
        .iter()
        .filter(|i| {
            compiled.tasks[i.task].kind == crate::compile::TaskKind::Image
                && matches!(i.status, Status::Fresh)
        })
        .all(|i| {
            i.record
                .as_ref()
                .is_some_and(|r| r.candidates.iter().all(judged))
        })
}
