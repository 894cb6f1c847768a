//! Why is the p99 slow? Latency trees, critical paths, causes, tail attribution and
//! findings over every trace in the store.
//!
//! The pure part (trees, critical paths, causes, evictions, tail, findings, per-trace
//! results) is `tailscope-analysis-core`, re-exported here under the same paths. This
//! crate adds the IO: [`Metrics`] from the store, [`analyze_store`] runs it all and
//! returns a [`Report`] (JSON per design.md, or text); incremental runs persisted to
//! the store ([`analyze_and_store`]); [`export::export`] writes the results as Parquet
//! with a README and a ready-to-run notebook. Over the stored results, [`compare`]
//! says what the slow traces share (attribute values over-represented in the tail),
//! [`diff`] what changed between two periods or stores (with confidence intervals and
//! a headline) and [`tenant`] shows traffic, tokens and tail share per tenant; their
//! results are plain serde structs for the CLI and the GUI alike.

pub mod compare;
pub mod diff;
pub mod export;
pub mod json;
mod notebook;
mod persist;
mod report;
pub mod stored;
pub mod tables;
pub mod tenant;
pub mod update;
pub mod whatif;

pub use persist::analyze_and_store;
pub use report::{OperationGap, OperationSums, Report};
pub use stored::{load_report, load_report_with};
pub use tailscope_analysis_core::{
    calls, causes, critical, evict, findings, latency, stats, tail, tree,
};
pub use tailscope_analysis_core::{
    parse_cause_evidence, samples_of, total, CauseEvidence, Finding, MetricSource, NoMetrics,
    Section, SpanStat, Stages, TraceResult, Tree,
};
pub use update::{update, Progress, RunStats};

use std::collections::{BTreeMap, HashMap};
use tailscope_analysis_core::compute;
use tailscope_model::{Cause, Span};
use tailscope_store::{Store, StoreError};

/// Errors of analysis.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the percentile must be between 1 and 100, got {0}")]
    Percentile(f64),
    #[error("{0}")]
    BadInput(String),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

impl From<tailscope_store::query::QueryError> for AnalysisError {
    fn from(e: tailscope_store::query::QueryError) -> Self {
        use tailscope_store::query::QueryError;
        match e {
            QueryError::Store(s) => AnalysisError::Store(s),
            QueryError::NotFound(m) | QueryError::BadInput(m) => AnalysisError::BadInput(m),
        }
    }
}

/// The cause of each of the store's cause columns (`CAUSE_COLUMNS`), parsed once.
static COLUMN_CAUSES: std::sync::LazyLock<Vec<Option<Cause>>> = std::sync::LazyLock::new(|| {
    tailscope_store::CAUSE_COLUMNS
        .iter()
        .map(|n| Cause::parse(n))
        .collect()
});

/// Per-cause time from the store's cause columns (the non-zero ones).
pub(crate) fn cause_map(columns: &[i64; Cause::COUNT]) -> BTreeMap<Cause, i64> {
    COLUMN_CAUSES
        .iter()
        .zip(columns)
        .filter(|(_, v)| **v != 0)
        .filter_map(|(c, v)| Some(((*c)?, *v)))
        .collect()
}

/// Per-cause time as the store's cause columns.
pub(crate) fn cause_columns(m: &BTreeMap<Cause, i64>) -> [i64; Cause::COUNT] {
    let mut out = [0; Cause::COUNT];
    for (slot, c) in out.iter_mut().zip(COLUMN_CAUSES.iter()) {
        if let Some(c) = c {
            *slot = m.get(c).copied().unwrap_or(0);
        }
    }
    out
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

impl Options {
    /// Refuses a percentile outside (0, 100].
    pub fn check(&self) -> Result<(), AnalysisError> {
        if self.percentile > 0.0 && self.percentile <= 100.0 {
            Ok(())
        } else {
            Err(AnalysisError::Percentile(self.percentile))
        }
    }
}

/// Metric series used as corroborating evidence, looked up by time: the store's
/// canonical GPU / inference-server series (`inference.kv_cache.usage`,
/// `inference.requests.waiting`, counters as `*.rate`, from any source name), matched
/// to a span's `server.address` when it resolves to hosts, plus other named series.
#[derive(Debug, Default)]
pub struct Metrics {
    canonical: HashMap<String, Vec<tailscope_store::AlignedSeries>>,
    series: HashMap<String, Vec<(i64, f64)>>,
    hosts: HashMap<String, Vec<String>>,
}

/// Non-GPU series read by name.
const OTHER_SERIES: &[&str] = &["db.client.connection.pending_requests"];

/// How far back a value is carried forward.
const STALE_NS: i64 = 15_000_000_000;

impl Metrics {
    pub fn load(store: &Store, from_ns: i64, to_ns: i64) -> Result<Self, StoreError> {
        let mut canonical: HashMap<String, Vec<tailscope_store::AlignedSeries>> = HashMap::new();
        // Look back so values and counter rates are known at the window's start.
        for s in store.canonical_series(from_ns.saturating_sub(60_000_000_000), to_ns, &[])? {
            canonical.entry(s.canonical.clone()).or_default().push(s);
        }
        let mut series = HashMap::new();
        for name in OTHER_SERIES {
            let pts: Vec<(i64, f64)> = store
                .metric_series(name, from_ns, to_ns)?
                .into_iter()
                .map(|p| (p.time_ns, p.value))
                .collect();
            if !pts.is_empty() {
                series.insert((*name).to_owned(), pts);
            }
        }
        let hosts = store.address_hosts(from_ns, to_ns)?;
        Ok(Self {
            canonical,
            series,
            hosts,
        })
    }

    /// Canonical series of `name` for a span's server: those of the hosts behind the
    /// address when any match, else all of them.
    fn matching(
        &self,
        name: &str,
        server: Option<&str>,
    ) -> Option<Vec<&tailscope_store::AlignedSeries>> {
        let all = self.canonical.get(name)?;
        let hosts = server
            .and_then(|a| self.hosts.get(a))
            .filter(|h| !h.is_empty());
        let picked: Vec<_> = match hosts {
            Some(h) => all
                .iter()
                .filter(|s| s.host.as_ref().is_some_and(|x| h.contains(x)))
                .collect(),
            None => Vec::new(),
        };
        Some(if picked.is_empty() {
            all.iter().collect()
        } else {
            picked
        })
    }

    /// The last value at or before `t` (within 15 s); the largest over matching series.
    pub fn at(&self, name: &str, server: Option<&str>, t: i64) -> Option<f64> {
        let last = |s: &[(i64, f64)]| {
            let i = s.partition_point(|p| p.0 <= t);
            let p = s.get(i.checked_sub(1)?)?;
            (t - p.0 <= STALE_NS).then_some(p.1)
        };
        if let Some(series) = self.matching(name, server) {
            return series
                .iter()
                .filter_map(|s| last(&s.points))
                .reduce(f64::max);
        }
        last(self.series.get(name)?)
    }

    /// Increase over `[from, to]` of a counter read as a per-second rate series (the
    /// integral of the rate), summed over matching series.
    pub fn increase(&self, name: &str, server: Option<&str>, from: i64, to: i64) -> Option<f64> {
        let series = self.matching(name, server)?;
        let mut total = None;
        for s in series {
            for w in s.points.windows(2) {
                let (a, b) = (w[0].0.max(from), w[1].0.min(to));
                if b > a {
                    *total.get_or_insert(0.0) += w[1].1 * (b - a) as f64 / 1e9;
                }
            }
        }
        total
    }
}

impl MetricSource for Metrics {
    fn at(&self, name: &str, server: Option<&str>, t: i64) -> Option<f64> {
        Metrics::at(self, name, server, t)
    }

    fn max_within(&self, name: &str, server: Option<&str>, from: i64, to: i64) -> Option<f64> {
        let within = |s: &[(i64, f64)]| {
            let lo = s.partition_point(|p| p.0 < from);
            let hi = s.partition_point(|p| p.0 <= to);
            s[lo..hi.max(lo)].iter().map(|p| p.1).reduce(f64::max)
        };
        match self.matching(name, server) {
            Some(series) => series
                .iter()
                .filter_map(|s| within(&s.points))
                .reduce(f64::max),
            None => within(self.series.get(name)?),
        }
    }

    fn increase(&self, name: &str, server: Option<&str>, from: i64, to: i64) -> Option<f64> {
        Metrics::increase(self, name, server, from, to)
    }
}

/// Primary causes and the tail over all traces; findings by estimated saving.
pub(crate) fn finish(
    results: Vec<TraceResult>,
    all_findings: Vec<Finding>,
    opts: Options,
) -> Result<Report, AnalysisError> {
    opts.check()?;
    Ok(report_of(results, all_findings, opts.percentile, true))
}

/// The report over `traces`: the tail at `percentile`, findings by estimated saving,
/// and, when `judge_primary`, every trace's primary cause (else as given).
pub(crate) fn report_of(
    mut traces: Vec<TraceResult>,
    mut findings: Vec<Finding>,
    percentile: f64,
    judge_primary: bool,
) -> Report {
    let times: Vec<tail::TraceTimes<'_>> = traces
        .iter()
        .map(|r| tail::TraceTimes {
            duration_ns: r.duration_ns,
            group: &r.group,
            by_cause: &r.by_cause_ns,
            output_tokens: r.output_tokens,
            uncached_tokens: r.uncached_tokens,
        })
        .collect();
    let primary = judge_primary.then(|| tail::primary_causes(&times));
    let tail = tail::tail(&times, percentile);
    drop(times);
    if let Some(primary) = primary {
        for (r, p) in traces.iter_mut().zip(primary) {
            r.set_primary(p);
        }
    }
    findings.sort_by(|a, b| {
        b.estimated_cost_ns
            .cmp(&a.estimated_cost_ns)
            .then(a.trace_id.cmp(&b.trace_id))
            .then(a.span_id.cmp(&b.span_id))
            .then(a.kind.cmp(&b.kind))
    });
    let evictions = findings.iter().filter(|f| f.kind == "kv_eviction").count();
    Report {
        traces,
        tail,
        findings,
        evictions,
        by_operation: Vec::new(),
        tables: None,
    }
}

/// Analyses spans of complete traces (any order) with optional metric evidence.
pub fn analyze_spans(
    spans: Vec<Span>,
    metrics: &Metrics,
    opts: Options,
) -> Result<Report, AnalysisError> {
    opts.check()?;
    let (mut results, findings, _) = compute(spans, metrics, None, None, &mut Stages::default());
    results.sort_by(|a, b| a.trace_id.cmp(&b.trace_id));
    finish(results, findings, opts)
}

/// Loads every trace (and the metrics around them) from the store and analyses them.
pub fn analyze_store(store: &Store, opts: Options) -> Result<Report, AnalysisError> {
    let spans = store.load_spans(tailscope_store::Traces::All)?;
    let from = spans.iter().map(|s| s.start_ns).min().unwrap_or(0) - 60_000_000_000;
    let to = spans.iter().map(|s| s.end_ns).max().unwrap_or(0) + 60_000_000_000;
    let metrics = Metrics::load(store, from, to)?;
    analyze_spans(spans, &metrics, opts)
}
