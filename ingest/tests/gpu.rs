//! GPU sampler: a recorded sequence through a sink, busy drops, the NVML-absent path.

#![allow(clippy::float_cmp)] // converted values are exact here; that is what is checked

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tailscope_ingest::gpu::{
    spawn_sampler, spawn_sampler_with, to_batch, GpuError, GpuProcess, GpuSample, NvmlSource,
    RecordedSource, SamplerConfig, SamplerStats,
};
use tailscope_ingest::{Ack, Busy, Sink};
use tailscope_model::{gpu_metrics, AttrValue, Batch};

/// Keeps batches; says busy on every `busy_every`-th submit (0: never).
struct Collect {
    batches: Mutex<Vec<Batch>>,
    calls: AtomicUsize,
    busy_every: usize,
}

impl Sink for Collect {
    fn submit(&self, batch: Batch) -> Result<Ack, Busy> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.busy_every > 0 && n % self.busy_every == 0 {
            return Err(Busy {
                retry_after: Duration::from_millis(10),
            });
        }
        self.batches.lock().unwrap().push(batch);
        let (tx, rx) = tokio::sync::oneshot::channel();
        tx.send(Ok(())).unwrap();
        Ok(rx)
    }
}

fn sample(t: i64, index: u32, util: f64) -> GpuSample {
    GpuSample {
        time_ns: t,
        index,
        uuid: format!("GPU-0000000{index}-aaaa-bbbb-cccc-dddddddddddd"),
        name: "NVIDIA H100 80GB HBM3".into(),
        utilization_pct: Some(util),
        memory_used_bytes: Some(40 << 30),
        memory_total_bytes: Some(80 << 30),
        sm_clock_mhz: Some(1980),
        power_mw: Some(350_500),
        temperature_c: Some(61),
        processes: vec![
            GpuProcess {
                pid: 4242,
                used_memory_bytes: Some(39 << 30),
            },
            GpuProcess {
                pid: 4243,
                used_memory_bytes: None,
            },
        ],
    }
}

fn cfg() -> SamplerConfig {
    SamplerConfig {
        interval: Duration::ZERO,
        host: "gpu-box".into(),
        announce: false,
    }
}

#[test]
fn samples_become_normalisable_points_with_a_gpu_resource() {
    let b = to_batch("gpu-box", &[sample(1_000, 0, 87.0), sample(1_000, 1, 3.0)]);
    assert_eq!(b.resources.len(), 2, "one resource per GPU");
    let r = &b.resources[0];
    let get = |k: &str| {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| a.value.clone())
    };
    assert_eq!(get("host.name"), Some(AttrValue::Str("gpu-box".into())));
    assert_eq!(
        get("gpu.uuid"),
        Some(AttrValue::Str(
            "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd".into()
        ))
    );
    assert_eq!(get("hw.id"), get("gpu.uuid"));
    assert_eq!(get("gpu.index"), Some(AttrValue::Int(0)));
    // 6 device gauges + 1 process with known memory, per GPU
    assert_eq!(b.metrics.len(), 14);
    for m in &b.metrics {
        let (c, v) = gpu_metrics::normalize(&m.name, &m.unit, m.value.unwrap())
            .unwrap_or_else(|| panic!("{} is not in the name table", m.name));
        match (m.resource_id == r.id, c.name) {
            (true, gpu_metrics::GPU_UTILIZATION) => assert!((v - 0.87).abs() < 1e-12),
            (_, gpu_metrics::GPU_POWER) => assert!((v - 350.5).abs() < 1e-9),
            (_, gpu_metrics::GPU_CLOCK_SM) => assert!((v - 1.98e9).abs() < 1.0),
            (_, gpu_metrics::GPU_MEMORY_TOTAL) => assert_eq!(v, (80u64 << 30) as f64),
            (_, gpu_metrics::GPU_PROCESS_MEMORY_USED) => {
                assert_eq!(v, (39u64 << 30) as f64);
                assert_eq!(m.attributes[0].key, "process.pid");
            }
            _ => {}
        }
    }
}

#[test]
fn recorded_sequence_runs_through_the_sink_and_busy_samples_are_dropped() {
    let sink = Arc::new(Collect {
        batches: Mutex::new(Vec::new()),
        calls: AtomicUsize::new(0),
        busy_every: 3,
    });
    let ticks: Vec<Result<Vec<GpuSample>, GpuError>> = (0..6)
        .map(|k| Ok(vec![sample(k * 1_000_000_000, 0, k as f64 * 10.0)]))
        .chain([Err(GpuError::Nvml("GPU is lost".into()))])
        .chain((6..9).map(|k| Ok(vec![sample(k * 1_000_000_000, 0, 50.0)])))
        .collect();
    let h = spawn_sampler_with(
        Box::new(RecordedSource::new(ticks)),
        Arc::clone(&sink) as Arc<dyn Sink>,
        cfg(),
        "test".into(),
    )
    .unwrap();
    assert!(h.is_running());
    let stats = h.join();
    assert_eq!(stats.samples, 9);
    assert_eq!(stats.source_errors, 1);
    assert_eq!(stats.dropped_busy, 3, "submits 3, 6 and 9 were refused");
    let batches = sink.batches.lock().unwrap();
    assert_eq!(batches.len(), 6);
    let points: usize = batches.iter().map(|b| b.metrics.len()).sum();
    assert_eq!(stats.points_committed, points as u64);
    assert_eq!(stats.points_submitted, points as u64);
    // the kept samples are the ones not refused, in order
    let times: Vec<i64> = batches
        .iter()
        .map(|b| b.metrics[0].time_ns / 1_000_000_000)
        .collect();
    assert_eq!(times, vec![0, 1, 3, 4, 6, 7]);
}

#[test]
fn stop_ends_a_sampler_that_never_runs_out() {
    struct Forever;
    impl tailscope_ingest::gpu::GpuSource for Forever {
        fn sample(&mut self) -> Result<Vec<GpuSample>, GpuError> {
            Ok(vec![sample(1, 0, 1.0)])
        }
    }
    let sink = Arc::new(Collect {
        batches: Mutex::new(Vec::new()),
        calls: AtomicUsize::new(0),
        busy_every: 0,
    });
    let h = spawn_sampler_with(
        Box::new(Forever),
        Arc::clone(&sink) as Arc<dyn Sink>,
        SamplerConfig {
            interval: Duration::from_millis(5),
            ..cfg()
        },
        "test".into(),
    )
    .unwrap();
    while sink.calls.load(Ordering::SeqCst) < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = h.stop();
    assert!(stats.samples >= 3);
    assert_eq!(stats.dropped_busy, 0);
}

#[test]
fn without_nvml_the_sampler_is_off_with_one_reason() {
    let sink = Arc::new(Collect {
        batches: Mutex::new(Vec::new()),
        calls: AtomicUsize::new(0),
        busy_every: 0,
    });
    match NvmlSource::open() {
        Ok(_) => eprintln!("an NVIDIA driver is present here; the absent path is not exercised"),
        Err(e) => {
            let GpuError::Nvml(reason) = &e else {
                panic!("unexpected error {e}");
            };
            assert!(!reason.is_empty());
            let h = spawn_sampler(sink.clone(), cfg());
            assert!(!h.is_running());
            assert_eq!(
                h.status(),
                format!("no NVIDIA GPU found (NVML: {reason}); GPU sampling off")
            );
            assert_eq!(h.stop(), SamplerStats::default());
            assert_eq!(sink.calls.load(Ordering::SeqCst), 0);
        }
    }
}
