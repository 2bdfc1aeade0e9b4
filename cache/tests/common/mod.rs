#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Path of an example binary of this crate, building it if needed.
///
/// `cargo test -p nbbuild-cache` builds the examples next to the test
/// binaries (`target/<profile>/examples/`), but not when a single test
/// target is selected (`--test crash`), so the example is (re)built here with
/// the cargo that runs the tests (a no-op when it is up to date). Set
/// NBBUILD_CACHE_NO_BUILD=1 to skip that and use whatever binary is there.
pub fn example_bin(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let bin = profile_dir.join("examples").join(name);
    if std::env::var_os("NBBUILD_CACHE_NO_BUILD").is_none() || !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "nbbuild-cache", "--example", name])
            .arg("--quiet")
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build --example");
        assert!(status.success(), "building example {name} failed");
    }
    assert!(bin.is_file(), "example binary {} not found", bin.display());
    bin
}

/// Small xorshift generator seeded from the clock (no extra dependency).
pub struct Rng(u64);

impl Rng {
    pub fn from_clock() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let seed = nanos ^ (u64::from(std::process::id()) << 32) | 1;
        eprintln!("rng seed {seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// uniform-ish in lo..hi
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Kills (SIGKILL) and reaps the child when dropped, so a failing assertion
/// never leaves a helper process behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
