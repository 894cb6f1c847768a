//! What a trace source (the local store, a remote engine) hands the analysis core's
//! pure functions: plain rows, read once, with no storage behind them.

/// Where an attribute key occurs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyPresence {
    /// On some span's attributes.
    pub on_spans: bool,
    /// On some resource's attributes.
    pub on_resources: bool,
}

impl KeyPresence {
    pub fn anywhere(self) -> bool {
        self.on_spans || self.on_resources
    }
}

/// One analysed trace as the per-tenant view reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTrace {
    /// The tenant key's value on the trace's spans (the smallest when several differ),
    /// else on their resources; `None` when neither has it.
    pub tenant: Option<String>,
    pub duration_ns: i64,
    /// Input and output tokens of the trace's innermost LLM client calls.
    pub input_tokens: i64,
    pub output_tokens: i64,
}
