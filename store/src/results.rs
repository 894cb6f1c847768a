//! Analysis result tables (schema v2): written per trace by `tailscope analyze`, read
//! back so a later run only recomputes traces that changed.

use crate::{Store, StoreError};
use duckdb::params;

/// The cause columns of `trace_analysis`, in table order (design.md cause names).
pub const CAUSE_COLUMNS: [&str; 14] = [
    "preprocessing",
    "retrieval",
    "pool_wait",
    "db",
    "queue",
    "kv_eviction",
    "prefill",
    "decode",
    "tool",
    "tool_cold_start",
    "retry",
    "network",
    "uninstrumented",
    "other",
];

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
    pub by_cause_ns: [i64; 14],
    pub analyzed_ns: i64,
    /// The span of another trace that started this one asynchronously (root link).
    pub caller: Option<(String, String)>,
    /// Output tokens of the trace's LLM calls.
    pub output_tokens: i64,
}

/// One row of `critical_path_sections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionRow {
    pub trace_id: String,
    pub span_id: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub cause: String,
}

/// One row of `span_analysis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRow {
    pub trace_id: String,
    pub span_id: String,
    pub total_ns: i64,
    pub self_ns: i64,
    pub critical_ns: i64,
    pub skew_ns: i64,
    /// The span's conversation: its own, an ancestor's or a linked span's.
    pub conversation_id: Option<String>,
    pub orphan: bool,
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
}

/// What one analysis run writes.
#[derive(Debug, Clone, Default)]
pub struct AnalysisRows {
    /// Every trace (primary causes can change for all when new traces arrive).
    pub traces: Vec<TraceRow>,
    /// Traces whose sections, span rows and findings are replaced.
    pub recomputed: Vec<String>,
    pub sections: Vec<SectionRow>,
    pub spans: Vec<SpanRow>,
    pub findings: Vec<FindingRow>,
}

impl Store {
    /// Traces that are new or received spans since they were last analysed, plus every
    /// trace sharing a conversation with one of them.
    pub fn traces_to_analyze(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "WITH dirty AS (
                SELECT s.trace_id FROM spans s LEFT JOIN trace_analysis t USING (trace_id)
                GROUP BY s.trace_id, t.analyzed_ns
                HAVING t.analyzed_ns IS NULL OR max(s.ingested_ns) > t.analyzed_ns
             ),
             convs AS (
                SELECT DISTINCT conversation_id FROM spans
                WHERE trace_id IN (SELECT trace_id FROM dirty) AND conversation_id IS NOT NULL
             )
             SELECT trace_id FROM dirty
             UNION
             SELECT DISTINCT trace_id FROM spans WHERE conversation_id IN (SELECT conversation_id FROM convs)
             ORDER BY 1",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let cols = CAUSE_COLUMNS.map(|c| format!("{c}_ns")).join(", ");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT trace_id, root, route, conversation_id, start_ns, duration_ns, primary_cause, orphans, {cols}, analyzed_ns,
                    caller_trace_id, caller_span_id, coalesce(output_tokens, 0)
             FROM trace_analysis ORDER BY trace_id"
        ))?;
        let rows = stmt.query_map([], |r| {
            let mut by = [0i64; 14];
            for (k, v) in by.iter_mut().enumerate() {
                *v = r.get(8 + k)?;
            }
            Ok(TraceRow {
                trace_id: r.get(0)?,
                root: r.get(1)?,
                route: r.get(2)?,
                conversation_id: r.get(3)?,
                start_ns: r.get(4)?,
                duration_ns: r.get(5)?,
                primary_cause: r.get(6)?,
                orphans: r.get(7)?,
                by_cause_ns: by,
                analyzed_ns: r.get(22)?,
                caller: match (
                    r.get::<_, Option<String>>(23)?,
                    r.get::<_, Option<String>>(24)?,
                ) {
                    (Some(t), Some(s)) => Some((t, s)),
                    _ => None,
                },
                output_tokens: r.get(25)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (trace id, service, span name, critical ns) of every span on a critical path.
    pub fn critical_time_by_operation(
        &self,
    ) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.trace_id, s.service_name, s.name, a.critical_ns
             FROM span_analysis a JOIN spans s USING (trace_id, span_id) WHERE a.critical_ns > 0",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored critical-path section, ordered by trace and start.
    pub fn section_rows(&self) -> Result<Vec<SectionRow>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT trace_id, span_id, start_ns, end_ns, cause FROM critical_path_sections ORDER BY trace_id, start_ns")?;
        let rows = stmt.query_map([], |r| {
            Ok(SectionRow {
                trace_id: r.get(0)?,
                span_id: r.get(1)?,
                start_ns: r.get(2)?,
                end_ns: r.get(3)?,
                cause: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored finding.
    pub fn finding_rows(&self) -> Result<Vec<FindingRow>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT kind, trace_id, span_id, conversation_id, estimated_cost_ns, summary, evidence FROM findings")?;
        let rows = stmt.query_map([], |r| {
            Ok(FindingRow {
                kind: r.get(0)?,
                trace_id: r.get(1)?,
                span_id: r.get(2)?,
                conversation_id: r.get(3)?,
                estimated_cost_ns: r.get(4)?,
                summary: r.get(5)?,
                evidence: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces analysis results in one transaction: all `trace_analysis` rows, and the
    /// sections, span rows and findings of the recomputed traces.
    pub fn replace_analysis(&self, rows: &AnalysisRows) -> Result<(), StoreError> {
        let c = &self.conn;
        c.execute_batch("BEGIN TRANSACTION")?;
        let result = (|| -> Result<(), StoreError> {
            c.execute_batch("CREATE OR REPLACE TEMP TABLE recomputed (trace_id VARCHAR)")?;
            {
                let mut app = c.appender("recomputed")?;
                for t in &rows.recomputed {
                    app.append_row(params![t])?;
                }
            }
            c.execute_batch(
                "DELETE FROM trace_analysis;
                 DELETE FROM critical_path_sections WHERE trace_id IN (SELECT trace_id FROM recomputed);
                 DELETE FROM span_analysis WHERE trace_id IN (SELECT trace_id FROM recomputed);
                 DELETE FROM findings WHERE trace_id IN (SELECT trace_id FROM recomputed);
                 DROP TABLE recomputed;",
            )?;
            let mut app = c.appender("trace_analysis")?;
            for t in &rows.traces {
                let b = &t.by_cause_ns;
                app.append_row(params![
                    t.trace_id,
                    t.root,
                    t.route,
                    t.conversation_id,
                    t.start_ns,
                    t.duration_ns,
                    t.primary_cause,
                    t.orphans,
                    b[0],
                    b[1],
                    b[2],
                    b[3],
                    b[4],
                    b[5],
                    b[6],
                    b[7],
                    b[8],
                    b[9],
                    b[10],
                    b[11],
                    b[12],
                    b[13],
                    t.analyzed_ns,
                    t.caller.as_ref().map(|c| c.0.as_str()),
                    t.caller.as_ref().map(|c| c.1.as_str()),
                    t.output_tokens
                ])?;
            }
            drop(app);
            let mut app = c.appender("critical_path_sections")?;
            for s in &rows.sections {
                app.append_row(params![
                    s.trace_id, s.span_id, s.start_ns, s.end_ns, s.cause
                ])?;
            }
            drop(app);
            let mut app = c.appender("span_analysis")?;
            for s in &rows.spans {
                app.append_row(params![
                    s.trace_id,
                    s.span_id,
                    s.total_ns,
                    s.self_ns,
                    s.critical_ns,
                    s.skew_ns,
                    s.orphan,
                    s.conversation_id
                ])?;
            }
            drop(app);
            let mut app = c.appender("findings")?;
            for f in &rows.findings {
                app.append_row(params![
                    f.kind,
                    f.trace_id,
                    f.span_id,
                    f.conversation_id,
                    f.estimated_cost_ns,
                    f.summary,
                    f.evidence
                ])?;
            }
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
