//! Replays: the form's request, the saved list, and one replay's sides, turns and evictions.

/// A replay to run from the window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayRequest {
    pub conversation_id: String,
    /// Configurations A and B as TOML (the `--a` / `--b` files' text).
    pub a_toml: String,
    pub b_toml: String,
    /// Runs per side.
    pub repeats: u32,
    /// Recorded token counts are multiplied by this (small CPU model).
    pub token_scale: f64,
    pub max_output_tokens: u32,
}

/// One saved replay in the picker.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayListItem {
    pub replay_id: String,
    pub created_ns: i64,
    pub focus: String,
}

/// One side's summary (means over repeats).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplaySide {
    pub side: String,
    pub config_json: String,
    pub repeats: u32,
    /// (label, value, unit) in display order.
    pub metrics: Vec<(String, f64, String)>,
}

/// One turn of one side (first repeat).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayTurnVm {
    pub side: String,
    pub session_id: String,
    pub turn: i64,
    pub arrival_ns: i64,
    pub ttft_ns: i64,
    pub prefix_hit_tokens: i64,
    pub prefill_tokens: i64,
    pub input_tokens: i64,
}

/// One eviction of one side (first repeat).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayEvictionVm {
    pub side: String,
    pub t_ns: i64,
    pub owner_session: String,
    pub owner_turn: i64,
    pub by_session: String,
    pub by_turn: i64,
}

/// A saved replay: A vs B summaries, turns and evictions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayVm {
    pub replay_id: String,
    pub created_ns: i64,
    pub focus: String,
    pub sides: Vec<ReplaySide>,
    pub turns: Vec<ReplayTurnVm>,
    pub evictions: Vec<ReplayEvictionVm>,
}
