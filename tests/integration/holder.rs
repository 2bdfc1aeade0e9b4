//! Reads while a build holds the store (issue 19): the read commands go
//! through the holder's socket and answer as the store itself would;
//! writes are still refused naming the holder; a killed holder blocks
//! nothing; the socket is its owner's only.

use crate::harness::{fast_sim, wait_until, Sim, Test};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stills take 1.5 s: a build of the demo's stills runs for several seconds.
fn slow_sim() -> Sim {
    Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 1500,
        video_latency_ms: 1500,
        ..Default::default()
    })
}

const BUILD: [&str; 4] = ["--mode", "images", "--candidates", "3"];

fn spawn_build(t: &Test, sim: &Sim) -> Child {
    let mut args = vec!["build", "--server", sim.url.as_str(), "--json", "-q"];
    args.extend_from_slice(&BUILD);
    t.command(&args)
        .env("NBBUILD_BACKOFF_MS", "20")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn socket(t: &Test) -> PathBuf {
    t.path().join(".nbbuild/holder/holder.sock")
}

fn status(t: &Test) -> Value {
    let r = t.run(&["status", "--json"]);
    r.assert_code(0);
    r.json()
}

fn ok_json(t: &Test, args: &[&str]) -> Value {
    let r = t.run(args);
    r.assert_code(0);
    r.json()
}

fn keys(ls: &Value) -> Vec<(String, u64)> {
    ls["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["candidates"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn key_line(explain: &str) -> String {
    explain
        .lines()
        .find(|l| l.trim_start().starts_with("key:"))
        .unwrap_or_else(|| panic!("no key line in:\n{explain}"))
        .to_string()
}

/// Wait (at most 60 s) for a child to exit by itself.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the process did not end by itself");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_all(r: Option<impl Read>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        r.read_to_string(&mut s).unwrap();
    }
    s
}

#[test]
fn reads_and_status_work_while_a_build_holds_the_store() {
    let sim = slow_sim();
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let mut build = spawn_build(&t, &sim);
    sim.wait_for_submits(1);
    let mut watch = t
        .command(&["status", "--watch", "--json", "--interval", "0.2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // A moment when status and the simulator agree exactly; at every
    // sample, accepted submits <= calls made <= accepted + in flight
    // (a submission is announced just before it is sent).
    let mut agreed = None;
    let start = Instant::now();
    while agreed.is_none() && start.elapsed() < Duration::from_secs(30) {
        let before = sim.stats();
        let st = status(&t);
        let after = sim.stats();
        assert_eq!(st["running"], true, "{st}");
        let made = st["calls"]["made"].as_u64().unwrap();
        let flying = st["in_flight"].as_array().unwrap().len() as u64;
        let (b, a) = (
            before.image_submits + before.video_submits,
            after.image_submits + after.video_submits,
        );
        assert!(
            b <= made && made <= a + flying,
            "{b} <= {made} <= {a} + {flying}"
        );
        if b == a && made == a && a < 15 {
            agreed = Some((st, after));
        }
    }
    let (st, at) = agreed.expect("a moment when status and /sim/stats agree");
    assert_eq!(st["calls"]["image"].as_u64(), Some(at.image_submits));
    assert_eq!(st["calls"]["video"].as_u64(), Some(0));
    // nano_banana_2 costs 1 credit a call.
    assert_eq!(
        st["credits"]["spent"].as_f64(),
        Some(at.image_submits as f64)
    );
    assert_eq!(st["calls"]["planned"], 15);
    assert_eq!(st["credits"]["quote"], 15.0);
    assert_eq!(st["tasks"]["total"], 7);
    assert_eq!(st["pid"].as_u64(), Some(build.id() as u64));
    let stored_then = st["candidates"]["stored"].as_u64().unwrap();

    // The read commands, answered by the build.
    let mut plan_args = vec!["plan", "--json"];
    plan_args.extend_from_slice(&BUILD);
    let plan_during = ok_json(&t, &plan_args);
    let ls_during = ok_json(&t, &["cache", "ls", "--json"]);
    let stats_during = ok_json(&t, &["cache", "stats", "--json"]);
    let show_during = ok_json(&t, &["cache", "show", "scene01", "--json"]);
    let explain_during = t.run(&["explain", "scene01", "--candidates", "3"]);
    explain_during.assert_code(0);
    let text = t.run(&["status"]);
    text.assert_code(0);
    assert!(
        text.stdout
            .starts_with("build of ./ad.nbflow (generating, ")
            && text.stdout.contains(" of 15 planned (")
            && text.stdout.contains("credits  "),
        "{}",
        text.stdout
    );
    // Writes are refused, naming the holder.
    let pid = build.id();
    let second = t.build(&sim, &BUILD);
    second.assert_code(2);
    assert!(
        second.stderr.contains(&format!("in use by process {pid}")),
        "{}",
        second.stderr
    );
    let gc = t.run(&["cache", "gc"]);
    gc.assert_code(2);
    assert!(
        gc.stderr.contains(&format!("in use by process {pid}")),
        "{}",
        gc.stderr
    );
    assert!(
        build.try_wait().unwrap().is_none(),
        "the build ended before the reads were made: nothing was read through it"
    );
    // Current: every candidate status had seen arrive is listed.
    let listed: u64 = keys(&ls_during).iter().map(|k| k.1).sum();
    assert!(listed >= stored_then, "{listed} < {stored_then}");

    let status_code = wait_exit(&mut build);
    let out = read_all(build.stdout.take());
    assert!(
        status_code.success(),
        "{out}{}",
        read_all(build.stderr.take())
    );
    let summary: Value = serde_json::from_str(&out).unwrap();
    let end = sim.stats();
    assert_eq!(end.image_submits, 15);
    assert_eq!(summary["calls"]["image"], 15);

    // After the build: the same commands, read from the store itself.
    let plan_after = ok_json(&t, &plan_args);
    for (d, a) in plan_during["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(plan_after["tasks"].as_array().unwrap())
    {
        assert_eq!(d["name"], a["name"]);
        if !d["key"].is_null() {
            assert_eq!(d["key"], a["key"], "{}", d["name"]);
        }
        if d["status"] == "fresh" {
            assert_eq!(a["status"], "fresh", "{}", d["name"]);
        }
    }
    assert_eq!(plan_after["summary"]["stale"], 0);
    let ls_after = keys(&ok_json(&t, &["cache", "ls", "--json"]));
    for (k, n) in keys(&ls_during) {
        let after = ls_after
            .iter()
            .find(|a| a.0 == k)
            .expect("a key listed during the build");
        assert!(n <= after.1);
    }
    let stats_after = ok_json(&t, &["cache", "stats", "--json"]);
    assert!(stats_during["stats"]["tasks"].as_u64() <= stats_after["stats"]["tasks"].as_u64());
    assert!(listed <= stats_after["stats"]["candidates"].as_u64().unwrap());
    assert_eq!(stats_during["path"], stats_after["path"]);
    let show_after = ok_json(&t, &["cache", "show", "scene01", "--json"]);
    assert_eq!(
        show_during["tasks"][0]["key"],
        show_after["tasks"][0]["key"]
    );
    let explain_after = t.run(&["explain", "scene01", "--candidates", "3"]);
    assert_eq!(
        key_line(&explain_during.stdout),
        key_line(&explain_after.stdout)
    );

    // Without a build: the last run, which is this one.
    let last = status(&t);
    assert_eq!(last["running"], false);
    assert_eq!(last["last_run"]["summary"]["calls"]["image"], 15);
    assert!(
        !socket(&t).exists(),
        "a holder that ends removes its socket"
    );

    // `status --watch` followed the build and ended with it.
    assert!(wait_exit(&mut watch).success());
    let lines: Vec<Value> = BufReader::new(watch.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["running"] == true && l["phase"] == "generating"));
    let final_line = lines.last().unwrap();
    assert_eq!(final_line["running"], false, "{final_line}");
    assert_eq!(
        final_line["last_run"]["summary"]["calls"]["image"].as_u64(),
        Some(end.image_submits)
    );
}

#[test]
fn answers_through_the_holder_are_the_stores_own() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--candidates", "2"]).assert_code(0);
    let commands: [&[&str]; 8] = [
        &["plan", "--json"],
        &["plan", "--candidates", "2"],
        &["cache", "ls", "--json"],
        &["cache", "stats", "--json"],
        &["cache", "show", "scene02", "--json"],
        &["explain", "scene02"],
        &["explain", "scene09", "--json", "--candidates", "2"],
        &["status", "--json"],
    ];
    let direct: Vec<String> = commands
        .iter()
        .map(|c| {
            let r = t.run(c);
            r.assert_code(0);
            r.stdout
        })
        .collect();

    // This test process holds the store now and serves it.
    let store = Arc::new(nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap());
    let holder = nbbuild::holder::server::Holder::start(store.clone(), None).unwrap();
    for (c, want) in commands.iter().zip(&direct) {
        let r = t.run(c);
        r.assert_code(0);
        if c[..2] == ["cache", "stats"] {
            // sled's size estimate moves as the database is reopened.
            let strip = |s: &str| {
                let mut v: Value = serde_json::from_str(s).unwrap();
                v["stats"]["db_bytes"] = Value::Null;
                v
            };
            assert_eq!(strip(&r.stdout), strip(want), "{c:?}");
        } else {
            assert_eq!(&r.stdout, want, "{c:?}");
        }
    }
    // A read error is the store's own too.
    let missing = t.run(&["cache", "show", "nosuchtask"]);
    missing.assert_code(2);
    assert!(
        missing
            .stderr
            .contains("the store holds no task \"nosuchtask\""),
        "{}",
        missing.stderr
    );

    // Owner only: the folder 0700, the socket 0600.
    let sock = holder.socket();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(sock.parent().unwrap()), 0o700);
    assert_eq!(mode(&sock), 0o600);
    // Another user can reach the store folder but not the socket.
    if nobody_can_run() {
        for p in [t.path(), &t.path().join(".nbbuild")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let lock = t.path().join(".nbbuild/LOCK");
        assert!(as_nobody(&t, &["/bin/cat", lock.to_str().unwrap()])
            .status
            .success());
        let bin = env!("CARGO_BIN_EXE_nbbuild");
        let out = as_nobody(&t, &[bin, "status", "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("not open to this user"), "{stderr}");
        assert!(out.stdout.is_empty());
    } else {
        eprintln!("note: cannot run a command as nobody here; checked the modes only");
    }
    drop(holder);
    assert!(!sock.exists());
}

fn nobody_can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn as_nobody(t: &Test, cmd: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(cmd)
        .current_dir(t.path())
        .env_remove("NBBUILD_CACHE_DIR")
        .output()
        .unwrap()
}

#[test]
fn a_killed_holder_leaves_a_socket_that_blocks_nothing() {
    let sim = slow_sim();
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let mut build = spawn_build(&t, &sim);
    sim.wait_for_submits(1);
    wait_until("the build serves its socket", || socket(&t).exists());
    build.kill().unwrap(); // SIGKILL: no clean-up runs
    build.wait().unwrap();
    assert!(
        socket(&t).exists(),
        "the killed holder's socket is left behind"
    );

    // Nothing is blocked: reads open the store at once, status reads the log.
    let t0 = Instant::now();
    let ls = ok_json(&t, &["cache", "ls", "--json"]);
    assert!(!ls["tasks"].as_array().unwrap().is_empty());
    let st = status(&t);
    assert_eq!(st["running"], false);
    assert_eq!(st["last_run"], Value::Null, "a killed run records nothing");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    // The next build removes it and serves on a socket of its own.
    let before = sim.submits();
    let mut next = spawn_build(&t, &sim);
    sim.wait_for_submits(before + 1);
    let st = status(&t);
    assert_eq!(st["running"], true);
    assert_eq!(st["pid"].as_u64(), Some(next.id() as u64));
    // Even with its socket file deleted under it, the holder ends cleanly.
    std::fs::remove_file(socket(&t)).unwrap();
    assert!(wait_exit(&mut next).success());
    assert!(!t.path().join(".nbbuild/LOCK").exists());
    assert_eq!(status(&t)["last_run"]["summary"]["tasks"]["built"], 5);
}

/// A listener on the socket of a store this test process holds, answering
/// hellos with `answer` (None: it accepts nothing at all), until the
/// returned sender is dropped.
fn fake_holder(store_dir: &Path, answer: Option<&'static str>) -> std::sync::mpsc::Sender<()> {
    let dir = store_dir.join("holder");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join("holder.sock");
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Some(answer) = answer {
            if let Ok((s, _)) = listener.accept() {
                let mut line = String::new();
                let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
                let _ = (&s).write_all(answer.as_bytes());
                let _ = rx.recv();
                return;
            }
        }
        let _ = rx.recv();
        drop(listener);
    });
    tx
}

#[test]
fn a_holder_that_does_not_answer_gives_the_in_use_error() {
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let dir = t.path().join(".nbbuild");
    let _store = nbbuild_cache::Store::open(&dir).unwrap();
    let pid = std::process::id();
    let refused = |r: &crate::harness::Run, why: &str| {
        r.assert_code(2);
        assert!(
            r.stderr.contains(&format!("in use by process {pid}")),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains(why), "{}", r.stderr);
        assert!(r.stdout.is_empty());
    };
    // No socket at all (an older nbbuild, or a command that serves none).
    refused(&t.run(&["cache", "ls"]), "it serves no reads");
    // Hung: the connection is queued (backlog), no hello ever comes.
    let hung = fake_holder(&dir, None);
    let t0 = Instant::now();
    refused(&t.run(&["plan", "--json"]), "does not answer");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    drop(hung);
    // Another protocol version.
    let newer = fake_holder(
        &dir,
        Some("{\"ok\":{\"proto\":99,\"nbbuild\":\"9.0.0\",\"pid\":1}}\n"),
    );
    refused(&t.run(&["cache", "stats"]), "protocol 99");
    drop(newer);
}

#[test]
fn status_needs_a_store_and_a_sane_interval() {
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = t.run(&["status"]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("error: no store in ./.nbbuild"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: "), "{}", r.stderr);
    let r = t.run(&["status", "--watch", "--interval", "0"]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("--interval 0 is out of range"),
        "{}",
        r.stderr
    );
    let r = t.run(&["status", "--interval", "-1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
