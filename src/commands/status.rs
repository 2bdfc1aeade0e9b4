//! `nbbuild status [--json] [--watch]`: what the running build is doing,
//! asked of it through the holder's socket; without one, the last run's
//! summary from the store.

use super::cache::store_dir;
use super::plan::fmt_credits;
use crate::cli::StatusArgs;
use crate::error::{Error, Result};
use crate::holder::client::{ConnectError, HolderClient};
use crate::holder::{open_read, Reader};
use crate::schema::LastRun;
use serde_json::Value;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

/// What `status` found.
enum Seen {
    /// A build holds the store: its live snapshot.
    Live(Value),
    /// No build is running: the last run's record, if any.
    Last(Option<Value>),
}

pub fn run(a: &StatusArgs) -> Result<i32> {
    if !(a.interval > 0.0 && a.interval <= 3600.0) {
        return Err(
            Error::usage(format!("--interval {} is out of range", a.interval))
                .hint("give seconds between refreshes, e.g. 0.5 or 2"),
        );
    }
    let dir = store_dir(&a.store)?;
    if a.watch {
        return watch(&dir, a);
    }
    if !dir.join("db").exists() {
        return Err(no_store(&dir));
    }
    let (seen, _) = look(&dir)?;
    print(&seen, a.store.json, false)?;
    Ok(0)
}

fn no_store(dir: &Path) -> Error {
    Error::usage(format!("no store in {}", dir.display())).hint(
        "a build creates it; or point at one with --cache-dir (`status --watch` waits for a build)",
    )
}

/// The running build (keeping the connection to it), else the last run.
/// The holder is asked first: while a build runs, status never tries the
/// store itself.
fn look(dir: &Path) -> Result<(Seen, Option<HolderClient>)> {
    if let Ok(root) = std::fs::canonicalize(dir) {
        match HolderClient::connect(&root) {
            Ok(c) => {
                if let Some(v) = c.status()? {
                    return Ok((Seen::Live(v), Some(c)));
                }
            }
            Err(e @ ConnectError::NoAccess(_)) => {
                return Err(Error::env(format!(
                    "cannot ask the process holding the store in {} what it is doing",
                    root.display()
                ))
                .cause(e.to_string())
                .hint("the store belongs to another user: run `nbbuild status` as that user"))
            }
            Err(_) => {}
        }
    }
    match open_read(dir)? {
        Reader::Store(s) => Ok((Seen::Last(s.runs()?.pop()), None)),
        Reader::Holder(c) => match c.status()? {
            Some(v) => Ok((Seen::Live(v), Some(c))),
            // Held by a process that is not building.
            None => {
                let last = crate::holder::StoreRead::runs(&c)?.pop();
                Ok((Seen::Last(last), None))
            }
        },
    }
}

/// Follow the running build until it ends; with none running, wait for one.
/// While waiting it only tries the socket and never opens the store, so a
/// build starting meanwhile is never refused because of it.
fn watch(dir: &Path, a: &StatusArgs) -> Result<i32> {
    let json = a.store.json;
    let every = Duration::from_secs_f64(a.interval);
    let mut client: Option<HolderClient> = None;
    let mut followed = false;
    if dir.join("db").exists() {
        let (seen, c) = look(dir)?;
        followed = c.is_some();
        client = c;
        print(&seen, json, true)?;
        if !followed && !json {
            println!("waiting for a build to start (Ctrl-C to stop)");
        }
    } else if !json {
        println!(
            "no store in {} yet; waiting for a build to start (Ctrl-C to stop)",
            dir.display()
        );
    }
    loop {
        std::thread::sleep(every);
        if client.is_none() {
            client = std::fs::canonicalize(dir)
                .ok()
                .and_then(|root| HolderClient::connect(&root).ok());
        }
        let live = client.as_ref().map(|c| c.status());
        match live {
            Some(Ok(Some(v))) => {
                followed = true;
                print(&Seen::Live(v), json, true)?;
                continue;
            }
            Some(_) => client = None,
            None => {}
        }
        if followed {
            // The build ended (or its holder went away): its record.
            let (seen, c) = look(dir)?;
            print(&seen, json, true)?;
            match c {
                Some(c) => client = Some(c), // another build already started
                None => return Ok(0),
            }
        }
    }
}

fn print(seen: &Seen, json: bool, watching: bool) -> Result<()> {
    if json {
        // The holder sends its live view already written (schema::LiveView).
        let v = match seen {
            Seen::Live(v) => v.clone(),
            Seen::Last(r) => serde_json::to_value(LastRun {
                schema: (),
                running: false,
                last_run: r.as_ref(),
            })
            .map_err(|e| Error::internal(e.to_string()))?,
        };
        let text = if watching {
            serde_json::to_string(&v)
        } else {
            serde_json::to_string_pretty(&v)
        };
        println!("{}", text.map_err(|e| Error::internal(e.to_string()))?);
        return Ok(());
    }
    let text = match seen {
        Seen::Live(v) => live_text(v),
        Seen::Last(r) => last_text(r.as_ref()),
    };
    if watching && std::io::stdout().is_terminal() {
        print!("\x1b[H\x1b[2J");
    } else if watching {
        println!();
    }
    print!("{text}");
    Ok(())
}

/// `1.2s`, `3m 12s`, `1h 05m`.
pub fn fmt_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{:.1}s", ms as f64 / 1000.0),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn live_text(v: &Value) -> String {
    let t = &v["tasks"];
    let c = &v["calls"];
    let mut out = format!(
        "build of {} ({}, {}, process {})\n",
        v["flow"].as_str().unwrap_or("?"),
        v["phase"].as_str().unwrap_or("?"),
        fmt_ms(n(&v["elapsed_ms"])),
        n(&v["pid"])
    );
    out += &format!(
        "tasks    {} of {} done ({}), {} running, {} waiting\n",
        n(&t["done"]),
        n(&t["total"]),
        states(t, n(&t["not_run"])),
        n(&t["running"]),
        n(&t["waiting"])
    );
    let flights = v["in_flight"].as_array().cloned().unwrap_or_default();
    out += &format!(
        "calls    {} of {} planned ({} image + {} video), {} candidate(s) in flight\n",
        n(&c["made"]),
        n(&c["planned"]),
        n(&c["image"]),
        n(&c["video"]),
        flights.len()
    );
    let (spent, quote) = (
        v["credits"]["spent"].as_f64().unwrap_or(0.0),
        v["credits"]["quote"].as_f64().unwrap_or(0.0),
    );
    out += &match unit_of(&v["credits"]["unit"]) {
        u @ crate::models::Unit::Usd => {
            format!(
                "dollars  {} of about {}\n",
                u.format(spent),
                u.format(quote)
            )
        }
        crate::models::Unit::Credits => format!(
            "credits  {} of about {}\n",
            fmt_credits(spent),
            fmt_credits(quote)
        ),
    };
    for f in &flights {
        out += &format!(
            "  {} c{}  attempt {}  {}  {}\n",
            f["task"].as_str().unwrap_or("?"),
            n(&f["candidate"]),
            n(&f["attempt"]),
            f["state"].as_str().unwrap_or("?"),
            fmt_ms(n(&f["elapsed_ms"]))
        );
    }
    let failures = v["failures"].as_array().cloned().unwrap_or_default();
    if !failures.is_empty() {
        out += &format!("failures {}\n", failures.len());
        for f in &failures {
            out += &format!(
                "  {} c{}: {}\n",
                f["task"].as_str().unwrap_or("?"),
                n(&f["candidate"]),
                f["why"].as_str().unwrap_or("?")
            );
        }
    }
    if let Some(s) = v.get("summary").filter(|s| !s.is_null()) {
        out += &format!("done: {}\n", summary_line(s));
    } else {
        out += &match v["eta_ms"].as_u64() {
            Some(ms) => format!("time left about {}\n", fmt_ms(ms)),
            None => "time left not known yet (no candidate has arrived)\n".to_string(),
        };
    }
    out
}

/// `5 built, 0 fresh, 0 failed, 0 skipped, 2 not run`.
fn states(t: &Value, not_run: u64) -> String {
    let mut s = format!(
        "{} built, {} fresh, {} failed, {} skipped",
        n(&t["built"]),
        n(&t["fresh"]),
        n(&t["failed"]),
        n(&t["skipped"])
    );
    if not_run > 0 {
        s += &format!(", {not_run} not run");
    }
    s
}

fn summary_line(s: &Value) -> String {
    let t = &s["tasks"];
    let ended = ["built", "fresh", "failed", "skipped"]
        .iter()
        .map(|k| n(&t[*k]))
        .sum::<u64>();
    format!(
        "{} tasks: {}; {} image + {} video call(s), {}, took {}",
        n(&t["total"]),
        states(t, n(&t["total"]).saturating_sub(ended)),
        n(&s["calls"]["image"]),
        n(&s["calls"]["video"]),
        match unit_of(&s["unit"]) {
            u @ crate::models::Unit::Usd => u.format(s["usd"].as_f64().unwrap_or(0.0)),
            u => u.format(s["credits"].as_f64().unwrap_or(0.0)),
        },
        fmt_ms(n(&s["duration_ms"]))
    )
}

fn last_text(r: Option<&Value>) -> String {
    let Some(r) = r else {
        return "no build is running, and this store has no run recorded yet\n".into();
    };
    let ago = crate::exec::runner::now_ms().saturating_sub(n(&r["at"]));
    format!(
        "no build is running; the last run ended {} ago\n  {}\n",
        fmt_ms(ago),
        summary_line(&r["summary"])
    )
}

/// The unit a summary or live view names (older ones: credits).
fn unit_of(v: &serde_json::Value) -> crate::models::Unit {
    match v.as_str() {
        Some("usd") => crate::models::Unit::Usd,
        _ => crate::models::Unit::Credits,
    }
}
