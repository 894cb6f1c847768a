//! KV-cache eviction detection: within a conversation, cache-read tokens collapse while
//! the prompt prefix grew. The re-prefill cost is estimated from the call's own prefill
//! rate (server prefill time, else time to first chunk) for the tokens that should
//! have been cached.

use crate::causes::{server_child, Eviction};
use crate::tree::Tree;
use std::collections::HashMap;
use tailscope_model::{OpClass, SpanId, SpanKind};

/// One LLM client call as eviction detection needs it.
#[derive(Debug, Clone)]
pub struct LlmCall {
    pub span_id: SpanId,
    pub conversation_id: String,
    pub start_ns: i64,
    pub input_tokens: i64,
    pub cache_read_tokens: Option<i64>,
    /// Server prefill time, else the client's time to first chunk.
    pub prefill_ns: Option<i64>,
}

/// The LLM client calls of a tree that carry a conversation id and token counts.
pub fn llm_calls(tree: &Tree) -> Vec<LlmCall> {
    let mut out = Vec::new();
    for (i, n) in tree.nodes.iter().enumerate() {
        let s = &n.span;
        let p = &s.promoted;
        if p.op_class != OpClass::Llm || s.kind == SpanKind::Server {
            continue;
        }
        let (Some(conv), Some(input)) = (p.conversation_id.clone(), p.input_tokens) else {
            continue;
        };
        let server = server_child(tree, i).map(|c| &tree.nodes[c].span.promoted);
        let prefill = server
            .and_then(|sp| sp.prefill_ns)
            .or(p.time_to_first_chunk_ns);
        let cache_read = p
            .cache_read_tokens
            .or_else(|| server.and_then(|sp| sp.cache_read_tokens));
        out.push(LlmCall {
            span_id: s.span_id,
            conversation_id: conv,
            start_ns: s.start_ns,
            input_tokens: input,
            cache_read_tokens: cache_read,
            prefill_ns: prefill,
        });
    }
    out
}

/// Below this many previous prompt tokens a miss is not worth calling an eviction.
const MIN_PREFIX_TOKENS: i64 = 256;

/// Detects evictions over every conversation's calls (any order).
pub fn detect(calls: &[LlmCall]) -> HashMap<SpanId, Eviction> {
    let mut by_conv: HashMap<&str, Vec<&LlmCall>> = HashMap::new();
    for c in calls {
        by_conv
            .entry(c.conversation_id.as_str())
            .or_default()
            .push(c);
    }
    let mut out = HashMap::new();
    for (conv, mut cs) in by_conv {
        cs.sort_by_key(|c| c.start_ns);
        for w in cs.windows(2) {
            let (prev, cur) = (w[0], w[1]);
            let Some(read) = cur.cache_read_tokens else {
                continue;
            };
            if prev.input_tokens < MIN_PREFIX_TOKENS || cur.input_tokens < prev.input_tokens {
                continue; // the prefix did not grow: a new context, not an eviction
            }
            let expected = prev.input_tokens;
            if read * 2 >= expected {
                continue; // most of the prefix was served from cache
            }
            let evicted = expected - read;
            let uncached = (cur.input_tokens - read).max(1);
            let Some(prefill) = cur.prefill_ns else {
                continue;
            };
            let per_token = prefill as f64 / uncached as f64;
            let cost = ((evicted as f64 * per_token) as i64).min(prefill);
            out.insert(
                cur.span_id,
                Eviction {
                    client_span: cur.span_id,
                    conversation_id: conv.to_owned(),
                    previous_input_tokens: prev.input_tokens,
                    cache_read_tokens: read,
                    input_tokens: cur.input_tokens,
                    evicted_tokens: evicted,
                    prefill_ns_per_token: per_token,
                    cost_ns: cost,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: u8, t: i64, input: i64, read: i64, prefill: i64) -> LlmCall {
        LlmCall {
            span_id: SpanId([id; 8]),
            conversation_id: "c".into(),
            start_ns: t,
            input_tokens: input,
            cache_read_tokens: Some(read),
            prefill_ns: Some(prefill),
        }
    }

    #[test]
    fn collapse_after_growth_is_an_eviction_with_cost() {
        let calls = vec![
            call(1, 0, 1000, 0, 100_000_000),
            call(2, 10, 1500, 992, 50_000_000),
            // prefix grew to 2100 but only 16 tokens came from cache: evicted
            call(3, 20, 2100, 16, 208_400_000),
        ];
        let ev = detect(&calls);
        assert_eq!(ev.len(), 1);
        let e = &ev[&SpanId([3; 8])];
        assert_eq!(e.evicted_tokens, 1500 - 16);
        // 208.4 ms for 2084 uncached tokens = 100 us/token; 1484 tokens -> 148.4 ms
        assert_eq!(e.cost_ns, 148_400_000);
    }

    #[test]
    fn new_short_context_is_not_an_eviction() {
        let calls = vec![call(1, 0, 3000, 0, 1), call(2, 10, 500, 0, 1)];
        assert!(detect(&calls).is_empty());
    }
}
