//! Plans runs (one trace each): conversation turns, async sub-agent jobs and batch requests.
//!
//! A plan is a [`Node`] tree with every duration drawn up front; only the LLM calls' server
//! time is left to the shared-server simulation.

use crate::apps::{App, ToolDef};
use crate::attrs::{Dialect, Put};
use crate::config::{PlantedCause, WorkloadConfig};
use crate::plan::{Body, LlmCall, Node, SpanSpec};
use crate::resources::{Svc, VLLM_ADDRESS};
use crate::util::{
    block_align, hex_id, int, int_spread, lognormal_ms, lognormal_spread, mix64, ms, ms_spread,
    pick, rng_for, secs, uni, IdGen, SEC,
};
use rand::rngs::StdRng;
use rand::Rng;
use tailscope_model::{Attribute, Link, SpanId, SpanKind, StatusCode, TraceId};

/// Prefix-cache owners above this are sub-agents, async jobs and batch requests.
pub(crate) const AUX_OWNER_BASE: u64 = 1 << 40;

const SCOPE_APP: &str = "agent_app";
const SCOPE_HTTP: &str = "opentelemetry.instrumentation.fastapi";
const SCOPE_DB: &str = "opentelemetry.instrumentation.asyncpg";
const SCOPE_MCP_CLIENT: &str = "mcp.client";
const SCOPE_MCP_SERVER: &str = "mcp.server";
const SCOPE_PG: &str = "pgbouncer";
const SCOPE_MSG: &str = "opentelemetry.instrumentation.redis";
const SCOPE_REDIS: &str = "opentelemetry.instrumentation.redis";
const EMBED_MODEL: &str = "text-embedding-3-small";
const MCP_PROTOCOL: &str = "2025-06-18";
/// Most output tokens of one call when the variance widens output lengths.
const MAX_OUTPUT: i64 = 4_000;

/// A user conversation: a sequence of turns on one application.
#[derive(Debug)]
pub(crate) struct Conversation {
    pub(crate) id: String,
    pub(crate) app: App,
    pub(crate) dialect: Dialect,
    pub(crate) svc: Svc,
    /// Prefix-cache key.
    pub(crate) owner: u64,
    pub(crate) turns_total: usize,
    pub(crate) next_turn: usize,
    /// Input and output tokens of the previous turn's last LLM call.
    pub(crate) last_input: i64,
    pub(crate) last_output: i64,
    pub(crate) system_tokens: i64,
    pub(crate) mcp_session: Option<String>,
    /// A turn is in flight.
    pub(crate) active: bool,
    pub(crate) rng: StdRng,
}

impl Conversation {
    pub(crate) fn new(idx: usize, cfg: &WorkloadConfig) -> Self {
        let mut rng = rng_for(cfg.seed, 0x1000 + idx as u64);
        let roll: f64 = rng.random();
        let app = if roll < 0.45 {
            App::Copilot
        } else if roll < 0.72 {
            App::Support
        } else {
            App::Research
        };
        let (dialect, svc) = match app {
            App::Support => (Dialect::OpenInference, Svc::SupportBot),
            App::Copilot | App::Research => {
                if rng.random_bool(0.3) {
                    (Dialect::Deprecated, Svc::AgentApiLegacy)
                } else {
                    (Dialect::Current, Svc::AgentApi)
                }
            }
        };
        let turns_total = int(&mut rng, cfg.turns.0 as i64, cfg.turns.1 as i64) as usize;
        let system_tokens = app.system_tokens() + int(&mut rng, 0, 250);
        Self {
            id: hex_id("conv_", mix64(cfg.seed ^ mix64(idx as u64 + 1))),
            app,
            dialect,
            svc,
            owner: idx as u64,
            turns_total,
            next_turn: 0,
            last_input: 0,
            last_output: 0,
            system_tokens,
            mcp_session: None,
            active: false,
            rng,
        }
    }

    pub(crate) fn has_more_turns(&self) -> bool {
        self.next_turn < self.turns_total
    }
}

/// A slow-down planted in a plan: which cause, on which span, how much it adds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planted {
    pub(crate) cause: PlantedCause,
    pub(crate) span_id: SpanId,
    pub(crate) extra_ns: i64,
}

/// An async sub-agent started by a turn: its own trace, linked to the spawning span.
#[derive(Debug)]
pub(crate) struct JobPlan {
    pub(crate) trace_id: TraceId,
    pub(crate) root: Node,
    pub(crate) spawn_id: SpanId,
    /// Queue delay between the publish and the worker picking the task up.
    pub(crate) dispatch_ns: i64,
    pub(crate) conversation_id: String,
}

/// One planned turn.
#[derive(Debug)]
pub(crate) struct TurnPlan {
    pub(crate) trace_id: TraceId,
    pub(crate) root: Node,
    pub(crate) planted: Option<Planted>,
    pub(crate) job: Option<JobPlan>,
}

/// Draws nodes for one run; borrows the conversation's RNG and the shared id generator.
pub(crate) struct Builder<'a> {
    pub(crate) rng: &'a mut StdRng,
    pub(crate) ids: &'a mut IdGen,
    pub(crate) cfg: &'a WorkloadConfig,
    pub(crate) next_owner: &'a mut u64,
    pub(crate) dialect: Dialect,
    pub(crate) svc: Svc,
}

fn client_dur(node: &Node) -> i64 {
    match &node.body {
        Body::Remote {
            up_ns,
            server,
            down_ns,
        } => up_ns + node_len(server) + down_ns + node.tail_ns,
        _ => node_len(node),
    }
}

/// Planned length of a node without LLM calls.
fn node_len(node: &Node) -> i64 {
    let body = match &node.body {
        Body::Leaf(d) => *d,
        Body::Seq(c) => c.iter().map(|n| n.lead_ns + node_len(n)).sum(),
        Body::Par(c) => c.iter().map(|n| n.lead_ns + node_len(n)).max().unwrap_or(0),
        Body::Remote {
            up_ns,
            server,
            down_ns,
        } => up_ns + server.lead_ns + node_len(server) + down_ns,
        Body::Llm(_) => 0,
    };
    body + node.tail_ns
}

impl Builder<'_> {
    fn spec(
        &mut self,
        name: impl Into<String>,
        kind: SpanKind,
        svc: Svc,
        scope: &'static str,
        attrs: Vec<Attribute>,
    ) -> SpanSpec {
        SpanSpec::new(self.ids.span(), name, kind, svc, scope, attrs)
    }

    fn put_conversation(&self, a: &mut Vec<Attribute>, conv_id: &str) {
        match self.dialect {
            Dialect::OpenInference => a.s("session.id", conv_id),
            Dialect::Current | Dialect::Deprecated => a.s("gen_ai.conversation.id", conv_id),
        }
    }

    fn put_db_system(&self, a: &mut Vec<Attribute>) {
        match self.dialect {
            Dialect::Deprecated => a.s("db.system", "postgresql"),
            Dialect::Current | Dialect::OpenInference => a.s("db.system.name", "postgresql"),
        }
    }

    fn llm_scope(&self) -> &'static str {
        match self.dialect {
            Dialect::Current => "opentelemetry.instrumentation.openai_v2",
            Dialect::Deprecated => "opentelemetry.instrumentation.openai",
            Dialect::OpenInference => "openinference.instrumentation.openai",
        }
    }

    /// Request-side attributes of a chat client span.
    fn chat_request_attrs(
        &self,
        conv_id: &str,
        agent: &str,
        max_tokens: i64,
        temp: f64,
    ) -> Vec<Attribute> {
        let model = self.cfg.server.model.as_str();
        let mut a = Vec::with_capacity(20);
        match self.dialect {
            Dialect::Current => {
                a.s("gen_ai.operation.name", "chat");
                a.s("gen_ai.provider.name", "openai");
                a.s("gen_ai.request.model", model);
                a.i("gen_ai.request.max_tokens", max_tokens);
                a.f("gen_ai.request.temperature", temp);
                a.b("gen_ai.request.stream", true);
                a.s("gen_ai.conversation.id", conv_id);
                a.s("gen_ai.agent.name", agent);
                a.s("gen_ai.output.type", "text");
                a.s("server.address", VLLM_ADDRESS);
                a.i("server.port", 8000);
            }
            Dialect::Deprecated => {
                a.s("gen_ai.operation.name", "chat");
                a.s("gen_ai.system", "openai");
                a.s("gen_ai.request.model", model);
                a.i("gen_ai.request.max_tokens", max_tokens);
                a.f("gen_ai.request.temperature", temp);
                a.b("gen_ai.request.stream", true);
                a.s("gen_ai.conversation.id", conv_id);
                a.s("llm.request.type", "chat");
                a.s("server.address", VLLM_ADDRESS);
                a.i("server.port", 8000);
            }
            Dialect::OpenInference => {
                a.s("openinference.span.kind", "LLM");
                a.s("llm.model_name", model);
                a.s("llm.provider", "openai");
                a.s("llm.system", "openai");
                a.json(
                    "llm.invocation_parameters",
                    format!(
                        "{{\"max_tokens\":{max_tokens},\"temperature\":{temp},\"stream\":true}}"
                    ),
                );
                a.s("session.id", conv_id);
                a.s("input.mime_type", "application/json");
                a.s("output.mime_type", "application/json");
            }
        }
        a
    }

    fn chat_name(&self) -> String {
        match self.dialect {
            Dialect::OpenInference => "ChatCompletion".to_owned(),
            Dialect::Current | Dialect::Deprecated => format!("chat {}", self.cfg.server.model),
        }
    }

    /// An LLM client span (with its vLLM server span to come from the simulation).
    pub(crate) fn chat(
        &mut self,
        owner: u64,
        conv_id: &str,
        agent: &str,
        input: i64,
        output: i64,
        expected_cache: i64,
    ) -> Node {
        let max_tokens = if output > 900 { 4096 } else { 1024 };
        let temp = f64::from(self.rng.random_range(1u8..=8)) / 10.0;
        let attrs = self.chat_request_attrs(conv_id, agent, max_tokens, temp);
        let name = self.chat_name();
        let scope = self.llm_scope();
        let svc = self.svc;
        let spec = self.spec(name, SpanKind::Client, svc, scope, attrs);
        let call = LlmCall {
            server_id: self.ids.span(),
            dialect: self.dialect,
            owner,
            input,
            output: output.max(2),
            expected_cache,
            max_tokens,
            temperature: temp,
            up_ns: ms(self.rng, 0.8, 3.0),
            down_ns: ms(self.rng, 0.5, 2.5),
            chunk_tokens: int(self.rng, 8, 16),
            stutter: Vec::new(),
            tool_calls: false,
            request_id: format!("chatcmpl-{:016x}", self.rng.random::<u64>()),
            model: self.cfg.server.model.clone(),
        };
        Node::new(spec, Body::Llm(Box::new(call)))
    }

    /// A chat attempt that fails before reaching the server (timeout or gateway error).
    fn failed_chat(&mut self, conv_id: &str, agent: &str, dur: i64) -> Node {
        let mut attrs = self.chat_request_attrs(conv_id, agent, 1024, 0.7);
        let (etype, msg) = match pick(self.rng, 3) {
            0 => ("timeout", "Request timed out."),
            1 => ("503", "Service Unavailable: upstream connect error"),
            _ => ("openai.APIConnectionError", "Connection error."),
        };
        attrs.s("error.type", etype);
        if etype == "503" {
            attrs.i("http.response.status_code", 503);
        }
        let name = self.chat_name();
        let scope = self.llm_scope();
        let svc = self.svc;
        let mut spec = self.spec(name, SpanKind::Client, svc, scope, attrs);
        spec.status = StatusCode::Error;
        msg.clone_into(&mut spec.status_message);
        Node::new(spec, Body::Leaf(dur))
    }

    fn preprocess(
        &mut self,
        msg_tokens: i64,
        prompt_tokens: i64,
        slow: bool,
    ) -> (Node, Option<Planted>) {
        let svc = self.svc;
        let mag = self.cfg.magnitude;
        let oi = self.dialect == Dialect::OpenInference;
        let v = self.cfg.variance;
        // chunking
        let mut a = Vec::new();
        a.i("app.chunk.count", int(self.rng, 1, 6));
        a.i(
            "app.document.bytes",
            msg_tokens * 4 + int(self.rng, 0, 4000),
        );
        a.s("app.chunker", "recursive_character");
        if oi {
            a.s("openinference.span.kind", "CHAIN");
        }
        let chunk_spec = self.spec("chunk_text", SpanKind::Internal, svc, SCOPE_APP, a);
        let chunk = Node::new(chunk_spec, Body::Leaf(ms_spread(self.rng, 1.5, 9.0, v)))
            .lead(ms(self.rng, 0.05, 0.3));
        // embeddings
        let mut a = Vec::new();
        match self.dialect {
            Dialect::Current => {
                a.s("gen_ai.operation.name", "embeddings");
                a.s("gen_ai.provider.name", "openai");
                a.s("gen_ai.request.model", EMBED_MODEL);
                a.i("gen_ai.usage.input_tokens", msg_tokens);
                a.i("gen_ai.embeddings.dimension.count", 1536);
            }
            Dialect::Deprecated => {
                a.s("gen_ai.operation.name", "embeddings");
                a.s("gen_ai.system", "openai");
                a.s("gen_ai.request.model", EMBED_MODEL);
                a.i("gen_ai.usage.prompt_tokens", msg_tokens);
            }
            Dialect::OpenInference => {
                a.s("openinference.span.kind", "EMBEDDING");
                a.s("embedding.model_name", EMBED_MODEL);
                a.i("llm.token_count.prompt", msg_tokens);
            }
        }
        a.s("server.address", "api.openai.com");
        a.i("server.port", 443);
        let embed_name = if oi {
            "CreateEmbeddingResponse".to_owned()
        } else {
            format!("embeddings {EMBED_MODEL}")
        };
        let embed_scope = self.llm_scope();
        let embed_spec = self.spec(embed_name, SpanKind::Client, svc, embed_scope, a);
        let embed = Node::new(
            embed_spec,
            Body::Leaf(lognormal_spread(self.rng, 55.0, 0.35, 20.0, 400.0, v)),
        )
        .lead(ms(self.rng, 0.05, 0.3));
        // prompt assembly / tokenising
        let mut a = Vec::new();
        a.i("app.prompt.tokens", prompt_tokens);
        a.s("app.tokenizer", "llama3");
        if oi {
            a.s("openinference.span.kind", "CHAIN");
        }
        let asm_spec = self.spec("prompt.assemble", SpanKind::Internal, svc, SCOPE_APP, a);
        let asm_ms = 1.0 + prompt_tokens as f64 / 4000.0;
        let assemble = Node::new(
            asm_spec,
            Body::Leaf(ms_spread(self.rng, asm_ms, asm_ms * 2.5, v)),
        )
        .lead(ms(self.rng, 0.05, 0.3));
        let mut children = vec![chunk, embed, assemble];
        let mut planted = None;
        if slow {
            let which = pick(self.rng, children.len());
            let extra = planted_ns(self.rng, mag, 1.0);
            if let Some(n) = children.get_mut(which) {
                if let Body::Leaf(d) = &mut n.body {
                    *d += extra;
                }
                if let Some(id) = n.id() {
                    planted = Some(Planted {
                        cause: PlantedCause::Preprocessing,
                        span_id: id,
                        extra_ns: extra,
                    });
                }
            }
        }
        let mut a = Vec::new();
        if oi {
            a.s("openinference.span.kind", "CHAIN");
        }
        a.i("app.message.tokens", msg_tokens);
        let spec = self.spec("preprocess", SpanKind::Internal, svc, SCOPE_APP, a);
        let node = Node::new(spec, Body::Seq(children))
            .lead(ms(self.rng, 0.3, 1.5))
            .tail(ms(self.rng, 0.05, 0.3));
        (node, planted)
    }

    fn retrieval(&mut self, app: App, ctx_tokens: i64) -> Node {
        let svc = self.svc;
        let top_k = int(self.rng, 4, 12);
        let mut a = Vec::new();
        let name = match self.dialect {
            Dialect::OpenInference => {
                a.s("openinference.span.kind", "RETRIEVER");
                "retrieve".to_owned()
            }
            Dialect::Current | Dialect::Deprecated => {
                a.s("gen_ai.operation.name", "retrieval");
                format!("retrieval {}", app.data_source())
            }
        };
        a.s("gen_ai.data_source.id", app.data_source());
        a.i("app.retrieval.top_k", top_k);
        a.i("app.retrieval.context_tokens", ctx_tokens);
        a.s("server.address", "qdrant.rag.svc.cluster.local");
        a.i("server.port", 6333);
        let spec = self.spec(name, SpanKind::Client, svc, "agent_app.rag", a);
        Node::new(
            spec,
            Body::Leaf(lognormal_spread(
                self.rng,
                45.0,
                0.4,
                12.0,
                400.0,
                self.cfg.variance,
            )),
        )
        .lead(ms(self.rng, 0.1, 0.6))
    }

    fn pool_acquire(&mut self, pool: &str, wait: i64) -> Node {
        let svc = self.svc;
        let mut a = Vec::new();
        a.s("db.client.connection.pool.name", pool);
        a.f("db.client.connection.wait_time", secs(wait));
        self.put_db_system(&mut a);
        a.i("app.pool.max_size", 20);
        let spec = self.spec("pool.acquire", SpanKind::Internal, svc, SCOPE_DB, a);
        Node::new(spec, Body::Leaf(wait + ms(self.rng, 0.01, 0.06))).lead(ms(self.rng, 0.05, 0.3))
    }

    /// A Redis command as redis-py's OpenTelemetry instrumentation writes it: named
    /// after the command, `db.system` redis, the statement with its arguments masked.
    fn redis(&mut self, command: &str, args: usize, dur: i64) -> Node {
        let svc = self.svc;
        let mut a = Vec::new();
        a.s("db.system", "redis");
        let masked = std::iter::once(command)
            .chain(std::iter::repeat_n("?", args))
            .collect::<Vec<_>>()
            .join(" ");
        a.s("db.statement", masked);
        a.i("db.redis.args_length", args as i64 + 1);
        a.i("db.redis.database_index", 0);
        a.s("net.peer.name", "semantic-cache.redis.svc.cluster.local");
        a.i("net.peer.port", 6379);
        a.s("net.transport", "ip_tcp");
        let spec = self.spec(command, SpanKind::Client, svc, SCOPE_REDIS, a);
        Node::new(spec, Body::Leaf(dur))
    }

    fn db_query(&mut self, op: &str, table: &str, text: &str) -> Node {
        let svc = self.svc;
        let summary = format!("{op} {table}");
        let mut a = Vec::new();
        self.put_db_system(&mut a);
        a.s("db.operation.name", op);
        a.s("db.query.summary", summary.as_str());
        a.s("db.collection.name", table);
        a.s("db.namespace", "agent");
        if self.dialect == Dialect::Deprecated {
            a.s("db.statement", text);
        } else {
            a.s("db.query.text", text);
        }
        a.s("server.address", "pg-proxy.db.svc.cluster.local");
        a.i("server.port", 6432);
        let spec = self.spec(summary.as_str(), SpanKind::Client, svc, SCOPE_DB, a);
        let mut sa = Vec::new();
        sa.s("db.system.name", "postgresql");
        sa.s("db.operation.name", op);
        sa.s("db.query.summary", summary.as_str());
        sa.s("db.namespace", "agent");
        let sspec = self.spec(
            summary.as_str(),
            SpanKind::Server,
            Svc::PgProxy,
            SCOPE_PG,
            sa,
        );
        let server = Node::new(
            sspec,
            Body::Leaf(lognormal_spread(
                self.rng,
                4.0,
                0.5,
                0.8,
                60.0,
                self.cfg.variance,
            )),
        );
        Node::new(
            spec,
            Body::Remote {
                up_ns: ms(self.rng, 0.2, 0.8),
                server: Box::new(server),
                down_ns: ms(self.rng, 0.2, 0.8),
            },
        )
        .lead(ms(self.rng, 0.02, 0.2))
    }

    fn mcp_attrs(a: &mut Vec<Attribute>, method: &str, session: &str, app: App, req: i64) {
        a.s("mcp.method.name", method);
        a.s("mcp.session.id", session);
        a.s("mcp.protocol.version", MCP_PROTOCOL);
        a.s("jsonrpc.request.id", req.to_string());
        a.s("server.address", app.mcp_address());
        a.s("network.transport", "tcp");
    }

    fn mcp_initialize(&mut self, app: App, session: &str, server_dur: i64) -> Node {
        let svc = self.svc;
        let mut a = Vec::new();
        Self::mcp_attrs(&mut a, "initialize", session, app, 0);
        let spec = self.spec("initialize", SpanKind::Client, svc, SCOPE_MCP_CLIENT, a);
        let mut sa = Vec::new();
        sa.s("mcp.method.name", "initialize");
        sa.s("mcp.session.id", session);
        sa.s("mcp.protocol.version", MCP_PROTOCOL);
        let sspec = self.spec(
            "initialize",
            SpanKind::Server,
            app.mcp(),
            SCOPE_MCP_SERVER,
            sa,
        );
        let server = Node::new(sspec, Body::Leaf(server_dur));
        Node::new(
            spec,
            Body::Remote {
                up_ns: ms(self.rng, 0.5, 2.5),
                server: Box::new(server),
                down_ns: ms(self.rng, 0.5, 2.5),
            },
        )
        .lead(ms(self.rng, 0.1, 0.8))
    }

    /// A write to a store, as its client instrumentation writes it, on `svc`.
    fn store_write(&mut self, svc: Svc, store: usize, dur: i64) -> Node {
        let mut a = Vec::new();
        let (name, scope) = match store {
            0 => {
                a.s("db.system.name", "postgresql");
                a.s("db.operation.name", "INSERT");
                a.s("db.query.summary", "INSERT tickets");
                a.s("db.namespace", "support");
                a.s("server.address", "pg-proxy.db.svc.cluster.local");
                a.i("server.port", 6432);
                ("INSERT tickets", SCOPE_DB)
            }
            1 => {
                a.s("db.system", "redis");
                a.s("db.statement", "SET ? ? ? ?");
                a.s("net.peer.name", "cache.redis.svc.cluster.local");
                a.i("net.peer.port", 6379);
                ("SET", SCOPE_REDIS)
            }
            2 => {
                a.s("db.system.name", "elasticsearch");
                a.s("db.operation.name", "index");
                a.s("server.address", "search.es.svc.cluster.local");
                a.i("server.port", 9200);
                ("index", "opentelemetry.instrumentation.elasticsearch")
            }
            _ => {
                a.s("http.request.method", "PUT");
                a.s("server.address", "objects.s3.amazonaws.com");
                a.i("server.port", 443);
                a.s(
                    "url.full",
                    "https://objects.s3.amazonaws.com/audit/ticket.json",
                );
                a.i("http.response.status_code", 200);
                ("PUT", "opentelemetry.instrumentation.botocore")
            }
        };
        let spec = self.spec(name, SpanKind::Client, svc, scope, a);
        Node::new(spec, Body::Leaf(dur)).lead(ms(self.rng, 0.1, 1.0))
    }

    /// One MCP `tools/call`; returns the node and the result tokens it adds.
    fn tool_call(
        &mut self,
        app: App,
        session: &str,
        tool: ToolDef,
        server_dur: i64,
    ) -> (Node, i64) {
        let svc = self.svc;
        let result = int(self.rng, tool.result.0, tool.result.1);
        let req = int(self.rng, 1, 9999);
        let call_id = format!("call_{:012x}", self.rng.random::<u64>() & 0xffff_ffff_ffff);
        let mut a = Vec::new();
        Self::mcp_attrs(&mut a, "tools/call", session, app, req);
        match self.dialect {
            Dialect::OpenInference => {
                a.s("openinference.span.kind", "TOOL");
                a.s("tool.name", tool.name);
            }
            Dialect::Current | Dialect::Deprecated => {
                a.s("gen_ai.operation.name", "execute_tool");
                a.s("gen_ai.tool.name", tool.name);
            }
        }
        a.s("gen_ai.tool.call.id", call_id.as_str());
        a.i("app.result_tokens", result);
        let name = format!("tools/call {}", tool.name);
        let spec = self.spec(name.as_str(), SpanKind::Client, svc, SCOPE_MCP_CLIENT, a);
        let mut sa = Vec::new();
        sa.s("mcp.method.name", "tools/call");
        sa.s("mcp.session.id", session);
        sa.s("gen_ai.operation.name", "execute_tool");
        sa.s("gen_ai.tool.name", tool.name);
        sa.s("gen_ai.tool.call.id", call_id);
        sa.s("jsonrpc.request.id", req.to_string());
        let sspec = self.spec(name, SpanKind::Server, app.mcp(), SCOPE_MCP_SERVER, sa);
        let server = Node::new(sspec, Body::Leaf(server_dur));
        let node = Node::new(
            spec,
            Body::Remote {
                up_ns: ms(self.rng, 0.5, 3.0),
                server: Box::new(server),
                down_ns: ms(self.rng, 0.5, 3.0),
            },
        );
        (node, result)
    }

    fn tool_dur(&mut self, tool: ToolDef) -> i64 {
        let d = lognormal_spread(
            self.rng,
            tool.median_ms,
            0.45,
            5.0,
            8_000.0,
            self.cfg.variance,
        );
        let d = match &self.cfg.tool_speedup {
            Some((name, f)) if name == tool.name => {
                (d as f64 * (1.0 - f.clamp(0.0, 1.0))).round() as i64
            }
            _ => d,
        };
        match &self.cfg.tool_cache {
            // the hit is drawn from the duration draw itself: no other draw moves
            Some((name, rate, hit_ns)) if name == tool.name => {
                let u = crate::util::mix64(d as u64 ^ self.cfg.seed.rotate_left(17)) as f64
                    / u64::MAX as f64;
                if u < *rate {
                    *hit_ns
                } else {
                    d
                }
            }
            _ => d,
        }
    }

    fn agent_attrs(&self, agent: &str, conv_id: &str, step: usize) -> Vec<Attribute> {
        let mut a = Vec::new();
        match self.dialect {
            Dialect::OpenInference => {
                a.s("openinference.span.kind", "AGENT");
                a.s("agent.name", agent);
            }
            Dialect::Current | Dialect::Deprecated => {
                a.s("gen_ai.operation.name", "invoke_agent");
                a.s("gen_ai.agent.name", agent);
                a.s("gen_ai.agent.id", format!("agt_{agent}"));
            }
        }
        self.put_conversation(&mut a, conv_id);
        a.i("app.agent.step", step as i64);
        a
    }

    fn agent_name(&self, agent: &str) -> String {
        match self.dialect {
            Dialect::OpenInference => agent.to_owned(),
            Dialect::Current | Dialect::Deprecated => format!("invoke_agent {agent}"),
        }
    }
}

/// A planted delay: `scale` × magnitude × uniform 1.5–3.5 s (large enough to stand out of the
/// natural variation of a turn at magnitude 1).
pub(crate) fn planted_ns(rng: &mut StdRng, magnitude: f64, scale: f64) -> i64 {
    (scale * magnitude * uni(rng, 1.5, 3.5) * SEC as f64) as i64
}

/// How a tool step runs its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolMode {
    Normal,
    Waterfall,
    Straggler,
    NPlusOne,
    /// One call whose tool server writes to several stores one after another.
    Writes,
}

/// The tool part of one agent step: nodes (already led), result tokens, planted slow-down.
struct ToolPhase {
    nodes: Vec<Node>,
    result_tokens: i64,
    planted: Option<Planted>,
}

fn tool_phase(
    b: &mut Builder<'_>,
    app: App,
    session: &mut Option<String>,
    mode: ToolMode,
    cold: bool,
    step_id: SpanId,
) -> ToolPhase {
    let mag = b.cfg.magnitude;
    let mut nodes = Vec::new();
    let mut planted = None;
    if cold || session.is_none() {
        let sid = format!("mcp-{:016x}", b.rng.random::<u64>());
        let dur = if cold {
            planted_ns(b.rng, mag, 1.0)
        } else {
            ms(b.rng, 12.0, 45.0)
        };
        let init = b.mcp_initialize(app, &sid, dur);
        if cold {
            if let Some(id) = init.id() {
                planted = Some(Planted {
                    cause: PlantedCause::ToolColdStart,
                    span_id: id,
                    extra_ns: client_dur(&init),
                });
            }
        }
        nodes.push(init);
        *session = Some(sid);
    }
    let sid = session.clone().unwrap_or_default();
    let tools = app.tools();
    let mut result_tokens = 0;
    match mode {
        ToolMode::Normal | ToolMode::Straggler => {
            let k = match (mode, app) {
                (ToolMode::Straggler, _) => int(b.rng, 3, 5) as usize,
                (_, App::Research) => int(b.rng, 2, 5) as usize,
                _ => int(b.rng, 1, 2) as usize,
            };
            let first = pick(b.rng, tools.len());
            let mut calls = Vec::with_capacity(k);
            for j in 0..k {
                let tool = if app == App::Research {
                    // Research fans out over searches.
                    tools[(first + j) % 2]
                } else {
                    tools[(first + j) % tools.len()]
                };
                let dur = b.tool_dur(tool);
                let (node, r) = b.tool_call(app, &sid, tool, dur);
                result_tokens += r;
                calls.push(node.lead(ms(b.rng, 0.05, 1.5)));
            }
            if mode == ToolMode::Straggler {
                let which = pick(b.rng, calls.len());
                let extra = planted_ns(b.rng, mag, 1.1);
                if let Some(Body::Remote { server, .. }) = calls.get_mut(which).map(|n| &mut n.body)
                {
                    if let Body::Leaf(d) = &mut server.body {
                        *d += extra;
                    }
                }
                let durs: Vec<i64> = calls.iter().map(|n| n.lead_ns + client_dur(n)).collect();
                let straggler = durs.get(which).copied().unwrap_or(0);
                let others = durs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != which)
                    .map(|(_, d)| *d)
                    .max()
                    .unwrap_or(0);
                if let Some(id) = calls.get(which).and_then(Node::id) {
                    planted = Some(Planted {
                        cause: PlantedCause::FanoutStraggler,
                        span_id: id,
                        extra_ns: (straggler - others).max(1),
                    });
                }
            }
            if calls.len() == 1 {
                nodes.extend(calls);
            } else {
                nodes.push(Node::group(Body::Par(calls)).lead(ms(b.rng, 0.1, 0.8)));
            }
        }
        ToolMode::Waterfall => {
            let k = int(b.rng, 3, tools.len() as i64) as usize;
            let first = pick(b.rng, tools.len());
            let mut durs = Vec::with_capacity(k);
            for j in 0..k {
                let tool = tools[(first + j) % tools.len()];
                let dur = (mag * uni(b.rng, 0.7, 1.3) * SEC as f64) as i64;
                let (node, r) = b.tool_call(app, &sid, tool, dur);
                result_tokens += r;
                let node = node.lead(ms(b.rng, 0.2, 2.0));
                durs.push(client_dur(&node));
                let parallel = j > 0 && b.cfg.tool_parallel.as_deref() == Some(tool.name);
                match nodes.pop() {
                    // the what-if made real: this call runs beside the one before it
                    Some(before) if parallel => {
                        nodes.push(Node::group(Body::Par(vec![before, node])));
                    }
                    before => {
                        nodes.extend(before);
                        nodes.push(node);
                    }
                }
            }
            let sum: i64 = durs.iter().sum();
            let max = durs.iter().copied().max().unwrap_or(0);
            planted = Some(Planted {
                cause: PlantedCause::SequentialWaterfall,
                span_id: step_id,
                extra_ns: (sum - max).max(1),
            });
        }
        ToolMode::Writes => {
            let tool = tools[pick(b.rng, tools.len())];
            let dur = b.tool_dur(tool);
            let (mut node, r) = b.tool_call(app, &sid, tool, dur);
            result_tokens += r;
            let stores = int(b.rng, 3, 4) as usize;
            let mut writes = Vec::with_capacity(stores + 1);
            let mut durs = Vec::with_capacity(stores);
            let svc = app.mcp();
            for k in 0..stores {
                let d = (mag * uni(b.rng, 0.15, 0.4) * SEC as f64) as i64;
                durs.push(d);
                writes.push(b.store_write(svc, k, d));
            }
            if let Body::Remote { server, .. } = &mut node.body {
                if let Body::Leaf(d) = server.body {
                    writes.push(Node::group(Body::Leaf(d)));
                    server.body = Body::Seq(writes);
                }
                if let Some(id) = server.id() {
                    let sum: i64 = durs.iter().sum();
                    let max = durs.iter().copied().max().unwrap_or(0);
                    planted = Some(Planted {
                        cause: PlantedCause::WriteAmplification,
                        span_id: id,
                        extra_ns: (sum - max).max(1),
                    });
                }
            }
            nodes.push(node.lead(ms(b.rng, 0.05, 1.5)));
        }
        ToolMode::NPlusOne => {
            let n = 8 + pick(b.rng, 5);
            let tool = app.item_tool();
            let mut durs = Vec::with_capacity(n);
            for _ in 0..n {
                let dur = lognormal_ms(b.rng, 250.0 * mag, 0.25, 5.0, 20_000.0);
                let (node, r) = b.tool_call(app, &sid, tool, dur);
                result_tokens += r;
                let node = node.lead(ms(b.rng, 0.2, 1.5));
                durs.push(client_dur(&node));
                nodes.push(node);
            }
            let sum: i64 = durs.iter().sum();
            let mean = sum / durs.len().max(1) as i64;
            planted = Some(Planted {
                cause: PlantedCause::NPlusOne,
                span_id: step_id,
                extra_ns: (sum - mean).max(1),
            });
        }
    }
    ToolPhase {
        nodes,
        result_tokens,
        planted,
    }
}

/// A synchronous sub-agent: two LLM calls around a tool call, its own prompt chain.
fn sub_agent(
    b: &mut Builder<'_>,
    app: App,
    parent_conv: &str,
    session: &mut Option<String>,
) -> (Node, i64) {
    *b.next_owner += 1;
    let owner = *b.next_owner;
    let conv_id = format!("{parent_conv}/researcher-{}", owner - AUX_OWNER_BASE);
    let in1 = 600 + int(b.rng, 100, 300);
    let out1 = int(b.rng, 30, 80);
    let mut chat1 = b
        .chat(owner, &conv_id, "researcher", in1, out1, 0)
        .lead(ms(b.rng, 0.2, 1.0));
    if let Body::Llm(call) = &mut chat1.body {
        call.tool_calls = true;
    }
    let sub_id = b.ids.span();
    let phase = tool_phase(b, app, session, ToolMode::Normal, false, sub_id);
    let in2 = in1 + out1 + phase.result_tokens;
    let out2 = int_spread(b.rng, 150, 400, b.cfg.variance, 16, MAX_OUTPUT);
    let chat2 = b
        .chat(
            owner,
            &conv_id,
            "researcher",
            in2,
            out2,
            block_align(in1, b.cfg.server.block_size),
        )
        .lead(ms(b.rng, 0.2, 1.0));
    let mut children = vec![chat1];
    children.extend(phase.nodes);
    children.push(chat2);
    let mut a = b.agent_attrs("researcher", &conv_id, 0);
    a.i("app.result_tokens", out2);
    let name = b.agent_name("researcher");
    let svc = b.svc;
    let spec = SpanSpec::new(sub_id, name, SpanKind::Internal, svc, SCOPE_APP, a);
    let node = Node::new(spec, Body::Seq(children))
        .lead(ms(b.rng, 0.2, 1.0))
        .tail(ms(b.rng, 0.1, 0.5));
    (node, out2)
}

/// Plans one turn of `conv`. `cause` is an in-trace planted cause (not `queue` / `kv_eviction`,
/// which the event loop plants through other tenants' bursts).
pub(crate) fn plan_turn(
    conv: &mut Conversation,
    cfg: &WorkloadConfig,
    ids: &mut IdGen,
    next_owner: &mut u64,
    cause: Option<PlantedCause>,
) -> TurnPlan {
    let app = conv.app;
    let conv_id = conv.id.clone();
    let turn = conv.next_turn;
    let block = cfg.server.block_size;
    let mag = cfg.magnitude;
    let mut b = Builder {
        rng: &mut conv.rng,
        ids,
        cfg,
        next_owner,
        dialect: conv.dialect,
        svc: conv.svc,
    };
    let trace_id = b.ids.trace();
    let v = cfg.variance;
    let msg = int_spread(b.rng, 20, 250, v, 5, 4_000);
    let (clo, chi) = app.context_tokens();
    let ctx = int_spread(b.rng, clo, chi, v, 50, 12_000);
    let first_input = if turn == 0 {
        conv.system_tokens + msg + ctx
    } else {
        conv.last_input + conv.last_output + msg + ctx
    };
    let mut planted: Option<Planted> = None;
    let mut children = Vec::new();

    // the semantic cache, first: a hit answers the turn without a model call
    let cache = cfg.semantic_cache.map(|rate| {
        let hit = b.rng.random_bool(rate.clamp(0.0, 1.0));
        let slow = cause == Some(PlantedCause::SlowCacheLookup);
        let dur = if slow {
            planted_ns(b.rng, mag, 0.15)
        } else {
            lognormal_ms(b.rng, 0.3, 0.5, 0.05, 5.0)
        };
        let get = b.redis("GET", 1, dur).lead(ms(b.rng, 0.05, 0.3));
        if slow {
            if let Some(id) = get.id() {
                planted = Some(Planted {
                    cause: PlantedCause::SlowCacheLookup,
                    span_id: id,
                    extra_ns: dur,
                });
            }
        }
        (hit, get)
    });
    if let Some((true, get)) = cache {
        // a hit: the cached answer is stored with the conversation, nothing else runs
        let insert = b.db_query(
            "INSERT",
            "messages",
            "INSERT INTO messages (conversation_id, role, content) VALUES ($1, $2, $3)",
        );
        let mut a = Vec::new();
        b.put_conversation(&mut a, &conv_id);
        a.i("app.turn.index", turn as i64);
        let route = app.route();
        a.s("http.request.method", "POST");
        a.s("http.route", route);
        a.i("http.response.status_code", 200);
        let svc = b.svc;
        let spec = b.spec(
            format!("POST {route}"),
            SpanKind::Server,
            svc,
            SCOPE_HTTP,
            a,
        );
        let root = Node::new(spec, Body::Seq(vec![get, insert])).tail(ms(b.rng, 0.2, 1.0));
        conv.next_turn += 1;
        return TurnPlan {
            trace_id,
            root,
            planted,
            job: None,
        };
    }
    let cached = cache.is_some();
    if let Some((false, get)) = cache {
        children.push(get);
    }

    let (pre, p) = b.preprocess(msg, first_input, cause == Some(PlantedCause::Preprocessing));
    planted = planted.or(p);
    children.push(pre);
    children.push(b.retrieval(app, ctx));
    let pool_name = if app == App::Support {
        "pg-support"
    } else {
        "pg-main"
    };
    let wait = if cause == Some(PlantedCause::PoolWait) {
        planted_ns(b.rng, mag, 1.0)
    } else {
        lognormal_spread(b.rng, 0.25, 0.8, 0.01, 4.0, v)
    };
    let acquire = b.pool_acquire(pool_name, wait);
    if cause == Some(PlantedCause::PoolWait) {
        if let Some(id) = acquire.id() {
            planted = Some(Planted {
                cause: PlantedCause::PoolWait,
                span_id: id,
                extra_ns: wait,
            });
        }
    }
    children.push(acquire);
    children.push(b.db_query(
        "SELECT",
        "messages",
        "SELECT role, content FROM messages WHERE conversation_id = $1 ORDER BY created_at",
    ));

    // Agent steps: tool-calling steps, then the final answer.
    let (slo, shi) = app.tool_steps();
    let mut tool_steps = int(b.rng, slo, shi) as usize;
    if cause.is_some_and(PlantedCause::needs_tools) {
        tool_steps = tool_steps.max(1);
    }
    let cause_step = pick(b.rng, tool_steps.max(1));
    let retry_step = pick(b.rng, tool_steps + 1);
    let mut input = first_input;
    let mut expected = if turn == 0 {
        0
    } else {
        block_align(conv.last_input, block)
    };
    let mut last_call = (input, 0);
    let mut session = conv.mcp_session.take();
    for s in 0..=tool_steps {
        let is_final = s == tool_steps;
        let step_id = b.ids.span();
        let mut step_children = Vec::new();
        let mut chat_lead = ms(b.rng, 0.2, 1.2);
        if cause == Some(PlantedCause::Retry) && s == retry_step {
            let dur = planted_ns(b.rng, mag, 0.9);
            let backoff = ms(b.rng, 100.0, 400.0);
            let failed = b.failed_chat(&conv_id, app.agent(), dur).lead(chat_lead);
            if let Some(id) = failed.id() {
                planted = Some(Planted {
                    cause: PlantedCause::Retry,
                    span_id: id,
                    extra_ns: dur + backoff,
                });
            }
            step_children.push(failed);
            chat_lead = backoff;
        }
        let output = if is_final {
            let (lo, hi) = app.answer_tokens();
            int_spread(b.rng, lo, hi, v, 16, MAX_OUTPUT)
        } else {
            int_spread(b.rng, 25, 90, v, 8, MAX_OUTPUT)
        };
        let mut chat = b
            .chat(conv.owner, &conv_id, app.agent(), input, output, expected)
            .lead(chat_lead);
        if let Body::Llm(call) = &mut chat.body {
            call.tool_calls = !is_final;
        }
        if is_final && cause == Some(PlantedCause::StreamStutter) {
            if let Body::Llm(call) = &mut chat.body {
                let chunks = 1 + (output - 1 + call.chunk_tokens - 1) / call.chunk_tokens;
                let gaps = int(b.rng, 2, 4);
                let total = planted_ns(b.rng, mag, 1.0);
                let mut left = total;
                for g in 0..gaps {
                    let at = int(b.rng, 1, (chunks - 1).max(1)) as usize;
                    let gap = if g == gaps - 1 { left } else { total / gaps };
                    left -= gap;
                    call.stutter.push((at, gap));
                }
                call.stutter.sort_unstable();
                if let Some(id) = chat.id() {
                    planted = Some(Planted {
                        cause: PlantedCause::StreamStutter,
                        span_id: id,
                        extra_ns: total,
                    });
                }
            }
        }
        step_children.push(chat);
        last_call = (input, output);
        let mut results = 0;
        if !is_final {
            let tool_cause = cause.filter(|c| c.needs_tools() && s == cause_step);
            let mode = match tool_cause {
                Some(PlantedCause::SequentialWaterfall) => ToolMode::Waterfall,
                Some(PlantedCause::FanoutStraggler) => ToolMode::Straggler,
                Some(PlantedCause::NPlusOne) => ToolMode::NPlusOne,
                Some(PlantedCause::WriteAmplification) => ToolMode::Writes,
                _ => ToolMode::Normal,
            };
            let cold = tool_cause == Some(PlantedCause::ToolColdStart);
            let phase = tool_phase(&mut b, app, &mut session, mode, cold, step_id);
            results += phase.result_tokens;
            step_children.extend(phase.nodes);
            planted = phase.planted.or(planted);
            if app == App::Research && tool_cause.is_none() && b.rng.random_bool(0.3) {
                let (sub, r) = sub_agent(&mut b, app, &conv_id, &mut session);
                results += r;
                step_children.push(sub);
            }
        }
        let attrs = b.agent_attrs(app.agent(), &conv_id, s);
        let name = b.agent_name(app.agent());
        let svc = b.svc;
        let spec = SpanSpec::new(step_id, name, SpanKind::Internal, svc, SCOPE_APP, attrs);
        children.push(
            Node::new(spec, Body::Seq(step_children))
                .lead(ms(b.rng, 0.1, 0.8))
                .tail(ms(b.rng, 0.1, 0.6)),
        );
        expected = block_align(input, block);
        input += output + results;
    }
    conv.mcp_session = session;

    // Persist the exchange.
    let wait = lognormal_spread(b.rng, 0.25, 0.8, 0.01, 4.0, v);
    children.push(b.pool_acquire(pool_name, wait));
    children.push(b.db_query(
        "INSERT",
        "messages",
        "INSERT INTO messages (conversation_id, role, content) VALUES ($1, $2, $3)",
    ));

    if cached {
        // the miss's answer written back to the cache
        let dur = lognormal_ms(b.rng, 0.3, 0.5, 0.05, 5.0);
        children.push(b.redis("SET", 4, dur).lead(ms(b.rng, 0.05, 0.3)));
    }

    // Sometimes hand a background task to a worker (async sub-agent, linked, not awaited).
    let spawn_p = match app {
        App::Research => 0.3,
        App::Copilot => 0.1,
        App::Support => 0.0,
    };
    let mut job = None;
    if b.rng.random_bool(spawn_p) {
        let mut a = Vec::new();
        a.s("messaging.system", "redis");
        a.s("messaging.operation.type", "send");
        a.s("messaging.operation.name", "publish");
        a.s("messaging.destination.name", "agent-tasks");
        a.s(
            "messaging.message.id",
            format!("{:016x}", b.rng.random::<u64>()),
        );
        a.s("app.task.name", "summarize_memory");
        let svc = b.svc;
        let spec = b.spec("publish agent-tasks", SpanKind::Producer, svc, SCOPE_MSG, a);
        let spawn_id = spec.id;
        children.push(Node::new(spec, Body::Leaf(ms(b.rng, 0.3, 1.5))).lead(ms(b.rng, 0.05, 0.4)));
        job = Some(plan_job(
            &mut b,
            trace_id,
            spawn_id,
            &conv_id,
            last_call.0 + last_call.1,
        ));
    }

    let mut a = Vec::new();
    let route = app.route();
    let name = format!("POST {route}");
    if conv.dialect == Dialect::Deprecated {
        a.s("http.method", "POST");
        a.s("http.route", route);
        a.s("http.target", route);
        a.s("http.scheme", "https");
        a.i("http.status_code", 200);
        a.s("net.host.name", "api.example.com");
    } else {
        a.s("http.request.method", "POST");
        a.s("http.route", route);
        a.s("url.path", route);
        a.s("url.scheme", "https");
        a.i("http.response.status_code", 200);
        a.s("server.address", "api.example.com");
        a.i("server.port", 443);
    }
    a.s("user_agent.original", "tailscope-demo-client/1.0");
    b.put_conversation(&mut a, &conv_id);
    a.i("app.turn.index", turn as i64);
    a.i("app.user_message.tokens", msg);
    a.i("app.retrieval.context_tokens", ctx);
    let svc = b.svc;
    let spec = b.spec(name, SpanKind::Server, svc, SCOPE_HTTP, a);
    let root = Node::new(spec, Body::Seq(children)).tail(ms(b.rng, 0.4, 2.0));

    conv.last_input = last_call.0;
    conv.last_output = last_call.1;
    conv.next_turn += 1;
    TurnPlan {
        trace_id,
        root,
        planted,
        job,
    }
}

/// An async memory-summariser job: its own trace, linked to the publishing span.
fn plan_job(
    b: &mut Builder<'_>,
    parent: TraceId,
    spawn_id: SpanId,
    conv_id: &str,
    history: i64,
) -> JobPlan {
    *b.next_owner += 1;
    let owner = *b.next_owner;
    let job_conv = format!("{conv_id}/memory-{}", owner - AUX_OWNER_BASE);
    let trace_id = b.ids.trace();
    let saved = (b.dialect, b.svc);
    b.dialect = Dialect::Current;
    b.svc = Svc::AgentWorker;
    let input = 400 + history / 3;
    let output = int(b.rng, 60, 200);
    let chat = b
        .chat(owner, &job_conv, "memory_summarizer", input, output, 0)
        .lead(ms(b.rng, 0.2, 1.0));
    let attrs = b.agent_attrs("memory_summarizer", &job_conv, 0);
    let name = b.agent_name("memory_summarizer");
    let spec = b.spec(name, SpanKind::Internal, Svc::AgentWorker, SCOPE_APP, attrs);
    let agent = Node::new(spec, Body::Seq(vec![chat]))
        .lead(ms(b.rng, 0.2, 1.0))
        .tail(ms(b.rng, 0.1, 0.5));
    let wait = lognormal_ms(b.rng, 0.25, 0.8, 0.01, 4.0);
    let acquire = b.pool_acquire("pg-main", wait);
    let insert = b.db_query(
        "INSERT",
        "memories",
        "INSERT INTO memories (conversation_id, summary) VALUES ($1, $2)",
    );
    let mut a = Vec::new();
    a.s("messaging.system", "redis");
    a.s("messaging.operation.type", "process");
    a.s("messaging.destination.name", "agent-tasks");
    a.s("app.task.name", "summarize_memory");
    a.s("gen_ai.conversation.id", job_conv.as_str());
    let mut spec = b.spec(
        "process agent-tasks",
        SpanKind::Consumer,
        Svc::AgentWorker,
        SCOPE_MSG,
        a,
    );
    let mut la = Vec::new();
    la.s("app.link.reason", "spawned_by");
    spec.links.push(Link {
        trace_id: parent,
        span_id: spawn_id,
        trace_state: String::new(),
        attributes: la,
    });
    let root = Node::new(spec, Body::Seq(vec![agent, acquire, insert])).tail(ms(b.rng, 0.2, 1.0));
    b.dialect = saved.0;
    b.svc = saved.1;
    JobPlan {
        trace_id,
        root,
        spawn_id,
        dispatch_ns: ms(b.rng, 2.0, 40.0),
        conversation_id: job_conv,
    }
}

/// One request of a batch tenant (used for the bursts that cause queueing and evictions).
pub(crate) fn plan_batch_request(
    rng: &mut StdRng,
    ids: &mut IdGen,
    cfg: &WorkloadConfig,
    next_owner: &mut u64,
    batch_id: &str,
    input: i64,
    output: i64,
) -> (TraceId, Node, String) {
    *next_owner += 1;
    let owner = *next_owner;
    let doc = format!("doc-{:08x}", owner - AUX_OWNER_BASE);
    let conv_id = format!("{batch_id}/{doc}");
    let mut b = Builder {
        rng,
        ids,
        cfg,
        next_owner,
        dialect: Dialect::Current,
        svc: Svc::BatchSummarizer,
    };
    let trace_id = b.ids.trace();
    let chat = b
        .chat(owner, &conv_id, "batch_summarizer", input, output, 0)
        .lead(ms(b.rng, 0.1, 0.6));
    let mut a = Vec::new();
    a.s("app.batch.id", batch_id);
    a.s("app.document.id", doc);
    a.i("app.document.tokens", input);
    let spec = b.spec(
        "summarize_document",
        SpanKind::Internal,
        Svc::BatchSummarizer,
        SCOPE_APP,
        a,
    );
    let root = Node::new(spec, Body::Seq(vec![chat])).tail(ms(b.rng, 0.1, 0.8));
    (trace_id, root, conv_id)
}

/// Time between turns of one conversation (reading and typing).
pub(crate) fn think_time(rng: &mut StdRng) -> i64 {
    lognormal_ms(rng, 9_000.0, 0.5, 2_500.0, 45_000.0)
}
