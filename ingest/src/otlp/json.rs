//! OTLP/JSON `ExportTraceServiceRequest` bytes straight to model spans.
//!
//! opentelemetry-proto's serde path (the reference, [`super::traces_into_model`] over
//! `serde_json::from_slice::<ExportTraceServiceRequest>`) allocates a `String` per
//! object key inside every attribute value, buffers each `AnyValue` object
//! (`#[serde(flatten)]`) and each `intValue` (an untagged enum) before reading it,
//! and builds the whole message tree for the conversion to take apart again. This
//! decoder reads the same JSON into borrowed views of the request (strings without
//! escapes are not copied; object keys never are) and hands every span to the same
//! checks ([`super::finish_span`]).
//!
//! It accepts exactly what the reference accepts and gives the same batch; anything
//! it is not sure about it declines ([`Declined`]) and the caller goes through the
//! reference, which also words the error. What it declines: malformed JSON, a type
//! the reference would refuse, a repeated field, and an `AnyValue` key written with
//! escapes. Field by field it applies the reference's
//! own rules: the same field names (lowerCamelCase), defaults for missing fields,
//! unknown fields ignored (in an `AnyValue` too), ids through `const_hex::decode`, `bytesValue` through
//! base64's standard alphabet, times as a number or a decimal string, `intValue` as
//! an i64 or a string holding one, `null` values skipped, and nested arrays and
//! key/value lists through opentelemetry-proto's own types.

use super::{
    any_to_json, event, finish_span, push_span, resource, scope_attr, LinkParts, Scope, SpanParts,
};
use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, KeyValueList,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use tailscope_model::{AttrValue, Attribute, Batch, Rejections};

/// The input is malformed, or has a shape this decoder leaves to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Declined;

/// A JSON string: borrowed from the request when it has no escapes.
#[derive(Default, Debug)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A JSON integer, or a string holding one, as `T`: for times (`u64`) the
/// reference's `deserialize_string_to_u64`, for `intValue` (`i64`) its untagged
/// `StringOrInt` (an integer that fits, or `str::parse`).
#[derive(Default, Debug, Clone, Copy)]
struct Num<T>(T);

/// Start, end and event times.
type Nanos = Num<u64>;

impl<'de, T> Deserialize<'de> for Num<T>
where
    T: TryFrom<u64> + TryFrom<i64> + std::str::FromStr,
    <T as std::str::FromStr>::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T> Visitor<'_> for V<T>
        where
            T: TryFrom<u64> + TryFrom<i64> + std::str::FromStr,
            <T as std::str::FromStr>::Err: fmt::Display,
        {
            type Value = Num<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string holding one")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num<T>, E> {
                T::try_from(v)
                    .map(Num)
                    .map_err(|_| E::custom("out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num<T>, E> {
                T::try_from(v)
                    .map(Num)
                    .map_err(|_| E::custom("out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num<T>, E> {
                v.parse::<T>().map(Num).map_err(E::custom)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// An `AnyValue` as read (the last of its non-null fields wins).
enum Val<'a> {
    None,
    Str(Cow<'a, str>),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    /// An array or key/value list, read by opentelemetry-proto's own types.
    Nested(any_value::Value),
}

/// An `AnyValue` object.
struct Any<'a>(Val<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Any<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Any<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object for AnyValue")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Any<'a>, M::Error> {
                let mut val = Val::None;
                while let Some(key) = map.next_key::<&'de str>()? {
                    match key {
                        "stringValue" => {
                            if let Some(s) = map.next_value::<Option<Str<'a>>>()? {
                                val = Val::Str(s.0);
                            }
                        }
                        "boolValue" => {
                            if let Some(b) = map.next_value::<Option<bool>>()? {
                                val = Val::Bool(b);
                            }
                        }
                        "intValue" => {
                            if let Some(i) = map.next_value::<Option<Num<i64>>>()? {
                                val = Val::Int(i.0);
                            }
                        }
                        "doubleValue" => {
                            if let Some(x) = map.next_value::<Option<f64>>()? {
                                val = Val::Double(x);
                            }
                        }
                        "arrayValue" => {
                            if let Some(a) = map.next_value::<Option<ArrayValue>>()? {
                                val = Val::Nested(any_value::Value::ArrayValue(a));
                            }
                        }
                        "kvlistValue" => {
                            if let Some(l) = map.next_value::<Option<KeyValueList>>()? {
                                val = Val::Nested(any_value::Value::KvlistValue(l));
                            }
                        }
                        "bytesValue" => {
                            if let Some(s) = map.next_value::<Option<Str<'a>>>()? {
                                let b = base64::engine::general_purpose::STANDARD
                                    .decode(s.0.as_bytes())
                                    .map_err(de::Error::custom)?;
                                val = Val::Bytes(b);
                            }
                        }
                        // ignored, as the reference ignores it
                        _ => drop(map.next_value::<de::IgnoredAny>()?),
                    }
                }
                Ok(Any(val))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyVal<'a> {
    #[serde(borrow)]
    key: Str<'a>,
    #[serde(borrow, default)]
    value: Option<Any<'a>>,
    #[serde(default)]
    #[allow(dead_code)] // read for its type check, as the reference reads it
    key_strindex: i32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Req<'a> {
    #[serde(borrow)]
    resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceSpans<'a> {
    #[serde(borrow)]
    resource: Option<Res<'a>>,
    #[serde(borrow)]
    scope_spans: Vec<ScopeSpans<'a>>,
    #[allow(dead_code)]
    #[serde(borrow)]
    schema_url: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Res<'a> {
    #[serde(borrow)]
    attributes: Vec<KeyVal<'a>>,
    #[allow(dead_code)]
    dropped_attributes_count: u32,
    #[allow(dead_code)]
    entity_refs: Vec<EntityRef>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeSpans<'a> {
    #[serde(borrow)]
    scope: Option<ScopeJ<'a>>,
    #[serde(borrow)]
    spans: Vec<SpanJ<'a>>,
    #[allow(dead_code)]
    #[serde(borrow)]
    schema_url: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeJ<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    version: Str<'a>,
    #[serde(borrow)]
    attributes: Vec<KeyVal<'a>>,
    #[allow(dead_code)]
    dropped_attributes_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SpanJ<'a> {
    #[serde(borrow)]
    trace_id: Str<'a>,
    #[serde(borrow)]
    span_id: Str<'a>,
    #[serde(borrow)]
    trace_state: Str<'a>,
    #[serde(borrow)]
    parent_span_id: Str<'a>,
    flags: u32,
    #[serde(borrow)]
    name: Str<'a>,
    kind: i32,
    start_time_unix_nano: Nanos,
    end_time_unix_nano: Nanos,
    #[serde(borrow)]
    attributes: Vec<KeyVal<'a>>,
    #[allow(dead_code)]
    dropped_attributes_count: u32,
    #[serde(borrow)]
    events: Vec<EventJ<'a>>,
    #[allow(dead_code)]
    dropped_events_count: u32,
    #[serde(borrow)]
    links: Vec<LinkJ<'a>>,
    #[allow(dead_code)]
    dropped_links_count: u32,
    #[serde(borrow)]
    status: Option<StatusJ<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct EventJ<'a> {
    time_unix_nano: Nanos,
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    attributes: Vec<KeyVal<'a>>,
    #[allow(dead_code)]
    dropped_attributes_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LinkJ<'a> {
    #[serde(borrow)]
    trace_id: Str<'a>,
    #[serde(borrow)]
    span_id: Str<'a>,
    #[serde(borrow)]
    trace_state: Str<'a>,
    #[serde(borrow)]
    attributes: Vec<KeyVal<'a>>,
    #[allow(dead_code)]
    dropped_attributes_count: u32,
    #[allow(dead_code)]
    flags: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StatusJ<'a> {
    #[serde(borrow)]
    message: Str<'a>,
    code: i32,
}

/// A hex id decoded as the reference decodes it (`const_hex::decode`), without an
/// allocation for the usual 8- and 16-byte ids.
enum Id {
    Short([u8; 16], usize),
    Long(Vec<u8>),
}

impl Id {
    fn decode(s: &str) -> Result<Id, Declined> {
        let short = match s.len() {
            32 => const_hex::decode_to_array::<_, 16>(s)
                .ok()
                .map(|a| Id::Short(a, 16)),
            16 => const_hex::decode_to_array::<_, 8>(s).ok().map(|a| {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&a);
                Id::Short(b, 8)
            }),
            0 => Some(Id::Short([0; 16], 0)),
            _ => None,
        };
        match short {
            Some(id) => Ok(id),
            None => const_hex::decode(s).map(Id::Long).map_err(|_| Declined),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Id::Short(b, n) => &b[..*n],
            Id::Long(v) => v,
        }
    }
}

/// As the reference converts a value (`attr_value_owned`).
fn attr_value(v: Option<Any<'_>>) -> AttrValue {
    match v.map_or(Val::None, |a| a.0) {
        Val::None => AttrValue::Str(String::new()),
        Val::Str(s) => AttrValue::Str(s.into_owned()),
        Val::Bool(b) => AttrValue::Bool(b),
        Val::Int(i) => AttrValue::Int(i),
        Val::Double(d) => AttrValue::Double(d),
        Val::Bytes(b) => AttrValue::Bytes(b),
        Val::Nested(n) => AttrValue::Json(any_to_json(&AnyValue { value: Some(n) }).to_string()),
    }
}

fn attributes(kvs: Vec<KeyVal<'_>>) -> Vec<Attribute> {
    kvs.into_iter()
        .map(|kv| Attribute {
            key: kv.key.0.into_owned(),
            value: attr_value(kv.value),
        })
        .collect()
}

fn scope(s: Option<ScopeJ<'_>>) -> Scope {
    s.map_or_else(Scope::default, |s| Scope {
        name: s.name.0.into_owned(),
        version: s.version.0.into_owned(),
        attributes: s
            .attributes
            .into_iter()
            .map(|kv| scope_attr(&kv.key.0, attr_value(kv.value)))
            .collect(),
    })
}

/// An OTLP/JSON `ExportTraceServiceRequest` to a batch and its rejections.
pub(super) fn traces(bytes: &[u8]) -> Result<(Batch, Rejections), Declined> {
    // UTF-8 checked once for the whole body, not string by string as `from_slice` does
    let text = std::str::from_utf8(bytes).map_err(|_| Declined)?;
    let req: Req<'_> = serde_json::from_str(text).map_err(|_| Declined)?;
    // Every id decoded first: an id the reference cannot decode fails the whole
    // request there, so it is declined here before anything is built.
    let mut batch = Batch::default();
    let mut rej = Rejections::default();
    batch.spans.reserve_exact(
        req.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum(),
    );
    let mut ids: Vec<[Id; 3]> = Vec::new();
    let mut link_ids: Vec<(Id, Id)> = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                ids.push([
                    Id::decode(&s.trace_id.0)?,
                    Id::decode(&s.span_id.0)?,
                    Id::decode(&s.parent_span_id.0)?,
                ]);
                for l in &s.links {
                    link_ids.push((Id::decode(&l.trace_id.0)?, Id::decode(&l.span_id.0)?));
                }
            }
        }
    }
    let mut ids = ids.iter();
    let mut link_ids = link_ids.iter();
    for rs in req.resource_spans {
        let res_attrs = rs.resource.map(|r| attributes(r.attributes));
        let (rid, service) = resource(&mut batch, res_attrs.unwrap_or_default());
        for ss in rs.scope_spans {
            let sc = scope(ss.scope);
            for (i, s) in ss.spans.into_iter().enumerate() {
                let [trace_id, span_id, parent] = ids.next().ok_or(Declined)?;
                let mut bad_event_time = None;
                let events = s
                    .events
                    .into_iter()
                    .map(|e| {
                        event(
                            e.time_unix_nano.0,
                            e.name.0.into_owned(),
                            attributes(e.attributes),
                            &mut bad_event_time,
                        )
                    })
                    .collect();
                let mut links = Vec::with_capacity(s.links.len());
                for l in s.links {
                    let (t, sp) = link_ids.next().ok_or(Declined)?;
                    links.push(LinkParts {
                        trace_id: t.bytes(),
                        span_id: sp.bytes(),
                        trace_state: l.trace_state.0.into_owned(),
                        attributes: attributes(l.attributes),
                    });
                }
                let parts = SpanParts {
                    trace_id: trace_id.bytes(),
                    span_id: span_id.bytes(),
                    parent_span_id: parent.bytes(),
                    trace_state: s.trace_state.0.into_owned(),
                    flags: s.flags,
                    name: s.name.0.into_owned(),
                    kind: s.kind,
                    start_time_unix_nano: s.start_time_unix_nano.0,
                    end_time_unix_nano: s.end_time_unix_nano.0,
                    status: s.status.map(|st| (st.code, st.message.0.into_owned())),
                    attributes: attributes(s.attributes),
                    events,
                    bad_event_time,
                    links,
                };
                let span = finish_span(parts, rid, &service, &sc);
                push_span(&mut batch, &mut rej, i, &service, span);
            }
        }
    }
    Ok((batch, rej))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::otlp::traces_into_model;
    use crate::otlp::wire::tests::{bad_spans, request, span};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use rand::{Rng, SeedableRng};

    /// What opentelemetry-proto's serde and the conversion of its message give
    /// (Debug, so NaN equals NaN).
    fn by_serde(bytes: &[u8]) -> Option<String> {
        let req = serde_json::from_slice::<ExportTraceServiceRequest>(bytes).ok()?;
        Some(format!("{:?}", traces_into_model(req)))
    }

    fn direct(bytes: &[u8]) -> Result<String, Declined> {
        traces(bytes).map(|out| format!("{out:?}"))
    }

    #[test]
    fn same_batch_as_serde_for_every_field_kind_and_rejection() {
        let json = serde_json::to_vec(&request()).unwrap();
        let want = by_serde(&json).unwrap();
        assert_eq!(direct(&json).unwrap(), want);
        let (batch, rej) = traces(&json).unwrap();
        assert_eq!(rej.count, bad_spans().len() as u64, "{rej:?}");
        assert_eq!(batch.resources.len(), 2);
        assert!(batch.spans.iter().any(|s| !s.events.is_empty()));
        assert!(batch
            .spans
            .iter()
            .flat_map(|s| &s.attributes)
            .any(|a| matches!(a.value, AttrValue::Bytes(_))));
        assert!(batch
            .spans
            .iter()
            .flat_map(|s| &s.attributes)
            .any(|a| matches!(a.value, AttrValue::Json(_))));
        // and through the public entry point
        let (b2, r2) = crate::otlp::traces_from_json(&json).unwrap();
        assert_eq!(format!("{:?}", (b2, r2)), want);
        assert_eq!(direct(b"{}").unwrap(), by_serde(b"{}").unwrap());
    }

    /// Hand-written JSON the SDKs and people write, each through both decoders: the
    /// direct one gives the reference's batch or declines, and the public entry point
    /// always answers as the reference does.
    #[test]
    fn unusual_json_agrees_with_serde() {
        let ids = r#""traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174""#;
        let times =
            r#""startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000""#;
        let wrap = |span: &str| {
            format!(
                r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},"scopeSpans":[{{"scope":{{"name":"s"}},"spans":[{span}]}}]}}]}}"#
            )
        };
        let attr = |value: &str| {
            wrap(&format!(
                r#"{{{ids},{times},"name":"n","attributes":[{{"key":"k","value":{value}}}]}}"#
            ))
        };
        let cases: Vec<(&str, String)> = vec![
            ("plain", wrap(&format!(r#"{{{ids},{times},"name":"n","kind":2}}"#))),
            (
                "times as numbers",
                wrap(&format!(
                    r#"{{{ids},"startTimeUnixNano":1700000000000000000,"endTimeUnixNano":1700000001000000000,"name":"n"}}"#
                )),
            ),
            ("time negative", wrap(&format!(r#"{{{ids},"startTimeUnixNano":-1,"name":"n"}}"#))),
            ("time float", wrap(&format!(r#"{{{ids},"startTimeUnixNano":1.5,"name":"n"}}"#))),
            ("time +digits", wrap(&format!(r#"{{{ids},"startTimeUnixNano":"+17","endTimeUnixNano":"18","name":"n"}}"#))),
            ("time junk", wrap(&format!(r#"{{{ids},"startTimeUnixNano":"soon","name":"n"}}"#))),
            ("upper-case ids", wrap(&format!(r#"{{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",{times}}}"#))),
            ("0x ids", wrap(&format!(r#"{{"traceId":"0x5b8efff798038103d269b633813fc60c","spanId":"0xeee19b7ec3c1b174",{times}}}"#))),
            ("short id", wrap(&format!(r#"{{"traceId":"5b8e","spanId":"eee19b7ec3c1b174",{times}}}"#))),
            ("odd id", wrap(&format!(r#"{{"traceId":"5b8","spanId":"eee19b7ec3c1b174",{times}}}"#))),
            ("non-hex id", wrap(&format!(r#"{{"traceId":"zz8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",{times}}}"#))),
            ("null id", wrap(&format!(r#"{{"traceId":null,"spanId":"eee19b7ec3c1b174",{times}}}"#))),
            ("missing ids", wrap(&format!(r#"{{{times},"name":"n"}}"#))),
            ("escaped name", wrap(&format!(r#"{{{ids},{times},"name":"a\"b\\c\u00e9\n"}}"#))),
            ("escaped key", wrap(&format!(r#"{{{ids},{times},"na\u006de":"n"}}"#))),
            ("unknown fields", wrap(&format!(r#"{{{ids},{times},"name":"n","extra":[1,{{"a":null}}],"droppedLinksCount":3}}"#))),
            ("duplicate field", wrap(&format!(r#"{{{ids},{times},"name":"n","name":"m"}}"#))),
            ("kind as name", wrap(&format!(r#"{{{ids},{times},"kind":"SPAN_KIND_SERVER"}}"#))),
            ("null name", wrap(&format!(r#"{{{ids},{times},"name":null}}"#))),
            ("null status", wrap(&format!(r#"{{{ids},{times},"status":null}}"#))),
            ("empty status", wrap(&format!(r#"{{{ids},{times},"status":{{}}}}"#))),
            ("error status", wrap(&format!(r#"{{{ids},{times},"status":{{"code":2,"message":"boom"}}}}"#))),
            ("null resource", r#"{"resourceSpans":[{"resource":null,"scopeSpans":[]}]}"#.to_owned()),
            ("null spans", r#"{"resourceSpans":[{"scopeSpans":[{"spans":null}]}]}"#.to_owned()),
            ("entity refs", r#"{"resourceSpans":[{"resource":{"entityRefs":[{"type":"host","idKeys":["host.id"]}]}}]}"#.to_owned()),
            ("snake case", r#"{"resource_spans":[{"scope_spans":[]}]}"#.to_owned()),
            ("not an object", "[1,2]".to_owned()),
            ("trailing", "{} x".to_owned()),
            ("empty", String::new()),
            ("string", attr(r#"{"stringValue":"v"}"#)),
            ("escaped string", attr(r#"{"stringValue":"\ud83d\ude00 \t"}"#)),
            ("int as string", attr(r#"{"intValue":"12"}"#)),
            ("int as number", attr(r#"{"intValue":12}"#)),
            ("int too big", attr(r#"{"intValue":9223372036854775808}"#)),
            ("int float", attr(r#"{"intValue":1.5}"#)),
            ("int junk", attr(r#"{"intValue":"x"}"#)),
            ("double", attr(r#"{"doubleValue":0.25}"#)),
            ("double from int", attr(r#"{"doubleValue":3}"#)),
            ("double as string", attr(r#"{"doubleValue":"NaN"}"#)),
            ("bool", attr(r#"{"boolValue":true}"#)),
            ("bytes", attr(r#"{"bytesValue":"AP8H"}"#)),
            ("bad base64", attr(r#"{"bytesValue":"AP8"}"#)),
            ("array", attr(r#"{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"2"}]}}"#)),
            ("kvlist", attr(r#"{"kvlistValue":{"values":[{"key":"a","value":{"boolValue":false}}]}}"#)),
            ("empty value", attr("{}")),
            ("null value", attr("null")),
            ("null inside", attr(r#"{"stringValue":null}"#)),
            ("two kinds, last wins", attr(r#"{"stringValue":"a","intValue":"3"}"#)),
            ("null after a value", attr(r#"{"intValue":"3","stringValue":null}"#)),
            ("unknown value key", attr(r#"{"stringValueStrindex":3}"#)),
            ("value not an object", attr(r#""v""#)),
            ("missing key", wrap(&format!(r#"{{{ids},{times},"attributes":[{{"value":{{"boolValue":true}}}}]}}"#))),
            ("event and link", wrap(&format!(
                r#"{{{ids},{times},"events":[{{"timeUnixNano":"1700000000500000000","name":"e","attributes":[]}}],"links":[{{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175","traceState":"a=b"}}]}}"#
            ))),
            ("event time past 2262", wrap(&format!(
                r#"{{{ids},{times},"events":[{{"timeUnixNano":"18446744073709551615"}}]}}"#
            ))),
        ];
        let mut accepted = 0;
        for (name, json) in &cases {
            let reference = by_serde(json.as_bytes());
            if let Ok(got) = direct(json.as_bytes()) {
                accepted += 1;
                assert_eq!(
                    Some(got),
                    reference,
                    "{name}: accepted by the direct decoder only"
                );
            }
            let public = crate::otlp::traces_from_json(json.as_bytes())
                .map(|o| format!("{o:?}"))
                .ok();
            assert_eq!(public, reference, "{name}");
        }
        assert!(
            accepted * 2 > cases.len(),
            "{accepted} of {} accepted",
            cases.len()
        );
    }

    /// Random mutations of valid JSON requests: whatever the direct decoder accepts,
    /// serde accepts too and converts to the same batch.
    #[test]
    fn mutations_never_disagree_with_serde() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let valid = serde_json::to_vec(&request()).unwrap();
        let small = serde_json::to_vec(&ExportTraceServiceRequest {
            resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                    spans: vec![span(2)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
        .unwrap();
        let alphabet = br#"{}[]":,0123456789abcdefx-.\ eEnulltrue"#;
        let (mut accepted, mut declined) = (0, 0);
        for i in 0..6_000 {
            let mut b = if i % 2 == 0 {
                valid.clone()
            } else {
                small.clone()
            };
            for _ in 0..rng.random_range(1..3) {
                if b.is_empty() {
                    break;
                }
                let at = rng.random_range(0..b.len());
                let c = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..3) {
                    0 => b[at] = c,
                    1 => b.insert(at, c),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            match direct(&b) {
                Ok(got) => {
                    accepted += 1;
                    assert_eq!(
                        Some(&got),
                        by_serde(&b).as_ref(),
                        "mutation {i} accepted by the direct decoder only: {}",
                        String::from_utf8_lossy(&b)
                            .chars()
                            .take(300)
                            .collect::<String>()
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
