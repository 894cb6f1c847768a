//! Metric data points and log records.

use crate::{Attribute, SpanId, TraceId};
use serde::{Deserialize, Serialize};

/// OTLP metric data kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum => "sum",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// Aggregation temporality of sums and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Temporality {
    Unspecified,
    Delta,
    Cumulative,
}

impl Temporality {
    pub fn from_otlp(n: i32) -> Option<Self> {
        Some(match n {
            0 => Temporality::Unspecified,
            1 => Temporality::Delta,
            2 => Temporality::Cumulative,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Temporality::Unspecified => "unspecified",
            Temporality::Delta => "delta",
            Temporality::Cumulative => "cumulative",
        }
    }
}

/// A sample measurement tied to a trace, attached to a histogram or sum point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    pub time_ns: i64,
    pub value: f64,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub attributes: Vec<Attribute>,
}

/// One metric data point, flattened with its metric's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub resource_id: i64,
    pub service_name: String,
    pub scope_name: String,
    pub name: String,
    pub description: String,
    pub unit: String,
    pub kind: MetricKind,
    pub temporality: Temporality,
    pub monotonic: bool,
    pub start_ns: i64,
    pub time_ns: i64,
    pub attributes: Vec<Attribute>,
    /// Gauge/sum value; histogram/summary: none.
    pub value: Option<f64>,
    pub count: Option<u64>,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Histogram buckets: `bucket_counts.len() == explicit_bounds.len() + 1`.
    pub bucket_counts: Vec<u64>,
    pub explicit_bounds: Vec<f64>,
    /// Summary quantiles as (quantile, value).
    pub quantiles: Vec<(f64, f64)>,
    pub exemplars: Vec<Exemplar>,
}

impl MetricPoint {
    /// A point of metric `name` at `time_ns` with no value, no histogram or summary
    /// parts and empty metadata; callers fill the rest with struct-update syntax.
    pub fn at(
        resource_id: i64,
        service_name: &str,
        name: &str,
        unit: &str,
        kind: MetricKind,
        time_ns: i64,
    ) -> Self {
        Self {
            resource_id,
            service_name: service_name.to_owned(),
            scope_name: String::new(),
            name: name.to_owned(),
            description: String::new(),
            unit: unit.to_owned(),
            kind,
            temporality: Temporality::Unspecified,
            monotonic: false,
            start_ns: 0,
            time_ns,
            attributes: Vec::new(),
            value: None,
            count: None,
            sum: None,
            min: None,
            max: None,
            bucket_counts: Vec::new(),
            explicit_bounds: Vec::new(),
            quantiles: Vec::new(),
            exemplars: Vec::new(),
        }
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub resource_id: i64,
    pub service_name: String,
    pub scope_name: String,
    pub time_ns: i64,
    pub observed_ns: i64,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: String,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub event_name: String,
    pub attributes: Vec<Attribute>,
}
