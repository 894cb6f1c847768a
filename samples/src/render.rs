//! Turns laid-out plans into model [`Span`]s (with the vLLM server spans and chunk events).

use crate::attrs::{Dialect, Put};
use crate::plan::{Body, LlmCall, Node, SpanSpec, Timing};
use crate::resources::{Resources, Svc};
use crate::util::secs;
use tailscope_model::semconv::promote;
use tailscope_model::{
    AttrValue, Attribute, Event, Link, Span, SpanId, SpanKind, StatusCode, TraceId,
};

/// Rendering state for one run.
pub(crate) struct RenderCx<'a> {
    pub(crate) res: &'a Resources,
    pub(crate) trace_id: TraceId,
    pub(crate) timings: &'a [Timing],
    pub(crate) next_call: usize,
}

#[allow(clippy::too_many_arguments)]
fn make_span(
    cx: &RenderCx<'_>,
    id: SpanId,
    parent: Option<SpanId>,
    name: String,
    kind: SpanKind,
    svc: Svc,
    scope: &'static str,
    (start, end): (i64, i64),
    status: (StatusCode, String),
    attributes: Vec<Attribute>,
    events: Vec<Event>,
    links: Vec<Link>,
) -> Span {
    let r = cx.res.get(svc);
    let promoted = promote(&name, start, end, &attributes, &events);
    Span {
        trace_id: cx.trace_id,
        span_id: id,
        parent_span_id: parent,
        trace_state: String::new(),
        flags: 1,
        name,
        kind,
        start_ns: start,
        end_ns: end,
        status: status.0,
        status_message: status.1,
        resource_id: r.id,
        service_name: r.service_name.clone(),
        scope_name: scope.to_owned(),
        scope_version: String::new(),
        attributes,
        events,
        links,
        promoted,
    }
}

fn spec_span(
    cx: &RenderCx<'_>,
    spec: SpanSpec,
    parent: Option<SpanId>,
    start: i64,
    end: i64,
) -> Span {
    let mut events = Vec::new();
    if spec.status == StatusCode::Error {
        let etype = spec
            .attrs
            .iter()
            .find(|a| a.key == "error.type")
            .map_or_else(|| "error".to_owned(), |a| a.value.to_display());
        events.push(Event {
            time_ns: end,
            name: "exception".to_owned(),
            attributes: vec![
                Attribute::new("exception.type", AttrValue::Str(etype)),
                Attribute::new(
                    "exception.message",
                    AttrValue::Str(spec.status_message.clone()),
                ),
            ],
        });
    }
    make_span(
        cx,
        spec.id,
        parent,
        spec.name,
        spec.kind,
        spec.svc,
        spec.scope,
        (start, end),
        (spec.status, spec.status_message),
        spec.attrs,
        events,
        spec.links,
    )
}

/// Renders a laid-out tree (after [`crate::plan::walk`]) into spans, parents before children.
pub(crate) fn render(
    node: Node,
    parent: Option<SpanId>,
    cx: &mut RenderCx<'_>,
    out: &mut Vec<Span>,
) {
    let Node {
        spec,
        body,
        start,
        end,
        ..
    } = node;
    let id = spec.as_ref().map(|s| s.id);
    let child_parent = id.or(parent);
    match body {
        Body::Llm(call) => {
            let timing = cx.timings.get(cx.next_call).copied().unwrap_or_default();
            cx.next_call += 1;
            if let Some(spec) = spec {
                render_llm(cx, *spec, &call, timing, parent, (start, end), out);
            }
        }
        Body::Leaf(_) => {
            if let Some(spec) = spec {
                out.push(spec_span(cx, *spec, parent, start, end));
            }
        }
        Body::Seq(children) | Body::Par(children) => {
            if let Some(spec) = spec {
                out.push(spec_span(cx, *spec, parent, start, end));
            }
            for c in children {
                render(c, child_parent, cx, out);
            }
        }
        Body::Remote { server, .. } => {
            if let Some(spec) = spec {
                out.push(spec_span(cx, *spec, parent, start, end));
            }
            render(*server, child_parent, cx, out);
        }
    }
}

/// Client-side receipt times of the streamed chunks: (time, tokens in chunk).
pub(crate) fn chunk_times(call: &LlmCall, timing: &Timing, client_start: i64) -> Vec<(i64, i64)> {
    let arrival = client_start + call.up_ns;
    let first_token = arrival + timing.queue_ns + timing.prefill_ns;
    let out = call.output.max(2);
    let c = call.chunk_tokens.max(1);
    let token_time = |i: i64| first_token + timing.decode_ns * i / (out - 1);
    let mut chunks = Vec::with_capacity((out / c + 2) as usize);
    let mut stutter = call.stutter.iter().peekable();
    let mut delay = call.down_ns;
    let mut idx = 0usize;
    let mut next_token = 0i64;
    while next_token < out {
        let last = if idx == 0 {
            0
        } else {
            (next_token + c - 1).min(out - 1)
        };
        while let Some((at, gap)) = stutter.peek() {
            if *at <= idx {
                delay += gap;
                stutter.next();
            } else {
                break;
            }
        }
        chunks.push((token_time(last) + delay, last - next_token + 1));
        next_token = last + 1;
        idx += 1;
    }
    chunks
}

fn render_llm(
    cx: &mut RenderCx<'_>,
    spec: SpanSpec,
    call: &LlmCall,
    t: Timing,
    parent: Option<SpanId>,
    (start, end): (i64, i64),
    out: &mut Vec<Span>,
) {
    let chunks = chunk_times(call, &t, start);
    let ttfc = chunks.first().map_or(0, |(time, _)| time - start);
    let events: Vec<Event> = chunks
        .iter()
        .enumerate()
        .map(|(i, (time, tokens))| Event {
            time_ns: *time,
            name: "gen_ai.chunk".to_owned(),
            attributes: vec![
                Attribute::new("gen_ai.chunk.index", AttrValue::Int(i as i64)),
                Attribute::new("gen_ai.chunk.tokens", AttrValue::Int(*tokens)),
            ],
        })
        .collect();
    let finish = if call.tool_calls {
        "tool_calls"
    } else {
        "stop"
    };
    let mut attrs = spec.attrs;
    match call.dialect {
        Dialect::Current => {
            attrs.s("gen_ai.response.model", call.model.as_str());
            attrs.s("gen_ai.response.id", call.request_id.as_str());
            attrs.json("gen_ai.response.finish_reasons", format!("[\"{finish}\"]"));
            attrs.i("gen_ai.usage.input_tokens", call.input);
            attrs.i("gen_ai.usage.output_tokens", call.output);
            attrs.i("gen_ai.usage.cache_read.input_tokens", t.cache_read);
            attrs.f("gen_ai.response.time_to_first_chunk", secs(ttfc));
        }
        Dialect::Deprecated => {
            attrs.s("gen_ai.response.model", call.model.as_str());
            attrs.s("gen_ai.response.id", call.request_id.as_str());
            attrs.json("gen_ai.response.finish_reasons", format!("[\"{finish}\"]"));
            attrs.i("gen_ai.usage.prompt_tokens", call.input);
            attrs.i("gen_ai.usage.completion_tokens", call.output);
            attrs.i("gen_ai.usage.cached_tokens", t.cache_read);
        }
        Dialect::OpenInference => {
            attrs.i("llm.token_count.prompt", call.input);
            attrs.i("llm.token_count.completion", call.output);
            attrs.i("llm.token_count.total", call.input + call.output);
            attrs.i("llm.token_count.prompt_details.cache_read", t.cache_read);
        }
    }
    let client_id = spec.id;
    out.push(make_span(
        cx,
        client_id,
        parent,
        spec.name,
        spec.kind,
        spec.svc,
        spec.scope,
        (start, end),
        (spec.status, spec.status_message),
        attrs,
        events,
        spec.links,
    ));
    let arrival = start + call.up_ns;
    let e2e = t.e2e_ns();
    let mut a = Vec::with_capacity(16);
    a.s("gen_ai.request.id", call.request_id.as_str());
    a.s("gen_ai.response.model", call.model.as_str());
    a.i("gen_ai.request.max_tokens", call.max_tokens);
    a.f("gen_ai.request.temperature", call.temperature);
    a.f("gen_ai.request.top_p", 1.0);
    a.i("gen_ai.request.n", 1);
    a.i("gen_ai.usage.prompt_tokens", call.input);
    a.i("gen_ai.usage.completion_tokens", call.output);
    a.f("gen_ai.latency.time_in_queue", secs(t.queue_ns));
    a.f(
        "gen_ai.latency.time_to_first_token",
        secs(t.queue_ns + t.prefill_ns),
    );
    a.f("gen_ai.latency.time_in_model_prefill", secs(t.prefill_ns));
    a.f("gen_ai.latency.time_in_model_decode", secs(t.decode_ns));
    a.f(
        "gen_ai.latency.time_in_model_inference",
        secs(t.prefill_ns + t.decode_ns),
    );
    a.f("gen_ai.latency.e2e", secs(e2e));
    out.push(make_span(
        cx,
        call.server_id,
        Some(client_id),
        "llm_request".to_owned(),
        SpanKind::Server,
        Svc::Vllm,
        "vllm.llm_engine",
        (arrival, arrival + e2e),
        (StatusCode::Unset, String::new()),
        a,
        Vec::new(),
        Vec::new(),
    ));
}
