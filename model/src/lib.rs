//! tailscope's domain types, shared by every other crate.
//!
//! Telemetry arrives as OTLP and leaves `ingest` as a [`Batch`]: [`Resource`]s,
//! [`Span`]s (with [`Event`]s, [`Link`]s and the analysis fields promoted into
//! [`Promoted`]), [`MetricPoint`]s and [`LogRecord`]s; [`gpu_metrics`] maps GPU and
//! inference-server metric names to canonical names and units; [`semconv::promote`] is the one
//! attribute normalisation (ingest and the generator both use it). [`Cause`] names the fixed
//! latency causes of design.md and [`OpClass`] the operation classes; [`stats`] holds the one
//! nearest-rank percentile and median. No IO, no async.

pub mod gpu_metrics;
mod ids;
mod metric;
pub mod samples;
pub mod semconv;
pub mod session;
mod span;
pub mod stats;
pub mod time;

pub use ids::{Hex, IdError, SpanId, TraceId};
pub use metric::{Exemplar, LogRecord, MetricKind, MetricPoint, Temporality};
pub use session::{ReplayWorkload, Segment, Session, Turn};
pub use span::{AttrValue, Attribute, Event, Link, OpClass, Promoted, Span, SpanKind, StatusCode};

use serde::{Deserialize, Serialize};

/// An OTLP resource (the entity producing telemetry), identified by a hash of its attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Stable 63-bit hash of the attributes (see [`Resource::id_of`]).
    pub id: i64,
    pub service_name: String,
    pub attributes: Vec<Attribute>,
}

impl Resource {
    /// Builds a resource whose id is a stable FNV-1a hash of its sorted attributes.
    pub fn new(mut attributes: Vec<Attribute>) -> Self {
        attributes.sort_by(|a, b| a.key.cmp(&b.key));
        let service_name = attributes
            .iter()
            .find(|a| a.key == "service.name")
            .map_or_else(|| "unknown_service".to_owned(), |a| a.value.to_display());
        let id = Self::id_of(&attributes);
        Self {
            id,
            service_name,
            attributes,
        }
    }

    /// FNV-1a over `key=value` pairs, masked to a positive i64 so it fits BIGINT.
    pub fn id_of(sorted: &[Attribute]) -> i64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for a in sorted {
            for b in a
                .key
                .bytes()
                .chain([0u8])
                .chain(a.value.to_display().bytes())
                .chain([1u8])
            {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        (h & (i64::MAX as u64)) as i64
    }
}

/// Everything one OTLP request (or one imported file chunk) turned into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub resources: Vec<Resource>,
    pub spans: Vec<Span>,
    pub metrics: Vec<MetricPoint>,
    pub logs: Vec<LogRecord>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.metrics.is_empty() && self.logs.is_empty()
    }

    /// Moves everything from `other` into `self`.
    pub fn append(&mut self, other: &mut Batch) {
        self.resources.append(&mut other.resources);
        self.spans.append(&mut other.spans);
        self.metrics.append(&mut other.metrics);
        self.logs.append(&mut other.logs);
    }
}

/// Items of a request that were rejected during normalisation, with readable reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejections {
    pub count: u64,
    /// At most a few distinct messages, e.g. "span 3 of scope 'x': trace_id has 5 bytes, want 16".
    pub messages: Vec<String>,
}

impl Rejections {
    /// Most messages kept; the count keeps going.
    pub const MAX_MESSAGES: usize = 8;

    pub fn reject(&mut self, message: impl Into<String>) {
        self.count += 1;
        if self.messages.len() < Self::MAX_MESSAGES {
            self.messages.push(message.into());
        }
    }

    pub fn merge(&mut self, other: Rejections) {
        self.count += other.count;
        for m in other.messages {
            if self.messages.len() < Self::MAX_MESSAGES {
                self.messages.push(m);
            }
        }
    }

    /// One sentence for OTLP `partial_success.error_message`; empty when nothing was rejected.
    pub fn summary(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        let shown = self.messages.join("; ");
        let more = self.count.saturating_sub(self.messages.len() as u64);
        if more > 0 {
            format!("{} item(s) rejected: {shown}; and {more} more", self.count)
        } else {
            format!("{} item(s) rejected: {shown}", self.count)
        }
    }
}

/// The fixed latency causes of design.md. Each critical-path section gets exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Preprocessing,
    Retrieval,
    PoolWait,
    Db,
    Queue,
    KvEviction,
    Prefill,
    Decode,
    Tool,
    ToolColdStart,
    Retry,
    Network,
    Uninstrumented,
    Other,
}

impl Cause {
    /// How many causes there are (the length of [`Cause::ALL`]).
    pub const COUNT: usize = Cause::ALL.len();

    /// Every cause, in the fixed order of design.md (and of the store's columns).
    pub const ALL: [Cause; 14] = [
        Cause::Preprocessing,
        Cause::Retrieval,
        Cause::PoolWait,
        Cause::Db,
        Cause::Queue,
        Cause::KvEviction,
        Cause::Prefill,
        Cause::Decode,
        Cause::Tool,
        Cause::ToolColdStart,
        Cause::Retry,
        Cause::Network,
        Cause::Uninstrumented,
        Cause::Other,
    ];

    /// The names of [`Cause::ALL`], in that order: the store's cause columns and the
    /// exported notebook's list are built from them.
    pub const NAMES: [&'static str; Cause::COUNT] = {
        let mut names = [""; Cause::COUNT];
        let mut i = 0;
        while i < Cause::COUNT {
            names[i] = Cause::ALL[i].as_str();
            i += 1;
        }
        names
    };

    pub const fn as_str(self) -> &'static str {
        match self {
            Cause::Preprocessing => "preprocessing",
            Cause::Retrieval => "retrieval",
            Cause::PoolWait => "pool_wait",
            Cause::Db => "db",
            Cause::Queue => "queue",
            Cause::KvEviction => "kv_eviction",
            Cause::Prefill => "prefill",
            Cause::Decode => "decode",
            Cause::Tool => "tool",
            Cause::ToolColdStart => "tool_cold_start",
            Cause::Retry => "retry",
            Cause::Network => "network",
            Cause::Uninstrumented => "uninstrumented",
            Cause::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a cause is known (design.md): `measured` when the telemetry times it (a server
/// span, a first-token time, cache reads, corroborating server metrics), `inferred`
/// when the latency model or a rule derives it, `ambiguous` when two or more causes
/// explain it about equally (named as alternatives). Ordered from strongest to weakest.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    #[default]
    Measured,
    Inferred,
    Ambiguous,
}

impl Evidence {
    pub const ALL: [Evidence; 3] = [Evidence::Measured, Evidence::Inferred, Evidence::Ambiguous];

    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Measured => "measured",
            Evidence::Inferred => "inferred",
            Evidence::Ambiguous => "ambiguous",
        }
    }

    pub fn parse(s: &str) -> Option<Evidence> {
        Evidence::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of causes: the alternatives of an ambiguous answer. Serialises as a list of
/// cause names in [`Cause::ALL`] order; stored as those names joined by commas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CauseSet(u16);

impl CauseSet {
    pub const EMPTY: CauseSet = CauseSet(0);

    fn bit(c: Cause) -> u16 {
        1 << (c as u16)
    }

    pub fn of(causes: &[Cause]) -> Self {
        let mut s = Self::EMPTY;
        for &c in causes {
            s.insert(c);
        }
        s
    }

    pub fn insert(&mut self, c: Cause) {
        self.0 |= Self::bit(c);
    }

    pub fn remove(&mut self, c: Cause) {
        self.0 &= !Self::bit(c);
    }

    #[must_use]
    pub fn without(mut self, c: Cause) -> Self {
        self.remove(c);
        self
    }

    #[must_use]
    pub fn union(self, other: CauseSet) -> Self {
        CauseSet(self.0 | other.0)
    }

    pub fn contains(self, c: Cause) -> bool {
        self.0 & Self::bit(c) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Cause> {
        Cause::ALL.into_iter().filter(move |c| self.contains(*c))
    }

    /// The set as bits: bit `c as u16` for each cause `c` (how the store keeps it).
    pub fn bits(self) -> u16 {
        self.0
    }

    /// [`CauseSet::bits`] read back; bits of no cause are dropped.
    pub fn from_bits(bits: u16) -> Self {
        CauseSet(bits & ((1 << Cause::COUNT) - 1))
    }

    /// The names joined by commas (`""` when empty).
    pub fn to_list(self) -> String {
        self.iter().map(Cause::as_str).collect::<Vec<_>>().join(",")
    }

    /// Reads [`CauseSet::to_list`]'s text; unknown names are skipped.
    pub fn parse_list(s: &str) -> Self {
        let mut out = Self::EMPTY;
        for c in s.split(',').filter_map(|n| Cause::parse(n.trim())) {
            out.insert(c);
        }
        out
    }
}

impl Serialize for CauseSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Cause::as_str))
    }
}

impl<'de> Deserialize<'de> for CauseSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names: Vec<String> = Vec::deserialize(d)?;
        Ok(Self::parse_list(&names.join(",")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_names_round_trip() {
        for c in Cause::ALL {
            assert_eq!(Cause::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(Cause::parse("nope"), None);
        assert_eq!(Cause::NAMES.len(), Cause::COUNT);
        for (c, name) in Cause::ALL.iter().zip(Cause::NAMES) {
            assert_eq!(c.as_str(), name);
            assert_eq!(
                *c as usize,
                Cause::ALL.iter().position(|x| x == c).unwrap_or(99)
            );
        }
        for e in Evidence::ALL {
            assert_eq!(Evidence::parse(e.as_str()), Some(e));
        }
        assert!(
            Evidence::Measured < Evidence::Inferred && Evidence::Inferred < Evidence::Ambiguous
        );
    }

    #[test]
    fn cause_sets_round_trip_as_lists() {
        let s = CauseSet::of(&[Cause::Queue, Cause::KvEviction, Cause::Queue]);
        assert_eq!(s.to_list(), "queue,kv_eviction");
        assert_eq!(CauseSet::parse_list("queue, kv_eviction,nope"), s);
        assert_eq!(CauseSet::parse_list(""), CauseSet::EMPTY);
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(json, r#"["queue","kv_eviction"]"#);
        let back: CauseSet = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, s);
        assert!(!s.without(Cause::Queue).contains(Cause::Queue));
        assert_eq!(s.union(CauseSet::of(&[Cause::Network])).iter().count(), 3);
    }

    #[test]
    fn resource_id_ignores_attribute_order() {
        let a = Attribute::new("service.name", AttrValue::Str("api".into()));
        let b = Attribute::new("host.name", AttrValue::Str("h1".into()));
        let r1 = Resource::new(vec![a.clone(), b.clone()]);
        let r2 = Resource::new(vec![b, a]);
        assert_eq!(r1.id, r2.id);
        assert!(r1.id >= 0);
        assert_eq!(r1.service_name, "api");
        let r3 = Resource::new(vec![Attribute::new(
            "service.name",
            AttrValue::Str("other".into()),
        )]);
        assert_ne!(r1.id, r3.id);
    }

    #[test]
    fn rejections_summarise_and_cap() {
        let mut r = Rejections::default();
        assert_eq!(r.summary(), "");
        for i in 0..10 {
            r.reject(format!("bad {i}"));
        }
        assert_eq!(r.count, 10);
        assert_eq!(r.messages.len(), Rejections::MAX_MESSAGES);
        assert!(r.summary().contains("and 2 more"), "{}", r.summary());
    }
}
