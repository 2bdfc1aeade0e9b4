//! Build settings: flags, environment and nbbuild.toml merged once
//! (flag > env > file > default) into ready-to-use values.

use crate::cli::{BuildArgs, Mode};
use crate::compile::Compiled;
use crate::config::FileConfig;
use crate::error::{Error, Result};
use crate::plan::Prices;
use crate::project::Project;
use nbbuild_cache::Store;
use std::collections::BTreeSet;
use std::path::PathBuf;

pub struct Settings {
    pub project: Project,
    pub server: Option<String>,
    pub api_key: Option<String>,
    pub sim: bool,
    pub ref_image: Option<String>,
    pub concurrency: u32,
    pub candidates: u32,
    pub images_only: bool,
    pub only_selectors: Vec<String>,
    pub only: Option<BTreeSet<usize>>,
    pub out: PathBuf,
    pub cache_dir: PathBuf,
    pub budget: Option<f64>,
    pub prices: Prices,
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
    pub no_progress: bool,
}

impl Settings {
    pub fn resolve(a: &BuildArgs) -> Result<Settings> {
        let project = Project::load(a.flow.as_deref())?;
        let file = FileConfig::load(&project.dir)?;
        let concurrency = a.concurrency.or(file.concurrency).unwrap_or(3);
        if !(1..=5).contains(&concurrency) {
            return Err(
                Error::usage(format!("--concurrency {concurrency} is out of range"))
                    .hint("G-Labs runs about five generations at a time per account: use 1 to 5"),
            );
        }
        let candidates = a
            .candidates
            .or(file.candidates)
            .unwrap_or(crate::DEFAULT_CANDIDATES);
        if !(1..=10).contains(&candidates) {
            return Err(
                Error::usage(format!("--candidates {candidates} is out of range"))
                    .hint("use 1 to 10"),
            );
        }
        let images_only = match (a.mode, file.mode.as_deref()) {
            (Some(m), _) => m == Mode::Images,
            (None, Some("images")) => true,
            (None, Some("all") | None) => false,
            (None, Some(other)) => {
                return Err(Error::invalid(format!(
                    "nbbuild.toml: mode {other:?} is not images or all"
                )))
            }
        };
        if let Some(b) = a.budget.or(file.budget) {
            if !(b >= 0.0 && b.is_finite()) {
                return Err(Error::usage(format!(
                    "--budget {b} is not a number of credits"
                )));
            }
        }
        let mut prices = Prices::default();
        prices.table.extend(file.prices.clone());
        let out = a
            .out
            .clone()
            .or(file.out.clone().map(|o| project.dir.join(o)))
            .unwrap_or_else(|| project.dir.clone());
        let cache_dir = a
            .cache_dir
            .clone()
            .or(file.cache_dir.clone().map(|c| project.dir.join(c)))
            .unwrap_or_else(|| project.dir.join(".nbbuild"));
        Ok(Settings {
            server: a
                .server
                .clone()
                .or(file.server.clone())
                .filter(|s| !s.is_empty()),
            api_key: a.api_key.clone().filter(|k| !k.is_empty()),
            sim: a.sim,
            ref_image: a.ref_image.clone().or(file.ref_image.clone()),
            concurrency,
            candidates,
            images_only,
            only_selectors: a.only.clone(),
            only: None,
            out,
            cache_dir,
            budget: a.budget.or(file.budget),
            prices,
            json: a.json,
            quiet: a.quiet,
            verbose: a.verbose > 0,
            no_progress: a.no_progress,
            project,
        })
    }

    pub fn compile(&self) -> Result<Compiled> {
        self.project
            .compile_or_fail(self.candidates, self.ref_image.as_deref(), self.quiet)
    }

    /// Resolve `--only` against the compiled tasks.
    pub fn with_only(mut self, c: &Compiled) -> Result<Settings> {
        if !self.only_selectors.is_empty() {
            self.only = Some(crate::select::resolve(c, &self.only_selectors)?);
        }
        Ok(self)
    }

    pub fn open_store(&self) -> Result<Store> {
        Store::open(&self.cache_dir).map_err(|e| {
            let mut err = Error::env(format!(
                "cannot open the store in {}",
                self.cache_dir.display()
            ))
            .cause(e.to_string());
            err.hint = e.hint();
            err
        })
    }
}
