//! GPU and inference-server series, normalised and aligned with spans.
//!
//! Points stay in `metric_points` under their original names; this module reads the
//! names of [`tailscope_model::gpu_metrics::SOURCES`] (DCGM, OTel `hw.gpu.*`, the NVML
//! sampler, vLLM), converts each point to its canonical name and unit, turns counters
//! into per-second rates (reset-aware), and, for a time window or a span, trace or
//! conversation, puts every series on one time grid by an as-of join (the last value
//! at or before each grid time, if not older than [`AlignOptions::max_staleness_ns`]).
//! When the span(s) name a `server.address`, only series of the hosts behind that
//! address are returned ([`Store::hosts_for_address`]).

use crate::{Store, StoreError};
use duckdb::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tailscope_model::gpu_metrics::{
    self, counter_rates, delta_rates, CounterPoint, Shape, GPU_INDEX_KEYS, GPU_KEYS, HOST_KEYS,
};

/// One canonical series: one source metric of one resource with one attribute set.
///
/// Returned raw by [`Store::canonical_series`] (points at their own times) and on a
/// grid by the `align_*` functions (points at grid times, missing where stale).
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedSeries {
    /// Canonical name, e.g. `gpu.utilization`, `inference.kv_cache.usage`.
    pub canonical: String,
    /// Canonical unit: `1` (ratio 0..1), `By`, `W`, `Hz`, `Cel`, `{request}`, `1/s`.
    pub unit: String,
    /// The metric name as stored, e.g. `DCGM_FI_DEV_GPU_UTIL`, `nvml.utilization.gpu`.
    pub source: String,
    /// `dcgm`, `otel_hw`, `nvml` or `vllm`.
    pub origin: String,
    pub service: String,
    pub host: Option<String>,
    /// GPU UUID when the series is about one GPU.
    pub gpu: Option<String>,
    pub gpu_index: Option<String>,
    /// The point attributes as JSON (tells per-process or per-engine series apart).
    pub attributes: String,
    /// `(time_ns, value)` in the canonical unit, by time.
    pub points: Vec<(i64, f64)>,
}

/// Options of the alignment reads.
#[derive(Debug, Clone, Copy)]
pub struct AlignOptions {
    /// Grid step; 0 picks one: a 500th of the window, at least 100 ms.
    pub step_ns: i64,
    /// Added before and after a span's, trace's or conversation's own extent.
    pub padding_ns: i64,
    /// A value older than this at a grid time is not carried forward.
    pub max_staleness_ns: i64,
}

impl Default for AlignOptions {
    fn default() -> Self {
        Self {
            step_ns: 0,
            padding_ns: 30_000_000_000,
            max_staleness_ns: 15_000_000_000,
        }
    }
}

/// Series on one time grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    pub from_ns: i64,
    pub to_ns: i64,
    pub step_ns: i64,
    /// `from_ns, from_ns + step_ns, ..., <= to_ns`.
    pub grid: Vec<i64>,
    /// The hosts the series were limited to (from `server.address`); empty: all hosts.
    pub hosts: Vec<String>,
    pub series: Vec<AlignedSeries>,
}

impl Alignment {
    /// The series of a canonical name.
    pub fn by_name<'a>(&'a self, canonical: &'a str) -> impl Iterator<Item = &'a AlignedSeries> {
        self.series.iter().filter(move |s| s.canonical == canonical)
    }
}

fn quoted_names() -> String {
    gpu_metrics::SOURCES
        .iter()
        .map(|s| crate::sql_lit(s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_obj(json: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn first_of(keys: &[&str], maps: [&Map<String, Value>; 2]) -> Option<String> {
    keys.iter()
        .find_map(|k| maps.iter().find_map(|m| m.get(*k).and_then(text)))
}

/// Strips a port and brackets: `vllm:8000` -> `vllm`.
fn address_host(address: &str) -> &str {
    let a = address.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => a,
    }
}

/// (metric name, resource id, point attributes): one series.
type SeriesKey<'a> = (&'a str, i64, &'a str);

struct Row<'a> {
    unit: &'a str,
    temporality: &'a str,
    start_ns: i64,
    time_ns: i64,
    value: f64,
    service: &'a str,
    resource_attributes: &'a str,
}

impl Store {
    /// Host names (`host.name`) of the resources behind a `server.address`: resources
    /// whose `server.address`, `host.name`, `k8s.service.name` or `service.name` equals
    /// the address (port dropped), or whose `service.name` is the address's first DNS
    /// label (`vllm.inference.svc.cluster.local` -> service `vllm`).
    pub fn hosts_for_address(&self, address: &str) -> Result<Vec<String>, StoreError> {
        let host = address_host(address);
        if host.is_empty() {
            return Ok(Vec::new());
        }
        let label = host.split('.').next().unwrap_or(host);
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT service_name, attributes FROM resources")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: Vec<String> = Vec::new();
        for row in rows {
            let (service, attrs) = row?;
            let m = parse_obj(&attrs);
            let get = |k: &str| m.get(k).and_then(text);
            let matches = ["server.address", "host.name", "k8s.service.name"]
                .iter()
                .any(|k| get(k).is_some_and(|v| address_host(&v) == host))
                || service == host
                || (service == label && label != host);
            if matches {
                if let Some(h) = first_of(HOST_KEYS, [&m, &Map::new()]) {
                    if !out.contains(&h) {
                        out.push(h);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every GPU / inference-server series with points in `[from_ns, to_ns]`, normalised
    /// (canonical names and units, counters as per-second rates), at their own times.
    /// `hosts`: keep only series of these hosts (empty: all).
    pub fn canonical_series(
        &self,
        from_ns: i64,
        to_ns: i64,
        hosts: &[String],
    ) -> Result<Vec<AlignedSeries>, StoreError> {
        let sql = format!(
            "SELECT m.name, coalesce(m.unit, '') AS unit, m.temporality, coalesce(m.start_ns, 0) AS start_ns,
                    m.time_ns, m.value, m.attributes, m.resource_id, m.service_name,
                    coalesce(r.attributes, '{{}}') AS resource_attributes
             FROM metric_points m
             LEFT JOIN (SELECT resource_id, any_value(attributes) AS attributes
                        FROM resources GROUP BY resource_id) r ON r.resource_id = m.resource_id
             WHERE m.name IN ({}) AND m.time_ns BETWEEN ? AND ? AND m.value IS NOT NULL
             ORDER BY m.time_ns",
            quoted_names()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let batches: Vec<RecordBatch> =
            stmt.query_arrow(duckdb::params![from_ns, to_ns])?.collect();
        // Columns borrowed from the batches: no strings are copied per point, only
        // once per series below.
        let mut cols = Vec::with_capacity(batches.len());
        for b in &batches {
            let c = crate::read::Columns::new(b);
            cols.push((
                c.str("name")?,
                c.str("unit")?,
                c.str("temporality")?,
                c.i64("start_ns")?,
                c.i64("time_ns")?,
                c.f64("value")?,
                c.str("attributes")?,
                c.i64("resource_id")?,
                c.str("service_name")?,
                c.str("resource_attributes")?,
            ));
        }
        // (name, resource, attributes) -> points by time, as (batch, row)
        let mut by_series: BTreeMap<SeriesKey<'_>, Vec<(usize, usize)>> = BTreeMap::new();
        for (k, c) in cols.iter().enumerate() {
            for r in 0..batches[k].num_rows() {
                by_series
                    .entry((c.0.value(r), c.7.value(r), c.6.value(r)))
                    .or_default()
                    .push((k, r));
            }
        }
        let groups = by_series
            .into_iter()
            .map(|((name, _, attributes), points)| {
                let rows: Vec<Row> = points
                    .into_iter()
                    .map(|(k, r)| {
                        let c = &cols[k];
                        Row {
                            unit: c.1.value(r),
                            temporality: c.2.value(r),
                            start_ns: c.3.value(r),
                            time_ns: c.4.value(r),
                            value: c.5.value(r),
                            service: c.8.value(r),
                            resource_attributes: c.9.value(r),
                        }
                    })
                    .collect();
                (name.to_owned(), attributes.to_owned(), rows)
            });
        let mut out = Vec::new();
        for (name, attributes, rows) in groups {
            let Some((src, canon)) = gpu_metrics::lookup(&name) else {
                continue;
            };
            let Some(first) = rows.first() else {
                continue;
            };
            let pattrs = parse_obj(&attributes);
            let rattrs = parse_obj(first.resource_attributes);
            let host = first_of(HOST_KEYS, [&rattrs, &pattrs]);
            if !hosts.is_empty() && !host.as_ref().is_some_and(|h| hosts.contains(h)) {
                continue;
            }
            let points = match canon.shape {
                Shape::Gauge => rows
                    .iter()
                    .filter_map(|r| {
                        gpu_metrics::normalize(&name, r.unit, r.value).map(|(_, v)| (r.time_ns, v))
                    })
                    .collect(),
                Shape::Counter => {
                    let pts: Vec<CounterPoint> = rows
                        .iter()
                        .map(|r| (r.time_ns, r.value, r.start_ns))
                        .collect();
                    if first.temporality == "delta" {
                        delta_rates(&pts)
                    } else {
                        counter_rates(&pts)
                    }
                }
            };
            if points.is_empty() {
                continue;
            }
            out.push(AlignedSeries {
                canonical: canon.name.to_owned(),
                unit: canon.unit.to_owned(),
                source: name.clone(),
                origin: src.origin.as_str().to_owned(),
                service: first.service.to_owned(),
                host,
                gpu: first_of(GPU_KEYS, [&pattrs, &rattrs]),
                gpu_index: first_of(GPU_INDEX_KEYS, [&pattrs, &rattrs]),
                attributes,
                points,
            });
        }
        out.sort_by(|a, b| {
            (&a.canonical, &a.host, &a.gpu, &a.source, &a.attributes).cmp(&(
                &b.canonical,
                &b.host,
                &b.gpu,
                &b.source,
                &b.attributes,
            ))
        });
        Ok(out)
    }

    /// The series of `[from_ns, to_ns]` on one grid (as-of join), limited to `hosts`
    /// (empty: all).
    pub fn align_window(
        &self,
        from_ns: i64,
        to_ns: i64,
        hosts: &[String],
        opts: &AlignOptions,
    ) -> Result<Alignment, StoreError> {
        let to_ns = to_ns.max(from_ns);
        let step = if opts.step_ns > 0 {
            opts.step_ns
        } else {
            ((to_ns - from_ns) / 500).max(100_000_000)
        };
        let grid: Vec<i64> = (0..=(to_ns - from_ns) / step)
            .map(|k| from_ns + k * step)
            .collect();
        // Read back far enough to carry a value (and a counter's previous point) forward.
        let raw = self.canonical_series(
            from_ns.saturating_sub(opts.max_staleness_ns.max(0)),
            to_ns,
            hosts,
        )?;
        let series = raw
            .into_iter()
            .map(|mut s| {
                s.points = as_of(&s.points, &grid, opts.max_staleness_ns);
                s
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        Ok(Alignment {
            from_ns,
            to_ns,
            step_ns: step,
            grid,
            hosts: hosts.to_vec(),
            series,
        })
    }

    /// Series around one span: its start..end plus padding, limited to the hosts behind
    /// its `server.address` when it has one that resolves. `None`: no such span.
    pub fn align_span(
        &self,
        trace_id: &str,
        span_id: &str,
        opts: &AlignOptions,
    ) -> Result<Option<Alignment>, StoreError> {
        self.align_where("trace_id = ? AND span_id = ?", &[trace_id, span_id], opts)
    }

    /// Series around one trace (all its spans), matched by its spans' server addresses.
    pub fn align_trace(
        &self,
        trace_id: &str,
        opts: &AlignOptions,
    ) -> Result<Option<Alignment>, StoreError> {
        self.align_where("trace_id = ?", &[trace_id], opts)
    }

    /// Series around one conversation (every span with that `gen_ai.conversation.id`
    /// and the rest of their traces).
    pub fn align_conversation(
        &self,
        conversation_id: &str,
        opts: &AlignOptions,
    ) -> Result<Option<Alignment>, StoreError> {
        self.align_where(
            "trace_id IN (SELECT trace_id FROM spans WHERE conversation_id = ?)",
            &[conversation_id],
            opts,
        )
    }

    fn align_where(
        &self,
        cond: &str,
        params: &[&str],
        opts: &AlignOptions,
    ) -> Result<Option<Alignment>, StoreError> {
        let sql = format!("SELECT min(start_ns), max(end_ns) FROM spans WHERE {cond}");
        let (from, to): (Option<i64>, Option<i64>) =
            self.conn
                .query_row(&sql, duckdb::params_from_iter(params.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let (Some(from), Some(to)) = (from, to) else {
            return Ok(None);
        };
        let mut hosts = Vec::new();
        let mut astmt = self.conn.prepare(&format!(
            "SELECT DISTINCT server_address FROM spans WHERE ({cond}) AND server_address IS NOT NULL ORDER BY 1"
        ))?;
        let addresses = astmt
            .query_map(duckdb::params_from_iter(params.iter()), |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for a in addresses {
            for h in self.hosts_for_address(&a)? {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
        }
        self.align_window(
            from.saturating_sub(opts.padding_ns),
            to.saturating_add(opts.padding_ns),
            &hosts,
            opts,
        )
        .map(Some)
    }
}

/// The as-of join of one series (sorted by time) onto a grid.
pub fn as_of(points: &[(i64, f64)], grid: &[i64], max_staleness_ns: i64) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(grid.len());
    let mut i = 0usize;
    for &g in grid {
        while points.get(i).is_some_and(|p| p.0 <= g) {
            i += 1;
        }
        if let Some(p) = i.checked_sub(1).and_then(|j| points.get(j)) {
            if g - p.0 <= max_staleness_ns {
                out.push((g, p.1));
            }
        }
    }
    out
}

impl Store {
    /// Every `server.address` named by spans that overlap `[from_ns, to_ns]`, with the
    /// hosts behind it ([`Store::hosts_for_address`]; empty when none resolves).
    pub fn address_hosts(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT server_address FROM spans
             WHERE server_address IS NOT NULL AND end_ns >= ? AND start_ns <= ?",
        )?;
        let addrs = stmt
            .query_map(duckdb::params![from_ns, to_ns], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = std::collections::HashMap::new();
        for a in addrs {
            let hosts = self.hosts_for_address(&a)?;
            out.insert(a, hosts);
        }
        Ok(out)
    }
}
