//! Every key input changes the key; every excluded field does not.

use crate::compile::compile_text;
use crate::harness::{fixture_text, fixtures, node_mut};
use nbbuild::compile::{Compiled, InputSource, TaskKind};
use nbbuild::key::{diff, ImageId, ImageInput, Preimage, KEY_VERSION};
use serde_json::{json, Value};
use std::collections::BTreeMap;

type Edit = Box<dyn FnOnce(&mut Value)>;
type PreimageEdit = Box<dyn Fn(&mut Preimage)>;

/// Keys of every task, inputs identified the way the engine does: files by
/// the blake3 of their bytes, URLs by a stand-in for their content's hash,
/// upstream tasks by a stand-in for their first candidate's hash.
fn keys_with(c: &Compiled, file_bytes: impl Fn(&str) -> Vec<u8>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for t in &c.tasks {
        let images = t
            .inputs
            .iter()
            .map(|i| ImageInput {
                slot: i.slot,
                id: match &i.source {
                    InputSource::File(p) => ImageId::Bytes {
                        blake3: blake3::hash(&file_bytes(p)).to_hex().to_string(),
                    },
                    InputSource::Url(u) => ImageId::Bytes {
                        blake3: format!("content-of-{u}"),
                    },
                    InputSource::Task(u) => ImageId::Bytes {
                        blake3: format!("candidate-of-{}", c.tasks[*u].label()),
                    },
                },
            })
            .collect();
        out.insert(
            format!("{}:{}", t.kind.as_str(), t.label()),
            Preimage::new(t, images).key(),
        );
    }
    out
}

fn keys(v: &Value) -> BTreeMap<String, String> {
    keys_with(&compile_text(&v.to_string()), |p| {
        std::fs::read(fixtures().join(p)).unwrap()
    })
}

fn demo() -> Value {
    serde_json::from_str(&fixture_text("demo.nbflow")).unwrap()
}

/// Apply `edit`, and return the names of the tasks whose key changed.
fn changed(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let before = keys(&demo());
    let mut v = demo();
    edit(&mut v);
    let after = keys(&v);
    assert_eq!(before.len(), after.len());
    before
        .iter()
        .filter(|(k, key)| after.get(*k) != Some(key))
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn included_fields_change_exactly_their_tasks_key() {
    let scene01 = vec!["image:scene01".to_string()];
    let video02 = vec!["video:scene02".to_string()];
    let cases: Vec<(&str, Edit, Vec<String>)> = vec![
        (
            "prompt text",
            Box::new(|v| node_mut(v, 0, 1)["properties"]["text"] = json!("a new prompt")),
            scene01.clone(),
        ),
        (
            "aspect ratio",
            Box::new(|v| node_mut(v, 0, 3)["properties"]["aspectRatio"] = json!("1:1")),
            scene01.clone(),
        ),
        (
            "resolution",
            Box::new(|v| node_mut(v, 0, 3)["properties"]["resolution"] = json!("2K")),
            scene01.clone(),
        ),
        (
            "duration",
            Box::new(|v| node_mut(v, 0, 9)["properties"]["durationSeconds"] = json!("4")),
            video02.clone(),
        ),
        (
            "video mode",
            Box::new(|v| node_mut(v, 0, 9)["properties"]["mode"] = json!("text-to-video")),
            video02.clone(),
        ),
        (
            "video model",
            Box::new(|v| node_mut(v, 0, 9)["properties"]["veoModel"] = json!("relax")),
            video02.clone(),
        ),
        (
            "negative prompt",
            Box::new(|v| node_mut(v, 0, 9)["properties"]["negativePrompt"] = json!("no blur")),
            video02.clone(),
        ),
        (
            "seed",
            Box::new(|v| node_mut(v, 0, 9)["properties"]["seed"] = json!(7)),
            video02.clone(),
        ),
        (
            "reference URL",
            Box::new(|v| {
                node_mut(v, 0, 2)["properties"]["imageData"] = json!("https://example.test/a.png")
            }),
            scene01.clone(),
        ),
        (
            "user pick",
            Box::new(|v| {
                node_mut(v, 0, 7)["properties"]["_lastApprovedData"] =
                    json!("https://example.test/pick.png")
            }),
            video02.clone(),
        ),
        (
            "dynamic row",
            Box::new(|v| node_mut(v, 1, 1)["properties"]["dynamicRows"][1] = json!("yellow hat")),
            vec!["image:b-roll-product-row2".to_string()],
        ),
    ];
    for (what, edit, expect) in cases {
        assert_eq!(changed(edit), expect, "changing the {what}");
    }
}

#[test]
fn reference_bytes_are_keyed_not_paths() {
    let c = compile_text(&fixture_text("demo.nbflow"));
    let real = |p: &str| std::fs::read(fixtures().join(p)).unwrap();
    let base = keys_with(&c, real);
    // Other bytes under the same path: the consumer's key changes.
    let other = keys_with(&c, |p| {
        if p.ends_with("avatar.png") {
            b"other bytes".to_vec()
        } else {
            real(p)
        }
    });
    assert_ne!(base["image:scene01"], other["image:scene01"]);
    assert_eq!(base["image:scene02"], other["image:scene02"]);
    // The same bytes under another path (renamed or moved): nothing changes.
    let mut v = demo();
    node_mut(&mut v, 0, 2)["properties"]["imageData"] = json!("./refs/../refs/avatar.png");
    assert_eq!(keys(&v), keys(&demo()));
}

/// Candidates are samples: slots c1..cN live under one key (issue 12).
#[test]
fn candidate_count_changes_no_key() {
    let c = compile_text(&fixture_text("demo.nbflow"));
    let mut t = c.tasks[0].clone();
    let a = Preimage::new(&t, vec![]).key();
    t.params.candidates = 2;
    assert_eq!(a, Preimage::new(&t, vec![]).key());
}

#[test]
fn upstream_candidate_changes_consumer_key() {
    let c = compile_text(&fixture_text("demo.nbflow"));
    let t = c.find(0, 6, None).unwrap();
    let with = |h: &str| {
        Preimage::new(
            t,
            vec![ImageInput {
                slot: 1,
                id: ImageId::Bytes { blake3: h.into() },
            }],
        )
        .key()
    };
    assert_ne!(with("aaaa"), with("bbbb"));
}

#[test]
fn excluded_fields_change_no_key() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "position",
            Box::new(|v| node_mut(v, 0, 3)["pos"] = json!([1, 2])),
        ),
        (
            "size",
            Box::new(|v| node_mut(v, 0, 3)["size"] = json!([999, 999])),
        ),
        (
            "colour",
            Box::new(|v| {
                node_mut(v, 0, 3)["color"] = json!("#f00");
                node_mut(v, 0, 3)["bgcolor"] = json!("#0f0");
            }),
        ),
        (
            "title keeping the scene token",
            Box::new(|v| node_mut(v, 0, 3)["title"] = json!("Scene 1: kitchen, take 2")),
        ),
        (
            "variableName",
            Box::new(|v| node_mut(v, 0, 1)["properties"]["variableName"] = json!("renamed")),
        ),
        (
            "UI state",
            Box::new(|v| {
                node_mut(v, 0, 3)["properties"]["_advancedOpen"] = json!(true);
                node_mut(v, 0, 3)["properties"]["_pinned"] = json!(true);
                node_mut(v, 0, 3)["flags"] = json!({"collapsed": true});
                v["tabs"][0]["canvasState"] = json!({"offsetX": 5, "offsetY": 5, "scale": 2});
            }),
        ),
        (
            "order",
            Box::new(|v| node_mut(v, 0, 3)["order"] = json!(99)),
        ),
        (
            "timeout",
            Box::new(|v| node_mut(v, 0, 3)["properties"]["timeout"] = json!(1000)),
        ),
        (
            "tab name",
            Box::new(|v| v["tabs"][0]["name"] = json!("Renamed")),
        ),
        ("flow name", Box::new(|v| v["name"] = json!("XYZG1-V0-4"))),
        (
            "stale dynamicRows with dynamicMode off",
            Box::new(|v| node_mut(v, 0, 5)["properties"]["dynamicRows"] = json!(["junk"])),
        ),
        (
            "node id",
            Box::new(|v| {
                // Renumber Mainbody #3 to #30 everywhere it is referenced.
                node_mut(v, 0, 3)["id"] = json!(30);
                for l in v["tabs"][0]["graphData"]["links"].as_array_mut().unwrap() {
                    for i in [1, 3] {
                        if l[i] == 3 {
                            l[i] = json!(30);
                        }
                    }
                }
                v["tabs"][0]["graphData"]["last_node_id"] = json!(30);
            }),
        ),
    ];
    for (what, edit) in cases {
        assert!(
            changed(edit).is_empty(),
            "changing the {what} must not change any key"
        );
    }
}

#[test]
fn every_preimage_field_is_in_the_key() {
    let c = compile_text(&fixture_text("demo.nbflow"));
    let t = c.find(0, 9, None).unwrap();
    let base = Preimage::new(
        t,
        vec![ImageInput {
            slot: 1,
            id: ImageId::Bytes {
                blake3: "aa".into(),
            },
        }],
    );
    let k = base.key();
    let edits: Vec<(&str, PreimageEdit)> = vec![
        ("key_version", Box::new(|p| p.key_version = KEY_VERSION + 1)),
        ("kind", Box::new(|p| p.kind = TaskKind::Image)),
        ("model", Box::new(|p| p.model = "veo_31_quality".into())),
        ("prompt", Box::new(|p| p.prompt.push(' '))),
        ("aspect_ratio", Box::new(|p| p.aspect_ratio = "16:9".into())),
        ("resolution", Box::new(|p| p.resolution = "1080p".into())),
        ("duration", Box::new(|p| p.duration = Some(6))),
        (
            "video_mode",
            Box::new(|p| p.video_mode = Some("start_image".into())),
        ),
        (
            "negative_prompt",
            Box::new(|p| p.negative_prompt = Some("x".into())),
        ),
        ("seed", Box::new(|p| p.seed = Some("1".into()))),
        (
            "image bytes",
            Box::new(|p| {
                p.images[0].id = ImageId::Bytes {
                    blake3: "00".into(),
                }
            }),
        ),
        ("image slot", Box::new(|p| p.images[0].slot = 2)),
    ];
    // A field added to Preimage must get an edit here: the test fails
    // until it does (so a new field cannot be forgotten in the key).
    let covered: std::collections::BTreeSet<String> = edits
        .iter()
        .map(|(f, _)| f.split(' ').next().unwrap().replace("image", "images"))
        .collect();
    let fields: std::collections::BTreeSet<String> = base
        .to_value()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(covered, fields, "every preimage field has an edit");
    for (field, edit) in edits {
        let mut p = base.clone();
        edit(&mut p);
        assert_ne!(p.key(), k, "{field} must be part of the key");
        let d = diff(&base, &p);
        assert!(!d.is_empty(), "{field}: explain must show the difference");
    }
    // And the preimage round-trips through the store's JSON form.
    assert_eq!(Preimage::from_value(&base.to_value()), Some(base.clone()));
    assert_eq!(Preimage::from_value(&base.to_value()).unwrap().key(), k);
}
