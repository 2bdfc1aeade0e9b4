//! Issue 20: the store verifies what it hands on. A rotten object (one byte
//! flipped, same size) is caught before it reaches Assets/, a mirror or the
//! generator; it is repaired from a good copy nbbuild knows, and only with
//! none is its candidate reported and regenerated.

use crate::harness::{fast_sim, Sim, Test};
use std::path::{Path, PathBuf};

const STILL: &str = "Assets/XYZG1/generated-images/v0-3";
const CLIP: &str = "Assets/XYZG1/generated-videos/v0-3";

fn object_of(t: &Test, name: &str, kind: &str, slot: usize) -> String {
    let show = t.run(&["cache", "show", name, "--json"]).json();
    let task = show["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["record"]["preimage"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} task {name}: {show:#}"));
    task["record"]["candidates"][slot]["object"]
        .as_str()
        .unwrap()
        .to_string()
}

fn object_path(t: &Test, object: &str) -> PathBuf {
    t.path()
        .join(".nbbuild/objects")
        .join(&object[..2])
        .join(&object[2..])
}

fn hash(p: &Path) -> String {
    blake3::hash(&std::fs::read(p).unwrap())
        .to_hex()
        .to_string()
}

/// Flip one byte in the middle of a stored object (same size): what a bad
/// disk or a stray edit inside `.nbbuild/` does. Returns the rotten bytes.
fn rot(t: &Test, object: &str) -> Vec<u8> {
    let p = object_path(t, object);
    let mut perms = std::fs::metadata(&p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&p, perms).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::write(&p, &b).unwrap();
    assert_ne!(hash(&p), object);
    b
}

/// The files under `.nbbuild/quarantine/` holding `object`.
fn quarantined(t: &Test, object: &str) -> Vec<PathBuf> {
    match std::fs::read_dir(t.path().join(".nbbuild/quarantine")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(object))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn built(args: &[&str]) -> (Sim, Test) {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let mut a = vec!["--candidates", "1"];
    a.extend_from_slice(args);
    t.build(&sim, &a).assert_code(0);
    (sim, t)
}

#[test]
fn a_rotten_still_with_its_asset_in_place_is_repaired_from_the_asset_before_upload() {
    let (sim, t) = built(&[]);
    let object = object_of(&t, "scene01", "image", 0);
    let asset = t.path().join(STILL).join("scene01-c1.png");
    assert_eq!(hash(&asset), object);
    let rotten = rot(&t, &object);
    let before = sim.stats();

    // Publishing hands every stored candidate on: the rotten one is caught,
    // put back from its asset, and the good bytes go up.
    let mirror = tempfile::tempdir().unwrap();
    let spec = format!("dir:{}", mirror.path().display());
    let r = t.build(&sim, &["--candidates", "1", "--mirror", &spec]);
    r.assert_code(0);
    let after = sim.stats();
    assert_eq!(after.image_submits, before.image_submits, "nothing paid");
    assert_eq!(after.video_submits, before.video_submits, "nothing paid");
    assert_eq!(hash(&object_path(&t, &object)), object, "store repaired");
    let q = quarantined(&t, &object);
    assert_eq!(q.len(), 1, "the rotten file is kept");
    assert_eq!(std::fs::read(&q[0]).unwrap(), rotten);
    assert!(
        r.stderr.contains("scene01 c1") && r.stderr.contains(asset.to_str().unwrap()),
        "the build says what it repaired and from where: {}",
        r.stderr
    );
    let repairs = &r.json()["repairs"];
    assert_eq!(repairs.as_array().unwrap().len(), 1, "{repairs:#}");
    assert_eq!(repairs[0]["action"], "repaired");
    assert_eq!(repairs[0]["object"], object.as_str());
    assert_eq!(repairs[0]["from"], asset.to_str().unwrap());
    // The mirror holds the good bytes, under the candidate's key.
    let up: Vec<PathBuf> = files(mirror.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("scene01-c1-"))
        .collect();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(hash(&up[0]), object);
    t.run(&["cache", "verify"]).assert_code(0);
}

#[test]
fn a_rotten_start_frame_is_repaired_from_its_asset_before_it_is_sent() {
    // Stills first; the clips then send scene01's pick as their start frame.
    let (sim, t) = built(&["--mode", "images"]);
    let object = object_of(&t, "scene01", "image", 0);
    rot(&t, &object);
    let before = sim.stats();
    let r = t.build(&sim, &["--candidates", "1"]);
    r.assert_code(0);
    let after = sim.stats();
    assert_eq!(after.image_submits, before.image_submits, "no still redone");
    assert_eq!(
        after.video_submits,
        before.video_submits + 2,
        "the two clips"
    );
    assert_eq!(hash(&object_path(&t, &object)), object);
    assert_eq!(r.json()["repairs"][0]["action"], "repaired");
    assert_eq!(quarantined(&t, &object).len(), 1);
}

#[test]
fn a_rotten_still_with_no_good_copy_is_named_and_planned_stale_then_regenerated() {
    let (sim, t) = built(&["--mode", "images"]);
    let object = object_of(&t, "b-roll-product-row2", "image", 0);
    rot(&t, &object);
    std::fs::remove_dir_all(t.path().join("Assets")).unwrap();
    let before = sim.stats();

    let r = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    r.assert_code(1);
    assert!(
        r.stderr.contains("candidate b-roll-product-row2 c1")
            && r.stderr.contains("corrupted in the store")
            && r.stderr.contains(&object[..12]),
        "{}",
        r.stderr
    );
    let v = r.json();
    assert_eq!(v["repairs"][0]["action"], "lost", "{v:#}");
    assert_eq!(
        v["repairs"][0]["candidates"][0]["name"],
        "b-roll-product-row2"
    );
    assert_eq!(v["calls"]["image"], 0);
    assert_eq!(sim.stats().image_submits, before.image_submits);
    // The rotten bytes were not copied on: no asset for that slot.
    assert!(!t
        .path()
        .join(STILL)
        .join("b-roll-product-row2-c1.png")
        .exists());
    assert!(t
        .path()
        .join(STILL)
        .join("b-roll-product-row1-c1.png")
        .exists());
    assert_eq!(quarantined(&t, &object).len(), 1);

    let plan = t.run(&["plan", "--candidates", "1", "--mode", "images", "--json"]);
    plan.assert_code(0);
    let p = plan.json();
    let stale: Vec<&serde_json::Value> = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"] == "stale")
        .collect();
    assert_eq!(stale.len(), 1, "{p:#}");
    assert_eq!(stale[0]["name"], "b-roll-product-row2");
    assert_eq!(stale[0]["reason"]["kind"]["reason"], "candidate_corrupted");
    assert_eq!(
        stale[0]["reason"]["text"],
        "candidate corrupted in the store (c1)"
    );
    assert_eq!(p["calls"]["image"], 1);
    let human = t.run(&["plan", "--candidates", "1", "--mode", "images"]);
    assert!(
        human
            .stdout
            .contains("b-roll-product-row2: candidate corrupted in the store (c1)"),
        "{}",
        human.stdout
    );
    let v = t.run(&["cache", "verify", "--json"]);
    v.assert_code(1);
    let vj = v.json();
    assert!(
        vj["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "corrupt_candidate"
                && x["detail"]
                    .as_str()
                    .unwrap()
                    .contains("(b-roll-product-row2)")),
        "{vj:#}"
    );

    // The user decides: the next build regenerates that slot, and only it.
    let again = t.build(&sim, &["--candidates", "1", "--mode", "images"]);
    again.assert_code(0);
    assert_eq!(sim.stats().image_submits, before.image_submits + 1);
    assert!(t
        .path()
        .join(STILL)
        .join("b-roll-product-row2-c1.png")
        .exists());
    t.run(&["cache", "verify"]).assert_code(0);
}

#[test]
fn a_rotten_clip_is_never_uploaded_to_the_mirror() {
    let (sim, t) = built(&[]);
    let object = object_of(&t, "scene09", "video", 0);
    rot(&t, &object);
    std::fs::remove_dir_all(t.path().join("Assets")).unwrap();
    let before = sim.stats();
    let mirror = tempfile::tempdir().unwrap();
    let spec = format!("dir:{}", mirror.path().display());
    let r = t.build(&sim, &["--candidates", "1", "--mirror", &spec]);
    r.assert_code(1);
    assert!(r.stderr.contains("candidate scene09 c1"), "{}", r.stderr);
    // Every other candidate went up; the rotten clip did not (no temporary
    // left behind either), and nothing in the mirror has wrong bytes.
    let up = files(mirror.path());
    assert!(
        !up.iter()
            .any(|p| p.to_string_lossy().contains("scene09-c1-")),
        "{up:?}"
    );
    assert!(
        up.iter().all(|p| !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".nbbuild-")),
        "{up:?}"
    );
    let stills = up
        .iter()
        .filter(|p| p.extension().unwrap() == "png")
        .count();
    assert!(stills >= 5, "{up:?}");
    for p in up.iter().filter(|p| p.to_string_lossy().contains("-c1-")) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let hash12 = name.rsplit('-').next().unwrap().split('.').next().unwrap();
        assert!(
            hash(p).starts_with(hash12),
            "{p:?} has the bytes its key names"
        );
    }
    assert!(!t.path().join(CLIP).join("scene09-c1.mp4").exists());
    assert_eq!(sim.stats().video_submits, before.video_submits);

    // The next build regenerates the clip (and uploads it).
    let again = t.build(&sim, &["--candidates", "1", "--mirror", &spec]);
    again.assert_code(0);
    assert_eq!(sim.stats().video_submits, before.video_submits + 1);
    let new = object_of(&t, "scene09", "video", 0);
    let up = files(mirror.path());
    let clip: Vec<_> = up
        .iter()
        .filter(|p| p.to_string_lossy().contains("scene09-c1-"))
        .collect();
    assert_eq!(clip.len(), 1, "{up:?}");
    assert_eq!(hash(clip[0]), new);
}

#[test]
fn cache_verify_repair_restores_from_the_mirror() {
    let mirror = tempfile::tempdir().unwrap();
    let spec = format!("dir:{}", mirror.path().display());
    let (sim, t) = built(&["--mode", "images", "--mirror", &spec]);
    let object = object_of(&t, "scene02", "image", 0);
    let rotten = rot(&t, &object);
    std::fs::remove_dir_all(t.path().join("Assets")).unwrap();

    // Without --repair: named, nothing changed.
    let v = t.run(&["cache", "verify", "--json"]);
    v.assert_code(1);
    let vj = v.json();
    let p = &vj["problems"][0];
    assert_eq!(p["kind"], "corrupt_object");
    assert!(
        p["detail"].as_str().unwrap().contains("c1 of scene02"),
        "names the task: {p:#}"
    );
    assert_eq!(std::fs::read(object_path(&t, &object)).unwrap(), rotten);

    let r = t.run(&["cache", "verify", "--repair", "--json"]);
    r.assert_code(0);
    let rj = r.json();
    assert_eq!(rj["ok"], true, "{rj:#}");
    let rep = &rj["repairs"][0];
    assert_eq!(rep["action"], "repaired", "{rj:#}");
    assert_eq!(rep["object"], object.as_str());
    assert!(
        rep["from"]
            .as_str()
            .unwrap()
            .starts_with(mirror.path().to_str().unwrap()),
        "from the mirror: {rep:#}"
    );
    assert_eq!(rep["candidates"][0]["name"], "scene02");
    assert_eq!(rj["problems"][0]["repaired"], true);
    assert_eq!(hash(&object_path(&t, &object)), object);
    let q = quarantined(&t, &object);
    assert_eq!(q.len(), 1);
    assert_eq!(std::fs::read(&q[0]).unwrap(), rotten);
    t.run(&["cache", "verify"]).assert_code(0);

    // The assets come back from the store with nothing paid.
    let before = sim.stats();
    t.build(&sim, &["--candidates", "1", "--mode", "images"])
        .assert_code(0);
    assert_eq!(sim.stats().image_submits, before.image_submits);
    assert_eq!(hash(&t.path().join(STILL).join("scene02-c1.png")), object);
}

/// The r2 mirror, library level: with an expected hash, bytes that do not
/// match are never stored in the bucket, whether they go up in one PUT or in
/// parts (the multipart upload is abandoned before it is completed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_refuses_bytes_that_do_not_hash_to_the_object_before_the_bucket_holds_them() {
    use nbbuild::mirror::r2::R2Mirror;
    use nbbuild::mirror::Mirror;
    let tmp = tempfile::tempdir().unwrap();
    let s3 = crate::s3::start_s3(&tmp.path().join("s3"));
    let m = R2Mirror::connect(s3.r2_config()).await.unwrap();
    for (len, key) in [
        (300_000usize, "XYZG1/v0-3/scene01-c1-aaaaaaaaaaaa.png"),
        (40_000_000, "XYZG1/v0-3/scene02-c1-bbbbbbbbbbbb.mp4"),
    ] {
        let good: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
        let id = blake3::hash(&good).to_hex().to_string();
        let mut bad = good.clone();
        bad[len / 2] ^= 0x01;
        let file = tmp.path().join("object");
        std::fs::write(&file, &bad).unwrap();
        let uploads = m.uploads();
        let err = m
            .publish_checked(&file, key, "application/octet-stream", Some(&id))
            .await
            .unwrap_err();
        assert!(err.mismatch, "{err}");
        assert!(err.to_string().contains(&id), "{err}");
        assert!(!s3.object_path(key).exists(), "{key} is not in the bucket");
        let parts: Vec<_> = std::fs::read_dir(&s3.root)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".part-"))
            .collect();
        assert!(parts.is_empty(), "the abandoned upload's parts: {parts:?}");
        assert_eq!(m.uploads(), uploads);

        std::fs::write(&file, &good).unwrap();
        m.publish_checked(&file, key, "application/octet-stream", Some(&id))
            .await
            .unwrap();
        assert_eq!(std::fs::read(s3.object_path(key)).unwrap(), good);
        assert_eq!(m.uploads(), uploads + 1);
    }
}
