//! Unit tests of the object directory: through the [`ObjectStore`] trait,
//! the inherent byte paths, and rot caught on read and replaced on re-put.

use std::fs;
use std::io;

use crate::hash::{hash_bytes, EMPTY_OBJECT};
use crate::{LocalObjects, ObjectId, ObjectStore, Result, Store, StoreError};

/// A `LocalObjects` in a fresh directory, with a throwaway sled tree.
fn local() -> (tempfile::TempDir, LocalObjects) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("objects")).unwrap();
    fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let sizes = crate::store::Trees::open(&db).unwrap().sizes;
    let objects = LocalObjects::new(dir.path(), sizes);
    (dir, objects)
}

fn get_bytes(s: &dyn ObjectStore, id: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    s.get(id, &mut out)?;
    Ok(out)
}

/// Overwrite the object file with other bytes of the same length.
fn rot(objects: &LocalObjects, id: &str) {
    let p = objects.path(id);
    let mut perm = fs::metadata(&p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&p, perm).unwrap();
    let mut bytes = fs::read(&p).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&p, bytes).unwrap();
}

#[test]
fn put_then_get_round_trips() {
    let (_dir, objects) = local();
    let store: &dyn ObjectStore = &objects;
    let (id, size) = store.put(&mut &b"hello world"[..]).unwrap();
    assert_eq!(id, hash_bytes(b"hello world"));
    assert_eq!(size, 11);
    assert_eq!(get_bytes(store, &id).unwrap(), b"hello world");
    // The same bytes again: the same id, one file.
    assert_eq!(
        store.put(&mut &b"hello world"[..]).unwrap(),
        (id.clone(), 11)
    );
    assert_eq!(store.list().unwrap(), vec![id.clone()]);
    // Through the inherent byte path, too.
    assert_eq!(objects.put_bytes(b"hello world").unwrap(), id);
    assert_eq!(objects.read(&id, true).unwrap(), b"hello world");
}

#[test]
fn the_empty_object_round_trips() {
    let (_dir, objects) = local();
    let (id, size) = objects.put(&mut io::empty()).unwrap();
    assert_eq!((id.as_str(), size), (EMPTY_OBJECT, 0));
    assert!(get_bytes(&objects, &id).unwrap().is_empty());
}

#[test]
fn has_tells_presence() {
    let (_dir, objects) = local();
    let id = hash_bytes(b"abc");
    assert!(!objects.has(&id));
    objects.put(&mut &b"abc"[..]).unwrap();
    assert!(objects.has(&id));
    assert!(!objects.has("not-an-id"));
    assert!(!objects.has(&id.to_uppercase()));
}

#[test]
fn list_is_sorted_and_skips_strays() {
    let (dir, objects) = local();
    let mut ids: Vec<ObjectId> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| objects.put(&mut s.as_bytes()).unwrap().0)
        .collect();
    ids.sort();
    fs::write(dir.path().join("objects").join("stray"), b"x").unwrap();
    fs::create_dir_all(dir.path().join("objects").join("zz")).unwrap();
    fs::write(dir.path().join("objects").join("zz").join("nope"), b"x").unwrap();
    assert_eq!(objects.list().unwrap(), ids);
}

#[test]
fn delete_removes_and_tolerates_absence() {
    let (_dir, objects) = local();
    let (id, _) = objects.put(&mut &b"doomed"[..]).unwrap();
    let fan_out = objects.path(&id).parent().unwrap().to_path_buf();
    objects.delete(&id).unwrap();
    assert!(!objects.has(&id));
    assert!(objects.list().unwrap().is_empty());
    assert!(!fan_out.exists(), "the emptied fan-out directory goes too");
    assert_eq!(objects.recorded_size(&id).unwrap(), None);
    assert!(matches!(
        get_bytes(&objects, &id),
        Err(StoreError::MissingObject(_))
    ));
    objects.delete(&id).unwrap();
    assert!(matches!(
        objects.delete("bad"),
        Err(StoreError::BadObjectId(_))
    ));
    // Put again after delete: back, with its size recorded.
    objects.put(&mut &b"doomed"[..]).unwrap();
    assert_eq!(get_bytes(&objects, &id).unwrap(), b"doomed");
}

#[test]
fn a_rotten_object_is_caught() {
    let (_dir, objects) = local();
    let (id, _) = objects.put(&mut &b"precious bytes"[..]).unwrap();
    rot(&objects, &id);
    // Same size: only the hash can tell.
    assert!(objects.read(&id, false).is_ok());
    let err = objects.read(&id, true).unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptObject { id: bad, .. } if *bad == id),
        "{err:?}"
    );
    let mut out = Vec::new();
    assert!(matches!(
        objects.get(&id, &mut out),
        Err(StoreError::CorruptObject { .. })
    ));
    // Putting the good bytes again replaces the rotten file and keeps it
    // under quarantine/.
    objects.put(&mut &b"precious bytes"[..]).unwrap();
    assert_eq!(objects.read(&id, true).unwrap(), b"precious bytes");
    assert_eq!(fs::read_dir(&objects.quarantine).unwrap().count(), 1);
}

#[test]
fn read_object_with_verify_catches_rot_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.put_bytes(b"an image").unwrap();
    rot(store.objects(), &id);
    assert!(store.read_object(&id, false).is_ok());
    assert!(matches!(
        store.read_object(&id, true),
        Err(StoreError::CorruptObject { .. })
    ));
    assert!(matches!(
        store.objects().get(&id, &mut io::sink()),
        Err(StoreError::CorruptObject { .. })
    ));
}

#[test]
fn a_wrong_size_is_caught_without_hashing() {
    let (_dir, objects) = local();
    let (id, _) = objects.put(&mut &b"twelve bytes"[..]).unwrap();
    let p = objects.path(&id);
    let mut perm = fs::metadata(&p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&p, perm).unwrap();
    fs::write(&p, b"short").unwrap();
    assert!(matches!(
        objects.read(&id, false),
        Err(StoreError::CorruptObject { .. })
    ));
}

#[test]
fn writes_are_remembered_for_gc() {
    let (_dir, objects) = local();
    let (a, _) = objects.put(&mut &b"a"[..]).unwrap();
    let b = objects.put_bytes(b"b").unwrap();
    let mut session = objects.session();
    session.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(session, want);
}
