//! The local GPU sampler: NVML readings become ordinary [`MetricPoint`]s, submitted
//! through the same [`Sink`] as OTLP batches, on a named thread.
//!
//! A [`GpuSource`] yields [`GpuSample`]s: [`NvmlSource`] reads every local NVIDIA GPU,
//! [`RecordedSource`] replays a fixed sequence (tests). [`spawn_sampler`] opens NVML and
//! runs it every [`SamplerConfig::interval`]; with no driver it says so in one line and
//! returns a handle that does nothing. [`to_batch`] is the one mapping from samples to
//! points: one resource per GPU (`host.name`, `gpu.uuid` / `hw.id`, `gpu.name`,
//! `gpu.index`) and the `nvml.*` metric names of
//! [`tailscope_model::gpu_metrics::SOURCES`]. The sampler never blocks ingest: when the
//! sink is busy the sample is dropped and counted.

mod nvml;
mod recorded;

pub use nvml::NvmlSource;
pub use recorded::RecordedSource;

use crate::pipeline::{Ack, Sink};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tailscope_model::{AttrValue, Attribute, Batch, MetricKind, MetricPoint, Resource};

/// Errors of a GPU source.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// NVML could not be loaded or answered with an error.
    #[error("NVML: {0}")]
    Nvml(String),
    /// A recorded sequence has no more samples; the sampler stops.
    #[error("the recorded GPU samples are exhausted")]
    Finished,
    #[error("cannot start the GPU sampler thread: {0}")]
    Thread(std::io::Error),
}

/// One process's use of a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_memory_bytes: Option<u64>,
}

/// One reading of one GPU. Fields the device does not support are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub time_ns: i64,
    pub index: u32,
    pub uuid: String,
    pub name: String,
    /// Percent of the interval in which a kernel ran (NVML `utilization.gpu`).
    pub utilization_pct: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub sm_clock_mhz: Option<u32>,
    pub power_mw: Option<u32>,
    pub temperature_c: Option<u32>,
    pub processes: Vec<GpuProcess>,
}

/// Something that reads GPUs: NVML, or a recorded sequence in tests.
pub trait GpuSource: Send {
    /// One reading of every GPU.
    fn sample(&mut self) -> Result<Vec<GpuSample>, GpuError>;
}

/// Sampler settings.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Time between samples (default 1 s).
    pub interval: Duration,
    /// `host.name` of the GPU resources (default: this machine's host name).
    pub host: String,
    /// Print the one start-up line (GPUs found, or why sampling is off) to stderr.
    pub announce: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            host: local_host_name(),
            announce: true,
        }
    }
}

/// This machine's host name, or `localhost`.
pub fn local_host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Counters of a sampler.
#[derive(Debug, Default)]
struct Counters {
    samples: AtomicU64,
    points_submitted: AtomicU64,
    points_committed: AtomicU64,
    dropped_busy: AtomicU64,
    failed_writes: AtomicU64,
    source_errors: AtomicU64,
}

/// A copy of a sampler's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Readings taken (one per tick, all GPUs).
    pub samples: u64,
    pub points_submitted: u64,
    /// Points whose batch the sink acknowledged as committed.
    pub points_committed: u64,
    /// Readings dropped because the sink was busy.
    pub dropped_busy: u64,
    pub failed_writes: u64,
    /// Ticks on which the source failed (e.g. a GPU fell off the bus).
    pub source_errors: u64,
}

impl Counters {
    fn snapshot(&self) -> SamplerStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SamplerStats {
            samples: l(&self.samples),
            points_submitted: l(&self.points_submitted),
            points_committed: l(&self.points_committed),
            dropped_busy: l(&self.dropped_busy),
            failed_writes: l(&self.failed_writes),
            source_errors: l(&self.source_errors),
        }
    }
}

/// A running (or switched-off) sampler. Dropping it stops the thread.
pub struct SamplerHandle {
    status: String,
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl SamplerHandle {
    /// A handle for a sampler that is off, with the reason.
    pub fn off(status: String) -> Self {
        Self {
            status,
            stop: None,
            thread: None,
            counters: Arc::default(),
        }
    }

    /// Whether a sampling thread was started.
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// The one-line state: which GPUs are sampled, or why sampling is off.
    pub fn status(&self) -> &str {
        &self.status
    }

    pub fn stats(&self) -> SamplerStats {
        self.counters.snapshot()
    }

    /// Waits until the source is exhausted (recorded sources) and returns the counters.
    pub fn join(mut self) -> SamplerStats {
        if let Some(t) = self.thread.take() {
            // A panicked sampler thread has nothing more to report.
            let _ = t.join();
        }
        self.counters.snapshot()
    }

    /// Stops the thread (after waiting for submitted batches' acks) and returns the counters.
    pub fn stop(mut self) -> SamplerStats {
        self.shutdown();
        self.counters.snapshot()
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            // Full or disconnected both mean the thread will stop.
            let _ = tx.try_send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SamplerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The line printed when NVML is unavailable.
pub fn no_gpu_line(reason: &str) -> String {
    format!("no NVIDIA GPU found ({reason}); GPU sampling off")
}

/// Opens NVML and samples every local GPU every `cfg.interval` into `sink`. Without a
/// driver (or GPU) it prints [`no_gpu_line`] once (when `cfg.announce`) and returns a
/// handle that is off; the caller carries on either way.
pub fn spawn_sampler(sink: Arc<dyn Sink>, cfg: SamplerConfig) -> SamplerHandle {
    let announce = cfg.announce;
    let started = NvmlSource::open().and_then(|src| {
        let names = src.names();
        let status = format!(
            "GPU sampling: {} NVIDIA GPU{} ({}) every {:.3} s",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            cfg.interval.as_secs_f64()
        );
        spawn_sampler_with(Box::new(src), sink, cfg, status)
    });
    let handle = match started {
        Ok(h) => h,
        Err(e) => SamplerHandle::off(no_gpu_line(&e.to_string())),
    };
    if announce {
        eprintln!("{}", handle.status());
    }
    handle
}

/// Runs any source on the sampler thread (tests use a [`RecordedSource`]).
pub fn spawn_sampler_with(
    mut source: Box<dyn GpuSource>,
    sink: Arc<dyn Sink>,
    cfg: SamplerConfig,
    status: String,
) -> Result<SamplerHandle, GpuError> {
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = sync_channel::<()>(1);
    let c = Arc::clone(&counters);
    let thread = std::thread::Builder::new()
        .name("tailscope-gpu".into())
        .spawn(move || {
            let mut pending: Vec<(Ack, u64)> = Vec::new();
            let mut warned = false;
            loop {
                match source.sample() {
                    Ok(samples) if !samples.is_empty() => {
                        c.samples.fetch_add(1, Ordering::Relaxed);
                        let batch = to_batch(&cfg.host, &samples);
                        let n = batch.metrics.len() as u64;
                        match sink.submit(batch) {
                            Ok(ack) => {
                                c.points_submitted.fetch_add(n, Ordering::Relaxed);
                                pending.push((ack, n));
                            }
                            Err(_busy) => {
                                c.dropped_busy.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(GpuError::Finished) => break,
                    Err(e) => {
                        c.source_errors.fetch_add(1, Ordering::Relaxed);
                        if !warned {
                            tracing::warn!("GPU sampling failed, will keep trying: {e}");
                            warned = true;
                        }
                    }
                }
                pending.retain_mut(|(ack, n)| match ack.try_recv() {
                    Ok(r) => {
                        settle(&c, r.is_ok(), *n);
                        false
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => true,
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                        settle(&c, false, *n);
                        false
                    }
                });
                match stop_rx.recv_timeout(cfg.interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            for (ack, n) in pending {
                settle(&c, matches!(ack.blocking_recv(), Ok(Ok(()))), n);
            }
        })
        .map_err(GpuError::Thread)?;
    Ok(SamplerHandle {
        status,
        stop: Some(stop_tx),
        thread: Some(thread),
        counters,
    })
}

fn settle(c: &Counters, ok: bool, n: u64) {
    if ok {
        c.points_committed.fetch_add(n, Ordering::Relaxed);
    } else {
        c.failed_writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// `service.name` of the sampler's resources.
pub const SAMPLER_SERVICE: &str = "tailscope-gpu-sampler";
/// Instrumentation scope of the sampler's points.
pub const SAMPLER_SCOPE: &str = "tailscope.nvml";

fn s(k: &str, v: &str) -> Attribute {
    Attribute::new(k, AttrValue::Str(v.to_owned()))
}

/// The resource of one GPU on `host`.
pub fn gpu_resource(host: &str, sample: &GpuSample) -> Resource {
    Resource::new(vec![
        s("service.name", SAMPLER_SERVICE),
        s("host.name", host),
        s("hw.type", "gpu"),
        s("hw.id", &sample.uuid),
        s("gpu.uuid", &sample.uuid),
        s("gpu.name", &sample.name),
        Attribute::new("gpu.index", AttrValue::Int(i64::from(sample.index))),
    ])
}

/// Samples as a batch of gauge points (one resource per GPU).
pub fn to_batch(host: &str, samples: &[GpuSample]) -> Batch {
    let mut batch = Batch::default();
    for g in samples {
        let r = gpu_resource(host, g);
        let point = |name: &str, unit: &str, v: f64, attributes: Vec<Attribute>| MetricPoint {
            scope_name: SAMPLER_SCOPE.to_owned(),
            attributes,
            value: Some(v),
            ..MetricPoint::at(
                r.id,
                &r.service_name,
                name,
                unit,
                MetricKind::Gauge,
                g.time_ns,
            )
        };
        let m = &mut batch.metrics;
        let mut push = |name: &str, unit: &str, v: Option<f64>| {
            if let Some(v) = v {
                m.push(point(name, unit, v, Vec::new()));
            }
        };
        push("nvml.utilization.gpu", "%", g.utilization_pct);
        push(
            "nvml.memory.used",
            "By",
            g.memory_used_bytes.map(|b| b as f64),
        );
        push(
            "nvml.memory.total",
            "By",
            g.memory_total_bytes.map(|b| b as f64),
        );
        push("nvml.clock.sm", "MHz", g.sm_clock_mhz.map(f64::from));
        push("nvml.power.usage", "mW", g.power_mw.map(f64::from));
        push(
            "nvml.temperature.gpu",
            "Cel",
            g.temperature_c.map(f64::from),
        );
        for p in &g.processes {
            if let Some(b) = p.used_memory_bytes {
                m.push(point(
                    "nvml.process.memory.used",
                    "By",
                    b as f64,
                    vec![Attribute::new(
                        "process.pid",
                        AttrValue::Int(i64::from(p.pid)),
                    )],
                ));
            }
        }
        if !batch.resources.iter().any(|x| x.id == r.id) {
            batch.resources.push(r);
        }
    }
    batch
}
