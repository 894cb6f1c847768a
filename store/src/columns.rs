//! Model values -> Arrow record batches, one builder set per table, in the column
//! order of the schema (checked by a test against the migrated database).

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, UInt32Builder, UInt64Builder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;
use std::borrow::Cow;
use std::sync::Arc;
use tailscope_model::{
    AttrValue, Attribute, Batch, Exemplar, LogRecord, MetricPoint, Resource, Span,
};

/// Column types used by the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    I64,
    I32,
    U32,
    U64,
    F64,
    Bool,
    ListU64,
    ListF64,
}

impl Ty {
    /// The DuckDB type name as `information_schema.columns.data_type` reports it.
    pub(crate) fn duckdb_name(self) -> &'static str {
        match self {
            Ty::Str => "VARCHAR",
            Ty::I64 => "BIGINT",
            Ty::I32 => "INTEGER",
            Ty::U32 => "UINTEGER",
            Ty::U64 => "UBIGINT",
            Ty::F64 => "DOUBLE",
            Ty::Bool => "BOOLEAN",
            Ty::ListU64 => "UBIGINT[]",
            Ty::ListF64 => "DOUBLE[]",
        }
    }
}

enum Col {
    Str(StringBuilder),
    I64(Int64Builder),
    I32(Int32Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    ListU64(ListBuilder<UInt64Builder>),
    ListF64(ListBuilder<Float64Builder>),
}

/// Builds one table's rows column by column; values are pushed in schema order.
pub(crate) struct TableBuilder {
    pub(crate) table: &'static str,
    spec: &'static [(&'static str, Ty)],
    cols: Vec<Col>,
    cursor: usize,
    rows: usize,
}

macro_rules! push_fn {
    ($fn:ident, $variant:ident, $t:ty) => {
        fn $fn(&mut self, v: Option<$t>) {
            match &mut self.cols[self.cursor] {
                Col::$variant(b) => b.append_option(v),
                _ => self.type_mismatch(stringify!($variant)),
            }
            self.cursor += 1;
        }
    };
}

impl TableBuilder {
    fn new(table: &'static str, spec: &'static [(&'static str, Ty)]) -> Self {
        let cols = spec
            .iter()
            .map(|(_, ty)| match ty {
                Ty::Str => Col::Str(StringBuilder::new()),
                Ty::I64 => Col::I64(Int64Builder::new()),
                Ty::I32 => Col::I32(Int32Builder::new()),
                Ty::U32 => Col::U32(UInt32Builder::new()),
                Ty::U64 => Col::U64(UInt64Builder::new()),
                Ty::F64 => Col::F64(Float64Builder::new()),
                Ty::Bool => Col::Bool(BooleanBuilder::new()),
                Ty::ListU64 => Col::ListU64(ListBuilder::new(UInt64Builder::new())),
                Ty::ListF64 => Col::ListF64(ListBuilder::new(Float64Builder::new())),
            })
            .collect();
        Self {
            table,
            spec,
            cols,
            cursor: 0,
            rows: 0,
        }
    }

    #[cold]
    fn type_mismatch(&self, pushed: &str) -> ! {
        // A programming error in this file (covered by the schema test), never input-driven.
        panic!(
            "{}.{}: pushed {pushed}, column is {:?}",
            self.table, self.spec[self.cursor].0, self.spec[self.cursor].1
        )
    }

    push_fn!(str, Str, &str);
    push_fn!(i64, I64, i64);
    push_fn!(i32, I32, i32);
    push_fn!(u32, U32, u32);
    push_fn!(u64, U64, u64);
    push_fn!(f64, F64, f64);
    push_fn!(bool, Bool, bool);

    fn list_u64(&mut self, v: &[u64]) {
        match &mut self.cols[self.cursor] {
            Col::ListU64(b) => {
                b.values().append_slice(v);
                b.append(true);
            }
            _ => self.type_mismatch("ListU64"),
        }
        self.cursor += 1;
    }

    fn list_f64(&mut self, v: &[f64]) {
        match &mut self.cols[self.cursor] {
            Col::ListF64(b) => {
                b.values().append_slice(v);
                b.append(true);
            }
            _ => self.type_mismatch("ListF64"),
        }
        self.cursor += 1;
    }

    fn end_row(&mut self) {
        debug_assert_eq!(self.cursor, self.cols.len(), "{}: short row", self.table);
        self.cursor = 0;
        self.rows += 1;
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Finishes the columns into a record batch and resets the builder.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut fields = Vec::with_capacity(self.cols.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.cols.len());
        for ((name, _), col) in self.spec.iter().zip(self.cols.iter_mut()) {
            let array: ArrayRef = match col {
                Col::Str(b) => Arc::new(b.finish()),
                Col::I64(b) => Arc::new(b.finish()),
                Col::I32(b) => Arc::new(b.finish()),
                Col::U32(b) => Arc::new(b.finish()),
                Col::U64(b) => Arc::new(b.finish()),
                Col::F64(b) => Arc::new(b.finish()),
                Col::Bool(b) => Arc::new(b.finish()),
                Col::ListU64(b) => Arc::new(b.finish()),
                Col::ListF64(b) => Arc::new(b.finish()),
            };
            let dt: DataType = array.data_type().clone();
            fields.push(Field::new(*name, dt, true));
            arrays.push(array);
        }
        self.rows = 0;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
    }
}

pub(crate) const RESOURCES: &[(&str, Ty)] = &[
    ("resource_id", Ty::I64),
    ("service_name", Ty::Str),
    ("attributes", Ty::Str),
];

const ATTRS: [(&str, Ty); 5] = [
    ("value_type", Ty::Str),
    ("value", Ty::Str),
    ("int_value", Ty::I64),
    ("double_value", Ty::F64),
    ("bool_value", Ty::Bool),
];

pub(crate) const RESOURCE_ATTRIBUTES: &[(&str, Ty)] = &[
    ("resource_id", Ty::I64),
    ("key", Ty::Str),
    ATTRS[0],
    ATTRS[1],
    ATTRS[2],
    ATTRS[3],
    ATTRS[4],
];

pub(crate) const SPANS: &[(&str, Ty)] = &[
    ("trace_id", Ty::Str),
    ("span_id", Ty::Str),
    ("parent_span_id", Ty::Str),
    ("trace_state", Ty::Str),
    ("flags", Ty::U32),
    ("name", Ty::Str),
    ("kind", Ty::Str),
    ("start_ns", Ty::I64),
    ("end_ns", Ty::I64),
    ("duration_ns", Ty::I64),
    ("status_code", Ty::Str),
    ("status_message", Ty::Str),
    ("resource_id", Ty::I64),
    ("service_name", Ty::Str),
    ("scope_name", Ty::Str),
    ("scope_version", Ty::Str),
    ("op_class", Ty::Str),
    ("operation", Ty::Str),
    ("model", Ty::Str),
    ("provider", Ty::Str),
    ("conversation_id", Ty::Str),
    ("input_tokens", Ty::I64),
    ("output_tokens", Ty::I64),
    ("cache_read_tokens", Ty::I64),
    ("cache_write_tokens", Ty::I64),
    ("stream", Ty::Bool),
    ("time_to_first_chunk_ns", Ty::I64),
    ("queue_ns", Ty::I64),
    ("ttft_ns", Ty::I64),
    ("prefill_ns", Ty::I64),
    ("decode_ns", Ty::I64),
    ("inference_ns", Ty::I64),
    ("e2e_ns", Ty::I64),
    ("tool_name", Ty::Str),
    ("tool_call_id", Ty::Str),
    ("agent_name", Ty::Str),
    ("data_source_id", Ty::Str),
    ("mcp_method", Ty::Str),
    ("mcp_session_id", Ty::Str),
    ("db_system", Ty::Str),
    ("db_operation", Ty::Str),
    ("db_query_summary", Ty::Str),
    ("db_pool_name", Ty::Str),
    ("pool_wait_ns", Ty::I64),
    ("server_address", Ty::Str),
    ("error_type", Ty::Str),
    ("event_count", Ty::I32),
    ("link_count", Ty::I32),
    ("ingested_ns", Ty::I64),
    ("attributes", Ty::Str),
    ("cold_start", Ty::Bool),
    ("resend_count", Ty::I64),
];

pub(crate) const EVENTS: &[(&str, Ty)] = &[
    ("trace_id", Ty::Str),
    ("span_id", Ty::Str),
    ("event_index", Ty::I32),
    ("time_ns", Ty::I64),
    ("name", Ty::Str),
    ("attributes", Ty::Str),
];

pub(crate) const LINKS: &[(&str, Ty)] = &[
    ("trace_id", Ty::Str),
    ("span_id", Ty::Str),
    ("linked_trace_id", Ty::Str),
    ("linked_span_id", Ty::Str),
    ("trace_state", Ty::Str),
    ("attributes", Ty::Str),
];

pub(crate) const METRIC_POINTS: &[(&str, Ty)] = &[
    ("resource_id", Ty::I64),
    ("service_name", Ty::Str),
    ("scope_name", Ty::Str),
    ("name", Ty::Str),
    ("description", Ty::Str),
    ("unit", Ty::Str),
    ("kind", Ty::Str),
    ("temporality", Ty::Str),
    ("monotonic", Ty::Bool),
    ("start_ns", Ty::I64),
    ("time_ns", Ty::I64),
    ("attributes", Ty::Str),
    ("value", Ty::F64),
    ("count", Ty::U64),
    ("sum", Ty::F64),
    ("min", Ty::F64),
    ("max", Ty::F64),
    ("bucket_counts", Ty::ListU64),
    ("explicit_bounds", Ty::ListF64),
    ("quantiles", Ty::Str),
    ("exemplars", Ty::Str),
];

pub(crate) const LOGS: &[(&str, Ty)] = &[
    ("resource_id", Ty::I64),
    ("service_name", Ty::Str),
    ("scope_name", Ty::Str),
    ("time_ns", Ty::I64),
    ("observed_ns", Ty::I64),
    ("severity_number", Ty::I32),
    ("severity_text", Ty::Str),
    ("body", Ty::Str),
    ("trace_id", Ty::Str),
    ("span_id", Ty::Str),
    ("event_name", Ty::Str),
    ("attributes", Ty::Str),
];

/// Every table the writer appends to, with its column spec.
pub(crate) const TABLES: &[(&str, &[(&str, Ty)])] = &[
    ("resources", RESOURCES),
    ("resource_attributes", RESOURCE_ATTRIBUTES),
    ("spans", SPANS),
    ("events", EVENTS),
    ("links", LINKS),
    ("metric_points", METRIC_POINTS),
    ("logs", LOGS),
];

/// Attributes as one JSON object value (typed values; the last of a repeated key
/// wins), for JSON built around them (exemplars).
fn attrs_value(attrs: &[Attribute]) -> serde_json::Value {
    let mut map = serde_json::Map::with_capacity(attrs.len());
    for a in attrs {
        map.insert(a.key.clone(), value_json(&a.value));
    }
    serde_json::Value::Object(map)
}

/// Writes attributes as a JSON object into a buffer it keeps between calls: the text
/// serde_json gives for a map of them (keys sorted bytewise, the last of a repeated
/// key wins, values as `value_json`), without building the map.
#[derive(Default)]
pub(crate) struct JsonWriter {
    out: Vec<u8>,
    order: Vec<usize>,
}

impl JsonWriter {
    pub(crate) fn attrs(&mut self, attrs: &[Attribute]) -> &str {
        self.out.clear();
        self.order.clear();
        self.order.extend(0..attrs.len());
        // stable: equal keys keep their order, so the last of a run is the last sent
        self.order.sort_by(|&a, &b| attrs[a].key.cmp(&attrs[b].key));
        self.out.push(b'{');
        let mut first = true;
        for (n, &i) in self.order.iter().enumerate() {
            let a = &attrs[i];
            if let Some(&next) = self.order.get(n + 1) {
                if attrs[next].key == a.key {
                    continue;
                }
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            write_json(&mut self.out, &a.key);
            self.out.push(b':');
            write_value_json(&mut self.out, &a.value);
        }
        self.out.push(b'}');
        // serde_json writes UTF-8 only
        std::str::from_utf8(&self.out).unwrap_or_default()
    }
}

/// One value as the `attributes` JSON holds it.
fn write_value_json(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(v) => write_json(out, v),
        AttrValue::Int(v) => write_json(out, v),
        AttrValue::Bool(v) => write_json(out, v),
        other => write_json(out, &value_json(other)),
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a Vec cannot fail, and these values always serialise.
    let _ = serde_json::to_writer(&mut *out, v);
}

fn value_json(v: &AttrValue) -> serde_json::Value {
    match v {
        AttrValue::Str(s) => serde_json::Value::String(s.clone()),
        AttrValue::Int(i) => serde_json::Value::from(*i),
        AttrValue::Double(d) => serde_json::Number::from_f64(*d)
            .map_or_else(|| serde_json::Value::String(d.to_string()), Into::into),
        AttrValue::Bool(b) => serde_json::Value::Bool(*b),
        AttrValue::Bytes(_) => serde_json::Value::String(v.to_display()),
        AttrValue::Json(s) => {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.clone()))
        }
    }
}

/// A summary's quantiles as stored: a JSON list of `{"quantile", "value"}`.
pub(crate) fn quantiles_json(quantiles: &[(f64, f64)]) -> Option<String> {
    (!quantiles.is_empty()).then(|| {
        serde_json::Value::Array(
            quantiles
                .iter()
                .map(|(q, v)| serde_json::json!({"quantile": q, "value": v}))
                .collect(),
        )
        .to_string()
    })
}

fn exemplars_json(ex: &[Exemplar]) -> Option<String> {
    if ex.is_empty() {
        return None;
    }
    let list: Vec<serde_json::Value> = ex
        .iter()
        .map(|e| {
            serde_json::json!({
                "time_ns": e.time_ns,
                "value": e.value,
                "trace_id": e.trace_id.map(|t| t.to_hex()),
                "span_id": e.span_id.map(|s| s.to_hex()),
                "attributes": attrs_value(&e.attributes),
            })
        })
        .collect();
    Some(serde_json::Value::Array(list).to_string())
}

/// Which items of a batch [`Columns::add`] stores, per signal (`None`: all of them).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Keep<'a> {
    pub(crate) spans: Option<&'a [bool]>,
    pub(crate) metrics: Option<&'a [bool]>,
    pub(crate) logs: Option<&'a [bool]>,
}

/// The builders for one write transaction.
pub(crate) struct Columns {
    pub(crate) tables: Vec<TableBuilder>,
    json: JsonWriter,
}

const T_RESOURCES: usize = 0;
const T_RESOURCE_ATTRIBUTES: usize = 1;
const T_SPANS: usize = 2;
const T_EVENTS: usize = 3;
const T_LINKS: usize = 4;
const T_METRICS: usize = 5;
const T_LOGS: usize = 6;

impl Columns {
    pub(crate) fn new() -> Self {
        Self {
            tables: TABLES
                .iter()
                .map(|(name, spec)| TableBuilder::new(name, spec))
                .collect(),
            json: JsonWriter::default(),
        }
    }

    /// Adds a batch, less what `keep` leaves out. `new_resource` says whether a
    /// resource id is not stored yet.
    pub(crate) fn add(
        &mut self,
        batch: &Batch,
        ingested_ns: i64,
        keep: Keep<'_>,
        mut new_resource: impl FnMut(i64) -> bool,
    ) {
        for r in &batch.resources {
            if new_resource(r.id) {
                self.resource(r);
            }
        }
        let kept = |mask: Option<&[bool]>, k: usize| mask.is_none_or(|m| m[k]);
        for (k, s) in batch.spans.iter().enumerate() {
            if kept(keep.spans, k) {
                self.span(s, ingested_ns);
            }
        }
        for (k, m) in batch.metrics.iter().enumerate() {
            if kept(keep.metrics, k) {
                self.metric(m);
            }
        }
        for (k, l) in batch.logs.iter().enumerate() {
            if kept(keep.logs, k) {
                self.log(l);
            }
        }
    }

    fn resource(&mut self, r: &Resource) {
        let t = &mut self.tables[T_RESOURCES];
        t.i64(Some(r.id));
        t.str(Some(&r.service_name));
        t.str(Some(self.json.attrs(&r.attributes)));
        t.end_row();
        let t = &mut self.tables[T_RESOURCE_ATTRIBUTES];
        for a in &r.attributes {
            t.i64(Some(r.id));
            t.str(Some(&a.key));
            push_attr_value(t, &a.value);
            t.end_row();
        }
    }

    fn span(&mut self, s: &Span, ingested_ns: i64) {
        let trace_id = s.trace_id.hex();
        let span_id = s.span_id.hex();
        let p = &s.promoted;
        let t = &mut self.tables[T_SPANS];
        t.str(Some(&trace_id));
        t.str(Some(&span_id));
        t.str(s.parent_span_id.map(|p| p.hex()).as_deref());
        t.str(non_empty(&s.trace_state));
        t.u32(Some(s.flags));
        t.str(Some(&s.name));
        t.str(Some(s.kind.as_str()));
        t.i64(Some(s.start_ns));
        t.i64(Some(s.end_ns));
        t.i64(Some(s.duration_ns()));
        t.str(Some(s.status.as_str()));
        t.str(non_empty(&s.status_message));
        t.i64(Some(s.resource_id));
        t.str(Some(&s.service_name));
        t.str(non_empty(&s.scope_name));
        t.str(non_empty(&s.scope_version));
        t.str(Some(p.op_class.as_str()));
        t.str(p.operation.as_deref());
        t.str(p.model.as_deref());
        t.str(p.provider.as_deref());
        t.str(p.conversation_id.as_deref());
        t.i64(p.input_tokens);
        t.i64(p.output_tokens);
        t.i64(p.cache_read_tokens);
        t.i64(p.cache_write_tokens);
        t.bool(p.stream);
        t.i64(p.time_to_first_chunk_ns);
        t.i64(p.queue_ns);
        t.i64(p.ttft_ns);
        t.i64(p.prefill_ns);
        t.i64(p.decode_ns);
        t.i64(p.inference_ns);
        t.i64(p.e2e_ns);
        t.str(p.tool_name.as_deref());
        t.str(p.tool_call_id.as_deref());
        t.str(p.agent_name.as_deref());
        t.str(p.data_source_id.as_deref());
        t.str(p.mcp_method.as_deref());
        t.str(p.mcp_session_id.as_deref());
        t.str(p.db_system.as_deref());
        t.str(p.db_operation.as_deref());
        t.str(p.db_query_summary.as_deref());
        t.str(p.db_pool_name.as_deref());
        t.i64(p.pool_wait_ns);
        t.str(p.server_address.as_deref());
        t.str(p.error_type.as_deref());
        t.i32(Some(i32::try_from(s.events.len()).unwrap_or(i32::MAX)));
        t.i32(Some(i32::try_from(s.links.len()).unwrap_or(i32::MAX)));
        t.i64(Some(ingested_ns));
        t.str(Some(self.json.attrs(&s.attributes)));
        t.bool(p.cold_start);
        t.i64(p.resend_count);
        t.end_row();

        let t = &mut self.tables[T_EVENTS];
        for (i, e) in s.events.iter().enumerate() {
            t.str(Some(&trace_id));
            t.str(Some(&span_id));
            t.i32(Some(i32::try_from(i).unwrap_or(i32::MAX)));
            t.i64(Some(e.time_ns));
            t.str(Some(&e.name));
            t.str(Some(self.json.attrs(&e.attributes)));
            t.end_row();
        }
        let t = &mut self.tables[T_LINKS];
        for l in &s.links {
            t.str(Some(&trace_id));
            t.str(Some(&span_id));
            t.str(Some(&l.trace_id.hex()));
            t.str(Some(&l.span_id.hex()));
            t.str(non_empty(&l.trace_state));
            t.str(Some(self.json.attrs(&l.attributes)));
            t.end_row();
        }
    }

    fn metric(&mut self, m: &MetricPoint) {
        let t = &mut self.tables[T_METRICS];
        t.i64(Some(m.resource_id));
        t.str(Some(&m.service_name));
        t.str(non_empty(&m.scope_name));
        t.str(Some(&m.name));
        t.str(non_empty(&m.description));
        t.str(non_empty(&m.unit));
        t.str(Some(m.kind.as_str()));
        t.str(Some(m.temporality.as_str()));
        t.bool(Some(m.monotonic));
        t.i64((m.start_ns != 0).then_some(m.start_ns));
        t.i64(Some(m.time_ns));
        t.str(Some(self.json.attrs(&m.attributes)));
        t.f64(m.value);
        t.u64(m.count);
        t.f64(m.sum);
        t.f64(m.min);
        t.f64(m.max);
        t.list_u64(&m.bucket_counts);
        t.list_f64(&m.explicit_bounds);
        t.str(quantiles_json(&m.quantiles).as_deref());
        t.str(exemplars_json(&m.exemplars).as_deref());
        t.end_row();
    }

    fn log(&mut self, l: &LogRecord) {
        let t = &mut self.tables[T_LOGS];
        t.i64(Some(l.resource_id));
        t.str(Some(&l.service_name));
        t.str(non_empty(&l.scope_name));
        t.i64(Some(l.time_ns));
        t.i64(Some(l.observed_ns));
        t.i32(Some(l.severity_number));
        t.str(non_empty(&l.severity_text));
        t.str(Some(&l.body));
        t.str(l.trace_id.map(|x| x.to_hex()).as_deref());
        t.str(l.span_id.map(|x| x.to_hex()).as_deref());
        t.str(non_empty(&l.event_name));
        t.str(Some(self.json.attrs(&l.attributes)));
        t.end_row();
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// A value as a span's `attributes` JSON holds it (what [`JsonWriter::attrs`] writes).
pub(crate) fn value_json_text(v: &AttrValue) -> String {
    let mut out = Vec::new();
    write_value_json(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

/// A value as an attribute table's `value` column holds it.
pub(crate) fn value_text(v: &AttrValue) -> Cow<'_, str> {
    match v {
        AttrValue::Str(s) | AttrValue::Json(s) => Cow::Borrowed(s),
        AttrValue::Int(i) => Cow::Owned(i.to_string()),
        AttrValue::Double(d) => Cow::Owned(d.to_string()),
        AttrValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        AttrValue::Bytes(_) => Cow::Owned(v.to_display()),
    }
}

fn push_attr_value(t: &mut TableBuilder, v: &AttrValue) {
    t.str(Some(v.type_name()));
    t.str(Some(&value_text(v)));
    let (int, float, boolean) = match v {
        AttrValue::Int(i) => (Some(*i), Some(*i as f64), None),
        AttrValue::Double(d) => (None, Some(*d), None),
        AttrValue::Bool(b) => (None, None, Some(*b)),
        AttrValue::Str(_) | AttrValue::Json(_) | AttrValue::Bytes(_) => (None, None, None),
    };
    t.i64(int);
    t.f64(float);
    t.bool(boolean);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON as a serde_json map of the attributes gives it.
    fn reference(attrs: &[Attribute]) -> String {
        attrs_value(attrs).to_string()
    }

    fn attr(key: &str, value: AttrValue) -> Attribute {
        Attribute {
            key: key.into(),
            value,
        }
    }

    #[test]
    fn attributes_json_is_the_maps_text() {
        let cases = vec![
            vec![],
            vec![
                attr("b", AttrValue::Int(-3)),
                attr("a", AttrValue::Bool(true)),
            ],
            // a repeated key: the last one sent wins, wherever it sorts
            vec![
                attr("k", AttrValue::Str("first".into())),
                attr("a", AttrValue::Double(1.0)),
                attr("k", AttrValue::Str("last".into())),
                attr("k2", AttrValue::Int(7)),
            ],
            vec![
                attr(
                    "é\u{1}\"\\\n",
                    AttrValue::Str("tab\t \u{7f} ünï 😀 </script>".into()),
                ),
                attr("Z", AttrValue::Double(f64::NAN)),
                attr("z", AttrValue::Double(-0.0)),
                attr("y", AttrValue::Double(1e300)),
                attr("x", AttrValue::Double(0.1 + 0.2)),
                attr("bytes", AttrValue::Bytes(vec![0, 0xff, 0x10])),
                attr(
                    "json",
                    AttrValue::Json(r#"{"b":[1,2,{"c":null}],"a":"x"}"#.into()),
                ),
                attr("bad json", AttrValue::Json("{not json".into())),
                attr("", AttrValue::Int(i64::MIN)),
            ],
        ];
        let mut w = JsonWriter::default();
        for attrs in &cases {
            assert_eq!(w.attrs(attrs), reference(attrs), "{attrs:?}");
            // an exemplar's attributes: the same object inside its JSON
            let ex = Exemplar {
                time_ns: 1,
                value: 2.0,
                trace_id: None,
                span_id: None,
                attributes: attrs.clone(),
            };
            let text = exemplars_json(&[ex]).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed[0]["attributes"].to_string(), reference(attrs));
        }
    }
}
