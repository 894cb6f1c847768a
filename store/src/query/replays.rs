//! Saved replays as the replay view reads them.

use super::QueryError;
use crate::Store;

/// `replay_runs`' summary columns, in [`crate::ReplayRunRow::summary`] order.
pub const REPLAY_SUMMARY_COLUMNS: [&str; 15] = [
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "throughput_tok_s",
    "goodput_req_s",
    "goodput_fraction",
    "prefix_hit_tokens",
    "evicted_blocks",
    "preemptions",
    "makespan_ms",
];

/// A saved replay in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayItem {
    pub replay_id: i64,
    pub created_ns: i64,
    pub focus: String,
}

/// One side of a replay: its configuration and the mean of each summary metric over
/// its repeats (NaN where none was recorded), in [`REPLAY_SUMMARY_COLUMNS`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySideSummary {
    pub side: String,
    pub config_json: String,
    pub repeats: u32,
    pub summary: [f64; 15],
}

/// A replayed request of the first repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayTurnItem {
    pub side: String,
    pub session_id: String,
    pub turn: i64,
    pub arrival_ns: i64,
    pub ttft_ns: i64,
    pub prefix_hit_tokens: i64,
    pub prefill_tokens: i64,
    pub input_tokens: i64,
}

/// An evicted block of the first repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEvictionItem {
    pub side: String,
    pub t_ns: i64,
    /// Empty when the block had no owner.
    pub owner_session: String,
    /// -1 when the block had no owner.
    pub owner_turn: i64,
    pub by_session: String,
    pub by_turn: i64,
}

/// One saved replay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayDetail {
    pub replay_id: i64,
    pub created_ns: i64,
    pub focus: String,
    pub sides: Vec<ReplaySideSummary>,
    pub turns: Vec<ReplayTurnItem>,
    pub evictions: Vec<ReplayEvictionItem>,
}

impl Store {
    fn has_replays(&self) -> Result<bool, QueryError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('replay_runs', 'replay_turns', 'replay_evictions')",
            [],
            |r| r.get(0),
        )?;
        Ok(n == 3)
    }

    pub(super) fn replays_q(&self, limit: usize) -> Result<Vec<ReplayItem>, QueryError> {
        if !self.has_replays()? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT replay_id, max(created_ns) AS created_ns, any_value(focus) AS focus FROM replay_runs
             GROUP BY replay_id ORDER BY 2 DESC, 1 DESC LIMIT ?",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(ReplayItem {
                replay_id: r.get("replay_id")?,
                created_ns: r.get("created_ns")?,
                focus: r.get("focus")?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn replay_q(&self, id: i64) -> Result<ReplayDetail, QueryError> {
        if !self.has_replays()? {
            return Err(QueryError::NotFound("this store has no replays".to_owned()));
        }
        let avgs = REPLAY_SUMMARY_COLUMNS
            .iter()
            .map(|c| format!("avg({c})::DOUBLE AS {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut d = ReplayDetail {
            replay_id: id,
            ..ReplayDetail::default()
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT side, max(created_ns) AS created_ns, any_value(focus) AS focus,
                    any_value(config_json) AS config_json, count(*) AS repeats, {avgs}
             FROM replay_runs WHERE replay_id = ? GROUP BY side ORDER BY side"
        ))?;
        let sides = stmt.query_map([id], |r| {
            let mut summary = [f64::NAN; 15];
            for (s, c) in summary.iter_mut().zip(REPLAY_SUMMARY_COLUMNS) {
                *s = r.get::<_, Option<f64>>(c)?.unwrap_or(f64::NAN);
            }
            Ok((
                r.get::<_, i64>("created_ns")?,
                r.get::<_, String>("focus")?,
                ReplaySideSummary {
                    side: r.get("side")?,
                    config_json: r.get("config_json")?,
                    repeats: u32::try_from(r.get::<_, i64>("repeats")?).unwrap_or(0),
                    summary,
                },
            ))
        })?;
        for s in sides {
            let (created, focus, side) = s?;
            d.created_ns = created;
            d.focus = focus;
            d.sides.push(side);
        }
        if d.sides.is_empty() {
            return Err(QueryError::NotFound(format!(
                "replay {id} is not in the store"
            )));
        }
        let mut stmt = self.conn.prepare(
            "SELECT side, session_id, turn, arrival_ns, ttft_ns, prefix_hit_tokens, prefill_tokens, input_tokens
             FROM replay_turns WHERE replay_id = ?1
               AND repeat = (SELECT min(repeat) FROM replay_turns WHERE replay_id = ?1)
             ORDER BY side, arrival_ns, session_id, turn",
        )?;
        let n = |v: Option<i64>| v.unwrap_or(0);
        d.turns = stmt
            .query_map([id], |r| {
                Ok(ReplayTurnItem {
                    side: r.get("side")?,
                    session_id: r.get("session_id")?,
                    turn: r.get("turn")?,
                    arrival_ns: n(r.get("arrival_ns")?),
                    ttft_ns: n(r.get("ttft_ns")?),
                    prefix_hit_tokens: n(r.get("prefix_hit_tokens")?),
                    prefill_tokens: n(r.get("prefill_tokens")?),
                    input_tokens: n(r.get("input_tokens")?),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT side, t_ns, coalesce(owner_session, '') AS owner_session,
                    coalesce(owner_turn, -1) AS owner_turn, by_session, by_turn
             FROM replay_evictions WHERE replay_id = ?1
               AND repeat = (SELECT min(repeat) FROM replay_runs WHERE replay_id = ?1)
             ORDER BY side, t_ns LIMIT 100000",
        )?;
        d.evictions = stmt
            .query_map([id], |r| {
                Ok(ReplayEvictionItem {
                    side: r.get("side")?,
                    t_ns: r.get("t_ns")?,
                    owner_session: r.get("owner_session")?,
                    owner_turn: r.get("owner_turn")?,
                    by_session: r.get("by_session")?,
                    by_turn: r.get("by_turn")?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(d)
    }
}
