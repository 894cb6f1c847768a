//! Typed reads for analysis: spans back as model values (promoted fields, events and
//! links; attributes on request) and metric series.

use crate::{Store, StoreError};
use std::collections::HashMap;
use tailscope_model::{
    AttrValue, Attribute, Event, Link, OpClass, Promoted, Span, SpanId, SpanKind, StatusCode,
    TraceId,
};

/// One point of a metric series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    pub time_ns: i64,
    pub value: f64,
    pub service_name: String,
    /// The point's attributes as JSON text.
    pub attributes: String,
}

const SPAN_COLS: &str = "trace_id, span_id, parent_span_id, trace_state, flags, name, kind, start_ns, end_ns,
    status_code, status_message, resource_id, service_name, scope_name, scope_version, op_class, operation,
    model, provider, conversation_id, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    stream, time_to_first_chunk_ns, queue_ns, ttft_ns, prefill_ns, decode_ns, inference_ns, e2e_ns,
    tool_name, tool_call_id, agent_name, data_source_id, mcp_method, mcp_session_id, db_system,
    db_operation, db_query_summary, db_pool_name, pool_wait_ns, server_address, error_type, event_count, link_count,
    cold_start, resend_count";

fn kind_of(s: &str) -> SpanKind {
    match s {
        "internal" => SpanKind::Internal,
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        _ => SpanKind::Unspecified,
    }
}

fn status_of(s: &str) -> StatusCode {
    match s {
        "ok" => StatusCode::Ok,
        "error" => StatusCode::Error,
        _ => StatusCode::Unset,
    }
}

fn json_attrs(text: &str) -> Vec<Attribute> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => AttrValue::Str(s),
                serde_json::Value::Bool(b) => AttrValue::Bool(b),
                serde_json::Value::Number(n) => n.as_i64().map_or_else(
                    || AttrValue::Double(n.as_f64().unwrap_or(f64::NAN)),
                    AttrValue::Int,
                ),
                other => AttrValue::Json(other.to_string()),
            };
            Attribute::new(k, value)
        })
        .collect()
}

impl Store {
    /// Spans (with events and links, without attributes) of the traces selected by
    /// `trace_filter`, a SQL predicate over `spans` (e.g. `trace_id IN (...)`), or of
    /// every trace when `None`. Ordered by trace, then start time.
    pub fn load_spans(&self, trace_filter: Option<&str>) -> Result<Vec<Span>, StoreError> {
        let filter = trace_filter.map_or_else(String::new, |f| format!("WHERE {f}"));
        let sql = format!("SELECT {SPAN_COLS} FROM spans {filter} ORDER BY trace_id, start_ns");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| {
            let s = |i: usize| -> duckdb::Result<Option<String>> { r.get(i) };
            let i = |i: usize| -> duckdb::Result<Option<i64>> { r.get(i) };
            let trace: String = r.get(0)?;
            let span: String = r.get(1)?;
            let parent: Option<String> = r.get(2)?;
            let kind: String = r.get(6)?;
            let status: String = r.get(9)?;
            let op: String = r.get(15)?;
            Ok((
                trace,
                span,
                parent,
                Span {
                    trace_id: TraceId([0; 16]),
                    span_id: SpanId([0; 8]),
                    parent_span_id: None,
                    trace_state: s(3)?.unwrap_or_default(),
                    flags: r.get::<_, Option<u32>>(4)?.unwrap_or(0),
                    name: r.get(5)?,
                    kind: kind_of(&kind),
                    start_ns: r.get(7)?,
                    end_ns: r.get(8)?,
                    status: status_of(&status),
                    status_message: s(10)?.unwrap_or_default(),
                    resource_id: r.get(11)?,
                    service_name: r.get(12)?,
                    scope_name: s(13)?.unwrap_or_default(),
                    scope_version: s(14)?.unwrap_or_default(),
                    attributes: Vec::new(),
                    events: Vec::new(),
                    links: Vec::new(),
                    promoted: Promoted {
                        op_class: OpClass::parse(&op).unwrap_or_default(),
                        operation: s(16)?,
                        model: s(17)?,
                        provider: s(18)?,
                        conversation_id: s(19)?,
                        input_tokens: i(20)?,
                        output_tokens: i(21)?,
                        cache_read_tokens: i(22)?,
                        cache_write_tokens: i(23)?,
                        stream: r.get(24)?,
                        time_to_first_chunk_ns: i(25)?,
                        queue_ns: i(26)?,
                        ttft_ns: i(27)?,
                        prefill_ns: i(28)?,
                        decode_ns: i(29)?,
                        inference_ns: i(30)?,
                        e2e_ns: i(31)?,
                        tool_name: s(32)?,
                        tool_call_id: s(33)?,
                        agent_name: s(34)?,
                        data_source_id: s(35)?,
                        mcp_method: s(36)?,
                        mcp_session_id: s(37)?,
                        db_system: s(38)?,
                        db_operation: s(39)?,
                        db_query_summary: s(40)?,
                        db_pool_name: s(41)?,
                        pool_wait_ns: i(42)?,
                        server_address: s(43)?,
                        error_type: s(44)?,
                        cold_start: r.get(47)?,
                        resend_count: i(48)?,
                    },
                },
                r.get::<_, i32>(45)?,
                r.get::<_, i32>(46)?,
            ))
        })?;
        let mut spans = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut with_events = false;
        let mut with_links = false;
        for row in rows {
            let (trace, span, parent, mut sp, events, links) = row?;
            // Ids were validated on the way in; a row that no longer parses is skipped.
            let (Ok(t), Ok(id)) = (TraceId::from_hex(&trace), SpanId::from_hex(&span)) else {
                continue;
            };
            sp.trace_id = t;
            sp.span_id = id;
            sp.parent_span_id = parent.and_then(|p| SpanId::from_hex(&p).ok());
            with_events |= events > 0;
            with_links |= links > 0;
            index.insert((trace, span), spans.len());
            spans.push(sp);
        }
        if with_events {
            let sql = format!(
                "SELECT e.trace_id, e.span_id, e.time_ns, e.name, e.attributes FROM events e
                 WHERE e.trace_id IN (SELECT trace_id FROM spans {filter}) ORDER BY e.trace_id, e.span_id, e.event_index"
            );
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            for row in rows {
                let (t, s, time_ns, name, attrs) = row?;
                if let Some(&k) = index.get(&(t, s)) {
                    spans[k].events.push(Event {
                        time_ns,
                        name,
                        attributes: json_attrs(&attrs),
                    });
                }
            }
        }
        if with_links {
            let sql = format!(
                "SELECT l.trace_id, l.span_id, l.linked_trace_id, l.linked_span_id, l.trace_state, l.attributes FROM links l
                 WHERE l.trace_id IN (SELECT trace_id FROM spans {filter})"
            );
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            for row in rows {
                let (t, s, lt, ls, state, attrs) = row?;
                if let (Some(&k), Ok(trace_id), Ok(span_id)) = (
                    index.get(&(t, s)),
                    TraceId::from_hex(&lt),
                    SpanId::from_hex(&ls),
                ) {
                    spans[k].links.push(Link {
                        trace_id,
                        span_id,
                        trace_state: state.unwrap_or_default(),
                        attributes: json_attrs(&attrs),
                    });
                }
            }
        }
        Ok(spans)
    }

    /// Gauge and sum values of the metric `name` between `from_ns` and `to_ns`, by time.
    pub fn metric_series(
        &self,
        name: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT time_ns, value, service_name, attributes FROM metric_points
             WHERE name = ? AND time_ns BETWEEN ? AND ? AND value IS NOT NULL ORDER BY time_ns",
        )?;
        let rows = stmt.query_map(duckdb::params![name, from_ns, to_ns], |r| {
            Ok(SeriesPoint {
                time_ns: r.get(0)?,
                value: r.get(1)?,
                service_name: r.get(2)?,
                attributes: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
