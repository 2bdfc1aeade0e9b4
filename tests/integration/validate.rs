//! `nbbuild validate` on real-looking files of both versions and on one
//! broken file per check: each finding names the tab, the node and the JSON path.

use crate::harness::{fixtures, Test};
use serde_json::Value;

fn validate_json(path: &std::path::Path) -> (i32, Value) {
    let t = Test::new();
    let run = t.run(&["validate", path.to_str().unwrap(), "--json"]);
    let v = run.json();
    (run.code, v)
}

#[test]
fn demo_flows_of_both_versions_are_clean() {
    for (name, tasks, images) in [("demo.nbflow", 7, 5), ("demo-v0711.nbflow", 5, 3)] {
        let (code, v) = validate_json(&fixtures().join(name));
        assert_eq!(code, 0, "{name}: {v:#}");
        assert_eq!(v["ok"], true);
        assert_eq!(v["findings"].as_array().unwrap().len(), 0, "{name}: {v:#}");
        assert_eq!(v["tasks"]["total"], tasks);
        assert_eq!(v["tasks"]["image"], images);
    }
}

/// (file, severity, code, node id, JSON path)
const BROKEN: &[(&str, &str, &str, Option<i64>, &str)] = &[
    (
        "missing-model",
        "warning",
        "image-model",
        Some(3),
        "tabs[0].graphData.nodes[2].properties.model",
    ),
    (
        "wrong-model",
        "warning",
        "image-model",
        Some(3),
        "tabs[0].graphData.nodes[2].properties.model",
    ),
    (
        "wrong-output-count",
        "warning",
        "output-count",
        Some(3),
        "tabs[0].graphData.nodes[2].properties.outputCount",
    ),
    (
        "template-missing-input",
        "error",
        "template-placeholder",
        Some(2),
        "tabs[0].graphData.nodes[1].properties.text",
    ),
    (
        "template-extra-input",
        "error",
        "template-input",
        Some(2),
        "tabs[0].graphData.nodes[1].inputs[1].name",
    ),
    (
        "dynamic-row-not-string",
        "error",
        "dynamic-row-type",
        Some(1),
        "tabs[0].graphData.nodes[0].properties.dynamicRows[1]",
    ),
    (
        "dynamic-length-mismatch",
        "error",
        "dynamic-length-mismatch",
        Some(2),
        "tabs[0].graphData.nodes[1].inputs[1]",
    ),
    (
        "negative-prompt-type",
        "error",
        "negative-prompt-type",
        Some(6),
        "tabs[0].graphData.nodes[5].properties.negativePrompt",
    ),
    (
        "duration-type",
        "error",
        "duration-type",
        Some(6),
        "tabs[0].graphData.nodes[5].properties.durationSeconds",
    ),
    (
        "veo-input-count",
        "error",
        "veo-inputs",
        Some(6),
        "tabs[0].graphData.nodes[5].inputs",
    ),
    (
        "dangling-link-table",
        "error",
        "dangling-link",
        Some(6),
        "tabs[0].graphData.links[6]",
    ),
    (
        "dangling-input",
        "error",
        "dangling-link",
        Some(6),
        "tabs[0].graphData.nodes[5].inputs[2].link",
    ),
    (
        "dangling-output",
        "error",
        "dangling-link",
        Some(4),
        "tabs[0].graphData.nodes[3].outputs[0].links[1]",
    ),
    (
        "link-missing-node",
        "error",
        "link-missing-node",
        Some(6),
        "tabs[0].graphData.links[6]",
    ),
    (
        "link-missing-slot",
        "error",
        "link-missing-slot",
        Some(3),
        "tabs[0].graphData.links[6]",
    ),
    (
        "image-count-mismatch",
        "error",
        "image-count",
        Some(3),
        "tabs[0].graphData.nodes[2].properties.imageCount",
    ),
    (
        "duplicate-id",
        "error",
        "duplicate-id",
        Some(7),
        "tabs[0].graphData.nodes[7].id",
    ),
    (
        "ref-no-image",
        "error",
        "ref-no-image",
        Some(2),
        "tabs[0].graphData.nodes[1].properties.imageData",
    ),
    (
        "missing-ref-file",
        "error",
        "missing-ref-file",
        Some(2),
        "tabs[0].graphData.nodes[1].properties.imageData",
    ),
    (
        "unknown-type-upstream",
        "error",
        "unknown-type-upstream",
        Some(3),
        "tabs[0].graphData.nodes[2].inputs[1]",
    ),
    ("malformed", "error", "malformed-json", None, ""),
    ("not-nbflow", "error", "not-nbflow", None, "format"),
];

#[test]
fn every_broken_fixture_gives_its_finding_naming_the_node() {
    for &(file, severity, code, node, path) in BROKEN {
        let (exit, v) = validate_json(&fixtures().join("broken").join(format!("{file}.nbflow")));
        let findings = v["findings"].as_array().unwrap();
        let hit = findings.iter().find(|f| f["code"] == code);
        let f = hit.unwrap_or_else(|| panic!("{file}: no {code} finding in {v:#}"));
        assert_eq!(f["severity"], severity, "{file}");
        assert_eq!(f["path"], path, "{file}");
        assert_eq!(f["node_id"].as_i64(), node, "{file}");
        if node.is_some() {
            assert!(
                f["tab_name"].is_string() && f["title"].is_string(),
                "{file}: {f:#}"
            );
        }
        assert!(
            f["hint"].is_string(),
            "{file}: every finding says what to do"
        );
        let errors = findings.iter().filter(|f| f["severity"] == "error").count();
        assert_eq!(exit, if errors > 0 { 2 } else { 0 }, "{file}");
        // One problem per file: nothing else is reported as an error.
        if severity == "error" {
            assert_eq!(errors, 1, "{file}: {v:#}");
        } else {
            assert_eq!(errors, 0, "{file}: {v:#}");
        }
    }
}

#[test]
fn a_cycle_is_reported_with_its_path() {
    let (code, v) = validate_json(&fixtures().join("broken/cycle.nbflow"));
    assert_eq!(code, 2);
    let f = &v["findings"][0];
    assert_eq!(f["code"], "cycle");
    let msg = f["message"].as_str().unwrap();
    for id in ["#2", "#3", "#5", "#6"] {
        assert!(msg.contains(id), "{msg}");
    }
    assert!(!msg.contains("#1)") && !msg.contains("#4)"), "{msg}");
}

#[test]
fn ref_image_fills_unwired_references() {
    let t = Test::new().fixture("broken/ref-no-image.nbflow", "flow.nbflow");
    // Without it the empty reference is an error.
    let run = t.run(&["validate"]);
    run.assert_code(2);
    assert!(run.stderr.contains("error[ref-no-image]"), "{}", run.stderr);
    let run = t.run(&["validate", "--ref-image", "refs/avatar.png"]);
    run.assert_code(0);
    // And the image fills the reference: the still's input is that file.
    let graph = t.run(&[
        "graph",
        "--format",
        "json",
        "--ref-image",
        "refs/avatar.png",
    ]);
    graph.assert_code(0);
    let g = graph.json();
    let still = g["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "image" && x["node_id"] == 3)
        .expect("the still");
    assert_eq!(
        still["inputs"],
        serde_json::json!([{"slot": 1, "from": "file", "value": "refs/avatar.png", "gate": null}])
    );
}

#[test]
fn human_output_names_tab_node_and_path() {
    let t = Test::new().fixture("broken/negative-prompt-type.nbflow", "ad.nbflow");
    let run = t.run(&["validate"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("error[negative-prompt-type]"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("tab \"Mainbody\", node #6 \"Veo: Scene 1 talk\""),
        "{}",
        run.stderr
    );
    assert!(run
        .stderr
        .contains("at: tabs[0].graphData.nodes[5].properties.negativePrompt"));
    assert!(run.stderr.contains("hint: "));
}

#[test]
fn default_flow_discovery() {
    let t = Test::new();
    let run = t.run(&["validate"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("no .nbflow file in the current folder"),
        "{}",
        run.stderr
    );

    let t = Test::new()
        .fixture("demo.nbflow", "XYZG1-V0-3.nbflow")
        .write(
            "Generations/XYZG1-V0-3-generated-20260101-120000.nbflow",
            "{}",
        );
    // Generated outputs do not count.
    std::fs::copy(
        fixtures().join("demo.nbflow"),
        t.path().join("XYZG1-V0-3-generated-20260101-120000.nbflow"),
    )
    .unwrap();
    t.run(&["validate"]).assert_code(0);

    let t = t.fixture("demo-v0711.nbflow", "other.nbflow");
    let run = t.run(&["validate"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("several .nbflow files"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("other.nbflow") && run.stderr.contains("XYZG1-V0-3.nbflow"));
}

#[test]
fn missing_file_is_a_clear_error() {
    let run = Test::new().run(&["validate", "nope.nbflow"]);
    run.assert_code(2);
    assert!(
        run.stderr.starts_with("error: cannot read nope.nbflow"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"));
}
