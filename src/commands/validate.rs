//! `nbbuild validate`: every finding, with tab, node and JSON path.

use crate::cli::ValidateArgs;
use crate::error::{Error, Result};
use crate::flow::{Finding, Flow, Severity};
use crate::project::{flow_path, read_text, Project};
use serde_json::json;

pub fn run(args: &ValidateArgs) -> Result<i32> {
    let path = flow_path(args.flow.as_deref())?;
    let text = read_text(&path)?;
    let candidates = args.candidates.unwrap_or(crate::DEFAULT_CANDIDATES);
    let (findings, tasks) = match Flow::parse(&text) {
        Ok(flow) => {
            let dir = path
                .parent()
                .map(|p| p.to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| ".".into());
            let project = Project {
                flow_path: path.clone(),
                dir,
                flow,
                source_hash: blake3::hash(text.as_bytes()).to_hex().to_string(),
            };
            let (findings, compiled) = project.check(candidates, args.ref_image.as_deref());
            (findings, compiled.map(|c| c.tasks))
        }
        Err(e) => {
            let code = if e.path == "format" {
                "not-nbflow"
            } else if e.path.is_empty() {
                "malformed-json"
            } else {
                "structure"
            };
            let mut f = Finding::error(code, e.path.clone(), e.message.clone());
            f.hint = e.hint.clone();
            (vec![f], None)
        }
    };
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    if args.json {
        let (images, videos) = count(tasks.as_deref());
        let out = json!({
            "flow": path.display().to_string(),
            "ok": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "tasks": tasks.as_ref().map(|t| json!({"total": t.len(), "image": images, "video": videos})),
            "findings": findings,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::internal(e.to_string()))?
        );
    } else {
        for f in &findings {
            eprintln!("{f}\n");
        }
        match &tasks {
            Some(t) if errors == 0 => {
                let (images, videos) = count(Some(t));
                println!(
                    "{}: ok, {} task{} ({images} image, {videos} video){}",
                    path.display(),
                    t.len(),
                    if t.len() == 1 { "" } else { "s" },
                    if warnings > 0 {
                        format!(", {warnings} warning(s)")
                    } else {
                        String::new()
                    }
                );
            }
            _ => println!(
                "{}: {errors} error(s), {warnings} warning(s)",
                path.display()
            ),
        }
    }
    Ok(if errors > 0 { 2 } else { 0 })
}

fn count(tasks: Option<&[crate::compile::Task]>) -> (usize, usize) {
    let t = tasks.unwrap_or(&[]);
    let images = t
        .iter()
        .filter(|t| t.kind == crate::compile::TaskKind::Image)
        .count();
    (images, t.len() - images)
}
