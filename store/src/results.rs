//! Analysis result tables (schema v2): written per trace by `tailscope analyze`, read
//! back so a later run only recomputes traces that changed.

use crate::{Store, StoreError};
use duckdb::arrow::array::{
    Array, ArrayRef, BooleanArray, FixedSizeBinaryArray, Int32Array, Int64Array, StringArray,
    UInt16Array, UInt64Array, UInt8Array,
};
use duckdb::arrow::datatypes::{Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{params, Connection};
use std::sync::Arc;
use tailscope_model::samples::Section;
use tailscope_model::{Cause, CauseSet, Evidence, SpanId, TraceId};

fn strs<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

fn ints(v: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(v.collect::<Int64Array>())
}

/// A batch of `columns` in table order (the appender matches by position).
pub(crate) fn batch(columns: Vec<ArrayRef>) -> Result<RecordBatch, StoreError> {
    let named: Vec<(String, ArrayRef)> = columns
        .into_iter()
        .enumerate()
        .map(|(k, a)| (format!("c{k}"), a))
        .collect();
    Ok(RecordBatch::try_from_iter(named)?)
}

/// Appends `b` to `table` with DuckDB's Arrow appender (nothing when it is empty).
pub(crate) fn append(c: &Connection, table: &str, b: RecordBatch) -> Result<(), StoreError> {
    if b.num_rows() > 0 {
        let mut app = c.appender(table)?;
        app.append_record_batch(b)?;
        app.flush()?;
    }
    Ok(())
}

/// Trace ids as DuckDB UUIDs (16 bytes, big-endian, tagged as Arrow's UUID extension).
fn uuids<'a>(v: impl Iterator<Item = &'a TraceId>) -> Result<ArrayRef, StoreError> {
    Ok(Arc::new(FixedSizeBinaryArray::try_from_iter(
        v.map(|t| t.0),
    )?))
}

/// Span ids as UBIGINT (the 8 bytes big-endian, so `printf('%016x')` is the hex id).
fn span_ints<'a>(v: impl Iterator<Item = &'a SpanId>) -> ArrayRef {
    Arc::new(v.map(|s| u64::from_be_bytes(s.0)).collect::<UInt64Array>())
}

/// A batch whose first column is a trace id (UUID) and the rest as in [`batch`].
fn batch_by_trace(columns: Vec<ArrayRef>) -> Result<RecordBatch, StoreError> {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let f = Field::new(format!("c{k}"), a.data_type().clone(), true);
            if k == 0 {
                f.with_metadata(std::collections::HashMap::from([(
                    "ARROW:extension:name".to_owned(),
                    "arrow.uuid".to_owned(),
                )]))
            } else {
                f
            }
        })
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// `path_sections` rows as one batch in table order.
fn section_batch(rows: &[(TraceId, Section)]) -> Result<RecordBatch, StoreError> {
    batch_by_trace(vec![
        uuids(rows.iter().map(|r| &r.0))?,
        span_ints(rows.iter().map(|r| &r.1.span_id)),
        ints(rows.iter().map(|r| Some(r.1.start_ns))),
        ints(rows.iter().map(|r| Some(r.1.end_ns))),
        Arc::new(rows.iter().map(|r| r.1.cause as u8).collect::<UInt8Array>()),
        Arc::new(
            rows.iter()
                .map(|r| evidence_code(r.1.evidence))
                .collect::<UInt8Array>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.1.alternatives.bits())
                .collect::<UInt16Array>(),
        ),
    ])
}

/// `span_times` rows as one batch in table order.
fn span_batch(rows: &[SpanRow]) -> Result<RecordBatch, StoreError> {
    batch_by_trace(vec![
        uuids(rows.iter().map(|r| &r.trace_id))?,
        span_ints(rows.iter().map(|r| &r.span_id)),
        ints(rows.iter().map(|r| Some(r.total_ns))),
        ints(rows.iter().map(|r| Some(r.self_ns))),
        ints(rows.iter().map(|r| Some(r.critical_ns))),
        ints(rows.iter().map(|r| Some(r.skew_ns))),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.orphan))
                .collect::<BooleanArray>(),
        ),
        strs(rows.iter().map(|r| r.conversation_id.as_deref())),
    ])
}

/// A trace id (32 hex digits) as a DuckDB UUID literal; `None` for any other text.
pub(crate) fn uuid_of(trace_id: &str) -> Option<String> {
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("'{}'::UUID", trace_id.to_ascii_lowercase()))
}

/// An evidence level's code in `path_sections` (the order of schema v10's list).
fn evidence_code(e: Evidence) -> u8 {
    match e {
        Evidence::Measured => 0,
        Evidence::Inferred => 1,
        Evidence::Ambiguous => 2,
    }
}

/// [`evidence_code`] read back; code 3 (a section stored before levels) and unknown
/// codes read as inferred, never claimed measured.
fn evidence_of(code: u8) -> Evidence {
    match code {
        0 => Evidence::Measured,
        2 => Evidence::Ambiguous,
        _ => Evidence::Inferred,
    }
}

/// `trace_analysis` rows as one batch in table order.
fn trace_batch(t: &[TraceRow]) -> Result<RecordBatch, StoreError> {
    let mut cols = vec![
        strs(t.iter().map(|r| Some(r.trace_id.as_str()))),
        strs(t.iter().map(|r| Some(r.root.as_str()))),
        strs(t.iter().map(|r| Some(r.route.as_str()))),
        strs(t.iter().map(|r| r.conversation_id.as_deref())),
        ints(t.iter().map(|r| Some(r.start_ns))),
        ints(t.iter().map(|r| Some(r.duration_ns))),
        strs(t.iter().map(|r| r.primary_cause.as_deref())),
        Arc::new(t.iter().map(|r| Some(r.orphans)).collect::<Int32Array>()),
    ];
    for k in 0..CAUSE_COLUMNS.len() {
        cols.push(ints(t.iter().map(|r| Some(r.by_cause_ns[k]))));
    }
    cols.push(ints(t.iter().map(|r| Some(r.analyzed_ns))));
    cols.push(strs(
        t.iter().map(|r| r.caller.as_ref().map(|c| c.0.as_str())),
    ));
    cols.push(strs(
        t.iter().map(|r| r.caller.as_ref().map(|c| c.1.as_str())),
    ));
    cols.push(ints(t.iter().map(|r| Some(r.output_tokens))));
    cols.push(ints(t.iter().map(|r| Some(r.ambiguous_ns))));
    cols.push(strs(t.iter().map(|r| r.cause_evidence.as_deref())));
    cols.push(ints(t.iter().map(|r| Some(r.uncached_tokens))));
    batch(cols)
}

/// The cause columns of `trace_analysis`, in table order: the names of
/// [`Cause::ALL`] (design.md's cause names), each column `<name>_ns`.
pub const CAUSE_COLUMNS: [&str; Cause::COUNT] = Cause::NAMES;

/// One row of `trace_analysis`; `by_cause_ns` follows [`CAUSE_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRow {
    pub trace_id: String,
    pub root: String,
    pub route: String,
    pub conversation_id: Option<String>,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub primary_cause: Option<String>,
    pub orphans: i32,
    pub by_cause_ns: [i64; Cause::COUNT],
    pub analyzed_ns: i64,
    /// The span of another trace that started this one asynchronously (root link).
    pub caller: Option<(String, String)>,
    /// Output tokens of the trace's LLM calls.
    pub output_tokens: i64,
    /// Time on critical-path sections whose cause is ambiguous (0 before schema v9).
    pub ambiguous_ns: i64,
    /// How each cause is known, as JSON (`None` before schema v9).
    pub cause_evidence: Option<String>,
    /// Uncached input tokens of the trace's LLM calls (0 before schema v9).
    pub uncached_tokens: i64,
}

/// One row of `critical_path_sections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionRow {
    pub trace_id: String,
    pub span_id: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub cause: String,
    /// measured, inferred or ambiguous (empty before schema v9).
    pub evidence: String,
    /// Other causes that explain the section about as well, joined by commas.
    pub alternatives: String,
}

/// One row of `span_times` (the `span_analysis` view: per-span results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRow {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub total_ns: i64,
    pub self_ns: i64,
    pub critical_ns: i64,
    pub skew_ns: i64,
    /// The span's conversation: its own, an ancestor's or a linked span's.
    pub conversation_id: Option<String>,
    pub orphan: bool,
}

/// The sections of a page of traces ([`Store::section_page`]): each trace id, in
/// order, with the range of its sections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SectionPage {
    pub traces: Vec<(String, std::ops::Range<usize>)>,
    pub sections: Vec<Section>,
}

impl SectionPage {
    /// The sections of `trace` when the walk is at trace `*at` (traces are visited in
    /// order; a trace with no sections gets none).
    pub fn of(&self, trace: &str, at: &mut usize) -> &[Section] {
        while self
            .traces
            .get(*at)
            .is_some_and(|(id, _)| id.as_str() < trace)
        {
            *at += 1;
        }
        match self.traces.get(*at) {
            Some((id, r)) if id == trace => &self.sections[r.clone()],
            _ => &[],
        }
    }
}

/// One row of `findings`; `evidence` is JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    pub kind: String,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: Option<String>,
    pub estimated_cost_ns: i64,
    pub summary: String,
    pub evidence: String,
    /// measured, inferred or ambiguous (empty before schema v9).
    pub evidence_level: String,
    /// Other causes that explain it about as well, joined by commas.
    pub alternatives: String,
}

/// The columns [`finding_row`] reads, for a `SELECT` over `findings`.
pub(crate) const FINDING_COLS: &str = "kind, trace_id, span_id, conversation_id,
    estimated_cost_ns, summary, evidence, coalesce(evidence_level, '') AS evidence_level,
    coalesce(alternatives, '') AS alternatives";

/// A [`FindingRow`] from a row of [`FINDING_COLS`].
pub(crate) fn finding_row(r: &duckdb::Row<'_>) -> duckdb::Result<FindingRow> {
    Ok(FindingRow {
        kind: r.get("kind")?,
        trace_id: r.get("trace_id")?,
        span_id: r.get("span_id")?,
        conversation_id: r.get("conversation_id")?,
        estimated_cost_ns: r.get("estimated_cost_ns")?,
        summary: r.get("summary")?,
        evidence: r.get("evidence")?,
        evidence_level: r.get("evidence_level")?,
        alternatives: r.get("alternatives")?,
    })
}

/// What one chunk of an analysis run writes.
#[derive(Debug, Clone, Default)]
pub struct AnalysisRows {
    /// The recomputed traces' rows.
    pub traces: Vec<TraceRow>,
    /// Traces whose rows, sections, span rows and findings are replaced.
    pub recomputed: Vec<String>,
    /// Whether older rows of those traces may exist (false right after
    /// [`Store::clear_analysis`]: nothing to delete, and the delete scans are skipped).
    pub delete_old: bool,
    /// Critical-path sections, each with its trace.
    pub sections: Vec<(TraceId, Section)>,
    pub spans: Vec<SpanRow>,
    pub findings: Vec<FindingRow>,
}

/// How the store's traces tie together for analysis, read in a few column scans.
#[derive(Debug, Clone, Default)]
pub struct TraceGraph {
    /// Every trace.
    pub traces: Vec<TraceInfo>,
    /// (trace id, conversation id) for each conversation a trace's spans name.
    pub conversations: Vec<(String, String)>,
    /// (trace id, linked trace id) for each span link to another trace.
    pub links: Vec<(String, String)>,
}

/// Completed runs kept in `analysis_runs`.
pub const RUNS_KEPT: i64 = 1_000;

/// One trace of a [`TraceGraph`]: its spans, time range, and where its rows lie in
/// the spans and events tables (rowids; appends keep a trace's rows close together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceInfo {
    pub trace_id: String,
    pub spans: i64,
    pub start_ns: i64,
    pub end_ns: i64,
    pub span_rows: (i64, i64),
    /// `None`: the trace has no events.
    pub event_rows: Option<(i64, i64)>,
}

/// A completed analysis run, for `analysis_runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub finished_ns: i64,
    pub watermark_ns: i64,
    pub recomputed: i64,
    pub reused: i64,
    pub seconds: f64,
    /// The fitted latency model and baselines the run used (JSON), and the LLM calls
    /// they were fitted over.
    pub fits: Option<String>,
    pub fit_calls: i64,
}

/// The columns primary causes are judged on, for every analysed trace.
#[derive(Debug, Clone, Default)]
pub struct TraceSummaries {
    pub trace_id: Vec<String>,
    pub route: Vec<String>,
    pub duration_ns: Vec<i64>,
    /// Per trace, following [`CAUSE_COLUMNS`].
    pub by_cause_ns: Vec<[i64; Cause::COUNT]>,
    pub output_tokens: Vec<i64>,
    pub uncached_tokens: Vec<i64>,
    pub primary_cause: Vec<Option<String>>,
}

impl Store {
    /// The largest `ingested_ns` in the store (`None` when it has no spans).
    pub fn ingest_watermark(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT max(ingested_ns) FROM spans", [], |r| r.get(0))?)
    }

    /// The watermark of the last completed analysis run: every span stamped at or
    /// below it is analysed. Stores analysed before schema v6 fall back to the newest
    /// `analyzed_ns` (the wall clock when that run started, also a safe watermark).
    pub fn analysis_watermark(&self) -> Result<Option<i64>, StoreError> {
        // no stored trace: nothing is analysed, whatever the run log says
        Ok(self.conn.query_row(
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM trace_analysis) THEN NULL
                    ELSE (SELECT max(watermark_ns) FROM analysis_runs) END",
            [],
            |r| r.get(0),
        )?)
    }

    /// How many traces have stored results.
    pub fn analyzed_traces(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM trace_analysis", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Traces with spans stamped after `since`.
    pub fn changed_traces(&self, since: i64) -> Result<Vec<String>, StoreError> {
        let sql = format!("SELECT DISTINCT trace_id FROM spans WHERE ingested_ns > {since}");
        let mut out = Vec::new();
        for b in self.conn.prepare(&sql)?.query_arrow([])? {
            let t = crate::read::Columns::new(&b).str("trace_id")?;
            out.extend((0..b.num_rows()).map(|r| t.value(r).to_owned()));
        }
        Ok(out)
    }

    /// The analysed traces some of whose causes the latency model judged (a cause
    /// stored as inferred or ambiguous): those a new fit can answer differently.
    pub fn fit_judged_traces(&self) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT trace_id FROM trace_analysis
                   WHERE cause_evidence LIKE '%\"inferred\"%' OR cause_evidence LIKE '%\"ambiguous\"%'";
        let mut out = Vec::new();
        for b in self.conn.prepare(sql)?.query_arrow([])? {
            let t = crate::read::Columns::new(&b).str("trace_id")?;
            out.extend((0..b.num_rows()).map(|r| t.value(r).to_owned()));
        }
        Ok(out)
    }

    /// Every trace with its span count and time range, the conversations its spans
    /// name, and its links to other traces.
    pub fn trace_graph(&self) -> Result<TraceGraph, StoreError> {
        let mut graph = TraceGraph::default();
        let mut stmt = self.conn.prepare(
            "WITH s AS (SELECT trace_id, count(*) AS n, min(start_ns) AS s, max(end_ns) AS e,
                               min(rowid) AS lo, max(rowid) AS hi FROM spans GROUP BY trace_id),
                  ev AS (SELECT trace_id, min(rowid) AS elo, max(rowid) AS ehi FROM events GROUP BY trace_id)
             SELECT s.*, ev.elo, ev.ehi FROM s LEFT JOIN ev USING (trace_id)",
        )?;
        for b in stmt.query_arrow([])? {
            let cols = crate::read::Columns::new(&b);
            let (ids, spans) = (cols.str("trace_id")?, cols.i64("n")?);
            let (starts, ends) = (cols.i64("s")?, cols.i64("e")?);
            let (lo, hi) = (cols.i64("lo")?, cols.i64("hi")?);
            let (elo, ehi) = (cols.i64("elo")?, cols.i64("ehi")?);
            graph.traces.extend((0..b.num_rows()).map(|r| TraceInfo {
                trace_id: ids.value(r).to_owned(),
                spans: spans.value(r),
                start_ns: starts.value(r),
                end_ns: ends.value(r),
                span_rows: (lo.value(r), hi.value(r)),
                event_rows: elo.is_valid(r).then(|| (elo.value(r), ehi.value(r))),
            }));
        }
        let pairs = |sql: &str, a: &str, b: &str| -> Result<Vec<(String, String)>, StoreError> {
            let mut out = Vec::new();
            for batch in self.conn.prepare(sql)?.query_arrow([])? {
                let c = crate::read::Columns::new(&batch);
                let (x, y) = (c.str(a)?, c.str(b)?);
                out.extend(
                    (0..batch.num_rows()).map(|r| (x.value(r).to_owned(), y.value(r).to_owned())),
                );
            }
            Ok(out)
        };
        graph.conversations = pairs(
            "SELECT DISTINCT trace_id, conversation_id FROM spans WHERE conversation_id IS NOT NULL",
            "trace_id",
            "conversation_id",
        )?;
        graph.links = pairs(
            "SELECT DISTINCT trace_id, linked_trace_id FROM links WHERE linked_trace_id <> trace_id",
            "trace_id",
            "linked_trace_id",
        )?;
        Ok(graph)
    }

    /// Replaces the results of the traces in `rows.recomputed` (their trace rows,
    /// sections, span rows and findings) in one transaction; other traces are kept.
    pub fn write_analysis_chunk(&self, rows: &AnalysisRows) -> Result<(), StoreError> {
        self.replace_rows(rows)
    }

    /// Sets `primary_cause` of the given traces (trace id, cause or NULL).
    pub fn set_primary_causes(
        &self,
        changes: &[(String, Option<String>)],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let c = &self.conn;
        c.execute_batch(
            "CREATE OR REPLACE TEMP TABLE primary_changes (trace_id VARCHAR, primary_cause VARCHAR)",
        )?;
        {
            let mut app = c.appender("primary_changes")?;
            for (t, p) in changes {
                app.append_row(params![t, p])?;
            }
        }
        c.execute_batch(
            "UPDATE trace_analysis SET primary_cause = p.primary_cause FROM primary_changes p
             WHERE trace_analysis.trace_id = p.trace_id;
             DROP TABLE primary_changes;",
        )?;
        Ok(())
    }

    /// Records a completed run (its watermark is what the next run starts from).
    pub fn record_run(&self, run: &RunRow) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO analysis_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![
                run.finished_ns,
                run.watermark_ns,
                run.recomputed,
                run.reused,
                run.seconds,
                run.fits,
                run.fit_calls
            ],
        )?;
        // the log keeps the newest runs (a live GUI records one every few seconds)
        self.conn.execute(
            "DELETE FROM analysis_runs WHERE finished_ns <
                 (SELECT min(finished_ns) FROM
                     (SELECT finished_ns FROM analysis_runs ORDER BY finished_ns DESC LIMIT ?))",
            params![RUNS_KEPT],
        )?;
        Ok(())
    }

    /// The fits of the newest run that kept them, and the calls they were fitted over.
    pub fn last_fits(&self) -> Result<Option<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT fits, fit_calls FROM analysis_runs WHERE fits IS NOT NULL
             ORDER BY finished_ns DESC LIMIT 1",
        )?;
        let mut rows = stmt.query([])?;
        Ok(match rows.next()? {
            Some(r) => Some((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0))),
            None => None,
        })
    }

    /// Client-side LLM spans in the store (what the latency model is fitted over).
    pub fn llm_call_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM spans WHERE op_class = 'llm' AND kind <> 'server'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Forgets every analysis result and the run log, in one transaction (a full run
    /// starts here; if it stops part way, the next run is a full one again).
    pub fn clear_analysis(&self) -> Result<(), StoreError> {
        let c = &self.conn;
        c.execute_batch("BEGIN TRANSACTION")?;
        let cleared = c.execute_batch(
            "DELETE FROM analysis_runs;
             DELETE FROM trace_analysis;
             DELETE FROM path_sections;
             DELETE FROM span_times;
             DELETE FROM findings;",
        );
        match cleared {
            Ok(()) => Ok(c.execute_batch("COMMIT")?),
            Err(e) => {
                // the delete's error is the one to report
                let _ = c.execute_batch("ROLLBACK");
                Err(e.into())
            }
        }
    }

    /// Route, duration, per-cause time, output tokens and primary cause of every
    /// analysed trace, in storage order.
    pub fn trace_summaries(&self) -> Result<TraceSummaries, StoreError> {
        let cols = CAUSE_COLUMNS.map(|c| format!("{c}_ns")).join(", ");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT trace_id, route, duration_ns, coalesce(output_tokens, 0) AS output_tokens,
                    coalesce(uncached_tokens, 0) AS uncached_tokens, primary_cause, {cols}
             FROM trace_analysis"
        ))?;
        let mut out = TraceSummaries::default();
        for b in stmt.query_arrow([])? {
            let c = crate::read::Columns::new(&b);
            let (t, route, d, tokens, primary) = (
                c.str("trace_id")?,
                c.str("route")?,
                c.i64("duration_ns")?,
                c.i64("output_tokens")?,
                c.str("primary_cause")?,
            );
            let uncached = c.i64("uncached_tokens")?;
            let causes: Vec<_> = CAUSE_COLUMNS
                .iter()
                .map(|n| c.i64(&format!("{n}_ns")))
                .collect::<Result<_, _>>()?;
            for r in 0..b.num_rows() {
                out.trace_id.push(t.value(r).to_owned());
                out.route.push(route.value(r).to_owned());
                out.duration_ns.push(d.value(r));
                out.output_tokens.push(tokens.value(r));
                out.uncached_tokens.push(uncached.value(r));
                out.primary_cause
                    .push(primary.is_valid(r).then(|| primary.value(r).to_owned()));
                let mut a = [0i64; Cause::COUNT];
                for (k, col) in causes.iter().enumerate() {
                    a[k] = if col.is_valid(r) { col.value(r) } else { 0 };
                }
                out.by_cause_ns.push(a);
            }
        }
        Ok(out)
    }

    /// Puts `ids` in a temporary table and returns a predicate over `spans` selecting
    /// those traces, for [`Store::load_spans`].
    pub fn trace_filter(&self, ids: &[String]) -> Result<String, StoreError> {
        self.conn
            .execute_batch("CREATE OR REPLACE TEMP TABLE trace_filter (trace_id VARCHAR)")?;
        let mut app = self.conn.appender("trace_filter")?;
        for t in ids {
            app.append_row(params![t])?;
        }
        drop(app);
        Ok("trace_id IN (SELECT trace_id FROM trace_filter)".to_owned())
    }

    /// Every stored `trace_analysis` row.
    pub fn trace_rows(&self) -> Result<Vec<TraceRow>, StoreError> {
        self.trace_rows_where("true", "", [])
    }

    /// Up to `limit` `trace_analysis` rows after trace `after` (from the first with
    /// `None`), by trace id: a page of a walk over every trace in bounded memory.
    pub fn trace_rows_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TraceRow>, StoreError> {
        self.trace_rows_where(
            "trace_id > ?",
            &format!("LIMIT {limit}"),
            [after.unwrap_or("")],
        )
    }

    fn trace_rows_where<P: duckdb::Params>(
        &self,
        filter: &str,
        limit: &str,
        params: P,
    ) -> Result<Vec<TraceRow>, StoreError> {
        let names = CAUSE_COLUMNS.map(|c| format!("{c}_ns"));
        let cols = names.join(", ");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT trace_id, root, route, conversation_id, start_ns, duration_ns, primary_cause, orphans, {cols}, analyzed_ns,
                    caller_trace_id, caller_span_id, coalesce(output_tokens, 0) AS output_tokens,
                    coalesce(ambiguous_ns, 0) AS ambiguous_ns, cause_evidence,
                    coalesce(uncached_tokens, 0) AS uncached_tokens
             FROM trace_analysis WHERE {filter} ORDER BY trace_id {limit}"
        ))?;
        // read as Arrow columns: row by row through the driver cost about as much as the scan
        let mut out = Vec::new();
        crate::read::stream_batches(&mut stmt, params, |b| {
            let c = crate::read::Columns::new(b);
            let (id, root, route, conv) = (
                c.str("trace_id")?,
                c.str("root")?,
                c.str("route")?,
                c.str("conversation_id")?,
            );
            let (start, dur, primary, orphans) = (
                c.i64("start_ns")?,
                c.i64("duration_ns")?,
                c.str("primary_cause")?,
                c.i32("orphans")?,
            );
            let by = c.i64s(names.iter().map(String::as_str))?;
            let (analyzed, caller_t, caller_s) = (
                c.i64("analyzed_ns")?,
                c.str("caller_trace_id")?,
                c.str("caller_span_id")?,
            );
            let (output, ambiguous, evidence, uncached) = (
                c.i64("output_tokens")?,
                c.i64("ambiguous_ns")?,
                c.str("cause_evidence")?,
                c.i64("uncached_tokens")?,
            );
            let text = crate::read::opt_string;
            for i in 0..b.num_rows() {
                let mut by_cause_ns = [0i64; Cause::COUNT];
                for (v, col) in by_cause_ns.iter_mut().zip(&by) {
                    *v = col.value(i);
                }
                out.push(TraceRow {
                    trace_id: id.value(i).to_owned(),
                    root: root.value(i).to_owned(),
                    route: route.value(i).to_owned(),
                    conversation_id: text(conv, i),
                    start_ns: start.value(i),
                    duration_ns: dur.value(i),
                    primary_cause: text(primary, i),
                    orphans: orphans.value(i),
                    by_cause_ns,
                    analyzed_ns: analyzed.value(i),
                    caller: match (text(caller_t, i), text(caller_s, i)) {
                        (Some(t), Some(s)) => Some((t, s)),
                        _ => None,
                    },
                    output_tokens: output.value(i),
                    ambiguous_ns: ambiguous.value(i),
                    cause_evidence: text(evidence, i),
                    uncached_tokens: uncached.value(i),
                });
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Critical-path time per (service, span name) summed over two cohorts of traces
    /// (the tail and the median band): `(service, name, tail ns, band ns)`. The
    /// cohorts go to a temporary table and DuckDB joins and sums, so only the cohorts'
    /// spans are read.
    pub fn critical_time_of_cohorts(
        &self,
        tail: &[&str],
        band: &[&str],
    ) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
        self.conn.execute_batch(
            "CREATE OR REPLACE TEMP TABLE cohort (trace_id VARCHAR, tail BOOLEAN, band BOOLEAN)",
        )?;
        {
            let tails: std::collections::HashSet<&str> = tail.iter().copied().collect();
            let bands: std::collections::HashSet<&str> = band.iter().copied().collect();
            let mut app = self.conn.appender("cohort")?;
            for t in tails.union(&bands) {
                app.append_row(params![t, tails.contains(t), bands.contains(t)])?;
            }
        }
        // the cohorts' critical spans from the compact table, their ids as hex only then
        let mut stmt = self.conn.prepare(
            "SELECT s.service_name, s.name,
                    coalesce(sum(a.critical_ns) FILTER (WHERE a.tail), 0)::BIGINT,
                    coalesce(sum(a.critical_ns) FILTER (WHERE a.band), 0)::BIGINT
             FROM (SELECT c.trace_id, printf('%016x', t.span_id) AS span_id, t.critical_ns,
                          c.tail, c.band
                   FROM cohort c JOIN span_times t ON t.trace_id = TRY_CAST(c.trace_id AS UUID)
                   WHERE t.critical_ns > 0) a
             JOIN spans s ON s.trace_id = a.trace_id AND s.span_id = a.span_id
             GROUP BY ALL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        let out = rows.collect::<Result<_, _>>()?;
        self.conn.execute_batch("DROP TABLE IF EXISTS cohort")?;
        Ok(out)
    }

    /// The critical-path sections of the traces after `after` up to and including
    /// `last` (by trace id; `None`: from the first), typed and grouped by trace: a
    /// page's sections, read as Arrow columns. Sections whose span id or cause no longer
    /// parse are skipped; an unknown evidence level (results stored before levels) is
    /// read as inferred, not claimed measured.
    pub fn section_page(&self, after: Option<&str>, last: &str) -> Result<SectionPage, StoreError> {
        // trace ids are 32 hex digits; anything else has no sections
        let Some(last) = uuid_of(last) else {
            return Ok(SectionPage::default());
        };
        let from = match after {
            None => String::new(),
            Some(a) => match uuid_of(a) {
                Some(a) => format!("trace_id > {a} AND"),
                None => return Ok(SectionPage::default()),
            },
        };
        self.sections_where(&format!("{from} trace_id <= {last}"))
    }

    /// The sections of the one trace `trace_id` (none for an id that is no trace id).
    pub(crate) fn sections_of(&self, trace_id: &str) -> Result<Vec<Section>, StoreError> {
        Ok(match uuid_of(trace_id) {
            Some(id) => self.sections_where(&format!("trace_id = {id}"))?.sections,
            None => Vec::new(),
        })
    }

    /// The sections of `path_sections` rows matching `filter`, grouped by trace.
    fn sections_where(&self, filter: &str) -> Result<SectionPage, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT replace(trace_id::VARCHAR, '-', '') AS trace_id, span_id, start_ns, end_ns,
                    cause::UINTEGER AS cause, evidence::UINTEGER AS evidence,
                    alternatives::UINTEGER AS alternatives
             FROM path_sections WHERE {filter}
             ORDER BY path_sections.trace_id, start_ns, end_ns"
        ))?;
        let mut page = SectionPage::default();
        for b in stmt.query_arrow([])? {
            let c = crate::read::Columns::new(&b);
            let (trace, span, start, end) = (
                c.str("trace_id")?,
                c.u64("span_id")?,
                c.i64("start_ns")?,
                c.i64("end_ns")?,
            );
            let (cause, evidence, alternatives) =
                (c.u32("cause")?, c.u32("evidence")?, c.u32("alternatives")?);
            for i in 0..b.num_rows() {
                let (Ok(span_id), Some(&cause)) = (
                    SpanId::from_bytes(&span.value(i).to_be_bytes()),
                    Cause::ALL.get(cause.value(i) as usize),
                ) else {
                    continue;
                };
                let t = trace.value(i);
                let k = page.sections.len();
                match page.traces.last_mut() {
                    Some((id, r)) if id == t => r.end = k + 1,
                    _ => page.traces.push((t.to_owned(), k..k + 1)),
                }
                page.sections.push(Section {
                    span_id,
                    start_ns: start.value(i),
                    end_ns: end.value(i),
                    cause,
                    evidence: evidence_of(u8::try_from(evidence.value(i)).unwrap_or(u8::MAX)),
                    alternatives: CauseSet::from_bits(
                        u16::try_from(alternatives.value(i)).unwrap_or(0),
                    ),
                });
            }
        }
        Ok(page)
    }

    /// Up to `limit` findings after the one with row id `after` in the report's order
    /// (costliest first, then by trace, span, kind and row): a page of a walk over every
    /// finding in bounded memory. Each comes with its row id, the next page's cursor.
    pub fn finding_rows_after(
        &self,
        after: Option<(i64, &FindingRow)>,
        limit: usize,
    ) -> Result<Vec<(i64, FindingRow)>, StoreError> {
        let order = "ORDER BY estimated_cost_ns DESC, trace_id, span_id, kind, rowid";
        let row = |r: &duckdb::Row<'_>| Ok((r.get("rid")?, finding_row(r)?));
        let mut stmt;
        let rows = match after {
            None => {
                stmt = self.conn.prepare(&format!(
                    "SELECT rowid AS rid, {FINDING_COLS} FROM findings {order} LIMIT {limit}"
                ))?;
                stmt.query_map([], row)?
            }
            Some((rid, a)) => {
                stmt = self.conn.prepare(&format!(
                    "SELECT rowid AS rid, {FINDING_COLS} FROM findings
                     WHERE estimated_cost_ns < ?1 OR (estimated_cost_ns = ?1
                       AND (trace_id > ?2 OR (trace_id = ?2
                         AND (span_id > ?3 OR (span_id = ?3
                           AND (kind > ?4 OR (kind = ?4 AND rowid > ?5)))))))
                     {order} LIMIT {limit}"
                ))?;
                stmt.query_map(
                    params![a.estimated_cost_ns, a.trace_id, a.span_id, a.kind, rid],
                    row,
                )?
            }
        };
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored finding.
    pub fn finding_rows(&self) -> Result<Vec<FindingRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {FINDING_COLS} FROM findings"))?;
        let rows = stmt.query_map([], finding_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn replace_rows(&self, rows: &AnalysisRows) -> Result<(), StoreError> {
        let c = &self.conn;
        c.execute_batch("BEGIN TRANSACTION")?;
        let result = (|| -> Result<(), StoreError> {
            if rows.delete_old {
                c.execute_batch("CREATE OR REPLACE TEMP TABLE recomputed (trace_id VARCHAR)")?;
                append(
                    c,
                    "recomputed",
                    batch(vec![strs(rows.recomputed.iter().map(|t| Some(t.as_str())))])?,
                )?;
                c.execute_batch(
                    "DELETE FROM trace_analysis WHERE trace_id IN (SELECT trace_id FROM recomputed);
                     DELETE FROM path_sections WHERE trace_id IN (SELECT TRY_CAST(trace_id AS UUID) FROM recomputed);
                     DELETE FROM span_times WHERE trace_id IN (SELECT TRY_CAST(trace_id AS UUID) FROM recomputed);
                     DELETE FROM findings WHERE trace_id IN (SELECT trace_id FROM recomputed);
                     DROP TABLE recomputed;",
                )?;
            }
            append(c, "trace_analysis", trace_batch(&rows.traces)?)?;
            append(c, "path_sections", section_batch(&rows.sections)?)?;
            append(c, "span_times", span_batch(&rows.spans)?)?;
            append(
                c,
                "findings",
                batch(vec![
                    strs(rows.findings.iter().map(|r| Some(r.kind.as_str()))),
                    strs(rows.findings.iter().map(|r| Some(r.trace_id.as_str()))),
                    strs(rows.findings.iter().map(|r| Some(r.span_id.as_str()))),
                    strs(rows.findings.iter().map(|r| r.conversation_id.as_deref())),
                    ints(rows.findings.iter().map(|r| Some(r.estimated_cost_ns))),
                    strs(rows.findings.iter().map(|r| Some(r.summary.as_str()))),
                    strs(rows.findings.iter().map(|r| Some(r.evidence.as_str()))),
                    strs(
                        rows.findings
                            .iter()
                            .map(|r| Some(r.evidence_level.as_str())),
                    ),
                    strs(rows.findings.iter().map(|r| Some(r.alternatives.as_str()))),
                ])?,
            )?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                c.execute_batch("COMMIT")?;
                Ok(())
            }
            Err(e) => {
                // The first error is the one to report.
                let _ = c.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}
