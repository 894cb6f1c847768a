//! Incremental, idempotent, bounded-memory analysis runs over the store.
//!
//! A run brings the result tables up to date with the spans in the store:
//!
//! 1. **What changed.** Every committed span carries an `ingested_ns` stamp that rises
//!    in commit order; the last completed run recorded the largest stamp it had seen
//!    (its watermark, `analysis_runs`). Nothing above it: the run ends after two
//!    aggregate reads. Otherwise the traces with spans above it changed.
//! 2. **What to recompute.** Traces are tied together by the conversations their
//!    spans name and by span links (an async sub-agent and the span that started it):
//!    evictions compare a conversation's turns, and a linked trace inherits its
//!    caller's conversation. The connected components that hold a changed trace are
//!    recomputed whole, so a trace's answer is the same whether it was analysed in a
//!    full run or an incremental one. The latency model and tool baselines of the
//!    last run are reused until the store holds [`REFIT_GROWTH`] times the LLM calls
//!    they were fitted over; a run that fits them again also recomputes the traces
//!    the old fit judged (a cause stored as inferred or ambiguous), in the same run,
//!    so their answers are the new fit's (`RunStats::refreshed`).
//! 3. **Chunks.** Components are packed into chunks of about [`CHUNK_SPANS`] spans.
//!    Worker threads (one per core) each load a chunk's spans as Arrow (only the
//!    columns analysis reads), compute it with the pure core, and hand back rows; the
//!    calling thread writes each chunk in one transaction. At most a few chunks are in
//!    memory at a time, so memory follows the chunk size, not the store.
//! 4. **Primary causes** compare a trace with the others of its root operation, so
//!    they are judged again over every stored trace (a few columns per trace) and
//!    only the ones that changed are updated. Then the run and its watermark are
//!    recorded.
//!
//! A run that fails part way leaves the finished chunks stored and records no
//! watermark, so the next run recomputes what this one did not finish.

use crate::{AnalysisError, Finding, Metrics, Stages, TraceResult};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tailscope_analysis_core::compute;
use tailscope_analysis_core::semantic_cache::{self, CACHE_SYSTEMS};
use tailscope_analysis_core::{findings::ToolBaseline, latency::LatencyModel, tail};
use tailscope_model::{Cause, SpanId, TraceId};
use tailscope_store::{AnalysisRows, FindingRow, RunRow, SpanRow, Store, TraceGraph, TraceRow};

/// Spans per chunk: big enough that per-chunk reads amortise, small enough that a
/// chunk's spans (about 1 KB each in memory) stay far below the memory budget.
pub const CHUNK_SPANS: i64 = 60_000;

/// A run refits the latency model and tool baselines when the store holds this many
/// times the LLM calls they were fitted over (and on a full run); in between it
/// reuses the last run's, so a few new traces do not re-read every call.
pub const REFIT_GROWTH: f64 = 1.1;

/// The store-wide fits a run judges traces by, kept with the run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Fits {
    latency: LatencyModel,
    tools: ToolBaseline,
}

/// How much of a run was recomputed, and where its time went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    /// Traces recomputed in this run.
    pub recomputed: usize,
    /// Analysed traces kept as they were.
    pub reused: usize,
    /// Spans loaded and analysed.
    pub spans: u64,
    /// Whether the last run's latency model and tool baselines were reused.
    pub fits_reused: bool,
    /// Traces analysed before whose causes the old fit judged, recomputed because the
    /// fit was refitted (they count in `recomputed` too).
    pub refreshed: usize,
    /// Chunks and worker threads.
    pub chunks: usize,
    pub workers: usize,
    /// Wall time of each phase on the calling thread.
    pub stages: Stages,
    /// Time of the per-chunk stages summed over the workers (CPU time, not wall).
    pub worker_stages: Stages,
}

/// How far a run is: chunks written of all chunks, and traces written so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub chunks_done: usize,
    pub chunks: usize,
    pub traces_done: usize,
    pub traces: usize,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Union-find over trace indexes.
struct Components(Vec<usize>);

impl Components {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// The traces to recompute, packed into chunks of whole components (trace indexes
/// into `graph.traces`). `changed = None`: every trace.
fn plan_chunks(
    graph: &TraceGraph,
    changed: Option<&[String]>,
    chunk_spans: i64,
) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = graph
        .traces
        .iter()
        .enumerate()
        .map(|(k, t)| (t.trace_id.as_str(), k))
        .collect();
    let mut uf = Components((0..graph.traces.len()).collect());
    let mut by_conversation: HashMap<&str, usize> = HashMap::new();
    for (t, c) in &graph.conversations {
        if let Some(&k) = index.get(t.as_str()) {
            match by_conversation.get(c.as_str()) {
                Some(&first) => uf.union(first, k),
                None => {
                    by_conversation.insert(c, k);
                }
            }
        }
    }
    for (a, b) in &graph.links {
        if let (Some(&a), Some(&b)) = (index.get(a.as_str()), index.get(b.as_str())) {
            uf.union(a, b);
        }
    }
    let mut wanted = vec![changed.is_none(); graph.traces.len()];
    if let Some(ids) = changed {
        for id in ids {
            if let Some(&k) = index.get(id.as_str()) {
                let root = uf.find(k);
                wanted[root] = true;
            }
        }
    }
    // components in storage order (of their first span row), so that a chunk's rows
    // lie close together in the table and its reads scan only that stretch
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for k in 0..graph.traces.len() {
        let root = uf.find(k);
        if wanted[root] {
            members.entry(root).or_default().push(k);
        }
    }
    let mut members: Vec<(i64, Vec<usize>)> = members
        .into_values()
        .map(|m| {
            let first = m.iter().map(|&k| graph.traces[k].span_rows.0).min();
            (first.unwrap_or(0), m)
        })
        .collect();
    members.sort_unstable();
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut size = 0;
    for (_, traces) in members {
        let n: i64 = traces.iter().map(|&k| graph.traces[k].spans).sum();
        if out.is_empty() || size + n > chunk_spans {
            out.push(Vec::new());
            size = 0;
        }
        size += n;
        out.last_mut().expect("pushed above").extend(traces);
    }
    out
}

/// Span rows written per transaction, at least: one DuckDB row group.
const WRITE_ROWS: usize = 122_880;

/// Rows closer than this are read as one stretch (DuckDB scans in vectors of 2,048).
const ROW_GAP: i64 = 8_192;

/// Row ranges merged into few stretches (a chunk's traces mostly lie together, but a
/// conversation can come back much later in the table).
fn row_ranges(mut rows: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    rows.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (lo, hi) in rows {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(ROW_GAP) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The rows a chunk writes; trace rows carry no primary cause yet.
fn rows_of(
    ids: Vec<String>,
    results: Vec<TraceResult>,
    findings: Vec<Finding>,
    watermark: i64,
) -> AnalysisRows {
    let mut rows = AnalysisRows {
        recomputed: ids,
        ..AnalysisRows::default()
    };
    for t in results {
        // ids from the trace's own hex: a trace id the core could not have made has no rows
        if let Ok(id) = TraceId::from_hex(&t.trace_id) {
            rows.sections.extend(t.sections.iter().map(|s| (id, *s)));
            rows.spans.extend(t.spans.iter().map(|s| SpanRow {
                trace_id: id,
                span_id: s.span_id,
                total_ns: s.total_ns,
                self_ns: s.self_ns,
                critical_ns: s.critical_ns,
                skew_ns: s.skew_ns,
                orphan: s.orphan,
                conversation_id: s.conversation_id.clone(),
            }));
        }
        rows.traces.push(TraceRow {
            by_cause_ns: crate::cause_columns(&t.by_cause_ns),
            trace_id: t.trace_id,
            root: t.root,
            route: t.group,
            conversation_id: t.conversation_id,
            start_ns: t.start_ns,
            duration_ns: t.duration_ns,
            primary_cause: None,
            orphans: i32::try_from(t.orphans).unwrap_or(i32::MAX),
            caller: t.caller,
            output_tokens: t.output_tokens,
            analyzed_ns: watermark,
            ambiguous_ns: t.ambiguous_ns,
            uncached_tokens: t.uncached_tokens,
            cause_evidence: Some(tailscope_analysis_core::cause_evidence_json(
                &t.cause_evidence,
            )),
        });
    }
    rows.findings = finding_rows(findings);
    rows
}

/// The core's findings as stored rows.
fn finding_rows(findings: Vec<tailscope_analysis_core::findings::Finding>) -> Vec<FindingRow> {
    findings
        .into_iter()
        .map(|f| FindingRow {
            evidence: f.evidence.to_string(),
            evidence_level: f.evidence_level.as_str().to_owned(),
            alternatives: f.alternatives.to_list(),
            kind: f.kind,
            trace_id: f.trace_id,
            span_id: f.span_id,
            conversation_id: f.conversation_id,
            estimated_cost_ns: f.estimated_cost_ns,
            summary: f.summary,
        })
        .collect()
}

/// The latency model over every LLM call in the store (not only the new ones), with
/// what each source sends (a cache read a source leaves out is zero only for a source
/// that sends them on its other calls).
fn latency_model(store: &Store) -> Result<LatencyModel, AnalysisError> {
    let mut rows: Vec<tailscope_analysis_core::CallRow> = store
        .llm_call_samples()?
        .into_iter()
        .filter_map(|r| {
            let source = tailscope_analysis_core::calls::source_key(
                &r.service_name,
                &r.scope_name,
                &r.model,
            );
            Some((
                tailscope_analysis_core::evict::LlmCall {
                    span_id: SpanId::from_hex(&r.span_id).ok()?,
                    conversation_id: r.conversation_id.unwrap_or_default(),
                    model: r.model,
                    start_ns: r.start_ns,
                    end_ns: r.start_ns + r.duration_ns,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cache_read_tokens: r.cache_read_tokens,
                    cache_read_inferred: false,
                    prefill_rate: None,
                    counted: true,
                    trace_id: None,
                },
                r.duration_ns as f64,
                r.ttft_ns.map(|t| t as f64),
                r.server,
                source,
            ))
        })
        .collect();
    Ok(tailscope_analysis_core::fit_rows(&mut rows))
}

/// One chunk to load: its traces, the row stretches their spans and events lie in,
/// and how many spans it holds.
struct Chunk {
    ids: Vec<String>,
    span_rows: Vec<(i64, i64)>,
    event_rows: Vec<(i64, i64)>,
    spans: usize,
}

/// What a worker sends back per chunk.
type ChunkResult = Result<(AnalysisRows, u64, Stages), AnalysisError>;

/// Brings the analysis tables up to date; see the module docs. `progress` is called
/// on the calling thread after each chunk is written.
pub fn update(store: &Store, progress: &dyn Fn(Progress)) -> Result<RunStats, AnalysisError> {
    update_with(store, CHUNK_SPANS, progress)
}

/// One analysis run at a time in a process: the GUI's analysis thread and work sent by
/// another process through the live service may ask at once, and two runs over the
/// same traces would each write their results. The second waits, then finds what the
/// first did.
static ONE_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`update`] with a chosen chunk size (tests use small chunks to cross boundaries).
pub fn update_with(
    store: &Store,
    chunk_spans: i64,
    progress: &dyn Fn(Progress),
) -> Result<RunStats, AnalysisError> {
    let _one = ONE_RUN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let run_started = Instant::now();
    let mut stats = RunStats::default();
    let mut clock = Instant::now();
    let since = store.analysis_watermark()?;
    let upto = store.ingest_watermark()?;
    let Some(upto) = upto.filter(|u| since.is_none_or(|s| *u > s)) else {
        stats.reused = store.analyzed_traces()?;
        stats.stages.lap("find new traces", &mut clock);
        return Ok(stats);
    };
    let mut changed = since.map(|w| store.changed_traces(w)).transpose()?;
    // The fits: the last run's while the store has not grown past REFIT_GROWTH since
    // they were fitted; else fitted again, and then the traces the old fit judged are
    // stale (a new fit can answer them differently) and are recomputed too.
    let calls = store.llm_call_count()?;
    let reuse = match since {
        Some(_) => store
            .last_fits()?
            .filter(|(_, fitted)| calls as f64 <= *fitted as f64 * REFIT_GROWTH)
            .and_then(|(json, fitted)| Some((serde_json::from_str::<Fits>(&json).ok()?, fitted))),
        None => None,
    };
    if let (Some(changed), None) = (changed.as_mut(), &reuse) {
        let stale = store.fit_judged_traces()?;
        stats.refreshed = stale.len();
        changed.extend(stale);
    }
    let graph = store.trace_graph()?;
    let plan = plan_chunks(&graph, changed.as_deref(), chunk_spans.max(1));
    if since.is_none() {
        // a full run: start from nothing (and stay a full run until one completes)
        store.clear_analysis()?;
    }
    stats.stages.lap("find new traces", &mut clock);
    let traces: usize = plan.iter().map(Vec::len).sum();
    let (from, to) = plan
        .iter()
        .flatten()
        .map(|&k| (graph.traces[k].start_ns, graph.traces[k].end_ns))
        .fold((i64::MAX, i64::MIN), |(a, b), (s, e)| (a.min(s), b.max(e)));
    let metrics = if traces == 0 {
        Metrics::default()
    } else {
        Metrics::load(store, from - 60_000_000_000, to + 60_000_000_000)?
    };
    stats.stages.lap("metric evidence", &mut clock);
    let (fits, fit_calls) = match reuse {
        Some(f) => {
            stats.fits_reused = true;
            f
        }
        None => (
            Fits {
                latency: latency_model(store)?,
                tools: ToolBaseline::from_durations(store.tool_durations()?),
            },
            calls,
        ),
    };
    let (model, tools) = (&fits.latency, &fits.tools);
    stats
        .stages
        .lap("latency model, tool baselines", &mut clock);
    let chunks: Vec<Chunk> = plan
        .iter()
        .map(|c| {
            let t = || c.iter().map(|&k| &graph.traces[k]);
            Chunk {
                ids: t().map(|x| x.trace_id.clone()).collect(),
                span_rows: row_ranges(t().map(|x| x.span_rows).collect()),
                event_rows: row_ranges(t().filter_map(|x| x.event_rows).collect()),
                spans: t().map(|x| usize::try_from(x.spans).unwrap_or(0)).sum(),
            }
        })
        .collect();
    drop(graph);
    stats.chunks = chunks.len();
    stats.workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(chunks.len())
        .max(1);
    let readers: Vec<Store> = (0..stats.workers)
        .map(|_| store.reader())
        .collect::<Result<_, _>>()?;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut written = Duration::ZERO;
    let mut first_error = None;
    std::thread::scope(|scope| {
        // bounded: a worker waits while the writer is a chunk behind
        let (tx, rx) = std::sync::mpsc::sync_channel::<ChunkResult>(stats.workers);
        for reader in readers {
            let tx = tx.clone();
            let (chunks, next, stop, metrics) = (&chunks, &next, &stop, &metrics);
            scope.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= chunks.len() || stop.load(Ordering::Relaxed) {
                    return;
                }
                let work = || -> ChunkResult {
                    let mut stages = Stages::default();
                    let mut clock = Instant::now();
                    let c = &chunks[k];
                    let spans =
                        reader.load_analysis_chunk(&c.ids, &c.span_rows, &c.event_rows, c.spans)?;
                    let n = spans.len() as u64;
                    stages.lap("load spans", &mut clock);
                    let (results, findings, _) =
                        compute(spans, metrics, Some(model), Some(tools), &mut stages);
                    clock = Instant::now();
                    let mut rows = rows_of(c.ids.clone(), results, findings, upto);
                    rows.delete_old = since.is_some();
                    stages.lap("result rows", &mut clock);
                    Ok((rows, n, stages))
                };
                if tx.send(work()).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut done = Progress {
            chunks_done: 0,
            chunks: chunks.len(),
            traces_done: 0,
            traces,
        };
        // Chunks are written in groups of at least a DuckDB row group of span rows:
        // a transaction that appends a whole row group writes it straight to the
        // file instead of through the WAL (then again at the checkpoint).
        let mut pending = AnalysisRows::default();
        let mut pending_chunks = 0;
        let mut flush =
            |pending: &mut AnalysisRows, chunks: &mut usize| -> Result<(), AnalysisError> {
                if *chunks == 0 {
                    return Ok(());
                }
                let t = Instant::now();
                store.write_analysis_chunk(pending)?;
                written += t.elapsed();
                done.chunks_done += *chunks;
                done.traces_done += pending.recomputed.len();
                *pending = AnalysisRows::default();
                *chunks = 0;
                progress(done);
                Ok(())
            };
        for msg in rx {
            let step = msg.and_then(|(rows, n, stages)| {
                for (name, d) in &stages.0 {
                    stats.worker_stages.add(name, *d);
                }
                stats.spans += n;
                pending.delete_old = rows.delete_old;
                pending.traces.extend(rows.traces);
                pending.recomputed.extend(rows.recomputed);
                pending.sections.extend(rows.sections);
                pending.spans.extend(rows.spans);
                pending.findings.extend(rows.findings);
                pending_chunks += 1;
                if pending.spans.len() >= WRITE_ROWS {
                    flush(&mut pending, &mut pending_chunks)?;
                }
                Ok(())
            });
            if let Err(e) = step {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
        if first_error.is_none() {
            if let Err(e) = flush(&mut pending, &mut pending_chunks) {
                first_error = Some(e);
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    stats.worker_stages.add("persist (writer thread)", written);
    stats
        .stages
        .lap("load, compute, persist chunks", &mut clock);
    stats.recomputed = traces;
    // primary causes over every stored trace; only the changes are written
    let sums = store.trace_summaries()?;
    stats.stages.lap("primary causes: read traces", &mut clock);
    let maps: Vec<BTreeMap<Cause, i64>> = sums.by_cause_ns.iter().map(crate::cause_map).collect();
    let times: Vec<tail::TraceTimes<'_>> = (0..sums.trace_id.len())
        .map(|k| tail::TraceTimes {
            duration_ns: sums.duration_ns[k],
            group: &sums.route[k],
            by_cause: &maps[k],
            output_tokens: sums.output_tokens[k],
            uncached_tokens: sums.uncached_tokens[k],
        })
        .collect();
    let primary = tail::primary_causes(&times);
    let changes: Vec<(String, Option<String>)> = primary
        .iter()
        .enumerate()
        .filter(|(k, p)| p.map(Cause::as_str) != sums.primary_cause[*k].as_deref())
        .map(|(k, p)| (sums.trace_id[k].clone(), p.map(|c| c.as_str().to_owned())))
        .collect();
    stats.stages.lap("primary causes: judge", &mut clock);
    store.set_primary_causes(&changes)?;
    stats.reused = sums.trace_id.len().saturating_sub(traces);
    stats
        .stages
        .lap("primary causes: write changes", &mut clock);
    // findings judged over the whole store, recomputed as a whole; their rows change
    // only with the traces recomputed, so a run whose traces read no cache keeps them
    let touched = since.is_none() || {
        let ids: Vec<String> = chunks.iter().flat_map(|c| c.ids.iter().cloned()).collect();
        store.any_reads_of(CACHE_SYSTEMS, &ids)?
    };
    if touched {
        let caches = semantic_cache::findings(&store.cache_lookups(CACHE_SYSTEMS)?);
        store.replace_findings_of_kind("semantic_cache", &finding_rows(caches))?;
    }
    stats.stages.lap("semantic caches", &mut clock);
    store.record_run(&RunRow {
        finished_ns: now_ns(),
        watermark_ns: upto,
        recomputed: i64::try_from(traces).unwrap_or(i64::MAX),
        reused: i64::try_from(stats.reused).unwrap_or(i64::MAX),
        seconds: run_started.elapsed().as_secs_f64(),
        fits: serde_json::to_string(&fits).ok(),
        fit_calls,
    })?;
    stats.stages.lap("record run", &mut clock);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(traces: &[(&str, i64)], convs: &[(&str, &str)], links: &[(&str, &str)]) -> TraceGraph {
        let s = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        TraceGraph {
            traces: traces
                .iter()
                .enumerate()
                .map(|(k, (t, n))| tailscope_store::TraceInfo {
                    trace_id: (*t).to_owned(),
                    spans: *n,
                    start_ns: 0,
                    end_ns: 1,
                    span_rows: (k as i64 * 10, k as i64 * 10 + 9),
                    event_rows: None,
                })
                .collect(),
            conversations: s(convs),
            links: s(links),
        }
    }

    /// Two runs at once over one store (two connections, two threads) store each
    /// trace's results once.
    #[test]
    fn concurrent_runs_write_each_result_once() {
        let dir = std::env::temp_dir().join(format!("ts-one-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("s.duckdb")).unwrap();
        let w = tailscope_samples::generate(&tailscope_samples::WorkloadConfig::small(5, 6));
        let writer = store
            .writer(tailscope_store::WriterConfig::default())
            .unwrap();
        writer.write(w.batch).unwrap();
        writer.close().unwrap();
        let runs: Vec<_> = (0..2)
            .map(|k| {
                let s = store.reader().unwrap();
                std::thread::Builder::new()
                    .name(format!("run-{k}"))
                    .spawn(move || update_with(&s, 500, &|_| {}).map(|r| r.recomputed))
                    .unwrap()
            })
            .collect();
        let recomputed: Vec<usize> = runs
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert!(
            recomputed.contains(&0),
            "the second run found nothing new: {recomputed:?}"
        );
        let n = |sql: &str| -> i64 {
            let b = store.query_arrow(sql).unwrap();
            b[0].column(0)
                .as_any()
                .downcast_ref::<tailscope_store::arrow::array::Int64Array>()
                .unwrap()
                .value(0)
        };
        assert_eq!(
            n("SELECT count(*) FROM trace_analysis"),
            n("SELECT count(DISTINCT trace_id) FROM trace_analysis")
        );
        assert_eq!(
            n("SELECT count(*) FROM trace_analysis"),
            n("SELECT count(DISTINCT trace_id) FROM spans")
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A changed trace brings its whole component (same conversation, or linked)
    /// and nothing else; components are never split across chunks.
    #[test]
    fn chunks_hold_whole_components_of_changed_traces() {
        let g = graph(
            &[("a", 5), ("b", 5), ("c", 5), ("d", 5), ("e", 5)],
            &[("a", "conv-1"), ("b", "conv-1"), ("d", "conv-2")],
            &[("c", "b")],
        );
        let changed = vec!["a".to_owned()];
        let plan = plan_chunks(&g, Some(&changed), 1);
        let names: Vec<Vec<&str>> = plan
            .iter()
            .map(|c| c.iter().map(|&k| g.traces[k].trace_id.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a", "b", "c"]]);
        // every trace, components packed up to the chunk size
        let all = plan_chunks(&g, None, 10);
        let sizes: Vec<usize> = all.iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 5);
        assert!(all.iter().any(|c| c.len() == 3), "{all:?}");
        // unknown ids change nothing
        assert!(plan_chunks(&g, Some(&["zz".to_owned()]), 10).is_empty());
    }

    #[test]
    fn row_ranges_merge_what_lies_close() {
        assert_eq!(
            row_ranges(vec![(50_000, 50_010), (0, 10), (20, 30), (8_000, 8_100)]),
            vec![(0, 8_100), (50_000, 50_010)]
        );
        assert!(row_ranges(Vec::new()).is_empty());
    }
}
