//! Structural and semantic checks of a generated [`Workload`].

use crate::attrs::{find, SECONDS_ATTRS};
use crate::config::{PlantedCause, Workload};
use std::collections::{HashMap, HashSet};
use tailscope_model::semconv::promote;
use tailscope_model::{AttrValue, Cause, MetricKind, OpClass, Span, SpanId, StatusCode, TraceId};

/// Most messages [`validate`] returns.
const MAX_ERRORS: usize = 100;
/// Slack for float-seconds attributes compared with integer nanoseconds.
const SLACK_NS: f64 = 2_000.0;

struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, msg: String) {
        if self.0.len() < MAX_ERRORS {
            self.0.push(msg);
        }
    }
}

fn int_attr(s: &Span, keys: &[&str]) -> Option<i64> {
    find(&s.attributes, keys).and_then(AttrValue::as_i64)
}

fn secs_attr(s: &Span, key: &str) -> Option<f64> {
    s.attr(key).and_then(AttrValue::as_f64)
}

fn is_agent(s: &Span) -> bool {
    s.attr("gen_ai.operation.name").and_then(AttrValue::as_str) == Some("invoke_agent")
        || s.attr("openinference.span.kind")
            .and_then(AttrValue::as_str)
            == Some("AGENT")
}

/// Checks a workload:
/// - ids are non-zero and span ids unique; every trace has exactly one root;
/// - every parent exists in the same trace and contains its children in time;
///   events lie inside their span; links point at existing spans; resources exist;
/// - seconds attributes are non-negative and not longer than their span; vLLM latency
///   attributes add up (queue + prefill + decode = e2e = duration);
/// - token arithmetic of every conversation: a turn's first prompt is the previous turn's last
///   prompt + its output + the new message + retrieved context; within a turn each prompt is the
///   previous one + its output + tool/sub-agent results; cache reads are 0 or the previous prompt
///   rounded down to a block;
/// - ground truth names a known cause and a real span of that trace, with a positive delay;
/// - histogram buckets add up and cumulative sums never decrease.
pub fn validate(w: &Workload) -> Result<(), Vec<String>> {
    let mut errs = Errors(Vec::new());
    let spans = &w.batch.spans;
    let resources: HashMap<i64, &str> = w
        .batch
        .resources
        .iter()
        .map(|r| (r.id, r.service_name.as_str()))
        .collect();
    let mut by_id: HashMap<SpanId, usize> = HashMap::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        if s.trace_id.0.iter().all(|b| *b == 0) || s.span_id.0.iter().all(|b| *b == 0) {
            errs.push(format!("span {i} ({}) has an all-zero id", s.name));
        }
        if by_id.insert(s.span_id, i).is_some() {
            errs.push(format!("span id {} is used twice", s.span_id));
        }
        if s.end_ns < s.start_ns {
            errs.push(format!(
                "span {} ({}) ends before it starts",
                s.span_id, s.name
            ));
        }
        match resources.get(&s.resource_id) {
            None => errs.push(format!(
                "span {} ({}) has an unknown resource",
                s.span_id, s.name
            )),
            Some(svc) if *svc != s.service_name => errs.push(format!(
                "span {} ({}) says service {} but its resource is {svc}",
                s.span_id, s.name, s.service_name
            )),
            Some(_) => {}
        }
        for ev in &s.events {
            if ev.time_ns < s.start_ns || ev.time_ns > s.end_ns {
                errs.push(format!(
                    "event {} of span {} ({}) lies outside the span",
                    ev.name, s.span_id, s.name
                ));
            }
        }
        let dur = s.duration_ns() as f64;
        for key in SECONDS_ATTRS {
            if let Some(v) = secs_attr(s, key) {
                if !(v.is_finite() && v >= 0.0 && v * 1e9 <= dur + SLACK_NS) {
                    errs.push(format!(
                        "span {} ({}): {key} = {v} s does not fit its duration {} ns",
                        s.span_id,
                        s.name,
                        s.duration_ns()
                    ));
                }
            }
        }
        if let Some(e2e) = secs_attr(s, "gen_ai.latency.e2e") {
            let queue = secs_attr(s, "gen_ai.latency.time_in_queue").unwrap_or(0.0);
            let prefill = secs_attr(s, "gen_ai.latency.time_in_model_prefill").unwrap_or(0.0);
            let decode = secs_attr(s, "gen_ai.latency.time_in_model_decode").unwrap_or(0.0);
            let inf = secs_attr(s, "gen_ai.latency.time_in_model_inference").unwrap_or(0.0);
            let ttft = secs_attr(s, "gen_ai.latency.time_to_first_token").unwrap_or(0.0);
            let close = |a: f64, b: f64| ((a - b) * 1e9).abs() <= SLACK_NS;
            if !(close(e2e * 1e9, dur) || close(e2e, dur / 1e9))
                || !close(queue + inf, e2e)
                || !close(prefill + decode, inf)
                || ttft > e2e + SLACK_NS / 1e9
                || !close(ttft, queue + prefill)
            {
                errs.push(format!(
                    "llm_request {}: latency attributes do not add up (queue {queue}, prefill {prefill}, decode {decode}, inference {inf}, ttft {ttft}, e2e {e2e}, duration {dur} ns)",
                    s.span_id
                ));
            }
        }
    }

    // Parents, roots, links.
    let mut roots: HashMap<TraceId, usize> = HashMap::new();
    for s in spans {
        match s.parent_span_id {
            None => {
                *roots.entry(s.trace_id).or_insert(0) += 1;
            }
            Some(p) => match by_id.get(&p).and_then(|i| spans.get(*i)) {
                None => errs.push(format!(
                    "span {} ({}) has a missing parent {p}",
                    s.span_id, s.name
                )),
                Some(parent) => {
                    if parent.trace_id != s.trace_id {
                        errs.push(format!(
                            "span {} ({}) has its parent in another trace",
                            s.span_id, s.name
                        ));
                    }
                    if s.start_ns < parent.start_ns || s.end_ns > parent.end_ns {
                        errs.push(format!(
                            "span {} ({}) [{}, {}] is not inside its parent {} ({}) [{}, {}]",
                            s.span_id,
                            s.name,
                            s.start_ns,
                            s.end_ns,
                            parent.span_id,
                            parent.name,
                            parent.start_ns,
                            parent.end_ns
                        ));
                    }
                }
            },
        }
        for l in &s.links {
            match by_id.get(&l.span_id).and_then(|i| spans.get(*i)) {
                Some(t) if t.trace_id == l.trace_id => {}
                _ => errs.push(format!(
                    "span {} ({}) links to a missing span {}",
                    s.span_id, s.name, l.span_id
                )),
            }
        }
    }
    let traces: HashSet<TraceId> = spans.iter().map(|s| s.trace_id).collect();
    for t in &traces {
        let n = roots.get(t).copied().unwrap_or(0);
        if n != 1 {
            errs.push(format!("trace {t} has {n} root spans, want 1"));
        }
    }
    let root_of: HashMap<TraceId, &Span> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .map(|s| (s.trace_id, s))
        .collect();

    check_tokens(spans, &by_id, &root_of, &mut errs);
    check_truth(w, &by_id, &root_of, &mut errs);
    check_metrics(w, &mut errs);

    if errs.0.is_empty() {
        Ok(())
    } else {
        Err(errs.0)
    }
}

struct Call<'a> {
    span: &'a Span,
    input: i64,
    output: i64,
    cache: i64,
    agent: Option<SpanId>,
    turn: i64,
}

fn agent_ancestor(s: &Span, spans: &[Span], by_id: &HashMap<SpanId, usize>) -> Option<SpanId> {
    let mut cur = s.parent_span_id;
    let mut guard = 0;
    while let Some(id) = cur {
        let p = spans.get(*by_id.get(&id)?)?;
        if is_agent(p) {
            return Some(p.span_id);
        }
        cur = p.parent_span_id;
        guard += 1;
        if guard > 256 {
            return None;
        }
    }
    None
}

fn check_tokens(
    spans: &[Span],
    by_id: &HashMap<SpanId, usize>,
    root_of: &HashMap<TraceId, &Span>,
    errs: &mut Errors,
) {
    let mut groups: HashMap<String, Vec<Call<'_>>> = HashMap::new();
    // (agent span, start, end, tokens) of results flowing back into a prompt.
    let mut results: HashMap<SpanId, Vec<(i64, i64, i64)>> = HashMap::new();
    for s in spans {
        if let Some(r) = s.attr("app.result_tokens").and_then(AttrValue::as_i64) {
            if let Some(a) = agent_ancestor(s, spans, by_id) {
                results
                    .entry(a)
                    .or_default()
                    .push((s.start_ns, s.end_ns, r));
            }
        }
        if s.kind != tailscope_model::SpanKind::Client || s.status == StatusCode::Error {
            continue;
        }
        let p = promote(&s.name, s.start_ns, s.end_ns, &s.attributes, &s.events);
        if p.op_class != OpClass::Llm {
            continue;
        }
        let (Some(input), Some(output)) = (p.input_tokens, p.output_tokens) else {
            errs.push(format!(
                "LLM span {} ({}) has no token usage",
                s.span_id, s.name
            ));
            continue;
        };
        let Some(conv) = p.conversation_id else {
            errs.push(format!(
                "LLM span {} ({}) has no conversation id",
                s.span_id, s.name
            ));
            continue;
        };
        let cache = p.cache_read_tokens.unwrap_or(0);
        if cache < 0 || cache > input || output <= 0 {
            errs.push(format!(
                "LLM span {}: tokens out of range (input {input}, output {output}, cache {cache})",
                s.span_id
            ));
        }
        let turn = root_of
            .get(&s.trace_id)
            .and_then(|r| int_attr(r, &["app.turn.index"]))
            .unwrap_or(0);
        groups.entry(conv).or_default().push(Call {
            span: s,
            input,
            output,
            cache,
            agent: agent_ancestor(s, spans, by_id),
            turn,
        });
    }
    let mut keys: Vec<&String> = groups.keys().collect();
    keys.sort();
    for conv in keys {
        let Some(calls) = groups.get(conv) else {
            continue;
        };
        let mut order: Vec<&Call<'_>> = calls.iter().collect();
        order.sort_by_key(|c| (c.turn, c.span.start_ns));
        if let Some(first) = order.first() {
            if first.cache != 0 {
                errs.push(format!(
                    "conversation {conv}: first call {} reads {} cached tokens, want 0",
                    first.span.span_id, first.cache
                ));
            }
        }
        for pair in order.windows(2) {
            let [a, b] = pair else { continue };
            let expect = if a.span.trace_id == b.span.trace_id {
                let r: i64 = a.agent.and_then(|ag| results.get(&ag)).map_or(0, |v| {
                    v.iter()
                        .filter(|(s, en, _)| *s >= a.span.end_ns && *en <= b.span.start_ns)
                        .map(|(_, _, t)| *t)
                        .sum()
                });
                a.input + a.output + r
            } else {
                let Some(root) = root_of.get(&b.span.trace_id) else {
                    continue;
                };
                let msg = int_attr(root, &["app.user_message.tokens"]).unwrap_or(0);
                let ctx = int_attr(root, &["app.retrieval.context_tokens"]).unwrap_or(0);
                if b.turn != a.turn + 1 {
                    errs.push(format!(
                        "conversation {conv}: turn {} follows turn {}",
                        b.turn, a.turn
                    ));
                }
                a.input + a.output + msg + ctx
            };
            if b.input != expect {
                errs.push(format!(
                    "conversation {conv}: call {} has {} input tokens, want {expect} (previous call {}: {} in + {} out)",
                    b.span.span_id, b.input, a.span.span_id, a.input, a.output
                ));
            }
            let hit_ok = b.cache == 0 || (b.cache <= a.input && b.cache > a.input - 1024);
            if !hit_ok {
                errs.push(format!(
                    "conversation {conv}: call {} reads {} cached tokens; want 0 or the previous prompt ({}) rounded to a block",
                    b.span.span_id, b.cache, a.input
                ));
            }
        }
    }
}

fn check_truth(
    w: &Workload,
    by_id: &HashMap<SpanId, usize>,
    root_of: &HashMap<TraceId, &Span>,
    errs: &mut Errors,
) {
    let mut seen = HashSet::new();
    for t in &w.truth {
        if PlantedCause::parse(&t.cause).is_none() && Cause::parse(&t.cause).is_none() {
            errs.push(format!(
                "truth for trace {}: unknown cause {:?}",
                t.trace_id, t.cause
            ));
        }
        if !seen.insert(t.trace_id) {
            errs.push(format!(
                "trace {} has more than one ground truth",
                t.trace_id
            ));
        }
        if t.extra_ns <= 0 {
            errs.push(format!(
                "truth for trace {}: extra_ns {} is not positive",
                t.trace_id, t.extra_ns
            ));
        }
        match by_id.get(&t.span_id).and_then(|i| w.batch.spans.get(*i)) {
            Some(s) if s.trace_id == t.trace_id => {}
            Some(_) => errs.push(format!(
                "truth span {} is not in trace {}",
                t.span_id, t.trace_id
            )),
            None => errs.push(format!(
                "truth span {} of trace {} does not exist",
                t.span_id, t.trace_id
            )),
        }
        match root_of.get(&t.trace_id) {
            None => errs.push(format!("truth trace {} does not exist", t.trace_id)),
            Some(root) => {
                let conv = promote(
                    &root.name,
                    root.start_ns,
                    root.end_ns,
                    &root.attributes,
                    &[],
                )
                .conversation_id;
                if conv.as_deref() != Some(t.conversation_id.as_str()) {
                    errs.push(format!(
                        "truth for trace {}: conversation {} but the root says {conv:?}",
                        t.trace_id, t.conversation_id
                    ));
                }
            }
        }
    }
}

fn check_metrics(w: &Workload, errs: &mut Errors) {
    let mut last: HashMap<(String, i64, String), (i64, f64)> = HashMap::new();
    for m in &w.batch.metrics {
        if m.kind == MetricKind::Histogram {
            let total: u64 = m.bucket_counts.iter().sum();
            if m.bucket_counts.len() != m.explicit_bounds.len() + 1 || Some(total) != m.count {
                errs.push(format!(
                    "histogram {} at {}: buckets do not add up",
                    m.name, m.time_ns
                ));
            }
            continue;
        }
        let Some(v) = m.value else {
            errs.push(format!("metric {} at {} has no value", m.name, m.time_ns));
            continue;
        };
        if !v.is_finite() {
            errs.push(format!("metric {} at {} is not finite", m.name, m.time_ns));
        }
        if m.kind == MetricKind::Sum && m.monotonic {
            let attrs = m.attributes.iter().fold(String::new(), |mut acc, a| {
                acc.push_str(&a.key);
                acc.push('=');
                acc.push_str(&a.value.to_display());
                acc.push(';');
                acc
            });
            let key = (m.name.clone(), m.resource_id, attrs);
            if let Some((t, prev)) = last.get(&key) {
                if m.time_ns > *t && v < *prev {
                    errs.push(format!("counter {} decreases at {}", m.name, m.time_ns));
                }
            }
            last.insert(key, (m.time_ns, v));
        }
    }
}
