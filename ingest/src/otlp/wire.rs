//! Protobuf `ExportTraceServiceRequest` bytes straight to model spans.
//!
//! prost would first build the whole message tree (a `String` per attribute key and
//! value, a `Vec` per list) for [`super::traces_into_model`] to take apart again. This
//! decoder reads the wire format once, borrowing from the request bytes until a model
//! value needs its own copy, and hands every span to the same checks
//! ([`super::finish_span`]) as the prost path. It accepts exactly what prost accepts
//! and gives the same batch; anything it is not sure about it declines ([`Declined`]):
//! malformed input (so that prost words the error), groups, and nesting deep enough
//! to meet prost's recursion limit. The caller then goes through prost.
//!
//! Field numbers and types are those of opentelemetry-proto's generated messages
//! (`opentelemetry.proto.{collector.trace,trace,resource,common}.v1`). Like prost, it
//! checks the wire type of every known field and the UTF-8 of every string (those it
//! drops too), merges a singular message field that comes twice, lets the last of a
//! scalar or string win, and skips unknown fields.

use super::{
    any_to_json, finish_span, push_span, resource, scope_attr, LinkParts, Scope, SpanParts,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, KeyValueList,
};
use prost::Message;
use tailscope_model::{AttrValue, Attribute, Batch, Event, Rejections};

/// The input is malformed, or has a shape this decoder leaves to prost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Declined;

type Res<T> = Result<T, Declined>;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Messages nested inside an attribute's `AnyValue` (an array is two deep per level:
/// `ArrayValue`, `AnyValue`; a list three: `KeyValueList`, `KeyValue`, `AnyValue`)
/// beyond which prost decides. Its recursion limit is 100 messages counted from the
/// request, and an attribute value sits at most 6 deep (request, resource spans,
/// scope spans, span, event, key/value), so up to this depth both agree.
const MAX_VALUE_DEPTH: usize = 60;

/// The unread rest of one message.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn more(&self) -> bool {
        !self.0.is_empty()
    }

    /// A LEB128 varint as prost reads it: at most 10 bytes, the 10th at most 1.
    #[inline]
    fn varint(&mut self) -> Res<u64> {
        match *self.0 {
            [a, ref rest @ ..] if a < 0x80 => {
                self.0 = rest;
                Ok(u64::from(a))
            }
            [a, b, ref rest @ ..] if b < 0x80 => {
                self.0 = rest;
                Ok(u64::from(a & 0x7f) | (u64::from(b) << 7))
            }
            _ => self.varint_long(),
        }
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Res<u64> {
        let b = self.0;
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate().take(10) {
            if i == 9 && x > 1 {
                return Err(Declined);
            }
            v |= u64::from(x & 0x7f) << (7 * i);
            if x < 0x80 {
                self.0 = &b[i + 1..];
                return Ok(v);
            }
        }
        Err(Declined)
    }

    /// A field key: (field number, wire type). Groups (wire types 3 and 4) and
    /// invalid keys are declined.
    #[inline]
    fn key(&mut self) -> Res<(u32, u8)> {
        let k = u32::try_from(self.varint()?).map_err(|_| Declined)?;
        let wire_type = (k & 7) as u8;
        let field = k >> 3;
        if field == 0 || !matches!(wire_type, VARINT | FIXED64 | LEN | FIXED32) {
            return Err(Declined);
        }
        Ok((field, wire_type))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if n > self.0.len() {
            return Err(Declined);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A length-delimited field's bytes (bytes, string or message).
    #[inline]
    fn bytes(&mut self, wire_type: u8) -> Res<&'a [u8]> {
        if wire_type != LEN {
            return Err(Declined);
        }
        let n = usize::try_from(self.varint()?).map_err(|_| Declined)?;
        self.take(n)
    }

    #[inline]
    fn string(&mut self, wire_type: u8) -> Res<&'a str> {
        std::str::from_utf8(self.bytes(wire_type)?).map_err(|_| Declined)
    }

    #[inline]
    fn uint(&mut self, wire_type: u8) -> Res<u64> {
        if wire_type != VARINT {
            return Err(Declined);
        }
        self.varint()
    }

    #[inline]
    fn fixed64(&mut self, wire_type: u8) -> Res<u64> {
        if wire_type != FIXED64 {
            return Err(Declined);
        }
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| Declined)?))
    }

    #[inline]
    fn fixed32(&mut self, wire_type: u8) -> Res<u32> {
        if wire_type != FIXED32 {
            return Err(Declined);
        }
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| Declined)?))
    }

    /// Skips an unknown field.
    fn skip(&mut self, wire_type: u8) -> Res<()> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes(LEN).map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => Err(Declined),
        }
    }
}

/// The `AnyValue` oneof as read so far (later fields replace earlier ones).
enum Val<'a> {
    None,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Strindex(i32),
    /// An array or key/value list, decoded by prost as soon as it is read (as prost
    /// does, even when a later field replaces it).
    Nested(any_value::Value),
}

/// Reads one `AnyValue` message into `cur` (a second `value` of the same key/value
/// pair merges into the first, as prost merges it).
fn any_value<'a>(msg: &'a [u8], cur: &mut Val<'a>) -> Res<()> {
    let mut r = Rd(msg);
    while r.more() {
        let (field, wt) = r.key()?;
        *cur = match field {
            1 => Val::Str(r.string(wt)?),
            2 => Val::Bool(r.uint(wt)? != 0),
            3 => Val::Int(r.uint(wt)? as i64),
            4 => Val::Double(f64::from_bits(r.fixed64(wt)?)),
            5 => {
                let m = r.bytes(wt)?;
                // prost would merge two arrays in a row into one
                if matches!(cur, Val::Nested(any_value::Value::ArrayValue(_))) {
                    return Err(Declined);
                }
                nested(any_value::Value::ArrayValue(
                    ArrayValue::decode(m).map_err(|_| Declined)?,
                ))?
            }
            6 => {
                let m = r.bytes(wt)?;
                if matches!(cur, Val::Nested(any_value::Value::KvlistValue(_))) {
                    return Err(Declined);
                }
                nested(any_value::Value::KvlistValue(
                    KeyValueList::decode(m).map_err(|_| Declined)?,
                ))?
            }
            7 => Val::Bytes(r.bytes(wt)?),
            8 => Val::Strindex(r.uint(wt)? as i32),
            _ => {
                r.skip(wt)?;
                continue;
            }
        };
    }
    Ok(())
}

/// A nested value prost decoded on its own, declined when so deep that prost, decoding
/// the whole request, might have met its recursion limit.
fn nested<'a>(v: any_value::Value) -> Res<Val<'a>> {
    let v = AnyValue { value: Some(v) };
    if depth(&v) > MAX_VALUE_DEPTH {
        return Err(Declined);
    }
    v.value.map(Val::Nested).ok_or(Declined)
}

/// Messages nested inside a value, as prost counts them for its recursion limit.
fn depth(v: &AnyValue) -> usize {
    match &v.value {
        Some(any_value::Value::ArrayValue(a)) => {
            1 + a.values.iter().map(|v| 1 + depth(v)).max().unwrap_or(0)
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            1 + kv
                .values
                .iter()
                .map(|kv| 1 + kv.value.as_ref().map_or(0, |v| 1 + depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

fn attr_value(v: Val<'_>) -> AttrValue {
    match v {
        Val::None => AttrValue::Str(String::new()),
        Val::Str(s) => AttrValue::Str(s.to_owned()),
        Val::Bool(b) => AttrValue::Bool(b),
        Val::Int(i) => AttrValue::Int(i),
        Val::Double(d) => AttrValue::Double(d),
        Val::Bytes(b) => AttrValue::Bytes(b.to_vec()),
        Val::Strindex(i) => AttrValue::Int(i64::from(i)),
        // rendered as JSON, as the prost path renders it
        Val::Nested(v) => AttrValue::Json(any_to_json(&AnyValue { value: Some(v) }).to_string()),
    }
}

/// One `KeyValue`: its key and value as read.
fn key_value(msg: &[u8]) -> Res<(&str, AttrValue)> {
    let mut r = Rd(msg);
    let mut key = "";
    let mut val = Val::None;
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            1 => key = r.string(wt)?,
            2 => any_value(r.bytes(wt)?, &mut val)?,
            3 => drop(r.uint(wt)?), // key_strindex (profiles only)
            _ => r.skip(wt)?,
        }
    }
    Ok((key, attr_value(val)))
}

fn attribute(msg: &[u8]) -> Res<Attribute> {
    let (key, value) = key_value(msg)?;
    Ok(Attribute {
        key: key.to_owned(),
        value,
    })
}

/// `Resource` into its attributes (a second `resource` field merges into the first).
fn resource_attrs(msg: &[u8], out: &mut Vec<Attribute>) -> Res<()> {
    let mut r = Rd(msg);
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            1 => out.push(attribute(r.bytes(wt)?)?),
            2 => drop(r.uint(wt)?),
            // entity_refs: dropped, but prost checks them
            3 => drop(EntityRef::decode(r.bytes(wt)?).map_err(|_| Declined)?),
            _ => r.skip(wt)?,
        }
    }
    Ok(())
}

/// `InstrumentationScope` into `scope` (merged as prost merges a repeated field).
fn scope(msg: &[u8], scope: &mut Scope) -> Res<()> {
    let mut r = Rd(msg);
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            1 => r.string(wt)?.clone_into(&mut scope.name),
            2 => r.string(wt)?.clone_into(&mut scope.version),
            3 => {
                let (key, value) = key_value(r.bytes(wt)?)?;
                scope.attributes.push(scope_attr(key, value));
            }
            4 => drop(r.uint(wt)?),
            _ => r.skip(wt)?,
        }
    }
    Ok(())
}

/// `Span.Event` into `events`; notes the first time past `i64::MAX`.
fn event(msg: &[u8], events: &mut Vec<Event>, bad_time: &mut Option<u64>) -> Res<()> {
    let mut r = Rd(msg);
    let mut time = 0u64;
    let mut name = "";
    let mut attributes = Vec::new();
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            1 => time = r.fixed64(wt)?,
            2 => name = r.string(wt)?,
            3 => attributes.push(attribute(r.bytes(wt)?)?),
            4 => drop(r.uint(wt)?),
            _ => r.skip(wt)?,
        }
    }
    events.push(super::event(time, name.to_owned(), attributes, bad_time));
    Ok(())
}

fn link(msg: &[u8]) -> Res<LinkParts<'_>> {
    let mut r = Rd(msg);
    let mut l = LinkParts {
        trace_id: &[],
        span_id: &[],
        trace_state: String::new(),
        attributes: Vec::new(),
    };
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            1 => l.trace_id = r.bytes(wt)?,
            2 => l.span_id = r.bytes(wt)?,
            3 => r.string(wt)?.clone_into(&mut l.trace_state),
            4 => l.attributes.push(attribute(r.bytes(wt)?)?),
            5 => drop(r.uint(wt)?),
            6 => drop(r.fixed32(wt)?),
            _ => r.skip(wt)?,
        }
    }
    Ok(l)
}

/// `Status` merged into `(code, message)`.
fn status<'a>(msg: &'a [u8], st: &mut (i32, &'a str)) -> Res<()> {
    let mut r = Rd(msg);
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            2 => st.1 = r.string(wt)?,
            3 => st.0 = r.uint(wt)? as i32,
            _ => r.skip(wt)?,
        }
    }
    Ok(())
}

/// One `Span`, decoded; `attrs` is scratch space (kept between spans).
fn span<'a>(msg: &'a [u8], attrs: &mut Vec<Attribute>, scope: &Scope) -> Res<SpanParts<'a>> {
    let mut r = Rd(msg);
    let mut trace_id: &[u8] = &[];
    let mut span_id: &[u8] = &[];
    let mut parent_span_id: &[u8] = &[];
    let mut trace_state = "";
    let mut flags = 0;
    let mut name = "";
    let mut kind = 0;
    let mut start = 0;
    let mut end = 0;
    let mut st: Option<(i32, &str)> = None;
    let mut events = Vec::new();
    let mut bad_event_time = None;
    let mut links = Vec::new();
    attrs.clear();
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            1 => trace_id = r.bytes(wt)?,
            2 => span_id = r.bytes(wt)?,
            3 => trace_state = r.string(wt)?,
            4 => parent_span_id = r.bytes(wt)?,
            5 => name = r.string(wt)?,
            6 => kind = r.uint(wt)? as i32,
            7 => start = r.fixed64(wt)?,
            8 => end = r.fixed64(wt)?,
            9 => attrs.push(attribute(r.bytes(wt)?)?),
            11 => event(r.bytes(wt)?, &mut events, &mut bad_event_time)?,
            13 => links.push(link(r.bytes(wt)?)?),
            10 | 12 | 14 => drop(r.uint(wt)?),
            15 => status(r.bytes(wt)?, st.get_or_insert((0, "")))?,
            16 => flags = r.fixed32(wt)?,
            _ => r.skip(wt)?,
        }
    }
    // exactly the span's and its scope's attributes, with no spare capacity
    let mut attributes = Vec::with_capacity(attrs.len() + scope.attributes.len());
    attributes.append(attrs);
    Ok(SpanParts {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: trace_state.to_owned(),
        flags,
        name: name.to_owned(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        status: st.map(|(code, message)| (code, message.to_owned())),
        attributes,
        events,
        bad_event_time,
        links,
    })
}

/// Adds a `ScopeSpans` message's spans.
fn scope_spans(
    msg: &[u8],
    rid: i64,
    service: &str,
    out: &mut (Batch, Rejections),
    attrs: &mut Vec<Attribute>,
) -> Res<()> {
    // First the scope, wherever it is.
    let mut sc = Scope::default();
    let mut r = Rd(msg);
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            1 => scope(r.bytes(wt)?, &mut sc)?,
            2 => drop(r.bytes(wt)?),
            3 => drop(r.string(wt)?),
            _ => r.skip(wt)?,
        }
    }
    let mut r = Rd(msg);
    let mut i = 0;
    while r.more() {
        let (field, wt) = r.key()?;
        if field == 2 {
            let parts = span(r.bytes(wt)?, attrs, &sc)?;
            let finished = finish_span(parts, rid, service, &sc);
            push_span(&mut out.0, &mut out.1, i, service, finished);
            i += 1;
        } else {
            r.skip(wt)?;
        }
    }
    Ok(())
}

/// Adds a `ResourceSpans` message: its resource, then its scopes' spans.
fn resource_spans(
    msg: &[u8],
    out: &mut (Batch, Rejections),
    attrs: &mut Vec<Attribute>,
) -> Res<()> {
    let mut res_attrs = Vec::new();
    let mut r = Rd(msg);
    while r.more() {
        let (field, wt) = r.key()?;
        match field {
            1 => resource_attrs(r.bytes(wt)?, &mut res_attrs)?,
            2 => drop(r.bytes(wt)?),
            3 => drop(r.string(wt)?),
            _ => r.skip(wt)?,
        }
    }
    let (rid, service) = resource(&mut out.0, res_attrs);
    let mut r = Rd(msg);
    while r.more() {
        let (field, wt) = r.key()?;
        if field == 2 {
            scope_spans(r.bytes(wt)?, rid, &service, out, attrs)?;
        } else {
            r.skip(wt)?;
        }
    }
    Ok(())
}

/// Fields `field` of a message, as raw bytes (for counting; the wire type is checked
/// again when they are read).
fn count(msg: &[u8], field: u32, mut each: impl FnMut(&[u8]) -> Res<()>) -> Res<()> {
    let mut r = Rd(msg);
    while r.more() {
        let (f, wt) = r.key()?;
        if f == field && wt == LEN {
            each(r.bytes(wt)?)?;
        } else {
            r.skip(wt)?;
        }
    }
    Ok(())
}

/// An `ExportTraceServiceRequest` in protobuf to a batch and its rejections.
pub(super) fn traces(bytes: &[u8]) -> Res<(Batch, Rejections)> {
    let mut out = (Batch::default(), Rejections::default());
    // The spans of all scopes of all resources, so that the batch is sized once.
    let mut n = 0;
    count(bytes, 1, |rs| {
        count(rs, 2, |ss| {
            count(ss, 2, |_| {
                n += 1;
                Ok(())
            })
        })
    })?;
    out.0.spans.reserve_exact(n);
    let mut attrs = Vec::new();
    let mut r = Rd(bytes);
    while r.more() {
        let (field, wt) = r.key()?;
        if field == 1 {
            resource_spans(r.bytes(wt)?, &mut out, &mut attrs)?;
        } else {
            r.skip(wt)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::otlp::traces_into_model;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1 as pt;
    use rand::{Rng, SeedableRng};

    /// What prost and the conversion of its message give (Debug, so NaN equals NaN).
    fn by_prost(bytes: &[u8]) -> Option<String> {
        let req = ExportTraceServiceRequest::decode(bytes).ok()?;
        Some(format!("{:?}", traces_into_model(req)))
    }

    fn direct(bytes: &[u8]) -> Result<String, Declined> {
        traces(bytes).map(|out| format!("{out:?}"))
    }

    #[allow(clippy::unnecessary_wraps)] // the type of KeyValue::value
    fn any(v: any_value::Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(v) })
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value,
            ..KeyValue::default()
        }
    }

    fn s(key: &str, v: &str) -> KeyValue {
        kv(key, any(any_value::Value::StringValue(v.into())))
    }

    /// Values of every kind, nested ones included.
    fn all_kinds() -> Vec<KeyValue> {
        use any_value::Value as V;
        let arr = ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(V::IntValue(1)),
                },
                AnyValue {
                    value: Some(V::StringValue("two".into())),
                },
                AnyValue { value: None },
            ],
        };
        let list = KeyValueList {
            values: vec![
                s("a", "b"),
                kv("nested", any(V::ArrayValue(arr.clone()))),
                kv("none", None),
            ],
        };
        vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.request.model", "llama"),
            s("gen_ai.conversation.id", ""),
            kv("gen_ai.usage.input_tokens", any(V::IntValue(-5))),
            kv("gen_ai.usage.output_tokens", any(V::DoubleValue(3.0))),
            kv("gen_ai.request.stream", any(V::BoolValue(true))),
            kv("d.nan", any(V::DoubleValue(f64::NAN))),
            kv("bytes", any(V::BytesValue(vec![0, 0xff, 7]))),
            kv("strindex", any(V::StringValueStrindex(-3))),
            kv("arr", any(V::ArrayValue(arr))),
            kv("list", any(V::KvlistValue(list))),
            kv("empty", Some(AnyValue { value: None })),
            kv("missing", None),
            s("ünïcode ✓", "值"),
            s("gen_ai.request.model", "second, ignored by promote"),
        ]
    }

    pub(in crate::otlp) fn span(n: u8) -> pt::Span {
        pt::Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            parent_span_id: if n % 2 == 0 { vec![9; 8] } else { vec![] },
            trace_state: if n % 3 == 0 {
                "k=v".into()
            } else {
                String::new()
            },
            flags: u32::from(n),
            name: format!("chat {n}"),
            kind: i32::from(n % 6),
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n),
            end_time_unix_nano: 1_700_000_001_000_000_000,
            attributes: all_kinds(),
            dropped_attributes_count: 2,
            events: vec![
                pt::span::Event {
                    time_unix_nano: 1_700_000_000_300_000_000,
                    name: "gen_ai.first_token".into(),
                    attributes: vec![s("x", "y")],
                    dropped_attributes_count: 1,
                },
                pt::span::Event {
                    time_unix_nano: 1_700_000_000_200_000_000,
                    name: "exception".into(),
                    attributes: vec![s("exception.type", "Timeout")],
                    dropped_attributes_count: 0,
                },
            ],
            links: vec![pt::span::Link {
                trace_id: vec![3; 16],
                span_id: vec![4; 8],
                trace_state: "t".into(),
                attributes: vec![s("link", "attr")],
                dropped_attributes_count: 0,
                flags: 1,
            }],
            status: (n % 4 != 0).then(|| pt::Status {
                message: format!("status {n}"),
                code: i32::from(n % 3),
            }),
            ..pt::Span::default()
        }
    }

    /// Spans rejected for each reason the checks give.
    pub(in crate::otlp) fn bad_spans() -> Vec<pt::Span> {
        let mut out = Vec::new();
        let mut f = |edit: &dyn Fn(&mut pt::Span)| {
            let mut sp = span(1);
            edit(&mut sp);
            out.push(sp);
        };
        f(&|s| s.trace_id.clear());
        f(&|s| s.trace_id = vec![1, 2, 3]);
        f(&|s| s.trace_id = vec![0; 16]);
        f(&|s| s.span_id = vec![1; 7]);
        f(&|s| s.parent_span_id = vec![1; 5]);
        f(&|s| s.kind = 42);
        f(&|s| {
            s.status = Some(pt::Status {
                message: String::new(),
                code: 7,
            });
        });
        f(&|s| s.start_time_unix_nano = 0);
        f(&|s| s.start_time_unix_nano = u64::MAX);
        f(&|s| s.end_time_unix_nano = u64::MAX);
        f(&|s| s.end_time_unix_nano = 5);
        f(&|s| s.events[1].time_unix_nano = u64::MAX);
        f(&|s| s.links[0].span_id = vec![]);
        f(&|s| s.links[0].trace_id = vec![0; 16]);
        f(&|s| {
            s.name = "ü".repeat(100);
            s.kind = -1;
        });
        out
    }

    pub(in crate::otlp) fn request() -> ExportTraceServiceRequest {
        let scope = |name: &str| InstrumentationScope {
            name: name.into(),
            version: "1.0".into(),
            attributes: vec![s("scope.attr", "v"), kv("n", None)],
            dropped_attributes_count: 0,
        };
        let mut spans: Vec<pt::Span> = (1..12).map(span).collect();
        spans.extend(bad_spans());
        ExportTraceServiceRequest {
            resource_spans: vec![
                pt::ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![s("service.name", "api"), s("host.name", "h")],
                        ..Resource::default()
                    }),
                    scope_spans: vec![
                        pt::ScopeSpans {
                            scope: Some(scope("one")),
                            spans,
                            schema_url: "https://x".into(),
                        },
                        pt::ScopeSpans {
                            scope: None,
                            spans: vec![span(20)],
                            schema_url: String::new(),
                        },
                    ],
                    schema_url: "u".into(),
                },
                // no resource, same resource again, an empty scope
                pt::ResourceSpans {
                    resource: None,
                    scope_spans: vec![pt::ScopeSpans {
                        scope: Some(scope("two")),
                        spans: vec![span(30), span(31)],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                },
                pt::ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![s("host.name", "h"), s("service.name", "api")],
                        ..Resource::default()
                    }),
                    scope_spans: vec![pt::ScopeSpans::default()],
                    schema_url: String::new(),
                },
            ],
        }
    }

    #[test]
    fn same_batch_as_prost_for_every_field_kind_and_rejection() {
        let bytes = request().encode_to_vec();
        let want = by_prost(&bytes).unwrap();
        assert_eq!(direct(&bytes).unwrap(), want);
        let (batch, rej) = traces(&bytes).unwrap();
        assert_eq!(rej.count, bad_spans().len() as u64, "{rej:?}");
        assert_eq!(batch.resources.len(), 2);
        assert!(batch.spans.iter().any(|s| !s.events.is_empty()));
        // and through the public entry point
        let (b2, r2) = crate::otlp::traces_from_protobuf(&bytes).unwrap();
        assert_eq!(format!("{:?}", (b2, r2)), want);
        // empty request
        assert_eq!(direct(&[]).unwrap(), by_prost(&[]).unwrap());
    }

    fn key(field: u32, wire_type: u8) -> Vec<u8> {
        let mut b = Vec::new();
        prost::encoding::encode_key(field, wire_type_of(wire_type), &mut b);
        b
    }

    fn wire_type_of(w: u8) -> prost::encoding::WireType {
        use prost::encoding::WireType as W;
        match w {
            0 => W::Varint,
            1 => W::SixtyFourBit,
            2 => W::LengthDelimited,
            3 => W::StartGroup,
            4 => W::EndGroup,
            _ => W::ThirtyTwoBit,
        }
    }

    fn len_field(field: u32, body: &[u8]) -> Vec<u8> {
        let mut b = key(field, LEN);
        prost::encoding::encode_varint(body.len() as u64, &mut b);
        b.extend_from_slice(body);
        b
    }

    /// A request of one resource, one scope and the given raw span bytes.
    fn wrap_span(span: &[u8]) -> Vec<u8> {
        let ss = len_field(2, span);
        let rs = len_field(2, &ss);
        len_field(1, &rs)
    }

    /// Hand-made encodings prost accepts and protobuf allows but an encoder rarely
    /// writes: unknown fields, fields twice, out of order, padded varints.
    #[test]
    fn unusual_encodings_agree_with_prost() {
        let base = span(1).encode_to_vec();
        let status_a = pt::Status {
            message: "a".into(),
            code: 2,
        }
        .encode_to_vec();
        let status_b = pt::Status {
            message: String::new(),
            code: 1,
        }
        .encode_to_vec();
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut with = |name: &'static str, extra: Vec<u8>| {
            let mut b = base.clone();
            b.extend(extra);
            cases.push((name, wrap_span(&b)));
        };
        // unknown fields of every wire type
        with(
            "unknown varint",
            [key(99, VARINT), vec![0x96, 0x01]].concat(),
        );
        with("unknown fixed64", [key(98, FIXED64), vec![1; 8]].concat());
        with("unknown fixed32", [key(97, FIXED32), vec![1; 4]].concat());
        with("unknown bytes", len_field(96, b"\xff\xfe"));
        // last scalar / string wins
        with("name twice", len_field(5, b"second name"));
        with("kind twice", [key(6, VARINT), vec![2]].concat());
        with(
            "start twice",
            [key(7, FIXED64), 5u64.to_le_bytes().to_vec()].concat(),
        );
        with("trace id twice", len_field(1, &[5; 16]));
        // repeated and merged messages
        with(
            "status twice",
            [len_field(15, &status_a), len_field(15, &status_b)].concat(),
        );
        with(
            "more attributes",
            len_field(9, &s("late", "x").encode_to_vec()),
        );
        // an enum far out of range, a negative kind (10-byte varint)
        with("kind -1", [key(6, VARINT), vec![0xff; 9], vec![1]].concat());
        with(
            "kind 2^32+3",
            [key(6, VARINT), vec![0x83, 0x80, 0x80, 0x80, 0x10]].concat(),
        );
        // a padded (non-canonical) varint
        with(
            "padded kind",
            [key(6, VARINT), vec![0x83, 0x80, 0x00]].concat(),
        );
        // a value merged from two AnyValue messages: string then int
        let two_values = [
            len_field(1, b"k"),
            len_field(
                2,
                &AnyValue {
                    value: Some(any_value::Value::StringValue("s".into())),
                }
                .encode_to_vec(),
            ),
            len_field(
                2,
                &AnyValue {
                    value: Some(any_value::Value::IntValue(4)),
                }
                .encode_to_vec(),
            ),
        ]
        .concat();
        with("value twice", len_field(9, &two_values));
        for (name, bytes) in &cases {
            let want = by_prost(bytes).unwrap_or_else(|| panic!("prost rejects {name}"));
            assert_eq!(direct(bytes).as_ref(), Ok(&want), "{name}");
        }
        // the scope and resource given twice, and after the spans
        let sc = |n: &str| {
            InstrumentationScope {
                name: n.into(),
                attributes: vec![s(n, n)],
                ..InstrumentationScope::default()
            }
            .encode_to_vec()
        };
        let ss = [
            len_field(2, &base),
            len_field(1, &sc("a")),
            len_field(1, &sc("b")),
        ]
        .concat();
        let res = |k: &str| {
            Resource {
                attributes: vec![s(k, "v")],
                ..Resource::default()
            }
            .encode_to_vec()
        };
        let rs = [
            len_field(2, &ss),
            len_field(1, &res("service.name")),
            len_field(1, &res("x")),
        ]
        .concat();
        let bytes = len_field(1, &rs);
        assert_eq!(
            direct(&bytes),
            Ok(by_prost(&bytes).unwrap()),
            "merged scope/resource"
        );
    }

    /// What the direct decoder leaves to prost: it declines, and the public entry
    /// point answers as prost does.
    #[test]
    fn declined_shapes_fall_back_to_prost() {
        let base = span(1).encode_to_vec();
        let arr = |v: i64| {
            AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::IntValue(v)),
                    }],
                })),
            }
            .encode_to_vec()
        };
        let two_arrays = [len_field(1, b"k"), len_field(2, &[arr(1), arr(2)].concat())].concat();
        let group = [key(90, 3), key(1, VARINT), vec![1], key(90, 4)].concat();
        let mut deep = AnyValue {
            value: Some(any_value::Value::IntValue(1)),
        };
        for _ in 0..45 {
            deep = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![deep],
                })),
            };
        }
        let deep = [len_field(1, b"deep"), len_field(2, &deep.encode_to_vec())].concat();
        let cases = [
            ("two arrays merge", len_field(9, &two_arrays)),
            ("group", group),
            ("deep, prost refuses", len_field(9, &deep)),
            ("bad utf-8 in a dropped string", len_field(3, b"\xff")),
            (
                "wrong wire type of a dropped field",
                [key(10, LEN), vec![0]].concat(),
            ),
            ("truncated", vec![0x0a, 0x05, 0x12]),
        ];
        for (name, extra) in cases {
            let mut b = base.clone();
            b.extend(extra);
            let bytes = wrap_span(&b);
            assert_eq!(direct(&bytes), Err(Declined), "{name}");
            let public = crate::otlp::traces_from_protobuf(&bytes)
                .map(|out| format!("{out:?}"))
                .map_err(|e| e.to_string());
            let prost = ExportTraceServiceRequest::decode(&bytes[..])
                .map(|r| format!("{:?}", traces_into_model(r)))
                .map_err(|e| e.to_string());
            assert_eq!(public, prost, "{name}");
        }
    }

    /// Random mutations of valid requests: whatever the direct decoder accepts, prost
    /// accepts too and converts to the same batch.
    #[test]
    fn mutations_never_disagree_with_prost() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let valid = request().encode_to_vec();
        let small = wrap_span(&span(2).encode_to_vec());
        let (mut accepted, mut declined) = (0, 0);
        for i in 0..20_000 {
            let mut b = if i % 2 == 0 {
                valid.clone()
            } else {
                small.clone()
            };
            for _ in 0..rng.random_range(1..4) {
                if b.is_empty() {
                    break;
                }
                let at = rng.random_range(0..b.len());
                match rng.random_range(0..4) {
                    0 => b[at] = rng.random(),
                    1 => b.truncate(at),
                    2 => b.insert(at, rng.random()),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            match direct(&b) {
                Ok(got) => {
                    accepted += 1;
                    let want = by_prost(&b);
                    assert_eq!(
                        Some(&got),
                        want.as_ref(),
                        "mutation {i} accepted by the direct decoder only: {:?} {:?}",
                        ExportTraceServiceRequest::decode(&b[..]).err(),
                        b
                    );
                }
                Err(Declined) => declined += 1,
            }
        }
        assert!(
            accepted > 300 && declined > 300,
            "{accepted} accepted, {declined} declined"
        );
    }
}
