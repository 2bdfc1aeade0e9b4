//! A validation finding: what is wrong, where (tab, node, JSON path) and what to do.

use super::document::Node;
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable, kebab-case identifier of the check (`dangling-link`, `cycle` ...).
    pub code: &'static str,
    pub tab: Option<usize>,
    pub tab_name: Option<String>,
    pub node_id: Option<i64>,
    pub title: Option<String>,
    /// JSON path of the offending value, e.g. `tabs[1].graphData.nodes[7].properties.negativePrompt`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Finding {
    pub fn error(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            code,
            tab: None,
            tab_name: None,
            node_id: None,
            title: None,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }
    pub fn warning(
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, path, message)
        }
    }
    pub fn on(mut self, tab_name: &str, node: &Node) -> Self {
        self.tab = Some(node.tab);
        self.tab_name = Some(tab_name.to_string());
        self.node_id = Some(node.id);
        self.title = Some(node.title.clone());
        self
    }
    pub fn in_tab(mut self, tab: usize, tab_name: &str) -> Self {
        self.tab = Some(tab);
        self.tab_name = Some(tab_name.to_string());
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}[{}]: {}", self.code, self.message)?;
        let mut place = Vec::new();
        if let Some(t) = &self.tab_name {
            place.push(format!("tab {t:?}"));
        }
        if let Some(id) = self.node_id {
            match self.title.as_deref() {
                Some(t) if !t.is_empty() => place.push(format!("node #{id} {t:?}")),
                _ => place.push(format!("node #{id}")),
            }
        }
        if !place.is_empty() {
            write!(f, "\n  --> {}", place.join(", "))?;
        }
        if !self.path.is_empty() {
            write!(f, "\n  at: {}", self.path)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}
