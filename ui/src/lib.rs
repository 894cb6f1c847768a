//! tailscope's desktop views (egui): overview, traces table, trace waterfall / flame
//! graph with latency tree and span panel, conversation, metrics timeline, replay (A vs B),
//! SQL console.
//!
//! The UI never touches the store. [`App`] sends [`Request`]s over a bounded channel
//! ([`protocol::link`]) to the app's worker and drains its [`Response`]s for a fixed time
//! budget each frame, then asks for a repaint; every view draws view-model types from
//! [`protocol`] ([`Overview`], [`TracePage`], [`TraceDetail`], [`Conversation`],
//! [`MetricsWindow`], [`SqlResult`]). [`timeline`] draws the waterfall with puffin's
//! culling rules; [`palette`] holds the one cause palette and its legend. The overview's
//! "what the slow traces share" panel filters the traces table by a value
//! ([`TraceQuery::has_value`]); the compare-periods view draws [`protocol::DiffVm`];
//! the replay form ([`protocol::ReplayRequest`]) runs an A/B replay as a worker job.

pub mod evidence;
pub mod palette;
pub mod protocol;
pub mod timeline;
mod views;

pub use protocol::{
    link, Conversation, ConversationSummary, JobProgress, Link, MetricsWindow, Overview, Request,
    Response, SortColumn, SqlResult, TraceDetail, TracePage, TraceQuery, TraceRowVm, WorkerLink,
};

use protocol::{CollectorStatus, DiffVm, MetricsScope, ReplayListItem, ReplayRequest, ReplayVm};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Overview,
    Traces,
    Trace,
    Conversation,
    Metrics,
    Periods,
    Replay,
    Sql,
}

impl View {
    pub const ALL: [View; 8] = [
        View::Overview,
        View::Traces,
        View::Trace,
        View::Conversation,
        View::Metrics,
        View::Periods,
        View::Replay,
        View::Sql,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Traces => "Traces",
            View::Trace => "Trace",
            View::Conversation => "Conversation",
            View::Metrics => "Metrics",
            View::Periods => "Compare periods",
            View::Replay => "Replay",
            View::Sql => "SQL",
        }
    }

    /// A file-name friendly name (screenshots).
    pub fn slug(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Traces => "traces",
            View::Trace => "trace",
            View::Conversation => "conversation",
            View::Metrics => "metrics",
            View::Periods => "periods",
            View::Replay => "replay",
            View::Sql => "sql",
        }
    }
}

/// Rows per traces-table page fetched from the worker.
pub const PAGE: usize = 200;
/// Time spent draining the worker's replies per frame.
const DRAIN_BUDGET: Duration = Duration::from_millis(4);

/// State of the traces table: cached pages of the current query.
#[derive(Default)]
pub(crate) struct TracesState {
    pub query: TraceQuery,
    pub text: String,
    pub where_sql: String,
    pub total: Option<usize>,
    pub pages: HashMap<usize, Vec<TraceRowVm>>,
    pub requested: HashSet<usize>,
    pub selected: Option<String>,
}

/// State of the trace view.
pub(crate) struct TraceState {
    pub detail: TraceDetail,
    pub collapsed: Vec<bool>,
    pub rows: Vec<usize>,
    pub timeline: timeline::TimelineState,
    pub selected: Option<usize>,
    pub search: String,
    pub hits: Vec<usize>,
    pub hit: usize,
}

impl TraceState {
    fn new(detail: TraceDetail) -> Self {
        let n = detail.spans.len();
        // Big traces open with deep levels folded.
        let collapsed = detail
            .spans
            .iter()
            .map(|s| n > 2000 && s.depth >= 2 && s.has_children)
            .collect();
        let timeline = timeline::TimelineState::fit(&detail);
        let mut t = Self {
            detail,
            collapsed,
            rows: Vec::new(),
            timeline,
            selected: None,
            search: String::new(),
            hits: Vec::new(),
            hit: 0,
        };
        t.recompute_rows();
        t
    }

    pub fn recompute_rows(&mut self) {
        self.rows.clear();
        let mut i = 0;
        while i < self.detail.spans.len() {
            self.rows.push(i);
            i = if self.collapsed[i] {
                self.detail.spans[i].subtree_end.max(i + 1)
            } else {
                i + 1
            };
        }
    }

    pub fn set_all_collapsed(&mut self, collapsed: bool) {
        for (c, s) in self.collapsed.iter_mut().zip(&self.detail.spans) {
            *c = collapsed && s.has_children && s.depth >= 1;
        }
        self.recompute_rows();
    }

    /// Selects a span, unfolding its ancestors and scrolling to it.
    pub fn select(&mut self, i: usize) {
        let mut p = self.detail.spans.get(i).and_then(|s| s.parent);
        let mut changed = false;
        while let Some(k) = p {
            if self.collapsed[k] {
                self.collapsed[k] = false;
                changed = true;
            }
            p = self.detail.spans[k].parent;
        }
        if changed {
            self.recompute_rows();
        }
        self.selected = Some(i);
        self.timeline.reveal_row = Some(i);
    }

    pub fn run_search(&mut self) {
        let q = self.search.to_lowercase();
        self.hits = if q.is_empty() {
            Vec::new()
        } else {
            self.detail
                .spans
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.input.name.to_lowercase().contains(&q)
                        || s.input.service.to_lowercase().contains(&q)
                        || s.input.span_id.starts_with(&q)
                        || s.input.attributes.iter().any(|(k, v)| {
                            k.to_lowercase().contains(&q) || v.to_lowercase().contains(&q)
                        })
                })
                .map(|(i, _)| i)
                .collect()
        };
        self.hit = 0;
    }
}

/// The compare-periods form and its last answer.
#[derive(Default)]
pub(crate) struct PeriodsState {
    pub before: String,
    pub after: String,
    pub diff: Option<DiffVm>,
    pub requested: bool,
    /// List every change, not only the significant ones.
    pub all: bool,
}

/// The replay form: which conversation, configurations A and B, run options.
pub(crate) struct ReplayForm {
    pub open: bool,
    pub request: ReplayRequest,
    /// Asked the worker for the default configurations.
    pub defaults_requested: bool,
}

impl Default for ReplayForm {
    fn default() -> Self {
        Self {
            open: false,
            request: ReplayRequest {
                repeats: 1,
                token_scale: 0.05,
                max_output_tokens: 32,
                ..ReplayRequest::default()
            },
            defaults_requested: false,
        }
    }
}

/// The job name of a replay run from the window.
pub const REPLAY_JOB: &str = "replay";

/// A small modal asking for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dialog {
    Open(String),
    Import(String),
    Export(String),
}

/// The whole desktop app's UI state. Call [`App::ui`] once per frame.
pub struct App {
    link: Link,
    outbox: VecDeque<Request>,
    pending: usize,
    pub(crate) view: View,
    pub(crate) overview: Option<Overview>,
    pub(crate) overview_requested: bool,
    pub(crate) collector: Option<CollectorStatus>,
    pub(crate) traces: TracesState,
    pub(crate) trace: Option<TraceState>,
    /// Span to select once the requested trace arrives.
    pub(crate) select_on_load: Option<String>,
    pub(crate) loading_trace: Option<String>,
    pub(crate) conversations: Option<Vec<ConversationSummary>>,
    pub(crate) conversation: Option<Conversation>,
    pub(crate) metrics: Option<MetricsWindow>,
    /// What the metrics window is about (e.g. "trace 1a2b3c4d").
    pub(crate) metrics_label: String,
    /// Saved replays (latest first); `None` until the worker answers.
    pub(crate) replays: Option<Vec<ReplayListItem>>,
    pub(crate) replay: Option<ReplayVm>,
    pub(crate) periods: PeriodsState,
    pub(crate) replay_form: ReplayForm,
    pub(crate) sql: String,
    pub(crate) sql_result: Option<SqlResult>,
    pub(crate) job: Option<JobProgress>,
    pub(crate) errors: Vec<String>,
    pub(crate) help: bool,
    pub(crate) dialog: Option<Dialog>,
    pub(crate) store_label: String,
    /// The OTLP/HTTP endpoint shown in empty states.
    pub(crate) endpoint_hint: String,
    pub(crate) theme_applied: bool,
}

impl App {
    /// A UI talking to a worker over `link`; `store_label` names the open store.
    pub fn new(link: Link, store_label: impl Into<String>) -> Self {
        Self {
            link,
            outbox: VecDeque::new(),
            pending: 0,
            view: View::Overview,
            overview: None,
            overview_requested: false,
            collector: None,
            traces: TracesState {
                query: TraceQuery {
                    limit: PAGE,
                    descending: true,
                    ..TraceQuery::default()
                },
                ..TracesState::default()
            },
            trace: None,
            select_on_load: None,
            loading_trace: None,
            conversations: None,
            conversation: None,
            metrics: None,
            metrics_label: String::new(),
            replays: None,
            replay: None,
            periods: PeriodsState::default(),
            replay_form: ReplayForm::default(),
            sql: "SELECT root, count(*) AS traces, round(quantile_disc(duration_ns, 0.99) / 1e6) AS p99_ms\nFROM trace_analysis GROUP BY root ORDER BY p99_ms DESC".to_owned(),
            sql_result: None,
            job: None,
            errors: Vec::new(),
            help: false,
            dialog: None,
            store_label: store_label.into(),
            endpoint_hint: "http://127.0.0.1:4318".to_owned(),
            theme_applied: false,
        }
    }

    /// Queues a request for the worker (never blocks).
    pub fn send(&mut self, r: Request) {
        self.pending += 1;
        self.outbox.push_back(r);
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(r) = self.outbox.pop_front() {
            match self.link.requests.try_send(r) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(r)) => {
                    self.outbox.push_front(r);
                    return;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    self.pending = 0;
                    self.outbox.clear();
                    if !self.errors.iter().any(|e| e.contains("worker stopped")) {
                        self.errors
                            .push("the store worker stopped; restart tailscope".to_owned());
                    }
                    return;
                }
            }
        }
    }

    /// Requests not yet answered.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn view(&self) -> View {
        self.view
    }

    /// Switches view and asks for what it needs.
    pub fn set_view(&mut self, v: View) {
        self.view = v;
        match v {
            View::Overview if self.overview.is_none() && !self.overview_requested => {
                self.overview_requested = true;
                self.send(Request::Overview);
            }
            View::Conversation if self.conversations.is_none() => {
                self.conversations = Some(Vec::new());
                self.send(Request::Conversations);
            }
            View::Metrics if self.metrics.is_none() => self.request_metrics_for_selection(),
            View::Replay if self.replays.is_none() => self.reload_replays(),
            View::Periods if self.periods.diff.is_none() && !self.periods.requested => {
                self.compare_periods(None);
            }
            _ => {}
        }
    }

    /// Opens a trace (and selects `span_id` in it once loaded).
    pub fn open_trace(&mut self, trace_id: &str, span_id: Option<&str>) {
        self.view = View::Trace;
        self.select_on_load = span_id.map(str::to_owned);
        if self
            .trace
            .as_ref()
            .is_some_and(|t| t.detail.trace_id == trace_id)
        {
            self.apply_pending_selection();
            return;
        }
        self.loading_trace = Some(trace_id.to_owned());
        self.send(Request::Trace {
            trace_id: trace_id.to_owned(),
        });
    }

    /// Opens a conversation.
    pub fn open_conversation(&mut self, conversation_id: &str) {
        self.set_view(View::Conversation);
        self.send(Request::Conversation {
            conversation_id: conversation_id.to_owned(),
        });
    }

    /// Shows the traces that have `key=value` (the overview's shared-values panel).
    pub fn filter_traces_by(&mut self, key: &str, value: &str) {
        self.traces.query.has_value = Some((key.to_owned(), value.to_owned()));
        self.traces.query.sort = SortColumn::Duration;
        self.traces.query.descending = true;
        self.view = View::Traces;
        self.reload_traces();
    }

    /// Drops the traces table's attribute-value filter.
    pub fn clear_value_filter(&mut self) {
        self.traces.query.has_value = None;
        self.reload_traces();
    }

    /// The traces table's attribute-value filter.
    pub fn value_filter(&self) -> Option<&(String, String)> {
        self.traces.query.has_value.as_ref()
    }

    /// Compares two periods (`FROM..TO` each, as the CLI takes them); `None`: the first
    /// half of the stored time range against the second.
    pub fn compare_periods(&mut self, periods: Option<(String, String)>) {
        self.view = View::Periods;
        self.periods.requested = true;
        self.send(Request::Diff { periods });
    }

    pub fn diff(&self) -> Option<&DiffVm> {
        self.periods.diff.as_ref()
    }

    /// Opens the replay form for a conversation (the defaults for A and B are fetched
    /// the first time).
    pub fn open_replay_form(&mut self, conversation_id: &str) {
        conversation_id.clone_into(&mut self.replay_form.request.conversation_id);
        self.replay_form.open = true;
        if !self.replay_form.defaults_requested {
            self.replay_form.defaults_requested = true;
            self.send(Request::ReplayDefaults);
        }
    }

    /// The replay form's request (tests edit it through the form).
    pub fn replay_request(&self) -> &ReplayRequest {
        &self.replay_form.request
    }

    /// Runs the replay form's request as a job.
    pub fn run_replay(&mut self) {
        self.link
            .cancel
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let r = self.replay_form.request.clone();
        self.send(Request::RunReplay(r));
    }

    /// Runs SQL in the console.
    pub fn run_sql(&mut self, sql: &str) {
        sql.clone_into(&mut self.sql);
        self.send(Request::Sql {
            sql: sql.to_owned(),
        });
    }

    /// Shows the metrics around the open trace (or conversation), else the whole store.
    pub fn request_metrics_for_selection(&mut self) {
        let scope = if let Some(t) = &self.trace {
            self.metrics_label = format!("trace {}", palette::short(&t.detail.trace_id));
            MetricsScope::Trace(t.detail.trace_id.clone())
        } else if let Some(c) = self.conversation.as_ref().filter(|c| !c.turns.is_empty()) {
            self.metrics_label = format!("conversation {}", c.conversation_id);
            MetricsScope::Conversation(c.conversation_id.clone())
        } else {
            "the whole store".clone_into(&mut self.metrics_label);
            MetricsScope::All
        };
        self.send(Request::Metrics { scope });
    }

    /// Reloads the list of saved replays (and then the latest one, if none is open).
    pub fn reload_replays(&mut self) {
        self.replays = None;
        self.send(Request::Replays);
    }

    /// Opens a saved replay.
    pub fn open_replay(&mut self, replay_id: &str) {
        self.send(Request::Replay {
            replay_id: replay_id.to_owned(),
        });
    }

    pub fn replays(&self) -> Option<&[ReplayListItem]> {
        self.replays.as_deref()
    }
    pub fn replay(&self) -> Option<&ReplayVm> {
        self.replay.as_ref()
    }

    pub fn overview(&self) -> Option<&Overview> {
        self.overview.as_ref()
    }
    pub fn trace_detail(&self) -> Option<&TraceDetail> {
        self.trace.as_ref().map(|t| &t.detail)
    }
    /// Spans shown as rows in the waterfall and tree.
    pub fn visible_rows(&self) -> usize {
        self.trace.as_ref().map_or(0, |t| t.rows.len())
    }
    pub fn selected_span(&self) -> Option<&protocol::SpanVm> {
        let t = self.trace.as_ref()?;
        t.detail.spans.get(t.selected?)
    }
    pub fn traces_total(&self) -> Option<usize> {
        self.traces.total
    }
    /// A loaded row of the traces table.
    pub fn trace_row(&self, i: usize) -> Option<&TraceRowVm> {
        self.traces.pages.get(&(i / PAGE))?.get(i % PAGE)
    }
    /// The conversation list (slowest first), once the Conversation view has loaded it.
    pub fn conversations(&self) -> Option<&[ConversationSummary]> {
        self.conversations.as_deref()
    }
    pub fn conversation(&self) -> Option<&Conversation> {
        self.conversation.as_ref()
    }
    pub fn metrics(&self) -> Option<&MetricsWindow> {
        self.metrics.as_ref()
    }
    pub fn sql_result(&self) -> Option<&SqlResult> {
        self.sql_result.as_ref()
    }
    /// Shows a one-line notice (errors, finished jobs) in the status bar.
    pub fn push_notice(&mut self, s: String) {
        self.errors.push(s);
        if self.errors.len() > 4 {
            self.errors.remove(0);
        }
    }
    /// The SQL console's text.
    pub fn sql_text(&self) -> &str {
        &self.sql
    }
    pub fn errors(&self) -> &[String] {
        &self.errors
    }
    pub fn job(&self) -> Option<&JobProgress> {
        self.job.as_ref()
    }

    fn apply_pending_selection(&mut self) {
        if let (Some(span), Some(t)) = (self.select_on_load.take(), self.trace.as_mut()) {
            if let Some(i) = t.detail.find(&span) {
                t.select(i);
            }
        }
    }

    /// Resets the traces table (new filters or new data) and fetches its first page.
    pub(crate) fn reload_traces(&mut self) {
        self.traces.query.generation += 1;
        self.traces.pages.clear();
        self.traces.requested.clear();
        self.traces.total = None;
        self.request_page(0);
    }

    pub(crate) fn request_page(&mut self, page: usize) {
        if self.traces.requested.insert(page) {
            let q = TraceQuery {
                offset: page * PAGE,
                limit: PAGE,
                ..self.traces.query.clone()
            };
            self.send(Request::Traces(q));
        }
    }

    fn handle(&mut self, r: Response) {
        if r.is_reply() {
            self.pending = self.pending.saturating_sub(1);
        }
        match r {
            Response::Overview(o) => {
                self.overview = Some(*o);
                self.overview_requested = false;
            }
            Response::Traces(p) => {
                if p.query.generation == self.traces.query.generation {
                    self.traces.total = Some(p.total);
                    self.traces.pages.insert(p.query.offset / PAGE, p.rows);
                    // Keep memory flat on huge tables: drop far pages.
                    if self.traces.pages.len() > 64 {
                        let keep = p.query.offset / PAGE;
                        self.traces.pages.retain(|k, _| k.abs_diff(keep) < 32);
                        let pages = &self.traces.pages;
                        self.traces.requested.retain(|k| pages.contains_key(k));
                    }
                }
            }
            Response::Trace(d) => {
                if self.loading_trace.as_deref() == Some(d.trace_id.as_str()) {
                    self.loading_trace = None;
                }
                self.trace = Some(TraceState::new(*d));
                self.metrics = None;
                self.apply_pending_selection();
            }
            Response::Conversations(c) => self.conversations = Some(c),
            Response::Conversation(c) => self.conversation = Some(c),
            Response::Metrics(m) => self.metrics = Some(m),
            Response::Replays(list) => {
                let open = self
                    .replay
                    .as_ref()
                    .is_none_or(|r| !list.iter().any(|l| l.replay_id == r.replay_id));
                if open {
                    if let Some(first) = list.first() {
                        let id = first.replay_id.clone();
                        self.open_replay(&id);
                    }
                }
                self.replays = Some(list);
            }
            Response::Replay(r) => self.replay = Some(*r),
            Response::Sql(s) => self.sql_result = Some(s),
            Response::Diff(d) => {
                self.periods.before.clone_from(&d.before_text);
                self.periods.after.clone_from(&d.after_text);
                self.periods.requested = false;
                self.periods.diff = Some(*d);
            }
            Response::ReplayDefaults { a, b } => {
                let r = &mut self.replay_form.request;
                if r.a_toml.is_empty() {
                    r.a_toml = a;
                }
                if r.b_toml.is_empty() {
                    r.b_toml = b;
                }
            }
            // The background analysis shows only when no other job does.
            Response::Progress(p)
                if p.job == protocol::ANALYSIS_JOB
                    && self.job.as_ref().is_some_and(|j| j.job != p.job) => {}
            Response::Progress(p) => {
                if p.done && p.job == REPLAY_JOB && p.message.starts_with("saved") {
                    // the finished replay is the latest: show it
                    self.replay = None;
                    self.replay_form.open = false;
                    self.view = View::Replay;
                    self.reload_replays();
                }
                if p.done {
                    if !p.message.is_empty() {
                        self.errors.push(format!("{}: {}", p.job, p.message));
                    }
                    self.job = None;
                } else {
                    self.job = Some(p);
                }
            }
            Response::StoreChanged => {
                self.overview_requested = true;
                self.send(Request::Overview);
                self.reload_traces();
                self.conversations = None;
                if self.view == View::Conversation {
                    self.conversations = Some(Vec::new());
                    self.send(Request::Conversations);
                }
                self.replays = None;
                if self.view == View::Replay {
                    self.reload_replays();
                }
                self.periods.diff = None;
                if self.view == View::Periods && !self.periods.requested {
                    let p = (self.periods.before.clone(), self.periods.after.clone());
                    self.compare_periods(Some(p).filter(|(b, a)| !b.is_empty() || !a.is_empty()));
                }
            }
            Response::Collector(c) => {
                self.endpoint_hint = format!("http://{}", c.http);
                self.collector = Some(c);
            }
            Response::Error(e) => {
                self.loading_trace = None;
                self.periods.requested = false;
                self.errors.push(e);
                if self.errors.len() > 4 {
                    self.errors.remove(0);
                }
            }
        }
    }

    /// Drains the worker's replies for at most the frame budget.
    pub fn drain(&mut self) {
        self.flush();
        let start = Instant::now();
        while start.elapsed() < DRAIN_BUDGET {
            match self.link.responses.try_recv() {
                Ok(r) => self.handle(r),
                Err(_) => break,
            }
        }
    }

    /// Cancels the running job.
    pub fn cancel_job(&self) {
        self.link.cancel_job();
    }

    /// Draws one frame.
    pub fn ui(&mut self, ctx: &egui::Context) {
        if !self.theme_applied {
            views::apply_theme(ctx);
            self.theme_applied = true;
            if self.overview.is_none() {
                self.set_view(self.view);
            }
        }
        self.drain();
        views::shortcuts(self, ctx);
        views::menu_bar(self, ctx);
        views::status_bar(self, ctx);
        views::dialogs(self, ctx);
        views::help_window(self, ctx);
        egui::CentralPanel::default().show(ctx, |ui| match self.view {
            View::Overview => views::overview(self, ui),
            View::Traces => views::traces(self, ui),
            View::Trace => views::trace(self, ui),
            View::Conversation => views::conversation(self, ui),
            View::Metrics => views::metrics(self, ui),
            View::Periods => views::periods::show(self, ui),
            View::Replay => views::replay(self, ui),
            View::Sql => views::sql(self, ui),
        });
        if self.pending > 0 || self.job.is_some() || !self.outbox.is_empty() {
            ctx.request_repaint_after(Duration::from_millis(30));
        } else if self.collector.is_some() {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
    }

    pub(crate) fn open_path_dialog(&mut self, d: Dialog) {
        self.dialog = Some(d);
    }

    pub(crate) fn submit_dialog(&mut self, d: Dialog) {
        match d {
            Dialog::Open(p) => {
                let p = PathBuf::from(p.trim());
                self.store_label = p.display().to_string();
                self.overview = None;
                self.trace = None;
                self.conversation = None;
                self.conversations = None;
                self.metrics = None;
                self.replays = None;
                self.replay = None;
                self.send(Request::Open { db: p });
            }
            Dialog::Import(p) => {
                let files: Vec<PathBuf> = p
                    .split(['\n', ';'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect();
                self.link
                    .cancel
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                self.send(Request::Import { files });
            }
            Dialog::Export(p) => {
                self.link
                    .cancel
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                self.send(Request::Export {
                    dir: PathBuf::from(p.trim()),
                });
            }
        }
    }
}
