//! LLM calls as real instrumentation shapes them: a call is any span the normalisation
//! classed `llm` that is not a server span, whatever its kind (OpenInference LLM spans
//! are INTERNAL); a call that wraps another call (LangChain's `ChatOpenAI` over the
//! OpenAI SDK span) is a wrapper, not a call of its own; the inference server's span
//! (vLLM `llm_request`) may sit anywhere below the call, e.g. under an HTTP client span.

use crate::tree::Tree;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tailscope_model::{OpClass, SpanKind};

/// One call as the model sees it (times in ns, counts in tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub model: String,
    pub server: String,
    pub uncached_tokens: f64,
    /// Uncached tokens if the provider cached the previous sequential call of the same
    /// conversation (input − its input − its output); only for calls with no cache
    /// reads.
    pub assumed_uncached_tokens: Option<f64>,
    /// The whole prompt, cached or not (the context new tokens attend to).
    pub input_tokens: f64,
    pub output_tokens: f64,
    pub ttft_ns: Option<f64>,
    pub duration_ns: f64,
}

/// One LLM call of a tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The calling span (the innermost client-side LLM span).
    pub node: usize,
    /// The inference server's span below it, if any.
    pub server: Option<usize>,
}

fn is_llm(tree: &Tree, i: usize) -> bool {
    tree.nodes[i].span.promoted.op_class == OpClass::Llm
}

fn is_server(tree: &Tree, i: usize) -> bool {
    tree.nodes[i].span.kind == SpanKind::Server
}

/// Is `i` a client-side LLM span (an LLM call or a wrapper of one)?
pub fn is_llm_caller(tree: &Tree, i: usize) -> bool {
    is_llm(tree, i) && !is_server(tree, i)
}

/// The first LLM server span below `i`, not looking inside other LLM calls.
pub fn server_below(tree: &Tree, i: usize) -> Option<usize> {
    let mut stack: Vec<usize> = tree.nodes[i].children.iter().rev().copied().collect();
    while let Some(c) = stack.pop() {
        if is_llm(tree, c) && is_server(tree, c) {
            return Some(c);
        }
        if is_llm_caller(tree, c) {
            continue;
        }
        stack.extend(tree.nodes[c].children.iter().rev().copied());
    }
    None
}

/// Per node: does its subtree (excluding itself) hold a client-side LLM span?
fn has_caller_below(tree: &Tree) -> Vec<bool> {
    // children come after parents in this order, so walk it backwards
    let mut order = Vec::with_capacity(tree.nodes.len());
    let mut stack = vec![tree.root];
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(tree.nodes[i].children.iter().copied());
    }
    let mut below = vec![false; tree.nodes.len()];
    for &i in order.iter().rev() {
        if let Some(p) = tree.nodes[i].parent {
            if below[i] || is_llm_caller(tree, i) {
                below[p] = true;
            }
        }
    }
    below
}

/// The calls of a tree (innermost client-side LLM spans) in start order, and the
/// wrappers (client-side LLM spans with a call inside).
pub fn calls(tree: &Tree) -> (Vec<Call>, Vec<usize>) {
    let below = has_caller_below(tree);
    let mut calls = Vec::new();
    let mut wrappers = Vec::new();
    for (i, &wraps) in below.iter().enumerate() {
        if !is_llm_caller(tree, i) {
            continue;
        }
        if wraps {
            wrappers.push(i);
        } else {
            calls.push(Call {
                node: i,
                server: server_below(tree, i),
            });
        }
    }
    calls.sort_by_key(|c| (tree.nodes[c.node].span.start_ns, c.node));
    (calls, wrappers)
}

/// A call's time to first chunk, when its timing is consistent: the first chunk cannot
/// arrive before the response to the request that carries it, so a transport span
/// (an HTTP client span) directly under the call that ends well after that time shows
/// the attribute timed something else (OpenLIT times its "first token" from the
/// response headers, after any server queue).
pub fn first_chunk_ns(tree: &Tree, call: &Call) -> Option<i64> {
    let s = &tree.nodes[call.node].span;
    let ttft = s.promoted.time_to_first_chunk_ns?;
    let at = s.start_ns.saturating_add(ttft);
    let contradicted = tree.nodes[call.node].children.iter().any(|&c| {
        let t = &tree.nodes[c].span;
        t.kind == SpanKind::Client
            && t.promoted.op_class == OpClass::Http
            && t.end_ns > at.saturating_add(TRANSPORT_SLACK_NS)
    });
    (!contradicted).then_some(ttft)
}

/// How far a transport span may end after the first chunk (clock and SDK slack).
const TRANSPORT_SLACK_NS: i64 = 5_000_000;

/// Input tokens of a call: its own, else its server span's.
pub fn input_tokens(tree: &Tree, call: &Call) -> Option<i64> {
    tree.nodes[call.node]
        .span
        .promoted
        .input_tokens
        .or_else(|| {
            call.server
                .and_then(|x| tree.nodes[x].span.promoted.input_tokens)
        })
}

/// Uncached input tokens of a call: input minus cache reads when known.
pub fn uncached_tokens(input: i64, cache_read: Option<i64>) -> i64 {
    (input - cache_read.unwrap_or(0).clamp(0, input)).max(0)
}

/// The key a call's latency model is fitted under.
pub fn model_key(tree: &Tree, call: &Call) -> (String, String) {
    let p = &tree.nodes[call.node].span.promoted;
    let sp = call.server.map(|s| &tree.nodes[s].span.promoted);
    (
        p.model
            .clone()
            .or_else(|| sp.and_then(|s| s.model.clone()))
            .unwrap_or_default(),
        p.server_address.clone().unwrap_or_default(),
    )
}

/// Cache reads of a call as reported: its own, else its server span's.
pub fn cache_read(tree: &Tree, call: &Call) -> Option<i64> {
    tree.nodes[call.node]
        .span
        .promoted
        .cache_read_tokens
        .or_else(|| {
            call.server
                .and_then(|s| tree.nodes[s].span.promoted.cache_read_tokens)
        })
}

/// A call's source: the service, instrumentation scope and model its spans come from.
/// Sources differ in which optional fields they send.
pub fn source_key(service: &str, scope: &str, model: &str) -> String {
    format!("{service}\u{1f}{scope}\u{1f}{model}")
}

/// The source of a call (see [`source_key`]).
pub fn source_of(tree: &Tree, call: &Call) -> String {
    let s = &tree.nodes[call.node].span;
    source_key(&s.service_name, &s.scope_name, &model_key(tree, call).0)
}

/// What each source sends on its LLM calls (absent is not zero, and not "cached"):
/// some instrumentations leave a zero count out (pydantic-ai writes
/// `cache_read.input_tokens` only when it is above 0). A field a source sends on its
/// other calls and leaves out on this one means zero there; a field it never sends is
/// unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sources(HashMap<String, SourceFields>);

/// How many of a source's calls carried each optional field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFields {
    pub calls: u64,
    pub cache_read: u64,
}

impl Sources {
    /// Fewest calls with cache reads before a source counts as one that sends them.
    const MIN_WITH_FIELD: u64 = 2;

    pub fn observe(&mut self, source: String, has_cache_read: bool) {
        let f = self.0.entry(source).or_default();
        f.calls += 1;
        f.cache_read += u64::from(has_cache_read);
    }

    /// Does `source` report cache reads on some of its calls?
    pub fn sends_cache_reads(&self, source: &str) -> bool {
        self.0
            .get(source)
            .is_some_and(|f| f.cache_read > 0 && f.cache_read >= Self::MIN_WITH_FIELD.min(f.calls))
    }

    /// Does any source report cache reads?
    pub fn any_sends_cache_reads(&self) -> bool {
        self.0.keys().any(|k| self.sends_cache_reads(k))
    }

    /// Every call of `trees` counted by its source.
    pub fn of_trees<'a>(trees: impl IntoIterator<Item = (&'a Tree, &'a [Call])>) -> Self {
        let mut out = Self::default();
        for (t, cs) in trees {
            for c in cs {
                out.observe(source_of(t, c), cache_read(t, c).is_some());
            }
        }
        out
    }
}

/// How a call's cache reads are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheRead {
    /// The call (or its server span) reports them.
    Reported(i64),
    /// Left out by a source that sends them on its other calls: zero.
    AbsentMeansZero,
}

impl CacheRead {
    pub fn tokens(self) -> i64 {
        match self {
            CacheRead::Reported(n) => n,
            CacheRead::AbsentMeansZero => 0,
        }
    }
}

/// Cache reads of a call, reported or known zero for its source; `None`: unknown.
pub fn cache_read_known(tree: &Tree, call: &Call, sources: &Sources) -> Option<CacheRead> {
    match cache_read(tree, call) {
        Some(n) => Some(CacheRead::Reported(n)),
        // the key is built only where some source sends cache reads at all
        None => (sources.any_sends_cache_reads()
            && sources.sends_cache_reads(&source_of(tree, call)))
        .then_some(CacheRead::AbsentMeansZero),
    }
}

/// The latency-model sample of a call, when it has token counts. `assumed_prefix`: the
/// cached prefix a caching provider would have served (see `evict::assumed_prefixes`),
/// for calls that report no cache reads.
pub fn sample(tree: &Tree, call: &Call, assumed_prefix: Option<i64>) -> Option<Sample> {
    sample_with(tree, call, assumed_prefix, &Sources::default())
}

/// [`sample`], reading cache reads a source leaves out as zero (see [`Sources`]).
pub fn sample_with(
    tree: &Tree,
    call: &Call,
    assumed_prefix: Option<i64>,
    sources: &Sources,
) -> Option<Sample> {
    let s = &tree.nodes[call.node].span;
    let p = &s.promoted;
    let sp = call.server.map(|x| &tree.nodes[x].span.promoted);
    let input = input_tokens(tree, call)?;
    let output = p
        .output_tokens
        .or_else(|| sp.and_then(|x| x.output_tokens))?;
    let (model, server) = model_key(tree, call);
    let read = cache_read_known(tree, call, sources).map(CacheRead::tokens);
    Some(Sample {
        model,
        server,
        uncached_tokens: uncached_tokens(input, read) as f64,
        assumed_uncached_tokens: read
            .is_none()
            .then(|| uncached_tokens(input, Some(assumed_prefix.unwrap_or(0))) as f64),
        input_tokens: input as f64,
        output_tokens: output as f64,
        ttft_ns: first_chunk_ns(tree, call).map(|t| t as f64),
        duration_ns: s.duration_ns() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{span, trace};
    use tailscope_model::SpanId;

    #[test]
    fn wrappers_internal_calls_and_deep_server_spans() {
        // agent 1 > langchain LLM 2 (internal) > openai LLM 3 (internal) > http 4 > llm_request 5
        let mut s = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 5, 95),
            span(3, Some(2), 10, 90),
            span(4, Some(3), 12, 88),
            span(5, Some(4), 15, 85),
        ];
        for i in [1, 2, 4] {
            s[i].promoted.op_class = OpClass::Llm;
        }
        s[3].kind = SpanKind::Client;
        s[3].promoted.op_class = OpClass::Http;
        s[4].kind = SpanKind::Server;
        let t = trace(s);
        let (calls, wrappers) = calls(&t);
        let id = |i: usize| t.nodes[i].span.span_id;
        assert_eq!(calls.len(), 1);
        assert_eq!(id(calls[0].node), SpanId([3; 8]), "the innermost call");
        assert_eq!(calls[0].server.map(id), Some(SpanId([5; 8])));
        assert_eq!(
            wrappers.iter().map(|&w| id(w)).collect::<Vec<_>>(),
            vec![SpanId([2; 8])]
        );
    }
}
