//! What the UI asks ([`Request`]), the worker's answers ([`Response`]), job and collector status.

use super::{
    Conversation, ConversationSummary, DiffVm, FixFirstVm, MetricsScope, MetricsWindow, Overview,
    ReplayListItem, ReplayRequest, ReplayVm, SpanChange, SpanWhatifVm, SqlResult, TraceDetail,
    TracePage, TraceQuery,
};
use std::path::PathBuf;

/// What the UI asks of the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Overview,
    Traces(TraceQuery),
    Trace {
        trace_id: String,
    },
    Conversations,
    Conversation {
        conversation_id: String,
    },
    /// GPU and inference-server series (canonical names, on one grid) around a scope.
    Metrics {
        scope: MetricsScope,
    },
    /// The saved replays (latest first).
    Replays,
    /// One saved replay: summaries, turns, evictions.
    Replay {
        replay_id: String,
    },
    Sql {
        sql: String,
    },
    /// Two periods of the store compared (`tailscope diff`). Each period is written as
    /// the CLI takes it (`FROM..TO`: RFC 3339, a date, Unix time, `-2h`; a side may be
    /// empty); `None` for both: the first half of the stored time range against the
    /// second.
    Diff {
        periods: Option<(String, String)>,
    },
    /// The operations whose 50% speed-up alone moves the p99 most (`tailscope whatif
    /// --rank`), largest reduction first.
    FixFirst,
    /// The trace's duration if one of its spans changed (the trace view's "what if").
    SpanWhatif {
        trace_id: String,
        span_id: String,
        change: SpanChange,
    },
    /// Replay a stored conversation under configurations A and B (a job with progress
    /// and cancel); the result is saved and answered as [`Response::Replay`].
    RunReplay(ReplayRequest),
    /// The default configurations A and B (TOML) the replay form starts from.
    ReplayDefaults,
    /// Configuration A sized like the recorded server (`tailscope replay --as-recorded`)
    /// for a conversation, and B with twice its cache; answered as
    /// [`Response::AsRecorded`].
    AsRecorded {
        conversation_id: String,
        token_scale: f64,
        max_output_tokens: u32,
    },
    /// Import OTLP files (a job with progress).
    Import {
        files: Vec<PathBuf>,
    },
    /// Export Parquet tables and a notebook into a folder (a job with progress).
    Export {
        dir: PathBuf,
    },
    /// Open another store.
    Open {
        db: PathBuf,
    },
    /// Re-run the (incremental) analysis.
    Analyze,
}

/// What the worker answers, or tells unprompted (progress, live updates).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Overview(Box<Overview>),
    Traces(TracePage),
    Trace(Box<TraceDetail>),
    Conversations(Vec<ConversationSummary>),
    Conversation(Conversation),
    Metrics(MetricsWindow),
    Replays(Vec<ReplayListItem>),
    Replay(Box<ReplayVm>),
    Sql(SqlResult),
    Diff(Box<DiffVm>),
    FixFirst(Vec<FixFirstVm>),
    SpanWhatif(SpanWhatifVm),
    /// Configurations A and B (TOML) to start the replay form from.
    ReplayDefaults {
        a: String,
        b: String,
    },
    /// The as-recorded A, B with twice its cache (TOML), the token scale they are
    /// sized for, and the evidence (one line each).
    AsRecorded {
        conversation_id: String,
        a: String,
        b: String,
        token_scale: f64,
        notes: Vec<String>,
    },
    /// Progress of the running job; `done` ends it.
    Progress(JobProgress),
    /// The store received or analysed new data: views reload.
    StoreChanged,
    Collector(CollectorStatus),
    /// A request failed; one sentence.
    Error(String),
}

/// The job name of the worker's background analysis. Its progress answers no request:
/// runs start on their own (new spans, a finished import) and coalesce.
pub const ANALYSIS_JOB: &str = "analysis";

impl Response {
    /// Whether this answers one request (so the UI's pending count goes down).
    pub fn is_reply(&self) -> bool {
        match self {
            Response::Progress(p) => p.done && p.job != ANALYSIS_JOB,
            Response::StoreChanged | Response::Collector(_) => false,
            _ => true,
        }
    }
}

/// Collector endpoints and throughput.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CollectorStatus {
    pub grpc: String,
    pub http: String,
    pub spans_per_s: f64,
    pub spans_accepted: u64,
    pub rejected: u64,
    pub gpu_sampler: Option<String>,
}

/// Progress of a long job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobProgress {
    pub job: String,
    /// 0..=1, or `None` when unknown.
    pub fraction: Option<f32>,
    pub message: String,
    pub done: bool,
}
