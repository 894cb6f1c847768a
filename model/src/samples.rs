//! What a trace source (the local store, a remote engine) hands the analysis core's
//! pure functions: plain rows, read once, with no storage behind them.

use crate::{Cause, CauseSet, Evidence, SpanId};

/// One critical-path section of a trace: its span, time, cause, how the cause is
/// known, and the causes that explain it about as well (what the analysis computes
/// and a store reads back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub span_id: SpanId,
    pub start_ns: i64,
    pub end_ns: i64,
    pub cause: Cause,
    pub evidence: Evidence,
    pub alternatives: CauseSet,
}

/// Where an attribute key occurs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyPresence {
    /// On some span's attributes.
    pub on_spans: bool,
    /// On some resource's attributes.
    pub on_resources: bool,
}

impl KeyPresence {
    pub fn anywhere(self) -> bool {
        self.on_spans || self.on_resources
    }
}

/// One analysed trace as the per-tenant view reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTrace {
    /// The tenant key's value on the trace's spans (the smallest when several differ),
    /// else on their resources; `None` when neither has it.
    pub tenant: Option<String>,
    pub duration_ns: i64,
    /// Input and output tokens of the trace's innermost LLM client calls.
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// Which analysed traces a comparison reads, by rank in ascending duration (ties by
/// trace id): the tail from `tail_from`, the band `band_from..band_to`, and the p50's
/// rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CohortRanks {
    /// Analysed traces in all.
    pub traces: usize,
    pub tail_from: usize,
    pub band_from: usize,
    pub band_to: usize,
    pub p50: usize,
}

impl CohortRanks {
    /// Whether the trace of rank `r` is read.
    pub fn contains(&self, r: usize) -> bool {
        r >= self.tail_from || (r >= self.band_from && r < self.band_to) || r == self.p50
    }
}

/// A trace of the cohorts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortTrace {
    pub rank: usize,
    pub duration_ns: i64,
    pub route: String,
}

/// A span of a cohort trace, borrowed from the source's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CohortSpan<'a> {
    /// Its trace's rank.
    pub rank: usize,
    pub resource_id: i64,
    pub name: &'a str,
    pub error: bool,
    /// Its attributes as a JSON object.
    pub attributes: Option<&'a str>,
}

/// Where a [`CohortValue`] was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueOn {
    /// A span's name (key empty).
    Name,
    /// A span's error status (key and value empty).
    Error,
    /// A span's attribute; the value as JSON (a string quoted, a number bare), as a
    /// span's attributes hold it.
    Span,
    /// A resource's attribute; the value as text.
    Resource,
}

/// One distinct value on a cohort trace, found where the spans are kept (a remote
/// engine counts them there and sends these instead of the spans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortValue {
    /// Its trace's rank.
    pub rank: usize,
    pub on: ValueOn,
    pub key: String,
    pub value: String,
}

/// One period of a store as `diff` reads it: what starts in `[from, to)`. A cluster is
/// a hash of the conversation, else of the trace (as `u64`): the first 8 bytes of its
/// MD5, big-endian, shifted right by one, which every engine computes alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodRows {
    pub traces: Vec<PeriodTrace>,
    /// One row per (service, span name).
    pub operations: Vec<PeriodOperation>,
    pub calls: Vec<PeriodCall>,
}

impl PeriodRows {
    /// The traces and calls in one order whatever order the engine returned them in,
    /// so that what is computed over them in row order (a seeded cluster bootstrap) is
    /// the same from every source. An operation's spans need no order: `diff` sorts
    /// them by (duration, cluster).
    pub fn canonical(&mut self) {
        // by cluster and duration first (numbers, nearly unique), the whole row for
        // ties: the strings are compared only where those are equal
        self.traces.sort_unstable_by(|a, b| {
            (a.cluster, a.duration_ns)
                .cmp(&(b.cluster, b.duration_ns))
                .then_with(|| a.cmp(b))
        });
        self.calls.sort_unstable_by(|a, b| {
            (a.cluster, a.duration_ns)
                .cmp(&(b.cluster, b.duration_ns))
                .then_with(|| a.cmp(b))
        });
    }
}

/// An analysed trace whose root starts in the period.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeriodTrace {
    /// The root's service and operation, `service operation`.
    pub route: String,
    pub duration_ns: i64,
    pub cluster: u64,
    /// Critical-path time per cause, in the order of [`crate::Cause::ALL`] (0 when
    /// unknown).
    pub by_cause_ns: [i64; crate::Cause::COUNT],
}

/// The spans of one (service, name) that start in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodOperation {
    pub service: String,
    pub name: String,
    /// Each span's duration, with its cluster at the same index in `clusters`.
    pub durations_ns: Vec<i64>,
    pub clusters: Vec<u64>,
}

/// An innermost LLM client call that starts in the period (a call wrapping another is
/// the framework around it), with the server span directly below it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeriodCall {
    /// Empty when the call names none.
    pub model: String,
    /// `server.address`; empty when the call names none.
    pub server: String,
    /// Its trace's route (`service operation`), when the trace is analysed.
    pub route: Option<String>,
    pub duration_ns: i64,
    pub time_to_first_chunk_ns: Option<i64>,
    pub output_tokens: Option<i64>,
    pub input_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub event_count: Option<i64>,
    pub stream: bool,
    /// The server span's TTFT and decode time.
    pub server_ttft_ns: Option<i64>,
    pub server_decode_ns: Option<i64>,
    pub cluster: u64,
}

/// One database read and the LLM calls beside it (under its parent, within its time): what
/// the `semantic_cache` finding is judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLookup {
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: Option<String>,
    /// `db.system` (or `db.system.name`).
    pub db_system: String,
    /// `db.operation` (or `db.operation.name`), else the span name's first word.
    pub operation: String,
    /// The parent's service and name: where the lookup is made.
    pub parent: String,
    pub duration_ns: i64,
    /// An LLM call under the same parent (within its time) starts after the read ended.
    pub llm_after: bool,
    /// An LLM call under the same parent (within its time) ended before the read started.
    pub llm_before: bool,
    /// A database write of the same system under the same parent after the read.
    pub write_after: bool,
    /// The analysed trace's duration.
    pub trace_ns: i64,
    /// The read's time on the trace's critical path.
    pub critical_ns: i64,
}
