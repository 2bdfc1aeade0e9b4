//! `nbbuild.toml` beside the flow: the same settings as the build flags.
//! Precedence: flag > environment > file > default.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `glabs` or `google`.
    pub provider: Option<String>,
    /// G-Labs' base URL (Google's is fixed; `--server` overrides it).
    pub server: Option<String>,
    pub concurrency: Option<u32>,
    pub candidates: Option<u32>,
    pub mode: Option<String>,
    pub ref_image: Option<String>,
    pub out: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub budget: Option<f64>,
    pub mirror: Option<MirrorSection>,
    pub qa: Option<QaSection>,
    pub remote: Option<crate::remote::config::RemoteSection>,
    /// G-Labs credits per call, by model name.
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
    /// Google US dollars, by `name@size` per still and `name@resolution`
    /// per second of clip.
    #[serde(default)]
    pub prices_usd: BTreeMap<String, f64>,
    /// Model ids per provider (models.rs).
    #[serde(default)]
    pub models: BTreeMap<String, crate::models::ModelOverride>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct MirrorSection {
    /// `r2`, `dir:PATH` or `none`.
    pub kind: Option<String>,
    pub endpoint: Option<String>,
    pub account_id: Option<String>,
    pub bucket: Option<String>,
    pub public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct QaSection {
    pub mode: Option<String>,
    pub url: Option<String>,
    pub model: Option<String>,
    pub command: Option<String>,
    pub attempts: Option<u32>,
}

impl FileConfig {
    /// `nbbuild.toml` in `dir`, or defaults when there is none.
    pub fn load(dir: &Path) -> Result<FileConfig> {
        let path = dir.join("nbbuild.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), &e)),
        };
        if text.contains("api_key") || text.contains("secret") {
            return Err(Error::invalid(format!("{} holds a secret", path.display()))
                .hint("keep keys out of files: use GLABS_API_KEY / GEMINI_API_KEY / R2_SECRET_ACCESS_KEY in the environment"));
        }
        toml::from_str(&text).map_err(|e| {
            Error::invalid(format!("{} is not valid", path.display()))
                .cause(e.to_string().trim().to_string())
        })
    }
}
