//! The report of a run (the core's per-trace results, the tail, findings) and its two
//! renderings: JSON exactly per design.md, and a text report a person acts on.

use crate::findings::Finding;
use crate::tail::Tail;
pub(crate) use crate::TraceResult; // also reachable as `crate::report::TraceResult`
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use tailscope_model::Cause;

/// Everything `tailscope analyze` reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub traces: Vec<TraceResult>,
    pub tail: Tail,
    pub findings: Vec<Finding>,
    pub evictions: usize,
    /// Tail attribution per (service, operation): mean critical-path time in the tail
    /// cohort and in the median band, largest gap first.
    pub by_operation: Vec<OperationGap>,
    /// The cohort and group tables, when the run went through the store.
    pub tables: Option<crate::tables::TailTables>,
}

/// One (service, operation)'s share of the tail gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationGap {
    pub service: String,
    pub operation: String,
    pub tail_mean_ns: i64,
    pub median_mean_ns: i64,
}

/// Sums the critical-path time per (service, operation) over the tail and over the
/// median band of the cohort ranks given, where the spans are kept (a source that has
/// not handed them over): rows of (service, operation, tail sum, band sum).
pub type OperationSums<'a> = dyn Fn(
        &tailscope_model::samples::CohortRanks,
    ) -> Result<Vec<(String, String, i64, i64)>, tailscope_store::StoreError>
    + Sync
    + 'a;

/// Critical-path time per (service, operation) in the tail cohort and in the median
/// band of `traces` (trace id, duration; the report's traces in its order), summed by
/// the store, or by `sums` where given; the largest gap first.
pub(crate) fn operation_gaps(
    store: &tailscope_store::Store,
    sums: Option<&OperationSums<'_>>,
    traces: &[(&str, i64)],
    percentile: f64,
) -> Result<Vec<OperationGap>, tailscope_store::StoreError> {
    let durations: Vec<i64> = traces.iter().map(|t| t.1).collect();
    let (tail, mid, _, _) = crate::tail::cohorts(&durations, percentile);
    let ids = |idx: &[usize]| -> Vec<&str> { idx.iter().map(|&i| traces[i].0).collect() };
    let sums = match sums {
        // the same cohorts, by rank (ascending duration, ties in trace id order)
        Some(f) => f(&tailscope_analysis_core::compare::cohort_ranks(
            traces.len(),
            percentile,
        ))?,
        None => store.critical_time_of_cohorts(&ids(&tail), &ids(&mid))?,
    };
    let (nt, nm) = (tail.len().max(1) as i64, mid.len().max(1) as i64);
    let mut v: Vec<OperationGap> = sums
        .into_iter()
        .map(|(service, operation, t, m)| OperationGap {
            service,
            operation,
            tail_mean_ns: t / nt,
            median_mean_ns: m / nm,
        })
        .collect();
    // largest gap first; ties in name order (the store's groups come unordered)
    v.sort_by(|a, b| {
        (b.tail_mean_ns - b.median_mean_ns)
            .cmp(&(a.tail_mean_ns - a.median_mean_ns))
            .then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
    });
    Ok(v)
}

/// One trace of the JSON report (design.md), with its critical path, serialised
/// straight to the writer (no intermediate value; the keys in the sorted order a
/// `serde_json::Value` object has, so both paths give the same bytes).
pub(crate) struct TraceJson<'a>(pub &'a TraceResult);

impl Serialize for TraceJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("alternatives", &t.alternatives)?;
        m.serialize_entry("ambiguous_ns", &t.ambiguous_ns)?;
        m.serialize_entry("by_cause_ns", &CausesJson(&t.by_cause_ns))?;
        m.serialize_entry("critical_path", &SectionsJson(&t.sections))?;
        m.serialize_entry("duration_ns", &t.duration_ns)?;
        m.serialize_entry("primary_cause", &t.primary_cause.map(Cause::as_str))?;
        m.serialize_entry(
            "primary_evidence",
            &t.primary_evidence.map(tailscope_model::Evidence::as_str),
        )?;
        m.serialize_entry("root", &t.root)?;
        m.serialize_entry("trace_id", &t.trace_id)?;
        m.end()
    }
}

struct SectionsJson<'a>(&'a [tailscope_analysis_core::Section]);

impl Serialize for SectionsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for x in self.0 {
            seq.serialize_element(&SectionJson(x))?;
        }
        seq.end()
    }
}

struct SectionJson<'a>(&'a tailscope_analysis_core::Section);

impl Serialize for SectionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("alternatives", &x.alternatives)?;
        m.serialize_entry("cause", x.cause.as_str())?;
        m.serialize_entry("end_ns", &x.end_ns)?;
        m.serialize_entry("evidence", x.evidence.as_str())?;
        m.serialize_entry("span_id", &x.span_id.to_hex())?;
        m.serialize_entry("start_ns", &x.start_ns)?;
        m.end()
    }
}

/// Per-cause nanoseconds as a JSON object, keyed by cause name in name order.
struct CausesJson<'a>(&'a BTreeMap<Cause, i64>);

impl Serialize for CausesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(&str, i64)> = self.0.iter().map(|(c, n)| (c.as_str(), *n)).collect();
        v.sort_unstable_by_key(|e| e.0);
        let mut m = s.serialize_map(Some(v.len()))?;
        for (k, n) in v {
            m.serialize_entry(k, &n)?;
        }
        m.end()
    }
}

/// The JSON report's `tail` object.
pub(crate) fn tail_json(t: &Tail) -> Value {
    json!({
        "percentile": t.percentile,
        "p50_ns": t.p50_ns,
        "p_ns": t.p_ns,
        "tail_traces": t.tail_traces,
        "gap_by_cause_ns": CausesJson(&t.gap_by_cause_ns),
    })
}

/// A difference with its sign as prose writes it: "+5 ms", "−5 ms" (a minus sign, not
/// a hyphen; never "+-").
pub(crate) fn signed(ns: i64) -> String {
    if ns < 0 {
        format!("−{}", secs(-ns))
    } else {
        format!("+{}", secs(ns))
    }
}

use tailscope_analysis_core::text::secs;

impl Report {
    /// The JSON object of design.md's contract.
    pub fn to_json(&self) -> Value {
        json!({
            "traces": self.traces.iter().map(TraceJson).collect::<Vec<_>>(),
            "tail": tail_json(&self.tail),
            "findings": self.findings,
        })
    }

    /// Tail attribution of one grouping: (key, tail mean, median-band mean, traces in tail).
    pub fn tail_by<'a>(
        &'a self,
        key: impl Fn(&'a TraceResult) -> Option<&'a str>,
    ) -> Vec<(String, i64, usize)> {
        let p = self.tail.p_ns;
        let mut groups: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
        for t in &self.traces {
            if t.duration_ns >= p {
                if let Some(k) = key(t) {
                    let e = groups.entry(k).or_insert((0, 0));
                    e.0 += t.duration_ns;
                    e.1 += 1;
                }
            }
        }
        let mut v: Vec<(String, i64, usize)> = groups
            .into_iter()
            .map(|(k, (sum, n))| (k.to_owned(), sum / n.max(1) as i64, n))
            .collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)));
        v
    }

    /// The readable report.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let t = &self.tail;
        let gap = t.tail_mean_ns - t.median_mean_ns;
        let _ = writeln!(
            o,
            "{} traces · p50 {} · p{} {} · {} traces in the tail",
            self.traces.len(),
            secs(t.p50_ns),
            t.percentile,
            secs(t.p_ns),
            t.tail_traces
        );
        let mut parts: Vec<(Cause, i64)> = t
            .gap_by_cause_ns
            .iter()
            .map(|(c, v)| (*c, *v))
            .filter(|(_, v)| *v > 0)
            .collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.1));
        let list: Vec<String> = parts
            .iter()
            .take(5)
            .map(|(c, v)| format!("{} {c}", secs(*v)))
            .collect();
        let _ = writeln!(
            o,
            "\nWhy the tail is slow: the p{} cohort averages {} against {} for the 40th–60th band; of the {} gap, {}.",
            t.percentile,
            secs(t.tail_mean_ns),
            secs(t.median_mean_ns),
            secs(gap),
            if list.is_empty() { "nothing stands out".to_owned() } else { list.join(", ") }
        );
        let _ = writeln!(o, "\n  cause              gap (tail − median)");
        for (c, v) in &parts {
            let bar = "█".repeat(
                ((*v as f64 / gap.max(1) as f64) * 30.0)
                    .round()
                    .clamp(0.0, 30.0) as usize,
            );
            let _ = writeln!(o, "  {:<18} {:>9}  {bar}", c.as_str(), secs(*v));
        }
        // (traces, of which ambiguous, the alternatives named for those)
        let mut prim: BTreeMap<Cause, (usize, usize, tailscope_model::CauseSet)> = BTreeMap::new();
        for tr in self.traces.iter().filter(|x| x.duration_ns >= t.p_ns) {
            if let Some(c) = tr.primary_cause {
                let e = prim.entry(c).or_default();
                e.0 += 1;
                if tr.primary_evidence == Some(tailscope_model::Evidence::Ambiguous) {
                    e.1 += 1;
                    e.2 = e.2.union(tr.alternatives);
                }
            }
        }
        if !prim.is_empty() {
            let mut v: Vec<_> = prim.into_iter().collect();
            v.sort_by_key(|p| std::cmp::Reverse(p.1 .0));
            let s: Vec<String> = v
                .iter()
                .map(|(c, (n, amb, alts))| {
                    if *amb == 0 {
                        format!("{c} {n}")
                    } else {
                        let or: Vec<&str> = alts.iter().map(Cause::as_str).collect();
                        format!("{c} {n} ({amb} ambiguous: or {})", or.join(" or "))
                    }
                })
                .collect();
            let _ = writeln!(o, "\nPrimary causes of tail traces: {}", s.join(", "));
        }
        let ambiguous: i64 = self.traces.iter().map(|t| t.ambiguous_ns).sum();
        let total: i64 = self.traces.iter().map(|t| t.duration_ns).sum();
        if ambiguous > 0 && total > 0 {
            let _ = writeln!(
                o,
                "\n{:.1}% of critical-path time is ambiguous: the telemetry cannot tell its cause from another (see each finding's alternatives and what would settle it).",
                ambiguous as f64 * 100.0 / total as f64
            );
        }
        if !self.by_operation.is_empty() {
            let _ = writeln!(o, "\nOperations adding most critical-path time in the tail (tail mean vs median band):");
            for g in self.by_operation.iter().take(8) {
                let _ = writeln!(
                    o,
                    "  {:<44} {:>9} vs {:>9}  ({})",
                    format!("{} · {}", g.service, g.operation),
                    secs(g.tail_mean_ns),
                    secs(g.median_mean_ns),
                    signed(g.tail_mean_ns - g.median_mean_ns)
                );
            }
        }
        let linked = self.traces.iter().filter(|t| t.caller.is_some()).count();
        if linked > 0 {
            let _ = writeln!(o, "\n{linked} traces were started asynchronously by a span of another trace (span links): they are analysed on their own and never block their caller's critical path.");
        }
        if let Some(t) = self.tables.as_ref().filter(|t| !t.by_route.is_empty()) {
            let _ = writeln!(o, "\nTail traces by route:");
            for g in t.by_route.iter().take(6) {
                let _ = writeln!(
                    o,
                    "  {:<40} {:>4} traces, mean {}",
                    g.key.as_deref().unwrap_or("(no route)"),
                    g.traces,
                    secs(g.mean_duration_ns as i64)
                );
            }
        }
        let routes = if self.tables.is_some() {
            Vec::new()
        } else {
            self.tail_by(|x| Some(x.group.as_str()))
        };
        if !routes.is_empty() {
            let _ = writeln!(o, "\nTail traces by route:");
            for (k, mean, n) in routes.iter().take(6) {
                let _ = writeln!(o, "  {k:<40} {n:>4} traces, mean {}", secs(*mean));
            }
        }
        let convs = self.tail_by(|x| x.conversation_id.as_deref());
        if !convs.is_empty() {
            let _ = writeln!(o, "\nConversations with most tail traces:");
            for (k, mean, n) in convs.iter().take(5) {
                let _ = writeln!(o, "  {k:<40} {n:>4} traces, mean {}", secs(*mean));
            }
        }
        let mut by_kind: BTreeMap<&str, (usize, i64)> = BTreeMap::new();
        for f in &self.findings {
            let e = by_kind.entry(f.kind.as_str()).or_default();
            e.0 += 1;
            e.1 += f.estimated_cost_ns;
        }
        if !by_kind.is_empty() {
            let mut v: Vec<_> = by_kind.into_iter().collect();
            v.sort_by_key(|p| std::cmp::Reverse(p.1 .1));
            let _ = writeln!(
                o,
                "\nFindings ({} in all), by estimated saving:",
                self.findings.len()
            );
            for (k, (n, cost)) in v {
                let amb = self
                    .findings
                    .iter()
                    .filter(|f| {
                        f.kind == k && f.evidence_level == tailscope_model::Evidence::Ambiguous
                    })
                    .count();
                let note = if amb > 0 {
                    format!(" ({amb} ambiguous)")
                } else {
                    String::new()
                };
                let _ = writeln!(o, "  {k:<26} {n:>5} × · {} in all{note}", secs(cost));
            }
            let _ = writeln!(o, "\nTop findings:");
            for f in self.findings.iter().take(8) {
                let _ = writeln!(
                    o,
                    "  [{} · {}] save ~{} · trace {} span {}\n      {}",
                    f.kind,
                    f.evidence_level,
                    secs(f.estimated_cost_ns),
                    f.trace_id,
                    f.span_id,
                    f.summary
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_read_as_prose() {
        assert_eq!(signed(-1_000_000), "−1 ms");
        assert_eq!(signed(2_500_000_000), "+2.5 s");
        assert_eq!(signed(0), "+0 ms");
        assert!(!signed(-7_000_000).contains("+-"));
    }
}
