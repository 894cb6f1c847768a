//! The request/response protocol between the UI thread and the app's worker, and the
//! view-model types the views draw. Nothing here touches a database: the worker fills
//! these from the store, the UI only reads them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use tailscope_model::{Cause, CauseSet, Evidence};

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

impl SortColumn {
    /// The column of the worker's trace list (see [`TraceQuery::where_sql`]).
    pub fn sql(self) -> &'static str {
        match self {
            SortColumn::Start => "start_ns",
            SortColumn::Duration => "duration_ns",
            SortColumn::Ttft => "ttft_ns",
            SortColumn::InputTokens => "input_tokens",
            SortColumn::OutputTokens => "output_tokens",
            SortColumn::Root => "root",
            SortColumn::PrimaryCause => "primary_cause",
            SortColumn::Spans => "spans",
        }
    }
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
    /// Replay a stored conversation under configurations A and B (a job with progress
    /// and cancel); the result is saved and answered as [`Response::Replay`].
    RunReplay(ReplayRequest),
    /// The default configurations A and B (TOML) the replay form starts from.
    ReplayDefaults,
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
    /// Configurations A and B (TOML) to start the replay form from.
    ReplayDefaults {
        a: String,
        b: String,
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

/// The UI's ends of the two bounded channels, and the cancel flag of the running job.
pub struct Link {
    pub requests: SyncSender<Request>,
    pub responses: Receiver<Response>,
    pub cancel: Arc<AtomicBool>,
}

impl Link {
    pub fn cancel_job(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The worker's ends.
pub struct WorkerLink {
    pub requests: Receiver<Request>,
    pub responses: SyncSender<Response>,
    pub cancel: Arc<AtomicBool>,
}

/// Two bounded channels (requests, responses) and a shared cancel flag.
pub fn link(capacity: usize) -> (Link, WorkerLink) {
    let (qtx, qrx) = std::sync::mpsc::sync_channel(capacity);
    let (rtx, rrx) = std::sync::mpsc::sync_channel(capacity);
    let cancel = Arc::new(AtomicBool::new(false));
    (
        Link {
            requests: qtx,
            responses: rrx,
            cancel: Arc::clone(&cancel),
        },
        WorkerLink {
            requests: qrx,
            responses: rtx,
            cancel,
        },
    )
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

/// Mean per-cause critical time of one cohort of traces.
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    pub name: String,
    pub traces: u64,
    pub mean_by_cause_ns: Vec<(Cause, f64)>,
}

/// One finding, with the span it points at.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingVm {
    pub kind: String,
    pub summary: String,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: Option<String>,
    pub cost_ns: i64,
    /// How the finding is known (`None` for results stored before evidence levels).
    pub evidence_level: Option<Evidence>,
    /// Other causes that explain it about as well (an ambiguous finding).
    pub alternatives: CauseSet,
}

/// The overview: counts, percentiles, tail attribution, distribution, findings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overview {
    pub store: String,
    pub spans: u64,
    pub traces: u64,
    pub metric_points: u64,
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub cohorts: Vec<Cohort>,
    /// (low ms, high ms, traces).
    pub histogram: Vec<(f64, f64, u64)>,
    /// (ms, fraction of traces at or below).
    pub cdf: Vec<[f64; 2]>,
    pub findings: Vec<FindingVm>,
    /// The slowest trace (an example of the tail).
    pub slowest_trace: Option<String>,
    /// What the slow traces share (`tailscope compare`), most telling first.
    pub shared: Option<SharedValues>,
}

/// The tail against the median band, attribute value by attribute value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SharedValues {
    pub percentile: f64,
    pub tail_traces: u64,
    pub baseline_traces: u64,
    pub values: Vec<SharedValueVm>,
}

/// One attribute value over-represented in the tail.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SharedValueVm {
    pub key: String,
    pub value: String,
    /// Share of tail traces that have it (0..=1).
    pub tail_share: f64,
    /// Share of median-band traces that have it (0..=1).
    pub baseline_share: f64,
    pub lift: f64,
    pub tail_traces: u64,
    /// Excess time over the p50 it explains.
    pub excess_ns: i64,
    /// Its share of the tail's whole excess beyond the values above it (0..=1).
    pub score: f64,
    /// Other `key=value`s that mark the same traces.
    pub same: Vec<String>,
}

/// Two periods compared (`tailscope diff`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiffVm {
    /// The periods as the form shows them (`FROM..TO`, RFC 3339).
    pub before_text: String,
    pub after_text: String,
    pub before_traces: u64,
    pub after_traces: u64,
    /// The stored span start range `[from, to)`.
    pub range_ns: (i64, i64),
    pub headline: String,
    /// Significant first, largest first.
    pub changes: Vec<ChangeVm>,
    /// The confidence of the intervals (e.g. 0.99).
    pub confidence: f64,
}

/// One metric of one group before and after.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeVm {
    /// `route`, `operation` or `llm`.
    pub scope: String,
    /// What it is about: `service · operation`, or `model @ server`.
    pub subject: String,
    pub metric: String,
    /// Values as a person reads them (`1.20 s`, `42.0 ms/token`).
    pub before: String,
    pub after: String,
    /// `after / before − 1`.
    pub change: Option<f64>,
    pub ci: Option<(f64, f64)>,
    pub significant: bool,
    pub n_before: u64,
    pub n_after: u64,
}

/// A replay to run from the window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayRequest {
    pub conversation_id: String,
    /// Configurations A and B as TOML (the `--a` / `--b` files' text).
    pub a_toml: String,
    pub b_toml: String,
    /// Runs per side.
    pub repeats: u32,
    /// Recorded token counts are multiplied by this (small CPU model).
    pub token_scale: f64,
    pub max_output_tokens: u32,
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

/// An event on a span.
#[derive(Debug, Clone, PartialEq)]
pub struct EventVm {
    pub time_ns: i64,
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

/// A span as the worker hands it over (any order).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanInput {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub service: String,
    pub kind: String,
    pub status: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub self_ns: i64,
    pub critical_ns: i64,
    /// The cause a span of this kind usually stands for (colour when off the path).
    pub class_cause: Cause,
    pub attributes: Vec<(String, String)>,
    pub events: Vec<EventVm>,
    /// (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
}

impl Default for SpanInput {
    fn default() -> Self {
        Self {
            span_id: String::new(),
            parent_span_id: None,
            name: String::new(),
            service: String::new(),
            kind: String::new(),
            status: String::new(),
            start_ns: 0,
            end_ns: 0,
            self_ns: 0,
            critical_ns: 0,
            class_cause: Cause::Other,
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// A span of a trace in tree pre-order.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanVm {
    pub input: SpanInput,
    pub parent: Option<usize>,
    pub depth: u32,
    /// One past the last span of this span's subtree (pre-order).
    pub subtree_end: usize,
    pub has_children: bool,
    /// The cause with the most critical time in this span, if it is on the path.
    pub cause: Option<Cause>,
}

impl SpanVm {
    pub fn duration_ns(&self) -> i64 {
        self.input.end_ns - self.input.start_ns
    }
    /// The colour cause: its critical cause, else the kind's usual cause.
    pub fn colour_cause(&self) -> Cause {
        self.cause.unwrap_or(self.input.class_cause)
    }
}

/// One critical-path section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SectionVm {
    pub span: usize,
    pub start_ns: i64,
    pub end_ns: i64,
    pub cause: Cause,
    /// How the cause is known (`None` for results stored before evidence levels).
    pub evidence: Option<Evidence>,
    /// Other causes that explain the section about as well (an ambiguous section).
    pub alternatives: CauseSet,
}

/// A critical-path section as the worker hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionInput {
    pub span_id: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub cause: Cause,
    pub evidence: Option<Evidence>,
    pub alternatives: CauseSet,
}

/// A whole trace: spans in pre-order, the critical path, per-cause totals.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceDetail {
    pub trace_id: String,
    pub root: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub conversation_id: Option<String>,
    pub primary_cause: Option<Cause>,
    /// How the primary cause is known.
    pub primary_evidence: Option<Evidence>,
    /// Other causes that explain the trace about as well as the primary cause.
    pub alternatives: CauseSet,
    pub spans: Vec<SpanVm>,
    pub sections: Vec<SectionVm>,
    pub by_cause_ns: Vec<(Cause, i64)>,
}

impl TraceDetail {
    /// Builds the pre-order tree from spans in any order; `sections` are
    /// (span id, start, end, cause), of unknown evidence. Spans whose parent is missing
    /// become roots.
    pub fn build(
        trace_id: String,
        spans: Vec<SpanInput>,
        sections: &[(String, i64, i64, Cause)],
    ) -> TraceDetail {
        let sections: Vec<SectionInput> = sections
            .iter()
            .map(|(span_id, start_ns, end_ns, cause)| SectionInput {
                span_id: span_id.clone(),
                start_ns: *start_ns,
                end_ns: *end_ns,
                cause: *cause,
                evidence: None,
                alternatives: CauseSet::EMPTY,
            })
            .collect();
        Self::build_with_evidence(trace_id, spans, &sections)
    }

    /// [`TraceDetail::build`] with each section's evidence and alternatives.
    pub fn build_with_evidence(
        trace_id: String,
        spans: Vec<SpanInput>,
        sections: &[SectionInput],
    ) -> TraceDetail {
        use std::collections::HashMap;
        let index: HashMap<&str, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id.as_str(), i))
            .collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
        let mut roots = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            match s.parent_span_id.as_deref().and_then(|p| index.get(p)) {
                Some(&p) if p != i => children[p].push(i),
                _ => roots.push(i),
            }
        }
        let by_start = |v: &mut Vec<usize>| {
            v.sort_by_key(|&i| (spans[i].start_ns, std::cmp::Reverse(spans[i].end_ns)));
        };
        by_start(&mut roots);
        for c in &mut children {
            by_start(c);
        }
        // Iterative pre-order (deep traces must not overflow the stack).
        let mut order: Vec<(usize, Option<usize>, u32)> = Vec::with_capacity(spans.len());
        let mut new_index = vec![usize::MAX; spans.len()];
        let mut stack: Vec<(usize, Option<usize>, u32)> =
            roots.iter().rev().map(|&r| (r, None, 0)).collect();
        while let Some((i, parent, depth)) = stack.pop() {
            if new_index[i] != usize::MAX {
                continue; // a cycle in bad input
            }
            new_index[i] = order.len();
            order.push((i, parent, depth));
            for &c in children[i].iter().rev() {
                stack.push((c, Some(new_index[i]), depth + 1));
            }
        }
        let mut crit: HashMap<&str, HashMap<Cause, i64>> = HashMap::new();
        for s in sections {
            *crit
                .entry(s.span_id.as_str())
                .or_default()
                .entry(s.cause)
                .or_insert(0) += s.end_ns - s.start_ns;
        }
        let cause_of = |id: &str| {
            crit.get(id).and_then(|m| {
                m.iter()
                    .max_by_key(|(c, v)| (**v, std::cmp::Reverse(**c)))
                    .map(|(c, _)| *c)
            })
        };
        let causes: Vec<Option<Cause>> = order
            .iter()
            .map(|(i, _, _)| cause_of(&spans[*i].span_id))
            .collect();
        let mut slots: Vec<Option<SpanInput>> = spans.into_iter().map(Some).collect();
        let mut out: Vec<SpanVm> = order
            .iter()
            .zip(causes)
            .map(|(&(i, parent, depth), cause)| SpanVm {
                input: slots[i].take().unwrap_or_default(),
                parent,
                depth,
                subtree_end: 0,
                has_children: !children[i].is_empty(),
                cause,
            })
            .collect();
        // Subtree ends: walk backwards, a span's end is the max of its children's ends.
        for k in (0..out.len()).rev() {
            if out[k].subtree_end == 0 {
                out[k].subtree_end = k + 1;
            }
            if let Some(p) = out[k].parent {
                out[p].subtree_end = out[p].subtree_end.max(out[k].subtree_end);
            }
        }
        let pos: HashMap<&str, usize> = out
            .iter()
            .enumerate()
            .map(|(k, s)| (s.input.span_id.as_str(), k))
            .collect();
        let secs: Vec<SectionVm> = sections
            .iter()
            .filter_map(|s| {
                pos.get(s.span_id.as_str()).map(|&span| SectionVm {
                    span,
                    start_ns: s.start_ns,
                    end_ns: s.end_ns,
                    cause: s.cause,
                    evidence: s.evidence,
                    alternatives: s.alternatives,
                })
            })
            .collect();
        let mut by: HashMap<Cause, i64> = HashMap::new();
        for s in &secs {
            *by.entry(s.cause).or_insert(0) += s.end_ns - s.start_ns;
        }
        let mut by_cause_ns: Vec<(Cause, i64)> = by.into_iter().collect();
        by_cause_ns.sort_by_key(|(c, v)| (std::cmp::Reverse(*v), *c));
        let start_ns = out.iter().map(|s| s.input.start_ns).min().unwrap_or(0);
        let end_ns = out.iter().map(|s| s.input.end_ns).max().unwrap_or(0);
        TraceDetail {
            trace_id,
            root: out
                .first()
                .map(|s| s.input.name.clone())
                .unwrap_or_default(),
            start_ns,
            end_ns,
            conversation_id: None,
            primary_cause: None,
            primary_evidence: None,
            alternatives: CauseSet::EMPTY,
            spans: out,
            sections: secs,
            by_cause_ns,
        }
    }

    pub fn find(&self, span_id: &str) -> Option<usize> {
        self.spans.iter().position(|s| s.input.span_id == span_id)
    }

    /// Critical time on sections whose cause is ambiguous.
    pub fn ambiguous_ns(&self) -> i64 {
        self.sections
            .iter()
            .filter(|s| s.evidence == Some(Evidence::Ambiguous))
            .map(|s| s.end_ns - s.start_ns)
            .sum()
    }

    /// The sections of span `i` (in time order).
    pub fn sections_of(&self, i: usize) -> impl Iterator<Item = &SectionVm> {
        self.sections.iter().filter(move |s| s.span == i)
    }
}

/// One conversation in the picker.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub turns: u64,
    pub total_ns: i64,
    pub evictions: u64,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnVm {
    pub trace_id: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub ttft_ns: Option<i64>,
    pub input_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub evicted: bool,
    pub primary_cause: Option<Cause>,
}

/// A conversation, turn by turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    pub conversation_id: String,
    pub turns: Vec<TurnVm>,
}

/// What the metrics timeline is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsScope {
    /// A trace's extent (plus padding), limited to the hosts behind its server addresses.
    Trace(String),
    /// A conversation's extent (plus padding).
    Conversation(String),
    /// Everything in the store.
    All,
}

/// One canonical series of one host / GPU / source; x is seconds since
/// [`MetricsWindow::from_ns`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesVm {
    /// Canonical name, e.g. `gpu.utilization`, `inference.kv_cache.usage`.
    pub canonical: String,
    /// Canonical unit: `1`, `By`, `W`, `Hz`, `Cel`, `{request}`, `1/s`.
    pub unit: String,
    /// `dcgm`, `otel_hw`, `nvml` or `vllm`.
    pub origin: String,
    /// The metric name as stored, e.g. `DCGM_FI_DEV_GPU_UTIL`.
    pub source: String,
    pub service: String,
    pub host: Option<String>,
    /// GPU index (or UUID) when the series is about one GPU.
    pub gpu: Option<String>,
    pub points: Vec<[f64; 2]>,
}

impl SeriesVm {
    /// The legend entry: source, host and GPU.
    pub fn legend(&self) -> String {
        let origin = match self.origin.as_str() {
            "otel_hw" => "otel hw.gpu",
            o => o,
        };
        let mut s = format!(
            "{origin} · {}",
            self.host.as_deref().unwrap_or(&self.service)
        );
        if let Some(g) = &self.gpu {
            s.push_str(" · gpu ");
            s.push_str(g);
        }
        s
    }
}

/// Canonical metric series on one time grid.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsWindow {
    pub from_ns: i64,
    pub to_ns: i64,
    /// The selection's own extent (shaded), if the window is about a trace or conversation.
    pub band: Option<(i64, i64)>,
    /// By canonical name, then host, GPU and source.
    pub series: Vec<SeriesVm>,
}

impl MetricsWindow {
    /// The canonical names (with units) in plot order.
    pub fn groups(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for s in &self.series {
            if !out.iter().any(|(c, u)| *c == s.canonical && *u == s.unit) {
                out.push((s.canonical.clone(), s.unit.clone()));
            }
        }
        out
    }
}

/// One saved replay in the picker.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayListItem {
    pub replay_id: String,
    pub created_ns: i64,
    pub focus: String,
}

/// One side's summary (means over repeats).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplaySide {
    pub side: String,
    pub config_json: String,
    pub repeats: u32,
    /// (label, value, unit) in display order.
    pub metrics: Vec<(String, f64, String)>,
}

/// One turn of one side (first repeat).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayTurnVm {
    pub side: String,
    pub session_id: String,
    pub turn: i64,
    pub arrival_ns: i64,
    pub ttft_ns: i64,
    pub prefix_hit_tokens: i64,
    pub prefill_tokens: i64,
    pub input_tokens: i64,
}

/// One eviction of one side (first repeat).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayEvictionVm {
    pub side: String,
    pub t_ns: i64,
    pub owner_session: String,
    pub owner_turn: i64,
    pub by_session: String,
    pub by_turn: i64,
}

/// A saved replay: A vs B summaries, turns and evictions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayVm {
    pub replay_id: String,
    pub created_ns: i64,
    pub focus: String,
    pub sides: Vec<ReplaySide>,
    pub turns: Vec<ReplayTurnVm>,
    pub evictions: Vec<ReplayEvictionVm>,
}

/// A SQL console result (cells already formatted).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlResult {
    pub sql: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub truncated: bool,
    pub elapsed_ms: f64,
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
