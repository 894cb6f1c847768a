//! KV-cache (prompt-cache) eviction detection. Within one conversation and one model,
//! between strictly sequential calls, the next call's expected cached prefix is the
//! previous call's input plus output; when the cache reads collapse below half of it,
//! and caching was seen earlier in that conversation (a provider that never caches is
//! not evicting), the prefix was evicted. The re-prefill cost is the evicted tokens
//! times a prefill rate, from the best source at hand: the server span's prefill time,
//! the latency model fitted over the store's calls, or the call's own time to first
//! token; the method is stated in the evidence.

use crate::calls::{cache_read_known, model_key, CacheRead, Call, Sources};
use crate::latency::LatencyModel;
use crate::tree::Tree;
use std::collections::HashMap;
use tailscope_model::{Evidence, SpanId, TraceId};

/// Re-prefill cost of an evicted prefix, estimated per LLM call.
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    pub client_span: SpanId,
    pub conversation_id: String,
    pub model: String,
    /// The previous call's input + output: what should have been cached.
    pub previous_input_tokens: i64,
    pub previous_output_tokens: i64,
    pub cache_read_tokens: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Tokens that should have been cached and were prefilled again.
    pub evicted_tokens: i64,
    pub prefill_ns_per_token: f64,
    /// How the per-token prefill rate was obtained.
    pub cost_method: &'static str,
    pub cost_ns: i64,
    /// Part of `cost_ns` beyond what the latency model expects of the whole re-prefill
    /// (0 when within its noise): the model prices prefill linearly and a long
    /// re-prefill costs more, or the call also waited. See [`measured_cost`].
    pub unexplained_ns: i64,
    /// LLM calls of the conversation between the previous call with token counts and
    /// this one that report none, in traces (turns) of neither (LlamaIndex's streamed
    /// calls; a call of this turn before this one is not a turn between): the prefix the cache
    /// should have held is then at least the previous counted call's input + output and
    /// at most this call's prompt. The cost is stated for the longest prefix (an
    /// intervening call's prompt and answer are a turn's growth, a next prompt adds one
    /// message), with `cost_low_ns` for the shortest.
    pub calls_without_counts: usize,
    /// The cost had the cache held only the previous counted call's input + output
    /// (`cost_ns` when no uncounted call intervened).
    pub cost_low_ns: i64,
    /// `measured` when the call reports its cache reads, `inferred` when its source
    /// left a zero out (see [`crate::calls::Sources`]).
    pub evidence: Evidence,
}

/// One LLM call as eviction detection needs it.
#[derive(Debug, Clone)]
pub struct LlmCall {
    pub span_id: SpanId,
    pub conversation_id: String,
    pub model: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: Option<i64>,
    /// The cache reads were left out by a source that sends them elsewhere (zero).
    pub cache_read_inferred: bool,
    /// ns per uncached prompt token and where it came from.
    pub prefill_rate: Option<(f64, &'static str)>,
    /// The call reports token counts. A call without them (`input_tokens` 0) is kept
    /// only to show that the conversation went on between two counted calls.
    pub counted: bool,
    /// The call's trace (a turn), where known: calls without token counts count as a
    /// turn between two counted calls only in a trace of neither.
    pub trace_id: Option<TraceId>,
}

/// The prefill rate of a call (ns per uncached token), from the best source at hand.
pub fn prefill_rate(
    tree: &Tree,
    call: &Call,
    uncached: i64,
    model: &LatencyModel,
) -> Option<(f64, &'static str)> {
    let rate = |f: &crate::latency::Fit| {
        Some(f.ns_per_uncached_token).filter(|r| uncached > 0 && *r > 0.0)
    };
    let server = call.server.map(|x| &tree.nodes[x].span.promoted);
    if let Some(prefill) = server.and_then(|p| p.prefill_ns) {
        if uncached > 0 && prefill > 0 {
            return Some((
                prefill as f64 / uncached as f64,
                "server span prefill time per uncached token",
            ));
        }
    }
    let (m, addr) = model_key(tree, call);
    if let Some(r) = model.ttft_fit(&m, &addr).and_then(rate) {
        return Some((
            r,
            "time-to-first-token model fitted per (model, server.address)",
        ));
    }
    if let Some(r) = model.duration_fit(&m, &addr).and_then(rate) {
        return Some((r, "duration model fitted per (model, server.address)"));
    }
    let ttft = crate::calls::first_chunk_ns(tree, call)?;
    (uncached > 0 && ttft > 0).then(|| {
        (
            ttft as f64 / uncached as f64,
            "the call's own time to first token per uncached token",
        )
    })
}

/// The re-prefill cost of an eviction as the call's own timing shows it: its time to
/// first token (else its duration, less the expected decode), less the prefill the
/// model expects had the previous turn's prefix been served from cache. This measures
/// the extra time rather than pricing the evicted tokens at one linear rate: prefill
/// grows faster than linearly with the prompt, and the model, fitted mostly on calls
/// whose prefix was cached, extrapolates to a long re-prefill. The second value is the
/// part of the cost beyond the model's estimate of the whole re-prefill when that is
/// more than noise and at most the estimate again: a costlier prefill or a wait, which
/// only the server can tell apart (its metrics, see `causes::split_call`). A larger
/// residual is left out of the cost, as a wait. The last value is the cost had the
/// cache held only the previous counted call's prefix (see
/// [`Eviction::calls_without_counts`]). `None` when the call has neither a fitted
/// first-token time nor a fitted duration.
pub fn measured_cost(
    tree: &Tree,
    call: &Call,
    model: &LatencyModel,
    e: &Eviction,
) -> Option<(i64, i64, &'static str, i64)> {
    let s = &tree.nodes[call.node].span;
    let (m, addr) = model_key(tree, call);
    let actual = (e.input_tokens - e.cache_read_tokens).max(0) as f64;
    let output = e.output_tokens as f64;
    let first = crate::calls::first_chunk_ns(tree, call).zip(model.ttft_fit(&m, &addr));
    let (spent, fit, what) = if let Some((ttft, f)) = first {
        (ttft as f64, f, "the call's time to first token beyond what the latency model expects with the prefix cached")
    } else {
        let f = model.duration_fit(&m, &addr)?;
        (
            s.duration_ns() as f64 - f.decode_ns(output),
            f,
            "the call's duration beyond what the latency model expects with the prefix cached",
        )
    };
    let input = e.input_tokens as f64;
    let resid = spent - fit.prefill_ns(actual, input);
    // the cost and its part beyond the model, had the cache held `held` tokens
    let cost_of = |held: i64| {
        let if_cached = (e.input_tokens - held).max(0) as f64;
        let modelled = fit.prefill_ns(actual, input) - fit.prefill_ns(if_cached, input);
        // a prefill that grows faster than linearly costs a long re-prefill up to about
        // twice the model's linear estimate; a larger residual is likelier a wait, left
        // to the call's residual (`causes::split_call`)
        let beyond = if resid > fit.material_residual_ns() && resid <= modelled.max(0.0) {
            resid
        } else {
            0.0
        };
        let waited = if resid > fit.material_residual_ns() {
            resid - beyond
        } else {
            0.0
        };
        let cost = (spent - waited - fit.prefill_ns(if_cached, input)).clamp(0.0, spent.max(0.0));
        (cost as i64, beyond.min(cost) as i64)
    };
    let (cost, beyond) = cost_of(e.cache_read_tokens + e.evicted_tokens);
    let (low, _) = cost_of(e.previous_input_tokens + e.previous_output_tokens);
    Some((cost, beyond, what, low.min(cost)))
}

/// The calls of a tree that carry a conversation id and token counts (prefill rates
/// are filled in later, once the latency model is fitted); cache reads a source leaves
/// out are zero where `sources` says it sends them.
pub fn llm_calls(tree: &Tree, calls: &[Call], sources: &Sources) -> Vec<LlmCall> {
    let mut out = Vec::new();
    for call in calls {
        let s = &tree.nodes[call.node].span;
        let p = &s.promoted;
        let sp = call.server.map(|x| &tree.nodes[x].span.promoted);
        let Some(conv) = p.conversation_id.clone() else {
            continue;
        };
        // a call without token counts is kept only to show the conversation went on
        let input = crate::calls::input_tokens(tree, call);
        let read = input.and_then(|_| cache_read_known(tree, call, sources));
        out.push(LlmCall {
            span_id: s.span_id,
            conversation_id: conv,
            model: model_key(tree, call).0,
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            input_tokens: input.unwrap_or(0),
            output_tokens: input
                .and(p.output_tokens.or_else(|| sp.and_then(|x| x.output_tokens)))
                .unwrap_or(0),
            cache_read_tokens: read.map(CacheRead::tokens),
            cache_read_inferred: read == Some(CacheRead::AbsentMeansZero),
            prefill_rate: None,
            counted: input.is_some(),
            trace_id: Some(s.trace_id),
        });
    }
    out
}

/// Calls by (conversation, model), each list in start order; with `uncounted`, also
/// the calls that report no token counts.
fn by_conversation(calls: &[LlmCall], uncounted: bool) -> HashMap<(&str, &str), Vec<&LlmCall>> {
    let mut by_conv: HashMap<(&str, &str), Vec<&LlmCall>> = HashMap::new();
    for c in calls.iter().filter(|c| uncounted || c.counted) {
        by_conv
            .entry((c.conversation_id.as_str(), c.model.as_str()))
            .or_default()
            .push(c);
    }
    for cs in by_conv.values_mut() {
        cs.sort_by_key(|c| (c.start_ns, c.span_id));
    }
    by_conv
}

/// For calls that report no cache reads: the prefix a caching provider would have
/// served, the previous sequential call's input + output in the same conversation and
/// model (0 for a first call, or when the prompt did not extend the previous one).
pub fn assumed_prefixes(calls: &[LlmCall]) -> HashMap<SpanId, i64> {
    let by_conv = by_conversation(calls, false);
    let mut out = HashMap::new();
    for cs in by_conv.values() {
        for (k, cur) in cs.iter().enumerate() {
            if cur.cache_read_tokens.is_some() {
                continue;
            }
            let prefix = k
                .checked_sub(1)
                .map(|j| cs[j])
                .filter(|p| p.end_ns <= cur.start_ns && cur.input_tokens >= p.input_tokens)
                .map_or(0, |p| {
                    (p.input_tokens + p.output_tokens).min(cur.input_tokens)
                });
            out.insert(cur.span_id, prefix);
        }
    }
    out
}

/// Below this many expected prefix tokens a miss is not worth calling an eviction.
pub(crate) const MIN_PREFIX_TOKENS: i64 = 256;

/// Detects evictions over every conversation's calls (any order).
pub fn detect(calls: &[LlmCall]) -> HashMap<SpanId, Eviction> {
    let by_conv = by_conversation(calls, true);
    let mut out = HashMap::new();
    for ((conv, model), cs) in by_conv {
        let mut caching_seen = false;
        // the last call with token counts, and the calls without since (with their
        // traces: only those in a trace of neither counted call are a turn between)
        let mut prev: Option<&LlmCall> = None;
        let mut since: Vec<&LlmCall> = Vec::new();
        for cur in cs {
            if !cur.counted {
                if prev.is_some() {
                    since.push(cur);
                }
                continue;
            }
            let seen_before = caching_seen;
            caching_seen |= cur.cache_read_tokens.is_some_and(|r| r > 0);
            let uncounted = std::mem::take(&mut since);
            let Some(p) = prev.replace(cur) else {
                continue;
            };
            let between = uncounted
                .iter()
                .filter(|u| {
                    u.trace_id.is_none() || (u.trace_id != p.trace_id && u.trace_id != cur.trace_id)
                })
                .count();
            let Some(read) = cur.cache_read_tokens else {
                continue; // no cache information: nothing to say
            };
            if !seen_before || p.end_ns > cur.start_ns {
                continue; // never cached here, or overlapping calls: not sequential
            }
            let expected = p.input_tokens + p.output_tokens;
            if expected < MIN_PREFIX_TOKENS || cur.input_tokens < p.input_tokens {
                continue; // the prompt did not extend the previous one: a new context
            }
            if read * 2 >= expected {
                continue; // most of the prefix was served from cache
            }
            let Some((per_token, method)) = cur.prefill_rate else {
                continue;
            };
            // uncounted calls between: the prefix grew by at least a turn, so the
            // cache should have held about the whole prompt (see the field)
            let should_hold = if between > 0 {
                cur.input_tokens
            } else {
                expected.min(cur.input_tokens)
            };
            let evicted = should_hold - read;
            let cost = ((evicted as f64 * per_token) as i64).clamp(0, cur.end_ns - cur.start_ns);
            let low = (((expected.min(cur.input_tokens) - read) as f64 * per_token) as i64)
                .clamp(0, cost);
            out.insert(
                cur.span_id,
                Eviction {
                    client_span: cur.span_id,
                    conversation_id: conv.to_owned(),
                    model: model.to_owned(),
                    previous_input_tokens: p.input_tokens,
                    previous_output_tokens: p.output_tokens,
                    cache_read_tokens: read,
                    input_tokens: cur.input_tokens,
                    output_tokens: cur.output_tokens,
                    evicted_tokens: evicted,
                    prefill_ns_per_token: per_token,
                    cost_method: method,
                    cost_ns: cost,
                    unexplained_ns: 0,
                    calls_without_counts: between,
                    cost_low_ns: low,
                    evidence: if cur.cache_read_inferred {
                        Evidence::Inferred
                    } else {
                        Evidence::Measured
                    },
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: u8, t: i64, input: i64, read: Option<i64>) -> LlmCall {
        LlmCall {
            span_id: SpanId([id; 8]),
            conversation_id: "c".into(),
            model: "m".into(),
            start_ns: t,
            end_ns: t + 5,
            input_tokens: input,
            output_tokens: 100,
            cache_read_tokens: read,
            cache_read_inferred: false,
            prefill_rate: Some((100_000.0, "test")),
            counted: true,
            trace_id: None,
        }
    }

    #[test]
    fn collapse_after_growth_is_an_eviction_with_cost() {
        let calls = vec![
            call(1, 0, 1000, Some(0)),
            call(2, 10, 1500, Some(1088)),
            // expected prefix 1500 + 100 = 1600, only 16 tokens read from cache
            call(3, 20, 2100, Some(16)),
        ];
        let ev = detect(&calls);
        assert_eq!(ev.len(), 1);
        let e = &ev[&SpanId([3; 8])];
        assert_eq!(e.evicted_tokens, 1600 - 16);
        // 100 us/token, capped at the call's duration (5 ns here)
        assert_eq!(e.cost_ns, 5);
        assert_eq!(e.cost_method, "test");
    }

    #[test]
    fn no_eviction_without_caching_seen_or_sequence_or_growth() {
        // a provider that never caches is not evicting
        let never = vec![call(1, 0, 1000, Some(0)), call(2, 10, 1500, Some(0))];
        assert!(detect(&never).is_empty());
        // no cache information at all
        let unknown = vec![
            call(1, 0, 1000, Some(500)),
            call(2, 10, 1500, None),
            call(3, 20, 2000, None),
        ];
        assert!(detect(&unknown).is_empty());
        // a new short context is not an eviction
        let short = vec![
            call(1, 0, 3000, Some(2000)),
            call(2, 10, 3500, Some(3000)),
            call(3, 20, 500, Some(0)),
        ];
        assert!(detect(&short).is_empty());
        // overlapping calls (a parallel fan-out) are not sequential
        let mut par = vec![
            call(1, 0, 1000, Some(512)),
            call(2, 10, 1500, Some(1088)),
            call(3, 12, 2100, Some(0)),
        ];
        par[1].end_ns = 15;
        assert!(detect(&par).is_empty());
        // another model in the same conversation has its own cache
        let mut other = vec![
            call(1, 0, 1000, Some(512)),
            call(2, 10, 1500, Some(1088)),
            call(3, 20, 2100, Some(0)),
        ];
        other[2].model = "m2".into();
        assert!(detect(&other).is_empty());
    }

    /// Turns between two counted calls whose calls report no token counts (LlamaIndex's
    /// streamed turns): the cache should have held about this whole prompt, not only
    /// the last counted call's; a call without counts in this call's own trace is not
    /// a turn between.
    #[test]
    fn turns_without_token_counts_between_widen_the_prefix() {
        let turn = |id: u8| Some(TraceId([id; 16]));
        let uncounted = |id: u8, t: i64, trace: u8| LlmCall {
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: None,
            prefill_rate: None,
            counted: false,
            trace_id: turn(trace),
            ..call(id, t, 0, None)
        };
        let counted = |id: u8, t: i64, input: i64, read: i64, trace: u8| LlmCall {
            trace_id: turn(trace),
            ..call(id, t, input, Some(read))
        };
        let calls = vec![
            counted(1, 0, 1000, 512, 1),
            counted(2, 10, 1500, 1088, 1),
            // turn 2: two calls without counts
            uncounted(3, 20, 2),
            uncounted(4, 30, 2),
            // turn 3: a call without counts before the evicted one, in its own trace
            uncounted(5, 40, 3),
            counted(6, 50, 2600, 0, 3),
        ];
        let e = &detect(&calls)[&SpanId([6; 8])];
        assert_eq!(e.calls_without_counts, 2);
        assert_eq!(e.evicted_tokens, 2600, "the whole prompt");
        // 100 us a token, capped at the call's 5 ns
        assert_eq!((e.cost_ns, e.cost_low_ns), (5, 5));
        let mut long = calls.clone();
        long[5].end_ns = long[5].start_ns + 1_000_000_000;
        let e = &detect(&long)[&SpanId([6; 8])];
        assert_eq!(e.cost_ns, 2600 * 100_000);
        assert_eq!(
            e.cost_low_ns,
            1600 * 100_000,
            "the last counted call's prefix"
        );
        // without turn 2, only this turn's own uncounted call lies between
        let same_turn: Vec<LlmCall> = long
            .iter()
            .filter(|c| c.trace_id != turn(2))
            .cloned()
            .collect();
        let e = &detect(&same_turn)[&SpanId([6; 8])];
        assert_eq!(e.calls_without_counts, 0);
        assert_eq!((e.evicted_tokens, e.cost_low_ns), (1600, e.cost_ns));
    }
}
