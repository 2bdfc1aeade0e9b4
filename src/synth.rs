//! Synthetic flows of any size, for benchmarks and stress tests: `n`
//! scenes, each a prompt + reference -> image -> approve -> Veo chain, with
//! every fourth scene's still anchored on the previous scene's approved still.

use serde_json::{json, Value};

/// A PatchWork-style flow with `scenes` image nodes and `scenes` video nodes
/// (so `2 * scenes` generation nodes), spread over tabs of at most 250 scenes.
pub fn flow(scenes: usize, reference: &str) -> Value {
    let mut tabs = Vec::new();
    let per_tab = 250;
    let mut scene = 0;
    while scene < scenes {
        let count = per_tab.min(scenes - scene);
        tabs.push(tab(tabs.len(), scene, count, reference));
        scene += count;
    }
    json!({"format": "ducted-project", "version": "0.8.5", "name": "BENCH1-V0-1", "tabs": tabs})
}

fn tab(index: usize, first_scene: usize, count: usize, reference: &str) -> Value {
    let mut nodes = Vec::new();
    let mut links = Vec::new();
    let mut next_link = 1;
    let mut link = |links: &mut Vec<Value>, src: usize, dst: usize, slot: usize, ty: &str| {
        let id = next_link;
        next_link += 1;
        links.push(json!([id, src, 0, dst, slot, ty]));
        id
    };
    // Node ids: 7 per scene.
    for k in 0..count {
        let s = first_scene + k + 1;
        let base = k * 7;
        let (p, r, img, gate, vp, veo, vgate) = (
            base + 1,
            base + 2,
            base + 3,
            base + 4,
            base + 5,
            base + 6,
            base + 7,
        );
        let l_prompt = link(&mut links, p, img, 0, "string");
        let anchor = k % 4 == 3;
        let l_ref = if anchor {
            link(&mut links, base - 7 + 4, img, 1, "image")
        } else {
            link(&mut links, r, img, 1, "image")
        };
        let l_gate = link(&mut links, img, gate, 0, "*");
        let l_vp = link(&mut links, vp, veo, 0, "string");
        let l_start = link(&mut links, gate, veo, 1, "image");
        let l_vgate = link(&mut links, veo, vgate, 0, "*");
        let text = format!("{{\n  \"scene\": {s},\n  \"shot\": \"person in a kitchen, take {s}\",\n  \"style\": {{\"light\": \"warm\"}}\n}}");
        nodes.push(json!({"id": p, "type": "nanobanana/Prompt", "pos": [0, base * 40], "size": [300, 200], "flags": {}, "order": 0, "mode": 0,
            "title": format!("Scene {s} prompt"), "properties": {"text": text, "variableName": "prompt", "templateMode": false, "dynamicMode": false, "dynamicRows": [""]},
            "inputs": null, "outputs": [{"name": "prompt", "type": "string", "links": [l_prompt]}]}));
        let mut ref_links = vec![];
        if !anchor {
            ref_links.push(l_ref);
        }
        nodes.push(json!({"id": r, "type": "nanobanana/Media", "pos": [0, base * 40 + 220], "size": [200, 200], "flags": {}, "order": 1, "mode": 0,
            "title": "Avatar", "properties": {"mode": "reference", "imageData": reference},
            "inputs": [], "outputs": [{"name": "image", "type": "image", "links": ref_links}]}));
        nodes.push(json!({"id": img, "type": "nanobanana/NanobananaAPI", "pos": [400, base * 40], "size": [360, 294], "flags": {}, "order": 2, "mode": 0,
            "title": format!("Generate: Scene {s}"), "properties": {"model": "nano_banana_2", "aspectRatio": "9:16", "resolution": "1K", "timeout": 300000, "imageCount": 1, "outputCount": 4, "_savedImages": [], "_savedPreviewIndex": 0},
            "inputs": [{"name": "prompt", "type": "string", "link": l_prompt}, {"name": "image 1", "type": "image", "link": l_ref}],
            "outputs": [{"name": "images", "type": "image", "links": [l_gate]}]}));
        let mut gate_links = vec![l_start];
        if k % 4 == 2 && k + 1 < count {
            // The next scene anchors on this gate: its link id is allocated
            // in the next iteration as l_ref (= l_vgate + 2).
            gate_links.push(l_vgate + 2);
        }
        nodes.push(json!({"id": gate, "type": "nanobanana/Media", "pos": [800, base * 40], "size": [300, 300], "flags": {}, "order": 3, "mode": 0,
            "title": format!("Approve scene {s}"), "properties": {"mode": "approve", "_lastApprovedData": null, "lastData": null},
            "inputs": [{"name": "input", "type": "*", "link": l_gate}], "outputs": [{"name": "output", "type": "image", "links": gate_links}]}));
        nodes.push(json!({"id": vp, "type": "nanobanana/Prompt", "pos": [800, base * 40 + 320], "size": [300, 200], "flags": {}, "order": 4, "mode": 0,
            "title": format!("Scene {s} video prompt"), "properties": {"text": format!("slow push-in, scene {s}"), "templateMode": false, "dynamicMode": false},
            "inputs": null, "outputs": [{"name": "prompt", "type": "string", "links": [l_vp]}]}));
        nodes.push(json!({"id": veo, "type": "nanobanana/Veo3", "pos": [1200, base * 40], "size": [360, 300], "flags": {}, "order": 5, "mode": 0,
            "title": format!("Veo: Scene {s}"), "properties": {"model": "veo-3.1-fast-generate-preview", "veoModel": "fast", "mode": "frames-to-video", "durationSeconds": "8", "aspectRatio": "9:16", "resolution": "720p", "negativePrompt": "", "outputCount": 4, "_savedVideos": []},
            "inputs": [{"name": "prompt", "type": "string", "link": l_vp}, {"name": "start frame", "type": "image", "link": l_start}, {"name": "end frame", "type": "image", "link": null}],
            "outputs": [{"name": "video", "type": "video", "links": [l_vgate]}]}));
        nodes.push(json!({"id": vgate, "type": "nanobanana/Media", "pos": [1600, base * 40], "size": [300, 300], "flags": {}, "order": 6, "mode": 0,
            "title": format!("Approve video {s}"), "properties": {"mode": "approve", "_lastApprovedData": null},
            "inputs": [{"name": "input", "type": "*", "link": l_vgate}], "outputs": [{"name": "output", "type": "video", "links": []}]}));
    }
    json!({"name": format!("Tab {}", index + 1), "graphData": {"last_node_id": count * 7, "last_link_id": next_link - 1, "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4},
        "canvasState": {"offsetX": 0, "offsetY": 0, "scale": 1}, "drawingData": [], "saveCounter": 0})
}

/// The scheduling benchmark's shape (issue 11): a chain of `chain` stills,
/// each anchored on the previous one's approved still and each animated
/// into a clip, beside `independent` stills that depend on nothing.
pub fn chain_flow(chain: usize, independent: usize, reference: &str) -> Value {
    let mut nodes: Vec<Value> = Vec::new();
    let mut links: Vec<Value> = Vec::new();
    let mut next_id = 0usize;
    let mut id = || {
        next_id += 1;
        next_id
    };
    let mut next_link = 0usize;
    let mut link = |links: &mut Vec<Value>, src: usize, dst: usize, slot: usize, ty: &str| {
        next_link += 1;
        links.push(json!([next_link, src, 0, dst, slot, ty]));
        next_link
    };
    let prompt = |n: usize, title: String, text: String, out: usize| {
        json!({"id": n, "type": "nanobanana/Prompt", "pos": [0, n * 40], "size": [300, 200], "flags": {}, "order": 0, "mode": 0,
            "title": title, "properties": {"text": text, "variableName": "prompt", "templateMode": false, "dynamicMode": false, "dynamicRows": [""]},
            "inputs": null, "outputs": [{"name": "prompt", "type": "string", "links": [out]}]})
    };
    let image = |n: usize, s: usize, l_prompt: usize, l_ref: usize, out: Vec<usize>| {
        json!({"id": n, "type": "nanobanana/NanobananaAPI", "pos": [400, n * 40], "size": [360, 294], "flags": {}, "order": 2, "mode": 0,
            "title": format!("Generate: Scene {s}"), "properties": {"model": "nano_banana_2", "aspectRatio": "9:16", "resolution": "1K", "timeout": 300000, "imageCount": 1, "outputCount": 4, "_savedImages": [], "_savedPreviewIndex": 0},
            "inputs": [{"name": "prompt", "type": "string", "link": l_prompt}, {"name": "image 1", "type": "image", "link": l_ref}],
            "outputs": [{"name": "images", "type": "image", "links": out}]})
    };
    let media = |n: usize, title: String, props: Value, input: Option<usize>, out: Vec<usize>| {
        json!({"id": n, "type": "nanobanana/Media", "pos": [800, n * 40], "size": [300, 300], "flags": {}, "order": 3, "mode": 0,
            "title": title, "properties": props,
            "inputs": input.map_or(json!([]), |l| json!([{"name": "input", "type": "*", "link": l}])),
            "outputs": [{"name": "output", "type": "image", "links": out}]})
    };
    // The reference every chain head and independent still starts from.
    let r = id();
    let mut ref_out = Vec::new();
    let r_index = nodes.len();
    nodes.push(Value::Null);
    // (gate node index in `nodes`) of the previous chain scene.
    let mut prev_gate: Option<(usize, usize)> = None;
    for s in 1..=chain + independent {
        let in_chain = s <= chain;
        let (p, img, gate) = (id(), id(), id());
        let l_prompt = link(&mut links, p, img, 0, "string");
        let l_ref = match prev_gate.filter(|_| in_chain) {
            Some((g, gi)) => {
                let l = link(&mut links, g, img, 1, "image");
                nodes[gi]["outputs"][0]["links"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(l));
                l
            }
            None => {
                let l = link(&mut links, r, img, 1, "image");
                ref_out.push(l);
                l
            }
        };
        let l_gate = link(&mut links, img, gate, 0, "*");
        nodes.push(prompt(
            p,
            format!("Scene {s} prompt"),
            format!("{{\"scene\": {s}, \"shot\": \"chain bench, take {s}\"}}"),
            l_prompt,
        ));
        nodes.push(image(img, s, l_prompt, l_ref, vec![l_gate]));
        let gi = nodes.len();
        nodes.push(media(
            gate,
            format!("Approve scene {s}"),
            json!({"mode": "approve", "_lastApprovedData": null, "lastData": null}),
            Some(l_gate),
            vec![],
        ));
        if in_chain {
            let (vp, veo, vgate) = (id(), id(), id());
            let l_vp = link(&mut links, vp, veo, 0, "string");
            let l_start = link(&mut links, gate, veo, 1, "image");
            nodes[gi]["outputs"][0]["links"]
                .as_array_mut()
                .unwrap()
                .push(json!(l_start));
            let l_vgate = link(&mut links, veo, vgate, 0, "*");
            nodes.push(prompt(
                vp,
                format!("Scene {s} video prompt"),
                format!("slow push-in, scene {s}"),
                l_vp,
            ));
            nodes.push(json!({"id": veo, "type": "nanobanana/Veo3", "pos": [1200, veo * 40], "size": [360, 300], "flags": {}, "order": 5, "mode": 0,
                "title": format!("Veo: Scene {s}"), "properties": {"model": "veo-3.1-fast-generate-preview", "veoModel": "fast", "mode": "frames-to-video", "durationSeconds": "8", "aspectRatio": "9:16", "resolution": "720p", "negativePrompt": "", "outputCount": 4, "_savedVideos": []},
                "inputs": [{"name": "prompt", "type": "string", "link": l_vp}, {"name": "start frame", "type": "image", "link": l_start}, {"name": "end frame", "type": "image", "link": null}],
                "outputs": [{"name": "video", "type": "video", "links": [l_vgate]}]}));
            nodes.push(media(
                vgate,
                format!("Approve video {s}"),
                json!({"mode": "approve", "_lastApprovedData": null}),
                Some(l_vgate),
                vec![],
            ));
            prev_gate = Some((gate, gi));
        }
    }
    nodes[r_index] = media(
        r,
        "Avatar".into(),
        json!({"mode": "reference", "imageData": reference}),
        None,
        ref_out,
    );
    let tab = json!({"name": "Chain", "graphData": {"last_node_id": next_id, "last_link_id": next_link, "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4},
        "canvasState": {"offsetX": 0, "offsetY": 0, "scale": 1}, "drawingData": [], "saveCounter": 0});
    json!({"format": "ducted-project", "version": "0.8.5", "name": "CHAIN1-V0-1", "tabs": [tab]})
}

/// [`chain_flow`] compiled with `candidates` per task, every reference taken
/// as present: the task graph tests and benchmarks schedule.
pub fn compile_chain(
    chain: usize,
    independent: usize,
    candidates: u32,
) -> crate::compile::Compiled {
    let text = chain_flow(chain, independent, "refs/avatar.png").to_string();
    let flow = crate::flow::Flow::parse(&text).expect("a synthetic flow parses");
    let exists = |_: &str| true;
    crate::compile::compile(
        &flow,
        &crate::compile::CompileOptions {
            candidates,
            ref_image: None,
            file_exists: &exists,
        },
    )
    .expect("a synthetic flow compiles")
}
