//! Tracing image inputs through approve gates and preview nodes to what
//! they really are: a local file, a URL (a reference, a user's pick, a
//! disabled node's saved result) or another task's pick.

use super::*;

pub(super) fn is_url(s: &str) -> bool {
    let l = s.trim_start().to_ascii_lowercase();
    l.starts_with("http://")
        || l.starts_with("https://")
        || l.starts_with("file://")
        || l.starts_with("data:")
}

pub(super) fn classify(s: &str) -> NodeSource {
    if is_url(s) {
        NodeSource::Url(s.to_string())
    } else {
        NodeSource::File(s.to_string())
    }
}

/// The selected saved result of a (disabled) generation node.
pub(super) fn saved_result(node: &Node) -> Option<String> {
    let (list, index_key) = match node.kind {
        Kind::Video => {
            if let Some(u) = node.prop_str("_savedVideoUrl") {
                return Some(u.to_string());
            }
            ("_savedVideos", "_savedGalleryIndex")
        }
        _ => ("_savedImages", "_savedPreviewIndex"),
    };
    let urls = node.saved_urls(list);
    let i = node.prop(index_key).and_then(Value::as_u64).unwrap_or(0) as usize;
    urls.get(i).or_else(|| urls.first()).cloned()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn resolve_gen(
    tab: &Tab,
    node: &Node,
    prompts: &BTreeMap<i64, Option<PromptValue>>,
    gens: &BTreeMap<i64, Option<GenNode>>,
    opts: &CompileOptions,
    errors: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) -> Option<GenNode> {
    let before = errors.len();
    // Prompt: slot 0.
    let prompt = match tab.source(node, 0) {
        Some((src, _)) if src.kind == Kind::Prompt => prompts.get(&src.id).cloned().flatten(),
        Some((src, _)) => {
            errors.push(
                Finding::error(
                    "prompt-source",
                    format!("{}.inputs[0]", node.path()),
                    format!(
                        "the prompt input is fed by {:?} (#{}), which is not a prompt",
                        src.title, src.id
                    ),
                )
                .on(&tab.name, node)
                .hint("link a Prompt node into the prompt input"),
            );
            None
        }
        None => {
            errors.push(
                Finding::error(
                    "no-prompt",
                    format!("{}.inputs[0]", node.path()),
                    "nothing is linked into the prompt input",
                )
                .on(&tab.name, node)
                .hint(
                    "link a Prompt node into slot 0, or switch the node off (_disabled) to skip it",
                ),
            );
            None
        }
    };
    // Image inputs.
    let slots: Vec<usize> = match node.kind {
        Kind::Video if node.prop_str("mode") == Some("text-to-video") => Vec::new(),
        Kind::Video => vec![1, 2],
        _ => (1..node.inputs.len()).collect(),
    };
    let mut inputs = Vec::new();
    for slot in slots {
        if node.inputs.get(slot).and_then(|i| i.link).is_none() {
            continue;
        }
        if let Some((src, gate)) = resolve_image(tab, node, slot, gens, opts, errors) {
            inputs.push((slot, src, gate));
        }
    }
    if node.kind == Kind::Video
        && node.prop_str("mode") != Some("text-to-video")
        && inputs.is_empty()
        && errors.len() == before
    {
        warnings.push(
            Finding::warning(
                "veo-no-frames",
                format!("{}.inputs", node.path()),
                "frames-to-video node with no frame linked: sent as text-to-video",
            )
            .on(&tab.name, node)
            .hint("link a start frame, or set the node's mode to text-to-video"),
        );
    }
    let prompt = prompt?;
    if errors.len() != before {
        return None;
    }
    // Rows: the prompt's and every upstream task's, paired by index.
    let mut rows: Option<(usize, String)> = prompt.rows().map(|n| (n, "its prompt".to_string()));
    for (_, src, _) in &inputs {
        if let NodeSource::Gen(up) = src {
            let Some(Some(g)) = gens.get(up) else {
                return None;
            };
            if let Some(n) = g.rows {
                let what = format!("upstream node #{up}");
                match &rows {
                    Some((m, other)) if *m != n => {
                        errors.push(
                            Finding::error(
                                "dynamic-length-mismatch",
                                node.path(),
                                format!("inputs have different numbers of dynamic rows: {other} has {m}, {what} has {n}"),
                            )
                            .on(&tab.name, node)
                            .hint("rows are paired by index: make the dynamic lists the same length"),
                        );
                        return None;
                    }
                    Some(_) => {}
                    None => rows = Some((n, what)),
                }
            }
        }
    }
    Some(GenNode {
        rows: rows.map(|(n, _)| n),
        prompt,
        inputs,
    })
}

pub(super) fn resolve_image(
    tab: &Tab,
    consumer: &Node,
    slot: usize,
    gens: &BTreeMap<i64, Option<GenNode>>,
    opts: &CompileOptions,
    errors: &mut Vec<Finding>,
) -> Option<(NodeSource, Option<i64>)> {
    let input_path = format!("{}.inputs[{slot}]", consumer.path());
    let mut gate = None;
    let (mut src, _) = tab.source(consumer, slot)?;
    // Follow preview nodes and gates (bounded: the tab is acyclic).
    for _ in 0..=tab.nodes.len() {
        match src.kind {
            Kind::Reference | Kind::Preview | Kind::MediaOther => {
                if src.kind != Kind::Reference {
                    if let Some((up, _)) = tab.source(src, 0) {
                        src = up;
                        continue;
                    }
                }
                return match src.prop_str("imageData") {
                    Some(s) if !s.trim().is_empty() => {
                        let s = s.trim();
                        if !is_url(s) && !(opts.file_exists)(s) {
                            errors.push(
                                Finding::error("missing-ref-file", src.prop_path("imageData"), format!("reference image {s:?} does not exist"))
                                    .on(&tab.name, src)
                                    .hint("paths are relative to the flow's folder: fix the path or load the image in PatchWork"),
                            );
                            return None;
                        }
                        Some((classify(s), gate))
                    }
                    _ => match opts.ref_image {
                        Some(r) => Some((NodeSource::File(r.to_string()), gate)),
                        None => {
                            errors.push(
                                Finding::error("ref-no-image", src.prop_path("imageData"), format!("reference node feeding {:?} holds no image", consumer.title))
                                    .on(&tab.name, src)
                                    .hint("load an image into it in PatchWork, or pass --ref-image PATH for unwired refs"),
                            );
                            None
                        }
                    },
                };
            }
            Kind::Approve => {
                gate = Some(src.id);
                if let Some(pick) = src.prop_str("_lastApprovedData").filter(|s| !s.is_empty()) {
                    return Some((classify(pick), gate));
                }
                match tab.source(src, 0) {
                    Some((up, _)) if up.kind.is_generation() && !up.is_inactive() => {
                        return gens
                            .get(&up.id)
                            .and_then(|g| g.as_ref())
                            .map(|_| (NodeSource::Gen(up.id), gate));
                    }
                    Some((up, _)) if up.kind.is_generation() => {
                        let held = src
                            .prop_str("lastData")
                            .map(str::to_string)
                            .or_else(|| saved_result(up));
                        return match held {
                            Some(u) => Some((classify(&u), gate)),
                            None => {
                                errors.push(
                                    Finding::error(
                                        "nothing-to-consume",
                                        src.path(),
                                        format!("approve gate has no pick and its upstream {:?} (#{}) is switched off with no saved result", up.title, up.id),
                                    )
                                    .on(&tab.name, src)
                                    .hint("switch the upstream node on, or approve an image in PatchWork"),
                                );
                                None
                            }
                        };
                    }
                    Some((up, _)) => {
                        src = up;
                        continue;
                    }
                    None => {
                        return match src.prop_str("lastData") {
                            Some(u) => Some((classify(u), gate)),
                            None => {
                                errors.push(
                                    Finding::error(
                                        "nothing-to-consume",
                                        src.path(),
                                        "approve gate has no input and no pick",
                                    )
                                    .on(&tab.name, src)
                                    .hint("link a generation node into the gate"),
                                );
                                None
                            }
                        };
                    }
                }
            }
            Kind::Image | Kind::Video => {
                if src.is_inactive() {
                    return match saved_result(src) {
                        Some(u) => Some((classify(&u), gate)),
                        None => {
                            errors.push(
                                Finding::error(
                                    "nothing-to-consume",
                                    input_path,
                                    format!(
                                        "{:?} (#{}) is switched off and holds no result",
                                        src.title, src.id
                                    ),
                                )
                                .on(&tab.name, consumer)
                                .hint("switch it on so it is built, or remove the link"),
                            );
                            None
                        }
                    };
                }
                return gens
                    .get(&src.id)
                    .and_then(|g| g.as_ref())
                    .map(|_| (NodeSource::Gen(src.id), gate));
            }
            Kind::Prompt | Kind::Unknown => {
                let what = if src.kind == Kind::Prompt {
                    "a prompt".to_string()
                } else {
                    format!("a node of unknown type {:?}", src.type_name)
                };
                errors.push(
                    Finding::error(
                        "unknown-type-upstream",
                        input_path,
                        format!("image input {slot} is fed by {what}: {:?} (#{})", src.title, src.id),
                    )
                    .on(&tab.name, consumer)
                    .hint("nbbuild cannot produce an image from it: link a reference, an approve gate or a generation node"),
                );
                return None;
            }
        }
    }
    None
}
