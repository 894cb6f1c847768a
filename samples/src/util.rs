//! Small deterministic helpers: id generation, random durations, mixing.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tailscope_model::{SpanId, TraceId};

/// SplitMix64 finaliser: a bijection on `u64`, so distinct inputs give distinct outputs.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A reproducible RNG for one stream (`salt`) of a workload seeded with `seed`.
pub(crate) fn rng_for(seed: u64, salt: u64) -> StdRng {
    StdRng::seed_from_u64(mix64(seed ^ mix64(salt)))
}

/// Allocates span and trace ids that are unique by construction (a counter through a bijection).
#[derive(Debug, Clone)]
pub(crate) struct IdGen {
    span_key: u64,
    trace_key: u64,
    trace_key2: u64,
    spans: u64,
    traces: u64,
}

impl IdGen {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            span_key: mix64(seed ^ 0x5A5A_0001),
            trace_key: mix64(seed ^ 0x5A5A_0002),
            trace_key2: mix64(seed ^ 0x5A5A_0003),
            spans: 0,
            traces: 0,
        }
    }

    pub(crate) fn span(&mut self) -> SpanId {
        loop {
            self.spans += 1;
            let v = mix64(self.span_key.wrapping_add(self.spans));
            if v != 0 {
                return SpanId(v.to_be_bytes());
            }
        }
    }

    pub(crate) fn trace(&mut self) -> TraceId {
        loop {
            self.traces += 1;
            let hi = mix64(self.trace_key.wrapping_add(self.traces));
            let lo = mix64(self.trace_key2 ^ self.traces);
            if hi != 0 {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&hi.to_be_bytes());
                b[8..].copy_from_slice(&lo.to_be_bytes());
                return TraceId(b);
            }
        }
    }
}

pub(crate) const SEC: i64 = 1_000_000_000;

/// Uniform duration in `[lo_ms, hi_ms)` milliseconds, as nanoseconds.
pub(crate) fn ms(rng: &mut StdRng, lo_ms: f64, hi_ms: f64) -> i64 {
    if hi_ms <= lo_ms {
        return (lo_ms * 1e6) as i64;
    }
    (rng.random_range(lo_ms..hi_ms) * 1e6) as i64
}

/// Uniform float in `[lo, hi)`; `lo` when the range is empty.
pub(crate) fn uni(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// Uniform integer in `[lo, hi]`; `lo` when the range is empty.
pub(crate) fn int(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// Index in `0..n` (0 when `n == 0`).
pub(crate) fn pick(rng: &mut StdRng, n: usize) -> usize {
    if n <= 1 {
        0
    } else {
        rng.random_range(0..n)
    }
}

/// Standard normal by Box-Muller.
pub(crate) fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal duration with the given median (ms) and shape, clamped to `[lo, hi]` ms.
pub(crate) fn lognormal_ms(rng: &mut StdRng, median_ms: f64, sigma: f64, lo: f64, hi: f64) -> i64 {
    let v = median_ms * (sigma * normal(rng)).exp();
    (v.clamp(lo, hi) * 1e6) as i64
}

/// True when `v` is the default variance (1.0), where draws must stay as they always were.
fn is_unit(v: f64) -> bool {
    (v - 1.0).abs() < f64::EPSILON
}

/// `[lo, hi]` widened (or narrowed) around its middle by the variance `v`, not below `floor`.
/// Exactly `[lo, hi]` at `v` = 1.
pub(crate) fn widen(lo: f64, hi: f64, v: f64, floor: f64) -> (f64, f64) {
    if is_unit(v) {
        return (lo, hi);
    }
    let mid = f64::midpoint(lo, hi);
    let half = (hi - lo) / 2.0 * v.max(0.0);
    ((mid - half).max(floor), (mid + half).max(floor))
}

/// Uniform integer in `[lo, hi]` widened by the variance `v` (see [`widen`]), then, for
/// `v` > 1, times a log-normal factor of shape 0.35 × (v − 1) for a heavy tail; at least
/// `floor`, at most `cap`. Draws exactly as [`int`] at `v` = 1.
pub(crate) fn int_spread(rng: &mut StdRng, lo: i64, hi: i64, v: f64, floor: i64, cap: i64) -> i64 {
    if is_unit(v) {
        return int(rng, lo, hi);
    }
    let (a, b) = widen(lo as f64, hi as f64, v, floor as f64);
    let x = int(rng, a.round() as i64, b.round() as i64) as f64;
    let factor = if v > 1.0 {
        (0.35 * (v - 1.0) * normal(rng)).exp()
    } else {
        1.0
    };
    ((x * factor).round() as i64).clamp(floor, cap.max(floor))
}

/// Uniform duration in `[lo_ms, hi_ms)` widened by the variance `v` (not below a fifth of
/// `lo_ms`). Draws exactly as [`ms`] at `v` = 1.
pub(crate) fn ms_spread(rng: &mut StdRng, lo_ms: f64, hi_ms: f64, v: f64) -> i64 {
    let (lo, hi) = widen(lo_ms, hi_ms, v, lo_ms * 0.2);
    ms(rng, lo, hi)
}

/// Log-normal duration whose shape is scaled by the variance `v` (and its upper clamp too,
/// for `v` > 1). Draws exactly as [`lognormal_ms`] at `v` = 1.
pub(crate) fn lognormal_spread(
    rng: &mut StdRng,
    median_ms: f64,
    sigma: f64,
    lo: f64,
    hi: f64,
    v: f64,
) -> i64 {
    lognormal_ms(rng, median_ms, sigma * v.max(0.0), lo, hi * v.max(1.0))
}

/// Rounds `tokens` down to a whole number of `block`-token blocks.
pub(crate) fn block_align(tokens: i64, block: i64) -> i64 {
    if block <= 1 {
        tokens.max(0)
    } else {
        (tokens.max(0) / block) * block
    }
}

/// Seconds as a float, for OTel attributes measured in seconds.
pub(crate) fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// Short hex string from a number, for ids like `conv-3fa2...`.
pub(crate) fn hex_id(prefix: &str, v: u64) -> String {
    format!("{prefix}{v:016x}")
}
