//! Task records and side tables.

use std::path::Path;
use std::sync::Arc;

use nbbuild_cache::{hash_bytes, Candidate, InFlight, Store, StoreError, Verdict};
use serde_json::json;

fn key(n: u32) -> String {
    hash_bytes(format!("key {n}").as_bytes())
}

fn cand(store: &Store, slot: u32, bytes: &[u8]) -> Candidate {
    Candidate {
        slot,
        object: store.put_bytes(bytes).unwrap(),
        mime: "image/png".into(),
        ..Default::default()
    }
}

#[test]
fn ensure_task_creates_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    assert_eq!(store.task(&k).unwrap(), None);
    let r = store
        .ensure_task(&k, "scene01", &json!({"prompt": "a"}))
        .unwrap();
    assert_eq!(r.name, "scene01");
    assert!(r.created > 0 && r.updated >= r.created);
    store.commit_candidate(&k, cand(&store, 0, b"c0")).unwrap();
    // rename + new preimage keeps candidates
    let r = store
        .ensure_task(&k, "scene01b", &json!({"prompt": "b"}))
        .unwrap();
    assert_eq!(r.candidates.len(), 1);
    assert_eq!(r.preimage, json!({"prompt": "b"}));
    assert!(store.find_by_name("scene01").unwrap().is_empty());
    let found = store.find_by_name("scene01b").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, k);
    assert_eq!(store.task_names().unwrap(), vec!["scene01b".to_string()]);
    // unchanged: same record back
    let again = store
        .ensure_task(&k, "scene01b", &json!({"prompt": "b"}))
        .unwrap();
    assert_eq!(again, store.task(&k).unwrap().unwrap());
}

#[test]
fn unknown_task_and_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = cand(&store, 0, b"x");
    assert!(matches!(
        store.commit_candidate("nope", c),
        Err(StoreError::UnknownTask(_))
    ));
    let inflight = InFlight {
        slot: 0,
        remote_task: "t".into(),
        attempt: 1,
        submitted: 0,
    };
    assert!(matches!(
        store.record_in_flight("nope", 0, inflight),
        Err(StoreError::UnknownTask(_))
    ));
    store.ensure_task("k", "n", &json!(null)).unwrap();
    assert!(matches!(
        store.update_candidate("k", 3, |_| {}),
        Err(StoreError::UnknownCandidate { slot: 3, .. })
    ));
}

#[test]
fn candidates_in_flight_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let k = key(2);
    store.ensure_task(&k, "scene02", &json!({})).unwrap();
    for slot in [1, 0] {
        store
            .record_in_flight(
                &k,
                slot,
                InFlight {
                    slot,
                    remote_task: format!("gl-{slot}"),
                    attempt: 1,
                    submitted: 0,
                },
            )
            .unwrap();
    }
    let r = store.task(&k).unwrap().unwrap();
    assert_eq!(
        r.in_flight.iter().map(|f| f.slot).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(r.in_flight[0].submitted > 0);
    // re-recording a slot replaces its entry
    store
        .record_in_flight(
            &k,
            1,
            InFlight {
                slot: 1,
                remote_task: "gl-1b".into(),
                attempt: 2,
                submitted: 5,
            },
        )
        .unwrap();
    let r = store.task(&k).unwrap().unwrap();
    assert_eq!(r.in_flight.len(), 2);
    assert_eq!(r.in_flight_for(1).unwrap().remote_task, "gl-1b");

    // commit clears the slot's in-flight entry; candidates sorted by slot
    let mut c1 = cand(&store, 1, b"one");
    c1.size = 999; // the store takes the size from the object
    c1.remote_task = Some("gl-1b".into());
    store.commit_candidate(&k, c1).unwrap();
    store
        .commit_candidate(&k, cand(&store, 0, b"zero"))
        .unwrap();
    let r = store.task(&k).unwrap().unwrap();
    assert_eq!(
        r.candidates.iter().map(|c| c.slot).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(r.candidate(1).unwrap().size, 3);
    assert!(r.candidate(1).unwrap().created > 0);
    assert!(r.in_flight.is_empty());
    store
        .record_in_flight(
            &k,
            2,
            InFlight {
                slot: 2,
                remote_task: "gl-2".into(),
                ..Default::default()
            },
        )
        .unwrap();
    store.clear_in_flight(&k, 2).unwrap();
    assert!(store.task(&k).unwrap().unwrap().in_flight.is_empty());

    // replacing a slot keeps the old candidate in history
    store
        .commit_candidate(&k, cand(&store, 1, b"one, again"))
        .unwrap();
    let r = store.task(&k).unwrap().unwrap();
    assert_eq!(r.candidates.len(), 2);
    assert_eq!(r.history.len(), 1);
    assert_eq!(r.history[0].reason, "slot 1 replaced");
    assert_eq!(r.history[0].candidates[0].object, hash_bytes(b"one"));
    // committing the same object again is idempotent
    store
        .commit_candidate(&k, cand(&store, 1, b"one, again"))
        .unwrap();
    assert_eq!(store.task(&k).unwrap().unwrap().history.len(), 1);

    // update in place
    store
        .update_candidate(&k, 0, |c| {
            c.qa = Some(Verdict {
                verdict: nbbuild_cache::Outcome::Flagged,
                tells: vec!["six fingers".into()],
                ..Default::default()
            });
            c.qa_attempts += 1;
            c.url = Some("https://cdn/x.png".into());
            c.slot = 42; // ignored
        })
        .unwrap();
    let r = store.task(&k).unwrap().unwrap();
    let c0 = r.candidate(0).unwrap();
    assert_eq!(
        c0.qa.as_ref().unwrap().verdict,
        nbbuild_cache::Outcome::Flagged
    );
    assert_eq!(c0.qa_attempts, 1);
    assert_eq!(c0.url.as_deref(), Some("https://cdn/x.png"));
    // an update pointing at a missing object is refused, nothing written
    let err = store
        .update_candidate(&k, 0, |c| c.object = hash_bytes(b"absent"))
        .unwrap_err();
    assert!(matches!(err, StoreError::MissingObject(_)));
    assert_eq!(store.task(&k).unwrap().unwrap(), r);

    // re-roll
    store.start_reroll(&k, "--only scene02").unwrap();
    let r2 = store.task(&k).unwrap().unwrap();
    assert!(r2.candidates.is_empty());
    assert_eq!(r2.history.len(), 2);
    assert_eq!(r2.history[1].reason, "--only scene02");
    assert_eq!(r2.history[1].candidates, r.candidates);
    // a re-roll of nothing adds nothing
    store.start_reroll(&k, "again").unwrap();
    assert_eq!(store.task(&k).unwrap().unwrap().history.len(), 2);
}

#[test]
fn listing_and_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let keys = ["ab01", "ab02", "ac00", "00ff"];
    for (i, k) in keys.iter().enumerate() {
        let name = if i < 2 { "dup" } else { "other" };
        store.ensure_task(k, name, &json!(i)).unwrap();
    }
    let all: Vec<String> = store.tasks().unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(all, vec!["00ff", "ab01", "ab02", "ac00"]);
    let ab: Vec<String> = store
        .find_by_prefix("ab")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(ab, vec!["ab01", "ab02"]);
    let dup: Vec<String> = store
        .find_by_name("dup")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(dup, vec!["ab01", "ab02"]);
    assert!(store.find_by_name("du").unwrap().is_empty());
    assert!(store.find_by_prefix("zz").unwrap().is_empty());
}

#[test]
fn side_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let obj = store.put_bytes(b"img").unwrap();
    let v = Verdict {
        verdict: nbbuild_cache::Outcome::Clean,
        tells: vec![],
        confidence: Some(0.93),
        reviewer: "vision:qwen".into(),
        at: 1,
    };
    assert_eq!(store.verdict(&obj, "vision:qwen").unwrap(), None);
    store.put_verdict(&obj, "vision:qwen", &v).unwrap();
    assert_eq!(store.verdict(&obj, "vision:qwen").unwrap(), Some(v));
    assert_eq!(store.verdict(&obj, "command:x").unwrap(), None);

    store.put_upload(&obj, "r2", "https://pub/x.png").unwrap();
    assert_eq!(
        store.upload(&obj, "r2").unwrap().as_deref(),
        Some("https://pub/x.png")
    );
    assert_eq!(store.upload(&obj, "dir:/tmp").unwrap(), None);

    store
        .put_url_object("https://patchwork/u/1.png", &obj)
        .unwrap();
    assert_eq!(
        store.url_object("https://patchwork/u/1.png").unwrap(),
        Some(obj.clone())
    );
    assert_eq!(store.url_object("https://patchwork/u/2.png").unwrap(), None);

    let f = dir.path().join("ref.png");
    std::fs::write(&f, b"ref").unwrap();
    let mtime: i128 = 1_700_000_000_123_456_789_i128;
    store.put_file_hash(&f, 3, mtime, &obj).unwrap();
    assert_eq!(store.file_hash(&f, 3, mtime).unwrap(), Some(obj.clone()));
    // same file through a non-canonical path
    let odd = dir.path().join(".").join("ref.png");
    assert_eq!(store.file_hash(&odd, 3, mtime).unwrap(), Some(obj.clone()));
    assert_eq!(store.file_hash(&f, 3, mtime + 1).unwrap(), None);
    assert_eq!(store.file_hash(&f, 4, mtime).unwrap(), None);
    assert_eq!(
        store
            .file_hash(Path::new("/nonexistent/x"), 3, mtime)
            .unwrap(),
        None
    );
    assert!(store.put_file_hash(&f, 3, mtime, "nothex").is_err());

    store.pin(&obj, "user pick on Approve 3").unwrap();
    assert!(store.is_pinned(&obj).unwrap());
    assert_eq!(store.pins().unwrap()[0].why, "user pick on Approve 3");

    store.append_run(&json!({"n": 1})).unwrap();
    store.append_run(&json!({"n": 2})).unwrap();
    assert_eq!(
        store.runs().unwrap(),
        vec![json!({"n": 1}), json!({"n": 2})]
    );

    let s = store.stats().unwrap();
    assert_eq!(
        (
            s.objects,
            s.verdicts,
            s.uploads,
            s.url_objects,
            s.file_hashes,
            s.pins,
            s.runs
        ),
        (1, 1, 1, 1, 1, 1, 2)
    );
    assert_eq!(store.unpin(&obj).unwrap(), 1);
    assert!(!store.is_pinned(&obj).unwrap());
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(3);
    let (rec, obj) = {
        let store = Store::open(dir.path()).unwrap();
        store
            .ensure_task(&k, "scene03", &json!({"seed": 7}))
            .unwrap();
        let c = cand(&store, 0, b"bytes");
        let obj = c.object.clone();
        store.commit_candidate(&k, c).unwrap();
        store.put_upload(&obj, "r2", "https://u").unwrap();
        store.append_run(&json!({"run": 1})).unwrap();
        (store.task(&k).unwrap().unwrap(), obj)
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.task(&k).unwrap().unwrap(), rec);
    assert_eq!(store.read_object(&obj, true).unwrap(), b"bytes");
    assert_eq!(
        store.upload(&obj, "r2").unwrap().as_deref(),
        Some("https://u")
    );
    store.append_run(&json!({"run": 2})).unwrap();
    assert_eq!(store.runs().unwrap().len(), 2);
    assert!(store.notices().is_empty(), "{:?}", store.notices());
    let s = store.stats().unwrap();
    assert_eq!(
        (s.tasks, s.candidates, s.objects, s.object_bytes),
        (1, 1, 1, 5)
    );
}

#[test]
fn concurrent_commits_do_not_lose_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let k = key(4);
    store.ensure_task(&k, "shared", &json!({})).unwrap();
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let store = Arc::clone(&store);
            let k = k.clone();
            std::thread::spawn(move || {
                for i in 0..25u32 {
                    let slot = t * 100 + i;
                    store
                        .record_in_flight(
                            &k,
                            slot,
                            InFlight {
                                slot,
                                remote_task: format!("{t}/{i}"),
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    let object = store.put_bytes(format!("{t}/{i}").as_bytes()).unwrap();
                    store
                        .commit_candidate(
                            &k,
                            Candidate {
                                slot,
                                object,
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    store
                        .update_candidate(&k, slot, |c| c.qa_attempts = i)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = store.task(&k).unwrap().unwrap();
    assert_eq!(r.candidates.len(), 200);
    assert!(r.in_flight.is_empty());
    assert!(r.candidates.windows(2).all(|w| w[0].slot < w[1].slot));
    assert!(r.candidates.iter().all(|c| c.qa_attempts == c.slot % 100));
}

/// Stores written before there was a second route have no `route` on
/// their candidates: they read fine (as None, shown as G-Labs), and a
/// candidate without one is written without the field.
#[test]
fn candidates_without_a_route_read_and_write_as_before() {
    let old = serde_json::json!({"slot": 0, "object": "ab".repeat(32), "mime": "image/png",
        "size": 3, "created": 1, "remote_task": "a1b2c3d4"});
    let c: nbbuild_cache::Candidate = serde_json::from_value(old.clone()).unwrap();
    assert_eq!(c.route, None);
    assert_eq!(c.remote_task.as_deref(), Some("a1b2c3d4"));
    let back = serde_json::to_value(&c).unwrap();
    assert!(back.get("route").is_none(), "{back}");
    let new = nbbuild_cache::Candidate {
        route: Some("google".into()),
        ..c
    };
    assert_eq!(serde_json::to_value(&new).unwrap()["route"], "google");
}
