//! The report read back from the result tables (what [`crate::update`] wrote): trace
//! rows, optionally their critical-path sections, findings, the tail over every
//! trace, critical time per operation and the tail tables.

use crate::report::TraceResult;
use crate::{AnalysisError, Finding, Options, Report};
use tailscope_model::samples::Section;
use tailscope_model::{Cause, CauseSet, Evidence};
use tailscope_store::{FindingRow, SectionPage, Store, TraceRow};

pub(crate) fn from_row(row: TraceRow, sections: &[Section]) -> TraceResult {
    let by_cause = crate::cause_map(&row.by_cause_ns);
    let mut t = TraceResult {
        primary_cause: None,
        primary_evidence: None,
        alternatives: CauseSet::EMPTY,
        ambiguous_ns: row.ambiguous_ns,
        cause_evidence: row
            .cause_evidence
            .as_deref()
            .map(tailscope_analysis_core::parse_cause_evidence)
            .unwrap_or_default(),
        trace_id: row.trace_id,
        root: row.root,
        group: row.route,
        start_ns: row.start_ns,
        duration_ns: row.duration_ns,
        conversation_id: row.conversation_id,
        sections: sections.to_vec(),
        by_cause_ns: by_cause,
        output_tokens: row.output_tokens,
        uncached_tokens: row.uncached_tokens,
        spans: Vec::new(),
        orphans: usize::try_from(row.orphans).unwrap_or(0),
        caller: row.caller,
    };
    t.set_primary(row.primary_cause.as_deref().and_then(Cause::parse));
    t
}

pub(crate) fn finding_from_row(f: FindingRow) -> Finding {
    Finding {
        kind: f.kind,
        trace_id: f.trace_id,
        span_id: f.span_id,
        conversation_id: f.conversation_id,
        estimated_cost_ns: f.estimated_cost_ns,
        evidence: serde_json::from_str(&f.evidence).unwrap_or(serde_json::Value::Null),
        evidence_level: Evidence::parse(&f.evidence_level).unwrap_or(Evidence::Inferred),
        alternatives: CauseSet::parse_list(&f.alternatives),
        summary: f.summary,
    }
}

/// A scoped thread's result; its panic goes on in the caller.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The report of the stored results. `sections`: also read every trace's
/// critical-path sections (the JSON report lists them; the text report does not).
pub fn load_report(store: &Store, opts: Options, sections: bool) -> Result<Report, AnalysisError> {
    load_report_with(store, None, opts, sections)
}

/// [`load_report`], with the critical time per operation of the cohorts summed by
/// `sums` where given (a source that keeps the spans elsewhere).
pub fn load_report_with(
    store: &Store,
    sums: Option<&crate::report::OperationSums<'_>>,
    opts: Options,
    sections: bool,
) -> Result<Report, AnalysisError> {
    opts.check()?;
    // Three scans of the stored rows, each on its own connection: the traces (here),
    // the findings with the cohort and group tables, and the critical time per
    // operation of the cohorts (once the traces' durations are known).
    let (other, third) = (store.reader()?, store.reader()?);
    let (traces, side, by_operation) = std::thread::scope(|scope| {
        let side = scope.spawn(move || -> Result<_, AnalysisError> {
            // primary causes are stored by the run that judged them
            let findings: Vec<Finding> = other
                .finding_rows()?
                .into_iter()
                .map(finding_from_row)
                .collect();
            // the cohort and group tables come from the stored rows
            let tables = crate::tables::tail_tables(&other, opts.percentile)?;
            Ok((findings, tables))
        });
        let rows = match store.trace_rows() {
            Ok(rows) => rows,
            Err(e) => return (Err(e.into()), join(side), Ok(Vec::new())),
        };
        let ids: Vec<(String, i64)> = rows
            .iter()
            .map(|r| (r.trace_id.clone(), r.duration_ns))
            .collect();
        let by_operation = scope.spawn(move || {
            let ids: Vec<(&str, i64)> = ids.iter().map(|(t, d)| (t.as_str(), *d)).collect();
            crate::report::operation_gaps(&third, sums, &ids, opts.percentile)
        });
        let traces = (|| -> Result<Vec<TraceResult>, AnalysisError> {
            let page = match rows.last() {
                Some(last) if sections => store.section_page(None, &last.trace_id)?,
                _ => SectionPage::default(),
            };
            let mut at = 0;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let s = page.of(&r.trace_id, &mut at);
                    from_row(r, s)
                })
                .collect())
        })();
        (traces, join(side), join(by_operation))
    });
    let (findings, tables) = side?;
    let mut report = crate::report_of(traces?, findings, opts.percentile, false);
    report.by_operation = by_operation?;
    report
        .tail
        .gap_by_cause_ns
        .clone_from(&tables.gap_by_cause_ns);
    report.tables = Some(tables);
    Ok(report)
}
