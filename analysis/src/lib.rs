//! Why is the p99 slow? Latency trees, critical paths, causes, tail attribution and
//! findings over every trace in the store.
//!
//! [`Tree`] rebuilds a trace (orphans, clock skew); [`critical::critical_path`] walks
//! it as Jaeger UI does, plus agent rules; [`causes::assign`] gives every critical-path
//! section one [`Cause`]; [`evict`] detects KV-cache evictions across a conversation's
//! turns; [`tail`] compares the tail cohort with the median band; [`findings`] names
//! problems with evidence. [`analyze_store`] runs it all and returns a [`Report`]
//! (JSON per design.md, or text).

pub mod causes;
pub mod critical;
pub mod evict;
pub mod findings;
mod persist;
mod report;
pub mod tables;
pub mod tail;
pub mod tree;

#[cfg(test)]
mod testutil;

pub use findings::Finding;
pub use persist::{analyze_and_store, RunStats};
pub use report::{OperationGap, Report, SpanStat, TraceResult};
pub use tree::Tree;

use std::collections::{BTreeMap, HashMap};
use tailscope_model::{Cause, Span, SpanId};
use tailscope_store::{Store, StoreError};

/// Errors of analysis.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("polars: {0}")]
    Polars(String),
    #[error("the percentile must be between 1 and 100, got {0}")]
    Percentile(f64),
}

/// Options of an analysis run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The tail percentile (default 99).
    pub percentile: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self { percentile: 99.0 }
    }
}

/// Metric series used as corroborating evidence, looked up by time.
#[derive(Debug, Default)]
pub struct Metrics {
    series: HashMap<String, Vec<(i64, f64)>>,
}

/// Names whose aliases are read as one series.
const METRIC_ALIASES: &[(&str, &[&str])] = &[
    (
        "vllm:kv_cache_usage_perc",
        &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    ),
    (
        "vllm:num_preemptions",
        &["vllm:num_preemptions", "vllm:num_preemptions_total"],
    ),
    ("vllm:num_requests_running", &["vllm:num_requests_running"]),
    ("vllm:num_requests_waiting", &["vllm:num_requests_waiting"]),
    (
        "db.client.connection.pending_requests",
        &["db.client.connection.pending_requests"],
    ),
];

impl Metrics {
    pub fn load(store: &Store, from_ns: i64, to_ns: i64) -> Result<Self, StoreError> {
        let mut series = HashMap::new();
        for (name, aliases) in METRIC_ALIASES {
            let mut pts = Vec::new();
            for a in *aliases {
                pts.extend(
                    store
                        .metric_series(a, from_ns, to_ns)?
                        .into_iter()
                        .map(|p| (p.time_ns, p.value)),
                );
            }
            pts.sort_by_key(|p| p.0);
            if !pts.is_empty() {
                series.insert((*name).to_owned(), pts);
            }
        }
        Ok(Self { series })
    }

    /// The last value at or before `t` (within 15 s).
    pub fn at(&self, name: &str, t: i64) -> Option<f64> {
        let s = self.series.get(name)?;
        let i = s.partition_point(|p| p.0 <= t);
        let p = s.get(i.checked_sub(1)?)?;
        (t - p.0 <= 15_000_000_000).then_some(p.1)
    }

    /// Increase of a cumulative series over `[from, to]`.
    pub fn increase(&self, name: &str, from: i64, to: i64) -> Option<f64> {
        let s = self.series.get(name)?;
        let a = s.iter().find(|p| p.0 >= from)?;
        let b = s.iter().rev().find(|p| p.0 <= to)?;
        (b.0 >= a.0).then(|| (b.1 - a.1).max(0.0))
    }
}

fn group_by_trace(spans: Vec<Span>) -> Vec<Vec<Span>> {
    let mut map: BTreeMap<tailscope_model::TraceId, Vec<Span>> = BTreeMap::new();
    for s in spans {
        map.entry(s.trace_id).or_default().push(s);
    }
    map.into_values().collect()
}

/// Per-trace analysis of complete traces (any order): results and findings, and how
/// many evictions were detected.
pub(crate) fn compute(
    spans: Vec<Span>,
    metrics: &Metrics,
) -> (Vec<TraceResult>, Vec<Finding>, usize) {
    let trees: Vec<Tree> = group_by_trace(spans).into_iter().map(Tree::build).collect();
    let calls: Vec<evict::LlmCall> = trees.iter().flat_map(evict::llm_calls).collect();
    let evictions: HashMap<SpanId, causes::Eviction> = evict::detect(&calls);
    let at = |n: &str, t: i64| metrics.at(n, t);
    let inc = |n: &str, a: i64, b: i64| metrics.increase(n, a, b);
    let ctx = findings::Context {
        evictions: &evictions,
        metric_at: &at,
        metric_increase: &inc,
    };
    let mut results = Vec::with_capacity(trees.len());
    let mut all_findings = Vec::new();
    for tree in &trees {
        let path = critical::critical_path(tree);
        let sections = causes::assign(tree, &path, &evictions);
        all_findings.extend(findings::find(tree, &sections, &ctx));
        results.push(TraceResult::new(tree, &sections));
    }
    (results, all_findings, evictions.len())
}

/// Primary causes and the tail over all traces; findings by estimated saving.
pub(crate) fn finish(
    mut results: Vec<TraceResult>,
    mut all_findings: Vec<Finding>,
    opts: Options,
) -> Result<Report, AnalysisError> {
    if !(opts.percentile > 0.0 && opts.percentile <= 100.0) {
        return Err(AnalysisError::Percentile(opts.percentile));
    }
    let times: Vec<tail::TraceTimes<'_>> = results
        .iter()
        .map(|r| tail::TraceTimes {
            duration_ns: r.duration_ns,
            group: &r.group,
            by_cause: &r.by_cause_ns,
        })
        .collect();
    let primary = tail::primary_causes(&times);
    let tail = tail::tail(&times, opts.percentile);
    drop(times);
    for (r, p) in results.iter_mut().zip(primary) {
        r.primary_cause = p;
    }
    all_findings.sort_by(|a, b| {
        b.estimated_cost_ns
            .cmp(&a.estimated_cost_ns)
            .then(a.trace_id.cmp(&b.trace_id))
            .then(a.span_id.cmp(&b.span_id))
            .then(a.kind.cmp(&b.kind))
    });
    let evictions = all_findings
        .iter()
        .filter(|f| f.kind == "kv_eviction")
        .count();
    Ok(Report {
        traces: results,
        tail,
        findings: all_findings,
        evictions,
        by_operation: Vec::new(),
        tables: None,
    })
}

/// Analyses spans of complete traces (any order) with optional metric evidence.
pub fn analyze_spans(
    spans: Vec<Span>,
    metrics: &Metrics,
    opts: Options,
) -> Result<Report, AnalysisError> {
    if !(opts.percentile > 0.0 && opts.percentile <= 100.0) {
        return Err(AnalysisError::Percentile(opts.percentile));
    }
    let (mut results, findings, _) = compute(spans, metrics);
    results.sort_by(|a, b| a.trace_id.cmp(&b.trace_id));
    finish(results, findings, opts)
}

/// Loads every trace (and the metrics around them) from the store and analyses them.
pub fn analyze_store(store: &Store, opts: Options) -> Result<Report, AnalysisError> {
    let spans = store.load_spans(None)?;
    let from = spans.iter().map(|s| s.start_ns).min().unwrap_or(0) - 60_000_000_000;
    let to = spans.iter().map(|s| s.end_ns).max().unwrap_or(0) + 60_000_000_000;
    let metrics = Metrics::load(store, from, to)?;
    analyze_spans(spans, &metrics, opts)
}

/// Sum of a trace's per-cause time (equals its critical path length).
pub fn total(by_cause: &BTreeMap<Cause, i64>) -> i64 {
    by_cause.values().sum()
}
