//! What `tailscope export` reads: every exported table's spec (the SELECT of each
//! column and what it means; the README is generated from the same spec), written
//! as Parquet by DuckDB itself (`COPY ... TO`), restricted to the selected traces and
//! time window.

use crate::{sql_lit, Store, StoreError};
use std::path::Path;

/// What one `COPY ... TO` Parquet wrote: its rows, and each column's name and DuckDB
/// type (for the export's README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetWritten {
    pub rows: usize,
    pub columns: Vec<(String, String)>,
}

/// One column of rows computed outside the store, for [`Store::rows_to_parquet`].
#[derive(Debug, Clone)]
pub enum ParquetColumn<'a> {
    Text(&'a str, Vec<&'a str>),
    Int(&'a str, Vec<i64>),
}

/// One exported column: its name, the SQL that reads it, what it means.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub sql: &'static str,
    pub about: &'static str,
}

/// How a table is restricted by the export filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterBy {
    /// Rows of the selected traces (`trace_id`).
    Trace,
    /// Rows whose `time_ns` lies in the window.
    Time,
    /// Never filtered.
    None,
}

/// One exported table: `<name>.parquet` from `FROM <from>`.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    pub from: &'static str,
    pub about: &'static str,
    pub order_by: &'static str,
    pub filter: FilterBy,
    pub columns: &'static [ColumnSpec],
}

const fn c(name: &'static str, about: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        sql: name,
        about,
    }
}

const fn cs(name: &'static str, sql: &'static str, about: &'static str) -> ColumnSpec {
    ColumnSpec { name, sql, about }
}

const TRACE: ColumnSpec = c("trace_id", "trace id, 32 hex digits");
const SPAN: ColumnSpec = c("span_id", "span id, 16 hex digits");

/// Every table the export writes (replay results are added when the store has them).
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "spans",
        from: "spans",
        about: "One row per span, with the semantic-convention attributes tailscope understands promoted to columns (GenAI, vLLM, OpenInference, MCP, DB aliases normalised) and every attribute as JSON.",
        order_by: "trace_id, start_ns, span_id",
        filter: FilterBy::Trace,
        columns: &[
            TRACE,
            SPAN,
            c("parent_span_id", "parent span id; null for a root"),
            c("trace_state", "W3C trace state"),
            c("flags", "W3C trace flags"),
            c("name", "span name"),
            c("kind", "internal, server, client, producer or consumer"),
            c("start_ns", "start, ns since the Unix epoch"),
            c("end_ns", "end, ns since the Unix epoch"),
            c("duration_ns", "end_ns - start_ns"),
            c("status_code", "unset, ok or error"),
            c("status_message", "status description"),
            c("resource_id", "key into resources.parquet"),
            c("service_name", "service.name of the resource"),
            c("scope_name", "instrumentation scope name"),
            c("scope_version", "instrumentation scope version"),
            c("op_class", "what the span does: llm, embedding, retrieval, tool, agent, mcp, db, pool, http, other"),
            c("operation", "gen_ai.operation.name or its equivalent"),
            c("model", "model (gen_ai.response.model, else request model, llm.model_name)"),
            c("provider", "gen_ai.provider.name (alias gen_ai.system)"),
            c("conversation_id", "gen_ai.conversation.id (alias session.id)"),
            c("input_tokens", "input (prompt) tokens"),
            c("output_tokens", "output (completion) tokens"),
            c("cache_read_tokens", "prompt tokens served from the prefix/prompt cache"),
            c("cache_write_tokens", "prompt tokens written to the cache"),
            c("stream", "gen_ai.request.stream"),
            c("time_to_first_chunk_ns", "client-side time to first chunk (gen_ai.response.time_to_first_chunk)"),
            c("queue_ns", "server time in queue (vLLM gen_ai.latency.time_in_queue)"),
            c("ttft_ns", "server time to first token"),
            c("prefill_ns", "server prefill time"),
            c("decode_ns", "server decode time"),
            c("inference_ns", "server inference time"),
            c("e2e_ns", "server end-to-end time"),
            c("tool_name", "gen_ai.tool.name (alias tool.name)"),
            c("tool_call_id", "gen_ai.tool.call.id"),
            c("agent_name", "gen_ai.agent.name"),
            c("data_source_id", "gen_ai.data_source.id"),
            c("mcp_method", "mcp.method.name"),
            c("mcp_session_id", "mcp.session.id"),
            c("db_system", "db.system.name (alias db.system)"),
            c("db_operation", "db.operation.name"),
            c("db_query_summary", "db.query.summary"),
            c("db_pool_name", "db.client.connection.pool.name"),
            c("pool_wait_ns", "connection-pool wait (db.client.connection.wait_time)"),
            c("server_address", "server.address"),
            c("error_type", "error.type"),
            c("event_count", "events on the span (see events.parquet)"),
            c("link_count", "links on the span (see links.parquet)"),
            c("ingested_ns", "when tailscope stored the span, ns since the Unix epoch"),
            c("attributes", "every span attribute as one JSON object (long form: span_attributes.parquet)"),
        ],
    },
    TableSpec {
        name: "span_attributes",
        from: "span_attributes",
        about: "Every span attribute in long form: one row per (span, key).",
        order_by: "trace_id, span_id, key",
        filter: FilterBy::Trace,
        columns: &[
            TRACE,
            SPAN,
            c("key", "attribute key"),
            c("value_type", "string, int, double, bool or json"),
            c("value", "the value as text"),
            c("int_value", "the value when it is an integer"),
            c("double_value", "the value when it is a number"),
            c("bool_value", "the value when it is a boolean"),
        ],
    },
    TableSpec {
        name: "events",
        from: "events",
        about: "Span events (exceptions, stream chunks, ...).",
        order_by: "trace_id, span_id, event_index",
        filter: FilterBy::Trace,
        columns: &[
            TRACE,
            SPAN,
            c("event_index", "position of the event on its span"),
            c("time_ns", "event time, ns since the Unix epoch"),
            c("name", "event name"),
            c("attributes", "event attributes as a JSON object"),
        ],
    },
    TableSpec {
        name: "links",
        from: "links",
        about: "Span links (async sub-agents, batch consumers, background jobs).",
        order_by: "trace_id, span_id, linked_trace_id, linked_span_id",
        filter: FilterBy::Trace,
        columns: &[
            TRACE,
            SPAN,
            c("linked_trace_id", "trace of the linked span"),
            c("linked_span_id", "the linked span"),
            c("trace_state", "trace state of the link"),
            c("attributes", "link attributes as a JSON object"),
        ],
    },
    TableSpec {
        name: "critical_path_sections",
        from: "critical_path_sections",
        about: "Each trace's critical path (Jaeger's definition plus agent rules): sections that cover the root with no overlap, each given exactly one cause.",
        order_by: "trace_id, start_ns",
        filter: FilterBy::Trace,
        columns: &[
            TRACE,
            c("span_id", "the span the section's time belongs to"),
            c("start_ns", "section start, ns since the Unix epoch"),
            c("end_ns", "section end, ns since the Unix epoch"),
            c("cause", "one of preprocessing, retrieval, pool_wait, db, queue, kv_eviction, prefill, decode, tool, tool_cold_start, retry, network, uninstrumented, other"),
        ],
    },
    TableSpec {
        name: "span_analysis",
        from: "span_analysis",
        about: "Per-span timing from the analysis.",
        order_by: "trace_id, span_id",
        filter: FilterBy::Trace,
        columns: &[
            TRACE,
            SPAN,
            c("total_ns", "span duration"),
            c("self_ns", "time not covered by the span's children"),
            c("critical_ns", "time the span spends on the critical path"),
            c("skew_ns", "clock-skew correction applied to the span"),
            c("orphan", "true when the span's parent was never received"),
        ],
    },
    TableSpec {
        name: "trace_analysis",
        from: "trace_analysis",
        about: "One row per trace: duration, critical-path time per cause (the `<cause>_ns` columns sum to the critical path, which covers the root) and the primary cause (the cause with the largest excess over the median of traces of the same route; null when the trace is not slower than that median).",
        order_by: "trace_id",
        filter: FilterBy::Trace,
        columns: &[
            TRACE,
            c("root", "root span name"),
            c("route", "service and root operation: the group primary causes compare within"),
            c("conversation_id", "conversation of the trace, if any"),
            c("start_ns", "root start, ns since the Unix epoch"),
            c("duration_ns", "root duration"),
            c("primary_cause", "why this trace is slower than its route's median; null when it is not"),
            c("orphans", "spans whose parent is missing"),
            c("preprocessing_ns", "critical-path time: chunking, embedding, tokenising, prompt assembly"),
            c("retrieval_ns", "critical-path time: vector search, rerank"),
            c("pool_wait_ns", "critical-path time: waiting for a DB/HTTP/worker pool slot"),
            c("db_ns", "critical-path time: database calls"),
            c("queue_ns", "critical-path time: inference-server queueing"),
            c("kv_eviction_ns", "critical-path time: re-prefill of a prefix evicted from the KV cache since the previous turn"),
            c("prefill_ns", "critical-path time: prefill"),
            c("decode_ns", "critical-path time: decode"),
            c("tool_ns", "critical-path time: tool calls"),
            c("tool_cold_start_ns", "critical-path time: MCP initialize, first call after idle, cold functions"),
            c("retry_ns", "critical-path time: attempts that failed and were retried"),
            c("network_ns", "critical-path time: client time not covered by the server span"),
            c("uninstrumented_ns", "critical-path self time with no better explanation"),
            c("other_ns", "critical-path time: anything else"),
            c("caller_trace_id", "trace of the span that started this trace asynchronously (root link)"),
            c("caller_span_id", "span that started this trace asynchronously"),
            c("analyzed_ns", "the ingest watermark of the run that last analysed the trace: every span stamped at or below it (ns since the Unix epoch, spans.ingested_ns) was in that analysis"),
        ],
    },
    TableSpec {
        name: "findings",
        from: "findings",
        about: "Named problems with evidence and an estimated saving, as in `tailscope analyze`.",
        order_by: "estimated_cost_ns DESC, trace_id, span_id, kind",
        filter: FilterBy::Trace,
        columns: &[
            c("kind", "finding kind (kv_eviction, pool_saturation, ...)"),
            TRACE,
            SPAN,
            c("conversation_id", "conversation, if any"),
            c("estimated_cost_ns", "time the fix would save on this trace's critical path"),
            c("summary", "one sentence"),
            c("evidence", "the evidence as a JSON object"),
        ],
    },
    TableSpec {
        name: "metric_points",
        from: "metric_points",
        about: "Metric data points (vLLM scheduler and KV-cache gauges, DCGM/OTel GPU gauges, DB pool metrics, ...).",
        order_by: "name, time_ns, resource_id, attributes",
        filter: FilterBy::Time,
        columns: &[
            c("resource_id", "key into resources.parquet"),
            c("service_name", "service.name of the resource"),
            c("scope_name", "instrumentation scope name"),
            c("name", "metric name as received"),
            c("description", "metric description"),
            c("unit", "unit (UCUM)"),
            c("kind", "gauge, sum, histogram, exponential_histogram or summary"),
            c("temporality", "cumulative, delta or unspecified"),
            c("monotonic", "true for monotonic sums (counters)"),
            c("start_ns", "start of the aggregation interval, ns since the Unix epoch"),
            c("time_ns", "time of the point, ns since the Unix epoch"),
            c("attributes", "point attributes as a JSON object"),
            c("value", "gauge or sum value"),
            c("count", "histogram/summary count"),
            c("sum", "histogram/summary sum"),
            c("min", "histogram min"),
            c("max", "histogram max"),
            c("bucket_counts", "histogram bucket counts"),
            c("explicit_bounds", "histogram bucket bounds"),
            c("quantiles", "summary quantiles as JSON"),
            c("exemplars", "exemplars as JSON"),
        ],
    },
    TableSpec {
        name: "resources",
        from: "resources",
        about: "Resources (services) that sent data; every resource is exported whatever the filter.",
        order_by: "resource_id",
        filter: FilterBy::None,
        columns: &[
            c("resource_id", "resource key used by spans and metric_points"),
            c("service_name", "service.name"),
            cs("attributes", "attributes", "resource attributes as a JSON object"),
        ],
    },
];

/// Which rows the frames that follow keep (from [`Store::export_scope`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportScope {
    /// Only the selected traces (kept in a temporary table of this connection).
    traces: bool,
    /// Only rows whose `time_ns` lies in `[from, to)`.
    time: Option<(i64, i64)>,
}

impl ExportScope {
    fn trace_predicate(&self) -> Option<&'static str> {
        self.traces
            .then_some("trace_id IN (SELECT trace_id FROM trace_filter)")
    }
}

fn select_sql(spec: &TableSpec, scope: &ExportScope) -> String {
    let cols: Vec<String> = spec
        .columns
        .iter()
        .map(|c| {
            if c.sql == c.name {
                format!("\"{}\"", c.name)
            } else {
                format!("{} AS \"{}\"", c.sql, c.name)
            }
        })
        .collect();
    let predicate = match spec.filter {
        FilterBy::Trace => scope.trace_predicate().map(str::to_owned),
        FilterBy::Time => scope
            .time
            .map(|(a, b)| format!("time_ns >= {a} AND time_ns < {b}")),
        FilterBy::None => None,
    };
    format!(
        "SELECT {} FROM {}{} ORDER BY {}",
        cols.join(", "),
        spec.from,
        predicate.map_or_else(String::new, |p| format!(" WHERE {p}")),
        spec.order_by
    )
}

impl Store {
    /// (trace id, start, duration) of every analysed trace, by trace id.
    pub fn analysed_trace_times(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT trace_id, start_ns, duration_ns FROM trace_analysis ORDER BY trace_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The scope of the frames that follow: only `traces` (all when `None`), and only
    /// metric rows in `time`.
    pub fn export_scope(
        &self,
        traces: Option<&[String]>,
        time: Option<(i64, i64)>,
    ) -> Result<ExportScope, StoreError> {
        if let Some(ids) = traces {
            self.trace_filter(ids)?;
        }
        Ok(ExportScope {
            traces: traces.is_some(),
            time,
        })
    }

    /// Writes the rows of an exported table to the Parquet file `path` (zstd); an empty
    /// result keeps its schema.
    pub fn export_parquet(
        &self,
        spec: &TableSpec,
        scope: &ExportScope,
        path: &Path,
    ) -> Result<ParquetWritten, StoreError> {
        self.copy_parquet(&select_sql(spec, scope), path)
    }

    /// `COPY (sql) TO path` as zstd Parquet, with the column names and types.
    fn copy_parquet(&self, sql: &str, path: &Path) -> Result<ParquetWritten, StoreError> {
        let mut describe = self.conn.prepare(&format!("DESCRIBE {sql}"))?;
        let columns = describe
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let to = path
            .to_str()
            .ok_or_else(|| StoreError::Schema(format!("{} is not UTF-8", path.display())))?;
        let rows = self.conn.execute(
            &format!(
                "COPY ({sql}) TO {} (FORMAT parquet, COMPRESSION zstd)",
                sql_lit(to)
            ),
            [],
        )?;
        Ok(ParquetWritten { rows, columns })
    }

    /// Writes rows computed outside the store (equal-length columns) as a Parquet
    /// file, typed VARCHAR and BIGINT.
    pub fn rows_to_parquet(
        &self,
        columns: &[ParquetColumn<'_>],
        path: &Path,
    ) -> Result<ParquetWritten, StoreError> {
        let len = |c: &ParquetColumn<'_>| match c {
            ParquetColumn::Text(_, v) => v.len(),
            ParquetColumn::Int(_, v) => v.len(),
        };
        let n = columns.first().map_or(0, len);
        if columns.iter().any(|c| len(c) != n) {
            return Err(StoreError::Schema(
                "Parquet columns of unequal length".into(),
            ));
        }
        let typed: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(k, c)| match c {
                ParquetColumn::Text(name, _) => format!("c{k}::VARCHAR AS \"{name}\""),
                ParquetColumn::Int(name, _) => format!("c{k}::BIGINT AS \"{name}\""),
            })
            .collect();
        let cell = |c: &ParquetColumn<'_>, i: usize| match c {
            ParquetColumn::Text(_, v) => sql_lit(v[i]),
            ParquetColumn::Int(_, v) => v[i].to_string(),
        };
        let names = (0..columns.len())
            .map(|k| format!("c{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let values = if n == 0 {
            // one typed row, filtered out: the schema without rows
            let nulls = vec!["NULL"; columns.len()].join(", ");
            format!("(VALUES ({nulls})) v({names}) WHERE false")
        } else {
            let rows: Vec<String> = (0..n)
                .map(|i| {
                    let cells: Vec<String> = columns.iter().map(|c| cell(c, i)).collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            format!("(VALUES {}) v({names})", rows.join(", "))
        };
        self.copy_parquet(&format!("SELECT {} FROM {values}", typed.join(", ")), path)
    }

    /// `replay_*` tables, when the store has any (replay results arrive later).
    pub fn replay_tables(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT table_name FROM information_schema.tables
             WHERE table_schema = 'main' AND starts_with(table_name, 'replay_') ORDER BY 1",
        )?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(names
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .collect())
    }

    /// A replay table as stored, only the selected traces' rows when it has a trace id,
    /// written as the Parquet file `path`.
    pub fn replay_parquet(
        &self,
        table: &str,
        scope: &ExportScope,
        path: &Path,
    ) -> Result<ParquetWritten, StoreError> {
        if !table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(StoreError::Schema(format!("`{table}` is not a table name")));
        }
        let has_trace: i64 = self.conn.query_row(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = 'trace_id'",
            [table],
            |r| r.get(0),
        )?;
        let predicate = match scope.trace_predicate() {
            Some(p) if has_trace > 0 => format!(" WHERE {p}"),
            _ => String::new(),
        };
        self.copy_parquet(&format!("SELECT * FROM {table}{predicate}"), path)
    }
}
