//! Small builders for unit tests.

use crate::tree::Tree;
use tailscope_model::{Promoted, Span, SpanId, SpanKind, StatusCode, TraceId};

pub fn span(id: u8, parent: Option<u8>, start: i64, end: i64) -> Span {
    Span {
        trace_id: TraceId([1; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: parent.map(|p| SpanId([p; 8])),
        trace_state: String::new(),
        flags: 0,
        name: format!("s{id}"),
        kind: SpanKind::Internal,
        start_ns: start,
        end_ns: end,
        status: StatusCode::Unset,
        status_message: String::new(),
        resource_id: 1,
        service_name: "svc".into(),
        scope_name: String::new(),
        scope_version: String::new(),
        attributes: vec![],
        events: vec![],
        links: vec![],
        promoted: Promoted::default(),
    }
}

pub fn trace(spans: Vec<Span>) -> Tree {
    Tree::build(spans)
}
