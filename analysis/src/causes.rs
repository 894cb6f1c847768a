//! Cause assignment: each critical-path section gets exactly one cause. A span can
//! split its own time: an LLM server span (vLLM `llm_request`) into queue / kv_eviction
//! / prefill / decode, an LLM client span into network (time its server child does not
//! cover) or, without a server child, prefill / decode from its time to first chunk.

use crate::critical::PathSection;
use crate::tree::Tree;
use std::collections::{HashMap, HashSet};
use tailscope_model::{Cause, OpClass, SpanId, SpanKind, StatusCode};

/// A critical-path section with its cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CausedSection {
    pub node: usize,
    pub start: i64,
    pub end: i64,
    pub cause: Cause,
}

/// Re-prefill cost of an evicted prefix, estimated per LLM client span.
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    pub client_span: SpanId,
    pub conversation_id: String,
    pub previous_input_tokens: i64,
    pub cache_read_tokens: i64,
    pub input_tokens: i64,
    /// Tokens that should have been cached.
    pub evicted_tokens: i64,
    pub prefill_ns_per_token: f64,
    pub cost_ns: i64,
}

fn is_preprocessing_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "chunk",
        "tokeni",
        "prompt",
        "preprocess",
        "embed",
        "assemble",
        "split",
        "parse",
        "render",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Spans inside a failed attempt that a later sibling of the same name retried.
pub fn retried_nodes(tree: &Tree) -> HashSet<usize> {
    let mut out = HashSet::new();
    for n in &tree.nodes {
        let kids = &n.children;
        for (i, &a) in kids.iter().enumerate() {
            let sa = &tree.nodes[a].span;
            if sa.status != StatusCode::Error {
                continue;
            }
            let retried = kids[i + 1..].iter().any(|&b| {
                let sb = &tree.nodes[b].span;
                sb.start_ns >= sa.end_ns
                    && (sb.name == sa.name
                        || (sb.promoted.op_class == sa.promoted.op_class
                            && sb.promoted.op_class != OpClass::Other))
            });
            if retried {
                let mut stack = vec![a];
                while let Some(x) = stack.pop() {
                    out.insert(x);
                    stack.extend(tree.nodes[x].children.iter().copied());
                }
            }
        }
    }
    out
}

/// The single cause of a span's self time when it does not split.
fn plain_cause(tree: &Tree, i: usize) -> Cause {
    let s = &tree.nodes[i].span;
    let p = &s.promoted;
    match p.op_class {
        OpClass::Pool => Cause::PoolWait,
        OpClass::Db => Cause::Db,
        OpClass::Retrieval => Cause::Retrieval,
        OpClass::Embedding => Cause::Preprocessing,
        OpClass::Mcp if p.mcp_method.as_deref() == Some("initialize") => Cause::ToolColdStart,
        OpClass::Tool | OpClass::Mcp => Cause::Tool,
        OpClass::Llm => Cause::Other,
        OpClass::Agent | OpClass::Http | OpClass::Other => {
            if is_preprocessing_name(&s.name) {
                Cause::Preprocessing
            } else {
                Cause::Uninstrumented
            }
        }
    }
}

/// The LLM server child of a client span, if any.
pub fn server_child(tree: &Tree, i: usize) -> Option<usize> {
    tree.nodes[i].children.iter().copied().find(|&c| {
        let s = &tree.nodes[c].span;
        s.promoted.op_class == OpClass::Llm && s.kind == SpanKind::Server
    })
}

/// A span's own cause timeline: `(from, to, cause)` pieces in time order.
fn timeline<S: std::hash::BuildHasher>(
    tree: &Tree,
    i: usize,
    evictions: &HashMap<SpanId, Eviction, S>,
) -> Vec<(i64, i64, Cause)> {
    let s = &tree.nodes[i].span;
    let p = &s.promoted;
    if p.op_class != OpClass::Llm {
        return vec![(s.start_ns, s.end_ns, plain_cause(tree, i))];
    }
    // The client span whose eviction applies: this span if a client, else its parent.
    let client = if s.kind == SpanKind::Server {
        tree.nodes[i].parent
    } else {
        Some(i)
    };
    let evicted = client
        .and_then(|c| evictions.get(&tree.nodes[c].span.span_id))
        .map_or(0, |e| e.cost_ns);
    let phases = |start: i64, queue: i64, prefill: i64, decode: i64| {
        let mut t = start;
        let mut out = Vec::new();
        let kv = evicted.min(prefill);
        for (d, c) in [
            (queue, Cause::Queue),
            (kv, Cause::KvEviction),
            (prefill - kv, Cause::Prefill),
            (decode, Cause::Decode),
        ] {
            if d > 0 {
                out.push((t, t + d, c));
                t += d;
            }
        }
        if t < s.end_ns {
            out.push((t, s.end_ns, Cause::Uninstrumented));
        }
        out
    };
    if s.kind == SpanKind::Server || p.queue_ns.is_some() || p.prefill_ns.is_some() {
        let queue = p.queue_ns.unwrap_or(0);
        let prefill = p
            .prefill_ns
            .or_else(|| p.ttft_ns.map(|t| (t - queue).max(0)))
            .unwrap_or(0);
        let decode = p
            .decode_ns
            .unwrap_or_else(|| (s.duration_ns() - queue - prefill).max(0));
        return phases(s.start_ns, queue, prefill, decode);
    }
    if server_child(tree, i).is_some() {
        // client time the server does not cover
        return vec![(s.start_ns, s.end_ns, Cause::Network)];
    }
    match p.time_to_first_chunk_ns {
        Some(ttfc) => phases(
            s.start_ns,
            0,
            ttfc.min(s.duration_ns()),
            (s.duration_ns() - ttfc).max(0),
        ),
        None => vec![(s.start_ns, s.end_ns, Cause::Decode)],
    }
}

/// Splits critical-path sections by their spans' cause timelines.
pub fn assign<S: std::hash::BuildHasher>(
    tree: &Tree,
    path: &[PathSection],
    evictions: &HashMap<SpanId, Eviction, S>,
) -> Vec<CausedSection> {
    let retried = retried_nodes(tree);
    let mut cache: HashMap<usize, Vec<(i64, i64, Cause)>> = HashMap::new();
    let mut out = Vec::with_capacity(path.len());
    for sec in path {
        if retried.contains(&sec.node) {
            out.push(CausedSection {
                node: sec.node,
                start: sec.start,
                end: sec.end,
                cause: Cause::Retry,
            });
            continue;
        }
        let tl = cache
            .entry(sec.node)
            .or_insert_with(|| timeline(tree, sec.node, evictions));
        let mut t = sec.start;
        for &(a, b, c) in tl.iter() {
            let (lo, hi) = (a.max(t), b.min(sec.end));
            if hi > lo {
                if lo > t {
                    // gap before this piece (shifted spans): the first piece's cause
                    out.push(CausedSection {
                        node: sec.node,
                        start: t,
                        end: lo,
                        cause: c,
                    });
                }
                out.push(CausedSection {
                    node: sec.node,
                    start: lo,
                    end: hi,
                    cause: c,
                });
                t = hi;
            }
        }
        if t < sec.end {
            let c = tl.last().map_or(Cause::Uninstrumented, |x| x.2);
            out.push(CausedSection {
                node: sec.node,
                start: t,
                end: sec.end,
                cause: c,
            });
        }
    }
    out
}
