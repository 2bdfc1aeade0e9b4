//! Build settings: flags, environment and nbbuild.toml merged once
//! (flag > env > file > default) into ready-to-use values.

use crate::cli::{BuildArgs, Mode};
use crate::compile::Compiled;
use crate::config::FileConfig;
use crate::error::{Error, Result};
use crate::models::{Catalog, Provider};
use crate::plan::Prices;
use crate::project::Project;
use nbbuild_cache::Store;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Which visual-QA reviewer a build uses.
#[derive(Clone)]
pub enum QaSetting {
    /// No QA; `unconfigured` says it once because nothing was configured
    /// (rather than `--qa off`).
    Off {
        unconfigured: bool,
    },
    /// The built-in simulator's reviewer (`--sim`).
    Sim,
    Vision(crate::qa::VisionConfig),
    Command(String),
}

impl QaSetting {
    /// The reviewer itself (none for Off; the simulator's needs its URL).
    pub fn reviewer(
        &self,
        sim_url: Option<&str>,
    ) -> Option<std::sync::Arc<dyn crate::qa::Reviewer>> {
        use crate::qa;
        match self {
            QaSetting::Off { .. } => None,
            QaSetting::Sim => sim_url.map(|u| {
                let inner = qa::vision(qa::VisionConfig::new(format!("{u}/v1"), "sim-reviewer"));
                std::sync::Arc::new(qa::Named {
                    inner,
                    id: qa::SIM_REVIEWER_ID.into(),
                }) as std::sync::Arc<dyn qa::Reviewer>
            }),
            QaSetting::Vision(cfg) => Some(std::sync::Arc::from(qa::vision(cfg.clone()))),
            QaSetting::Command(cmd) => Some(std::sync::Arc::from(qa::command(
                cmd.clone(),
                std::time::Duration::from_secs(120),
            ))),
        }
    }
    /// The reviewer's identity, known before any server starts.
    pub fn id(&self) -> Option<String> {
        match self {
            QaSetting::Sim => Some(crate::qa::SIM_REVIEWER_ID.into()),
            QaSetting::Off { .. } => None,
            other => other.reviewer(None).map(|r| r.id()),
        }
    }
}

pub struct Settings {
    pub project: Project,
    /// Who generates (`--provider`, NBBUILD_PROVIDER, `provider`, glabs).
    pub provider: Provider,
    /// Model ids per provider, `[models]` applied.
    pub catalog: Catalog,
    /// The provider's base URL: `--server`, else G-Labs' GLABS_SERVER /
    /// `server`, else Google's public endpoint (google only).
    pub server: Option<String>,
    /// The provider's key: `--api-key`, else GLABS_API_KEY (glabs) or
    /// GEMINI_API_KEY (google). Never printed, logged or stored.
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
    pub qa: QaSetting,
    pub qa_attempts: u32,
    pub mirror: crate::mirror::MirrorSpec,
    pub r2: crate::mirror::R2Settings,
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
    pub no_progress: bool,
    /// Do not fetch reference URLs nbbuild has never seen.
    pub offline: bool,
    /// Stop before any call when a reference cannot be had.
    pub fail_fast: bool,
    /// Backpressure without progress gives up after this long.
    pub max_wait: std::time::Duration,
    /// The team cache (`--remote`), when one is configured; Err: its
    /// settings are wrong (only the commands that use it refuse to run).
    pub remote: std::result::Result<Option<crate::remote::RemoteConfig>, String>,
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
                    "--budget {b} is not an amount (credits on glabs, US dollars on google)"
                )));
            }
        }
        let qa_file = file.qa.clone().unwrap_or_default();
        let qa_attempts = a.qa_attempts.or(qa_file.attempts).unwrap_or(3);
        if qa_attempts > 10 {
            return Err(
                Error::usage(format!("--qa-attempts {qa_attempts} is out of range"))
                    .hint("use 0 to 10 re-rolls per flagged candidate"),
            );
        }
        let qa = resolve_qa(a, &qa_file)?;
        let m = file.mirror.clone().unwrap_or_default();
        let r2 = crate::mirror::R2Settings {
            endpoint: m.endpoint.clone(),
            account_id: m.account_id.clone(),
            bucket: m.bucket.clone(),
            public_url: m.public_url.clone(),
        };
        // --mirror > [mirror] kind > r2 when configured > none.
        let mirror = match a.mirror.clone().or(m.kind.clone()) {
            Some(spec) => crate::mirror::MirrorSpec::parse(&spec).map_err(|e| {
                let mut err = Error::usage(format!("--mirror {spec}: {}", e.message));
                err.hint = e.hint;
                err
            })?,
            None if crate::mirror::r2_configured(&r2) => crate::mirror::MirrorSpec::R2,
            None => crate::mirror::MirrorSpec::None,
        };
        // A relative dir: mirror lives beside the flow.
        let mirror = match mirror {
            crate::mirror::MirrorSpec::Dir(p) if p.is_relative() && a.mirror.is_none() => {
                crate::mirror::MirrorSpec::Dir(project.dir.join(p))
            }
            other => other,
        };
        let provider = match (a.provider, file.provider.as_deref()) {
            (Some(p), _) => p.into(),
            (None, None) => Provider::Glabs,
            (None, Some(p)) => Provider::parse(p).ok_or_else(|| {
                Error::invalid(format!(
                    "nbbuild.toml: provider {p:?} is not glabs or google"
                ))
            })?,
        };
        let catalog = Catalog::with_overrides(&file.models).map_err(|e| {
            Error::invalid(format!("nbbuild.toml: {e}"))
                .hint("[models] maps a model name to its Google id, or to { google = \"...\", glabs = \"...\" } (docs/providers.md)")
        })?;
        let mut prices = Prices::for_provider(provider);
        prices.table.extend(match provider {
            Provider::Glabs => file.prices.clone(),
            Provider::Google => file.prices_usd.clone(),
        });
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        // Each provider's own variables only: a G-Labs key is never sent to
        // Google, nor a Gemini key to a G-Labs tunnel.
        let server = a
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .or(match provider {
                Provider::Glabs => {
                    env("GLABS_SERVER").or(file.server.clone().filter(|s| !s.is_empty()))
                }
                Provider::Google => Some(crate::google::DEFAULT_BASE.to_string()),
            });
        let api_key = a
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .or(match provider {
                Provider::Glabs => env("GLABS_API_KEY"),
                Provider::Google => env("GEMINI_API_KEY"),
            });
        let remote = crate::remote::RemoteConfig::resolve(
            a.remote.as_deref(),
            a.remote_mode.as_deref(),
            &file.remote.clone().unwrap_or_default(),
            &r2,
            &|k| std::env::var(k).ok(),
        )
        .map(|c| {
            c.map(|mut c| {
                c.verbose = a.verbose > 0;
                c
            })
        });
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
            provider,
            catalog,
            server,
            api_key,
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
            qa,
            qa_attempts,
            mirror,
            r2,
            json: a.json,
            quiet: a.quiet,
            verbose: a.verbose > 0,
            no_progress: a.no_progress,
            offline: a.offline,
            fail_fast: a.fail_fast,
            max_wait: std::time::Duration::from_secs(a.max_wait.unwrap_or(600)),
            remote,
            project,
        })
    }

    pub fn compile(&self) -> Result<Compiled> {
        self.compile_saying().map(|(c, _)| c)
    }

    /// [`Settings::compile`], and the findings it printed (or would have,
    /// but for `-q`).
    pub fn compile_saying(&self) -> Result<(Compiled, String)> {
        crate::commands::findings::compile_saying(
            &self.project,
            self.candidates,
            self.ref_image.as_deref(),
            self.quiet,
        )
    }

    /// Resolve `--only` against the compiled tasks.
    pub fn with_only(mut self, c: &Compiled) -> Result<Settings> {
        if !self.only_selectors.is_empty() {
            let chosen = crate::selector::resolve(c, &self.only_selectors, "--only")?;
            // A selector that matches several nodes says which.
            for sel in &self.only_selectors {
                let mut nodes: Vec<String> = crate::selector::matches(c, sel)
                    .iter()
                    .map(|&i| &c.tasks[i])
                    .map(|t| {
                        format!(
                            "{} {} ({} #{})",
                            t.kind.as_str(),
                            t.name,
                            t.tab_name,
                            t.node_id
                        )
                    })
                    .collect();
                nodes.dedup();
                if nodes.len() > 1 && !self.quiet {
                    eprintln!(
                        "--only {sel} selects {} nodes: {}",
                        nodes.len(),
                        nodes.join(", ")
                    );
                }
            }
            self.only = Some(chosen);
        }
        Ok(self)
    }

    /// The store, for writing: refused while another process holds it.
    /// Records of an older key format are migrated once.
    pub fn open_store(&self) -> Result<Store> {
        // A reader (the review page, `plan`, `cache ls` in another
        // terminal) holds the store for a moment only; a build holds it for
        // its run and answers reads on its socket. Wait out a reader, for a
        // while; refuse a build at once.
        let started = std::time::Instant::now();
        let mut said = false;
        let opened = loop {
            match Store::open(&self.cache_dir) {
                Err(nbbuild_cache::StoreError::Locked { pid, .. })
                    if pid != 0
                        && pid != std::process::id()
                        && started.elapsed() < std::time::Duration::from_secs(10)
                        && crate::holder::client::HolderClient::connect(&self.cache_dir)
                            .is_err() =>
                {
                    if !said {
                        said = true;
                        eprintln!(
                            "note: waiting for process {pid} to finish reading the store (up to 10 s)"
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other,
            }
        };
        let store = opened.map_err(|e| {
            let other = matches!(e, nbbuild_cache::StoreError::Locked { pid, .. }
                if pid != 0 && pid != std::process::id());
            let mut err = Error::store(&self.cache_dir, e);
            if let (true, Some(h)) = (other, &err.hint) {
                err.hint = Some(format!("{h}; `nbbuild status` shows what it is doing"));
            }
            err
        })?;
        crate::migrate::run(&store).map_err(|e| {
            Error::env(format!(
                "cannot migrate the store in {} to key format {}",
                self.cache_dir.display(),
                crate::key::KEY_VERSION
            ))
            .cause(e.to_string())
        })?;
        Ok(store)
    }

    /// The team cache's settings, for the commands that use it.
    pub fn remote(&self) -> Result<Option<crate::remote::RemoteConfig>> {
        self.remote.clone().map_err(|e| {
            Error::usage(format!("--remote: {e}"))
                .hint("see docs/remote.md: --remote s3://BUCKET[/PREFIX] with R2_ENDPOINT (or R2_ACCOUNT_ID) and R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY")
        })
    }

    /// The store, for reading: itself, or through the build holding it.
    pub fn open_reader(&self) -> Result<crate::holder::Reader> {
        crate::holder::open_read(&self.cache_dir)
    }
}

fn resolve_qa(a: &BuildArgs, file: &crate::config::QaSection) -> Result<QaSetting> {
    use crate::cli::QaMode;
    let mode = match (a.qa, file.mode.as_deref()) {
        (Some(m), _) => Some(m),
        (None, Some("off")) => Some(QaMode::Off),
        (None, Some("vision")) => Some(QaMode::Vision),
        (None, Some("command")) => Some(QaMode::Command),
        (None, None) => None,
        (None, Some(other)) => {
            return Err(Error::invalid(format!(
                "nbbuild.toml: [qa] mode {other:?} is not off, vision or command"
            )))
        }
    };
    let command = a.qa_command.clone().or(file.command.clone());
    let vision = || {
        let mut cfg = crate::qa::vision_from_env().or_else(|| {
            file.url
                .clone()
                .map(|u| crate::qa::VisionConfig::new(u, ""))
        })?;
        if cfg.model.is_empty() {
            cfg.model = file.model.clone().unwrap_or_default();
        }
        Some(cfg)
    };
    Ok(match mode {
        Some(QaMode::Off) => QaSetting::Off {
            unconfigured: false,
        },
        Some(QaMode::Command) => {
            match command {
                Some(c) => QaSetting::Command(c),
                None => return Err(Error::usage("--qa command needs --qa-command CMD").hint(
                    "CMD gets the image path and prints {\"verdict\": \"clean\"|\"flagged\", ...}",
                )),
            }
        }
        Some(QaMode::Vision) => match vision() {
            Some(cfg) if !cfg.model.is_empty() => QaSetting::Vision(cfg),
            Some(_) => {
                return Err(Error::usage("--qa vision needs a model")
                    .hint("set NBBUILD_QA_MODEL (or [qa] model in nbbuild.toml)"))
            }
            None => return Err(Error::usage("--qa vision needs an endpoint").hint(
                "set NBBUILD_QA_URL, e.g. http://127.0.0.1:11434/v1 for Ollama (see docs/qa.md)",
            )),
        },
        None if a.sim => QaSetting::Sim,
        None => match (command, vision()) {
            (Some(c), _) => QaSetting::Command(c),
            (None, Some(cfg)) if !cfg.model.is_empty() => QaSetting::Vision(cfg),
            _ => QaSetting::Off { unconfigured: true },
        },
    })
}
