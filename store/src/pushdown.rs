//! What a ClickHouse source computes where the spans are kept, so that they need not
//! come to the desktop: each cohort trace's distinct values for `compare` (`ARRAY
//! JOIN` over the maps), the cohorts' critical-path time per operation for the report
//! (the shared per-span results joined with the spans' names), and a row per analysed
//! trace for the per-tenant view (its tenant, duration and tokens), and what `diff`
//! reads of a period (the analysed traces, the spans' durations per operation, the
//! innermost LLM calls as the shared results keep them), all sent as `RowBinary`. Cohorts are ranked there (`row_number()` by duration, ties by trace
//! id: the nearest ranks the local cohorts use). The answers are still the analysis
//! core's: it reads these rows as it reads a local store's.
//!
//! [`SourceRun`] is a [`TraceSource`]: the reads that need the spans of the traces it
//! analysed come from its in-memory store, the rest from ClickHouse.

use crate::clickhouse::{ns_window, ClickHouse, ClickHouseError};
use crate::columns::{value_json_text, value_text};
use crate::otel_export::typed;
use crate::otel_traces::Layout;
use crate::query::{
    checked_key, ConversationItem, Overview, Page, QueryError, ReplayDetail, ReplayItem, Totals,
    TraceDetail, TraceFilter, TracePage, TraceSource, TurnItem,
};
use crate::rowbinary::{Reader, Truncated};
use crate::shared_results::SharedResults;
use crate::{SourceRun, StoreError};
use tailscope_model::samples::{
    CohortRanks, CohortSpan, CohortTrace, CohortValue, KeyPresence, PeriodCall, PeriodOperation,
    PeriodRows, PeriodTrace, TenantTrace, ValueOn,
};

/// A minute, in nanoseconds: the margin around a cohort's traces for spans that start
/// before their root or end after it.
const MINUTE_NS: i64 = 60_000_000_000;

fn bad(e: Truncated) -> StoreError {
    ClickHouseError::Format(e.to_string()).into()
}

/// ClickHouse SQL for the cluster of the text `key`: the number the local store
/// computes (`query::periods`), the first 8 bytes of its MD5, big-endian, shifted right
/// by one.
fn cluster(key: &str) -> String {
    format!("toUInt64(bitShiftRight(reinterpretAsUInt64(reverse(substring(MD5({key}), 1, 8))), 1))")
}

/// ClickHouse SQL: a span (`s`) starting within a minute of a cohort's `[from, to]`.
fn around(from: i64, to: i64) -> String {
    ns_window(
        "s.Timestamp",
        from.saturating_sub(MINUTE_NS),
        to.saturating_add(MINUTE_NS),
    )
}

/// The ranks of the cohort `c`, as a SQL predicate over `r`.
fn members(c: &CohortRanks) -> String {
    let (t0, lo, hi, p50) = (c.tail_from, c.band_from, c.band_to, c.p50);
    format!("r >= {t0} OR (r >= {lo} AND r < {hi}) OR r = {p50}")
}

/// Every row of a `RowBinary` answer, each read by `row`.
fn rows<T>(
    out: &[u8],
    mut row: impl FnMut(&mut Reader<'_>) -> Result<T, Truncated>,
) -> Result<Vec<T>, StoreError> {
    let mut r = Reader::new(out);
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(row(&mut r).map_err(bad)?);
    }
    Ok(v)
}

/// The queries a ClickHouse source answers where the spans are kept (it holds no local
/// store, so threads may share it). Call after the run's results are saved.
pub struct Pushdown<'a> {
    ch: &'a ClickHouse,
    layout: &'a Layout,
    shared: SharedResults<'a>,
}

impl SourceRun {
    pub fn pushdown(&self) -> Pushdown<'_> {
        Pushdown {
            ch: &self.ch,
            layout: &self.layout,
            shared: SharedResults::existing(&self.ch),
        }
    }
}

impl Pushdown<'_> {
    /// The analysed traces ranked by duration (ties by trace id) over the shared
    /// results, as a ClickHouse SQL `WITH` clause (the same ranks the local cohorts use).
    fn ranked_sql(&self) -> String {
        format!(
            "ranked AS (SELECT trace_id, start_ns, duration_ns, route, _run, \
             row_number() OVER (ORDER BY duration_ns, trace_id) - 1 AS r FROM ({}))",
            self.shared.current_traces_sql()
        )
    }

    /// Traces with shared results.
    pub fn analysed_traces(&self) -> Result<u64, StoreError> {
        let out = self.ch.query(&format!(
            "SELECT toUInt64(count()) FROM ({}) FORMAT RowBinary",
            self.shared.current_traces_sql()
        ))?;
        Reader::new(&out).u64().map_err(bad)
    }

    /// The cohort traces (rank, duration, route), by rank, ranked in ClickHouse.
    pub fn cohort_traces(&self, c: &CohortRanks) -> Result<Vec<CohortTrace>, StoreError> {
        let out = self.ch.query(&format!(
            "WITH {} SELECT toUInt64(r), toInt64(duration_ns), toString(route) FROM ranked \
             WHERE {} ORDER BY r FORMAT RowBinary",
            self.ranked_sql(),
            members(c)
        ))?;
        rows(&out, |r| {
            Ok(CohortTrace {
                rank: usize::try_from(r.u64()?).unwrap_or(usize::MAX),
                duration_ns: r.i64()?,
                route: r.string()?,
            })
        })
    }

    /// Over the `cohort` of `WITH {with}`: the traces ranked in all, and the cohort's
    /// `[first start, last end]` (`None`: an empty cohort).
    fn cohort_window(&self, with: &str) -> Result<(u64, Option<(i64, i64)>), StoreError> {
        let out = self.ch.query(&format!(
            // a scalar subquery is Nullable: ifNull makes it a plain number
            "WITH {with} SELECT toUInt64(ifNull((SELECT count() FROM ranked), 0)), toUInt64(count()), \
             toInt64(ifNull(min(start_ns), 0)), toInt64(ifNull(max(start_ns + duration_ns), 0)) \
             FROM cohort FORMAT RowBinary"
        ))?;
        let mut r = Reader::new(&out);
        let (traces, members) = (r.u64().map_err(bad)?, r.u64().map_err(bad)?);
        let (from, to) = (r.i64().map_err(bad)?, r.i64().map_err(bad)?);
        Ok((traces, (members > 0).then_some((from, to))))
    }

    /// Each cohort trace's distinct span names, error statuses, span attributes and
    /// resource attributes, found in ClickHouse within a time window around the
    /// cohort's traces (spans the pull would reject as malformed included). Fails when
    /// the shared results no longer hold the traces the ranks were counted over
    /// (another desktop saved results meanwhile).
    pub fn cohort_values(&self, c: &CohortRanks) -> Result<Vec<CohortValue>, StoreError> {
        let ranked = self.ranked_sql();
        let cohort = format!(
            "cohort AS (SELECT trace_id, r, start_ns, duration_ns FROM ranked WHERE {})",
            members(c)
        );
        let (traces, window) = self.cohort_window(&format!("{ranked}, {cohort}"))?;
        if traces != c.traces as u64 {
            return Err(ClickHouseError::Format(format!(
                "the shared results hold {traces} analysed traces, not the {} this run ranked: another desktop saved results meanwhile; run the command again",
                c.traces
            ))
            .into());
        }
        let Some((from, to)) = window else {
            return Ok(Vec::new());
        };
        let scope_keys = if self.layout.scope_columns {
            ""
        } else {
            // the older exporter keeps the scope among the span's attributes; the pull
            // takes it out of them
            " AND v.2 NOT IN ('otel.scope.name', 'otel.scope.version')"
        };
        let out = self.ch.query(&format!(
            "WITH {ranked}, {cohort} \
             SELECT DISTINCT toUInt64(c.r), v.1, v.2, v.3 FROM {table} AS s \
             INNER JOIN cohort AS c ON s.TraceId = c.trace_id \
             ARRAY JOIN arrayConcat( \
               [(toUInt8(0), '', toString(s.SpanName))], \
               if(lower(replaceOne(toString(s.StatusCode), 'STATUS_CODE_', '')) = 'error', [(toUInt8(1), '', '')], []), \
               arrayMap((k, x) -> (toUInt8(2), toString(k), toString(x)), mapKeys(s.SpanAttributes), mapValues(s.SpanAttributes)), \
               arrayMap((k, x) -> (toUInt8(3), toString(k), toString(x)), mapKeys(s.ResourceAttributes), mapValues(s.ResourceAttributes))) AS v \
             WHERE {window}{scope_keys} \
             FORMAT RowBinary",
            table = self.layout.table,
            window = around(from, to),
        ))?;
        rows(&out, |r| {
            let rank = usize::try_from(r.u64()?).unwrap_or(usize::MAX);
            let on = r.u8()?;
            let key = r.string()?;
            let text = r.string()?;
            let (on, value) = match on {
                0 => (ValueOn::Name, text),
                1 => (ValueOn::Error, text),
                2 => (ValueOn::Span, value_json_text(&typed(text))),
                _ => (ValueOn::Resource, value_text(&typed(text)).into_owned()),
            };
            Ok(CohortValue {
                rank,
                on,
                key,
                value,
            })
        })
    }

    /// The critical-path time per (service, span name) summed over the tail and over
    /// the median band of `c` (what the report's "where the tail's critical paths
    /// spend more" reads): the shared per-span results joined in ClickHouse with the
    /// spans' names, within a time window around the cohorts' traces.
    pub fn critical_time_of_ranks(
        &self,
        c: &CohortRanks,
    ) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
        let ranked = self.ranked_sql();
        let (t0, lo, hi) = (c.tail_from, c.band_from, c.band_to);
        let cohort = format!(
            "cohort AS (SELECT trace_id, _run, start_ns, duration_ns, r >= {t0} AS tail, \
             (r >= {lo} AND r < {hi}) AS band FROM ranked WHERE tail OR band)"
        );
        let Some((from, to)) = self.cohort_window(&format!("{ranked}, {cohort}"))?.1 else {
            return Ok(Vec::new());
        };
        let out = self.ch.query(&format!(
            "WITH {ranked}, {cohort}, \
             a AS (SELECT toString(x.trace_id) AS trace_id, toString(x.span_id) AS span_id, \
                          x.critical_ns AS critical_ns, c.tail AS tail, c.band AS band \
                   FROM {spans} AS x INNER JOIN cohort AS c ON x.trace_id = c.trace_id AND x._run = c._run \
                   WHERE x.critical_ns > 0) \
             SELECT toString(s.ServiceName), toString(s.SpanName), \
                    toInt64(ifNull(sumIf(a.critical_ns, a.tail), 0)), toInt64(ifNull(sumIf(a.critical_ns, a.band), 0)) \
             FROM {table} AS s INNER JOIN a ON s.TraceId = a.trace_id AND s.SpanId = a.span_id \
             WHERE {window} \
             GROUP BY 1, 2 FORMAT RowBinary",
            spans = self.shared.name("span_analysis"),
            table = self.layout.table,
            window = around(from, to),
        ))?;
        rows(&out, |r| Ok((r.string()?, r.string()?, r.i64()?, r.i64()?)))
    }
}

impl Pushdown<'_> {
    /// What `diff` reads of the period `[from, to)`, found in ClickHouse: the analysed
    /// traces whose root starts in it (shared results), its spans' durations per
    /// (service, name) (the exporter's table), its innermost LLM calls (the shared
    /// results' calls), each with its cluster; no span comes to the desktop.
    pub fn period_rows(&self, from: i64, to: i64) -> Result<PeriodRows, StoreError> {
        let causes: Vec<String> = crate::CAUSE_COLUMNS
            .iter()
            .map(|c| format!("toInt64(ifNull(`{c}_ns`, 0))"))
            .collect();
        let traces = self.ch.query(&format!(
            "SELECT toString(ifNull(route, '')), toInt64(duration_ns), {cl}, {causes} \
             FROM {analysed} FINAL WHERE start_ns >= {from} AND start_ns < {to} FORMAT RowBinary",
            cl = cluster("ifNull(conversation_id, trace_id)"),
            causes = causes.join(", "),
            analysed = self.shared.name("trace_analysis"),
        ))?;
        let traces = rows(&traces, |r| {
            let route = r.string()?;
            let duration_ns = r.i64()?;
            let cluster = r.u64()?;
            let mut by_cause_ns = [0; tailscope_model::Cause::COUNT];
            for v in &mut by_cause_ns {
                *v = r.i64()?;
            }
            Ok(PeriodTrace {
                route,
                duration_ns,
                cluster,
                by_cause_ns,
            })
        })?;
        let window = ns_window("Timestamp", from, to);
        let operations = self.ch.query(&format!(
            "WITH conv AS (SELECT trace_id, conversation_id FROM {analysed} FINAL \
                           WHERE trace_id IN (SELECT TraceId FROM {table} WHERE {window})) \
             SELECT toString(s.ServiceName), toString(s.SpanName), groupArray(toInt64(s.Duration)), \
                    groupArray({cl}) \
             FROM {table} AS s LEFT JOIN conv ON conv.trace_id = s.TraceId \
             WHERE {window} GROUP BY 1, 2 FORMAT RowBinary",
            cl = cluster("ifNull(conv.conversation_id, s.TraceId)"),
            analysed = self.shared.name("trace_analysis"),
            table = self.layout.table,
        ))?;
        let operations = rows(&operations, |r| {
            let service = r.string()?;
            let name = r.string()?;
            let n = r.varint()?;
            let durations_ns = (0..n).map(|_| r.i64()).collect::<Result<Vec<_>, _>>()?;
            let n = r.varint()?;
            let clusters = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            Ok(PeriodOperation {
                service,
                name,
                durations_ns,
                clusters,
            })
        })?;
        let calls = self.ch.query(&format!(
            "WITH cur AS (SELECT trace_id, _run, route, conversation_id FROM {analysed} FINAL) \
             SELECT c.model, c.server, toUInt8(isNotNull(cur.route)), toString(ifNull(cur.route, '')), \
                    c.duration_ns, c.ttfc, c.output_tokens, c.input_tokens, c.cache_read, c.events, \
                    toUInt8(c.stream), c.srv_ttft, c.srv_decode, {cl} \
             FROM {calls} AS c INNER JOIN cur ON cur.trace_id = c.trace_id AND cur._run = c._run \
             WHERE c.start_ns >= {from} AND c.start_ns < {to} FORMAT RowBinary",
            cl = cluster("ifNull(cur.conversation_id, c.trace_id)"),
            analysed = self.shared.name("trace_analysis"),
            calls = self.shared.name("llm_calls"),
        ))?;
        let calls = rows(&calls, |r| {
            let model = r.string()?;
            let server = r.string()?;
            let routed = r.u8()? == 1;
            let route = r.string()?;
            let duration_ns = r.i64()?;
            let (ttfc, output, input) = (r.opt_i64()?, r.opt_i64()?, r.opt_i64()?);
            let (cache, events) = (r.opt_i64()?, r.opt_i64()?);
            let stream = r.u8()? == 1;
            let (server_ttft_ns, server_decode_ns) = (r.opt_i64()?, r.opt_i64()?);
            Ok(PeriodCall {
                model,
                server,
                route: routed.then_some(route),
                duration_ns,
                time_to_first_chunk_ns: ttfc,
                output_tokens: output,
                input_tokens: input,
                cache_read_tokens: cache,
                event_count: events,
                stream,
                server_ttft_ns,
                server_decode_ns,
                cluster: r.u64()?,
            })
        })?;
        Ok(PeriodRows {
            traces,
            operations,
            calls,
        })
    }
}

impl Pushdown<'_> {
    /// ClickHouse SQL: a span (`s`) starting within a minute of the analysed traces'
    /// `[first start, last end]` (`false` when none is analysed): the time window of a
    /// query over the spans of every analysed trace.
    fn analysed_window(&self) -> Result<String, StoreError> {
        let out = self.ch.query(&format!(
            "SELECT toUInt64(count()), toInt64(ifNull(min(start_ns), 0)), \
             toInt64(ifNull(max(start_ns + duration_ns), 0)) FROM {} FINAL FORMAT RowBinary",
            self.shared.name("trace_analysis")
        ))?;
        let mut r = Reader::new(&out);
        let n = r.u64().map_err(bad)?;
        let (from, to) = (r.i64().map_err(bad)?, r.i64().map_err(bad)?);
        Ok(if n == 0 {
            "false".to_owned()
        } else {
            around(from, to)
        })
    }

    /// Where the attribute `key` occurs on the spans of the analysed traces (a key of
    /// letters, digits and `._-:/@`), within their time window.
    pub fn key_presence(&self, key: &str) -> Result<KeyPresence, QueryError> {
        let k = checked_key(key)?;
        let out = self
            .ch
            .query(&format!(
                "SELECT toUInt8(countIf(mapContains(SpanAttributes, '{k}')) > 0), \
             toUInt8(countIf(mapContains(ResourceAttributes, '{k}')) > 0) FROM {} AS s WHERE {} \
             FORMAT RowBinary",
                self.layout.table,
                self.analysed_window()?
            ))
            .map_err(StoreError::from)?;
        let mut r = Reader::new(&out);
        Ok(KeyPresence {
            on_spans: r.u8().map_err(bad)? == 1,
            on_resources: r.u8().map_err(bad)? == 1,
        })
    }

    /// Every analysed trace by ascending duration (ties by trace id) with its tenant
    /// under `key` (the smallest value on its spans, else on their resources), or its
    /// root's service when `key` is `None`, and its tokens as the shared results keep
    /// them: joined in ClickHouse, a row per trace.
    pub fn tenant_traces(
        &self,
        key: Option<(&str, KeyPresence)>,
    ) -> Result<Vec<TenantTrace>, QueryError> {
        let tenant = match key {
            None => "SELECT trace_id, splitByChar(' ', route)[1] AS tenant FROM cur".to_owned(),
            Some((k, at)) => {
                let k = checked_key(k)?;
                let on = |m: &str, yes: bool| {
                    if yes {
                        format!("mapContains({m}, '{k}')")
                    } else {
                        "false".to_owned()
                    }
                };
                let (s, r) = (
                    on("SpanAttributes", at.on_spans),
                    on("ResourceAttributes", at.on_resources),
                );
                format!(
                    "SELECT TraceId AS trace_id, \
                     if(countIf({s}) > 0, minIf(SpanAttributes['{k}'], {s}), minIf(ResourceAttributes['{k}'], {r})) AS tenant \
                     FROM {} AS s WHERE ({s} OR {r}) AND {} GROUP BY TraceId",
                    self.layout.table,
                    self.analysed_window()?
                )
            }
        };
        let out = self.ch.query(&format!(
            "WITH cur AS (SELECT trace_id, duration_ns, route FROM {analysed} FINAL), \
             ten AS ({tenant}), tok AS ({tokens}) \
             SELECT toUInt8(ten.trace_id != ''), toString(ten.tenant), toInt64(cur.duration_ns), \
                    toInt64(tok.input_tokens), toInt64(tok.output_tokens) \
             FROM cur LEFT JOIN ten ON ten.trace_id = cur.trace_id LEFT JOIN tok ON tok.trace_id = cur.trace_id \
             ORDER BY cur.duration_ns, cur.trace_id FORMAT RowBinary",
            analysed = self.shared.name("trace_analysis"),
            tokens = self.shared.current_tokens_sql(),
        )).map_err(StoreError::from)?;
        Ok(rows(&out, |r| {
            let has = r.u8()? == 1;
            let tenant = r.string()?;
            Ok(TenantTrace {
                tenant: has.then_some(tenant),
                duration_ns: r.i64()?,
                input_tokens: r.i64()?,
                output_tokens: r.i64()?,
            })
        })?)
    }
}

impl TraceSource for SourceRun {
    fn totals(&self) -> Result<Totals, QueryError> {
        // the spans and analysed traces of the whole source, not of what was pulled
        Ok(Totals {
            spans: self.spans_total,
            analysed_traces: self.pushdown().analysed_traces()?,
            metric_points: self.store.totals()?.metric_points,
        })
    }
    fn overview(&self, findings: usize) -> Result<Overview, QueryError> {
        self.store.overview(findings)
    }
    fn trace_page(&self, filter: &TraceFilter, page: Page) -> Result<TracePage, QueryError> {
        self.store.trace_page(filter, page)
    }
    fn trace_detail(&self, trace_id: &str) -> Result<TraceDetail, QueryError> {
        self.store.trace_detail(trace_id)
    }
    fn conversations(&self, limit: usize) -> Result<Vec<ConversationItem>, QueryError> {
        self.store.conversations(limit)
    }
    fn conversation(&self, conversation_id: &str) -> Result<Vec<TurnItem>, QueryError> {
        self.store.conversation(conversation_id)
    }
    fn time_span(&self) -> Result<Option<(i64, i64)>, QueryError> {
        self.store.time_span()
    }
    fn replays(&self, limit: usize) -> Result<Vec<ReplayItem>, QueryError> {
        self.store.replays(limit)
    }
    fn replay(&self, replay_id: i64) -> Result<ReplayDetail, QueryError> {
        self.store.replay(replay_id)
    }
    fn key_presence(&self, key: &str) -> Result<KeyPresence, QueryError> {
        self.pushdown().key_presence(key)
    }
    fn tenant_traces(
        &self,
        key: Option<(&str, KeyPresence)>,
    ) -> Result<Vec<TenantTrace>, QueryError> {
        self.pushdown().tenant_traces(key)
    }
    fn cohort_traces(&self, cohort: &CohortRanks) -> Result<Vec<CohortTrace>, QueryError> {
        Ok(self.pushdown().cohort_traces(cohort)?)
    }
    fn cohort_spans<S: Send>(
        &self,
        cohort: &CohortRanks,
        states: &mut [S],
        visit: &(impl Fn(&mut S, CohortSpan<'_>) + Sync),
    ) -> Result<(), QueryError> {
        self.store.cohort_spans(cohort, states, visit)
    }
    fn cohort_values(&self, cohort: &CohortRanks) -> Result<Option<Vec<CohortValue>>, QueryError> {
        Ok(Some(self.pushdown().cohort_values(cohort)?))
    }
    fn resource_attributes(&self) -> Result<Vec<(i64, String, String)>, QueryError> {
        self.store.resource_attributes()
    }
    fn span_starts(&self) -> Result<Option<(i64, i64)>, QueryError> {
        // over the whole table, as a local store holding every span would give it
        Ok(SourceRun::span_starts(self))
    }
    fn period_rows(&self, from_ns: i64, to_ns: i64) -> Result<PeriodRows, QueryError> {
        Ok(self.pushdown().period_rows(from_ns, to_ns)?)
    }
    fn replay_calls(
        &self,
        conversation: Option<&str>,
        window: Option<(i64, i64)>,
    ) -> Result<Vec<crate::LlmCallRow>, QueryError> {
        self.store.replay_calls(conversation, window)
    }
    fn call_census(&self, conversation: Option<&str>) -> Result<crate::CallCensus, QueryError> {
        self.store.call_census(conversation)
    }
}
