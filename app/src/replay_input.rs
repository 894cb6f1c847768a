//! Replay input from the store: a conversation's LLM calls, and the calls of the
//! conversations that competed with it for the same inference server, as one
//! [`ReplayWorkload`] on one time axis.
//!
//! Token ids are synthesised (the store holds token *counts*, not text): every
//! conversation is one token stream, so call k's prompt is the first
//! `input_tokens` of that stream and shares exactly `min(input_k, input_j)` tokens
//! with an earlier call j of the same conversation, which is what a prefix cache sees
//! when a chat grows turn by turn. [`rows`] turns a finished A/B replay into the store's
//! replay rows (the CLI and the GUI's replay job save them the same way).

use tailscope_engine::{AbReport, RunReport};
use tailscope_model::{ReplayWorkload, Segment, Session, Turn};
use tailscope_store::{
    LlmCallRow, ReplayEvictionRow, ReplayRows, ReplayRunRow, ReplayTurnRow, StoreError,
};

/// How to cut the recording into a workload.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// Multiply token counts by this (>0, ≤1) so long recorded prompts replay in
    /// reasonable time on a small CPU model. Shared prefixes stay shared.
    pub token_scale: f64,
    /// At most this many competing conversations (those with the most tokens in the window).
    pub max_background: usize,
    /// Cap on any one prompt after scaling (the model's context).
    pub max_prompt_tokens: u32,
}

impl Default for InputOptions {
    fn default() -> Self {
        Self {
            token_scale: 1.0,
            max_background: 8,
            max_prompt_tokens: 4096,
        }
    }
}

/// Errors building replay input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("conversation {0:?} has nothing to replay in this store ({1}); list candidates with `tailscope replay --list`")]
    NoCalls(String, tailscope_store::CallCensus),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] tailscope_store::query::QueryError),
}

/// A conversation's stream id: FNV-1a of its id, so the same id always gives the same tokens.
pub fn stream_of(conversation_id: &str) -> u64 {
    conversation_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn scaled(n: i64, scale: f64, cap: u32) -> u32 {
    let v = ((n.max(1) as f64) * scale).round().max(1.0);
    (v.min(f64::from(cap))) as u32
}

/// Builds the workload for `conversation` from the store.
pub fn workload(
    store: &impl tailscope_store::query::TraceSource,
    conversation: &str,
    opts: &InputOptions,
) -> Result<ReplayWorkload, InputError> {
    let focus = store.replay_calls(Some(conversation), None)?;
    let (Some(first), Some(last_end)) = (focus.first(), focus.iter().map(|c| c.end_ns).max())
    else {
        return Err(InputError::NoCalls(
            conversation.to_owned(),
            store.call_census(Some(conversation))?,
        ));
    };
    let server = first.server_address.clone();
    let window = (first.start_ns, last_end);
    let mut others: std::collections::BTreeMap<String, Vec<LlmCallRow>> =
        std::collections::BTreeMap::new();
    for c in store.replay_calls(None, Some(window))? {
        if c.conversation_id == conversation
            || (server.is_some() && c.server_address.is_some() && c.server_address != server)
        {
            continue;
        }
        others.entry(c.conversation_id.clone()).or_default().push(c);
    }
    let mut ranked: Vec<(String, Vec<LlmCallRow>)> = others.into_iter().collect();
    ranked.sort_by_key(|(id, calls)| {
        let tokens: i64 = calls.iter().map(|c| c.input_tokens).sum();
        (std::cmp::Reverse(tokens), id.clone())
    });
    ranked.truncate(opts.max_background);

    let t0 = ranked
        .iter()
        .flat_map(|(_, calls)| calls.iter().map(|c| c.start_ns))
        .chain([first.start_ns])
        .min()
        .unwrap_or(first.start_ns);
    let mut sessions = vec![session(conversation, &focus, t0, opts)];
    sessions.extend(
        ranked
            .iter()
            .map(|(id, calls)| session(id, calls, t0, opts)),
    );
    Ok(ReplayWorkload {
        focus: conversation.to_owned(),
        sessions,
    })
}

fn session(id: &str, calls: &[LlmCallRow], t0: i64, opts: &InputOptions) -> Session {
    let stream = stream_of(id);
    let mut prev_end: Option<i64> = None;
    let turns = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let think_ns = prev_end.map_or(0, |e| (c.start_ns - e).max(0));
            prev_end = Some(c.end_ns);
            Turn {
                index: i as u32,
                trace_id: Some(c.trace_id.clone()),
                arrival_ns: c.start_ns - t0,
                think_ns,
                prompt: vec![Segment {
                    stream,
                    len: scaled(c.input_tokens, opts.token_scale, opts.max_prompt_tokens),
                }],
                output_tokens: scaled(c.output_tokens, opts.token_scale, opts.max_prompt_tokens),
                recorded_ttft_ns: c.ttft_ns,
                recorded_e2e_ns: Some(c.end_ns - c.start_ns),
            }
        })
        .collect();
    Session {
        id: id.to_owned(),
        turns,
    }
}

/// The store rows of a finished A/B replay.
pub fn rows(report: &AbReport, workload: &ReplayWorkload) -> ReplayRows {
    let traces: std::collections::HashMap<(&str, u32), &str> = workload
        .sessions
        .iter()
        .flat_map(|s| {
            s.turns
                .iter()
                .filter_map(move |t| Some(((s.id.as_str(), t.index), t.trace_id.as_deref()?)))
        })
        .collect();
    let mut out = ReplayRows {
        focus: report.focus.clone(),
        ..ReplayRows::default()
    };
    let sides = [("A", &report.runs_a), ("B", &report.runs_b)];
    for (side, runs) in sides {
        for (repeat, run) in runs.iter().enumerate() {
            add_run(&mut out, side, repeat as i32, run);
        }
    }
    for t in &mut out.turns {
        if let Some(id) = traces.get(&(t.session_id.as_str(), t.turn as u32)) {
            t.trace_id = Some((*id).to_owned());
        }
    }
    out
}

fn add_run(out: &mut ReplayRows, side: &str, repeat: i32, run: &RunReport) {
    let s = &run.summary;
    out.runs.push(ReplayRunRow {
        side: side.to_owned(),
        repeat,
        config_json: serde_json::to_string(&run.config).unwrap_or_default(),
        summary: [
            s.ttft_p50_ms,
            s.ttft_p99_ms,
            s.tpot_p50_ms,
            s.tpot_p99_ms,
            s.itl_p50_ms,
            s.itl_p99_ms,
            s.e2e_p50_ms,
            s.e2e_p99_ms,
            s.throughput_tok_s,
            s.goodput_req_s,
            s.goodput_fraction,
            s.prefix_hit_tokens,
            s.evicted_blocks,
            s.preemptions,
            s.makespan_ms,
        ],
    });
    out.turns.extend(run.turns.iter().map(|t| ReplayTurnRow {
        side: side.to_owned(),
        repeat,
        session_id: t.session.clone(),
        turn: t.turn as i32,
        trace_id: None,
        input_tokens: t.input_tokens as i64,
        output_tokens: t.output_tokens as i64,
        arrival_ns: t.arrival_ns,
        ttft_ns: t.ttft_ns,
        tpot_ns: t.tpot_ns,
        e2e_ns: t.e2e_ns,
        prefix_hit_tokens: t.prefix_hit_tokens as i64,
        prefill_tokens: t.prefill_tokens as i64,
        preemptions: t.preemptions as i32,
        recorded_ttft_ns: t.recorded_ttft_ns,
    }));
    out.evictions
        .extend(run.evictions.iter().map(|e| ReplayEvictionRow {
            side: side.to_owned(),
            repeat,
            t_ns: e.t_ns,
            block: e.block as i32,
            owner_session: e.owner_session.clone(),
            owner_turn: e.owner_turn.map(|t| t as i32),
            by_session: e.by_session.clone(),
            by_turn: e.by_turn as i32,
        }));
}
