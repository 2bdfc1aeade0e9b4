//! One writer: a second opener gets StoreError::Locked naming the holder;
//! a dead holder's LOCK file does not block.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use nbbuild_cache::{LockInfo, Store, StoreError};

#[test]
fn second_writer_is_refused_and_stale_lock_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join(".nbbuild");
    let mut guard = common::KillOnDrop(
        Command::new(common::example_bin("hold_store"))
            .arg(&store_dir)
            .arg("120")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "child said {line:?}");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "wrote 1\n");

    let err = Store::open(&store_dir).unwrap_err();
    match &err {
        StoreError::Locked {
            pid,
            command,
            since,
            dir,
        } => {
            assert_eq!(*pid, child.id());
            assert!(command.contains("hold_store"), "{command}");
            assert!(*since > 0);
            assert_eq!(dir, &store_dir.canonicalize().unwrap());
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&child.id().to_string()) && msg.contains("hold_store"),
        "{msg}"
    );
    let hint = err.hint().unwrap();
    assert!(hint.contains(&format!("kill {}", child.id())), "{hint}");
    eprintln!("error: {msg}\nhint: {hint}");

    child.kill().unwrap(); // SIGKILL: no cleanup, LOCK stays behind
    child.wait().unwrap();
    let lock: LockInfo =
        serde_json::from_slice(&std::fs::read(store_dir.join("LOCK")).unwrap()).unwrap();
    assert_eq!(lock.pid, child.id());
    assert!(!nbbuild_cache::pid_alive(lock.pid));

    let store = Store::open(&store_dir).expect("a stale lock does not block");
    assert!(
        store
            .notices()
            .iter()
            .any(|n| n.contains("stale lock") && n.contains(&child.id().to_string())),
        "{:?}",
        store.notices()
    );
    // the child's writes are there
    assert!(!store.runs().unwrap().is_empty());
    let lock: LockInfo =
        serde_json::from_slice(&std::fs::read(store_dir.join("LOCK")).unwrap()).unwrap();
    assert_eq!(lock.pid, std::process::id());
    drop(store);
    assert!(!store_dir.join("LOCK").exists(), "LOCK is removed on drop");
}

#[test]
fn second_open_in_the_same_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    match &err {
        StoreError::Locked { pid, .. } => assert_eq!(*pid, std::process::id()),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("this process"), "{err}");
    drop(a);
    Store::open(dir.path()).expect("reopen after drop");
}

#[test]
fn garbage_lock_file_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("LOCK"), b"{not json").unwrap();
    let s = Store::open(dir.path()).unwrap();
    drop(s);
    // a LOCK naming a pid that cannot exist
    std::fs::write(
        dir.path().join("LOCK"),
        br#"{"pid": 2147483646, "since": 1, "command": "nbbuild old"}"#,
    )
    .unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert!(
        s.notices().iter().any(|n| n.contains("2147483646")),
        "{:?}",
        s.notices()
    );
}
