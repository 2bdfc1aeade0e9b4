//! The team cache (issue 14), end to end: two project folders with their
//! own stores, one simulator, one S3 server with conditional writes on
//! loopback, the real binary.

use crate::build::walk;
use crate::harness::{fast_sim, fixtures, Run, Sim, Test};
use crate::s3::{start_s3, start_s3_on, S3Server};
use std::path::Path;
use std::process::Child;

const REMOTE: &str = "s3://nbbuild-test/team";

/// A writer's key pair, from `nbbuild remote keygen --json`.
struct Keys {
    secret: String,
    public: String,
}

fn keygen() -> Keys {
    let r = Test::new().run(&["remote", "keygen", "--json"]);
    r.assert_code(0);
    let v = r.json();
    let keys = Keys {
        secret: v["secret"].as_str().unwrap().to_string(),
        public: v["public"].as_str().unwrap().to_string(),
    };
    assert!(keys.public.starts_with("ed25519:"), "{}", r.stdout);
    assert_ne!(keys.secret, keys.public);
    keys
}

/// A project folder on one machine: the demo flow, the team cache, this
/// machine's signing key (if any) and the keys it trusts.
fn machine(s3: &S3Server, key: Option<&Keys>, trusted: &[&Keys]) -> Test {
    let mut t = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("NBBUILD_REMOTE", REMOTE)
        .env("R2_ENDPOINT", &s3.endpoint)
        .env("R2_ACCESS_KEY_ID", &s3.access_key)
        .env("R2_SECRET_ACCESS_KEY", &s3.secret_key)
        .env(
            "NBBUILD_REMOTE_TRUSTED",
            &trusted
                .iter()
                .map(|k| k.public.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
    if let Some(k) = key {
        t = t.env("NBBUILD_REMOTE_SIGNING_KEY", &k.secret);
    }
    t
}

/// A project with a single still (one task, one call per candidate).
fn one_still(s3: &S3Server, key: &Keys) -> Test {
    let flow = nbbuild::synth::chain_flow(0, 1, "refs/avatar.png");
    Test::new()
        .write(
            "refs/avatar.png",
            std::fs::read(fixtures().join("refs/avatar.png")).unwrap(),
        )
        .write("one.nbflow", serde_json::to_string_pretty(&flow).unwrap())
        .env("NBBUILD_REMOTE", REMOTE)
        .env("R2_ENDPOINT", &s3.endpoint)
        .env("R2_ACCESS_KEY_ID", &s3.access_key)
        .env("R2_SECRET_ACCESS_KEY", &s3.secret_key)
        .env("NBBUILD_REMOTE_SIGNING_KEY", &key.secret)
}

const ARGS: &[&str] = &["--candidates", "1", "--mirror", "none"];

/// `nbbuild build` as a child process (to run two at once, or kill one).
fn spawn(t: &Test, sim: &Sim, extra: &[&str]) -> Child {
    let mut args = vec![
        "build",
        "--server",
        sim.url.as_str(),
        "--json",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    let mut c = t.command(&args);
    c.env("NBBUILD_BACKOFF_MS", "20")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c.spawn().unwrap()
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn calls(r: &Run) -> u64 {
    let v = r.json();
    v["calls"]["image"].as_u64().unwrap() + v["calls"]["video"].as_u64().unwrap()
}

/// The calls a full build of the demo flow makes (from `plan`, which calls nothing).
fn planned_calls(t: &Test) -> u64 {
    let p = t.run(&["plan", "--json", "--candidates", "1"]);
    p.assert_code(0);
    let v = p.json();
    v["calls"]["image"].as_u64().unwrap() + v["calls"]["video"].as_u64().unwrap()
}

/// Every file under `Assets/`, by path relative to it, with its bytes.
fn assets(t: &Test) -> Vec<(String, Vec<u8>)> {
    let root = t.path().join("Assets");
    let mut files: Vec<_> = walk(&root)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(&root).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The generated flow with this project's folder (plain and URL-encoded)
/// replaced by a placeholder.
fn generated_text(t: &Test) -> String {
    let text = serde_json::to_string_pretty(&t.generated()).unwrap();
    let dir = t.path().canonicalize().unwrap().display().to_string();
    let encoded =
        percent_encoding::utf8_percent_encode(&dir, percent_encoding::NON_ALPHANUMERIC).to_string();
    text.replace(&dir, "<project>")
        .replace(&t.path().display().to_string(), "<project>")
        .replace(&encoded, "<project>")
}

/// Keys under `prefix` in the bucket, relative to the bucket.
fn bucket_keys(s3: &S3Server, prefix: &str) -> Vec<String> {
    let root = s3.root.join(&s3.bucket);
    let dir = root.join(prefix);
    if !dir.exists() {
        return Vec::new();
    }
    let mut keys: Vec<String> = walk(&dir)
        .into_iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .filter(|k| !k.contains(".tmp.") && !k.starts_with(".s3s"))
        .collect();
    keys.sort();
    keys
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// No file under `dir` holds `secret`.
fn assert_nowhere(dir: &Path, secret: &str, what: &str) {
    for p in walk(dir) {
        let bytes = std::fs::read(&p).unwrap_or_default();
        assert!(!contains(&bytes, secret), "{what} found in {}", p.display());
    }
}

#[test]
fn a_teammates_identical_build_pays_nothing_and_gets_the_same_bytes() {
    let bucket = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket.path());
    let sim = Sim::start(fast_sim());
    let (ka, kb) = (keygen(), keygen());
    let a = machine(&s3, Some(&ka), &[]);
    let b = machine(&s3, Some(&kb), &[&ka]);
    let n = planned_calls(&a);
    assert!(n >= 7, "{n}");

    let ra = a.build(&sim, ARGS);
    ra.assert_code(0);
    assert_eq!(calls(&ra), n);
    let va = ra.json();
    assert_eq!(va["remote"]["mode"], "read-write", "{}", ra.stderr);
    assert_eq!(va["remote"]["uploads"], 7, "{}", ra.stderr);
    assert_eq!(va["remote"]["hits"], 0);
    // Bytes first, then records; one per task; no claim left behind.
    assert_eq!(bucket_keys(&s3, "team/v1/ac").len(), 7);
    assert_eq!(bucket_keys(&s3, "team/v1/cas").len(), 7);
    assert!(bucket_keys(&s3, "team/v1/claims").is_empty());

    // B's plan already says so (looked up, not pulled).
    let pb = b.run(&["plan", "--json", "--candidates", "1"]);
    pb.assert_code(0);
    let pv = pb.json();
    assert_eq!(pv["summary"]["fresh"], 7, "{}", pb.stdout);
    assert_eq!(pv["calls"]["image"], 0);
    assert!(pv["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["team_cache"] == true));
    let text = b.run(&["plan", "--candidates", "1"]);
    assert!(
        text.stdout.contains("fresh    image scene01 (team cache)"),
        "{}",
        text.stdout
    );

    let before = sim.submits();
    let rb = b.build(&sim, ARGS);
    rb.assert_code(0);
    let vb = rb.json();
    assert_eq!(calls(&rb), 0, "{}", rb.stderr);
    assert_eq!(sim.submits(), before, "B submitted to the simulator");
    assert_eq!(vb["credits"], 0.0);
    assert_eq!(vb["tasks"]["fresh"], 7, "{}", rb.stderr);
    assert_eq!(vb["remote"]["hits"], 7);
    // B's own record of each task would lose to A's: nothing written.
    assert_eq!(vb["remote"]["uploads"], 0);
    assert!(rb.stderr.contains("fresh (team cache)"), "{}", rb.stderr);
    assert_eq!(assets(&a), assets(&b));
    assert!(!assets(&b).is_empty());
    assert_eq!(generated_text(&a), generated_text(&b));
    // B's store verifies; a third build is fresh locally and asks nothing.
    let third = b.build(&sim, ARGS);
    third.assert_code(0);
    assert_eq!(calls(&third), 0);
    assert_eq!(third.json()["remote"]["hits"], 0);

    // `remote status` sees the records.
    let st = b.run(&["remote", "status", "--json", "--candidates", "1"]);
    st.assert_code(0);
    let sv = st.json();
    assert_eq!(sv["reachable"], true);
    assert_eq!(sv["summary"]["records"], 7, "{}", st.stdout);
    assert_eq!(sv["mode"], "read-write");

    // Neither secret appears in any output or file.
    for secret in [&ka.secret, &kb.secret, &s3.secret_key] {
        let bare = secret.rsplit(':').next().unwrap();
        for r in [&ra, &rb, &third, &st] {
            assert!(!r.stdout.contains(bare) && !r.stderr.contains(bare));
        }
        assert_nowhere(a.path(), bare, "a secret");
        assert_nowhere(b.path(), bare, "a secret");
        assert_nowhere(bucket.path(), bare, "a secret");
    }
}

#[test]
fn two_machines_starting_at_once_pay_once() {
    let bucket = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket.path());
    let sim = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 300,
        video_latency_ms: 600,
        ..Default::default()
    });
    let (ka, kb) = (keygen(), keygen());
    let a = machine(&s3, Some(&ka), &[&kb]);
    let b = machine(&s3, Some(&kb), &[&ka]);
    let n = planned_calls(&a);
    let (ca, cb) = (spawn(&a, &sim, ARGS), spawn(&b, &sim, ARGS));
    let (ra, rb) = (finish(ca), finish(cb));
    ra.assert_code(0);
    rb.assert_code(0);
    assert_eq!(sim.submits(), n, "A:\n{}\nB:\n{}", ra.stderr, rb.stderr);
    assert_eq!(calls(&ra) + calls(&rb), n);
    let (va, vb) = (ra.json(), rb.json());
    // Every task was built by one and pulled by the other.
    assert_eq!(
        va["remote"]["hits"].as_u64().unwrap() + vb["remote"]["hits"].as_u64().unwrap(),
        7,
        "{va}\n{vb}"
    );
    assert_eq!(
        va["remote"]["uploads"].as_u64().unwrap() + vb["remote"]["uploads"].as_u64().unwrap(),
        7
    );
    assert_eq!(assets(&a), assets(&b));
    assert!(bucket_keys(&s3, "team/v1/claims").is_empty());
}

#[test]
fn a_record_signed_by_an_untrusted_key_is_ignored_and_said_with_v() {
    let bucket = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket.path());
    let sim = Sim::start(fast_sim());
    let (ka, kb) = (keygen(), keygen());
    let a = machine(&s3, Some(&ka), &[]);
    // B trusts only itself.
    let b = machine(&s3, Some(&kb), &[]);
    let n = planned_calls(&a);
    a.build(&sim, ARGS).assert_code(0);
    let records: Vec<(String, Vec<u8>)> = bucket_keys(&s3, "team/v1/ac")
        .into_iter()
        .map(|k| {
            let bytes = std::fs::read(s3.object_path(&k)).unwrap();
            (k, bytes)
        })
        .collect();
    let rb = b.build(&sim, &["--candidates", "1", "--mirror", "none", "-v"]);
    rb.assert_code(0);
    assert_eq!(calls(&rb), n, "{}", rb.stderr);
    let vb = rb.json();
    assert_eq!(vb["remote"]["hits"], 0);
    assert!(vb["remote"]["ignored"].as_u64().unwrap() >= 1, "{vb}");
    assert!(
        rb.stderr.contains("ignored the record of image scene01"),
        "{}",
        rb.stderr
    );
    assert!(rb.stderr.contains("not trusted"), "{}", rb.stderr);
    // The first record of a key stays as it was: B's lose at If-None-Match.
    for (k, bytes) in &records {
        assert_eq!(
            &std::fs::read(s3.object_path(k)).unwrap(),
            bytes,
            "{k} was overwritten"
        );
    }
    // B's own stills differ from A's, so their consumers have keys of their
    // own: those records are B's.
    let now = bucket_keys(&s3, "team/v1/ac").len();
    assert!(now > records.len());
    assert_eq!(vb["remote"]["uploads"], (now - records.len()) as u64);
    // Without -v it is counted, not listed.
    let c = machine(&s3, Some(&kb), &[]);
    let rc = c.build(&sim, ARGS);
    rc.assert_code(0);
    assert!(
        !rc.stderr.contains("ignored the record of"),
        "{}",
        rc.stderr
    );
}

#[test]
fn a_claim_left_by_a_killed_build_is_taken_over_after_its_lease() {
    let bucket = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket.path());
    // Slow enough that the kill lands while the still is generating.
    let sim = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 4_000,
        ..Default::default()
    });
    let k = keygen();
    let a = one_still(&s3, &k).env("NBBUILD_REMOTE_LEASE_MS", "1500");
    let b = one_still(&s3, &k).env("NBBUILD_REMOTE_LEASE_MS", "1500");
    let mut ca = spawn(&a, &sim, ARGS);
    sim.wait_for_submits(1);
    ca.kill().unwrap(); // SIGKILL: no release, no renewal
    let _ = ca.wait();
    let claims = bucket_keys(&s3, "team/v1/claims");
    assert_eq!(claims.len(), 1, "the killed build left its claim");
    let left: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s3.object_path(&claims[0])).unwrap()).unwrap();
    let rb = b.build(&sim, ARGS);
    rb.assert_code(0);
    let vb = rb.json();
    assert_eq!(calls(&rb), 1, "B built it once: {}", rb.stderr);
    // B waited while the lease ran (unless it started after it ran out),
    // then took the claim over.
    assert!(vb["remote"]["waits"].as_u64().unwrap() <= 1, "{vb}");
    assert_eq!(vb["remote"]["takeovers"], 1, "{vb}");
    let expired = left["expires"].as_u64().unwrap() + left["lease_ms"].as_u64().unwrap() / 10;
    assert!(
        nbbuild::exec::runner::now_ms() > expired,
        "B finished before the killed build's lease ran out"
    );
    assert!(
        rb.stderr.contains("lease ran out: taking it over"),
        "{}",
        rb.stderr
    );
    assert_eq!(vb["remote"]["uploads"], 1);
    assert!(bucket_keys(&s3, "team/v1/claims").is_empty());
    // The killed build's submission plus B's: nobody else pays.
    assert_eq!(sim.submits(), 2);
    let c = one_still(&s3, &k);
    let rc = c.build(&sim, ARGS);
    rc.assert_code(0);
    assert_eq!(calls(&rc), 0);
    assert_eq!(sim.submits(), 2);
}

#[test]
fn the_remote_killed_mid_run_fails_no_build_and_each_warns_once() {
    let bucket = tempfile::tempdir().unwrap();
    let mut s3 = start_s3(bucket.path());
    let sim = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 400,
        video_latency_ms: 800,
        ..Default::default()
    });
    let (ka, kb) = (keygen(), keygen());
    let a = machine(&s3, Some(&ka), &[&kb]);
    let b = machine(&s3, Some(&kb), &[&ka]);
    let (ca, cb) = (spawn(&a, &sim, ARGS), spawn(&b, &sim, ARGS));
    sim.wait_for_submits(2);
    s3.kill();
    let (ra, rb) = (finish(ca), finish(cb));
    for r in [&ra, &rb] {
        r.assert_code(0);
        let v = r.json();
        assert_eq!(
            v["tasks"]["fresh"].as_u64().unwrap() + v["tasks"]["built"].as_u64().unwrap(),
            7,
            "{}",
            r.stderr
        );
        let warnings = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning: the team cache"))
            .count();
        assert_eq!(warnings, 1, "{}", r.stderr);
        assert!(v["remote"]["errors"].as_u64().unwrap() >= 1);
        assert_eq!(v["remote"]["reachable"], false, "{v}");
    }
    // Each has the whole flow.
    assert_eq!(assets(&a).len(), assets(&b).len());
    // A later build with the remote back on the same port goes on as usual.
    let s3 = start_s3_on(bucket.path(), s3.port);
    let again = a.build(&sim, ARGS);
    again.assert_code(0);
    assert_eq!(calls(&again), 0);
    drop(s3);
}

#[test]
fn a_read_only_machine_reads_hits_and_writes_nothing() {
    let bucket = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket.path());
    let sim = Sim::start(fast_sim());
    let (ka, kb) = (keygen(), keygen());
    let a = machine(&s3, Some(&ka), &[]);
    a.build(&sim, ARGS).assert_code(0);
    let b = machine(&s3, Some(&kb), &[&ka]).env("NBBUILD_REMOTE_MODE", "read-only");
    // One prompt edited (scene 2's clip): that task is B's to pay for.
    b.edit_json("ad.nbflow", |v| {
        let p = crate::harness::node_mut(v, 0, 8);
        let text = p["properties"]["text"].as_str().unwrap().to_string();
        assert!(text.contains("walk-in"));
        p["properties"]["text"] = text.replace("walk-in", "walk-in at dusk").into();
    });
    let files = bucket_keys(&s3, "team");
    let (puts, other) = (
        s3.puts(),
        s3.requests.other.load(std::sync::atomic::Ordering::Relaxed),
    );
    let rb = b.build(&sim, ARGS);
    rb.assert_code(0);
    let vb = rb.json();
    assert_eq!(vb["remote"]["mode"], "read-only");
    assert!(vb["remote"]["hits"].as_u64().unwrap() >= 1, "{vb}");
    assert!(calls(&rb) >= 1, "the edited task is built: {}", rb.stderr);
    assert_eq!(vb["remote"]["uploads"], 0);
    assert_eq!(s3.puts(), puts, "a read-only machine wrote");
    assert_eq!(
        s3.requests.other.load(std::sync::atomic::Ordering::Relaxed),
        other,
        "a read-only machine deleted"
    );
    assert_eq!(bucket_keys(&s3, "team"), files);
    assert_eq!(
        rb.stderr.matches("is read-only for this run").count(),
        1,
        "{}",
        rb.stderr
    );
    // Without a signing key a machine is read-only too, and says why.
    let c = machine(&s3, None, &[&ka]);
    let rc = c.build(&sim, ARGS);
    rc.assert_code(0);
    assert_eq!(calls(&rc), 0);
    assert!(rc.stderr.contains("no signing key"), "{}", rc.stderr);
    assert_eq!(s3.puts(), puts);
}

#[test]
fn conditional_writes_are_atomic_on_the_test_server() {
    use nbbuild::remote::client::{Client, Condition, Fault};
    let bucket = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket.path());
    let cfg = nbbuild::remote::RemoteConfig::resolve(
        Some(REMOTE),
        None,
        &Default::default(),
        &Default::default(),
        &|k| match k {
            "R2_ENDPOINT" => Some(s3.endpoint.clone()),
            "R2_ACCESS_KEY_ID" => Some(s3.access_key.clone()),
            "R2_SECRET_ACCESS_KEY" => Some(s3.secret_key.clone()),
            _ => None,
        },
    )
    .unwrap()
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let breaker = std::sync::Arc::new(nbbuild::remote::breaker::Breaker::new(
            "t".into(),
            std::sync::Arc::new(|_| {}),
        ));
        let c = std::sync::Arc::new(Client::new(
            &cfg,
            nbbuild::mirror::r2::http_client(),
            breaker,
        ));
        let tries: Vec<_> = (0..16)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    c.put(
                        "race/key",
                        format!("writer {i}").into_bytes().into(),
                        "text/plain",
                        Condition::Absent,
                    )
                    .await
                })
            })
            .collect();
        let mut won = Vec::new();
        let mut lost = 0;
        for t in tries {
            match t.await.unwrap() {
                Ok(etag) => won.push(etag),
                Err(Fault::Lost) => lost += 1,
                Err(f) => panic!("{f:?}"),
            }
        }
        assert_eq!((won.len(), lost), (1, 15));
        // If-Match: only the current ETag replaces.
        let wrong = c
            .put(
                "race/key",
                b"x".to_vec().into(),
                "text/plain",
                Condition::Matches("\"0000\""),
            )
            .await;
        assert_eq!(wrong, Err(Fault::Lost));
        let right = c
            .put(
                "race/key",
                b"y".to_vec().into(),
                "text/plain",
                Condition::Matches(&won[0]),
            )
            .await;
        assert!(right.is_ok(), "{right:?}");
        assert_eq!(c.get("race/key").await.unwrap().unwrap().0, b"y");
    });
}

#[test]
fn a_remote_that_never_answers_costs_a_build_seconds_not_a_hang() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    let bucket = tempfile::tempdir().unwrap();
    let s3 = start_s3(bucket.path());
    let sim = Sim::start(fast_sim());
    let k = keygen();
    let t = machine(&s3, Some(&k), &[])
        .env("R2_ENDPOINT", &endpoint)
        .env("NBBUILD_REMOTE_TIMEOUT_MS", "300");
    let n = planned_calls(&t);
    let mut child = spawn(&t, &sim, ARGS);
    // Generous: a hang is what this catches, not a slow machine.
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the build hung on a silent remote");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = finish(child);
    r.assert_code(0);
    assert_eq!(calls(&r), n);
    assert_eq!(
        r.stderr
            .lines()
            .filter(|l| l.starts_with("warning: the team cache"))
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(r.json()["remote"]["reachable"], false);
    assert!(
        !held.lock().unwrap().is_empty(),
        "the build never asked the remote"
    );
}
