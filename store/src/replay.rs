//! Replay results (`tailscope replay`): created on first use, appended per replay so
//! earlier comparisons stay readable. Three tables keyed by `replay_id`:
//! `replay_runs` (one row per side and repeat, vLLM summary metrics),
//! `replay_turns` (one row per replayed request) and `replay_evictions`.

use crate::{Store, StoreError};
use duckdb::params;

const DDL: &str = r"
CREATE TABLE IF NOT EXISTS replay_runs (
    replay_id BIGINT NOT NULL, created_ns BIGINT NOT NULL, focus VARCHAR NOT NULL,
    side VARCHAR NOT NULL, repeat INTEGER NOT NULL, config_json VARCHAR NOT NULL,
    ttft_p50_ms DOUBLE, ttft_p99_ms DOUBLE, tpot_p50_ms DOUBLE, tpot_p99_ms DOUBLE,
    itl_p50_ms DOUBLE, itl_p99_ms DOUBLE, e2e_p50_ms DOUBLE, e2e_p99_ms DOUBLE,
    throughput_tok_s DOUBLE, goodput_req_s DOUBLE, goodput_fraction DOUBLE,
    prefix_hit_tokens DOUBLE, evicted_blocks DOUBLE, preemptions DOUBLE, makespan_ms DOUBLE);
CREATE TABLE IF NOT EXISTS replay_turns (
    replay_id BIGINT NOT NULL, side VARCHAR NOT NULL, repeat INTEGER NOT NULL,
    session_id VARCHAR NOT NULL, turn INTEGER NOT NULL, trace_id VARCHAR,
    input_tokens BIGINT, output_tokens BIGINT, arrival_ns BIGINT, ttft_ns BIGINT,
    tpot_ns BIGINT, e2e_ns BIGINT, prefix_hit_tokens BIGINT, prefill_tokens BIGINT,
    preemptions INTEGER, recorded_ttft_ns BIGINT);
CREATE TABLE IF NOT EXISTS replay_evictions (
    replay_id BIGINT NOT NULL, side VARCHAR NOT NULL, repeat INTEGER NOT NULL,
    t_ns BIGINT NOT NULL, block INTEGER NOT NULL, owner_session VARCHAR, owner_turn INTEGER,
    by_session VARCHAR NOT NULL, by_turn INTEGER NOT NULL);
";

/// One run (a side and a repeat) with its summary metrics, in `replay_runs` column order
/// after `config_json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRunRow {
    pub side: String,
    pub repeat: i32,
    pub config_json: String,
    /// ttft p50/p99, tpot p50/p99, itl p50/p99, e2e p50/p99 (ms), throughput, goodput req/s,
    /// goodput fraction, prefix hit tokens, evicted blocks, preemptions, makespan ms.
    pub summary: [f64; 15],
}

/// One replayed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayTurnRow {
    pub side: String,
    pub repeat: i32,
    pub session_id: String,
    pub turn: i32,
    pub trace_id: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub arrival_ns: i64,
    pub ttft_ns: i64,
    pub tpot_ns: i64,
    pub e2e_ns: i64,
    pub prefix_hit_tokens: i64,
    pub prefill_tokens: i64,
    pub preemptions: i32,
    pub recorded_ttft_ns: Option<i64>,
}

/// One evicted prefix-cache block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEvictionRow {
    pub side: String,
    pub repeat: i32,
    pub t_ns: i64,
    pub block: i32,
    pub owner_session: Option<String>,
    pub owner_turn: Option<i32>,
    pub by_session: String,
    pub by_turn: i32,
}

/// Everything one `tailscope replay` saves.
#[derive(Debug, Clone, Default)]
pub struct ReplayRows {
    pub focus: String,
    pub runs: Vec<ReplayRunRow>,
    pub turns: Vec<ReplayTurnRow>,
    pub evictions: Vec<ReplayEvictionRow>,
}

impl Store {
    /// Appends one replay's results in one transaction; returns its `replay_id`.
    pub fn save_replay(&self, rows: &ReplayRows) -> Result<i64, StoreError> {
        let c = &self.conn;
        c.execute_batch(DDL)?;
        c.execute_batch("BEGIN TRANSACTION")?;
        let result = (|| -> Result<i64, StoreError> {
            let id: i64 = c.query_row(
                "SELECT coalesce(max(replay_id), 0) + 1 FROM replay_runs",
                [],
                |r| r.get(0),
            )?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            let mut runs = c.prepare(
                "INSERT INTO replay_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?;
            for r in &rows.runs {
                let s = &r.summary;
                runs.execute(params![
                    id,
                    now,
                    rows.focus,
                    r.side,
                    r.repeat,
                    r.config_json,
                    s[0],
                    s[1],
                    s[2],
                    s[3],
                    s[4],
                    s[5],
                    s[6],
                    s[7],
                    s[8],
                    s[9],
                    s[10],
                    s[11],
                    s[12],
                    s[13],
                    s[14]
                ])?;
            }
            let mut turns = c.prepare(
                "INSERT INTO replay_turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?;
            for t in &rows.turns {
                turns.execute(params![
                    id,
                    t.side,
                    t.repeat,
                    t.session_id,
                    t.turn,
                    t.trace_id,
                    t.input_tokens,
                    t.output_tokens,
                    t.arrival_ns,
                    t.ttft_ns,
                    t.tpot_ns,
                    t.e2e_ns,
                    t.prefix_hit_tokens,
                    t.prefill_tokens,
                    t.preemptions,
                    t.recorded_ttft_ns
                ])?;
            }
            let mut ev =
                c.prepare("INSERT INTO replay_evictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")?;
            for e in &rows.evictions {
                ev.execute(params![
                    id,
                    e.side,
                    e.repeat,
                    e.t_ns,
                    e.block,
                    e.owner_session,
                    e.owner_turn,
                    e.by_session,
                    e.by_turn
                ])?;
            }
            Ok(id)
        })();
        match result {
            Ok(id) => {
                c.execute_batch("COMMIT")?;
                Ok(id)
            }
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}
