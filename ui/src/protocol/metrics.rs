//! The metrics timeline: its scope and the canonical series on one time grid.

/// What the metrics timeline is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsScope {
    /// A trace's extent (plus padding), limited to the hosts behind its server addresses.
    Trace(String),
    /// A conversation's extent (plus padding).
    Conversation(String),
    /// Everything in the store.
    All,
}

/// One canonical series of one host / GPU / source; x is seconds since
/// [`MetricsWindow::from_ns`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesVm {
    /// Canonical name, e.g. `gpu.utilization`, `inference.kv_cache.usage`.
    pub canonical: String,
    /// Canonical unit: `1`, `By`, `W`, `Hz`, `Cel`, `{request}`, `1/s`.
    pub unit: String,
    /// `dcgm`, `otel_hw`, `nvml` or `vllm`.
    pub origin: String,
    /// The metric name as stored, e.g. `DCGM_FI_DEV_GPU_UTIL`.
    pub source: String,
    pub service: String,
    pub host: Option<String>,
    /// GPU index (or UUID) when the series is about one GPU.
    pub gpu: Option<String>,
    pub points: Vec<[f64; 2]>,
}

impl SeriesVm {
    /// The legend entry: source, host and GPU.
    pub fn legend(&self) -> String {
        let origin = match self.origin.as_str() {
            "otel_hw" => "otel hw.gpu",
            o => o,
        };
        let mut s = format!(
            "{origin} · {}",
            self.host.as_deref().unwrap_or(&self.service)
        );
        if let Some(g) = &self.gpu {
            s.push_str(" · gpu ");
            s.push_str(g);
        }
        s
    }
}

/// Canonical metric series on one time grid.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsWindow {
    pub from_ns: i64,
    pub to_ns: i64,
    /// The selection's own extent (shaded), if the window is about a trace or conversation.
    pub band: Option<(i64, i64)>,
    /// By canonical name, then host, GPU and source.
    pub series: Vec<SeriesVm>,
}

impl MetricsWindow {
    /// The canonical names (with units) in plot order.
    pub fn groups(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for s in &self.series {
            if !out.iter().any(|(c, u)| *c == s.canonical && *u == s.unit) {
                out.push((s.canonical.clone(), s.unit.clone()));
            }
        }
        out
    }
}
