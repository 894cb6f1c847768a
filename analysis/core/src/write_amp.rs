//! `write_amplification`: one tool call that writes to three or more distinct stores.
//! A write is a database span with a write operation (its `db.operation`, else the
//! first word of its query summary or name: INSERT, UPDATE, SET, PUT, ...), or an HTTP
//! client `PUT` / `PATCH` / `DELETE` (the method its span is named after); its store is `db.system` with `server.address`
//! (or the HTTP server's address). The finding names the writes, which of them are on
//! the critical path and their share of it, and what running them in parallel, or
//! off the request (asynchronously), would save: both computed with the what-if
//! re-walk over the trace's tree.

use crate::causes::CausedSection;
use crate::tree::Tree;
use crate::whatif::{rewalk, Change};
use std::collections::BTreeSet;
use tailscope_model::OpClass;

/// Distinct stores one tool call must write to.
pub const MIN_STORES: usize = 3;

/// The operation of a database or HTTP span, upper case.
fn operation(tree: &Tree, i: usize) -> Option<String> {
    let s = &tree.nodes[i].span;
    let p = &s.promoted;
    let first = |t: &str| t.split_whitespace().next().map(str::to_ascii_uppercase);
    match p.op_class {
        OpClass::Db => p
            .db_operation
            .as_deref()
            .and_then(first)
            .or_else(|| p.db_query_summary.as_deref().and_then(first))
            .or_else(|| first(&s.name)),
        // an HTTP client span is named after its method (`PUT`, `PUT /path`; older
        // instrumentations `HTTP PUT`)
        OpClass::Http => first(s.name.strip_prefix("HTTP ").unwrap_or(&s.name)),
        _ => None,
    }
}

fn is_write(op: &str, http: bool) -> bool {
    if http {
        return matches!(op, "PUT" | "PATCH" | "DELETE");
    }
    matches!(
        op,
        "INSERT"
            | "UPDATE"
            | "DELETE"
            | "UPSERT"
            | "MERGE"
            | "REPLACE"
            | "COPY"
            | "SET"
            | "SETEX"
            | "MSET"
            | "HSET"
            | "HMSET"
            | "LPUSH"
            | "RPUSH"
            | "SADD"
            | "ZADD"
            | "XADD"
            | "JSON.SET"
            | "PUT"
            | "PUTITEM"
            | "BATCHWRITEITEM"
            | "UPDATEITEM"
            | "WRITE"
            | "INDEX"
            | "BULK"
            | "ADD"
    )
}

/// The store a write goes to.
fn store(tree: &Tree, i: usize) -> String {
    let p = &tree.nodes[i].span.promoted;
    let addr = p.server_address.as_deref().unwrap_or("");
    match &p.db_system {
        Some(sys) => format!("{sys}@{addr}"),
        None => format!("http@{addr}"),
    }
}

/// One write under a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub node: usize,
    pub store: String,
    pub operation: String,
}

/// The writes in the subtree of `i` (not below another tool call inside it).
fn writes_under(tree: &Tree, i: usize) -> Vec<Write> {
    let mut out = Vec::new();
    let mut stack: Vec<usize> = tree.nodes[i].children.clone();
    while let Some(c) = stack.pop() {
        let p = &tree.nodes[c].span.promoted;
        if is_tool(tree, c) {
            continue;
        }
        let http = p.op_class == OpClass::Http;
        if let Some(op) = operation(tree, c).filter(|op| is_write(op, http)) {
            out.push(Write {
                node: c,
                store: store(tree, c),
                operation: op,
            });
        }
        stack.extend(tree.nodes[c].children.iter().copied());
    }
    out.sort_by_key(|w| (tree.nodes[w.node].span.start_ns, w.node));
    out
}

fn is_tool(tree: &Tree, i: usize) -> bool {
    matches!(
        tree.nodes[i].span.promoted.op_class,
        OpClass::Tool | OpClass::Mcp
    ) && tree.nodes[i].span.promoted.mcp_method.as_deref() != Some("initialize")
}

/// What one tool call's writes cost and what changing them would save.
#[derive(Debug, Clone, PartialEq)]
pub struct Amplified {
    /// The tool span (the innermost tool span holding the writes).
    pub node: usize,
    pub writes: Vec<Write>,
    pub stores: usize,
    /// Critical-path time in the writes, and its share of the trace's critical path.
    pub writes_critical_ns: i64,
    pub share: f64,
    /// The trace's duration saved if the writes ran in parallel (all starting with the
    /// first), and if they ran off the request.
    pub parallel_saves_ns: i64,
    pub async_saves_ns: i64,
}

/// The tool calls of `tree` that write to [`MIN_STORES`] or more distinct stores.
pub fn find(tree: &Tree, sections: &[CausedSection]) -> Vec<Amplified> {
    let total: i64 = sections.iter().map(|s| s.end - s.start).sum();
    let mut out = Vec::new();
    for i in 0..tree.nodes.len() {
        if !is_tool(tree, i) {
            continue;
        }
        let writes = writes_under(tree, i);
        let stores: BTreeSet<&str> = writes.iter().map(|w| w.store.as_str()).collect();
        if stores.len() < MIN_STORES {
            continue;
        }
        let on_path = |n: usize| -> i64 {
            sections
                .iter()
                .filter(|s| tree.is_within(s.node, n))
                .map(|s| s.end - s.start)
                .sum()
        };
        let writes_critical_ns: i64 = writes.iter().map(|w| on_path(w.node)).sum();
        let nodes: Vec<usize> = writes.iter().map(|w| w.node).collect();
        let first = nodes.first().copied();
        let parallel = rewalk(
            tree,
            &|n| (nodes.contains(&n) && Some(n) != first).then_some(Change::Parallel),
            0,
        );
        let offline = rewalk(
            tree,
            &|n| nodes.contains(&n).then_some(Change::Duration(0)),
            0,
        );
        out.push(Amplified {
            node: i,
            stores: stores.len(),
            writes_critical_ns,
            share: writes_critical_ns as f64 / total.max(1) as f64,
            parallel_saves_ns: (parallel.before_ns - parallel.after_ns).max(0),
            async_saves_ns: (offline.before_ns - offline.after_ns).max(0),
            writes,
        });
    }
    // a tool span above another that qualifies says the same thing: keep the innermost
    let inner: Vec<usize> = out.iter().map(|a| a.node).collect();
    out.retain(|a| {
        !inner
            .iter()
            .any(|&b| b != a.node && tree.is_within(b, a.node))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causes::CausedSection;
    use crate::testutil::{span, trace};
    use tailscope_model::{Cause, CauseSet, Evidence, Span};

    const MS: i64 = 1_000_000;

    fn db(id: u8, parent: u8, start: i64, end: i64, system: &str, op: &str) -> Span {
        let mut s = span(id, Some(parent), start * MS, end * MS);
        s.promoted.op_class = OpClass::Db;
        s.promoted.db_system = Some(system.into());
        s.promoted.db_operation = Some(op.into());
        s
    }

    /// A section per leaf, in time order (what the critical path gives a chain).
    fn path(t: &Tree) -> Vec<CausedSection> {
        (0..t.nodes.len())
            .filter(|&i| t.nodes[i].children.is_empty())
            .map(|i| CausedSection {
                node: i,
                start: t.nodes[i].span.start_ns,
                end: t.nodes[i].span.end_ns,
                cause: Cause::Other,
                evidence: Evidence::Measured,
                alternatives: CauseSet::EMPTY,
            })
            .collect()
    }

    #[test]
    fn a_tool_writing_to_three_stores_and_what_parallel_or_async_saves() {
        let mut tool = span(2, Some(1), 0, 100 * MS);
        tool.promoted.op_class = OpClass::Tool;
        let spans = vec![
            span(1, None, 0, 100 * MS),
            tool,
            db(3, 2, 0, 10, "postgresql", "SELECT"),
            db(4, 2, 10, 40, "postgresql", "INSERT"),
            db(5, 2, 40, 70, "redis", "SET"),
            db(6, 2, 70, 100, "elasticsearch", "index"),
        ];
        let t = trace(spans.clone());
        let found = find(&t, &path(&t));
        assert_eq!(found.len(), 1);
        let a = &found[0];
        assert_eq!((a.stores, a.writes.len()), (3, 3));
        assert_eq!(a.writes_critical_ns, 90 * MS);
        // in parallel the three 30 ms writes take 30 ms: 60 ms saved; off the request 90
        assert_eq!(a.parallel_saves_ns, 60 * MS);
        assert_eq!(a.async_saves_ns, 90 * MS);
        // two stores, or reads only: nothing
        let mut two = spans.clone();
        two[5] = db(6, 2, 70, 100, "redis", "SET");
        let t = trace(two);
        assert!(find(&t, &path(&t)).is_empty());
        let mut reads = spans;
        reads[4] = db(5, 2, 40, 70, "redis", "GET");
        let t = trace(reads);
        assert!(find(&t, &path(&t)).is_empty());
    }
}
