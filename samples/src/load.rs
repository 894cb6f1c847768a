//! A fast, deterministic stream of realistic agent spans for load tests.

use crate::attrs::Put;
use crate::resources::{Resources, Svc, VLLM_ADDRESS};
use crate::util::{int, lognormal_ms, ms, pick, rng_for, secs, IdGen};
use rand::rngs::StdRng;
use rand::Rng;
use tailscope_model::semconv::promote;
use tailscope_model::{
    AttrValue, Attribute, Batch, Event, Span, SpanId, SpanKind, StatusCode, TraceId,
};

/// Attributes every load span has.
pub const LOAD_ATTRS_PER_SPAN: usize = 20;

/// Generic attributes used to bring each span up to [`LOAD_ATTRS_PER_SPAN`].
const PAD_KEYS: [&str; 20] = [
    "app.tenant.id",
    "app.user.id",
    "app.request.id",
    "app.region",
    "app.release",
    "app.feature_flags",
    "code.function.name",
    "code.file.path",
    "code.line.number",
    "thread.id",
    "thread.name",
    "app.experiment",
    "app.plan",
    "app.client.version",
    "app.retry.count",
    "app.cache.enabled",
    "app.shard",
    "app.priority",
    "app.sampled_by",
    "app.build",
];

#[derive(Clone, Copy)]
enum Shape {
    Root,
    Preprocess,
    Embed,
    Retrieval,
    Acquire,
    Select,
    Agent,
    Chat(usize),
    Llm(usize),
    Tool,
    ToolServer,
    Insert,
}

/// (shape, parent index in the trace, service)
const TRACE: [(Shape, Option<usize>, Svc); 14] = [
    (Shape::Root, None, Svc::AgentApi),
    (Shape::Preprocess, Some(0), Svc::AgentApi),
    (Shape::Embed, Some(1), Svc::AgentApi),
    (Shape::Retrieval, Some(0), Svc::AgentApi),
    (Shape::Acquire, Some(0), Svc::AgentApi),
    (Shape::Select, Some(0), Svc::AgentApi),
    (Shape::Agent, Some(0), Svc::AgentApi),
    (Shape::Chat(0), Some(6), Svc::AgentApi),
    (Shape::Llm(0), Some(7), Svc::Vllm),
    (Shape::Tool, Some(6), Svc::AgentApi),
    (Shape::ToolServer, Some(9), Svc::McpSearch),
    (Shape::Chat(1), Some(6), Svc::AgentApi),
    (Shape::Llm(1), Some(11), Svc::Vllm),
    (Shape::Insert, Some(0), Svc::AgentApi),
];

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";
const TOOLS: [&str; 4] = ["web_search", "fetch_url", "calculator", "get_weather"];

struct TraceCx {
    trace_id: TraceId,
    conv: String,
    input: [i64; 2],
    output: [i64; 2],
    tool: &'static str,
    /// (start, end) per span of the template.
    times: [(i64, i64); 14],
    llm: [(i64, i64, i64); 2],
}

/// Lays out one trace's times: sequential phases under the root, nested calls inside.
/// (start, end) of each template span, and (queue, prefill, decode) of each LLM call.
type Layout = ([(i64, i64); 14], [(i64, i64, i64); 2]);

fn layout(rng: &mut StdRng, start: i64) -> Layout {
    let mut t = [(0i64, 0i64); 14];
    let mut llm = [(0i64, 0i64, 0i64); 2];
    let mut cur = start + ms(rng, 0.3, 1.5);
    // preprocess > embed
    let embed = lognormal_ms(rng, 50.0, 0.3, 15.0, 300.0);
    let off = ms(rng, 0.5, 1.5);
    t[2] = (cur + off, cur + off + embed);
    t[1] = (cur, t[2].1 + ms(rng, 2.0, 8.0));
    cur = t[1].1;
    for (i, (lo, hi)) in [(3usize, (20.0, 90.0)), (4, (0.02, 2.0)), (5, (2.0, 15.0))] {
        let d = ms(rng, lo, hi);
        t[i] = (cur, cur + d);
        cur += d + ms(rng, 0.05, 0.3);
    }
    // agent step: chat, tool, chat
    let agent_start = cur;
    cur += ms(rng, 0.2, 1.0);
    for (k, (chat, server)) in [(7usize, 8usize), (11, 12)].into_iter().enumerate() {
        let up = ms(rng, 0.8, 3.0);
        let queue = ms(rng, 0.0, 5.0);
        let prefill = ms(rng, 30.0, 300.0);
        let decode = ms(rng, 300.0, 2500.0);
        let arrival = cur + up;
        let end = arrival + queue + prefill + decode;
        t[server] = (arrival, end);
        t[chat] = (cur, end + ms(rng, 0.5, 2.5));
        llm[k] = (queue, prefill, decode);
        cur = t[chat].1 + ms(rng, 0.2, 1.0);
        if k == 0 {
            let d = lognormal_ms(rng, 250.0, 0.4, 20.0, 3000.0);
            let up = ms(rng, 0.5, 3.0);
            t[10] = (cur + up, cur + up + d);
            t[9] = (cur, t[10].1 + ms(rng, 0.5, 3.0));
            cur = t[9].1 + ms(rng, 0.2, 1.0);
        }
    }
    t[6] = (agent_start, cur + ms(rng, 0.1, 0.5));
    cur = t[6].1;
    let d = ms(rng, 2.0, 12.0);
    t[13] = (cur, cur + d);
    t[0] = (start, t[13].1 + ms(rng, 0.3, 2.0));
    (t, llm)
}

fn base_attrs(shape: Shape, cx: &TraceCx) -> (String, SpanKind, &'static str, Vec<Attribute>) {
    let mut a = Vec::with_capacity(LOAD_ATTRS_PER_SPAN);
    let (name, kind, scope) = match shape {
        Shape::Root => {
            a.s("http.request.method", "POST");
            a.s("http.route", "/v1/chat");
            a.s("url.path", "/v1/chat");
            a.s("url.scheme", "https");
            a.i("http.response.status_code", 200);
            a.s("server.address", "api.example.com");
            a.s("gen_ai.conversation.id", cx.conv.as_str());
            (
                "POST /v1/chat".to_owned(),
                SpanKind::Server,
                "opentelemetry.instrumentation.fastapi",
            )
        }
        Shape::Preprocess => {
            a.i("app.message.tokens", cx.input[0] / 10);
            ("preprocess".to_owned(), SpanKind::Internal, "agent_app")
        }
        Shape::Embed => {
            a.s("gen_ai.operation.name", "embeddings");
            a.s("gen_ai.provider.name", "openai");
            a.s("gen_ai.request.model", "text-embedding-3-small");
            a.i("gen_ai.usage.input_tokens", cx.input[0] / 10);
            a.s("server.address", "api.openai.com");
            (
                "embeddings text-embedding-3-small".to_owned(),
                SpanKind::Client,
                "opentelemetry.instrumentation.openai_v2",
            )
        }
        Shape::Retrieval => {
            a.s("gen_ai.operation.name", "retrieval");
            a.s("gen_ai.data_source.id", "kb-general");
            a.i("app.retrieval.top_k", 8);
            (
                "retrieval kb-general".to_owned(),
                SpanKind::Client,
                "agent_app.rag",
            )
        }
        Shape::Acquire => {
            a.s("db.client.connection.pool.name", "pg-main");
            a.f(
                "db.client.connection.wait_time",
                secs(cx.times[4].1 - cx.times[4].0) * 0.99,
            );
            a.s("db.system.name", "postgresql");
            (
                "pool.acquire".to_owned(),
                SpanKind::Internal,
                "opentelemetry.instrumentation.asyncpg",
            )
        }
        Shape::Select | Shape::Insert => {
            let op = if matches!(shape, Shape::Select) {
                "SELECT"
            } else {
                "INSERT"
            };
            a.s("db.system.name", "postgresql");
            a.s("db.operation.name", op);
            a.s("db.query.summary", format!("{op} messages"));
            a.s("db.collection.name", "messages");
            a.s("server.address", "pg-proxy.db.svc.cluster.local");
            (
                format!("{op} messages"),
                SpanKind::Client,
                "opentelemetry.instrumentation.asyncpg",
            )
        }
        Shape::Agent => {
            a.s("gen_ai.operation.name", "invoke_agent");
            a.s("gen_ai.agent.name", "copilot");
            a.s("gen_ai.conversation.id", cx.conv.as_str());
            (
                "invoke_agent copilot".to_owned(),
                SpanKind::Internal,
                "agent_app",
            )
        }
        Shape::Chat(k) => {
            let (chat_start, _) = cx.times[if k == 0 { 7 } else { 11 }];
            let (queue, prefill, _) = cx.llm[k];
            let arrival = cx.times[if k == 0 { 8 } else { 12 }].0;
            a.s("gen_ai.operation.name", "chat");
            a.s("gen_ai.provider.name", "openai");
            a.s("gen_ai.request.model", MODEL);
            a.s("gen_ai.conversation.id", cx.conv.as_str());
            a.b("gen_ai.request.stream", true);
            a.i("gen_ai.usage.input_tokens", cx.input[k]);
            a.i("gen_ai.usage.output_tokens", cx.output[k]);
            // The second call re-reads the first call's prompt from the prefix cache.
            let cached = if k == 0 { 0 } else { cx.input[0] / 16 * 16 };
            a.i("gen_ai.usage.cache_read.input_tokens", cached);
            a.f(
                "gen_ai.response.time_to_first_chunk",
                secs(arrival - chat_start + queue + prefill + 1_000_000),
            );
            a.s("server.address", VLLM_ADDRESS);
            (
                format!("chat {MODEL}"),
                SpanKind::Client,
                "opentelemetry.instrumentation.openai_v2",
            )
        }
        Shape::Llm(k) => {
            let (queue, prefill, decode) = cx.llm[k];
            a.i("gen_ai.usage.prompt_tokens", cx.input[k]);
            a.i("gen_ai.usage.completion_tokens", cx.output[k]);
            a.s("gen_ai.response.model", MODEL);
            a.f("gen_ai.latency.time_in_queue", secs(queue));
            a.f("gen_ai.latency.time_to_first_token", secs(queue + prefill));
            a.f("gen_ai.latency.time_in_model_prefill", secs(prefill));
            a.f("gen_ai.latency.time_in_model_decode", secs(decode));
            a.f(
                "gen_ai.latency.time_in_model_inference",
                secs(prefill + decode),
            );
            a.f("gen_ai.latency.e2e", secs(queue + prefill + decode));
            (
                "llm_request".to_owned(),
                SpanKind::Server,
                "vllm.llm_engine",
            )
        }
        Shape::Tool | Shape::ToolServer => {
            a.s("mcp.method.name", "tools/call");
            a.s("mcp.session.id", format!("mcp-{}", &cx.conv[5..]));
            a.s("gen_ai.operation.name", "execute_tool");
            a.s("gen_ai.tool.name", cx.tool);
            let kind = if matches!(shape, Shape::Tool) {
                a.s("server.address", "mcp-search.tools.svc.cluster.local");
                a.i(
                    "app.result_tokens",
                    cx.input[1] - cx.input[0] - cx.output[0],
                );
                SpanKind::Client
            } else {
                SpanKind::Server
            };
            (format!("tools/call {}", cx.tool), kind, "mcp")
        }
    };
    (name, kind, scope, a)
}

fn pad(rng: &mut StdRng, a: &mut Vec<Attribute>) {
    let mut i = 0;
    while a.len() < LOAD_ATTRS_PER_SPAN {
        let Some(key) = PAD_KEYS.get(i) else { break };
        let value = match i % 4 {
            0 => AttrValue::Str(format!("{key}-{:x}", rng.random::<u32>() & 0xfff)),
            1 => AttrValue::Int(int(rng, 0, 10_000)),
            2 => AttrValue::Bool(rng.random_bool(0.5)),
            _ => AttrValue::Str(["eu-west-1", "us-east-1", "ap-south-1"][pick(rng, 3)].to_owned()),
        };
        a.push(Attribute::new(*key, value));
        i += 1;
    }
}

/// Exactly `n` spans of agent traces (14 spans per trace, the last one cut short), each with
/// [`LOAD_ATTRS_PER_SPAN`] attributes, parents before children, deterministic in `seed`.
/// Traces start 50 ms apart from `start_ns`.
pub fn load_spans(seed: u64, n: usize, start_ns: i64) -> Batch {
    let res = Resources::new();
    let mut ids = IdGen::new(seed ^ 0x10AD);
    let mut rng = rng_for(seed, 0x10AD);
    let mut spans = Vec::with_capacity(n);
    let mut trace_no: i64 = 0;
    while spans.len() < n {
        let start = start_ns + trace_no * 50_000_000 + ms(&mut rng, 0.0, 40.0);
        trace_no += 1;
        let (times, llm) = layout(&mut rng, start);
        let in0 = int(&mut rng, 1_500, 12_000);
        let out0 = int(&mut rng, 20, 90);
        let cx = TraceCx {
            trace_id: ids.trace(),
            conv: format!("conv_{:016x}", rng.random::<u64>()),
            input: [in0, in0 + out0 + int(&mut rng, 100, 600)],
            output: [out0, int(&mut rng, 100, 500)],
            tool: TOOLS[pick(&mut rng, TOOLS.len())],
            times,
            llm,
        };
        let mut sids: Vec<SpanId> = Vec::with_capacity(TRACE.len());
        for (i, (shape, parent, svc)) in TRACE.iter().enumerate() {
            if spans.len() >= n {
                break;
            }
            let (name, kind, scope, mut attrs) = base_attrs(*shape, &cx);
            pad(&mut rng, &mut attrs);
            let id = ids.span();
            sids.push(id);
            let (s, e) = cx.times[i];
            let events = if let Shape::Chat(k) = shape {
                let srv = cx.times[if *k == 0 { 8 } else { 12 }];
                let first = srv.0 + cx.llm[*k].0 + cx.llm[*k].1 + 1_000_000;
                (0..3)
                    .map(|j| Event {
                        time_ns: (first + j * (srv.1 - first) / 2).min(e),
                        name: "gen_ai.chunk".to_owned(),
                        attributes: vec![Attribute::new("gen_ai.chunk.tokens", AttrValue::Int(16))],
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let r = res.get(*svc);
            let promoted = promote(&name, s, e, &attrs, &events);
            spans.push(Span {
                trace_id: cx.trace_id,
                span_id: id,
                parent_span_id: parent.and_then(|p| sids.get(p).copied()),
                trace_state: String::new(),
                flags: 1,
                name,
                kind,
                start_ns: s,
                end_ns: e,
                status: StatusCode::Unset,
                status_message: String::new(),
                resource_id: r.id,
                service_name: r.service_name.clone(),
                scope_name: scope.to_owned(),
                scope_version: String::new(),
                attributes: attrs,
                events,
                links: Vec::new(),
                promoted,
            });
        }
    }
    let used: Vec<_> = [Svc::AgentApi, Svc::Vllm, Svc::McpSearch]
        .iter()
        .map(|s| res.get(*s).clone())
        .collect();
    Batch {
        resources: used,
        spans,
        metrics: Vec::new(),
        logs: Vec::new(),
    }
}
