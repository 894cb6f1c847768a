//! The critical path, as Jaeger UI defines it: walk back from the root's end; at each
//! span take the last-finishing child that ends before the current point (children
//! clipped to their parent), recurse into it, continue from its start. Consumer spans
//! under a producer are not blocking. Agent rules on top: a streaming LLM call hands
//! off at its last chunk, so the caller's path resumes there.

use crate::tree::Tree;
use tailscope_model::semconv::keys;
use tailscope_model::{OpClass, SpanKind};

/// A piece of the critical path: self time of `node` over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSection {
    pub node: usize,
    pub start: i64,
    pub end: i64,
}

/// When the caller may go on: a streaming LLM call's last chunk event, else its end.
/// A first-token marker (OpenInference's `First Token Stream Event`) or an exception
/// is not a chunk: the stream goes on after it.
pub fn handoff(tree: &Tree, i: usize) -> i64 {
    let s = &tree.nodes[i].span;
    if s.promoted.op_class == OpClass::Llm && s.promoted.stream == Some(true) {
        if let Some(last) = s
            .events
            .iter()
            .filter(|e| {
                e.name != "exception" && !keys::FIRST_TOKEN_EVENTS.contains(&e.name.as_str())
            })
            .map(|e| e.time_ns)
            .filter(|t| *t >= s.start_ns && *t <= s.end_ns)
            .max()
        {
            return last;
        }
    }
    s.end_ns
}

pub(crate) fn blocking(tree: &Tree, parent: usize, child: usize) -> bool {
    let p = &tree.nodes[parent].span;
    let c = &tree.nodes[child].span;
    !(p.kind == SpanKind::Producer && c.kind == SpanKind::Consumer)
}

/// The critical path of the tree, from the root's start to its end, sections in time order.
pub fn critical_path(tree: &Tree) -> Vec<PathSection> {
    let mut out = Vec::new();
    let root = tree.root;
    let r = &tree.nodes[root].span;
    walk(tree, root, r.start_ns, r.end_ns, &mut out);
    out.sort_by_key(|s| s.start);
    // merge adjacent sections of the same node
    let mut merged: Vec<PathSection> = Vec::with_capacity(out.len());
    for s in out {
        match merged.last_mut() {
            Some(m) if m.node == s.node && m.end == s.start => m.end = s.end,
            _ => merged.push(s),
        }
    }
    merged
}

/// One span being walked: its window, how far back the walk has come, and its
/// blocking children (clipped, last-finishing first) with the next one to consider.
struct Frame {
    node: usize,
    lo: i64,
    cur: i64,
    kids: Vec<(usize, i64, i64)>,
    next: usize,
}

impl Frame {
    fn new(tree: &Tree, i: usize, lo: i64, until: i64) -> Self {
        // children clipped to [lo, until], with their hand-off point as end
        let mut kids: Vec<(usize, i64, i64)> = tree.nodes[i]
            .children
            .iter()
            .filter(|&&c| blocking(tree, i, c))
            .filter_map(|&c| {
                let s = tree.nodes[c].span.start_ns.max(lo);
                let e = handoff(tree, c).min(until);
                (e > s).then_some((c, s, e))
            })
            .collect();
        // last-finishing first
        kids.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)));
        Self {
            node: i,
            lo,
            cur: until,
            kids,
            next: 0,
        }
    }
}

/// Covers `[lo, until)` of node `i` (already clipped to its parent). An explicit stack
/// instead of recursion, so a trace 10,000 spans deep cannot overflow the thread stack.
fn walk(tree: &Tree, i: usize, lo: i64, until: i64, out: &mut Vec<PathSection>) {
    let mut stack = vec![Frame::new(tree, i, lo, until)];
    while let Some(f) = stack.last_mut() {
        // the last-finishing child that ends at or before `cur`
        while f.next < f.kids.len() && f.kids[f.next].2 > f.cur {
            f.next += 1;
        }
        let child = (f.cur > f.lo)
            .then(|| f.kids.get(f.next).copied())
            .flatten();
        let Some((c, cs, ce)) = child else {
            if f.cur > f.lo {
                out.push(PathSection {
                    node: f.node,
                    start: f.lo,
                    end: f.cur,
                });
            }
            stack.pop();
            continue;
        };
        f.next += 1;
        if ce < f.cur {
            out.push(PathSection {
                node: f.node,
                start: ce,
                end: f.cur,
            });
        }
        f.cur = cs;
        stack.push(Frame::new(tree, c, cs, ce));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{span, trace};

    /// (first id byte, start, end) of each section.
    fn ids(t: &Tree, p: &[PathSection]) -> Vec<(u8, i64, i64)> {
        p.iter()
            .map(|s| (t.nodes[s.node].span.span_id.0[0], s.start, s.end))
            .collect()
    }

    #[test]
    fn jaeger_definition_on_a_fan_out() {
        // root 0..100; a 10..40; b 20..70 (last finishing); c 75..90
        let t = trace(vec![
            span(1, None, 0, 100),
            span(2, Some(1), 10, 40),
            span(3, Some(1), 20, 70),
            span(4, Some(1), 75, 90),
        ]);
        let p = critical_path(&t);
        let ids = ids(&t, &p);
        // a (10..40) overlaps b and ends before b's start? no: a ends at 40 > b's start 20,
        // so after b the walk continues at 20 and a (ending 40) is not before 20: skipped.
        assert_eq!(
            ids,
            vec![
                (1, 0, 20),
                (3, 20, 70),
                (1, 70, 75),
                (4, 75, 90),
                (1, 90, 100)
            ]
        );
        let total: i64 = p.iter().map(|s| s.end - s.start).sum();
        assert_eq!(total, 100, "sections cover the root with no overlap");
    }

    #[test]
    fn children_clipped_to_parent_and_sequential_chain() {
        // child sticks out of the parent's end (same service, no skew fix): clipped
        let t = trace(vec![
            span(1, None, 0, 50),
            span(2, Some(1), 10, 30),
            span(3, Some(1), 30, 60),
        ]);
        let p = critical_path(&t);
        let ids = ids(&t, &p);
        assert_eq!(ids, vec![(1, 0, 10), (2, 10, 30), (3, 30, 50)]);
    }

    #[test]
    fn producer_consumer_is_not_blocking() {
        let mut spans = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 10, 20),
            span(3, Some(2), 30, 95),
        ];
        spans[1].kind = SpanKind::Producer;
        spans[2].kind = SpanKind::Consumer;
        let t = trace(spans);
        let p = critical_path(&t);
        assert!(
            p.iter().all(|s| t.nodes[s.node].span.span_id.0[0] != 3),
            "{p:?}"
        );
    }

    #[test]
    fn a_trace_ten_thousand_spans_deep_does_not_overflow() {
        // 100,000 spans: a chain 10,000 deep, each link with 9 short leaf children
        let depth: u32 = 10_000;
        let mut spans = Vec::with_capacity(100_000);
        let id = |k: u32| tailscope_model::SpanId((u64::from(k) + 1).to_be_bytes());
        for d in 0..depth {
            let mut s = span(
                0,
                None,
                i64::from(d),
                2 * i64::from(depth) * 10 - i64::from(d),
            );
            s.span_id = id(d);
            s.parent_span_id = d.checked_sub(1).map(id);
            spans.push(s);
            for j in 0..9u32 {
                let mut leaf = span(0, None, i64::from(d) + 1, i64::from(d) + 2);
                leaf.span_id = id(depth + d * 9 + j);
                leaf.parent_span_id = Some(id(d));
                spans.push(leaf);
            }
        }
        assert_eq!(spans.len(), 100_000);
        // run on a thread with a small stack, as a worker thread might have
        let handle = std::thread::Builder::new()
            .name("deep-trace".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let t = trace(spans);
                let p = critical_path(&t);
                let total: i64 = p.iter().map(|s| s.end - s.start).sum();
                (total, t.root_span().duration_ns())
            })
            .unwrap();
        let (total, root) = handle.join().unwrap();
        assert_eq!(total, root, "sections cover the root");
    }

    #[test]
    fn streaming_call_hands_off_at_last_chunk() {
        let mut spans = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 10, 90),
            span(3, Some(1), 60, 80),
        ];
        spans[1].promoted.op_class = OpClass::Llm;
        spans[1].promoted.stream = Some(true);
        spans[1].events = vec![tailscope_model::Event {
            time_ns: 50,
            name: "gen_ai.chunk".into(),
            attributes: vec![],
        }];
        let t = trace(spans);
        let p = critical_path(&t);
        let ids = ids(&t, &p);
        assert_eq!(
            ids,
            vec![
                (1, 0, 10),
                (2, 10, 50),
                (1, 50, 60),
                (3, 60, 80),
                (1, 80, 100)
            ]
        );
    }
}
