//! Spans, their attributes, events and links, and the fields promoted for analysis.

use crate::{SpanId, TraceId};
use serde::{Deserialize, Serialize};

/// An attribute value as OTLP carries it. Arrays and maps are kept as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    /// `ArrayValue` or `KeyValueList`, rendered as JSON.
    Json(String),
}

impl AttrValue {
    /// Name stored in the `value_type` column.
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::Str(_) => "string",
            AttrValue::Int(_) => "int",
            AttrValue::Double(_) => "double",
            AttrValue::Bool(_) => "bool",
            AttrValue::Bytes(_) => "bytes",
            AttrValue::Json(_) => "json",
        }
    }

    /// The value as text (bytes as hex).
    pub fn to_display(&self) -> String {
        match self {
            AttrValue::Str(s) | AttrValue::Json(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Bytes(b) => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                b.iter()
                    .flat_map(|x| [DIGITS[usize::from(x >> 4)], DIGITS[usize::from(x & 0xf)]])
                    .map(char::from)
                    .collect()
            }
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Integer view: ints, integral doubles and numeric strings (SDKs differ).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            AttrValue::Double(d) if d.is_finite() && d.fract() == 0.0 => Some(*d as i64),
            AttrValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Float view: doubles, ints and numeric strings.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Double(d) if d.is_finite() => Some(*d),
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Str(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            AttrValue::Str(s) => match s.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

/// One key/value pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub key: String,
    pub value: AttrValue,
}

impl Attribute {
    pub fn new(key: impl Into<String>, value: AttrValue) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }
}

/// OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// From the OTLP enum number; `None` for numbers the spec does not define.
    pub fn from_otlp(n: i32) -> Option<Self> {
        Some(match n {
            0 => SpanKind::Unspecified,
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// OTLP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    pub fn from_otlp(n: i32) -> Option<Self> {
        Some(match n {
            0 => StatusCode::Unset,
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

/// What kind of work a span does, derived from its semantic conventions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    Llm,
    Embedding,
    Retrieval,
    Tool,
    Agent,
    Mcp,
    Db,
    Pool,
    Http,
    #[default]
    Other,
}

impl OpClass {
    pub const ALL: [OpClass; 10] = [
        OpClass::Llm,
        OpClass::Embedding,
        OpClass::Retrieval,
        OpClass::Tool,
        OpClass::Agent,
        OpClass::Mcp,
        OpClass::Db,
        OpClass::Pool,
        OpClass::Http,
        OpClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpClass::Llm => "llm",
            OpClass::Embedding => "embedding",
            OpClass::Retrieval => "retrieval",
            OpClass::Tool => "tool",
            OpClass::Agent => "agent",
            OpClass::Mcp => "mcp",
            OpClass::Db => "db",
            OpClass::Pool => "pool",
            OpClass::Http => "http",
            OpClass::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<OpClass> {
        OpClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Fields analysis needs, lifted out of the attributes whatever dialect they came in.
/// Durations are nanoseconds; token counts are plain counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Promoted {
    pub op_class: OpClass,
    /// `gen_ai.operation.name` (or the OpenInference span kind, lowercased).
    pub operation: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub conversation_id: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub stream: Option<bool>,
    pub time_to_first_chunk_ns: Option<i64>,
    /// vLLM `llm_request` latency breakdown.
    pub queue_ns: Option<i64>,
    pub ttft_ns: Option<i64>,
    pub prefill_ns: Option<i64>,
    pub decode_ns: Option<i64>,
    pub inference_ns: Option<i64>,
    pub e2e_ns: Option<i64>,
    pub tool_name: Option<String>,
    pub tool_call_id: Option<String>,
    pub agent_name: Option<String>,
    pub data_source_id: Option<String>,
    pub mcp_method: Option<String>,
    pub mcp_session_id: Option<String>,
    pub db_system: Option<String>,
    pub db_operation: Option<String>,
    pub db_query_summary: Option<String>,
    pub db_pool_name: Option<String>,
    pub pool_wait_ns: Option<i64>,
    pub server_address: Option<String>,
    pub error_type: Option<String>,
    /// `faas.coldstart`: the invocation started a new instance.
    pub cold_start: Option<bool>,
    /// `http.request.resend_count`: this request is the n-th resend (a retry or redirect).
    pub resend_count: Option<i64>,
}

/// A timestamped event inside a span (streaming chunks, exceptions, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time_ns: i64,
    pub name: String,
    pub attributes: Vec<Attribute>,
}

/// A link from a span to another span (async sub-agents, batch consumers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Vec<Attribute>,
}

/// One span, validated (ids well formed, end not before start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: i64,
    pub end_ns: i64,
    pub status: StatusCode,
    pub status_message: String,
    pub resource_id: i64,
    pub service_name: String,
    pub scope_name: String,
    pub scope_version: String,
    pub attributes: Vec<Attribute>,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
    pub promoted: Promoted,
}

impl Span {
    /// An internal span with these ids and times and nothing else: no parent, name,
    /// service, attributes, events, links or promoted fields.
    pub fn bare(trace_id: TraceId, span_id: SpanId, start_ns: i64, end_ns: i64) -> Self {
        Self {
            trace_id,
            span_id,
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: String::new(),
            kind: SpanKind::Internal,
            start_ns,
            end_ns,
            status: StatusCode::Unset,
            status_message: String::new(),
            resource_id: 0,
            service_name: String::new(),
            scope_name: String::new(),
            scope_version: String::new(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            promoted: Promoted::default(),
        }
    }

    pub fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }

    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| &a.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_views_accept_sdk_variants() {
        assert_eq!(AttrValue::Str("12".into()).as_i64(), Some(12));
        assert_eq!(AttrValue::Double(3.0).as_i64(), Some(3));
        assert_eq!(AttrValue::Double(3.5).as_i64(), None);
        assert_eq!(AttrValue::Int(2).as_f64(), Some(2.0));
        assert_eq!(AttrValue::Double(f64::NAN).as_f64(), None);
        assert_eq!(AttrValue::Str("true".into()).as_bool(), Some(true));
        assert_eq!(AttrValue::Bytes(vec![0xab, 1]).to_display(), "ab01");
    }

    #[test]
    fn enums_reject_unknown_numbers() {
        assert_eq!(SpanKind::from_otlp(3), Some(SpanKind::Client));
        assert_eq!(SpanKind::from_otlp(9), None);
        assert_eq!(StatusCode::from_otlp(-1), None);
        for c in OpClass::ALL {
            assert_eq!(OpClass::parse(c.as_str()), Some(c));
        }
    }
}
