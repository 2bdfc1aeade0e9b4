//! Re-attaching to a recorded G-Labs task id checks that the task is ours.
//!
//! G-Labs keeps tasks in memory only and, after a restart, hands out ids
//! again (the simulator restarted with the same seed repeats its id
//! sequence). A rerun that adopted a recorded id without looking would store
//! another prompt's image under our key: a wrong result, silently, forever
//! fresh.

use crate::harness::{Sim, Test};
use std::time::Duration;

/// The simulator's stills carry `nbbuild-sim-prompt` = the first 16 hex
/// digits of blake3(prompt) in a tEXt chunk.
fn still_prompt_tag(png: &[u8]) -> Option<String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let reader = decoder.read_info().ok()?;
    reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "nbbuild-sim-prompt")
        .map(|t| t.text.clone())
}

fn submit_foreign(sim: &Sim, n: u64) {
    let url = format!("{}/api/image/generate", sim.url);
    sim.rt.block_on(async {
        let http = reqwest::Client::new();
        for i in 0..n {
            let resp = http
                .post(&url)
                .json(&serde_json::json!({
                    "prompt": format!("somebody else's prompt number {i}"),
                    "model": "nano_banana_2",
                    "aspect_ratio": "9:16",
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 202, "foreign submit {i}");
        }
    });
}

#[test]
fn reattach_after_a_same_seed_restart_never_adopts_another_prompts_task() {
    let seed = 41;
    // So slow that nothing completes before the kill: every submitted
    // candidate is recorded in flight and none is stored.
    let slow = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 600_000,
        seed,
        ..Default::default()
    });
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let args = [
        "build",
        "--server",
        slow.url.as_str(),
        "--candidates",
        "2",
        "--mode",
        "images",
        "--no-progress",
        "-q",
    ];
    let mut child = t.command(&args).spawn().unwrap();
    slow.wait_for_submits(3);
    // The ids are recorded right after each 202; give the build a moment
    // to flush them (nothing else can happen: no task will finish).
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    child.wait().unwrap();
    let accepted = slow.submits();

    let (held, recorded) = {
        let store = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
        let tasks = store.tasks().unwrap();
        let held: usize = tasks.iter().map(|(_, r)| r.candidates.len()).sum();
        let recorded: usize = tasks.iter().map(|(_, r)| r.in_flight.len()).sum();
        (held, recorded)
    };
    assert_eq!(held, 0, "nothing can have completed before the kill");
    assert!(
        recorded >= 1,
        "the kill must leave recorded G-Labs tasks to re-attach to"
    );

    // G-Labs restarts: a new app with the same seed hands out the same ids,
    // and other prompts' tasks take them before our rerun polls.
    drop(slow);
    let fresh = Sim::start(nbbuild_sim::SimConfig {
        image_latency_ms: 30,
        seed,
        ..Default::default()
    });
    submit_foreign(&fresh, accepted);

    let run = t.build(&fresh, &["--candidates", "2", "--mode", "images", "-v"]);
    run.assert_code(0);

    let store = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
    let mut checked = 0;
    for (key, rec) in store.tasks().unwrap() {
        let prompt = rec.preimage["prompt"].as_str().unwrap().to_string();
        let want = blake3::hash(prompt.as_bytes()).to_hex()[..16].to_string();
        for c in &rec.candidates {
            let bytes = store.read_object(&c.object, true).unwrap();
            assert_eq!(
                still_prompt_tag(&bytes).as_deref(),
                Some(want.as_str()),
                "task {key} ({}) c{} holds a still made from another prompt",
                rec.name,
                c.slot + 1
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
    // Every one of the 10 candidates was generated anew, none adopted.
    assert_eq!(fresh.stats().image_submits, accepted + 10);
    assert!(
        run.stderr.contains("is not ours"),
        "the rerun says it refused a reused id:\n{}",
        run.stderr
    );
}
