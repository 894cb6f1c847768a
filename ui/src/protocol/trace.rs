//! One trace: spans as handed over, built into a pre-order tree with its critical path.

use tailscope_model::{Cause, CauseSet, Evidence};

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

/// A change to one span for the trace view's "what if" (`tailscope whatif` on one span).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpanChange {
    /// The span (and its subtree) takes this fraction less time (0.5: 50% faster).
    Faster(f64),
    /// The span starts with the sibling before it instead of after it.
    Parallel,
    /// The span takes no time (an upper bound on what removing it saves).
    Instant,
}

impl SpanChange {
    /// The button's words.
    pub fn label(self) -> String {
        match self {
            SpanChange::Faster(f) => format!("{:.0}% faster", f * 100.0),
            SpanChange::Parallel => "in parallel".to_owned(),
            SpanChange::Instant => "instant".to_owned(),
        }
    }
}

/// The trace's duration if one of its spans changed, re-walked over its tree.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanWhatifVm {
    pub trace_id: String,
    pub span_id: String,
    pub change: SpanChange,
    pub before_ns: i64,
    pub after_ns: i64,
}
