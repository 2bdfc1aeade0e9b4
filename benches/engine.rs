//! Engine benchmarks against the simulator. Run with `cargo bench --bench engine`.
//!
//! 1. Executor overhead: 200 tasks (100 stills, 100 clips) at concurrency 5
//!    against a simulator with a fixed latency; the makespan as a ratio to the
//!    lower bound max(critical path, total calls x latency / cap).
//! 2. No-op cost: on a flow of 2,000 generation nodes whose 8,000 candidates
//!    are all in the store, `plan` and a no-op `build` as ratios to
//!    `validate` on the same file (the real binary, median of 5 runs).
//!
//! Figures go to docs/performance.md. Nothing here is asserted.

use nbbuild::compile::{compile, CompileOptions};
use nbbuild::exec::runner::Policy;
use nbbuild::exec::{ExecOptions, Executor};
use nbbuild::flow::Flow;
use nbbuild::progress::Silent;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn compiled(dir: &Path, scenes: usize, candidates: u32) -> (Flow, nbbuild::compile::Compiled) {
    let text = nbbuild::synth::flow(scenes, "refs/avatar.png").to_string();
    std::fs::write(dir.join("bench.nbflow"), &text).unwrap();
    let flow = Flow::parse(&text).unwrap();
    let exists = |_: &str| true;
    let c = compile(
        &flow,
        &CompileOptions {
            candidates,
            ref_image: None,
            file_exists: &exists,
        },
    )
    .unwrap();
    (flow, c)
}

fn setup_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("refs")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/refs/avatar.png"),
        dir.path().join("refs/avatar.png"),
    )
    .unwrap();
    dir
}

/// The simulator on a loopback port: these latencies, this many slots, and
/// at most `capacity` tasks held (a 429 beyond).
fn start_sim(
    rt: &tokio::runtime::Runtime,
    image_ms: u64,
    video_ms: u64,
    slots: usize,
    capacity: Option<usize>,
) -> nbbuild_sim::SimHandle {
    rt.block_on(nbbuild_sim::start(
        nbbuild_sim::SimConfig {
            image_latency_ms: image_ms,
            video_latency_ms: video_ms,
            slots,
            capacity,
            ..Default::default()
        },
        0,
    ))
    .unwrap()
}

async fn run_all(
    dir: &Path,
    c: nbbuild::compile::Compiled,
    sim_url: &str,
    policy: Policy,
) -> (Duration, u64) {
    run_ordered(dir, c, sim_url, policy, true).await
}

async fn run_ordered(
    dir: &Path,
    c: nbbuild::compile::Compiled,
    sim_url: &str,
    policy: Policy,
    critical_path_first: bool,
) -> (Duration, u64) {
    run_with(dir, c, sim_url, policy, critical_path_first, true).await
}

async fn run_with(
    dir: &Path,
    c: nbbuild::compile::Compiled,
    sim_url: &str,
    policy: Policy,
    critical_path_first: bool,
    adaptive: bool,
) -> (Duration, u64) {
    let store = Arc::new(nbbuild_cache::Store::open(&dir.join(".nbbuild")).unwrap());
    let client: Arc<dyn nbbuild::generator::Generator> =
        Arc::new(nbbuild::glabs::Client::new(sim_url, None).unwrap());
    let opts = ExecOptions {
        concurrency: 5,
        critical_path_first,
        adaptive,
        policy,
        budget: None,
        prices: Default::default(),
        reviewer: None,
        qa_attempts: 0,
        mirror: None,
        repair: None,
        remote: None,
    };
    let view = nbbuild::commands::plan::StoreView::new(
        store.clone(),
        dir.to_path_buf(),
        Default::default(),
    );
    let decider = Arc::new(nbbuild::plan::Decider::new(
        Arc::new(c),
        Arc::new(view),
        nbbuild::plan::PlanOptions::default(),
    ));
    let exec = Executor::new(store, client, dir, Arc::new(Silent), opts);
    let t = Instant::now();
    let r = exec.run(decider).await;
    (t.elapsed(), r.image_calls + r.video_calls)
}

fn overhead(rt: &tokio::runtime::Runtime, latency_ms: u64) {
    let dir = setup_dir();
    let (_, c) = compiled(dir.path(), 100, 1);
    // Critical path: anchored still -> still -> clip, one latency each.
    let mut depth = vec![0u32; c.tasks.len()];
    for &i in &c.order {
        depth[i] = c.tasks[i].deps().map(|d| depth[d]).max().unwrap_or(0) + 1;
    }
    let critical = *depth.iter().max().unwrap() as u64 * latency_ms;
    let sim = start_sim(rt, latency_ms, latency_ms, 5, None);
    let (took, calls) = rt.block_on(run_all(dir.path(), c, &sim.url(), Policy::default()));
    let bound = critical.max(calls * latency_ms / 5);
    println!(
        "| {latency_ms} ms | {calls} | {} ms | {} ms | {:.0} ms | {:.2} |",
        critical,
        bound,
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3 / bound as f64
    );
    rt.block_on(sim.shutdown());
}

/// Issue 11's flow: a chain of 10 anchored stills, each animated into a
/// clip, beside 20 independent stills; 4 candidates, concurrency 5, 200 ms
/// per still and 2 s per clip. Makespan over max(critical path, work / cap),
/// first-come order against critical-path order.
fn chain(rt: &tokio::runtime::Runtime) {
    let (still, clip) = (200u64, 2000u64);
    for critical_first in [false, true] {
        let dir = setup_dir();
        let c = nbbuild::synth::compile_chain(10, 20, 4);
        let (stills, clips) = c.tasks.iter().fold((0u64, 0u64), |(s, v), t| match t.kind {
            nbbuild::compile::TaskKind::Image => (s + 1, v),
            nbbuild::compile::TaskKind::Video => (s, v + 1),
        });
        let work = 4 * (stills * still + clips * clip);
        // The chain's stills one after another (each consumer starts on its
        // input's first candidate), then the last clip.
        let critical = 10 * still + clip;
        let bound = critical.max(work / 5);
        let sim = start_sim(rt, still, clip, 5, None);
        let (took, calls) = rt.block_on(run_ordered(
            dir.path(),
            c,
            &sim.url(),
            Policy::default(),
            critical_first,
        ));
        println!(
            "| {} | {stills} stills + {clips} clips | {calls} | {bound} ms | {:.0} ms | {:.2} |",
            if critical_first {
                "critical path first"
            } else {
                "first come, first served"
            },
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3 / bound as f64
        );
        rt.block_on(sim.shutdown());
    }
}

/// Issue 11.5: a G-Labs that holds 3 tasks at most (`--capacity 3`, a 429
/// with `Retry-After: 1` beyond it) and `--concurrency 5`: 60 independent
/// stills of 300 ms, one candidate each. The share of submissions answered
/// 429 and the makespan over the capacity-3 lower bound (work / 3), with a
/// fixed cap of 5 against the adaptive one.
fn capacity(rt: &tokio::runtime::Runtime) {
    let still = 300u64;
    for adaptive in [false, true] {
        let dir = setup_dir();
        let c = nbbuild::synth::compile_chain(0, 60, 1);
        let bound = c.tasks.len() as u64 * still / 3;
        let sim = start_sim(rt, still, still, 3, Some(3));
        let (took, calls) = rt.block_on(run_with(
            dir.path(),
            c,
            &sim.url(),
            Policy::default(),
            true,
            adaptive,
        ));
        let st = rt.block_on(async {
            reqwest::get(format!("{}/sim/stats", sim.url()))
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        });
        let refused = st["rate_limited"].as_u64().unwrap_or(0);
        println!(
            "| {} | {calls} | {refused} | {:.0}% | {bound} ms | {:.0} ms | {:.2} |",
            if adaptive { "adaptive" } else { "fixed at 5" },
            100.0 * refused as f64 / (calls + refused) as f64,
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3 / bound as f64
        );
        rt.block_on(sim.shutdown());
    }
}

fn median(cmd: &mut dyn FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..5).map(|_| cmd()).collect();
    v.sort();
    v[2]
}

fn time_binary(dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let st = Command::new(env!("CARGO_BIN_EXE_nbbuild"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "nbbuild {args:?} failed");
    t.elapsed()
}

fn noop(rt: &tokio::runtime::Runtime, scenes: usize) {
    let dir = setup_dir();
    let (_, c) = compiled(dir.path(), scenes, 4);
    let tasks = c.tasks.len();
    let sim = start_sim(rt, 0, 0, 5, None);
    let fill = Policy {
        poll_start: Duration::from_millis(1),
        ..Policy::default()
    };
    let (took, calls) = rt.block_on(run_all(dir.path(), c, &sim.url(), fill));
    rt.block_on(sim.shutdown());
    eprintln!(
        "filled the store: {tasks} tasks, {calls} candidates in {:.1}s",
        took.as_secs_f64()
    );
    let d = dir.path();
    // First build writes the assets and the generated flow; the timed ones are no-ops.
    time_binary(
        d,
        &[
            "build",
            "bench.nbflow",
            "-q",
            "--json",
            "--server",
            "http://127.0.0.1:9",
        ],
    );
    let validate = median(&mut || time_binary(d, &["validate", "bench.nbflow"]));
    let plan = median(&mut || time_binary(d, &["plan", "bench.nbflow", "--json"]));
    let build = median(&mut || {
        time_binary(
            d,
            &[
                "build",
                "bench.nbflow",
                "-q",
                "--json",
                "--server",
                "http://127.0.0.1:9",
            ],
        )
    });
    println!(
        "| {} | validate | {:.0} ms | 1.00 |",
        2 * scenes,
        validate.as_secs_f64() * 1e3
    );
    println!(
        "| {} | plan | {:.0} ms | {:.2} |",
        2 * scenes,
        plan.as_secs_f64() * 1e3,
        plan.as_secs_f64() / validate.as_secs_f64()
    );
    println!(
        "| {} | no-op build | {:.0} ms | {:.2} |",
        2 * scenes,
        build.as_secs_f64() * 1e3,
        build.as_secs_f64() / validate.as_secs_f64()
    );
    // NBBUILD_BENCH_KEEP=1 keeps the filled project to look inside (for
    // example `NBBUILD_TIMINGS=1 nbbuild bench.nbflow` there).
    if std::env::var_os("NBBUILD_BENCH_KEEP").is_some() {
        eprintln!("kept: {}", dir.path().display());
        std::mem::forget(dir);
    }
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if which.is_empty() || which.iter().any(|w| w == "overhead") {
        println!("| latency | calls | critical path | lower bound | makespan | ratio |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        for latency in [300, 1000] {
            overhead(&rt, latency);
        }
    }
    if which.is_empty() || which.iter().any(|w| w == "chain") {
        println!("| order | tasks | calls | lower bound | makespan | ratio |");
        println!("| --- | --- | ---: | ---: | ---: | ---: |");
        chain(&rt);
    }
    if which.is_empty() || which.iter().any(|w| w == "capacity") {
        println!("| cap | accepted | answered 429 | 429 share | lower bound | makespan | ratio |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        capacity(&rt);
    }
    if which.is_empty() || which.iter().any(|w| w.starts_with("noop")) {
        // Generation nodes = 2 x scenes; 4 cached candidates each. Sizes
        // can be given as `noop:SCENES` arguments (default: 1,000 scenes).
        let sizes: Vec<usize> = which
            .iter()
            .filter_map(|w| w.strip_prefix("noop:"))
            .filter_map(|n| n.parse().ok())
            .collect();
        let sizes = if sizes.is_empty() { vec![1000] } else { sizes };
        println!("| generation nodes | command | time | ratio to validate |");
        println!("| ---: | --- | ---: | ---: |");
        for scenes in sizes {
            noop(&rt, scenes);
        }
    }
}
