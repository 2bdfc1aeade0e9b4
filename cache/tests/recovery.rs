//! Open-time recovery: sled's truncated `snap.*.generating` quirk, and the
//! schema version check.

use std::fs;
use std::path::{Path, PathBuf};

use nbbuild_cache::{Candidate, ProblemKind, Store, StoreError, SCHEMA_VERSION};
use serde_json::json;

fn snap_files(db: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(db)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .collect();
    v.sort();
    v
}

fn populate(dir: &Path) -> String {
    let store = Store::open(dir).unwrap();
    store
        .ensure_task("k1", "scene01", &json!({"prompt": "p"}))
        .unwrap();
    let id = store.put_bytes(b"candidate").unwrap();
    store
        .commit_candidate(
            "k1",
            Candidate {
                slot: 0,
                object: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    id
}

fn check_recovered(dir: &Path, id: &str) {
    let store = Store::open(dir).expect("open recovers");
    eprintln!("notices: {:?}", store.notices());
    assert!(
        store
            .notices()
            .iter()
            .any(|n| n.contains("corruption") && n.contains(".generating")),
        "{:?}",
        store.notices()
    );
    let rec = store.task("k1").unwrap().expect("record survives");
    assert_eq!(rec.candidates[0].object, id);
    assert!(snap_files(&store.root().join("db"))
        .iter()
        .all(|p| !p.to_string_lossy().ends_with(".generating")));
    let q: Vec<_> = fs::read_dir(store.root().join("quarantine"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(q.len(), 1);
    assert!(q[0]
        .file_name()
        .to_string_lossy()
        .contains(".generating.corrupt-"));
    let rep = store.verify().unwrap();
    assert!(rep.is_ok());
    assert!(rep
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Quarantined));
    assert_eq!(store.gc(5, false).unwrap().leftovers_removed, 1);
    assert!(store.verify().unwrap().problems.is_empty());
    // and it keeps working
    store.ensure_task("k2", "scene02", &json!({})).unwrap();
    drop(store);
    let store = Store::open(dir).unwrap();
    assert!(store.notices().is_empty(), "{:?}", store.notices());
    assert_eq!(store.tasks().unwrap().len(), 2);
}

/// A truncated copy of the newest real snapshot, named as sled names a
/// snapshot it is still writing (sorts after the real one).
#[test]
fn truncated_generating_snapshot_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let id = populate(dir.path());
    let db = dir.path().join("db");
    // A few more writes through sled directly make it write a snapshot on close.
    {
        let sdb = sled::open(&db).unwrap();
        let t = sdb.open_tree("scratch").unwrap();
        for i in 0..50u32 {
            t.insert(i.to_be_bytes(), &[1u8; 16]).unwrap();
        }
        sdb.flush().unwrap();
    }
    let snaps = snap_files(&db);
    eprintln!("snapshots: {snaps:?}");
    let newest = snaps.last().expect("sled wrote a snapshot");
    let bytes = fs::read(newest).unwrap();
    let gen = PathBuf::from(format!("{}.generating", newest.display()));
    fs::write(&gen, &bytes[..bytes.len() / 2]).unwrap();

    // sled itself refuses this database
    match sled::open(&db) {
        Err(sled::Error::Corruption { .. }) => {}
        other => panic!(
            "expected sled to report Corruption, got {:?}",
            other.map(|_| ())
        ),
    }
    check_recovered(dir.path(), &id);
}

/// A tiny garbage file with a higher LSN than any real snapshot.
#[test]
fn garbage_generating_snapshot_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let id = populate(dir.path());
    let db = dir.path().join("db");
    fs::write(db.join("snap.7FFFFFFFFFFFFFFF.generating"), b"trunc").unwrap();
    assert!(matches!(
        sled::open(&db),
        Err(sled::Error::Corruption { .. })
    ));
    check_recovered(dir.path(), &id);
}

#[test]
fn schema_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(
            meta.get("schema_version").unwrap().as_deref(),
            Some(SCHEMA_VERSION.to_string().as_bytes())
        );
        meta.insert("schema_version", "99").unwrap();
        db.flush().unwrap();
    }
    for _ in 0..2 {
        let err = Store::open(dir.path()).unwrap_err();
        match &err {
            StoreError::Schema { found, expected } => {
                assert_eq!((*found, *expected), (99, SCHEMA_VERSION));
            }
            other => panic!("expected Schema, got {other:?}"),
        }
        assert!(err.to_string().contains("99"), "{err}");
        assert!(err.hint().unwrap().contains("newer"), "{:?}", err.hint());
        assert!(
            !dir.path().join("LOCK").exists(),
            "a refused open leaves no LOCK"
        );
    }
    // an older version
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", "0")
            .unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Schema { found: 0, .. }));
    assert!(err.hint().unwrap().contains("older"));
}

#[test]
fn garbage_database_opens_empty_and_says_records_were_lost() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let dbfile = dir.path().join("db").join("db");
    let len = fs::metadata(&dbfile).unwrap().len() as usize;
    fs::write(&dbfile, vec![0xA5u8; len.max(4096)]).unwrap();
    for s in snap_files(&dir.path().join("db")) {
        fs::remove_file(s).unwrap();
    }
    // Pinned to sled 0.34.7's behaviour: it opens this as an empty
    // database, and the store says the records about its objects were lost
    // (a sled that starts refusing it instead must be handled here first).
    let store = Store::open(dir.path()).expect("sled 0.34.7 opens garbage as empty");
    assert_eq!(store.tasks().unwrap().len(), 0);
    assert!(
        store
            .notices()
            .iter()
            .any(|n| n.contains("records about them were lost")),
        "{:?}",
        store.notices()
    );
}
