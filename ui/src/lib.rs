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
//!
//! Layout: `views/` holds one file per view plus the window chrome; `state` the per-view
//! state [`App`] keeps; `actions` what the host and the views ask of [`App`]; `replies`
//! how the worker's answers update it; `protocol/` the messages and view models by topic.

mod actions;
pub mod evidence;
pub mod palette;
pub mod protocol;
mod replies;
mod state;
pub mod timeline;
mod views;

pub use protocol::{
    link, Conversation, ConversationSummary, JobProgress, Link, MetricsWindow, Overview, Request,
    Response, SortColumn, SqlResult, TraceDetail, TracePage, TraceQuery, TraceRowVm, WorkerLink,
};

use protocol::{CollectorStatus, ReplayListItem, ReplayVm};
use state::{Dialog, FixFirstState, PeriodsState, ReplayForm, TraceState, TracesState};
use std::collections::VecDeque;
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
/// The job name of a replay run from the window.
pub const REPLAY_JOB: &str = "replay";

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
    pub(crate) fix_first: FixFirstState,
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
            fix_first: FixFirstState::default(),
            replay_form: ReplayForm::default(),
            sql: views::sql::SQL_EXAMPLES[0].1.to_owned(),
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
}
