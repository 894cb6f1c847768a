//! Attribute helpers, the semantic-convention dialects, and promotion of analysis fields.

use tailscope_model::{AttrValue, Attribute, OpClass, Promoted};

/// Which attribute names a service (or conversation) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Dialect {
    /// GenAI semantic conventions 1.41 (`gen_ai.provider.name`, `gen_ai.usage.input_tokens`, ...).
    Current,
    /// Deprecated aliases (`gen_ai.system`, `gen_ai.usage.prompt_tokens`, `db.system`, ...).
    Deprecated,
    /// OpenInference (`openinference.span.kind`, `llm.token_count.prompt`, `session.id`, ...).
    OpenInference,
}

/// Appends attributes to a list.
pub(crate) trait Put {
    fn s(&mut self, key: &str, v: impl Into<String>);
    fn i(&mut self, key: &str, v: i64);
    fn f(&mut self, key: &str, v: f64);
    fn b(&mut self, key: &str, v: bool);
    fn json(&mut self, key: &str, v: impl Into<String>);
}

impl Put for Vec<Attribute> {
    fn s(&mut self, key: &str, v: impl Into<String>) {
        self.push(Attribute::new(key, AttrValue::Str(v.into())));
    }
    fn i(&mut self, key: &str, v: i64) {
        self.push(Attribute::new(key, AttrValue::Int(v)));
    }
    fn f(&mut self, key: &str, v: f64) {
        self.push(Attribute::new(key, AttrValue::Double(v)));
    }
    fn b(&mut self, key: &str, v: bool) {
        self.push(Attribute::new(key, AttrValue::Bool(v)));
    }
    fn json(&mut self, key: &str, v: impl Into<String>) {
        self.push(Attribute::new(key, AttrValue::Json(v.into())));
    }
}

/// Looks an attribute up by any of its alias names, first match wins.
pub(crate) fn find<'a>(attrs: &'a [Attribute], keys: &[&str]) -> Option<&'a AttrValue> {
    keys.iter()
        .find_map(|k| attrs.iter().find(|a| a.key == *k).map(|a| &a.value))
}

pub(crate) const K_INPUT: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
];
pub(crate) const K_OUTPUT: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
];
pub(crate) const K_CACHE_READ: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cached_tokens",
    "llm.token_count.prompt_details.cache_read",
];
pub(crate) const K_CONVERSATION: &[&str] = &["gen_ai.conversation.id", "session.id"];
pub(crate) const K_OPERATION: &[&str] = &["gen_ai.operation.name"];

/// Seconds-valued attributes that must not exceed their span's duration.
pub(crate) const SECONDS_ATTRS: &[&str] = &[
    "gen_ai.latency.time_in_queue",
    "gen_ai.latency.time_to_first_token",
    "gen_ai.latency.time_in_model_prefill",
    "gen_ai.latency.time_in_model_decode",
    "gen_ai.latency.time_in_model_inference",
    "gen_ai.latency.e2e",
    "gen_ai.response.time_to_first_chunk",
    "db.client.connection.wait_time",
];

fn oi_operation(kind: &str) -> Option<(OpClass, &'static str)> {
    Some(match kind {
        "LLM" => (OpClass::Llm, "llm"),
        "EMBEDDING" => (OpClass::Embedding, "embedding"),
        "RETRIEVER" => (OpClass::Retrieval, "retriever"),
        "RERANKER" => (OpClass::Retrieval, "reranker"),
        "TOOL" => (OpClass::Tool, "tool"),
        "AGENT" => (OpClass::Agent, "agent"),
        "CHAIN" => (OpClass::Other, "chain"),
        _ => return None,
    })
}

fn genai_class(op: &str) -> OpClass {
    match op {
        "chat" | "text_completion" | "generate_content" => OpClass::Llm,
        "embeddings" => OpClass::Embedding,
        "retrieval" => OpClass::Retrieval,
        "execute_tool" => OpClass::Tool,
        "invoke_agent" | "create_agent" | "invoke_workflow" => OpClass::Agent,
        _ => OpClass::Other,
    }
}

fn ns_of_secs(v: &AttrValue) -> Option<i64> {
    v.as_f64().map(|s| (s * 1e9).round() as i64)
}

fn text(attrs: &[Attribute], keys: &[&str]) -> Option<String> {
    find(attrs, keys).map(AttrValue::to_display)
}

fn int(attrs: &[Attribute], keys: &[&str]) -> Option<i64> {
    find(attrs, keys).and_then(AttrValue::as_i64)
}

/// Lifts the analysis fields out of a span's attributes, whatever dialect they use.
pub(crate) fn promote(name: &str, attrs: &[Attribute]) -> Promoted {
    let mut p = Promoted::default();
    let genai_op = text(attrs, K_OPERATION);
    let oi = text(attrs, &["openinference.span.kind"]).and_then(|k| oi_operation(&k));
    let mcp_method = text(attrs, &["mcp.method.name"]);
    let pool = text(attrs, &["db.client.connection.pool.name"]);
    let db_system = text(attrs, &["db.system.name", "db.system"]);
    let lname = name.to_ascii_lowercase();
    let is_pool_span = pool.is_some()
        && ["acquire", "checkout", "connect", "pool"]
            .iter()
            .any(|w| lname.contains(w));
    p.op_class = if let Some(op) = &genai_op {
        genai_class(op)
    } else if let Some((class, _)) = oi {
        class
    } else if mcp_method.is_some() {
        OpClass::Mcp
    } else if is_pool_span {
        OpClass::Pool
    } else if db_system.is_some() {
        OpClass::Db
    } else if find(attrs, &["gen_ai.latency.e2e"]).is_some() {
        OpClass::Llm
    } else if find(attrs, &["http.request.method", "http.method"]).is_some() {
        OpClass::Http
    } else {
        OpClass::Other
    };
    if p.op_class == OpClass::Tool && mcp_method.as_deref() == Some("initialize") {
        p.op_class = OpClass::Mcp;
    }
    p.operation = genai_op.or_else(|| oi.map(|(_, op)| op.to_owned()));
    if p.operation.is_none() && p.op_class == OpClass::Llm {
        p.operation = Some("chat".to_owned());
    }
    p.model = text(
        attrs,
        &[
            "gen_ai.request.model",
            "gen_ai.response.model",
            "llm.model_name",
        ],
    );
    p.provider = text(
        attrs,
        &[
            "gen_ai.provider.name",
            "gen_ai.system",
            "llm.provider",
            "llm.system",
        ],
    );
    p.conversation_id = text(attrs, K_CONVERSATION);
    p.input_tokens = int(attrs, K_INPUT);
    p.output_tokens = int(attrs, K_OUTPUT);
    p.cache_read_tokens = int(attrs, K_CACHE_READ);
    p.cache_write_tokens = int(
        attrs,
        &[
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_write.input_tokens",
            "llm.token_count.prompt_details.cache_write",
        ],
    );
    p.stream = find(attrs, &["gen_ai.request.stream"]).and_then(AttrValue::as_bool);
    p.time_to_first_chunk_ns =
        find(attrs, &["gen_ai.response.time_to_first_chunk"]).and_then(ns_of_secs);
    p.queue_ns = find(attrs, &["gen_ai.latency.time_in_queue"]).and_then(ns_of_secs);
    p.ttft_ns = find(attrs, &["gen_ai.latency.time_to_first_token"]).and_then(ns_of_secs);
    p.prefill_ns = find(attrs, &["gen_ai.latency.time_in_model_prefill"]).and_then(ns_of_secs);
    p.decode_ns = find(attrs, &["gen_ai.latency.time_in_model_decode"]).and_then(ns_of_secs);
    p.inference_ns = find(attrs, &["gen_ai.latency.time_in_model_inference"]).and_then(ns_of_secs);
    p.e2e_ns = find(attrs, &["gen_ai.latency.e2e"]).and_then(ns_of_secs);
    p.tool_name = text(attrs, &["gen_ai.tool.name", "tool.name"]);
    p.tool_call_id = text(attrs, &["gen_ai.tool.call.id", "tool_call.id"]);
    p.agent_name = text(attrs, &["gen_ai.agent.name", "agent.name"]);
    p.data_source_id = text(attrs, &["gen_ai.data_source.id"]);
    p.mcp_method = mcp_method;
    p.mcp_session_id = text(attrs, &["mcp.session.id"]);
    p.db_system = db_system;
    p.db_operation = text(attrs, &["db.operation.name", "db.operation"]);
    p.db_query_summary = text(attrs, &["db.query.summary"]);
    p.db_pool_name = pool;
    p.pool_wait_ns = if is_pool_span {
        find(attrs, &["db.client.connection.wait_time"]).and_then(ns_of_secs)
    } else {
        None
    };
    p.server_address = text(attrs, &["server.address"]);
    p.error_type = text(attrs, &["error.type", "exception.type"]);
    p
}
