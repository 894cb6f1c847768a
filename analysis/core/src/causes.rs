//! Cause assignment: each critical-path section gets exactly one cause. A span can
//! split its own time: an LLM server span (vLLM `llm_request`) into queue / kv_eviction
//! / prefill / decode; an LLM call into network (time its server span does not cover)
//! or, without a server span, queue / kv_eviction / prefill / decode from its time to
//! first token and the latency model fitted per (model, server.address). Retries: a
//! failed attempt and the back-off before the next attempt of the same operation.

use crate::calls::{self, Call};
use crate::critical::PathSection;
use crate::evict::Eviction;
use crate::latency::{Fit, LatencyModel};
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

/// What cause assignment knows of a tree beyond its spans: its LLM calls and the
/// wrappers around them, the eviction estimates and the latency model.
pub struct Shape<'a> {
    pub calls: Vec<Call>,
    /// node -> index in `calls`, for call spans and their server spans.
    pub call_of: HashMap<usize, usize>,
    pub wrappers: HashSet<usize>,
    pub evictions: &'a HashMap<SpanId, Eviction>,
    pub model: &'a LatencyModel,
    /// Assumed cached prefixes of calls without cache reads (`evict::assumed_prefixes`).
    pub assumed: &'a HashMap<SpanId, i64>,
}

impl<'a> Shape<'a> {
    pub fn new(
        tree: &Tree,
        evictions: &'a HashMap<SpanId, Eviction>,
        model: &'a LatencyModel,
        assumed: &'a HashMap<SpanId, i64>,
    ) -> Self {
        let (calls, wrappers) = calls::calls(tree);
        Self::from_calls(calls, wrappers, evictions, model, assumed)
    }

    /// As [`Shape::new`], from the tree's calls and wrappers found already.
    pub fn from_calls(
        calls: Vec<Call>,
        wrappers: Vec<usize>,
        evictions: &'a HashMap<SpanId, Eviction>,
        model: &'a LatencyModel,
        assumed: &'a HashMap<SpanId, i64>,
    ) -> Self {
        let mut call_of = HashMap::new();
        for (k, c) in calls.iter().enumerate() {
            call_of.insert(c.node, k);
            if let Some(s) = c.server {
                call_of.insert(s, k);
            }
        }
        Self {
            calls,
            call_of,
            wrappers: wrappers.into_iter().collect(),
            evictions,
            model,
            assumed,
        }
    }

    /// The eviction charged to the call that `node` belongs to, if any.
    pub fn eviction(&self, tree: &Tree, node: usize) -> Option<&'a Eviction> {
        let call = &self.calls[*self.call_of.get(&node)?];
        self.evictions.get(&tree.nodes[call.node].span.span_id)
    }
}

/// How an LLM call without a server span was split, for the evidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub queue_ns: i64,
    pub prefill_ns: i64,
    pub decode_ns: i64,
    /// The fit the split came from (None: measured time to first token only).
    pub fit: Option<(Fit, &'static str)>,
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

/// Failed attempts that were retried: the nodes inside them, and the back-off gaps
/// `(parent, from, to)` between each failed attempt and the next attempt of the same
/// operation (same name, or a later `http.request.resend_count`).
pub fn retries(tree: &Tree) -> (HashSet<usize>, Vec<(usize, i64, i64)>) {
    let mut nodes = HashSet::new();
    let mut gaps = Vec::new();
    for (p, n) in tree.nodes.iter().enumerate() {
        let kids = &n.children;
        for (i, &a) in kids.iter().enumerate() {
            let sa = &tree.nodes[a].span;
            if sa.status != StatusCode::Error {
                continue;
            }
            let next = kids[i + 1..].iter().copied().find(|&b| {
                let sb = &tree.nodes[b].span;
                sb.start_ns >= sa.end_ns
                    && (sb.name == sa.name
                        || (sb.promoted.op_class == sa.promoted.op_class
                            && sb.promoted.resend_count.unwrap_or(0)
                                > sa.promoted.resend_count.unwrap_or(0)))
            });
            if let Some(b) = next {
                let mut stack = vec![a];
                while let Some(x) = stack.pop() {
                    nodes.insert(x);
                    stack.extend(tree.nodes[x].children.iter().copied());
                }
                let from = sa.end_ns;
                let to = tree.nodes[b].span.start_ns;
                if to > from {
                    gaps.push((p, from, to));
                }
            }
        }
    }
    (nodes, gaps)
}

/// Does a span below `i` run on the other side of a network hop (a server span)?
fn has_server_below(tree: &Tree, i: usize) -> bool {
    let mut stack: Vec<usize> = tree.nodes[i].children.clone();
    while let Some(c) = stack.pop() {
        if tree.nodes[c].span.kind == SpanKind::Server {
            return true;
        }
        stack.extend(tree.nodes[c].children.iter().copied());
    }
    false
}

/// The single cause of a span's self time when it does not split.
fn plain_cause(tree: &Tree, i: usize) -> Cause {
    let s = &tree.nodes[i].span;
    let p = &s.promoted;
    if p.cold_start == Some(true) {
        return Cause::ToolColdStart;
    }
    match p.op_class {
        OpClass::Pool => Cause::PoolWait,
        OpClass::Db => Cause::Db,
        OpClass::Retrieval => Cause::Retrieval,
        OpClass::Embedding => Cause::Preprocessing,
        OpClass::Mcp if p.mcp_method.as_deref() == Some("initialize") => Cause::ToolColdStart,
        OpClass::Tool | OpClass::Mcp => Cause::Tool,
        OpClass::Llm => Cause::Other,
        OpClass::Agent | OpClass::Http | OpClass::Other => {
            if s.kind == SpanKind::Client && has_server_below(tree, i) {
                // a client span's time that its server does not cover
                Cause::Network
            } else if is_preprocessing_name(&s.name) {
                Cause::Preprocessing
            } else {
                Cause::Uninstrumented
            }
        }
    }
}

/// Splits an LLM call that has no server span: time to first token when measured,
/// else the duration model, into queue (the residual above what the latency model
/// expects), prefill and decode.
pub fn split_call(tree: &Tree, call: &Call, shape: &Shape<'_>) -> Split {
    let model = shape.model;
    let s = &tree.nodes[call.node].span;
    let dur = s.duration_ns();
    let (m, addr) = calls::model_key(tree, call);
    let sample = calls::sample(tree, call, shape.assumed.get(&s.span_id).copied());
    if let Some(ttft) = s.promoted.time_to_first_chunk_ns {
        let ttft = ttft.min(dur);
        let fit = model.ttft_fit(&m, &addr);
        let queue = match (fit, &sample) {
            (Some(f), Some(x)) => {
                let resid = ttft as f64 - f.prefill_ns(f.uncached(x));
                if resid > f.material_residual_ns() {
                    resid as i64
                } else {
                    0
                }
            }
            _ => 0,
        }
        .clamp(0, ttft);
        return Split {
            queue_ns: queue,
            prefill_ns: ttft - queue,
            decode_ns: dur - ttft,
            fit: fit.map(|f| (*f, "time to first token")),
        };
    }
    match (model.duration_fit(&m, &addr), &sample) {
        (Some(f), Some(x)) => {
            let pre = f.prefill_ns(f.uncached(x));
            let dec = f.decode_ns(x.output_tokens);
            let resid = dur as f64 - pre - dec;
            let (queue, pre, _) = if resid > f.material_residual_ns() {
                (resid, pre, dec)
            } else {
                // noise: scale the expected phases to the measured duration
                let scale = dur as f64 / (pre + dec).max(1.0);
                (0.0, pre * scale, dec * scale)
            };
            let queue = (queue as i64).clamp(0, dur);
            let prefill = (pre as i64).clamp(0, dur - queue);
            Split {
                queue_ns: queue,
                prefill_ns: prefill,
                decode_ns: (dur - queue - prefill).max(0),
                fit: Some((*f, "duration")),
            }
        }
        _ => Split {
            queue_ns: 0,
            prefill_ns: 0,
            decode_ns: dur,
            fit: None,
        },
    }
}

/// A span's own cause timeline: `(from, to, cause)` pieces in time order.
#[allow(clippy::many_single_char_names)] // spans, phases and interval ends read best short
fn timeline(tree: &Tree, i: usize, shape: &Shape<'_>) -> Vec<(i64, i64, Cause)> {
    let s = &tree.nodes[i].span;
    let p = &s.promoted;
    if shape.wrappers.contains(&i) {
        return vec![(s.start_ns, s.end_ns, Cause::Other)];
    }
    if p.op_class != OpClass::Llm {
        return vec![(s.start_ns, s.end_ns, plain_cause(tree, i))];
    }
    let evicted = shape.eviction(tree, i).map_or(0, |e| e.cost_ns);
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
    let Some(call) = shape.call_of.get(&i).map(|&k| &shape.calls[k]) else {
        return vec![(s.start_ns, s.end_ns, Cause::Other)];
    };
    if let Some(server) = call.server {
        // The server's phases where it runs, network elsewhere. The server span can
        // outlive the span between them (a streaming HTTP client span ends when the
        // headers arrive), so the call's own time after that is still the server's.
        let sv = timeline(tree, server, shape);
        let mut out = Vec::with_capacity(sv.len() + 2);
        let mut t = s.start_ns;
        for (a, b, c) in sv {
            let (a, b) = (a.max(t), b.min(s.end_ns));
            if b > a {
                if a > t {
                    out.push((t, a, Cause::Network));
                }
                out.push((a, b, c));
                t = b;
            }
        }
        if t < s.end_ns {
            out.push((t, s.end_ns, Cause::Network));
        }
        return out;
    }
    let split = split_call(tree, call, shape);
    phases(
        s.start_ns,
        split.queue_ns,
        split.prefill_ns,
        split.decode_ns,
    )
}

/// Splits `[start, end)` of a node by the retry back-off gaps of that node.
fn cut_by_gaps(start: i64, end: i64, gaps: &[(i64, i64)]) -> Vec<(i64, i64, bool)> {
    let mut out = Vec::new();
    let mut t = start;
    for &(a, b) in gaps {
        let (lo, hi) = (a.max(t), b.min(end));
        if hi > lo {
            if lo > t {
                out.push((t, lo, false));
            }
            out.push((lo, hi, true));
            t = hi;
        }
    }
    if t < end {
        out.push((t, end, false));
    }
    out
}

/// Splits critical-path sections by their spans' cause timelines.
pub fn assign(tree: &Tree, path: &[PathSection], shape: &Shape<'_>) -> Vec<CausedSection> {
    let (retried, gaps) = retries(tree);
    let mut gaps_of: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
    for (p, a, b) in gaps {
        gaps_of.entry(p).or_default().push((a, b));
    }
    for g in gaps_of.values_mut() {
        g.sort_unstable();
    }
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
        let pieces = match gaps_of.get(&sec.node) {
            Some(g) => cut_by_gaps(sec.start, sec.end, g),
            None => vec![(sec.start, sec.end, false)],
        };
        for (start, end, backoff) in pieces {
            if backoff {
                out.push(CausedSection {
                    node: sec.node,
                    start,
                    end,
                    cause: Cause::Retry,
                });
                continue;
            }
            let tl = cache
                .entry(sec.node)
                .or_insert_with(|| timeline(tree, sec.node, shape));
            let mut t = start;
            for &(a, b, c) in tl.iter() {
                let (lo, hi) = (a.max(t), b.min(end));
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
            if t < end {
                let c = tl.last().map_or(Cause::Uninstrumented, |x| x.2);
                out.push(CausedSection {
                    node: sec.node,
                    start: t,
                    end,
                    cause: c,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::critical::critical_path;
    use crate::testutil::{span, trace};

    fn by_cause(sections: &[CausedSection]) -> HashMap<Cause, i64> {
        let mut m = HashMap::new();
        for s in sections {
            *m.entry(s.cause).or_insert(0) += s.end - s.start;
        }
        m
    }

    #[test]
    fn backoff_before_the_next_attempt_is_retry_not_a_later_sibling() {
        // root 0..100: failed call 10..30, back-off, retry 50..70, then an unrelated
        // failed-looking sibling of the same class at 80..90 that nothing retried
        let mut s = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 10, 30),
            span(3, Some(1), 50, 70),
            span(4, Some(1), 80, 90),
        ];
        s[1].status = StatusCode::Error;
        s[1].name = "POST".into();
        s[2].name = "POST".into();
        s[3].status = StatusCode::Error;
        s[3].name = "GET".into();
        let t = trace(s);
        let ev = HashMap::new();
        let model = LatencyModel::default();
        let none = HashMap::new();
        let shape = Shape::new(&t, &ev, &model, &none);
        let sections = assign(&t, &critical_path(&t), &shape);
        let m = by_cause(&sections);
        assert_eq!(m[&Cause::Retry], 20 + 20, "failed attempt + back-off");
        let total: i64 = m.values().sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn resend_count_marks_the_next_attempt() {
        let mut s = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 0, 40),
            span(3, Some(1), 60, 100),
        ];
        for x in &mut s[1..] {
            x.promoted.op_class = OpClass::Http;
            x.kind = SpanKind::Client;
        }
        s[1].status = StatusCode::Error;
        s[1].name = "POST /v1/chat".into();
        s[2].name = "POST".into();
        s[2].promoted.resend_count = Some(1);
        let t = trace(s);
        let (nodes, gaps) = retries(&t);
        assert_eq!(nodes.len(), 1);
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].1, gaps[0].2), (40, 60));
    }

    #[test]
    fn cold_start_flag_and_network_hop() {
        let mut s = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 0, 50),
            span(3, Some(1), 50, 100),
            span(4, Some(3), 60, 90),
        ];
        s[1].promoted.cold_start = Some(true);
        s[2].kind = SpanKind::Client;
        s[2].promoted.op_class = OpClass::Http;
        s[3].kind = SpanKind::Server;
        s[3].resource_id = 2;
        let t = trace(s);
        let ev = HashMap::new();
        let model = LatencyModel::default();
        let none = HashMap::new();
        let shape = Shape::new(&t, &ev, &model, &none);
        let m = by_cause(&assign(&t, &critical_path(&t), &shape));
        assert_eq!(m[&Cause::ToolColdStart], 50);
        assert_eq!(m[&Cause::Network], 20, "client time outside its server");
    }
}
