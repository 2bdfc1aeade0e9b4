//! `nbbuild cache gc`: drop objects no record references and history
//! beyond a bound (never a current candidate or a user pick).

use super::{open, print_json};
use crate::cli::CacheArgs;
use crate::error::Result;

pub fn run(keep_history: usize, dry_run: bool, args: &CacheArgs) -> Result<i32> {
    let store = open(args)?;
    let r = store.gc(keep_history, dry_run)?;
    if args.json {
        print_json(&crate::schema::CacheGc { schema: (), gc: &r })?;
    } else {
        let verb = if dry_run { "would free" } else { "freed" };
        println!(
            "{verb} {:.1} MB: {} object(s), {} history set(s), {} leftover file(s)",
            r.bytes_freed as f64 / 1e6,
            r.objects_removed,
            r.history_sets_removed,
            r.leftovers_removed
        );
    }
    Ok(0)
}
