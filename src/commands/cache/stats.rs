//! `nbbuild cache stats`: counts and sizes.

use super::{open_read, print_json};
use crate::cli::CacheArgs;
use crate::error::Result;

pub fn run(a: &CacheArgs) -> Result<i32> {
    let store = open_read(a)?;
    let s = store.stats()?;
    if a.json {
        print_json(&crate::schema::CacheStats {
            schema: (),
            path: store.root().display().to_string(),
            stats: &s,
        })?;
    } else {
        println!("store       {}", store.root().display());
        println!("tasks       {}", s.tasks);
        println!(
            "candidates  {} current, {} in {} history set(s)",
            s.candidates, s.history_candidates, s.history_sets
        );
        println!("in flight   {}", s.in_flight);
        println!(
            "objects     {} ({:.1} MB)",
            s.objects,
            s.object_bytes as f64 / 1e6
        );
        println!("verdicts    {}", s.verdicts);
        println!("uploads     {}", s.uploads);
        println!("runs        {}", s.runs);
        println!("database    {:.1} MB", s.db_bytes as f64 / 1e6);
    }
    Ok(0)
}
