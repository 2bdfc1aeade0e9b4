//! Cycles: the dependency order of a tab's nodes, and a finding that draws
//! the cycle when links form one.

use crate::flow::{Finding, Tab};
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::BTreeMap;

/// Dependency order of a tab's nodes, or None (with a finding) when links form a cycle.
pub(super) fn node_order(tab: &Tab, errors: &mut Vec<Finding>) -> Option<Vec<usize>> {
    let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(tab.nodes.len(), tab.links.len());
    let mut idx = BTreeMap::new();
    for (i, n) in tab.nodes.iter().enumerate() {
        idx.entry(n.id).or_insert_with(|| g.add_node(i));
    }
    for l in &tab.links {
        if let (Some(&a), Some(&b)) = (idx.get(&l.src), idx.get(&l.dst)) {
            g.add_edge(a, b, ());
        }
    }
    match toposort(&g, None) {
        Ok(order) => Some(order.into_iter().map(|n| g[n]).collect()),
        Err(_) => {
            for scc in tarjan_scc(&g) {
                let cyclic = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
                if !cyclic {
                    continue;
                }
                let path = cycle_path(&g, &scc);
                let first = &tab.nodes[g[path[0]]];
                let shown: Vec<String> = path
                    .iter()
                    .chain(std::iter::once(&path[0]))
                    .map(|&n| {
                        let node = &tab.nodes[g[n]];
                        format!("{:?} (#{})", node.title, node.id)
                    })
                    .collect();
                errors.push(
                    Finding::error("cycle", first.path(), format!("the links form a cycle: {}", shown.join(" -> ")))
                        .on(&tab.name, first)
                        .hint("a node cannot consume its own output: remove one of these links in PatchWork"),
                );
            }
            None
        }
    }
}

/// One simple cycle through the nodes of a strongly connected component.
pub(super) fn cycle_path(g: &DiGraph<usize, ()>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let inside = |n: &NodeIndex| scc.contains(n);
    let start = *scc.iter().min().unwrap_or(&scc[0]);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = g.neighbors(cur).filter(inside).min();
        match next {
            Some(n) if n == start => return path,
            Some(n) if path.contains(&n) => {
                let pos = path.iter().position(|&p| p == n).unwrap_or(0);
                return path.split_off(pos);
            }
            Some(n) => {
                path.push(n);
                cur = n;
            }
            None => return path,
        }
        if path.len() > scc.len() {
            return path;
        }
    }
}
