//! Per-trace analysis results: the critical-path sections and per-cause time of a
//! trace, and the timing of each of its spans.

use crate::causes::{CausedSection, Shape};
use crate::tree::Tree;
use std::collections::BTreeMap;
use tailscope_model::{Cause, SpanId};

/// Per-span timing: total, self (not covered by children) and on-critical-path time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanStat {
    pub span_id: SpanId,
    pub total_ns: i64,
    pub self_ns: i64,
    pub critical_ns: i64,
    pub skew_ns: i64,
    pub orphan: bool,
    /// The span's conversation: its own, an ancestor's or a linked span's.
    pub conversation_id: Option<String>,
}

/// One analysed trace.
#[derive(Debug, Clone)]
pub struct TraceResult {
    pub trace_id: String,
    pub root: String,
    /// The root operation (service + root name): the group primary causes compare within.
    pub group: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub conversation_id: Option<String>,
    /// (span id, start, end, cause) in time order; covers the root with no overlap.
    pub sections: Vec<(SpanId, i64, i64, Cause)>,
    pub by_cause_ns: BTreeMap<Cause, i64>,
    /// Output tokens of the trace's LLM calls (decode is judged per token).
    pub output_tokens: i64,
    pub primary_cause: Option<Cause>,
    pub spans: Vec<SpanStat>,
    pub orphans: usize,
    /// (trace id, span id) of the span in another trace that started this one
    /// asynchronously, from a link on the root (async sub-agents, background jobs).
    pub caller: Option<(String, String)>,
}

fn self_time(tree: &Tree, i: usize) -> i64 {
    let s = &tree.nodes[i].span;
    let mut iv: Vec<(i64, i64)> = tree.nodes[i]
        .children
        .iter()
        .map(|&c| {
            let cs = &tree.nodes[c].span;
            (cs.start_ns.max(s.start_ns), cs.end_ns.min(s.end_ns))
        })
        .filter(|(a, b)| b > a)
        .collect();
    iv.sort_unstable();
    let mut covered = 0;
    let mut cur = i64::MIN;
    for (a, b) in iv {
        let a = a.max(cur);
        if b > a {
            covered += b - a;
            cur = b;
        }
    }
    s.duration_ns() - covered
}

impl TraceResult {
    pub(crate) fn new(tree: &Tree, sections: &[CausedSection], shape: &Shape<'_>) -> Self {
        let root = tree.root_span();
        let mut by_cause = BTreeMap::new();
        let mut critical: BTreeMap<usize, i64> = BTreeMap::new();
        for s in sections {
            *by_cause.entry(s.cause).or_insert(0) += s.end - s.start;
            *critical.entry(s.node).or_insert(0) += s.end - s.start;
        }
        let spans = tree
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !(tree.synthetic_root && *i == tree.root))
            .map(|(i, n)| SpanStat {
                span_id: n.span.span_id,
                total_ns: n.span.duration_ns(),
                self_ns: self_time(tree, i),
                critical_ns: critical.get(&i).copied().unwrap_or(0),
                skew_ns: n.skew_ns,
                orphan: n.orphan,
                conversation_id: n.span.promoted.conversation_id.clone(),
            })
            .collect();
        let route = tree
            .nodes
            .iter()
            .find(|n| n.parent.is_none() || (tree.synthetic_root && n.parent == Some(tree.root)))
            .map_or_else(|| root.name.clone(), |n| n.span.name.clone());
        Self {
            trace_id: root.trace_id.to_hex(),
            root: root.name.clone(),
            group: format!(
                "{} {}",
                tree.nodes
                    .iter()
                    .find(|n| n.parent == Some(tree.root) || n.parent.is_none())
                    .map_or("", |n| n.span.service_name.as_str()),
                route
            ),
            start_ns: root.start_ns,
            duration_ns: root.duration_ns(),
            conversation_id: tree
                .nodes
                .iter()
                .find_map(|n| n.span.promoted.conversation_id.clone()),
            sections: sections
                .iter()
                .map(|s| (tree.nodes[s.node].span.span_id, s.start, s.end, s.cause))
                .collect(),
            by_cause_ns: by_cause,
            output_tokens: shape
                .calls
                .iter()
                .filter_map(|c| {
                    let p = &tree.nodes[c.node].span.promoted;
                    p.output_tokens.or_else(|| {
                        c.server
                            .and_then(|x| tree.nodes[x].span.promoted.output_tokens)
                    })
                })
                .sum(),
            primary_cause: None,
            spans,
            orphans: tree.orphans,
            caller: tree
                .nodes
                .iter()
                .filter(|n| {
                    n.parent.is_none() || (tree.synthetic_root && n.parent == Some(tree.root))
                })
                .flat_map(|n| n.span.links.iter())
                .find(|l| l.trace_id != root.trace_id)
                .map(|l| (l.trace_id.to_hex(), l.span_id.to_hex())),
        }
    }
}
