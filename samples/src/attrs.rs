//! Attribute helpers and the semantic-convention dialects the generator writes. Promotion
//! of analysis fields is `tailscope_model::semconv::promote`, the same one ingest uses.

use tailscope_model::{AttrValue, Attribute};

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
