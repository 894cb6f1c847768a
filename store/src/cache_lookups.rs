//! Reads of cache clients (a Redis `GET`, a vector-store query) and what followed them
//! under the same parent: the rows the `semantic_cache` finding is judged on, and the
//! store's findings of one kind replaced as a whole.

use crate::read::{opt, Columns};
use crate::{FindingRow, Store, StoreError};
use tailscope_model::samples::CacheLookup as CacheLookupRow;

const LOOKUPS: &str = "
WITH reads AS (
    SELECT s.trace_id, s.span_id, s.parent_span_id, s.db_system,
           upper(coalesce(s.db_operation, split_part(s.name, ' ', 1))) AS operation,
           s.start_ns, s.end_ns, s.duration_ns
    FROM spans s
    WHERE s.op_class = 'db' AND lower(s.db_system) IN ({systems}) AND s.parent_span_id IS NOT NULL
),
around AS (
    SELECT s.trace_id, s.op_class, s.db_system, s.start_ns, s.end_ns,
           upper(coalesce(s.db_operation, split_part(s.name, ' ', 1))) AS operation
    FROM spans s
    WHERE (s.op_class = 'llm' AND s.kind <> 'server') OR s.op_class = 'db'
)
-- what ran under the read's parent (inside its time), before and after the read: the
-- LLM call a cache stands in front of may sit deeper in the parent's subtree (an agent
-- step under a request)
SELECT r.trace_id, r.span_id, coalesce(sa.conversation_id, t.conversation_id) AS conversation_id,
       r.db_system, r.operation, p.service_name || ' ' || p.name AS parent,
       r.duration_ns::BIGINT AS duration_ns,
       EXISTS (SELECT 1 FROM around l WHERE l.trace_id = r.trace_id AND l.op_class = 'llm'
               AND l.start_ns >= r.end_ns AND l.end_ns <= p.end_ns) AS llm_after,
       EXISTS (SELECT 1 FROM around l WHERE l.trace_id = r.trace_id AND l.op_class = 'llm'
               AND l.end_ns <= r.start_ns AND l.start_ns >= p.start_ns) AS llm_before,
       EXISTS (SELECT 1 FROM around w WHERE w.trace_id = r.trace_id AND w.op_class = 'db'
               AND w.db_system = r.db_system AND w.start_ns >= r.end_ns AND w.end_ns <= p.end_ns
               AND w.operation IN ('SET', 'SETEX', 'PSETEX', 'HSET', 'MSET', 'JSON.SET', 'UPSERT', 'ADD', 'INSERT', 'PUT')) AS write_after,
       t.duration_ns::BIGINT AS trace_ns,
       coalesce(sa.critical_ns, 0)::BIGINT AS critical_ns
FROM reads r
JOIN spans p ON p.trace_id = r.trace_id AND p.span_id = r.parent_span_id
JOIN trace_analysis t ON t.trace_id = r.trace_id
LEFT JOIN span_times sa ON sa.trace_id = TRY_CAST(r.trace_id AS UUID)
    AND sa.span_id = TRY_CAST('0x' || r.span_id AS UBIGINT)
ORDER BY r.trace_id, r.start_ns, r.span_id";

impl Store {
    /// Every read of a store in `systems` (lower case `db.system` values) under a
    /// parent, with the LLM calls and writes beside it, of the analysed traces.
    pub fn cache_lookups(&self, systems: &[&str]) -> Result<Vec<CacheLookupRow>, StoreError> {
        let mut out = Vec::new();
        if systems.is_empty() {
            return Ok(out);
        }
        for b in self.query_arrow(&LOOKUPS.replace("{systems}", &system_list(systems)))? {
            let c = Columns::new(&b);
            let (trace, span, conv, system, op, parent) = (
                c.str("trace_id")?,
                c.str("span_id")?,
                c.str("conversation_id")?,
                c.str("db_system")?,
                c.str("operation")?,
                c.str("parent")?,
            );
            let (dur, trace_ns, critical) = (
                c.i64("duration_ns")?,
                c.i64("trace_ns")?,
                c.i64("critical_ns")?,
            );
            let (after, before, write) = (
                c.bool("llm_after")?,
                c.bool("llm_before")?,
                c.bool("write_after")?,
            );
            for i in 0..b.num_rows() {
                out.push(CacheLookupRow {
                    trace_id: trace.value(i).to_owned(),
                    span_id: span.value(i).to_owned(),
                    conversation_id: opt(conv, i, |i| conv.value(i).to_owned()),
                    db_system: system.value(i).to_owned(),
                    operation: opt(op, i, |i| op.value(i).to_owned()).unwrap_or_default(),
                    parent: opt(parent, i, |i| parent.value(i).to_owned()).unwrap_or_default(),
                    duration_ns: dur.value(i),
                    llm_after: after.value(i),
                    llm_before: before.value(i),
                    write_after: write.value(i),
                    trace_ns: trace_ns.value(i),
                    critical_ns: critical.value(i),
                });
            }
        }
        Ok(out)
    }

    /// Whether any of `traces` holds a database span of a store in `systems` (lower case
    /// `db.system` values): when none does, a run that recomputed only these traces left
    /// every cache lookup as it was.
    pub fn any_reads_of(&self, systems: &[&str], traces: &[String]) -> Result<bool, StoreError> {
        if systems.is_empty() || traces.is_empty() {
            return Ok(false);
        }
        let of_traces = self.trace_filter(traces)?;
        let n: i64 = self.conn.query_row(
            &format!(
                "SELECT count(*) FROM spans WHERE op_class = 'db' AND lower(db_system) IN ({})
                 AND {of_traces}",
                system_list(systems)
            ),
            [],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Replaces every stored finding of `kind` with `rows` (a finding judged over the
    /// whole store rather than per trace).
    pub fn replace_findings_of_kind(
        &self,
        kind: &str,
        rows: &[FindingRow],
    ) -> Result<(), StoreError> {
        let c = &self.conn;
        c.execute_batch("BEGIN TRANSACTION")?;
        let r = (|| -> Result<(), StoreError> {
            c.execute("DELETE FROM findings WHERE kind = ?", [kind])?;
            let mut app = c.appender("findings")?;
            for f in rows {
                app.append_row(duckdb::params![
                    f.kind,
                    f.trace_id,
                    f.span_id,
                    f.conversation_id,
                    f.estimated_cost_ns,
                    f.summary,
                    f.evidence,
                    f.evidence_level,
                    f.alternatives
                ])?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => Ok(c.execute_batch("COMMIT")?),
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// `systems` as a SQL list of literals.
fn system_list(systems: &[&str]) -> String {
    systems
        .iter()
        .map(|s| crate::sql_lit(s))
        .collect::<Vec<_>>()
        .join(", ")
}
