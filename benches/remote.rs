//! The team cache on loopback (issue 14): machine A builds a flow of 1,000
//! stills against the simulator (latency 0) with the team cache on, so the
//! bucket holds 1,000 records and their objects; then:
//!
//! - lookups: the 1,000 records fetched and verified (signature, key,
//!   objects named) in parallel batches, in process, as the plan does them,
//!   without the bytes;
//! - pull: machine B, an empty store, runs `nbbuild build`: every task
//!   pulled (records, then bytes verified and stored), 0 calls; its
//!   `NBBUILD_TIMINGS` phases say how long the pull and the plan took;
//! - no-op: B again: every task fresh locally, the remote not asked.
//!
//! ```sh
//! cargo bench --bench remote                  # 1,000 stills, 3 rounds
//! cargo bench --bench remote -- --tasks 200 --rounds 1
//! ```
//!
//! Figures go to docs/performance.md. Not a test: it asserts only that B
//! paid nothing and pulled everything.

#[path = "../tests/integration/s3.rs"]
mod s3;

use futures_util::StreamExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const REMOTE: &str = "s3://nbbuild-test/bench";

fn project(dir: &Path, tasks: usize) {
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/refs/avatar.png"),
        dir.join("refs/avatar.png"),
    )
    .unwrap();
    let flow = nbbuild::synth::chain_flow(0, tasks, "refs/avatar.png");
    std::fs::write(dir.join("bench.nbflow"), flow.to_string()).unwrap();
}

fn nbbuild(
    dir: &Path,
    s3: &s3::S3Server,
    secret: &str,
    args: &[&str],
) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nbbuild"))
        .args(args)
        .current_dir(dir)
        .env("NBBUILD_REMOTE", REMOTE)
        .env("R2_ENDPOINT", &s3.endpoint)
        .env("R2_ACCESS_KEY_ID", &s3.access_key)
        .env("R2_SECRET_ACCESS_KEY", &s3.secret_key)
        .env("NBBUILD_REMOTE_SIGNING_KEY", secret)
        .env("NBBUILD_TIMINGS", "1")
        .env_remove("NBBUILD_CACHE_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        stderr,
    )
}

/// The milliseconds of the `timing:` line naming `phase`.
fn phase_ms(stderr: &str, phase: &str) -> f64 {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("timing:"))
        .find(|l| l.trim_end().ends_with(phase))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let tasks = arg("--tasks", 1000);
    let rounds = arg("--rounds", 3).max(1);
    let tmp = tempfile::tempdir().unwrap();
    let s3 = s3::start_s3(&tmp.path().join("s3"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt
        .block_on(nbbuild_sim::start(
            nbbuild_sim::SimConfig {
                image_latency_ms: 0,
                video_latency_ms: 0,
                ..Default::default()
            },
            0,
        ))
        .unwrap();
    let key = nbbuild::remote::sign::SigningKey::generate().unwrap();
    let secret = key.to_secret_string();
    let common = [
        "--candidates",
        "1",
        "--mirror",
        "none",
        "--json",
        "-q",
        "--no-progress",
        "--concurrency",
        "5",
    ];

    // The same build with no team cache, for what claims and uploads cost A.
    let a0 = tmp.path().join("a0");
    project(&a0, tasks);
    let mut args = vec!["build", "--server", sim.url().leak(), "--remote", "none"];
    args.extend_from_slice(&common);
    let (v0, _) = nbbuild(&a0, &s3, &secret, &args);
    let alone = v0["duration_ms"].as_f64().unwrap();
    std::fs::remove_dir_all(&a0).unwrap();

    let a = tmp.path().join("a");
    project(&a, tasks);
    let t = Instant::now();
    let mut args = vec!["build", "--server", sim.url().leak()];
    args.extend_from_slice(&common);
    let (va, _) = nbbuild(&a, &s3, &secret, &args);
    assert_eq!(va["remote"]["uploads"], tasks as u64, "{va}");
    let with_remote = va["duration_ms"].as_f64().unwrap();
    eprintln!(
        "A built {tasks} stills and wrote their records in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The keys, from A's plan (calls nothing).
    let (plan, _) = nbbuild(&a, &s3, &secret, &["plan", "--json", "--candidates", "1"]);
    let keys: Vec<String> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), tasks);

    // Lookups, in process: records fetched and verified, 32 in flight.
    let cfg = nbbuild::remote::RemoteConfig::resolve(
        Some(REMOTE),
        None,
        &Default::default(),
        &Default::default(),
        &|k| match k {
            "R2_ENDPOINT" => Some(s3.endpoint.clone()),
            "R2_ACCESS_KEY_ID" => Some(s3.access_key.clone()),
            "R2_SECRET_ACCESS_KEY" => Some(s3.secret_key.clone()),
            "NBBUILD_REMOTE_SIGNING_KEY" => Some(secret.clone()),
            _ => None,
        },
    )
    .unwrap()
    .unwrap();
    let mut lookups = Vec::new();
    for _ in 0..rounds {
        let d = rt.block_on(async {
            let remote =
                nbbuild::remote::Remote::new(cfg.clone(), Arc::new(|_| {}), Arc::new(|_| {}));
            let t = Instant::now();
            let hits: usize = futures_util::stream::iter(keys.iter())
                .map(|k| {
                    let remote = &remote;
                    async move {
                        matches!(
                            remote.lookup(k).await,
                            nbbuild::remote::pull::Lookup::Hit(_)
                        ) as usize
                    }
                })
                .buffer_unordered(nbbuild::remote::pull::PARALLEL)
                .fold(0, |a, b| async move { a + b })
                .await;
            assert_eq!(hits, tasks);
            t.elapsed()
        });
        lookups.push(d.as_secs_f64() * 1e3);
    }

    // B pulls everything (a new empty store each round), then a no-op.
    let (mut pull, mut plan_ms, mut total, mut noop_plan, mut noop_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let b = tmp.path().join(format!("b{round}"));
        project(&b, tasks);
        let mut args = vec!["build", "--server", sim.url().leak()];
        args.extend_from_slice(&common);
        let (vb, eb) = nbbuild(&b, &s3, &secret, &args);
        assert_eq!(vb["calls"]["image"], 0, "{vb}");
        assert_eq!(vb["remote"]["hits"], tasks as u64, "{vb}");
        pull.push(phase_ms(&eb, "pull from the team cache"));
        plan_ms.push(phase_ms(&eb, "plan"));
        total.push(vb["duration_ms"].as_f64().unwrap());
        let (vn, en) = nbbuild(&b, &s3, &secret, &args);
        assert_eq!(vn["remote"]["hits"], 0, "{vn}");
        noop_plan.push(phase_ms(&en, "plan"));
        noop_total.push(vn["duration_ms"].as_f64().unwrap());
        std::fs::remove_dir_all(&b).unwrap();
    }
    rt.block_on(sim.shutdown());

    println!("| {tasks} stills, team cache on loopback (medians of {rounds}) | ms |");
    println!("| --- | ---: |");
    println!("| A's build, no team cache (latency-0 simulator) | {alone:.0} |");
    println!("| A's build with the team cache (claims, {tasks} records + objects up) | {with_remote:.0} |");
    println!(
        "| lookups: {tasks} records fetched and verified, {} in flight | {:.0} |",
        nbbuild::remote::pull::PARALLEL,
        median(lookups)
    );
    println!(
        "| B's pull (records + bytes verified and stored) | {:.0} |",
        median(pull)
    );
    println!("| B's plan after the pull | {:.0} |", median(plan_ms));
    println!("| B's whole build (0 calls) | {:.0} |", median(total));
    println!(
        "| B's no-op rebuild: plan (remote not asked) | {:.0} |",
        median(noop_plan)
    );
    println!(
        "| B's no-op rebuild: whole build | {:.0} |",
        median(noop_total)
    );
}
