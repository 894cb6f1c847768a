//! What the host and the views ask of [`App`](crate::App), and its read accessors.

use crate::protocol::{
    self, DiffVm, FixFirstVm, MetricsScope, ReplayListItem, ReplayRequest, ReplayVm,
};
use crate::state::Dialog;
use crate::{
    palette, App, Conversation, ConversationSummary, JobProgress, MetricsWindow, Overview, Request,
    SortColumn, SqlResult, TraceDetail, TraceQuery, TraceRowVm, View, PAGE,
};
use std::path::PathBuf;

impl App {
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

    /// Asks which operations' 50% speed-up would move the p99 most (the overview's
    /// "what do I fix first").
    pub fn rank_fixes(&mut self) {
        self.fix_first.requested = true;
        self.send(Request::FixFirst);
    }

    /// Asks what the open trace's duration would be if its selected span changed.
    pub fn span_whatif(&mut self, change: protocol::SpanChange) {
        let Some(t) = self.trace.as_mut() else { return };
        let Some(s) = t.selected.and_then(|i| t.detail.spans.get(i)) else {
            return;
        };
        let req = Request::SpanWhatif {
            trace_id: t.detail.trace_id.clone(),
            span_id: s.input.span_id.clone(),
            change,
        };
        t.whatif_asked = true;
        self.send(req);
    }

    /// The last "what if" answered for the open trace.
    pub fn span_whatif_result(&self) -> Option<&protocol::SpanWhatifVm> {
        self.trace.as_ref()?.whatif.as_ref()
    }

    pub fn fix_first(&self) -> Option<&[FixFirstVm]> {
        self.fix_first.rows.as_deref()
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

    /// Asks for configuration A sized like the recorded server (and B with twice its
    /// cache) for the form's conversation.
    pub fn request_as_recorded(&mut self) {
        let r = &self.replay_form.request;
        let req = Request::AsRecorded {
            conversation_id: r.conversation_id.trim().to_owned(),
            token_scale: r.token_scale,
            max_output_tokens: r.max_output_tokens,
        };
        self.send(req);
    }

    /// What the form's as-recorded A rests on (empty when A is not one).
    pub fn as_recorded_notes(&self) -> &[String] {
        &self.replay_form.as_recorded_notes
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

    pub(crate) fn apply_pending_selection(&mut self) {
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
