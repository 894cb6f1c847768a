//! Conversations: the picker's summaries and one conversation turn by turn.

use tailscope_model::Cause;

/// One conversation in the picker.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub turns: u64,
    pub total_ns: i64,
    pub evictions: u64,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnVm {
    pub trace_id: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub ttft_ns: Option<i64>,
    pub input_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub evicted: bool,
    pub primary_cause: Option<Cause>,
}

/// A conversation, turn by turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    pub conversation_id: String,
    pub turns: Vec<TurnVm>,
}
