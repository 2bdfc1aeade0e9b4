//! Mirror upload throughput: 200 MB of objects (50 x 4 MB by default) sent
//! through `nbbuild::mirror::r2` to an in-process s3s-fs server on loopback,
//! and the same files sent to the same server by plain clients in the same
//! run: boto3 (`put_object` from a thread pool of the same width) and the aws
//! CLI (`aws s3 cp --recursive`), when they are installed (`pip install
//! boto3 awscli`). Figures go to docs/performance.md and docs/mirror.md.
//!
//! ```sh
//! cargo bench --bench mirror                       # 50 x 4 MB, 8 in flight, 3 rounds
//! cargo bench --bench mirror -- --objects 5 --size-mb 40   # multipart clips
//! ```
//!
//! Not a test: it asserts only that every object arrived whole.

#[path = "../tests/integration/s3.rs"]
mod s3;

use nbbuild::mirror::r2::R2Mirror;
use nbbuild::mirror::Mirror;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    objects: usize,
    size_mb: usize,
    concurrency: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        objects: 50,
        size_mb: 4,
        concurrency: 8,
        rounds: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let next = || argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match argv[i].as_str() {
            "--objects" => a.objects = next().expect("--objects N"),
            "--size-mb" => a.size_mb = next().expect("--size-mb N"),
            "--concurrency" => a.concurrency = next().expect("--concurrency N"),
            "--rounds" => a.rounds = next().expect("--rounds N"),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

const BOTO3: &str = r#"
import sys, os, time, boto3, concurrent.futures as cf
from botocore.config import Config
endpoint, bucket, prefix, conc, *files = sys.argv[1:]
conc = int(conc)
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="auto",
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=conc))
def up(f):
    with open(f, "rb") as fh:
        s3.put_object(Bucket=bucket, Key=prefix + os.path.basename(f), Body=fh,
                      ContentType="application/octet-stream")
t = time.perf_counter()
with cf.ThreadPoolExecutor(conc) as ex:
    list(ex.map(up, files))
print(time.perf_counter() - t)
"#;

fn has(cmd: &str, arg: &[&str]) -> bool {
    Command::new(cmd)
        .args(arg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn plain_env(cmd: &mut Command, server: &s3::S3Server) {
    cmd.env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
}

fn boto3(server: &s3::S3Server, prefix: &str, conc: usize, files: &[PathBuf]) -> Duration {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(BOTO3)
        .arg(&server.endpoint)
        .arg(&server.bucket)
        .arg(prefix)
        .arg(conc.to_string())
        .args(files);
    plain_env(&mut cmd, server);
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_secs_f64(secs)
}

/// Wall time of `aws s3 cp --recursive` (its default: 10 requests in flight),
/// interpreter start-up included.
fn aws_cli(server: &s3::S3Server, prefix: &str, dir: &Path) -> Duration {
    let mut cmd = Command::new("aws");
    cmd.args([
        "s3",
        "cp",
        "--recursive",
        "--only-show-errors",
        "--endpoint-url",
    ])
    .arg(&server.endpoint)
    .arg(dir)
    .arg(format!("s3://{}/{}", server.bucket, prefix));
    plain_env(&mut cmd, server);
    let t = Instant::now();
    let out = cmd.output().expect("aws");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "aws: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

async fn mirror(server: &s3::S3Server, prefix: &str, conc: usize, files: &[PathBuf]) -> Duration {
    let m = Arc::new(R2Mirror::connect(server.r2_config()).await.unwrap());
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    // As a build does: each file's blake3 is known (its store name) and the
    // mirror hashes the bytes again as they go up (issue 20).
    let hashes: Vec<String> = files
        .iter()
        .map(|f| {
            blake3::hash(&std::fs::read(f).unwrap())
                .to_hex()
                .to_string()
        })
        .collect();
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (f, h) in files.iter().zip(hashes) {
        let (m, sem, f) = (m.clone(), sem.clone(), f.clone());
        let key = format!("{prefix}{}", f.file_name().unwrap().to_string_lossy());
        set.spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            m.publish_checked(&f, &key, "application/octet-stream", Some(&h))
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    let d = t.elapsed();
    assert_eq!(m.uploads() as usize, files.len());
    d
}

fn verify(server: &s3::S3Server, prefix: &str, files: &[PathBuf]) {
    for f in files {
        let key = format!("{prefix}{}", f.file_name().unwrap().to_string_lossy());
        let a = std::fs::metadata(f).unwrap().len();
        let b = std::fs::metadata(server.object_path(&key))
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .len();
        assert_eq!(a, b, "{key}");
    }
    // Keep the disk use of a run bounded.
    let dir = server.object_path(prefix.trim_end_matches('/'));
    std::fs::remove_dir_all(dir).unwrap();
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let server = s3::start_s3(&tmp.path().join("s3"));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let size = a.size_mb * 1_000_000;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut buf = vec![0u8; size];
    let files: Vec<PathBuf> = (0..a.objects)
        .map(|i| {
            rng.fill(&mut buf);
            let p = src.join(format!("obj-{i:03}.bin"));
            std::fs::write(&p, &buf).unwrap();
            p
        })
        .collect();
    drop(buf);
    let total = (size * a.objects) as u64;
    let have_boto3 = has("python3", &["-c", "import boto3"]);
    let have_cli = has("aws", &["--version"]);
    eprintln!(
        "{} objects x {} MB = {} MB, {} in flight, {} rounds; boto3: {}, aws CLI: {}",
        a.objects,
        a.size_mb,
        total / 1_000_000,
        a.concurrency,
        a.rounds,
        if have_boto3 { "yes" } else { "not installed" },
        if have_cli { "yes" } else { "not installed" }
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut times: Vec<(&str, Vec<Duration>)> = vec![("nbbuild mirror (aws-sdk-s3)", vec![])];
    if have_boto3 {
        times.push(("boto3 put_object", vec![]));
    }
    if have_cli {
        times.push(("aws s3 cp --recursive", vec![]));
    }
    for round in 0..a.rounds {
        // Alternate the order so neither client always runs on a warmer server.
        let mut order: Vec<usize> = (0..times.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let prefix = format!("r{round}-c{i}/");
            let d = match times[i].0 {
                "boto3 put_object" => boto3(&server, &prefix, a.concurrency, &files),
                "aws s3 cp --recursive" => aws_cli(&server, &prefix, &src),
                _ => rt.block_on(mirror(&server, &prefix, a.concurrency, &files)),
            };
            verify(&server, &prefix, &files);
            eprintln!(
                "round {round}: {:<28} {:>7.1} MB/s",
                times[i].0,
                mb_s(total, d)
            );
            times[i].1.push(d);
        }
    }

    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    let base = median(&times[0].1);
    println!(
        "| client ({} x {} MB, {} in flight) | median | best | mirror / client |",
        a.objects, a.size_mb, a.concurrency
    );
    println!("| --- | ---: | ---: | ---: |");
    for (name, v) in &times {
        let m = median(v);
        let best = *v.iter().min().unwrap();
        println!(
            "| {name} | {:.0} MB/s ({:.2} s) | {:.0} MB/s | {:.2} |",
            mb_s(total, m),
            m.as_secs_f64(),
            mb_s(total, best),
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}
