//! `semantic_cache`: a cache read made before an LLM call, recognised from what real
//! cache clients emit: a read span of a cache or vector store's instrumentation
//! (`db.system` redis, valkey, memcached, qdrant, ...; `GET`, `FT.SEARCH`, a query)
//! under the same parent as the LLM call. A read followed there by an LLM call
//! missed; one with no LLM call after it (and none before) was served from the cache.
//! Nothing is read from span names a generator invents: the system, the operation
//! and the tree.
//!
//! A place (parent operation, store, read) counts as a cache when it both hits and
//! misses, or when it writes back after its misses (a cache that never hits). For
//! each the finding reports the hit rate, the turn's latency on hits and misses (p50
//! and p99), the read's own cost on a miss, and whether the cache costs more than it
//! saves: what the hits save (hit rate x the miss-to-hit gap of the median turn) less
//! what every request pays for the read.

use crate::findings::Finding;
use std::collections::BTreeMap;
use tailscope_model::samples::CacheLookup;
use tailscope_model::{CauseSet, Evidence};

/// Stores whose reads can be a cache in front of a model.
pub const CACHE_SYSTEMS: &[&str] = &[
    "redis",
    "valkey",
    "memcached",
    "dragonfly",
    "keydb",
    "qdrant",
    "chroma",
    "chromadb",
    "milvus",
    "pinecone",
    "weaviate",
    "lancedb",
    "opensearch",
    "elasticsearch",
];

/// Read operations (upper case): key reads and vector / full-text searches.
fn is_read(op: &str) -> bool {
    matches!(
        op,
        "GET" | "MGET" | "HGET" | "HMGET" | "HGETALL" | "JSON.GET" | "GETEX" | "QUERY" | "FIND"
    ) || op.contains("SEARCH")
        || op.contains("QUERY")
        || op.contains("KNN")
}

/// A lookup slower than this many times its place's median, and than this floor, is a
/// finding of its own.
const SLOW_FACTOR: f64 = 10.0;
const SLOW_FLOOR_NS: i64 = 50_000_000;

/// What one cache place does.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CacheSite {
    /// The parent operation (service and span name) that reads the cache.
    pub at: String,
    pub db_system: String,
    pub operation: String,
    pub hits: usize,
    pub misses: usize,
    pub hit_rate: f64,
    pub hit_turn_p50_ns: i64,
    pub hit_turn_p99_ns: i64,
    pub miss_turn_p50_ns: i64,
    pub miss_turn_p99_ns: i64,
    pub lookup_p50_ns: i64,
    /// The read's own cost on a miss (mean and p99).
    pub miss_lookup_mean_ns: i64,
    pub miss_lookup_p99_ns: i64,
    /// Misses followed by a write back to the same store.
    pub written_back: usize,
    /// What the cache saves per request, on average: hit rate x (median miss turn -
    /// median hit turn) - the mean read. Negative: it costs more than it saves.
    pub saves_per_request_ns: i64,
}

fn pct(mut v: Vec<i64>, p: f64) -> i64 {
    v.sort_unstable();
    tailscope_model::stats::percentile(&v, p).unwrap_or(0)
}

/// The lookups of cache places, grouped by place (reads of other stores, and reads
/// after an LLM call, are left out).
fn places(rows: &[CacheLookup]) -> BTreeMap<(String, String, String), Vec<&CacheLookup>> {
    let mut out: BTreeMap<(String, String, String), Vec<&CacheLookup>> = BTreeMap::new();
    for r in rows {
        let system = r.db_system.to_ascii_lowercase();
        if !CACHE_SYSTEMS.contains(&system.as_str()) || !is_read(&r.operation) || r.llm_before {
            continue;
        }
        out.entry((r.parent.clone(), system, r.operation.clone()))
            .or_default()
            .push(r);
    }
    out
}

fn site_of(key: &(String, String, String), ls: &[&CacheLookup]) -> Option<CacheSite> {
    let (hits, misses): (Vec<&CacheLookup>, Vec<&CacheLookup>) =
        ls.iter().partition(|l| !l.llm_after);
    let written_back = misses.iter().filter(|l| l.write_after).count();
    // a cache: it both hits and misses, or it writes back after (most of) its misses
    let cache = (!hits.is_empty() && !misses.is_empty())
        || (misses.len() >= 3 && written_back * 2 >= misses.len());
    if !cache {
        return None;
    }
    let turns = |v: &[&CacheLookup]| v.iter().map(|l| l.trace_ns).collect::<Vec<_>>();
    let looks = |v: &[&CacheLookup]| v.iter().map(|l| l.duration_ns).collect::<Vec<_>>();
    let n = ls.len();
    let hit_rate = hits.len() as f64 / n as f64;
    let (hit_p50, miss_p50) = (pct(turns(&hits), 50.0), pct(turns(&misses), 50.0));
    let mean_lookup = looks(ls).iter().sum::<i64>() / n as i64;
    let miss_looks = looks(&misses);
    let saves = if hits.is_empty() {
        -mean_lookup
    } else {
        (hit_rate * (miss_p50 - hit_p50).max(0) as f64) as i64 - mean_lookup
    };
    Some(CacheSite {
        at: key.0.clone(),
        db_system: key.1.clone(),
        operation: key.2.clone(),
        hits: hits.len(),
        misses: misses.len(),
        hit_rate,
        hit_turn_p50_ns: hit_p50,
        hit_turn_p99_ns: pct(turns(&hits), 99.0),
        miss_turn_p50_ns: miss_p50,
        miss_turn_p99_ns: pct(turns(&misses), 99.0),
        lookup_p50_ns: pct(looks(ls), 50.0),
        miss_lookup_mean_ns: miss_looks.iter().sum::<i64>() / miss_looks.len().max(1) as i64,
        miss_lookup_p99_ns: pct(miss_looks, 99.0),
        written_back,
        saves_per_request_ns: saves,
    })
}

/// The cache places of `rows`.
pub fn sites(rows: &[CacheLookup]) -> Vec<CacheSite> {
    places(rows)
        .iter()
        .filter_map(|(k, ls)| site_of(k, ls))
        .collect()
}

/// A time as the reports write it, with sub-millisecond reads to two decimals.
fn ms(ns: i64) -> String {
    if ns.abs() < 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        crate::text::secs(ns)
    }
}

/// The `semantic_cache` findings of `rows`: per cache place, one that reports it (on
/// its slowest miss); one per lookup far slower than the place's usual (its cost on
/// the critical path); and one per conversation where the cache never hit and its
/// reads cost time (it costs more than it saves there).
pub fn findings(rows: &[CacheLookup]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (key, ls) in places(rows) {
        let Some(site) = site_of(&key, &ls) else {
            continue;
        };
        let evidence = |extra: serde_json::Value| {
            let mut e = serde_json::to_value(&site).unwrap_or_default();
            if let (Some(m), serde_json::Value::Object(x)) = (e.as_object_mut(), extra) {
                m.extend(x);
            }
            e
        };
        let what = format!("{} {} at {}", site.db_system, site.operation, site.at);
        let verdict = if site.saves_per_request_ns < 0 {
            format!(
                "it costs more than it saves ({} a request)",
                ms(-site.saves_per_request_ns)
            )
        } else {
            format!("it saves {} a request", ms(site.saves_per_request_ns))
        };
        let misses: Vec<&&CacheLookup> = ls.iter().filter(|l| l.llm_after).collect();
        if let Some(worst) = misses.iter().max_by_key(|l| (l.trace_ns, &l.trace_id)) {
            out.push(Finding {
                kind: "semantic_cache".into(),
                trace_id: worst.trace_id.clone(),
                span_id: worst.span_id.clone(),
                conversation_id: worst.conversation_id.clone(),
                estimated_cost_ns: misses.iter().map(|l| l.critical_ns).sum(),
                evidence: evidence(serde_json::json!({"finding": "cache"})),
                evidence_level: Evidence::Inferred,
                alternatives: CauseSet::EMPTY,
                summary: format!(
                    "A cache ({what}) answers {:.0}% of {} requests: p99 {} on a hit against {} on a miss; a miss first pays the lookup ({} on average); {verdict}.",
                    site.hit_rate * 100.0,
                    site.hits + site.misses,
                    ms(site.hit_turn_p99_ns),
                    ms(site.miss_turn_p99_ns),
                    ms(site.miss_lookup_mean_ns),
                ),
            });
        }
        // lookups far slower than usual, on the critical path
        let usual = site.lookup_p50_ns;
        let slow = (usual as f64 * SLOW_FACTOR) as i64;
        for l in &ls {
            if l.duration_ns < slow.max(SLOW_FLOOR_NS) || l.critical_ns < SLOW_FLOOR_NS {
                continue;
            }
            let outcome = if l.llm_after { "missed" } else { "hit" };
            out.push(Finding {
                kind: "semantic_cache".into(),
                trace_id: l.trace_id.clone(),
                span_id: l.span_id.clone(),
                conversation_id: l.conversation_id.clone(),
                estimated_cost_ns: (l.duration_ns - usual).min(l.critical_ns),
                evidence: evidence(serde_json::json!({
                    "finding": "slow_lookup", "lookup_ns": l.duration_ns, "usual_lookup_ns": usual,
                    "hit": !l.llm_after,
                })),
                evidence_level: Evidence::Measured,
                alternatives: CauseSet::EMPTY,
                summary: format!(
                    "The cache lookup ({what}) took {} against a usual {}, on the critical path, and {outcome}.",
                    ms(l.duration_ns),
                    ms(usual)
                ),
            });
        }
        // conversations where the cache never hit but its reads cost time
        let mut by_conv: BTreeMap<&str, Vec<&CacheLookup>> = BTreeMap::new();
        for l in &ls {
            if let Some(c) = l.conversation_id.as_deref() {
                by_conv.entry(c).or_default().push(l);
            }
        }
        for (conv, cl) in by_conv {
            let cost: i64 = cl.iter().map(|l| l.critical_ns).sum();
            if cl.len() < 3 || cl.iter().any(|l| !l.llm_after) || cost < SLOW_FLOOR_NS {
                continue;
            }
            let Some(worst) = cl.iter().max_by_key(|l| (l.critical_ns, &l.trace_id)) else {
                continue;
            };
            out.push(Finding {
                kind: "semantic_cache".into(),
                trace_id: worst.trace_id.clone(),
                span_id: worst.span_id.clone(),
                conversation_id: Some(conv.to_owned()),
                estimated_cost_ns: cost,
                evidence: evidence(serde_json::json!({
                    "finding": "costs_more_than_it_saves", "conversation_lookups": cl.len(),
                    "conversation_lookup_ns": cost,
                })),
                evidence_level: Evidence::Inferred,
                alternatives: CauseSet::EMPTY,
                summary: format!(
                    "In conversation {conv} the cache ({what}) missed all {} requests: its lookups cost {} on the critical path and saved nothing.",
                    cl.len(),
                    ms(cost)
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(trace: u32, conv: &str, llm_after: bool, dur_ms: f64, turn_ms: i64) -> CacheLookup {
        let ns = (dur_ms * 1e6) as i64;
        CacheLookup {
            trace_id: format!("{trace:032x}"),
            span_id: format!("{trace:016x}"),
            conversation_id: Some(conv.to_owned()),
            db_system: "redis".into(),
            operation: "GET".into(),
            parent: "agent invoke_agent".into(),
            duration_ns: ns,
            llm_after,
            llm_before: false,
            write_after: llm_after,
            trace_ns: turn_ms * 1_000_000,
            critical_ns: ns,
        }
    }

    #[test]
    fn hits_misses_slow_lookups_and_a_cache_that_never_hits() {
        let mut rows = Vec::new();
        for t in 0..40 {
            let hit = t % 4 == 0;
            rows.push(lookup(
                t,
                &format!("c{}", t / 8),
                !hit,
                0.2,
                if hit { 1 } else { 900 },
            ));
        }
        // c9: four misses with slow lookups
        for t in 100..104 {
            rows.push(lookup(t, "c9", true, 300.0, 1300));
        }
        // a GET after the LLM call is not a lookup for it; a postgres read is no cache
        let mut after = lookup(200, "c0", false, 500.0, 900);
        after.llm_before = true;
        let mut pg = lookup(201, "c0", true, 500.0, 900);
        pg.db_system = "postgresql".into();
        pg.operation = "SELECT".into();
        rows.extend([after, pg]);
        let s = sites(&rows);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].hits, s[0].misses), (10, 34));
        assert!(s[0].saves_per_request_ns > 0, "{s:?}");
        let f = findings(&rows);
        let slow: Vec<_> = f
            .iter()
            .filter(|x| x.evidence["finding"] == "slow_lookup")
            .collect();
        assert_eq!(slow.len(), 4);
        let costly: Vec<_> = f
            .iter()
            .filter(|x| x.evidence["finding"] == "costs_more_than_it_saves")
            .collect();
        assert_eq!(costly.len(), 1);
        assert_eq!(costly[0].conversation_id.as_deref(), Some("c9"));
        // reads that never hit and never write back are not a cache
        let plain: Vec<CacheLookup> = (0..10)
            .map(|t| CacheLookup {
                write_after: false,
                ..lookup(t, "c", true, 0.5, 900)
            })
            .collect();
        assert!(findings(&plain).is_empty());
    }
}
