//! The JSON report (design.md) streamed from the stored results: findings, the tail
//! and every trace with its critical path are read a page at a time and written as
//! they are read, so memory depends on the page, not on the store. Byte for byte the
//! document [`crate::Report::to_json`] gives for [`crate::load_report`]'s report.

use crate::report::{tail_json, TraceJson};
use crate::stored::{finding_from_row, from_row};
use crate::{AnalysisError, Options};
use std::io::Write;
use tailscope_store::Store;

/// Traces (with their sections) and findings read per page.
pub const PAGE: usize = 5_000;

/// What a streamed report held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonStats {
    pub traces: usize,
    pub findings: usize,
    pub bytes: u64,
}

/// A writer that counts what passes through it.
struct Counted<'a> {
    w: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// Writes the JSON report of the stored results to `w` (no trailing newline), `page`
/// traces and findings at a time. The keys are in serde_json's order (sorted), as
/// `to_json` gives them.
pub fn write_report_json(
    store: &Store,
    opts: Options,
    page: usize,
    w: &mut dyn Write,
) -> Result<JsonStats, AnalysisError> {
    opts.check()?;
    let page = page.max(1);
    let mut w = Counted { w, bytes: 0 };
    let mut stats = JsonStats::default();
    let sep = |w: &mut Counted<'_>, first: &mut bool| -> std::io::Result<()> {
        if !std::mem::take(first) {
            w.write_all(b",")?;
        }
        Ok(())
    };
    // findings, costliest first
    w.write_all(b"{\"findings\":[")?;
    let mut first = true;
    let mut cursor = None;
    loop {
        let rows = store.finding_rows_after(cursor.as_ref().map(|(r, f)| (*r, f)), page)?;
        let Some(last) = rows.last().cloned() else {
            break;
        };
        for (_, f) in rows {
            sep(&mut w, &mut first)?;
            serde_json::to_writer(
                &mut w,
                &serde_json::to_value(finding_from_row(f)).map_err(std::io::Error::from)?,
            )
            .map_err(std::io::Error::from)?;
            stats.findings += 1;
        }
        cursor = Some(last);
    }
    // the tail: cohorts over every trace's duration, the gap from the tail tables
    let durations = store.trace_durations()?;
    let (tail_idx, _, p_ns, p50_ns) =
        tailscope_analysis_core::tail::cohorts(&durations, opts.percentile);
    let tail_traces = tail_idx.len();
    drop((durations, tail_idx));
    let tables = crate::tables::tail_tables(store, opts.percentile)?;
    let tail = tailscope_analysis_core::tail::Tail {
        percentile: opts.percentile,
        p50_ns,
        p_ns,
        tail_traces,
        median_traces: tables.median_traces,
        gap_by_cause_ns: tables.gap_by_cause_ns,
        tail_mean_ns: 0,
        median_mean_ns: 0,
    };
    w.write_all(b"],\"tail\":")?;
    serde_json::to_writer(&mut w, &tail_json(&tail)).map_err(std::io::Error::from)?;
    // every trace with its critical path, by trace id
    w.write_all(b",\"traces\":[")?;
    let mut first = true;
    let mut after: Option<String> = None;
    loop {
        let rows = store.trace_rows_after(after.as_deref(), page)?;
        let Some(last) = rows.last().map(|r| r.trace_id.clone()) else {
            break;
        };
        let page = store.section_page(after.as_deref(), &last)?;
        let mut at = 0;
        for r in rows {
            let own = page.of(&r.trace_id, &mut at);
            let t = from_row(r, own);
            sep(&mut w, &mut first)?;
            serde_json::to_writer(&mut w, &TraceJson(&t)).map_err(std::io::Error::from)?;
            stats.traces += 1;
        }
        after = Some(last);
    }
    w.write_all(b"]}")?;
    w.flush()?;
    stats.bytes = w.bytes;
    Ok(stats)
}
