//! The OpenTelemetry Collector ClickHouse exporter's metric tables
//! (`otel_metrics_gauge`, `otel_metrics_sum`, `otel_metrics_histogram`) read in a
//! time window, as model metric points: the inference server's gauges and counters
//! that analysis takes as evidence (requests waiting, prefix-cache hits, ...).
//! Attribute values come back typed as their text says (see `otel_traces`); a
//! histogram's min and max, which the exporter writes as 0 when a point has none, are
//! read as absent when both are 0. Some versions of the exporter keep a sum's times as
//! `DateTime` (whole seconds): they read back at that precision.

use crate::clickhouse::{ClickHouse, ClickHouseError};
use crate::otel_export::typed;
use crate::rowbinary::{Reader, Truncated};
use std::collections::HashSet;
use tailscope_model::{
    Attribute, Batch, MetricKind, MetricPoint, Rejections, Resource, Temporality,
};

/// The three tables and what each adds to the common columns.
const TABLES: [(&str, MetricKind); 3] = [
    ("otel_metrics_gauge", MetricKind::Gauge),
    ("otel_metrics_sum", MetricKind::Sum),
    ("otel_metrics_histogram", MetricKind::Histogram),
];

fn select(table: &str, kind: MetricKind, from_ns: i64, to_ns: i64) -> String {
    let extra = match kind {
        MetricKind::Sum => "Value, toInt32(AggregationTemporality), toUInt8(IsMonotonic)",
        MetricKind::Histogram => {
            "toUInt64(Count), Sum, BucketCounts, ExplicitBounds, Min, Max, toInt32(AggregationTemporality)"
        }
        _ => "Value",
    };
    format!(
        "SELECT ResourceAttributes, ScopeName, MetricName, MetricDescription, MetricUnit, Attributes, \
         toInt64(toUnixTimestamp64Nano(toDateTime64(StartTimeUnix, 9))), \
         toInt64(toUnixTimestamp64Nano(toDateTime64(TimeUnix, 9))), {extra} \
         FROM {table} WHERE {} FORMAT RowBinary",
        crate::clickhouse::ns_window("TimeUnix", from_ns, to_ns)
    )
}

fn attrs(pairs: Vec<(String, String)>) -> Vec<Attribute> {
    pairs
        .into_iter()
        .map(|(k, v)| Attribute::new(k, typed(v)))
        .collect()
}

/// The metric points of the exporter's tables with a time in `[from_ns, to_ns)`
/// (tables that do not exist are skipped), resources once each.
pub fn pull_metrics(
    ch: &ClickHouse,
    from_ns: i64,
    to_ns: i64,
) -> Result<(Batch, Rejections), ClickHouseError> {
    let mut batch = Batch::default();
    let mut rej = Rejections::default();
    let mut seen: HashSet<i64> = HashSet::new();
    for (name, kind) in TABLES {
        if ch.columns(name)?.is_empty() {
            continue;
        }
        let out = ch.query(&select(&ch.url.table(name), kind, from_ns, to_ns))?;
        decode(&out, kind, &mut batch, &mut seen, &mut rej)
            .map_err(|e| ClickHouseError::Format(format!("{name}: {e}")))?;
    }
    Ok((batch, rej))
}

fn decode(
    buf: &[u8],
    kind: MetricKind,
    batch: &mut Batch,
    seen: &mut HashSet<i64>,
    rej: &mut Rejections,
) -> Result<(), Truncated> {
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let resource = Resource::new(attrs(r.string_map()?));
        let scope_name = r.string()?;
        let name = r.string()?;
        let description = r.string()?;
        let unit = r.string()?;
        let attributes = attrs(r.string_map()?);
        let (start_ns, time_ns) = (r.i64()?, r.i64()?);
        let mut p = MetricPoint::at(
            resource.id,
            &resource.service_name,
            &name,
            &unit,
            kind,
            time_ns,
        );
        p.scope_name = scope_name;
        p.description = description;
        p.attributes = attributes;
        p.start_ns = start_ns;
        let temporality = |n: i32, rej: &mut Rejections| {
            Temporality::from_otlp(n).unwrap_or_else(|| {
                rej.reject(format!("{name}: unknown AggregationTemporality {n}"));
                Temporality::Unspecified
            })
        };
        match kind {
            MetricKind::Sum => {
                p.value = Some(r.f64()?);
                p.temporality = temporality(r.i32()?, rej);
                p.monotonic = r.u8()? != 0;
            }
            MetricKind::Histogram => {
                p.count = Some(r.u64()?);
                p.sum = Some(r.f64()?);
                p.bucket_counts = r.array(Reader::u64)?;
                p.explicit_bounds = r.array(Reader::f64)?;
                let (min, max) = (r.f64()?, r.f64()?);
                if min != 0.0 || max != 0.0 {
                    (p.min, p.max) = (Some(min), Some(max));
                }
                p.temporality = temporality(r.i32()?, rej);
            }
            _ => p.value = Some(r.f64()?),
        }
        if seen.insert(resource.id) {
            batch.resources.push(resource);
        }
        batch.metrics.push(p);
    }
    Ok(())
}
