//! Exactly-once: the writer drops a span, metric point or log record that it stored
//! recently, so a request sent again (an SDK's retry after a timeout, or after the
//! collector died between COMMIT and its answer) stores nothing new.
//!
//! Spans are keyed by (trace_id, span_id). Metric points and log records have no id:
//! they are keyed by their content as stored ([`PointView`]: resource, scope, metric
//! name, description, unit, kind, temporality, monotonic, start and time, attributes,
//! value, count, sum, min, max, buckets and bounds, quantiles; [`LogView`]: resource,
//! scope, time, observed time, severity, body, trace and span id, event name,
//! attributes). The same point in two resources is two points; a point or record
//! without a time is never taken for a copy (nothing tells a retry from a new one).
//!
//! Each signal has a window of the last [`WriterConfig::dedupe_window`](crate::WriterConfig)
//! items stored, kept as 64-bit fingerprints (16 bytes an item with the ring, ~34 MiB
//! at the default 2,097,152). A fingerprint hit is only a suspect: the writer confirms
//! it against the stored rows (spans: `ingested_ns` at or after the window's oldest
//! commit, which DuckDB's zone maps narrow to the newest row groups; points and
//! records: the rows of the same `time_ns`, compared column by column), so a
//! fingerprint collision never drops an item. At start the windows are seeded from
//! the newest stored rows, so a re-send across a crash and restart is caught too.

use crate::columns::{quantiles_json, JsonWriter};
use crate::StoreError;
use duckdb::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Float64Array, Int32Array,
    Int64Array, PrimitiveArray, StringArray, UInt64Array,
};
use duckdb::arrow::datatypes::{Float64Type, Int32Type, Int64Type, UInt64Type};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use tailscope_model::{Batch, LogRecord, MetricPoint, SpanId, TraceId};

/// The fingerprint of a span key: the ids' words mixed (splitmix64 finaliser), so
/// ids that are not random (sequential test ids) still spread.
pub(crate) fn fingerprint(t: &TraceId, s: SpanId) -> u64 {
    let w = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let mut h = w(&t.0[..8]) ^ w(&t.0[8..]).rotate_left(21) ^ w(&s.0).rotate_left(43);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Fingerprints are already mixed: hash them as they are.
#[derive(Default)]
pub(crate) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type FpMap = HashMap<u64, u32, BuildHasherDefault<Identity>>;

/// The recent spans, oldest first.
pub(crate) struct Window {
    cap: usize,
    /// fingerprint -> how many spans in the ring have it
    counts: FpMap,
    ring: VecDeque<u64>,
    /// (commit stamp, spans of it still in the ring), oldest first
    commits: VecDeque<(i64, usize)>,
}

impl Window {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            counts: FpMap::default(),
            ring: VecDeque::new(),
            commits: VecDeque::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether a span with this fingerprint may be in the window.
    pub(crate) fn suspect(&self, fp: u64) -> bool {
        self.counts.contains_key(&fp)
    }

    /// The stamp of the oldest commit still in the window.
    pub(crate) fn oldest_stamp(&self) -> Option<i64> {
        self.commits.front().map(|c| c.0)
    }

    /// Records the spans of one commit (stamp `stamp`), forgetting the oldest beyond
    /// the capacity.
    pub(crate) fn push(&mut self, stamp: i64, fps: impl IntoIterator<Item = u64>) {
        if self.cap == 0 {
            return;
        }
        let mut n = 0usize;
        for fp in fps {
            *self.counts.entry(fp).or_insert(0) += 1;
            self.ring.push_back(fp);
            n += 1;
        }
        if n == 0 {
            return;
        }
        match self.commits.back_mut() {
            Some(last) if last.0 == stamp => last.1 += n,
            _ => self.commits.push_back((stamp, n)),
        }
        while self.ring.len() > self.cap {
            let Some(old) = self.ring.pop_front() else {
                break;
            };
            if let Entry::Occupied(mut e) = self.counts.entry(old) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
            if let Some(front) = self.commits.front_mut() {
                front.1 -= 1;
                if front.1 == 0 {
                    self.commits.pop_front();
                }
            }
        }
    }
}

/// Which spans of a commit to keep: `None` keeps all. Spans repeated within the
/// commit itself are dropped after their first; spans whose fingerprint is in the
/// window are dropped when `stored` confirms they are in the store.
pub(crate) struct Plan {
    /// per batch, per span: keep it
    pub(crate) keep: Vec<Option<Vec<bool>>>,
}

/// Decides which spans of `batches` are new. `stored` is asked (once, if any span is
/// a suspect) which of the suspect keys are already stored.
pub(crate) fn plan<'a, E>(
    window: &Window,
    batches: impl Iterator<Item = &'a [tailscope_model::Span]>,
    stored: impl FnOnce(&[(TraceId, SpanId)]) -> Result<HashSet<(TraceId, SpanId)>, E>,
) -> Result<Plan, E> {
    let batches: Vec<&[tailscope_model::Span]> = batches.collect();
    let mut suspects: Vec<(TraceId, SpanId)> = Vec::new();
    for spans in &batches {
        for s in *spans {
            if window.suspect(fingerprint(&s.trace_id, s.span_id)) {
                suspects.push((s.trace_id, s.span_id));
            }
        }
    }
    let found = if suspects.is_empty() {
        HashSet::new()
    } else {
        suspects.sort_unstable();
        suspects.dedup();
        stored(&suspects)?
    };
    let mut seen: HashSet<(TraceId, SpanId)> = HashSet::new();
    let keep = batches
        .iter()
        .map(|spans| {
            let mask: Vec<bool> = spans
                .iter()
                .map(|s| {
                    let key = (s.trace_id, s.span_id);
                    !found.contains(&key) && seen.insert(key)
                })
                .collect();
            mask.contains(&false).then_some(mask)
        })
        .collect();
    Ok(Plan { keep })
}

/// Where an item is in a commit: (batch, item of the batch).
pub(crate) type Ix = (usize, usize);

/// Which items of a commit to keep where items are keyed by content: `fps[b][i]` is
/// the fingerprint of item `i` of batch `b` (`None`: never a copy, always kept). An
/// item repeated within the commit is dropped after its first (`same` compares two
/// items of the commit); an item whose fingerprint is in the window is dropped when
/// `stored` (asked once, if any item is a suspect) confirms it is in the store.
pub(crate) fn plan_content<E>(
    window: &Window,
    fps: &[Vec<Option<u64>>],
    mut same: impl FnMut(Ix, Ix) -> bool,
    stored: impl FnOnce(&[Ix]) -> Result<HashSet<Ix>, E>,
) -> Result<Vec<Option<Vec<bool>>>, E> {
    if fps.iter().all(Vec::is_empty) {
        return Ok(vec![None; fps.len()]);
    }
    let mut suspects: Vec<Ix> = Vec::new();
    for (b, items) in fps.iter().enumerate() {
        for (i, fp) in items.iter().enumerate() {
            if fp.is_some_and(|fp| window.suspect(fp)) {
                suspects.push((b, i));
            }
        }
    }
    let found = if suspects.is_empty() {
        HashSet::new()
    } else {
        stored(&suspects)?
    };
    // the items kept so far, by fingerprint: the first of a chain in `first`, the
    // rest linked through `chain`
    let mut first: HashMap<u64, usize, BuildHasherDefault<Identity>> = HashMap::default();
    let mut chain: Vec<(Ix, Option<usize>)> = Vec::new();
    let keep = fps
        .iter()
        .enumerate()
        .map(|(b, items)| {
            let mask: Vec<bool> = items
                .iter()
                .enumerate()
                .map(|(i, fp)| {
                    let Some(fp) = *fp else {
                        return true;
                    };
                    if found.contains(&(b, i)) {
                        return false;
                    }
                    let head = first.get(&fp).copied();
                    let mut at = head;
                    while let Some(k) = at {
                        if same(chain[k].0, (b, i)) {
                            return false;
                        }
                        at = chain[k].1;
                    }
                    chain.push(((b, i), head));
                    first.insert(fp, chain.len() - 1);
                    true
                })
                .collect();
            mask.contains(&false).then_some(mask)
        })
        .collect();
    Ok(keep)
}

/// A streaming 64-bit hash for content fingerprints: FxHash's step over 8-byte words
/// and splitmix64's finaliser. Not for an adversary: a collision costs a look at the
/// stored rows, never a drop.
struct Fp(u64);

impl Fp {
    fn new() -> Self {
        Self(0x243f_6a88_85a3_08d3)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w));
        }
    }

    fn opt(&mut self, v: Option<u64>) {
        match v {
            None => self.word(0),
            Some(x) => {
                self.word(1);
                self.word(x);
            }
        }
    }

    fn finish(self) -> u64 {
        let mut h = self.0;
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

/// Doubles compared and hashed by their bits (NaN equals itself, -0 is not 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bits<'a>(pub(crate) &'a [f64]);

impl PartialEq for Bits<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(other.0)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

fn bits(v: Option<f64>) -> Option<u64> {
    v.map(f64::to_bits)
}

/// A metric point as its exactly-once key sees it: the stored columns that make it
/// this point (empty text for NULL, `start_ns` 0 for none, doubles as bits). Built
/// from a model point (`of`) or a stored row ([`PointRows`]), so the two compare.
#[derive(Debug, PartialEq)]
pub(crate) struct PointView<'a> {
    pub(crate) resource_id: i64,
    pub(crate) scope_name: &'a str,
    pub(crate) name: &'a str,
    pub(crate) description: &'a str,
    pub(crate) unit: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) temporality: &'a str,
    pub(crate) monotonic: bool,
    pub(crate) start_ns: i64,
    pub(crate) time_ns: i64,
    /// The attributes as stored (JSON text, `columns::JsonWriter`).
    pub(crate) attributes: &'a str,
    pub(crate) value: Option<u64>,
    pub(crate) count: Option<u64>,
    pub(crate) sum: Option<u64>,
    pub(crate) min: Option<u64>,
    pub(crate) max: Option<u64>,
    pub(crate) bucket_counts: &'a [u64],
    pub(crate) explicit_bounds: Bits<'a>,
    /// The quantiles as stored (JSON text, `columns::quantiles_json`; empty: none).
    pub(crate) quantiles: &'a str,
}

impl<'a> PointView<'a> {
    pub(crate) fn of(m: &'a MetricPoint, attributes: &'a str, quantiles: &'a str) -> Self {
        Self {
            resource_id: m.resource_id,
            scope_name: &m.scope_name,
            name: &m.name,
            description: &m.description,
            unit: &m.unit,
            kind: m.kind.as_str(),
            temporality: m.temporality.as_str(),
            monotonic: m.monotonic,
            start_ns: m.start_ns,
            time_ns: m.time_ns,
            attributes,
            value: bits(m.value),
            count: m.count,
            sum: bits(m.sum),
            min: bits(m.min),
            max: bits(m.max),
            bucket_counts: &m.bucket_counts,
            explicit_bounds: Bits(&m.explicit_bounds),
            quantiles,
        }
    }

    /// Its fingerprint; `None` for a point without a time (never taken for a copy).
    pub(crate) fn fingerprint(&self) -> Option<u64> {
        if self.time_ns == 0 {
            return None;
        }
        let mut h = Fp::new();
        h.word(self.resource_id as u64);
        for s in [
            self.scope_name,
            self.name,
            self.description,
            self.unit,
            self.kind,
            self.temporality,
            self.attributes,
            self.quantiles,
        ] {
            h.bytes(s.as_bytes());
        }
        h.word(u64::from(self.monotonic));
        h.word(self.start_ns as u64);
        h.word(self.time_ns as u64);
        for v in [self.value, self.count, self.sum, self.min, self.max] {
            h.opt(v);
        }
        h.word(self.bucket_counts.len() as u64);
        for c in self.bucket_counts {
            h.word(*c);
        }
        h.word(self.explicit_bounds.0.len() as u64);
        for b in self.explicit_bounds.0 {
            h.word(b.to_bits());
        }
        Some(h.finish())
    }
}

/// A log record as its exactly-once key sees it (see [`PointView`]).
#[derive(Debug, PartialEq)]
pub(crate) struct LogView<'a> {
    pub(crate) resource_id: i64,
    pub(crate) scope_name: &'a str,
    pub(crate) time_ns: i64,
    pub(crate) observed_ns: i64,
    pub(crate) severity_number: i32,
    pub(crate) severity_text: &'a str,
    pub(crate) body: &'a str,
    pub(crate) trace_id: Option<TraceId>,
    pub(crate) span_id: Option<SpanId>,
    pub(crate) event_name: &'a str,
    pub(crate) attributes: &'a str,
}

impl<'a> LogView<'a> {
    pub(crate) fn of(l: &'a LogRecord, attributes: &'a str) -> Self {
        Self {
            resource_id: l.resource_id,
            scope_name: &l.scope_name,
            time_ns: l.time_ns,
            observed_ns: l.observed_ns,
            severity_number: l.severity_number,
            severity_text: &l.severity_text,
            body: &l.body,
            trace_id: l.trace_id,
            span_id: l.span_id,
            event_name: &l.event_name,
            attributes,
        }
    }

    /// Its fingerprint; `None` for a record without a time (never taken for a copy).
    pub(crate) fn fingerprint(&self) -> Option<u64> {
        if self.time_ns == 0 && self.observed_ns == 0 {
            return None;
        }
        let mut h = Fp::new();
        h.word(self.resource_id as u64);
        h.word(self.time_ns as u64);
        h.word(self.observed_ns as u64);
        h.word(u64::from(self.severity_number as u32));
        for s in [
            self.scope_name,
            self.severity_text,
            self.body,
            self.event_name,
            self.attributes,
        ] {
            h.bytes(s.as_bytes());
        }
        match self.trace_id {
            Some(t) => h.bytes(&t.0),
            None => h.word(0),
        }
        match self.span_id {
            Some(s) => h.bytes(&s.0),
            None => h.word(0),
        }
        Some(h.finish())
    }
}

/// The columns of `metric_points` that make a point's key, in [`PointRows`]' order.
pub(crate) const POINT_COLS: &str = "resource_id, scope_name, name, description, unit, kind, \
    temporality, monotonic, start_ns, time_ns, attributes, value, count, sum, min, max, \
    bucket_counts, explicit_bounds, quantiles";

/// The columns of `logs` that make a record's key.
pub(crate) const LOG_COLS: &str = "resource_id, scope_name, time_ns, observed_ns, \
    severity_number, severity_text, body, trace_id, span_id, event_name, attributes";

fn col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, StoreError> {
    b.column_by_name(name)
        .ok_or_else(|| StoreError::Schema(format!("result has no column {name}")))
}

fn prim<'a, T: ArrowPrimitiveType>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<T>, StoreError> {
    col(b, name)?
        .as_primitive_opt::<T>()
        .ok_or_else(|| StoreError::Schema(format!("column {name} is not {}", T::DATA_TYPE)))
}

fn text<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a StringArray, StoreError> {
    col(b, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| StoreError::Schema(format!("column {name} is not VARCHAR")))
}

fn str_at(a: &StringArray, r: usize) -> &str {
    if a.is_valid(r) {
        a.value(r)
    } else {
        ""
    }
}

fn opt_at<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, r: usize) -> Option<T::Native> {
    a.is_valid(r).then(|| a.value(r))
}

/// A list column's rows as slices of its values.
enum List<'a, T> {
    Small(&'a [i32], &'a [T]),
    Large(&'a [i64], &'a [T]),
}

impl<'a, T: duckdb::arrow::datatypes::ArrowNativeType> List<'a, T> {
    fn new<P: ArrowPrimitiveType<Native = T>>(
        b: &'a RecordBatch,
        name: &str,
    ) -> Result<Self, StoreError> {
        let a = col(b, name)?;
        let bad = || StoreError::Schema(format!("column {name} is not a list of {}", P::DATA_TYPE));
        if let Some(l) = a.as_list_opt::<i32>() {
            let v = l.values().as_primitive_opt::<P>().ok_or_else(bad)?;
            Ok(List::Small(l.value_offsets(), &v.values()[..]))
        } else if let Some(l) = a.as_list_opt::<i64>() {
            let v = l.values().as_primitive_opt::<P>().ok_or_else(bad)?;
            Ok(List::Large(l.value_offsets(), &v.values()[..]))
        } else {
            Err(bad())
        }
    }

    fn at(&self, r: usize) -> &'a [T] {
        let (from, to, values) = match self {
            List::Small(o, v) => (o[r] as usize, o[r + 1] as usize, *v),
            List::Large(o, v) => (o[r] as usize, o[r + 1] as usize, *v),
        };
        values.get(from..to).unwrap_or(&[])
    }
}

/// Stored metric points (a query's [`POINT_COLS`]) as [`PointView`]s.
pub(crate) struct PointRows<'a> {
    resource_id: &'a Int64Array,
    strs: [&'a StringArray; 8],
    monotonic: &'a BooleanArray,
    start_ns: &'a Int64Array,
    time_ns: &'a Int64Array,
    value: &'a Float64Array,
    count: &'a UInt64Array,
    sum: &'a Float64Array,
    min: &'a Float64Array,
    max: &'a Float64Array,
    bucket_counts: List<'a, u64>,
    explicit_bounds: List<'a, f64>,
}

impl<'a> PointRows<'a> {
    pub(crate) fn new(b: &'a RecordBatch) -> Result<Self, StoreError> {
        let s = |n| text(b, n);
        Ok(Self {
            resource_id: prim::<Int64Type>(b, "resource_id")?,
            strs: [
                s("scope_name")?,
                s("name")?,
                s("description")?,
                s("unit")?,
                s("kind")?,
                s("temporality")?,
                s("attributes")?,
                s("quantiles")?,
            ],
            monotonic: col(b, "monotonic")?
                .as_boolean_opt()
                .ok_or_else(|| StoreError::Schema("column monotonic is not BOOLEAN".into()))?,
            start_ns: prim::<Int64Type>(b, "start_ns")?,
            time_ns: prim::<Int64Type>(b, "time_ns")?,
            value: prim::<Float64Type>(b, "value")?,
            count: prim::<UInt64Type>(b, "count")?,
            sum: prim::<Float64Type>(b, "sum")?,
            min: prim::<Float64Type>(b, "min")?,
            max: prim::<Float64Type>(b, "max")?,
            bucket_counts: List::new::<UInt64Type>(b, "bucket_counts")?,
            explicit_bounds: List::new::<Float64Type>(b, "explicit_bounds")?,
        })
    }

    pub(crate) fn view(&self, r: usize) -> PointView<'a> {
        let s = |k: usize| str_at(self.strs[k], r);
        let f = |a: &Float64Array| opt_at(a, r).map(f64::to_bits);
        PointView {
            resource_id: self.resource_id.value(r),
            scope_name: s(0),
            name: s(1),
            description: s(2),
            unit: s(3),
            kind: s(4),
            temporality: s(5),
            monotonic: self.monotonic.is_valid(r) && self.monotonic.value(r),
            start_ns: opt_at(self.start_ns, r).unwrap_or(0),
            time_ns: opt_at(self.time_ns, r).unwrap_or(0),
            attributes: s(6),
            value: f(self.value),
            count: opt_at(self.count, r),
            sum: f(self.sum),
            min: f(self.min),
            max: f(self.max),
            bucket_counts: self.bucket_counts.at(r),
            explicit_bounds: Bits(self.explicit_bounds.at(r)),
            quantiles: s(7),
        }
    }
}

/// Stored log records (a query's [`LOG_COLS`]) as [`LogView`]s.
pub(crate) struct LogRows<'a> {
    resource_id: &'a Int64Array,
    time_ns: &'a Int64Array,
    observed_ns: &'a Int64Array,
    severity_number: &'a Int32Array,
    strs: [&'a StringArray; 7],
}

impl<'a> LogRows<'a> {
    pub(crate) fn new(b: &'a RecordBatch) -> Result<Self, StoreError> {
        let s = |n| text(b, n);
        Ok(Self {
            resource_id: prim::<Int64Type>(b, "resource_id")?,
            time_ns: prim::<Int64Type>(b, "time_ns")?,
            observed_ns: prim::<Int64Type>(b, "observed_ns")?,
            severity_number: prim::<Int32Type>(b, "severity_number")?,
            strs: [
                s("scope_name")?,
                s("severity_text")?,
                s("body")?,
                s("trace_id")?,
                s("span_id")?,
                s("event_name")?,
                s("attributes")?,
            ],
        })
    }

    /// The record of row `r`; `None` where its ids do not parse (no record of the
    /// writer's is then equal to it).
    pub(crate) fn view(&self, r: usize) -> Option<LogView<'a>> {
        let s = |k: usize| str_at(self.strs[k], r);
        let trace_id = match s(3) {
            "" => None,
            t => Some(TraceId::from_hex(t).ok()?),
        };
        let span_id = match s(4) {
            "" => None,
            t => Some(SpanId::from_hex(t).ok()?),
        };
        Some(LogView {
            resource_id: self.resource_id.value(r),
            scope_name: s(0),
            time_ns: opt_at(self.time_ns, r).unwrap_or(0),
            observed_ns: opt_at(self.observed_ns, r).unwrap_or(0),
            severity_number: opt_at(self.severity_number, r).unwrap_or(0),
            severity_text: s(1),
            body: s(2),
            trace_id,
            span_id,
            event_name: s(5),
            attributes: s(6),
        })
    }
}

/// Runs `SELECT cols FROM table` for the rows of `times` (a range and a list, so
/// that DuckDB's zone maps skip the row groups outside it), calling `each` per
/// result batch.
fn rows_at_times(
    conn: &Connection,
    table: &str,
    cols: &str,
    mut times: Vec<i64>,
    mut each: impl FnMut(&RecordBatch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    times.sort_unstable();
    times.dedup();
    for part in times.chunks(1000) {
        let (lo, hi) = (part[0], part[part.len() - 1]);
        let list: Vec<String> = part.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT {cols} FROM {table} WHERE time_ns BETWEEN {lo} AND {hi} AND time_ns IN ({})",
            list.join(",")
        );
        let mut stmt = conn.prepare(&sql)?;
        for b in stmt.query_arrow([])? {
            each(&b)?;
        }
    }
    Ok(())
}

/// The suspects by fingerprint, and their times.
fn by_fingerprint(
    fps: &[Vec<Option<u64>>],
    suspects: &[Ix],
    time: impl Fn(Ix) -> i64,
) -> (HashMap<u64, Vec<Ix>>, Vec<i64>) {
    let mut by_fp: HashMap<u64, Vec<Ix>> = HashMap::new();
    let mut times = Vec::with_capacity(suspects.len());
    for &ix in suspects {
        if let Some(fp) = fps.get(ix.0).and_then(|f| f.get(ix.1)).copied().flatten() {
            by_fp.entry(fp).or_default().push(ix);
            times.push(time(ix));
        }
    }
    (by_fp, times)
}

/// The metric points of a commit's batches, keyed by content for [`plan_content`].
pub(crate) struct Points<'a>(pub(crate) &'a [&'a Batch]);

/// Whether `m` is the point `v` (rendering its attributes with `json`).
fn point_is(m: &MetricPoint, json: &mut JsonWriter, v: &PointView<'_>) -> bool {
    let q = quantiles_json(&m.quantiles);
    PointView::of(m, json.attrs(&m.attributes), q.as_deref().unwrap_or("")) == *v
}

impl Points<'_> {
    fn point(&self, (b, i): Ix) -> &MetricPoint {
        &self.0[b].metrics[i]
    }

    /// Each point's fingerprint, per batch.
    pub(crate) fn fingerprints(&self) -> Vec<Vec<Option<u64>>> {
        let mut json = JsonWriter::default();
        self.0
            .iter()
            .map(|b| {
                b.metrics
                    .iter()
                    .map(|m| {
                        if m.time_ns == 0 {
                            return None;
                        }
                        let q = quantiles_json(&m.quantiles);
                        PointView::of(m, json.attrs(&m.attributes), q.as_deref().unwrap_or(""))
                            .fingerprint()
                    })
                    .collect()
            })
            .collect()
    }

    /// Whether two points of the commit are the same point.
    pub(crate) fn same(&self) -> impl FnMut(Ix, Ix) -> bool + '_ {
        let (mut ja, mut jb) = (JsonWriter::default(), JsonWriter::default());
        move |a, b| {
            let (ma, mb) = (self.point(a), self.point(b));
            let qa = quantiles_json(&ma.quantiles);
            let va = PointView::of(ma, ja.attrs(&ma.attributes), qa.as_deref().unwrap_or(""));
            point_is(mb, &mut jb, &va)
        }
    }

    /// Which of the suspects are stored: rows of the same time, column by column.
    pub(crate) fn stored(
        &self,
        conn: &Connection,
        fps: &[Vec<Option<u64>>],
        suspects: &[Ix],
    ) -> Result<HashSet<Ix>, StoreError> {
        let (by_fp, times) = by_fingerprint(fps, suspects, |ix| self.point(ix).time_ns);
        let mut json = JsonWriter::default();
        let mut found = HashSet::new();
        rows_at_times(conn, "metric_points", POINT_COLS, times, |rb| {
            let rows = PointRows::new(rb)?;
            for r in 0..rb.num_rows() {
                let v = rows.view(r);
                let Some(ixs) = v.fingerprint().and_then(|fp| by_fp.get(&fp)) else {
                    continue;
                };
                for &ix in ixs {
                    if !found.contains(&ix) && point_is(self.point(ix), &mut json, &v) {
                        found.insert(ix);
                    }
                }
            }
            Ok(())
        })?;
        Ok(found)
    }
}

/// The log records of a commit's batches, keyed by content for [`plan_content`].
pub(crate) struct Logs<'a>(pub(crate) &'a [&'a Batch]);

impl Logs<'_> {
    fn record(&self, (b, i): Ix) -> &LogRecord {
        &self.0[b].logs[i]
    }

    /// Each record's fingerprint, per batch.
    pub(crate) fn fingerprints(&self) -> Vec<Vec<Option<u64>>> {
        let mut json = JsonWriter::default();
        self.0
            .iter()
            .map(|b| {
                b.logs
                    .iter()
                    .map(|l| LogView::of(l, json.attrs(&l.attributes)).fingerprint())
                    .collect()
            })
            .collect()
    }

    /// Whether two records of the commit are the same record.
    pub(crate) fn same(&self) -> impl FnMut(Ix, Ix) -> bool + '_ {
        let (mut ja, mut jb) = (JsonWriter::default(), JsonWriter::default());
        move |a, b| {
            let (la, lb) = (self.record(a), self.record(b));
            LogView::of(la, ja.attrs(&la.attributes)) == LogView::of(lb, jb.attrs(&lb.attributes))
        }
    }

    /// Which of the suspects are stored: rows of the same time, column by column.
    pub(crate) fn stored(
        &self,
        conn: &Connection,
        fps: &[Vec<Option<u64>>],
        suspects: &[Ix],
    ) -> Result<HashSet<Ix>, StoreError> {
        let (by_fp, times) = by_fingerprint(fps, suspects, |ix| self.record(ix).time_ns);
        let mut json = JsonWriter::default();
        let mut found = HashSet::new();
        rows_at_times(conn, "logs", LOG_COLS, times, |rb| {
            let rows = LogRows::new(rb)?;
            for r in 0..rb.num_rows() {
                let Some(v) = rows.view(r) else {
                    continue;
                };
                let Some(ixs) = v.fingerprint().and_then(|fp| by_fp.get(&fp)) else {
                    continue;
                };
                for &ix in ixs {
                    let l = self.record(ix);
                    if !found.contains(&ix) && LogView::of(l, json.attrs(&l.attributes)) == v {
                        found.insert(ix);
                    }
                }
            }
            Ok(())
        })?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> (TraceId, SpanId) {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&(n + 1).to_be_bytes());
        (TraceId(t), SpanId((n + 1).to_be_bytes()))
    }

    #[test]
    fn sequential_ids_get_distinct_fingerprints() {
        let fps: HashSet<u64> = (0..100_000)
            .map(|n| {
                let (t, s) = key(n);
                fingerprint(&t, s)
            })
            .collect();
        assert_eq!(fps.len(), 100_000);
    }

    #[test]
    fn window_forgets_the_oldest_beyond_its_capacity() {
        let mut w = Window::new(3);
        let fp = |n| {
            let (t, s) = key(n);
            fingerprint(&t, s)
        };
        w.push(10, [fp(1), fp(2)]);
        w.push(11, [fp(3)]);
        assert_eq!(w.oldest_stamp(), Some(10));
        assert!(w.suspect(fp(1)));
        w.push(12, [fp(4), fp(5)]);
        assert_eq!(w.len(), 3);
        assert!(!w.suspect(fp(1)) && !w.suspect(fp(2)));
        assert!(w.suspect(fp(3)) && w.suspect(fp(5)));
        // commit 10 left entirely; commit 11 is now the oldest
        assert_eq!(w.oldest_stamp(), Some(11));
    }

    #[test]
    fn a_window_of_zero_remembers_nothing() {
        let mut w = Window::new(0);
        let (t, s) = key(1);
        w.push(1, [fingerprint(&t, s)]);
        assert_eq!(w.len(), 0);
        assert_eq!(w.oldest_stamp(), None);
    }

    /// Content keys: repeats within a commit go after their first; a fingerprint
    /// shared by different items (a collision) drops nothing; a window hit is dropped
    /// only where the store confirms it; items without a fingerprint always stay.
    #[test]
    fn content_plans_drop_repeats_and_confirmed_suspects_only() {
        let mut w = Window::new(8);
        w.push(1, [10, 20]);
        // item contents: equal fingerprints 30 for (0,1) and (1,0) but different items,
        // (1,1) repeats (0,0)
        let fps = vec![
            vec![Some(10), Some(30), None],
            vec![Some(30), Some(10), Some(20)],
        ];
        let content = |ix: Ix| match ix {
            (0, 0) | (1, 1) => 'a',
            (0, 1) => 'b',
            (1, 0) => 'c',
            _ => 'd',
        };
        let mut asked = Vec::new();
        let keep = plan_content(
            &w,
            &fps,
            |a, b| content(a) == content(b),
            |s: &[Ix]| {
                asked.extend_from_slice(s);
                // 20 is in the window but not in the store (a rolled-back append)
                Ok::<_, ()>(s.iter().copied().filter(|ix| *ix == (0, 0)).collect())
            },
        )
        .unwrap();
        assert_eq!(asked, vec![(0, 0), (1, 1), (1, 2)]);
        assert_eq!(keep[0], Some(vec![false, true, true]));
        // (1,0) only shares a fingerprint; (1,1) and (1,2) were not confirmed
        assert_eq!(keep[1], None);
    }

    #[test]
    fn content_fingerprints_see_every_keyed_field() {
        let m = MetricPoint::at(1, "svc", "m", "s", tailscope_model::MetricKind::Gauge, 5);
        let fp = |m: &MetricPoint| PointView::of(m, "{}", "").fingerprint();
        let base = fp(&m).unwrap();
        let changes: Vec<fn(&mut MetricPoint)> = vec![
            |m| m.resource_id = 2,
            |m| m.time_ns = 6,
            |m| m.start_ns = 1,
            |m| m.value = Some(0.0),
            |m| m.value = Some(-0.0),
            |m| m.bucket_counts = vec![0],
            |m| m.explicit_bounds = vec![0.0],
            |m| m.name = "n".into(),
            |m| m.unit = "ms".into(),
        ];
        for (k, change) in changes.iter().enumerate() {
            let mut c = m.clone();
            change(&mut c);
            assert_ne!(fp(&c), Some(base), "change {k}");
        }
        assert_eq!(
            PointView::of(&m, "{\"a\":1}", "")
                .fingerprint()
                .map(|f| f == base),
            Some(false)
        );
        let mut zero = m.clone();
        zero.time_ns = 0;
        assert_eq!(fp(&zero), None, "no time: never a copy");
    }
}
