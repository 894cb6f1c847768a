//! Small, deterministic statistics for telling a change from noise between two
//! samples (`diff`): nearest-rank quantiles with cluster-robust (Woodruff) confidence
//! intervals, a seeded cluster bootstrap of sums (for means and ratios), and the normal
//! quantile both use. Observations of one conversation resemble each other, so both
//! count clusters, not values. No randomness outside a seed: the same store gives the
//! same answer.

/// A relative change `after / before - 1` and its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    pub before: f64,
    pub after: f64,
    /// `after / before - 1`; `None` when `before` is 0.
    pub change: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// False when a sample was too small for an interval at the asked confidence
    /// (the bounds are then the widest the samples allow and prove nothing).
    pub bounded: bool,
}

impl Shift {
    /// True when the interval is bounded and excludes 0.
    pub fn excludes_zero(&self) -> bool {
        self.bounded
            && match (self.ci_low, self.ci_high) {
                (Some(lo), Some(hi)) => lo > 0.0 || hi < 0.0,
                _ => false,
            }
    }
}

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The two-sided critical value for `confidence` (0.95 -> 1.96).
fn z_of(confidence: f64) -> f64 {
    normal_quantile(1.0 - (1.0 - confidence.clamp(0.5, 0.999_999)) / 2.0)
}

/// Nearest-rank quantile (`q` in 0..=1) of sorted values: the value at rank
/// `ceil(q·n)`, [`tailscope_model::stats::quantile`]. NaN for an empty slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    tailscope_model::stats::quantile(sorted, q).unwrap_or(f64::NAN)
}

/// Fewest clusters on a side for an interval to count.
pub const MIN_CLUSTERS: usize = 20;

/// A confidence interval for the `q` quantile of sorted values whose observations come
/// in clusters (`clusters[i]`: a dense id of value `i`'s cluster, such as its
/// conversation; empty: every value its own). Woodruff's interval: the sample
/// quantiles at `q ∓ z·se`, with `se` the cluster-robust standard error of the share
/// of values at or below the estimate, so that calls of one conversation, which
/// resemble each other, count for less than independent ones. `bounded` is false when
/// the interval leaves the sample or there are fewer than [`MIN_CLUSTERS`] clusters;
/// the bounds are then clamped to the sample's extremes.
pub fn quantile_interval(
    sorted: &[f64],
    clusters: &[u32],
    q: f64,
    confidence: f64,
) -> (f64, f64, bool) {
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, false);
    }
    let nf = n as f64;
    let est = quantile(sorted, q);
    let below = sorted.partition_point(|x| *x <= est);
    let share = below as f64 / nf;
    let (var, groups) = if clusters.len() == n {
        let k = clusters.iter().max().map_or(0, |m| *m as usize + 1);
        let mut counts = vec![(0u32, 0u32); k];
        for (i, c) in clusters.iter().enumerate() {
            let e = &mut counts[*c as usize];
            e.0 += u32::from(i < below);
            e.1 += 1;
        }
        let used = counts.iter().filter(|c| c.1 > 0).count();
        let ss: f64 = counts
            .iter()
            .map(|(b, m)| (f64::from(*b) - share * f64::from(*m)).powi(2))
            .sum();
        let scale = if used > 1 {
            used as f64 / (used as f64 - 1.0)
        } else {
            1.0
        };
        (scale * ss / (nf * nf), used)
    } else {
        (q * (1.0 - q) / nf, n)
    };
    // never narrower than independent values would give
    let se = var.max(q * (1.0 - q) / nf).sqrt();
    let half = z_of(confidence) * se;
    let (p_lo, p_hi) = (q - half, q + half);
    let bounded = groups >= MIN_CLUSTERS && p_lo * nf >= 1.0 && (p_hi * nf).ceil() < nf;
    (
        quantile(sorted, p_lo.clamp(0.0, 1.0)),
        quantile(sorted, p_hi.clamp(0.0, 1.0)),
        bounded,
    )
}

/// Sorted values and the dense cluster id of each (see [`quantile_interval`]).
pub type Clustered<'a> = (&'a [f64], &'a [u32]);

/// The shift of the `q` quantile between two samples, with a conservative interval
/// for the relative change: each side's interval at `sqrt(confidence)` (both cover
/// together with probability `confidence`), then
/// `[lo_after / hi_before − 1, hi_after / lo_before − 1]`.
pub fn quantile_shift(
    before: Clustered<'_>,
    after: Clustered<'_>,
    q: f64,
    confidence: f64,
) -> Shift {
    let side = confidence.sqrt();
    let (b, a) = (quantile(before.0, q), quantile(after.0, q));
    let (b_lo, b_hi, b_ok) = quantile_interval(before.0, before.1, q, side);
    let (a_lo, a_hi, a_ok) = quantile_interval(after.0, after.1, q, side);
    let positive = b > 0.0 && b_lo > 0.0;
    Shift {
        before: b,
        after: a,
        change: (b > 0.0).then(|| a / b - 1.0),
        ci_low: (b_hi > 0.0).then(|| a_lo / b_hi - 1.0),
        ci_high: positive.then(|| a_hi / b_lo - 1.0),
        bounded: b_ok && a_ok && positive,
    }
}

/// SplitMix64: a small, fast, seedable generator (enough for resampling indices).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (multiply-shift; `n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Column sums of `rows` (row-major, `stride` columns; one row per cluster, holding
/// that cluster's sums) over `resamples` bootstrap resamples of the rows drawn with
/// `seed`: `out[b * stride + k]` is resample `b`'s sum of column `k`. Resampling whole
/// clusters keeps the resemblance within one (a conversation's traces) in the
/// interval. Empty when there are no rows.
pub fn bootstrap_sums(rows: &[f64], stride: usize, resamples: usize, seed: u64) -> Vec<f64> {
    if stride == 0 || rows.len() < stride {
        return Vec::new();
    }
    let n = rows.len() / stride;
    let mut rng = SplitMix64::new(seed);
    let mut out = vec![0.0; resamples * stride];
    for sums in out.chunks_exact_mut(stride) {
        for _ in 0..n {
            let r = rng.below(n) * stride;
            for (s, v) in sums.iter_mut().zip(&rows[r..r + stride]) {
                *s += v;
            }
        }
    }
    out
}

/// The central `confidence` interval of `samples` (non-finite values dropped).
pub fn percentile_interval(mut samples: Vec<f64>, confidence: f64) -> Option<(f64, f64)> {
    samples.retain(|x| x.is_finite());
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    Some((quantile(&samples, alpha), quantile(&samples, 1.0 - alpha)))
}

/// The shift between two statistics estimated as `before` and `after`, with the
/// percentile interval of `after_b / before_b − 1` over paired bootstrap resamples;
/// `enough`: whether the samples were large enough for the interval to count.
pub fn bootstrap_shift(
    before: f64,
    after: f64,
    before_resamples: &[f64],
    after_resamples: &[f64],
    confidence: f64,
    enough: bool,
) -> Shift {
    let changes: Vec<f64> = before_resamples
        .iter()
        .zip(after_resamples)
        .map(|(b, a)| a / b - 1.0)
        .collect();
    let ci = (before > 0.0)
        .then(|| percentile_interval(changes, confidence))
        .flatten();
    Shift {
        before,
        after,
        change: (before > 0.0).then(|| after / before - 1.0),
        ci_low: ci.map(|c| c.0),
        ci_high: ci.map(|c| c.1),
        bounded: enough && ci.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_matches_tables() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.995) - 2.575_829).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-5);
    }

    #[test]
    fn nearest_rank_quantile() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((quantile(&v, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((quantile(&v, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((quantile(&v, 1.0) - 100.0).abs() < f64::EPSILON);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn quantile_interval_covers_and_knows_when_it_cannot() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let (lo, hi, ok) = quantile_interval(&v, &[], 0.5, 0.95);
        assert!(
            ok && lo < 500.0 && hi > 500.0 && hi - lo < 80.0,
            "{lo} {hi}"
        );
        // singleton clusters are independent values
        let ids: Vec<u32> = (0..1000).collect();
        let (slo, shi, sok) = quantile_interval(&v, &ids, 0.5, 0.95);
        assert!(
            sok && (slo - lo).abs() <= 2.0 && (shi - hi).abs() <= 2.0,
            "{slo} {shi}"
        );
        // the p99 of 50 values has no upper bound at 95%
        let small: Vec<f64> = (1..=50).map(f64::from).collect();
        assert!(!quantile_interval(&small, &[], 0.99, 0.95).2);
        // 25 clusters of 40 alike values: far wider than 1000 independent ones
        let ids: Vec<u32> = (0..1000).map(|i| i / 40).collect();
        let (clo, chi, cok) = quantile_interval(&v, &ids, 0.5, 0.95);
        assert!(cok && chi - clo > 3.0 * (hi - lo), "{clo} {chi}");
        let few: Vec<u32> = (0..1000).map(|i| i / 200).collect();
        assert!(
            !quantile_interval(&v, &few, 0.5, 0.95).2,
            "five clusters prove nothing"
        );
    }

    fn draw(rng: &mut SplitMix64, scale: f64, n: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..n)
            .map(|_| scale * (1.0 + (rng.next_u64() % 1000) as f64 / 1000.0))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    #[test]
    fn quantile_shift_sees_a_30_percent_rise_and_not_noise() {
        let mut rng = SplitMix64::new(7);
        let (a, b, c) = (
            draw(&mut rng, 1.0, 2000),
            draw(&mut rng, 1.0, 2000),
            draw(&mut rng, 1.3, 2000),
        );
        let same = quantile_shift((&a, &[]), (&b, &[]), 0.5, 0.95);
        assert!(!same.excludes_zero(), "{same:?}");
        let up = quantile_shift((&a, &[]), (&c, &[]), 0.5, 0.95);
        assert!(up.excludes_zero(), "{up:?}");
        let ch = up.change.unwrap();
        assert!((0.2..0.4).contains(&ch), "{ch}");
        assert!(up.ci_low.unwrap() <= ch && ch <= up.ci_high.unwrap());
    }

    /// Two samples of 20 clusters whose levels differ by chance: independent-value
    /// intervals call it a change, cluster-robust ones do not.
    #[test]
    fn clusters_keep_chance_differences_from_looking_significant() {
        let mut rng = SplitMix64::new(11);
        let mut side = |offset: f64| {
            let mut v: Vec<(f64, u32)> = Vec::new();
            for c in 0..20u32 {
                let level = offset + f64::from(c % 5) * 40.0;
                for _ in 0..50 {
                    v.push((level + (rng.next_u64() % 10) as f64, c));
                }
            }
            v.sort_by(|x, y| x.0.total_cmp(&y.0));
            v.into_iter().unzip::<f64, u32, Vec<f64>, Vec<u32>>()
        };
        // the same spread of cluster levels, shifted as a chance draw of clusters would
        let (a, ac) = side(100.0);
        let (b, bc) = side(125.0);
        let naive = quantile_shift((&a, &[]), (&b, &[]), 0.5, 0.95);
        assert!(naive.excludes_zero(), "{naive:?}");
        let robust = quantile_shift((&a, &ac), (&b, &bc), 0.5, 0.95);
        assert!(!robust.excludes_zero(), "{robust:?}");
    }

    #[test]
    fn bootstrap_is_seeded_and_centred() {
        let rows: Vec<f64> = (0..500).flat_map(|i| [f64::from(i % 10), 1.0]).collect();
        let a = bootstrap_sums(&rows, 2, 200, 1);
        assert_eq!(a, bootstrap_sums(&rows, 2, 200, 1), "same seed, same draws");
        assert_eq!(a.len(), 400);
        let means: Vec<f64> = a.chunks(2).map(|c| c[0] / c[1]).collect();
        let (lo, hi) = percentile_interval(means, 0.95).unwrap();
        assert!(lo < 4.5 && hi > 4.5 && hi - lo < 1.0, "{lo} {hi}");
        assert!(a.chunks(2).all(|c| (c[1] - 500.0).abs() < 1e-9));
        let s = bootstrap_shift(4.5, 4.5, &[4.4, 4.6, 4.5], &[4.6, 4.4, 4.5], 0.9, true);
        assert!(!s.excludes_zero());
        assert!(bootstrap_sums(&[], 2, 10, 1).is_empty());
    }
}
