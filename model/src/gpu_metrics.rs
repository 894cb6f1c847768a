//! Canonical names and units of GPU and inference-server metrics.
//!
//! The same quantity arrives under many names: DCGM exporter (`DCGM_FI_DEV_GPU_UTIL`
//! in %, `DCGM_FI_DEV_FB_USED` in MiB), OpenTelemetry hardware semconv
//! (`hw.gpu.utilization` as a ratio, `hw.gpu.memory.usage` in bytes), tailscope's own
//! NVML sampler (`nvml.*`, NVML's native units) and vLLM (`vllm:kv_cache_usage_perc`
//! and its old name `vllm:gpu_cache_usage_perc`, counters with or without `_total`).
//! [`lookup`] maps a stored metric name to its [`Canonical`] metric, [`convert`] turns
//! a value in the point's unit into the canonical unit (ratio 0..1, bytes, W, Hz, °C),
//! and [`counter_rates`] turns a cumulative counter into a per-second rate that
//! survives counter resets. The original name stays in the store untouched: this is
//! a read-time mapping used by the store's alignment reads and by analysis.

/// Whether a canonical series is a level (read as is) or a cumulative counter (read as
/// a per-second rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Gauge,
    Counter,
}

/// Where a metric name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// NVIDIA DCGM exporter (`DCGM_FI_*`).
    Dcgm,
    /// OpenTelemetry hardware semantic conventions (`hw.gpu.*`).
    OtelHw,
    /// tailscope's NVML sampler (`nvml.*`).
    Nvml,
    /// vLLM engine metrics (`vllm:*`).
    Vllm,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Dcgm => "dcgm",
            Origin::OtelHw => "otel_hw",
            Origin::Nvml => "nvml",
            Origin::Vllm => "vllm",
        }
    }
}

/// A canonical metric: one name and unit for every source of the same quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canonical {
    pub name: &'static str,
    /// UCUM-style unit: `1` (ratio 0..1), `By`, `W`, `Hz`, `Cel`, `{request}`, `1/s`.
    pub unit: &'static str,
    pub shape: Shape,
}

pub const GPU_UTILIZATION: &str = "gpu.utilization";
pub const GPU_MEMORY_USED: &str = "gpu.memory.used";
pub const GPU_MEMORY_FREE: &str = "gpu.memory.free";
pub const GPU_MEMORY_TOTAL: &str = "gpu.memory.total";
pub const GPU_CLOCK_SM: &str = "gpu.clock.sm";
pub const GPU_POWER: &str = "gpu.power";
pub const GPU_TEMPERATURE: &str = "gpu.temperature";
pub const GPU_PROCESS_MEMORY_USED: &str = "gpu.process.memory.used";
pub const KV_CACHE_USAGE: &str = "inference.kv_cache.usage";
pub const REQUESTS_WAITING: &str = "inference.requests.waiting";
pub const REQUESTS_RUNNING: &str = "inference.requests.running";
pub const PREEMPTIONS_RATE: &str = "inference.preemptions.rate";
pub const PREFIX_CACHE_QUERIES_RATE: &str = "inference.prefix_cache.queries.rate";
pub const PREFIX_CACHE_HITS_RATE: &str = "inference.prefix_cache.hits.rate";

const fn gauge(name: &'static str, unit: &'static str) -> Canonical {
    Canonical {
        name,
        unit,
        shape: Shape::Gauge,
    }
}

const fn counter(name: &'static str) -> Canonical {
    Canonical {
        name,
        unit: "1/s",
        shape: Shape::Counter,
    }
}

/// Every canonical metric.
pub const CANONICAL: &[Canonical] = &[
    gauge(GPU_UTILIZATION, "1"),
    gauge(GPU_MEMORY_USED, "By"),
    gauge(GPU_MEMORY_FREE, "By"),
    gauge(GPU_MEMORY_TOTAL, "By"),
    gauge(GPU_CLOCK_SM, "Hz"),
    gauge(GPU_POWER, "W"),
    gauge(GPU_TEMPERATURE, "Cel"),
    gauge(GPU_PROCESS_MEMORY_USED, "By"),
    gauge(KV_CACHE_USAGE, "1"),
    gauge(REQUESTS_WAITING, "{request}"),
    gauge(REQUESTS_RUNNING, "{request}"),
    counter(PREEMPTIONS_RATE),
    counter(PREFIX_CACHE_QUERIES_RATE),
    counter(PREFIX_CACHE_HITS_RATE),
];

/// One source metric name and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceName {
    /// The name as it arrives (exact, case-sensitive).
    pub name: &'static str,
    pub canonical: &'static str,
    /// The unit assumed when a point carries none (Prometheus-scraped metrics often don't).
    pub default_unit: &'static str,
    pub origin: Origin,
}

const fn src(
    name: &'static str,
    canonical: &'static str,
    default_unit: &'static str,
    origin: Origin,
) -> SourceName {
    SourceName {
        name,
        canonical,
        default_unit,
        origin,
    }
}

/// The name table: every known source name of every canonical metric.
pub const SOURCES: &[SourceName] = &[
    // DCGM exporter (dcgm-exporter default counters; FB in MiB, clocks in MHz)
    src("DCGM_FI_DEV_GPU_UTIL", GPU_UTILIZATION, "%", Origin::Dcgm),
    src("DCGM_FI_DEV_FB_USED", GPU_MEMORY_USED, "MiB", Origin::Dcgm),
    src("DCGM_FI_DEV_FB_FREE", GPU_MEMORY_FREE, "MiB", Origin::Dcgm),
    src(
        "DCGM_FI_DEV_FB_TOTAL",
        GPU_MEMORY_TOTAL,
        "MiB",
        Origin::Dcgm,
    ),
    src("DCGM_FI_DEV_POWER_USAGE", GPU_POWER, "W", Origin::Dcgm),
    src("DCGM_FI_DEV_SM_CLOCK", GPU_CLOCK_SM, "MHz", Origin::Dcgm),
    src("DCGM_FI_DEV_GPU_TEMP", GPU_TEMPERATURE, "Cel", Origin::Dcgm),
    // OpenTelemetry hardware semantic conventions
    src("hw.gpu.utilization", GPU_UTILIZATION, "1", Origin::OtelHw),
    src("hw.gpu.memory.usage", GPU_MEMORY_USED, "By", Origin::OtelHw),
    src(
        "hw.gpu.memory.limit",
        GPU_MEMORY_TOTAL,
        "By",
        Origin::OtelHw,
    ),
    // tailscope's NVML sampler (NVML's own units)
    src("nvml.utilization.gpu", GPU_UTILIZATION, "%", Origin::Nvml),
    src("nvml.memory.used", GPU_MEMORY_USED, "By", Origin::Nvml),
    src("nvml.memory.total", GPU_MEMORY_TOTAL, "By", Origin::Nvml),
    src("nvml.clock.sm", GPU_CLOCK_SM, "MHz", Origin::Nvml),
    src("nvml.power.usage", GPU_POWER, "mW", Origin::Nvml),
    src("nvml.temperature.gpu", GPU_TEMPERATURE, "Cel", Origin::Nvml),
    src(
        "nvml.process.memory.used",
        GPU_PROCESS_MEMORY_USED,
        "By",
        Origin::Nvml,
    ),
    // vLLM (the "perc" gauges are ratios 0..1)
    src(
        "vllm:kv_cache_usage_perc",
        KV_CACHE_USAGE,
        "1",
        Origin::Vllm,
    ),
    src(
        "vllm:gpu_cache_usage_perc",
        KV_CACHE_USAGE,
        "1",
        Origin::Vllm,
    ),
    src(
        "vllm:num_requests_waiting",
        REQUESTS_WAITING,
        "{request}",
        Origin::Vllm,
    ),
    src(
        "vllm:num_requests_running",
        REQUESTS_RUNNING,
        "{request}",
        Origin::Vllm,
    ),
    src("vllm:num_preemptions", PREEMPTIONS_RATE, "1", Origin::Vllm),
    src(
        "vllm:num_preemptions_total",
        PREEMPTIONS_RATE,
        "1",
        Origin::Vllm,
    ),
    src(
        "vllm:prefix_cache_queries",
        PREFIX_CACHE_QUERIES_RATE,
        "1",
        Origin::Vllm,
    ),
    src(
        "vllm:prefix_cache_queries_total",
        PREFIX_CACHE_QUERIES_RATE,
        "1",
        Origin::Vllm,
    ),
    src(
        "vllm:prefix_cache_hits",
        PREFIX_CACHE_HITS_RATE,
        "1",
        Origin::Vllm,
    ),
    src(
        "vllm:prefix_cache_hits_total",
        PREFIX_CACHE_HITS_RATE,
        "1",
        Origin::Vllm,
    ),
];

/// Attribute keys (resource or point) that name the host, most specific first.
pub const HOST_KEYS: &[&str] = &["host.name", "Hostname", "hostname", "host"];
/// Attribute keys that name a GPU (its UUID), most specific first.
pub const GPU_KEYS: &[&str] = &["gpu.uuid", "hw.id", "UUID", "uuid"];
/// Attribute keys that give a GPU's index on its host.
pub const GPU_INDEX_KEYS: &[&str] = &["gpu.index", "gpu"];

/// The canonical metric of a canonical name.
pub fn canonical(name: &str) -> Option<&'static Canonical> {
    CANONICAL.iter().find(|c| c.name == name)
}

/// The table entry and canonical metric of a stored metric name.
pub fn lookup(name: &str) -> Option<(&'static SourceName, &'static Canonical)> {
    let s = SOURCES.iter().find(|s| s.name == name)?;
    Some((s, canonical(s.canonical)?))
}

/// Every source name of a canonical metric (for `WHERE name IN (...)`).
pub fn source_names(canonical: &str) -> impl Iterator<Item = &'static str> + '_ {
    SOURCES
        .iter()
        .filter(move |s| s.canonical == canonical)
        .map(|s| s.name)
}

/// `(multiplier, divisor)` from `unit` to `canonical_unit` (a divisor keeps `87 %` at
/// exactly `0.87`).
fn factor(unit: &str, canonical_unit: &str) -> Option<(f64, f64)> {
    let u = unit.trim();
    Some(match canonical_unit {
        "1" => match u {
            "1" | "" | "ratio" => (1.0, 1.0),
            "%" | "percent" => (1.0, 100.0),
            _ => return None,
        },
        "By" => match u {
            "By" | "B" | "bytes" | "" => (1.0, 1.0),
            "KiB" => (1024.0, 1.0),
            "MiB" => (1_048_576.0, 1.0),
            "GiB" => (1_073_741_824.0, 1.0),
            "kB" | "KB" => (1e3, 1.0),
            "MB" => (1e6, 1.0),
            "GB" => (1e9, 1.0),
            _ => return None,
        },
        "W" => match u {
            "W" | "" => (1.0, 1.0),
            "mW" => (1.0, 1e3),
            "kW" => (1e3, 1.0),
            _ => return None,
        },
        "Hz" => match u {
            "Hz" | "" => (1.0, 1.0),
            "kHz" => (1e3, 1.0),
            "MHz" => (1e6, 1.0),
            "GHz" => (1e9, 1.0),
            _ => return None,
        },
        "Cel" => match u {
            "Cel" | "C" | "°C" | "" => (1.0, 1.0),
            _ => return None,
        },
        // counts and counter rates are dimensionless: any annotation (`1`, `{request}`)
        _ => (1.0, 1.0),
    })
}

/// A value in `unit` converted to `canonical_unit`; `None` for a unit that does not
/// measure that quantity (the point is then left out rather than misread).
pub fn convert(value: f64, unit: &str, canonical_unit: &str) -> Option<f64> {
    factor(unit, canonical_unit).map(|(mul, div)| value * mul / div)
}

/// Normalises one stored point: its canonical metric and value in the canonical unit.
/// An empty `unit` means the table's default unit for that name. Counters come back
/// unchanged (cumulative); turn a series of them into rates with [`counter_rates`].
pub fn normalize(name: &str, unit: &str, value: f64) -> Option<(&'static Canonical, f64)> {
    let (s, c) = lookup(name)?;
    let unit = if unit.trim().is_empty() {
        s.default_unit
    } else {
        unit
    };
    let v = if c.shape == Shape::Counter {
        value
    } else {
        convert(value, unit, c.unit)?
    };
    v.is_finite().then_some((c, v))
}

/// One counter observation: `(time_ns, value, start_ns)`; `start_ns` 0 when unknown.
pub type CounterPoint = (i64, f64, i64);

/// Per-second rates of a cumulative counter series sorted by time.
///
/// Each point after the first gives the rate over the interval since the previous
/// point. A reset (the value went down, or the series' start time moved past the
/// previous point) is read as a restart from zero, as Prometheus does: the increase
/// is the new value, spread over the time since the restart when the start time is
/// known, else since the previous point. Points at the same time are skipped.
pub fn counter_rates(points: &[CounterPoint]) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(points.len().saturating_sub(1));
    for w in points.windows(2) {
        let (t0, v0, _) = w[0];
        let (t1, v1, s1) = w[1];
        if t1 <= t0 {
            continue;
        }
        let restarted = s1 > t0 && s1 < t1;
        let (increase, since) = if restarted {
            (v1, s1)
        } else if v1 < v0 {
            (v1, t0)
        } else {
            (v1 - v0, t0)
        };
        let dt = (t1 - since) as f64 / 1e9;
        if dt > 0.0 {
            out.push((t1, increase / dt));
        }
    }
    out
}

/// Per-second rates of a delta counter: each point's value over its own interval.
pub fn delta_rates(points: &[CounterPoint]) -> Vec<(i64, f64)> {
    points
        .iter()
        .filter(|(t, _, s)| *s > 0 && s < t)
        .map(|(t, v, s)| (*t, v / ((t - s) as f64 / 1e9)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_has_a_canonical_metric_and_its_default_unit_converts() {
        for s in SOURCES {
            let c = canonical(s.canonical).unwrap_or_else(|| panic!("{}", s.name));
            if c.shape == Shape::Gauge {
                assert!(
                    convert(1.0, s.default_unit, c.unit).is_some(),
                    "{}: {} -> {}",
                    s.name,
                    s.default_unit,
                    c.unit
                );
            }
        }
        let mut names: Vec<_> = SOURCES.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SOURCES.len(), "duplicate source names");
    }

    #[test]
    fn rates_follow_resets() {
        let s = 1_000_000_000;
        let pts = [
            (s, 10.0, 0),
            (2 * s, 14.0, 0),
            (3 * s, 2.0, 0),
            (4 * s, 5.0, 0),
        ];
        assert_eq!(
            counter_rates(&pts),
            vec![(2 * s, 4.0), (3 * s, 2.0), (4 * s, 3.0)]
        );
    }
}
