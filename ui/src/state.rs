//! The per-view UI state [`App`](crate::App) holds: traces pages, the open trace, forms, dialog.

use crate::protocol::{DiffVm, FixFirstVm, ReplayRequest};
use crate::timeline;
use crate::{TraceDetail, TraceQuery, TraceRowVm};
use std::collections::{HashMap, HashSet};

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
    /// The last "what if" answered for a span of this trace, and whether one is asked.
    pub whatif: Option<crate::protocol::SpanWhatifVm>,
    pub whatif_asked: bool,
}

impl TraceState {
    pub(crate) fn new(detail: TraceDetail) -> Self {
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
            whatif: None,
            whatif_asked: false,
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

/// "What would move the p99 most": the last ranking (`None` until asked), and whether
/// one is on its way.
#[derive(Default)]
pub(crate) struct FixFirstState {
    pub rows: Option<Vec<FixFirstVm>>,
    pub requested: bool,
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
    /// What the as-recorded A rests on, when the form holds one.
    pub as_recorded_notes: Vec<String>,
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
            as_recorded_notes: Vec::new(),
        }
    }
}

/// A small modal asking for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dialog {
    Open(String),
    Import(String),
    Export(String),
}
