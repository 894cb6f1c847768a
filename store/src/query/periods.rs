//! `diff`'s reads: the range of span starts, and what one period holds (analysed
//! traces, spans per operation, innermost LLM calls), each with its cluster.

use super::QueryError;
use crate::read::{opt, Columns};
use crate::{Store, StoreError, CAUSE_COLUMNS};
use duckdb::arrow::array::{AsArray, Int64Array, ListArray};
use duckdb::arrow::datatypes::Int64Type;
use duckdb::arrow::record_batch::RecordBatch;
use tailscope_model::samples::{PeriodCall, PeriodOperation, PeriodRows, PeriodTrace};

/// SQL for the cluster of the text `key` (a conversation, else a trace): the first 8
/// bytes of its MD5, big-endian, shifted right by one, as BIGINT; ClickHouse computes
/// the same number (`pushdown`), so both sources group and order the rows alike.
fn cluster(key: &str) -> String {
    format!("((('0x' || left(md5({key}), 16))::UBIGINT >> 1)::BIGINT)")
}

/// The innermost LLM client calls among the spans that meet `pred` (a call wrapping
/// another in the same trace is the framework around it, not counted twice): their
/// `trace_id`, `span_id` and the span columns `cols`. The one definition of the calls
/// a trace made, for `diff`'s periods and the per-tenant view's tokens.
pub(crate) fn innermost_llm_sql(cols: &str, pred: &str) -> String {
    format!(
        "WITH c AS (
             SELECT trace_id, span_id, {cols} FROM spans
             WHERE op_class = 'llm' AND kind <> 'server' AND ({pred})),
         wrappers AS (
             SELECT DISTINCT trace_id, parent_span_id AS span_id FROM spans
             WHERE op_class = 'llm' AND kind <> 'server' AND parent_span_id IS NOT NULL
               AND trace_id IN (SELECT trace_id FROM c))
         SELECT c.* FROM c ANTI JOIN wrappers w ON w.trace_id = c.trace_id AND w.span_id = c.span_id"
    )
}

/// The innermost LLM client calls among the spans that meet `pred`, with the server
/// span directly below each: `trace_id, start_ns, model, server, duration_ns, ttfc,
/// output_tokens, input_tokens, cache_read, events, stream, srv_ttft, srv_decode`.
/// What `diff` reads of a period's calls, and what a ClickHouse source keeps of them.
pub(crate) fn innermost_calls_sql(pred: &str) -> String {
    format!(
        "WITH c AS ({}),
         srv AS (
             SELECT trace_id, parent_span_id AS span_id, max(ttft_ns) AS ttft_ns, max(decode_ns) AS decode_ns
             FROM spans WHERE op_class = 'llm' AND kind = 'server' AND parent_span_id IS NOT NULL
               AND trace_id IN (SELECT trace_id FROM c)
             GROUP BY ALL)
         SELECT c.trace_id, c.start_ns::BIGINT AS start_ns, coalesce(c.model, '') AS model,
                coalesce(c.server_address, '') AS server,
                c.duration_ns::BIGINT AS duration_ns, c.time_to_first_chunk_ns::BIGINT AS ttfc,
                c.output_tokens::BIGINT AS output_tokens, c.input_tokens::BIGINT AS input_tokens,
                c.cache_read_tokens::BIGINT AS cache_read, c.event_count::BIGINT AS events,
                coalesce(c.stream, false) AS stream,
                srv.ttft_ns::BIGINT AS srv_ttft, srv.decode_ns::BIGINT AS srv_decode
         FROM c LEFT JOIN srv ON srv.trace_id = c.trace_id AND srv.span_id = c.span_id",
        innermost_llm_sql(
            "start_ns, model, server_address, duration_ns, time_to_first_chunk_ns, \
             output_tokens, input_tokens, cache_read_tokens, event_count, stream",
            pred
        )
    )
}

fn list<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ListArray, StoreError> {
    b.column_by_name(name)
        .and_then(|c| c.as_list_opt::<i32>())
        .ok_or_else(|| StoreError::Schema(format!("column {name} is not a LIST")))
}

fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    opt(a, i, |i| a.value(i))
}

impl Store {
    pub(super) fn span_starts_q(&self) -> Result<Option<(i64, i64)>, QueryError> {
        let r: (Option<i64>, Option<i64>) = self.conn.query_row(
            "SELECT min(start_ns)::BIGINT, max(start_ns)::BIGINT FROM spans",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(r.0.zip(r.1))
    }

    pub(super) fn period_rows_q(&self, from: i64, to: i64) -> Result<PeriodRows, QueryError> {
        Ok(PeriodRows {
            traces: self.period_traces(from, to)?,
            operations: self.period_operations(from, to)?,
            calls: self.period_calls(from, to)?,
        })
    }

    fn period_traces(&self, from: i64, to: i64) -> Result<Vec<PeriodTrace>, QueryError> {
        let causes = CAUSE_COLUMNS
            .map(|c| format!("t.{c}_ns::BIGINT AS {c}"))
            .join(", ");
        let mut out = Vec::new();
        for b in self.query_arrow(&format!(
            "SELECT t.route, t.duration_ns::BIGINT AS d, {} AS cl, {causes} FROM trace_analysis t
             WHERE t.start_ns >= {from} AND t.start_ns < {to}",
            cluster("coalesce(t.conversation_id, t.trace_id)")
        ))? {
            let c = Columns::new(&b);
            let (route, d, cl) = (c.str("route")?, c.i64("d")?, c.i64("cl")?);
            let cols = c.i64s(CAUSE_COLUMNS)?;
            out.reserve(b.num_rows());
            for i in 0..b.num_rows() {
                let mut by_cause_ns = [0; CAUSE_COLUMNS.len()];
                for (v, col) in by_cause_ns.iter_mut().zip(&cols) {
                    *v = opt_i64(col, i).unwrap_or(0);
                }
                out.push(PeriodTrace {
                    route: opt(route, i, |i| route.value(i).to_owned()).unwrap_or_default(),
                    duration_ns: opt_i64(d, i).unwrap_or(0),
                    cluster: cl.value(i) as u64,
                    by_cause_ns,
                });
            }
        }
        Ok(out)
    }

    fn period_operations(&self, from: i64, to: i64) -> Result<Vec<PeriodOperation>, QueryError> {
        let mut out = Vec::new();
        for b in self.query_arrow(&format!(
            // a cluster per trace, not per span
            "WITH t AS (SELECT trace_id, {} AS cl FROM trace_analysis)
             SELECT s.service_name, s.name, list(s.duration_ns::BIGINT) AS d,
                    list(coalesce(t.cl, {})) AS cl
             FROM spans s LEFT JOIN t USING (trace_id)
             WHERE s.start_ns >= {from} AND s.start_ns < {to} GROUP BY ALL",
            cluster("coalesce(conversation_id, trace_id)"),
            cluster("s.trace_id")
        ))? {
            let c = Columns::new(&b);
            let (svc, name, d, cl) = (
                c.str("service_name")?,
                c.str("name")?,
                list(&b, "d")?,
                list(&b, "cl")?,
            );
            for i in 0..b.num_rows() {
                let (v, k) = (d.value(i), cl.value(i));
                let (Some(v), Some(k)) = (
                    v.as_primitive_opt::<Int64Type>(),
                    k.as_primitive_opt::<Int64Type>(),
                ) else {
                    continue;
                };
                let mut op = PeriodOperation {
                    service: svc.value(i).to_owned(),
                    name: name.value(i).to_owned(),
                    durations_ns: Vec::with_capacity(v.len()),
                    clusters: Vec::with_capacity(v.len()),
                };
                for (v, k) in v.iter().zip(k.iter()) {
                    if let (Some(v), Some(k)) = (v, k) {
                        op.durations_ns.push(v);
                        op.clusters.push(k as u64);
                    }
                }
                out.push(op);
            }
        }
        Ok(out)
    }

    /// Innermost LLM client calls (a call wrapping another is the framework around it)
    /// and the server span directly below each.
    fn period_calls(&self, from: i64, to: i64) -> Result<Vec<PeriodCall>, QueryError> {
        let mut out = Vec::new();
        for b in self.query_arrow(&format!(
            "WITH calls AS ({})
             SELECT c.*, {} AS cl, t.route FROM calls c LEFT JOIN trace_analysis t USING (trace_id)",
            innermost_calls_sql(&format!("start_ns >= {from} AND start_ns < {to}")),
            cluster("coalesce(t.conversation_id, c.trace_id)")
        ))? {
            let c = Columns::new(&b);
            let (model, server, route, stream) = (
                c.str("model")?,
                c.str("server")?,
                c.str("route")?,
                c.bool("stream")?,
            );
            let (dur, ttfc, output, input, cache) = (
                c.i64("duration_ns")?,
                c.i64("ttfc")?,
                c.i64("output_tokens")?,
                c.i64("input_tokens")?,
                c.i64("cache_read")?,
            );
            let (events, s_ttft, s_dec, cl) = (
                c.i64("events")?,
                c.i64("srv_ttft")?,
                c.i64("srv_decode")?,
                c.i64("cl")?,
            );
            out.reserve(b.num_rows());
            for i in 0..b.num_rows() {
                out.push(PeriodCall {
                    model: model.value(i).to_owned(),
                    server: server.value(i).to_owned(),
                    route: opt(route, i, |i| route.value(i).to_owned()),
                    duration_ns: opt_i64(dur, i).unwrap_or(0),
                    time_to_first_chunk_ns: opt_i64(ttfc, i),
                    output_tokens: opt_i64(output, i),
                    input_tokens: opt_i64(input, i),
                    cache_read_tokens: opt_i64(cache, i),
                    event_count: opt_i64(events, i),
                    stream: stream.value(i),
                    server_ttft_ns: opt_i64(s_ttft, i),
                    server_decode_ns: opt_i64(s_dec, i),
                    cluster: cl.value(i) as u64,
                });
            }
        }
        Ok(out)
    }
}
