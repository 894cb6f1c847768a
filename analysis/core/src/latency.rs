//! A latency model of LLM calls, fitted per (model, `server.address`) over the calls in
//! the store: time to first token against uncached input tokens, and (for calls with no
//! first-token time) duration against uncached input and output tokens. Robust to
//! outliers: least squares, then calls far above the fit (queueing, evictions of other
//! kinds) are trimmed by a MAD rule and the fit is repeated. Over the calls kept, an
//! attention term (new tokens × the context they attend to, see [`attention_work`])
//! is added where it fits better, so a long re-prefill is priced above the short
//! prefills the rates were fitted on. When calls carry no cache
//! reads, two hypotheses are fitted: the provider caches the previous turn's prompt and
//! answer (uncached = input minus that prefix), or it caches nothing (uncached = input);
//! the one with the smaller residual spread is kept. Used to split a call that
//! has neither a server span nor a first-token time into expected prefill, expected
//! decode and the residual (`queue`), and to cost an eviction nothing else times.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub use crate::calls::Sample;

/// `y = intercept + per_uncached * uncached + per_attention * attention(uncached,
/// input) (+ per_output * output)`: see [`attention_work`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    pub intercept_ns: f64,
    pub ns_per_uncached_token: f64,
    /// ns per (new token × context token it attends to): the part of prefill that
    /// grows with the context, so a long re-prefill is priced above the linear rate
    /// (0 when the data show no such growth, or for a fit stored before it was kept).
    #[serde(default)]
    pub ns_per_attention: f64,
    pub ns_per_output_token: f64,
    /// Robust spread of the kept residuals (1.4826 × MAD).
    pub sigma_ns: f64,
    /// Calls the fit was made over, and those kept after trimming.
    pub calls: usize,
    pub kept: usize,
    /// The fit assumes the previous turn was cached (calls without cache reads).
    pub assumes_caching: bool,
    /// 95% intervals of the per-token coefficients, from a seeded bootstrap over the
    /// kept calls (`[0, 0]` for a fit stored before they were kept).
    #[serde(default)]
    pub ns_per_uncached_token_ci: [f64; 2],
    #[serde(default)]
    pub ns_per_output_token_ci: [f64; 2],
    #[serde(default)]
    pub ns_per_attention_ci: [f64; 2],
    /// Residual spread of the other caching hypothesis over this one's (> 1: this one
    /// fits better); 1 when only one was tried. Near 1 the data cannot tell whether the
    /// provider caches the previous turn.
    #[serde(default = "one")]
    pub hypothesis_margin: f64,
}

fn one() -> f64 {
    1.0
}

/// The attention work of a prefill, in (new token × context token) pairs: each of the
/// `uncached` new tokens attends to the cached prefix and to the new tokens before it,
/// `uncached · (cached + uncached / 2)` with `cached = input − uncached`. Transformer
/// prefill costs a part linear in the new tokens and this part, so re-prefilling a
/// long evicted prefix costs more per token than the short prefills of cached turns.
pub fn attention_work(uncached: f64, input: f64) -> f64 {
    let new = uncached.max(0.0);
    new * ((input - new).max(0.0) + new / 2.0)
}

/// The attention regressor's scale in the fit (pairs per unit), so that the normal
/// equations stay well conditioned beside token counts.
const ATTENTION_UNIT: f64 = 1e3;

impl Fit {
    /// The uncached-token count this fit reads off a sample.
    pub fn uncached(&self, s: &Sample) -> f64 {
        if self.assumes_caching {
            s.assumed_uncached_tokens.unwrap_or(s.uncached_tokens)
        } else {
            s.uncached_tokens
        }
    }
    /// Expected prefill of `uncached` new tokens of an `input`-token prompt.
    pub fn prefill_ns(&self, uncached: f64, input: f64) -> f64 {
        (self.intercept_ns
            + self.ns_per_uncached_token * uncached
            + self.ns_per_attention * attention_work(uncached, input))
        .max(0.0)
    }
    /// Expected prefill of a sample under this fit's caching hypothesis.
    pub fn prefill_of(&self, s: &Sample) -> f64 {
        self.prefill_ns(self.uncached(s), s.input_tokens)
    }
    pub fn decode_ns(&self, output: f64) -> f64 {
        (self.ns_per_output_token * output).max(0.0)
    }
    /// A residual above this is not noise: max(4σ, 50 ms).
    pub fn material_residual_ns(&self) -> f64 {
        (4.0 * self.sigma_ns).max(50e6)
    }
    pub fn evidence(&self, kind: &str) -> serde_json::Value {
        serde_json::json!({
            "fit": kind,
            "intercept_ns": self.intercept_ns.round(),
            "ns_per_uncached_token": self.ns_per_uncached_token,
            "ns_per_attention_pair": self.ns_per_attention,
            "ns_per_attention_pair_ci95": self.ns_per_attention_ci,
            "ns_per_output_token": self.ns_per_output_token,
            "residual_sigma_ns": self.sigma_ns.round(),
            "ns_per_uncached_token_ci95": self.ns_per_uncached_token_ci,
            "ns_per_output_token_ci95": self.ns_per_output_token_ci,
            "calls": self.calls,
            "calls_kept": self.kept,
            "assumes_previous_turn_cached": self.assumes_caching,
            "caching_hypothesis_margin": self.hypothesis_margin,
        })
    }
}

/// The fits of every (model, server) with enough calls. Kept with an analysis run
/// (as JSON) so that later incremental runs can reuse it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyModel {
    /// TTFT against uncached input tokens.
    #[serde(with = "pairs")]
    pub ttft: HashMap<(String, String), Fit>,
    /// Duration against uncached input and output tokens.
    #[serde(with = "pairs")]
    pub duration: HashMap<(String, String), Fit>,
    /// Which optional fields each source sends (read with the fits: a cache read a
    /// source leaves out is zero only for a source that sends them elsewhere).
    #[serde(default)]
    pub sources: crate::calls::Sources,
}

/// A map keyed by (model, server) as a JSON list of `[model, server, fit]`, sorted.
mod pairs {
    use super::Fit;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::HashMap;

    pub fn serialize<S: Serializer>(
        m: &HashMap<(String, String), Fit>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(&String, &String, &Fit)> = m.iter().map(|(k, f)| (&k.0, &k.1, f)).collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<(String, String), Fit>, D::Error> {
        let v: Vec<(String, String, Fit)> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|(a, b, f)| ((a, b), f)).collect())
    }
}

/// Fewest calls a fit is made from.
const MIN_CALLS: usize = 6;

/// Fewest calls without a first-token time for the duration model to be fitted on
/// those alone (twice a fit's minimum: a trimmed fit keeps enough of them).
const MIN_DURATION_ONLY_CALLS: usize = 2 * MIN_CALLS;

/// Residuals below this are never trimmed as waiting: half of the 50 ms below which a
/// residual is not material (see [`Fit::material_residual_ns`]).
const TRIM_FLOOR_NS: f64 = 25e6;

/// A robust fit's raw result: intercept then one coefficient per slope, the residual
/// spread, how many points it kept, and each slope's 95% interval.
struct Raw {
    coef: Vec<f64>,
    sigma: f64,
    calls: usize,
    kept: usize,
    ci: Vec<[f64; 2]>,
    /// Which points the fit kept.
    keep: Vec<bool>,
}

/// The nearest-rank median ([`tailscope_model::stats::median_of`]; 0 for none).
fn median(v: &mut [f64]) -> f64 {
    tailscope_model::stats::median_of(v).unwrap_or(0.0)
}

/// A least-squares row: 1 (the intercept), then the regressors of `x` at `cols`.
fn design_row(x: &[f64], cols: &[usize]) -> Vec<f64> {
    let mut r = Vec::with_capacity(cols.len() + 1);
    r.push(1.0);
    r.extend(cols.iter().map(|&j| x[j]));
    r
}

/// The median of residuals `res` and their robust spread (1.4826 × MAD).
fn median_and_spread(res: &mut [f64]) -> (f64, f64) {
    let med = median(res);
    let mut dev: Vec<f64> = res.iter().map(|r| (r - med).abs()).collect();
    (med, 1.4826 * median(&mut dev))
}

/// Solves the normal equations of `y ~ 1 + x` columns (up to 3 unknowns); `None` when
/// singular.
fn least_squares(rows: &[(Vec<f64>, f64)], k: usize) -> Option<Vec<f64>> {
    let mut a = vec![vec![0.0; k + 1]; k];
    for (x, y) in rows {
        for i in 0..k {
            for j in 0..k {
                a[i][j] += x[i] * x[j];
            }
            a[i][k] += x[i] * y;
        }
    }
    // Gaussian elimination with partial pivoting
    for col in 0..k {
        let piv = (col..k).max_by(|&r1, &r2| a[r1][col].abs().total_cmp(&a[r2][col].abs()))?;
        if a[piv][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, piv);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i]).collect())
}

/// Robust non-negative fit of `y ~ intercept + Σ slope·x` over `(xs, y)` points.
fn robust_fit(points: &[(Vec<f64>, f64)], slopes: usize) -> Option<Raw> {
    if points.len() < MIN_CALLS {
        return None;
    }
    let mut active: Vec<bool> = vec![true; slopes];
    let mut keep: Vec<bool> = vec![true; points.len()];
    let mut coef = vec![0.0; slopes + 1];
    let mut sigma = 0.0;
    for _ in 0..6 {
        // columns: 1, then active slopes
        let cols: Vec<usize> = (0..slopes).filter(|&j| active[j]).collect();
        let rows: Vec<(Vec<f64>, f64)> = points
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|((x, y), _)| (design_row(x, &cols), *y))
            .collect();
        if rows.len() < MIN_CALLS.min(points.len()) / 2 + 2 {
            break;
        }
        let sol = least_squares(&rows, cols.len() + 1).or_else(|| {
            // degenerate x (all equal): intercept only
            let mut ys: Vec<f64> = rows.iter().map(|r| r.1).collect();
            Some(vec![median(&mut ys)])
        })?;
        coef = vec![0.0; slopes + 1];
        coef[0] = sol[0];
        for (k, &j) in cols.iter().enumerate() {
            coef[j + 1] = sol.get(k + 1).copied().unwrap_or(0.0);
        }
        // a negative slope is not physical: drop that regressor and refit
        if let Some(j) = (0..slopes).find(|&j| active[j] && coef[j + 1] < 0.0) {
            active[j] = false;
            continue;
        }
        let pred = |x: &[f64]| coef[0] + (0..slopes).map(|j| coef[j + 1] * x[j]).sum::<f64>();
        let mut res: Vec<f64> = points
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|((x, y), _)| y - pred(x))
            .collect();
        let med;
        (med, sigma) = median_and_spread(&mut res);
        // trim calls far above the fit (waiting, not work) and absurdly far below; a
        // call within half the materiality floor is kept whatever the spread, so a few
        // long prompts the fit misses at first (first turns, their high leverage) teach
        // it rather than being dropped as "waiting"
        let hi = med + (2.5 * sigma.max(1e6)).max(TRIM_FLOOR_NS);
        let lo = med - 5.0 * sigma.max(1e6);
        let next: Vec<bool> = points
            .iter()
            .map(|(x, y)| {
                let r = y - pred(x);
                r <= hi && r >= lo
            })
            .collect();
        if next == keep {
            break;
        }
        keep = next;
    }
    let kept: Vec<&(Vec<f64>, f64)> = points
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(p, _)| p)
        .collect();
    let ci = slope_intervals(&kept, slopes, &active);
    Some(Raw {
        coef,
        sigma,
        calls: points.len(),
        kept: keep.iter().filter(|k| **k).count(),
        ci,
        keep,
    })
}

/// A robust fit of `points` whose last column is the attention regressor: the calls
/// to keep (which waited, which did not) are chosen by the robust fit without it, as
/// before it existed, and the attention slope is then fitted over those calls only.
/// It refines the shape of prefill (a long re-prefill costs more per token than the
/// short prefills it was fitted on) and is kept only where every slope is positive
/// and the kept calls' spread does not grow; else the fit is the one without it.
fn robust_fit_with_attention(points: &[(Vec<f64>, f64)], slopes: usize) -> Option<Raw> {
    let base_points: Vec<(Vec<f64>, f64)> = points
        .iter()
        .map(|(x, y)| (x[..slopes - 1].to_vec(), *y))
        .collect();
    let base = robust_fit(&base_points, slopes - 1)?;
    let kept: Vec<&(Vec<f64>, f64)> = points
        .iter()
        .zip(&base.keep)
        .filter(|(_, k)| **k)
        .map(|(p, _)| p)
        .collect();
    let all: Vec<usize> = (0..slopes).collect();
    let rows: Vec<(Vec<f64>, f64)> = kept
        .iter()
        .map(|(x, y)| (design_row(x, &all), *y))
        .collect();
    let Some(coef) = least_squares(&rows, slopes + 1) else {
        return Some(base);
    };
    if coef[1..].iter().any(|c| *c <= 0.0) {
        return Some(base);
    }
    let mut res: Vec<f64> = rows
        .iter()
        .map(|(r, y)| y - r.iter().zip(&coef).map(|(a, b)| a * b).sum::<f64>())
        .collect();
    let (_, sigma) = median_and_spread(&mut res);
    if sigma > base.sigma {
        return Some(base);
    }
    let ci = slope_intervals(&kept, slopes, &vec![true; slopes]);
    Some(Raw {
        coef,
        sigma,
        ci,
        ..base
    })
}

impl Raw {
    /// The fit, reading the coefficients at slope indices `uncached`, `attention`
    /// (scaled by [`ATTENTION_UNIT`]) and `output` (`None`: not a regressor of this
    /// fit).
    fn fit(&self, uncached: usize, attention: usize, output: Option<usize>) -> Fit {
        let c = |j: Option<usize>| j.and_then(|j| self.coef.get(j + 1)).copied().unwrap_or(0.0);
        let ci = |j: Option<usize>| j.and_then(|j| self.ci.get(j)).copied().unwrap_or([0.0; 2]);
        let [alo, ahi] = ci(Some(attention));
        Fit {
            intercept_ns: self.coef[0],
            ns_per_uncached_token: c(Some(uncached)),
            ns_per_attention: c(Some(attention)) / ATTENTION_UNIT,
            ns_per_attention_ci: [alo / ATTENTION_UNIT, ahi / ATTENTION_UNIT],
            ns_per_output_token: c(output),
            sigma_ns: self.sigma,
            calls: self.calls,
            kept: self.kept,
            assumes_caching: false,
            ns_per_uncached_token_ci: ci(Some(uncached)),
            ns_per_output_token_ci: ci(output),
            hypothesis_margin: 1.0,
        }
    }
}

/// Bootstrap resamples of a fit's kept calls (seeded: the same calls give the same
/// intervals), and the most calls one resample draws from.
const BOOTSTRAP_RESAMPLES: usize = 200;
const BOOTSTRAP_MAX_CALLS: usize = 2_000;

/// 95% percentile intervals of each slope over bootstrap resamples of the kept
/// points, refitted by least squares with the same active regressors; a slope a
/// resample makes negative counts as 0 (the fit drops negative slopes).
fn slope_intervals(kept: &[&(Vec<f64>, f64)], slopes: usize, active: &[bool]) -> Vec<[f64; 2]> {
    let mut out = vec![[0.0; 2]; slopes];
    let cols: Vec<usize> = (0..slopes).filter(|&j| active[j]).collect();
    if kept.len() < MIN_CALLS || cols.is_empty() {
        return out;
    }
    // a large fit: an even stride through the calls, enough for the interval's width
    let step = kept.len().div_ceil(BOOTSTRAP_MAX_CALLS);
    let base: Vec<&(Vec<f64>, f64)> = kept.iter().step_by(step).copied().collect();
    let mut rng = crate::stats::SplitMix64::new(0x7a11_5c09 ^ base.len() as u64);
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(BOOTSTRAP_RESAMPLES); slopes];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        let rows: Vec<(Vec<f64>, f64)> = (0..base.len())
            .map(|_| {
                let (x, y) = base[rng.below(base.len())];
                (design_row(x, &cols), *y)
            })
            .collect();
        if let Some(sol) = least_squares(&rows, cols.len() + 1) {
            for (k, &j) in cols.iter().enumerate() {
                draws[j].push(sol[k + 1].max(0.0));
            }
        }
    }
    for (j, d) in draws.into_iter().enumerate() {
        if let Some((lo, hi)) = crate::stats::percentile_interval(d, 0.95) {
            out[j] = [lo, hi];
        }
    }
    out
}

impl LatencyModel {
    /// Fits every (model, server) group of `samples`.
    pub fn fit(samples: &[Sample]) -> Self {
        let mut groups: HashMap<(String, String), Vec<&Sample>> = HashMap::new();
        for s in samples {
            groups
                .entry((s.model.clone(), s.server.clone()))
                .or_default()
                .push(s);
        }
        let mut out = LatencyModel::default();
        for (key, ss) in groups {
            let hypotheses: &[bool] = if ss.iter().any(|s| s.assumed_uncached_tokens.is_some()) {
                &[false, true]
            } else {
                &[false]
            };
            let x = |s: &Sample, assume: bool| {
                if assume {
                    s.assumed_uncached_tokens.unwrap_or(s.uncached_tokens)
                } else {
                    s.uncached_tokens
                }
            };
            let att = |s: &Sample, assume: bool| {
                attention_work(x(s, assume), s.input_tokens) / ATTENTION_UNIT
            };
            let best = |fits: Vec<Fit>| {
                let best = fits
                    .iter()
                    .copied()
                    .min_by(|a, b| a.sigma_ns.total_cmp(&b.sigma_ns))?;
                let other = fits
                    .iter()
                    .filter(|f| f.assumes_caching != best.assumes_caching)
                    .map(|f| f.sigma_ns)
                    .next();
                Some(Fit {
                    hypothesis_margin: other.map_or(1.0, |o| o / best.sigma_ns.max(1.0)),
                    ..best
                })
            };
            let ttft = best(
                hypotheses
                    .iter()
                    .filter_map(|&h| {
                        let pts: Vec<(Vec<f64>, f64)> = ss
                            .iter()
                            .filter_map(|s| Some((vec![x(s, h), att(s, h)], s.ttft_ns?)))
                            .collect();
                        robust_fit_with_attention(&pts, 2).map(|r| Fit {
                            assumes_caching: h,
                            ..r.fit(0, 1, None)
                        })
                    })
                    .collect(),
            );
            if let Some(f) = ttft {
                out.ttft.insert(key.clone(), f);
            }
            // the duration model splits calls with no first-token time; where enough
            // of them exist it is fitted on them alone: a streamed call's duration also
            // holds the client's handling of each chunk, which would price decode high
            let unstreamed: Vec<&Sample> =
                ss.iter().copied().filter(|s| s.ttft_ns.is_none()).collect();
            let for_duration = if unstreamed.len() >= MIN_DURATION_ONLY_CALLS {
                &unstreamed
            } else {
                &ss
            };
            let dur = best(
                hypotheses
                    .iter()
                    .filter_map(|&h| {
                        let pts: Vec<(Vec<f64>, f64)> = for_duration
                            .iter()
                            .map(|s| (vec![x(s, h), s.output_tokens, att(s, h)], s.duration_ns))
                            .collect();
                        robust_fit_with_attention(&pts, 3).map(|r| Fit {
                            assumes_caching: h,
                            ..r.fit(0, 2, Some(1))
                        })
                    })
                    .collect(),
            );
            if let Some(f) = dur {
                out.duration.insert(key, f);
            }
        }
        out
    }

    pub fn ttft_fit(&self, model: &str, server: &str) -> Option<&Fit> {
        self.ttft.get(&(model.to_owned(), server.to_owned()))
    }

    pub fn duration_fit(&self, model: &str, server: &str) -> Option<&Fit> {
        self.duration.get(&(model.to_owned(), server.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(uncached: f64, output: f64, queue_ms: f64) -> Sample {
        // 0.1 ms per uncached token, 4 ms per output token, 20 ms overhead
        let prefill = 20e6 + 0.1e6 * uncached;
        Sample {
            model: "m".into(),
            server: "s".into(),
            uncached_tokens: uncached,
            assumed_uncached_tokens: None,
            input_tokens: uncached,
            output_tokens: output,
            ttft_ns: Some(prefill + queue_ms * 1e6),
            duration_ns: prefill + 4e6 * output + queue_ms * 1e6,
        }
    }

    #[test]
    fn recovers_rates_despite_queued_outliers() {
        let mut ss = Vec::new();
        for i in 0..40 {
            let unc = 100.0 + f64::from(i * 97 % 3000);
            let out = 10.0 + f64::from(i * 13 % 50);
            // every fifth call waited 200-450 ms in a queue
            let q = if i % 5 == 0 {
                200.0 + f64::from(i * 7)
            } else {
                0.0
            };
            ss.push(sample(unc, out, q));
        }
        let m = LatencyModel::fit(&ss);
        let t = m.ttft_fit("m", "s").unwrap();
        assert!((t.ns_per_uncached_token - 0.1e6).abs() < 0.005e6, "{t:?}");
        assert!((t.intercept_ns - 20e6).abs() < 2e6, "{t:?}");
        assert_eq!(t.kept, 32, "the queued calls are trimmed");
        let d = m.duration_fit("m", "s").unwrap();
        assert!((d.ns_per_output_token - 4e6).abs() < 0.1e6, "{d:?}");
        assert!((d.ns_per_uncached_token - 0.1e6).abs() < 0.01e6, "{d:?}");
        // a queued call's residual is material, an ordinary one's is not
        let q = sample(500.0, 20.0, 300.0);
        assert!(!d.assumes_caching);
        let resid = q.duration_ns - d.prefill_ns(500.0, 500.0) - d.decode_ns(20.0);
        assert!(resid > d.material_residual_ns(), "{resid} {d:?}");
        let ok = sample(500.0, 20.0, 0.0);
        let resid = ok.duration_ns - d.prefill_ns(500.0, 500.0) - d.decode_ns(20.0);
        assert!(resid.abs() < d.material_residual_ns());
    }

    /// Two recordings of the same workload with independent noise (jitter on every
    /// call, some calls queued) fit rates that each lie in the other's 95% interval,
    /// and the interval covers the truth.
    #[test]
    fn refitting_the_same_workload_agrees_within_its_interval() {
        let run = |seed: u64| {
            let mut rng = crate::stats::SplitMix64::new(seed);
            let mut noise = || {
                // about ±10% multiplicative jitter
                0.9 + 0.2 * (rng.next_u64() as f64 / u64::MAX as f64)
            };
            let ss: Vec<Sample> = (0..120)
                .map(|i| {
                    let unc = 200.0 + f64::from(i * 37 % 3000);
                    let out = 10.0 + f64::from(i * 11 % 60);
                    let q = if i % 9 == 0 { 250e6 } else { 0.0 };
                    let d = (20e6 + 0.12e6 * unc) * noise() + 3.5e6 * out * noise() + q;
                    Sample {
                        model: "m".into(),
                        server: "s".into(),
                        uncached_tokens: unc,
                        assumed_uncached_tokens: None,
                        input_tokens: unc,
                        output_tokens: out,
                        ttft_ns: None,
                        duration_ns: d,
                    }
                })
                .collect();
            *LatencyModel::fit(&ss).duration_fit("m", "s").expect("fit")
        };
        let (a, b) = (run(1), run(2));
        for (f, g) in [(a, b), (b, a)] {
            let [lo, hi] = f.ns_per_uncached_token_ci;
            assert!(lo < hi, "{f:?}");
            assert!(
                (lo..=hi).contains(&g.ns_per_uncached_token),
                "{f:?} vs {g:?}"
            );
            assert!((lo..=hi).contains(&0.12e6), "covers the truth: {f:?}");
            let [lo, hi] = f.ns_per_output_token_ci;
            assert!((lo..=hi).contains(&g.ns_per_output_token), "{f:?} vs {g:?}");
        }
    }

    #[test]
    fn a_caching_provider_without_cache_reads_is_fitted_as_caching() {
        // conversations of 6 turns: the prompt grows by 400 tokens a turn and the
        // provider only prefills what is new; no cache reads are reported
        let mut ss = Vec::new();
        for conv in 0..6 {
            let mut prev = 0.0;
            for turn in 0..6 {
                let input = 1500.0 + 400.0 * f64::from(turn) + f64::from(conv * 37);
                let new = input - prev;
                let out = 20.0 + f64::from((conv + turn) % 5) * 8.0;
                ss.push(Sample {
                    model: "m".into(),
                    server: "s".into(),
                    uncached_tokens: input,
                    assumed_uncached_tokens: Some(new),
                    input_tokens: input,
                    output_tokens: out,
                    ttft_ns: None,
                    duration_ns: 5e6 + 0.1e6 * new + 4e6 * out,
                });
                prev = input + out;
            }
        }
        let m = LatencyModel::fit(&ss);
        let d = m.duration_fit("m", "s").unwrap();
        assert!(d.assumes_caching, "{d:?}");
        assert!((d.ns_per_uncached_token - 0.1e6).abs() < 0.01e6, "{d:?}");
        // no call of it looks queued
        for s in &ss {
            let r = s.duration_ns - d.prefill_of(s) - d.decode_ns(s.output_tokens);
            assert!(r < d.material_residual_ns(), "{r}");
        }
    }

    /// Prefill that grows with the context (attention): conversations whose cached
    /// turns prefill a few hundred new tokens over a growing context, and first turns
    /// that prefill 1-2k. The fit over the kept calls prices the re-prefill of a whole
    /// 4k-token prompt within 10% of the truth, where the linear rate fitted on the
    /// same calls falls short by more than that; a workload with no such growth keeps
    /// no attention term that matters.
    #[test]
    fn prefill_that_grows_with_the_context_prices_a_long_reprefill() {
        let truth = |u: f64, input: f64, c: f64| 5e6 + 60e3 * u + c * attention_work(u, input);
        let calls = |c: f64| -> Vec<Sample> {
            let mut rng = crate::stats::SplitMix64::new(7);
            let mut ss = Vec::new();
            for conv in 0..12 {
                let mut input = 1000.0 + f64::from(conv * 97);
                for turn in 0..8 {
                    let u = if turn == 0 {
                        input
                    } else {
                        150.0 + f64::from((conv * 31 + turn * 57) % 400)
                    };
                    if turn > 0 {
                        input += u;
                    }
                    let jitter = 0.95 + 0.1 * (rng.next_u64() as f64 / u64::MAX as f64);
                    // every seventh call waited in a queue
                    let queued = if (conv + turn) % 7 == 0 { 300e6 } else { 0.0 };
                    ss.push(Sample {
                        model: "m".into(),
                        server: "s".into(),
                        uncached_tokens: u,
                        assumed_uncached_tokens: None,
                        input_tokens: input,
                        output_tokens: 20.0,
                        ttft_ns: Some(truth(u, input, c) * jitter + queued),
                        duration_ns: truth(u, input, c) * jitter + queued + 80e6,
                    });
                }
            }
            ss
        };
        let ss = calls(12.0);
        let f = *LatencyModel::fit(&ss).ttft_fit("m", "s").unwrap();
        assert!(f.ns_per_attention > 0.0, "{f:?}");
        let [lo, hi] = f.ns_per_attention_ci;
        assert!(lo < hi && (lo..=hi).contains(&f.ns_per_attention), "{f:?}");
        // the whole 4k prompt of a late turn prefilled again, against its cached prefill
        let (input, u) = (4000.0, 300.0);
        let want = truth(input, input, 12.0) - truth(u, input, 12.0);
        let got = f.prefill_ns(input, input) - f.prefill_ns(u, input);
        assert!((got - want).abs() < 0.1 * want, "{got} vs {want}: {f:?}");
        // the linear rate fitted on the same calls (the fit before the attention term)
        // misses it by more than 10%
        let pts: Vec<(Vec<f64>, f64)> = ss
            .iter()
            .filter_map(|s| Some((vec![s.uncached_tokens], s.ttft_ns?)))
            .collect();
        let linear = robust_fit(&pts, 1).unwrap().fit(0, 1, None);
        assert!(linear.ns_per_attention.abs() < f64::EPSILON);
        let linear_got = linear.prefill_ns(input, input) - linear.prefill_ns(u, input);
        assert!(
            (linear_got - want).abs() > 0.1 * want,
            "{linear_got} vs {want}: {linear:?}"
        );
        // no growth with the context: the attention term adds under 2% to that re-prefill
        let flat = *LatencyModel::fit(&calls(0.0)).ttft_fit("m", "s").unwrap();
        let want = truth(input, input, 0.0) - truth(u, input, 0.0);
        let extra =
            flat.ns_per_attention * (attention_work(input, input) - attention_work(u, input));
        assert!(extra.abs() < 0.02 * want, "{extra} of {want}: {flat:?}");
    }

    #[test]
    fn too_few_calls_give_no_fit_and_negative_slopes_are_dropped() {
        let ss: Vec<Sample> = (0..4)
            .map(|i| sample(f64::from(i) * 100.0, 10.0, 0.0))
            .collect();
        assert!(LatencyModel::fit(&ss).ttft.is_empty());
        // duration falls with output tokens (nonsense): that slope is dropped, not negative
        let ss: Vec<Sample> = (0..10)
            .map(|i| Sample {
                model: "m".into(),
                server: "s".into(),
                uncached_tokens: f64::from(i) * 100.0,
                assumed_uncached_tokens: None,
                input_tokens: f64::from(i) * 100.0,
                output_tokens: f64::from(10 - i + (i % 3) * 2),
                ttft_ns: None,
                duration_ns: 1e6 * f64::from(i) * 10.0,
            })
            .collect();
        let d = *LatencyModel::fit(&ss).duration_fit("m", "s").unwrap();
        assert!(
            d.ns_per_output_token >= 0.0 && d.ns_per_uncached_token > 0.0,
            "{d:?}"
        );
    }

    /// Streamed calls' durations also hold the client's per-chunk work: the duration
    /// model, which only splits calls with no first-token time, is fitted on those
    /// when there are enough, and on every call otherwise.
    #[test]
    fn the_duration_model_is_fitted_on_the_calls_it_splits() {
        let calls = |n: i32, streamed: bool| -> Vec<Sample> {
            (0..n)
                .map(|i| {
                    let unc = 200.0 + f64::from(i * 97 % 2000);
                    let out = 10.0 + f64::from(i * 13 % 60);
                    // a streamed call's client spends 1.5 ms more per output token
                    let per_out = if streamed { 5.5e6 } else { 4e6 };
                    let prefill = 10e6 + 0.1e6 * unc;
                    Sample {
                        model: "m".into(),
                        server: "s".into(),
                        uncached_tokens: unc,
                        assumed_uncached_tokens: None,
                        input_tokens: unc,
                        output_tokens: out,
                        ttft_ns: streamed.then_some(prefill),
                        duration_ns: prefill + per_out * out,
                    }
                })
                .collect()
        };
        let mut ss = calls(40, true);
        ss.extend(calls(MIN_DURATION_ONLY_CALLS as i32, false));
        let d = *LatencyModel::fit(&ss).duration_fit("m", "s").unwrap();
        assert!((d.ns_per_output_token - 4e6).abs() < 0.05e6, "{d:?}");
        assert_eq!(d.calls, MIN_DURATION_ONLY_CALLS);
        // too few unstreamed calls: every call, streamed ones included
        let mut ss = calls(40, true);
        ss.extend(calls(MIN_DURATION_ONLY_CALLS as i32 - 1, false));
        let d = *LatencyModel::fit(&ss).duration_fit("m", "s").unwrap();
        assert_eq!(d.calls, 40 + MIN_DURATION_ONLY_CALLS - 1);
        assert!(d.ns_per_output_token > 4.5e6, "{d:?}");
    }
}
