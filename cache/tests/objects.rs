//! Objects: put/read, dedup, size and hash checks, verify.

use std::fs;
use std::io::Write;
use std::path::Path;

use nbbuild_cache::{hash_bytes, Candidate, ProblemKind, Store, StoreError};

fn make_writable(p: &Path) {
    let mut perm = fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(p, perm).unwrap();
}

#[test]
fn put_and_read_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.put_bytes(b"hello world").unwrap();
    assert_eq!(id, hash_bytes(b"hello world"));
    assert_eq!(id.len(), 64);
    assert!(store.has_object(&id));
    let p = store.object_path(&id);
    assert_eq!(
        p,
        store.root().join("objects").join(&id[..2]).join(&id[2..])
    );
    assert_eq!(store.read_object(&id, true).unwrap(), b"hello world");
    assert_eq!(store.read_object(&id, false).unwrap(), b"hello world");
    // same bytes again: same id, one file
    assert_eq!(store.put_bytes(b"hello world").unwrap(), id);
    assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    // the empty object is legal
    let empty = store.put_bytes(b"").unwrap();
    assert_eq!(store.read_object(&empty, true).unwrap(), b"");
    // nothing left in tmp/
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn put_file_streams_and_matches_put_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".nbbuild")).unwrap();
    let src = dir.path().join("big.bin");
    let bytes: Vec<u8> = (0..(3 << 20) + 12345u32)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    fs::File::create(&src).unwrap().write_all(&bytes).unwrap();
    let (id, size) = store.put_file(&src).unwrap();
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(id, hash_bytes(&bytes));
    assert_eq!(store.read_object(&id, true).unwrap(), bytes);
    assert_eq!(nbbuild_cache::hash_file(&src).unwrap(), (id.clone(), size));
    // again: dedup, the temp copy is removed
    assert_eq!(store.put_file(&src).unwrap(), (id, size));
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    // missing source
    let err = store.put_file(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn bad_and_missing_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!store.has_object("../../etc/passwd"));
    assert!(matches!(
        store.read_object("../../etc/passwd", false),
        Err(StoreError::BadObjectId(_))
    ));
    let absent = hash_bytes(b"never stored");
    assert!(!store.has_object(&absent));
    match store.read_object(&absent, false) {
        Err(StoreError::MissingObject(id)) => assert_eq!(id, absent),
        other => panic!("{other:?}"),
    }
}

#[test]
fn flipped_byte_is_detected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let good = store.put_bytes(b"good object").unwrap();
    let id = store.put_bytes(&vec![7u8; 10_000]).unwrap();
    let path = store.object_path(&id);
    make_writable(&path);
    let mut bytes = fs::read(&path).unwrap();
    bytes[4321] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    // same size: the cheap read passes, the verifying read does not
    assert_eq!(store.read_object(&id, false).unwrap().len(), 10_000);
    match store.read_object(&id, true) {
        Err(e @ StoreError::CorruptObject { .. }) => {
            assert!(e.to_string().contains(&id), "{e}");
            assert!(e.hint().is_some());
        }
        other => panic!("{other:?}"),
    }
    let rep = store.verify().unwrap();
    assert_eq!(rep.objects_checked, 2);
    assert_eq!(rep.bytes_checked, 10_000 + 11);
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    assert_eq!(rep.problems[0].kind, ProblemKind::CorruptObject);
    assert_eq!(rep.problems[0].what, id);
    assert!(!rep.is_ok());
    assert!(store.read_object(&good, true).is_ok());
}

#[test]
fn truncated_object_fails_the_size_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.put_bytes(&vec![1u8; 5000]).unwrap();
    let path = store.object_path(&id);
    make_writable(&path);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    let err = store.read_object(&id, false).unwrap_err();
    assert!(matches!(err, StoreError::CorruptObject { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&id) && err.to_string().contains("5000"),
        "{err}"
    );
    let rep = store.verify().unwrap();
    assert_eq!(rep.problems[0].kind, ProblemKind::CorruptObject);
    assert_eq!(rep.problems[0].what, id);

    // size unknown to the db (entry lost) but the file is empty: still corrupt
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let id2 = hash_bytes(b"not empty");
    let p2 = store.object_path(&id2);
    fs::create_dir_all(p2.parent().unwrap()).unwrap();
    fs::write(&p2, b"").unwrap();
    assert!(matches!(
        store.read_object(&id2, false),
        Err(StoreError::CorruptObject { .. })
    ));
}

#[test]
fn missing_object_referenced_by_a_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = "ab".repeat(32);
    store
        .ensure_task(&key, "scene07", &serde_json::json!({"prompt": "x"}))
        .unwrap();
    let id = store.put_bytes(b"candidate bytes").unwrap();
    store
        .commit_candidate(
            &key,
            Candidate {
                slot: 0,
                object: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(store.verify().unwrap().problems.is_empty());
    fs::remove_file(store.object_path(&id)).unwrap();
    let rep = store.verify().unwrap();
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    let p = &rep.problems[0];
    assert_eq!(p.kind, ProblemKind::MissingObject);
    assert_eq!(p.what, id);
    assert!(
        p.detail.contains(&key) && p.detail.contains("scene07"),
        "{p}"
    );

    // committing a candidate whose object is not there is refused
    let absent = hash_bytes(b"absent");
    let err = store
        .commit_candidate(
            &key,
            Candidate {
                slot: 1,
                object: absent.clone(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::MissingObject(ref i) if *i == absent),
        "{err:?}"
    );
    assert!(store.task(&key).unwrap().unwrap().candidate(1).is_none());
}

#[test]
fn stray_files_and_tmp_leftovers_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_bytes(b"x").unwrap();
        fs::write(store.root().join("objects").join("README"), b"hi").unwrap();
        fs::write(store.root().join("tmp").join("obj-1-leftover"), b"half").unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let rep = store.verify().unwrap();
    let kinds: Vec<_> = rep.problems.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&ProblemKind::StrayFile), "{kinds:?}");
    assert!(kinds.contains(&ProblemKind::TmpLeftover), "{kinds:?}");
    let gc = store.gc(10, false).unwrap();
    assert_eq!(gc.leftovers_removed, 1);
    assert_eq!(gc.objects_removed, 1, "the unreferenced object goes too");
    let kinds: Vec<_> = store
        .verify()
        .unwrap()
        .problems
        .iter()
        .map(|p| p.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![ProblemKind::StrayFile],
        "gc leaves files it does not own"
    );
}
