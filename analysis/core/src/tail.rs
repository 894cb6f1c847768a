//! Tail attribution: the cohort at or above a percentile against the 40th–60th band,
//! per cause and per group; and each trace's primary cause (largest excess over the
//! median of traces with the same root operation).

use std::collections::{BTreeMap, HashMap};
use tailscope_model::Cause;

/// Nearest-rank percentile of sorted values (`p` in 0..=100),
/// [`tailscope_model::stats::percentile`]; 0 for none.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    tailscope_model::stats::percentile(sorted, p).unwrap_or(0)
}

/// What tail attribution needs of one trace.
#[derive(Debug, Clone)]
pub struct TraceTimes<'a> {
    pub duration_ns: i64,
    pub group: &'a str,
    pub by_cause: &'a BTreeMap<Cause, i64>,
    /// Output tokens of the trace's LLM calls (0 when unknown).
    pub output_tokens: i64,
    /// Uncached input tokens of the trace's LLM calls (0 when unknown).
    pub uncached_tokens: i64,
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

/// Median of unsorted values (the nearest-rank lower middle, found in O(n); 0 for none).
fn median_of(mut v: Vec<f64>) -> f64 {
    tailscope_model::stats::median_of(&mut v).unwrap_or(0.0)
}

/// Median and robust spread (1.4826 × MAD) of values.
fn center_spread(v: Vec<f64>) -> (f64, f64) {
    let m = median_of(v.clone());
    let mad = median_of(v.into_iter().map(|x| (x - m).abs()).collect());
    (m, 1.4826 * mad)
}

/// A cause must exceed its usual value by this many robust spreads to be "unusual".
pub const MIN_SURPRISE: f64 = 3.0;

/// What is unusual about each trace (design.md): for each cause, its excess is the
/// trace's time on it minus the median among traces of the same root operation, and
/// its surprise that excess over the cause's robust spread (1.4826 × MAD, floored at
/// max(10 ms, 3.5% of the median root duration; design.md suggests 5%, which hid
/// sub-second causes in long turns)). The primary cause is the most
/// surprising cause whose excess is material (>= max(50 ms, 2% of the median root
/// duration)) and at least [`MIN_SURPRISE`] spreads, whether or not the trace is slow.
/// Decode that varies with output length is not surprising: decode qualifies only when
/// its per-token time is unusual too. A cause present in a quarter or more of the
/// group's traces (but not all) is compared with its usual size when present, so a
/// step that half the turns take is not surprising merely for being taken; a queue or
/// re-prefill wait, a residual the latency model already found material, always is
/// compared with the median. `None` when nothing qualifies.
pub fn primary_causes(traces: &[TraceTimes<'_>]) -> Vec<Option<Cause>> {
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in traces.iter().enumerate() {
        groups.entry(t.group).or_default().push(i);
    }
    let mut out = vec![None; traces.len()];
    for idx in groups.values() {
        let (median_dur, _) =
            center_spread(idx.iter().map(|&i| traces[i].duration_ns as f64).collect());
        let floor = (10e6f64).max(0.035 * median_dur);
        let material = (50e6f64).max(0.02 * median_dur);
        let stats: Vec<(Cause, f64, f64)> = Cause::ALL
            .into_iter()
            .map(|c| {
                let values: Vec<f64> = idx
                    .iter()
                    .map(|&i| traces[i].by_cause.get(&c).copied().unwrap_or(0) as f64)
                    .collect();
                let present: Vec<f64> = values.iter().copied().filter(|v| *v > 0.0).collect();
                // A cause that many traces have and many do not (a tool step in half the
                // turns) is judged by its usual size when present; a rare one against 0.
                // A wait the latency model cannot explain (queue, or a re-prefill) is
                // never usual: the model already judged it material on its call, so it
                // is judged against the traces' median however many have one.
                let residual = matches!(c, Cause::Queue | Cause::KvEviction);
                let (m, sd) = if !residual && present.len() * 4 >= values.len() {
                    center_spread(present)
                } else {
                    center_spread(values)
                };
                (c, m, sd.max(floor))
            })
            .collect();
        // decode per output token, prefill per uncached input token
        let rate_stats = |tokens: &dyn Fn(&TraceTimes<'_>) -> i64, c: Cause| {
            let rates: Vec<f64> = idx
                .iter()
                .filter(|&&i| tokens(&traces[i]) > 0)
                .map(|&i| {
                    traces[i].by_cause.get(&c).copied().unwrap_or(0) as f64
                        / tokens(&traces[i]) as f64
                })
                .collect();
            let (m, sd) = center_spread(rates);
            (m, sd.max(0.05 * m).max(1.0))
        };
        let decode_rate = rate_stats(&|t| t.output_tokens, Cause::Decode);
        let prefill_rate = rate_stats(&|t| t.uncached_tokens, Cause::Prefill);
        for &i in idx {
            let t = &traces[i];
            out[i] = stats
                .iter()
                .filter_map(|&(c, m, sd)| {
                    let v = t.by_cause.get(&c).copied().unwrap_or(0) as f64;
                    let excess = v - m;
                    let mut surprise = excess / sd;
                    // work that grows with its tokens is surprising only per token; with
                    // no token counts it cannot be judged, so it is not surprising
                    let per_token = match c {
                        Cause::Decode => Some((t.output_tokens, decode_rate)),
                        Cause::Prefill => Some((t.uncached_tokens, prefill_rate)),
                        _ => None,
                    };
                    if let Some((tokens, (rate_median, rate_sd))) = per_token {
                        surprise = if tokens > 0 {
                            surprise.min((v / tokens as f64 - rate_median) / rate_sd)
                        } else {
                            0.0
                        };
                    }
                    (excess >= material && surprise >= MIN_SURPRISE).then_some((surprise, c))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, c)| c);
        }
    }
    out
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

    const MS: i64 = 1_000_000;

    #[test]
    fn gap_and_primary() {
        let fast: BTreeMap<Cause, i64> = [(Cause::Decode, 100 * MS)].into();
        let slow: BTreeMap<Cause, i64> =
            [(Cause::Decode, 150 * MS), (Cause::PoolWait, 900 * MS)].into();
        let mut ts = Vec::new();
        for _ in 0..99 {
            ts.push(TraceTimes {
                duration_ns: 100 * MS,
                group: "r",
                by_cause: &fast,
                output_tokens: 0,
                uncached_tokens: 0,
            });
        }
        ts.push(TraceTimes {
            duration_ns: 1050 * MS,
            group: "r",
            by_cause: &slow,
            output_tokens: 0,
            uncached_tokens: 0,
        });
        let t = tail(&ts, 99.0);
        assert_eq!(t.tail_traces, 1);
        assert_eq!(t.gap_by_cause_ns[&Cause::PoolWait], 900 * MS);
        assert_eq!(t.gap_by_cause_ns[&Cause::Decode], 50 * MS);
        let p = primary_causes(&ts);
        assert_eq!(
            p[99],
            Some(Cause::PoolWait),
            "most surprising, not largest share"
        );
        assert_eq!(p[0], None);
    }

    /// One group of traces, each with its time per cause and no token counts.
    fn turns(maps: &[BTreeMap<Cause, i64>]) -> Vec<TraceTimes<'_>> {
        maps.iter()
            .map(|m| TraceTimes {
                duration_ns: m.values().sum(),
                group: "turn",
                by_cause: m,
                output_tokens: 0,
                uncached_tokens: 0,
            })
            .collect()
    }

    /// A third of the traces waited in a queue (120-300 ms): each of them has queue as
    /// its primary cause, not only those that waited longer than the others did.
    #[test]
    fn a_common_queue_wait_is_still_surprising() {
        let maps: Vec<BTreeMap<Cause, i64>> = (0..30i64)
            .map(|k| {
                let mut m: BTreeMap<Cause, i64> = [
                    (Cause::Prefill, 80 * MS),
                    (Cause::Decode, (180 + k % 7) * MS),
                ]
                .into();
                if k % 3 == 0 {
                    m.insert(Cause::Queue, (120 + k * 18) * MS);
                }
                m
            })
            .collect();
        let ts = turns(&maps);
        let p = primary_causes(&ts);
        for (k, c) in p.iter().enumerate() {
            let want = (k % 3 == 0).then_some(Cause::Queue);
            assert_eq!(*c, want, "trace {k}: {p:?}");
        }
    }

    #[test]
    fn a_step_half_the_traces_take_is_not_surprising_for_being_taken() {
        let mut maps = Vec::new();
        for k in 0..40i64 {
            let mut m: BTreeMap<Cause, i64> = [(Cause::Prefill, 200 * MS)].into();
            if k % 2 == 0 {
                m.insert(Cause::Tool, (400 + (k * 13) % 100) * MS);
            }
            if k == 7 {
                m.insert(Cause::Tool, 3000 * MS);
            }
            maps.push(m);
        }
        let ts = turns(&maps);
        let p = primary_causes(&ts);
        assert_eq!(
            p[7],
            Some(Cause::Tool),
            "a tool step far beyond its usual size"
        );
        assert!(
            p.iter().enumerate().all(|(i, c)| i == 7 || c.is_none()),
            "{p:?}"
        );
    }

    #[test]
    fn surprise_not_slowness_and_decode_judged_per_token() {
        // turns decode 20 ms per output token for 10-60 tokens; one turn paid a 3 s
        // eviction but decoded very little, so it is not slower than usual
        let mut maps = Vec::new();
        for k in 0..40i64 {
            let out = 10 + (k * 7) % 50;
            let mut m: BTreeMap<Cause, i64> =
                [(Cause::Decode, out * 20 * MS), (Cause::Prefill, 200 * MS)].into();
            if k == 5 {
                m.insert(Cause::KvEviction, 3000 * MS);
                m.insert(Cause::Decode, 2 * 20 * MS);
            }
            maps.push((m, if k == 5 { 2 } else { out }));
        }
        let ts: Vec<TraceTimes<'_>> = maps
            .iter()
            .map(|(m, out)| TraceTimes {
                duration_ns: m.values().sum(),
                group: "chat",
                by_cause: m,
                output_tokens: *out,
                uncached_tokens: 0,
            })
            .collect();
        let p = primary_causes(&ts);
        assert_eq!(p[5], Some(Cause::KvEviction));
        // long answers decode longer at the usual rate: not a cause
        assert!(
            p.iter().enumerate().all(|(i, c)| i == 5 || c.is_none()),
            "{p:?}"
        );
    }
}
