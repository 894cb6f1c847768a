//! The pure core of tailscope's analysis (no IO): latency trees, critical paths,
//! causes, KV evictions, tail attribution and findings over spans in memory.
//!
//! [`Tree`] rebuilds a trace (orphans, clock skew); [`critical::critical_path`] walks
//! it as Jaeger UI does, plus agent rules; [`causes::assign`] gives every critical-path
//! section one [`Cause`]; [`evict`] detects KV-cache evictions across a conversation's
//! turns; [`tail`] compares the tail cohort with the median band; [`findings`] names
//! problems with evidence. [`compute`] runs the per-trace part over complete traces
//! and returns a [`TraceResult`] per trace and the findings. Loading spans and metrics,
//! persisting results and the report over all traces are `tailscope-analysis`'s.

pub mod calls;
pub mod causes;
pub mod compare;
pub mod critical;
pub mod diff;
pub mod evict;
pub mod findings;
pub mod hash;
pub mod latency;
mod result;
pub mod semantic_cache;
pub mod stats;
pub mod tail;
pub mod tenant;
pub mod text;
pub mod tree;
pub mod whatif;
pub mod write_amp;

#[cfg(test)]
mod testutil;

pub use findings::Finding;
pub use result::{
    cause_evidence, cause_evidence_json, parse_cause_evidence, CauseEvidence, Section, SpanStat,
    TraceResult,
};
pub use tree::Tree;

use std::collections::{BTreeMap, HashMap, HashSet};
use tailscope_model::{Cause, Span, SpanId};

/// Wall time per stage of an analysis run, in the order the stages ran (a stage that
/// runs in pieces, such as the per-trace critical paths, is summed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stages(pub Vec<(&'static str, std::time::Duration)>);

impl Stages {
    /// Adds `d` to stage `name`.
    pub fn add(&mut self, name: &'static str, d: std::time::Duration) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, t)) => *t += d,
            None => self.0.push((name, d)),
        }
    }

    /// Adds the time since `*since` to `name` and restarts the clock.
    pub fn lap(&mut self, name: &'static str, since: &mut std::time::Instant) {
        let now = std::time::Instant::now();
        self.add(name, now - *since);
        *since = now;
    }
}

/// Metric series used as corroborating evidence, looked up by time (canonical GPU /
/// inference-server series such as `inference.kv_cache.usage`, counters as `*.rate`),
/// matched to a span's `server.address` where the source can. `tailscope-analysis`'s
/// `Metrics` reads them from the store.
pub trait MetricSource {
    /// The value of series `name` at `t` for a span's server, if known.
    fn at(&self, name: &str, server: Option<&str>, t: i64) -> Option<f64>;
    /// Increase over `[from, to]` of a counter read as a per-second rate series.
    fn increase(&self, name: &str, server: Option<&str>, from: i64, to: i64) -> Option<f64>;
    /// The largest value of series `name` among its points sampled within
    /// `[from, to]` (their own times, not values carried forward); `None` when no point
    /// lies there. A source that cannot say when its values were read answers with the
    /// largest of its values as of `from`, the middle and `to`.
    fn max_within(&self, name: &str, server: Option<&str>, from: i64, to: i64) -> Option<f64> {
        [from, from + (to - from) / 2, to]
            .into_iter()
            .filter_map(|t| self.at(name, server, t))
            .reduce(f64::max)
    }
}

/// No metric evidence: every lookup is unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl MetricSource for NoMetrics {
    fn at(&self, _: &str, _: Option<&str>, _: i64) -> Option<f64> {
        None
    }

    fn increase(&self, _: &str, _: Option<&str>, _: i64, _: i64) -> Option<f64> {
        None
    }
}

/// The trees of `spans`' traces, in trace id order. Spans in trace order (as a store
/// reads them) are moved once, into their trees' nodes; others are first put in that
/// order (stably: a trace's spans keep their order).
fn trees_by_trace(mut spans: Vec<Span>) -> Vec<Tree> {
    if !spans.windows(2).all(|w| w[0].trace_id <= w[1].trace_id) {
        spans.sort_by_key(|s| s.trace_id);
    }
    let runs: Vec<usize> = spans
        .chunk_by(|a, b| a.trace_id == b.trace_id)
        .map(<[Span]>::len)
        .collect();
    let mut rest = spans.into_iter();
    runs.into_iter()
        .map(|n| Tree::build_from(rest.by_ref().take(n)))
        .collect()
}

/// A conversation id reached through a span link applies to the linking span's
/// subtree (async sub-agents linked to the span that started them).
fn adopt_linked_conversations(trees: &mut [Tree]) {
    // the spans linked to from a span without a conversation (few, often none): only
    // their conversations are looked up
    let wanted: HashSet<SpanId> = trees
        .iter()
        .flat_map(|t| t.nodes.iter())
        .filter(|n| n.span.promoted.conversation_id.is_none())
        .flat_map(|n| n.span.links.iter().map(|l| l.span_id))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let known: HashMap<SpanId, String> = trees
        .iter()
        .flat_map(|t| t.nodes.iter())
        .filter(|n| wanted.contains(&n.span.span_id))
        .filter_map(|n| Some((n.span.span_id, n.span.promoted.conversation_id.clone()?)))
        .collect();
    for tree in trees.iter_mut() {
        let adopt: Vec<(usize, String)> = tree
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.span.promoted.conversation_id.is_none())
            .filter_map(|(i, n)| {
                n.span
                    .links
                    .iter()
                    .find_map(|l| known.get(&l.span_id))
                    .map(|c| (i, c.clone()))
            })
            .collect();
        for (i, c) in adopt {
            tree.adopt_conversation(i, &c);
        }
    }
}

/// One LLM call row of the store (or a batch) for the latency model: the call, its
/// duration, time to first token, server address and source (see
/// [`calls::source_key`]).
pub type CallRow = (evict::LlmCall, f64, Option<f64>, String, String);

/// What each source sends, counted over call rows.
pub fn sources_of(rows: &[CallRow]) -> calls::Sources {
    let mut out = calls::Sources::default();
    for r in rows {
        out.observe(r.4.clone(), r.0.cache_read_tokens.is_some());
    }
    out
}

/// The latency model over call rows: what each source sends, then the fits, with
/// cache reads a source leaves out read as zero.
pub fn fit_rows(rows: &mut [CallRow]) -> latency::LatencyModel {
    let sources = sources_of(rows);
    for r in rows.iter_mut() {
        if r.0.cache_read_tokens.is_none() && sources.sends_cache_reads(&r.4) {
            r.0.cache_read_tokens = Some(0);
            r.0.cache_read_inferred = true;
        }
    }
    let mut model = latency::LatencyModel::fit(&samples_of(rows));
    model.sources = sources;
    model
}

/// Latency-model samples from call rows (the store's, or a batch's), with the cached
/// prefix a caching provider would have served where calls report no cache reads.
pub fn samples_of(rows: &[CallRow]) -> Vec<latency::Sample> {
    let calls: Vec<evict::LlmCall> = rows.iter().map(|r| r.0.clone()).collect();
    let assumed = evict::assumed_prefixes(&calls);
    rows.iter()
        .map(|(c, duration_ns, ttft_ns, server, _)| {
            let read = c.cache_read_tokens;
            latency::Sample {
                model: c.model.clone(),
                server: server.clone(),
                uncached_tokens: calls::uncached_tokens(c.input_tokens, read) as f64,
                assumed_uncached_tokens: read.is_none().then(|| {
                    calls::uncached_tokens(c.input_tokens, assumed.get(&c.span_id).copied()) as f64
                }),
                input_tokens: c.input_tokens as f64,
                output_tokens: c.output_tokens as f64,
                ttft_ns: *ttft_ns,
                duration_ns: *duration_ns,
            }
        })
        .collect()
}

/// Per-trace analysis of complete traces (any order): results and findings, and how
/// many evictions were detected. `model` is the latency model fitted over the store's
/// calls; `None` fits it over these traces.
pub fn compute(
    spans: Vec<Span>,
    metrics: &dyn MetricSource,
    model: Option<&latency::LatencyModel>,
    tools: Option<&findings::ToolBaseline>,
    stages: &mut Stages,
) -> (Vec<TraceResult>, Vec<Finding>, usize) {
    let mut clock = std::time::Instant::now();
    let mut trees: Vec<Tree> = trees_by_trace(spans);
    adopt_linked_conversations(&mut trees);
    stages.lap("trees", &mut clock);
    // (calls, wrappers) of each tree, found once
    let shapes: Vec<(Vec<calls::Call>, Vec<usize>)> = trees.iter().map(calls::calls).collect();
    let call_lists: Vec<&Vec<calls::Call>> = shapes.iter().map(|s| &s.0).collect();
    let own_sources;
    let sources = if let Some(m) = model {
        &m.sources
    } else {
        own_sources = calls::Sources::of_trees(
            trees
                .iter()
                .zip(&call_lists)
                .map(|(t, cs)| (t, cs.as_slice())),
        );
        &own_sources
    };
    let mut llm_calls: Vec<evict::LlmCall> = trees
        .iter()
        .zip(&call_lists)
        .flat_map(|(t, cs)| evict::llm_calls(t, cs, sources))
        .collect();
    let assumed = evict::assumed_prefixes(&llm_calls);
    let own_model;
    let model = if let Some(m) = model {
        m
    } else {
        let samples: Vec<latency::Sample> = trees
            .iter()
            .zip(&call_lists)
            .flat_map(|(t, cs)| {
                cs.iter()
                    .filter_map(|c| {
                        calls::sample_with(
                            t,
                            c,
                            assumed.get(&t.nodes[c.node].span.span_id).copied(),
                            sources,
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut m = latency::LatencyModel::fit(&samples);
        m.sources = sources.clone();
        own_model = m;
        &own_model
    };
    // prefill rates, now that the model is known
    let index: HashMap<SpanId, usize> = llm_calls
        .iter()
        .enumerate()
        .map(|(k, c)| (c.span_id, k))
        .collect();
    for (t, cs) in trees.iter().zip(&call_lists) {
        for c in *cs {
            if let Some(&k) = index.get(&t.nodes[c.node].span.span_id) {
                let lc = &llm_calls[k];
                let uncached = calls::uncached_tokens(lc.input_tokens, lc.cache_read_tokens);
                llm_calls[k].prefill_rate = evict::prefill_rate(t, c, uncached, model);
            }
        }
    }
    stages.lap("llm calls + latency model", &mut clock);
    let mut evictions: HashMap<SpanId, evict::Eviction> = evict::detect(&llm_calls);
    // cost each eviction from its call's own timing where the model allows
    for (t, cs) in trees.iter().zip(&call_lists) {
        for c in *cs {
            if let Some(e) = evictions.get_mut(&t.nodes[c.node].span.span_id) {
                if let Some((cost, beyond, method, low)) = evict::measured_cost(t, c, model, e) {
                    e.cost_ns = cost.min(t.nodes[c.node].span.duration_ns());
                    e.cost_low_ns = low.min(e.cost_ns);
                    e.unexplained_ns = beyond.min(e.cost_ns);
                    e.cost_method = method;
                    e.prefill_ns_per_token = cost as f64 / e.evicted_tokens.max(1) as f64;
                }
            }
        }
    }
    stages.lap("evictions", &mut clock);
    let at = |n: &str, server: Option<&str>, t: i64| metrics.at(n, server, t);
    let inc = |n: &str, server: Option<&str>, a: i64, b: i64| metrics.increase(n, server, a, b);
    let own_tools;
    let tools = if let Some(t) = tools {
        t
    } else {
        own_tools =
            findings::ToolBaseline::from_durations(trees.iter().flat_map(findings::tool_durations));
        &own_tools
    };
    let ctx = findings::Context {
        evictions: &evictions,
        metric_at: &at,
        metric_increase: &inc,
        tools,
    };
    let mut results = Vec::with_capacity(trees.len());
    let mut all_findings = Vec::new();
    for (tree, (cs, wrappers)) in trees.iter().zip(shapes) {
        let shape = causes::Shape::from_calls(cs, wrappers, &evictions, model, &assumed)
            .with_metrics(metrics);
        stages.lap("causes", &mut clock);
        let path = critical::critical_path(tree);
        stages.lap("critical paths", &mut clock);
        let sections = causes::assign(tree, &path, &shape);
        stages.lap("causes", &mut clock);
        all_findings.extend(findings::find(tree, &sections, &shape, &ctx));
        stages.lap("findings", &mut clock);
        results.push(TraceResult::new(tree, &sections, &shape));
        stages.lap("trace results", &mut clock);
    }
    (results, all_findings, evictions.len())
}

/// Sum of a trace's per-cause time (equals its critical path length).
pub fn total(by_cause: &BTreeMap<Cause, i64>) -> i64 {
    by_cause.values().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::span;
    use tailscope_model::{Link, TraceId};

    /// pydantic-ai leaves `cache_read.input_tokens` out when it is 0: a source that
    /// sends cache reads on its other calls and omits them here read zero, so the
    /// evicted turn is found (inferred, the rule named), and the first turn, with
    /// nothing cached, is not.
    #[test]
    fn a_cache_read_a_source_leaves_out_is_zero() {
        let ms = 1_000_000i64;
        let turns: [(i64, Option<i64>); 5] = [
            (1000, None),
            (1600, Some(1088)),
            (2200, Some(1696)),
            (2800, None), // evicted: nothing read, and the source leaves the 0 out
            (3400, Some(2896)),
        ];
        let mut spans = Vec::new();
        for (k, (input, read)) in turns.iter().enumerate() {
            let k8 = k as u8 + 1;
            let t0 = k as i64 * 2_000 * ms;
            let uncached = input - read.unwrap_or(if k == 3 { 0 } else { *input });
            let ttft = 20 * ms + uncached * ms / 10;
            let mut root = span(10 * k8, None, t0, t0 + ttft + 500 * ms);
            root.trace_id = TraceId([k8; 16]);
            root.promoted.conversation_id = Some("c".into());
            let mut call = span(10 * k8 + 1, Some(10 * k8), t0 + ms, t0 + ttft + 400 * ms);
            call.trace_id = TraceId([k8; 16]);
            call.promoted.op_class = tailscope_model::OpClass::Llm;
            call.kind = tailscope_model::SpanKind::Client;
            call.promoted.model = Some("m".into());
            call.promoted.input_tokens = Some(*input);
            call.promoted.output_tokens = Some(100);
            call.promoted.cache_read_tokens = *read;
            call.promoted.time_to_first_chunk_ns = Some(ttft);
            spans.push(root);
            spans.push(call);
        }
        let (_, findings, evictions) =
            compute(spans, &NoMetrics, None, None, &mut Stages::default());
        assert_eq!(evictions, 1, "{findings:#?}");
        let f = findings
            .iter()
            .find(|f| f.kind == "kv_eviction")
            .expect("the evicted turn");
        assert_eq!(f.trace_id, TraceId([4; 16]).to_hex());
        assert_eq!(f.evidence_level, tailscope_model::Evidence::Inferred);
        assert!(
            f.evidence["cache_reads"]
                .as_str()
                .is_some_and(|s| s.contains("read as zero")),
            "{}",
            f.evidence
        );
    }

    /// An async sub-agent's trace, linked to the span that started it, belongs to that
    /// span's conversation (inherited there from the agent span above it).
    #[test]
    fn a_linked_trace_takes_the_conversation_of_the_span_it_links_to() {
        let mut agent = span(1, None, 0, 100);
        agent.promoted.conversation_id = Some("c-7".into());
        let caller = span(2, Some(1), 10, 20);
        let mut job = span(3, None, 30, 90);
        job.trace_id = TraceId([2; 16]);
        job.links.push(Link {
            trace_id: TraceId([1; 16]),
            span_id: caller.span_id,
            trace_state: String::new(),
            attributes: vec![],
        });
        let mut step = span(4, Some(3), 40, 80);
        step.trace_id = TraceId([2; 16]);
        let (results, _, _) = compute(
            vec![agent, caller, job, step],
            &NoMetrics,
            None,
            None,
            &mut Stages::default(),
        );
        let job = results
            .iter()
            .find(|t| t.trace_id == TraceId([2; 16]).to_hex())
            .unwrap();
        assert_eq!(job.conversation_id.as_deref(), Some("c-7"));
        assert!(
            job.spans
                .iter()
                .all(|s| s.conversation_id.as_deref() == Some("c-7")),
            "{:?}",
            job.spans
        );
    }
}
