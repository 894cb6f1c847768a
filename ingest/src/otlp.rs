//! The one place OTLP proto types become model types (and back, for the load
//! generator and sample files). Invalid items are rejected one by one with a reason;
//! the rest of the request is kept.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message;
use std::collections::BTreeMap;
use tailscope_model::semconv::promote;
use tailscope_model::{
    AttrValue, Attribute, Batch, Event, Exemplar, Link, LogRecord, MetricKind, MetricPoint,
    Rejections, Resource, Span, SpanId, SpanKind, StatusCode, Temporality, TraceId,
};

/// Prefix for instrumentation-scope attributes stored beside span attributes
/// (the OpenTelemetry convention for exporters without scopes).
pub const SCOPE_ATTR_PREFIX: &str = "otel.scope.";

mod json;
mod wire;

fn any_to_json(v: &AnyValue) -> serde_json::Value {
    match &v.value {
        None => serde_json::Value::Null,
        Some(any_value::Value::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => serde_json::Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| serde_json::Value::String(d.to_string()), Into::into),
        Some(any_value::Value::BytesValue(b)) => serde_json::Value::String(hex::encode(b)),
        // A profiles dictionary index: meaningless outside a profile.
        Some(any_value::Value::StringValueStrindex(i)) => serde_json::Value::from(*i),
        Some(any_value::Value::ArrayValue(a)) => {
            serde_json::Value::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .map_or(serde_json::Value::Null, any_to_json),
                    )
                })
                .collect(),
        ),
    }
}

fn attr_value(v: Option<&AnyValue>) -> AttrValue {
    let Some(v) = v else {
        return AttrValue::Str(String::new());
    };
    match &v.value {
        None => AttrValue::Str(String::new()),
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(any_value::Value::BytesValue(b)) => AttrValue::Bytes(b.clone()),
        Some(any_value::Value::StringValueStrindex(i)) => AttrValue::Int(i64::from(*i)),
        Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_)) => {
            AttrValue::Json(any_to_json(v).to_string())
        }
    }
}

fn attrs(kvs: &[KeyValue]) -> Vec<Attribute> {
    kvs.iter()
        .map(|kv| Attribute::new(kv.key.clone(), attr_value(kv.value.as_ref())))
        .collect()
}

/// Like [`attr_value`], taking the value apart instead of copying it.
fn attr_value_owned(v: Option<AnyValue>) -> AttrValue {
    match v.and_then(|v| v.value) {
        None => AttrValue::Str(String::new()),
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
        Some(any_value::Value::BytesValue(b)) => AttrValue::Bytes(b),
        Some(v) => attr_value(Some(&AnyValue { value: Some(v) })),
    }
}

/// Like [`attrs`], taking the key/value pairs apart instead of copying them.
fn attrs_owned(kvs: Vec<KeyValue>) -> Vec<Attribute> {
    kvs.into_iter()
        .map(|kv| Attribute {
            key: kv.key,
            value: attr_value_owned(kv.value),
        })
        .collect()
}

fn body_text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => v.map(any_to_json).unwrap_or_default().to_string(),
    }
}

fn nanos(what: &str, t: u64) -> Result<i64, String> {
    i64::try_from(t).map_err(|_| format!("{what} {t} is past year 2262"))
}

/// A resource seen in a request; deduplicated by id within the batch.
fn resource(batch: &mut Batch, attributes: Vec<Attribute>) -> (i64, String) {
    let res = Resource::new(attributes);
    let out = (res.id, res.service_name.clone());
    if !batch.resources.iter().any(|x| x.id == res.id) {
        batch.resources.push(res);
    }
    out
}

/// An instrumentation scope: name, version, and its attributes under
/// [`SCOPE_ATTR_PREFIX`] (added to each of its spans' attributes).
#[derive(Default)]
struct Scope {
    name: String,
    version: String,
    attributes: Vec<Attribute>,
}

fn scope_attr(key: &str, value: AttrValue) -> Attribute {
    Attribute::new(format!("{SCOPE_ATTR_PREFIX}{key}"), value)
}

fn scope_parts(s: Option<InstrumentationScope>) -> Scope {
    s.map_or_else(Scope::default, |s| Scope {
        name: s.name,
        version: s.version,
        attributes: s
            .attributes
            .into_iter()
            .map(|kv| scope_attr(&kv.key, attr_value_owned(kv.value)))
            .collect(),
    })
}

/// A model event; an OTLP time past `i64::MAX` is noted in `bad_time` (the first
/// one), for [`check_span`] to reject the span with.
fn event(time: u64, name: String, attributes: Vec<Attribute>, bad_time: &mut Option<u64>) -> Event {
    if time > i64::MAX as u64 {
        bad_time.get_or_insert(time);
    }
    Event {
        time_ns: time as i64,
        name,
        attributes,
    }
}

/// A link as decoded, ids not yet checked.
struct LinkParts<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    trace_state: String,
    attributes: Vec<Attribute>,
}

/// A span as decoded (from prost's message or straight from the wire), before it is
/// checked: ids are raw bytes, times unsigned. Events are already model events; the
/// first event time past `i64::MAX` is kept aside to be reported in its turn.
struct SpanParts<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    trace_state: String,
    flags: u32,
    name: String,
    kind: i32,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    /// `(code, message)` when the span has a status.
    status: Option<(i32, String)>,
    attributes: Vec<Attribute>,
    events: Vec<Event>,
    bad_event_time: Option<u64>,
    links: Vec<LinkParts<'a>>,
}

/// Checks a decoded span (the checks and messages of every path in, in one order)
/// and promotes it. On rejection gives back the reason and the span's name.
fn finish_span(
    s: SpanParts<'_>,
    resource_id: i64,
    service: &str,
    scope: &Scope,
) -> Result<Span, (String, String)> {
    match check_span(&s) {
        Ok(checked) => Ok(build_span(s, checked, resource_id, service, scope)),
        Err(why) => Err((why, s.name)),
    }
}

/// What [`check_span`] worked out.
struct Checked {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    kind: SpanKind,
    status: StatusCode,
    start_ns: i64,
    end_ns: i64,
    links: Vec<(TraceId, SpanId)>,
}

fn check_span(s: &SpanParts<'_>) -> Result<Checked, String> {
    if s.trace_id.is_empty() {
        return Err("missing trace_id".into());
    }
    let trace_id = TraceId::from_bytes(s.trace_id).map_err(|e| e.to_string())?;
    let span_id = SpanId::from_bytes(s.span_id).map_err(|e| e.to_string())?;
    let parent_span_id = if s.parent_span_id.is_empty() {
        None
    } else {
        Some(SpanId::from_bytes(s.parent_span_id).map_err(|e| format!("parent_{e}"))?)
    };
    let kind =
        SpanKind::from_otlp(s.kind).ok_or_else(|| format!("unknown span kind {}", s.kind))?;
    let status = match &s.status {
        None => StatusCode::Unset,
        Some((code, _)) => {
            StatusCode::from_otlp(*code).ok_or_else(|| format!("unknown status code {code}"))?
        }
    };
    if s.start_time_unix_nano == 0 {
        return Err("start_time_unix_nano is 0".into());
    }
    let start_ns = nanos("start_time_unix_nano", s.start_time_unix_nano)?;
    let end_ns = nanos("end_time_unix_nano", s.end_time_unix_nano)?;
    if end_ns < start_ns {
        return Err(format!(
            "end_time_unix_nano {end_ns} is before start_time_unix_nano {start_ns}"
        ));
    }
    if let Some(t) = s.bad_event_time {
        nanos("event time_unix_nano", t)?;
    }
    let mut links = Vec::with_capacity(s.links.len());
    for l in &s.links {
        links.push((
            TraceId::from_bytes(l.trace_id).map_err(|e| format!("link {e}"))?,
            SpanId::from_bytes(l.span_id).map_err(|e| format!("link {e}"))?,
        ));
    }
    Ok(Checked {
        trace_id,
        span_id,
        parent_span_id,
        kind,
        status,
        start_ns,
        end_ns,
        links,
    })
}

fn build_span(
    s: SpanParts<'_>,
    c: Checked,
    resource_id: i64,
    service: &str,
    scope: &Scope,
) -> Span {
    let mut attributes = s.attributes;
    attributes.extend(scope.attributes.iter().cloned());
    let promoted = promote(&s.name, c.start_ns, c.end_ns, &attributes, &s.events);
    let links = s
        .links
        .into_iter()
        .zip(c.links)
        .map(|(l, (trace_id, span_id))| Link {
            trace_id,
            span_id,
            trace_state: l.trace_state,
            attributes: l.attributes,
        })
        .collect();
    Span {
        trace_id: c.trace_id,
        span_id: c.span_id,
        parent_span_id: c.parent_span_id,
        trace_state: s.trace_state,
        flags: s.flags,
        name: s.name,
        kind: c.kind,
        start_ns: c.start_ns,
        end_ns: c.end_ns,
        status: c.status,
        status_message: s.status.map(|(_, m)| m).unwrap_or_default(),
        resource_id,
        service_name: service.to_owned(),
        scope_name: scope.name.clone(),
        scope_version: scope.version.clone(),
        attributes,
        events: s.events,
        links,
        promoted,
    }
}

/// Adds a finished (or rejected) span of service `service`, the `i`-th of its scope.
fn push_span(
    batch: &mut Batch,
    rej: &mut Rejections,
    i: usize,
    service: &str,
    span: Result<Span, (String, String)>,
) {
    match span {
        Ok(span) => batch.spans.push(span),
        Err((why, name)) => rej.reject(format!(
            "span {i} ({:?}) of service '{service}': {why}",
            truncate(&name, 60)
        )),
    }
}

/// Converts a trace export request; invalid spans are rejected with a reason.
pub fn traces_to_model(req: &ExportTraceServiceRequest) -> (Batch, Rejections) {
    traces_into_model(req.clone())
}

/// [`traces_to_model`], taking the request apart instead of copying its strings.
pub fn traces_into_model(req: ExportTraceServiceRequest) -> (Batch, Rejections) {
    let mut batch = Batch::default();
    let mut rej = Rejections::default();
    batch.spans.reserve(
        req.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum(),
    );
    for rs in req.resource_spans {
        let res_attrs = rs.resource.map(|r| attrs_owned(r.attributes));
        let (rid, service) = resource(&mut batch, res_attrs.unwrap_or_default());
        for ss in rs.scope_spans {
            let scope = scope_parts(ss.scope);
            for (i, s) in ss.spans.into_iter().enumerate() {
                let pt::Span {
                    trace_id,
                    span_id,
                    trace_state,
                    parent_span_id,
                    flags,
                    name,
                    kind,
                    start_time_unix_nano,
                    end_time_unix_nano,
                    attributes,
                    events,
                    links,
                    status,
                    ..
                } = s;
                let mut bad_event_time = None;
                let events = events
                    .into_iter()
                    .map(|e| {
                        event(
                            e.time_unix_nano,
                            e.name,
                            attrs_owned(e.attributes),
                            &mut bad_event_time,
                        )
                    })
                    .collect();
                let parts = SpanParts {
                    trace_id: &trace_id,
                    span_id: &span_id,
                    parent_span_id: &parent_span_id,
                    trace_state,
                    flags,
                    name,
                    kind,
                    start_time_unix_nano,
                    end_time_unix_nano,
                    status: status.map(|st| (st.code, st.message)),
                    attributes: attrs_owned(attributes),
                    events,
                    bad_event_time,
                    links: links
                        .iter()
                        .map(|l| LinkParts {
                            trace_id: &l.trace_id,
                            span_id: &l.span_id,
                            trace_state: l.trace_state.clone(),
                            attributes: attrs(&l.attributes),
                        })
                        .collect(),
                };
                let span = finish_span(parts, rid, &service, &scope);
                push_span(&mut batch, &mut rej, i, &service, span);
            }
        }
    }
    (batch, rej)
}

/// Decodes a protobuf `ExportTraceServiceRequest` straight into a batch (what
/// [`traces_into_model`] gives for the decoded request, without building prost's
/// message tree first). What the direct decoder declines (malformed input, and the
/// rare shapes it leaves to prost) goes through prost, which also words the error.
pub fn traces_from_protobuf(bytes: &[u8]) -> Result<(Batch, Rejections), prost::DecodeError> {
    if let Ok(out) = wire::traces(bytes) {
        return Ok(out);
    }
    Ok(traces_into_model(ExportTraceServiceRequest::decode(bytes)?))
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` straight into a batch (what
/// [`traces_into_model`] gives for the request as opentelemetry-proto's serde reads
/// it, without building its message tree first). What the direct decoder declines
/// (malformed input, and the rare shapes it leaves to serde) goes through
/// opentelemetry-proto's serde, which also words the error.
pub fn traces_from_json(bytes: &[u8]) -> Result<(Batch, Rejections), serde_json::Error> {
    if let Some(out) = traces_from_json_direct(bytes) {
        return Ok(out);
    }
    serde_json::from_slice::<ExportTraceServiceRequest>(bytes).map(traces_into_model)
}

/// The direct protobuf decoder alone: `None` where it declines.
pub(crate) fn traces_from_protobuf_direct(bytes: &[u8]) -> Option<(Batch, Rejections)> {
    wire::traces(bytes).ok()
}

/// The direct OTLP/JSON decoder alone: `None` where it declines.
pub(crate) fn traces_from_json_direct(bytes: &[u8]) -> Option<(Batch, Rejections)> {
    json::traces(bytes).ok()
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn exemplars(ex: &[pm::Exemplar]) -> Vec<Exemplar> {
    ex.iter()
        .map(|e| Exemplar {
            time_ns: i64::try_from(e.time_unix_nano).unwrap_or(0),
            value: match e.value {
                Some(pm::exemplar::Value::AsDouble(d)) => d,
                Some(pm::exemplar::Value::AsInt(i)) => i as f64,
                None => f64::NAN,
            },
            trace_id: TraceId::from_bytes(&e.trace_id).ok(),
            span_id: SpanId::from_bytes(&e.span_id).ok(),
            attributes: attrs(&e.filtered_attributes),
        })
        .collect()
}

struct MetricCtx<'a> {
    resource_id: i64,
    service: &'a str,
    scope: &'a str,
    m: &'a pm::Metric,
}

impl MetricCtx<'_> {
    fn point(
        &self,
        kind: MetricKind,
        temporality: Temporality,
        monotonic: bool,
        start: u64,
        time: u64,
        attributes: &[KeyValue],
    ) -> Result<MetricPoint, String> {
        if time == 0 {
            return Err("time_unix_nano is 0".into());
        }
        Ok(MetricPoint {
            scope_name: self.scope.to_owned(),
            description: self.m.description.clone(),
            temporality,
            monotonic,
            start_ns: nanos("start_time_unix_nano", start)?,
            attributes: attrs(attributes),
            ..MetricPoint::at(
                self.resource_id,
                self.service,
                &self.m.name,
                &self.m.unit,
                kind,
                nanos("time_unix_nano", time)?,
            )
        })
    }

    fn number(
        &self,
        kind: MetricKind,
        temporality: Temporality,
        monotonic: bool,
        p: &pm::NumberDataPoint,
    ) -> Result<MetricPoint, String> {
        let mut out = self.point(
            kind,
            temporality,
            monotonic,
            p.start_time_unix_nano,
            p.time_unix_nano,
            &p.attributes,
        )?;
        out.value = Some(match p.value {
            Some(pm::number_data_point::Value::AsDouble(d)) => d,
            Some(pm::number_data_point::Value::AsInt(i)) => i as f64,
            None => return Err("data point has no value".into()),
        });
        out.exemplars = exemplars(&p.exemplars);
        Ok(out)
    }
}

fn temporality(n: i32) -> Result<Temporality, String> {
    Temporality::from_otlp(n).ok_or_else(|| format!("unknown aggregation temporality {n}"))
}

fn metric_points(ctx: &MetricCtx<'_>, out: &mut Vec<MetricPoint>, rej: &mut Rejections) {
    let m = ctx.m;
    let mut push = |r: Result<MetricPoint, String>, i: usize| match r {
        Ok(p) => out.push(p),
        Err(why) => rej.reject(format!(
            "point {i} of metric '{}': {why}",
            truncate(&m.name, 80)
        )),
    };
    match &m.data {
        None => rej.reject(format!("metric '{}' has no data", truncate(&m.name, 80))),
        Some(pm::metric::Data::Gauge(g)) => {
            for (i, p) in g.data_points.iter().enumerate() {
                push(
                    ctx.number(MetricKind::Gauge, Temporality::Unspecified, false, p),
                    i,
                );
            }
        }
        Some(pm::metric::Data::Sum(s)) => {
            for (i, p) in s.data_points.iter().enumerate() {
                let r = temporality(s.aggregation_temporality)
                    .and_then(|t| ctx.number(MetricKind::Sum, t, s.is_monotonic, p));
                push(r, i);
            }
        }
        Some(pm::metric::Data::Histogram(h)) => {
            for (i, p) in h.data_points.iter().enumerate() {
                // Bucket counts are stored as sent: the OTLP spec's own example has more
                // counts than bounds + 1, so a receiver must not be stricter than that.
                let r = temporality(h.aggregation_temporality).and_then(|t| {
                    let mut out = ctx.point(
                        MetricKind::Histogram,
                        t,
                        false,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                        &p.attributes,
                    )?;
                    out.count = Some(p.count);
                    out.sum = p.sum;
                    out.min = p.min;
                    out.max = p.max;
                    out.bucket_counts.clone_from(&p.bucket_counts);
                    out.explicit_bounds.clone_from(&p.explicit_bounds);
                    out.exemplars = exemplars(&p.exemplars);
                    Ok(out)
                });
                push(r, i);
            }
        }
        Some(pm::metric::Data::ExponentialHistogram(h)) => {
            for (i, p) in h.data_points.iter().enumerate() {
                let r = temporality(h.aggregation_temporality).and_then(|t| {
                    let mut out = ctx.point(
                        MetricKind::ExponentialHistogram,
                        t,
                        false,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                        &p.attributes,
                    )?;
                    out.count = Some(p.count);
                    out.sum = p.sum;
                    out.min = p.min;
                    out.max = p.max;
                    // Exponential buckets as explicit bounds: base = 2^(2^-scale).
                    if let Some(pos) = &p.positive {
                        let base = 2f64.powf(2f64.powi(-p.scale));
                        out.explicit_bounds = (0..pos.bucket_counts.len())
                            .map(|k| base.powi(pos.offset + k as i32 + 1))
                            .collect();
                        out.bucket_counts.push(p.zero_count);
                        out.bucket_counts.extend_from_slice(&pos.bucket_counts);
                        if out.explicit_bounds.len() + 1 != out.bucket_counts.len() {
                            out.explicit_bounds.clear();
                            out.bucket_counts.clear();
                        }
                    }
                    out.exemplars = exemplars(&p.exemplars);
                    Ok(out)
                });
                push(r, i);
            }
        }
        Some(pm::metric::Data::Summary(s)) => {
            for (i, p) in s.data_points.iter().enumerate() {
                let r = ctx
                    .point(
                        MetricKind::Summary,
                        Temporality::Cumulative,
                        false,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                        &p.attributes,
                    )
                    .map(|mut out| {
                        out.count = Some(p.count);
                        out.sum = Some(p.sum);
                        out.quantiles = p
                            .quantile_values
                            .iter()
                            .map(|q| (q.quantile, q.value))
                            .collect();
                        out
                    });
                push(r, i);
            }
        }
    }
}

/// Converts a metrics export request; invalid data points are rejected with a reason.
pub fn metrics_to_model(req: &ExportMetricsServiceRequest) -> (Batch, Rejections) {
    let mut batch = Batch::default();
    let mut rej = Rejections::default();
    for rm in &req.resource_metrics {
        let (rid, service) = resource(
            &mut batch,
            rm.resource
                .as_ref()
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default(),
        );
        for sm in &rm.scope_metrics {
            let scope = sm.scope.as_ref().map_or("", |s| s.name.as_str());
            for m in &sm.metrics {
                let ctx = MetricCtx {
                    resource_id: rid,
                    service: &service,
                    scope,
                    m,
                };
                metric_points(&ctx, &mut batch.metrics, &mut rej);
            }
        }
    }
    (batch, rej)
}

/// Converts a logs export request; invalid records are rejected with a reason.
pub fn logs_to_model(req: &ExportLogsServiceRequest) -> (Batch, Rejections) {
    let mut batch = Batch::default();
    let mut rej = Rejections::default();
    for rl in &req.resource_logs {
        let (rid, service) = resource(
            &mut batch,
            rl.resource
                .as_ref()
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default(),
        );
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref().map_or("", |s| s.name.as_str());
            for (i, l) in sl.log_records.iter().enumerate() {
                let conv = || -> Result<LogRecord, String> {
                    let trace_id = if l.trace_id.is_empty() {
                        None
                    } else {
                        Some(TraceId::from_bytes(&l.trace_id).map_err(|e| e.to_string())?)
                    };
                    let span_id = if l.span_id.is_empty() {
                        None
                    } else {
                        Some(SpanId::from_bytes(&l.span_id).map_err(|e| e.to_string())?)
                    };
                    let observed_ns = nanos("observed_time_unix_nano", l.observed_time_unix_nano)?;
                    let time_ns = match nanos("time_unix_nano", l.time_unix_nano)? {
                        0 => observed_ns,
                        t => t,
                    };
                    if !(0..=24).contains(&l.severity_number) {
                        return Err(format!("unknown severity number {}", l.severity_number));
                    }
                    Ok(LogRecord {
                        resource_id: rid,
                        service_name: service.clone(),
                        scope_name: scope.to_owned(),
                        time_ns,
                        observed_ns,
                        severity_number: l.severity_number,
                        severity_text: l.severity_text.clone(),
                        body: body_text(l.body.as_ref()),
                        trace_id,
                        span_id,
                        event_name: l.event_name.clone(),
                        attributes: attrs(&l.attributes),
                    })
                };
                match conv() {
                    Ok(r) => batch.logs.push(r),
                    Err(why) => rej.reject(format!("log record {i} of service '{service}': {why}")),
                }
            }
        }
    }
    (batch, rej)
}

// ---------------------------------------------------------------------------
// model -> proto (load generator, sample files)

fn to_any(v: &AttrValue) -> AnyValue {
    let value = match v {
        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Double(d) => any_value::Value::DoubleValue(*d),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttrValue::Bytes(b) => any_value::Value::BytesValue(b.clone()),
        AttrValue::Json(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(j) => return json_to_any(&j),
            Err(_) => any_value::Value::StringValue(s.clone()),
        },
    };
    AnyValue { value: Some(value) }
}

fn json_to_any(j: &serde_json::Value) -> AnyValue {
    let value = match j {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        serde_json::Value::Number(n) => n.as_i64().map_or_else(
            || {
                Some(any_value::Value::DoubleValue(
                    n.as_f64().unwrap_or(f64::NAN),
                ))
            },
            |i| Some(any_value::Value::IntValue(i)),
        ),
        serde_json::Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        serde_json::Value::Array(a) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: a.iter().map(json_to_any).collect(),
        })),
        serde_json::Value::Object(o) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: o
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(json_to_any(v)),
                    ..KeyValue::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

fn to_kvs(a: &[Attribute]) -> Vec<KeyValue> {
    a.iter()
        .map(|a| KeyValue {
            key: a.key.clone(),
            value: Some(to_any(&a.value)),
            ..KeyValue::default()
        })
        .collect()
}

fn span_kind_num(k: SpanKind) -> i32 {
    match k {
        SpanKind::Unspecified => 0,
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn status_num(s: StatusCode) -> i32 {
    match s {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    }
}

fn proto_resource(batch: &Batch, id: i64, service: &str) -> ProtoResource {
    let attributes = batch.resources.iter().find(|r| r.id == id).map_or_else(
        || {
            to_kvs(&[Attribute::new(
                "service.name",
                AttrValue::Str(service.to_owned()),
            )])
        },
        |r| to_kvs(&r.attributes),
    );
    ProtoResource {
        attributes,
        ..ProtoResource::default()
    }
}

fn unsigned(ns: i64) -> u64 {
    u64::try_from(ns).unwrap_or(0)
}

/// Encodes a batch's spans as one export request, grouped by resource and scope.
pub fn traces_from_model(batch: &Batch) -> ExportTraceServiceRequest {
    let mut groups: BTreeMap<(i64, String, String), Vec<&Span>> = BTreeMap::new();
    for s in &batch.spans {
        groups
            .entry((s.resource_id, s.scope_name.clone(), s.scope_version.clone()))
            .or_default()
            .push(s);
    }
    let mut by_resource: BTreeMap<i64, pt::ResourceSpans> = BTreeMap::new();
    for ((rid, scope_name, scope_version), spans) in groups {
        let service = spans.first().map_or("", |s| s.service_name.as_str());
        let rs = by_resource.entry(rid).or_insert_with(|| pt::ResourceSpans {
            resource: Some(proto_resource(batch, rid, service)),
            ..pt::ResourceSpans::default()
        });
        rs.scope_spans.push(pt::ScopeSpans {
            scope: Some(InstrumentationScope {
                name: scope_name,
                version: scope_version,
                ..InstrumentationScope::default()
            }),
            spans: spans.into_iter().map(span_to_proto).collect(),
            ..pt::ScopeSpans::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: by_resource.into_values().collect(),
    }
}

fn span_to_proto(s: &Span) -> pt::Span {
    pt::Span {
        trace_id: s.trace_id.0.to_vec(),
        span_id: s.span_id.0.to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: s.flags,
        name: s.name.clone(),
        kind: span_kind_num(s.kind),
        start_time_unix_nano: unsigned(s.start_ns),
        end_time_unix_nano: unsigned(s.end_ns),
        attributes: to_kvs(
            &s.attributes
                .iter()
                .filter(|a| !a.key.starts_with(SCOPE_ATTR_PREFIX))
                .cloned()
                .collect::<Vec<_>>(),
        ),
        events: s
            .events
            .iter()
            .map(|e| pt::span::Event {
                time_unix_nano: unsigned(e.time_ns),
                name: e.name.clone(),
                attributes: to_kvs(&e.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        links: s
            .links
            .iter()
            .map(|l| pt::span::Link {
                trace_id: l.trace_id.0.to_vec(),
                span_id: l.span_id.0.to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: to_kvs(&l.attributes),
                ..pt::span::Link::default()
            })
            .collect(),
        status: Some(pt::Status {
            message: s.status_message.clone(),
            code: status_num(s.status),
        }),
        ..pt::Span::default()
    }
}

fn temporality_num(t: Temporality) -> i32 {
    match t {
        Temporality::Unspecified => 0,
        Temporality::Delta => 1,
        Temporality::Cumulative => 2,
    }
}

fn exemplars_to_proto(ex: &[Exemplar]) -> Vec<pm::Exemplar> {
    ex.iter()
        .map(|e| pm::Exemplar {
            filtered_attributes: to_kvs(&e.attributes),
            time_unix_nano: unsigned(e.time_ns),
            span_id: e.span_id.map(|s| s.0.to_vec()).unwrap_or_default(),
            trace_id: e.trace_id.map(|t| t.0.to_vec()).unwrap_or_default(),
            value: Some(pm::exemplar::Value::AsDouble(e.value)),
        })
        .collect()
}

/// Encodes a batch's metric points as one export request (one metric per point).
pub fn metrics_from_model(batch: &Batch) -> ExportMetricsServiceRequest {
    let mut by_resource: BTreeMap<i64, pm::ResourceMetrics> = BTreeMap::new();
    for p in &batch.metrics {
        let rm = by_resource
            .entry(p.resource_id)
            .or_insert_with(|| pm::ResourceMetrics {
                resource: Some(proto_resource(batch, p.resource_id, &p.service_name)),
                scope_metrics: vec![pm::ScopeMetrics::default()],
                ..pm::ResourceMetrics::default()
            });
        let number = || pm::NumberDataPoint {
            attributes: to_kvs(&p.attributes),
            start_time_unix_nano: unsigned(p.start_ns),
            time_unix_nano: unsigned(p.time_ns),
            exemplars: exemplars_to_proto(&p.exemplars),
            flags: 0,
            value: Some(pm::number_data_point::Value::AsDouble(
                p.value.unwrap_or(0.0),
            )),
        };
        let data = match p.kind {
            MetricKind::Gauge => pm::metric::Data::Gauge(pm::Gauge {
                data_points: vec![number()],
            }),
            MetricKind::Sum => pm::metric::Data::Sum(pm::Sum {
                data_points: vec![number()],
                aggregation_temporality: temporality_num(p.temporality),
                is_monotonic: p.monotonic,
            }),
            MetricKind::Histogram | MetricKind::ExponentialHistogram => {
                pm::metric::Data::Histogram(pm::Histogram {
                    data_points: vec![pm::HistogramDataPoint {
                        attributes: to_kvs(&p.attributes),
                        start_time_unix_nano: unsigned(p.start_ns),
                        time_unix_nano: unsigned(p.time_ns),
                        count: p.count.unwrap_or(0),
                        sum: p.sum,
                        bucket_counts: p.bucket_counts.clone(),
                        explicit_bounds: p.explicit_bounds.clone(),
                        exemplars: exemplars_to_proto(&p.exemplars),
                        flags: 0,
                        min: p.min,
                        max: p.max,
                    }],
                    aggregation_temporality: temporality_num(p.temporality),
                })
            }
            MetricKind::Summary => pm::metric::Data::Summary(pm::Summary {
                data_points: vec![pm::SummaryDataPoint {
                    attributes: to_kvs(&p.attributes),
                    start_time_unix_nano: unsigned(p.start_ns),
                    time_unix_nano: unsigned(p.time_ns),
                    count: p.count.unwrap_or(0),
                    sum: p.sum.unwrap_or(0.0),
                    quantile_values: p
                        .quantiles
                        .iter()
                        .map(|(q, v)| pm::summary_data_point::ValueAtQuantile {
                            quantile: *q,
                            value: *v,
                        })
                        .collect(),
                    flags: 0,
                }],
            }),
        };
        if let Some(sm) = rm.scope_metrics.first_mut() {
            sm.metrics.push(pm::Metric {
                name: p.name.clone(),
                description: p.description.clone(),
                unit: p.unit.clone(),
                data: Some(data),
                ..pm::Metric::default()
            });
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: by_resource.into_values().collect(),
    }
}
