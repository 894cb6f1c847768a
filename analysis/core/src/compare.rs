//! `compare`: what the slow traces share. The tail cohort (the traces at or above a
//! percentile, by rank as in the report) against the 40th–60th band, over every span
//! attribute, every resource attribute, span names, error status and the route.
//!
//! A trace *has* a value when any of its spans (or their resources) carries it.
//! Aliases of one semantic convention count as one key (`llm.model_name` is
//! `gen_ai.request.model`). Numeric keys with many values are put into 1-2-5 bands of
//! the trace's largest value (input tokens `2000..5000`). Ids (keys whose values are
//! nearly all different), times and durations (effects of slowness, not causes),
//! long texts and values seen in a single trace are ignored. Values that mark exactly
//! the same traces are reported once, with the others in `same_traces`.
//!
//! Ranking: each value's *excess time explained* (`excess_ns`): the tail traces beyond
//! those the baseline share predicts (`tail_traces · (1 − 1/lift)`) times their mean
//! excess over the p50. A value in every slow trace and few others explains nearly
//! all of it; a rare value with a huge lift covers little of the tail and explains
//! little. The list is built greedily: first the value that explains the most, then
//! the one that explains the most among the tail traces the first does not have, and
//! so on; `score` is what each adds, as a share of the tail's whole excess, so scores
//! fall down the list and values that only echo one above (the tools of a slow route,
//! its span names) drop out.

use crate::hash::FastMap;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write;
use tailscope_model::samples::{CohortRanks, CohortSpan, CohortTrace, CohortValue, ValueOn};
use tailscope_model::semconv::canonical_key as canonical;

/// What to compare.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    /// The tail: traces at or above this percentile (default 99).
    pub percentile: f64,
    /// Most values listed (default 20).
    pub limit: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            percentile: 99.0,
            limit: 20,
        }
    }
}

/// The tail against the median band, value by value (design.md's `compare` JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub percentile: f64,
    pub tail_traces: usize,
    pub baseline_traces: usize,
    /// Most telling first.
    pub attributes: Vec<AttributeShare>,
    /// The nearest-rank p50 of all traces (the excess of a tail trace is over it).
    #[serde(skip)]
    pub p50_ns: i64,
    /// The fastest trace of the tail.
    #[serde(skip)]
    pub tail_from_ns: i64,
    /// The tail's whole excess over the p50.
    #[serde(skip)]
    pub tail_excess_ns: i64,
}

/// One attribute value's presence in the tail and in the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeShare {
    pub key: String,
    pub value: String,
    /// Share of tail traces that have it.
    pub tail_share: f64,
    /// Share of median-band traces that have it.
    pub baseline_share: f64,
    /// `tail_share / baseline_share` (a baseline share of 0 counts as half a trace).
    pub lift: f64,
    /// Tail traces that have it.
    pub tail_traces: usize,
    /// Excess time over the p50 of the tail traces beyond what the baseline share
    /// predicts, on its own (see the module doc).
    pub excess_ns: i64,
    /// The share of the tail's whole excess (0..=1) the value explains beyond the
    /// values listed above it; falls down the list.
    pub score: f64,
    /// Other `key=value`s that mark exactly the same traces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub same_traces: Vec<String>,
    /// Median-band traces that have it.
    #[serde(skip)]
    pub baseline_traces: usize,
}

/// Distinct values above which a key whose name says id is an id (share of cohort traces).
const ID_DISTINCT_SHARE: f64 = 0.25;
/// Distinct values above which any key is an id or free text (share of cohort traces, at least 64).
const FREE_DISTINCT_SHARE: f64 = 0.5;
/// Numeric keys with at most this many distinct values stay categorical.
const MAX_CATEGORIES: usize = 12;
/// Longer string values are free text, not a value to compare.
const MAX_VALUE_LEN: usize = 200;

/// Times, durations and timestamps: what slowness does, not what slow traces share.
fn is_time_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    (k.contains("time") && !k.contains("runtime"))
        || [
            "latency", "duration", "elapsed", "e2e", "_ns", "_ms", "wait",
        ]
        .iter()
        .any(|w| k.contains(w))
}

fn is_id_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("id") || k.ends_with("ids") || k.ends_with("uuid") || k.ends_with("_key")
}

/// The 1-2-5 band of `x`: `2000..5000`, `0`, `0.1..0.2`, `-50..-20`.
#[allow(clippy::many_single_char_names)] // x, a, e, p, m: the arithmetic's own names
pub fn band(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return num(x);
    }
    let a = x.abs();
    let e = a.log10().floor();
    let p = 10f64.powf(e);
    let m = a / p;
    let (lo, hi) = if m < 2.0 {
        (1.0, 2.0)
    } else if m < 5.0 {
        (2.0, 5.0)
    } else {
        (5.0, 10.0)
    };
    let (lo, hi) = (lo * p, hi * p);
    if x > 0.0 {
        format!("{}..{}", num(lo), num(hi))
    } else {
        format!("-{}..-{}", num(hi), num(lo))
    }
}

/// A number as a person writes it: integers without a fraction, else 3 significant digits.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let digits = (2 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
        let s = format!("{x:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    }
}

impl KeyAcc {
    /// An id or free text: forget its values and take no more.
    fn drop_values(&mut self) {
        self.dropped = true;
        self.cats = FastMap::default();
        self.nums = Vec::new();
    }
}

/// Per key: the cohort traces (slots) of each value.
#[derive(Default)]
struct KeyAcc {
    cats: FastMap<String, Vec<u32>>,
    nums: Vec<(u32, f64)>,
    distinct_nums: Vec<f64>,
    dropped: bool,
    id_like: bool,
}

struct Acc {
    keys: Vec<(String, KeyAcc)>,
    index: FastMap<String, Option<usize>>,
    /// Distinct values above which a key is dropped (ids), for id-named and other keys.
    max_id: usize,
    max_free: usize,
}

impl Acc {
    fn new(slots: usize) -> Self {
        Self {
            keys: Vec::new(),
            index: FastMap::default(),
            max_id: ((slots as f64 * ID_DISTINCT_SHARE) as usize).max(8),
            max_free: ((slots as f64 * FREE_DISTINCT_SHARE) as usize).max(64),
        }
    }

    /// The accumulator of a raw key (`None`: ignored key).
    fn key(&mut self, raw: &str, filter_times: bool) -> Option<usize> {
        if let Some(k) = self.index.get(raw) {
            return *k;
        }
        let canon = canonical(raw);
        let k = if filter_times && is_time_key(canon) {
            None
        } else if let Some(i) = self.keys.iter().position(|(n, _)| n == canon) {
            Some(i)
        } else {
            self.keys.push((
                canon.to_owned(),
                KeyAcc {
                    id_like: is_id_key(canon),
                    ..KeyAcc::default()
                },
            ));
            Some(self.keys.len() - 1)
        };
        self.index.insert(raw.to_owned(), k);
        k
    }

    fn add_str(&mut self, k: usize, slot: u32, v: &str) {
        if v.is_empty() || v.len() > MAX_VALUE_LEN {
            return;
        }
        let (max_id, max_free) = (self.max_id, self.max_free);
        let acc = &mut self.keys[k].1;
        if acc.dropped {
            return;
        }
        if let Some(s) = acc.cats.get_mut(v) {
            s.push(slot);
            return;
        }
        acc.cats.insert(v.to_owned(), vec![slot]);
        let limit = if acc.id_like { max_id } else { max_free };
        if acc.cats.len() > limit {
            acc.drop_values();
        }
    }

    /// Adds another worker's values.
    fn merge(&mut self, other: Acc) {
        for (name, o) in other.keys {
            let Some(k) = self.key(&name, false) else {
                continue;
            };
            let limit = if o.id_like {
                self.max_id
            } else {
                self.max_free
            };
            let acc = &mut self.keys[k].1;
            if acc.dropped {
                continue;
            }
            if o.dropped {
                acc.drop_values();
                continue;
            }
            for (v, slots) in o.cats {
                acc.cats.entry(v).or_default().extend(slots);
            }
            acc.nums.extend(o.nums);
            for x in o.distinct_nums {
                if acc.distinct_nums.len() <= MAX_CATEGORIES && !acc.distinct_nums.contains(&x) {
                    acc.distinct_nums.push(x);
                }
            }
            if acc.cats.len() > limit {
                acc.drop_values();
            }
        }
    }

    fn add_num(&mut self, k: usize, slot: u32, x: f64) {
        // whole numbers from 1e9 up are epoch timestamps (seconds to nanoseconds), not
        // attributes to compare
        if !x.is_finite() || (x.abs() >= 1e9 && x.fract() == 0.0) {
            return;
        }
        let acc = &mut self.keys[k].1;
        if acc.dropped {
            return;
        }
        acc.nums.push((slot, x));
        if acc.distinct_nums.len() <= MAX_CATEGORIES && !acc.distinct_nums.contains(&x) {
            acc.distinct_nums.push(x);
        }
    }

    /// One raw JSON attribute value.
    fn add_json(&mut self, k: usize, slot: u32, raw: &str) {
        match raw.as_bytes().first() {
            Some(b'"') => {
                if raw.contains('\\') {
                    if let Ok(s) = serde_json::from_str::<String>(raw) {
                        self.add_str(k, slot, &s);
                    }
                } else if raw.len() >= 2 {
                    self.add_str(k, slot, &raw[1..raw.len() - 1]);
                }
            }
            Some(b't' | b'f' | b'[' | b'{') => self.add_str(k, slot, raw),
            Some(b'n') | None => {}
            Some(_) => {
                if let Ok(x) = raw.parse::<f64>() {
                    self.add_num(k, slot, x);
                }
            }
        }
    }
}

/// A JSON object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Calls `f(key, raw value)` for each entry of a JSON object, without building values.
struct Entries<'f, F>(&'f mut F);

impl<'de, F: FnMut(&str, &'de RawValue)> Visitor<'de> for Entries<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<Key<'de>>()? {
            let v: &'de RawValue = m.next_value()?;
            (self.0)(&k.0, v);
        }
        Ok(())
    }
}

impl<'de, F: FnMut(&str, &'de RawValue)> DeserializeSeed<'de> for Entries<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Each entry of the JSON object `json` (nothing for anything else).
fn for_each_entry<'a>(json: &'a str, mut f: impl FnMut(&str, &'a RawValue)) {
    let mut d = serde_json::Deserializer::from_str(json);
    // a malformed attributes column contributes nothing rather than failing the comparison
    let _ = Entries(&mut f).deserialize(&mut d);
}

/// Key priority when values mark the same traces: where a person looks first.
fn key_rank(key: &str) -> usize {
    const ORDER: [&str; 10] = [
        "server.address",
        "host.name",
        "gen_ai.request.model",
        "tenant.id",
        "enduser.id",
        "service.name",
        "route",
        "gen_ai.tool.name",
        "gen_ai.agent.name",
        "span.name",
    ];
    ORDER.iter().position(|k| *k == key).unwrap_or(ORDER.len())
}

/// One cohort trace.
struct Slot {
    tail: bool,
    base: bool,
    /// Excess over the p50 (tail traces only).
    excess: i64,
}

/// The cohort ranks of `n` traces at `percentile` (the tail from, the 40th–60th band,
/// the p50), as [`crate::tail::cohorts`] and the report's tables define them.
pub fn cohort_ranks(n: usize, percentile: f64) -> CohortRanks {
    let k =
        ((n as f64 * (100.0 - percentile) / 100.0).ceil() as usize).clamp(usize::from(n > 0), n);
    let lo = ((n as f64 * 0.4).ceil() as usize).saturating_sub(1);
    let hi = ((n as f64 * 0.6).ceil() as usize).min(n);
    CohortRanks {
        traces: n,
        tail_from: n - k,
        band_from: lo.min(hi),
        band_to: hi,
        p50: ((n as f64 * 0.5).ceil() as usize).max(1) - 1,
    }
}

/// The cohorts' traces as slots (tail, band, excess over the p50), ready to take
/// their spans' values.
pub struct Cohort {
    slots: Vec<Slot>,
    slot_of: FastMap<usize, u32>,
    routes: Vec<String>,
    p50: i64,
}

/// One share of the cohorts' span rows: the values it saw, and each row's
/// (slot, resource).
pub struct Scan<'c> {
    slot_of: &'c FastMap<usize, u32>,
    acc: Acc,
    resources: Vec<(u32, i64)>,
    /// Resource values sent as values (slot, key, value): taken after every span's,
    /// as the resources of `resources` are.
    resource_values: Vec<(u32, String, String)>,
    name_key: Option<usize>,
    status_key: Option<usize>,
}

impl Scan<'_> {
    /// Takes one span's name, error status and attributes.
    pub fn add(&mut self, row: CohortSpan<'_>) {
        let Some(&slot) = self.slot_of.get(&row.rank) else {
            return;
        };
        self.resources.push((slot, row.resource_id));
        if let Some(k) = self.name_key {
            self.acc.add_str(k, slot, row.name);
        }
        if let (Some(k), true) = (self.status_key, row.error) {
            self.acc.add_str(k, slot, "error");
        }
        if let Some(json) = row.attributes {
            let acc = &mut self.acc;
            for_each_entry(json, |key, raw| {
                if let Some(k) = acc.key(key, true) {
                    acc.add_json(k, slot, raw.get());
                }
            });
        }
    }

    /// Takes one value a source found on a cohort trace (what it sends instead of the
    /// spans): read as the same value on a span would be.
    pub fn add_value(&mut self, v: CohortValue) {
        let Some(&slot) = self.slot_of.get(&v.rank) else {
            return;
        };
        match v.on {
            ValueOn::Name => {
                if let Some(k) = self.name_key {
                    self.acc.add_str(k, slot, &v.value);
                }
            }
            ValueOn::Error => {
                if let Some(k) = self.status_key {
                    self.acc.add_str(k, slot, "error");
                }
            }
            ValueOn::Span => {
                if let Some(k) = self.acc.key(&v.key, true) {
                    self.acc.add_json(k, slot, &v.value);
                }
            }
            ValueOn::Resource => self.resource_values.push((slot, v.key, v.value)),
        }
    }
}

impl Cohort {
    /// The cohorts of `traces` (those of `ranks`, by rank).
    pub fn new(ranks: &CohortRanks, traces: Vec<CohortTrace>) -> Self {
        let n = ranks.traces;
        let p50 = traces
            .iter()
            .find(|t| t.rank == ranks.p50)
            .map_or(0, |t| t.duration_ns);
        let mut slot_of: FastMap<usize, u32> = FastMap::default();
        let mut slots: Vec<Slot> = Vec::with_capacity(traces.len());
        let mut routes = Vec::with_capacity(traces.len());
        for t in traces {
            let tail = t.rank >= ranks.tail_from && t.rank < n;
            slot_of.insert(t.rank, slots.len() as u32);
            slots.push(Slot {
                tail,
                base: t.rank >= ranks.band_from && t.rank < ranks.band_to,
                excess: if tail {
                    (t.duration_ns - p50).max(0)
                } else {
                    0
                },
            });
            routes.push(t.route);
        }
        Self {
            slots,
            slot_of,
            routes,
            p50,
        }
    }

    /// An empty share to scan span rows into.
    pub fn scan(&self) -> Scan<'_> {
        let mut acc = Acc::new(self.slots.len());
        let (name_key, status_key) = (acc.key("span.name", false), acc.key("span.status", false));
        Scan {
            slot_of: &self.slot_of,
            acc,
            resources: Vec::new(),
            resource_values: Vec::new(),
            name_key,
            status_key,
        }
    }

    /// The comparison from the scanned shares and every resource attribute
    /// (resource id, key, value).
    pub fn finish(
        &self,
        scans: Vec<Scan<'_>>,
        resource_attributes: Vec<(i64, String, String)>,
        opts: &CompareOptions,
    ) -> Comparison {
        let mut acc = Acc::new(self.slots.len());
        let mut resources: Vec<(u32, i64)> = Vec::new();
        let mut resource_values = Vec::new();
        for s in scans {
            acc.merge(s.acc);
            resources.extend(s.resources);
            resource_values.extend(s.resource_values);
        }
        if let Some(k) = acc.key("route", false) {
            for (route, i) in self.routes.iter().zip(0u32..) {
                acc.add_str(k, i, route);
            }
        }
        resources.sort_unstable();
        resources.dedup();
        let mut res_attrs: FastMap<i64, Vec<(String, String)>> = FastMap::default();
        for (id, k, v) in resource_attributes {
            res_attrs.entry(id).or_default().push((k, v));
        }
        for (slot, id) in resources {
            for (k, v) in res_attrs.get(&id).map_or(&[][..], Vec::as_slice) {
                if let Some(k) = acc.key(k, false) {
                    acc.add_str(k, slot, v);
                }
            }
        }
        for (slot, k, v) in resource_values {
            if let Some(k) = acc.key(&k, false) {
                acc.add_str(k, slot, &v);
            }
        }
        score(acc, &self.slots, opts, self.p50)
    }
}

/// Shares, lift, excess and score of every value; same-trace values merged; ranked.
fn score(acc: Acc, slots: &[Slot], opts: &CompareOptions, p50: i64) -> Comparison {
    let n_tail = slots.iter().filter(|s| s.tail).count();
    let n_base = slots.iter().filter(|s| s.base).count();
    let total_excess: i64 = slots.iter().map(|s| s.excess).sum();
    let tail_from = slots
        .iter()
        .filter(|s| s.tail)
        .map(|s| s.excess + p50)
        .min()
        .unwrap_or(0);
    let mut rows: Vec<(AttributeShare, u64, Vec<u32>)> = Vec::new();
    for (key, mut k) in acc.keys {
        if k.dropped {
            continue;
        }
        if !k.nums.is_empty() {
            let categorical = k.distinct_nums.len() <= MAX_CATEGORIES;
            let mut nums = std::mem::take(&mut k.nums);
            if categorical {
                for (slot, x) in nums {
                    k.cats.entry(num(x)).or_default().push(slot);
                }
            } else {
                // the trace's largest value, banded
                nums.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
                nums.dedup_by_key(|x| x.0);
                for (slot, x) in nums {
                    k.cats.entry(band(x)).or_default().push(slot);
                }
            }
        }
        for (value, mut traces) in k.cats {
            traces.sort_unstable();
            traces.dedup();
            let (mut t, mut b, mut excess) = (0usize, 0usize, 0i64);
            let mut fp: u64 = 0xcbf2_9ce4_8422_2325;
            for &s in &traces {
                let slot = &slots[s as usize];
                t += usize::from(slot.tail);
                b += usize::from(slot.base);
                if slot.tail {
                    excess += slot.excess;
                }
                fp = (fp ^ u64::from(s)).wrapping_mul(0x0100_0000_01b3);
            }
            if t == 0 || traces.len() < 2 {
                continue;
            }
            let tail_share = t as f64 / n_tail.max(1) as f64;
            let baseline_share = b as f64 / n_base.max(1) as f64;
            let lift = tail_share / baseline_share.max(0.5 / n_base.max(1) as f64);
            if lift <= 1.0 {
                continue;
            }
            let explained = (excess as f64 * (1.0 - 1.0 / lift)).round() as i64;
            rows.push((
                AttributeShare {
                    key: key.clone(),
                    value,
                    tail_share,
                    baseline_share,
                    lift,
                    tail_traces: t,
                    excess_ns: explained,
                    score: explained as f64 / total_excess.max(1) as f64,
                    same_traces: Vec::new(),
                    baseline_traces: b,
                },
                fp,
                traces,
            ));
        }
    }
    // twins (values that mark exactly the same traces) fold into the one a person
    // looks at first
    rows.sort_by(|(a, _, _), (b, _, _)| {
        b.score
            .total_cmp(&a.score)
            .then(b.tail_traces.cmp(&a.tail_traces))
            .then(key_rank(&a.key).cmp(&key_rank(&b.key)))
            .then(a.key.cmp(&b.key))
            .then(a.value.cmp(&b.value))
    });
    let mut candidates: Vec<(AttributeShare, Vec<u32>)> = Vec::new();
    let mut seen: HashMap<(u64, usize, usize), usize> = HashMap::new();
    for (row, fp, traces) in rows {
        let id = (fp, row.tail_traces, row.baseline_traces);
        if let Some(&i) = seen.get(&id) {
            let same = format!("{}={}", row.key, row.value);
            candidates[i].0.same_traces.push(same);
        } else {
            seen.insert(id, candidates.len());
            candidates.push((row, traces));
        }
    }
    let out = explain(candidates, slots, total_excess, opts.limit);
    Comparison {
        percentile: opts.percentile,
        tail_traces: n_tail,
        baseline_traces: n_base,
        attributes: out,
        p50_ns: p50,
        tail_from_ns: tail_from,
        tail_excess_ns: total_excess,
    }
}

/// The smallest share of the tail's excess a value must explain beyond those above it.
const MIN_SCORE: f64 = 0.001;

/// Greedy explanation: repeatedly the value that explains the most excess among the
/// tail traces no value above it has (each value keeps its own lift, so what a value
/// adds only shrinks as values are picked and the scores fall down the list), its
/// `score` that share of the whole excess; stops at `limit` values or when nothing adds
/// [`MIN_SCORE`]. Values implied by one above (same traces, or a subset) drop out.
fn explain(
    mut candidates: Vec<(AttributeShare, Vec<u32>)>,
    slots: &[Slot],
    total_excess: i64,
    limit: usize,
) -> Vec<AttributeShare> {
    let mut covered = vec![false; slots.len()];
    let mut out = Vec::new();
    while out.len() < limit && !candidates.is_empty() {
        let mut best: Option<(usize, f64)> = None;
        for (i, (row, traces)) in candidates.iter().enumerate() {
            let excess: i64 = traces
                .iter()
                .filter(|&&x| !covered[x as usize])
                .map(|&x| slots[x as usize].excess)
                .sum();
            let gain = excess as f64 * (1.0 - 1.0 / row.lift);
            // candidates are in raw-score order, so ties keep the better raw value
            if best.is_none_or(|(_, g)| gain > g) {
                best = Some((i, gain));
            }
        }
        let Some((i, gain)) = best else {
            break;
        };
        let score = gain / total_excess.max(1) as f64;
        if score < MIN_SCORE {
            break;
        }
        let (mut row, traces) = candidates.remove(i);
        for x in traces {
            covered[x as usize] = true;
        }
        row.score = score;
        out.push(row);
    }
    out
}

use crate::text::secs;

impl Comparison {
    /// The readable table.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "What the slow traces share: the {} traces at or above p{} (from {}) against the {} of the 40th–60th percentile band (p50 {}).",
            self.tail_traces,
            self.percentile,
            secs(self.tail_from_ns),
            self.baseline_traces,
            secs(self.p50_ns)
        );
        if self.attributes.is_empty() {
            let _ = writeln!(
                o,
                "\nNo attribute value is more common in the tail than around the median."
            );
            return o;
        }
        let _ = writeln!(
            o,
            "Each value explains a share of the tail's excess time over the p50 ({} in all) beyond the values above it; excess: what it explains on its own.\n",
            secs(self.tail_excess_ns)
        );
        let _ = writeln!(
            o,
            "  {:>8}  {:>6}  {:>8}  {:>7}  {:>9}  attribute",
            "explains", "tail", "baseline", "lift", "excess"
        );
        for a in &self.attributes {
            let lift = if a.lift >= 1000.0 {
                ">1000×".to_owned()
            } else if a.lift >= 100.0 {
                format!("{:.0}×", a.lift)
            } else {
                format!("{:.1}×", a.lift)
            };
            let _ = writeln!(
                o,
                "  {:>7.1}%  {:>5.1}%  {:>7.1}%  {:>7}  {:>9}  {} = {}",
                a.score * 100.0,
                a.tail_share * 100.0,
                a.baseline_share * 100.0,
                lift,
                secs(a.excess_ns),
                a.key,
                a.value
            );
            if !a.same_traces.is_empty() {
                let mut same = a.same_traces.clone();
                let more = same.len().saturating_sub(4);
                same.truncate(4);
                let _ = writeln!(
                    o,
                    "  {:>50}same traces: {}{}",
                    "",
                    same.join(", "),
                    if more > 0 {
                        format!(" (+{more} more)")
                    } else {
                        String::new()
                    }
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bands_read_as_people_write_them() {
        assert_eq!(band(2458.0), "2000..5000");
        assert_eq!(band(84.0), "50..100");
        assert_eq!(band(1.0), "1..2");
        assert_eq!(band(0.0), "0");
        assert_eq!(band(0.35), "0.2..0.5");
        assert_eq!(band(-30.0), "-50..-20");
        assert_eq!(num(0.7), "0.7");
        assert_eq!(num(1024.0), "1024");
    }

    #[test]
    fn aliases_fold_and_times_are_ignored() {
        assert_eq!(canonical("llm.model_name"), "gen_ai.request.model");
        assert_eq!(canonical("gen_ai.response.model"), "gen_ai.request.model");
        assert_eq!(
            canonical("llm.token_count.prompt"),
            "gen_ai.usage.input_tokens"
        );
        assert_eq!(canonical("host.name"), "host.name");
        for k in [
            "gen_ai.latency.time_in_queue",
            "db.client.connection.wait_time",
            "gen_ai.response.time_to_first_chunk",
            "app.duration_ms",
        ] {
            assert!(is_time_key(k), "{k}");
        }
        for k in [
            "server.address",
            "process.runtime.name",
            "gen_ai.request.temperature",
        ] {
            assert!(!is_time_key(k), "{k}");
        }
        assert!(is_id_key("gen_ai.response.id") && is_id_key("session.id"));
    }

    #[test]
    fn entries_of_a_json_object_borrow_and_unescape() {
        let mut seen = Vec::new();
        for_each_entry(
            r#"{"a":"x","b\"q":1.5,"c":true,"d":[1,2],"e":null,"f":"y\"z"}"#,
            |k, v| seen.push((k.to_owned(), v.get().to_owned())),
        );
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[1], ("b\"q".to_owned(), "1.5".to_owned()));
        let mut acc = Acc::new(10);
        let k = acc.key("f", true).unwrap();
        acc.add_json(k, 0, r#""y\"z""#);
        acc.add_json(k, 1, "true");
        assert!(acc.keys[k].1.cats.contains_key("y\"z"));
        assert!(acc.keys[k].1.cats.contains_key("true"));
        for_each_entry("not json", |_, _| panic!("no entries"));
    }

    fn slots(tail: usize, base: usize) -> Vec<Slot> {
        (0..tail)
            .map(|_| Slot {
                tail: true,
                base: false,
                excess: 1_000,
            })
            .chain((0..base).map(|_| Slot {
                tail: false,
                base: true,
                excess: 0,
            }))
            .collect()
    }

    /// A value in most slow traces outranks a rare value with a far larger lift, ids
    /// are dropped, values that mark the same traces are merged.
    #[test]
    fn coverage_beats_rare_lift_ids_drop_and_twins_merge() {
        let s = slots(20, 200);
        let mut acc = Acc::new(s.len());
        let host = acc.key("host.name", false).unwrap();
        let addr = acc.key("server.address", true).unwrap();
        let rare = acc.key("app.flag", true).unwrap();
        let id = acc.key("gen_ai.response.id", true).unwrap();
        for slot in 0..220u32 {
            let slow_host = slot < 16 || (20..30).contains(&slot);
            let h = if slow_host { "gpu-2" } else { "gpu-1" };
            acc.add_str(host, slot, h);
            acc.add_str(addr, slot, &format!("{h}.svc"));
            if slot == 16 || slot == 17 {
                acc.add_str(rare, slot, "on");
            }
            acc.add_str(id, slot, &format!("resp-{slot}"));
        }
        let c = score(acc, &s, &CompareOptions::default(), 100);
        let first = &c.attributes[0];
        assert_eq!(
            (first.key.as_str(), first.value.as_str()),
            ("server.address", "gpu-2.svc"),
            "{:#?}",
            c.attributes
        );
        assert_eq!(first.same_traces, ["host.name=gpu-2"]);
        assert_eq!(first.tail_traces, 16);
        assert!((first.lift - 0.8 / 0.05).abs() < 1e-9);
        assert!(first.score > 0.7 && first.score <= 1.0);
        let flag = c.attributes.iter().find(|a| a.key == "app.flag").unwrap();
        assert!(flag.lift > first.lift && flag.score < first.score / 5.0);
        assert!(c.attributes.iter().all(|a| a.key != "gen_ai.response.id"));
        assert_eq!((c.tail_traces, c.baseline_traces), (20, 200));
    }

    #[test]
    fn numbers_band_by_the_traces_largest_value_unless_few() {
        let s = slots(2, 4);
        let mut acc = Acc::new(s.len());
        let tok = acc.key("llm.token_count.prompt", true).unwrap();
        let temp = acc.key("gen_ai.request.temperature", true).unwrap();
        for slot in 0..6u32 {
            for x in 0..14 {
                let base = if slot < 2 { 6000 } else { 100 + slot * 10 };
                acc.add_num(tok, slot, f64::from(base + x));
            }
            acc.add_num(temp, slot, 0.7);
        }
        let c = score(acc, &s, &CompareOptions::default(), 0);
        let tok: Vec<&str> = c
            .attributes
            .iter()
            .filter(|a| a.key == "gen_ai.usage.input_tokens")
            .map(|a| a.value.as_str())
            .collect();
        assert_eq!(tok, ["5000..10000"], "{:#?}", c.attributes);
        // 0.7 is in every trace: no lift
        assert!(c
            .attributes
            .iter()
            .all(|a| a.key != "gen_ai.request.temperature"));
    }

    /// A source that sends each trace's distinct values instead of its spans gets the
    /// same comparison as one that sends the spans (repeats, resources and times
    /// included).
    #[test]
    fn values_sent_instead_of_spans_compare_the_same() {
        let ranks = cohort_ranks(100, 90.0);
        let traces: Vec<CohortTrace> = (0..100)
            .filter(|&r| ranks.contains(r))
            .map(|r| CohortTrace {
                rank: r,
                duration_ns: 1_000 + r as i64 * 10,
                route: if r % 3 == 0 { "api chat" } else { "api plan" }.into(),
            })
            .collect();
        let cohort = Cohort::new(&ranks, traces);
        // resource 1 or 2 per trace: slow traces mostly on gpu-b
        let res_of = |r: usize| if r >= 90 && r % 5 != 0 { 2 } else { 1 };
        let attrs = |r: usize, i: usize| {
            format!(
                r#"{{"gen_ai.request.model":"{}","llm.token_count.prompt":{},"app.note":"q\"{}","gen_ai.latency.time_in_queue":{}}}"#,
                if r >= 92 && r % 2 == 0 {
                    "big"
                } else {
                    "small"
                },
                r * 37 + i,
                i % 2,
                r
            )
        };
        let mut by_spans = cohort.scan();
        let mut by_values = cohort.scan();
        let mut values = Vec::new();
        for r in (0..100).filter(|&r| ranks.contains(r)) {
            for i in 0..3 {
                let a = attrs(r, i);
                let name = if i == 2 && r > 95 { "retry" } else { "call" };
                by_spans.add(CohortSpan {
                    rank: r,
                    resource_id: res_of(r),
                    name,
                    error: r % 7 == 0,
                    attributes: Some(&a),
                });
                values.push(CohortValue {
                    rank: r,
                    on: ValueOn::Name,
                    key: String::new(),
                    value: name.into(),
                });
                if r % 7 == 0 {
                    values.push(CohortValue {
                        rank: r,
                        on: ValueOn::Error,
                        key: String::new(),
                        value: String::new(),
                    });
                }
                for_each_entry(&a, |k, v| {
                    values.push(CohortValue {
                        rank: r,
                        on: ValueOn::Span,
                        key: k.to_owned(),
                        value: v.get().to_owned(),
                    });
                });
            }
            let host = if res_of(r) == 2 { "gpu-b" } else { "gpu-a" };
            values.push(CohortValue {
                rank: r,
                on: ValueOn::Resource,
                key: "host.name".into(),
                value: host.into(),
            });
        }
        values.sort_by(|a, b| (&a.key, &a.value, a.rank).cmp(&(&b.key, &b.value, b.rank)));
        values.dedup();
        for v in values {
            by_values.add_value(v);
        }
        let res = vec![
            (1, "host.name".to_owned(), "gpu-a".to_owned()),
            (2, "host.name".to_owned(), "gpu-b".to_owned()),
        ];
        let opts = CompareOptions::default();
        let a = cohort.finish(vec![by_spans], res, &opts);
        let b = cohort.finish(vec![by_values], Vec::new(), &opts);
        // the resource's host is what most slow traces share
        assert_eq!(
            (a.attributes[0].key.as_str(), a.attributes[0].value.as_str()),
            ("host.name", "gpu-b"),
            "{:#?}",
            a.attributes
        );
        assert_eq!(a, b);
    }

    #[test]
    fn cohorts_match_the_report() {
        let durations: Vec<i64> = (0..1000).collect();
        let (tail, mid, _, _) = crate::tail::cohorts(&durations, 99.0);
        let c = cohort_ranks(1000, 99.0);
        assert_eq!(tail, (c.tail_from..1000).collect::<Vec<_>>());
        assert_eq!(mid, (c.band_from..c.band_to).collect::<Vec<_>>());
        let empty = cohort_ranks(0, 99.0);
        assert_eq!((empty.tail_from, empty.band_from, empty.band_to), (0, 0, 0));
    }
}
