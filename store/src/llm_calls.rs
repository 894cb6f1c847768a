//! Reads for replay: the LLM calls of a conversation and of the conversations that
//! competed with it for the same inference server.

use crate::{Store, StoreError};

/// One LLM client call with what a replay needs to re-issue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmCallRow {
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: Option<i64>,
    pub server_address: Option<String>,
    /// Measured TTFT: the server span's `ttft_ns`, else the client's time to first chunk.
    pub ttft_ns: Option<i64>,
}

/// A conversation worth replaying, with how often its prefix was evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayCandidate {
    pub conversation_id: String,
    pub calls: i64,
    pub kv_evictions: i64,
    pub max_input_tokens: i64,
    pub start_ns: i64,
    pub end_ns: i64,
}

const CALLS_SQL: &str = "
SELECT c.trace_id, c.span_id, c.conversation_id, c.start_ns, c.end_ns,
       c.input_tokens, coalesce(c.output_tokens, 1), c.cache_read_tokens, c.server_address,
       coalesce(max(s.ttft_ns), max(c.time_to_first_chunk_ns))
FROM spans c
LEFT JOIN spans s ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
                 AND s.op_class = 'llm' AND s.kind = 'server'
WHERE c.op_class = 'llm' AND c.kind = 'client' AND c.conversation_id IS NOT NULL
  AND c.input_tokens IS NOT NULL AND c.input_tokens > 0
  AND (?1 IS NULL OR c.conversation_id = ?1)
  AND c.start_ns < ?3 AND c.end_ns > ?2
GROUP BY ALL
ORDER BY c.start_ns, c.span_id";

impl Store {
    /// LLM client calls in start order, optionally of one conversation and/or
    /// overlapping the window `[from_ns, to_ns)`.
    pub fn llm_calls(
        &self,
        conversation: Option<&str>,
        window: Option<(i64, i64)>,
    ) -> Result<Vec<LlmCallRow>, StoreError> {
        let (from, to) = window.unwrap_or((i64::MIN, i64::MAX));
        let mut stmt = self.conn.prepare(CALLS_SQL)?;
        let rows = stmt.query_map(duckdb::params![conversation, from, to], |r| {
            Ok(LlmCallRow {
                trace_id: r.get(0)?,
                span_id: r.get(1)?,
                conversation_id: r.get(2)?,
                start_ns: r.get(3)?,
                end_ns: r.get(4)?,
                input_tokens: r.get(5)?,
                output_tokens: r.get(6)?,
                cache_read_tokens: r.get(7)?,
                server_address: r.get(8)?,
                ttft_ns: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Conversations with at least two LLM calls, those with the most detected KV
    /// evictions first (needs `analyze` to have run for the eviction counts).
    pub fn replay_candidates(&self, limit: usize) -> Result<Vec<ReplayCandidate>, StoreError> {
        let has_findings: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM information_schema.tables WHERE table_name = 'findings'",
            [],
            |r| r.get(0),
        )?;
        let evictions = if has_findings {
            "(SELECT count(*) FROM findings f WHERE f.kind = 'kv_eviction' AND f.conversation_id = c.conversation_id)"
        } else {
            "0"
        };
        let sql = format!(
            "SELECT c.conversation_id, count(*) AS calls, {evictions} AS ev, max(c.input_tokens),
                    min(c.start_ns), max(c.end_ns)
             FROM spans c
             WHERE c.op_class = 'llm' AND c.kind = 'client' AND c.conversation_id IS NOT NULL
               AND c.input_tokens > 0
             GROUP BY c.conversation_id HAVING count(*) >= 2
             ORDER BY ev DESC, calls DESC, c.conversation_id LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| {
            Ok(ReplayCandidate {
                conversation_id: r.get(0)?,
                calls: r.get(1)?,
                kv_evictions: r.get(2)?,
                max_input_tokens: r.get(3)?,
                start_ns: r.get(4)?,
                end_ns: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
