//! Verified hand-on and repair: a rotten object is refused before anything
//! reaches the destination, put back from a copy that hashes right, or
//! taken out of its slots when there is none.

use std::fs;
use std::path::Path;

use nbbuild_cache::{Candidate, ProblemKind, Restore, Store, StoreError};

fn make_writable(p: &Path) {
    let mut perm = fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(p, perm).unwrap();
}

/// Flip one byte in the middle of the object file (same size).
fn flip(store: &Store, id: &str) {
    let p = store.object_path(id);
    make_writable(&p);
    let mut b = fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x20;
    fs::write(&p, b).unwrap();
}

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn verified_copy_refuses_a_flipped_byte_and_leaves_the_destination_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s")).unwrap();
    // Larger than the copy buffer, so the mismatch is only known at the end.
    let bytes = content(3 << 20);
    let id = store.put_bytes(&bytes).unwrap();
    let dest = out.path().join("a/b/asset.bin");
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    assert_eq!(
        store.copy_object_to(&id, &dest, Some(t)).unwrap(),
        bytes.len() as u64
    );
    assert_eq!(fs::read(&dest).unwrap(), bytes);
    assert_eq!(fs::metadata(&dest).unwrap().modified().unwrap(), t);

    flip(&store, &id);
    fs::write(&dest, b"old asset").unwrap();
    let err = store.copy_object_to(&id, &dest, None).unwrap_err();
    match &err {
        StoreError::CorruptObject { id: named, .. } => assert_eq!(named, &id),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains(&id) && err.hint().is_some(),
        "{err}"
    );
    assert_eq!(fs::read(&dest).unwrap(), b"old asset", "dest untouched");
    let left: Vec<_> = fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("asset.bin")],
        "no temp left"
    );

    // The in-memory reads agree.
    assert!(store
        .read_object(&id, true)
        .unwrap_err()
        .is_corrupt_object());
    assert!(store.check_object(&id).unwrap_err().is_corrupt_object());
    let mut sink = Vec::new();
    assert!(store.copy_object(&id, &mut sink).is_err());
}

#[test]
fn restore_takes_only_a_copy_that_hashes_right_and_quarantines_the_rotten_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = content(10_000);
    let id = store.put_bytes(&bytes).unwrap();
    flip(&store, &id);
    let rotten = fs::read(store.object_path(&id)).unwrap();

    let wrong = dir.path().join("wrong.bin");
    fs::write(&wrong, &rotten).unwrap();
    match store.restore_object(&id, &wrong).unwrap() {
        Restore::Mismatch { size, .. } => assert_eq!(size, 10_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(store.object_path(&id)).unwrap(), rotten);

    let good = dir.path().join("good.bin");
    fs::write(&good, &bytes).unwrap();
    let Restore::Restored {
        quarantined: Some(q),
    } = store.restore_object(&id, &good).unwrap()
    else {
        panic!("not restored")
    };
    assert!(q.starts_with(store.root().join("quarantine")), "{q:?}");
    assert_eq!(fs::read(&q).unwrap(), rotten, "the rotten bytes are kept");
    assert_eq!(store.read_object(&id, true).unwrap(), bytes);
    let rep = store.verify().unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert!(rep
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Quarantined));

    // A missing object can be put back too.
    fs::remove_file(store.object_path(&id)).unwrap();
    assert_eq!(
        store.restore_object(&id, &good).unwrap(),
        Restore::Restored { quarantined: None }
    );
    assert_eq!(store.read_object(&id, true).unwrap(), bytes);
}

#[test]
fn forget_takes_the_candidate_out_and_a_new_commit_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let pre = serde_json::json!({"kind": "image", "candidates": 2});
    store.ensure_task("k1", "scene01", &pre).unwrap();
    let a = store.put_bytes(&content(5000)).unwrap();
    let b = store.put_bytes(&content(6000)).unwrap();
    for (slot, object) in [(0, &a), (1, &b)] {
        store
            .commit_candidate(
                "k1",
                Candidate {
                    slot,
                    object: object.clone(),
                    ..Candidate::default()
                },
            )
            .unwrap();
    }
    store.put_url_object("https://x.example/a.png", &a).unwrap();
    store.put_upload(&a, "dir:/m", "file:///m/a.png").unwrap();
    assert_eq!(
        store.uploads_of(&a).unwrap(),
        vec![("dir:/m".to_string(), "file:///m/a.png".to_string())]
    );
    assert_eq!(store.urls_of(&a).unwrap(), vec!["https://x.example/a.png"]);
    let h = store.holders(&a).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (
            h[0].name.as_str(),
            h[0].kind.as_str(),
            h[0].slot,
            h[0].current
        ),
        ("scene01", "image", 0, true)
    );

    flip(&store, &a);
    let rep = store.verify().unwrap();
    let p = rep
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::CorruptObject)
        .unwrap();
    assert!(
        p.detail.contains("c1 of scene01") && p.detail.contains("k1"),
        "verify names the task: {}",
        p.detail
    );

    let q = store.quarantine_object(&a).unwrap().unwrap();
    assert!(!store.has_object(&a));
    let taken = store
        .forget_corrupt(&a, "its bytes hash to something else", Some(&q))
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].key.as_str(), taken[0].slot), ("k1", 0));
    let rec = store.task("k1").unwrap().unwrap();
    assert!(rec.candidate(0).is_none());
    assert_eq!(rec.candidate(1).unwrap().object, b);
    assert_eq!(rec.corrupted.len(), 1);
    assert_eq!(rec.corrupted[0].slot, 0);
    assert_eq!(rec.corrupted[0].object, a);
    assert_eq!(store.url_object("https://x.example/a.png").unwrap(), None);
    let rep = store.verify().unwrap();
    assert!(!rep.is_ok());
    let p = rep
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::CorruptCandidate)
        .unwrap();
    assert!(p.detail.contains("c1 of task k1 (scene01)"), "{}", p.detail);

    let c = store.put_bytes(&content(7000)).unwrap();
    store
        .commit_candidate(
            "k1",
            Candidate {
                slot: 0,
                object: c,
                ..Candidate::default()
            },
        )
        .unwrap();
    assert!(store.task("k1").unwrap().unwrap().corrupted.is_empty());
    assert!(store.verify().unwrap().is_ok());
}
