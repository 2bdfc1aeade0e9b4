//! `nbbuild cache path`: where the store is.

use super::{print_json, store_dir};
use crate::cli::CacheArgs;
use crate::error::Result;

pub fn run(a: &CacheArgs) -> Result<i32> {
    let dir = store_dir(a)?;
    if a.json {
        print_json(&crate::schema::CachePath {
            schema: (),
            path: dir.display().to_string(),
        })?;
    } else {
        println!("{}", dir.display());
    }
    Ok(0)
}
