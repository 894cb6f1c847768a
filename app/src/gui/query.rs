//! The worker's reads: each UI request answered from the store's typed reads
//! ([`TraceSource`]) and the analysis results, as the UI's view models. No SQL here
//! but the user's own (the console and the traces table's WHERE box).

use anyhow::{bail, Context, Result};
use std::time::Instant;
use tailscope_model::{stats, Cause, CauseSet, Evidence, OpClass};
use tailscope_store::arrow::util::display::{ArrayFormatter, FormatOptions};
use tailscope_store::query::{Band, HasValue, Page, TraceFilter, TraceOrder, TraceSource};
use tailscope_store::{AlignOptions, Store};
use tailscope_ui::protocol::{
    ChangeVm, Cohort, ConversationSummary, DiffVm, EventVm, FindingVm, FixFirstVm, MetricsScope,
    ReplayEvictionVm, ReplayListItem, ReplaySide, ReplayTurnVm, ReplayVm, SectionInput, SeriesVm,
    SharedValueVm, SharedValues, SortColumn, SpanChange, SpanInput, SpanWhatifVm, TurnVm,
};
use tailscope_ui::{
    Conversation, MetricsWindow, Overview, SqlResult, TraceDetail, TracePage, TraceQuery,
    TraceRowVm,
};

/// How `cause` is known in a trace, from `trace_analysis.cause_evidence` (JSON:
/// `{"queue": {"evidence": "ambiguous", "alternatives": ["kv_eviction"]}, ...}`).
pub(crate) fn cause_evidence(json: &str, cause: Cause) -> Option<(Evidence, CauseSet)> {
    tailscope_analysis::parse_cause_evidence(json)
        .get(&cause)
        .map(|&(level, alts)| (level, alts.without(cause)))
}

/// The cause a span of this class usually stands for (its colour off the path).
fn class_cause(op: OpClass) -> Cause {
    match op {
        OpClass::Llm => Cause::Decode,
        OpClass::Embedding => Cause::Preprocessing,
        OpClass::Retrieval => Cause::Retrieval,
        OpClass::Tool | OpClass::Mcp => Cause::Tool,
        OpClass::Db => Cause::Db,
        OpClass::Pool => Cause::PoolWait,
        OpClass::Http => Cause::Network,
        OpClass::Agent | OpClass::Other => Cause::Other,
    }
}

/// `replay_runs` summary metrics as the replay view labels them: (label, unit), in
/// `store::query::REPLAY_SUMMARY_COLUMNS` order.
const REPLAY_METRICS: [(&str, &str); 15] = [
    ("TTFT p50", "ms"),
    ("TTFT p99", "ms"),
    ("TPOT p50", "ms"),
    ("TPOT p99", "ms"),
    ("ITL p50", "ms"),
    ("ITL p99", "ms"),
    ("E2E p50", "ms"),
    ("E2E p99", "ms"),
    ("throughput", "tok/s"),
    ("goodput", "req/s"),
    ("goodput fraction", ""),
    ("prefix-hit tokens", "tok"),
    ("evicted blocks", ""),
    ("preemptions", ""),
    ("makespan", "ms"),
];

/// Spans in the store.
pub(crate) fn span_count(store: &Store) -> Result<i64> {
    Ok(i64::try_from(store.span_count()?).unwrap_or(i64::MAX))
}

pub(crate) fn overview(store: &Store, label: &str) -> Result<Overview> {
    let d = store.overview(12)?;
    let mut o = Overview {
        store: label.to_owned(),
        spans: d.totals.spans,
        traces: d.totals.analysed_traces,
        metric_points: d.totals.metric_points,
        ..Overview::default()
    };
    if o.traces == 0 {
        return Ok(o);
    }
    let q = |p: f64| stats::percentile(&d.durations_ns, p).unwrap_or(0) as f64;
    (o.p50_ns, o.p90_ns, o.p99_ns) = (q(50.0), q(90.0), q(99.0));
    o.cohorts = d
        .bands
        .into_iter()
        .map(|b| Cohort {
            name: match b.band {
                Band::Median => "median band (p40–p60)",
                Band::Upper => "p90–p99",
                Band::Tail => "tail (≥ p99)",
            }
            .to_owned(),
            traces: b.traces,
            mean_by_cause_ns: b.mean_by_cause_ns,
        })
        .collect();
    let durations: Vec<f64> = d.durations_ns.iter().map(|&x| x as f64).collect();
    (o.histogram, o.cdf) = distribution(&durations);
    o.slowest_trace = d.slowest_trace;
    o.findings = d
        .findings
        .into_iter()
        .map(|f| FindingVm {
            kind: f.kind,
            summary: f.summary,
            trace_id: f.trace_id,
            span_id: f.span_id,
            conversation_id: f.conversation_id,
            cost_ns: f.estimated_cost_ns,
            evidence_level: Evidence::parse(&f.evidence_level),
            alternatives: CauseSet::parse_list(&f.alternatives),
        })
        .collect();
    o.shared = Some(shared(store)?);
    Ok(o)
}

fn order(c: SortColumn) -> TraceOrder {
    match c {
        SortColumn::Start => TraceOrder::Start,
        SortColumn::Duration => TraceOrder::Duration,
        SortColumn::Ttft => TraceOrder::Ttft,
        SortColumn::InputTokens => TraceOrder::InputTokens,
        SortColumn::OutputTokens => TraceOrder::OutputTokens,
        SortColumn::Root => TraceOrder::Root,
        SortColumn::PrimaryCause => TraceOrder::PrimaryCause,
        SortColumn::Spans => TraceOrder::Spans,
    }
}

pub(crate) fn traces(store: &Store, q: TraceQuery) -> Result<TracePage> {
    let filter = TraceFilter {
        text: q.text.clone(),
        user_sql: q.where_sql.clone(),
        has_value: q.has_value.as_ref().map(|(k, v)| HasValue {
            key: k.clone(),
            value: v.clone(),
        }),
    };
    let page = store.trace_page(
        &filter,
        Page {
            order: order(q.sort),
            descending: q.descending,
            offset: q.offset,
            limit: q.limit,
        },
    )?;
    let rows = page
        .items
        .into_iter()
        .map(|t| TraceRowVm {
            primary_evidence: t
                .primary_cause
                .zip(t.cause_evidence.as_deref())
                .and_then(|(c, json)| cause_evidence(json, c))
                .map(|(e, _)| e),
            trace_id: t.trace_id,
            root: t.root,
            start_ns: t.start_ns,
            duration_ns: t.duration_ns,
            ttft_ns: t.ttft_ns,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            primary_cause: t.primary_cause,
            conversation_id: t.conversation_id,
            spans: t.spans,
            percentile: t.percentile,
        })
        .collect();
    Ok(TracePage {
        query: q,
        total: page.total,
        rows,
    })
}

pub(crate) fn trace(store: &Store, trace_id: &str) -> Result<TraceDetail> {
    let mut t = store.trace_detail(trace_id)?;
    let sections: Vec<SectionInput> = t
        .sections
        .iter()
        .filter_map(|s| {
            Some(SectionInput {
                span_id: s.span_id.clone(),
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                cause: Cause::parse(&s.cause)?,
                evidence: Evidence::parse(&s.evidence),
                alternatives: CauseSet::parse_list(&s.alternatives),
            })
        })
        .collect();
    let inputs: Vec<SpanInput> = t
        .spans
        .into_iter()
        .map(|sp| {
            let span_id = sp.span_id.to_hex();
            let (self_ns, critical_ns) = t
                .span_times
                .get(&span_id)
                .copied()
                .unwrap_or((sp.duration_ns(), 0));
            SpanInput {
                attributes: t.attributes.remove(&span_id).unwrap_or_default(),
                parent_span_id: sp.parent_span_id.map(|p| p.to_hex()),
                name: sp.name,
                service: sp.service_name,
                kind: sp.kind.as_str().to_owned(),
                status: if sp.status_message.is_empty() {
                    sp.status.as_str().to_owned()
                } else {
                    format!("{}: {}", sp.status.as_str(), sp.status_message)
                },
                start_ns: sp.start_ns,
                end_ns: sp.end_ns,
                self_ns,
                critical_ns,
                class_cause: class_cause(sp.promoted.op_class),
                events: sp
                    .events
                    .into_iter()
                    .map(|e| EventVm {
                        time_ns: e.time_ns,
                        name: e.name,
                        attributes: e
                            .attributes
                            .into_iter()
                            .map(|a| (a.key, a.value.to_display()))
                            .collect(),
                    })
                    .collect(),
                links: sp
                    .links
                    .into_iter()
                    .map(|l| (l.trace_id.to_hex(), l.span_id.to_hex()))
                    .collect(),
                span_id,
            }
        })
        .collect();
    let mut d = TraceDetail::build_with_evidence(t.trace_id, inputs, &sections);
    if let Some(s) = t.summary {
        d.conversation_id = s.conversation_id;
        d.primary_cause = s.primary_cause;
        if let Some((e, alts)) = d
            .primary_cause
            .zip(s.cause_evidence)
            .and_then(|(c, json)| cause_evidence(&json, c))
        {
            d.primary_evidence = Some(e);
            d.alternatives = alts;
        }
        if let Some(root) = s.root {
            d.root = root;
        }
    } else {
        d.conversation_id = d.spans.iter().find_map(|sp| {
            sp.input
                .attributes
                .iter()
                .find(|(k, _)| k == "gen_ai.conversation.id")
                .map(|(_, v)| v.clone())
        });
    }
    Ok(d)
}

pub(crate) fn conversations(store: &Store) -> Result<Vec<ConversationSummary>> {
    Ok(store
        .conversations(1000)?
        .into_iter()
        .map(|c| ConversationSummary {
            conversation_id: c.conversation_id,
            turns: c.turns,
            total_ns: c.total_ns,
            evictions: c.evictions,
        })
        .collect())
}

pub(crate) fn conversation(store: &Store, id: &str) -> Result<Conversation> {
    let turns = store
        .conversation(id)?
        .into_iter()
        .map(|t| TurnVm {
            trace_id: t.trace_id,
            start_ns: t.start_ns,
            duration_ns: t.duration_ns,
            ttft_ns: t.ttft_ns,
            input_tokens: t.input_tokens,
            cache_read_tokens: t.cache_read_tokens,
            evicted: t.evicted,
            primary_cause: t.primary_cause,
        })
        .collect();
    Ok(Conversation {
        conversation_id: id.to_owned(),
        turns,
    })
}

/// Canonical GPU / inference-server series on one grid (the store's alignment API),
/// around a trace or conversation (shaded band), or over the whole store.
pub(crate) fn metrics(store: &Store, scope: &MetricsScope) -> Result<MetricsWindow> {
    let opts = AlignOptions::default();
    let (alignment, band) = match scope {
        MetricsScope::Trace(id) => {
            if tailscope_model::TraceId::from_hex(id).is_err() {
                bail!("`{id}` is not a 32-digit hex id");
            }
            let a = store
                .align_trace(id, &opts)?
                .with_context(|| format!("trace {id} is not in the store"))?;
            let band = (a.from_ns + opts.padding_ns, a.to_ns - opts.padding_ns);
            (a, Some(band))
        }
        MetricsScope::Conversation(id) => {
            let a = store
                .align_conversation(id, &opts)?
                .with_context(|| format!("conversation {id} has no spans"))?;
            let band = (a.from_ns + opts.padding_ns, a.to_ns - opts.padding_ns);
            (a, Some(band))
        }
        MetricsScope::All => {
            let (from, to) = store.time_span()?.unwrap_or((0, 0));
            (store.align_window(from, to, &[], &opts)?, None)
        }
    };
    let from_ns = alignment.from_ns;
    let series = alignment
        .series
        .into_iter()
        .map(|s| SeriesVm {
            points: s
                .points
                .iter()
                .map(|&(t, v)| [(t - from_ns) as f64 / 1e9, v])
                .collect(),
            canonical: s.canonical,
            unit: s.unit,
            origin: s.origin,
            source: s.source,
            service: s.service,
            host: s.host,
            gpu: s.gpu_index.or(s.gpu),
        })
        .collect();
    Ok(MetricsWindow {
        from_ns,
        to_ns: alignment.to_ns,
        band,
        series,
    })
}

/// Saved replays, latest first.
pub(crate) fn replays(store: &Store) -> Result<Vec<ReplayListItem>> {
    Ok(store
        .replays(200)?
        .into_iter()
        .map(|r| ReplayListItem {
            replay_id: r.replay_id.to_string(),
            created_ns: r.created_ns,
            focus: r.focus,
        })
        .collect())
}

/// One replay: per-side summaries (mean over repeats), turns and evictions of the
/// first repeat.
pub(crate) fn replay(store: &Store, replay_id: &str) -> Result<ReplayVm> {
    let id: i64 = replay_id
        .trim()
        .parse()
        .with_context(|| format!("`{replay_id}` is not a replay id"))?;
    let r = store.replay(id)?;
    Ok(ReplayVm {
        replay_id: id.to_string(),
        created_ns: r.created_ns,
        focus: r.focus,
        sides: r
            .sides
            .into_iter()
            .map(|s| ReplaySide {
                side: s.side,
                config_json: s.config_json,
                repeats: s.repeats,
                metrics: REPLAY_METRICS
                    .iter()
                    .zip(s.summary)
                    .map(|((label, unit), v)| ((*label).to_owned(), v, (*unit).to_owned()))
                    .collect(),
            })
            .collect(),
        turns: r
            .turns
            .into_iter()
            .map(|t| ReplayTurnVm {
                side: t.side,
                session_id: t.session_id,
                turn: t.turn,
                arrival_ns: t.arrival_ns,
                ttft_ns: t.ttft_ns,
                prefix_hit_tokens: t.prefix_hit_tokens,
                prefill_tokens: t.prefill_tokens,
                input_tokens: t.input_tokens,
            })
            .collect(),
        evictions: r
            .evictions
            .into_iter()
            .map(|e| ReplayEvictionVm {
                side: e.side,
                t_ns: e.t_ns,
                owner_session: e.owner_session,
                owner_turn: e.owner_turn,
                by_session: e.by_session,
                by_turn: e.by_turn,
            })
            .collect(),
    })
}

/// The user's SQL from the console, read-only, at most 10,000 rows shown.
pub(crate) fn sql(store: &Store, sql: &str) -> Result<SqlResult> {
    const MAX: usize = 10_000;
    let t = Instant::now();
    let batches = store.query_read_only(sql)?;
    let elapsed_ms = t.elapsed().as_secs_f64() * 1e3;
    let columns = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    let mut truncated = false;
    'outer: for b in &batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            if out.len() >= MAX {
                truncated = true;
                break 'outer;
            }
            out.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    Ok(SqlResult {
        sql: sql.to_owned(),
        columns,
        rows: out,
        truncated,
        elapsed_ms,
    })
}

/// Two periods compared, as `tailscope diff` does; without periods, the first half
/// of the stored range against the second.
pub(crate) fn diff(store: &Store, periods: Option<(String, String)>) -> Result<DiffVm> {
    use tailscope_analysis::diff::{self, DiffOptions, Window, WindowSpec};
    let range = diff::store_range(store)?;
    if range.1 <= range.0 {
        bail!("the store has no spans to compare");
    }
    let (bw, aw) = match periods {
        None => {
            let mid = range.0 + (range.1 - range.0) / 2;
            (
                Window {
                    from_ns: range.0,
                    to_ns: mid,
                },
                Window {
                    from_ns: mid,
                    to_ns: range.1,
                },
            )
        }
        Some((b, a)) => {
            let spec = |t: &str, side: &str| -> Result<Window> {
                let s: WindowSpec = if t.trim().is_empty() { ".." } else { t }
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("the {side} period: {e}"))?;
                let w = s.resolve(range);
                if w.from_ns >= w.to_ns {
                    bail!("the {side} period {t} is empty (it ends before it starts)");
                }
                Ok(w)
            };
            (spec(&b, "before")?, spec(&a, "after")?)
        }
    };
    let text = |w: Window| format!("{}..{}", diff::rfc3339(w.from_ns), diff::rfc3339(w.to_ns));
    let before = diff::sample(store, bw)?;
    let after = diff::sample(store, aw)?;
    for (s, side, w) in [(&before, "before", bw), (&after, "after", aw)] {
        if s.traces == 0 {
            bail!("the {side} period {} has no analysed traces", text(w));
        }
    }
    let d = diff::diff(&before, &after, &DiffOptions::default());
    let changes = d
        .changes
        .iter()
        .map(|c| ChangeVm {
            scope: c.scope.as_str().to_owned(),
            subject: match (&c.model, &c.server) {
                (Some(m), Some(s)) => format!("{m} @ {s}"),
                (Some(m), None) => m.clone(),
                (None, Some(s)) => s.clone(),
                (None, None) => format!("{} · {}", c.service, c.operation),
            },
            metric: c.metric.clone(),
            before: diff::value_text(&c.metric, c.before),
            after: diff::value_text(&c.metric, c.after),
            change: c.change,
            // an interval of the change (of the after value when before is 0)
            ci: c.change.and(c.ci_low).zip(c.ci_high),
            significant: c.significant,
            n_before: c.n_before as u64,
            n_after: c.n_after as u64,
        })
        .collect();
    Ok(DiffVm {
        before_text: text(bw),
        after_text: text(aw),
        before_traces: d.before.traces as u64,
        after_traces: d.after.traces as u64,
        range_ns: range,
        // the window's font has no arrow glyph
        headline: d.headline.replace('→', "to"),
        changes,
        confidence: d.confidence,
    })
}

/// A histogram (linear bins up to p99.9, the rest in the last bin) and a CDF of at
/// most ~500 points, in milliseconds, from sorted durations.
/// Histogram bins `(from_ms, to_ms, count)` and CDF points `[ms, fraction]`.
type Distribution = (Vec<(f64, f64, u64)>, Vec<[f64; 2]>);

pub(crate) fn distribution(sorted_ns: &[f64]) -> Distribution {
    if sorted_ns.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let n = sorted_ns.len();
    let hi_idx = ((n as f64 * 0.999) as usize).min(n - 1);
    let hi = sorted_ns[hi_idx].max(sorted_ns[0] + 1.0) / 1e6;
    let lo = 0.0;
    let bins = 40usize;
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for d in sorted_ns {
        let k = (((d / 1e6) - lo) / w) as usize;
        counts[k.min(bins - 1)] += 1;
    }
    let hist = counts
        .into_iter()
        .enumerate()
        .map(|(k, c)| (lo + k as f64 * w, lo + (k + 1) as f64 * w, c))
        .collect();
    let step = (n / 500).max(1);
    let mut cdf: Vec<[f64; 2]> = (0..n)
        .step_by(step)
        .map(|i| [sorted_ns[i] / 1e6, (i + 1) as f64 / n as f64])
        .collect();
    cdf.push([sorted_ns[n - 1] / 1e6, 1.0]);
    (hist, cdf)
}

/// What would move the p99 most: `tailscope whatif --rank` over the stored traces.
pub(crate) fn fix_first(store: &Store) -> Result<Vec<FixFirstVm>> {
    let ranked = tailscope_analysis::whatif::rank(store, tailscope_analysis::Options::default())
        .context("ranking what would move the p99")?;
    Ok(ranked
        .into_iter()
        .map(|r| FixFirstVm {
            operation: r.target.name,
            p_change_ns: r.p_change_ns,
            ci_ns: r.p_ci_ns,
        })
        .collect())
}

/// What the slow traces share: `tailscope compare` at p99 over the stored results.
fn shared(store: &Store) -> Result<SharedValues> {
    use tailscope_analysis::compare::{compare, CompareOptions};
    let c = compare(store, &CompareOptions::default()).context("comparing the tail")?;
    Ok(SharedValues {
        percentile: c.percentile,
        tail_traces: c.tail_traces as u64,
        baseline_traces: c.baseline_traces as u64,
        values: c
            .attributes
            .into_iter()
            .map(|a| SharedValueVm {
                key: a.key,
                value: a.value,
                tail_share: a.tail_share,
                baseline_share: a.baseline_share,
                lift: a.lift,
                tail_traces: a.tail_traces as u64,
                excess_ns: a.excess_ns,
                score: a.score,
                same: a.same_traces,
            })
            .collect(),
    })
}

/// The trace's duration if one span changed: `whatif` on that span alone.
pub(crate) fn span_whatif(
    store: &Store,
    trace_id: &str,
    span_id: &str,
    change: SpanChange,
) -> Result<SpanWhatifVm> {
    use tailscope_analysis::whatif::Change;
    let c = match change {
        SpanChange::Faster(f) => Change::SpeedUp(f),
        SpanChange::Parallel => Change::Parallel,
        SpanChange::Instant => Change::Duration(0),
    };
    let r = tailscope_analysis::whatif::span_whatif(store, trace_id, span_id, c)
        .with_context(|| format!("what if span {span_id} of trace {trace_id} changed"))?;
    Ok(SpanWhatifVm {
        trace_id: trace_id.to_owned(),
        span_id: span_id.to_owned(),
        change,
        before_ns: r.before_ns,
        after_ns: r.after_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_bins_every_trace() {
        let d: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 1e6).collect();
        let (h, cdf) = distribution(&d);
        assert_eq!(h.iter().map(|b| b.2).sum::<u64>(), 1000);
        assert!((cdf.last().unwrap()[1] - 1.0).abs() < 1e-9);
        assert!(cdf.windows(2).all(|w| w[0][0] <= w[1][0]));
    }

    #[test]
    fn cause_evidence_reads_the_stored_json() {
        let json = r#"{"queue": {"evidence": "ambiguous", "alternatives": ["kv_eviction", "queue"]},
                      "decode": {"evidence": "measured", "alternatives": []}}"#;
        assert_eq!(
            cause_evidence(json, Cause::Queue),
            Some((Evidence::Ambiguous, CauseSet::of(&[Cause::KvEviction])))
        );
        assert_eq!(
            cause_evidence(json, Cause::Decode),
            Some((Evidence::Measured, CauseSet::EMPTY))
        );
        assert_eq!(cause_evidence(json, Cause::Tool), None);
        assert_eq!(cause_evidence("not json", Cause::Queue), None);
    }
}
