//! Selectors (`--only`, `explain`, `picks`, the review page): a name (`scene07`, `b-roll-row2`), a glob
//! over names (`scene0*`), `TAB/ID` or `#ID`. Prompt, media and approve nodes
//! are not tasks and never match.

use crate::compile::Compiled;
use crate::error::{Error, Result};
use crate::names::glob_match;
use std::collections::BTreeSet;

/// Task indices matched by one selector.
pub fn matches(c: &Compiled, sel: &str) -> Vec<usize> {
    let sel = sel.trim();
    if let Some(id) = sel.strip_prefix('#').and_then(|s| s.parse::<i64>().ok()) {
        return c
            .tasks
            .iter()
            .filter(|t| t.node_id == id)
            .map(|t| t.index)
            .collect();
    }
    if let Some((tab, id)) = sel.rsplit_once('/') {
        if let Ok(id) = id.parse::<i64>() {
            return c
                .tasks
                .iter()
                .filter(|t| {
                    t.node_id == id
                        && (t.tab_name.eq_ignore_ascii_case(tab)
                            || tab.parse::<usize>().is_ok_and(|n| n == t.tab + 1))
                })
                .map(|t| t.index)
                .collect();
        }
    }
    let lower = sel.to_ascii_lowercase();
    c.tasks
        .iter()
        .filter(|t| glob_match(&lower, &t.name) || glob_match(&lower, &t.label()))
        .map(|t| t.index)
        .collect()
}

/// Resolve every selector; one that matches nothing is an error listing the
/// closest names. `what` names the selectors in that error (`--only`,
/// `selector`).
pub fn resolve(c: &Compiled, selectors: &[String], what: &str) -> Result<BTreeSet<usize>> {
    let mut out = BTreeSet::new();
    for sel in selectors {
        let m = matches(c, sel);
        if m.is_empty() {
            let mut names: Vec<String> = c.tasks.iter().map(|t| t.name.clone()).collect();
            names.sort();
            names.dedup();
            let mut scored: Vec<(usize, &String)> = names
                .iter()
                .map(|n| (strsim::levenshtein(&sel.to_ascii_lowercase(), n), n))
                .collect();
            scored.sort();
            let close: Vec<&str> = scored.iter().take(5).map(|(_, n)| n.as_str()).collect();
            return Err(Error::usage(format!("{what} {sel:?} matches no task"))
                .cause(format!("closest names: {}", close.join(", ")))
                .hint("select by name (scene07), glob (scene0*), TAB/ID or #ID; `nbbuild graph --format json` lists every task"));
        }
        out.extend(m);
    }
    Ok(out)
}
