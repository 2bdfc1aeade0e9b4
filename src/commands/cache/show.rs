//! `nbbuild cache show NAME|KEY`: a task's preimage, candidates (with
//! their route, verdicts and URLs), what is in flight, and its history.

use super::{age, open_read, print_json, status};
use crate::cli::CacheArgs;
use crate::error::{Error, Result};
use crate::holder::Tasks;

pub fn run(what: &str, args: &CacheArgs) -> Result<i32> {
    let store = open_read(args)?;
    let mut found = store.tasks(Tasks::Named(what))?;
    if found.is_empty() && what.len() >= 4 && what.chars().all(|c| c.is_ascii_hexdigit()) {
        found = store.tasks(Tasks::KeyPrefix(&what.to_ascii_lowercase()))?;
    }
    if found.is_empty() {
        let mut names: Vec<String> = store
            .tasks(Tasks::All)?
            .into_iter()
            .map(|(_, r)| r.name)
            .collect();
        names.sort();
        names.dedup();
        return Err(Error::usage(format!("the store holds no task {what:?}"))
            .cause(format!("names: {}", names.join(", ")))
            .hint("give a task name (scene07) or a key prefix from `nbbuild cache ls`"));
    }
    found.sort_by_key(|(_, r)| std::cmp::Reverse(r.updated));
    if args.json {
        let rows: Vec<_> = found
            .iter()
            .map(|(k, r)| crate::schema::CacheShown { key: k, record: r })
            .collect();
        print_json(&crate::schema::CacheShow {
            schema: (),
            tasks: rows,
        })?;
        return Ok(0);
    }
    for (k, r) in &found {
        println!("task {} ({})", r.name, status(r));
        println!("key  {k}");
        println!("updated {} ago", age(r.updated));
        println!("preimage:");
        for line in serde_json::to_string_pretty(&r.preimage)
            .unwrap_or_default()
            .lines()
        {
            println!("  {line}");
        }
        println!("candidates:");
        for c in &r.candidates {
            let qa =
                c.qa.as_ref()
                    .map(|v| format!("{} {}", v.verdict, v.tells.join("; ")))
                    .unwrap_or_else(|| "not reviewed".into());
            println!(
                "  c{} {} {} bytes {}  route: {}  qa: {}  url: {}",
                c.slot + 1,
                &c.object[..16],
                c.size,
                c.mime,
                // Stores from before the second route: all G-Labs.
                c.route.as_deref().unwrap_or("glabs"),
                qa.trim(),
                c.url.as_deref().unwrap_or("-")
            );
        }
        for f in &r.in_flight {
            println!(
                "  c{} in flight: remote task {} (attempt {}, {} ago)",
                f.slot + 1,
                f.remote_task,
                f.attempt,
                age(f.submitted)
            );
        }
        if !r.history.is_empty() {
            println!("history:");
            for h in &r.history {
                let objs: Vec<String> = h
                    .candidates
                    .iter()
                    .map(|c| format!("c{} {}", c.slot + 1, &c.object[..12]))
                    .collect();
                println!(
                    "  {} ago, {}: {}",
                    age(h.replaced),
                    h.reason,
                    objs.join(", ")
                );
            }
        }
        println!();
    }
    Ok(0)
}
