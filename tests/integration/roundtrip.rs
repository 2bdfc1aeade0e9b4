//! Writing a document back without changes gives the same JSON values in
//! the same key order.

use crate::harness::{fixture_text, fixtures};
use nbbuild::flow::Flow;

fn all_valid_fixtures() -> Vec<String> {
    let mut names = vec!["demo.nbflow".to_string(), "demo-v0711.nbflow".to_string()];
    for e in std::fs::read_dir(fixtures().join("broken")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name != "malformed.nbflow" && name != "not-nbflow.nbflow" {
            names.push(format!("broken/{name}"));
        }
    }
    names.sort();
    names
}

#[test]
fn unchanged_documents_round_trip_value_for_value_in_key_order() {
    for name in all_valid_fixtures() {
        let text = fixture_text(&name);
        let flow = Flow::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = flow.to_json_pretty();
        // Compact serializations compare values *and* key order (serde_json
        // maps compare equal regardless of order).
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let reread: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(
            serde_json::to_string(&original).unwrap(),
            serde_json::to_string(&reread).unwrap(),
            "{name} changed on round trip"
        );
    }
}

#[test]
fn pretty_printed_fixture_comes_back_byte_for_byte() {
    // PatchWork writes 2-space pretty JSON; so do we, floats included.
    let text = fixture_text("demo.nbflow");
    let flow = Flow::parse(&text).unwrap();
    assert_eq!(flow.to_json_pretty().trim_end(), text.trim_end());
}

#[test]
fn unknown_keys_and_ui_state_survive() {
    let text = r#"{"zeta": 1, "format": "ducted-project", "version": "9.9.9", "name": "X",
        "tabs": [{"name": "T", "future": {"b": 2, "a": 1}, "graphData": {"nodes": [
          {"id": 1, "type": "nanobanana/Whatever", "properties": {"_pinned": true}, "custom": [3, 2, 1]}
        ], "links": []}}], "alpha": null}"#;
    let flow = Flow::parse(text).unwrap();
    let out = flow.to_json_pretty();
    let keys: Vec<&str> = ["zeta", "format", "version", "name", "tabs", "alpha"].to_vec();
    let mut last = 0;
    for k in keys {
        let pos = out
            .find(&format!("\"{k}\""))
            .unwrap_or_else(|| panic!("{k} lost"));
        assert!(pos >= last, "{k} moved");
        last = pos;
    }
    assert!(out.find("\"b\"").unwrap() < out.find("\"a\"").unwrap());
    assert!(out.contains("\"custom\""));
}
