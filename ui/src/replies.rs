//! How [`App`](crate::App) applies the worker's [`Response`]s to its state.

use crate::state::TraceState;
use crate::{protocol, App, Request, Response, View, PAGE, REPLAY_JOB};

impl App {
    pub(crate) fn handle(&mut self, r: Response) {
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
            Response::SpanWhatif(w) => {
                if let Some(t) = self
                    .trace
                    .as_mut()
                    .filter(|t| t.detail.trace_id == w.trace_id)
                {
                    t.whatif_asked = false;
                    t.whatif = Some(w);
                }
            }
            Response::FixFirst(v) => {
                self.fix_first.requested = false;
                self.fix_first.rows = Some(v);
            }
            Response::Diff(d) => {
                self.periods.before.clone_from(&d.before_text);
                self.periods.after.clone_from(&d.after_text);
                self.periods.requested = false;
                self.periods.diff = Some(*d);
            }
            Response::AsRecorded {
                conversation_id,
                a,
                b,
                token_scale,
                notes,
            } => {
                let f = &mut self.replay_form;
                f.request.conversation_id = conversation_id;
                f.request.a_toml = a;
                f.request.b_toml = b;
                f.request.token_scale = token_scale;
                f.as_recorded_notes = notes;
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
}
