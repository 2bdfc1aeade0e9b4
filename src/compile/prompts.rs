//! Prompts: a prompt node's text resolved (plain, template, dynamic rows).

use super::*;

pub(super) fn resolve_prompt_node(
    tab: &Tab,
    node: &Node,
    prompts: &BTreeMap<i64, Option<PromptValue>>,
    errors: &mut Vec<Finding>,
) -> Option<PromptValue> {
    let text = node.prop_str("text").unwrap_or("");
    if node.prop_bool("dynamicMode") {
        let rows = match node.prop("dynamicRows") {
            Some(Value::Array(rows)) => rows
                .iter()
                .map(|r| r.as_str().unwrap_or("").to_string())
                .collect(),
            _ => Vec::new(),
        };
        return Some(PromptValue::Rows(rows));
    }
    if !node.prop_bool("templateMode") {
        return Some(PromptValue::Single(text.to_string()));
    }
    let mut values: BTreeMap<String, PromptValue> = BTreeMap::new();
    let mut rows: Option<(usize, String)> = None;
    for name in placeholders(text) {
        let Some(slot) = node
            .inputs
            .iter()
            .position(|i| i.name == name && i.link.is_some())
        else {
            continue; // reported by validate
        };
        let (src, _) = tab.source(node, slot)?;
        if src.kind != Kind::Prompt {
            errors.push(
                Finding::error(
                    "prompt-source",
                    format!("{}.inputs[{slot}]", node.path()),
                    format!(
                        "placeholder {{{name}}} is fed by {:?} (#{}), which is not a prompt",
                        src.title, src.id
                    ),
                )
                .on(&tab.name, node)
                .hint("link a Prompt node into this input"),
            );
            return None;
        }
        let v = prompts.get(&src.id)?.clone()?;
        if let Some(n) = v.rows() {
            match &rows {
                Some((m, other)) if *m != n => {
                    errors.push(
                        Finding::error(
                            "dynamic-length-mismatch",
                            format!("{}.inputs[{slot}]", node.path()),
                            format!("dynamic inputs have different numbers of rows: {{{other}}} has {m}, {{{name}}} has {n}"),
                        )
                        .on(&tab.name, node)
                        .hint("rows are paired by index: give every dynamic prompt feeding this template the same number of rows"),
                    );
                    return None;
                }
                Some(_) => {}
                None => rows = Some((n, name.clone())),
            }
        }
        values.insert(name, v);
    }
    let fill_row = |r: Option<usize>| fill(text, |name| values.get(name).map(|v| v.row(r)));
    Some(match rows {
        Some((n, _)) => PromptValue::Rows((0..n).map(|r| fill_row(Some(r))).collect()),
        None => PromptValue::Single(fill_row(None)),
    })
}
