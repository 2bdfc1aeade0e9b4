//! Store micro-benchmark.
//!
//! cargo run --release -p nbbuild-cache --example store_bench [-- TASKS FILES MIB]
//!
//! Measures, in a fresh store under the system temp dir:
//! - inserting TASKS task records (ensure_tasks, one flush) and looking each
//!   key up again (Store::task, JSON decode included), warm and after reopen;
//! - commit_candidate latency (each one is flushed);
//! - object write throughput: put_file of FILES files of MIB MiB each, against
//!   std::fs::copy of the same files (without and with an fsync per file),
//!   and verified reads (read_object with re-hash).

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use nbbuild_cache::{hash_bytes, Candidate, Store};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n_tasks: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let n_files: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(64);
    let file_mib: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);

    let tmp = tempfile::tempdir()?;
    let store_dir = tmp.path().join(".nbbuild");
    println!("store_bench in {}", tmp.path().display());

    // ---------------------------------------------------------------- tasks
    let keys: Vec<String> = (0..n_tasks)
        .map(|i| hash_bytes(format!("task {i}").as_bytes()))
        .collect();
    let preimages: Vec<serde_json::Value> = (0..n_tasks)
        .map(|i| {
            serde_json::json!({
                "v": 1, "kind": "image", "model": "nano-banana-pro",
                "prompt": format!("scene {i}: a lighthouse at dusk, volumetric fog, 35mm, muted palette"),
                "aspect": "16:9", "resolution": "2k", "seed": i, "candidates": 2,
                "inputs": [hash_bytes(format!("ref {}", i % 50).as_bytes())]
            })
        })
        .collect();
    let names: Vec<String> = (0..n_tasks).map(|i| format!("scene{i:06}")).collect();
    {
        let store = Store::open(&store_dir)?;
        let t = Instant::now();
        for chunk in (0..n_tasks).collect::<Vec<_>>().chunks(10_000) {
            store.ensure_tasks(
                chunk
                    .iter()
                    .map(|&i| (keys[i].as_str(), names[i].as_str(), &preimages[i])),
            )?;
        }
        let ins = t.elapsed();
        println!(
            "insert {n_tasks} task records (ensure_tasks, 10k per flush): {:.2} s ({:.1} µs/record)",
            ins.as_secs_f64(),
            ins.as_secs_f64() * 1e6 / n_tasks as f64
        );

        let mut order: Vec<usize> = (0..n_tasks).collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let t = Instant::now();
        let mut found = 0;
        for &i in &order {
            if store.task(&keys[i])?.is_some() {
                found += 1;
            }
        }
        let look = t.elapsed();
        assert_eq!(found, n_tasks);
        println!(
            "look up {n_tasks} task keys, random order, warm: {:.3} s ({:.2} µs/lookup)",
            look.as_secs_f64(),
            look.as_secs_f64() * 1e6 / n_tasks as f64
        );
        let t = Instant::now();
        let by_name = store.find_by_name(&names[n_tasks / 2])?;
        println!(
            "find_by_name among {n_tasks}: {:.1} µs ({} hit)",
            t.elapsed().as_secs_f64() * 1e6,
            by_name.len()
        );
        let t = Instant::now();
        let all = store.tasks()?;
        println!(
            "list all {} records (tasks()): {:.3} s",
            all.len(),
            t.elapsed().as_secs_f64()
        );
    }
    {
        let t = Instant::now();
        let store = Store::open(&store_dir)?;
        let open = t.elapsed();
        let t = Instant::now();
        for k in &keys {
            store.task(k)?.ok_or("missing record")?;
        }
        let look = t.elapsed();
        println!(
            "reopen with {n_tasks} records: {:.3} s; look up all keys after reopen: {:.3} s ({:.2} µs/lookup)",
            open.as_secs_f64(),
            look.as_secs_f64(),
            look.as_secs_f64() * 1e6 / n_tasks as f64
        );

        // commit latency (each commit flushed)
        let n_commits = 500;
        let key = &keys[0];
        let objs: Vec<String> = (0..n_commits)
            .map(|i| store.put_bytes(format!("candidate {i}").as_bytes()))
            .collect::<Result<_, _>>()?;
        let t = Instant::now();
        for (i, o) in objs.iter().enumerate() {
            store.commit_candidate(
                key,
                Candidate {
                    slot: (i % 4) as u32,
                    object: o.clone(),
                    ..Candidate::default()
                },
            )?;
        }
        let d = t.elapsed();
        println!(
            "commit_candidate (record write + flush), {n_commits} commits: {:.2} ms each",
            d.as_secs_f64() * 1e3 / n_commits as f64
        );
    }

    // -------------------------------------------------------------- objects
    let src_dir = tmp.path().join("src");
    let copy_dir = tmp.path().join("copy");
    let copy_sync_dir = tmp.path().join("copy_sync");
    for d in [&src_dir, &copy_dir, &copy_sync_dir] {
        fs::create_dir_all(d)?;
    }
    let file_bytes = file_mib << 20;
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut buf = vec![0u8; file_bytes];
    let mut srcs = Vec::new();
    for i in 0..n_files {
        for chunk in buf.chunks_mut(8) {
            let r = rng.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        let p = src_dir.join(format!("f{i:03}.bin"));
        fs::File::create(&p)?.write_all(&buf)?;
        srcs.push(p);
    }
    drop(buf);
    let total = (n_files * file_bytes) as u64;
    println!(
        "objects: {n_files} files x {file_mib} MiB = {} MiB (sources in the page cache)",
        total >> 20
    );

    let store = Store::open(&store_dir)?;
    let t = Instant::now();
    let mut ids = Vec::new();
    for p in &srcs {
        ids.push(store.put_file(p)?.0);
    }
    let put = t.elapsed();
    println!(
        "put_file (hash + copy + fsync + rename + dir fsync): {:.2} s, {:.0} MiB/s",
        put.as_secs_f64(),
        mib_s(total, put)
    );

    let t = Instant::now();
    for p in &srcs {
        fs::copy(p, copy_dir.join(p.file_name().unwrap()))?;
    }
    let cp = t.elapsed();
    println!(
        "std::fs::copy (no fsync): {:.2} s, {:.0} MiB/s",
        cp.as_secs_f64(),
        mib_s(total, cp)
    );

    let t = Instant::now();
    for p in &srcs {
        let dst = copy_sync_dir.join(p.file_name().unwrap());
        fs::copy(p, &dst)?;
        fs::File::open(&dst)?.sync_all()?;
    }
    let cps = t.elapsed();
    println!(
        "std::fs::copy + fsync per file: {:.2} s, {:.0} MiB/s",
        cps.as_secs_f64(),
        mib_s(total, cps)
    );

    let t = Instant::now();
    for p in &srcs {
        nbbuild_cache::hash_file(p)?;
    }
    let h = t.elapsed();
    println!(
        "blake3 alone (hash_file): {:.2} s, {:.0} MiB/s",
        h.as_secs_f64(),
        mib_s(total, h)
    );

    let t = Instant::now();
    for id in &ids {
        store.read_object(id, true)?;
    }
    let rd = t.elapsed();
    println!(
        "read_object(verify = true): {:.2} s, {:.0} MiB/s",
        rd.as_secs_f64(),
        mib_s(total, rd)
    );

    for pass in 1..=2 {
        let t = Instant::now();
        let rep = store.verify()?;
        let v = t.elapsed();
        println!(
            "verify() pass {pass}: {} objects, {} MiB in {:.2} s ({:.0} MiB/s), {} problems",
            rep.objects_checked,
            rep.bytes_checked >> 20,
            v.as_secs_f64(),
            mib_s(rep.bytes_checked, v),
            rep.problems.len()
        );
    }
    Ok(())
}
