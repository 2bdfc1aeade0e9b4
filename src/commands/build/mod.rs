//! `nbbuild build` (the default command): plan, say what it will spend,
//! generate what is stale, write the outputs. This file is the command's
//! course from settings to exit code; `execute.rs` generates, `say.rs`
//! holds what the build prints.

mod execute;
mod say;

use execute::{execute, open_mirror, qa_settled, settled_report};
use say::{blocked_references, replay, report_repairs, summary_text};

use super::plan::{make_decider, print_plan};
use crate::cli::BuildArgs;
use crate::error::{Error, Result};
use crate::exec::TaskState;
use crate::holder::live::{Live, LiveReporter};
use crate::holder::server::Holder;
use crate::output::Layout;
use crate::plan::Status;
use crate::progress::{Event, Fancy, Plain, Reporter, Silent};
use crate::repair::Repairer;
use crate::settings::Settings;
use serde_json::json;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a caller running a build inside its own process (`nbbuild review`'s
/// re-roll) can hand in; `Hooks::default()` is a plain `nbbuild` run.
#[derive(Default)]
pub struct Hooks {
    /// An open store to use instead of opening one (the caller keeps reading it).
    pub store: Option<Arc<nbbuild_cache::Store>>,
    /// Progress goes here instead of the terminal.
    pub reporter: Option<Arc<dyn Reporter>>,
    /// Called with the plan before anything is spent; an error stops the run
    /// (a quote that no longer matches what would be spent).
    pub check_plan: Option<PlanCheck>,
}

/// A check of the plan a build is about to run.
pub type PlanCheck = Box<
    dyn Fn(&Settings, &crate::compile::Compiled, &crate::plan::Plan) -> Result<()> + Send + Sync,
>;

pub fn run(args: &BuildArgs) -> Result<i32> {
    run_with(args, &Hooks::default())
}

pub fn run_with(args: &BuildArgs, hooks: &Hooks) -> Result<i32> {
    if args.dry_run {
        return super::plan::run(args);
    }
    let started = Instant::now();
    let phase = timings(started);
    let s = Settings::resolve(args)?;
    phase("read and validate settings");
    // Nothing to do since the last build said so, and nothing that decides
    // changed since: say it again, without compiling or planning
    // (uptodate.rs).
    let stamp_inputs = (hooks.store.is_none()
        && hooks.reporter.is_none()
        && hooks.check_plan.is_none()
        && crate::uptodate::applies(&s))
    .then(|| crate::uptodate::inputs(args, &s));
    let layout = Layout::new(&s.out, &s.project.flow.name);
    let mut opened = None;
    // A store that cannot be opened now (a build in another terminal holds
    // it) is left for after validation, so a broken flow is said first.
    if let Some((inputs, Ok(store))) = stamp_inputs.as_ref().map(|i| (i, s.open_store())) {
        phase("open the store");
        for n in store.notices() {
            eprintln!("note: {n}");
        }
        if let Some(stamp) = crate::uptodate::check(&store, inputs, &layout) {
            phase("up to date: the last build's stamp holds");
            let code = replay(&s, &store, stamp, started);
            phase("say it again and log the run");
            drop(store);
            phase("close the store");
            return code;
        }
        opened = Some(Arc::new(store));
    }
    let (compiled, findings) = s.compile_saying()?;
    let compiled = Arc::new(compiled);
    phase("parse, validate, compile");
    let s = s.with_only(&compiled)?;
    let store = match (&hooks.store, opened) {
        (Some(st), _) => st.clone(),
        (None, Some(st)) => st,
        (None, None) => {
            let st = Arc::new(s.open_store()?);
            phase("open the store");
            for n in st.notices() {
                eprintln!("note: {n}");
            }
            st
        }
    };
    // Other processes read the store through this one while it builds
    // (`nbbuild status`, `plan`, `cache ls`...).
    let live = Arc::new(Mutex::new(Live::new(
        &compiled,
        &s.prices,
        &s.project.flow_path.display().to_string(),
        s.concurrency,
    )));
    let _holder = match Holder::start(store.clone(), Some(live.clone())) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("note: other commands cannot read the store while this build runs: {e}");
            None
        }
    };
    let set_phase = |p: &'static str| live.lock().unwrap_or_else(|e| e.into_inner()).phase(p);
    let terminal: Arc<dyn Reporter> = if let Some(r) = &hooks.reporter {
        r.clone()
    } else if s.json && s.quiet {
        Arc::new(Silent)
    } else if std::io::stderr().is_terminal() && !s.no_progress && !s.quiet {
        Arc::new(Fancy::new())
    } else {
        Arc::new(Plain {
            verbose: s.verbose,
            quiet: s.quiet,
        })
    };
    let report: Arc<dyn Reporter> = Arc::new(LiveReporter {
        inner: terminal,
        live: live.clone(),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
    // The team cache, when configured: its hits are pulled into the store
    // before the plan is made, so the plan stays a pure look at the store.
    let remote = match s.remote()? {
        Some(cfg) => {
            let _rt = runtime.enter();
            let (w, i) = (report.clone(), report.clone());
            Some(crate::remote::Remote::new(
                cfg,
                Arc::new(move |m| w.event(Event::Warn(m))),
                Arc::new(move |m| i.event(Event::Info(m))),
            ))
        }
        None => None,
    };

    // The plan comes first: what will run, why, and what it will cost.
    let decider = make_decider(&s, &compiled, store.clone(), Some(&store));
    if let Some(r) = &remote {
        let pulled = runtime.block_on(r.pull_for_plan(&store, &decider));
        if !pulled.is_empty() && !s.quiet {
            report.event(Event::Info(format!(
                "team cache: {} task(s) pulled from {}: fresh (team cache)",
                pulled.len(),
                r.cfg.url
            )));
        }
        phase("pull from the team cache");
    }
    let plan = decider.plan();
    live.lock().unwrap_or_else(|e| e.into_inner()).quote(&plan);
    phase("plan");
    let mut printed = Vec::new();
    print_plan(&compiled, &plan, false, &mut printed);
    if !s.quiet {
        eprint!("{}", String::from_utf8_lossy(&printed));
    }
    // References before money: one that cannot be had is said once, with
    // the tasks it blocks, before any call.
    let blocked = blocked_references(&compiled, &plan);
    for (why, tasks) in &blocked {
        eprintln!(
            "error: {why}\n  blocks: {}\n  hint: fix the path or URL in the flow (or make the server reachable); {}",
            tasks.join(", "),
            if s.fail_fast {
                "--fail-fast: nothing is built"
            } else {
                "every other task is still built (--fail-fast stops instead)"
            }
        );
    }
    if s.fail_fast && !blocked.is_empty() {
        return Err(Error::usage(format!(
            "{} reference(s) cannot be had; nothing was spent",
            blocked.len()
        ))
        .hint("fix them and rerun, or drop --fail-fast to build the tasks they do not block"));
    }
    if let Some(check) = &hooks.check_plan {
        check(&s, &compiled, &plan)?;
    }
    if let Some(budget) = s.budget {
        if plan.credits > budget + 1e-9 {
            return Err(Error::usage(format!(
                "the plan costs about {}, over the budget of {}",
                s.prices.format(plan.credits),
                s.prices.format(budget)
            ))
            .hint("raise --budget, or build part of the flow with --only / --mode images"));
        }
    }

    // Every stored object handed on is verified; a rotten one is repaired
    // from a good copy before anything is paid (repair.rs).
    let repairer = Arc::new(Repairer::new(store.clone(), Some(layout.clone())));
    let (run_report, published, settled) = runtime.block_on(async {
        // The mirror is checked before anything is spent.
        let mirror = open_mirror(&s).await?;
        // Nothing to generate: the outcome is what the store holds; no
        // server, no scheduler.
        let settled = plan
            .items
            .iter()
            .all(|i| matches!(i.status, Status::Fresh | Status::Skipped { .. }))
            && qa_settled(&s, &compiled, &plan);
        set_phase("generating");
        let mut run_report = if settled {
            settled_report(&compiled, &plan, remote.as_deref())
        } else {
            execute(
                &s,
                &decider,
                &store,
                &plan,
                report.clone(),
                mirror.clone(),
                &layout,
                repairer.clone(),
                remote.clone(),
            )
            .await?
        };
        // What the team cache still has to receive (bounded by its short
        // timeouts and its breaker).
        if let Some(r) = &remote {
            r.finish().await;
        }
        report.finish();
        set_phase("publishing");
        let published = match &mirror {
            Some(m) => Some(
                crate::mirror::publish::publish(
                    &store,
                    m.as_ref(),
                    &repairer,
                    &s.project,
                    &compiled,
                    &mut run_report,
                    &layout,
                    s.ref_image.as_deref(),
                )
                .await,
            ),
            None => None,
        };
        Ok::<_, Error>((run_report, published, settled))
    })?;
    phase("generate and publish");
    drop(runtime);
    for f in &run_report.publish_failures {
        eprintln!("warning: {f}");
    }

    // Outputs, for everything that is done.
    set_phase("writing outputs");
    let urls = match &published {
        Some(p) => crate::output::Urls {
            objects: p.objects.clone(),
            refs: p.refs.clone(),
            ref_image: s.ref_image.clone(),
        },
        None => crate::output::Urls::default(),
    };
    // Outputs that would come out as the last build left them are not
    // written again (output/fingerprint.rs).
    let work_done = run_report.image_calls + run_report.video_calls + run_report.qa_calls > 0;
    let mut records: Vec<Option<nbbuild_cache::TaskRecord>> = vec![None; compiled.tasks.len()];
    if work_done {
        for (t, o) in run_report.outcomes.iter().enumerate() {
            records[t] = o.key.as_deref().and_then(|k| store.task(k).ok().flatten());
        }
    }
    let planned: std::collections::HashMap<usize, &nbbuild_cache::TaskRecord> = plan
        .items
        .iter()
        .filter_map(|i| Some((i.task, i.record.as_ref()?)))
        .collect();
    let record_of = |t: usize| {
        if work_done {
            records[t].as_ref()
        } else {
            planned.get(&t).copied()
        }
    };
    let fingerprint = crate::output::fingerprint::of(
        &s.project.source_hash,
        &compiled,
        &run_report,
        &layout,
        &urls,
        &record_of,
    );
    phase("fingerprint the outputs");
    let unchanged = (!work_done)
        .then(|| crate::output::fingerprint::unchanged(&store, &layout, &fingerprint))
        .flatten();
    let outputs_as_left = unchanged.is_some();
    let written = match unchanged {
        Some(w) => {
            phase("outputs unchanged since the last build: not written again");
            w
        }
        None => {
            let w = crate::output::write(&store, &repairer, &s.project.flow, &compiled, &run_report, &layout, &urls, chrono::Local::now()).map_err(|e| {
                Error::io(format!("cannot write the outputs under {}", s.out.display()), &e).cause("every candidate that arrived is kept in the store: rerunning writes the outputs without new calls")
            })?;
            crate::output::fingerprint::remember(&store, &layout, &fingerprint, &w);
            w
        }
    };
    phase("write outputs");
    let repairs = repairer.outcomes();
    report_repairs(&repairs, s.quiet);
    let count = |st: TaskState| run_report.outcomes.iter().filter(|o| o.state == st).count();
    let failed = count(TaskState::Failed);
    let skipped = count(TaskState::Skipped);
    let summary = serde_json::to_value(crate::schema::Summary {
        schema: (),
        flow: s.project.flow_path.display().to_string(),
        output: written.flow.as_ref().map(|p| p.display().to_string()),
        errors: written.errors.as_ref().map(|p| p.display().to_string()),
        tasks: crate::schema::SummaryTasks {
            total: compiled.tasks.len(),
            fresh: count(TaskState::Fresh),
            built: count(TaskState::Built),
            failed,
            skipped,
        },
        calls: crate::schema::SummaryCalls {
            image: run_report.image_calls,
            video: run_report.video_calls,
            qa: run_report.qa_calls,
        },
        uploads: published.as_ref().map(|p| p.uploaded + run_report.uploads),
        provider: s.provider.as_str(),
        unit: s.prices.unit.as_str(),
        credits: super::plan::credits_of(s.prices.unit, run_report.credits),
        usd: super::plan::usd_of(s.prices.unit, run_report.credits),
        repairs: serde_json::to_value(&repairs).unwrap_or_default(),
        remote: remote.as_ref().map(|r| r.summary()),
        duration_ms: started.elapsed().as_millis() as u64,
    })
    .map_err(|e| Error::internal(e.to_string()))?;
    live.lock()
        .unwrap_or_else(|e| e.into_inner())
        .finish(summary.clone());
    let _ = store.append_run(&json!({"at": crate::exec::runner::now_ms(), "summary": summary}));
    phase("record the run");
    let summary_text = summary_text(
        &s.prices,
        &run_report,
        &written,
        &layout,
        compiled.tasks.len(),
        published.as_ref(),
    );
    if !s.quiet {
        eprint!("{summary_text}");
    }
    if s.json {
        println!(
            "{}",
            serde_json::to_string(&summary).map_err(|e| Error::internal(e.to_string()))?
        );
    }
    let not_run_by_stop = run_report.halted.is_some() && count(TaskState::NotRun) > 0;
    // A candidate out of QA attempts counts as a failure (its task is built).
    let any_failure =
        run_report.outcomes.iter().any(|o| !o.failures.is_empty()) || repairer.lost() > 0;
    let code = if failed + skipped > 0 || any_failure || not_run_by_stop || run_report.interrupted {
        1
    } else {
        0
    };
    // A build that had nothing to do leaves its stamp, for the next one to
    // say the same without planning (uptodate.rs). Its last store write is
    // the run logged above: any later write forgets the stamp.
    let nothing_to_do = settled
        && !work_done
        && outputs_as_left
        && blocked.is_empty()
        && repairs.is_empty()
        && run_report.publish_failures.is_empty()
        && run_report.halted.is_none();
    if let (Some(inputs), true) = (stamp_inputs, code == 0 && nothing_to_do) {
        printed.extend_from_slice(summary_text.as_bytes());
        crate::uptodate::remember(
            &store,
            &crate::uptodate::Stamp {
                inputs,
                files: crate::uptodate::files(&s, &compiled),
                findings,
                printed: String::from_utf8_lossy(&printed).into_owned(),
                summary,
            },
        );
    }
    Ok(code)
}

/// `NBBUILD_TIMINGS=1`: print how long each phase of the build took.
fn timings(started: Instant) -> impl Fn(&str) {
    let on = std::env::var_os("NBBUILD_TIMINGS").is_some_and(|v| v != "0");
    let last = std::cell::Cell::new(started);
    move |what: &str| {
        if on {
            let now = Instant::now();
            eprintln!(
                "timing: {:>7.1} ms  {what}",
                (now - last.get()).as_secs_f64() * 1e3
            );
            last.set(now);
        }
    }
}
