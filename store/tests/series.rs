//! Canonical GPU / inference-server series: per-source names and units, counters as
//! rates with a reset, and alignment on the samples crate's generated workload.

#![allow(clippy::float_cmp)] // converted values are exact here; that is what is checked

use tailscope_model::gpu_metrics as gm;
use tailscope_model::{
    AttrValue, Attribute, Batch, MetricKind, MetricPoint, Resource, Temporality,
};
use tailscope_store::{AlignOptions, Store};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_800_000_000 * S;

fn res(service: &str, host: &str) -> Resource {
    Resource::new(vec![
        Attribute::new("service.name", AttrValue::Str(service.into())),
        Attribute::new("host.name", AttrValue::Str(host.into())),
    ])
}

#[allow(clippy::too_many_arguments)]
fn point(
    r: &Resource,
    name: &str,
    unit: &str,
    kind: MetricKind,
    temporality: Temporality,
    start: i64,
    t: i64,
    v: f64,
    attrs: Vec<Attribute>,
) -> MetricPoint {
    MetricPoint {
        temporality,
        monotonic: kind == MetricKind::Sum,
        start_ns: start,
        attributes: attrs,
        value: Some(v),
        ..MetricPoint::at(r.id, &r.service_name, name, unit, kind, t)
    }
}

fn gauge(r: &Resource, name: &str, unit: &str, t: i64, v: f64) -> MetricPoint {
    point(
        r,
        name,
        unit,
        MetricKind::Gauge,
        Temporality::Unspecified,
        0,
        t,
        v,
        Vec::new(),
    )
}

fn one(store: &Store, canonical: &str, source: &str) -> Vec<(i64, f64)> {
    let all = store
        .canonical_series(T0 - 100 * S, T0 + 100 * S, &[])
        .unwrap();
    let found: Vec<_> = all
        .iter()
        .filter(|s| s.canonical == canonical && s.source == source)
        .collect();
    assert_eq!(found.len(), 1, "{canonical} from {source}: {all:#?}");
    let c = gm::canonical(canonical).unwrap();
    assert_eq!(found[0].unit, c.unit);
    found[0].points.clone()
}

fn approx(a: &[(i64, f64)], b: &[(i64, f64)]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0, "{a:?} vs {b:?}");
        assert!(
            (x.1 - y.1).abs() <= 1e-9 * y.1.abs().max(1.0),
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn every_source_is_read_in_canonical_names_and_units() {
    let dcgm = res("dcgm-exporter", "gpu-1");
    let otel = res("otel-hostmetrics", "gpu-2");
    let nvml = res("tailscope-gpu-sampler", "gpu-3");
    let vllm = res("vllm", "gpu-1");
    let old_vllm = res("vllm-old", "gpu-4");
    let mut b = Batch {
        resources: vec![
            dcgm.clone(),
            otel.clone(),
            nvml.clone(),
            vllm.clone(),
            old_vllm.clone(),
        ],
        ..Batch::default()
    };
    let m = &mut b.metrics;
    m.push(gauge(&dcgm, "DCGM_FI_DEV_GPU_UTIL", "%", T0, 87.0));
    m.push(gauge(&dcgm, "DCGM_FI_DEV_FB_USED", "MiB", T0, 1024.0));
    m.push(gauge(&dcgm, "DCGM_FI_DEV_FB_FREE", "", T0, 2.0)); // no unit: the table's MiB
    m.push(gauge(&dcgm, "DCGM_FI_DEV_POWER_USAGE", "W", T0, 301.5));
    m.push(gauge(&dcgm, "DCGM_FI_DEV_SM_CLOCK", "MHz", T0, 1980.0));
    m.push(gauge(&dcgm, "DCGM_FI_DEV_GPU_TEMP", "C", T0, 64.0));
    m.push(gauge(&otel, "hw.gpu.utilization", "1", T0, 0.5));
    m.push(gauge(&otel, "hw.gpu.memory.usage", "By", T0, 3e9));
    m.push(gauge(&otel, "hw.gpu.memory.limit", "By", T0, 8e10));
    m.push(gauge(&nvml, "nvml.power.usage", "mW", T0, 250_000.0));
    m.push(gauge(&nvml, "nvml.clock.sm", "MHz", T0, 1410.0));
    m.push(gauge(&nvml, "nvml.utilization.gpu", "%", T0, 40.0));
    m.push(gauge(&vllm, "vllm:kv_cache_usage_perc", "1", T0, 0.93));
    m.push(gauge(&old_vllm, "vllm:gpu_cache_usage_perc", "", T0, 0.25));
    m.push(gauge(&vllm, "vllm:num_requests_waiting", "", T0, 7.0));
    m.push(gauge(&vllm, "vllm:num_requests_running", "", T0, 12.0));
    // a unit that is not a ratio is left out rather than misread
    m.push(gauge(&otel, "hw.gpu.utilization", "W", T0 + S, 0.7));
    // not a GPU metric: never returned
    m.push(gauge(&otel, "system.cpu.utilization", "1", T0, 0.3));
    let store = Store::open_in_memory().unwrap();
    store.append_direct(&[b]).unwrap();

    approx(
        &one(&store, gm::GPU_UTILIZATION, "DCGM_FI_DEV_GPU_UTIL"),
        &[(T0, 0.87)],
    );
    approx(
        &one(&store, gm::GPU_MEMORY_USED, "DCGM_FI_DEV_FB_USED"),
        &[(T0, 1024.0 * 1_048_576.0)],
    );
    approx(
        &one(&store, gm::GPU_MEMORY_FREE, "DCGM_FI_DEV_FB_FREE"),
        &[(T0, 2.0 * 1_048_576.0)],
    );
    approx(
        &one(&store, gm::GPU_POWER, "DCGM_FI_DEV_POWER_USAGE"),
        &[(T0, 301.5)],
    );
    approx(
        &one(&store, gm::GPU_CLOCK_SM, "DCGM_FI_DEV_SM_CLOCK"),
        &[(T0, 1.98e9)],
    );
    approx(
        &one(&store, gm::GPU_TEMPERATURE, "DCGM_FI_DEV_GPU_TEMP"),
        &[(T0, 64.0)],
    );
    approx(
        &one(&store, gm::GPU_UTILIZATION, "hw.gpu.utilization"),
        &[(T0, 0.5)],
    );
    approx(
        &one(&store, gm::GPU_MEMORY_USED, "hw.gpu.memory.usage"),
        &[(T0, 3e9)],
    );
    approx(
        &one(&store, gm::GPU_MEMORY_TOTAL, "hw.gpu.memory.limit"),
        &[(T0, 8e10)],
    );
    approx(
        &one(&store, gm::GPU_POWER, "nvml.power.usage"),
        &[(T0, 250.0)],
    );
    approx(
        &one(&store, gm::GPU_CLOCK_SM, "nvml.clock.sm"),
        &[(T0, 1.41e9)],
    );
    approx(
        &one(&store, gm::GPU_UTILIZATION, "nvml.utilization.gpu"),
        &[(T0, 0.4)],
    );
    approx(
        &one(&store, gm::KV_CACHE_USAGE, "vllm:kv_cache_usage_perc"),
        &[(T0, 0.93)],
    );
    approx(
        &one(&store, gm::KV_CACHE_USAGE, "vllm:gpu_cache_usage_perc"),
        &[(T0, 0.25)],
    );
    approx(
        &one(&store, gm::REQUESTS_WAITING, "vllm:num_requests_waiting"),
        &[(T0, 7.0)],
    );
    approx(
        &one(&store, gm::REQUESTS_RUNNING, "vllm:num_requests_running"),
        &[(T0, 12.0)],
    );

    let all = store.canonical_series(T0 - S, T0 + 10 * S, &[]).unwrap();
    assert!(all.iter().all(|s| s.source != "system.cpu.utilization"));
    let dcgm_util = all
        .iter()
        .find(|s| s.source == "DCGM_FI_DEV_GPU_UTIL")
        .unwrap();
    assert_eq!(dcgm_util.host.as_deref(), Some("gpu-1"));
    assert_eq!(dcgm_util.origin, "dcgm");
    // limited to one host
    let only = store
        .canonical_series(T0 - S, T0 + S, &["gpu-2".to_owned()])
        .unwrap();
    assert_eq!(only.len(), 3, "{only:#?}");
    assert!(only.iter().all(|s| s.host.as_deref() == Some("gpu-2")));
}

#[test]
fn cumulative_counters_become_rates_across_a_reset() {
    let vllm = res("vllm", "gpu-1");
    let cum = |name: &str, start: i64, t: i64, v: f64| {
        point(
            &vllm,
            name,
            "",
            MetricKind::Sum,
            Temporality::Cumulative,
            start,
            t,
            v,
            Vec::new(),
        )
    };
    let mut b = Batch {
        resources: vec![vllm.clone()],
        ..Batch::default()
    };
    // 0, 4, 10 then the server restarts at T0+2.5 s (start time moves, value drops)
    b.metrics
        .push(cum("vllm:num_preemptions_total", T0 - 10 * S, T0, 0.0));
    b.metrics
        .push(cum("vllm:num_preemptions_total", T0 - 10 * S, T0 + S, 4.0));
    b.metrics.push(cum(
        "vllm:num_preemptions_total",
        T0 - 10 * S,
        T0 + 2 * S,
        10.0,
    ));
    b.metrics.push(cum(
        "vllm:num_preemptions_total",
        T0 + 5 * S / 2,
        T0 + 3 * S,
        1.0,
    ));
    b.metrics.push(cum(
        "vllm:num_preemptions_total",
        T0 + 5 * S / 2,
        T0 + 4 * S,
        3.0,
    ));
    // a reset without a start time: the value drops
    for (k, v) in [(0, 100.0), (1, 150.0), (2, 20.0), (3, 60.0)] {
        b.metrics
            .push(cum("vllm:prefix_cache_hits", 0, T0 + k * S, v));
    }
    // a delta counter: each point is its own interval's increase
    b.metrics.push(point(
        &vllm,
        "vllm:prefix_cache_queries",
        "",
        MetricKind::Sum,
        Temporality::Delta,
        T0,
        T0 + 2 * S,
        500.0,
        Vec::new(),
    ));
    let store = Store::open_in_memory().unwrap();
    store.append_direct(&[b]).unwrap();
    approx(
        &one(&store, gm::PREEMPTIONS_RATE, "vllm:num_preemptions_total"),
        &[
            (T0 + S, 4.0),
            (T0 + 2 * S, 6.0),
            (T0 + 3 * S, 2.0),
            (T0 + 4 * S, 2.0),
        ],
    );
    approx(
        &one(&store, gm::PREFIX_CACHE_HITS_RATE, "vllm:prefix_cache_hits"),
        &[(T0 + S, 50.0), (T0 + 2 * S, 20.0), (T0 + 3 * S, 40.0)],
    );
    approx(
        &one(
            &store,
            gm::PREFIX_CACHE_QUERIES_RATE,
            "vllm:prefix_cache_queries",
        ),
        &[(T0 + 2 * S, 250.0)],
    );
}

#[test]
#[allow(clippy::many_single_char_names)] // one letter per series read back
fn generated_workload_aligns_gpu_and_vllm_series_with_a_span() {
    let cfg = tailscope_samples::WorkloadConfig::small(11, 8);
    let w = tailscope_samples::generate(&cfg);
    let store = Store::open_in_memory().unwrap();
    store.append_direct(std::slice::from_ref(&w.batch)).unwrap();
    let raw = |name: &str| -> Vec<(i64, f64)> {
        let mut v: Vec<_> = w
            .batch
            .metrics
            .iter()
            .filter(|m| m.name == name)
            .map(|m| (m.time_ns, m.value.unwrap()))
            .collect();
        v.sort_by_key(|p| p.0);
        v
    };
    let util = raw("DCGM_FI_DEV_GPU_UTIL");
    let fb = raw("DCGM_FI_DEV_FB_USED");
    let kv = raw("vllm:kv_cache_usage_perc");
    let pre = raw("vllm:num_preemptions");
    assert!(util.len() > 10);
    let interval = util[1].0 - util[0].0;

    // A window over samples 3..=8 on a grid of half the metric interval.
    let (from, to) = (util[3].0, util[8].0);
    let opts = AlignOptions {
        step_ns: interval / 2,
        max_staleness_ns: 2 * interval,
        ..AlignOptions::default()
    };
    let a = store.align_window(from, to, &[], &opts).unwrap();
    assert_eq!(a.grid.len(), 11);
    let get = |canonical: &str, source: &str| {
        a.by_name(canonical)
            .find(|s| s.source == source)
            .unwrap_or_else(|| panic!("{canonical} from {source}"))
            .points
            .clone()
    };
    let u = get(gm::GPU_UTILIZATION, "DCGM_FI_DEV_GPU_UTIL");
    let f = get(gm::GPU_MEMORY_USED, "DCGM_FI_DEV_FB_USED");
    let k = get(gm::KV_CACHE_USAGE, "vllm:kv_cache_usage_perc");
    for (j, g) in a.grid.iter().enumerate() {
        // sample 3 + j/2 is the last at or before grid time j
        let i = 3 + j / 2;
        assert!(util[i].0 <= *g && *g < util[i].0 + interval);
        assert_eq!(u[j], (*g, util[i].1 / 100.0), "utilisation at grid {j}");
        assert_eq!(f[j], (*g, fb[i].1 * 1_048_576.0), "memory at grid {j}");
        assert_eq!(k[j], (*g, kv[i].1), "kv usage at grid {j}");
    }
    let p = get(gm::PREEMPTIONS_RATE, "vllm:num_preemptions");
    assert_eq!(p.len(), a.grid.len());
    for (j, g) in a.grid.iter().enumerate() {
        let i = 3 + j / 2;
        let want = (pre[i].1 - pre[i - 1].1) / (interval as f64 / 1e9);
        assert_eq!(p[j], (*g, want), "preemption rate at grid {j}");
    }

    // A span that names the vLLM server: only the GPU host's series, around the span.
    let llm = w
        .batch
        .spans
        .iter()
        .find(|s| {
            s.promoted
                .server_address
                .as_deref()
                .is_some_and(|a| a.starts_with("vllm"))
                && s.end_ns > util[5].0
                && s.start_ns > util[1].0
        })
        .expect("an LLM client span");
    let a = store
        .align_span(
            &llm.trace_id.to_hex(),
            &llm.span_id.to_hex(),
            &AlignOptions::default(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(a.hosts, vec!["gpu-node-07".to_owned()]);
    assert_eq!(a.from_ns, llm.start_ns - AlignOptions::default().padding_ns);
    assert!(!a.series.is_empty());
    assert!(a
        .series
        .iter()
        .all(|s| s.host.as_deref() == Some("gpu-node-07")));
    let origins: std::collections::BTreeSet<&str> =
        a.series.iter().map(|s| s.origin.as_str()).collect();
    assert_eq!(origins, ["dcgm", "vllm"].into_iter().collect());
    let gpu = a.by_name(gm::GPU_UTILIZATION).next().unwrap();
    assert!(gpu.gpu.as_deref().is_some_and(|u| u.starts_with("GPU-")));
    // the grid value at the span's start is the last DCGM sample at or before it
    let g = a.grid.iter().rposition(|t| *t <= llm.start_ns).unwrap();
    let at = a.grid[g];
    let want = util.iter().rev().find(|p| p.0 <= at).unwrap().1 / 100.0;
    assert_eq!(gpu.points.iter().find(|p| p.0 == at).unwrap().1, want);

    // trace and conversation windows cover their spans
    let t = store
        .align_trace(&llm.trace_id.to_hex(), &AlignOptions::default())
        .unwrap()
        .unwrap();
    assert!(t.from_ns <= a.from_ns && t.to_ns >= a.to_ns);
    if let Some(c) = llm.promoted.conversation_id.as_deref() {
        let c = store
            .align_conversation(c, &AlignOptions::default())
            .unwrap()
            .unwrap();
        assert!(c.from_ns <= t.from_ns && c.to_ns >= t.to_ns);
    }
    assert!(store
        .align_trace("00", &AlignOptions::default())
        .unwrap()
        .is_none());
    // an unknown address matches no resource: no host filter
    assert!(store
        .hosts_for_address("unknown.example:8000")
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .hosts_for_address("vllm.inference.svc.cluster.local:8000")
            .unwrap(),
        vec!["gpu-node-07".to_owned()]
    );
}
