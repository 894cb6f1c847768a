//! "As recorded": an engine configuration sized like the server a conversation was
//! recorded on, derived from the store, so that a replay shows the prefix-cache
//! evictions the recording measured and configuration B can show what would resolve
//! them.
//!
//! What the store shows, and what it is turned into:
//! - **hits and misses**: per call, the cached prompt tokens the server reported
//!   (`cache_read`; absent on a call whose source sends it elsewhere means 0; a call
//!   that starts while another of the conversation runs is a duplicate span of that
//!   request and is skipped). Turn k of a conversation should have found the previous turn's
//!   prompt and answer cached (`min(input_k - 1, input_j + output_j)`, in full blocks);
//!   it *missed* when it found at least one block less.
//! - **capacity**: the pool held, at once, the prompts and answers of the calls that
//!   ran together; the smallest such pool (the most held at once, and one block) is
//!   the capacity used. It is a lower bound: the recording proves the cache was at
//!   least that big, not how much bigger it was.
//! - **load**: the other conversations of the same window are replayed as they were
//!   (their calls are in the workload). A miss that they do not explain was caused by
//!   load no trace shows (other tenants); it becomes a *burst* in `[background]`
//!   just before the turn that missed, of exactly as many tokens as LRU needs to allocate to evict
//!   what the recording lost: with the conversation's blocks the most recently freed,
//!   `capacity - kept` blocks, less what the traced competitors allocate in between.
//!
//! Token counts are scaled so that a recorded 16-token block (vLLM's default) is one
//! replay block: the replay's `block_size` is `16 x token_scale`, so block counts, and
//! with them the cache's capacity and the evicted blocks, are the recording's.

use tailscope_engine::{BackgroundLoad, Burst, EngineConfig};
use tailscope_model::ReplayWorkload;
use tailscope_store::LlmCallRow;

/// The recorded server's block size in tokens (vLLM's default; the telemetry does not say).
pub const RECORDED_BLOCK: u32 = 16;

/// The derived configuration and what it rests on.
#[derive(Debug, Clone)]
pub struct AsRecorded {
    pub config: EngineConfig,
    /// Evidence, one line each (also the comments at the top of [`AsRecorded::toml`]).
    pub notes: Vec<String>,
    /// Recorded misses of the focus conversation (turn index in the workload, kept
    /// blocks, expected blocks).
    pub misses: Vec<Miss>,
}

/// One recorded miss of the focus conversation, in replay blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    /// Turn index (from 0) of the call that missed.
    pub turn: u32,
    /// Blocks the recording found cached.
    pub kept: u32,
    /// Blocks it should have found (the previous turn's prompt and answer).
    pub expected: u32,
    /// Blocks of unseen load put before it (0: the traced competitors explain it).
    pub burst_blocks: u32,
}

/// Errors deriving the configuration.
#[derive(Debug, thiserror::Error)]
pub enum AsRecordedError {
    #[error("conversation {0:?} has no cached-token counts in the store (its instrumentation sends none, e.g. the OTel GenAI chat spans): the hit/miss pattern that sizes the cache is not visible; record with OpenInference, OpenLLMetry or LangChain, or pass --a")]
    NoCacheCounts(String),
    #[error("conversation {0:?} has no calls in the workload")]
    Empty(String),
}

/// The replay block size for `token_scale`: a recorded 16-token block scaled, at least 1.
pub fn block_size(token_scale: f64) -> usize {
    ((f64::from(RECORDED_BLOCK) * token_scale).round() as usize).max(1)
}

/// The token scale that makes one recorded block exactly one replay block, nearest to
/// `token_scale`.
pub fn snapped_scale(token_scale: f64) -> f64 {
    block_size(token_scale) as f64 / f64::from(RECORDED_BLOCK)
}

impl AsRecorded {
    /// The configuration as a TOML file a user can edit: the evidence as comments, then
    /// the fields.
    pub fn toml(&self) -> String {
        let mut s = String::from(
            "# \"As recorded\": derived by `tailscope replay --as-recorded` from the store.\n",
        );
        for n in &self.notes {
            s += "# ";
            s += n;
            s += "\n";
        }
        s += "\n";
        s += &self.config.to_toml();
        s
    }

    /// The same configuration with `factor` times the cache (a B that asks "would a
    /// bigger cache have kept the prefix?").
    pub fn bigger_cache(&self, factor: usize) -> EngineConfig {
        EngineConfig {
            cache_capacity_blocks: self.config.cache_capacity_blocks * factor.max(1),
            ..self.config.clone()
        }
    }
}

/// Derives the configuration for `workload` (built by [`crate::replay_input::workload`]
/// with `token_scale`, ideally [`snapped_scale`]) from the focus conversation's calls
/// (`focus`, in the order of its turns) and `base` (model, scheduler: kept as they are).
pub fn derive(
    workload: &ReplayWorkload,
    focus: &[LlmCallRow],
    token_scale: f64,
    max_output_tokens: u32,
    base: &EngineConfig,
) -> Result<AsRecorded, AsRecordedError> {
    let conv = workload.focus.as_str();
    let Some(session) = workload.sessions.iter().find(|s| s.id == conv) else {
        return Err(AsRecordedError::Empty(conv.to_owned()));
    };
    if session.turns.is_empty() || focus.len() != session.turns.len() {
        return Err(AsRecordedError::Empty(conv.to_owned()));
    }
    // absent is not zero, unless the source sends the count on the conversation's other calls
    if focus.iter().all(|c| c.cache_read_tokens.is_none()) {
        return Err(AsRecordedError::NoCacheCounts(conv.to_owned()));
    }
    let bs = block_size(token_scale);
    let rb = i64::from(RECORDED_BLOCK);
    let out_cap = max_output_tokens.max(1) as usize;
    // Capacity: what the server held at once (the recorded calls running at each
    // arrival, prompt and answer), + 1 block.
    let spans: Vec<(i64, i64, usize)> = workload
        .sessions
        .iter()
        .flat_map(|s| &s.turns)
        .map(|t| {
            let blocks =
                (t.input_tokens() as usize + (t.output_tokens as usize).min(out_cap)).div_ceil(bs);
            (
                t.arrival_ns,
                t.arrival_ns + t.recorded_e2e_ns.unwrap_or(0),
                blocks,
            )
        })
        .collect();
    let held = spans
        .iter()
        .map(|&(at, _, _)| {
            spans
                .iter()
                .filter(|&&(from, to, _)| from <= at && (at < to || from == at))
                .map(|&(_, _, b)| b)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(1);
    let capacity = held + 1;
    let first = workload.first_arrival_ns();
    let mut notes = vec![
        format!(
            "token_scale {token_scale}: one recorded block of {RECORDED_BLOCK} tokens is one replay block of {bs}"
        ),
        format!(
            "cache_capacity_blocks {capacity}: the most the recorded server held at once ({held} blocks: the prompts and answers of the calls running together) + 1; a lower bound (the recording proves at least this much)"
        ),
    ];
    let competitors = workload.sessions.len() - 1;
    notes.push(format!(
        "{competitors} traced conversations of the same window are replayed beside it; load no trace shows is [background]"
    ));
    let mut misses = Vec::new();
    let mut bursts = Vec::new();
    for (k, c) in focus.iter().enumerate().skip(1) {
        // A call that starts while an earlier one of the conversation still runs is the
        // same request seen twice (LangChain's ChatOpenAI + ChatCompletion siblings),
        // not a turn: skip it. Otherwise its previous turn is the call that finished last.
        if focus[..k].iter().any(|e| e.end_ns > c.start_ns) {
            continue;
        }
        let Some((jx, j)) = focus[..k]
            .iter()
            .enumerate()
            .max_by_key(|(i, e)| (e.end_ns, *i))
        else {
            continue;
        };
        let cached = c.cache_read_tokens.unwrap_or(0);
        let expected_rec = (c.input_tokens - 1).min(j.input_tokens + j.output_tokens) / rb;
        let kept_rec = cached / rb;
        if expected_rec <= 0 || kept_rec >= expected_rec - 1 {
            continue;
        }
        // in replay blocks: turn j's prompt is what the replayed turn k can find
        let (tj, tk) = (&session.turns[jx], &session.turns[k]);
        let expected = (tk.input_tokens().saturating_sub(1) as usize / bs)
            .min(tj.input_tokens() as usize / bs);
        let kept = (kept_rec.max(0) as usize).min(expected);
        // blocks the traced competitors allocate between the two arrivals
        let traced: usize = workload
            .sessions
            .iter()
            .filter(|s| s.id != conv)
            .flat_map(|s| &s.turns)
            .filter(|t| t.arrival_ns >= tj.arrival_ns && t.arrival_ns < tk.arrival_ns)
            .map(|t| (t.input_tokens() as usize).div_ceil(bs))
            .sum();
        let needed = capacity.saturating_sub(kept).saturating_sub(traced);
        // just before the turn arrives, after the previous one finished (in the recording
        // it had), so that the turn queues behind the whole burst
        let at_ns = tk.arrival_ns - ((tk.arrival_ns - tj.arrival_ns) / 2).min(1_000_000) - first;
        notes.push(format!(
            "call {} (trace {}) found {cached} of {} cached tokens recorded: {} of {} blocks lost{}",
            k + 1,
            c.trace_id,
            expected_rec * rb,
            expected.saturating_sub(kept),
            expected,
            if needed > 0 {
                format!(
                    "; the traced competitors allocate {traced} blocks in between, so a burst of {needed} blocks of unseen load at {:.3} s, just before the call",
                    at_ns as f64 / 1e9
                )
            } else {
                format!("; the traced competitors' {traced} blocks in between explain it")
            }
        ));
        misses.push(Miss {
            turn: k as u32,
            kept: kept as u32,
            expected: expected as u32,
            burst_blocks: needed as u32,
        });
        if needed > 0 {
            bursts.push(Burst {
                at_s: at_ns as f64 / 1e9,
                tokens: (needed * bs) as u32,
            });
        }
    }
    if misses.is_empty() {
        notes.push(
            "no turn of the conversation missed its cached prefix in the recording: no burst"
                .into(),
        );
    }
    // Burst requests: an eighth of the pool each (several run at once, none alone
    // fills it), whole blocks, one output token so that nothing but the prompt is cached.
    let per_request = ((capacity / 8).max(1) * bs) as u32;
    let config = EngineConfig {
        block_size: bs,
        cache_capacity_blocks: capacity,
        policy: tailscope_engine::PolicyKind::Lru,
        background: (!bursts.is_empty()).then_some(BackgroundLoad {
            rate_per_s: 0.0,
            prompt_tokens: per_request,
            output_tokens: 1,
            warmup_s: 0.0,
            bursts,
        }),
        ..base.clone()
    };
    Ok(AsRecorded {
        config,
        notes,
        misses,
    })
}
