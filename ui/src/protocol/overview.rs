//! The overview: counts, percentiles, cohorts, findings, and what the slow traces share.

use tailscope_model::{Cause, CauseSet, Evidence};

/// Mean per-cause critical time of one cohort of traces.
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    pub name: String,
    pub traces: u64,
    pub mean_by_cause_ns: Vec<(Cause, f64)>,
}

/// One finding, with the span it points at.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingVm {
    pub kind: String,
    pub summary: String,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: Option<String>,
    pub cost_ns: i64,
    /// How the finding is known (`None` for results stored before evidence levels).
    pub evidence_level: Option<Evidence>,
    /// Other causes that explain it about as well (an ambiguous finding).
    pub alternatives: CauseSet,
}

/// The overview: counts, percentiles, tail attribution, distribution, findings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overview {
    pub store: String,
    pub spans: u64,
    pub traces: u64,
    pub metric_points: u64,
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub cohorts: Vec<Cohort>,
    /// (low ms, high ms, traces).
    pub histogram: Vec<(f64, f64, u64)>,
    /// (ms, fraction of traces at or below).
    pub cdf: Vec<[f64; 2]>,
    pub findings: Vec<FindingVm>,
    /// The slowest trace (an example of the tail).
    pub slowest_trace: Option<String>,
    /// What the slow traces share (`tailscope compare`), most telling first.
    pub shared: Option<SharedValues>,
}

/// One operation of "what would move the p99 most" (`tailscope whatif --rank`): the
/// change of the percentile if it alone were 50% faster, with its 95% interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FixFirstVm {
    /// `service · span name`.
    pub operation: String,
    pub p_change_ns: i64,
    pub ci_ns: (i64, i64),
}

/// The tail against the median band, attribute value by attribute value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SharedValues {
    pub percentile: f64,
    pub tail_traces: u64,
    pub baseline_traces: u64,
    pub values: Vec<SharedValueVm>,
}

/// One attribute value over-represented in the tail.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SharedValueVm {
    pub key: String,
    pub value: String,
    /// Share of tail traces that have it (0..=1).
    pub tail_share: f64,
    /// Share of median-band traces that have it (0..=1).
    pub baseline_share: f64,
    pub lift: f64,
    pub tail_traces: u64,
    /// Excess time over the p50 it explains.
    pub excess_ns: i64,
    /// Its share of the tail's whole excess beyond the values above it (0..=1).
    pub score: f64,
    /// Other `key=value`s that mark the same traces.
    pub same: Vec<String>,
}
