//! Prompt text: template placeholders and their filling.
//!
//! Prompt texts are often pretty-printed JSON serialized into a string, so
//! they are full of `{` and `}`. Only `{identifier}` tokens (a letter or `_`
//! followed by letters, digits or `_`, nothing else between the braces) are
//! placeholders, and only on a node whose `templateMode` is on.

/// A resolved prompt: one text, or one text per dynamic row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptValue {
    Single(String),
    Rows(Vec<String>),
}

impl PromptValue {
    pub fn rows(&self) -> Option<usize> {
        match self {
            PromptValue::Single(_) => None,
            PromptValue::Rows(r) => Some(r.len()),
        }
    }
    /// The text of row `r` (a single text serves every row).
    pub fn row(&self, r: Option<usize>) -> &str {
        match (self, r) {
            (PromptValue::Single(s), _) => s,
            (PromptValue::Rows(rows), Some(i)) => rows.get(i).map(String::as_str).unwrap_or(""),
            (PromptValue::Rows(rows), None) => rows.first().map(String::as_str).unwrap_or(""),
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Byte ranges `(start, end)` of each `{identifier}` token, braces included.
fn tokens(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            if let Some(len) = bytes[i + 1..].iter().position(|&b| b == b'}' || b == b'{') {
                let end = i + 1 + len;
                if bytes[end] == b'}' && is_ident(&text[i + 1..end]) {
                    out.push((i, end + 1));
                    i = end + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// The distinct placeholder names of a template text, in order of first use.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (s, e) in tokens(text) {
        let name = &text[s + 1..e - 1];
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// Replace each `{name}` for which `value(name)` answers; leave the others
/// as they are (validation reports them before anything is spent).
pub fn fill<'a>(text: &str, value: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (s, e) in tokens(text) {
        if let Some(v) = value(&text[s + 1..e - 1]) {
            out.push_str(&text[last..s]);
            out.push_str(v);
            last = e;
        }
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_braces_are_not_placeholders() {
        let t = "{\n  \"shot\": \"hero shot of {product} on {surface}\",\n  \"n\": {\"a\": 1}\n}";
        assert_eq!(placeholders(t), vec!["product", "surface"]);
    }

    #[test]
    fn fill_replaces_known_and_keeps_unknown() {
        let t = "a {x} b {y} c {x} {not ident} {}";
        let out = fill(t, |n| (n == "x").then_some("X"));
        assert_eq!(out, "a X b {y} c X {not ident} {}");
    }

    #[test]
    fn nested_brace_before_identifier() {
        assert_eq!(placeholders("{{name}}"), vec!["name"]);
        assert_eq!(placeholders("{ name }"), Vec::<String>::new());
        assert_eq!(placeholders("{9lives} {_ok1}"), vec!["_ok1"]);
    }
}
