//! Tail attribution: the cohort at or above a percentile against the 40th–60th band,
//! per cause and per group; and each trace's primary cause (largest excess over the
//! median of traces with the same root operation).

use std::collections::{BTreeMap, HashMap};
use tailscope_model::Cause;

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What tail attribution needs of one trace.
#[derive(Debug, Clone)]
pub struct TraceTimes<'a> {
    pub duration_ns: i64,
    pub group: &'a str,
    pub by_cause: &'a BTreeMap<Cause, i64>,
}

/// The tail versus the median band.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    pub percentile: f64,
    pub p50_ns: i64,
    pub p_ns: i64,
    pub tail_traces: usize,
    pub median_traces: usize,
    /// Mean per-cause time of the tail cohort minus that of the 40th–60th band.
    pub gap_by_cause_ns: BTreeMap<Cause, i64>,
    pub tail_mean_ns: i64,
    pub median_mean_ns: i64,
}

/// Indices of the tail cohort and the median band, by rank so ties cannot swell a
/// cohort: the tail is the `ceil(n·(100−p)/100)` slowest traces (at least one), the
/// median band the traces ranked from the 40th to the 60th percentile. Also returns
/// the nearest-rank p and p50 durations.
pub fn cohorts(durations: &[i64], p: f64) -> (Vec<usize>, Vec<usize>, i64, i64) {
    let n = durations.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (durations[i], i));
    let sorted: Vec<i64> = order.iter().map(|&i| durations[i]).collect();
    let k = ((n as f64 * (100.0 - p) / 100.0).ceil() as usize).clamp(usize::from(n > 0), n);
    let tail = order[n - k..].to_vec();
    let lo = ((n as f64 * 0.4).ceil() as usize).saturating_sub(1);
    let hi = ((n as f64 * 0.6).ceil() as usize).min(n);
    let mid = if n == 0 {
        Vec::new()
    } else {
        order[lo.min(hi)..hi].to_vec()
    };
    (tail, mid, percentile(&sorted, p), percentile(&sorted, 50.0))
}

fn mean_by_cause(traces: &[TraceTimes<'_>], idx: &[usize]) -> BTreeMap<Cause, f64> {
    let mut out = BTreeMap::new();
    if idx.is_empty() {
        return out;
    }
    for &i in idx {
        for (c, ns) in traces[i].by_cause {
            *out.entry(*c).or_insert(0.0) += *ns as f64;
        }
    }
    for v in out.values_mut() {
        *v /= idx.len() as f64;
    }
    out
}

fn mean(traces: &[TraceTimes<'_>], idx: &[usize]) -> i64 {
    if idx.is_empty() {
        return 0;
    }
    (idx.iter()
        .map(|&i| traces[i].duration_ns as f64)
        .sum::<f64>()
        / idx.len() as f64) as i64
}

pub fn tail(traces: &[TraceTimes<'_>], p: f64) -> Tail {
    let durations: Vec<i64> = traces.iter().map(|t| t.duration_ns).collect();
    let (tail_idx, mid_idx, p_ns, p50_ns) = cohorts(&durations, p);
    let t = mean_by_cause(traces, &tail_idx);
    let m = mean_by_cause(traces, &mid_idx);
    let mut gap = BTreeMap::new();
    for c in Cause::ALL {
        let d = t.get(&c).copied().unwrap_or(0.0) - m.get(&c).copied().unwrap_or(0.0);
        if t.contains_key(&c) || m.contains_key(&c) {
            gap.insert(c, d.round() as i64);
        }
    }
    Tail {
        percentile: p,
        p50_ns,
        p_ns,
        tail_traces: tail_idx.len(),
        median_traces: mid_idx.len(),
        gap_by_cause_ns: gap,
        tail_mean_ns: mean(traces, &tail_idx),
        median_mean_ns: mean(traces, &mid_idx),
    }
}

/// The cause with the largest excess over its group's median, or `None` when the trace
/// is not slower than its group's median duration.
pub fn primary_causes(traces: &[TraceTimes<'_>]) -> Vec<Option<Cause>> {
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in traces.iter().enumerate() {
        groups.entry(t.group).or_default().push(i);
    }
    let mut medians: HashMap<&str, (i64, BTreeMap<Cause, i64>)> = HashMap::new();
    for (g, idx) in &groups {
        let mut d: Vec<i64> = idx.iter().map(|&i| traces[i].duration_ns).collect();
        d.sort_unstable();
        let mut per = BTreeMap::new();
        for c in Cause::ALL {
            let mut v: Vec<i64> = idx
                .iter()
                .map(|&i| traces[i].by_cause.get(&c).copied().unwrap_or(0))
                .collect();
            v.sort_unstable();
            per.insert(c, percentile(&v, 50.0));
        }
        medians.insert(g, (percentile(&d, 50.0), per));
    }
    traces
        .iter()
        .map(|t| {
            let (median_dur, per) = &medians[t.group];
            if t.duration_ns <= *median_dur {
                return None;
            }
            Cause::ALL
                .into_iter()
                .map(|c| {
                    (
                        t.by_cause.get(&c).copied().unwrap_or(0)
                            - per.get(&c).copied().unwrap_or(0),
                        c,
                    )
                })
                .filter(|(excess, _)| *excess > 0)
                .max_by_key(|(excess, c)| (*excess, std::cmp::Reverse(*c)))
                .map(|(_, c)| c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
    }

    #[test]
    fn gap_and_primary() {
        let fast: BTreeMap<Cause, i64> = [(Cause::Decode, 100)].into();
        let slow: BTreeMap<Cause, i64> = [(Cause::Decode, 150), (Cause::PoolWait, 900)].into();
        let mut ts = Vec::new();
        for _ in 0..99 {
            ts.push(TraceTimes {
                duration_ns: 100,
                group: "r",
                by_cause: &fast,
            });
        }
        ts.push(TraceTimes {
            duration_ns: 1050,
            group: "r",
            by_cause: &slow,
        });
        let t = tail(&ts, 99.0);
        assert_eq!(t.tail_traces, 1);
        assert_eq!(t.gap_by_cause_ns[&Cause::PoolWait], 900);
        assert_eq!(t.gap_by_cause_ns[&Cause::Decode], 50);
        let p = primary_causes(&ts);
        assert_eq!(
            p[99],
            Some(Cause::PoolWait),
            "largest excess, not largest share"
        );
        assert_eq!(p[0], None);
    }
}
