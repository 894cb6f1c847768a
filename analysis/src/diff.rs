//! `diff` over stores: reads each period's rows through the store's typed reads and
//! compares them with [`tailscope_analysis_core::diff`] (the measures, the intervals,
//! the headline and the text live there, re-exported here under the same paths).

use crate::AnalysisError;
use tailscope_store::query::TraceSource;

pub use tailscope_analysis_core::diff::{
    diff, rfc3339, value_text, Bound, Change, Diff, DiffOptions, LlmSample, Obs, Period,
    RouteSample, Sample, Scope, Window, WindowSpec,
};

/// `[first span start, last span start + 1)` of a store (`(0, 0)` when empty).
pub fn store_range(source: &impl TraceSource) -> Result<(i64, i64), AnalysisError> {
    Ok(source
        .span_starts()?
        .map_or((0, 0), |(from, to)| (from, to.saturating_add(1))))
}

/// Reads one period of the store (run [`crate::update`] first so the per-trace results
/// are current).
pub fn sample(source: &impl TraceSource, w: Window) -> Result<Sample, AnalysisError> {
    Ok(Sample::of(w, source.period_rows(w.from_ns, w.to_ns)?))
}

/// Reads both periods and compares them (the stores may be the same).
pub fn diff_store(
    before_store: &impl TraceSource,
    before: Window,
    after_store: &impl TraceSource,
    after: Window,
    opts: &DiffOptions,
) -> Result<Diff, AnalysisError> {
    let b = sample(before_store, before)?;
    let a = sample(after_store, after)?;
    Ok(diff(&b, &a, opts))
}
