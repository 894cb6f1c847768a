//! The tail cohort and group tables, computed with Polars over the stored
//! `trace_analysis` table: the same rank-based cohorts as [`crate::tail::cohorts`]
//! (rows ordered by duration, then trace id).

use crate::AnalysisError;
use std::collections::BTreeMap;
use tailscope_model::Cause;
use tailscope_store::polars::prelude::{DataFrame, PolarsResult, SortMultipleOptions};
use tailscope_store::{Store, CAUSE_COLUMNS};

/// Cohorts and per-group tables of one percentile.
#[derive(Debug, Clone)]
pub struct TailTables {
    /// Mean per-cause time of the tail minus that of the 40th–60th band.
    pub gap_by_cause_ns: BTreeMap<Cause, i64>,
    pub tail_traces: usize,
    pub median_traces: usize,
    /// Per route: `route`, `duration_ns_count`, `duration_ns_mean` over the tail cohort.
    pub by_route: DataFrame,
    /// Per conversation, the same columns.
    pub by_conversation: DataFrame,
}

fn mean(df: &DataFrame, col: &str) -> f64 {
    df.column(col)
        .ok()
        .and_then(|c| c.as_materialized_series().mean())
        .unwrap_or(0.0)
}

#[allow(deprecated)] // eager group-by aggregations; the lazy API is not built in
fn per_group(tail: &DataFrame, key: &str) -> PolarsResult<DataFrame> {
    let g = tail.group_by([key])?.select(["duration_ns"]);
    // count() and mean() walk the same groups of `g` in the same order
    let mut out = g.count()?;
    let means = g.mean()?;
    out.with_column(means.column("duration_ns_mean")?.clone())?;
    out.sort_in_place([key], SortMultipleOptions::default())?;
    Ok(out)
}

/// Computes the cohorts and tables with Polars from the stored analysis.
pub fn tail_tables(store: &Store, percentile: f64) -> Result<TailTables, AnalysisError> {
    let df = store.trace_analysis_frame()?;
    let n = df.height();
    let polars =
        |e: tailscope_store::polars::prelude::PolarsError| AnalysisError::Polars(e.to_string());
    if n == 0 {
        return Ok(TailTables {
            gap_by_cause_ns: BTreeMap::new(),
            tail_traces: 0,
            median_traces: 0,
            by_route: DataFrame::empty(),
            by_conversation: DataFrame::empty(),
        });
    }
    let c = tailscope_analysis_core::compare::cohort_ranks(n, percentile);
    let tail = df.slice(c.tail_from as i64, n - c.tail_from);
    let mid = df.slice(c.band_from as i64, c.band_to - c.band_from);
    let mut gap = BTreeMap::new();
    for name in CAUSE_COLUMNS {
        let col = format!("{name}_ns");
        let (t, m) = (mean(&tail, &col), mean(&mid, &col));
        if let Some(c) = Cause::parse(name) {
            if t > 0.0 || m > 0.0 {
                gap.insert(c, (t - m).round() as i64);
            }
        }
    }
    Ok(TailTables {
        gap_by_cause_ns: gap,
        tail_traces: tail.height(),
        median_traces: mid.height(),
        by_route: per_group(&tail, "route").map_err(polars)?,
        by_conversation: per_group(&tail, "conversation_id").map_err(polars)?,
    })
}
