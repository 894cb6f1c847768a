//! `analyze_and_store`: an incremental run ([`crate::update`]) followed by the report
//! read back from the result tables ([`crate::stored::load_report`]).

use crate::update::{update, RunStats};
use crate::{AnalysisError, Options, Report};
use tailscope_store::Store;

/// Brings the stored results up to date and returns the report over every trace
/// (with critical-path sections, as the JSON report lists them).
pub fn analyze_and_store(
    store: &Store,
    opts: Options,
) -> Result<(Report, RunStats), AnalysisError> {
    opts.check()?;
    let mut stats = update(store, &|_| {})?;
    let mut clock = std::time::Instant::now();
    let report = crate::stored::load_report(store, opts, true)?;
    stats.stages.lap("read back the report", &mut clock);
    Ok((report, stats))
}
