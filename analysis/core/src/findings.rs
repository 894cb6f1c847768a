//! Findings: named problems with evidence, a one-sentence summary and an estimated
//! saving, found on each trace's tree and critical path.

use crate::causes::{split_call, CausedSection, Shape};
use crate::evict::Eviction;
use crate::tree::Tree;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use tailscope_model::gpu_metrics as gm;
use tailscope_model::{Cause, CauseSet, Evidence, OpClass, SpanId, StatusCode};

/// One finding (design.md JSON contract).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub kind: String,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: Option<String>,
    pub estimated_cost_ns: i64,
    pub evidence: serde_json::Value,
    /// How the finding's cause is known; `ambiguous` names its `alternatives`.
    pub evidence_level: Evidence,
    pub alternatives: CauseSet,
    pub summary: String,
}

/// How a finding is known: its level and the causes that explain it about as well.
type Level = (Evidence, CauseSet);

const MEASURED: Level = (Evidence::Measured, CauseSet::EMPTY);
const INFERRED: Level = (Evidence::Inferred, CauseSet::EMPTY);

/// The weakest evidence among `sections` (of one cause on one node), with the union of
/// their alternatives.
fn level_of<'a>(sections: impl Iterator<Item = &'a CausedSection>) -> Level {
    sections.fold(MEASURED, |(e, a), s| {
        (e.max(s.evidence), a.union(s.alternatives))
    })
}

/// The alternatives in words: "queueing, or a prefix-cache miss".
fn alternatives_words(cause: Cause, alternatives: CauseSet) -> String {
    let word = |c: Cause| match c {
        Cause::Queue => "queueing in the inference server",
        Cause::KvEviction => "a prefix-cache miss (re-prefill of an evicted prefix)",
        Cause::Uninstrumented => {
            "client-side work inside the call (request building, chunk handling)"
        }
        Cause::Network => "the network",
        Cause::Prefill => "prefill",
        Cause::Decode => "decode",
        _ => c.as_str(),
    };
    std::iter::once(cause)
        .chain(alternatives.iter())
        .map(word)
        .collect::<Vec<_>>()
        .join(", or ")
}

/// Context shared by every trace: eviction estimates and metric lookups.
pub struct Context<'a> {
    pub evictions: &'a HashMap<SpanId, Eviction>,
    /// Metric value at or before a time: (canonical name, the span's `server.address`,
    /// time) -> value, from the store's aligned series (see [`crate::MetricSource`]).
    pub metric_at: &'a MetricAt<'a>,
    /// Increase of a counter (canonical `*.rate` name) over a window.
    pub metric_increase: &'a MetricIncrease<'a>,
    /// How long each tool usually takes, over the store.
    pub tools: &'a ToolBaseline,
}

/// The usual duration of each tool (by `gen_ai.tool.name`, else span name): median
/// and robust spread of log durations, over every call in the store. A fan-out branch
/// is a straggler only when it is unusually slow for its tool, not merely slower than
/// its siblings (tool latencies have long tails by nature).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ToolBaseline(HashMap<String, (f64, f64, usize)>);

impl ToolBaseline {
    /// Fewest calls of a tool before its baseline is trusted.
    const MIN_CALLS: usize = 20;

    pub fn from_durations(calls: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut by: HashMap<String, Vec<f64>> = HashMap::new();
        for (name, d) in calls {
            if d > 0 {
                by.entry(name).or_default().push((d as f64).ln());
            }
        }
        let median = |v: &mut Vec<f64>| tailscope_model::stats::median_of(v).unwrap_or(0.0);
        Self(
            by.into_iter()
                .map(|(k, mut v)| {
                    let m = median(&mut v);
                    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
                    let sd = 1.4826 * median(&mut dev);
                    (k, (m, sd.max(0.05), v.len()))
                })
                .collect(),
        )
    }

    /// Robust z-score of a duration in log space, when the tool has a baseline.
    pub fn surprise(&self, tool: &str, duration_ns: i64) -> Option<f64> {
        let &(m, sd, n) = self.0.get(tool)?;
        (n >= Self::MIN_CALLS && duration_ns > 0).then(|| ((duration_ns as f64).ln() - m) / sd)
    }
}

/// The tool calls of a tree as the baseline counts them: (tool, duration).
pub fn tool_durations(tree: &Tree) -> impl Iterator<Item = (String, i64)> + '_ {
    tree.nodes.iter().filter_map(|n| {
        let p = &n.span.promoted;
        (matches!(p.op_class, OpClass::Tool | OpClass::Mcp)
            && p.mcp_method.as_deref() != Some("initialize"))
        .then(|| {
            (
                p.tool_name.clone().unwrap_or_else(|| n.span.name.clone()),
                n.span.duration_ns(),
            )
        })
    })
}

/// (canonical name, the span's `server.address`, time) -> value at or before it.
pub type MetricAt<'a> = dyn Fn(&str, Option<&str>, i64) -> Option<f64> + 'a;
/// (canonical counter name, the span's `server.address`, from, to) -> increase.
pub type MetricIncrease<'a> = dyn Fn(&str, Option<&str>, i64, i64) -> Option<f64> + 'a;

fn ms(ns: i64) -> String {
    format!("{:.0} ms", ns as f64 / 1e6)
}

fn on_path(sections: &[CausedSection], node: usize) -> i64 {
    sections
        .iter()
        .filter(|s| s.node == node)
        .map(|s| s.end - s.start)
        .sum()
}

fn conversation(tree: &Tree) -> Option<String> {
    tree.nodes
        .iter()
        .find_map(|n| n.span.promoted.conversation_id.clone())
}

/// Model context windows by name fragment (tokens).
fn context_window(model: &str) -> i64 {
    let m = model.to_ascii_lowercase();
    if m.contains("claude") {
        200_000
    } else if m.contains("llama-3.1")
        || m.contains("llama-3.2")
        || m.contains("llama-3.3")
        || m.contains("gpt-4o")
        || m.contains("gpt-4.1")
    {
        128_000
    } else if m.contains("llama-3") {
        8_192
    } else {
        32_768
    }
}

/// All findings of one analysed trace.
pub fn find(
    tree: &Tree,
    sections: &[CausedSection],
    shape: &Shape<'_>,
    ctx: &Context<'_>,
) -> Vec<Finding> {
    let trace_id = tree.root_span().trace_id.to_hex();
    let conv = conversation(tree);
    let mut out = Vec::new();
    let mut push = |level: Level,
                    kind: &str,
                    node: usize,
                    cost: i64,
                    evidence: serde_json::Value,
                    summary: String| {
        out.push(Finding {
            evidence_level: level.0,
            alternatives: level.1,
            kind: kind.into(),
            trace_id: trace_id.clone(),
            span_id: tree.nodes[node].span.span_id.to_hex(),
            conversation_id: tree.nodes[node]
                .span
                .promoted
                .conversation_id
                .clone()
                .or_else(|| conv.clone()),
            estimated_cost_ns: cost,
            evidence,
            summary,
        });
    };
    let by_cause_on = |node: usize, cause: Cause| -> i64 {
        sections
            .iter()
            .filter(|s| s.node == node && s.cause == cause)
            .map(|s| s.end - s.start)
            .sum()
    };
    let subtree_cause = |node: usize, cause: Cause| -> i64 {
        sections
            .iter()
            .filter(|s| s.cause == cause && tree.is_within(s.node, node))
            .map(|s| s.end - s.start)
            .sum()
    };

    for (i, n) in tree.nodes.iter().enumerate() {
        let s = &n.span;
        let p = &s.promoted;
        // kv_eviction: on the client span that paid the re-prefill
        if let Some(e) = ctx.evictions.get(&s.span_id) {
            let cost = subtree_cause(i, Cause::KvEviction);
            if cost > 0 {
                let server = p.server_address.as_deref();
                let usage = (ctx.metric_at)(gm::KV_CACHE_USAGE, server, s.start_ns);
                let preempt = (ctx.metric_increase)(
                    gm::PREEMPTIONS_RATE,
                    server,
                    s.start_ns - 30_000_000_000,
                    s.start_ns,
                );
                let running = (ctx.metric_at)(gm::REQUESTS_RUNNING, server, s.start_ns);
                let corroborated =
                    usage.is_some_and(|u| u >= 0.9) || preempt.is_some_and(|p| p > 0.0);
                // the cost's part beyond the latency model's estimate, when the sections
                // carry it as ambiguous (a costlier re-prefill, or a wait)
                let on_path = level_of(
                    sections
                        .iter()
                        .filter(|x| x.cause == Cause::KvEviction && tree.is_within(x.node, i)),
                );
                let level = (e.evidence.max(on_path.0), on_path.1);
                // time of this call given to another cause that may be re-prefill too
                let could_be_more: i64 = sections
                    .iter()
                    .filter(|x| {
                        x.cause != Cause::KvEviction
                            && x.evidence == Evidence::Ambiguous
                            && x.alternatives.contains(Cause::KvEviction)
                            && tree.is_within(x.node, i)
                    })
                    .map(|x| x.end - x.start)
                    .sum();
                // the part of the cost that rests on turns that reported no token counts
                let unknown_prefix = e.cost_ns - e.cost_low_ns;
                let beyond = if level.0 == Evidence::Ambiguous {
                    e.unexplained_ns.min(cost)
                } else {
                    0
                };
                push(
                    level,
                    "kv_eviction",
                    i,
                    cost,
                    json!({
                        "conversation_id": e.conversation_id,
                        "previous_input_tokens": e.previous_input_tokens,
                        "input_tokens": e.input_tokens,
                        "cache_read_tokens": e.cache_read_tokens,
                        "previous_output_tokens": e.previous_output_tokens,
                        "expected_cached_tokens": e.cache_read_tokens + e.evicted_tokens,
                        "evicted_tokens": e.evicted_tokens,
                        "model": e.model,
                        "prefill_ns_per_token": e.prefill_ns_per_token,
                        "cost_method": e.cost_method,
                        "beyond_model_ns": beyond,
                        // the cost if the time beyond the model was a wait, and if it,
                        // and any other wait of this call that could be a re-prefill,
                        // was all re-prefill
                        // and had the cache held only the previous counted call's prefix
                        "cost_range_ns": [
                            (cost - beyond - unknown_prefix).max(0),
                            cost + could_be_more
                        ],
                        "calls_between_without_token_counts": e.calls_without_counts,
                        "kv_cache_usage_perc": usage,
                        "preemptions_last_30s": preempt,
                        "requests_running": running,
                        "corroborated_by_metrics": corroborated,
                        "cache_reads": if e.evidence == Evidence::Measured { "reported" } else { "left out, read as zero (the source sends them on its other calls)" },
                    }),
                    format!(
                        "The cached prefix of conversation {} was evicted: only {} of the {} tokens of the previous turn were read from cache, so {} tokens were prefilled again ({} on the critical path, costed from {}{}{}){}.",
                        e.conversation_id,
                        e.cache_read_tokens,
                        e.cache_read_tokens + e.evicted_tokens,
                        e.evicted_tokens,
                        ms(cost),
                        e.cost_method,
                        if e.calls_without_counts > 0 {
                            format!("; {} call(s) before it report no token counts, so the previous turn's length is taken as this prompt's: at least {} tokens were cached before, and the cost is at least {}", e.calls_without_counts, e.previous_input_tokens + e.previous_output_tokens, ms((cost - unknown_prefix).max(0)))
                        } else {
                            String::new()
                        },
                        if beyond > 0 {
                            format!("; {} of it is more than the latency model expects of this re-prefill: a prefill that grows faster than linearly with the prompt, or a wait the telemetry cannot tell apart", ms(beyond))
                        } else {
                            String::new()
                        },
                        match (usage, preempt) {
                            (Some(u), _) if u >= 0.9 => format!("; KV cache was {:.0}% full", u * 100.0),
                            (_, Some(p)) if p > 0.0 => format!("; {p:.0} preemptions in the 30 s before"),
                            _ => String::new(),
                        }
                    ),
                );
            }
        }
        // queue (or, where the telemetry cannot tell them apart, a re-prefill) on the
        // critical path: time before the answer the latency model does not explain;
        // corroborated by the server's waiting-request gauge while the request waited
        for cause in [Cause::Queue, Cause::KvEviction] {
            if cause == Cause::KvEviction && ctx.evictions.contains_key(&s.span_id) {
                continue; // the detected eviction's own finding above
            }
            let residual: Vec<&CausedSection> = sections
                .iter()
                .filter(|x| x.node == i && x.cause == cause)
                .collect();
            let queued: i64 = residual.iter().map(|x| x.end - x.start).sum();
            if queued < 200_000_000 {
                continue;
            }
            let level = level_of(residual.iter().copied());
            let server = p.server_address.as_deref();
            let waiting = [s.start_ns, s.start_ns + queued]
                .into_iter()
                .filter_map(|t| (ctx.metric_at)(gm::REQUESTS_WAITING, server, t))
                .reduce(f64::max);
            let running = (ctx.metric_at)(gm::REQUESTS_RUNNING, server, s.start_ns);
            let usage = (ctx.metric_at)(gm::KV_CACHE_USAGE, server, s.start_ns);
            let corroborated = waiting.is_some_and(|w| w >= 1.0);
            // without a server span the queue is the residual of the latency model
            let call = shape
                .call_of
                .get(&i)
                .map(|&k| &shape.calls[k])
                .filter(|c| c.node == i && c.server.is_none());
            let estimated_by = call
                .and_then(|c| split_call(tree, c, shape).fit)
                .map(|(f, kind)| f.evidence(kind));
            let cache_reads =
                call.map(
                    |c| match crate::calls::cache_read_known(tree, c, &shape.model.sources) {
                        Some(crate::calls::CacheRead::Reported(_)) => "reported",
                        Some(crate::calls::CacheRead::AbsentMeansZero) => {
                            "left out, read as zero (the source sends them on its other calls)"
                        }
                        None => "not reported by this instrumentation",
                    },
                );
            let first_token = call.is_some_and(|c| crate::calls::first_chunk_ns(tree, c).is_some());
            let summary = if level.0 == Evidence::Ambiguous
                && corroborated
                && (level.1.contains(Cause::KvEviction) || cause == Cause::KvEviction)
            {
                format!(
                    "The call spent {} more than the latency model expects{}: {}. The inference server's metrics show both in the call's window ({:.0} requests waiting, and most prompt tokens missing its prefix cache), but not how the time divides between the wait and the re-prefill.",
                    ms(queued),
                    if first_token { " before its first token" } else { "" },
                    alternatives_words(cause, level.1),
                    waiting.unwrap_or(0.0),
                )
            } else if level.0 == Evidence::Ambiguous {
                let mut missing = Vec::new();
                if level.1.contains(Cause::KvEviction) || cause == Cause::KvEviction {
                    missing.push("reports no cache reads");
                }
                if level.1.contains(Cause::Uninstrumented) {
                    missing.push("gives no first-token time");
                }
                format!(
                    "The call spent {} more than the latency model expects{}: {}. Its instrumentation {}; the inference server's span or metrics (waiting requests, prefix-cache hits) would settle it.",
                    ms(queued),
                    if first_token { " before its first token" } else { "" },
                    alternatives_words(cause, level.1),
                    if missing.is_empty() { "cannot tell them apart".to_owned() } else { missing.join(" and ") },
                )
            } else {
                format!(
                    "The request waited {} in the inference server's queue{}.",
                    ms(queued),
                    match (waiting, running) {
                        (Some(w), Some(r)) if w >= 1.0 =>
                            format!(" behind {w:.0} waiting and {r:.0} running requests"),
                        (Some(w), None) if w >= 1.0 => format!(" with {w:.0} requests waiting"),
                        _ => String::new(),
                    }
                )
            };
            push(
                level,
                if cause == Cause::Queue {
                    "queueing"
                } else {
                    "kv_eviction"
                },
                i,
                queued,
                json!({
                    "queue_ns": queued,
                    "residual_cause": cause.as_str(),
                    "estimated_by": estimated_by,
                    "cache_reads": cache_reads,
                    "first_token_time": first_token,
                    "requests_waiting": waiting,
                    "requests_running": running,
                    "kv_cache_usage_perc": usage,
                    "corroborated_by_metrics": corroborated,
                }),
                summary,
            );
        }
        let own = on_path(sections, i);
        match p.op_class {
            OpClass::Pool => {
                let wait = by_cause_on(i, Cause::PoolWait);
                if wait >= 100_000_000 {
                    let pending =
                        (ctx.metric_at)("db.client.connection.pending_requests", None, s.start_ns);
                    push(
                        MEASURED,
                        "pool_exhaustion",
                        i,
                        wait,
                        json!({"pool": p.db_pool_name, "wait_ns": p.pool_wait_ns.unwrap_or(s.duration_ns()), "pending_requests": pending}),
                        format!(
                            "Waited {} for a connection from pool {} on the critical path.",
                            ms(wait),
                            p.db_pool_name.as_deref().unwrap_or("?")
                        ),
                    );
                }
            }
            _ if p.cold_start == Some(true) && own >= 200_000_000 => {
                push(
                    MEASURED,
                    "tool_cold_start",
                    i,
                    own,
                    json!({"faas.coldstart": true, "server": s.service_name, "duration_ns": s.duration_ns()}),
                    format!(
                        "{} started cold (faas.coldstart), adding {} to the critical path.",
                        s.name,
                        ms(own)
                    ),
                );
            }
            OpClass::Mcp if p.mcp_method.as_deref() == Some("initialize") && own >= 200_000_000 => {
                push(
                    MEASURED,
                    "tool_cold_start",
                    i,
                    own,
                    json!({"mcp_session_id": p.mcp_session_id, "server": s.service_name, "duration_ns": s.duration_ns()}),
                    format!(
                        "MCP server {} cold-started (initialize took {}) before the tool call.",
                        s.service_name,
                        ms(s.duration_ns())
                    ),
                );
            }
            _ => {}
        }
        if s.status == StatusCode::Error
            && sections
                .iter()
                .any(|x| x.node == i && x.cause == Cause::Retry)
        {
            let cost = subtree_cause(i, Cause::Retry);
            push(
                MEASURED,
                "retry_amplification",
                i,
                cost,
                json!({"error_type": p.error_type, "failed_attempt_ns": s.duration_ns(), "name": s.name}),
                format!(
                    "A failed attempt of {} ({}) was retried, adding {} to the critical path.",
                    s.name,
                    p.error_type.as_deref().unwrap_or("error"),
                    ms(cost)
                ),
            );
        }
        // stream stutter: inter-chunk gaps
        if p.op_class == OpClass::Llm && s.events.len() >= 3 {
            let mut times: Vec<i64> = s.events.iter().map(|e| e.time_ns).collect();
            times.sort_unstable();
            let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
            // Baseline: the lower-quartile gap, since stalls can be half of a short stream;
            // but not counting the last gap, which ends with a short final chunk (a few
            // tokens, or only the finish reason / usage) and so is short by nature.
            let mut base: Vec<i64> = if gaps.len() >= 3 {
                gaps[..gaps.len() - 1].to_vec()
            } else {
                gaps.clone()
            };
            base.sort_unstable();
            gaps.sort_unstable();
            let median = crate::tail::percentile(&gaps, 50.0);
            let p99 = crate::tail::percentile(&gaps, 99.0);
            let typical = crate::tail::percentile(&base, 25.0).max(1);
            let excess: i64 = gaps
                .iter()
                .filter(|g| **g > 4 * typical && **g >= 150_000_000)
                .map(|g| g - typical)
                .sum();
            if excess >= 300_000_000 {
                let tokens: Vec<i64> = s
                    .events
                    .iter()
                    .filter_map(|e| {
                        e.attributes
                            .iter()
                            .find(|a| a.key.ends_with("tokens"))
                            .and_then(|a| a.value.as_i64())
                    })
                    .collect();
                let tpc = if tokens.is_empty() {
                    None
                } else {
                    Some(tokens.iter().sum::<i64>() as f64 / tokens.len() as f64)
                };
                push(
                    MEASURED,
                    "stream_stutter",
                    i,
                    excess,
                    json!({"chunks": s.events.len(), "gap_p25_ns": typical, "gap_p50_ns": median, "gap_p99_ns": p99, "tokens_per_chunk": tpc}),
                    format!("The stream stalled: inter-chunk gap p99 {} against a typical {}, {} lost in stalls.", ms(p99), ms(typical), ms(excess)),
                );
            }
        }
        // context growth
        if p.op_class == OpClass::Llm && s.kind != tailscope_model::SpanKind::Server {
            if let (Some(input), Some(model)) = (p.input_tokens, p.model.as_deref()) {
                let window = context_window(model);
                if input * 10 >= window * 8 {
                    push(
                        INFERRED,
                        "context_growth",
                        i,
                        0,
                        json!({"input_tokens": input, "context_window": window, "model": model}),
                        format!("The prompt reached {input} tokens, {:.0}% of {model}'s {window}-token window.", input as f64 * 100.0 / window as f64),
                    );
                }
            }
        }
        children_findings(tree, i, sections, ctx.tools, &mut push);
    }
    // one tool call writing to several stores
    for a in crate::write_amp::find(tree, sections) {
        let span = |n: usize| &tree.nodes[n].span;
        let on_path: Vec<String> = a
            .writes
            .iter()
            .filter(|w| sections.iter().any(|s| tree.is_within(s.node, w.node)))
            .map(|w| format!("{} {}", w.operation, w.store))
            .collect();
        push(
            INFERRED,
            "write_amplification",
            a.node,
            a.parallel_saves_ns,
            json!({
                "stores": a.stores,
                "writes": a.writes.iter().map(|w| json!({
                    "span_id": span(w.node).span_id.to_hex(), "store": w.store,
                    "operation": w.operation, "duration_ns": span(w.node).duration_ns(),
                    "on_critical_path": sections.iter().any(|s| tree.is_within(s.node, w.node)),
                })).collect::<Vec<_>>(),
                "writes_critical_ns": a.writes_critical_ns,
                "critical_path_share": a.share,
                "parallel_saves_ns": a.parallel_saves_ns,
                "async_saves_ns": a.async_saves_ns,
            }),
            format!(
                "{} wrote to {} stores{} ({} writes; on the critical path: {}), {} and {:.0}% of the critical path; run in parallel they would save {}, off the request {}.",
                span(a.node).name,
                a.stores,
                if a.writes.windows(2).all(|w| span(w[1].node).start_ns >= span(w[0].node).end_ns) {
                    " one after another"
                } else {
                    ""
                },
                a.writes.len(),
                if on_path.is_empty() { "none".to_owned() } else { on_path.join(", ") },
                ms(a.writes_critical_ns),
                a.share * 100.0,
                ms(a.parallel_saves_ns),
                ms(a.async_saves_ns),
            ),
        );
    }
    // preprocessing bottleneck: a large share of the path
    let pre: i64 = sections
        .iter()
        .filter(|s| s.cause == Cause::Preprocessing)
        .map(|s| s.end - s.start)
        .sum();
    let total = tree.root_span().duration_ns().max(1);
    if pre >= 1_000_000_000 && pre * 4 >= total {
        let pre_level = level_of(sections.iter().filter(|s| s.cause == Cause::Preprocessing));
        let top = sections
            .iter()
            .filter(|s| s.cause == Cause::Preprocessing)
            .max_by_key(|s| s.end - s.start)
            .map_or(tree.root, |s| s.node);
        push(
            pre_level,
            "preprocessing_bottleneck",
            top,
            pre,
            json!({"preprocessing_ns": pre, "share": pre as f64 / total as f64, "slowest_step": tree.nodes[top].span.name}),
            format!("Preprocessing (chunking, embedding, prompt assembly) took {} — {:.0}% of the request — before the model was called.", ms(pre), pre as f64 * 100.0 / total as f64),
        );
    }
    out
}

/// Findings about a node's children: sequential waterfalls, N+1 calls, stragglers.
fn children_findings(
    tree: &Tree,
    i: usize,
    sections: &[CausedSection],
    tools_baseline: &ToolBaseline,
    push: &mut impl FnMut(Level, &str, usize, i64, serde_json::Value, String),
) {
    let is_tool = |c: usize| {
        matches!(
            tree.nodes[c].span.promoted.op_class,
            OpClass::Tool | OpClass::Mcp
        ) && tree.nodes[c].span.promoted.mcp_method.as_deref() != Some("initialize")
    };
    let tools: Vec<usize> = tree.nodes[i]
        .children
        .iter()
        .copied()
        .filter(|&c| is_tool(c))
        .collect();
    if tools.len() < 2 {
        return;
    }
    let span = |c: usize| &tree.nodes[c].span;
    let tool_name = |c: usize| {
        span(c)
            .promoted
            .tool_name
            .clone()
            .unwrap_or_else(|| span(c).name.clone())
    };
    let sequential = tools
        .windows(2)
        .all(|w| span(w[1]).start_ns >= span(w[0]).end_ns);
    let sum: i64 = tools.iter().map(|&c| span(c).duration_ns()).sum();
    let max = tools
        .iter()
        .map(|&c| span(c).duration_ns())
        .max()
        .unwrap_or(0);
    let on_path: i64 = sections
        .iter()
        .filter(|s| tools.iter().any(|&t| tree.is_within(s.node, t)))
        .map(|s| s.end - s.start)
        .sum();
    let mut names: HashMap<String, usize> = HashMap::new();
    for &t in &tools {
        *names.entry(tool_name(t)).or_default() += 1;
    }
    let (top_name, top_count) = names
        .iter()
        .max_by_key(|(n, c)| (**c, std::cmp::Reverse((*n).clone())))
        .map_or((String::new(), 0), |(n, c)| (n.clone(), *c));
    if sequential && top_count >= 3 {
        let cost = (sum - max).min(on_path);
        push(
            INFERRED,
            "n_plus_one",
            i,
            cost,
            json!({"tool": top_name, "calls": top_count, "total_ns": sum}),
            format!("{} called {top_name} {top_count} times one after another; one batched call would save about {}.", span(i).name, ms(cost)),
        );
    } else if sequential && names.len() >= 2 && on_path > 0 {
        let cost = (sum - max).min(on_path);
        if cost >= 200_000_000 {
            push(
                INFERRED,
                "sequential_waterfall",
                i,
                cost,
                json!({"calls": tools.iter().map(|&c| json!({"span_id": span(c).span_id.to_hex(), "tool": tool_name(c), "duration_ns": span(c).duration_ns()})).collect::<Vec<_>>()}),
                format!("{} ran {} independent tool calls one after another; run in parallel they would take {} instead of {}.", span(i).name, tools.len(), ms(max), ms(sum)),
            );
        }
    } else if !sequential && tools.len() >= 3 {
        let mut d: Vec<(i64, usize)> = tools.iter().map(|&c| (span(c).duration_ns(), c)).collect();
        d.sort_unstable();
        let (slowest, node) = d[d.len() - 1];
        let second = d[d.len() - 2].0;
        let median = tailscope_model::stats::median(&d).map_or(0, |m| m.0);
        // Branches of a fan-out vary by nature (tool latencies have long tails): the
        // straggler must be unusually slow for its tool, where the store knows the tool.
        let unusual = tools_baseline
            .surprise(&tool_name(node), slowest)
            .map_or(slowest - second >= second.max(500_000_000), |z| z >= 3.0);
        if slowest >= 2 * median.max(1) && slowest - second >= 200_000_000 && unusual && on_path > 0
        {
            push(
                MEASURED,
                "fanout_straggler",
                node,
                slowest - second,
                json!({"branches": tools.len(), "slowest_ns": slowest, "second_ns": second, "median_ns": median, "tool": tool_name(node)}),
                format!(
                    "A fan-out of {} waited on its slowest branch {} ({} against a median of {}).",
                    tools.len(),
                    tool_name(node),
                    ms(slowest),
                    ms(median)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{span, trace};

    fn none_at(_: &str, _: Option<&str>, _: i64) -> Option<f64> {
        None
    }
    fn none_inc(_: &str, _: Option<&str>, _: i64, _: i64) -> Option<f64> {
        None
    }

    #[test]
    fn context_growth_and_cold_start_are_named() {
        let mut llm = span(2, Some(1), 0, 50);
        llm.kind = tailscope_model::SpanKind::Client;
        llm.promoted.op_class = OpClass::Llm;
        llm.promoted.model = Some("meta-llama/Llama-3.1-8B-Instruct".into());
        llm.promoted.input_tokens = Some(110_000);
        let mut init = span(3, Some(1), 50, 900_000_050);
        init.promoted.op_class = OpClass::Mcp;
        init.promoted.mcp_method = Some("initialize".into());
        let t = trace(vec![span(1, None, 0, 1_000_000_000), llm, init]);
        let path = crate::critical::critical_path(&t);
        let ev = HashMap::new();
        let model = crate::latency::LatencyModel::default();
        let none = HashMap::new();
        let shape = Shape::new(&t, &ev, &model, &none);
        let sections = crate::causes::assign(&t, &path, &shape);
        let tools = ToolBaseline::default();
        let ctx = Context {
            evictions: &ev,
            metric_at: &none_at,
            metric_increase: &none_inc,
            tools: &tools,
        };
        let f = find(&t, &sections, &shape, &ctx);
        let kinds: Vec<&str> = f.iter().map(|f| f.kind.as_str()).collect();
        assert!(kinds.contains(&"context_growth"), "{kinds:?}");
        let cold = f
            .iter()
            .find(|f| f.kind == "tool_cold_start")
            .expect("cold start");
        assert_eq!(cold.estimated_cost_ns, 900_000_000);
        // a prompt far from the window is not a finding
        let mut small = span(2, Some(1), 0, 50);
        small.promoted.op_class = OpClass::Llm;
        small.promoted.model = Some("gpt-4o".into());
        small.promoted.input_tokens = Some(2_000);
        let t = trace(vec![span(1, None, 0, 100), small]);
        let path = crate::critical::critical_path(&t);
        let shape = Shape::new(&t, &ev, &model, &none);
        let sections = crate::causes::assign(&t, &path, &shape);
        assert!(find(&t, &sections, &shape, &ctx).is_empty());
    }
}
