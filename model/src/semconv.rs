//! The one semantic-convention normalisation, used by ingest and by the workload
//! generator alike: lifts the fields analysis needs out of a span's attributes and
//! events, accepting every alias of design.md (GenAI current and deprecated names, vLLM,
//! OpenInference, OpenLLMetry, MCP, DB, FaaS, HTTP resends).

use crate::{AttrValue, Attribute, Event, OpClass, Promoted};

/// Seconds (float) to nanoseconds; values outside `[0, 1e9)` s are not durations.
fn secs_to_ns(s: f64) -> Option<i64> {
    (0.0..1.0e9).contains(&s).then(|| (s * 1e9).round() as i64)
}

/// Every attribute key [`promote`] reads. A key's slot is its index here; the alias
/// lists and keys used in `promote` are turned into slots at compile time (a key
/// missing here does not compile).
const KNOWN: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "embedding.model_name",
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
    "gen_ai.conversation.id",
    "session.id",
    "conversation.id",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.prompt_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cached_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.request.stream",
    "gen_ai.is_streaming",
    "llm.is_streaming",
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.client.operation.time_to_first_chunk",
    "gen_ai.server.time_to_first_token",
    "gen_ai.response.time_to_first_token",
    "llm.invocation_parameters",
    "openinference.span.kind",
    "llm.request.type",
    "mcp.method.name",
    "db.client.connection.pool.name",
    "pool.name",
    "db.client.connection.wait_time",
    "db.system.name",
    "db.system",
    "gen_ai.latency.time_in_queue",
    "gen_ai.latency.e2e",
    "gen_ai.latency.time_to_first_token",
    "http.request.method",
    "http.method",
    "gen_ai.tool.name",
    "tool.name",
    "error.type",
    "exception.type",
    "gen_ai.latency.time_in_model_prefill",
    "gen_ai.latency.time_in_model_decode",
    "gen_ai.latency.time_in_model_inference",
    "gen_ai.tool.call.id",
    "tool_call.id",
    "gen_ai.agent.name",
    "agent.name",
    "gen_ai.data_source.id",
    "mcp.session.id",
    "db.operation.name",
    "db.operation",
    "db.query.summary",
    "server.address",
    "net.peer.name",
    "gen_ai.openai.api_base",
    "faas.coldstart",
    "http.request.resend_count",
];

/// log2 of the key table's size (a power of two, well above `KNOWN.len()`).
const TABLE_BITS: u32 = 9;
const TABLE_MASK: usize = (1 << TABLE_BITS) - 1;

/// Little-endian load of up to 8 bytes of `b` from `at` (fewer at the end).
const fn load8(b: &[u8], at: usize) -> u64 {
    let mut x = 0u64;
    let mut i = 0;
    while i < 8 && at + i < b.len() {
        x |= (b[at + i] as u64) << (8 * i);
        i += 1;
    }
    x
}

/// Hash of a key from its length, first 8 and last 8 bytes (the keys share prefixes
/// such as `gen_ai.usage.`, rarely both ends and the length).
const fn key_hash(b: &[u8]) -> usize {
    let n = b.len();
    let head = load8(b, 0);
    let tail = if n > 8 { load8(b, n - 8) } else { 0 };
    let x = head ^ tail.rotate_left(29) ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x.wrapping_mul(0xFF51_AFD7_ED55_8CCD) >> (64 - TABLE_BITS)) as usize
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Open addressing over [`KNOWN`]: slot + 1 per entry, 0 where empty.
const TABLE: [u8; 1 << TABLE_BITS] = {
    let mut t = [0u8; 1 << TABLE_BITS];
    let mut k = 0;
    while k < KNOWN.len() {
        let mut i = key_hash(KNOWN[k].as_bytes());
        while t[i] != 0 {
            assert!(
                !str_eq(KNOWN[t[i] as usize - 1], KNOWN[k]),
                "a key twice in KNOWN"
            );
            i = (i + 1) & TABLE_MASK;
        }
        t[i] = k as u8 + 1;
        k += 1;
    }
    t
};

/// Slot of an attribute key, `None` for keys `promote` never reads.
fn slot_of(key: &str) -> Option<usize> {
    let mut i = key_hash(key.as_bytes());
    loop {
        let s = TABLE[i] as usize;
        if s == 0 {
            return None;
        }
        if KNOWN[s - 1] == key {
            return Some(s - 1);
        }
        i = (i + 1) & TABLE_MASK;
    }
}

/// Slots of `keys`, at compile time; a key missing from [`KNOWN`] fails the build.
const fn slots<const N: usize>(keys: &[&str]) -> [u8; N] {
    assert!(keys.len() == N);
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        let mut k = 0;
        while !str_eq(KNOWN[k], keys[i]) {
            k += 1;
        }
        out[i] = k as u8;
        i += 1;
    }
    out
}

/// The slots of a constant list of keys, e.g. `at!(keys::MODEL)` or `at!(["a", "b"])`.
macro_rules! at {
    ($keys:expr) => {{
        const KEYS: &[&str] = &$keys;
        const SLOTS: [u8; KEYS.len()] = slots::<{ KEYS.len() }>(KEYS);
        &SLOTS
    }};
}

/// A span's attributes with the first occurrence of every known key found in one
/// pass (`get` answers what a linear search for the first match would).
struct Attrs<'a> {
    attrs: &'a [Attribute],
    /// Index in `attrs` of each slot's first attribute; `u32::MAX` where absent.
    first: [u32; KNOWN.len()],
}

impl<'a> Attrs<'a> {
    fn new(attrs: &'a [Attribute]) -> Self {
        let mut first = [u32::MAX; KNOWN.len()];
        for (i, a) in attrs.iter().enumerate() {
            if let (Some(s), Ok(i)) = (slot_of(&a.key), u32::try_from(i)) {
                if first[s] == u32::MAX {
                    first[s] = i;
                }
            }
        }
        Self { attrs, first }
    }
    fn get(&self, slot: u8) -> Option<&'a AttrValue> {
        let i = *self.first.get(usize::from(slot))?;
        self.attrs.get(i as usize).map(|a| &a.value)
    }
    fn str(&self, slots: &[u8]) -> Option<String> {
        slots.iter().find_map(|s| str_value(self.get(*s)?))
    }
    fn int(&self, slots: &[u8]) -> Option<i64> {
        slots.iter().find_map(|s| self.get(*s)?.as_i64())
    }
    fn secs_ns(&self, slots: &[u8]) -> Option<i64> {
        slots
            .iter()
            .find_map(|s| secs_to_ns(self.get(*s)?.as_f64()?))
    }
    fn bool(&self, slots: &[u8]) -> Option<bool> {
        slots.iter().find_map(|s| self.get(*s)?.as_bool())
    }
    fn has(&self, slots: &[u8]) -> bool {
        slots.iter().any(|s| self.get(*s).is_some())
    }
}

/// A non-empty string or an integer, as text.
fn str_value(v: &AttrValue) -> Option<String> {
    match v {
        AttrValue::Str(s) if !s.is_empty() => Some(s.clone()),
        AttrValue::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Attribute names (aliases, first match wins) of the promoted fields.
pub mod keys {
    pub const OPERATION: &[&str] = &["gen_ai.operation.name"];
    pub const MODEL: &[&str] = &[
        "gen_ai.response.model",
        "gen_ai.request.model",
        "llm.model_name",
        "embedding.model_name",
    ];
    pub const PROVIDER: &[&str] = &[
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
    ];
    pub const CONVERSATION: &[&str] = &["gen_ai.conversation.id", "session.id", "conversation.id"];
    pub const INPUT_TOKENS: &[&str] = &[
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
        "llm.usage.prompt_tokens",
    ];
    pub const OUTPUT_TOKENS: &[&str] = &[
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
        "llm.usage.completion_tokens",
    ];
    pub const CACHE_READ_TOKENS: &[&str] = &[
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "gen_ai.usage.cached_tokens",
        "llm.token_count.prompt_details.cache_read",
    ];
    pub const CACHE_WRITE_TOKENS: &[&str] = &[
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",
    ];
    pub const STREAM: &[&str] = &[
        "gen_ai.request.stream",
        "gen_ai.is_streaming",
        "llm.is_streaming",
    ];
    /// Time to first chunk / token as seconds on the client span (pydantic-ai writes
    /// the GenAI metric's name as an attribute; OpenLIT writes the server's name, on
    /// non-streaming calls too, where it covers the whole call: see [`super::promote`]).
    pub const TIME_TO_FIRST_CHUNK: &[&str] = &[
        "gen_ai.response.time_to_first_chunk",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.server.time_to_first_token",
        "gen_ai.response.time_to_first_token",
    ];
    /// JSON text of the request's parameters (OpenInference), which holds `stream`.
    pub const INVOCATION_PARAMETERS: &[&str] = &["llm.invocation_parameters"];
    pub const DB_SYSTEM: &[&str] = &["db.system.name", "db.system"];
    pub const HTTP_METHOD: &[&str] = &["http.request.method", "http.method"];
    pub const HTTP_STATUS_CODE: &[&str] = &["http.response.status_code", "http.status_code"];
    pub const TOOL_NAME: &[&str] = &["gen_ai.tool.name", "tool.name"];
    /// Span events that mark the first streamed token or chunk.
    pub const FIRST_TOKEN_EVENTS: &[&str] = &[
        "First Token Stream Event",
        "gen_ai.first_token",
        "gen_ai.response.first_chunk",
        "first_token",
    ];
}

/// The one list of attribute aliases: each meaning's one (canonical) key and every key
/// that means it, current, deprecated and other dialects' names ([`promote`] reads the
/// same lists). `compare` and the exported notebook fold keys with it.
pub const ALIAS_GROUPS: [(&str, &[&str]); 12] = [
    ("gen_ai.request.model", keys::MODEL),
    ("gen_ai.provider.name", keys::PROVIDER),
    ("gen_ai.usage.input_tokens", keys::INPUT_TOKENS),
    ("gen_ai.usage.output_tokens", keys::OUTPUT_TOKENS),
    (
        "gen_ai.usage.cache_read.input_tokens",
        keys::CACHE_READ_TOKENS,
    ),
    (
        "gen_ai.usage.cache_creation.input_tokens",
        keys::CACHE_WRITE_TOKENS,
    ),
    ("gen_ai.request.stream", keys::STREAM),
    ("gen_ai.conversation.id", keys::CONVERSATION),
    // legacy names and the current one
    ("db.system.name", keys::DB_SYSTEM),
    ("http.request.method", keys::HTTP_METHOD),
    ("http.response.status_code", keys::HTTP_STATUS_CODE),
    ("gen_ai.tool.name", keys::TOOL_NAME),
];

/// The canonical key of `key`'s alias group; `key` itself when it has no aliases.
pub fn canonical_key(key: &str) -> &str {
    ALIAS_GROUPS
        .iter()
        .find(|(_, aliases)| aliases.contains(&key))
        .map_or(key, |(canon, _)| canon)
}

/// (alias, canonical key) for every alias that is not itself canonical.
pub fn alias_pairs() -> Vec<(&'static str, &'static str)> {
    ALIAS_GROUPS
        .iter()
        .flat_map(|(canon, aliases)| aliases.iter().map(move |a| (*a, *canon)))
        .filter(|(a, c)| a != c)
        .collect()
}

/// Every key whose canonical key is `canon`: `canon` first, then its aliases.
pub fn raw_keys(canon: &str) -> Vec<&str> {
    let mut out = vec![canon];
    for (c, aliases) in ALIAS_GROUPS {
        if c == canon {
            out.extend(aliases.iter().copied().filter(|a| *a != canon));
        }
    }
    out
}

/// Class of an operation from `gen_ai.operation.name`.
fn class_of_genai_operation(op: &str) -> Option<OpClass> {
    Some(match op {
        "chat" | "text_completion" | "generate_content" | "completion" => OpClass::Llm,
        "embeddings" | "embedding" => OpClass::Embedding,
        "retrieval" => OpClass::Retrieval,
        "execute_tool" => OpClass::Tool,
        "invoke_agent" | "create_agent" | "invoke_workflow" => OpClass::Agent,
        _ => return None,
    })
}

/// Class of an OpenInference span kind.
fn class_of_openinference(kind: &str) -> Option<OpClass> {
    Some(match kind.to_ascii_uppercase().as_str() {
        "LLM" => OpClass::Llm,
        "EMBEDDING" => OpClass::Embedding,
        "RETRIEVER" | "RERANKER" => OpClass::Retrieval,
        "TOOL" => OpClass::Tool,
        "AGENT" | "CHAIN" => OpClass::Agent,
        _ => return None,
    })
}

/// Class of an OpenLLMetry `llm.request.type`.
fn class_of_openllmetry(kind: &str) -> Option<OpClass> {
    Some(match kind {
        "chat" | "completion" => OpClass::Llm,
        "embedding" => OpClass::Embedding,
        "rerank" => OpClass::Retrieval,
        _ => return None,
    })
}

fn name_says_pool(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["acquire", "checkout", "connect", "pool"]
        .iter()
        .any(|w| n.contains(w))
}

/// `"stream": true` inside a JSON object of request parameters.
fn stream_in_parameters(json: &str) -> Option<bool> {
    match serde_json::from_str::<serde_json::Value>(json).ok()? {
        serde_json::Value::Object(m) => m.get("stream").and_then(serde_json::Value::as_bool),
        _ => None,
    }
}

fn parameters_text(v: &AttrValue) -> Option<&str> {
    match v {
        AttrValue::Str(s) | AttrValue::Json(s) => Some(s),
        _ => None,
    }
}

/// The host of a URL such as `http://127.0.0.1:8000/v1` (OpenLLMetry's API base).
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']').map(|(h, _)| h)?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// A first-chunk time that is not clearly shorter than its call (>= this share of the
/// span, on a call not known to stream) times the whole call, decode included.
const FIRST_CHUNK_MAX_SHARE: f64 = 0.9;

/// Promotes a span's attributes and events. `start_ns` dates first-token events and,
/// with `end_ns`, bounds a first-chunk time; `events` also supply an exception type
/// when `error.type` is absent.
///
/// An attribute's meaning depends on the span's role, by rule, not per package:
/// - token usage is a span's own only on LLM and embedding spans; on an agent, chain
///   or workflow span it adds up the calls below (or the whole conversation);
/// - `gen_ai.tool.name` on an LLM span names the tool call the model returned, not
///   the span: it is not promoted as the span's tool;
/// - a first-token time on a call not known to stream is a first-chunk time only when
///   clearly shorter than the span (OpenLIT's `gen_ai.server.time_to_first_token` on a
///   non-streaming call is about the whole call).
pub fn promote(
    name: &str,
    start_ns: i64,
    end_ns: i64,
    attributes: &[Attribute],
    events: &[Event],
) -> Promoted {
    let a = Attrs::new(attributes);
    let operation = a.str(at!(keys::OPERATION));
    let oi_kind = a.str(at!(["openinference.span.kind"]));
    let ollm_kind = a.str(at!(["llm.request.type"]));
    let mcp_method = a.str(at!(["mcp.method.name"]));
    let db_pool_name = a.str(at!(["db.client.connection.pool.name", "pool.name"]));
    let pool_wait_ns = a.secs_ns(at!(["db.client.connection.wait_time"]));
    let db_system = a.str(at!(keys::DB_SYSTEM));
    let vllm_latency = a.has(at!(["gen_ai.latency.time_in_queue"]))
        || a.has(at!(["gen_ai.latency.e2e"]))
        || a.has(at!(["gen_ai.latency.time_to_first_token"]));

    let op_class = if mcp_method.is_some() {
        OpClass::Mcp
    } else if pool_wait_ns.is_some() || (db_pool_name.is_some() && name_says_pool(name)) {
        OpClass::Pool
    } else if let Some(c) = operation.as_deref().and_then(class_of_genai_operation) {
        c
    } else if let Some(c) = oi_kind.as_deref().and_then(class_of_openinference) {
        c
    } else if vllm_latency || name == "llm_request" {
        OpClass::Llm
    } else if let Some(c) = ollm_kind.as_deref().and_then(class_of_openllmetry) {
        c
    } else if db_system.is_some() {
        OpClass::Db
    } else if a.has(at!(keys::HTTP_METHOD)) {
        OpClass::Http
    } else if a.has(at!(keys::TOOL_NAME)) {
        OpClass::Tool
    } else {
        OpClass::Other
    };

    let error_type = a.str(at!(["error.type", "exception.type"])).or_else(|| {
        events
            .iter()
            .filter(|e| e.name == "exception")
            .find_map(|e| {
                let t = e.attributes.iter().find(|a| a.key == "exception.type")?;
                str_value(&t.value)
            })
    });
    // an explicit first-token marker, else the first streamed chunk event
    // (OpenLLMetry: `gen_ai.content.completion.chunk`, one per chunk)
    let first_of = |pick: &dyn Fn(&str) -> bool| {
        events
            .iter()
            .filter(|e| pick(&e.name))
            .map(|e| e.time_ns - start_ns)
            .filter(|d| *d >= 0)
            .min()
    };
    let first_token_event = first_of(&|n| keys::FIRST_TOKEN_EVENTS.contains(&n))
        .or_else(|| first_of(&|n| n.contains("chunk")));
    let stream = a.bool(at!(keys::STREAM)).or_else(|| {
        at!(keys::INVOCATION_PARAMETERS)
            .iter()
            .find_map(|s| stream_in_parameters(parameters_text(a.get(*s)?)?))
    });

    let duration_ns = end_ns.saturating_sub(start_ns);
    let time_to_first_chunk_ns = a
        .secs_ns(at!(keys::TIME_TO_FIRST_CHUNK))
        .filter(|&t| {
            stream == Some(true) || (t as f64) < FIRST_CHUNK_MAX_SHARE * duration_ns as f64
        })
        .or(first_token_event);
    let own_usage = matches!(op_class, OpClass::Llm | OpClass::Embedding);
    let usage = |slots: &[u8]| if own_usage { a.int(slots) } else { None };

    Promoted {
        op_class,
        operation: operation
            .or_else(|| oi_kind.map(|k| k.to_ascii_lowercase()))
            .or(ollm_kind),
        model: a.str(at!(keys::MODEL)),
        provider: a.str(at!(keys::PROVIDER)),
        conversation_id: a.str(at!(keys::CONVERSATION)),
        input_tokens: usage(at!(keys::INPUT_TOKENS)),
        output_tokens: usage(at!(keys::OUTPUT_TOKENS)),
        cache_read_tokens: usage(at!(keys::CACHE_READ_TOKENS)),
        cache_write_tokens: usage(at!(keys::CACHE_WRITE_TOKENS)),
        stream,
        time_to_first_chunk_ns,
        queue_ns: a.secs_ns(at!(["gen_ai.latency.time_in_queue"])),
        ttft_ns: a.secs_ns(at!(["gen_ai.latency.time_to_first_token"])),
        prefill_ns: a.secs_ns(at!(["gen_ai.latency.time_in_model_prefill"])),
        decode_ns: a.secs_ns(at!(["gen_ai.latency.time_in_model_decode"])),
        inference_ns: a.secs_ns(at!(["gen_ai.latency.time_in_model_inference"])),
        e2e_ns: a.secs_ns(at!(["gen_ai.latency.e2e"])),
        tool_name: (op_class != OpClass::Llm)
            .then(|| a.str(at!(keys::TOOL_NAME)))
            .flatten(),
        tool_call_id: a.str(at!(["gen_ai.tool.call.id", "tool_call.id"])),
        agent_name: a.str(at!(["gen_ai.agent.name", "agent.name"])),
        data_source_id: a.str(at!(["gen_ai.data_source.id"])),
        mcp_method,
        mcp_session_id: a.str(at!(["mcp.session.id"])),
        db_system,
        db_operation: a.str(at!(["db.operation.name", "db.operation"])),
        db_query_summary: a.str(at!(["db.query.summary"])),
        db_pool_name,
        pool_wait_ns,
        server_address: a.str(at!(["server.address", "net.peer.name"])).or_else(|| {
            a.str(at!(["gen_ai.openai.api_base"]))
                .and_then(|u| host_of(&u))
        }),
        error_type,
        cold_start: a.bool(at!(["faas.coldstart"])),
        resend_count: a.int(at!(["http.request.resend_count"])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(k: &str, v: &str) -> Attribute {
        Attribute::new(k, AttrValue::Str(v.into()))
    }
    fn i(k: &str, v: i64) -> Attribute {
        Attribute::new(k, AttrValue::Int(v))
    }
    fn d(k: &str, v: f64) -> Attribute {
        Attribute::new(k, AttrValue::Double(v))
    }
    fn p(name: &str, attrs: &[Attribute]) -> Promoted {
        promote(name, 0, 10_000_000_000, attrs, &[])
    }

    #[test]
    fn every_known_key_has_its_slot_and_others_none() {
        for (i, k) in KNOWN.iter().enumerate() {
            assert_eq!(slot_of(k), Some(i), "{k}");
        }
        for list in [
            keys::OPERATION,
            keys::MODEL,
            keys::PROVIDER,
            keys::CONVERSATION,
            keys::INPUT_TOKENS,
            keys::OUTPUT_TOKENS,
            keys::CACHE_READ_TOKENS,
            keys::CACHE_WRITE_TOKENS,
            keys::STREAM,
            keys::TIME_TO_FIRST_CHUNK,
            keys::INVOCATION_PARAMETERS,
            keys::DB_SYSTEM,
            keys::HTTP_METHOD,
            keys::TOOL_NAME,
        ] {
            for k in list {
                assert!(slot_of(k).is_some(), "{k}");
            }
        }
        for k in [
            "",
            "gen_ai",
            "gen_ai.",
            "gen_ai.system ",
            "GEN_AI.SYSTEM",
            "app.tenant.id",
            "gen_ai.usage.input_token",
            "x.gen_ai.request.model",
        ] {
            assert_eq!(slot_of(k), None, "{k:?}");
        }
    }

    /// `Attrs::get` answers what a linear search for the first attribute with the key
    /// answers, duplicates and unknown keys included.
    #[test]
    fn one_pass_lookup_matches_linear_search() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let unknown = [
            "app.x",
            "gen_ai.foo",
            "",
            "server.addres",
            "db.system.name2",
        ];
        for _ in 0..2_000 {
            let n = next(30);
            let attrs: Vec<Attribute> = (0..n)
                .map(|j| {
                    let key = if next(3) == 0 {
                        unknown[next(unknown.len())]
                    } else {
                        KNOWN[next(KNOWN.len())]
                    };
                    i(key, j as i64)
                })
                .collect();
            let a = Attrs::new(&attrs);
            for (slot, k) in KNOWN.iter().enumerate() {
                let linear = attrs.iter().find(|x| x.key == *k).map(|x| &x.value);
                assert_eq!(a.get(slot as u8), linear, "{k}");
            }
        }
    }

    #[test]
    fn genai_current_names() {
        let p = p(
            "chat gpt-4o",
            &[
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.request.model", "gpt-4o"),
                s("gen_ai.provider.name", "openai"),
                s("gen_ai.conversation.id", "c1"),
                i("gen_ai.usage.input_tokens", 100),
                i("gen_ai.usage.output_tokens", 20),
                i("gen_ai.usage.cache_read.input_tokens", 64),
                i("gen_ai.usage.cache_creation.input_tokens", 32),
                Attribute::new("gen_ai.request.stream", AttrValue::Bool(true)),
                d("gen_ai.response.time_to_first_chunk", 0.25),
                s("server.address", "vllm-0"),
            ],
        );
        assert_eq!(p.op_class, OpClass::Llm);
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        assert_eq!(p.provider.as_deref(), Some("openai"));
        assert_eq!(p.conversation_id.as_deref(), Some("c1"));
        assert_eq!((p.input_tokens, p.output_tokens), (Some(100), Some(20)));
        assert_eq!(
            (p.cache_read_tokens, p.cache_write_tokens),
            (Some(64), Some(32))
        );
        assert_eq!(p.stream, Some(true));
        assert_eq!(p.time_to_first_chunk_ns, Some(250_000_000));
        assert_eq!(p.server_address.as_deref(), Some("vllm-0"));
    }

    #[test]
    fn deprecated_aliases() {
        let p = p(
            "chat",
            &[
                s("gen_ai.operation.name", "text_completion"),
                s("gen_ai.system", "anthropic"),
                i("gen_ai.usage.prompt_tokens", 7),
                i("gen_ai.usage.completion_tokens", 3),
                i("gen_ai.usage.cached_tokens", 5),
                s("gen_ai.usage.cache_write.input_tokens", "2"),
                s("db.system", "ignored-when-genai"),
            ],
        );
        assert_eq!(p.op_class, OpClass::Llm);
        assert_eq!(p.provider.as_deref(), Some("anthropic"));
        assert_eq!(
            (p.input_tokens, p.output_tokens, p.cache_read_tokens),
            (Some(7), Some(3), Some(5))
        );
        assert_eq!(p.cache_write_tokens, Some(2));
    }

    #[test]
    fn openinference_dialect() {
        let attrs = [
            s("openinference.span.kind", "LLM"),
            s("llm.model_name", "llama-3-8b"),
            i("llm.token_count.prompt", 900),
            i("llm.token_count.completion", 50),
            i("llm.token_count.prompt_details.cache_read", 800),
            i("llm.token_count.prompt_details.cache_write", 100),
            s("session.id", "sess-9"),
            s(
                "llm.invocation_parameters",
                r#"{"model": "llama-3-8b", "stream": true, "stream_options": {"include_usage": true}}"#,
            ),
        ];
        let first = Event {
            time_ns: 1_300_000_000,
            name: "First Token Stream Event".into(),
            attributes: vec![],
        };
        let p = promote(
            "ChatCompletion",
            1_000_000_000,
            2_000_000_000,
            &attrs,
            &[first],
        );
        assert_eq!(p.op_class, OpClass::Llm);
        assert_eq!(p.operation.as_deref(), Some("llm"));
        assert_eq!(p.model.as_deref(), Some("llama-3-8b"));
        assert_eq!(p.conversation_id.as_deref(), Some("sess-9"));
        assert_eq!(
            (p.input_tokens, p.cache_read_tokens, p.cache_write_tokens),
            (Some(900), Some(800), Some(100))
        );
        assert_eq!(
            p.stream,
            Some(true),
            "stream flag from invocation parameters"
        );
        assert_eq!(
            p.time_to_first_chunk_ns,
            Some(300_000_000),
            "TTFT from the first-token event"
        );
        let no_stream = promote(
            "ChatCompletion",
            0,
            1,
            &[s("llm.invocation_parameters", r#"{"model": "m"}"#)],
            &[],
        );
        assert_eq!(no_stream.stream, None);
        let bad = promote(
            "x",
            0,
            1,
            &[s("llm.invocation_parameters", "{not json")],
            &[],
        );
        assert_eq!(bad.stream, None, "bad JSON is ignored, not fatal");
        for (kind, class) in [
            ("EMBEDDING", OpClass::Embedding),
            ("RETRIEVER", OpClass::Retrieval),
            ("RERANKER", OpClass::Retrieval),
            ("TOOL", OpClass::Tool),
            ("AGENT", OpClass::Agent),
            ("CHAIN", OpClass::Agent),
        ] {
            let p = promote(
                "x",
                0,
                1,
                &[s("openinference.span.kind", kind), s("tool.name", "t")],
                &[],
            );
            assert_eq!(p.op_class, class, "{kind}");
            assert_eq!(p.tool_name.as_deref(), Some("t"));
        }
    }

    #[test]
    fn openllmetry_dialect() {
        let chunk = |t: i64| Event {
            time_ns: t,
            name: "gen_ai.content.completion.chunk".into(),
            attributes: vec![],
        };
        let streamed = promote(
            "openai.chat",
            100,
            1_000,
            &[
                s("gen_ai.operation.name", "chat"),
                Attribute::new("gen_ai.is_streaming", AttrValue::Bool(true)),
                s("gen_ai.openai.api_base", "http://127.0.0.1:8000/v1"),
            ],
            &[chunk(400), chunk(350), chunk(500)],
        );
        assert_eq!(streamed.stream, Some(true));
        assert_eq!(
            streamed.time_to_first_chunk_ns,
            Some(250),
            "first chunk event"
        );
        assert_eq!(streamed.server_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(host_of("https://user@[::1]:443/x").as_deref(), Some("::1"));
        assert_eq!(host_of("api.openai.com").as_deref(), Some("api.openai.com"));
        let p = p(
            "openai.chat",
            &[
                s("llm.request.type", "chat"),
                s("gen_ai.system", "openai"),
                s("gen_ai.request.model", "gpt-4o-mini"),
                i("gen_ai.usage.prompt_tokens", 1200),
                i("gen_ai.usage.completion_tokens", 30),
                i("gen_ai.usage.cache_read_input_tokens", 1024),
                Attribute::new("llm.is_streaming", AttrValue::Bool(false)),
            ],
        );
        assert_eq!(p.op_class, OpClass::Llm);
        assert_eq!(p.operation.as_deref(), Some("chat"));
        assert_eq!(p.cache_read_tokens, Some(1024));
        assert_eq!(p.stream, Some(false));
    }

    /// An attribute's meaning depends on the span's role (pydantic-ai, OpenLIT).
    #[test]
    fn attribute_meaning_follows_the_span_role() {
        let secs = |k: &str, v: f64| d(k, v);
        // pydantic-ai: the GenAI metric's name as a span attribute, on a streamed call
        let streamed = promote(
            "chat gpt-4o",
            0,
            2_000_000_000,
            &[
                s("gen_ai.operation.name", "chat"),
                Attribute::new("gen_ai.request.stream", AttrValue::Bool(true)),
                secs("gen_ai.client.operation.time_to_first_chunk", 0.4),
            ],
            &[],
        );
        assert_eq!(streamed.time_to_first_chunk_ns, Some(400_000_000));
        // OpenLIT: the server's first-token time on a non-streaming call covers the call
        let whole = [
            s("gen_ai.operation.name", "chat"),
            secs("gen_ai.server.time_to_first_token", 1.98),
            s("gen_ai.tool.name", "get_weather"),
            i("gen_ai.usage.input_tokens", 900),
        ];
        let p1 = promote("chat m", 0, 2_000_000_000, &whole, &[]);
        assert_eq!(
            p1.time_to_first_chunk_ns, None,
            "99% of the span is not TTFT"
        );
        assert_eq!(
            p1.tool_name, None,
            "the tool call it returned, not the span's tool"
        );
        assert_eq!(p1.input_tokens, Some(900));
        // clearly shorter than the span: a first-chunk time even without a stream flag
        let p2 = promote("chat m", 0, 4_000_000_000, &whole, &[]);
        assert_eq!(p2.time_to_first_chunk_ns, Some(1_980_000_000));
        // an agent run's totals over the conversation are not its own usage
        let run = p(
            "invoke_agent a",
            &[
                s("gen_ai.operation.name", "invoke_agent"),
                i("gen_ai.usage.input_tokens", 31_000),
                i("gen_ai.usage.output_tokens", 400),
                i("gen_ai.usage.cache_read.input_tokens", 20_000),
            ],
        );
        assert_eq!(run.op_class, OpClass::Agent);
        assert_eq!(
            (run.input_tokens, run.output_tokens, run.cache_read_tokens),
            (None, None, None)
        );
        // a tool span keeps its tool name
        let tool = p(
            "execute_tool get_weather",
            &[
                s("gen_ai.operation.name", "execute_tool"),
                s("gen_ai.tool.name", "get_weather"),
            ],
        );
        assert_eq!(tool.tool_name.as_deref(), Some("get_weather"));
    }

    #[test]
    fn vllm_server_span() {
        let p = p(
            "llm_request",
            &[
                d("gen_ai.latency.time_in_queue", 0.5),
                d("gen_ai.latency.time_to_first_token", 0.9),
                d("gen_ai.latency.time_in_model_prefill", 0.3),
                d("gen_ai.latency.time_in_model_decode", 1.5),
                d("gen_ai.latency.time_in_model_inference", 1.8),
                d("gen_ai.latency.e2e", 2.4),
            ],
        );
        assert_eq!(p.op_class, OpClass::Llm);
        assert_eq!(p.queue_ns, Some(500_000_000));
        assert_eq!(p.ttft_ns, Some(900_000_000));
        assert_eq!(p.prefill_ns, Some(300_000_000));
        assert_eq!(p.decode_ns, Some(1_500_000_000));
        assert_eq!(p.inference_ns, Some(1_800_000_000));
        assert_eq!(p.e2e_ns, Some(2_400_000_000));
    }

    #[test]
    fn cold_start_and_resends() {
        let f = p(
            "handler",
            &[Attribute::new("faas.coldstart", AttrValue::Bool(true))],
        );
        assert_eq!(f.cold_start, Some(true));
        let h = p(
            "POST",
            &[
                s("http.request.method", "POST"),
                i("http.request.resend_count", 2),
            ],
        );
        assert_eq!(h.op_class, OpClass::Http);
        assert_eq!(h.resend_count, Some(2));
    }

    #[test]
    fn mcp_db_pool_tool_http_and_errors() {
        let p1 = p(
            "tools/call web_search",
            &[
                s("mcp.method.name", "tools/call"),
                s("mcp.session.id", "m1"),
                s("gen_ai.tool.name", "web_search"),
                s("gen_ai.operation.name", "execute_tool"),
                s("gen_ai.tool.call.id", "call_1"),
            ],
        );
        assert_eq!(p1.op_class, OpClass::Mcp, "MCP tools/call is mcp");
        assert_eq!(p1.mcp_method.as_deref(), Some("tools/call"));
        assert_eq!(p1.mcp_session_id.as_deref(), Some("m1"));
        assert_eq!(p1.tool_name.as_deref(), Some("web_search"));
        assert_eq!(p1.tool_call_id.as_deref(), Some("call_1"));

        let pool = p(
            "pool.acquire",
            &[s("db.client.connection.pool.name", "main")],
        );
        assert_eq!(pool.op_class, OpClass::Pool);
        assert_eq!(pool.db_pool_name.as_deref(), Some("main"));
        let waited = p("get conn", &[d("db.client.connection.wait_time", 0.12)]);
        assert_eq!(waited.op_class, OpClass::Pool);
        assert_eq!(waited.pool_wait_ns, Some(120_000_000));
        let not_pool = p(
            "SELECT users",
            &[
                s("db.client.connection.pool.name", "main"),
                s("db.system.name", "postgresql"),
            ],
        );
        assert_eq!(not_pool.op_class, OpClass::Db);

        let db = p(
            "SELECT orders",
            &[
                s("db.system", "postgresql"),
                s("db.operation", "SELECT"),
                s("db.query.summary", "SELECT orders"),
            ],
        );
        assert_eq!(db.op_class, OpClass::Db);
        assert_eq!(db.db_system.as_deref(), Some("postgresql"));
        assert_eq!(db.db_operation.as_deref(), Some("SELECT"));
        assert_eq!(db.db_query_summary.as_deref(), Some("SELECT orders"));

        let http = p("GET", &[s("http.request.method", "GET")]);
        assert_eq!(http.op_class, OpClass::Http);
        let agent = p(
            "invoke_agent planner",
            &[
                s("gen_ai.operation.name", "invoke_agent"),
                s("gen_ai.agent.name", "planner"),
            ],
        );
        assert_eq!(agent.op_class, OpClass::Agent);
        assert_eq!(agent.agent_name.as_deref(), Some("planner"));
        let emb = p("embeddings", &[s("gen_ai.operation.name", "embeddings")]);
        assert_eq!(emb.op_class, OpClass::Embedding);
        let ret = p(
            "retrieval",
            &[
                s("gen_ai.operation.name", "retrieval"),
                s("gen_ai.data_source.id", "kb"),
            ],
        );
        assert_eq!(ret.op_class, OpClass::Retrieval);
        assert_eq!(ret.data_source_id.as_deref(), Some("kb"));

        let ev = Event {
            time_ns: 1,
            name: "exception".into(),
            attributes: vec![s("exception.type", "TimeoutError")],
        };
        let err = promote("x", 0, 1, &[], &[ev]);
        assert_eq!(err.error_type.as_deref(), Some("TimeoutError"));
        assert_eq!(err.op_class, OpClass::Other);
        let err2 = p("x", &[s("error.type", "429")]);
        assert_eq!(err2.error_type.as_deref(), Some("429"));
    }

    #[test]
    fn alias_groups_fold_every_alias_to_one_key() {
        let mut seen = std::collections::HashSet::new();
        for (canon, aliases) in ALIAS_GROUPS {
            assert!(aliases.contains(&canon), "{canon} is not in its own group");
            for a in aliases {
                assert!(seen.insert(*a), "{a} is in two groups");
                assert_eq!(canonical_key(a), canon);
                assert!(raw_keys(canon).contains(a));
            }
            assert_eq!(raw_keys(canon)[0], canon);
        }
        assert_eq!(canonical_key("db.system"), "db.system.name");
        assert_eq!(canonical_key("gen_ai.system"), "gen_ai.provider.name");
        assert_eq!(canonical_key("host.name"), "host.name");
        assert_eq!(raw_keys("host.name"), ["host.name"]);
        assert!(alias_pairs().contains(&("http.status_code", "http.response.status_code")));
        assert!(alias_pairs().iter().all(|(a, c)| a != c));
    }
}
