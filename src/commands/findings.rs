//! Printing a flow's findings (validate's and compile's), and turning its
//! errors into one program error for the commands that cannot go on.

use crate::compile::Compiled;
use crate::error::{Error, Result};
use crate::flow::Finding;
use crate::project::Project;

/// `check`, turning errors into one program error that lists them.
pub fn compile_or_fail(
    project: &Project,
    candidates: u32,
    ref_image: Option<&str>,
    quiet: bool,
) -> Result<Compiled> {
    compile_saying(project, candidates, ref_image, quiet).map(|(c, _)| c)
}

/// [`compile_or_fail`], and the findings it printed (or would have, but
/// for `quiet`): the up-to-date stamp says them again.
pub fn compile_saying(
    project: &Project,
    candidates: u32,
    ref_image: Option<&str>,
    quiet: bool,
) -> Result<(Compiled, String)> {
    let (findings, compiled) = project.check(candidates, ref_image);
    let errors = findings.iter().filter(|f| f.is_error()).count();
    let text = grouped(&findings);
    if !quiet || errors > 0 {
        eprint!("{text}");
    }
    match compiled {
        Some(c) if errors == 0 => Ok((c, text)),
        _ => Err(Error::invalid(format!(
            "{} has {} error{}: nothing was run",
            project.flow_path.display(),
            errors,
            if errors == 1 { "" } else { "s" }
        ))
        .hint("fix them in PatchWork (`nbbuild validate` lists them again)")),
    }
}

/// Print findings; a warning repeated on many nodes is shown once with a count.
pub fn print_grouped(findings: &[Finding]) {
    eprint!("{}", grouped(findings));
}

/// The findings as [`print_grouped`] shows them.
pub fn grouped(findings: &[Finding]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut seen: std::collections::BTreeMap<(&str, &str), usize> =
        std::collections::BTreeMap::new();
    for f in findings {
        if !f.is_error() {
            *seen.entry((f.code, f.message.as_str())).or_default() += 1;
        }
    }
    let mut shown = std::collections::BTreeSet::new();
    for f in findings {
        if f.is_error() {
            let _ = writeln!(out, "{f}");
            continue;
        }
        let k = (f.code, f.message.as_str());
        if !shown.insert(k) {
            continue;
        }
        let _ = writeln!(out, "{f}");
        let n = seen[&k];
        if n > 1 {
            let _ = writeln!(
                out,
                "  (and {} more node{} like it)",
                n - 1,
                if n == 2 { "" } else { "s" }
            );
        }
    }
    out
}
