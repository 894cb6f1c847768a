//! Metric points sampled every interval, derived from the same simulation as the traces:
//! vLLM scheduler and cache gauges, DCGM GPU gauges, DB connection-pool metrics.

use crate::attrs::Put;
use crate::config::WorkloadConfig;
use crate::resources::{Resources, Svc, GPU_HOST, GPU_MODEL, GPU_UUID};
use crate::server_sim::Server;
use crate::util::mix64;
use std::collections::BTreeMap;
use tailscope_model::{
    Attribute, Exemplar, MetricKind, MetricPoint, Span, SpanId, Temporality, TraceId,
};

/// Histogram bounds of `db.client.connection.wait_time` (seconds).
pub(crate) const WAIT_BOUNDS: [f64; 10] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

const FB_TOTAL_MIB: f64 = 143_771.0;
const FB_USED_MIB: f64 = 129_200.0;

struct Point<'a> {
    svc: Svc,
    scope: &'a str,
    name: &'a str,
    description: &'a str,
    unit: &'a str,
    kind: MetricKind,
    temporality: Temporality,
    monotonic: bool,
}

impl Point<'_> {
    fn value(
        &self,
        res: &Resources,
        start: i64,
        time: i64,
        attrs: &[Attribute],
        v: f64,
    ) -> MetricPoint {
        let r = res.get(self.svc);
        MetricPoint {
            scope_name: self.scope.to_owned(),
            description: self.description.to_owned(),
            temporality: self.temporality,
            monotonic: self.monotonic,
            start_ns: start,
            attributes: attrs.to_vec(),
            value: Some(v),
            ..MetricPoint::at(r.id, &r.service_name, self.name, self.unit, self.kind, time)
        }
    }
}

/// A metric of the given kind; gauges have no temporality, counters are cumulative sums.
fn metric<'a>(
    svc: Svc,
    scope: &'a str,
    name: &'a str,
    description: &'a str,
    unit: &'a str,
    kind: MetricKind,
) -> Point<'a> {
    let sum = kind == MetricKind::Sum;
    Point {
        svc,
        scope,
        name,
        description,
        unit,
        kind,
        temporality: if sum {
            Temporality::Cumulative
        } else {
            Temporality::Unspecified
        },
        monotonic: sum,
    }
}

fn gauge<'a>(
    svc: Svc,
    scope: &'a str,
    name: &'a str,
    description: &'a str,
    unit: &'a str,
) -> Point<'a> {
    metric(svc, scope, name, description, unit, MetricKind::Gauge)
}

fn counter<'a>(
    svc: Svc,
    scope: &'a str,
    name: &'a str,
    description: &'a str,
    unit: &'a str,
) -> Point<'a> {
    metric(svc, scope, name, description, unit, MetricKind::Sum)
}

/// A pool acquire seen in the traces.
struct Acquire {
    start: i64,
    end: i64,
    wait_s: f64,
    trace_id: TraceId,
    span_id: SpanId,
}

/// Small deterministic jitter in [-1, 1) for sample `k` of series `salt`.
fn jitter(k: u64, salt: u64) -> f64 {
    (mix64(k ^ salt.rotate_left(17)) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

pub(crate) fn build(
    cfg: &WorkloadConfig,
    server: &Server,
    spans: &[Span],
    res: &Resources,
) -> Vec<MetricPoint> {
    let interval = (cfg.metric_interval_secs * 1e9) as i64;
    let t0 = cfg.start_ns;
    let last = spans
        .iter()
        .map(|s| s.end_ns)
        .chain(server.records.iter().map(|r| r.end))
        .max()
        .unwrap_or(t0);
    let samples = ((last - t0) / interval.max(1) + 1).max(1) as u64;
    let scfg = server.config();
    let cap = scfg.kv_capacity_tokens as f64;
    let max_seqs = scfg.max_num_seqs as f64;

    let mut recs = server.records.clone();
    recs.sort_by_key(|r| r.start);

    let mut vattrs = Vec::new();
    vattrs.s("model_name", scfg.model.as_str());
    vattrs.s("engine", "0");
    let mut gattrs = Vec::new();
    gattrs.s("gpu", "0");
    gattrs.s("UUID", GPU_UUID);
    gattrs.s("device", "nvidia0");
    gattrs.s("modelName", GPU_MODEL);
    gattrs.s("Hostname", GPU_HOST);

    let running_p = gauge(
        Svc::Vllm,
        "vllm",
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        "1",
    );
    let waiting_p = gauge(
        Svc::Vllm,
        "vllm",
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        "1",
    );
    let kv_p = gauge(
        Svc::Vllm,
        "vllm",
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        "1",
    );
    let preempt_p = counter(
        Svc::Vllm,
        "vllm",
        "vllm:num_preemptions",
        "Cumulative number of preemptions from the engine.",
        "1",
    );
    let queries_p = counter(
        Svc::Vllm,
        "vllm",
        "vllm:prefix_cache_queries",
        "Prefix cache queries, in terms of number of queried tokens.",
        "1",
    );
    let hits_p = counter(
        Svc::Vllm,
        "vllm",
        "vllm:prefix_cache_hits",
        "Prefix cache hits, in terms of number of cached tokens.",
        "1",
    );
    let util_p = gauge(
        Svc::Dcgm,
        "dcgm",
        "DCGM_FI_DEV_GPU_UTIL",
        "GPU utilization (in %).",
        "%",
    );
    let fb_used_p = gauge(
        Svc::Dcgm,
        "dcgm",
        "DCGM_FI_DEV_FB_USED",
        "Framebuffer memory used (in MiB).",
        "MiB",
    );
    let fb_free_p = gauge(
        Svc::Dcgm,
        "dcgm",
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer memory free (in MiB).",
        "MiB",
    );
    let power_p = gauge(
        Svc::Dcgm,
        "dcgm",
        "DCGM_FI_DEV_POWER_USAGE",
        "Power draw (in W).",
        "W",
    );

    let mut out = Vec::with_capacity(samples as usize * 12);
    let mut cum_pre = 0.0;
    let mut cum_q = 0.0;
    let mut cum_h = 0.0;
    let mut next_started = 0usize;
    for k in 1..=samples {
        let t = t0 + k as i64 * interval;
        let from = t - interval;
        while let Some(r) = recs.get(next_started) {
            if r.start > t {
                break;
            }
            cum_q += r.input as f64;
            cum_h += r.cache_read as f64;
            if r.preempted {
                cum_pre += 1.0;
            }
            next_started += 1;
        }
        let mut running: f64 = 0.0;
        let mut waiting = 0.0;
        let mut pinned = 0.0;
        let mut prefilling: f64 = 0.0;
        for r in &recs[..next_started] {
            if r.end > t {
                running += 1.0;
                pinned += (r.input + r.output) as f64;
                if r.first_token > from {
                    prefilling += 1.0;
                }
            }
        }
        for r in &recs[next_started..] {
            if r.arrival <= t {
                waiting += 1.0;
            }
        }
        out.push(running_p.value(res, from, t, &vattrs, running));
        out.push(waiting_p.value(res, from, t, &vattrs, waiting));
        out.push(kv_p.value(res, from, t, &vattrs, (pinned / cap).min(1.0)));
        out.push(preempt_p.value(res, t0, t, &vattrs, cum_pre));
        out.push(queries_p.value(res, t0, t, &vattrs, cum_q));
        out.push(hits_p.value(res, t0, t, &vattrs, cum_h));
        let util = if running > 0.0 {
            (40.0
                + 50.0 * (running / (max_seqs * 0.5)).min(1.0)
                + 4.0 * prefilling.min(2.5)
                + 3.0 * jitter(k, 1))
            .clamp(0.0, 100.0)
        } else {
            (1.0 + jitter(k, 2)).max(0.0)
        };
        out.push(util_p.value(res, from, t, &gattrs, util.round()));
        let used = FB_USED_MIB + (4.0 * jitter(k, 3)).round();
        out.push(fb_used_p.value(res, from, t, &gattrs, used));
        out.push(fb_free_p.value(res, from, t, &gattrs, FB_TOTAL_MIB - used));
        out.push(power_p.value(
            res,
            from,
            t,
            &gattrs,
            (95.0 + 5.9 * util + 8.0 * jitter(k, 4)).round(),
        ));
    }

    pool_metrics(spans, res, t0, samples, interval, &mut out);
    out
}

fn pool_metrics(
    spans: &[Span],
    res: &Resources,
    t0: i64,
    samples: u64,
    interval: i64,
    out: &mut Vec<MetricPoint>,
) {
    // (service, pool) -> acquires
    let mut groups: BTreeMap<(usize, String), Vec<Acquire>> = BTreeMap::new();
    for s in spans {
        if s.name != "pool.acquire" {
            continue;
        }
        let Some(pool) = s
            .attr("db.client.connection.pool.name")
            .map(tailscope_model::AttrValue::to_display)
        else {
            continue;
        };
        let wait_s = s
            .attr("db.client.connection.wait_time")
            .and_then(tailscope_model::AttrValue::as_f64)
            .unwrap_or(0.0);
        let Some(svc) = Svc::ALL
            .iter()
            .position(|v| res.get(*v).id == s.resource_id)
        else {
            continue;
        };
        groups.entry((svc, pool)).or_default().push(Acquire {
            start: s.start_ns,
            end: s.end_ns,
            wait_s,
            trace_id: s.trace_id,
            span_id: s.span_id,
        });
    }
    for ((svc_idx, pool), mut acq) in groups {
        let Some(svc) = Svc::ALL.get(svc_idx).copied() else {
            continue;
        };
        acq.sort_by_key(|a| a.end);
        let r = res.get(svc);
        let mut attrs = Vec::new();
        attrs.s("db.client.connection.pool.name", pool.as_str());
        let pending = Point {
            svc,
            scope: "opentelemetry.instrumentation.asyncpg",
            name: "db.client.connection.pending_requests",
            description: "The number of current pending requests for an open connection.",
            unit: "{request}",
            kind: MetricKind::Sum,
            temporality: Temporality::Cumulative,
            monotonic: false,
        };
        let mut idx = 0usize;
        for k in 1..=samples {
            let t = t0 + k as i64 * interval;
            let from = t - interval;
            let pend = acq.iter().filter(|a| a.start <= t && a.end > t).count();
            out.push(pending.value(res, t0, t, &attrs, pend as f64));
            let mut buckets = vec![0u64; WAIT_BOUNDS.len() + 1];
            let mut count = 0u64;
            let mut sum = 0.0;
            let mut min = f64::INFINITY;
            let mut max = f64::NEG_INFINITY;
            let mut worst: Option<&Acquire> = None;
            while let Some(a) = acq.get(idx) {
                if a.end > t {
                    break;
                }
                idx += 1;
                let b = WAIT_BOUNDS
                    .iter()
                    .position(|ub| a.wait_s <= *ub)
                    .unwrap_or(WAIT_BOUNDS.len());
                if let Some(c) = buckets.get_mut(b) {
                    *c += 1;
                }
                count += 1;
                sum += a.wait_s;
                min = min.min(a.wait_s);
                max = max.max(a.wait_s);
                if worst.is_none_or(|w| a.wait_s > w.wait_s) {
                    worst = Some(a);
                }
            }
            let exemplars = worst
                .map(|w| Exemplar {
                    time_ns: w.end,
                    value: w.wait_s,
                    trace_id: Some(w.trace_id),
                    span_id: Some(w.span_id),
                    attributes: Vec::new(),
                })
                .into_iter()
                .collect();
            out.push(MetricPoint {
                resource_id: r.id,
                service_name: r.service_name.clone(),
                scope_name: "opentelemetry.instrumentation.asyncpg".to_owned(),
                name: "db.client.connection.wait_time".to_owned(),
                description: "The time it took to obtain an open connection from the pool."
                    .to_owned(),
                unit: "s".to_owned(),
                kind: MetricKind::Histogram,
                temporality: Temporality::Delta,
                monotonic: false,
                start_ns: from,
                time_ns: t,
                attributes: attrs.clone(),
                value: None,
                count: Some(count),
                sum: Some(sum),
                min: (count > 0).then_some(min),
                max: (count > 0).then_some(max),
                bucket_counts: buckets,
                explicit_bounds: WAIT_BOUNDS.to_vec(),
                quantiles: Vec::new(),
                exemplars,
            });
        }
    }
}
