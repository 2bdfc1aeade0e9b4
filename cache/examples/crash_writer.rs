//! Test helper for crash safety: commit candidates in a loop from several
//! threads sharing one store, printing every acknowledged commit as
//!
//! ```text
//! ack KEY SLOT SEQ OBJECT
//! ```
//!
//! only after `commit_candidate` has returned. Meant to be SIGKILLed.
//!
//! usage: crash_writer DIR ROUND [THREADS]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use nbbuild_cache::{hash_bytes, Candidate, InFlight, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(round)) = (args.next().map(PathBuf::from), args.next()) else {
        eprintln!("usage: crash_writer DIR ROUND [THREADS]");
        std::process::exit(2);
    };
    let threads: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let store = match Store::open(&dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    // One key shared by all threads (exercises concurrent read-modify-write)
    // and one key per thread.
    let shared = hash_bytes(format!("crash round {round} shared").as_bytes());
    if let Err(e) = store.ensure_task(
        &shared,
        &format!("crash-{round}-shared"),
        &serde_json::json!({ "round": round }),
    ) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    println!("ready");
    let _ = std::io::stdout().flush();

    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            let shared = shared.clone();
            let round = round.clone();
            std::thread::spawn(move || {
                let own = hash_bytes(format!("crash round {round} thread {t}").as_bytes());
                store
                    .ensure_task(&own, &format!("crash-{round}-t{t}"), &serde_json::json!({}))
                    .expect("ensure_task");
                for seq in 0u64.. {
                    let (key, slot) = if seq % 2 == 0 {
                        (&shared, t * 100 + (seq % 6) as u32)
                    } else {
                        (&own, (seq % 4) as u32)
                    };
                    store
                        .record_in_flight(
                            key,
                            slot,
                            InFlight {
                                slot,
                                remote_task: format!("remote-{t}-{seq}"),
                                attempt: 1,
                                submitted: 0,
                            },
                        )
                        .expect("record_in_flight");
                    // 1 KiB .. ~200 KiB of bytes unique to (round, t, seq)
                    let head = format!("round {round} thread {t} seq {seq}\n");
                    let len = 1024 + ((seq * 7919) % 200) as usize * 1024;
                    let bytes: Vec<u8> = head.bytes().cycle().take(len).collect();
                    let object = store.put_bytes(&bytes).expect("put_bytes");
                    store
                        .commit_candidate(
                            key,
                            Candidate {
                                slot,
                                object: object.clone(),
                                mime: "application/octet-stream".into(),
                                remote_task: Some(format!("{t}:{seq}")),
                                ..Candidate::default()
                            },
                        )
                        .expect("commit_candidate");
                    {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ack {key} {slot} {t}:{seq} {object}");
                        let _ = out.flush();
                    }
                    if t == 0 && seq % 25 == 24 {
                        store
                            .start_reroll(&shared, "crash test re-roll")
                            .expect("reroll");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}
