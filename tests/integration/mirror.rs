//! The output mirror against a real S3-compatible server (s3s-fs, SigV4
//! verified) on loopback, and the `dir:` mirror. Library level: no build.

use crate::s3::{start_s3, PUBLIC_URL};
use nbbuild::mirror::dir::DirMirror;
use nbbuild::mirror::r2::{AccessKey, R2Mirror};
use nbbuild::mirror::{self, candidate_key, ref_key, Mirror, MirrorSpec, R2Settings};
use std::path::{Path, PathBuf};

const HASH: &str = "3f2a9c0d4e5b6a7980112233445566778899aabbccddeeff0011223344556677";

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[tokio::test]
async fn upload_gives_a_public_url_and_the_server_holds_the_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = start_s3(&tmp.path().join("s3"));
    let data = bytes(300_000, 1);
    let file = write(tmp.path(), "still.png", &data);
    let m = R2Mirror::connect(s3.r2_config()).await.unwrap();
    m.check().await.unwrap();

    let key = candidate_key("XYZG1", "v0-3", "scene07-row2", 1, HASH, "png");
    assert_eq!(key, "XYZG1/v0-3/scene07-row2-c2-3f2a9c0d4e5b.png");
    let url = m.publish(&file, &key, "image/png").await.unwrap();
    assert_eq!(
        url,
        format!("{PUBLIC_URL}/XYZG1/v0-3/scene07-row2-c2-3f2a9c0d4e5b.png")
    );
    assert_eq!(std::fs::read(s3.object_path(&key)).unwrap(), data);
    assert_eq!((m.uploads(), m.skipped(), s3.puts()), (1, 0, 1));

    let rkey = ref_key(HASH, "jpg");
    let url = m.publish(&file, &rkey, "image/jpeg").await.unwrap();
    assert_eq!(url, format!("{PUBLIC_URL}/refs/{HASH}.jpg"));

    let id = m.id();
    assert_eq!(
        id,
        format!(
            "r2:{}@{}",
            s3.bucket,
            s3.endpoint.trim_start_matches("http://")
        )
    );
    assert!(!id.contains(&s3.secret_key) && !id.contains(&s3.access_key));
    let shown = format!("{m:?}");
    assert!(
        !shown.contains(&s3.secret_key) && !shown.contains(&s3.access_key),
        "{shown}"
    );
}

#[tokio::test]
async fn the_same_bytes_are_uploaded_once_even_after_the_store_is_wiped() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = start_s3(&tmp.path().join("s3"));
    let file = write(tmp.path(), "a.png", &bytes(50_000, 2));
    let key = candidate_key("W", "latest", "scene01", 0, HASH, "png");

    let m = R2Mirror::connect(s3.r2_config()).await.unwrap();
    let first = m.publish(&file, &key, "image/png").await.unwrap();
    let mtime = std::fs::metadata(s3.object_path(&key))
        .unwrap()
        .modified()
        .unwrap();
    let second = m.publish(&file, &key, "image/png").await.unwrap();
    assert_eq!(first, second);
    assert_eq!((m.uploads(), m.skipped()), (1, 1));
    assert_eq!(s3.puts(), 1, "the second publish sent nothing");

    // A fresh mirror (the store and its upload table are gone): HEAD finds
    // the object, nothing is sent.
    let fresh = R2Mirror::connect(s3.r2_config()).await.unwrap();
    assert_eq!(
        fresh.publish(&file, &key, "image/png").await.unwrap(),
        first
    );
    assert_eq!((fresh.uploads(), fresh.skipped()), (0, 1));
    assert_eq!(s3.puts(), 1);
    let after = std::fs::metadata(s3.object_path(&key))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, after, "the object was not rewritten");
}

#[tokio::test]
async fn a_truncated_object_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = start_s3(&tmp.path().join("s3"));
    let data = bytes(40_000, 3);
    let file = write(tmp.path(), "a.png", &data);
    let key = candidate_key("W", "latest", "scene01", 0, HASH, "png");
    let m = R2Mirror::connect(s3.r2_config()).await.unwrap();
    m.publish(&file, &key, "image/png").await.unwrap();
    let half = write(tmp.path(), "half.png", &data[..20_000]);
    let other = R2Mirror::connect(s3.r2_config()).await.unwrap();
    // Someone wrote half of it under the same key: a size mismatch re-uploads.
    other.publish(&half, &key, "image/png").await.unwrap();
    m.publish(&file, &key, "image/png").await.unwrap();
    assert_eq!(m.uploads(), 2);
    assert_eq!(std::fs::read(s3.object_path(&key)).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_clip_goes_up_in_parts_streamed_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = start_s3(&tmp.path().join("s3"));
    let data = bytes(40 * 1000 * 1000, 4);
    let file = write(tmp.path(), "clip.mp4", &data);
    let key = candidate_key("XYZG1", "v0-3", "scene02", 0, HASH, "mp4");
    let m = R2Mirror::connect(s3.r2_config()).await.unwrap();
    let url = m.publish(&file, &key, "video/mp4").await.unwrap();
    assert!(
        url.ends_with("/XYZG1/v0-3/scene02-c1-3f2a9c0d4e5b.mp4"),
        "{url}"
    );
    assert_eq!((m.uploads(), m.multipart_uploads()), (1, 1));
    // 40 MB in 8 MiB parts: 5 UploadPart PUTs, plus create + complete POSTs.
    assert_eq!((s3.puts(), s3.posts()), (5, 2));
    let stored = std::fs::read(s3.object_path(&key)).unwrap();
    assert!(
        stored == data,
        "the assembled object differs from the source"
    );
    // No part files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&s3.root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And the next publish of it sends nothing.
    m.publish(&file, &key, "video/mp4").await.unwrap();
    assert_eq!((s3.puts(), m.skipped()), (5, 1));
}

#[tokio::test]
async fn refused_credentials_are_a_clear_error_without_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = start_s3(&tmp.path().join("s3"));
    let file = write(tmp.path(), "a.png", &bytes(1000, 5));
    let wrong_secret = "wrong-secret-value-1234567890";
    let unknown_id = "UNKNOWNACCESSKEYID42";
    for key in [
        AccessKey {
            id: s3.access_key.clone(),
            secret: wrong_secret.into(),
        },
        AccessKey {
            id: unknown_id.into(),
            secret: wrong_secret.into(),
        },
    ] {
        let mut cfg = s3.r2_config();
        cfg.access_key = Some(key.clone());
        let m = R2Mirror::connect(cfg).await.unwrap();
        let e = m.check().await.unwrap_err();
        eprintln!("check: {e}");
        let shown = format!("{e} {e:?}");
        assert!(e.message.contains("credentials refused"), "{shown}");
        assert!(
            e.hint
                .as_deref()
                .unwrap_or("")
                .contains("R2_SECRET_ACCESS_KEY"),
            "{shown}"
        );
        assert!(!e.retryable, "{shown}");
        assert!(
            !shown.contains(&key.secret) && !shown.contains(&key.id),
            "{shown}"
        );

        let e = m
            .publish(&file, "W/v/a-c1-x.png", "image/png")
            .await
            .unwrap_err();
        eprintln!("publish: {e}");
        let shown = format!("{e} {e:?}");
        assert!(e.message.contains("credentials refused"), "{shown}");
        assert!(
            !shown.contains(&key.secret) && !shown.contains(&key.id),
            "{shown}"
        );
    }
    assert_eq!(s3.puts(), 0);
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = start_s3(&tmp.path().join("s3"));
    let mut cfg = s3.r2_config();
    cfg.bucket = "no-such-bucket".into();
    let m = R2Mirror::connect(cfg).await.unwrap();
    let e = m.check().await.unwrap_err();
    eprintln!("{e}");
    assert!(
        e.message.contains("bucket `no-such-bucket` does not exist"),
        "{e}"
    );
    assert!(e.hint.as_deref().unwrap_or("").contains("R2_BUCKET"), "{e}");
    assert!(!e.retryable);
    assert!(!e.to_string().contains(&s3.secret_key));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_error() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = nbbuild::mirror::r2::R2Config::new(
        format!("http://127.0.0.1:{port}"),
        "b",
        PUBLIC_URL,
        Some(AccessKey {
            id: "ID-not-shown".into(),
            secret: "SECRET-not-shown".into(),
        }),
    );
    cfg.max_attempts = 2;
    let m = R2Mirror::connect(cfg).await.unwrap();
    let e = m.check().await.unwrap_err();
    eprintln!("{e}");
    assert!(e.message.contains("cannot reach"), "{e}");
    assert!(e.retryable, "{e}");
    assert!(e.hint.is_some());
    assert!(!e.to_string().contains("SECRET-not-shown"));
}

#[tokio::test]
async fn unsafe_keys_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = start_s3(&tmp.path().join("s3"));
    let file = write(tmp.path(), "a.png", b"x");
    let r2 = R2Mirror::connect(s3.r2_config()).await.unwrap();
    let dir = DirMirror::new(&tmp.path().join("pub")).unwrap();
    for key in ["../escape.png", "/abs.png", "a//b.png", ""] {
        assert!(
            r2.publish(&file, key, "image/png").await.is_err(),
            "{key:?}"
        );
        assert!(
            dir.publish(&file, key, "image/png").await.is_err(),
            "{key:?}"
        );
    }
    assert!(!tmp.path().join("escape.png").exists());
    assert_eq!(s3.puts(), 0);
}

#[tokio::test]
async fn the_dir_mirror_copies_once_and_gives_file_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(10_000, 6);
    let file = write(tmp.path(), "a.png", &data);
    let spec = MirrorSpec::parse(&format!("dir:{}", tmp.path().join("pub").display())).unwrap();
    let m = mirror::open(&spec, &R2Settings::default())
        .await
        .unwrap()
        .unwrap();
    m.check().await.unwrap();
    assert_eq!(m.id(), format!("dir:{}", tmp.path().join("pub").display()));

    let key = candidate_key("XYZG1", "v0-3", "scene 01", 0, HASH, "png");
    let url = m.publish(&file, &key, "image/png").await.unwrap();
    let dest = tmp.path().join("pub").join(&key);
    assert_eq!(
        url,
        format!("file://{}", dest.display()).replace(' ', "%20")
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let mtime = std::fs::metadata(&dest).unwrap().modified().unwrap();
    assert_eq!(m.publish(&file, &key, "image/png").await.unwrap(), url);
    assert_eq!(std::fs::metadata(&dest).unwrap().modified().unwrap(), mtime);

    assert!(mirror::open(&MirrorSpec::None, &R2Settings::default())
        .await
        .unwrap()
        .is_none());
}
