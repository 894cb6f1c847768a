//! Typed reads over stored spans and analysis results: the one place the readers'
//! SQL lives. Callers (the GUI worker, compare, diff, the tenant view, export, replay)
//! get typed values back and pass typed filters; none of them sees the storage.
//! [`TraceSource`] is what a second backend implements.

mod cohorts;
pub mod export;
mod periods;
mod replays;
mod tenants;
mod traces;

pub use cohorts::TailRow;
pub(crate) use periods::innermost_calls_sql;
pub use replays::{
    ReplayDetail, ReplayEvictionItem, ReplayItem, ReplaySideSummary, ReplayTurnItem,
    REPLAY_SUMMARY_COLUMNS,
};
pub use tenants::valid_key;
pub(crate) use tenants::{checked_key, trace_tokens_sql};
pub use traces::{
    Band, BandMeans, ConversationItem, HasValue, Overview, TraceDetail, TraceFilter, TraceItem,
    TraceOrder, TracePage, TraceSummary, TurnItem,
};

use crate::StoreError;
use tailscope_model::samples::{
    CohortRanks, CohortSpan, CohortTrace, CohortValue, KeyPresence, TenantTrace,
};

/// Why a typed read failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What was asked for is not there (a trace, a conversation, a replay).
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong (a malformed id, a user filter that does not parse).
    #[error("{0}")]
    BadInput(String),
}

impl From<duckdb::Error> for QueryError {
    fn from(e: duckdb::Error) -> Self {
        QueryError::Store(StoreError::Duckdb(e))
    }
}

/// Reads a profiler needs from wherever traces are kept: the local store, or (later) a
/// remote engine. Each read returns typed values; filters are typed, never SQL, except
/// the user's own predicate in [`TraceFilter::user_sql`].
pub trait TraceSource {
    /// Spans, analysed traces and metric points kept.
    fn totals(&self) -> Result<Totals, QueryError>;
    /// The overview: trace durations, the cohorts' mean time per cause, the slowest
    /// trace and the costliest findings.
    fn overview(&self, findings: usize) -> Result<Overview, QueryError>;
    /// One page of analysed traces.
    fn trace_page(&self, filter: &TraceFilter, page: Page) -> Result<TracePage, QueryError>;
    /// One trace with its spans, attributes, per-span times and critical path.
    fn trace_detail(&self, trace_id: &str) -> Result<TraceDetail, QueryError>;
    /// Conversations by total time, at most `limit`.
    fn conversations(&self, limit: usize) -> Result<Vec<ConversationItem>, QueryError>;
    /// A conversation's analysed turns in time order.
    fn conversation(&self, conversation_id: &str) -> Result<Vec<TurnItem>, QueryError>;
    /// `[first, last]` nanoseconds over spans and metric points (`None`: nothing kept).
    fn time_span(&self) -> Result<Option<(i64, i64)>, QueryError>;
    /// Saved replays, latest first, at most `limit`.
    fn replays(&self, limit: usize) -> Result<Vec<ReplayItem>, QueryError>;
    /// One saved replay.
    fn replay(&self, replay_id: i64) -> Result<ReplayDetail, QueryError>;
    /// Where the attribute `key` occurs (a key of letters, digits and `._-:/@`).
    fn key_presence(&self, key: &str) -> Result<KeyPresence, QueryError>;
    /// Every analysed trace by ascending duration (ties by trace id) with its tenant
    /// under `key` (where it occurs), or its root's service when `key` is `None`, and
    /// its innermost LLM calls' tokens.
    fn tenant_traces(
        &self,
        key: Option<(&str, KeyPresence)>,
    ) -> Result<Vec<TenantTrace>, QueryError>;
    /// The cohort traces (rank, duration, route), by rank.
    fn cohort_traces(&self, cohort: &CohortRanks) -> Result<Vec<CohortTrace>, QueryError>;
    /// Every span of the cohort traces, in `states.len()` parts read in parallel, each
    /// visited with its own state.
    fn cohort_spans<S: Send>(
        &self,
        cohort: &CohortRanks,
        states: &mut [S],
        visit: &(impl Fn(&mut S, CohortSpan<'_>) + Sync),
    ) -> Result<(), QueryError>;
    /// Each cohort trace's distinct values, where the source finds them itself (a
    /// remote engine counts them where the spans are kept and sends these instead);
    /// `None`: read [`TraceSource::cohort_spans`] and
    /// [`TraceSource::resource_attributes`].
    fn cohort_values(&self, cohort: &CohortRanks) -> Result<Option<Vec<CohortValue>>, QueryError> {
        let _ = cohort;
        Ok(None)
    }
    /// Every resource attribute: (resource id, key, value).
    fn resource_attributes(&self) -> Result<Vec<(i64, String, String)>, QueryError>;
    /// `[first, last]` span start in nanoseconds (`None`: no spans).
    fn span_starts(&self) -> Result<Option<(i64, i64)>, QueryError>;
    /// What `diff` reads of the period `[from_ns, to_ns)`: the analysed traces whose
    /// root starts in it, its spans' durations per (service, name), its innermost LLM
    /// client calls; each with its cluster (conversation, else trace).
    fn period_rows(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<tailscope_model::samples::PeriodRows, QueryError>;
    /// LLM client calls in start order, of one conversation and/or overlapping the
    /// window `[from_ns, to_ns)`: what a replay is built from.
    fn replay_calls(
        &self,
        conversation: Option<&str>,
        window: Option<(i64, i64)>,
    ) -> Result<Vec<crate::LlmCallRow>, QueryError>;
    /// The counts that say why nothing can be replayed (whole store or one
    /// conversation).
    fn call_census(&self, conversation: Option<&str>) -> Result<crate::CallCensus, QueryError>;
}

/// Row counts a view starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub spans: u64,
    /// Traces with analysis results.
    pub analysed_traces: u64,
    pub metric_points: u64,
}

/// Which page of an ordered list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub order: TraceOrder,
    pub descending: bool,
    pub offset: usize,
    pub limit: usize,
}

impl TraceSource for crate::Store {
    fn totals(&self) -> Result<Totals, QueryError> {
        self.totals_q()
    }
    fn overview(&self, findings: usize) -> Result<Overview, QueryError> {
        self.overview_q(findings)
    }
    fn trace_page(&self, filter: &TraceFilter, page: Page) -> Result<TracePage, QueryError> {
        self.trace_page_q(filter, page)
    }
    fn trace_detail(&self, trace_id: &str) -> Result<TraceDetail, QueryError> {
        self.trace_detail_q(trace_id)
    }
    fn conversations(&self, limit: usize) -> Result<Vec<ConversationItem>, QueryError> {
        self.conversations_q(limit)
    }
    fn conversation(&self, conversation_id: &str) -> Result<Vec<TurnItem>, QueryError> {
        self.conversation_q(conversation_id)
    }
    fn time_span(&self) -> Result<Option<(i64, i64)>, QueryError> {
        self.time_span_q()
    }
    fn replays(&self, limit: usize) -> Result<Vec<ReplayItem>, QueryError> {
        self.replays_q(limit)
    }
    fn replay(&self, replay_id: i64) -> Result<ReplayDetail, QueryError> {
        self.replay_q(replay_id)
    }
    fn key_presence(&self, key: &str) -> Result<KeyPresence, QueryError> {
        self.key_presence_q(key)
    }
    fn tenant_traces(
        &self,
        key: Option<(&str, KeyPresence)>,
    ) -> Result<Vec<TenantTrace>, QueryError> {
        self.tenant_traces_q(key)
    }
    fn cohort_traces(&self, cohort: &CohortRanks) -> Result<Vec<CohortTrace>, QueryError> {
        self.cohort_traces_q(cohort)
    }
    fn cohort_spans<S: Send>(
        &self,
        cohort: &CohortRanks,
        states: &mut [S],
        visit: &(impl Fn(&mut S, CohortSpan<'_>) + Sync),
    ) -> Result<(), QueryError> {
        self.cohort_spans_q(cohort, states, visit)
    }
    fn resource_attributes(&self) -> Result<Vec<(i64, String, String)>, QueryError> {
        self.resource_attributes_q()
    }
    fn span_starts(&self) -> Result<Option<(i64, i64)>, QueryError> {
        self.span_starts_q()
    }
    fn period_rows(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<tailscope_model::samples::PeriodRows, QueryError> {
        self.period_rows_q(from_ns, to_ns)
    }
    fn replay_calls(
        &self,
        conversation: Option<&str>,
        window: Option<(i64, i64)>,
    ) -> Result<Vec<crate::LlmCallRow>, QueryError> {
        Ok(self.llm_calls(conversation, window)?)
    }
    fn call_census(&self, conversation: Option<&str>) -> Result<crate::CallCensus, QueryError> {
        Ok(self.llm_call_census(conversation)?)
    }
}
