//! `nbbuild cache ls`: every task record, with its status and age.

use super::{age, open_read, print_json, status, wanted};
use crate::cli::CacheArgs;
use crate::error::Result;
use crate::holder::Tasks;

pub fn run(a: &CacheArgs) -> Result<i32> {
    let store = open_read(a)?;
    let mut tasks = store.tasks(Tasks::All)?;
    tasks.sort_by(|x, y| x.1.name.cmp(&y.1.name).then(y.1.updated.cmp(&x.1.updated)));
    if a.json {
        let rows: Vec<_> = tasks
            .iter()
            .map(|(k, r)| crate::schema::CacheRow {
                key: k,
                name: &r.name,
                kind: r.preimage.get("kind"),
                status: status(r),
                candidates: r.candidates.len(),
                wanted: wanted(r),
                in_flight: r.in_flight.len(),
                history: r.history.len(),
                updated_ms: r.updated,
            })
            .collect();
        print_json(&crate::schema::CacheList {
            schema: (),
            tasks: rows,
        })?;
    } else {
        println!(
            "{:<28} {:<6} {:<24} {:>5}  KEY",
            "NAME", "KIND", "STATUS", "AGE"
        );
        for (k, r) in &tasks {
            let kind = r
                .preimage
                .get("kind")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            println!(
                "{:<28} {:<6} {:<24} {:>5}  {}",
                r.name,
                kind,
                status(r),
                age(r.updated),
                &k[..12.min(k.len())]
            );
        }
        println!("{} task record(s)", tasks.len());
    }
    Ok(0)
}
