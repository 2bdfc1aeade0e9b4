//! Human names for generation nodes: used in selectors, file names and
//! progress lines.
//!
//! A title's scene token wins (`Scene 7`, `scene07`, `SCENE 07` -> `scene07`);
//! otherwise a slug of the title without a leading `Label:` (so
//! `Generate: B-roll product` -> `b-roll-product`). Names never contain a
//! path separator or `..`, so they are safe inside output folders.

/// The scene token of a title, if it has one.
pub fn scene_token(title: &str) -> Option<String> {
    let lower = title.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("scene") {
        let start = from + pos;
        // A word boundary before "scene" ("obscene 4" is not a scene).
        let boundary = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        let mut i = start + 5;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'_' | b'-' | b'#' | b'.') {
            i += 1;
        }
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if boundary && i > digits_start {
            let digits = lower[digits_start..i].trim_start_matches('0');
            let n: u64 = digits.parse().unwrap_or(0);
            if digits.len() <= 6 {
                return Some(format!("scene{n:02}"));
            }
        }
        from = start + 5;
    }
    None
}

/// Lowercase ASCII slug: letters and digits, runs of anything else become one `-`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(60);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The base name of a generation node (before de-duplication).
pub fn base_name(title: &str, fallback: &str) -> String {
    if let Some(s) = scene_token(title) {
        return s;
    }
    let label_stripped = match title.split_once(':') {
        Some((_, rest)) if !slug(rest).is_empty() => rest,
        _ => title,
    };
    let s = slug(label_stripped);
    if s.is_empty() {
        fallback.to_string()
    } else {
        s
    }
}

/// Allocates unique names within one namespace (one per task kind).
#[derive(Default)]
pub struct NameSet {
    used: std::collections::BTreeMap<String, usize>,
}

impl NameSet {
    pub fn unique(&mut self, base: &str) -> String {
        let mut n = *self.used.get(base).unwrap_or(&0);
        loop {
            n += 1;
            let candidate = if n == 1 {
                base.to_string()
            } else {
                format!("{base}-{n}")
            };
            // "scene07-2" may itself be some other node's base name.
            if n == 1 || !self.used.contains_key(&candidate) {
                self.used.insert(base.to_string(), n);
                if n > 1 {
                    self.used.insert(candidate.clone(), 1);
                }
                return candidate;
            }
        }
    }
}

/// A string made safe as one path component or object-key segment: ASCII
/// letters, digits, `-`, `_`, `.` kept, anything else turned into `-`, no
/// dot or dash at either end (so never `.` or `..`), at most 80 characters.
/// May be empty; callers pick their fallback.
pub fn safe_component(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut out = mapped.trim_matches(|c| c == '.' || c == '-').to_string();
    out.truncate(80);
    out.trim_end_matches(['.', '-']).to_string()
}

/// Filename-style glob: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_tokens() {
        for t in [
            "Scene 7",
            "scene07",
            "SCENE 07",
            "Generate: Scene 7 kitchen",
            "scene_7",
            "Veo - scene-007 reveal",
        ] {
            assert_eq!(scene_token(t).as_deref(), Some("scene07"), "{t}");
        }
        assert_eq!(scene_token("Scene 12").as_deref(), Some("scene12"));
        assert_eq!(scene_token("obscene 4"), None);
        assert_eq!(scene_token("Scenery"), None);
        assert_eq!(scene_token("B-roll"), None);
    }

    #[test]
    fn slugs_and_base_names() {
        assert_eq!(
            base_name("Generate: B-roll product", "image-3"),
            "b-roll-product"
        );
        assert_eq!(base_name("../../etc/passwd", "x"), "etc-passwd");
        assert_eq!(base_name("", "image-3"), "image-3");
        assert_eq!(base_name("Hero: ", "image-4"), "hero");
        assert_eq!(base_name("日本語", "image-5"), "image-5");
    }

    #[test]
    fn unique_names() {
        let mut s = NameSet::default();
        assert_eq!(s.unique("scene07"), "scene07");
        assert_eq!(s.unique("scene07"), "scene07-2");
        assert_eq!(s.unique("scene07-2"), "scene07-2-2");
        assert_eq!(s.unique("scene07"), "scene07-3");
    }

    #[test]
    fn globs() {
        assert!(glob_match("scene0*", "scene07"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("scene?7", "scene07"));
        assert!(!glob_match("scene1*", "scene07"));
        assert!(glob_match("*-row*", "b-roll-row2"));
    }
}
