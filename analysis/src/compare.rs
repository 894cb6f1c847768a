//! `compare` over a store: the cohorts read through the store's typed reads, the
//! values counted and ranked by [`tailscope_analysis_core::compare`] (which says what
//! the comparison is).

use crate::AnalysisError;
use tailscope_analysis_core::compare::{cohort_ranks, Cohort, Scan};
use tailscope_store::query::TraceSource;

// Attribute aliases: the one list is `model::semconv::ALIAS_GROUPS` (what `promote`
// reads); compare folds keys with it, and the notebook writes its pairs.
pub(crate) use tailscope_model::semconv::alias_pairs;
pub use tailscope_model::semconv::raw_keys;

pub use tailscope_analysis_core::compare::band;
pub use tailscope_analysis_core::compare::{AttributeShare, CompareOptions, Comparison};

/// The cohorts `compare` reads at `percentile`: ranks of the analysed traces by
/// duration (the tail from, the 40th–60th band, the p50).
pub fn ranks(
    source: &impl TraceSource,
    percentile: f64,
) -> Result<tailscope_model::samples::CohortRanks, AnalysisError> {
    let n = usize::try_from(source.totals()?.analysed_traces).unwrap_or(0);
    Ok(cohort_ranks(n, percentile))
}

/// Compares the tail with the median band over the stored analysis results (run
/// [`crate::update`] first so they are current).
pub fn compare(
    source: &impl TraceSource,
    opts: &CompareOptions,
) -> Result<Comparison, AnalysisError> {
    crate::Options {
        percentile: opts.percentile,
    }
    .check()?;
    let ranks = ranks(source, opts.percentile)?;
    let cohort = Cohort::new(&ranks, source.cohort_traces(&ranks)?);
    // a source that finds each cohort trace's values itself sends them, not the spans
    if let Some(values) = source.cohort_values(&ranks)? {
        let mut scan = cohort.scan();
        for v in values {
            scan.add_value(v);
        }
        return Ok(cohort.finish(vec![scan], Vec::new(), opts));
    }
    // every span of the cohort's traces, read by one worker per core
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 4);
    let mut scans: Vec<Scan<'_>> = (0..workers).map(|_| cohort.scan()).collect();
    source.cohort_spans(&ranks, &mut scans, &|scan: &mut Scan<'_>, row| {
        scan.add(row);
    })?;
    Ok(cohort.finish(scans, source.resource_attributes()?, opts))
}
