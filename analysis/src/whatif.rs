//! `tailscope whatif`: the latency the stored traces would have had if an operation,
//! a cause, a tool or a model were faster, ran in parallel with its siblings, or were
//! served from a cache. Each trace is re-walked over its tree by the core
//! ([`tailscope_analysis_core::whatif`]); the traces are read a page at a time.
//!
//! The new top cause of the tail: each trace's stored time per cause, less what the
//! change saved it, taken from the causes of the changed spans' critical-path sections
//! in proportion to their time there; then the mean over the traces that are in the
//! tail after the change. It does not re-run the attribution on the changed timings.

use crate::{AnalysisError, Options};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use tailscope_analysis_core::whatif::{rewalk, summarize};
pub use tailscope_analysis_core::whatif::{Change, Moved, Rewalk, Summary};
use tailscope_analysis_core::Tree;
use tailscope_model::samples::Section;
use tailscope_model::{Cause, OpClass, Span, SpanId};
use tailscope_store::{Store, TraceRow};

/// What a change targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// An operation: a span name, or `service · name`.
    Op,
    /// A cause: the time of the spans' critical-path sections of that cause.
    Cause,
    /// A tool: spans whose tool name (`gen_ai.tool.name`, ...) is this.
    Tool,
    /// A model: LLM calls to this model.
    Model,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Op => "op",
            TargetKind::Cause => "cause",
            TargetKind::Tool => "tool",
            TargetKind::Model => "model",
        }
    }
}

/// `KIND:NAME`, e.g. `op:search_flights`, `tool:get_weather`, `model:gpt-4o`,
/// `cause:queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub name: String,
}

impl std::str::FromStr for Target {
    type Err = AnalysisError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            AnalysisError::BadInput(format!(
                "a target is KIND:NAME with KIND op, cause, tool or model (e.g. op:search_flights), got {s:?}"
            ))
        };
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let kind = match kind {
            "op" => TargetKind::Op,
            "cause" => TargetKind::Cause,
            "tool" => TargetKind::Tool,
            "model" => TargetKind::Model,
            _ => return Err(bad()),
        };
        if name.is_empty() {
            return Err(bad());
        }
        if kind == TargetKind::Cause && Cause::parse(name).is_none() {
            return Err(AnalysisError::BadInput(format!(
                "unknown cause {name:?}: one of {}",
                Cause::ALL.map(Cause::as_str).join(", ")
            )));
        }
        Ok(Target {
            kind,
            name: name.to_owned(),
        })
    }
}

impl Target {
    /// An operation target's (service, span name): `service · name`, or a name alone.
    pub fn op_parts(&self) -> (Option<&str>, &str) {
        match self.name.split_once(" · ") {
            Some((service, name)) => (Some(service), name),
            None => (None, &self.name),
        }
    }
}

/// What `whatif` predicts for one change.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatIf {
    pub target: Target,
    pub change: Change,
    pub percentile: f64,
    pub summary: Summary,
    pub new_top_tail_cause: Option<Cause>,
}

/// One operation of the ranking: the change of the percentile from a 50% speed-up of
/// it alone, with its 95% interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub target: Target,
    pub p_change_ns: i64,
    pub p_ci_ns: (i64, i64),
}

/// The seed of cache draws and bootstrap resamples (the same store, the same answer).
const SEED: u64 = 27;

/// Operations the ranking re-walks: those with the most critical-path time in the tail.
pub const RANK_CANDIDATES: usize = 12;

/// A stored critical-path section and the tree node of its span.
type Placed = (usize, Section);

/// Calls `f` with every trace's tree, its stored row and its critical-path sections
/// placed on the tree's nodes (a section whose span is not in the tree is left out),
/// [`crate::json::PAGE`] traces at a time; `keep` picks the traces to load.
fn for_each_trace(
    store: &Store,
    keep: &dyn Fn(&TraceRow) -> bool,
    f: &mut dyn FnMut(&Tree, &TraceRow, &[Placed]),
) -> Result<(), AnalysisError> {
    for_each_trace_or_row(store, keep, f, &mut |_| {})
}

/// [`for_each_trace`], and `spanless` for each analysed trace whose spans the store
/// does not hold (a ClickHouse source pulls only the traces a change can touch).
fn for_each_trace_or_row(
    store: &Store,
    keep: &dyn Fn(&TraceRow) -> bool,
    f: &mut dyn FnMut(&Tree, &TraceRow, &[Placed]),
    spanless: &mut dyn FnMut(&TraceRow),
) -> Result<(), AnalysisError> {
    let mut after: Option<String> = None;
    loop {
        let rows = store.trace_rows_after(after.as_deref(), crate::json::PAGE)?;
        let Some(last) = rows.last().map(|r| r.trace_id.clone()) else {
            return Ok(());
        };
        let rows: Vec<TraceRow> = rows.into_iter().filter(|r| keep(r)).collect();
        let ids: Vec<String> = rows.iter().map(|r| r.trace_id.clone()).collect();
        if !ids.is_empty() {
            let page = store.section_page(after.as_deref(), &last)?;
            let mut spans: HashMap<String, Vec<Span>> = HashMap::new();
            for s in store.load_spans(tailscope_store::Traces::Ids(&ids))? {
                spans.entry(s.trace_id.to_hex()).or_default().push(s);
            }
            let mut at = 0;
            for r in &rows {
                let sections = page.of(&r.trace_id, &mut at);
                if let Some(ss) = spans.remove(&r.trace_id) {
                    let tree = Tree::build(ss);
                    let node: HashMap<SpanId, usize> = tree
                        .nodes
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.span.span_id, i))
                        .collect();
                    let placed: Vec<Placed> = sections
                        .iter()
                        .filter_map(|s| Some((*node.get(&s.span_id)?, *s)))
                        .collect();
                    f(&tree, r, &placed);
                } else {
                    spanless(r);
                }
            }
        }
        after = Some(last);
    }
}

/// For each node, whether one of its ancestors (not itself) is `marked`: one pass from
/// the root down.
fn below_marked(tree: &Tree, marked: &[bool]) -> Vec<bool> {
    let mut out = vec![false; tree.nodes.len()];
    let mut stack = vec![(tree.root, false)];
    while let Some((i, under)) = stack.pop() {
        out[i] = under;
        let next = under || marked[i];
        stack.extend(tree.nodes[i].children.iter().map(|&c| (c, next)));
    }
    out
}

/// Whether node `i` is what `target` names (not yet looking at its ancestors).
fn names(tree: &Tree, i: usize, target: &Target, cause_time: &HashMap<usize, i64>) -> bool {
    let s = &tree.nodes[i].span;
    let p = &s.promoted;
    match target.kind {
        TargetKind::Op => {
            let (service, name) = target.op_parts();
            s.name == name && service.is_none_or(|svc| s.service_name == svc)
        }
        TargetKind::Tool => p.tool_name.as_deref() == Some(target.name.as_str()),
        TargetKind::Model => {
            p.op_class == OpClass::Llm && p.model.as_deref() == Some(target.name.as_str())
        }
        TargetKind::Cause => cause_time.contains_key(&i),
    }
}

/// Each node's change: the outermost spans the target names get it (a call inside a
/// named call is part of it); a cause target changes only its sections' time.
fn changes_of(
    tree: &Tree,
    sections: &[Placed],
    target: &Target,
    change: Change,
) -> Vec<Option<Change>> {
    let mut cause_time: HashMap<usize, i64> = HashMap::new();
    if let Some(c) = (target.kind == TargetKind::Cause)
        .then(|| Cause::parse(&target.name))
        .flatten()
    {
        for (i, s) in sections.iter().filter(|(_, s)| s.cause == c) {
            *cause_time.entry(*i).or_default() += s.end_ns - s.start_ns;
        }
    }
    let named: Vec<bool> = (0..tree.nodes.len())
        .map(|i| names(tree, i, target, &cause_time))
        .collect();
    let inside_named = below_marked(tree, &named);
    (0..tree.nodes.len())
        .map(|i| {
            if !named[i] || inside_named[i] {
                return None;
            }
            match (target.kind, change) {
                // only the cause's own time changes
                (TargetKind::Cause, Change::SpeedUp(f)) => {
                    let d = tree.nodes[i].span.duration_ns();
                    let x = cause_time.get(&i).copied().unwrap_or(0);
                    Some(Change::Duration(
                        d - (x as f64 * f.clamp(0.0, 1.0)).round() as i64,
                    ))
                }
                (TargetKind::Cause, Change::Duration(ns)) => {
                    let d = tree.nodes[i].span.duration_ns();
                    let x = cause_time.get(&i).copied().unwrap_or(0);
                    Some(Change::Duration(d - x + ns.min(x)))
                }
                _ => Some(change),
            }
        })
        .collect()
}

/// A trace's time per cause after the change: the saving taken from the causes of the
/// changed spans' sections (within their subtrees), in proportion to their time.
fn causes_after(
    tree: &Tree,
    row: &TraceRow,
    sections: &[Placed],
    changes: &[Option<Change>],
    r: &Rewalk,
) -> [i64; Cause::COUNT] {
    let mut by = row.by_cause_ns;
    let saved = r.before_ns - r.after_ns;
    if saved == 0 {
        return by;
    }
    let changed: Vec<bool> = changes.iter().map(Option::is_some).collect();
    let below = below_marked(tree, &changed);
    let mut on_changed = [0i64; Cause::COUNT];
    for (i, s) in sections {
        if changed[*i] || below[*i] {
            on_changed[slot(s.cause)] += s.end_ns - s.start_ns;
        }
    }
    let total: i64 = on_changed.iter().sum();
    if total > 0 {
        for (b, x) in by.iter_mut().zip(on_changed) {
            *b = (*b - (saved as f64 * x as f64 / total as f64).round() as i64).max(0);
        }
    }
    by
}

/// Where cause `c` sits in the store's cause columns (`Cause::ALL` order).
fn slot(c: Cause) -> usize {
    Cause::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

/// The cause with the most mean time in the traces at or above the `percentile` of
/// `durations` (by rank, as the report's tail cohort).
fn top_tail_cause(
    durations: &[i64],
    by_cause: &[[i64; Cause::COUNT]],
    percentile: f64,
) -> Option<Cause> {
    let (tail, _, _, _) = tailscope_analysis_core::tail::cohorts(durations, percentile);
    let mut sums = [0i64; Cause::COUNT];
    for &i in &tail {
        for (s, v) in sums.iter_mut().zip(by_cause[i]) {
            *s += v;
        }
    }
    Cause::ALL
        .into_iter()
        .filter(|c| sums[slot(*c)] > 0)
        .max_by_key(|c| (sums[slot(*c)], std::cmp::Reverse(slot(*c))))
}

/// Predicts what `change` to `target` does to every analysed trace of the store.
pub fn whatif(
    store: &Store,
    target: &Target,
    change: Change,
    opts: Options,
) -> Result<WhatIf, AnalysisError> {
    opts.check()?;
    if target.kind == TargetKind::Cause && matches!(change, Change::Parallel | Change::Cache { .. })
    {
        return Err(AnalysisError::BadInput(
            "a cause can be made faster (--speedup, --duration), not parallel or cached: target the operation instead".into(),
        ));
    }
    let rewalks = std::cell::RefCell::new(Vec::new());
    let after_causes = std::cell::RefCell::new(Vec::new());
    for_each_trace_or_row(
        store,
        &|_| true,
        &mut |tree, row, sections| {
            let changes = changes_of(tree, sections, target, change);
            let r = rewalk(tree, &|i| changes[i], SEED);
            after_causes
                .borrow_mut()
                .push(causes_after(tree, row, sections, &changes, &r));
            rewalks.borrow_mut().push(r);
        },
        // a trace without the target: an unchanged tree re-walks to its own duration
        // (by construction), and keeps its time per cause
        &mut |row| {
            rewalks.borrow_mut().push(Rewalk {
                before_ns: row.duration_ns,
                after_ns: row.duration_ns,
                touched: 0,
            });
            after_causes.borrow_mut().push(row.by_cause_ns);
        },
    )?;
    let (rewalks, after_causes) = (rewalks.into_inner(), after_causes.into_inner());
    let summary = summarize(&rewalks, opts.percentile, SEED).ok_or_else(|| {
        AnalysisError::BadInput(
            "no analysed traces in the store: run `tailscope analyze` first".into(),
        )
    })?;
    let after: Vec<i64> = rewalks.iter().map(|r| r.after_ns).collect();
    Ok(WhatIf {
        target: target.clone(),
        change,
        percentile: opts.percentile,
        new_top_tail_cause: top_tail_cause(&after, &after_causes, opts.percentile),
        summary,
    })
}

/// One span of one trace changed (the trace view's "what if"): the trace's duration
/// before and after its tree is re-walked. A speed-up or fixed duration covers the
/// span's subtree; "in parallel" starts it with the sibling before it.
pub fn span_whatif(
    store: &Store,
    trace_id: &str,
    span_id: &str,
    change: Change,
) -> Result<Rewalk, AnalysisError> {
    let bad = |what: String| AnalysisError::BadInput(what);
    let id = SpanId::from_hex(span_id).map_err(|_| bad(format!("not a span id: {span_id}")))?;
    let spans = store.load_spans(tailscope_store::Traces::Ids(&[trace_id.to_owned()]))?;
    if spans.is_empty() {
        return Err(bad(format!("no trace {trace_id} in the store")));
    }
    let tree = Tree::build(spans);
    let node = tree
        .nodes
        .iter()
        .position(|n| n.span.span_id == id)
        .ok_or_else(|| bad(format!("no span {span_id} in trace {trace_id}")))?;
    Ok(rewalk(&tree, &|i| (i == node).then_some(change), SEED))
}

/// The operations on the tail's critical paths ranked by how much a 50% speed-up of
/// each alone moves the percentile, largest reduction first; the
/// [`RANK_CANDIDATES`] operations with the most critical time in the tail are tried.
pub fn rank(store: &Store, opts: Options) -> Result<Vec<Ranked>, AnalysisError> {
    opts.check()?;
    // ascending, as cohorts wants them
    let durations = store.trace_durations()?;
    let (tail, _, _, _) = tailscope_analysis_core::tail::cohorts(&durations, opts.percentile);
    let Some(threshold) = tail.iter().map(|&i| durations[i]).min() else {
        return Ok(Vec::new());
    };
    // critical time per operation over the tail traces
    let mut critical: BTreeMap<String, i64> = BTreeMap::new();
    for_each_trace(
        store,
        &|r| r.duration_ns >= threshold,
        &mut |tree, _, sections| {
            for (i, s) in sections {
                let sp = &tree.nodes[*i].span;
                *critical
                    .entry(format!("{} · {}", sp.service_name, sp.name))
                    .or_default() += s.end_ns - s.start_ns;
            }
        },
    )?;
    let mut ops: Vec<(String, i64)> = critical.into_iter().collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let targets: Vec<Target> = ops
        .into_iter()
        .take(RANK_CANDIDATES)
        .map(|(name, _)| Target {
            kind: TargetKind::Op,
            name,
        })
        .collect();
    let mut rewalks: Vec<Vec<Rewalk>> = vec![Vec::new(); targets.len()];
    for_each_trace(store, &|_| true, &mut |tree, _, sections| {
        for (t, out) in targets.iter().zip(rewalks.iter_mut()) {
            let changes = changes_of(tree, sections, t, Change::SpeedUp(0.5));
            out.push(rewalk(tree, &|i| changes[i], SEED));
        }
    })?;
    let mut out: Vec<Ranked> = targets
        .into_iter()
        .zip(rewalks)
        .filter_map(|(target, rs)| {
            let s = summarize(&rs, opts.percentile, SEED)?;
            let change = |x: f64| (x - s.p.before_ns).round() as i64;
            Some(Ranked {
                target,
                p_change_ns: change(s.p.after_ns),
                p_ci_ns: (ns(s.p.change_ci_ns.0), ns(s.p.change_ci_ns.1)),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.p_change_ns
            .cmp(&b.p_change_ns)
            .then_with(|| a.target.name.cmp(&b.target.name))
    });
    Ok(out)
}

fn change_json(c: Change) -> Value {
    match c {
        Change::SpeedUp(f) => json!({"speedup": f}),
        Change::Duration(ns) => json!({"duration_ns": ns}),
        Change::Parallel => json!({"parallel": true}),
        Change::Cache { hit_rate, hit_ns } => {
            json!({"cache": {"hit_rate": hit_rate, "hit_latency_ns": hit_ns}})
        }
    }
}

fn change_text(c: Change) -> String {
    match c {
        Change::SpeedUp(f) => format!("{:.0}% faster", f * 100.0),
        Change::Duration(ns) => format!("taking {}", tailscope_analysis_core::text::secs(ns)),
        Change::Parallel => "in parallel with its siblings".into(),
        Change::Cache { hit_rate, hit_ns } => format!(
            "served from a cache ({:.0}% hits at {})",
            hit_rate * 100.0,
            tailscope_analysis_core::text::secs(hit_ns)
        ),
    }
}

fn ns(x: f64) -> i64 {
    x.round() as i64
}

impl WhatIf {
    /// design.md's `whatif --format json`.
    pub fn to_json(&self) -> Value {
        let s = &self.summary;
        let ci = |m: &Moved| json!([ns(m.after_ci_ns.0), ns(m.after_ci_ns.1)]);
        json!({
            "target": {"kind": self.target.kind.as_str(), "name": self.target.name},
            "change": change_json(self.change),
            "traces": s.traces,
            "affected_traces": s.touched_traces,
            "percentile": self.percentile,
            "before": {"p50_ns": ns(s.p50.before_ns), "p90_ns": ns(s.p90.before_ns),
                       "p_ns": ns(s.p.before_ns), "mean_ns": ns(s.mean.before_ns)},
            "after": {"p50_ns": ns(s.p50.after_ns), "p90_ns": ns(s.p90.after_ns),
                      "p_ns": ns(s.p.after_ns), "mean_ns": ns(s.mean.after_ns),
                      "p50_ci_ns": ci(&s.p50), "p90_ci_ns": ci(&s.p90),
                      "p_ci_ns": ci(&s.p), "mean_ci_ns": ci(&s.mean)},
            "new_top_tail_cause": self.new_top_tail_cause.map(Cause::as_str),
        })
    }

    pub fn to_text(&self) -> String {
        let s = &self.summary;
        let secs = |x: f64| tailscope_analysis_core::text::secs(ns(x));
        let mut o = String::new();
        let _ = writeln!(
            o,
            "If {} {} were {}: {} of {} traces touched.",
            self.target.kind.as_str(),
            self.target.name,
            change_text(self.change),
            s.touched_traces,
            s.traces
        );
        for (label, m) in [
            ("p50".to_owned(), &s.p50),
            ("p90".to_owned(), &s.p90),
            (format!("p{}", self.percentile), &s.p),
            ("mean".to_owned(), &s.mean),
        ] {
            let _ = writeln!(
                o,
                "  {label:<6} {} -> {} (95% interval {} to {})",
                secs(m.before_ns),
                secs(m.after_ns),
                secs(m.after_ci_ns.0),
                secs(m.after_ci_ns.1)
            );
        }
        let _ = writeln!(
            o,
            "The tail's top cause afterwards: {}.",
            self.new_top_tail_cause.map_or("none", Cause::as_str)
        );
        o
    }
}

/// design.md's `whatif --rank --format json`.
pub fn rank_json(ranked: &[Ranked]) -> Value {
    json!({
        "ranking": ranked.iter().map(|r| json!({
            "kind": r.target.kind.as_str(), "name": r.target.name,
            "p_change_ns": r.p_change_ns, "p_ci_ns": [r.p_ci_ns.0, r.p_ci_ns.1],
        })).collect::<Vec<_>>(),
    })
}

/// The ranking as text: what a 50% speed-up of each operation alone does to the
/// percentile.
pub fn rank_text(ranked: &[Ranked], percentile: f64) -> String {
    let mut o = format!(
        "What would move the p{percentile} most: each operation on the tail's critical paths made 50% faster, alone.\n"
    );
    for r in ranked {
        let _ = writeln!(
            o,
            "  {:<48} {} (95% interval {} to {})",
            r.target.name,
            crate::report::signed(r.p_change_ns),
            crate::report::signed(r.p_ci_ns.0),
            crate::report::signed(r.p_ci_ns.1)
        );
    }
    if ranked.is_empty() {
        o.push_str("  (no analysed traces)\n");
    }
    o
}
