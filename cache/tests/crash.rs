//! Crash safety: SIGKILL a writer at random moments; every acknowledged
//! commit must survive and the store must verify clean.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nbbuild_cache::{ProblemKind, Store};

#[derive(Debug, Clone)]
struct Ack {
    key: String,
    slot: u32,
    tag: String,
    object: String,
}

fn parse(line: &str) -> Option<Ack> {
    let mut it = line.split(' ');
    if it.next()? != "ack" {
        return None;
    }
    let key = it.next()?.to_string();
    let slot = it.next()?.parse().ok()?;
    let tag = it.next()?.to_string();
    let object = it.next()?.to_string();
    (object.len() == 64 && it.next().is_none()).then_some(Ack {
        key,
        slot,
        tag,
        object,
    })
}

#[test]
fn sigkill_never_loses_an_acknowledged_commit() {
    let bin = common::example_bin("crash_writer");
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join(".nbbuild");
    let mut rng = common::Rng::from_clock();
    let mut all_acks: Vec<Ack> = Vec::new();
    let rounds = 5;

    for round in 0..rounds {
        let mut guard = common::KillOnDrop(
            Command::new(&bin)
                .arg(&store_dir)
                .arg(round.to_string())
                .arg("3")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let child = &mut guard.0;
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        // only complete lines count as acknowledged
                        Ok(_) if buf.ends_with(b"\n") => lines
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned()),
                        Ok(_) => break,
                    }
                }
            })
        };
        // wait for a random number of acks, then a random extra delay
        let want = rng.range(1, 80) as usize;
        let start = Instant::now();
        while lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("ack"))
            .count()
            < want
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "writer made no progress"
            );
            if let Ok(Some(st)) = child.try_wait() {
                panic!("writer exited early: {st}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.range(0, 30_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acks: Vec<Ack> = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| parse(l))
            .collect();
        eprintln!(
            "round {round}: {} acknowledged commits before SIGKILL",
            acks.len()
        );
        assert!(acks.len() >= want);
        all_acks.extend(acks);

        let store = Store::open(&store_dir).expect("reopen after SIGKILL");
        eprintln!("round {round}: notices {:?}", store.notices());
        check_acks(&store, &all_acks);
        let rep = store.verify().unwrap();
        for p in &rep.problems {
            eprintln!("round {round}: verify: {p}");
        }
        assert!(rep.is_ok(), "verify found problems: {:?}", rep.problems);
        assert!(rep
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::TmpLeftover || p.kind == ProblemKind::Quarantined));
    }

    // gc cleans the leftovers, keeps everything acknowledged
    let store = Store::open(&store_dir).unwrap();
    let gc = store.gc(usize::MAX, false).unwrap();
    eprintln!("gc: {gc:?}");
    check_acks(&store, &all_acks);
    let rep = store.verify().unwrap();
    let real: Vec<_> = rep
        .problems
        .iter()
        // an interrupted snapshot inside db/ is sled's own business
        .filter(|p| !(p.kind == ProblemKind::Quarantined && p.what.ends_with(".generating")))
        .collect();
    assert!(real.is_empty(), "after gc: {real:?}");
    assert_eq!(std::fs::read_dir(store_dir.join("tmp")).unwrap().count(), 0);
}

fn check_acks(store: &Store, acks: &[Ack]) {
    let mut recs = HashMap::new();
    for a in acks {
        let rec = recs
            .entry(a.key.clone())
            .or_insert_with(|| store.task(&a.key).unwrap().expect("task record exists"));
        assert!(store.has_object(&a.object), "object of {a:?} is missing");
        let current = rec.candidates.iter().any(|c| {
            c.slot == a.slot && c.object == a.object && c.remote_task.as_deref() == Some(&a.tag)
        });
        let past = rec
            .history
            .iter()
            .flat_map(|h| h.candidates.iter())
            .any(|c| {
                c.slot == a.slot && c.object == a.object && c.remote_task.as_deref() == Some(&a.tag)
            });
        assert!(current || past, "acknowledged commit lost: {a:?}");
        if let Some(f) = rec.in_flight_for(a.slot) {
            assert_ne!(
                f.remote_task,
                format!("remote-{}", a.tag.replace(':', "-")),
                "in-flight entry of a committed candidate left behind: {a:?}"
            );
        }
    }
    // objects are intact
    for a in acks.iter().step_by(7) {
        store
            .read_object(&a.object, true)
            .expect("acknowledged object reads and verifies");
    }
}
