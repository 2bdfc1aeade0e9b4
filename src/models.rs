//! The one catalog of models nbbuild generates with: each model's name (what
//! a task key holds), the id each provider's wire protocol calls it, and its
//! price on each provider.
//!
//! A model is named by what it is, never by the route that reaches it:
//! NanoBanana 2 is `nano_banana_2` in every key whether G-Labs or Google's
//! Gemini API makes it (docs/keys.md). The names are G-Labs' own (they were
//! the only route first), so the G-Labs wire id equals the name by default.
//!
//! Google retires model ids on weeks' notice, so every id here can be
//! overridden by `[models]` in nbbuild.toml without a new release:
//!
//! ```toml
//! [models]
//! nano_banana_2 = "gemini-3.1-flash-image"          # the Google id
//! veo_31_fast = { google = "veo-3.1-fast-generate-001", glabs = "veo_31_fast" }
//! ```

use crate::compile::TaskKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The image model the runner enforces on every image node.
pub const IMAGE_MODEL: &str = "nano_banana_2";

/// Which service generates: the G-Labs app, or Google's Gemini API directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Glabs,
    Google,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Glabs => "glabs",
            Provider::Google => "google",
        }
    }
    pub fn parse(s: &str) -> Option<Provider> {
        match s.trim().to_ascii_lowercase().as_str() {
            "glabs" | "g-labs" => Some(Provider::Glabs),
            "google" | "gemini" => Some(Provider::Google),
            _ => None,
        }
    }
    /// What its prices are counted in.
    pub fn unit(self) -> Unit {
        match self {
            Provider::Glabs => Unit::Credits,
            Provider::Google => Unit::Usd,
        }
    }
    /// For messages: `G-Labs`, `Google's Gemini API`.
    pub fn title(self) -> &'static str {
        match self {
            Provider::Glabs => "G-Labs",
            Provider::Google => "Google's Gemini API",
        }
    }
}

/// What money is counted in. G-Labs bills credits of its users' plans;
/// Google bills US dollars. The two are never added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    #[default]
    Credits,
    Usd,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Credits => "credits",
            Unit::Usd => "usd",
        }
    }
    /// An amount as people read it: `12 credits`, `$0.27`.
    pub fn format(self, amount: f64) -> String {
        match self {
            Unit::Credits => format!("{} credits", fmt_credits(amount)),
            Unit::Usd => format!("${amount:.2}"),
        }
    }
}

/// `12`, `0.5`: credits as the plan prints them.
pub fn fmt_credits(c: f64) -> String {
    if (c - c.round()).abs() < 1e-9 {
        format!("{c:.0}")
    } else {
        format!("{c:.1}")
    }
}

/// One model as built in.
pub struct Builtin {
    /// The name in task keys (and the G-Labs wire id).
    pub name: &'static str,
    pub kind: TaskKind,
    /// For people: `NanoBanana 2`.
    pub title: &'static str,
    /// Google's id; None where Google has no such model.
    pub google: Option<&'static str>,
    /// G-Labs credits per call.
    pub credits: f64,
    /// Google's price in US dollars, by `imageSize` for stills (per image)
    /// and by resolution for clips (per second of clip).
    pub usd: &'static [(&'static str, f64)],
}

/// The built-in table. Google prices: the Gemini API pricing page as quoted
/// in Sept 2026 (/work/shared/notes/gemini-api.md, section 4). G-Labs
/// credits: the app's own per-call figures.
pub const BUILTIN: &[Builtin] = &[
    Builtin {
        name: "nano_banana_2",
        kind: TaskKind::Image,
        title: "NanoBanana 2",
        google: Some("gemini-3.1-flash-image"),
        credits: 1.0,
        usd: &[("512", 0.045), ("1K", 0.067), ("2K", 0.101), ("4K", 0.151)],
    },
    Builtin {
        name: "nano_banana_pro",
        kind: TaskKind::Image,
        title: "NanoBanana Pro",
        google: Some("gemini-3-pro-image"),
        credits: 2.0,
        usd: &[("1K", 0.134), ("2K", 0.134), ("4K", 0.24)],
    },
    Builtin {
        name: "nano_banana_2_lite",
        kind: TaskKind::Image,
        title: "NanoBanana 2 Lite",
        google: None,
        credits: 0.5,
        usd: &[],
    },
    Builtin {
        name: "veo_31_fast",
        kind: TaskKind::Video,
        title: "Veo 3.1 Fast",
        google: Some("veo-3.1-fast-generate-preview"),
        credits: 10.0,
        usd: &[("720p", 0.10), ("1080p", 0.12), ("4k", 0.30)],
    },
    Builtin {
        name: "veo_31_lite",
        kind: TaskKind::Video,
        title: "Veo 3.1 Lite",
        google: Some("veo-3.1-lite-generate-preview"),
        credits: 5.0,
        usd: &[("720p", 0.05), ("1080p", 0.08)],
    },
    Builtin {
        name: "veo_31_quality",
        kind: TaskKind::Video,
        title: "Veo 3.1",
        google: Some("veo-3.1-generate-preview"),
        credits: 40.0,
        usd: &[("720p", 0.40), ("1080p", 0.40), ("4k", 0.60)],
    },
    Builtin {
        // G-Labs' low-priority queue for Veo 3.1 Lite: no credits. Google
        // has no relaxed queue: the same Lite model at its price.
        name: "veo_31_lite_relaxed",
        kind: TaskKind::Video,
        title: "Veo 3.1 Lite (relaxed)",
        google: Some("veo-3.1-lite-generate-preview"),
        credits: 0.0,
        usd: &[("720p", 0.05), ("1080p", 0.08)],
    },
];

/// The video model a Veo node asks for, from `veoModel` (PatchWork 0.8.x)
/// or its `model` string (older files name Google's ids there).
pub fn video_model(veo_model: Option<&str>, model: Option<&str>) -> String {
    match veo_model {
        Some("fast") => return "veo_31_fast".into(),
        Some("relax" | "relaxed") => return "veo_31_lite_relaxed".into(),
        Some("lite") => return "veo_31_lite".into(),
        Some("quality") => return "veo_31_quality".into(),
        _ => {}
    }
    let m = model.unwrap_or("").to_ascii_lowercase();
    if m.starts_with("veo_31_") {
        m
    } else if m.contains("relax") {
        "veo_31_lite_relaxed".into()
    } else if m.contains("lite") {
        "veo_31_lite".into()
    } else if m.contains("quality") || (m.contains("veo") && !m.contains("fast")) {
        "veo_31_quality".into()
    } else {
        "veo_31_fast".into()
    }
}

/// One `[models]` entry: a Google id, or the ids per provider.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ModelOverride {
    Google(String),
    Ids {
        #[serde(default)]
        google: Option<String>,
        #[serde(default)]
        glabs: Option<String>,
    },
}

/// A model's wire ids, after `[models]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub kind: TaskKind,
    pub glabs: String,
    pub google: Option<String>,
}

/// The catalog in use: the built-in table with `[models]` applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Catalog {
    pub models: BTreeMap<String, Entry>,
}

impl Default for Catalog {
    fn default() -> Self {
        let models = BUILTIN
            .iter()
            .map(|b| {
                (
                    b.name.to_string(),
                    Entry {
                        kind: b.kind,
                        glabs: b.name.to_string(),
                        google: b.google.map(str::to_string),
                    },
                )
            })
            .collect();
        Catalog { models }
    }
}

impl Catalog {
    /// The built-in table with `[models]` applied. Err: an entry names no
    /// known model (a typo would silently keep the old id), or an empty id.
    pub fn with_overrides(over: &BTreeMap<String, ModelOverride>) -> Result<Catalog, String> {
        let mut c = Catalog::default();
        for (name, o) in over {
            let Some(e) = c.models.get_mut(name) else {
                let known: Vec<&str> = BUILTIN.iter().map(|b| b.name).collect();
                return Err(format!(
                    "[models] {name}: no such model (known: {})",
                    known.join(", ")
                ));
            };
            let (google, glabs) = match o {
                ModelOverride::Google(g) => (Some(g.clone()), None),
                ModelOverride::Ids { google, glabs } => (google.clone(), glabs.clone()),
            };
            for id in google.iter().chain(glabs.iter()) {
                if id.trim().is_empty() || id.contains(['/', ' ', '?', '#']) {
                    return Err(format!("[models] {name}: {id:?} is not a model id"));
                }
            }
            if let Some(g) = google {
                e.google = Some(g);
            }
            if let Some(g) = glabs {
                e.glabs = g;
            }
        }
        Ok(c)
    }

    /// The id `provider` calls model `name`; None when it has none. A name
    /// the catalog does not know is sent as it is.
    pub fn wire_id(&self, provider: Provider, name: &str) -> Option<String> {
        match (self.models.get(name), provider) {
            (Some(e), Provider::Glabs) => Some(e.glabs.clone()),
            (Some(e), Provider::Google) => e.google.clone(),
            (None, _) => Some(name.to_string()),
        }
    }
}

/// The built-in default prices of `provider`, as `Prices` tables hold them:
/// credits per call by model name (G-Labs); US dollars by `name@size` per
/// still and `name@resolution` per second of clip (Google).
pub fn default_prices(provider: Provider) -> BTreeMap<String, f64> {
    let mut t = BTreeMap::new();
    for b in BUILTIN {
        match provider {
            Provider::Glabs => {
                t.insert(b.name.to_string(), b.credits);
            }
            Provider::Google => {
                for (res, usd) in b.usd {
                    t.insert(format!("{}@{res}", b.name), *usd);
                }
            }
        }
    }
    t
}

/// The `@` part of a Google price key: `imageSize` for stills (`1K`, `2K`,
/// `4K`, `512`), the resolution for clips (`720p`, `1080p`, `4k`).
pub fn price_tier(kind: TaskKind, resolution: &str) -> String {
    let r = resolution.trim();
    match kind {
        TaskKind::Image if r.eq_ignore_ascii_case("512") => "512".into(),
        TaskKind::Image => {
            let up = r.to_ascii_uppercase();
            if ["1K", "2K", "4K"].contains(&up.as_str()) {
                up
            } else {
                "1K".into()
            }
        }
        TaskKind::Video => r.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_has_a_glabs_name_and_a_credit_price() {
        let c = Catalog::default();
        let credits = default_prices(Provider::Glabs);
        for b in BUILTIN {
            assert_eq!(c.wire_id(Provider::Glabs, b.name).as_deref(), Some(b.name));
            assert!(credits.contains_key(b.name), "{}", b.name);
        }
        assert_eq!(credits["nano_banana_2"], 1.0);
        assert_eq!(credits["veo_31_quality"], 40.0);
    }

    #[test]
    fn google_ids_are_the_ga_image_ids_and_the_veo_31_ids() {
        let c = Catalog::default();
        let g = |n: &str| c.wire_id(Provider::Google, n);
        assert_eq!(
            g("nano_banana_2").as_deref(),
            Some("gemini-3.1-flash-image")
        );
        assert_eq!(g("nano_banana_pro").as_deref(), Some("gemini-3-pro-image"));
        for n in ["veo_31_fast", "veo_31_lite", "veo_31_quality"] {
            assert!(g(n).unwrap().starts_with("veo-3.1-"), "{n}");
        }
        // No Google equivalent.
        assert_eq!(g("nano_banana_2_lite"), None);
        // Every Google model has a dollar price.
        let usd = default_prices(Provider::Google);
        assert_eq!(usd["nano_banana_2@2K"], 0.101);
        assert_eq!(usd["veo_31_fast@720p"], 0.10);
        for b in BUILTIN.iter().filter(|b| b.google.is_some()) {
            assert!(
                usd.keys().any(|k| k.starts_with(&format!("{}@", b.name))),
                "{}",
                b.name
            );
        }
    }

    #[test]
    fn models_section_overrides_ids_and_refuses_unknown_names() {
        let over: BTreeMap<String, ModelOverride> = toml::from_str(
            r#"
            nano_banana_2 = "gemini-3.2-flash-image"
            veo_31_fast = { google = "veo-3.1-fast-generate-001" }
            nano_banana_pro = { glabs = "nano_banana_pro_v2" }
            "#,
        )
        .unwrap();
        let c = Catalog::with_overrides(&over).unwrap();
        assert_eq!(
            c.wire_id(Provider::Google, "nano_banana_2").as_deref(),
            Some("gemini-3.2-flash-image")
        );
        assert_eq!(
            c.wire_id(Provider::Google, "veo_31_fast").as_deref(),
            Some("veo-3.1-fast-generate-001")
        );
        assert_eq!(
            c.wire_id(Provider::Glabs, "nano_banana_pro").as_deref(),
            Some("nano_banana_pro_v2")
        );
        // Untouched entries keep the built-in ids.
        assert_eq!(
            c.wire_id(Provider::Glabs, "veo_31_fast").as_deref(),
            Some("veo_31_fast")
        );
        let bad: BTreeMap<String, ModelOverride> =
            toml::from_str(r#"nano_banana_3 = "x""#).unwrap();
        let err = Catalog::with_overrides(&bad).unwrap_err();
        assert!(
            err.contains("nano_banana_3") && err.contains("known"),
            "{err}"
        );
        let empty: BTreeMap<String, ModelOverride> =
            toml::from_str(r#"nano_banana_2 = """#).unwrap();
        assert!(Catalog::with_overrides(&empty).is_err());
    }

    #[test]
    fn veo_nodes_map_to_model_names() {
        assert_eq!(video_model(Some("fast"), None), "veo_31_fast");
        assert_eq!(video_model(Some("relax"), None), "veo_31_lite_relaxed");
        assert_eq!(
            video_model(None, Some("veo-3.1-generate-preview")),
            "veo_31_quality"
        );
        assert_eq!(
            video_model(None, Some("veo-3.1-fast-generate-preview")),
            "veo_31_fast"
        );
        assert_eq!(video_model(None, Some("veo_31_lite")), "veo_31_lite");
        assert_eq!(video_model(None, None), "veo_31_fast");
    }

    #[test]
    fn price_tiers_follow_the_node_resolution() {
        assert_eq!(price_tier(TaskKind::Image, "2k"), "2K");
        assert_eq!(price_tier(TaskKind::Image, ""), "1K");
        assert_eq!(price_tier(TaskKind::Video, "1080P"), "1080p");
    }

    #[test]
    fn units_never_read_alike() {
        assert_eq!(Unit::Credits.format(12.0), "12 credits");
        assert_eq!(Unit::Usd.format(0.268), "$0.27");
        assert_eq!(Provider::parse("Google"), Some(Provider::Google));
        assert_eq!(Provider::parse("openai"), None);
    }
}
