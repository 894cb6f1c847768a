//! The OpenTelemetry Collector ClickHouse exporter's span table (`otel_traces`), read
//! in place: rows become model spans in time windows, pulled as `RowBinary`.
//!
//! The exporter writes (exporter/clickhouseexporter, `exporter_traces.go`): the start
//! time as `Timestamp`, lowercase hex ids (an empty `ParentSpanId` for a root), the
//! kind and status as `SPAN_KIND_*` / `STATUS_CODE_*` (older versions) or `Client` /
//! `Error` (newer), every attribute value as a string, the duration in nanoseconds,
//! events and links as `Nested` columns, and the scope either in `ScopeName` /
//! `ScopeVersion` columns or as `otel.scope.name` / `otel.scope.version` span
//! attributes. Types the exporter dropped (an int attribute is the text "42") come
//! back as strings; the model's value views read numbers and booleans from text.

use crate::clickhouse::{ClickHouse, ClickHouseError, ClickHouseUrl};
use crate::otel_export::typed;
use crate::rowbinary::{Reader, Truncated};
use crate::shared_results::{Earlier, SharedResults};
use crate::{Store, StoreError, WriterConfig};
use std::collections::HashSet;
use tailscope_model::semconv::promote;
use tailscope_model::{
    Attribute, Batch, Event, Link, Rejections, Resource, Span, SpanId, SpanKind, StatusCode,
    TraceId,
};

/// Spans per pull, about: the window is cut so that each holds this many.
pub const SPANS_PER_PULL: u64 = 100_000;

/// The span table's layout: where the scope is kept.
#[derive(Debug, Clone)]
pub struct Layout {
    pub table: String,
    pub(crate) scope_columns: bool,
}

impl Layout {
    /// Reads the table's columns; an error names what is missing.
    pub fn of(ch: &ClickHouse) -> Result<Self, ClickHouseError> {
        let name = &ch.url.traces_table;
        let cols = ch.columns(name)?;
        if cols.is_empty() {
            return Err(ClickHouseError::Format(format!(
                "no table {} in {}: point --source at the database the OpenTelemetry Collector's ClickHouse exporter writes to (or name the table with ?traces_table=)",
                name,
                ch.url.shown()
            )));
        }
        let missing: Vec<&str> = [
            "Timestamp",
            "TraceId",
            "SpanId",
            "ParentSpanId",
            "SpanName",
            "SpanKind",
            "ResourceAttributes",
            "SpanAttributes",
            "Duration",
            "StatusCode",
        ]
        .into_iter()
        .filter(|c| !cols.iter().any(|x| x == c))
        .collect();
        if !missing.is_empty() {
            return Err(ClickHouseError::Format(format!(
                "table {name} is not in the exporter's schema: it has no {}",
                missing.join(", ")
            )));
        }
        let has = |c: &str| cols.iter().any(|x| x == c);
        Ok(Self {
            table: ch.url.table(name),
            scope_columns: has("ScopeName") && has("ScopeVersion"),
        })
    }

    fn select(&self, from_ns: i64, to_ns: i64, also: Option<&str>) -> String {
        let scope = if self.scope_columns {
            "ScopeName, ScopeVersion"
        } else {
            "'', ''"
        };
        format!(
            "SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, ParentSpanId, TraceState, SpanName, \
             SpanKind, ResourceAttributes, SpanAttributes, toInt64(Duration), StatusCode, StatusMessage, \
             arrayMap(t -> toUnixTimestamp64Nano(t), `Events.Timestamp`), `Events.Name`, `Events.Attributes`, \
             `Links.TraceId`, `Links.SpanId`, `Links.TraceState`, `Links.Attributes`, {scope} \
             FROM {} {} FORMAT RowBinary",
            self.table,
            window(from_ns, to_ns, also)
        )
    }
}

/// `WHERE` for spans starting in `[from_ns, to_ns)` (and meeting `also`).
fn window(from_ns: i64, to_ns: i64, also: Option<&str>) -> String {
    let also = also.map_or_else(String::new, |f| format!(" AND ({f})"));
    format!(
        "WHERE {}{also}",
        crate::clickhouse::ns_window("Timestamp", from_ns, to_ns)
    )
}

/// Spans in the window and the first and last start time (`None`: no spans).
pub fn extent(
    ch: &ClickHouse,
    layout: &Layout,
    from_ns: i64,
    to_ns: i64,
    also: Option<&str>,
) -> Result<Option<(u64, i64, i64)>, ClickHouseError> {
    let out = ch.query(&format!(
        "SELECT count(), toInt64(toUnixTimestamp64Nano(min(Timestamp))), toInt64(toUnixTimestamp64Nano(max(Timestamp))) FROM {} {} FORMAT RowBinary",
        layout.table,
        window(from_ns, to_ns, also)
    ))?;
    let mut r = Reader::new(&out);
    let bad = |e: Truncated| ClickHouseError::Format(e.to_string());
    let n = r.u64().map_err(bad)?;
    let (lo, hi) = (r.i64().map_err(bad)?, r.i64().map_err(bad)?);
    Ok((n > 0).then_some((n, lo, hi)))
}

/// The spans starting in `[from_ns, to_ns)` as a batch (resources once each). Rows
/// that are not valid spans are counted in the rejections, not loaded.
pub fn pull(
    ch: &ClickHouse,
    layout: &Layout,
    from_ns: i64,
    to_ns: i64,
    also: Option<&str>,
) -> Result<(Batch, Rejections), ClickHouseError> {
    let out = ch.query(&layout.select(from_ns, to_ns, also))?;
    decode(&out).map_err(|e| ClickHouseError::Format(e.to_string()))
}

/// Decodes the rows of [`Layout::select`].
pub fn decode(buf: &[u8]) -> Result<(Batch, Rejections), Truncated> {
    let mut r = Reader::new(buf);
    let mut batch = Batch::default();
    let mut rej = Rejections::default();
    let mut resources: HashSet<i64> = HashSet::new();
    while !r.is_empty() {
        let mut row = Row::read(&mut r)?;
        let resource = Resource::new(strings(std::mem::take(&mut row.resource)));
        match row.into_span(&resource) {
            Ok(span) => {
                if resources.insert(resource.id) {
                    batch.resources.push(resource);
                }
                batch.spans.push(span);
            }
            Err(why) => rej.reject(why),
        }
    }
    Ok((batch, rej))
}

fn strings(pairs: Vec<(String, String)>) -> Vec<Attribute> {
    pairs
        .into_iter()
        .map(|(k, v)| Attribute::new(k, typed(v)))
        .collect()
}

/// One row as selected.
struct Row {
    start_ns: i64,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    trace_state: String,
    name: String,
    kind: String,
    resource: Vec<(String, String)>,
    attributes: Vec<(String, String)>,
    duration_ns: i64,
    status: String,
    status_message: String,
    event_times: Vec<i64>,
    event_names: Vec<String>,
    event_attributes: Vec<Vec<(String, String)>>,
    link_trace_ids: Vec<String>,
    link_span_ids: Vec<String>,
    link_states: Vec<String>,
    link_attributes: Vec<Vec<(String, String)>>,
    scope_name: String,
    scope_version: String,
}

impl Row {
    fn read(r: &mut Reader<'_>) -> Result<Self, Truncated> {
        Ok(Self {
            start_ns: r.i64()?,
            trace_id: r.string()?,
            span_id: r.string()?,
            parent_span_id: r.string()?,
            trace_state: r.string()?,
            name: r.string()?,
            kind: r.string()?,
            resource: r.string_map()?,
            attributes: r.string_map()?,
            duration_ns: r.i64()?,
            status: r.string()?,
            status_message: r.string()?,
            event_times: r.array(Reader::i64)?,
            event_names: r.array(Reader::string)?,
            event_attributes: r.array(Reader::string_map)?,
            link_trace_ids: r.array(Reader::string)?,
            link_span_ids: r.array(Reader::string)?,
            link_states: r.array(Reader::string)?,
            link_attributes: r.array(Reader::string_map)?,
            scope_name: r.string()?,
            scope_version: r.string()?,
        })
    }

    fn into_span(self, resource: &Resource) -> Result<Span, String> {
        let trace_id = TraceId::from_hex(&self.trace_id).map_err(|e| format!("TraceId: {e}"))?;
        let span_id = SpanId::from_hex(&self.span_id).map_err(|e| format!("SpanId: {e}"))?;
        let parent_span_id = if self.parent_span_id.is_empty() {
            None
        } else {
            Some(SpanId::from_hex(&self.parent_span_id).map_err(|e| format!("ParentSpanId: {e}"))?)
        };
        let kind =
            kind_of(&self.kind).ok_or_else(|| format!("unknown SpanKind {:?}", self.kind))?;
        let status = status_of(&self.status)
            .ok_or_else(|| format!("unknown StatusCode {:?}", self.status))?;
        if self.duration_ns < 0 {
            return Err(format!("Duration {} is negative", self.duration_ns));
        }
        let end_ns = self
            .start_ns
            .checked_add(self.duration_ns)
            .ok_or("Timestamp + Duration overflows")?;
        let (mut scope_name, mut scope_version) = (self.scope_name, self.scope_version);
        let mut attributes = Vec::with_capacity(self.attributes.len());
        for (k, v) in self.attributes {
            // the older exporter keeps the scope among the span's attributes
            match k.as_str() {
                "otel.scope.name" if scope_name.is_empty() => scope_name = v,
                "otel.scope.version" if scope_version.is_empty() => scope_version = v,
                _ => attributes.push(Attribute::new(k, typed(v))),
            }
        }
        let n = self.event_times.len();
        if self.event_names.len() != n || self.event_attributes.len() != n {
            return Err("Events columns of different lengths".into());
        }
        let events: Vec<Event> = self
            .event_times
            .into_iter()
            .zip(self.event_names)
            .zip(self.event_attributes)
            .map(|((time_ns, name), a)| Event {
                time_ns,
                name,
                attributes: strings(a),
            })
            .collect();
        let n = self.link_trace_ids.len();
        if self.link_span_ids.len() != n
            || self.link_states.len() != n
            || self.link_attributes.len() != n
        {
            return Err("Links columns of different lengths".into());
        }
        let mut links = Vec::with_capacity(n);
        for (((t, s), trace_state), a) in self
            .link_trace_ids
            .iter()
            .zip(&self.link_span_ids)
            .zip(self.link_states)
            .zip(self.link_attributes)
        {
            links.push(Link {
                trace_id: TraceId::from_hex(t).map_err(|e| format!("link TraceId: {e}"))?,
                span_id: SpanId::from_hex(s).map_err(|e| format!("link SpanId: {e}"))?,
                trace_state,
                attributes: strings(a),
            });
        }
        let promoted = promote(&self.name, self.start_ns, end_ns, &attributes, &events);
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state: self.trace_state,
            flags: 0,
            name: self.name,
            kind,
            start_ns: self.start_ns,
            end_ns,
            status,
            status_message: self.status_message,
            resource_id: resource.id,
            service_name: resource.service_name.clone(),
            scope_name,
            scope_version,
            attributes,
            events,
            links,
            promoted,
        })
    }
}

/// What a pull from ClickHouse brought to the desktop.
#[derive(Debug, Default)]
pub struct Pulled {
    pub spans: u64,
    /// Rows that are not valid spans (counted, not loaded).
    pub rejected: Rejections,
    /// Queries sent for spans (one per time window).
    pub pulls: usize,
    /// Bytes received from ClickHouse.
    pub bytes: u64,
    /// Traces whose shared results an earlier run left (read, not re-analysed).
    pub reused_traces: u64,
    /// Metric points read from the exporter's metric tables.
    pub metric_points: u64,
}

/// One run over a ClickHouse source: the in-memory store it filled (the shared
/// results of earlier runs, and the spans of the traces they did not cover), and what
/// to write back once it is analysed.
pub struct SourceRun {
    pub(crate) ch: ClickHouse,
    pub(crate) store: Store,
    pub(crate) layout: Layout,
    pub pulled: Pulled,
    run: u64,
    read_upto_ns: i64,
    /// The ClickHouse predicate of the traces pulled and analysed this run (`None`:
    /// every trace was).
    changed: Option<String>,
    /// `[first, last]` span start in the whole table (`None`: no spans).
    starts: Option<(i64, i64)>,
    /// Spans in the whole table when the run opened.
    pub(crate) spans_total: u64,
    /// The ingest watermark after the spans pulled only to be read (traces whose
    /// results are the shared ones): spans past it were pulled to be analysed.
    read_only_upto: Option<i64>,
}

impl Drop for SourceRun {
    fn drop(&mut self) {
        if self.changed.is_some() {
            if let Err(e) = SharedResults::existing(&self.ch).drop_kept(self.run) {
                tracing::warn!("could not drop this run's kept trace ids: {e}");
            }
        }
    }
}

impl SourceRun {
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn url(&self) -> &ClickHouseUrl {
        &self.ch.url
    }

    /// Writes the results of the traces pulled (now analysed) to the shared result
    /// tables; the traces written.
    pub fn save(&self) -> Result<u64, StoreError> {
        let shared = SharedResults::open(&self.ch, &self.store)?;
        // only the traces this run analysed: those pulled to be analysed, and those a
        // refit refreshed (their rows carry the last run's watermark); those pulled only
        // to be read keep their shared results (a command may have loaded part of them)
        let ids = match self.read_only_upto {
            Some(w) => format!(
                "SELECT DISTINCT trace_id FROM spans WHERE ingested_ns > {w}
                 UNION SELECT trace_id FROM trace_analysis WHERE analyzed_ns > {w}
                   AND analyzed_ns = (SELECT max(watermark_ns) FROM analysis_runs)"
            ),
            None => "SELECT DISTINCT trace_id FROM spans".to_owned(),
        };
        shared.save_from(
            &self.store,
            &ids,
            self.run,
            self.read_upto_ns,
            self.pulled.spans,
        )
    }

    /// Bytes (received, sent) so far.
    pub fn bytes(&self) -> (u64, u64) {
        self.ch.bytes()
    }
}

/// Which of the traces analysed before a command needs the spans of: those with a span
/// that may be the one it names (a superset: the command picks the spans it means from
/// what it gets; the others' stored results stand for them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanMatch {
    /// A span of this name (of this service, when given).
    Named {
        service: Option<String>,
        name: String,
    },
    /// A span with an attribute of this value (a tool's or a model's name).
    AttributeValue(String),
    /// A trace whose shared critical path has a section of this cause.
    Cause(String),
}

impl SpanMatch {
    /// The ClickHouse predicate over the exporter's span rows (`shared`: the name of a
    /// shared result table, where a cause's sections are).
    fn sql(&self, shared: &dyn Fn(&str) -> String) -> String {
        let q = crate::clickhouse::ch_lit;
        match self {
            SpanMatch::Cause(c) => format!(
                "TraceId IN (SELECT trace_id FROM {} WHERE cause = {} AND (trace_id, _run) IN \
                 (SELECT trace_id, _run FROM {} FINAL))",
                shared("critical_path_sections"),
                q(c),
                shared("trace_analysis")
            ),
            SpanMatch::Named { service, name } => match service {
                Some(svc) => format!("SpanName = {} AND ServiceName = {}", q(name), q(svc)),
                None => format!("SpanName = {}", q(name)),
            },
            SpanMatch::AttributeValue(v) => format!("has(mapValues(SpanAttributes), {})", q(v)),
        }
    }
}

impl Store {
    /// Opens a ClickHouse source: the shared results of earlier runs, then the spans
    /// of every trace they do not cover (all of them the first time; after that, the
    /// traces new since, the ones with spans within [`LATE_NS`] of the last run's
    /// newest, and the other traces of their conversations), pulled as `RowBinary` a
    /// time window of about [`SPANS_PER_PULL`] spans at a time, into an in-memory
    /// store. `earlier`: what to read of the traces the shared results cover (with
    /// [`Earlier::Everything`] their spans too, marked as analysed; the report,
    /// `compare` and `diff` need only results and what [`SourceRun::pushdown`] finds).
    /// `progress(spans_done, spans)`.
    pub fn open_clickhouse(
        url: &ClickHouseUrl,
        earlier: Earlier,
        progress: &dyn Fn(u64, u64),
    ) -> Result<SourceRun, StoreError> {
        Self::open_clickhouse_matching(url, earlier, None, progress)
    }

    /// [`Store::open_clickhouse`], and with `only` also the spans of the traces
    /// analysed before that have a span `only` may name (their results as `earlier`
    /// says; [`Earlier::Everything`] pulls every such trace's spans without it).
    pub fn open_clickhouse_matching(
        url: &ClickHouseUrl,
        earlier: Earlier,
        only: Option<&SpanMatch>,
        progress: &dyn Fn(u64, u64),
    ) -> Result<SourceRun, StoreError> {
        let ch = ClickHouse::connect(url.clone())?;
        let layout = Layout::of(&ch)?;
        let store = Store::open_in_memory()?;
        let shared = SharedResults::open(&ch, &store)?;
        let state = shared.state()?;
        let mut pulled = Pulled::default();
        let run = crate::append::now_ns().max(0) as u64;
        let changed = match state.read_upto_ns.filter(|_| state.traces > 0) {
            None => None,
            Some(upto) => {
                shared.load_into(&store, earlier)?;
                pulled.reused_traces = state.traces;
                let pred = changed_traces(
                    &layout,
                    &shared.analysed_traces_sql(),
                    upto.saturating_sub(url.late_ns),
                );
                // found once, not again by every windowed pull
                Some(shared.keep_traces(&layout.table, &pred, run)?)
            }
        };
        let everything = extent(&ch, &layout, 0, i64::MAX, None)?;
        let mut src = SourceRun {
            read_upto_ns: everything.map_or(state.read_upto_ns.unwrap_or(0), |e| e.2),
            ch,
            store,
            layout: layout.clone(),
            pulled,
            run,
            changed: changed.clone(),
            read_only_upto: None,
            starts: everything.map(|e| (e.1, e.2)),
            spans_total: everything.map_or(0, |e| e.0),
        };
        let writer = src.store.writer(WriterConfig::default())?;
        let total = everything.map_or(0, |e| e.0);
        if let Some(changed) = &changed {
            if earlier == Earlier::Everything || only.is_some() {
                // the traces the shared results cover, below the watermark the next
                // analysis starts from: read, not analysed again; with `only`, those
                // with a span it may name, kept once in a second table of this run
                // (dropped once pulled)
                let earlier_traces = match only {
                    Some(m) => {
                        let shared = SharedResults::existing(&src.ch);
                        let pred = m.sql(&|t| shared.name(t));
                        let kept = shared.keep_traces(&layout.table, &pred, run + 1)?;
                        format!("NOT ({changed}) AND {kept}")
                    }
                    None => format!("NOT ({changed})"),
                };
                let pulled =
                    src.pull_where(&writer, &layout, Some(&earlier_traces), total, progress);
                if only.is_some() {
                    SharedResults::existing(&src.ch).drop_kept(run + 1)?;
                }
                pulled?;
                src.mark_analysed()?;
            }
            tracing::debug!("pulling the spans where {changed}");
        }
        src.pull_where(&writer, &layout, changed.as_deref(), total, progress)?;
        // the metric points around the pulled spans: the server's gauges and counters
        // over each call's window are evidence (a minute either side, as analysis reads)
        let span: Option<(i64, i64)> =
            src.store
                .conn
                .query_row("SELECT min(start_ns), max(end_ns) FROM spans", [], |r| {
                    Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
                })?;
        if let Some((lo, hi)) = span {
            const MINUTE: i64 = 60_000_000_000;
            let (points, rej) = crate::otel_metrics::pull_metrics(
                &src.ch,
                lo.saturating_sub(MINUTE),
                hi.saturating_add(MINUTE),
            )?;
            src.pulled.metric_points = points.metrics.len() as u64;
            src.pulled.rejected.merge(rej);
            if !points.is_empty() {
                writer.write(points)?;
            }
        }
        writer.close()?;
        src.pulled.bytes = src.ch.bytes().0;
        Ok(src)
    }
}

impl SourceRun {
    /// `[first, last]` span start over the whole table, as a local store holding every
    /// span would give it.
    pub fn span_starts(&self) -> Option<(i64, i64)> {
        self.starts
    }

    /// Records every span in the store as analysed (a run whose watermark is the
    /// newest span, with the last fits): spans pulled for traces whose results are
    /// the shared ones.
    fn mark_analysed(&mut self) -> Result<(), StoreError> {
        let Some(w) = self.store.ingest_watermark()? else {
            return Ok(());
        };
        self.read_only_upto = Some(w);
        let (fits, fit_calls) = self.store.last_fits()?.unzip();
        self.store.record_run(&crate::RunRow {
            finished_ns: crate::append::now_ns(),
            watermark_ns: w,
            recomputed: 0,
            reused: 0,
            seconds: 0.0,
            fits,
            fit_calls: fit_calls.unwrap_or(0),
        })
    }

    /// Pulls the spans meeting `filter` (all: `None`), a time window at a time.
    fn pull_where(
        &mut self,
        writer: &crate::Writer,
        layout: &Layout,
        filter: Option<&str>,
        total: u64,
        progress: &dyn Fn(u64, u64),
    ) -> Result<(), StoreError> {
        let Some((n, lo, hi)) = extent(&self.ch, layout, 0, i64::MAX, filter)? else {
            return Ok(());
        };
        let parts = n.div_ceil(SPANS_PER_PULL).max(1);
        let step = ((hi - lo) / parts as i64).max(1);
        let mut at = lo;
        while at <= hi {
            let end = if at.saturating_add(step) > hi {
                hi.saturating_add(1)
            } else {
                at + step
            };
            let (batch, rej) = pull(&self.ch, layout, at, end, filter)?;
            self.pulled.pulls += 1;
            self.pulled.spans += batch.spans.len() as u64;
            self.pulled.rejected.merge(rej);
            if !batch.is_empty() {
                writer.write(batch)?;
            }
            progress(self.pulled.spans, total.max(self.pulled.spans));
            at = end;
        }
        Ok(())
    }
}

/// The ClickHouse predicate of the spans to pull when results exist for the traces
/// `analysed` (SQL set): the traces without results, those with spans after
/// `since` (the last run's newest span less the lateness allowed), and the traces
/// that share a conversation with them (a turn's eviction is judged against the turns
/// before it).
fn changed_traces(layout: &Layout, analysed: &str, since: i64) -> String {
    let t = &layout.table;
    let new = format!(
        "SELECT DISTINCT TraceId FROM {t} WHERE TraceId NOT IN ({analysed}) \
         OR Timestamp > fromUnixTimestamp64Nano(toInt64({since}))"
    );
    let keys = tailscope_model::semconv::keys::CONVERSATION;
    let conv_of = |k: &str| format!("SpanAttributes['{k}']");
    let convs = format!(
        "SELECT DISTINCT c FROM {t} ARRAY JOIN [{}] AS c WHERE TraceId IN ({new}) AND c != ''",
        keys.iter()
            .map(|k| conv_of(k))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let same_conv = keys
        .iter()
        .map(|k| format!("{} IN ({convs})", conv_of(k)))
        .collect::<Vec<_>>()
        .join(" OR ");
    format!("TraceId IN ({new}) OR TraceId IN (SELECT DISTINCT TraceId FROM {t} WHERE {same_conv})")
}

/// The exporter's kind text: `SPAN_KIND_CLIENT` (traceutil) or `Client` (pdata).
fn kind_of(s: &str) -> Option<SpanKind> {
    let s = s.strip_prefix("SPAN_KIND_").unwrap_or(s);
    Some(match s.to_ascii_lowercase().as_str() {
        "unspecified" | "" => SpanKind::Unspecified,
        "internal" => SpanKind::Internal,
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        _ => return None,
    })
}

/// The exporter's status text: `STATUS_CODE_ERROR` (traceutil) or `Error` (pdata).
fn status_of(s: &str) -> Option<StatusCode> {
    let s = s.strip_prefix("STATUS_CODE_").unwrap_or(s);
    Some(match s.to_ascii_lowercase().as_str() {
        "unset" | "" => StatusCode::Unset,
        "ok" => StatusCode::Ok,
        "error" => StatusCode::Error,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailscope_model::AttrValue;

    #[test]
    fn values_get_back_the_type_their_text_says() {
        for (text, want) in [
            ("42", AttrValue::Int(42)),
            ("-7", AttrValue::Int(-7)),
            ("007", AttrValue::Str("007".into())),
            ("true", AttrValue::Bool(true)),
            ("0.5", AttrValue::Double(0.5)),
            ("1e-7", AttrValue::Double(1e-7)),
            ("1.50", AttrValue::Str("1.50".into())),
            ("[1,2]", AttrValue::Json("[1,2]".into())),
            ("[not json", AttrValue::Str("[not json".into())),
            ("gpt-4o", AttrValue::Str("gpt-4o".into())),
            ("", AttrValue::Str(String::new())),
        ] {
            assert_eq!(typed(text.into()), want, "{text}");
        }
    }

    #[test]
    fn span_matches_quote_their_names() {
        let shared = |t: &str| format!("`otel`.`tailscope_{t}`");
        let tool = SpanMatch::AttributeValue("it's a \\ tool".into());
        assert_eq!(
            tool.sql(&shared),
            "has(mapValues(SpanAttributes), 'it\\'s a \\\\ tool')"
        );
        let op = SpanMatch::Named {
            service: Some("svc".into()),
            name: "initialize".into(),
        };
        assert_eq!(
            op.sql(&shared),
            "SpanName = 'initialize' AND ServiceName = 'svc'"
        );
        let cause = SpanMatch::Cause("queue".into()).sql(&shared);
        assert!(cause.contains("cause = 'queue'"), "{cause}");
    }

    #[test]
    fn kinds_and_statuses_in_both_spellings() {
        assert_eq!(kind_of("SPAN_KIND_CLIENT"), Some(SpanKind::Client));
        assert_eq!(kind_of("Client"), Some(SpanKind::Client));
        assert_eq!(kind_of("Sideways"), None);
        assert_eq!(status_of("STATUS_CODE_ERROR"), Some(StatusCode::Error));
        assert_eq!(status_of("Ok"), Some(StatusCode::Ok));
        assert_eq!(status_of("Maybe"), None);
    }
}
