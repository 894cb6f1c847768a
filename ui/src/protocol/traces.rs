//! The traces table: its query (filters, sort, page) and the pages of rows answered.

use tailscope_model::{Cause, Evidence};

/// Column the traces table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SortColumn {
    Start,
    #[default]
    Duration,
    Ttft,
    InputTokens,
    OutputTokens,
    Root,
    PrimaryCause,
    Spans,
}

/// One page of the traces table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TraceQuery {
    pub offset: usize,
    pub limit: usize,
    pub sort: SortColumn,
    pub descending: bool,
    /// Case-insensitive text matched against trace id, root, cause and conversation.
    pub text: String,
    /// A SQL predicate over the trace list columns: trace_id, root, start_ns,
    /// duration_ns, ttft_ns, input_tokens, output_tokens, primary_cause,
    /// conversation_id, spans, pct (e.g. `duration_ns > 2e9 AND spans > 10`).
    pub where_sql: String,
    /// Only traces that have this attribute value (`key`, `value`), as the overview's
    /// "what the slow traces share" panel counts them (the worker turns it into SQL).
    pub has_value: Option<(String, String)>,
    /// Echoed in the reply so stale pages are dropped.
    pub generation: u64,
}

/// One row of the traces table.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRowVm {
    pub trace_id: String,
    pub root: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub ttft_ns: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub primary_cause: Option<Cause>,
    /// How the primary cause is known.
    pub primary_evidence: Option<Evidence>,
    pub conversation_id: Option<String>,
    pub spans: i64,
    /// Percentile rank of the duration among all traces (0..=100).
    pub percentile: f64,
}

/// A page of the traces table.
#[derive(Debug, Clone, PartialEq)]
pub struct TracePage {
    pub query: TraceQuery,
    /// Rows matching the filters.
    pub total: usize,
    pub rows: Vec<TraceRowVm>,
}
