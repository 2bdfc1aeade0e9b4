//! Test helper: open the store at argv[1], print "ready", then hold it
//! (appending a run-log entry every 100 ms and printing "wrote N") for argv[2] seconds (default 60)
//! or until killed.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: hold_store DIR [SECONDS]");
        std::process::exit(2);
    };
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let store = match nbbuild_cache::Store::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(h) = e.hint() {
                eprintln!("hint: {h}");
            }
            std::process::exit(1);
        }
    };
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        i += 1;
        if let Err(e) = store.append_run(&serde_json::json!({ "hold_store": i })) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        println!("wrote {i}");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_millis(100));
    }
}
