//! Compiling the demo flows: tasks, names, rows, edges through gates,
//! disabled and muted nodes.

use crate::harness::{fixture_text, fixtures};
use nbbuild::compile::{compile, CompileOptions, Compiled, InputSource, TaskKind};
use nbbuild::flow::Flow;

pub fn compile_text(text: &str) -> Compiled {
    let flow = Flow::parse(text).unwrap();
    let exists = |p: &str| fixtures().join(p).is_file();
    compile(
        &flow,
        &CompileOptions {
            candidates: 4,
            ref_image: None,
            file_exists: &exists,
        },
    )
    .unwrap_or_else(|e| panic!("{e:#?}"))
}

fn labels(c: &Compiled) -> Vec<String> {
    let mut l: Vec<String> = c
        .tasks
        .iter()
        .map(|t| format!("{}:{}", t.kind.as_str(), t.label()))
        .collect();
    l.sort();
    l
}

#[test]
fn demo_compiles_to_one_task_per_active_node_and_row() {
    let c = compile_text(&fixture_text("demo.nbflow"));
    assert_eq!(
        labels(&c),
        vec![
            "image:b-roll-product-row1",
            "image:b-roll-product-row2",
            "image:b-roll-product-row3",
            "image:scene01",
            "image:scene02",
            "video:scene02",
            "video:scene09",
        ]
    );
    // Disabled (#6) and muted (#12) BRoll nodes are named but make no task.
    assert_eq!(c.names[&(1, 6)].1, "scene09");
    assert_eq!(c.names[&(1, 12)].1, "scene10");
    assert!(c
        .tasks
        .iter()
        .all(|t| !(t.tab == 1 && (t.node_id == 6 || t.node_id == 12))));
}

#[test]
fn edges_run_through_approve_gates() {
    let c = compile_text(&fixture_text("demo.nbflow"));
    let s1 = c.find(0, 3, None).unwrap().index;
    let s2 = c.find(0, 6, None).unwrap().index;
    let v2 = c.find(0, 9, None).unwrap();
    let s2_task = &c.tasks[s2];
    assert_eq!(s2_task.inputs[0].source, InputSource::Task(s1));
    assert_eq!(s2_task.inputs[0].gate, Some(4));
    // Start frame from gate #7 (scene 2), end frame from gate #4 (scene 1).
    assert_eq!(v2.inputs.len(), 2);
    assert_eq!(
        (v2.inputs[0].slot, &v2.inputs[0].source),
        (1, &InputSource::Task(s2))
    );
    assert_eq!(
        (v2.inputs[1].slot, &v2.inputs[1].source),
        (2, &InputSource::Task(s1))
    );
    assert_eq!(v2.params.video_mode.as_deref(), Some("start_end_image"));
    assert_eq!(v2.params.model, "veo_31_fast");
    assert_eq!(v2.params.duration, Some(8));
    // Dependency order.
    let pos = |i: usize| c.order.iter().position(|&x| x == i).unwrap();
    assert!(pos(s1) < pos(s2) && pos(s2) < pos(v2.index));
    assert_eq!(c.graph.edge_count(), 3);
}

#[test]
fn a_pick_above_a_disabled_node_feeds_downstream() {
    let c = compile_text(&fixture_text("demo.nbflow"));
    let v9 = c.find(1, 10, None).unwrap();
    let old2 = "https://pub-0123456789abcdef0123456789abcdef.r2.dev/uploads/1718000000000-images/1718000000003-ef34gh-file-1718000000004.bin";
    assert_eq!(v9.inputs.len(), 1);
    assert_eq!(v9.inputs[0].source, InputSource::Url(old2.into()));
    assert_eq!(v9.params.video_mode.as_deref(), Some("start_image"));
    assert_eq!(v9.params.model, "veo_31_lite_relaxed");
    assert_eq!(v9.params.seed.as_deref(), Some("1234"));
    assert_eq!(v9.kind, TaskKind::Video);
}

#[test]
fn dynamic_rows_fill_the_template_and_keep_json_braces() {
    let c = compile_text(&fixture_text("demo.nbflow"));
    let rows: Vec<_> = c
        .tasks
        .iter()
        .filter(|t| t.name == "b-roll-product")
        .collect();
    assert_eq!(rows.len(), 3);
    for (t, product) in rows
        .iter()
        .zip(["red sneaker", "blue backpack", "green bottle"])
    {
        assert!(t.prompt.contains(product), "{}", t.prompt);
        assert!(!t.prompt.contains("{product}"), "{}", t.prompt);
        assert!(t.prompt.trim_start().starts_with('{') && t.prompt.trim_end().ends_with('}'));
        assert_eq!(t.prompt.matches(product).count(), 2);
    }
}

#[test]
fn legacy_file_compiles_with_unique_names() {
    let c = compile_text(&fixture_text("demo-v0711.nbflow"));
    assert_eq!(
        labels(&c),
        vec![
            "image:scene03",
            "image:scene04",
            "image:scene04-2",
            "video:scene03",
            "video:scene04"
        ]
    );
    let v4 = c.find(1, 9, None).unwrap();
    assert_eq!(v4.params.video_mode.as_deref(), Some("start_end_image"));
    assert_eq!(v4.params.model, "veo_31_fast");
}

#[test]
fn dynamic_rows_propagate_to_consumers() {
    // A Veo node fed by the B-roll gate runs once per upstream row.
    let mut v: serde_json::Value = serde_json::from_str(&fixture_text("demo.nbflow")).unwrap();
    let tab = &mut v["tabs"][1]["graphData"];
    // Re-route the Scene 9 video's start frame from gate #8 to the B-roll gate #5.
    for l in tab["links"].as_array_mut().unwrap() {
        if l[0] == 8 {
            l[1] = 5.into();
        }
    }
    for n in tab["nodes"].as_array_mut().unwrap() {
        if n["id"] == 8 {
            n["outputs"][0]["links"] = serde_json::json!([]);
        }
        if n["id"] == 5 {
            n["outputs"][0]["links"] = serde_json::json!([8]);
        }
    }
    let c = compile_text(&v.to_string());
    let videos: Vec<_> = c
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Video && t.tab == 1)
        .collect();
    assert_eq!(videos.len(), 3);
    for t in videos {
        let up = match t.inputs[0].source {
            InputSource::Task(u) => &c.tasks[u],
            ref other => panic!("{other:?}"),
        };
        assert_eq!(up.row, t.row);
    }
}

#[test]
fn synthetic_flows_are_valid_and_chain_anchors() {
    let v = nbbuild::synth::flow(10, "https://example.test/avatar.png");
    let flow = Flow::parse(&v.to_string()).unwrap();
    let findings = nbbuild::flow::validate::validate(
        &flow,
        &nbbuild::flow::validate::ValidateOptions { candidates: 4 },
    );
    assert!(findings.is_empty(), "{findings:#?}");
    let c = compile_text(&v.to_string());
    assert_eq!(c.tasks.len(), 20);
    // Scene 4 anchors on scene 3's approved still; scene 8 on scene 7's.
    assert_eq!(c.graph.edge_count(), 10 + 2);
}

#[test]
fn graph_prints_tasks_and_edges_in_three_formats() {
    let t = crate::harness::Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let dot = t.run(&["graph", "--format", "dot"]);
    dot.assert_code(0);
    assert!(
        dot.stdout.starts_with("digraph nbbuild {"),
        "{}",
        dot.stdout
    );
    assert_eq!(dot.stdout.matches(" -> ").count(), 3);
    assert!(dot.stdout.contains("b-roll-product-row3"));
    let mermaid = t.run(&["graph", "--format", "mermaid"]);
    assert!(
        mermaid.stdout.starts_with("flowchart LR") && mermaid.stdout.matches(" --> ").count() == 3,
        "{}",
        mermaid.stdout
    );
    let json = t.run(&["graph", "--format", "json"]).json();
    assert_eq!(json["tasks"].as_array().unwrap().len(), 7);
    let edges: Vec<(String, String)> = json["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(edges.contains(&("scene01".into(), "scene02".into())));
}
