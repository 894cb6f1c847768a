//! Per-trace analysis results: the critical-path sections and per-cause time of a
//! trace, and the timing of each of its spans.

use crate::causes::{CausedSection, Shape};
use crate::tree::Tree;
use std::collections::BTreeMap;
use tailscope_model::{Cause, CauseSet, Evidence, SpanId};

pub use tailscope_model::samples::Section;

/// How each cause of a trace is known: the level of most of its critical-path time
/// (ambiguous when half or more is, else inferred when half or more is inferred or
/// ambiguous, else measured) and the alternatives of its ambiguous sections.
pub type CauseEvidence = BTreeMap<Cause, (Evidence, CauseSet)>;

/// [`CauseEvidence`] of a trace's sections.
pub fn cause_evidence(sections: &[Section]) -> CauseEvidence {
    let mut time: BTreeMap<Cause, [i64; 3]> = BTreeMap::new();
    let mut alts: BTreeMap<Cause, CauseSet> = BTreeMap::new();
    for s in sections {
        time.entry(s.cause).or_default()[s.evidence as usize] += s.end_ns - s.start_ns;
        if s.evidence == Evidence::Ambiguous {
            let a = alts.entry(s.cause).or_default();
            *a = a.union(s.alternatives);
        }
    }
    time.into_iter()
        .map(|(c, [m, i, a])| {
            let total = m + i + a;
            let level = if a * 2 >= total && a > 0 {
                Evidence::Ambiguous
            } else if (a + i) * 2 >= total && a + i > 0 {
                Evidence::Inferred
            } else {
                Evidence::Measured
            };
            let alternatives = if level == Evidence::Ambiguous {
                alts.get(&c).copied().unwrap_or_default()
            } else {
                CauseSet::EMPTY
            };
            (c, (level, alternatives))
        })
        .collect()
}

/// `cause_evidence` as stored: `{"queue": {"evidence": "ambiguous", "alternatives":
/// ["kv_eviction"]}, ...}`.
pub fn cause_evidence_json(e: &CauseEvidence) -> String {
    let m: serde_json::Map<String, serde_json::Value> = e
        .iter()
        .map(|(c, (level, alts))| {
            (
                c.as_str().to_owned(),
                serde_json::json!({"evidence": level.as_str(), "alternatives": alts}),
            )
        })
        .collect();
    serde_json::Value::Object(m).to_string()
}

/// Reads [`cause_evidence_json`]'s text (unknown causes and levels are skipped).
/// Deserialised straight into borrowed entries, not through a JSON value: the stored
/// report reads one per trace.
pub fn parse_cause_evidence(text: &str) -> CauseEvidence {
    use serde::de::{Deserializer, MapAccess, Visitor};
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Key<'a>(#[serde(borrow)] Cow<'a, str>);
    #[derive(serde::Deserialize)]
    struct Entry<'a> {
        #[serde(borrow)]
        evidence: Cow<'a, str>,
        #[serde(default, borrow)]
        alternatives: Vec<Cow<'a, str>>,
    }
    // read entry by entry into the map (no intermediate map of the JSON object)
    struct Causes;
    impl<'de> Visitor<'de> for Causes {
        type Value = CauseEvidence;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of causes")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CauseEvidence, A::Error> {
            let mut out = CauseEvidence::new();
            while let Some((Key(k), v)) = map.next_entry::<Key<'de>, Entry<'de>>()? {
                let (Some(c), Some(level)) = (Cause::parse(&k), Evidence::parse(&v.evidence))
                else {
                    continue;
                };
                let mut alts = CauseSet::EMPTY;
                for a in v.alternatives.iter().filter_map(|a| Cause::parse(a)) {
                    alts.insert(a);
                }
                out.insert(c, (level, alts));
            }
            Ok(out)
        }
    }
    serde_json::Deserializer::from_str(text)
        .deserialize_map(Causes)
        .unwrap_or_default()
}

/// Per-span timing: total, self (not covered by children) and on-critical-path time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanStat {
    pub span_id: SpanId,
    pub total_ns: i64,
    pub self_ns: i64,
    pub critical_ns: i64,
    pub skew_ns: i64,
    pub orphan: bool,
    /// The span's conversation: its own, an ancestor's or a linked span's.
    pub conversation_id: Option<String>,
}

/// One analysed trace.
#[derive(Debug, Clone)]
pub struct TraceResult {
    pub trace_id: String,
    pub root: String,
    /// The root operation (service + root name): the group primary causes compare within.
    pub group: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub conversation_id: Option<String>,
    /// Critical-path sections in time order; they cover the root with no overlap.
    pub sections: Vec<Section>,
    pub by_cause_ns: BTreeMap<Cause, i64>,
    /// Time on sections whose cause is ambiguous.
    pub ambiguous_ns: i64,
    /// How each cause on the critical path is known.
    pub cause_evidence: CauseEvidence,
    /// Output tokens of the trace's LLM calls (decode is judged per token).
    pub output_tokens: i64,
    /// Uncached input tokens of the trace's LLM calls (prefill is judged per token):
    /// input less cache reads where known, else less the prefix a caching provider
    /// would have served.
    pub uncached_tokens: i64,
    pub primary_cause: Option<Cause>,
    /// How the primary cause is known, and the causes that explain it about as well.
    pub primary_evidence: Option<Evidence>,
    pub alternatives: CauseSet,
    pub spans: Vec<SpanStat>,
    pub orphans: usize,
    /// (trace id, span id) of the span in another trace that started this one
    /// asynchronously, from a link on the root (async sub-agents, background jobs).
    pub caller: Option<(String, String)>,
}

fn self_time(tree: &Tree, i: usize) -> i64 {
    let s = &tree.nodes[i].span;
    let mut iv: Vec<(i64, i64)> = tree.nodes[i]
        .children
        .iter()
        .map(|&c| {
            let cs = &tree.nodes[c].span;
            (cs.start_ns.max(s.start_ns), cs.end_ns.min(s.end_ns))
        })
        .filter(|(a, b)| b > a)
        .collect();
    iv.sort_unstable();
    let mut covered = 0;
    let mut cur = i64::MIN;
    for (a, b) in iv {
        let a = a.max(cur);
        if b > a {
            covered += b - a;
            cur = b;
        }
    }
    s.duration_ns() - covered
}

impl TraceResult {
    /// Sets the primary cause and, from [`TraceResult::cause_evidence`], how it is known.
    pub fn set_primary(&mut self, primary: Option<Cause>) {
        self.primary_cause = primary;
        let (level, alts) = primary
            .and_then(|c| self.cause_evidence.get(&c).copied())
            .map_or((None, CauseSet::EMPTY), |(l, a)| (Some(l), a));
        // a primary cause with no critical-path time left is a judgement on nothing
        self.primary_evidence = primary.map(|_| level.unwrap_or(Evidence::Inferred));
        self.alternatives = alts;
    }

    pub(crate) fn new(tree: &Tree, sections: &[CausedSection], shape: &Shape<'_>) -> Self {
        let root = tree.root_span();
        let mut by_cause = BTreeMap::new();
        let mut critical: BTreeMap<usize, i64> = BTreeMap::new();
        for s in sections {
            *by_cause.entry(s.cause).or_insert(0) += s.end - s.start;
            *critical.entry(s.node).or_insert(0) += s.end - s.start;
        }
        let secs: Vec<Section> = sections
            .iter()
            .map(|s| Section {
                span_id: tree.nodes[s.node].span.span_id,
                start_ns: s.start,
                end_ns: s.end,
                cause: s.cause,
                evidence: s.evidence,
                alternatives: s.alternatives,
            })
            .collect();
        let spans = tree
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !(tree.synthetic_root && *i == tree.root))
            .map(|(i, n)| SpanStat {
                span_id: n.span.span_id,
                total_ns: n.span.duration_ns(),
                self_ns: self_time(tree, i),
                critical_ns: critical.get(&i).copied().unwrap_or(0),
                skew_ns: n.skew_ns,
                orphan: n.orphan,
                conversation_id: n.span.promoted.conversation_id.clone(),
            })
            .collect();
        let route = tree
            .nodes
            .iter()
            .find(|n| n.parent.is_none() || (tree.synthetic_root && n.parent == Some(tree.root)))
            .map_or_else(|| root.name.clone(), |n| n.span.name.clone());
        Self {
            trace_id: root.trace_id.to_hex(),
            root: root.name.clone(),
            group: format!(
                "{} {}",
                tree.nodes
                    .iter()
                    .find(|n| n.parent == Some(tree.root) || n.parent.is_none())
                    .map_or("", |n| n.span.service_name.as_str()),
                route
            ),
            start_ns: root.start_ns,
            duration_ns: root.duration_ns(),
            conversation_id: tree
                .nodes
                .iter()
                .find_map(|n| n.span.promoted.conversation_id.clone()),
            ambiguous_ns: secs
                .iter()
                .filter(|s| s.evidence == Evidence::Ambiguous)
                .map(|s| s.end_ns - s.start_ns)
                .sum(),
            cause_evidence: cause_evidence(&secs),
            sections: secs,
            by_cause_ns: by_cause,
            output_tokens: shape
                .calls
                .iter()
                .filter_map(|c| {
                    let p = &tree.nodes[c.node].span.promoted;
                    p.output_tokens.or_else(|| {
                        c.server
                            .and_then(|x| tree.nodes[x].span.promoted.output_tokens)
                    })
                })
                .sum(),
            uncached_tokens: shape
                .calls
                .iter()
                .filter_map(|c| {
                    let input = crate::calls::input_tokens(tree, c)?;
                    let read = crate::calls::cache_read_known(tree, c, &shape.model.sources)
                        .map(crate::calls::CacheRead::tokens)
                        .or_else(|| shape.assumed.get(&tree.nodes[c.node].span.span_id).copied());
                    Some(crate::calls::uncached_tokens(input, read))
                })
                .sum(),
            primary_cause: None,
            primary_evidence: None,
            alternatives: CauseSet::EMPTY,
            spans,
            orphans: tree.orphans,
            caller: tree
                .nodes
                .iter()
                .filter(|n| {
                    n.parent.is_none() || (tree.synthetic_root && n.parent == Some(tree.root))
                })
                .flat_map(|n| n.span.links.iter())
                .find(|l| l.trace_id != root.trace_id)
                .map(|l| (l.trace_id.to_hex(), l.span_id.to_hex())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored text reads back as written; unknown causes and levels are skipped,
    /// text that is no such object reads as nothing.
    #[test]
    fn cause_evidence_round_trips() {
        let mut e = CauseEvidence::new();
        e.insert(
            Cause::Queue,
            (
                Evidence::Ambiguous,
                CauseSet::of(&[Cause::KvEviction, Cause::Prefill]),
            ),
        );
        e.insert(Cause::Decode, (Evidence::Measured, CauseSet::EMPTY));
        let text = cause_evidence_json(&e);
        assert_eq!(parse_cause_evidence(&text), e);
        let odd = r#"{"queue":{"evidence":"inferred","alternatives":["kv_eviction","nope"]},
                      "nope":{"evidence":"measured"},"decode":{"evidence":"sure"}}"#;
        let mut want = CauseEvidence::new();
        want.insert(
            Cause::Queue,
            (Evidence::Inferred, CauseSet::of(&[Cause::KvEviction])),
        );
        assert_eq!(parse_cause_evidence(odd), want);
        assert!(parse_cause_evidence("[1]").is_empty());
        assert!(parse_cause_evidence("").is_empty());
        // an escaped key is read as its text
        let mut queue = CauseEvidence::new();
        queue.insert(Cause::Queue, (Evidence::Measured, CauseSet::EMPTY));
        assert_eq!(
            parse_cause_evidence(r#"{"qu\u0065ue":{"evidence":"measured"}}"#),
            queue
        );
    }
}
