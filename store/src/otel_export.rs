//! A local store copied up into the OpenTelemetry Collector ClickHouse exporter's span
//! table, row for row as the exporter would have written the same spans
//! (opentelemetry-collector-contrib `exporter/clickhouseexporter/exporter_traces.go`):
//! the start as `Timestamp`, lowercase hex ids (`""` for a root's parent), the kind
//! and status as pdata names (`Client`, `Error`; the older layout without
//! `ScopeName` columns: `SPAN_KIND_CLIENT`, `STATUS_CODE_ERROR`, and the scope as
//! `otel.scope.name` / `otel.scope.version` attributes), every attribute value as
//! pdata's `Value.AsString()` gives it, events and links as `Nested` columns. Inserts
//! are `RowBinary`, [`ROWS_PER_INSERT`] rows at a time.

use crate::clickhouse::{ClickHouse, ClickHouseUrl};
use crate::read::{opt, Columns};
use crate::rowbinary::Writer;
use crate::{Store, StoreError, Traces};
use std::borrow::Cow;
use std::collections::HashMap;
use tailscope_model::{AttrValue, Attribute, Span, SpanKind, StatusCode};

/// Rows per `INSERT`: the exporter's README asks for batches of at least 5,000.
pub const ROWS_PER_INSERT: usize = 20_000;

/// Traces read from the local store at a time.
const TRACES_PER_READ: usize = 2_000;

/// The exporter's own DDL for the span table and its trace-id lookup, rendered for
/// a database and table name (see `clickhouse_ddl.sql` for the source and licence).
const DDL: &str = include_str!("clickhouse_ddl.sql");

/// What a copy up to ClickHouse wrote.
#[derive(Debug, Default)]
pub struct Pushed {
    pub spans: u64,
    pub inserts: usize,
    /// Bytes sent to ClickHouse.
    pub bytes: u64,
    /// The tables were created (they did not exist).
    pub created: bool,
}

/// Which of the exporter's layouts the table has.
#[derive(Clone, Copy)]
struct Target {
    /// `ScopeName` / `ScopeVersion` columns and pdata kind names (current exporter).
    current: bool,
}

impl Target {
    fn insert(self, table: &str) -> String {
        let scope = if self.current {
            "ScopeName, ScopeVersion, "
        } else {
            ""
        };
        format!(
            "INSERT INTO {table} (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, \
             ServiceName, ResourceAttributes, {scope}SpanAttributes, Duration, StatusCode, StatusMessage, \
             `Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, `Links.SpanId`, \
             `Links.TraceState`, `Links.Attributes`) FORMAT RowBinary"
        )
    }

    fn kind(self, k: SpanKind) -> &'static str {
        match (self.current, k) {
            (true, SpanKind::Unspecified) => "Unspecified",
            (true, SpanKind::Internal) => "Internal",
            (true, SpanKind::Server) => "Server",
            (true, SpanKind::Client) => "Client",
            (true, SpanKind::Producer) => "Producer",
            (true, SpanKind::Consumer) => "Consumer",
            (false, SpanKind::Unspecified) => "SPAN_KIND_UNSPECIFIED",
            (false, SpanKind::Internal) => "SPAN_KIND_INTERNAL",
            (false, SpanKind::Server) => "SPAN_KIND_SERVER",
            (false, SpanKind::Client) => "SPAN_KIND_CLIENT",
            (false, SpanKind::Producer) => "SPAN_KIND_PRODUCER",
            (false, SpanKind::Consumer) => "SPAN_KIND_CONSUMER",
        }
    }

    fn status(self, s: StatusCode) -> &'static str {
        match (self.current, s) {
            (true, StatusCode::Unset) => "Unset",
            (true, StatusCode::Ok) => "Ok",
            (true, StatusCode::Error) => "Error",
            (false, StatusCode::Unset) => "STATUS_CODE_UNSET",
            (false, StatusCode::Ok) => "STATUS_CODE_OK",
            (false, StatusCode::Error) => "STATUS_CODE_ERROR",
        }
    }

    /// One span as the exporter's row.
    fn row(self, w: &mut Writer, s: &Span, resource: &[Attribute]) {
        w.i64(s.start_ns);
        w.str(&s.trace_id.hex());
        w.str(&s.span_id.hex());
        match &s.parent_span_id {
            Some(p) => w.str(&p.hex()),
            None => w.str(""),
        }
        w.str(&s.trace_state);
        w.str(&s.name);
        w.str(self.kind(s.kind));
        w.str(
            &resource
                .iter()
                .find(|a| a.key == "service.name")
                .map(|a| as_string(&a.value))
                .unwrap_or_default(),
        );
        w.string_map(&pairs(resource));
        let mut attrs = pairs(&s.attributes);
        if self.current {
            w.str(&s.scope_name);
            w.str(&s.scope_version);
        } else {
            if !s.scope_name.is_empty() {
                attrs.push(("otel.scope.name", Cow::Borrowed(&s.scope_name)));
            }
            if !s.scope_version.is_empty() {
                attrs.push(("otel.scope.version", Cow::Borrowed(&s.scope_version)));
            }
        }
        w.string_map(&attrs);
        w.i64(s.duration_ns());
        w.str(self.status(s.status));
        w.str(&s.status_message);
        w.varint(s.events.len());
        for e in &s.events {
            w.i64(e.time_ns);
        }
        w.varint(s.events.len());
        for e in &s.events {
            w.str(&e.name);
        }
        w.varint(s.events.len());
        for e in &s.events {
            w.string_map(&pairs(&e.attributes));
        }
        w.varint(s.links.len());
        for l in &s.links {
            w.str(&l.trace_id.hex());
        }
        w.varint(s.links.len());
        for l in &s.links {
            w.str(&l.span_id.hex());
        }
        w.varint(s.links.len());
        for l in &s.links {
            w.str(&l.trace_state);
        }
        w.varint(s.links.len());
        for l in &s.links {
            w.string_map(&pairs(&l.attributes));
        }
    }
}

fn pairs(attrs: &[Attribute]) -> Vec<(&str, Cow<'_, str>)> {
    attrs
        .iter()
        .map(|a| (a.key.as_str(), as_string(&a.value)))
        .collect()
}

/// pdata's `Value.AsString()`: strings as they are, ints in decimal, doubles as
/// encoding/json writes them, bytes in standard base64, arrays and maps as Go's
/// compact JSON (keys sorted).
pub fn as_string(v: &AttrValue) -> Cow<'_, str> {
    match v {
        AttrValue::Str(s) => Cow::Borrowed(s),
        AttrValue::Int(i) => Cow::Owned(i.to_string()),
        AttrValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        AttrValue::Double(d) => Cow::Owned(go_float(*d)),
        AttrValue::Bytes(b) => Cow::Owned(base64(b)),
        AttrValue::Json(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(j) => {
                let mut out = String::new();
                // a NaN or infinity inside: Go's json.Marshal fails and AsString is ""
                if go_json(&j, &mut out) {
                    Cow::Owned(out)
                } else {
                    Cow::Borrowed("")
                }
            }
            Err(_) => Cow::Borrowed(text),
        },
    }
}

/// pcommon's `float64AsString` (encoding/json's float encoder): shortest round-trip
/// digits, plain notation for 1e-6 <= |x| < 1e21, else `1e-7` / `1e+21`.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "json: unsupported value: NaN".into();
    }
    if f.is_infinite() {
        return format!(
            "json: unsupported value: {}",
            if f > 0.0 { "+Inf" } else { "-Inf" }
        );
    }
    let a = f.abs();
    if a == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // The shortest digits that read back as `f`: Rust's shortest form gives how many;
    // the value rounded to that many digits (exactly, ties to even, as Go does)
    // gives which: on an exact tie Rust's shortest form rounds up where Go does not.
    let shortest = format!("{a:e}");
    let n = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.bytes().filter(u8::is_ascii_digit).count());
    let exact = format!("{a:.*e}", n.saturating_sub(1));
    let Some((mantissa, exp)) = exact.split_once('e') else {
        return exact;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return exact;
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if f < 0.0 { "-" } else { "" };
    if (1e-6..1e21).contains(&a) {
        let (int, frac) = if exp >= 0 {
            let e = exp as usize + 1;
            if digits.len() > e {
                (digits[..e].to_owned(), &digits[e..])
            } else {
                (format!("{digits:0<e$}"), "")
            }
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            return format!("{sign}0.{zeros}{digits}");
        };
        return if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        };
    }
    let m = if digits.len() > 1 {
        format!("{}.{}", &digits[..1], &digits[1..])
    } else {
        digits.to_owned()
    };
    if exp < 0 {
        format!("{sign}{m}e-{}", -exp)
    } else {
        format!("{sign}{m}e+{exp:02}")
    }
}

/// An attribute value the exporter wrote as text, with the type its text says it had
/// (`Value.AsString()` of an int, a bool, a double or an array / map), so that a value
/// reads as the same value it is in a store fed by OTLP: `42` an int, `true` a bool,
/// `0.5` a double, `[...]` / `{...}` JSON. A string that only looks like one of them
/// (`"42"`) cannot be told apart: it reads as the number.
pub(crate) fn typed(v: String) -> AttrValue {
    match v.as_str() {
        "true" => return AttrValue::Bool(true),
        "false" => return AttrValue::Bool(false),
        _ => {}
    }
    let b = v.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1)
    {
        if let Ok(i) = v.parse::<i64>() {
            return AttrValue::Int(i);
        }
    }
    if matches!(b.first(), Some(b'0'..=b'9' | b'-')) {
        if let Ok(f) = v.parse::<f64>() {
            // only the text Go writes for a double, so "1.50" or "007" stay strings
            if go_float(f) == v {
                return AttrValue::Double(f);
            }
        }
    }
    if matches!(b.first(), Some(b'[' | b'{'))
        && serde_json::from_str::<serde::de::IgnoredAny>(&v).is_ok()
    {
        return AttrValue::Json(v);
    }
    AttrValue::Str(v)
}

/// Go's `json.Marshal` of a decoded value; `false` where it would fail (no NaN or
/// infinity can be in serde_json's values, so only through a number it cannot hold).
fn go_json(v: &serde_json::Value, out: &mut String) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                out.push_str(&go_float(f));
            } else {
                return false;
            }
        }
        Value::String(s) => go_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !go_json(x, out) {
                    return false;
                }
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                if !go_json(&m[k], out) {
                    return false;
                }
            }
            out.push('}');
        }
    }
    true
}

/// A JSON string as Go's encoder writes it: HTML-safe (`<`, `>`, `&` escaped) and
/// U+2028 / U+2029 escaped.
fn go_json_string(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An attribute value from the stored JSON of a span's attributes.
fn from_json(v: serde_json::Value) -> AttrValue {
    use serde_json::Value;
    match v {
        Value::String(s) => AttrValue::Str(s),
        Value::Bool(b) => AttrValue::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Null => AttrValue::Str(String::new()),
        other => AttrValue::Json(other.to_string()),
    }
}

/// The exporter's span table on a ClickHouse server, created with the exporter's
/// DDL when it was missing, ready to take rows.
pub struct ExporterTable {
    ch: ClickHouse,
    target: Target,
    table: String,
    insert: String,
    /// The tables were created (they did not exist).
    pub created: bool,
}

impl ExporterTable {
    pub fn open(url: &ClickHouseUrl) -> Result<Self, StoreError> {
        let ch = ClickHouse::connect(url.clone())?;
        let table = url.table(&url.traces_table);
        let mut cols = ch.columns(&url.traces_table)?;
        let mut created = false;
        if cols.is_empty() {
            ch.execute(&format!("CREATE DATABASE IF NOT EXISTS `{}`", url.database))?;
            for stmt in DDL
                .replace("{database}", &url.database)
                .replace("{table}", &url.traces_table)
                .split(';')
                .map(str::trim)
                .filter(|s| {
                    !s.lines()
                        .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
                })
            {
                ch.execute(stmt)?;
            }
            created = true;
            cols = ch.columns(&url.traces_table)?;
        }
        let target = Target {
            current: cols.iter().any(|c| c == "ScopeName"),
        };
        Ok(Self {
            insert: target.insert(&table),
            ch,
            target,
            table,
            created,
        })
    }

    pub fn url(&self) -> &ClickHouseUrl {
        &self.ch.url
    }

    /// Bytes sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.ch.bytes().1
    }

    /// The table holds the span `(trace_id, span_id)` (hex).
    pub fn holds(&self, trace_id: &str, span_id: &str) -> Result<bool, StoreError> {
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(trace_id) || !hex(span_id) {
            return Ok(false);
        }
        let there = self.ch.query(&format!(
            "SELECT count() FROM {} WHERE TraceId = '{trace_id}' AND SpanId = '{span_id}' FORMAT TabSeparated",
            self.table
        ))?;
        Ok(String::from_utf8_lossy(&there).trim() != "0")
    }

    /// Inserts `spans`, [`ROWS_PER_INSERT`] rows a statement; the inserts sent.
    fn insert(
        &self,
        spans: &[Span],
        resources: &HashMap<i64, Vec<Attribute>>,
        mut sent: impl FnMut(usize),
    ) -> Result<usize, StoreError> {
        let none: Vec<Attribute> = Vec::new();
        let mut inserts = 0;
        for part in spans.chunks(ROWS_PER_INSERT) {
            let mut w = Writer::default();
            for s in part {
                self.target
                    .row(&mut w, s, resources.get(&s.resource_id).unwrap_or(&none));
            }
            self.ch.insert(&self.insert, &w.buf)?;
            inserts += 1;
            sent(part.len());
        }
        Ok(inserts)
    }
}

impl Store {
    /// Copies every span of the store into the exporter's span table at `url`,
    /// creating the tables with the exporter's DDL when they are missing. Refuses when
    /// the table already holds traces of this store (a second copy would duplicate
    /// them). `progress(spans_done, spans)`.
    pub fn push_clickhouse(
        &self,
        url: &ClickHouseUrl,
        progress: &dyn Fn(u64, u64),
    ) -> Result<Pushed, StoreError> {
        let table = ExporterTable::open(url)?;
        let mut pushed = Pushed {
            created: table.created,
            ..Pushed::default()
        };
        let resources = self.typed_resources()?;
        let ids: Vec<String> = self
            .conn
            .prepare("SELECT DISTINCT trace_id FROM spans ORDER BY trace_id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let total: u64 = self
            .conn
            .query_row("SELECT count(*) FROM spans", [], |r| r.get::<_, i64>(0))?
            as u64;
        if let Some(first) = ids.first() {
            let span: String = self.conn.query_row(
                "SELECT min(span_id) FROM spans WHERE trace_id = ?",
                [first],
                |r| r.get(0),
            )?;
            if table.holds(first, &span)? {
                return Err(StoreError::WriteFailed(format!(
                    "{} already holds trace {first} of this store: copying it again would store its spans twice",
                    url.shown()
                )));
            }
        }
        // a batch of traces read, then sent in full inserts (the last one of the copy
        // may be short)
        let mut pending: Vec<Span> = Vec::new();
        for (n, chunk) in ids.chunks(TRACES_PER_READ).enumerate() {
            let mut spans = self.load_spans(Traces::Ids(chunk))?;
            self.attach_attributes(chunk, &mut spans)?;
            pending.append(&mut spans);
            let last = (n + 1) * TRACES_PER_READ >= ids.len();
            let full = if last {
                pending.len()
            } else {
                pending.len() / ROWS_PER_INSERT * ROWS_PER_INSERT
            };
            let rest = pending.split_off(full);
            pushed.inserts += table.insert(&pending, &resources, |n| {
                pushed.spans += n as u64;
                progress(pushed.spans, total);
            })?;
            pending = rest;
        }
        pushed.bytes = table.bytes_sent();
        Ok(pushed)
    }

    /// The highest row id of `spans` (`None`: no spans).
    pub fn last_span_row(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT max(rowid) FROM spans", [], |r| r.get(0))?)
    }

    /// Sends the spans stored at row ids `(after, upto]` to `table`; the spans sent.
    /// `skip_sent`: first check whether the table already holds the range's first
    /// span (the range went out before a crash let the caller record it) and send
    /// nothing then.
    pub fn push_span_rows(
        &self,
        table: &ExporterTable,
        after: i64,
        upto: i64,
        skip_sent: bool,
    ) -> Result<u64, StoreError> {
        let keys: Vec<(String, String)> = self
            .conn
            .prepare(
                "SELECT trace_id, span_id FROM spans WHERE rowid > ? AND rowid <= ? ORDER BY rowid",
            )?
            .query_map([after, upto], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let Some((t, s)) = keys.first() else {
            return Ok(0);
        };
        if skip_sent && table.holds(t, s)? {
            return Ok(0);
        }
        let mut traces: Vec<String> = keys.iter().map(|(t, _)| t.clone()).collect();
        traces.sort_unstable();
        traces.dedup();
        let wanted: std::collections::HashSet<(String, String)> = keys.into_iter().collect();
        let mut spans = self.load_spans(Traces::Ids(&traces))?;
        self.attach_attributes(&traces, &mut spans)?;
        // spans of these traces stored at other rows went (or go) out with those rows
        spans.retain(|s| wanted.contains(&(s.trace_id.to_hex(), s.span_id.to_hex())));
        let resources = self.typed_resources()?;
        table.insert(&spans, &resources, |_| {})?;
        Ok(spans.len() as u64)
    }

    /// Every resource's attributes with their types.
    fn typed_resources(&self) -> Result<HashMap<i64, Vec<Attribute>>, StoreError> {
        let mut out: HashMap<i64, Vec<Attribute>> = HashMap::new();
        for b in self.query_arrow(
            "SELECT resource_id::BIGINT AS resource_id, key, value_type, value, int_value::BIGINT AS int_value,
                    double_value::DOUBLE AS double_value, bool_value
             FROM resource_attributes",
        )? {
            let c = Columns::new(&b);
            let (id, key, ty, text) = (
                c.i64("resource_id")?,
                c.str("key")?,
                c.str("value_type")?,
                c.str("value")?,
            );
            let (int, dbl, bool) = (c.i64("int_value")?, c.f64("double_value")?, c.bool("bool_value")?);
            for i in 0..b.num_rows() {
                let text = opt(text, i, |i| text.value(i).to_owned()).unwrap_or_default();
                let value = match ty.value(i) {
                    "int" => opt(int, i, |i| AttrValue::Int(int.value(i))),
                    "double" => opt(dbl, i, |i| AttrValue::Double(dbl.value(i))),
                    "bool" => opt(bool, i, |i| AttrValue::Bool(bool.value(i))),
                    "json" => Some(AttrValue::Json(text.clone())),
                    _ => None,
                }
                .unwrap_or(AttrValue::Str(text));
                out.entry(id.value(i))
                    .or_default()
                    .push(Attribute::new(key.value(i), value));
            }
        }
        Ok(out)
    }

    /// Each span's attributes, from the `attributes` JSON of the traces `ids`.
    fn attach_attributes(&self, ids: &[String], spans: &mut [Span]) -> Result<(), StoreError> {
        let filter = self.trace_filter(ids)?;
        let mut by_span: HashMap<(String, String), Vec<Attribute>> = HashMap::new();
        for b in self.query_arrow(&format!(
            "SELECT trace_id, span_id, attributes FROM spans WHERE {filter} AND attributes IS NOT NULL"
        ))? {
            let c = Columns::new(&b);
            let (trace, span, json) =
                (c.str("trace_id")?, c.str("span_id")?, c.str("attributes")?);
            for i in 0..b.num_rows() {
                let Ok(serde_json::Value::Object(map)) = serde_json::from_str(json.value(i))
                else {
                    continue;
                };
                let attrs = map
                    .into_iter()
                    .map(|(k, v)| Attribute::new(k, from_json(v)))
                    .collect();
                by_span.insert((trace.value(i).to_owned(), span.value(i).to_owned()), attrs);
            }
        }
        for s in spans {
            if let Some(a) = by_span.remove(&(s.trace_id.to_hex(), s.span_id.to_hex())) {
                s.attributes = a;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_as_go_writes_them() {
        for (f, want) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (-0.0, "-0"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (0.000_001, "0.000001"),
            (123_456.789, "123456.789"),
            (-2.5e-9, "-2.5e-9"),
            (1.234e25, "1.234e+25"),
            (99.0, "99"),
            // an exact tie at 17 digits: Go rounds to even, Rust's shortest form up
            (0.002_102_851_867_675_781_2, "0.0021028518676757812"),
            (f64::NAN, "json: unsupported value: NaN"),
        ] {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    #[test]
    fn doubles_read_back_as_themselves() {
        // a fixed pseudo-random walk over bit patterns (every exponent range)
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if !f.is_finite() {
                continue;
            }
            let text = go_float(f);
            let back: f64 = text.parse().unwrap();
            assert_eq!(back.to_bits(), f.to_bits(), "{f:e} -> {text}");
        }
    }

    #[test]
    fn values_as_pdata_as_string() {
        assert_eq!(as_string(&AttrValue::Int(-42)), "-42");
        assert_eq!(as_string(&AttrValue::Bool(true)), "true");
        assert_eq!(as_string(&AttrValue::Bytes(b"hi!?".to_vec())), "aGkhPw==");
        assert_eq!(
            as_string(&AttrValue::Json(r#"{"b":[1,2.0,"<x>"],"a":null}"#.into())),
            r#"{"a":null,"b":[1,2,"\u003cx\u003e"]}"#
        );
    }
}
