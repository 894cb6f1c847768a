//! Reads for replay: the LLM calls of a conversation and of the conversations that
//! competed with it for the same inference server.

use crate::read::opt_i64;
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

/// One LLM call as the latency model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSampleRow {
    pub span_id: String,
    /// Own, the parent's, or the one analysis recorded for the span.
    pub conversation_id: Option<String>,
    pub start_ns: i64,
    pub model: String,
    pub server: String,
    pub input_tokens: i64,
    pub cache_read_tokens: Option<i64>,
    pub output_tokens: i64,
    pub ttft_ns: Option<i64>,
    pub duration_ns: i64,
    /// The service and instrumentation scope of the span (with the model, its source:
    /// sources differ in which optional fields they send).
    pub service_name: String,
    pub scope_name: String,
}

/// Client-side LLM spans of any kind that wrap no other LLM call (the innermost call),
/// with token counts.
const SAMPLES_SQL: &str = "
SELECT coalesce(c.model, '') AS model, coalesce(c.server_address, '') AS server,
       c.input_tokens::BIGINT AS input_tokens, c.cache_read_tokens::BIGINT AS cache_read_tokens,
       c.output_tokens::BIGINT AS output_tokens, c.time_to_first_chunk_ns::BIGINT AS ttft_ns,
       c.duration_ns::BIGINT AS duration_ns, c.span_id,
       coalesce(c.conversation_id, p.conversation_id, sa.conversation_id) AS conversation_id,
       c.start_ns::BIGINT AS start_ns, c.service_name, coalesce(c.scope_name, '') AS scope_name
FROM spans c
-- only parents with a conversation can lend one: a far smaller side to join
LEFT JOIN (SELECT trace_id, span_id, conversation_id FROM spans WHERE conversation_id IS NOT NULL) p
    ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
LEFT JOIN span_times sa ON sa.trace_id = TRY_CAST(c.trace_id AS UUID)
    AND sa.span_id = TRY_CAST('0x' || c.span_id AS UBIGINT)
WHERE c.op_class = 'llm' AND c.kind <> 'server'
  AND c.input_tokens IS NOT NULL AND c.output_tokens IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM spans k WHERE k.trace_id = c.trace_id AND k.parent_span_id = c.span_id
                  AND k.op_class = 'llm' AND k.kind <> 'server')
-- the fit's bootstrap draws by position: an order that does not depend on how the rows
-- were stored (or on the join's threads) keeps its intervals the same for the same calls
ORDER BY c.start_ns, c.trace_id, c.span_id";

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

/// LLM calls: client-side LLM spans of any kind (OpenInference's are INTERNAL) that
/// wrap no other LLM call, with their conversation (own, else the one analysis
/// inherited from an ancestor or a linked span), and the TTFT of the server span below
/// them (directly, or under an HTTP client span) or their own time to first chunk.
const CALL_ROWS: &str = "
WITH calls AS (
    SELECT c.*, coalesce(c.conversation_id, sa.conversation_id) AS conv
    FROM spans c
    LEFT JOIN span_times sa ON sa.trace_id = TRY_CAST(c.trace_id AS UUID)
    AND sa.span_id = TRY_CAST('0x' || c.span_id AS UBIGINT)
    WHERE c.op_class = 'llm' AND c.kind <> 'server'
      AND NOT EXISTS (SELECT 1 FROM spans k WHERE k.trace_id = c.trace_id AND k.parent_span_id = c.span_id
                      AND k.op_class = 'llm' AND k.kind <> 'server')
)";

const CALLS_SQL: &str = "
SELECT c.trace_id, c.span_id, c.conv, c.start_ns, c.end_ns,
       c.input_tokens, coalesce(c.output_tokens, 1), c.cache_read_tokens, c.server_address,
       coalesce(max(s.ttft_ns), max(c.time_to_first_chunk_ns))
FROM calls c
LEFT JOIN spans h ON h.trace_id = c.trace_id AND h.parent_span_id = c.span_id
LEFT JOIN spans s ON s.trace_id = c.trace_id AND s.op_class = 'llm' AND s.kind = 'server'
                 AND (s.parent_span_id = c.span_id OR s.parent_span_id = h.span_id)
WHERE c.conv IS NOT NULL
  AND c.input_tokens IS NOT NULL AND c.input_tokens > 0
  AND (?1 IS NULL OR c.conv = ?1)
  AND c.start_ns < ?3 AND c.end_ns > ?2
GROUP BY ALL
ORDER BY c.start_ns, c.span_id";

/// Why a store (or a conversation) has nothing to replay: LLM calls, those with a
/// conversation id (own or inherited), and those with input token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCensus {
    pub llm_calls: i64,
    pub with_conversation: i64,
    pub with_input_tokens: i64,
    pub replayable: i64,
}

impl std::fmt::Display for CallCensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} LLM calls, {} with a conversation or session id (own or inherited from an ancestor span), {} with input token counts, {} with both",
            self.llm_calls, self.with_conversation, self.with_input_tokens, self.replayable
        )
    }
}

impl Store {
    /// Every LLM call with token counts, for the latency model of analysis.
    pub fn llm_call_samples(&self) -> Result<Vec<CallSampleRow>, StoreError> {
        // read as Arrow: row-by-row values cost more than the query (0.3 s at 110k calls)
        let mut stmt = self.conn.prepare(SAMPLES_SQL)?;
        let mut out = Vec::new();
        crate::read::stream_batches(&mut stmt, [], |b| {
            let c = crate::read::Columns::new(b);
            let (model, server, span, conv) = (
                c.str("model")?,
                c.str("server")?,
                c.str("span_id")?,
                c.str("conversation_id")?,
            );
            let (service, scope) = (c.str("service_name")?, c.str("scope_name")?);
            let [input, cached, output, ttft, duration, start] = c
                .i64s([
                    "input_tokens",
                    "cache_read_tokens",
                    "output_tokens",
                    "ttft_ns",
                    "duration_ns",
                    "start_ns",
                ])?
                .try_into()
                .map_err(|_| StoreError::Schema("six columns asked for".into()))?;
            out.extend((0..b.num_rows()).map(|r| CallSampleRow {
                model: model.value(r).to_owned(),
                server: server.value(r).to_owned(),
                input_tokens: input.value(r),
                cache_read_tokens: opt_i64(cached, r),
                output_tokens: output.value(r),
                ttft_ns: opt_i64(ttft, r),
                duration_ns: duration.value(r),
                span_id: span.value(r).to_owned(),
                conversation_id: crate::read::opt_string(conv, r),
                start_ns: start.value(r),
                service_name: service.value(r).to_owned(),
                scope_name: scope.value(r).to_owned(),
            }));
            Ok(())
        })?;
        Ok(out)
    }

    /// LLM client calls in start order, optionally of one conversation and/or
    /// overlapping the window `[from_ns, to_ns)`.
    pub fn llm_calls(
        &self,
        conversation: Option<&str>,
        window: Option<(i64, i64)>,
    ) -> Result<Vec<LlmCallRow>, StoreError> {
        let (from, to) = window.unwrap_or((i64::MIN, i64::MAX));
        let mut stmt = self.conn.prepare(&format!("{CALL_ROWS} {CALLS_SQL}"))?;
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

    /// (tool, duration) of every tool or MCP call but `initialize`, for the usual
    /// duration of each tool.
    pub fn tool_durations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT coalesce(tool_name, name) AS tool, duration_ns FROM spans
             WHERE op_class IN ('tool', 'mcp') AND coalesce(mcp_method, '') <> 'initialize'",
        )?;
        // as Arrow, as the call samples are (hundreds of thousands of rows)
        let mut out = Vec::new();
        crate::read::stream_batches(&mut stmt, [], |b| {
            let c = crate::read::Columns::new(b);
            let (tool, duration) = (c.str("tool")?, c.i64("duration_ns")?);
            out.extend((0..b.num_rows()).map(|r| (tool.value(r).to_owned(), duration.value(r))));
            Ok(())
        })?;
        Ok(out)
    }

    /// Counts behind an empty replay list, over the whole store or one conversation.
    pub fn llm_call_census(&self, conversation: Option<&str>) -> Result<CallCensus, StoreError> {
        let sql = format!(
            "{CALL_ROWS}
             SELECT count(*), count(conv), count(input_tokens),
                    count(*) FILTER (WHERE conv IS NOT NULL AND input_tokens > 0)
             FROM calls WHERE ?1 IS NULL OR conv = ?1"
        );
        Ok(self
            .conn
            .query_row(&sql, duckdb::params![conversation], |r| {
                Ok(CallCensus {
                    llm_calls: r.get(0)?,
                    with_conversation: r.get(1)?,
                    with_input_tokens: r.get(2)?,
                    replayable: r.get(3)?,
                })
            })?)
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
        let evictions = evictions.replace("c.conversation_id", "c.conv");
        let sql = format!(
            "{CALL_ROWS}
             SELECT c.conv, count(*) AS calls, {evictions} AS ev, max(c.input_tokens),
                    min(c.start_ns), max(c.end_ns)
             FROM calls c
             WHERE c.conv IS NOT NULL AND c.input_tokens > 0
             GROUP BY c.conv HAVING count(*) >= 2
             ORDER BY ev DESC, calls DESC, c.conv LIMIT {limit}"
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
