//! The tail cohort and group tables over the stored `trace_analysis` table: the same
//! rank-based cohorts as [`crate::tail::cohorts`] (rows ordered by duration, then trace
//! id).

use crate::AnalysisError;
use std::collections::BTreeMap;
use tailscope_model::Cause;
use tailscope_store::query::TailRow;
use tailscope_store::{Store, CAUSE_COLUMNS};

/// One group of the tail cohort (a route or a conversation; `None`: traces without
/// one).
#[derive(Debug, Clone, PartialEq)]
pub struct TailGroup {
    pub key: Option<String>,
    pub traces: usize,
    pub mean_duration_ns: f64,
}

/// Cohorts and per-group tables of one percentile.
#[derive(Debug, Clone)]
pub struct TailTables {
    /// Mean per-cause time of the tail minus that of the 40th–60th band.
    pub gap_by_cause_ns: BTreeMap<Cause, i64>,
    pub tail_traces: usize,
    pub median_traces: usize,
    /// Per route over the tail cohort, by route (traces without one first).
    pub by_route: Vec<TailGroup>,
    /// Per conversation, the same.
    pub by_conversation: Vec<TailGroup>,
}

/// The mean of the values present (empty columns left out), 0 when none is.
fn mean(rows: &[TailRow], k: usize) -> f64 {
    let (sum, n) = rows
        .iter()
        .filter_map(|r| r.by_cause_ns[k])
        .fold((0.0, 0u64), |(s, n), v| (s + v as f64, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

fn per_group(tail: &[TailRow], key: impl Fn(&TailRow) -> Option<&str>) -> Vec<TailGroup> {
    let mut groups: BTreeMap<Option<&str>, (usize, f64)> = BTreeMap::new();
    for r in tail {
        let g = groups.entry(key(r)).or_default();
        g.0 += 1;
        g.1 += r.duration_ns as f64;
    }
    groups
        .into_iter()
        .map(|(k, (n, sum))| TailGroup {
            key: k.map(str::to_owned),
            traces: n,
            mean_duration_ns: sum / n as f64,
        })
        .collect()
}

/// Computes the cohorts and tables from the stored analysis.
pub fn tail_tables(store: &Store, percentile: f64) -> Result<TailTables, AnalysisError> {
    let rows = store.tail_rows()?;
    let n = rows.len();
    if n == 0 {
        return Ok(TailTables {
            gap_by_cause_ns: BTreeMap::new(),
            tail_traces: 0,
            median_traces: 0,
            by_route: Vec::new(),
            by_conversation: Vec::new(),
        });
    }
    let c = tailscope_analysis_core::compare::cohort_ranks(n, percentile);
    let tail = &rows[c.tail_from..];
    let mid = &rows[c.band_from..c.band_to];
    let mut gap = BTreeMap::new();
    for (k, name) in CAUSE_COLUMNS.iter().enumerate() {
        let (t, m) = (mean(tail, k), mean(mid, k));
        if let Some(c) = Cause::parse(name) {
            if t > 0.0 || m > 0.0 {
                gap.insert(c, (t - m).round() as i64);
            }
        }
    }
    Ok(TailTables {
        gap_by_cause_ns: gap,
        tail_traces: tail.len(),
        median_traces: mid.len(),
        by_route: per_group(tail, |r| r.route.as_deref()),
        by_conversation: per_group(tail, |r| r.conversation_id.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(route: Option<&str>, d: i64, queue: Option<i64>) -> TailRow {
        let mut by_cause_ns = [None; CAUSE_COLUMNS.len()];
        by_cause_ns[0] = queue;
        TailRow {
            route: route.map(str::to_owned),
            conversation_id: None,
            duration_ns: d,
            by_cause_ns,
        }
    }

    #[test]
    fn groups_are_counted_and_averaged_by_key() {
        let rows = [
            row(Some("b"), 10, None),
            row(None, 4, Some(2)),
            row(Some("b"), 30, Some(4)),
            row(Some("a"), 7, None),
        ];
        let g = per_group(&rows, |r| r.route.as_deref());
        let keys: Vec<_> = g.iter().map(|g| g.key.as_deref()).collect();
        assert_eq!(keys, [None, Some("a"), Some("b")]);
        assert_eq!((g[2].traces, g[2].mean_duration_ns), (2, 20.0));
        // empty cause columns are left out of the mean, as SQL's avg does
        assert!((mean(&rows, 0) - 3.0).abs() < 1e-9);
        assert!(mean(&rows[..1], 0).abs() < 1e-9);
    }
}
