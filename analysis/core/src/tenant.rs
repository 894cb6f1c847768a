//! The per-tenant view: traffic, tokens, latency and tail share per tenant, so one
//! noisy neighbour shows. Pure: over the analysed traces a source hands over
//! ([`TenantTrace`], by ascending duration). The tail is the same cohort as compare's
//! and the report's (the slowest traces from the percentile up, by rank); p50 and p99
//! are nearest-rank percentiles.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use tailscope_model::samples::TenantTrace;
use tailscope_model::stats;

/// Every tenant's share of traffic, tokens and the tail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantView {
    /// The key tenants were read from (`service.name` when the store has no tenant key).
    pub key: String,
    pub percentile: f64,
    pub traces: usize,
    pub tail_traces: usize,
    /// Most tokens first.
    pub tenants: Vec<TenantRow>,
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRow {
    /// The tenant; `(none)` for traces without the key.
    pub tenant: String,
    pub traces: usize,
    /// Share of all traces.
    pub traffic_share: f64,
    pub tail_traces: usize,
    /// Share of the tail's traces.
    pub tail_share: f64,
    /// `tail_share / traffic_share`: above 1, the tenant is slow more often than others.
    pub lift: f64,
    pub p50_ns: i64,
    pub p99_ns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Share of all input and output tokens.
    pub token_share: f64,
}

/// The view of `traces` (ascending duration, ties by trace id) at `percentile`, with
/// tenants read from `key`; a trace without a tenant counts as `(none)`.
pub fn view(key: String, percentile: f64, traces: &[TenantTrace]) -> TenantView {
    let n = traces.len();
    let k =
        ((n as f64 * (100.0 - percentile) / 100.0).ceil() as usize).clamp(usize::from(n > 0), n);
    let t0 = n - k;
    // per tenant: durations (ascending, as given), tail count, tokens
    let mut by: BTreeMap<&str, (Vec<i64>, usize, i64, i64)> = BTreeMap::new();
    for (rank, t) in traces.iter().enumerate() {
        let e = by
            .entry(t.tenant.as_deref().unwrap_or("(none)"))
            .or_default();
        e.0.push(t.duration_ns);
        e.1 += usize::from(rank >= t0);
        e.2 += t.input_tokens;
        e.3 += t.output_tokens;
    }
    let tokens: i64 = traces
        .iter()
        .map(|t| t.input_tokens + t.output_tokens)
        .sum();
    let mut rows: Vec<TenantRow> = by
        .into_iter()
        .map(|(tenant, (d, tail, input, output))| {
            let traffic_share = d.len() as f64 / n.max(1) as f64;
            let tail_share = tail as f64 / k.max(1) as f64;
            TenantRow {
                tenant: tenant.to_owned(),
                traces: d.len(),
                traffic_share,
                tail_traces: tail,
                tail_share,
                lift: if traffic_share > 0.0 {
                    tail_share / traffic_share
                } else {
                    0.0
                },
                p50_ns: stats::percentile(&d, 50.0).unwrap_or(0),
                p99_ns: stats::percentile(&d, 99.0).unwrap_or(0),
                input_tokens: input,
                output_tokens: output,
                token_share: (input + output) as f64 / tokens.max(1) as f64,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.input_tokens + b.output_tokens)
            .cmp(&(a.input_tokens + a.output_tokens))
            .then(b.traces.cmp(&a.traces))
            .then(a.tenant.cmp(&b.tenant))
    });
    TenantView {
        key,
        percentile,
        traces: n,
        tail_traces: k,
        tenants: rows,
    }
}

fn tokens_text(n: i64) -> String {
    if n >= 10_000_000 {
        format!("{:.0}M", n as f64 / 1e6)
    } else if n >= 10_000 {
        format!("{:.0}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

impl TenantView {
    /// The readable table.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Per tenant ({}): {} traces, {} in the tail at p{}. Most tokens first; lift above 1: slow more often than its share of traffic.\n",
            self.key, self.traces, self.tail_traces, self.percentile
        );
        let _ = writeln!(
            o,
            "  {:<32} {:>7} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>6} {:>6}",
            "tenant",
            "traces",
            "traffic",
            "in tok",
            "out tok",
            "tokens",
            "p50",
            "p99",
            "tail",
            "lift"
        );
        for r in &self.tenants {
            let name: String = r.tenant.chars().take(32).collect();
            let _ = writeln!(
                o,
                "  {:<32} {:>7} {:>6.1}% {:>9} {:>9} {:>6.1}% {:>9} {:>9} {:>5.1}% {:>5.1}×",
                name,
                r.traces,
                r.traffic_share * 100.0,
                tokens_text(r.input_tokens),
                tokens_text(r.output_tokens),
                r.token_share * 100.0,
                crate::text::secs(r.p50_ns),
                crate::text::secs(r.p99_ns),
                r.tail_share * 100.0,
                r.lift
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tenant: Option<&str>, d: i64, tokens: i64) -> TenantTrace {
        TenantTrace {
            tenant: tenant.map(str::to_owned),
            duration_ns: d,
            input_tokens: tokens,
            output_tokens: 0,
        }
    }

    #[test]
    fn a_noisy_tenant_owns_the_tail() {
        // 100 traces: "a" 90 fast ones, "b" 9 slow ones and the slowest, one untagged
        let mut v: Vec<TenantTrace> = (0..90).map(|i| t(Some("a"), 100 + i, 10)).collect();
        v.push(t(None, 195, 0));
        v.extend((0..9).map(|i| t(Some("b"), 1_000 + i, 200)));
        let view = view("tenant.id".into(), 99.0, &v);
        assert_eq!((view.traces, view.tail_traces), (100, 1));
        let b = &view.tenants[0];
        assert_eq!((b.tenant.as_str(), b.traces, b.tail_traces), ("b", 9, 1));
        assert!((b.lift - 1.0 / 0.09).abs() < 1e-9, "{}", b.lift);
        assert_eq!((b.p50_ns, b.p99_ns), (1_004, 1_008));
        let a = view.tenants.iter().find(|r| r.tenant == "a").unwrap();
        assert_eq!((a.p50_ns, a.p99_ns, a.tail_traces), (144, 189, 0));
        assert!(view
            .tenants
            .iter()
            .any(|r| r.tenant == "(none)" && r.traces == 1));
        assert!((view.tenants.iter().map(|r| r.token_share).sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn tokens_read_short() {
        assert_eq!(tokens_text(12_345_678), "12M");
        assert_eq!(tokens_text(45_600), "46k");
        assert_eq!(tokens_text(999), "999");
    }
}
