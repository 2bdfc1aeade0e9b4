//! What verified hand-ons cost: copying stored clips out of the store with
//! and without hashing them on the way (issue 20).
//!
//! cargo run --release -p nbbuild-cache --example verify_bench [-- FILES MIB ROUNDS]
//!
//! Default: 4 objects of 256 MiB (1 GiB), 5 rounds, median reported. Each
//! round copies every object to a fresh folder (beside the store, same disk)
//! the way `Assets/` is written, by each method in turn (the order rotates
//! between rounds):
//! - `unverified`: size check only, `io::copy` into a temporary beside the
//!   destination, mtime, fsync, rename: what the build did before;
//! - `verified`: `Store::copy_object_to` (the same kernel copy, then a hash
//!   of the copy, renamed only when it matched);
//! - `verified in the copy loop`: `Store::copy_object` hashing each 1 MiB
//!   as it passes from the object to the temporary (the design not taken);
//! - the unverified copy and the copy loop without the fsync (page-cache
//!   speed, where the hash weighs most);
//! - `hash only`: `Store::check_object`.
//!
//! The objects are in the page cache (just written), so reads cost little:
//! the figures bound the hashing overhead from above.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use nbbuild_cache::Store;

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn unverified(store: &Store, id: &str, dest: &Path, sync: bool) -> std::io::Result<()> {
    let dir = dest.parent().unwrap();
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbbuild-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let (mut src, _) = store
        .open_object(id)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::io::copy(&mut src, tmp.as_file_mut())?;
    tmp.as_file().set_modified(SystemTime::UNIX_EPOCH)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

fn verified_nosync(store: &Store, id: &str, dest: &Path) -> std::io::Result<()> {
    let dir = dest.parent().unwrap();
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbbuild-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    store
        .copy_object(id, tmp.as_file_mut())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    tmp.as_file().set_modified(SystemTime::UNIX_EPOCH)?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Hashing in the copy loop instead: `Store::copy_object` (read, hash,
/// write, 1 MiB at a time) into the temporary, then fsync and rename.
fn streaming(store: &Store, id: &str, dest: &Path) -> std::io::Result<()> {
    let dir = dest.parent().unwrap();
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbbuild-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    store
        .copy_object(id, tmp.as_file_mut())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    tmp.as_file().set_modified(SystemTime::UNIX_EPOCH)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n_files: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    let file_mib: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);

    let tmp = tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into()))?;
    let store = Store::open(&tmp.path().join(".nbbuild"))?;
    println!(
        "verify_bench in {}: {n_files} x {file_mib} MiB, {rounds} rounds",
        tmp.path().display()
    );
    let mut ids = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..n_files {
        let mut buf = vec![0u8; file_mib << 20];
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        ids.push(store.put_bytes(&buf)?);
    }
    let total = (n_files * file_mib) as u64 * (1 << 20);

    type Method = (&'static str, fn(&Store, &str, &Path) -> std::io::Result<()>);
    let methods: [Method; 6] = [
        ("unverified (io::copy + fsync + rename)", |s, id, d| {
            unverified(s, id, d, true)
        }),
        ("verified (copy_object_to)", |s, id, d| {
            s.copy_object_to(id, d, Some(SystemTime::UNIX_EPOCH))
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()))
        }),
        ("verified in the copy loop (copy_object)", streaming),
        ("unverified, no fsync", |s, id, d| {
            unverified(s, id, d, false)
        }),
        ("verified in the copy loop, no fsync", verified_nosync),
        ("hash only (check_object)", |s, id, _| {
            s.check_object(id)
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()))
        }),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); methods.len()];
    for round in 0..rounds {
        for k in 0..methods.len() {
            let m = (k + round) % methods.len();
            let dest = tmp.path().join(format!("Assets-{round}-{m}"));
            fs::create_dir_all(&dest)?;
            let t = Instant::now();
            for (i, id) in ids.iter().enumerate() {
                (methods[m].1)(&store, id, &dest.join(format!("clip-c{i}.mp4")))?;
            }
            times[m].push(t.elapsed());
            fs::remove_dir_all(&dest)?;
        }
        print!(".");
        std::io::stdout().flush()?;
    }
    println!();
    for (m, (name, _)) in methods.iter().enumerate() {
        let mut t = times[m].clone();
        t.sort();
        let med = t[t.len() / 2];
        println!(
            "{name:<42} median {:>7.0} ms  {:>6.0} MiB/s  (min {:.0} ms, max {:.0} ms)",
            med.as_secs_f64() * 1e3,
            mib_s(total, med),
            t[0].as_secs_f64() * 1e3,
            t[t.len() - 1].as_secs_f64() * 1e3
        );
    }
    Ok(())
}
