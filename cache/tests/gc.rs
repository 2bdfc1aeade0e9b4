//! gc: keeps current candidates, pins, url/file references and bounded
//! history; drops the rest; dry_run changes nothing.

use std::collections::BTreeSet;
use std::path::Path;

use nbbuild_cache::{Candidate, Store};
use serde_json::json;

fn object_files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in std::fs::read_dir(root.join("objects")).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            out.insert(format!(
                "{}{}",
                d.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    out
}

#[test]
fn gc_rules() {
    let dir = tempfile::tempdir().unwrap();
    let key = "k1";
    let ids: Vec<String>;
    {
        let store = Store::open(dir.path()).unwrap();
        store.ensure_task(key, "scene", &json!({})).unwrap();
        let put = |b: &str| store.put_bytes(b.as_bytes()).unwrap();
        // four generations of candidates: gen0 (oldest) .. gen3 (current)
        let gens: Vec<String> = (0..4).map(|g| put(&format!("gen{g}"))).collect();
        for (g, id) in gens.iter().enumerate() {
            if g > 0 {
                store.start_reroll(key, &format!("reroll {g}")).unwrap();
            }
            store
                .commit_candidate(
                    key,
                    Candidate {
                        slot: 0,
                        object: id.clone(),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        let pinned = put("user pick");
        store.pin(&pinned, "pick on Approve 1").unwrap();
        let from_url = put("downloaded reference");
        store
            .put_url_object("https://pw/ref.png", &from_url)
            .unwrap();
        let local = put("local reference");
        store
            .put_file_hash(Path::new("/refs/a.png"), 15, 1, &local)
            .unwrap();
        let uploaded_only = put("uploaded but unreferenced");
        store
            .put_upload(&uploaded_only, "r2", "https://pub/u.png")
            .unwrap();
        let verdict_only = put("reviewed but unreferenced");
        store
            .put_verdict(
                &verdict_only,
                "vision",
                &nbbuild_cache::Verdict {
                    verdict: nbbuild_cache::Outcome::Clean,
                    ..Default::default()
                },
            )
            .unwrap();
        let orphan = put("orphan");

        // objects written by this handle are spared (a commit may be coming)
        let r = store.gc(1, true).unwrap();
        assert_eq!(r.objects_removed, 0, "{r:?}");
        ids = [
            gens,
            vec![pinned, from_url, local, uploaded_only, verdict_only, orphan],
        ]
        .concat();
        assert_eq!(store.task(key).unwrap().unwrap().history.len(), 3);
    }
    let [g0, g1, g2, g3, pinned, from_url, local, uploaded_only, verdict_only, orphan] =
        <[String; 10]>::try_from(ids).unwrap();

    let store = Store::open(dir.path()).unwrap();
    let root = store.root().to_path_buf();
    std::fs::write(root.join("tmp").join("obj-1-stale"), b"half written").unwrap();
    let before_files = object_files(&root);
    let before_rec = store.task(key).unwrap().unwrap();
    assert_eq!(before_files.len(), 10);

    // dry run: reports, changes nothing
    let dry = store.gc(1, true).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.history_sets_removed, 2);
    // gen0 and gen1 (history beyond the bound) + 3 unreferenced
    assert_eq!(dry.objects_removed, 5, "{dry:?}");
    assert_eq!(dry.leftovers_removed, 1);
    assert!(dry.bytes_freed > 0);
    assert_eq!(object_files(&root), before_files);
    assert_eq!(store.task(key).unwrap().unwrap(), before_rec);
    assert!(root.join("tmp").join("obj-1-stale").exists());

    // the real thing reports exactly what the dry run said
    let real = store.gc(1, false).unwrap();
    assert_eq!(
        real,
        nbbuild_cache::GcReport {
            dry_run: false,
            ..dry
        }
    );
    let after = object_files(&root);
    let expect: BTreeSet<String> = [&g2, &g3, &pinned, &from_url, &local]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(after, expect);
    for gone in [&g0, &g1, &uploaded_only, &verdict_only, &orphan] {
        assert!(!store.has_object(gone));
    }
    let rec = store.task(key).unwrap().unwrap();
    assert_eq!(rec.candidates[0].object, g3, "current candidate kept");
    assert_eq!(rec.history.len(), 1, "newest history set kept");
    assert_eq!(rec.history[0].reason, "reroll 3");
    assert_eq!(rec.history[0].candidates[0].object, g2);
    assert!(!root.join("tmp").join("obj-1-stale").exists());
    // side tables survive (same bytes are never reviewed/uploaded twice)
    assert!(store.upload(&uploaded_only, "r2").unwrap().is_some());
    assert!(store.verdict(&verdict_only, "vision").unwrap().is_some());
    assert!(store.verify().unwrap().problems.is_empty());

    // idempotent; keep_history = 0 then drops the last history set but
    // never the current candidate or the pin
    assert_eq!(store.gc(1, false).unwrap().objects_removed, 0);
    let r = store.gc(0, false).unwrap();
    assert_eq!((r.history_sets_removed, r.objects_removed), (1, 1));
    assert!(store.has_object(&g3) && store.has_object(&pinned));
    assert!(store.read_object(&g3, true).is_ok());
    let s = store.stats().unwrap();
    assert_eq!((s.candidates, s.history_sets, s.objects), (1, 0, 4));
}
