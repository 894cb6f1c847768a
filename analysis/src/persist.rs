//! Incremental, idempotent analysis over the store: traces that are new (or got spans
//! since their last analysis), and the traces of the same conversations, are
//! recomputed; the rest are read back from the result tables. Primary causes and the
//! tail are recomputed over everything, and the result tables are replaced in one
//! transaction.

use crate::{finish, AnalysisError, Finding, Metrics, Options, Report, Stages, TraceResult};
use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};
use tailscope_analysis_core::compute;
use tailscope_model::{Cause, SpanId};
use tailscope_store::{
    AnalysisRows, FindingRow, SectionRow, SpanRow, Store, TraceRow, CAUSE_COLUMNS,
};

/// How much of a run was recomputed, and where its time went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    pub recomputed: usize,
    pub reused: usize,
    pub stages: Stages,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn cause_array(m: &BTreeMap<Cause, i64>) -> [i64; 14] {
    let mut out = [0; 14];
    for (k, name) in CAUSE_COLUMNS.iter().enumerate() {
        if let Some(c) = Cause::parse(name) {
            out[k] = m.get(&c).copied().unwrap_or(0);
        }
    }
    out
}

fn from_row(row: &TraceRow, sections: &[SectionRow]) -> TraceResult {
    let mut by_cause = BTreeMap::new();
    for (k, name) in CAUSE_COLUMNS.iter().enumerate() {
        if let (Some(c), v) = (Cause::parse(name), row.by_cause_ns[k]) {
            if v != 0 {
                by_cause.insert(c, v);
            }
        }
    }
    TraceResult {
        trace_id: row.trace_id.clone(),
        root: row.root.clone(),
        group: row.route.clone(),
        start_ns: row.start_ns,
        duration_ns: row.duration_ns,
        conversation_id: row.conversation_id.clone(),
        sections: sections
            .iter()
            .filter_map(|s| {
                Some((
                    SpanId::from_hex(&s.span_id).ok()?,
                    s.start_ns,
                    s.end_ns,
                    Cause::parse(&s.cause)?,
                ))
            })
            .collect(),
        by_cause_ns: by_cause,
        output_tokens: row.output_tokens,
        primary_cause: None,
        spans: Vec::new(),
        orphans: usize::try_from(row.orphans).unwrap_or(0),
        caller: row.caller.clone(),
    }
}

fn finding_from_row(f: FindingRow) -> Finding {
    Finding {
        kind: f.kind,
        trace_id: f.trace_id,
        span_id: f.span_id,
        conversation_id: f.conversation_id,
        estimated_cost_ns: f.estimated_cost_ns,
        evidence: serde_json::from_str(&f.evidence).unwrap_or(serde_json::Value::Null),
        summary: f.summary,
    }
}

/// Analyses what changed, reuses the rest, writes the result tables, returns the report.
pub fn analyze_and_store(
    store: &Store,
    opts: Options,
) -> Result<(Report, RunStats), AnalysisError> {
    let started = now_ns();
    let mut stages = Stages::default();
    let mut clock = std::time::Instant::now();
    let dirty = store.traces_to_analyze()?;
    stages.lap("find new traces", &mut clock);
    let dirty_set: HashSet<&str> = dirty.iter().map(String::as_str).collect();
    let (fresh, fresh_findings) = if dirty.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let filter = store.trace_filter(&dirty)?;
        let spans = store.load_spans(Some(&filter))?;
        let from = spans.iter().map(|s| s.start_ns).min().unwrap_or(0) - 60_000_000_000;
        let to = spans.iter().map(|s| s.end_ns).max().unwrap_or(0) + 60_000_000_000;
        let metrics = Metrics::load(store, from, to)?;
        // the latency model is fitted over every call in the store, not only the new ones
        let rows: Vec<_> = store
            .llm_call_samples()?
            .into_iter()
            .filter_map(|r| {
                Some((
                    crate::evict::LlmCall {
                        span_id: SpanId::from_hex(&r.span_id).ok()?,
                        conversation_id: r.conversation_id.unwrap_or_default(),
                        model: r.model,
                        start_ns: r.start_ns,
                        end_ns: r.start_ns + r.duration_ns,
                        input_tokens: r.input_tokens,
                        output_tokens: r.output_tokens,
                        cache_read_tokens: r.cache_read_tokens,
                        prefill_rate: None,
                    },
                    r.duration_ns as f64,
                    r.ttft_ns.map(|t| t as f64),
                    r.server,
                ))
            })
            .collect();
        let model = crate::latency::LatencyModel::fit(&crate::samples_of(&rows));
        let tools = crate::findings::ToolBaseline::from_durations(store.tool_durations()?);
        stages.lap("load", &mut clock);
        let (r, f, _) = compute(spans, &metrics, Some(&model), Some(&tools), &mut stages);
        clock = std::time::Instant::now();
        (r, f)
    };
    // reuse the rest
    let rows = store.trace_rows()?;
    let mut sections: BTreeMap<String, Vec<SectionRow>> = BTreeMap::new();
    for s in store.section_rows()? {
        if !dirty_set.contains(s.trace_id.as_str()) {
            sections.entry(s.trace_id.clone()).or_default().push(s);
        }
    }
    let analyzed: BTreeMap<&str, i64> = rows
        .iter()
        .map(|r| (r.trace_id.as_str(), r.analyzed_ns))
        .collect();
    let mut results: Vec<TraceResult> = rows
        .iter()
        .filter(|r| !dirty_set.contains(r.trace_id.as_str()))
        .map(|r| from_row(r, sections.get(&r.trace_id).map_or(&[][..], Vec::as_slice)))
        .collect();
    let reused = results.len();
    let mut findings: Vec<Finding> = store
        .finding_rows()?
        .into_iter()
        .filter(|f| !dirty_set.contains(f.trace_id.as_str()))
        .map(finding_from_row)
        .collect();
    let recomputed = fresh.len();
    let fresh_ids: HashSet<String> = fresh.iter().map(|t| t.trace_id.clone()).collect();
    let mut new_rows = AnalysisRows {
        recomputed: dirty.clone(),
        ..AnalysisRows::default()
    };
    for t in &fresh {
        for (id, s, e, c) in &t.sections {
            new_rows.sections.push(SectionRow {
                trace_id: t.trace_id.clone(),
                span_id: id.to_hex(),
                start_ns: *s,
                end_ns: *e,
                cause: c.as_str().to_owned(),
            });
        }
        for s in &t.spans {
            new_rows.spans.push(SpanRow {
                trace_id: t.trace_id.clone(),
                span_id: s.span_id.to_hex(),
                total_ns: s.total_ns,
                self_ns: s.self_ns,
                critical_ns: s.critical_ns,
                skew_ns: s.skew_ns,
                orphan: s.orphan,
                conversation_id: s.conversation_id.clone(),
            });
        }
    }
    for f in &fresh_findings {
        new_rows.findings.push(FindingRow {
            kind: f.kind.clone(),
            trace_id: f.trace_id.clone(),
            span_id: f.span_id.clone(),
            conversation_id: f.conversation_id.clone(),
            estimated_cost_ns: f.estimated_cost_ns,
            summary: f.summary.clone(),
            evidence: f.evidence.to_string(),
        });
    }
    results.extend(fresh);
    findings.extend(fresh_findings);
    results.sort_by(|a, b| a.trace_id.cmp(&b.trace_id));
    stages.lap("read back stored results", &mut clock);
    let mut report = finish(results, findings, opts)?;
    stages.lap("primary causes + tail", &mut clock);
    new_rows.traces = report
        .traces
        .iter()
        .map(|t| TraceRow {
            trace_id: t.trace_id.clone(),
            root: t.root.clone(),
            route: t.group.clone(),
            conversation_id: t.conversation_id.clone(),
            start_ns: t.start_ns,
            duration_ns: t.duration_ns,
            primary_cause: t.primary_cause.map(|c| c.as_str().to_owned()),
            orphans: i32::try_from(t.orphans).unwrap_or(i32::MAX),
            by_cause_ns: cause_array(&t.by_cause_ns),
            caller: t.caller.clone(),
            output_tokens: t.output_tokens,
            analyzed_ns: if fresh_ids.contains(&t.trace_id) {
                started
            } else {
                analyzed
                    .get(t.trace_id.as_str())
                    .copied()
                    .unwrap_or(started)
            },
        })
        .collect();
    store.replace_analysis(&new_rows)?;
    stages.lap("persist", &mut clock);
    report.attribute_operations(&store.critical_time_by_operation()?);
    // The cohort and group tables come from Polars over the stored rows.
    let tables = crate::tables::tail_tables(store, opts.percentile)?;
    report
        .tail
        .gap_by_cause_ns
        .clone_from(&tables.gap_by_cause_ns);
    report.tables = Some(tables);
    stages.lap("tail tables", &mut clock);
    Ok((
        report,
        RunStats {
            recomputed,
            reused,
            stages,
        },
    ))
}
