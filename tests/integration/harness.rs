//! The `Test` builder: a temporary project folder, files copied or written
//! into it, the real `nbbuild` binary run inside, and its output captured.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture_text(name)).unwrap()
}

pub struct Test {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copy a fixture (and the reference images it uses) into the project folder as `as_name`.
    pub fn fixture(self, name: &str, as_name: &str) -> Test {
        let refs = self.path().join("refs");
        std::fs::create_dir_all(&refs).unwrap();
        for r in [
            "avatar.png",
            "product.png",
            "scene09-take1.png",
            "scene09-take2.png",
        ] {
            std::fs::copy(fixtures().join("refs").join(r), refs.join(r)).unwrap();
        }
        std::fs::copy(fixtures().join(name), self.path().join(as_name)).unwrap();
        self
    }

    pub fn write(self, rel: &str, contents: impl AsRef<[u8]>) -> Test {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, contents).unwrap();
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Test {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// Edit a JSON file in the project folder in place.
    pub fn edit_json(&self, rel: &str, f: impl FnOnce(&mut serde_json::Value)) {
        let p = self.path().join(rel);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nbbuild"));
        c.args(args).current_dir(self.path());
        for k in [
            "GLABS_SERVER",
            "GLABS_API_KEY",
            "GEMINI_API_KEY",
            "NBBUILD_PROVIDER",
            "NBBUILD_CACHE_DIR",
            "NBBUILD_QA_URL",
            "NBBUILD_QA_MODEL",
            "NBBUILD_QA_KEY",
            "R2_ENDPOINT",
            "R2_ACCOUNT_ID",
            "R2_BUCKET",
            "R2_PUBLIC_URL",
            "R2_ACCESS_KEY_ID",
            "R2_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "NBBUILD_REMOTE",
            "NBBUILD_REMOTE_MODE",
            "NBBUILD_REMOTE_SIGNING_KEY",
            "NBBUILD_REMOTE_TRUSTED",
            "NBBUILD_REMOTE_LEASE_MS",
        ] {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.command(args).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A simulator running in the test process, on a loopback port, for the
/// binary to talk to over real HTTP.
pub struct Sim {
    pub rt: tokio::runtime::Runtime,
    pub handle: Option<nbbuild_sim::SimHandle>,
    pub url: String,
}

/// Fast latencies for tests.
pub fn fast_sim() -> nbbuild_sim::SimConfig {
    nbbuild_sim::SimConfig {
        image_latency_ms: 30,
        video_latency_ms: 60,
        ..Default::default()
    }
}

impl Sim {
    pub fn start(config: nbbuild_sim::SimConfig) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.block_on(nbbuild_sim::start(config, 0)).unwrap();
        let url = handle.url();
        Sim {
            rt,
            handle: Some(handle),
            url,
        }
    }
    pub fn stats(&self) -> nbbuild_sim::SimStats {
        self.rt.block_on(self.handle.as_ref().unwrap().stats())
    }
    /// Like a G-Labs restart: every task id is forgotten.
    pub fn restart(&self) {
        self.rt.block_on(self.handle.as_ref().unwrap().restart());
    }
    /// Generation tasks pending or running at the simulator now.
    pub fn in_flight(&self) -> u64 {
        self.rt.block_on(self.handle.as_ref().unwrap().in_flight())
    }
    /// Every task the simulator created, in order.
    pub fn created(&self) -> Vec<nbbuild_sim::CreatedTask> {
        self.rt.block_on(self.handle.as_ref().unwrap().created())
    }
    /// Wait until the server accepted `n` submissions; panics after 30 s.
    pub fn wait_for_submits(&self, n: u64) {
        wait_until(&format!("{n} submissions"), || self.submits() >= n);
    }
    pub fn submits(&self) -> u64 {
        let s = self.stats();
        s.image_submits + s.video_submits
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

impl Test {
    /// `nbbuild build` against `sim` with test-speed retries; extra args appended.
    pub fn build(&self, sim: &Sim, extra: &[&str]) -> Run {
        let mut args = vec![
            "build",
            "--server",
            sim.url.as_str(),
            "--json",
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        let mut c = self.command(&args);
        c.env("NBBUILD_BACKOFF_MS", "20");
        let out = c.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The newest generated flow.
    pub fn generated(&self) -> serde_json::Value {
        let dir = self.path().join("Generations");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "nbflow"))
            .collect();
        // `{name}-generated-{date}-{time}.nbflow`, and `-2`, `-3`... for later
        // ones in the same second: order by the time, then that number (a
        // plain sort puts `...-2.nbflow` before `....nbflow`).
        let order = |p: &PathBuf| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let (time, n) = match stem.rsplit_once('-') {
                Some((head, n)) if n.len() < 4 && n.chars().all(|c| c.is_ascii_digit()) => {
                    (head.to_string(), n.parse::<u32>().unwrap())
                }
                _ => (stem.clone(), 1),
            };
            (time, n)
        };
        files.sort_by_key(order);
        let p = files.last().expect("a generated flow");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    pub fn errors_json(&self) -> Option<serde_json::Value> {
        let p = self.path().join("Generations/errors.json");
        p.exists()
            .then(|| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
    }
}

/// Node `id` of tab `tab` in a flow document, for editing.
pub fn node_mut(v: &mut serde_json::Value, tab: usize, id: i64) -> &mut serde_json::Value {
    v["tabs"][tab]["graphData"]["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["id"] == id)
        .unwrap()
}

/// Properties of node `id` in tab `tab` of a flow document.
pub fn props(v: &serde_json::Value, tab: usize, id: i64) -> serde_json::Value {
    v["tabs"][tab]["graphData"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap()["properties"]
        .clone()
}

/// Error kinds in errors.json, sorted.
pub fn error_kinds(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

/// Poll `cond` every 5 ms; panics naming `what` when it is still false
/// after 30 s, so a test waiting for something that never happens fails
/// instead of going on as if it had.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "waited 30 s for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// What the store holds, read directly (after a kill, or between runs):
/// candidates and in-flight G-Labs task ids per slot.
#[derive(Debug, Default, Clone)]
pub struct Held {
    /// (task key, slot) -> the G-Labs task id the candidate came from.
    pub candidates: std::collections::BTreeMap<(String, u32), Option<String>>,
    /// (task key, slot) -> the recorded G-Labs task id, for slots without a
    /// candidate.
    pub in_flight: std::collections::BTreeMap<(String, u32), String>,
}

impl Held {
    /// Every G-Labs task id the store knows (candidates and in flight).
    pub fn ids(&self) -> std::collections::BTreeSet<String> {
        self.candidates
            .values()
            .flatten()
            .chain(self.in_flight.values())
            .cloned()
            .collect()
    }
}

/// Open the store in `.nbbuild` (absent: nothing held), check that verify
/// finds nothing but harmless leftovers, and read what it holds.
pub fn held(t: &Test) -> Held {
    let dir = t.path().join(".nbbuild");
    if !dir.join("db").exists() {
        return Held::default();
    }
    let s = nbbuild_cache::Store::open(&dir).expect("the store opens");
    let report = s.verify().unwrap();
    assert!(
        report.problems.iter().all(|p| p.kind.is_harmless()),
        "verify: {:?}",
        report.problems
    );
    let mut h = Held::default();
    for (key, r) in s.tasks().unwrap() {
        for c in &r.candidates {
            h.candidates
                .insert((key.clone(), c.slot), c.remote_task.clone());
        }
        for f in &r.in_flight {
            if !h.candidates.contains_key(&(key.clone(), f.slot)) {
                h.in_flight
                    .insert((key.clone(), f.slot), f.remote_task.clone());
            }
        }
    }
    h
}

/// Candidates in the store as `nbbuild cache stats --json` reports them.
pub fn cached_candidates(t: &Test) -> u64 {
    let stats = t.run(&["cache", "stats", "--json"]);
    stats.assert_code(0);
    stats.json()["stats"]["candidates"].as_u64().unwrap()
}

/// Tasks the simulator created (and still knows) that the store does not
/// record: submissions whose answer a kill cut off, in any round so far.
/// The next run finds them at G-Labs and adopts them instead of paying.
pub fn unadopted(sim: &Sim, held: &Held) -> usize {
    let known = held.ids();
    sim.created()
        .iter()
        .filter(|c| !c.forgotten && !known.contains(&c.task_id))
        .count()
}
