//! Traces as the views read them: the overview, pages of the trace list, one trace in
//! full, conversations.

use super::{Page, QueryError, Totals};
use crate::read::{opt, Columns};
use crate::results::{finding_row, SectionRow, FINDING_COLS};
use crate::{check_read_only, sql_lit as lit, FindingRow, Store, StoreError, CAUSE_COLUMNS};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use tailscope_model::{Cause, Span, TraceId};

/// A band of analysed traces by duration (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    /// p40–p60.
    Median,
    /// p90 up to p99.
    Upper,
    /// p99 and above.
    Tail,
}

/// A band's trace count and mean critical-path time per cause.
#[derive(Debug, Clone, PartialEq)]
pub struct BandMeans {
    pub band: Band,
    pub traces: u64,
    pub mean_by_cause_ns: Vec<(Cause, f64)>,
}

/// What the overview shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    pub totals: Totals,
    /// Every analysed trace's duration, ascending.
    pub durations_ns: Vec<i64>,
    /// Median band, p90–p99 and tail, those that have traces.
    pub bands: Vec<BandMeans>,
    pub slowest_trace: Option<String>,
    /// The costliest findings first.
    pub findings: Vec<FindingRow>,
}

/// The order of the trace list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceOrder {
    #[default]
    Start,
    Duration,
    Ttft,
    InputTokens,
    OutputTokens,
    Root,
    PrimaryCause,
    Spans,
}

impl TraceOrder {
    fn column(self) -> &'static str {
        match self {
            TraceOrder::Start => "start_ns",
            TraceOrder::Duration => "duration_ns",
            TraceOrder::Ttft => "ttft_ns",
            TraceOrder::InputTokens => "input_tokens",
            TraceOrder::OutputTokens => "output_tokens",
            TraceOrder::Root => "root",
            TraceOrder::PrimaryCause => "primary_cause",
            TraceOrder::Spans => "spans",
        }
    }
}

/// Traces that have `value` for an attribute (under any of its names,
/// [`tailscope_model::semconv::raw_keys`]), as compare counts them: `route`, `span.name` and `span.status` are the
/// trace's route, a span's name and error status; a 1-2-5 band (`2000..5000`) holds
/// when the trace's largest value lies in it; a number when a span's value equals it
/// to 3 significant digits; otherwise a span or resource attribute equal to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HasValue {
    pub key: String,
    pub value: String,
}

/// Which analysed traces a page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// Case-insensitive text in the trace id, root, primary cause or conversation.
    pub text: String,
    /// The user's own SQL predicate over the list's columns (trace_id, root, start_ns,
    /// duration_ns, ttft_ns, input_tokens, output_tokens, primary_cause,
    /// conversation_id, spans, pct); empty for none. Read-only SQL only.
    pub user_sql: String,
    pub has_value: Option<HasValue>,
}

/// One analysed trace in the list.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceItem {
    pub trace_id: String,
    pub root: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub ttft_ns: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub primary_cause: Option<Cause>,
    /// How each cause is known, as stored (JSON; `None` before schema v9).
    pub cause_evidence: Option<String>,
    pub conversation_id: Option<String>,
    pub spans: i64,
    /// The trace's percent rank by duration.
    pub percentile: f64,
}

/// A page of the trace list and how many traces match in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracePage {
    pub total: usize,
    pub items: Vec<TraceItem>,
}

/// A trace's analysis summary row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceSummary {
    pub conversation_id: Option<String>,
    pub primary_cause: Option<Cause>,
    pub root: Option<String>,
    pub cause_evidence: Option<String>,
}

/// One trace in full.
#[derive(Debug, Clone, Default)]
pub struct TraceDetail {
    pub trace_id: String,
    /// With events and links, in start order.
    pub spans: Vec<Span>,
    /// Every attribute of each span (by hex span id) as text, sorted by key.
    pub attributes: BTreeMap<String, Vec<(String, String)>>,
    /// (self, critical) time of each analysed span, by hex span id.
    pub span_times: BTreeMap<String, (i64, i64)>,
    /// The critical path in time order.
    pub sections: Vec<SectionRow>,
    /// `None`: the trace is not analysed yet.
    pub summary: Option<TraceSummary>,
}

/// A conversation in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationItem {
    pub conversation_id: String,
    pub turns: u64,
    pub total_ns: i64,
    /// Turns that paid for a KV-cache eviction.
    pub evictions: u64,
}

/// One turn (trace) of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnItem {
    pub trace_id: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub ttft_ns: Option<i64>,
    pub input_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub evicted: bool,
    pub primary_cause: Option<Cause>,
}

/// A 32-digit hex trace id, or why not.
fn trace_id(s: &str) -> Result<&str, QueryError> {
    TraceId::from_hex(s)
        .map(|_| s)
        .map_err(|_| QueryError::BadInput(format!("`{s}` is not a 32-digit hex trace id")))
}

impl HasValue {
    /// The predicate over `trace_id`.
    fn sql(&self) -> String {
        let v = lit(&self.value);
        match self.key.as_str() {
            "route" => {
                return format!(
                    "trace_id IN (SELECT trace_id FROM trace_analysis WHERE route = {v})"
                )
            }
            "span.name" => {
                return format!("trace_id IN (SELECT trace_id FROM spans WHERE name = {v})")
            }
            "span.status" => {
                return "trace_id IN (SELECT trace_id FROM spans WHERE status_code = 'error')"
                    .to_owned()
            }
            _ => {}
        }
        let keys = tailscope_model::semconv::raw_keys(&self.key);
        let extract = |k: &str| {
            format!(
                "json_extract_string(attributes, {})",
                lit(&format!("$.\"{}\"", k.replace('"', "\\\"")))
            )
        };
        let key_list = keys.iter().map(|k| lit(k)).collect::<Vec<_>>().join(", ");
        let resource = format!(
            "resource_id IN (SELECT resource_id FROM resource_attributes WHERE key IN ({key_list}) AND value = {v})"
        );
        let number = |k: &str| format!("TRY_CAST({} AS DOUBLE)", extract(k));
        let banded = self
            .value
            .split_once("..")
            .and_then(|(a, b)| Some((a.parse::<f64>().ok()?, b.parse::<f64>().ok()?)));
        if let Some((lo, hi)) = banded {
            // the trace's largest value of the key, in the band (negative bands: |x| in it)
            let largest = keys
                .iter()
                .map(|k| format!("max({})", number(k)))
                .collect::<Vec<_>>()
                .join(", ");
            let cond = if lo < 0.0 {
                format!("m > {lo} AND m <= {hi}")
            } else {
                format!("m >= {lo} AND m < {hi}")
            };
            return format!(
                "trace_id IN (SELECT trace_id FROM (SELECT trace_id, greatest({largest}) AS m FROM spans GROUP BY trace_id) WHERE {cond})"
            );
        }
        let mut span = keys
            .iter()
            .map(|k| format!("{} = {v}", extract(k)))
            .collect::<Vec<_>>();
        if let Ok(x) = self.value.parse::<f64>() {
            // numbers print with 3 significant digits: equal within that rounding
            let tol = (x.abs() * 5e-3).max(1e-12);
            span.extend(
                keys.iter()
                    .map(|k| format!("abs({} - ({x})) <= {tol}", number(k))),
            );
        }
        format!(
            "trace_id IN (SELECT trace_id FROM spans WHERE {} OR {resource})",
            span.join(" OR ")
        )
    }
}

impl Store {
    fn count(&self, sql: &str) -> Result<u64, QueryError> {
        let n: i64 = self.conn.query_row(sql, [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(super) fn totals_q(&self) -> Result<Totals, QueryError> {
        Ok(Totals {
            spans: self.count("SELECT count(*) FROM spans")?,
            analysed_traces: self.count("SELECT count(*) FROM trace_analysis")?,
            metric_points: self.count("SELECT count(*) FROM metric_points")?,
        })
    }

    /// Every analysed trace's duration, ascending.
    pub fn trace_durations(&self) -> Result<Vec<i64>, QueryError> {
        let mut out = Vec::new();
        for b in self.query_arrow(
            "SELECT duration_ns::BIGINT AS d FROM trace_analysis WHERE duration_ns IS NOT NULL ORDER BY duration_ns",
        )? {
            let d = Columns::new(&b).i64("d")?;
            out.extend(d.values().iter().copied());
        }
        Ok(out)
    }

    pub(super) fn overview_q(&self, findings: usize) -> Result<Overview, QueryError> {
        let totals = self.totals_q()?;
        let mut o = Overview {
            totals,
            ..Overview::default()
        };
        if totals.analysed_traces == 0 {
            return Ok(o);
        }
        o.durations_ns = self.trace_durations()?;
        let q = |p: f64| tailscope_model::stats::percentile(&o.durations_ns, p).unwrap_or(0);
        let (q40, q60, q90, q99) = (q(40.0), q(60.0), q(90.0), q(99.0));
        let avgs = CAUSE_COLUMNS
            .iter()
            .map(|c| format!("avg({c}_ns)::DOUBLE AS {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        for b in self.query_arrow(&format!(
            "WITH c AS (SELECT CASE WHEN duration_ns >= {q99} THEN 3 WHEN duration_ns >= {q90} THEN 2
                               WHEN duration_ns BETWEEN {q40} AND {q60} THEN 1 END AS band, t.*
                        FROM trace_analysis t)
             SELECT band::BIGINT AS band, count(*)::BIGINT AS n, {avgs} FROM c
             WHERE band IS NOT NULL GROUP BY band ORDER BY band"
        ))? {
            let c = Columns::new(&b);
            let (band, n) = (c.i64("band")?, c.i64("n")?);
            let means = CAUSE_COLUMNS
                .iter()
                .map(|name| c.f64(name))
                .collect::<Result<Vec<_>, _>>()?;
            for i in 0..b.num_rows() {
                o.bands.push(BandMeans {
                    band: match band.value(i) {
                        1 => Band::Median,
                        2 => Band::Upper,
                        _ => Band::Tail,
                    },
                    traces: u64::try_from(n.value(i)).unwrap_or(0),
                    mean_by_cause_ns: CAUSE_COLUMNS
                        .iter()
                        .zip(&means)
                        .filter_map(|(name, m)| {
                            Some((Cause::parse(name)?, opt(*m, i, |i| m.value(i)).unwrap_or(0.0)))
                        })
                        .collect(),
                });
            }
        }
        o.slowest_trace = self
            .conn
            .query_row(
                "SELECT trace_id FROM trace_analysis ORDER BY duration_ns DESC, trace_id LIMIT 1",
                [],
                |r| r.get::<_, String>(0),
            )
            .ok();
        o.findings = self.top_findings(findings)?;
        Ok(o)
    }

    /// The `limit` costliest findings.
    fn top_findings(&self, limit: usize) -> Result<Vec<FindingRow>, QueryError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {FINDING_COLS} FROM findings
             ORDER BY estimated_cost_ns DESC, trace_id, span_id LIMIT ?"
        ))?;
        let rows = stmt.query_map([limit as i64], finding_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Derived results are stale (an analysis run landed): the trace list is rebuilt
    /// on the next page.
    pub fn results_changed(&self) -> Result<(), StoreError> {
        self.trace_list.store(false, Ordering::Relaxed);
        self.execute_batch("DROP TABLE IF EXISTS temp.trace_list")
    }

    /// The per-trace list pages are a filter and sort over (one temp table, rebuilt
    /// after each analysis), so a page reads traces, not spans.
    fn ensure_trace_list(&self) -> Result<(), QueryError> {
        // planning the statement below costs a few ms even when the table exists
        if self.trace_list.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS trace_list AS
             WITH agg AS (
                SELECT trace_id, min(coalesce(time_to_first_chunk_ns, ttft_ns)) AS ttft_ns,
                       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                       count(*) AS spans
                FROM spans GROUP BY trace_id)
             SELECT t.trace_id, t.root, t.start_ns, t.duration_ns, a.ttft_ns, a.input_tokens,
                    a.output_tokens, t.primary_cause, t.conversation_id, coalesce(a.spans, 0) AS spans,
                    100 * percent_rank() OVER (ORDER BY t.duration_ns) AS pct, t.cause_evidence
             FROM trace_analysis t LEFT JOIN agg a USING (trace_id)",
        )?;
        self.trace_list.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn trace_page_q(
        &self,
        f: &TraceFilter,
        page: Page,
    ) -> Result<TracePage, QueryError> {
        self.ensure_trace_list()?;
        let mut preds = Vec::new();
        if !f.text.is_empty() {
            let t = lit(&format!("%{}%", f.text));
            preds.push(format!(
                "(trace_id ILIKE {t} OR root ILIKE {t} OR primary_cause ILIKE {t} OR conversation_id ILIKE {t})"
            ));
        }
        if !f.user_sql.trim().is_empty() {
            preds.push(format!("({})", f.user_sql));
        }
        if let Some(h) = &f.has_value {
            preds.push(h.sql());
        }
        let filter = if preds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", preds.join(" AND "))
        };
        let user = |e: StoreError| QueryError::BadInput(format!("the SQL WHERE filter: {e}"));
        let count_sql = format!("SELECT count(*)::BIGINT AS n FROM trace_list {filter}");
        check_read_only(&count_sql).map_err(user)?;
        let total = self
            .query_arrow(&count_sql)
            .map_err(user)?
            .first()
            .and_then(|b| Columns::new(b).i64("n").ok().map(|n| n.value(0)))
            .unwrap_or(0);
        let dir = if page.descending { "DESC" } else { "ASC" };
        let mut items = Vec::new();
        for b in self.query_arrow(&format!(
            "SELECT trace_id, root, start_ns::BIGINT AS start_ns, duration_ns::BIGINT AS duration_ns,
                    ttft_ns::BIGINT AS ttft_ns, input_tokens::BIGINT AS input_tokens,
                    output_tokens::BIGINT AS output_tokens, primary_cause, conversation_id,
                    spans::BIGINT AS spans, pct::DOUBLE AS pct, cause_evidence
             FROM trace_list {filter} ORDER BY {} {dir} NULLS LAST, trace_id LIMIT {} OFFSET {}",
            page.order.column(),
            page.limit,
            page.offset
        ))? {
            let c = Columns::new(&b);
            let (id, root, start, dur) = (
                c.str("trace_id")?,
                c.str("root")?,
                c.i64("start_ns")?,
                c.i64("duration_ns")?,
            );
            let (ttft, input, output) = (
                c.i64("ttft_ns")?,
                c.i64("input_tokens")?,
                c.i64("output_tokens")?,
            );
            let (cause, conv, spans, pct, evidence) = (
                c.str("primary_cause")?,
                c.str("conversation_id")?,
                c.i64("spans")?,
                c.f64("pct")?,
                c.str("cause_evidence")?,
            );
            for i in 0..b.num_rows() {
                items.push(TraceItem {
                    trace_id: id.value(i).to_owned(),
                    root: opt(root, i, |i| root.value(i).to_owned()).unwrap_or_default(),
                    start_ns: opt(start, i, |i| start.value(i)).unwrap_or(0),
                    duration_ns: opt(dur, i, |i| dur.value(i)).unwrap_or(0),
                    ttft_ns: opt(ttft, i, |i| ttft.value(i)),
                    input_tokens: opt(input, i, |i| input.value(i)),
                    output_tokens: opt(output, i, |i| output.value(i)),
                    primary_cause: opt(cause, i, |i| Cause::parse(cause.value(i))).flatten(),
                    cause_evidence: opt(evidence, i, |i| evidence.value(i).to_owned()),
                    conversation_id: opt(conv, i, |i| conv.value(i).to_owned()),
                    spans: opt(spans, i, |i| spans.value(i)).unwrap_or(0),
                    percentile: opt(pct, i, |i| pct.value(i)).unwrap_or(0.0),
                });
            }
        }
        Ok(TracePage {
            total: usize::try_from(total).unwrap_or(0),
            items,
        })
    }

    pub(super) fn trace_detail_q(&self, id: &str) -> Result<TraceDetail, QueryError> {
        let id = trace_id(id)?;
        let filter = format!("trace_id = {}", lit(id));
        let spans = self.load_spans_where(Some(&filter))?;
        if spans.is_empty() {
            return Err(QueryError::NotFound(format!(
                "trace {id} is not in the store"
            )));
        }
        let mut d = TraceDetail {
            trace_id: id.to_owned(),
            spans,
            ..TraceDetail::default()
        };
        for b in self.query_arrow(&format!(
            "SELECT span_id, attributes FROM spans WHERE {filter}"
        ))? {
            let c = Columns::new(&b);
            let (span, json) = (c.str("span_id")?, c.str("attributes")?);
            for i in 0..b.num_rows() {
                let Some(text) = opt(json, i, |i| json.value(i)) else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(m)) =
                    serde_json::from_str::<serde_json::Value>(text)
                {
                    let mut v: Vec<(String, String)> = m
                        .into_iter()
                        .map(|(k, v)| {
                            let text = match v {
                                serde_json::Value::String(s) => s,
                                other => other.to_string(),
                            };
                            (k, text)
                        })
                        .collect();
                    v.sort();
                    d.attributes.insert(span.value(i).to_owned(), v);
                }
            }
        }
        for b in self.query_arrow(&format!(
            "SELECT span_id, self_ns::BIGINT AS self_ns, critical_ns::BIGINT AS critical_ns
             FROM span_times WHERE trace_id = {}",
            crate::results::uuid_of(id).unwrap_or_else(|| "NULL".to_owned())
        ))? {
            let c = Columns::new(&b);
            let (span, own, crit) = (c.u64("span_id")?, c.i64("self_ns")?, c.i64("critical_ns")?);
            for i in 0..b.num_rows() {
                d.span_times.insert(
                    format!("{:016x}", span.value(i)),
                    (
                        opt(own, i, |i| own.value(i)).unwrap_or(0),
                        opt(crit, i, |i| crit.value(i)).unwrap_or(0),
                    ),
                );
            }
        }
        d.sections = self
            .sections_of(id)?
            .into_iter()
            .map(|s| SectionRow {
                trace_id: id.to_owned(),
                span_id: s.span_id.to_hex(),
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                cause: s.cause.as_str().to_owned(),
                evidence: s.evidence.as_str().to_owned(),
                alternatives: s.alternatives.to_list(),
            })
            .collect();
        let mut stmt = self.conn.prepare(
            "SELECT conversation_id, primary_cause, root, cause_evidence FROM trace_analysis WHERE trace_id = ?",
        )?;
        d.summary = stmt
            .query_map([id], |r| {
                Ok(TraceSummary {
                    conversation_id: r.get("conversation_id")?,
                    primary_cause: r
                        .get::<_, Option<String>>("primary_cause")?
                        .and_then(|c| Cause::parse(&c)),
                    root: r.get("root")?,
                    cause_evidence: r.get("cause_evidence")?,
                })
            })?
            .next()
            .transpose()?;
        Ok(d)
    }

    pub(super) fn conversations_q(
        &self,
        limit: usize,
    ) -> Result<Vec<ConversationItem>, QueryError> {
        let mut stmt = self.conn.prepare(
            "SELECT conversation_id, count(*) AS turns, sum(duration_ns)::BIGINT AS total_ns,
                    count(*) FILTER (WHERE kv_eviction_ns > 0) AS evictions
             FROM trace_analysis WHERE conversation_id IS NOT NULL
             GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT ?",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(ConversationItem {
                conversation_id: r.get("conversation_id")?,
                turns: u64::try_from(r.get::<_, i64>("turns")?).unwrap_or(0),
                total_ns: r.get::<_, Option<i64>>("total_ns")?.unwrap_or(0),
                evictions: u64::try_from(r.get::<_, i64>("evictions")?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn conversation_q(&self, id: &str) -> Result<Vec<TurnItem>, QueryError> {
        let mut stmt = self.conn.prepare(
            "SELECT t.trace_id, t.start_ns, t.duration_ns, a.ttft_ns::BIGINT AS ttft_ns,
                    a.input_tokens::BIGINT AS input_tokens, a.cache_read_tokens::BIGINT AS cache_read_tokens,
                    coalesce(t.kv_eviction_ns > 0, false) OR EXISTS (SELECT 1 FROM findings f WHERE f.trace_id = t.trace_id AND f.kind = 'kv_eviction') AS evicted,
                    t.primary_cause
             FROM trace_analysis t LEFT JOIN (
                SELECT trace_id, min(coalesce(time_to_first_chunk_ns, ttft_ns)) AS ttft_ns,
                       sum(input_tokens) AS input_tokens, sum(cache_read_tokens) AS cache_read_tokens
                FROM spans WHERE conversation_id = ?1 AND op_class = 'llm' GROUP BY trace_id) a USING (trace_id)
             WHERE t.conversation_id = ?1 ORDER BY t.start_ns",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(TurnItem {
                trace_id: r.get("trace_id")?,
                start_ns: r.get::<_, Option<i64>>("start_ns")?.unwrap_or(0),
                duration_ns: r.get::<_, Option<i64>>("duration_ns")?.unwrap_or(0),
                ttft_ns: r.get("ttft_ns")?,
                input_tokens: r.get("input_tokens")?,
                cache_read_tokens: r.get("cache_read_tokens")?,
                evicted: r.get::<_, Option<bool>>("evicted")?.unwrap_or(false),
                primary_cause: r
                    .get::<_, Option<String>>("primary_cause")?
                    .and_then(|c| Cause::parse(&c)),
            })
        })?;
        let turns: Vec<TurnItem> = rows.collect::<Result<_, _>>()?;
        if turns.is_empty() {
            return Err(QueryError::NotFound(format!(
                "conversation {id} has no analysed traces"
            )));
        }
        Ok(turns)
    }

    pub(super) fn time_span_q(&self) -> Result<Option<(i64, i64)>, QueryError> {
        let r: (Option<i64>, Option<i64>) = self.conn.query_row(
            "SELECT least(min(m), min(s)), greatest(max(m2), max(s2)) FROM
             (SELECT min(time_ns) m, max(time_ns) m2 FROM metric_points),
             (SELECT min(start_ns) s, max(end_ns) s2 FROM spans)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(r.0.map(|from| (from, r.1.unwrap_or(from))))
    }
}
