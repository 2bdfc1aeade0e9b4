//! Memos hold exactly until the store is next written (issue 11.7: the
//! no-op build's stamp lives on this promise).

use nbbuild_cache::{hash_bytes, Candidate, InFlight, Outcome, Store, Submitting, Verdict};
use serde_json::json;

fn key(n: u32) -> String {
    hash_bytes(format!("key {n}").as_bytes())
}

/// A store with one task holding one candidate, a verdict, an upload and a pin.
fn filled(dir: &std::path::Path) -> (Store, String, String) {
    let store = Store::open(dir).unwrap();
    let k = key(1);
    store.ensure_task(&k, "scene01", &json!({"p": 1})).unwrap();
    let object = store.put_bytes(b"first").unwrap();
    store
        .commit_candidate(
            &k,
            Candidate {
                slot: 0,
                object: object.clone(),
                mime: "image/png".into(),
                ..Default::default()
            },
        )
        .unwrap();
    (store, k, object)
}

#[test]
fn a_memo_survives_reopening_while_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = filled(dir.path());
    store.put_memo("stamp", b"hello").unwrap();
    assert_eq!(store.memo("stamp").unwrap().as_deref(), Some(&b"hello"[..]));
    // Reads do not move the generation.
    let _ = store.tasks().unwrap();
    let _ = store.stats().unwrap();
    let _ = store.verify().unwrap();
    assert_eq!(store.memo("stamp").unwrap().as_deref(), Some(&b"hello"[..]));
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.memo("stamp").unwrap().as_deref(), Some(&b"hello"[..]));
    assert_eq!(store.memo("other").unwrap(), None);
}

type Write = Box<dyn Fn(&Store, &str, &str)>;

/// Every kind of write the store offers, each on a store with a memo taken:
/// the memo is gone after it, in the same handle and after reopening.
#[test]
fn every_kind_of_write_forgets_the_memo() {
    let writes: Vec<(&str, Write)> = vec![
        (
            "ensure_task (new)",
            Box::new(|s, _, _| {
                s.ensure_task(&key(2), "scene02", &json!({}))
                    .map(|_| ())
                    .unwrap()
            }),
        ),
        (
            "ensure_task (renamed)",
            Box::new(|s, k, _| {
                s.ensure_task(k, "scene01b", &json!({"p": 1}))
                    .map(|_| ())
                    .unwrap()
            }),
        ),
        (
            "put_bytes",
            Box::new(|s, _, _| drop(s.put_bytes(b"another").unwrap())),
        ),
        (
            "commit_candidate",
            Box::new(|s, k, _| {
                let object = s.put_bytes(b"second").unwrap();
                s.commit_candidate(
                    k,
                    Candidate {
                        slot: 1,
                        object,
                        mime: "image/png".into(),
                        ..Default::default()
                    },
                )
                .unwrap()
            }),
        ),
        (
            "update_candidate",
            Box::new(|s, k, _| {
                s.update_candidate(k, 0, |c| c.mime = "image/jpeg".into())
                    .unwrap()
            }),
        ),
        (
            "start_reroll",
            Box::new(|s, k, _| s.start_reroll(k, "why").unwrap()),
        ),
        (
            "record_submitting",
            Box::new(|s, k, _| {
                s.record_submitting(
                    k,
                    Submitting {
                        slot: 1,
                        at: 1,
                        attempt: 1,
                    },
                )
                .unwrap()
            }),
        ),
        (
            "record_in_flight",
            Box::new(|s, k, _| {
                s.record_in_flight(
                    k,
                    1,
                    InFlight {
                        slot: 1,
                        remote_task: "t".into(),
                        attempt: 1,
                        submitted: 1,
                    },
                )
                .unwrap()
            }),
        ),
        (
            "rekey_task",
            Box::new(|s, k, _| s.rekey_task(k, &key(9), json!({"p": 2})).unwrap()),
        ),
        (
            "put_verdict",
            Box::new(|s, _, o| {
                s.put_verdict(
                    o,
                    "qa",
                    &Verdict {
                        verdict: Outcome::Flagged,
                        reviewer: "qa".into(),
                        ..Default::default()
                    },
                )
                .unwrap()
            }),
        ),
        (
            "put_upload",
            Box::new(|s, _, o| s.put_upload(o, "r2", "https://x/y").unwrap()),
        ),
        (
            "put_meta",
            Box::new(|s, _, _| s.put_meta("outputs:x", "y").unwrap()),
        ),
        (
            "put_url_object",
            Box::new(|s, _, o| s.put_url_object("https://ref", o).unwrap()),
        ),
        (
            "put_file_hash",
            Box::new(|s, _, o| {
                s.put_file_hash(std::path::Path::new("/a"), 1, 2, o)
                    .unwrap()
            }),
        ),
        ("pin", Box::new(|s, _, o| s.pin(o, "keep").unwrap())),
        (
            "append_run",
            Box::new(|s, _, _| s.append_run(&json!({"run": 1})).unwrap()),
        ),
        (
            "gc",
            Box::new(|s, _, _| {
                s.put_bytes(b"garbage").unwrap();
                s.gc(0, false).map(|_| ()).unwrap()
            }),
        ),
        (
            "quarantine_object",
            Box::new(|s, _, o| drop(s.quarantine_object(o).unwrap())),
        ),
    ];
    for (what, write) in writes {
        let dir = tempfile::tempdir().unwrap();
        let (store, k, object) = filled(dir.path());
        store.put_memo("stamp", b"v").unwrap();
        let before = store.generation().unwrap();
        write(&store, &k, &object);
        assert_ne!(
            store.generation().unwrap(),
            before,
            "{what} did not move the generation"
        );
        assert_eq!(
            store.memo("stamp").unwrap(),
            None,
            "{what} left the memo standing"
        );
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.memo("stamp").unwrap(),
            None,
            "{what}: the memo is back after reopening"
        );
    }
}

/// A write between two memos of one handle moves the generation again (the
/// first write after a memo is the one that must move it).
#[test]
fn a_write_after_a_second_memo_forgets_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k, _) = filled(dir.path());
    store.put_memo("stamp", b"1").unwrap();
    store.append_run(&json!({"run": 1})).unwrap();
    store.put_memo("stamp", b"2").unwrap();
    assert_eq!(store.memo("stamp").unwrap().as_deref(), Some(&b"2"[..]));
    store.start_reroll(&k, "again").unwrap();
    assert_eq!(store.memo("stamp").unwrap(), None);
}

/// Another process's write (another handle, opened after this one closed)
/// forgets a memo this one took.
#[test]
fn a_write_through_another_handle_forgets_the_memo() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, object) = filled(dir.path());
    store.put_memo("stamp", b"v").unwrap();
    drop(store);
    let other = Store::open(dir.path()).unwrap();
    other.pin(&object, "kept by the review page").unwrap();
    drop(other);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.memo("stamp").unwrap(), None);
}
