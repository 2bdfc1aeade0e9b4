//! Finding and loading the flow a command works on.

use crate::compile::{compile, CompileOptions, Compiled};
use crate::error::{Error, Result};
use crate::flow::validate::{validate, ValidateOptions};
use crate::flow::{Finding, Flow};
use std::path::{Path, PathBuf};

/// The flow a command works on, read and parsed.
pub struct Project {
    pub flow_path: PathBuf,
    /// The flow's folder: relative reference paths, nbbuild.toml, default outputs.
    pub dir: PathBuf,
    pub flow: Flow,
    /// blake3 of the flow file's bytes as they were read and parsed (what
    /// the no-op skip fingerprints: never a later state of the file).
    pub source_hash: String,
}

/// The single non-generated `*.nbflow` in `dir` (make finds its Makefile the same way).
pub fn discover(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot list {}", dir.display()), &e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "nbflow")
                && p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains("-generated-"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(
            Error::usage(format!("no .nbflow file in {}", shown_dir(dir)))
                .hint("pass the flow's path, e.g. `nbbuild validate path/to/workflow.nbflow`"),
        ),
        _ => {
            let list: Vec<String> = found.iter().map(|p| format!("  {}", p.display())).collect();
            Err(Error::usage(format!(
                "several .nbflow files in {}; which one?\n{}",
                shown_dir(dir),
                list.join("\n")
            ))
            .hint("pass the flow's path as an argument"))
        }
    }
}

fn shown_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() || dir == Path::new(".") {
        "the current folder".into()
    } else {
        dir.display().to_string()
    }
}

/// The flow's path: the one given, or the one discovered in the current folder.
pub fn flow_path(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => discover(Path::new(".")),
    }
}

/// Read the file (no parsing).
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| {
        let err = Error::io(format!("cannot read {}", path.display()), &e);
        if e.kind() == std::io::ErrorKind::NotFound {
            err.hint("check the path; without an argument nbbuild looks for the single .nbflow in the current folder")
        } else {
            err
        }
    })?;
    String::from_utf8(bytes).map_err(|e| {
        Error::invalid(format!("{} is not UTF-8 text", path.display()))
            .cause(e.to_string())
            .hint("an .nbflow file is JSON text; re-export it from PatchWork")
    })
}

impl Project {
    pub fn load(given: Option<&Path>) -> Result<Project> {
        let flow_path = flow_path(given)?;
        let text = read_text(&flow_path)?;
        let flow = Flow::parse(&text).map_err(|e| {
            let mut err = Error::invalid(format!("cannot read {} as a flow", flow_path.display()))
                .cause(e.to_string());
            err.hint = e.hint;
            err
        })?;
        let dir = flow_path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Project {
            flow_path,
            dir,
            flow,
            source_hash: blake3::hash(text.as_bytes()).to_hex().to_string(),
        })
    }

    /// A path as written in the flow, resolved against the flow's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        let path = match p.strip_prefix("file://") {
            Some(rest) => Path::new(rest),
            None => path,
        };
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// Validate and compile: every finding, and the task graph when there is no error.
    pub fn check(
        &self,
        candidates: u32,
        ref_image: Option<&str>,
    ) -> (Vec<Finding>, Option<Compiled>) {
        let mut findings = validate(&self.flow, &ValidateOptions { candidates });
        if findings.iter().any(Finding::is_error) {
            return (findings, None);
        }
        let exists = |p: &str| self.resolve(p).is_file();
        let opts = CompileOptions {
            candidates,
            ref_image,
            file_exists: &exists,
        };
        match compile(&self.flow, &opts) {
            Ok(c) => {
                findings.extend(c.warnings.iter().cloned());
                (findings, Some(c))
            }
            Err(errs) => {
                findings.extend(errs);
                (findings, None)
            }
        }
    }
}
