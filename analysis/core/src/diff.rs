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
//! independent would call chance a change. The same store gives the same answer. A
//! change is `significant` only when its interval excludes 0 *and* it is material: at
//! least `min_change` relative (10%), and for times at least 1 ms (a cause's mean at
//! least 2% of the route's mean duration). The headline names the route that got
//! slower (or faster) the most, the cause that moved most on its critical path, and
//! the LLM metric behind that cause.
//!
//! Pure: over the [`Sample`]s of two periods ([`Sample::of`] builds one from the rows
//! a trace source reads); `tailscope-analysis` reads them from a store.

mod sample;
mod text;
mod window;

pub use sample::{LlmSample, Obs, RouteSample, Sample};
pub use text::value_text;
pub use window::{rfc3339, Bound, Window, WindowSpec};

use crate::stats::{bootstrap_shift, bootstrap_sums, quantile_shift, Shift, MIN_CLUSTERS};
use sample::{per_cluster, CAUSES};
use serde::Serialize;
use std::collections::HashSet;
use tailscope_model::Cause;

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
    let stride = CAUSES;
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
        for (k, cause) in Cause::NAMES.iter().enumerate() {
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
    let headline = text::headline(&changes, before.traces, after.traces, opts, &calls);
    Diff {
        before: period(before),
        after: period(after),
        headline,
        changes,
        confidence: opts.confidence,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stats::SplitMix64;

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
            let mut row = [0.0; Cause::COUNT];
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
