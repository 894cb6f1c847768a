//! A run (one trace) as a tree of timed nodes, and the walk that lays it out in time.
//!
//! Every duration in the tree is fixed when the run is planned except the LLM calls,
//! whose server-side time comes from the shared-server simulation. Walking the tree with
//! zero-length LLM calls gives the offsets between calls (used by the event loop);
//! walking it again with the simulated timings gives the final span times.

use crate::attrs::Dialect;
use crate::resources::Svc;
use tailscope_model::{Attribute, Link, SpanId, SpanKind, StatusCode};

/// What a visible node renders as.
#[derive(Debug, Clone)]
pub(crate) struct SpanSpec {
    pub(crate) id: SpanId,
    pub(crate) name: String,
    pub(crate) kind: SpanKind,
    pub(crate) svc: Svc,
    pub(crate) scope: &'static str,
    pub(crate) status: StatusCode,
    pub(crate) status_message: String,
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) links: Vec<Link>,
}

impl SpanSpec {
    pub(crate) fn new(
        id: SpanId,
        name: impl Into<String>,
        kind: SpanKind,
        svc: Svc,
        scope: &'static str,
        attrs: Vec<Attribute>,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            kind,
            svc,
            scope,
            status: StatusCode::Unset,
            status_message: String::new(),
            attrs,
            links: Vec::new(),
        }
    }
}

/// One LLM call: the client span plus the vLLM `llm_request` server span under it.
#[derive(Debug, Clone)]
pub(crate) struct LlmCall {
    pub(crate) server_id: SpanId,
    pub(crate) dialect: Dialect,
    /// Key of the prefix-cache entry (conversation or sub-agent).
    pub(crate) owner: u64,
    pub(crate) input: i64,
    pub(crate) output: i64,
    /// Cache hit the call would get if nothing had been evicted.
    pub(crate) expected_cache: i64,
    pub(crate) max_tokens: i64,
    pub(crate) temperature: f64,
    /// Client start to server arrival, and last token to client receipt.
    pub(crate) up_ns: i64,
    pub(crate) down_ns: i64,
    /// Tokens per streamed chunk after the first (the first chunk carries one token).
    pub(crate) chunk_tokens: i64,
    /// Delivery stalls: (chunk index, gap before it and every later chunk).
    pub(crate) stutter: Vec<(usize, i64)>,
    /// The response asks for tool calls (finish reason `tool_calls` instead of `stop`).
    pub(crate) tool_calls: bool,
    pub(crate) request_id: String,
    pub(crate) model: String,
}

impl LlmCall {
    pub(crate) fn stutter_ns(&self) -> i64 {
        self.stutter.iter().map(|(_, g)| *g).sum()
    }
}

/// Server-side timing of one call, relative to its arrival at the server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Timing {
    pub(crate) arrival_ns: i64,
    pub(crate) queue_ns: i64,
    pub(crate) prefill_ns: i64,
    pub(crate) decode_ns: i64,
    pub(crate) cache_read: i64,
}

impl Timing {
    pub(crate) fn e2e_ns(&self) -> i64 {
        self.queue_ns + self.prefill_ns + self.decode_ns
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// Fixed duration.
    Leaf(i64),
    /// Children one after another.
    Seq(Vec<Node>),
    /// Children started together; ends with the slowest.
    Par(Vec<Node>),
    /// A client span with a server span inside it on another service.
    Remote {
        up_ns: i64,
        server: Box<Node>,
        down_ns: i64,
    },
    Llm(Box<LlmCall>),
}

/// A node of a run. Without a spec it is an invisible group (its children hang off its parent).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) spec: Option<Box<SpanSpec>>,
    /// Delay from the cursor to this node's start.
    pub(crate) lead_ns: i64,
    /// Delay from the end of the body to this node's end.
    pub(crate) tail_ns: i64,
    pub(crate) body: Body,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

impl Node {
    pub(crate) fn new(spec: SpanSpec, body: Body) -> Self {
        Self {
            spec: Some(Box::new(spec)),
            lead_ns: 0,
            tail_ns: 0,
            body,
            start: 0,
            end: 0,
        }
    }

    pub(crate) fn group(body: Body) -> Self {
        Self {
            spec: None,
            lead_ns: 0,
            tail_ns: 0,
            body,
            start: 0,
            end: 0,
        }
    }

    pub(crate) fn lead(mut self, ns: i64) -> Self {
        self.lead_ns = ns.max(0);
        self
    }

    pub(crate) fn tail(mut self, ns: i64) -> Self {
        self.tail_ns = ns.max(0);
        self
    }

    pub(crate) fn id(&self) -> Option<SpanId> {
        self.spec.as_ref().map(|s| s.id)
    }
}

/// Where each LLM call landed during a walk: (server arrival, server end).
pub(crate) type CallSpans = Vec<(i64, i64)>;

/// Lays the tree out from `cursor`; LLM call `k` uses `timings[k]` (zero-length when absent).
pub(crate) fn walk(node: &mut Node, cursor: i64, timings: &[Timing], calls: &mut CallSpans) -> i64 {
    let start = cursor + node.lead_ns;
    let body_end = match &mut node.body {
        Body::Leaf(d) => start + (*d).max(0),
        Body::Seq(children) => {
            let mut t = start;
            for c in children.iter_mut() {
                t = walk(c, t, timings, calls);
            }
            t
        }
        Body::Par(children) => {
            let mut end = start;
            for c in children.iter_mut() {
                end = end.max(walk(c, start, timings, calls));
            }
            end
        }
        Body::Remote {
            up_ns,
            server,
            down_ns,
        } => walk(server, start + *up_ns, timings, calls) + *down_ns,
        Body::Llm(call) => {
            let arrival = start + call.up_ns;
            let e2e = timings.get(calls.len()).map_or(0, Timing::e2e_ns);
            let server_end = arrival + e2e;
            calls.push((arrival, server_end));
            server_end + call.down_ns + call.stutter_ns()
        }
    };
    node.start = start;
    node.end = body_end + node.tail_ns;
    node.end
}

/// The LLM calls of a tree in walk order.
pub(crate) fn llm_calls(node: &Node, out: &mut Vec<LlmCallRef>) {
    match &node.body {
        Body::Leaf(_) => {}
        Body::Seq(children) | Body::Par(children) => {
            for c in children {
                llm_calls(c, out);
            }
        }
        Body::Remote { server, .. } => llm_calls(server, out),
        Body::Llm(call) => out.push(LlmCallRef {
            server_id: call.server_id,
            owner: call.owner,
            input: call.input,
            output: call.output,
            expected_cache: call.expected_cache,
        }),
    }
}

/// What the event loop and the simulator need to know about one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LlmCallRef {
    pub(crate) server_id: SpanId,
    pub(crate) owner: u64,
    pub(crate) input: i64,
    pub(crate) output: i64,
    pub(crate) expected_cache: i64,
}

/// Finds a node by span id (for planted-cause bookkeeping).
pub(crate) fn find_node(node: &Node, id: SpanId) -> Option<&Node> {
    if node.id() == Some(id) {
        return Some(node);
    }
    match &node.body {
        Body::Leaf(_) | Body::Llm(_) => None,
        Body::Seq(children) | Body::Par(children) => children.iter().find_map(|c| find_node(c, id)),
        Body::Remote { server, .. } => find_node(server, id),
    }
}
