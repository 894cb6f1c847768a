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
use tailscope_model::{Cause, CauseSet, Evidence, OpClass, SpanId, SpanKind, StatusCode};

/// A critical-path section with its cause, how that cause is known, and the other
/// causes that explain the section about as well (for an `ambiguous` one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CausedSection {
    pub node: usize,
    pub start: i64,
    pub end: i64,
    pub cause: Cause,
    pub evidence: Evidence,
    pub alternatives: CauseSet,
}

/// A cause with how it is known and its alternatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribution {
    pub cause: Cause,
    pub evidence: Evidence,
    pub alternatives: CauseSet,
}

impl Attribution {
    pub fn measured(cause: Cause) -> Self {
        Self {
            cause,
            evidence: Evidence::Measured,
            alternatives: CauseSet::EMPTY,
        }
    }
    pub fn inferred(cause: Cause) -> Self {
        Self {
            cause,
            evidence: Evidence::Inferred,
            alternatives: CauseSet::EMPTY,
        }
    }
    /// `cause`, about as likely as each of `alternatives` (the cause itself is not
    /// listed among them); with no other cause left it is `inferred`.
    pub fn ambiguous(cause: Cause, alternatives: CauseSet) -> Self {
        let alternatives = alternatives.without(cause);
        Self {
            cause,
            evidence: if alternatives.is_empty() {
                Evidence::Inferred
            } else {
                Evidence::Ambiguous
            },
            alternatives,
        }
    }
}

/// One piece of a span's own cause timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    from: i64,
    to: i64,
    what: Attribution,
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
    /// The inference servers' metrics, evidence that can settle a queue-or-eviction.
    pub metrics: &'a dyn crate::MetricSource,
}

impl<'a> Shape<'a> {
    /// The same shape, reading server metrics from `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: &'a dyn crate::MetricSource) -> Self {
        self.metrics = metrics;
        self
    }

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
            metrics: &crate::NoMetrics,
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
    /// Time the latency model does not explain (before the first token when one is
    /// measured): a server queue, a re-prefill, or client-side work; see `residual`.
    pub queue_ns: i64,
    pub prefill_ns: i64,
    pub decode_ns: i64,
    /// The fit the split came from (None: measured time to first token only).
    pub fit: Option<(Fit, &'static str)>,
    /// What the unexplained time most likely is and how sure that is.
    pub residual: Attribution,
    pub prefill: Attribution,
    pub decode: Attribution,
}

/// What an LLM call's unexplained time is. Without a server span the telemetry can
/// rarely tell: a first-token time separates waiting before the first token from
/// client-side work after it (request building, chunk handling), and cache reads
/// (reported, or known zero for the source) rule a re-prefill in or out. A first call
/// of a conversation, or one whose prompt did not extend the previous call, has
/// nothing a cache could have held, so it is never a re-prefill. When a re-prefill is
/// possible and the residual is about what re-prefilling the previous turn would cost,
/// the eviction is the likelier of the two.
fn residual_cause(
    tree: &Tree,
    call: &Call,
    shape: &Shape<'_>,
    residual_ns: f64,
    fit: Option<&Fit>,
    first_token_measured: bool,
) -> Attribution {
    let s = &tree.nodes[call.node].span;
    let prefix = shape.assumed.get(&s.span_id).copied().unwrap_or(0);
    let can_be_eviction = reprefill_possible(tree, call, shape);
    let mut alternatives = CauseSet::of(&[Cause::Queue]);
    // a detected eviction: the model extrapolates to a long re-prefill, so time beyond
    // its estimate may be a server wait or a re-prefill costlier than it expects
    let evicted = shape.evictions.contains_key(&s.span_id);
    if can_be_eviction || evicted {
        alternatives.insert(Cause::KvEviction);
    }
    if !first_token_measured {
        // nothing separates server waiting from the client's own work in the span
        alternatives.insert(Cause::Uninstrumented);
    }
    let reprefill_ns = fit.map_or(0.0, |f| {
        let input = calls::input_tokens(tree, call).unwrap_or(prefix) as f64;
        f.prefill_ns(input, input) - f.prefill_ns((input - prefix as f64).max(0.0), input)
    });
    let eviction_likelier = can_be_eviction
        && reprefill_ns > 0.0
        && REPREFILL_BAND.contains(&(residual_ns / reprefill_ns));
    let cause = if eviction_likelier {
        Cause::KvEviction
    } else {
        Cause::Queue
    };
    // The server's own metrics over the call's window settle it where they exist.
    match server_says(s, shape.metrics, residual_ns, can_be_eviction) {
        Some(ServerSays::Waiting) => Attribution::measured(Cause::Queue),
        // both happened in the window; the metrics cannot say how much of the time
        // is the wait and how much the re-prefill
        Some(ServerSays::WaitingAndCacheMiss) => {
            Attribution::ambiguous(Cause::Queue, CauseSet::of(&[Cause::KvEviction]))
        }
        // a re-prefill; time well beyond what re-prefilling the prefix costs is not
        // explained by it (a wait the gauge's reads missed, or client work)
        Some(ServerSays::CacheMiss)
            if reprefill_ns > 0.0 && residual_ns > REPREFILL_BAND.end() * reprefill_ns =>
        {
            let mut rest = alternatives.without(Cause::KvEviction);
            rest.insert(Cause::Queue);
            Attribution::ambiguous(Cause::KvEviction, rest)
        }
        Some(ServerSays::CacheMiss) => Attribution::measured(Cause::KvEviction),
        Some(ServerSays::NoWait) => {
            // not the server's queue: a re-prefill (when possible), the client's work, or
            // a prefill longer than the model expects
            let mut rest = alternatives.without(Cause::Queue);
            rest.insert(Cause::Uninstrumented);
            rest.insert(Cause::Prefill);
            let first = if rest.contains(Cause::KvEviction) {
                Cause::KvEviction
            } else {
                Cause::Uninstrumented
            };
            Attribution::ambiguous(first, rest)
        }
        None => Attribution::ambiguous(cause, alternatives),
    }
}

/// The share of the KV cache held by running requests at which the server is taken to
/// be evicting cached prefixes to make room. Chosen on the otel-genai-metrics recordings
/// of plan seeds 12, 7 and 23: queue waits that also lost part of their prefix saw
/// 0.69-0.95 during the wait, waits that lost nothing 0.33-0.72; checked on seeds 31,
/// 37, 41, 43, 47 and 53 (`tests/realtel/fixtures-metrics/`).
const KV_PRESSURE: f64 = 0.65;

/// A wait of this many times the latency model's estimate of re-prefilling the cached
/// prefix is about what a re-prefill costs: within it, a possible eviction is the
/// likelier cause; beyond it, even with a cache miss measured, the rest is not
/// explained by the re-prefill.
const REPREFILL_BAND: std::ops::RangeInclusive<f64> = 0.5..=2.0;

/// What the inference server's metrics say of a call's unexplained wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerSays {
    /// Requests were waiting in its queue while the call waited.
    Waiting,
    /// Requests were waiting, and most prompt tokens it looked up in its prefix cache
    /// in the call's window missed, where the call could have been re-prefilled: a
    /// wait and a re-prefill both, in shares the metrics do not give.
    WaitingAndCacheMiss,
    /// Nothing waited, and most prompt tokens it looked up in its prefix cache in the
    /// call's window missed (a re-prefill).
    CacheMiss,
    /// Nothing waited; the cache gives no clear answer.
    NoWait,
}

/// Reads the waiting-requests gauge over the first `residual_ns` of the call (its reads
/// within that wait), the KV cache's usage there and the prefix-cache counters over the
/// call, for the call's `server.address`. `None` when the store has no such metrics, or
/// no read of the gauge fell within the wait.
fn server_says(
    s: &tailscope_model::Span,
    metrics: &dyn crate::MetricSource,
    residual_ns: f64,
    can_be_eviction: bool,
) -> Option<ServerSays> {
    use tailscope_model::gpu_metrics as gm;
    let server = s.promoted.server_address.as_deref();
    let wait_end = s.start_ns + (residual_ns as i64).clamp(0, s.duration_ns());
    let gauge = [s.start_ns, (s.start_ns + wait_end) / 2, wait_end]
        .into_iter()
        .any(|t| metrics.at(gm::REQUESTS_WAITING, server, t).is_some());
    if !gauge {
        return None;
    }
    // A gauge read during the wait counts this call among the waiting if it queued. One
    // read only before the call arrived (a wait shorter than the scrape interval) says
    // nothing of it: others waiting then may or may not have held it up, and nobody
    // waiting then does not mean it did not queue. The metrics then do not settle it.
    let waiting = metrics.max_within(gm::REQUESTS_WAITING, server, s.start_ns, wait_end)? >= 1.0;
    let (queries, hits) = if can_be_eviction {
        (
            metrics.increase(gm::PREFIX_CACHE_QUERIES_RATE, server, s.start_ns, s.end_ns),
            metrics.increase(gm::PREFIX_CACHE_HITS_RATE, server, s.start_ns, s.end_ns),
        )
    } else {
        (None, None)
    };
    // most lookups missed
    let missed = matches!((queries, hits), (Some(q), Some(h)) if q > 0.0 && h / q < 0.5);
    // Some lookups missed while most of the KV cache was held by running requests: the
    // server was making room by evicting cached prefixes, so the call may have lost part
    // of its own; with requests waiting too, the wait and a partial re-prefill are both
    // possible, and the window's counters (every request's lookups) cannot tell them
    // apart.
    let pressed = waiting
        && matches!((queries, hits), (Some(q), Some(h)) if q > h)
        && [s.start_ns, (s.start_ns + wait_end) / 2, wait_end]
            .into_iter()
            .filter_map(|t| metrics.at(gm::KV_CACHE_USAGE, server, t))
            .any(|u| u >= KV_PRESSURE);
    let missed = missed || pressed;
    Some(match (waiting, missed) {
        (true, true) => ServerSays::WaitingAndCacheMiss,
        (true, false) => ServerSays::Waiting,
        (false, true) => ServerSays::CacheMiss,
        (false, false) => ServerSays::NoWait,
    })
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

/// The single cause of a span's self time when it does not split: measured where the
/// span's class says what it times, inferred where only its name does.
fn plain_cause(tree: &Tree, i: usize) -> Attribution {
    let s = &tree.nodes[i].span;
    let p = &s.promoted;
    if p.cold_start == Some(true) {
        return Attribution::measured(Cause::ToolColdStart);
    }
    Attribution::measured(match p.op_class {
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
                return Attribution::inferred(Cause::Preprocessing);
            } else {
                Cause::Uninstrumented
            }
        }
    })
}

/// Does an LLM span below `i` have events after its own end (a stream consumed after
/// the span that started it ended)? Then `i`'s self time holds that call's time.
fn stream_outlives_call(tree: &Tree, i: usize) -> bool {
    let mut stack: Vec<usize> = tree.nodes[i].children.clone();
    while let Some(c) = stack.pop() {
        let s = &tree.nodes[c].span;
        if s.promoted.op_class == OpClass::Llm && s.events.iter().any(|e| e.time_ns > s.end_ns) {
            return true;
        }
        stack.extend(tree.nodes[c].children.iter().copied());
    }
    false
}

/// Is `i` transport under an LLM (or DB) call: an HTTP/gRPC client span directly
/// below the call, with no server span of its own below it? Its time is the call's:
/// the call's own timing (first-token time, server span, latency model) splits it.
fn transport_of(tree: &Tree, i: usize, shape: &Shape<'_>) -> Option<usize> {
    let n = &tree.nodes[i];
    let parent = n.parent?;
    let p = &tree.nodes[parent].span.promoted;
    let transport = n.span.kind == SpanKind::Client
        && matches!(n.span.promoted.op_class, OpClass::Http | OpClass::Other)
        && !has_server_below(tree, i);
    let call_parent = (p.op_class == OpClass::Llm && shape.call_of.contains_key(&parent))
        || p.op_class == OpClass::Db;
    (transport && call_parent).then_some(parent)
}

/// Could part of this call's prefill re-prefill a prefix a cache held: its cache reads
/// are unknown and its prompt extended a previous call by enough tokens.
fn reprefill_possible(tree: &Tree, call: &Call, shape: &Shape<'_>) -> bool {
    let s = &tree.nodes[call.node].span;
    calls::cache_read_known(tree, call, &shape.model.sources).is_none()
        && shape.assumed.get(&s.span_id).copied().unwrap_or(0) >= crate::evict::MIN_PREFIX_TOKENS
}

/// The prefill of a call as the latency model reads it. When the call's cache reads
/// are unknown, its prompt extended a previous call, and the fit does not assume that
/// prefix was cached, part of this prefill may be the re-prefill of an evicted prefix:
/// prefill or kv_eviction, the telemetry cannot say.
fn prefill_attribution(tree: &Tree, call: &Call, shape: &Shape<'_>, fit: &Fit) -> Attribution {
    if !fit.assumes_caching && reprefill_possible(tree, call, shape) {
        Attribution::ambiguous(Cause::Prefill, CauseSet::of(&[Cause::KvEviction]))
    } else {
        Attribution::inferred(Cause::Prefill)
    }
}

/// A call with a detected eviction: time beyond what the latency model expects of its
/// whole re-prefill, up to that estimate again, is counted in the re-prefill (the model
/// prices prefill linearly and a long re-prefill costs more; `evict::measured_cost`
/// counts it in the cost), unless the server's metrics show the call waiting.
fn folds_into_eviction(shape: &Shape<'_>, span: SpanId, residual: Attribution) -> bool {
    shape
        .evictions
        .get(&span)
        .is_some_and(|e| e.unexplained_ns > 0)
        && !(residual.cause == Cause::Queue && residual.evidence == Evidence::Measured)
}

/// Splits an LLM call that has no server span: time to first token when measured,
/// else the duration model, into the residual above what the latency model expects
/// (see [`residual_cause`]), prefill and decode.
pub fn split_call(tree: &Tree, call: &Call, shape: &Shape<'_>) -> Split {
    let model = shape.model;
    let s = &tree.nodes[call.node].span;
    let dur = s.duration_ns();
    let (m, addr) = calls::model_key(tree, call);
    let sample = calls::sample_with(
        tree,
        call,
        shape.assumed.get(&s.span_id).copied(),
        &shape.model.sources,
    );
    if let Some(ttft) = calls::first_chunk_ns(tree, call) {
        let ttft = ttft.min(dur);
        let fit = model.ttft_fit(&m, &addr);
        let resid = match (fit, &sample) {
            (Some(f), Some(x)) => {
                let resid = ttft as f64 - f.prefill_of(x);
                if resid > f.material_residual_ns() {
                    resid
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        let residual = residual_cause(tree, call, shape, resid, fit, true);
        let queue = if folds_into_eviction(shape, s.span_id, residual) {
            0
        } else {
            (resid as i64).clamp(0, ttft)
        };
        return Split {
            queue_ns: queue,
            prefill_ns: ttft - queue,
            decode_ns: dur - ttft,
            fit: fit.map(|f| (*f, "time to first token")),
            residual,
            // the time before the first token is measured; calling it prefill is the
            // model's reading when one is fitted
            prefill: if let Some(f) = fit {
                prefill_attribution(tree, call, shape, f)
            } else {
                Attribution::ambiguous(Cause::Prefill, CauseSet::of(&[Cause::Queue]))
            },
            decode: Attribution::measured(Cause::Decode),
        };
    }
    match (model.duration_fit(&m, &addr), &sample) {
        (Some(f), Some(x)) => {
            let pre = f.prefill_of(x);
            let dec = f.decode_ns(x.output_tokens);
            let resid = dur as f64 - pre - dec;
            let material = resid > f.material_residual_ns();
            let residual = residual_cause(
                tree,
                call,
                shape,
                if material { resid } else { 0.0 },
                Some(f),
                false,
            );
            let (queue, pre, _) = if material && folds_into_eviction(shape, s.span_id, residual) {
                (0.0, pre + resid, dec)
            } else if material {
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
                residual,
                prefill: prefill_attribution(tree, call, shape, f),
                decode: Attribution::inferred(Cause::Decode),
            }
        }
        // no model for this call: its time is the call's, phases unknown
        _ => Split {
            queue_ns: 0,
            prefill_ns: 0,
            decode_ns: dur,
            fit: None,
            residual: Attribution::ambiguous(Cause::Queue, CauseSet::of(&[Cause::Uninstrumented])),
            prefill: Attribution::inferred(Cause::Prefill),
            decode: Attribution::ambiguous(
                Cause::Decode,
                CauseSet::of(&[Cause::Prefill, Cause::Queue]),
            ),
        },
    }
}

/// A span's own cause timeline, pieces in time order.
#[allow(clippy::many_single_char_names)] // spans, phases and interval ends read best short
fn timeline(tree: &Tree, i: usize, shape: &Shape<'_>) -> Vec<Piece> {
    let s = &tree.nodes[i].span;
    let p = &s.promoted;
    let whole = |what: Attribution| {
        vec![Piece {
            from: s.start_ns,
            to: s.end_ns,
            what,
        }]
    };
    if shape.wrappers.contains(&i) {
        return whole(Attribution::measured(Cause::Other));
    }
    if let Some(call) = transport_of(tree, i, shape) {
        // transport under a call: the call's own split covers this time
        if tree.nodes[call].span.promoted.op_class == OpClass::Llm {
            return timeline(tree, call, shape);
        }
        return whole(Attribution::measured(Cause::Db));
    }
    if p.op_class != OpClass::Llm {
        let mut what = plain_cause(tree, i);
        if what.cause == Cause::Uninstrumented && stream_outlives_call(tree, i) {
            // a stream read after its call's span ended: the call's own time is here,
            // unsplit (LlamaIndex's astream_chat returns before the first chunk)
            what = Attribution::ambiguous(
                Cause::Uninstrumented,
                CauseSet::of(&[
                    Cause::Queue,
                    Cause::KvEviction,
                    Cause::Prefill,
                    Cause::Decode,
                ]),
            );
        }
        return whole(what);
    }
    let eviction = shape.eviction(tree, i);
    let kv_what = Attribution {
        cause: Cause::KvEviction,
        evidence: eviction.map_or(Evidence::Inferred, |e| e.evidence),
        alternatives: CauseSet::EMPTY,
    };
    let phases =
        |start: i64, parts: [(i64, Attribution); 3], (evicted, kv_what): (i64, Attribution)| {
            let [(queue, queue_what), (prefill, prefill_what), (decode, decode_what)] = parts;
            let mut t = start;
            let mut out = Vec::new();
            let kv = evicted.min(prefill);
            for (d, what) in [
                (queue, queue_what),
                (kv, kv_what),
                (prefill - kv, prefill_what),
                (decode, decode_what),
            ] {
                if d > 0 {
                    out.push(Piece {
                        from: t,
                        to: t + d,
                        what,
                    });
                    t += d;
                }
            }
            if t < s.end_ns {
                out.push(Piece {
                    from: t,
                    to: s.end_ns,
                    what: Attribution::measured(Cause::Uninstrumented),
                });
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
        // the server times its prefill; whether a cached prefix was re-prefilled in it
        // needs cache reads (vLLM's span has none)
        let prefill_what = shape
            .call_of
            .get(&i)
            .map(|&k| &shape.calls[k])
            .filter(|c| reprefill_possible(tree, c, shape))
            .map_or(Attribution::measured(Cause::Prefill), |_| {
                Attribution::ambiguous(Cause::Prefill, CauseSet::of(&[Cause::KvEviction]))
            });
        return phases(
            s.start_ns,
            [
                (queue, Attribution::measured(Cause::Queue)),
                (prefill, prefill_what),
                (decode, Attribution::measured(Cause::Decode)),
            ],
            (eviction.map_or(0, |e| e.cost_ns), kv_what),
        );
    }
    let Some(call) = shape.call_of.get(&i).map(|&k| &shape.calls[k]) else {
        return whole(Attribution::measured(Cause::Other));
    };
    if let Some(server) = call.server {
        // The server's phases where it runs, network elsewhere. The server span can
        // outlive the span between them (a streaming HTTP client span ends when the
        // headers arrive), so the call's own time after that is still the server's.
        let network = Attribution::measured(Cause::Network);
        let sv = timeline(tree, server, shape);
        let mut out = Vec::with_capacity(sv.len() + 2);
        let mut t = s.start_ns;
        for piece in sv {
            let (a, b) = (piece.from.max(t), piece.to.min(s.end_ns));
            if b > a {
                if a > t {
                    out.push(Piece {
                        from: t,
                        to: a,
                        what: network,
                    });
                }
                out.push(Piece {
                    from: a,
                    to: b,
                    what: piece.what,
                });
                t = b;
            }
        }
        if t < s.end_ns {
            out.push(Piece {
                from: t,
                to: s.end_ns,
                what: network,
            });
        }
        return out;
    }
    let split = split_call(tree, call, shape);
    // the part of the eviction's cost beyond the model's estimate: a wait the server's
    // metrics showed (split off as queue), or else counted in the re-prefill, which is
    // then ambiguous with what the residual could otherwise be
    let kv = match eviction {
        Some(e) if split.queue_ns > 0 => (e.cost_ns - e.unexplained_ns, kv_what),
        Some(e) if e.unexplained_ns > 0 => {
            let mut alternatives = split.residual.alternatives.without(Cause::KvEviction);
            alternatives.insert(Cause::Queue);
            (
                e.cost_ns,
                Attribution::ambiguous(Cause::KvEviction, alternatives),
            )
        }
        Some(e) => (e.cost_ns, kv_what),
        None => (0, kv_what),
    };
    phases(
        s.start_ns,
        [
            (split.queue_ns, split.residual),
            (split.prefill_ns, split.prefill),
            (split.decode_ns, split.decode),
        ],
        kv,
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
    let section = |node: usize, start: i64, end: i64, what: Attribution| CausedSection {
        node,
        start,
        end,
        cause: what.cause,
        evidence: what.evidence,
        alternatives: what.alternatives,
    };
    let retry = Attribution::measured(Cause::Retry);
    let mut cache: HashMap<usize, Vec<Piece>> = HashMap::new();
    let mut out = Vec::with_capacity(path.len());
    for sec in path {
        if retried.contains(&sec.node) {
            out.push(section(sec.node, sec.start, sec.end, retry));
            continue;
        }
        let pieces = match gaps_of.get(&sec.node) {
            Some(g) => cut_by_gaps(sec.start, sec.end, g),
            None => vec![(sec.start, sec.end, false)],
        };
        for (start, end, backoff) in pieces {
            if backoff {
                out.push(section(sec.node, start, end, retry));
                continue;
            }
            let tl = cache
                .entry(sec.node)
                .or_insert_with(|| timeline(tree, sec.node, shape));
            let mut t = start;
            for piece in tl.iter() {
                let (lo, hi) = (piece.from.max(t), piece.to.min(end));
                if hi > lo {
                    if lo > t {
                        // gap before this piece (shifted spans): the first piece's cause
                        out.push(section(sec.node, t, lo, piece.what));
                    }
                    out.push(section(sec.node, lo, hi, piece.what));
                    t = hi;
                }
            }
            if t < end {
                let what = tl
                    .last()
                    .map_or(Attribution::measured(Cause::Uninstrumented), |x| x.what);
                out.push(section(sec.node, t, end, what));
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
    use tailscope_model::Span;

    fn by_cause(sections: &[CausedSection]) -> HashMap<Cause, i64> {
        let mut m = HashMap::new();
        for s in sections {
            *m.entry(s.cause).or_insert(0) += s.end - s.start;
        }
        m
    }

    const MS: i64 = 1_000_000;

    /// A fit of 20 ms + 0.1 ms per uncached token + 4 ms per output token that assumes
    /// the provider caches the previous turn.
    fn caching_fit() -> LatencyModel {
        let f = Fit {
            intercept_ns: 20e6,
            ns_per_uncached_token: 0.1e6,
            ns_per_output_token: 4e6,
            sigma_ns: 5e6,
            calls: 40,
            kept: 36,
            assumes_caching: true,
            ns_per_uncached_token_ci: [0.09e6, 0.11e6],
            ns_per_output_token_ci: [3.8e6, 4.2e6],
            hypothesis_margin: 2.0,
            ns_per_attention: 0.0,
            ns_per_attention_ci: [0.0; 2],
        };
        let mut m = LatencyModel::default();
        m.duration.insert(("m".into(), "srv".into()), f);
        m.ttft.insert(("m".into(), "srv".into()), f);
        m
    }

    /// An agent turn: root 1 > LLM call 2 (client, model m at srv, 3000 tokens in, 20
    /// out) that took `extra` longer than its expected prefill of `uncached` tokens and
    /// its decode.
    fn llm_turn(uncached: i64, extra: i64) -> Vec<Span> {
        let dur = 20 * MS + uncached * MS / 10 + 80 * MS + extra;
        let mut root = span(1, None, 0, dur + 10 * MS);
        root.promoted.conversation_id = Some("c".into());
        let mut call = span(2, Some(1), 5 * MS, 5 * MS + dur);
        call.kind = SpanKind::Client;
        call.promoted.op_class = OpClass::Llm;
        call.promoted.model = Some("m".into());
        call.promoted.server_address = Some("srv".into());
        call.promoted.input_tokens = Some(3000);
        call.promoted.output_tokens = Some(20);
        vec![root, call]
    }

    fn residual_sections(
        t: &Tree,
        model: &LatencyModel,
        assumed: &HashMap<SpanId, i64>,
    ) -> Vec<CausedSection> {
        let ev = HashMap::new();
        let shape = Shape::new(t, &ev, model, assumed);
        assign(t, &critical_path(t), &shape)
            .into_iter()
            .filter(|s| matches!(s.cause, Cause::Queue | Cause::KvEviction))
            .collect()
    }

    /// No cache reads and no first-token time: a 300 ms unexplained wait after a turn
    /// whose 2,500-token prefix could have been cached is about what re-prefilling it
    /// costs, so the eviction is the likelier reading, but never stated as fact.
    #[test]
    fn an_unexplained_wait_the_telemetry_cannot_place_is_ambiguous() {
        let t = trace(llm_turn(500, 300 * MS));
        let model = caching_fit();
        let call = SpanId([2; 8]);
        let assumed = HashMap::from([(call, 2500)]);
        let r = residual_sections(&t, &model, &assumed);
        let total: i64 = r.iter().map(|s| s.end - s.start).sum();
        assert!((total - 300 * MS).abs() < 2 * MS, "{r:?}");
        for s in &r {
            assert_eq!(s.cause, Cause::KvEviction, "{s:?}");
            assert_eq!(s.evidence, Evidence::Ambiguous);
            assert!(s.alternatives.contains(Cause::Queue));
            assert!(
                s.alternatives.contains(Cause::Uninstrumented),
                "no first-token time: client-side work is not ruled out"
            );
        }
        // a wait far from the re-prefill cost: queue is likelier, eviction still possible
        let t = trace(llm_turn(500, 1200 * MS));
        for s in residual_sections(&t, &model, &assumed) {
            assert_eq!((s.cause, s.evidence), (Cause::Queue, Evidence::Ambiguous));
            assert!(s.alternatives.contains(Cause::KvEviction));
        }
        // a first turn had nothing cached: never a re-prefill
        let t = trace(llm_turn(3000, 300 * MS));
        let first = HashMap::from([(call, 0)]);
        let r = residual_sections(&t, &model, &first);
        assert!(!r.is_empty());
        for s in r {
            assert_eq!(s.cause, Cause::Queue);
            assert!(!s.alternatives.contains(Cause::KvEviction), "{s:?}");
            assert_eq!(s.evidence, Evidence::Ambiguous, "queue or client-side work");
        }
    }

    /// A detected eviction (16 of 2,600 expected tokens read from cache) whose call took
    /// `extra` longer than the linear model's full re-prefill: its cost and the sections.
    fn evicted_call(extra: i64) -> (Eviction, Vec<CausedSection>) {
        let mut spans = llm_turn(2984, extra);
        spans[1].promoted.cache_read_tokens = Some(16);
        let t = trace(spans);
        let model = caching_fit();
        let call = calls::calls(&t).0.remove(0);
        let mut e = Eviction {
            client_span: SpanId([2; 8]),
            conversation_id: "c".into(),
            model: "m".into(),
            previous_input_tokens: 2500,
            previous_output_tokens: 100,
            cache_read_tokens: 16,
            input_tokens: 3000,
            output_tokens: 20,
            evicted_tokens: 2584,
            prefill_ns_per_token: 0.1e6,
            cost_method: "test",
            cost_ns: 0,
            unexplained_ns: 0,
            calls_without_counts: 0,
            cost_low_ns: 0,
            evidence: Evidence::Measured,
        };
        let (cost, beyond, _, _) = crate::evict::measured_cost(&t, &call, &model, &e).unwrap();
        e.cost_ns = cost;
        e.unexplained_ns = beyond;
        let ev = HashMap::from([(e.client_span, e.clone())]);
        let assumed = HashMap::new();
        let shape = Shape::new(&t, &ev, &model, &assumed);
        let sections = assign(&t, &critical_path(&t), &shape)
            .into_iter()
            .filter(|s| matches!(s.cause, Cause::Queue | Cause::KvEviction))
            .collect();
        (e, sections)
    }

    /// The linear model expects 258.4 ms of re-prefill (2,584 tokens at 0.1 ms). Time
    /// beyond it, up to that much again, is a costlier re-prefill or a wait: counted in
    /// the cost, ambiguous with queue. More than that stays a wait of its own, ambiguous
    /// with kv_eviction; noise is simply counted.
    #[test]
    fn time_beyond_the_models_reprefill_is_counted_or_left_as_a_wait() {
        let sum = |ss: &[CausedSection], c: Cause| -> i64 {
            ss.iter()
                .filter(|s| s.cause == c)
                .map(|s| s.end - s.start)
                .sum()
        };
        let near = |a: i64, b: i64| (a - b).abs() < 2 * MS;
        // 100 ms beyond: a costlier re-prefill, or a wait
        let (e, ss) = evicted_call(100 * MS);
        assert!(near(e.cost_ns, 358 * MS), "{e:?}");
        assert!(near(e.unexplained_ns, 100 * MS), "{e:?}");
        assert!(near(sum(&ss, Cause::KvEviction), e.cost_ns), "{ss:?}");
        assert_eq!(sum(&ss, Cause::Queue), 0, "{ss:?}");
        for s in &ss {
            assert_eq!(s.evidence, Evidence::Ambiguous, "{s:?}");
            assert!(s.alternatives.contains(Cause::Queue), "{s:?}");
        }
        // 400 ms beyond (more than the re-prefill again): a wait, ambiguous with it
        let (e, ss) = evicted_call(400 * MS);
        assert!(near(e.cost_ns, 258 * MS), "{e:?}");
        assert_eq!(e.unexplained_ns, 0);
        assert!(near(sum(&ss, Cause::KvEviction), e.cost_ns), "{ss:?}");
        assert!(near(sum(&ss, Cause::Queue), 400 * MS), "{ss:?}");
        for s in &ss {
            if s.cause == Cause::KvEviction {
                assert_eq!(s.evidence, Evidence::Measured, "{s:?}");
            } else {
                assert_eq!(s.evidence, Evidence::Ambiguous, "{s:?}");
                assert!(s.alternatives.contains(Cause::KvEviction), "{s:?}");
            }
        }
        // 20 ms beyond is within the model's noise: the re-prefill, measured
        let (e, ss) = evicted_call(20 * MS);
        assert!(near(e.cost_ns, 278 * MS), "{e:?}");
        assert_eq!(e.unexplained_ns, 0);
        assert!(
            ss.iter()
                .all(|s| s.cause == Cause::KvEviction && s.evidence == Evidence::Measured),
            "{ss:?}"
        );
    }

    /// Server metrics: a gauge of waiting requests and prefix-cache counters.
    struct ServerMetrics {
        waiting: f64,
        hit_ratio: f64,
        read_before_only: bool,
    }

    impl crate::MetricSource for ServerMetrics {
        fn at(&self, name: &str, server: Option<&str>, _: i64) -> Option<f64> {
            (name == tailscope_model::gpu_metrics::REQUESTS_WAITING && server == Some("srv"))
                .then_some(self.waiting)
        }
        // the gauge was read during every wait unless `read_before_only`
        fn max_within(&self, name: &str, server: Option<&str>, _: i64, _: i64) -> Option<f64> {
            self.at(name, server, 0).filter(|_| !self.read_before_only)
        }
        fn increase(&self, name: &str, server: Option<&str>, a: i64, b: i64) -> Option<f64> {
            use tailscope_model::gpu_metrics as gm;
            let q = (b - a) as f64 / 1e6; // some tokens per ms looked up
            match name {
                _ if server != Some("srv") => None,
                gm::PREFIX_CACHE_QUERIES_RATE => Some(q),
                gm::PREFIX_CACHE_HITS_RATE => Some(q * self.hit_ratio),
                _ => None,
            }
        }
    }

    /// The same ambiguous wait becomes measured when the server's metrics cover it:
    /// requests waiting -> queue; nothing waiting and the prefix cache missing -> a
    /// re-prefill; nothing waiting and the cache hitting -> not the queue, still open;
    /// requests waiting and the cache missing -> both, so queue but ambiguous with the
    /// re-prefill (the metrics give no shares).
    #[test]
    fn server_metrics_settle_a_queue_or_eviction() {
        let t = trace(llm_turn(500, 300 * MS));
        let model = caching_fit();
        let assumed = HashMap::from([(SpanId([2; 8]), 2500)]);
        let ev = HashMap::new();
        let with = |m: &ServerMetrics| {
            let shape = Shape::new(&t, &ev, &model, &assumed).with_metrics(m);
            assign(&t, &critical_path(&t), &shape)
                .into_iter()
                .filter(|s| s.cause == Cause::Queue || s.cause == Cause::KvEviction)
                .map(|s| (s.cause, s.evidence, s.alternatives))
                .collect::<Vec<_>>()
        };
        let waiting = with(&ServerMetrics {
            waiting: 3.0,
            hit_ratio: 0.9,
            read_before_only: false,
        });
        assert_eq!(
            waiting,
            vec![(Cause::Queue, Evidence::Measured, CauseSet::EMPTY)]
        );
        let missed = with(&ServerMetrics {
            waiting: 0.0,
            hit_ratio: 0.1,
            read_before_only: false,
        });
        assert_eq!(
            missed,
            vec![(Cause::KvEviction, Evidence::Measured, CauseSet::EMPTY)]
        );
        // a miss and nobody waiting, but the wait far beyond what re-prefilling the
        // 2,500-token prefix costs: the rest is not the re-prefill's
        let t_long = trace(llm_turn(500, 3000 * MS));
        let long = {
            let m = ServerMetrics {
                waiting: 0.0,
                hit_ratio: 0.1,
                read_before_only: false,
            };
            let shape = Shape::new(&t_long, &ev, &model, &assumed).with_metrics(&m);
            assign(&t_long, &critical_path(&t_long), &shape)
                .into_iter()
                .filter(|s| s.cause == Cause::KvEviction)
                .map(|s| (s.evidence, s.alternatives))
                .collect::<Vec<_>>()
        };
        assert!(!long.is_empty());
        assert!(
            long.iter()
                .all(|(e, alt)| *e == Evidence::Ambiguous && alt.contains(Cause::Queue)),
            "{long:?}"
        );
        let unclear = with(&ServerMetrics {
            waiting: 0.0,
            hit_ratio: 0.9,
            read_before_only: false,
        });
        assert_eq!(unclear.len(), 1);
        assert_eq!(unclear[0].1, Evidence::Ambiguous);
        assert!(!unclear[0].2.contains(Cause::Queue) && unclear[0].0 != Cause::Queue);
        let both = with(&ServerMetrics {
            waiting: 3.0,
            hit_ratio: 0.1,
            read_before_only: false,
        });
        let queue_or_eviction = vec![(
            Cause::Queue,
            Evidence::Ambiguous,
            CauseSet::of(&[Cause::KvEviction]),
        )];
        assert_eq!(both, queue_or_eviction);
        // the gauge read only before the call arrived, requests waiting or not: the
        // metrics do not settle it, and the answer is the one without them
        let without = with(&ServerMetrics {
            waiting: 0.0,
            hit_ratio: 0.9,
            read_before_only: true,
        });
        assert!(
            without.iter().all(|s| s.1 == Evidence::Ambiguous),
            "{without:?}"
        );
        for waiting in [0.0, 3.0] {
            let before = with(&ServerMetrics {
                waiting,
                hit_ratio: 0.9,
                read_before_only: true,
            });
            assert_eq!(before, without);
        }
    }

    /// With a first-token time and cache reads, waiting before the first token is the
    /// server's: queue, inferred from the latency model; decode after it is measured.
    #[test]
    fn a_first_token_time_and_cache_reads_separate_the_queue() {
        let mut s = llm_turn(3000, 0);
        let ttft = 20 * MS + 300 * MS + 300 * MS; // expected 320 ms, 300 ms waiting
        s[1].promoted.time_to_first_chunk_ns = Some(ttft);
        s[1].end_ns = s[1].start_ns + ttft + 80 * MS;
        s[0].end_ns = s[1].end_ns + 5 * MS;
        s[1].promoted.cache_read_tokens = Some(0);
        let t = trace(s);
        let model = caching_fit();
        let ev = HashMap::new();
        let none = HashMap::new();
        let shape = Shape::new(&t, &ev, &model, &none);
        let secs = assign(&t, &critical_path(&t), &shape);
        let queue: Vec<_> = secs.iter().filter(|x| x.cause == Cause::Queue).collect();
        let q: i64 = queue.iter().map(|x| x.end - x.start).sum();
        assert!((q - 300 * MS).abs() < 2 * MS, "{secs:?}");
        assert!(queue.iter().all(|x| x.evidence == Evidence::Inferred));
        assert!(secs
            .iter()
            .filter(|x| x.cause == Cause::Decode)
            .all(|x| x.evidence == Evidence::Measured));
    }

    /// An HTTP client span directly under an LLM call (OpenLIT's httpx `POST`) is
    /// transport: the critical path goes into it, but its time is split by the call.
    #[test]
    fn a_transport_span_under_a_call_takes_the_calls_split() {
        let mut s = llm_turn(3000, 300 * MS);
        let (from, to) = (s[1].start_ns + MS, s[1].end_ns - MS);
        let mut post = span(3, Some(2), from, to);
        post.kind = SpanKind::Client;
        post.promoted.op_class = OpClass::Http;
        post.name = "POST".into();
        s.push(post);
        let t = trace(s);
        let model = caching_fit();
        let first = HashMap::from([(SpanId([2; 8]), 0)]);
        let ev = HashMap::new();
        let shape = Shape::new(&t, &ev, &model, &first);
        let secs = assign(&t, &critical_path(&t), &shape);
        let m = by_cause(&secs);
        assert!(
            m.get(&Cause::Uninstrumented).copied().unwrap_or(0) < 20 * MS,
            "the POST's time is not uninstrumented: {m:?}"
        );
        assert!(
            m.get(&Cause::Queue).copied().unwrap_or(0) > 250 * MS,
            "{m:?}"
        );
        assert!(m.get(&Cause::Decode).copied().unwrap_or(0) > 0, "{m:?}");
    }

    /// A driver's client span directly under a DB call is the call's own time: `db`,
    /// not uninstrumented.
    #[test]
    fn a_driver_span_under_a_db_call_is_db() {
        let mut s = vec![
            span(1, None, 0, 100 * MS),
            span(2, Some(1), 10 * MS, 90 * MS),
            span(3, Some(2), 12 * MS, 88 * MS),
        ];
        s[1].kind = SpanKind::Client;
        s[1].promoted.op_class = OpClass::Db;
        s[2].kind = SpanKind::Client;
        s[2].promoted.op_class = OpClass::Other;
        s[2].name = "socket write/read".into();
        let t = trace(s);
        let ev = HashMap::new();
        let model = LatencyModel::default();
        let none = HashMap::new();
        let shape = Shape::new(&t, &ev, &model, &none);
        let m = by_cause(&assign(&t, &critical_path(&t), &shape));
        assert_eq!(m[&Cause::Db], 80 * MS, "{m:?}");
        assert_eq!(
            m.get(&Cause::Uninstrumented),
            Some(&(20 * MS)),
            "only the root's own time"
        );
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
