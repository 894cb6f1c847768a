//! `diff`: what changed between two periods of one store, or between two stores.
//!
//! For each route (the root's service and operation) the p50 and p99 of trace
//! durations and the mean critical-path time per cause; for each (service, operation)
//! the p50 and p99 of span durations; for LLM calls per (model, server) the medians of
//! TTFT, decode time per output token and output tokens per streamed chunk, the mean
//! output tokens (answer lengths are multi-modal, a median jumps between the modes)
//! and the cache-hit ratio (cached / input tokens). Traces belong to the period their
//! root starts in, spans and calls to the one they start in.
//!
//! Every shift comes with a confidence interval of the relative change
//! (`after / before − 1`): quantiles and medians with cluster-robust Woodruff intervals
//! ([`crate::stats::quantile_shift`]), means and ratios with a seeded cluster bootstrap
//! ([`crate::stats::bootstrap_sums`]). Clusters are conversations (else traces): one
//! conversation's traces and calls resemble each other, and counting them as
//! independent would call chance a change. The same store gives the same answer. A change is `significant` only when its interval excludes 0 *and* it is
//! material: at least `min_change` relative (10%), and for times at least 1 ms (a
//! cause's mean at least 2% of the route's mean duration). The headline names the
//! route that got slower (or faster) the most, the cause that moved most on its
//! critical path, and the LLM metric behind that cause.

use crate::cols::FastMap;
use crate::cols::{opt_f64, opt_i64, Cols};
use crate::stats::{bootstrap_shift, bootstrap_sums, quantile_shift, Shift, MIN_CLUSTERS};
use crate::AnalysisError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;
use tailscope_store::arrow::array::AsArray;
use tailscope_store::arrow::datatypes::{Float64Type, Int64Type};
use tailscope_store::{Store, CAUSE_COLUMNS};

/// A time span of the store, `[from_ns, to_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ns: i64,
    pub to_ns: i64,
}

/// One end of a window as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Empty: the store's first (or last) span.
    Open,
    /// An instant, ns since the Unix epoch.
    At(i64),
    /// `-2h`: this long before the store's newest span start.
    BeforeEnd(i64),
}

/// `T1..T2` as written: each side empty, an RFC 3339 time (`2026-03-02T09:00:00Z`),
/// a date (`2026-03-02`, UTC midnight), Unix time (seconds, ms, µs or ns, told apart
/// by size), `now`, or `-30m` / `-2h` / `-1d` before the store's newest span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub from: Bound,
    pub to: Bound,
}

impl std::str::FromStr for WindowSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once("..").ok_or_else(|| {
            format!("'{s}' is not a period: write FROM..TO, either side may be empty (..2026-03-02T10:00:00Z)")
        })?;
        Ok(Self {
            from: parse_bound(a.trim())?,
            to: parse_bound(b.trim())?,
        })
    }
}

impl WindowSpec {
    /// The window over a store whose spans start in `range` (`[first, last + 1)`).
    pub fn resolve(&self, range: (i64, i64)) -> Window {
        let at = |b: Bound, open: i64| match b {
            Bound::Open => open,
            Bound::At(t) => t,
            Bound::BeforeEnd(d) => range.1.saturating_sub(d),
        };
        Window {
            from_ns: at(self.from, range.0),
            to_ns: at(self.to, range.1),
        }
    }
}

fn parse_bound(s: &str) -> Result<Bound, String> {
    if s.is_empty() {
        return Ok(Bound::Open);
    }
    if s == "now" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        return Ok(Bound::At(now));
    }
    let bad = || {
        format!("cannot read the time '{s}': use RFC 3339 (2026-03-02T09:00:00Z), a date (2026-03-02), Unix time (seconds to ns), now, or -30m / -2h / -1d before the store's newest span")
    };
    if let Some(rel) = s.strip_prefix('-') {
        let split = rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len());
        let (n, unit) = rel.split_at(split);
        let n: i64 = n.parse().map_err(|_| bad())?;
        let scale: i64 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(bad()),
        };
        return Ok(Bound::BeforeEnd(n.checked_mul(scale).ok_or_else(bad)?));
    }
    if s.bytes().all(|c| c.is_ascii_digit()) {
        let v: i64 = s.parse().map_err(|_| bad())?;
        let ns = if v < 100_000_000_000 {
            v.checked_mul(1_000_000_000)
        } else if v < 100_000_000_000_000 {
            v.checked_mul(1_000_000)
        } else if v < 100_000_000_000_000_000 {
            v.checked_mul(1_000)
        } else {
            Some(v)
        };
        return ns.map(Bound::At).ok_or_else(bad);
    }
    // RFC 3339, a date alone, or a date and time without offset (UTC)
    tailscope_model::time::parse_rfc3339(s)
        .map(Bound::At)
        .ok_or_else(bad)
}

/// An instant as RFC 3339 UTC, to the second (`2026-03-02T09:00:00Z`).
pub use tailscope_model::time::format_rfc3339 as rfc3339;

/// How to judge changes.
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    /// Smallest relative change that counts (default 0.10).
    pub min_change: f64,
    /// Confidence of the intervals (default 0.99: a diff tests a few hundred shifts,
    /// and at 0.95 a quiet period would show some by chance).
    pub confidence: f64,
    /// Bootstrap resamples for means and ratios (default 400).
    pub resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            min_change: 0.10,
            confidence: 0.99,
            resamples: 400,
            seed: 15,
        }
    }
}

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from_ns: i64,
    pub to_ns: i64,
    pub traces: usize,
}

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Route,
    Operation,
    Llm,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Route => "route",
            Scope::Operation => "operation",
            Scope::Llm => "llm",
        }
    }
}

/// One metric of one group before and after (design.md's `diff` JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub scope: Scope,
    /// The service (routes and operations; empty for LLM calls).
    pub service: String,
    /// The root or span name (routes and operations; empty for LLM calls).
    pub operation: String,
    pub model: Option<String>,
    pub server: Option<String>,
    /// `p50_ns`, `p99_ns`, `ttft_ns`, `decode_ns_per_token`, `tokens_per_chunk`,
    /// `output_tokens`, `cache_hit_ratio` or `<cause>_ns`.
    pub metric: String,
    pub before: f64,
    pub after: f64,
    /// `after / before − 1`; null when `before` is 0.
    pub change: Option<f64>,
    /// The confidence interval of `change` (of `after` when `before` is 0); null when
    /// the samples are too small for one (too few values for the quantile, or fewer
    /// than 20 conversations).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub significant: bool,
    /// Observations on each side (traces, spans or calls).
    pub n_before: usize,
    pub n_after: usize,
}

/// Two periods compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub before: Period,
    pub after: Period,
    pub headline: String,
    /// Significant first, largest change first.
    pub changes: Vec<Change>,
    /// The confidence of the intervals.
    #[serde(skip)]
    pub confidence: f64,
}

/// Observations and the cluster each belongs to (a hash of its conversation, else of
/// its trace): one conversation's traces and calls resemble each other, so intervals
/// count clusters, not values.
#[derive(Debug, Clone, Default)]
pub struct Obs {
    pub values: Vec<f64>,
    pub clusters: Vec<u64>,
}

impl Obs {
    pub fn push(&mut self, value: f64, cluster: u64) {
        self.values.push(value);
        self.clusters.push(cluster);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values sorted, with dense cluster ids in the same order.
    fn sorted(&self) -> (Vec<f64>, Vec<u32>) {
        let mut pairs: Vec<(f64, u64)> = self
            .values
            .iter()
            .copied()
            .zip(self.clusters.iter().copied())
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut ids: FastMap<u64, u32> = FastMap::default();
        let mut dense = Vec::with_capacity(pairs.len());
        let mut values = Vec::with_capacity(pairs.len());
        for (v, c) in pairs {
            let next = ids.len() as u32;
            dense.push(*ids.entry(c).or_insert(next));
            values.push(v);
        }
        (values, dense)
    }
}

/// Row-major `rows` (`stride` columns per observation) summed per cluster, with the
/// count of observations as a last column: the rows a cluster bootstrap resamples.
fn per_cluster(rows: &[f64], clusters: &[u64], stride: usize) -> Vec<f64> {
    let mut at: FastMap<u64, usize> = FastMap::default();
    let mut out: Vec<f64> = Vec::new();
    for (row, c) in rows.chunks_exact(stride).zip(clusters) {
        let i = *at.entry(*c).or_insert_with(|| {
            out.extend(std::iter::repeat_n(0.0, stride + 1));
            out.len() - stride - 1
        });
        for (o, v) in out[i..i + stride].iter_mut().zip(row) {
            *o += v;
        }
        out[i + stride] += 1.0;
    }
    out
}

/// The durations and per-cause critical-path times of one route's traces.
#[derive(Debug, Clone, Default)]
pub struct RouteSample {
    pub durations: Obs,
    /// Row-major, [`CAUSE_COLUMNS`] per trace, in the order of `durations`.
    pub causes: Vec<f64>,
}

/// Per-call measures of one (model, server).
#[derive(Debug, Clone, Default)]
pub struct LlmSample {
    pub ttft_ns: Obs,
    pub decode_ns_per_token: Obs,
    pub tokens_per_chunk: Obs,
    pub output_tokens: Obs,
    /// Row-major (cache-read tokens, input tokens) per call with both known.
    pub cache: Vec<f64>,
    pub cache_clusters: Vec<u64>,
    /// The routes (service, operation) whose traces made these calls.
    pub routes: BTreeSet<(String, String)>,
}

/// Everything `diff` needs of one period, read once.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub window: Option<Window>,
    pub traces: usize,
    pub routes: BTreeMap<(String, String), RouteSample>,
    pub operations: BTreeMap<(String, String), Obs>,
    pub llm: BTreeMap<(String, String), LlmSample>,
}

/// `[first span start, last span start + 1)` of a store (`(0, 0)` when empty).
pub fn store_range(store: &Store) -> Result<(i64, i64), AnalysisError> {
    let from = crate::cols::scalar_i64(store, "SELECT min(start_ns)::BIGINT FROM spans")?;
    let to = crate::cols::scalar_i64(store, "SELECT max(start_ns)::BIGINT FROM spans")?;
    Ok((from.unwrap_or(0), to.map_or(0, |t| t.saturating_add(1))))
}

/// SQL for a row's cluster: a hash of its conversation, else of its trace, as BIGINT.
const CLUSTER: &str = "(hash(coalesce(t.conversation_id, t.trace_id)) >> 1)::BIGINT";

/// Reads one period of the store (run [`crate::update`] first so the per-trace results
/// are current).
#[allow(clippy::many_single_char_names)] // one letter per column of a result batch
pub fn sample(store: &Store, w: Window) -> Result<Sample, AnalysisError> {
    let (from, to) = (w.from_ns, w.to_ns);
    let mut s = Sample {
        window: Some(w),
        ..Sample::default()
    };
    let causes = CAUSE_COLUMNS
        .map(|c| format!("t.{c}_ns::DOUBLE AS {c}"))
        .join(", ");
    for b in store.query_arrow(&format!(
        "SELECT t.route, t.duration_ns::DOUBLE AS d, {CLUSTER} AS cl, {causes} FROM trace_analysis t
         WHERE t.start_ns >= {from} AND t.start_ns < {to}"
    ))? {
        let c = Cols(&b);
        let (route, d, cl) = (c.str("route")?, c.f64("d")?, c.i64("cl")?);
        let cols: Vec<_> = CAUSE_COLUMNS
            .iter()
            .map(|n| c.f64(n))
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            let (svc, op) = route
                .value(i)
                .split_once(' ')
                .unwrap_or(("", route.value(i)));
            let r = s.routes.entry((svc.to_owned(), op.to_owned())).or_default();
            r.durations.push(d.value(i), cl.value(i) as u64);
            r.causes
                .extend(cols.iter().map(|c| opt_f64(c, i).unwrap_or(0.0)));
            s.traces += 1;
        }
    }
    for b in store.query_arrow(&format!(
        "SELECT s.service_name, s.name, list(s.duration_ns::DOUBLE) AS d,
                list(coalesce({CLUSTER}, (hash(s.trace_id) >> 1)::BIGINT)) AS cl
         FROM spans s LEFT JOIN trace_analysis t USING (trace_id)
         WHERE s.start_ns >= {from} AND s.start_ns < {to} GROUP BY ALL"
    ))? {
        let c = Cols(&b);
        let (svc, name, d, cl) = (
            c.str("service_name")?,
            c.str("name")?,
            c.list("d")?,
            c.list("cl")?,
        );
        for i in 0..b.num_rows() {
            let (v, k) = (d.value(i), cl.value(i));
            let (Some(v), Some(k)) = (
                v.as_primitive_opt::<Float64Type>(),
                k.as_primitive_opt::<Int64Type>(),
            ) else {
                continue;
            };
            let o = s
                .operations
                .entry((svc.value(i).to_owned(), name.value(i).to_owned()))
                .or_default();
            for (v, k) in v.iter().zip(k.iter()) {
                if let (Some(v), Some(k)) = (v, k) {
                    o.push(v, k as u64);
                }
            }
        }
    }
    // innermost LLM client calls (a call wrapping another is the framework around it)
    // and the server span directly below each
    for b in store.query_arrow(&format!(
        "WITH c AS (
             SELECT trace_id, span_id, model, server_address, duration_ns, time_to_first_chunk_ns,
                    output_tokens, input_tokens, cache_read_tokens, event_count, stream
             FROM spans
             WHERE op_class = 'llm' AND kind <> 'server' AND start_ns >= {from} AND start_ns < {to}),
         wrappers AS (
             SELECT DISTINCT trace_id, parent_span_id AS span_id FROM spans
             WHERE op_class = 'llm' AND kind <> 'server' AND parent_span_id IS NOT NULL
               AND start_ns >= {from} AND start_ns < {to}),
         srv AS (
             SELECT trace_id, parent_span_id AS span_id, max(ttft_ns) AS ttft_ns, max(decode_ns) AS decode_ns
             FROM spans WHERE op_class = 'llm' AND kind = 'server' AND parent_span_id IS NOT NULL
             GROUP BY ALL)
         SELECT coalesce(c.model, '') AS model, coalesce(c.server_address, '') AS server,
                c.duration_ns::BIGINT AS duration_ns, c.time_to_first_chunk_ns::BIGINT AS ttfc,
                c.output_tokens::BIGINT AS output_tokens, c.input_tokens::BIGINT AS input_tokens,
                c.cache_read_tokens::BIGINT AS cache_read, c.event_count::BIGINT AS events,
                (coalesce(c.stream, false))::BIGINT AS stream,
                srv.ttft_ns::BIGINT AS srv_ttft, srv.decode_ns::BIGINT AS srv_decode,
                coalesce({CLUSTER}, (hash(c.trace_id) >> 1)::BIGINT) AS cl, t.route
         FROM c
         ANTI JOIN wrappers w ON w.trace_id = c.trace_id AND w.span_id = c.span_id
         LEFT JOIN srv ON srv.trace_id = c.trace_id AND srv.span_id = c.span_id
         LEFT JOIN trace_analysis t ON t.trace_id = c.trace_id"
    ))? {
        let c = Cols(&b);
        let (model, server, dur, ttfc, out, input, cache, events, stream, s_ttft, s_dec, cl) = (
            c.str("model")?,
            c.str("server")?,
            c.i64("duration_ns")?,
            c.i64("ttfc")?,
            c.i64("output_tokens")?,
            c.i64("input_tokens")?,
            c.i64("cache_read")?,
            c.i64("events")?,
            c.i64("stream")?,
            c.i64("srv_ttft")?,
            c.i64("srv_decode")?,
            c.i64("cl")?,
        );
        let route = c.str("route")?;
        for i in 0..b.num_rows() {
            let k = cl.value(i) as u64;
            let l = s
                .llm
                .entry((model.value(i).to_owned(), server.value(i).to_owned()))
                .or_default();
            if let Some(r) = crate::cols::opt_str(route, i) {
                let (svc, op) = r.split_once(' ').unwrap_or(("", r));
                if !l.routes.contains(&(svc.to_owned(), op.to_owned())) {
                    l.routes.insert((svc.to_owned(), op.to_owned()));
                }
            }
            let out = opt_i64(out, i).filter(|o| *o > 0);
            let ttfc = opt_i64(ttfc, i).filter(|t| *t >= 0);
            if let Some(t) = ttfc.or_else(|| opt_i64(s_ttft, i)) {
                l.ttft_ns.push(t as f64, k);
            }
            if let Some(o) = out.filter(|o| *o >= 2) {
                let decode = match ttfc {
                    Some(t) => Some(dur.value(i) - t),
                    None => opt_i64(s_dec, i),
                };
                if let Some(d) = decode.filter(|d| *d >= 0) {
                    l.decode_ns_per_token.push(d as f64 / (o - 1) as f64, k);
                }
            }
            if let (Some(o), Some(ev)) = (out, opt_i64(events, i)) {
                if stream.value(i) == 1 && ev >= 2 {
                    l.tokens_per_chunk.push(o as f64 / ev as f64, k);
                }
            }
            if let Some(o) = out {
                l.output_tokens.push(o as f64, k);
            }
            if let (Some(c), Some(inp)) = (opt_i64(cache, i), opt_i64(input, i)) {
                if inp > 0 {
                    l.cache.push(c.clamp(0, inp) as f64);
                    l.cache.push(inp as f64);
                    l.cache_clusters.push(k);
                }
            }
        }
    }
    Ok(s)
}

/// Smallest absolute change of a time that counts.
const MIN_ABS_NS: f64 = 1e6;
/// Smallest change of a cause's mean, as a share of the route's mean duration.
const MIN_CAUSE_SHARE: f64 = 0.02;
/// Smallest absolute change of the cache-hit ratio.
const MIN_CACHE_DELTA: f64 = 0.02;
/// Fewest observations per side for a row.
const MIN_N: usize = 5;

struct Ctx<'a> {
    opts: &'a DiffOptions,
    out: Vec<Change>,
}

impl Ctx<'_> {
    /// Records a shift; `floor`: the smallest absolute change that is material.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        scope: Scope,
        group: (&str, &str),
        llm: Option<(&str, &str)>,
        metric: &str,
        s: Shift,
        n: (usize, usize),
        floor: f64,
    ) {
        if !(s.before.is_finite() && s.after.is_finite()) || (s.before == 0.0 && s.after == 0.0) {
            return;
        }
        let material = (s.after - s.before).abs() >= floor
            && s.change.is_none_or(|c| c.abs() >= self.opts.min_change);
        let significant = material
            && match s.change {
                Some(_) => s.excludes_zero(),
                // from nothing to something: the bootstrap lower bound of the mean is > 0
                None => s.bounded && s.ci_low.is_some_and(|l| l > 0.0),
            };
        let (service, operation) = group;
        self.out.push(Change {
            scope,
            service: service.to_owned(),
            operation: operation.to_owned(),
            model: llm.map(|l| l.0.to_owned()),
            server: llm.map(|l| l.1.to_owned()),
            metric: metric.to_owned(),
            before: s.before,
            after: s.after,
            change: s.change,
            ci_low: s.ci_low.filter(|_| s.bounded),
            ci_high: s.ci_high.filter(|_| s.bounded),
            significant,
            n_before: n.0,
            n_after: n.1,
        });
    }
}

/// The shift of a ratio of column sums (`ratio.0` over `ratio.1`, or over the number of
/// rows when `None`: a mean) between two samples of row-major `stride`-column rows,
/// with a cluster bootstrap interval.
fn ratio_shift(
    before: (&[f64], &[u64]),
    after: (&[f64], &[u64]),
    stride: usize,
    ratio: (usize, Option<usize>),
    opts: &DiffOptions,
    seed: u64,
) -> Shift {
    let den = ratio.1.unwrap_or(stride);
    let of = |r: &[f64]| {
        if r[den] > 0.0 {
            r[ratio.0] / r[den]
        } else {
            0.0
        }
    };
    let (bc, ac) = (
        per_cluster(before.0, before.1, stride),
        per_cluster(after.0, after.1, stride),
    );
    let total = |rows: &[f64]| {
        let mut sums = vec![0.0; stride + 1];
        for r in rows.chunks_exact(stride + 1) {
            for (s, v) in sums.iter_mut().zip(r) {
                *s += v;
            }
        }
        of(&sums)
    };
    let resampled = |rows: &[f64], seed: u64| -> Vec<f64> {
        bootstrap_sums(rows, stride + 1, opts.resamples, seed)
            .chunks_exact(stride + 1)
            .map(of)
            .collect()
    };
    let enough = bc.len() / (stride + 1) >= MIN_CLUSTERS && ac.len() / (stride + 1) >= MIN_CLUSTERS;
    bootstrap_shift(
        total(&bc),
        total(&ac),
        &resampled(&bc, seed),
        &resampled(&ac, seed.rotate_left(17)),
        opts.confidence,
        enough,
    )
}

/// A stable seed per group.
fn seed_of(base: u64, parts: &[&str]) -> u64 {
    let mut h = base ^ 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Compares two periods' samples.
pub fn diff(before: &Sample, after: &Sample, opts: &DiffOptions) -> Diff {
    let conf = opts.confidence;
    let mut ctx = Ctx {
        opts,
        out: Vec::new(),
    };
    let stride = CAUSE_COLUMNS.len();
    for (key, b) in &before.routes {
        let Some(a) = after.routes.get(key) else {
            continue;
        };
        let n = (b.durations.len(), a.durations.len());
        if n.0 < MIN_N || n.1 < MIN_N {
            continue;
        }
        let g = (key.0.as_str(), key.1.as_str());
        let (bd, ad) = (b.durations.sorted(), a.durations.sorted());
        for (q, metric) in [(0.5, "p50_ns"), (0.99, "p99_ns")] {
            let s = quantile_shift((&bd.0, &bd.1), (&ad.0, &ad.1), q, conf);
            ctx.push(Scope::Route, g, None, metric, s, n, MIN_ABS_NS);
        }
        let mean_dur = bd.0.iter().sum::<f64>() / n.0 as f64;
        // a cluster bootstrap of the per-cause means: per-cluster sums and counts
        let seed = seed_of(opts.seed, &[g.0, g.1]);
        let (bc, ac) = (
            per_cluster(&b.causes, &b.durations.clusters, stride),
            per_cluster(&a.causes, &a.durations.clusters, stride),
        );
        let enough =
            bc.len() / (stride + 1) >= MIN_CLUSTERS && ac.len() / (stride + 1) >= MIN_CLUSTERS;
        let bb = bootstrap_sums(&bc, stride + 1, opts.resamples, seed);
        let ab = bootstrap_sums(&ac, stride + 1, opts.resamples, seed.rotate_left(17));
        for (k, cause) in CAUSE_COLUMNS.iter().enumerate() {
            let mean = |rows: &[f64]| {
                let (sum, count) = rows
                    .chunks_exact(stride + 1)
                    .fold((0.0, 0.0), |acc, r| (acc.0 + r[k], acc.1 + r[stride]));
                if count > 0.0 {
                    sum / count
                } else {
                    0.0
                }
            };
            let means = |sums: &[f64]| -> Vec<f64> {
                sums.chunks_exact(stride + 1)
                    .map(|r| {
                        if r[stride] > 0.0 {
                            r[k] / r[stride]
                        } else {
                            0.0
                        }
                    })
                    .collect()
            };
            let (mb, ma) = (mean(&bc), mean(&ac));
            let (cb, ca) = (means(&bb), means(&ab));
            let mut s = bootstrap_shift(mb, ma, &cb, &ca, conf, enough);
            if mb == 0.0 {
                // the interval of the new mean itself
                let iv = crate::stats::percentile_interval(ca, conf);
                s.ci_low = iv.map(|x| x.0);
                s.ci_high = iv.map(|x| x.1);
                s.bounded = enough && iv.is_some();
            }
            let floor = MIN_ABS_NS.max(MIN_CAUSE_SHARE * mean_dur);
            ctx.push(Scope::Route, g, None, &format!("{cause}_ns"), s, n, floor);
        }
    }
    for (key, b) in &before.operations {
        let Some(a) = after.operations.get(key) else {
            continue;
        };
        let n = (b.len(), a.len());
        if n.0 < MIN_N || n.1 < MIN_N {
            continue;
        }
        let (bd, ad) = (b.sorted(), a.sorted());
        let g = (key.0.as_str(), key.1.as_str());
        for (q, metric) in [(0.5, "p50_ns"), (0.99, "p99_ns")] {
            let s = quantile_shift((&bd.0, &bd.1), (&ad.0, &ad.1), q, conf);
            ctx.push(Scope::Operation, g, None, metric, s, n, MIN_ABS_NS);
        }
    }
    for (key, b) in &before.llm {
        let Some(a) = after.llm.get(key) else {
            continue;
        };
        let llm = Some((key.0.as_str(), key.1.as_str()));
        let medians: [(&str, &Obs, &Obs, f64); 3] = [
            ("ttft_ns", &b.ttft_ns, &a.ttft_ns, MIN_ABS_NS),
            (
                "decode_ns_per_token",
                &b.decode_ns_per_token,
                &a.decode_ns_per_token,
                0.0,
            ),
            (
                "tokens_per_chunk",
                &b.tokens_per_chunk,
                &a.tokens_per_chunk,
                0.0,
            ),
        ];
        for (metric, vb, va, floor) in medians {
            let n = (vb.len(), va.len());
            if n.0 < MIN_N || n.1 < MIN_N {
                continue;
            }
            let (sb, sa) = (vb.sorted(), va.sorted());
            let s = quantile_shift((&sb.0, &sb.1), (&sa.0, &sa.1), 0.5, conf);
            ctx.push(Scope::Llm, ("", ""), llm, metric, s, n, floor);
        }
        let n = (b.output_tokens.len(), a.output_tokens.len());
        if n.0 >= MIN_N && n.1 >= MIN_N {
            // a mean: answer lengths are multi-modal (tool calls, answers), and a median
            // jumps between the modes with the mix of conversations
            let seed = seed_of(opts.seed, &[key.0.as_str(), key.1.as_str(), "out"]);
            let s = ratio_shift(
                (&b.output_tokens.values, &b.output_tokens.clusters),
                (&a.output_tokens.values, &a.output_tokens.clusters),
                1,
                (0, None),
                opts,
                seed,
            );
            ctx.push(Scope::Llm, ("", ""), llm, "output_tokens", s, n, 0.0);
        }
        let n = (b.cache.len() / 2, a.cache.len() / 2);
        if n.0 >= MIN_N && n.1 >= MIN_N {
            let seed = seed_of(opts.seed, &[key.0.as_str(), key.1.as_str()]);
            let s = ratio_shift(
                (&b.cache, &b.cache_clusters),
                (&a.cache, &a.cache_clusters),
                2,
                (0, Some(1)),
                opts,
                seed,
            );
            ctx.push(
                Scope::Llm,
                ("", ""),
                llm,
                "cache_hit_ratio",
                s,
                n,
                MIN_CACHE_DELTA,
            );
        }
    }
    let mut changes = ctx.out;
    changes.sort_by(|x, y| {
        y.significant
            .cmp(&x.significant)
            .then_with(|| {
                let mag = |c: &Change| c.change.map_or(f64::INFINITY, f64::abs);
                mag(y).total_cmp(&mag(x))
            })
            .then(x.scope.cmp(&y.scope))
            .then(x.service.cmp(&y.service))
            .then(x.operation.cmp(&y.operation))
            .then(x.model.cmp(&y.model))
            .then(x.server.cmp(&y.server))
            .then(x.metric.cmp(&y.metric))
    });
    let period = |s: &Sample| Period {
        from_ns: s.window.map_or(0, |w| w.from_ns),
        to_ns: s.window.map_or(0, |w| w.to_ns),
        traces: s.traces,
    };
    // which (model, server) the traces of which route call
    let uses: HashSet<(&str, &str, &str, &str)> = [before, after]
        .iter()
        .flat_map(|s| s.llm.iter())
        .flat_map(|((m, sv), l)| {
            l.routes
                .iter()
                .map(move |(svc, op)| (m.as_str(), sv.as_str(), svc.as_str(), op.as_str()))
        })
        .collect();
    let calls = |llm: &Change, route: &Change| {
        uses.contains(&(
            llm.model.as_deref().unwrap_or(""),
            llm.server.as_deref().unwrap_or(""),
            route.service.as_str(),
            route.operation.as_str(),
        ))
    };
    let headline = headline(&changes, before.traces, after.traces, opts, &calls);
    Diff {
        before: period(before),
        after: period(after),
        headline,
        changes,
        confidence: opts.confidence,
    }
}

/// Reads both periods and compares them (the stores may be the same).
pub fn diff_store(
    before_store: &Store,
    before: Window,
    after_store: &Store,
    after: Window,
    opts: &DiffOptions,
) -> Result<Diff, AnalysisError> {
    let b = sample(before_store, before)?;
    let a = sample(after_store, after)?;
    Ok(diff(&b, &a, opts))
}

/// A value of `metric` as a person reads it.
pub fn value_text(metric: &str, v: f64) -> String {
    match metric {
        "tokens_per_chunk" => format!("{v:.1}"),
        "output_tokens" => format!("{v:.0}"),
        "cache_hit_ratio" => format!("{:.1}%", v * 100.0),
        _ => duration_text(v),
    }
}

fn duration_text(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if a >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

fn pct(c: f64) -> String {
    format!("{:+.0}%", c * 100.0)
}

/// The group a change is about, as a person names it.
fn subject(c: &Change) -> String {
    match c.scope {
        Scope::Llm => {
            let model = c
                .model
                .as_deref()
                .filter(|m| !m.is_empty())
                .unwrap_or("(no model)");
            match c.server.as_deref().filter(|s| !s.is_empty()) {
                Some(server) => format!("{model} on {server}"),
                None => model.to_owned(),
            }
        }
        _ => format!("{} {}", c.service, c.operation).trim().to_owned(),
    }
}

fn metric_words(metric: &str) -> String {
    match metric {
        "p50_ns" => "p50".to_owned(),
        "p99_ns" => "p99".to_owned(),
        "ttft_ns" => "time to first token".to_owned(),
        "decode_ns_per_token" => "decode time per token".to_owned(),
        "tokens_per_chunk" => "tokens per streamed chunk".to_owned(),
        "output_tokens" => "output tokens per call".to_owned(),
        "cache_hit_ratio" => "cache-hit ratio".to_owned(),
        m => m.strip_suffix("_ns").unwrap_or(m).replace('_', " "),
    }
}

/// The LLM metrics that explain a cause's time.
fn llm_metrics_of(cause: &str) -> &'static [&'static str] {
    match cause {
        "decode_ns" => &["decode_ns_per_token", "output_tokens", "tokens_per_chunk"],
        "prefill_ns" | "kv_eviction_ns" => &["cache_hit_ratio", "ttft_ns"],
        "queue_ns" => &["ttft_ns"],
        _ => &[],
    }
}

fn llm_phrase(c: &Change) -> String {
    let dir = |up: &str, down: &str| {
        if c.after >= c.before {
            up.to_owned()
        } else {
            down.to_owned()
        }
    };
    let ch = c
        .change
        .map_or_else(String::new, |x| format!("{:.0}% ", x.abs() * 100.0));
    let what = match c.metric.as_str() {
        "decode_ns_per_token" => format!("decodes {ch}{} per token", dir("slower", "faster")),
        "ttft_ns" => format!(
            "takes {ch}{} to its first token",
            dir("longer", "less time")
        ),
        "tokens_per_chunk" => format!("streams {ch}{} chunks", dir("larger", "smaller")),
        "output_tokens" => format!("writes {ch}{} tokens per answer", dir("more", "fewer")),
        "cache_hit_ratio" => format!("hits its prefix cache {}", dir("more", "less")),
        m => format!(
            "{} {}",
            metric_words(m),
            c.change.map_or_else(String::new, pct)
        ),
    };
    format!(
        "{} {what} ({} → {})",
        subject(c),
        value_text(&c.metric, c.before),
        value_text(&c.metric, c.after)
    )
}

/// One sentence: what got slower (or faster) and by how much, and the likely reason.
/// `calls(llm, route)`: whether the route's traces call that LLM group.
fn headline(
    changes: &[Change],
    n_before: usize,
    n_after: usize,
    opts: &DiffOptions,
    calls: &dyn Fn(&Change, &Change) -> bool,
) -> String {
    let sig: Vec<&Change> = changes.iter().filter(|c| c.significant).collect();
    if sig.is_empty() {
        return format!(
            "No significant change: across {n_before} traces before and {n_after} after, every shift is within noise or under {:.0}%.",
            opts.min_change * 100.0
        );
    }
    let latency =
        |c: &&&Change| c.scope == Scope::Route && (c.metric == "p99_ns" || c.metric == "p50_ns");
    // the route latency change that moved most, slower ones first
    let lead = sig
        .iter()
        .filter(latency)
        .max_by(|a, b| {
            let key = |c: &Change| (c.after > c.before, c.change.unwrap_or(0.0).abs());
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        })
        .copied();
    // the LLM change (of the groups the route calls) that moved most
    let best_llm = |metrics: &[&str], route: &Change| {
        sig.iter()
            .filter(|c| c.scope == Scope::Llm && metrics.contains(&c.metric.as_str()))
            .filter(|c| calls(c, route))
            .max_by(|a, b| {
                a.change
                    .unwrap_or(0.0)
                    .abs()
                    .total_cmp(&b.change.unwrap_or(0.0).abs())
            })
            .copied()
    };
    let Some(lead) = lead else {
        // no route latency moved: lead with the largest change of anything
        let top = sig[0];
        return if top.scope == Scope::Llm {
            // where that shows on the critical path: the related cause that moved most
            let related: Vec<&str> = ["decode_ns", "prefill_ns", "kv_eviction_ns", "queue_ns"]
                .into_iter()
                .filter(|c| llm_metrics_of(c).contains(&top.metric.as_str()))
                .collect();
            let on_path = sig
                .iter()
                .filter(|c| c.scope == Scope::Route && related.contains(&c.metric.as_str()))
                .filter(|c| calls(top, c))
                .max_by(|a, b| {
                    (a.after - a.before)
                        .abs()
                        .total_cmp(&(b.after - b.before).abs())
                });
            let path = on_path.map_or_else(String::new, |c| {
                format!(
                    ", {} {} of {} per trace on {}'s critical path",
                    if c.after >= c.before {
                        "adding"
                    } else {
                        "saving"
                    },
                    duration_text((c.after - c.before).abs()),
                    metric_words(&c.metric),
                    subject(c)
                )
            });
            format!(
                "{}{path}; no route's p50 or p99 moved significantly.",
                llm_phrase(top)
            )
        } else {
            format!(
                "{}: {} {} ({} → {}); no route's p50 or p99 moved significantly.",
                subject(top),
                metric_words(&top.metric),
                top.change.map_or_else(|| "new".to_owned(), pct),
                value_text(&top.metric, top.before),
                value_text(&top.metric, top.after)
            )
        };
    };
    let slower = lead.after > lead.before;
    let mut s = format!(
        "{} got {:.0}% {} at {} ({} → {})",
        subject(lead),
        lead.change.unwrap_or(0.0).abs() * 100.0,
        if slower { "slower" } else { "faster" },
        metric_words(&lead.metric),
        value_text(&lead.metric, lead.before),
        value_text(&lead.metric, lead.after)
    );
    // the cause of that route that moved most in the same direction
    let cause = sig
        .iter()
        .filter(|c| {
            c.scope == Scope::Route
                && c.service == lead.service
                && c.operation == lead.operation
                && c.metric.ends_with("_ns")
                && !latency(c)
                && (c.after > c.before) == slower
        })
        .max_by(|a, b| {
            (a.after - a.before)
                .abs()
                .total_cmp(&(b.after - b.before).abs())
        })
        .copied();
    let llm = match cause {
        Some(c) => best_llm(llm_metrics_of(&c.metric), lead),
        None => best_llm(
            &[
                "decode_ns_per_token",
                "ttft_ns",
                "cache_hit_ratio",
                "tokens_per_chunk",
                "output_tokens",
            ],
            lead,
        ),
    };
    if let Some(c) = cause {
        let _ = write!(
            s,
            ", mostly {} ({}{} per trace on the critical path)",
            metric_words(&c.metric),
            if c.after >= c.before { "+" } else { "−" },
            duration_text((c.after - c.before).abs())
        );
    }
    match llm {
        Some(l) => {
            let _ = write!(s, ": likely because {}.", llm_phrase(l));
        }
        None => s.push('.'),
    }
    s
}

impl Diff {
    /// The readable report; `all`: list every change, not only the significant ones.
    pub fn to_text(&self, all: bool) -> String {
        let mut o = String::new();
        let side = |p: &Period| {
            format!(
                "{} .. {} ({} traces)",
                rfc3339(p.from_ns),
                rfc3339(p.to_ns),
                p.traces
            )
        };
        let _ = writeln!(o, "before: {}", side(&self.before));
        let _ = writeln!(o, "after:  {}", side(&self.after));
        let _ = writeln!(o, "\n{}", self.headline);
        let sig = self.changes.iter().filter(|c| c.significant).count();
        let shown: Vec<&Change> = self
            .changes
            .iter()
            .filter(|c| all || c.significant)
            .collect();
        if !shown.is_empty() {
            let width = shown
                .iter()
                .map(|c| subject(c).chars().count())
                .max()
                .unwrap_or(4)
                .clamp(4, 90);
            let _ = writeln!(
                o,
                "\n{}:\n  {:<9} {:<width$} {:<22} {:>10} {:>10} {:>7}  {:<17}",
                if all {
                    "Changes, significant first"
                } else {
                    "Significant changes"
                },
                "scope",
                "what",
                "metric",
                "before",
                "after",
                "change",
                format!("{:.0}% interval", self.confidence * 100.0)
            );
            for c in shown {
                let what: String = subject(c).chars().take(width).collect();
                let iv = match (c.ci_low, c.ci_high) {
                    (Some(l), Some(h)) if c.change.is_some() && pct(l) == pct(h) => {
                        format!("[{:+.1}%, {:+.1}%]", l * 100.0, h * 100.0)
                    }
                    (Some(l), Some(h)) if c.change.is_some() => format!("[{}, {}]", pct(l), pct(h)),
                    (Some(l), Some(h)) => format!(
                        "[{}, {}]",
                        value_text(&c.metric, l),
                        value_text(&c.metric, h)
                    ),
                    _ => "too few".to_owned(),
                };
                let _ = writeln!(
                    o,
                    "  {:<9} {:<width$} {:<22} {:>10} {:>10} {:>7}  {:<17}{}",
                    c.scope.as_str(),
                    what,
                    c.metric,
                    value_text(&c.metric, c.before),
                    value_text(&c.metric, c.after),
                    c.change.map_or_else(|| "new".to_owned(), pct),
                    iv,
                    if all && c.significant { " *" } else { "" }
                );
            }
        }
        let rest = self.changes.len() - sig;
        if !all && rest > 0 {
            let _ = writeln!(
                o,
                "\n{rest} other shifts are within noise or too small to matter (--all lists them; --format json has every one)."
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stats::SplitMix64;
    use tailscope_model::time::{civil_from_days, days_from_civil};

    #[test]
    fn windows_read_every_way_of_writing_a_time() {
        let w: WindowSpec = "2026-03-02T09:00:00Z..2026-03-02T10:30:00.5+01:00"
            .parse()
            .unwrap();
        let t9 = 1_772_442_000 * 1_000_000_000;
        assert_eq!(w.from, Bound::At(t9));
        assert_eq!(w.to, Bound::At(t9 + 1_800_500_000_000));
        let w: WindowSpec = "..2026-03-02".parse().unwrap();
        assert_eq!(
            (w.from, w.to),
            (Bound::Open, Bound::At(t9 - 9 * 3_600_000_000_000))
        );
        let w: WindowSpec = "1772442000..1772442000123".parse().unwrap();
        assert_eq!((w.from, w.to), (Bound::At(t9), Bound::At(t9 + 123_000_000)));
        let w: WindowSpec = "-2h..".parse().unwrap();
        assert_eq!(w.from, Bound::BeforeEnd(7_200_000_000_000));
        assert_eq!(
            w.resolve((0, 10_000_000_000_000)),
            Window {
                from_ns: 2_800_000_000_000,
                to_ns: 10_000_000_000_000
            }
        );
        assert!("yesterday..".parse::<WindowSpec>().is_err());
        assert!("2026-13-01..".parse::<WindowSpec>().is_err());
        assert!("2026-03-02T09:00:00Z".parse::<WindowSpec>().is_err());
        assert_eq!(rfc3339(t9), "2026-03-02T09:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        for days in [-800_000, -1, 0, 59, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    /// `traces` traces of one route in conversations of four; two models, `m1`'s
    /// decode scaled.
    fn period(rng: &mut SplitMix64, traces: usize, decode_scale: f64) -> Sample {
        let mut s = Sample {
            window: Some(Window {
                from_ns: 0,
                to_ns: 1,
            }),
            ..Sample::default()
        };
        let noise = |rng: &mut SplitMix64| 0.8 + (rng.next_u64() % 1000) as f64 / 2500.0;
        let mut conv = 0;
        for t in 0..traces {
            if t % 4 == 0 {
                conv = rng.next_u64();
            }
            let decode = 2e9 * decode_scale * noise(rng);
            let other = 1e9 * noise(rng);
            let r = s
                .routes
                .entry(("agent-api".into(), "POST /v1/chat".into()))
                .or_default();
            r.durations.push(decode + other, conv);
            let mut row = [0.0; 14];
            row[7] = decode;
            row[13] = other;
            r.causes.extend(row);
            s.operations
                .entry(("agent-api".into(), "db".into()))
                .or_default()
                .push(5e6 * noise(rng), conv);
            let l = s.llm.entry(("m1".into(), "srv".into())).or_default();
            l.decode_ns_per_token
                .push(8e6 * decode_scale * noise(rng), conv);
            l.ttft_ns.push(3e8 * noise(rng), conv);
            l.output_tokens.push(250.0 * noise(rng), conv);
            l.tokens_per_chunk.push(12.0 * noise(rng), conv);
            l.cache.extend([500.0 * noise(rng), 1000.0]);
            l.cache_clusters.push(conv);
            l.routes
                .insert(("agent-api".into(), "POST /v1/chat".into()));
            let l = s.llm.entry(("m2".into(), "srv".into())).or_default();
            l.decode_ns_per_token.push(8e6 * noise(rng), conv);
            s.traces += 1;
        }
        s
    }

    #[test]
    fn a_decode_drift_is_the_headline_and_noise_is_not_a_change() {
        let mut rng = SplitMix64::new(3);
        let (a, b) = (period(&mut rng, 400, 1.0), period(&mut rng, 400, 1.0));
        let drift = period(&mut rng, 400, 1.3);
        let opts = DiffOptions::default();
        let same = diff(&a, &b, &opts);
        assert!(
            same.changes.iter().all(|c| !c.significant),
            "{:#?}",
            same.changes
                .iter()
                .filter(|c| c.significant)
                .collect::<Vec<_>>()
        );
        assert!(
            same.headline.starts_with("No significant change"),
            "{}",
            same.headline
        );
        let d = diff(&b, &drift, &opts);
        assert!(
            d.headline.contains("m1") && d.headline.contains("decode"),
            "{}",
            d.headline
        );
        assert!(!d.headline.contains("m2"), "{}", d.headline);
        let row = d
            .changes
            .iter()
            .find(|c| c.metric == "decode_ns_per_token" && c.model.as_deref() == Some("m1"))
            .unwrap();
        assert!(row.significant);
        let ch = row.change.unwrap();
        assert!(
            (0.2..0.4).contains(&ch) && row.ci_low.unwrap() > 0.0,
            "{row:?}"
        );
        let m2 = d
            .changes
            .iter()
            .find(|c| c.metric == "decode_ns_per_token" && c.model.as_deref() == Some("m2"))
            .unwrap();
        assert!(!m2.significant, "{m2:?}");
        assert!(d
            .changes
            .iter()
            .any(|c| c.metric == "decode_ns" && c.significant));
        // significant first, then by size
        let first_insignificant = d.changes.iter().position(|c| !c.significant).unwrap();
        assert!(d.changes[first_insignificant..]
            .iter()
            .all(|c| !c.significant));
        assert_eq!(diff(&b, &drift, &opts), d, "deterministic");
        let text = d.to_text(false);
        assert!(text.contains("decode_ns_per_token") && text.contains(&d.headline));
        let json = serde_json::to_value(&d).unwrap();
        let c0 = &json["changes"][0];
        for k in [
            "scope",
            "service",
            "operation",
            "model",
            "server",
            "metric",
            "before",
            "after",
            "change",
            "ci_low",
            "ci_high",
            "significant",
        ] {
            assert!(c0.get(k).is_some(), "{k}");
        }
        assert!(json["before"]["traces"].as_u64() == Some(400));
    }
}
