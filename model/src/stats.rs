//! The one percentile and the one median of tailscope: nearest rank, as the README
//! defines it. The p-th percentile of n sorted values is the value at rank
//! `ceil(p/100 · n)` (ranks from 1, clamped to `1..=n`), so it is always one of the
//! values; the median is the 50th percentile, the lower middle of an even count.
//! DuckDB's `quantile_disc` gives the same answer.
//!
//! Every other crate calls these; an empty input gives `None` and the caller says
//! what that means for it.

use std::cmp::Ordering;

/// The 0-based index of the nearest-rank `fraction` quantile (`fraction` in 0..=1) of
/// `n` sorted values: rank `ceil(fraction · n)` clamped to `1..=n`, minus one. `None`
/// when `n` is 0. The one definition every function here uses.
pub fn nearest_rank(n: usize, fraction: f64) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let rank = (fraction * n as f64).ceil() as usize;
    Some(rank.clamp(1, n) - 1)
}

/// Nearest-rank quantile of sorted values, `q` in 0..=1 (0.99 for the p99).
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    nearest_rank(sorted.len(), q).map(|i| sorted[i])
}

/// Nearest-rank percentile of sorted values, `p` in 0..=100: the value at rank
/// `ceil(p/100 · n)`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    quantile(sorted, p / 100.0)
}

/// Median of sorted values: the nearest-rank 50th percentile (the lower middle of an
/// even count).
pub fn median<T: Copy>(sorted: &[T]) -> Option<T> {
    percentile(sorted, 50.0)
}

/// [`percentile`] of unsorted values, found by selection in O(n): the values are
/// reordered, and the answer is the element a full sort by `cmp` would put at that rank.
pub fn select_percentile_by<T: Copy>(
    values: &mut [T],
    p: f64,
    cmp: impl FnMut(&T, &T) -> Ordering,
) -> Option<T> {
    let k = nearest_rank(values.len(), p / 100.0)?;
    Some(*values.select_nth_unstable_by(k, cmp).1)
}

/// [`percentile`] of unsorted floats (ordered by [`f64::total_cmp`]); reorders them.
pub fn percentile_of(values: &mut [f64], p: f64) -> Option<f64> {
    select_percentile_by(values, p, f64::total_cmp)
}

/// [`median`] of unsorted floats (ordered by [`f64::total_cmp`]); reorders them.
pub fn median_of(values: &mut [f64]) -> Option<f64> {
    percentile_of(values, 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn empty_input_has_no_percentile() {
        assert_eq!(nearest_rank(0, 0.5), None);
        assert_eq!(percentile::<i64>(&[], 50.0), None);
        assert_eq!(quantile::<f64>(&[], 0.99), None);
        assert_eq!(median::<Duration>(&[]), None);
        assert_eq!(median_of(&mut []), None);
    }

    #[test]
    fn one_value_is_every_percentile() {
        for p in [0.0, 1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&[7i64], p), Some(7));
            assert_eq!(percentile_of(&mut [7.0], p), Some(7.0));
        }
        assert_eq!(median(&[7i64]), Some(7));
    }

    #[test]
    fn p0_is_the_smallest_and_p100_the_largest() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 100.0), Some(10));
        // out of range clamps to the ends
        assert_eq!(percentile(&v, -5.0), Some(1));
        assert_eq!(percentile(&v, 150.0), Some(10));
    }

    #[test]
    fn nearest_rank_as_the_readme_defines_it() {
        // the p-th percentile of n sorted values is the value at rank ceil(p/100 · n)
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.5), Some(100));
        assert_eq!(percentile(&v, 0.5), Some(1));
        let v = [10i64, 20, 30, 40, 50];
        // ceil(0.4 · 5) = 2, ceil(0.41 · 5) = 3, ceil(0.9 · 5) = 5
        assert_eq!(percentile(&v, 40.0), Some(20));
        assert_eq!(percentile(&v, 41.0), Some(30));
        assert_eq!(percentile(&v, 90.0), Some(50));
        // quantile is the same on the 0..=1 scale, for any Copy type
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.99), Some(Duration::from_millis(99)));
        let f: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&f, 0.5), Some(50.0));
    }

    #[test]
    fn median_is_the_lower_middle() {
        assert_eq!(median(&[1, 2, 3, 4]), Some(2));
        assert_eq!(median(&[1, 2, 3, 4, 5]), Some(3));
        assert_eq!(median_of(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median_of(&mut [5.0, 4.0, 1.0, 3.0, 2.0]), Some(3.0));
    }

    #[test]
    fn selection_agrees_with_sorting() {
        let mut v: Vec<f64> = (0..97).map(|i| f64::from((i * 37) % 97)).collect();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        for p in [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 100.0] {
            assert_eq!(percentile_of(&mut v, p), percentile(&sorted, p));
        }
        let mut d = vec![Duration::from_secs(3), Duration::from_secs(1)];
        assert_eq!(
            select_percentile_by(&mut d, 50.0, Ord::cmp),
            Some(Duration::from_secs(1))
        );
    }
}
