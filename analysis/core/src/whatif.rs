//! What if an operation were faster, ran in parallel with its siblings, or hit a
//! cache: a trace's timing re-walked over its tree with the changed durations,
//! without running anything (the virtual speed-up of causal profiling, over stored
//! traces).
//!
//! The re-walk keeps the tree's shape and every gap in it:
//! - each child waits for every blocking sibling that had ended before it started
//!   (else the parent's start) and keeps its original gap after the last of them, so
//!   sequential siblings shift, parallel ones (the same dependencies) do not wait for
//!   each other, and what follows a fan-out waits for its slowest branch;
//! - a parent ends when the last of its children ends, plus its original time after
//!   its last child; a parent with no blocking children keeps its duration;
//! - non-blocking children (a consumer under a producer) never move their parent;
//! - children are clipped to their parent, as the critical path clips them.
//!
//! A changed span: a speed-up scales its whole re-walked duration (its subtree is the
//! operation), a fixed duration replaces it, a cache hit (drawn per span with the hit
//! rate, seeded by the span id) takes the hit latency; "in parallel" starts it with its
//! predecessor (the last sibling to end before it started) instead of after it, and
//! what waited for it waits for both (the slower). A span that is not a model call
//! does not move before a model call it follows: it consumed that call's answer (a
//! tool the model chose), so "in parallel" leaves it where it is.

use crate::critical::blocking;
use crate::tree::Tree;
use tailscope_model::OpClass;

/// What happens to the targeted spans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// The duration shrinks by this fraction (0.5: −50%).
    SpeedUp(f64),
    /// The duration becomes this many ns.
    Duration(i64),
    /// The span starts with its predecessor instead of after it.
    Parallel,
    /// Served from a cache: with probability `hit_rate` the span takes `hit_ns`.
    Cache { hit_rate: f64, hit_ns: i64 },
}

/// A trace's duration before and after a change, and how many spans it touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewalk {
    pub before_ns: i64,
    pub after_ns: i64,
    pub touched: usize,
}

/// Whether a cache lookup of span `id` hits, with probability `rate` (seeded by the id,
/// so a re-run gives the same draw).
fn hits(id: [u8; 8], rate: f64, seed: u64) -> bool {
    let mut rng = crate::stats::SplitMix64::new(u64::from_le_bytes(id) ^ seed);
    (rng.next_u64() as f64 / u64::MAX as f64) < rate
}

/// Re-walks `tree` with each span's change (`change_of(node)`, `None`: unchanged).
pub fn rewalk(tree: &Tree, change_of: &dyn Fn(usize) -> Option<Change>, seed: u64) -> Rewalk {
    let n = tree.nodes.len();
    // children before parents: a post-order without recursion (traces can be deep)
    let mut order = Vec::with_capacity(n);
    let mut stack = vec![(tree.root, false)];
    while let Some((i, done)) = stack.pop() {
        if done {
            order.push(i);
        } else {
            stack.push((i, true));
            stack.extend(tree.nodes[i].children.iter().map(|&c| (c, false)));
        }
    }
    let mut dur = vec![0i64; n];
    let mut touched = 0;
    for &i in &order {
        let s = &tree.nodes[i].span;
        let (lo, hi) = (s.start_ns, s.end_ns.max(s.start_ns));
        // blocking children clipped to the parent, by start
        let mut kids: Vec<(usize, i64, i64)> = tree.nodes[i]
            .children
            .iter()
            .filter(|&&c| blocking(tree, i, c))
            .map(|&c| {
                let cs = &tree.nodes[c].span;
                (c, cs.start_ns.clamp(lo, hi), cs.end_ns.clamp(lo, hi))
            })
            .filter(|k| k.2 > k.1)
            .collect();
        kids.sort_by_key(|k| (k.1, k.2, k.0));
        // A child's re-walked time inside its parent: the share of it that lay inside
        // (a server span that outlives the HTTP request carrying it, as a streamed
        // response does, counts only its part within). An unchanged tree re-walks to
        // its own durations.
        let inside = |c: usize, (_, cs, ce): (usize, i64, i64)| {
            let full = tree.nodes[c].span.duration_ns();
            if full > ce - cs && full > 0 {
                (dur[c] as f64 * (ce - cs) as f64 / full as f64).round() as i64
            } else {
                dur[c]
            }
        };
        let mut d = hi - lo;
        if !kids.is_empty() {
            // A child waits for every earlier sibling that had ended when it started
            // (its dependencies; none: the parent's start) and keeps its original gap
            // after the last of them: sequential siblings shift, parallel ones (the
            // same dependencies) do not wait for each other, and what follows a fan-out
            // waits for its slowest branch, whichever that becomes.
            let mut by_end: Vec<(i64, usize)> =
                kids.iter().enumerate().map(|(j, k)| (k.2, j)).collect();
            by_end.sort_unstable();
            let parallel = |k: usize| change_of(kids[k].0) == Some(Change::Parallel);
            let llm = |k: usize| tree.nodes[kids[k].0].span.promoted.op_class == OpClass::Llm;
            // a span other than a model call consumed the answer of a model call before it
            let consumed = |pred: usize, k: usize| llm(pred) && !llm(k);
            let mut start = vec![0i64; kids.len()];
            let mut end = vec![0i64; kids.len()];
            for k in 0..kids.len() {
                let (child, cs, _) = kids[k];
                // dependencies: by_end[..n] (ended by this child's start, so started
                // before it and already placed); the last of them is its predecessor
                let n = by_end.partition_point(|e| e.0 <= cs);
                start[k] = match n.checked_sub(1).map(|x| by_end[x]) {
                    None => cs - lo,
                    // "in parallel": starts with its predecessor instead of after it
                    Some((_, pred)) if parallel(k) && !consumed(pred, k) => start[pred],
                    Some((last_end, _)) => {
                        let ready = by_end[..n].iter().map(|&(_, j)| end[j]).max().unwrap_or(0);
                        ready + (cs - last_end)
                    }
                };
                end[k] = start[k] + inside(child, kids[k]);
            }
            let last_child_end = kids.iter().map(|k| k.2).max().unwrap_or(lo);
            let after = hi - last_child_end;
            d = end.iter().max().map_or(d, |e| e + after);
        }
        if let Some(change) = change_of(i) {
            touched += 1;
            d = match change {
                Change::SpeedUp(f) => (d as f64 * (1.0 - f.clamp(0.0, 1.0))).round() as i64,
                Change::Duration(ns) => ns.max(0),
                Change::Cache { hit_rate, hit_ns } if hits(s.span_id.0, hit_rate, seed) => {
                    hit_ns.max(0)
                }
                Change::Cache { .. } | Change::Parallel => d,
            };
        }
        dur[i] = d;
    }
    let r = &tree.nodes[tree.root].span;
    Rewalk {
        before_ns: r.duration_ns(),
        after_ns: dur[tree.root],
        touched,
    }
}

/// A statistic of the trace durations before and after a change, with the 95%
/// interval of the after value from a bootstrap over traces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moved {
    pub before_ns: f64,
    pub after_ns: f64,
    pub after_ci_ns: (f64, f64),
    /// The 95% interval of `after − before`, from the same resamples of traces (paired:
    /// a change that moves nothing gets an interval of zero width).
    pub change_ci_ns: (f64, f64),
}

/// What a change does to a set of traces.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub traces: usize,
    /// Traces with at least one targeted span.
    pub touched_traces: usize,
    pub p50: Moved,
    pub p90: Moved,
    /// At the summary's percentile (99 by default).
    pub p: Moved,
    pub mean: Moved,
}

/// Bootstrap resamples of the traces for the intervals.
const RESAMPLES: usize = 200;

/// The nearest-rank quantile or the mean of unsorted durations.
fn stat(v: &mut [f64], q: Option<f64>) -> f64 {
    match q {
        Some(q) => {
            v.sort_by(f64::total_cmp);
            crate::stats::quantile(v, q)
        }
        None => v.iter().sum::<f64>() / v.len().max(1) as f64,
    }
}

/// p50, p90, the `percentile` and the mean of the durations before and after, each
/// after value with a 95% interval from a seeded bootstrap over traces. `None` for no
/// traces.
pub fn summarize(rewalks: &[Rewalk], percentile: f64, seed: u64) -> Option<Summary> {
    let n = rewalks.len();
    if n == 0 {
        return None;
    }
    let before: Vec<f64> = rewalks.iter().map(|r| r.before_ns as f64).collect();
    let after: Vec<f64> = rewalks.iter().map(|r| r.after_ns as f64).collect();
    let qs = [Some(0.5), Some(0.9), Some(percentile / 100.0), None];
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(RESAMPLES); qs.len()];
    let mut diffs: Vec<Vec<f64>> = vec![Vec::with_capacity(RESAMPLES); qs.len()];
    let mut rng = crate::stats::SplitMix64::new(seed ^ 0x005e_ed1f);
    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..RESAMPLES {
        for (x, y) in a.iter_mut().zip(b.iter_mut()) {
            let k = rng.below(n);
            (*x, *y) = (after[k], before[k]);
        }
        for ((d, e), q) in draws.iter_mut().zip(diffs.iter_mut()).zip(qs) {
            let (sa, sb) = (stat(&mut a, q), stat(&mut b, q));
            d.push(sa);
            e.push(sa - sb);
        }
    }
    let interval = |v: &[f64]| {
        crate::stats::percentile_interval(v.to_vec(), 0.95).unwrap_or((f64::NAN, f64::NAN))
    };
    let moved = |k: usize| {
        let q = qs[k];
        Moved {
            before_ns: stat(&mut before.clone(), q),
            after_ns: stat(&mut after.clone(), q),
            after_ci_ns: interval(&draws[k]),
            change_ci_ns: interval(&diffs[k]),
        }
    };
    Some(Summary {
        traces: n,
        touched_traces: rewalks.iter().filter(|r| r.touched > 0).count(),
        p50: moved(0),
        p90: moved(1),
        p: moved(2),
        mean: moved(3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{span, trace};
    use tailscope_model::SpanKind;

    const MS: i64 = 1_000_000;

    fn on<'a>(t: &'a Tree, name: &str, change: Change) -> impl Fn(usize) -> Option<Change> + 'a {
        let name = name.to_owned();
        move |i| (t.nodes[i].span.name == name).then_some(change)
    }

    /// root 1 [0,100]: a [10,40] then b [40,90] (sequential), 10 ms after.
    fn sequential() -> Tree {
        trace(vec![
            span(1, None, 0, 100 * MS),
            span(2, Some(1), 10 * MS, 40 * MS),
            span(3, Some(1), 40 * MS, 90 * MS),
        ])
    }

    /// root 1 [0,100]: a [0,60] and b [0,90] in parallel, 10 ms after.
    fn fan_out() -> Tree {
        trace(vec![
            span(1, None, 0, 100 * MS),
            span(2, Some(1), 0, 60 * MS),
            span(3, Some(1), 0, 90 * MS),
        ])
    }

    /// A streamed call as the vLLM stack records it: chat 2 [0,142] → POST 3 [3,5]
    /// (the request, answered with headers) → the server's llm_request 4 [3,140], which
    /// outlives the POST carrying it.
    fn streamed() -> Tree {
        let mut s = vec![
            span(1, None, 0, 143 * MS),
            span(2, Some(1), 0, 142 * MS),
            span(3, Some(2), 3 * MS, 5 * MS),
            span(4, Some(3), 3 * MS, 140 * MS),
        ];
        s[2].kind = SpanKind::Client;
        s[3].kind = SpanKind::Server;
        trace(s)
    }

    #[test]
    fn nothing_changed_is_the_same_trace() {
        // a child sticking out of its parent counts only its part inside (it re-walked
        // to 278 of 142 ms before: the server span's whole time inside the POST, then
        // the chat's time after the POST on top)
        let r = rewalk(&streamed(), &|_| None, 1);
        assert_eq!((r.before_ns, r.after_ns), (143 * MS, 143 * MS));
        let t = streamed();
        let half = rewalk(&t, &on(&t, "s4", Change::SpeedUp(0.5)), 1);
        assert!(half.after_ns <= half.before_ns, "{half:?}");
        for t in [sequential(), fan_out()] {
            let r = rewalk(&t, &|_| None, 1);
            assert_eq!(
                (r.before_ns, r.after_ns, r.touched),
                (100 * MS, 100 * MS, 0)
            );
        }
    }

    #[test]
    fn sequential_siblings_shift() {
        let t = sequential();
        // b (s3) 50 ms -> 25 ms: the root ends 25 ms sooner
        let r = rewalk(&t, &on(&t, "s3", Change::SpeedUp(0.5)), 1);
        assert_eq!(r.after_ns, 75 * MS);
        // a (s2) 30 ms -> 10 ms: b starts 20 ms sooner
        let r = rewalk(&t, &on(&t, "s2", Change::Duration(10 * MS)), 1);
        assert_eq!(r.after_ns, 80 * MS);
        // b in parallel with a: b starts at 10 with a, ends at 60; a ends at 40
        let r = rewalk(&t, &on(&t, "s3", Change::Parallel), 1);
        assert_eq!(r.after_ns, 70 * MS, "b from 10 to 60, then 10 ms after");
    }

    /// a [10,40] -> b [40,90] -> c [90,95] under a root of 100: b in parallel with a
    /// starts at 10 and ends at 60; c waits for both (60), then the root's last 5 ms.
    #[test]
    fn what_waited_for_a_parallel_span_waits_for_its_group() {
        let t = trace(vec![
            span(1, None, 0, 100 * MS),
            span(2, Some(1), 10 * MS, 40 * MS),
            span(3, Some(1), 40 * MS, 90 * MS),
            span(4, Some(1), 90 * MS, 95 * MS),
        ]);
        let r = rewalk(&t, &on(&t, "s3", Change::Parallel), 1);
        assert_eq!(r.after_ns, 70 * MS);
        // a (30 ms) in parallel with nothing before it: unchanged
        let r = rewalk(&t, &on(&t, "s2", Change::Parallel), 1);
        assert_eq!(r.after_ns, 100 * MS);
        // when the parallel span is the shorter, the group ends with its predecessor
        let t = trace(vec![
            span(1, None, 0, 100 * MS),
            span(2, Some(1), 0, 60 * MS),
            span(3, Some(1), 60 * MS, 80 * MS),
            span(4, Some(1), 80 * MS, 100 * MS),
        ]);
        let r = rewalk(&t, &on(&t, "s3", Change::Parallel), 1);
        assert_eq!(r.after_ns, 80 * MS, "c after a's 60 ms, then its 20");
    }

    /// A tool call right after the model call that chose it consumed its answer: made
    /// "in parallel" it stays after it; a second tool after the first runs beside it.
    #[test]
    fn a_tool_does_not_run_beside_the_model_call_that_chose_it() {
        let mut spans = vec![
            span(1, None, 0, 100 * MS),
            span(2, Some(1), 0, 30 * MS),
            span(3, Some(1), 30 * MS, 60 * MS),
            span(4, Some(1), 60 * MS, 100 * MS),
        ];
        spans[1].promoted.op_class = OpClass::Llm;
        let t = trace(spans);
        let r = rewalk(&t, &on(&t, "s3", Change::Parallel), 1);
        assert_eq!(r.after_ns, 100 * MS, "after the model call, unchanged");
        let r = rewalk(&t, &on(&t, "s4", Change::Parallel), 1);
        assert_eq!(r.after_ns, 70 * MS, "beside the first tool: 30 + 40");
    }

    /// The inference-optimization trap: the faster branch of a fan-out is not on the
    /// critical path, so making it faster moves nothing; the slower one moves the root
    /// only until the other branch becomes the longer.
    #[test]
    fn parallel_siblings_take_the_maximum() {
        let t = fan_out();
        let r = rewalk(&t, &on(&t, "s2", Change::SpeedUp(0.5)), 1);
        assert_eq!(r.after_ns, 100 * MS);
        let r = rewalk(&t, &on(&t, "s3", Change::SpeedUp(0.5)), 1);
        assert_eq!(
            r.after_ns,
            70 * MS,
            "a's 60 ms now bounds it, plus 10 ms after"
        );
    }

    /// a [0,10], then a fan-out x [10,60] and w [10,90], then s [90,100]: w twice
    /// as fast ends at 50, but s still waits for x (60); before, s waited only for the
    /// branch that had ended last (w) and the prediction came out 25 ms too good.
    #[test]
    fn what_follows_a_fan_out_waits_for_its_slowest_branch() {
        let t = trace(vec![
            span(1, None, 0, 100 * MS),
            span(2, Some(1), 0, 10 * MS),
            span(3, Some(1), 10 * MS, 60 * MS),
            span(4, Some(1), 10 * MS, 90 * MS),
            span(5, Some(1), 90 * MS, 100 * MS),
        ]);
        let r = rewalk(&t, &on(&t, "s4", Change::SpeedUp(0.5)), 1);
        assert_eq!(r.after_ns, 70 * MS, "s from 60 to 70");
        // w made parallel with a (its predecessor): starts at 0, ends at 80; s waits
        // for x and w
        let r = rewalk(&t, &on(&t, "s4", Change::Parallel), 1);
        assert_eq!(r.after_ns, 90 * MS);
    }

    #[test]
    fn a_consumer_does_not_move_its_producer() {
        let mut s = vec![
            span(1, None, 0, 100 * MS),
            span(2, Some(1), 0, 50 * MS),
            span(3, Some(2), 20 * MS, 45 * MS),
        ];
        s[1].kind = SpanKind::Producer;
        s[2].kind = SpanKind::Consumer;
        let t = trace(s);
        let r = rewalk(&t, &on(&t, "s3", Change::Duration(200 * MS)), 1);
        assert_eq!(r.after_ns, 100 * MS);
    }

    #[test]
    fn a_cache_hits_at_its_rate_and_the_same_draw_twice() {
        // 400 turns, each an LLM call of 100 ms under a root of 110 ms
        let hits_of = |seed| {
            (0..400u16)
                .filter(|k| {
                    let mut s = vec![
                        span(1, None, 0, 110 * MS),
                        span(2, Some(1), 5 * MS, 105 * MS),
                    ];
                    s[1].span_id.0 = [(k % 251) as u8, (k / 251) as u8, 7, 7, 7, 7, 7, 7];
                    let t = trace(s);
                    let r = rewalk(
                        &t,
                        &on(
                            &t,
                            "s2",
                            Change::Cache {
                                hit_rate: 0.3,
                                hit_ns: 10 * MS,
                            },
                        ),
                        seed,
                    );
                    r.after_ns == 20 * MS
                })
                .count()
        };
        let n = hits_of(9);
        assert!((90..=150).contains(&n), "about 30% of 400: {n}");
        assert_eq!(hits_of(9), n, "seeded");
    }

    #[test]
    fn a_wide_fan_out_is_quick_and_bounded_by_its_slowest_branch() {
        // 20,000 parallel calls of 1..=20,000 us under one root: the slowest bounds it
        let mut spans = vec![span(1, None, 0, 20_000_000)];
        for k in 0..20_000u32 {
            let mut s = span(2, Some(1), 0, 1_000 * i64::from(k + 1));
            s.span_id.0 = (u64::from(k) + 10).to_le_bytes();
            spans.push(s);
        }
        let t = trace(spans);
        let slowest = t
            .nodes
            .iter()
            .position(|n| n.span.end_ns == 20_000_000 && n.parent.is_some())
            .unwrap();
        let r = rewalk(&t, &|i| (i == slowest).then_some(Change::SpeedUp(0.5)), 1);
        assert_eq!(r.after_ns, 19_999_000, "the next slowest now bounds it");
    }

    #[test]
    fn a_deep_trace_does_not_overflow() {
        let depth = 10_000u32;
        let mut spans = Vec::new();
        for k in 0..depth {
            let mut s = span(1, None, i64::from(k), 2 * i64::from(depth) - i64::from(k));
            s.span_id.0 = (u64::from(k) + 1).to_le_bytes();
            s.parent_span_id = (k > 0).then(|| tailscope_model::SpanId(u64::from(k).to_le_bytes()));
            spans.push(s);
        }
        let t = trace(spans);
        let r = rewalk(&t, &|_| None, 1);
        assert_eq!(r.after_ns, r.before_ns);
    }

    /// 1,000 fan-out traces whose slow branch varies: halving the slow branch moves the
    /// p99 by about what the trace shape says, and the interval holds the new value.
    #[test]
    fn a_summary_of_many_traces_moves_the_tail_with_an_interval() {
        let rewalks: Vec<Rewalk> = (0..1_000i64)
            .map(|k| {
                let slow = (50 + k % 100) * MS; // 50..149 ms
                let t = trace(vec![
                    span(1, None, 0, slow + 10 * MS),
                    span(2, Some(1), 0, 40 * MS),
                    span(3, Some(1), 0, slow),
                ]);
                let r = rewalk(&t, &on(&t, "s3", Change::SpeedUp(0.5)), 3);
                r
            })
            .collect();
        let s = summarize(&rewalks, 99.0, 1).unwrap();
        assert_eq!((s.traces, s.touched_traces), (1_000, 1_000));
        // p99 before: 148 + 10 ms; after: max(40, 74) + 10 ms
        assert_eq!(s.p.before_ns as i64, 158 * MS);
        assert_eq!(s.p.after_ns as i64, 84 * MS);
        let (lo, hi) = s.p.after_ci_ns;
        assert!(
            lo <= s.p.after_ns && s.p.after_ns <= hi && hi - lo < 5.0 * MS as f64,
            "{s:?}"
        );
        assert!(s.mean.after_ns < s.mean.before_ns);
        let (lo, hi) = s.p.change_ci_ns;
        assert!(
            lo <= -70.0 * MS as f64 && hi >= -76.0 * MS as f64 && hi < 0.0,
            "{s:?}"
        );
        // a change that touches nothing moves nothing, with certainty
        let same: Vec<Rewalk> = rewalks
            .iter()
            .map(|r| Rewalk {
                after_ns: r.before_ns,
                ..*r
            })
            .collect();
        assert_eq!(
            summarize(&same, 99.0, 1).unwrap().p.change_ci_ns,
            (0.0, 0.0)
        );
        assert!(summarize(&[], 99.0, 1).is_none());
    }
}
