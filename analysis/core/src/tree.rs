//! Latency trees: rebuild a trace from parent ids whatever order spans arrived in,
//! hang orphans under a synthetic root, and correct clock skew the way Jaeger's
//! adjuster does (shift a child by the smallest amount that puts it inside its parent).

use std::collections::HashMap;
use tailscope_model::{Span, SpanId, SpanKind};

/// One span in a tree.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Span,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// Parent id given but never arrived.
    pub orphan: bool,
    /// Shift applied by skew correction (already added to `span` times).
    pub skew_ns: i64,
}

/// A rebuilt trace. `nodes[root]` is the real root, or a synthetic one when the trace
/// has several parentless spans or orphans.
#[derive(Debug, Clone)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub root: usize,
    pub synthetic_root: bool,
    pub orphans: usize,
    /// (span, shift in ns) for every skew correction.
    pub skew: Vec<(SpanId, i64)>,
}

/// Id used for the synthetic root.
pub const SYNTHETIC_ROOT: SpanId = SpanId([0xff; 8]);

impl Tree {
    /// Builds the tree of one trace's spans (any order).
    pub fn build(spans: Vec<Span>) -> Tree {
        Self::build_from(spans.into_iter())
    }

    /// [`Tree::build`] over the spans an iterator hands out: each span is moved once,
    /// into its node (a span is most of a kilobyte; spans already in start order, as a
    /// store reads them, are not moved again).
    pub fn build_from(spans: impl ExactSizeIterator<Item = Span>) -> Tree {
        let mut nodes: Vec<Node> = Vec::with_capacity(spans.len() + 1);
        nodes.extend(spans.map(|span| Node {
            span,
            parent: None,
            children: Vec::new(),
            orphan: false,
            skew_ns: 0,
        }));
        let key = |n: &Node| (n.span.start_ns, n.span.span_id);
        if !nodes.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
            nodes.sort_by_key(key);
        }
        let index: HashMap<SpanId, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.span.span_id, i))
            .collect();
        let mut tops = Vec::new();
        let mut orphans = 0;
        for i in 0..nodes.len() {
            match nodes[i].span.parent_span_id {
                Some(p) => match index.get(&p) {
                    Some(&pi) if pi != i => {
                        nodes[i].parent = Some(pi);
                        nodes[pi].children.push(i);
                    }
                    _ => {
                        nodes[i].orphan = true;
                        orphans += 1;
                        tops.push(i);
                    }
                },
                None => tops.push(i),
            }
        }
        let (root, synthetic_root) = if tops.len() == 1 && orphans == 0 {
            (tops[0], false)
        } else {
            let first = tops.first().map_or(0, |&t| t);
            let template = nodes.get(first).map(|n| n.span.clone());
            let start = nodes.iter().map(|n| n.span.start_ns).min().unwrap_or(0);
            let end = nodes.iter().map(|n| n.span.end_ns).max().unwrap_or(0);
            let mut span = template.unwrap_or_else(unreachable_empty);
            span.span_id = SYNTHETIC_ROOT;
            span.parent_span_id = None;
            span.name = if orphans > 0 {
                "(incomplete trace)".into()
            } else {
                "(trace)".into()
            };
            span.kind = SpanKind::Internal;
            span.start_ns = start;
            span.end_ns = end;
            span.events.clear();
            span.links.clear();
            span.attributes.clear();
            span.promoted = tailscope_model::Promoted::default();
            let r = nodes.len();
            for &t in &tops {
                nodes[t].parent = Some(r);
            }
            nodes.push(Node {
                span,
                parent: None,
                children: tops,
                orphan: false,
                skew_ns: 0,
            });
            (r, true)
        };
        let mut tree = Tree {
            nodes,
            root,
            synthetic_root,
            orphans,
            skew: Vec::new(),
        };
        tree.nest_overlapping_llm_calls();
        tree.correct_skew();
        for n in &mut tree.nodes {
            n.children.sort_by_key(|&c| c);
        }
        tree.inherit_conversations();
        let nodes = &tree.nodes;
        let mut order: Vec<Vec<usize>> = nodes.iter().map(|n| n.children.clone()).collect();
        for ch in &mut order {
            ch.sort_by_key(|&c| (nodes[c].span.start_ns, nodes[c].span.end_ns));
        }
        for (n, ch) in tree.nodes.iter_mut().zip(order) {
            n.children = ch;
        }
        tree
    }

    /// Top-down: a child from another service that sticks out of its parent (and is not
    /// longer than it) is shifted, with its subtree, by the smallest amount that puts it
    /// inside. Same-service children are left alone (one clock).
    fn correct_skew(&mut self) {
        let mut stack = vec![self.root];
        while let Some(p) = stack.pop() {
            let (ps, pe, psvc) = {
                let s = &self.nodes[p].span;
                (s.start_ns, s.end_ns, s.resource_id)
            };
            for c in self.nodes[p].children.clone() {
                let (cs, ce, csvc) = {
                    let s = &self.nodes[c].span;
                    (s.start_ns, s.end_ns, s.resource_id)
                };
                let fits = ce - cs <= pe - ps;
                let shift = if p == self.root && self.synthetic_root || csvc == psvc || !fits {
                    0
                } else if cs < ps {
                    ps - cs
                } else if ce > pe {
                    pe - ce
                } else {
                    0
                };
                if shift != 0 {
                    self.shift_subtree(c, shift);
                    self.skew.push((self.nodes[c].span.span_id, shift));
                }
                stack.push(c);
            }
        }
    }

    /// Two instrumentations of one LLM call can be siblings rather than nested:
    /// OpenInference's LangChain span (`ChatOpenAI`) is never made current, so the
    /// OpenAI SDK span (`ChatCompletion`) it wraps is its sibling, inside it in time.
    /// Such a contained sibling LLM call is hung under the one that contains it, so the
    /// critical path goes through the real call and the outer span is a wrapper.
    fn nest_overlapping_llm_calls(&mut self) {
        const MAX_CALLS: usize = 256; // quadratic pairing; fan-outs beyond this stay flat
        let is_call = |n: &Node| {
            n.span.promoted.op_class == tailscope_model::OpClass::Llm
                && n.span.kind != SpanKind::Server
        };
        for p in 0..self.nodes.len() {
            let calls: Vec<usize> = self.nodes[p]
                .children
                .iter()
                .copied()
                .filter(|&c| is_call(&self.nodes[c]))
                .collect();
            if calls.len() < 2 || calls.len() > MAX_CALLS {
                continue;
            }
            for &b in &calls {
                let sb = &self.nodes[b].span;
                // the tightest sibling call that contains b (strictly longer, or equal
                // and earlier in order, so two identical spans do not swap)
                let host = calls
                    .iter()
                    .copied()
                    .filter(|&a| a != b)
                    .filter(|&a| {
                        let sa = &self.nodes[a].span;
                        sa.start_ns <= sb.start_ns
                            && sa.end_ns >= sb.end_ns
                            && (sa.duration_ns() > sb.duration_ns() || a < b)
                    })
                    .min_by_key(|&a| (self.nodes[a].span.duration_ns(), a));
                if let Some(a) = host {
                    self.nodes[p].children.retain(|&c| c != b);
                    self.nodes[a].children.push(b);
                    self.nodes[b].parent = Some(a);
                }
            }
        }
    }

    /// A conversation (or session) id applies to the subtree of the span that carries
    /// it: spans without one take their nearest ancestor's (the OTel GenAI agent span
    /// carries `gen_ai.conversation.id`, the chat spans below it do not). Iterative, so
    /// deep traces cannot overflow the stack.
    fn inherit_conversations(&mut self) {
        let mut stack = vec![(self.root, None::<String>)];
        while let Some((i, inherited)) = stack.pop() {
            let p = &mut self.nodes[i].span.promoted;
            if p.conversation_id.is_none() {
                p.conversation_id = inherited;
            }
            let own = p.conversation_id.clone();
            for &c in &self.nodes[i].children {
                stack.push((c, own.clone()));
            }
        }
    }

    /// Applies a conversation id found through a span link (an async sub-agent linked
    /// to the span that started it) to the subtree of `node`, where none is set.
    pub fn adopt_conversation(&mut self, node: usize, conversation: &str) {
        let mut stack = vec![node];
        while let Some(i) = stack.pop() {
            let p = &mut self.nodes[i].span.promoted;
            if p.conversation_id.is_some() {
                continue; // a subtree with its own id keeps it
            }
            p.conversation_id = Some(conversation.to_owned());
            stack.extend(self.nodes[i].children.iter().copied());
        }
    }

    fn shift_subtree(&mut self, at: usize, by: i64) {
        let mut stack = vec![at];
        while let Some(i) = stack.pop() {
            let n = &mut self.nodes[i];
            n.span.start_ns += by;
            n.span.end_ns += by;
            for e in &mut n.span.events {
                e.time_ns += by;
            }
            n.skew_ns += by;
            stack.extend(n.children.iter().copied());
        }
    }

    pub fn root_span(&self) -> &Span {
        &self.nodes[self.root].span
    }

    /// Index of the node with this span id.
    pub fn find(&self, id: SpanId) -> Option<usize> {
        self.nodes.iter().position(|n| n.span.span_id == id)
    }

    /// Is `node` inside the subtree of `ancestor` (inclusive)?
    pub fn is_within(&self, mut node: usize, ancestor: usize) -> bool {
        loop {
            if node == ancestor {
                return true;
            }
            match self.nodes[node].parent {
                Some(p) => node = p,
                None => return false,
            }
        }
    }
}

#[cold]
fn unreachable_empty() -> Span {
    // Tree::build is never called with no spans (traces come from grouping spans).
    Span {
        name: "(empty)".into(),
        ..Span::bare(tailscope_model::TraceId([1; 16]), SYNTHETIC_ROOT, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::span;

    #[test]
    fn orphans_hang_under_a_synthetic_root() {
        // 3's parent (9) never arrived; order of arrival does not matter
        let t = Tree::build(vec![
            span(3, Some(9), 50, 60),
            span(2, Some(1), 10, 20),
            span(1, None, 0, 100),
        ]);
        assert!(t.synthetic_root);
        assert_eq!(t.orphans, 1);
        assert_eq!(t.root_span().span_id, SYNTHETIC_ROOT);
        assert_eq!((t.root_span().start_ns, t.root_span().end_ns), (0, 100));
        let orphan = t.find(SpanId([3; 8])).unwrap();
        assert!(t.nodes[orphan].orphan);
        assert_eq!(t.nodes[orphan].parent, Some(t.root));
        let child = t.find(SpanId([2; 8])).unwrap();
        assert_eq!(t.nodes[child].parent, t.find(SpanId([1; 8])));
    }

    #[test]
    fn a_sibling_llm_call_inside_another_is_nested_under_it() {
        use tailscope_model::OpClass;
        // agent 1 > ChatOpenAI 2 (5..95) and its sibling ChatCompletion 3 (10..94)
        let mut s = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 5, 95),
            span(3, Some(1), 10, 94),
            span(4, Some(1), 96, 99),
        ];
        for x in &mut s[1..] {
            x.promoted.op_class = OpClass::Llm;
        }
        let t = Tree::build(s);
        let node = |id: u8| t.find(SpanId([id; 8])).unwrap();
        assert_eq!(t.nodes[node(3)].parent, Some(node(2)));
        assert_eq!(t.nodes[node(4)].parent, Some(node(1)), "a later call stays");
        assert_eq!(t.nodes[node(2)].children, vec![node(3)]);
    }

    #[test]
    fn conversation_ids_flow_down_to_descendants() {
        let mut s = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 5, 95),
            span(3, Some(2), 10, 90),
        ];
        s[0].promoted.conversation_id = Some("c1".into());
        s[2].promoted.conversation_id = Some("own".into());
        let t = Tree::build(s);
        let conv = |id: u8| {
            t.nodes[t.find(SpanId([id; 8])).unwrap()]
                .span
                .promoted
                .conversation_id
                .clone()
        };
        assert_eq!(conv(2).as_deref(), Some("c1"));
        assert_eq!(conv(3).as_deref(), Some("own"), "its own id wins");
    }

    #[test]
    fn server_span_from_a_skewed_clock_is_shifted_inside_its_client() {
        let mut client = span(2, Some(1), 100, 200);
        client.kind = SpanKind::Client;
        // the server's clock runs 80 ns ahead: it appears to end after its client
        let mut server = span(3, Some(2), 150, 240);
        server.kind = SpanKind::Server;
        server.resource_id = 2;
        let mut grandchild = span(4, Some(3), 160, 230);
        grandchild.resource_id = 2;
        let t = Tree::build(vec![span(1, None, 0, 300), client, server, grandchild]);
        let s = t.find(SpanId([3; 8])).unwrap();
        assert_eq!(
            (t.nodes[s].span.start_ns, t.nodes[s].span.end_ns),
            (110, 200),
            "smallest shift: -40"
        );
        assert_eq!(t.nodes[s].skew_ns, -40);
        let g = t.find(SpanId([4; 8])).unwrap();
        assert_eq!(
            (t.nodes[g].span.start_ns, t.nodes[g].span.end_ns),
            (120, 190),
            "subtree moves with it"
        );
        assert_eq!(t.skew, vec![(SpanId([3; 8]), -40)]);
        // same service: one clock, no correction
        let t = Tree::build(vec![span(1, None, 0, 100), span(2, Some(1), 90, 120)]);
        assert!(t.skew.is_empty());
    }
}
