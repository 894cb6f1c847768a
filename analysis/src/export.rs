//! `tailscope export`: the store's spans, analysis results and metrics as Parquet
//! (written with Polars), a `README.md` describing every table and column, and a
//! ready-to-run `analysis.ipynb` that reproduces the report from the Parquet files.
//!
//! Every exported table comes from one spec ([`TABLES`]): the SELECT that reads it and
//! the README that describes it are both generated from it, so they cannot drift.
//! [`export`] is callable from any thread (the GUI's worker): it reports
//! [`ExportProgress`] per table and stops between tables when `cancel` is set.

use crate::AnalysisError;
use polars::prelude::{DataFrame, ParquetCompression, ParquetWriter};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tailscope_store::{Store, StoreError, CAUSE_COLUMNS};

/// Errors of an export; each names the folder, file or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export folder {0} is not empty (use --force to overwrite the tailscope files in it)")]
    NotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write Parquet {path}: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("reading table {table} from the store: {source}")]
    Query { table: String, source: StoreError },
    #[error("trace id `{0}` is not 32 hex digits")]
    BadTraceId(String),
    #[error("trace {0} is not in the store")]
    UnknownTrace(String),
    #[error("no trace starts inside the requested window")]
    NoTraces,
    #[error("the time window ends ({end}) before it starts ({start})")]
    BadWindow { start: i64, end: i64 },
    #[error("analysing the store before export: {0}")]
    Analysis(#[from] AnalysisError),
    #[error("export cancelled")]
    Cancelled,
}

/// What to export. The default exports everything.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only traces whose root starts in `[start_ns, end_ns)` (ns since the Unix
    /// epoch), and only metric points in that window.
    pub window: Option<(i64, i64)>,
    /// Only these traces (32 hex digits each).
    pub trace_ids: Option<Vec<String>>,
    /// Overwrite the files tailscope writes when the folder is not empty (other files
    /// in it are left alone).
    pub force: bool,
}

/// Progress of an export: step `step` of `steps` is `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportProgress {
    pub step: usize,
    pub steps: usize,
    pub label: String,
    /// Rows written by the step, once it is done.
    pub rows: Option<usize>,
}

impl ExportProgress {
    /// The share of the export done, 0.0–1.0.
    pub fn fraction(&self) -> f32 {
        if self.steps == 0 {
            return 1.0;
        }
        let done = self.step + usize::from(self.rows.is_some());
        (done as f32 / self.steps as f32).min(1.0)
    }
}

/// One written Parquet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    pub name: String,
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub tables: Vec<TableSummary>,
    pub notebook: PathBuf,
    pub readme: PathBuf,
    /// Traces exported.
    pub traces: usize,
    pub elapsed: Duration,
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

/// The notebook's file name in the export folder.
pub const NOTEBOOK: &str = "analysis.ipynb";
/// The README's file name in the export folder.
pub const README: &str = "README.md";

/// Which rows the export keeps: a SQL predicate over `trace_id` and a time window.
struct Filter {
    traces: Option<String>,
    time: Option<(i64, i64)>,
    description: String,
}

fn parquet_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.parquet"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_dir(dir: &Path, force: bool) -> Result<(), ExportError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(ExportError::NotEmpty(dir.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))
        }
        Err(e) => Err(io(dir)(e)),
    }
}

fn query(store: &Store, table: &str, sql: &str) -> Result<DataFrame, ExportError> {
    store
        .query_polars(sql)
        .map_err(|source| ExportError::Query {
            table: table.to_owned(),
            source,
        })
}

fn strings(df: &DataFrame, col: &str) -> Vec<String> {
    df.column(col)
        .ok()
        .and_then(|c| c.str().ok())
        .map(|s| s.into_iter().flatten().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn ints(df: &DataFrame, col: &str) -> Vec<Option<i64>> {
    df.column(col)
        .ok()
        .and_then(|c| c.i64().ok())
        .map(|s| s.into_iter().collect())
        .unwrap_or_default()
}

fn normalise_trace_id(id: &str) -> Result<String, ExportError> {
    let t = id.trim().to_ascii_lowercase();
    if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(ExportError::BadTraceId(id.to_owned()))
    }
}

/// Resolves the options into the selected traces and the time window of metrics.
fn select(store: &Store, opts: &ExportOptions) -> Result<(Filter, usize), ExportError> {
    let df = query(
        store,
        "trace_analysis",
        "SELECT trace_id, start_ns, duration_ns FROM trace_analysis ORDER BY trace_id",
    )?;
    let ids = strings(&df, "trace_id");
    let starts = ints(&df, "start_ns");
    let durations = ints(&df, "duration_ns");
    if opts.window.is_none() && opts.trace_ids.is_none() {
        return Ok((
            Filter {
                traces: None,
                time: None,
                description: "everything in the store".to_owned(),
            },
            ids.len(),
        ));
    }
    if let Some((start, end)) = opts.window {
        if end < start {
            return Err(ExportError::BadWindow { start, end });
        }
    }
    let wanted: Option<BTreeSet<String>> = opts
        .trace_ids
        .as_ref()
        .map(|v| v.iter().map(|t| normalise_trace_id(t)).collect())
        .transpose()?;
    if let Some(w) = &wanted {
        let known: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        if let Some(missing) = w.iter().find(|t| !known.contains(t.as_str())) {
            return Err(ExportError::UnknownTrace(missing.clone()));
        }
    }
    let mut selected = Vec::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (i, id) in ids.iter().enumerate() {
        let start = starts.get(i).copied().flatten().unwrap_or(0);
        let end = start + durations.get(i).copied().flatten().unwrap_or(0);
        let in_window = opts.window.is_none_or(|(a, b)| start >= a && start < b);
        let in_set = wanted.as_ref().is_none_or(|w| w.contains(id));
        if in_window && in_set {
            selected.push(id.clone());
            lo = lo.min(start);
            hi = hi.max(end);
        }
    }
    if selected.is_empty() {
        return Err(ExportError::NoTraces);
    }
    let predicate = store
        .trace_filter(&selected)
        .map_err(|source| ExportError::Query {
            table: "trace_filter".to_owned(),
            source,
        })?;
    let mut description = String::new();
    if let Some((a, b)) = opts.window {
        let _ = write!(
            description,
            "traces whose root starts in [{a}, {b}) ns and metric points in that window"
        );
    }
    if let Some(w) = &wanted {
        if !description.is_empty() {
            description.push_str("; ");
        }
        let _ = write!(description, "{} requested trace(s)", w.len());
        if opts.window.is_none() {
            let _ = write!(
                description,
                ", and metric points while they ran ([{lo}, {hi}] ns)"
            );
        }
    }
    let time = opts.window.or(Some((lo, hi.saturating_add(1))));
    Ok((
        Filter {
            traces: Some(predicate),
            time,
            description,
        },
        selected.len(),
    ))
}

fn select_sql(spec: &TableSpec, filter: &Filter) -> String {
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
        FilterBy::Trace => filter.traces.clone(),
        FilterBy::Time => filter
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

/// Reads a query as a frame; an empty result keeps its schema (DuckDB yields no
/// Arrow batch for zero rows, so the schema comes from one all-null row).
fn frame(store: &Store, table: &str, sql: &str) -> Result<DataFrame, ExportError> {
    let df = query(store, table, sql)?;
    if df.width() > 0 {
        return Ok(df);
    }
    let typed = query(
        store,
        table,
        &format!("SELECT q.* FROM (SELECT 1) AS one LEFT JOIN ({sql}) AS q ON true LIMIT 1"),
    )?;
    Ok(typed.head(Some(0)))
}

fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<u64, ExportError> {
    let file = std::fs::File::create(path).map_err(io(path))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .map_err(|e| ExportError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(std::fs::metadata(path).map_err(io(path))?.len())
}

/// `replay_*` tables, when the store has any (replay results arrive later).
fn replay_tables(store: &Store) -> Result<Vec<String>, ExportError> {
    let df = query(
        store,
        "information_schema.tables",
        "SELECT table_name FROM information_schema.tables
         WHERE table_schema = 'main' AND starts_with(table_name, 'replay_') ORDER BY 1",
    )?;
    Ok(strings(&df, "table_name")
        .into_iter()
        .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect())
}

/// One written table and what the README says about it.
struct Written {
    summary: TableSummary,
    about: String,
    columns: Vec<(String, String, String)>,
}

fn dtype_names(df: &DataFrame) -> Vec<(String, String)> {
    df.get_columns()
        .iter()
        .map(|c| (c.name().to_string(), c.dtype().to_string()))
        .collect()
}

/// Writes the export of `store` into `dir` (see the module docs). The analysis results
/// are brought up to date first.
pub fn export(
    store: &Store,
    dir: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(ExportProgress),
    cancel: &AtomicBool,
) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    check_dir(dir, opts.force)?;
    let replays = replay_tables(store)?;
    let steps = 1 + TABLES.len() + replays.len() + 1;
    let mut step = 0;
    let mut report = |step: usize, label: &str, rows: Option<usize>| {
        progress(ExportProgress {
            step,
            steps,
            label: label.to_owned(),
            rows,
        });
    };
    report(step, "analysing traces", None);
    // the export reads the result tables; the report is not needed
    crate::update(store, &|_| {})?;
    let (filter, traces) = select(store, opts)?;
    report(step, "analysing traces", Some(traces));
    let mut written: Vec<Written> = Vec::new();
    let check_cancel = |written: &[Written]| -> Result<(), ExportError> {
        if cancel.load(Ordering::Relaxed) {
            for w in written {
                // best effort: the error that matters is the cancellation
                let _ = std::fs::remove_file(&w.summary.path);
            }
            return Err(ExportError::Cancelled);
        }
        Ok(())
    };
    for spec in TABLES {
        step += 1;
        check_cancel(&written)?;
        report(step, spec.name, None);
        let mut df = frame(store, spec.name, &select_sql(spec, &filter))?;
        let path = parquet_path(dir, spec.name);
        let bytes = write_parquet(&path, &mut df)?;
        let types = dtype_names(&df);
        written.push(Written {
            summary: TableSummary {
                name: spec.name.to_owned(),
                path,
                rows: df.height(),
                bytes,
            },
            about: spec.about.to_owned(),
            columns: spec
                .columns
                .iter()
                .map(|c| {
                    let ty = types
                        .iter()
                        .find(|(n, _)| n == c.name)
                        .map_or_else(String::new, |(_, t)| t.clone());
                    (c.name.to_owned(), ty, c.about.to_owned())
                })
                .collect(),
        });
        report(step, spec.name, Some(df.height()));
    }
    for table in &replays {
        step += 1;
        check_cancel(&written)?;
        report(step, table, None);
        let has_trace = query(
            store,
            table,
            &format!(
                "SELECT count(*) AS n FROM information_schema.columns
                 WHERE table_name = '{table}' AND column_name = 'trace_id'"
            ),
        )?;
        let predicate = match (&filter.traces, ints(&has_trace, "n").first()) {
            (Some(p), Some(Some(n))) if *n > 0 => format!(" WHERE {p}"),
            _ => String::new(),
        };
        let mut df = frame(store, table, &format!("SELECT * FROM {table}{predicate}"))?;
        let path = parquet_path(dir, table);
        let bytes = write_parquet(&path, &mut df)?;
        written.push(Written {
            summary: TableSummary {
                name: table.clone(),
                path,
                rows: df.height(),
                bytes,
            },
            about: "Replay results (A/B replay through the embedded engine), as stored.".to_owned(),
            columns: dtype_names(&df)
                .into_iter()
                .map(|(n, t)| (n, t, String::new()))
                .collect(),
        });
        report(step, table, Some(df.height()));
    }
    step += 1;
    check_cancel(&written)?;
    report(step, "README and notebook", None);
    let readme = dir.join(README);
    std::fs::write(&readme, readme_text(&written, &filter.description, traces))
        .map_err(io(&readme))?;
    let notebook = dir.join(NOTEBOOK);
    let nb = crate::notebook::notebook(&filter.description);
    std::fs::write(&notebook, nb).map_err(io(&notebook))?;
    report(step, "README and notebook", Some(0));
    Ok(ExportSummary {
        dir: dir.to_path_buf(),
        tables: written.into_iter().map(|w| w.summary).collect(),
        notebook,
        readme,
        traces,
        elapsed: started.elapsed(),
    })
}

fn readme_text(written: &[Written], filter: &str, traces: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# tailscope export\n");
    let _ = writeln!(
        o,
        "Written by tailscope {} ({traces} traces; filter: {filter}). Times are \
         nanoseconds since the Unix epoch and durations nanoseconds, exactly as in OTLP. \
         Open `{NOTEBOOK}` in Jupyter (pip packages: polars, duckdb, pyarrow, matplotlib) \
         to reproduce the report step by step; it also writes `notebook_results.json`.\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        o,
        "Causes (`cause` in critical_path_sections, `<cause>_ns` in trace_analysis): {}.\n",
        CAUSE_COLUMNS.join(", ")
    );
    let _ = writeln!(o, "| file | rows | bytes |\n|---|---:|---:|");
    for w in written {
        let _ = writeln!(
            o,
            "| `{}.parquet` | {} | {} |",
            w.summary.name, w.summary.rows, w.summary.bytes
        );
    }
    for w in written {
        let _ = writeln!(
            o,
            "\n## {}.parquet\n\n{}\n\n| column | type | meaning |\n|---|---|---|",
            w.summary.name, w.about
        );
        for (name, ty, about) in &w.columns {
            let _ = writeln!(o, "| `{name}` | {ty} | {about} |");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_named_once_and_described() {
        for t in TABLES {
            let mut seen = BTreeSet::new();
            for c in t.columns {
                assert!(seen.insert(c.name), "{}.{} twice", t.name, c.name);
                assert!(!c.about.is_empty(), "{}.{} undescribed", t.name, c.name);
            }
        }
        let ta = TABLES.iter().find(|t| t.name == "trace_analysis").unwrap();
        for cause in CAUSE_COLUMNS {
            let col = format!("{cause}_ns");
            assert!(ta.columns.iter().any(|c| c.name == col), "{col}");
        }
    }

    #[test]
    fn trace_ids_are_checked() {
        assert_eq!(
            normalise_trace_id(" 5B8EFFF798038103D269B633813FC60C").unwrap(),
            "5b8efff798038103d269b633813fc60c"
        );
        assert!(matches!(
            normalise_trace_id("5b8e' OR 1=1 --"),
            Err(ExportError::BadTraceId(_))
        ));
    }

    #[test]
    fn progress_fraction() {
        let p = |step, rows| ExportProgress {
            step,
            steps: 4,
            label: String::new(),
            rows,
        };
        assert!((p(0, None).fraction() - 0.0).abs() < f32::EPSILON);
        assert!((p(1, Some(3)).fraction() - 0.5).abs() < f32::EPSILON);
        assert!((p(3, Some(0)).fraction() - 1.0).abs() < f32::EPSILON);
    }
}
