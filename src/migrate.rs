//! Key-format migrations: a store written under an older `KEY_VERSION` is
//! re-keyed from its stored preimages once, on open, so a new key format
//! never makes anyone pay again.
//!
//! 1 -> 2: the candidate count left the preimage (candidates are samples
//! under one key), and image inputs named by a URL enter by the blake3 of
//! their content. A version-1 URL input whose content the store does not
//! know (never downloaded or published by nbbuild, and not a readable
//! `file://` path) cannot be translated: that record stays under its old
//! key, and the next plan shows the task as "key changed" (it is then
//! fetched once and keyed by content).

use crate::key::{Preimage, KEY_VERSION};
use nbbuild_cache::{Store, StoreError};

/// The `meta` entry holding the key version the records are in.
const META: &str = "key_version";

/// Migrate every record of an older key version; how many moved.
pub fn run(store: &Store) -> Result<usize, StoreError> {
    let done: u32 = store.meta(META)?.and_then(|v| v.parse().ok()).unwrap_or(1);
    if done >= KEY_VERSION {
        return Ok(0);
    }
    store.index_published_urls()?;
    let mut moved = 0;
    for (key, rec) in store.tasks()? {
        let Some(new) = upgrade(&rec.preimage, |url| content_of(store, url)) else {
            continue;
        };
        if new.key() != key {
            store.rekey_task(&key, &new.key(), new.to_value())?;
            moved += 1;
        }
    }
    store.put_meta(META, &KEY_VERSION.to_string())?;
    Ok(moved)
}

/// The blake3 of what a version-1 URL input named, when it can be known
/// without the network.
fn content_of(store: &Store, url: &str) -> Option<String> {
    if let Ok(Some(obj)) = store.url_object(url) {
        return Some(obj);
    }
    let path = url.strip_prefix("file://")?;
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    nbbuild_cache::hash_file(std::path::Path::new(path.as_ref()))
        .ok()
        .map(|(h, _)| h)
}

/// A stored preimage in the present format; None when it already is, or
/// cannot be translated (an input's content is unknown).
pub fn upgrade(
    old: &serde_json::Value,
    content: impl Fn(&str) -> Option<String>,
) -> Option<Preimage> {
    let version = old.get("key_version")?.as_u64()? as u32;
    if version >= KEY_VERSION {
        return None;
    }
    let mut v = old.clone();
    let obj = v.as_object_mut()?;
    obj.remove("candidates");
    obj.insert("key_version".into(), KEY_VERSION.into());
    if let Some(images) = obj.get_mut("images").and_then(|i| i.as_array_mut()) {
        for img in images {
            if img["by"] == "url" {
                let blake3 = content(img["url"].as_str()?)?;
                *img = serde_json::json!({"slot": img["slot"], "by": "bytes", "blake3": blake3});
            }
        }
    }
    Preimage::from_value(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_preimage_loses_its_count_and_its_urls() {
        let old = serde_json::json!({
            "key_version": 1, "kind": "image", "model": "nano_banana_2", "prompt": "a cat",
            "aspect_ratio": "9:16", "resolution": "1K", "duration": null, "video_mode": null,
            "negative_prompt": null, "seed": null, "candidates": 4,
            "images": [{"slot": 1, "by": "url", "url": "https://x/a.png"},
                       {"slot": 2, "by": "bytes", "blake3": "ab"}]
        });
        let new = upgrade(&old, |u| (u == "https://x/a.png").then(|| "cd".to_string())).unwrap();
        assert_eq!(new.key_version, KEY_VERSION);
        let v = new.to_value();
        assert!(v.get("candidates").is_none());
        assert_eq!(v["images"][0]["blake3"], "cd");
        assert_eq!(v["images"][1]["blake3"], "ab");
        // Unknown content: not translated.
        assert!(upgrade(&old, |_| None).is_none());
        // Already current: nothing to do.
        assert!(upgrade(&v, |_| None).is_none());
    }
}
