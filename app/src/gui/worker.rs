//! The GUI's worker thread: owns every DuckDB access and the long jobs. It answers the
//! UI's [`Request`]s from the store with view-model [`Response`]s over a bounded
//! channel, wakes the UI after each, polls the store for live data, and runs import and
//! export on a job thread with progress and cancellation. The analysis never runs here:
//! the worker asks its [`super::analysis`] thread for runs and answers from the stored
//! results meanwhile.

use super::analysis::{Analysis, Hook, Trigger};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailscope_ingest::IngestStats;
use tailscope_model::{Cause, CauseSet, Evidence, OpClass};
use tailscope_store::arrow::array::{Array, AsArray};
use tailscope_store::arrow::compute::cast;
use tailscope_store::arrow::datatypes::{DataType, Float64Type, Int64Type};
use tailscope_store::arrow::util::display::{ArrayFormatter, FormatOptions};
use tailscope_store::{check_read_only, AlignOptions, RecordBatch, Store, CAUSE_COLUMNS};
use tailscope_ui::protocol::{
    ChangeVm, Cohort, CollectorStatus, ConversationSummary, DiffVm, EventVm, FindingVm,
    JobProgress, MetricsScope, ReplayEvictionVm, ReplayListItem, ReplayRequest, ReplaySide,
    ReplayTurnVm, ReplayVm, SectionInput, SeriesVm, SharedValueVm, SharedValues, SpanInput, TurnVm,
};
use tailscope_ui::{
    Conversation, MetricsWindow, Overview, Request, Response, SqlResult, TraceDetail, TracePage,
    TraceQuery, TraceRowVm, WorkerLink, REPLAY_JOB,
};

/// How `cause` is known in a trace, from `trace_analysis.cause_evidence` (JSON:
/// `{"queue": {"evidence": "ambiguous", "alternatives": ["kv_eviction"]}, ...}`).
fn cause_evidence(json: &str, cause: Cause) -> Option<(Evidence, CauseSet)> {
    tailscope_analysis::parse_cause_evidence(json)
        .get(&cause)
        .map(|&(level, alts)| (level, alts.without(cause)))
}

/// Wakes the UI (egui's `request_repaint`).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// One cell of a query result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
}

impl Cell {
    fn i(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => Some(*v),
            Cell::Float(v) => Some(*v as i64),
            Cell::Str(s) => s.parse().ok(),
            Cell::Null => None,
        }
    }
    fn f(&self) -> Option<f64> {
        match self {
            Cell::Int(v) => Some(*v as f64),
            Cell::Float(v) => Some(*v),
            Cell::Str(s) => s.parse().ok(),
            Cell::Null => None,
        }
    }
    fn s(&self) -> Option<String> {
        match self {
            Cell::Str(s) => Some(s.clone()),
            Cell::Int(v) => Some(v.to_string()),
            Cell::Float(v) => Some(v.to_string()),
            Cell::Null => None,
        }
    }
}

/// Spans in the store.
pub(crate) fn span_count(store: &Store) -> Result<i64> {
    Ok(rows(store, "SELECT count(*) FROM spans")?
        .first()
        .and_then(|r| r.first())
        .and_then(Cell::i)
        .unwrap_or(0))
}

/// Rows of cells from Arrow batches (integers and floats typed, the rest as text).
fn cells(batches: &[RecordBatch]) -> Result<Vec<Vec<Cell>>> {
    let opts = FormatOptions::default();
    let mut out = Vec::new();
    for b in batches {
        let mut cols: Vec<Vec<Cell>> = Vec::with_capacity(b.num_columns());
        for c in b.columns() {
            let n = c.len();
            let dt = c.data_type();
            let col = if dt.is_integer() {
                let a = cast(c, &DataType::Int64)?;
                let a = a.as_primitive::<Int64Type>();
                (0..n)
                    .map(|i| {
                        if a.is_null(i) {
                            Cell::Null
                        } else {
                            Cell::Int(a.value(i))
                        }
                    })
                    .collect()
            } else if dt.is_floating() || matches!(dt, DataType::Decimal128(..)) {
                let a = cast(c, &DataType::Float64)?;
                let a = a.as_primitive::<Float64Type>();
                (0..n)
                    .map(|i| {
                        if a.is_null(i) {
                            Cell::Null
                        } else {
                            Cell::Float(a.value(i))
                        }
                    })
                    .collect()
            } else {
                let f = ArrayFormatter::try_new(c.as_ref(), &opts)?;
                (0..n)
                    .map(|i| {
                        if c.is_null(i) {
                            Cell::Null
                        } else {
                            Cell::Str(f.value(i).to_string())
                        }
                    })
                    .collect()
            };
            cols.push(col);
        }
        for r in 0..b.num_rows() {
            out.push(cols.iter().map(|c| c[r].clone()).collect());
        }
    }
    Ok(out)
}

fn rows(store: &Store, sql: &str) -> Result<Vec<Vec<Cell>>> {
    cells(&store.query_arrow(sql)?)
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn hex_id(s: &str, len: usize) -> Result<&str> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        bail!("`{s}` is not a {len}-digit hex id")
    }
}

/// The cause a span of this class usually stands for (its colour off the path).
fn class_cause(op: OpClass) -> Cause {
    match op {
        OpClass::Llm => Cause::Decode,
        OpClass::Embedding => Cause::Preprocessing,
        OpClass::Retrieval => Cause::Retrieval,
        OpClass::Tool | OpClass::Mcp => Cause::Tool,
        OpClass::Db => Cause::Db,
        OpClass::Pool => Cause::PoolWait,
        OpClass::Http => Cause::Network,
        OpClass::Agent | OpClass::Other => Cause::Other,
    }
}

/// `replay_runs` summary columns: (label, column, unit).
const REPLAY_METRICS: [(&str, &str, &str); 15] = [
    ("TTFT p50", "ttft_p50_ms", "ms"),
    ("TTFT p99", "ttft_p99_ms", "ms"),
    ("TPOT p50", "tpot_p50_ms", "ms"),
    ("TPOT p99", "tpot_p99_ms", "ms"),
    ("ITL p50", "itl_p50_ms", "ms"),
    ("ITL p99", "itl_p99_ms", "ms"),
    ("E2E p50", "e2e_p50_ms", "ms"),
    ("E2E p99", "e2e_p99_ms", "ms"),
    ("throughput", "throughput_tok_s", "tok/s"),
    ("goodput", "goodput_req_s", "req/s"),
    ("goodput fraction", "goodput_fraction", ""),
    ("prefix-hit tokens", "prefix_hit_tokens", "tok"),
    ("evicted blocks", "evicted_blocks", ""),
    ("preemptions", "preemptions", ""),
    ("makespan", "makespan_ms", "ms"),
];

/// The worker's state: the store, and what the collector reports.
pub struct Worker {
    store: Store,
    label: String,
    link: WorkerLink,
    wake: Wake,
    stats: Option<(Arc<IngestStats>, String, String, Option<String>)>,
    trace_list_ready: bool,
    last_spans: i64,
    last_stats: (Instant, u64),
    job: Option<std::thread::JoinHandle<()>>,
    job_changed: Arc<AtomicBool>,
    /// The analysis thread of the open store (started by [`Worker::run`]).
    analysis: Option<Analysis>,
    /// Analysis threads of stores switched away from, finishing their last run.
    retired: Vec<Analysis>,
    hook: Option<Hook>,
}

impl Worker {
    pub fn new(store: Store, label: String, link: WorkerLink, wake: Wake) -> Self {
        Self {
            store,
            label,
            link,
            wake,
            stats: None,
            trace_list_ready: false,
            last_spans: -1,
            last_stats: (Instant::now(), 0),
            job: None,
            job_changed: Arc::new(AtomicBool::new(false)),
            analysis: None,
            retired: Vec::new(),
            hook: None,
        }
    }

    /// Calls `hook` on the analysis thread as each run starts, after its first
    /// progress report (tests count runs and hold one open with it).
    #[must_use]
    pub fn with_analysis_hook(mut self, hook: Hook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Reports collector endpoints and throughput (live mode: the store is polled).
    #[must_use]
    pub fn with_collector(
        mut self,
        stats: Arc<IngestStats>,
        grpc: String,
        http: String,
        gpu: Option<String>,
    ) -> Self {
        self.stats = Some((stats, grpc, http, gpu));
        self
    }

    fn send(&self, r: Response) -> bool {
        let ok = self.link.responses.send(r).is_ok();
        (self.wake)();
        ok
    }

    /// Runs until the UI hangs up. The stored results are answered at once; the
    /// analysis of what is new runs on the analysis thread, which is stopped when this
    /// one ends (after its current run, if one is in progress).
    pub fn run(mut self) {
        match self.spawn_analysis(&self.store) {
            Ok(a) => self.analysis = Some(a),
            Err(e) => {
                self.send(Response::Error(format!("analysis off: {e:#}")));
            }
        }
        self.trigger(Trigger::Now);
        self.last_spans = self.span_count().unwrap_or(0);
        loop {
            match self.link.requests.recv_timeout(Duration::from_secs(1)) {
                Ok(req) => {
                    self.note_landed();
                    let r = self.answer(req);
                    let r = r.unwrap_or_else(|e| Response::Error(format!("{e:#}")));
                    if !self.send(r) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !self.tick() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.shutdown();
    }

    fn spawn_analysis(&self, store: &Store) -> Result<Analysis> {
        Analysis::spawn(
            store
                .reader()
                .context("a store connection for the analysis")?,
            self.link.responses.clone(),
            Arc::clone(&self.wake),
            self.hook.clone(),
        )
    }

    fn trigger(&self, t: Trigger) {
        if let Some(a) = &self.analysis {
            a.trigger(t);
        }
    }

    /// Results landed since the last look: what was derived from them is rebuilt.
    fn note_landed(&mut self) {
        if self.analysis.as_ref().is_some_and(Analysis::take_landed) {
            self.trace_list_ready = false;
        }
    }

    /// Stops the analysis threads; waits for the idle ones (a run in progress is not
    /// waited for: it ends on its own, or with the process).
    fn shutdown(&mut self) {
        for a in self
            .analysis
            .take()
            .into_iter()
            .chain(self.retired.drain(..))
        {
            a.close();
        }
    }

    fn span_count(&self) -> Result<i64> {
        span_count(&self.store)
    }

    /// Idle work: collector status; new spans (collector or a finished job) handed to
    /// the analysis thread.
    fn tick(&mut self) -> bool {
        self.note_landed();
        self.retired.retain(|a| !a.is_finished());
        if let Some((stats, grpc, http, gpu)) = &self.stats {
            let s = stats.snapshot();
            let (t, n) = self.last_stats;
            let dt = t.elapsed().as_secs_f64().max(1e-3);
            let status = CollectorStatus {
                grpc: grpc.clone(),
                http: http.clone(),
                spans_per_s: (s.spans_accepted.saturating_sub(n)) as f64 / dt,
                spans_accepted: s.spans_accepted,
                rejected: s.spans_rejected + s.metric_points_rejected + s.logs_rejected,
                gpu_sampler: gpu.clone(),
            };
            self.last_stats = (Instant::now(), s.spans_accepted);
            if !self.send(Response::Collector(status)) {
                return false;
            }
        }
        if self
            .job
            .as_ref()
            .is_some_and(std::thread::JoinHandle::is_finished)
        {
            if let Some(j) = self.job.take() {
                let _ = j.join();
            }
        }
        let changed = self.job_changed.swap(false, Ordering::Relaxed);
        if self.stats.is_some() || changed {
            let n = self.span_count().unwrap_or(self.last_spans);
            if changed {
                self.trigger(Trigger::Now);
            } else if n != self.last_spans {
                self.trigger(Trigger::SpansArrived);
            }
            self.last_spans = n;
        }
        true
    }

    fn answer(&mut self, req: Request) -> Result<Response> {
        Ok(match req {
            Request::Overview => Response::Overview(Box::new(self.overview()?)),
            Request::Traces(q) => Response::Traces(self.traces(q)?),
            Request::Trace { trace_id } => Response::Trace(Box::new(self.trace(&trace_id)?)),
            Request::Conversations => Response::Conversations(self.conversations()?),
            Request::Conversation { conversation_id } => {
                Response::Conversation(self.conversation(&conversation_id)?)
            }
            Request::Metrics { scope } => Response::Metrics(self.metrics(&scope)?),
            Request::Replays => Response::Replays(self.replays()?),
            Request::Replay { replay_id } => Response::Replay(Box::new(self.replay(&replay_id)?)),
            Request::Sql { sql } => Response::Sql(self.sql(&sql)?),
            Request::Diff { periods } => Response::Diff(Box::new(self.diff(periods)?)),
            Request::ReplayDefaults => Response::ReplayDefaults {
                a: SEED_A.to_owned(),
                b: SEED_B.to_owned(),
            },
            Request::RunReplay(r) => self.start_replay(&r)?,
            // Answered with the stored overview; the run reports on its own.
            Request::Analyze => {
                self.trigger(Trigger::Now);
                Response::Overview(Box::new(self.overview()?))
            }
            // The new store's stored overview at once; its analysis thread replaces the
            // old one, which finishes its run on the old store and reports nothing more.
            Request::Open { db } => {
                if self.stats.is_some() {
                    bail!("cannot switch stores while the collector writes into {}; start with --no-collector to browse other stores", self.label);
                }
                let store =
                    Store::open(&db).with_context(|| format!("opening store {}", db.display()))?;
                let analysis = self.spawn_analysis(&store)?;
                if let Some(old) = self.analysis.replace(analysis) {
                    old.retire();
                    self.retired.push(old);
                }
                self.store = store;
                self.label = db.display().to_string();
                self.trace_list_ready = false;
                self.last_spans = self.span_count()?;
                self.trigger(Trigger::Now);
                self.send(Response::StoreChanged);
                Response::Overview(Box::new(self.overview()?))
            }
            Request::Import { files } => self.start_import(files)?,
            Request::Export { dir } => self.start_export(dir)?,
        })
    }

    fn job_busy(&self) -> Result<()> {
        if self.job.as_ref().is_some_and(|j| !j.is_finished()) {
            bail!("another job is running; cancel it or wait for it to finish");
        }
        Ok(())
    }

    fn start_import(&mut self, files: Vec<PathBuf>) -> Result<Response> {
        self.job_busy()?;
        if files.is_empty() {
            bail!("no files to import");
        }
        for f in &files {
            if !f.is_file() {
                bail!("cannot import {}: no such file", f.display());
            }
        }
        let store = self.store.reader()?;
        let tx = self.link.responses.clone();
        let cancel = Arc::clone(&self.link.cancel);
        let wake = Arc::clone(&self.wake);
        let changed = Arc::clone(&self.job_changed);
        self.job = Some(
            std::thread::Builder::new()
                .name("tailscope-import".into())
                .spawn(move || import_job(&store, &files, &tx, &cancel, &wake, &changed))
                .context("starting the import thread")?,
        );
        Ok(Response::Progress(JobProgress {
            job: "import".into(),
            fraction: Some(0.0),
            message: "starting".into(),
            done: false,
        }))
    }

    fn start_export(&mut self, dir: PathBuf) -> Result<Response> {
        self.job_busy()?;
        let store = self.store.reader()?;
        let tx = self.link.responses.clone();
        let cancel = Arc::clone(&self.link.cancel);
        let wake = Arc::clone(&self.wake);
        self.job = Some(
            std::thread::Builder::new()
                .name("tailscope-export".into())
                .spawn(move || export_job(&store, &dir, &tx, &cancel, &wake))
                .context("starting the export thread")?,
        );
        Ok(Response::Progress(JobProgress {
            job: "export".into(),
            fraction: Some(0.0),
            message: "starting".into(),
            done: false,
        }))
    }

    /// Starts an A/B replay of a stored conversation on the job thread: the workload is
    /// read here (a bad conversation or configuration is refused at once), the engine
    /// runs there with progress and the cancel flag, and the result is saved as the
    /// CLI saves it.
    fn start_replay(&mut self, r: &ReplayRequest) -> Result<Response> {
        use crate::replay_input::{workload, InputOptions};
        use tailscope_engine::EngineConfig;
        self.job_busy()?;
        let conv = r.conversation_id.trim().to_owned();
        if conv.is_empty() {
            bail!("pick a conversation to replay");
        }
        let a = EngineConfig::from_toml_str_named(&r.a_toml, "A")?;
        let b = EngineConfig::from_toml_str_named(&r.b_toml, "B")?;
        if !(r.token_scale > 0.0 && r.token_scale <= 1.0) {
            bail!("the token scale must be in (0, 1], not {}", r.token_scale);
        }
        let input = InputOptions {
            token_scale: r.token_scale,
            max_background: 8,
            max_prompt_tokens: 4096,
        };
        let workload = workload(&self.store, &conv, &input)
            .with_context(|| format!("reading conversation {conv} for replay"))?;
        let opts = tailscope_engine::ReplayOptions {
            repeats: r.repeats.clamp(1, 10),
            max_output_tokens: Some(r.max_output_tokens.max(1)),
            ..tailscope_engine::ReplayOptions::default()
        };
        let store = self.store.reader()?;
        let tx = self.link.responses.clone();
        let cancel = Arc::clone(&self.link.cancel);
        let wake = Arc::clone(&self.wake);
        self.job = Some(
            std::thread::Builder::new()
                .name("tailscope-replay".into())
                .spawn(move || replay_job(&store, &workload, (&a, &b), &opts, &tx, &cancel, &wake))
                .context("starting the replay thread")?,
        );
        Ok(Response::Progress(JobProgress {
            job: REPLAY_JOB.into(),
            fraction: Some(0.0),
            message: format!("loading {conv}"),
            done: false,
        }))
    }

    /// Two periods compared, as `tailscope diff` does; without periods, the first half
    /// of the stored range against the second.
    fn diff(&self, periods: Option<(String, String)>) -> Result<DiffVm> {
        use tailscope_analysis::diff::{self, DiffOptions, Window, WindowSpec};
        let range = diff::store_range(&self.store)?;
        if range.1 <= range.0 {
            bail!("the store has no spans to compare");
        }
        let (bw, aw) = match periods {
            None => {
                let mid = range.0 + (range.1 - range.0) / 2;
                (
                    Window {
                        from_ns: range.0,
                        to_ns: mid,
                    },
                    Window {
                        from_ns: mid,
                        to_ns: range.1,
                    },
                )
            }
            Some((b, a)) => {
                let spec = |t: &str, side: &str| -> Result<Window> {
                    let s: WindowSpec = if t.trim().is_empty() { ".." } else { t }
                        .parse()
                        .map_err(|e: String| anyhow::anyhow!("the {side} period: {e}"))?;
                    let w = s.resolve(range);
                    if w.from_ns >= w.to_ns {
                        bail!("the {side} period {t} is empty (it ends before it starts)");
                    }
                    Ok(w)
                };
                (spec(&b, "before")?, spec(&a, "after")?)
            }
        };
        let text = |w: Window| format!("{}..{}", diff::rfc3339(w.from_ns), diff::rfc3339(w.to_ns));
        let before = diff::sample(&self.store, bw)?;
        let after = diff::sample(&self.store, aw)?;
        for (s, side, w) in [(&before, "before", bw), (&after, "after", aw)] {
            if s.traces == 0 {
                bail!("the {side} period {} has no analysed traces", text(w));
            }
        }
        let d = diff::diff(&before, &after, &DiffOptions::default());
        let changes = d
            .changes
            .iter()
            .map(|c| ChangeVm {
                scope: c.scope.as_str().to_owned(),
                subject: match (&c.model, &c.server) {
                    (Some(m), Some(s)) => format!("{m} @ {s}"),
                    (Some(m), None) => m.clone(),
                    (None, Some(s)) => s.clone(),
                    (None, None) => format!("{} · {}", c.service, c.operation),
                },
                metric: c.metric.clone(),
                before: diff::value_text(&c.metric, c.before),
                after: diff::value_text(&c.metric, c.after),
                change: c.change,
                // an interval of the change (of the after value when before is 0)
                ci: c.change.and(c.ci_low).zip(c.ci_high),
                significant: c.significant,
                n_before: c.n_before as u64,
                n_after: c.n_after as u64,
            })
            .collect();
        Ok(DiffVm {
            before_text: text(bw),
            after_text: text(aw),
            before_traces: d.before.traces as u64,
            after_traces: d.after.traces as u64,
            range_ns: range,
            // the window's font has no arrow glyph
            headline: d.headline.replace('→', "to"),
            changes,
            confidence: d.confidence,
        })
    }

    fn overview(&mut self) -> Result<Overview> {
        let s = &self.store;
        let one = |sql: &str| -> Result<i64> {
            Ok(rows(s, sql)?
                .first()
                .and_then(|r| r.first())
                .and_then(Cell::i)
                .unwrap_or(0))
        };
        let mut o = Overview {
            store: self.label.clone(),
            spans: one("SELECT count(*) FROM spans")? as u64,
            traces: one("SELECT count(*) FROM trace_analysis")? as u64,
            metric_points: one("SELECT count(*) FROM metric_points")? as u64,
            ..Overview::default()
        };
        if o.traces == 0 {
            return Ok(o);
        }
        // quantile_disc is the nearest-rank percentile, the one definition of the CLI,
        // the notebook and replay (`tailscope_analysis::tail::percentile`)
        let q = rows(s, "SELECT quantile_disc(duration_ns, 0.5), quantile_disc(duration_ns, 0.9), quantile_disc(duration_ns, 0.99) FROM trace_analysis")?;
        if let Some(r) = q.first() {
            o.p50_ns = r[0].f().unwrap_or(0.0);
            o.p90_ns = r[1].f().unwrap_or(0.0);
            o.p99_ns = r[2].f().unwrap_or(0.0);
        }
        let avgs = CAUSE_COLUMNS
            .iter()
            .map(|c| format!("avg({c}_ns)"))
            .collect::<Vec<_>>()
            .join(", ");
        let cohorts = rows(s, &format!(
            "WITH q AS (SELECT quantile_disc(duration_ns, 0.4) q40, quantile_disc(duration_ns, 0.6) q60,
                               quantile_disc(duration_ns, 0.9) q90, quantile_disc(duration_ns, 0.99) q99 FROM trace_analysis),
             c AS (SELECT CASE WHEN duration_ns >= q99 THEN 3 WHEN duration_ns >= q90 THEN 2
                               WHEN duration_ns BETWEEN q40 AND q60 THEN 1 END AS cohort, t.*
                   FROM trace_analysis t, q)
             SELECT cohort, count(*), {avgs} FROM c WHERE cohort IS NOT NULL GROUP BY cohort ORDER BY cohort"
        ))?;
        for r in cohorts {
            let name = match r[0].i() {
                Some(1) => "median band (p40–p60)",
                Some(2) => "p90–p99",
                _ => "tail (≥ p99)",
            };
            let mean_by_cause_ns = CAUSE_COLUMNS
                .iter()
                .enumerate()
                .filter_map(|(k, c)| Some((Cause::parse(c)?, r[2 + k].f().unwrap_or(0.0))))
                .collect();
            o.cohorts.push(Cohort {
                name: name.to_owned(),
                traces: r[1].i().unwrap_or(0) as u64,
                mean_by_cause_ns,
            });
        }
        let durations: Vec<f64> = rows(
            s,
            "SELECT duration_ns FROM trace_analysis ORDER BY duration_ns",
        )?
        .iter()
        .filter_map(|r| r[0].f())
        .collect();
        let (hist, cdf) = distribution(&durations);
        o.histogram = hist;
        o.cdf = cdf;
        o.slowest_trace = rows(
            s,
            "SELECT trace_id FROM trace_analysis ORDER BY duration_ns DESC, trace_id LIMIT 1",
        )?
        .first()
        .and_then(|r| r[0].s());
        o.findings = rows(s, "SELECT kind, summary, trace_id, span_id, conversation_id, estimated_cost_ns, evidence_level, alternatives FROM findings ORDER BY estimated_cost_ns DESC, trace_id, span_id LIMIT 12")?
            .into_iter()
            .map(|r| FindingVm {
                kind: r[0].s().unwrap_or_default(),
                summary: r[1].s().unwrap_or_default(),
                trace_id: r[2].s().unwrap_or_default(),
                span_id: r[3].s().unwrap_or_default(),
                conversation_id: r[4].s(),
                cost_ns: r[5].i().unwrap_or(0),
                evidence_level: r[6].s().and_then(|e| Evidence::parse(&e)),
                alternatives: CauseSet::parse_list(&r[7].s().unwrap_or_default()),
            })
            .collect();
        o.shared = Some(shared(s)?);
        Ok(o)
    }

    /// Materialises the per-trace list the traces table pages over (one temp table,
    /// rebuilt after each analysis), so a page is a filter + sort over traces, not spans.
    fn ensure_trace_list(&mut self) -> Result<()> {
        if self.trace_list_ready {
            return Ok(());
        }
        self.store.execute_batch(
            "CREATE OR REPLACE TEMP TABLE trace_list AS
             WITH agg AS (
                SELECT trace_id, min(coalesce(time_to_first_chunk_ns, ttft_ns)) AS ttft_ns,
                       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                       count(*) AS spans
                FROM spans GROUP BY trace_id)
             SELECT t.trace_id, t.root, t.start_ns, t.duration_ns, a.ttft_ns, a.input_tokens,
                    a.output_tokens, t.primary_cause, t.conversation_id, coalesce(a.spans, 0) AS spans,
                    100 * percent_rank() OVER (ORDER BY t.duration_ns) AS pct, t.cause_evidence
             FROM trace_analysis t LEFT JOIN agg a USING (trace_id)",
        )?;
        self.trace_list_ready = true;
        Ok(())
    }

    fn traces(&mut self, q: TraceQuery) -> Result<TracePage> {
        self.ensure_trace_list()?;
        let mut preds = Vec::new();
        if !q.text.is_empty() {
            let t = lit(&format!("%{}%", q.text));
            preds.push(format!(
                "(trace_id ILIKE {t} OR root ILIKE {t} OR primary_cause ILIKE {t} OR conversation_id ILIKE {t})"
            ));
        }
        if !q.where_sql.is_empty() {
            preds.push(format!("({})", q.where_sql));
        }
        if let Some((k, v)) = &q.has_value {
            preds.push(tailscope_analysis::compare::has_value_sql(k, v));
        }
        let filter = if preds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", preds.join(" AND "))
        };
        let count_sql = format!("SELECT count(*) FROM trace_list {filter}");
        check_read_only(&count_sql).context("the SQL WHERE filter")?;
        let total = rows(&self.store, &count_sql)
            .context("the SQL WHERE filter")?
            .first()
            .and_then(|r| r[0].i())
            .unwrap_or(0) as usize;
        let dir = if q.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT trace_id, root, start_ns, duration_ns, ttft_ns, input_tokens, output_tokens, primary_cause,
                    conversation_id, spans, pct, cause_evidence
             FROM trace_list {filter} ORDER BY {} {dir} NULLS LAST, trace_id LIMIT {} OFFSET {}",
            q.sort.sql(),
            q.limit,
            q.offset
        );
        let rows = rows(&self.store, &sql)?
            .into_iter()
            .map(|r| TraceRowVm {
                trace_id: r[0].s().unwrap_or_default(),
                root: r[1].s().unwrap_or_default(),
                start_ns: r[2].i().unwrap_or(0),
                duration_ns: r[3].i().unwrap_or(0),
                ttft_ns: r[4].i(),
                input_tokens: r[5].i(),
                output_tokens: r[6].i(),
                primary_cause: r[7].s().and_then(|c| Cause::parse(&c)),
                primary_evidence: r[7]
                    .s()
                    .and_then(|c| Cause::parse(&c))
                    .and_then(|c| cause_evidence(&r[11].s()?, c))
                    .map(|(e, _)| e),
                conversation_id: r[8].s(),
                spans: r[9].i().unwrap_or(0),
                percentile: r[10].f().unwrap_or(0.0),
            })
            .collect();
        Ok(TracePage {
            query: q,
            total,
            rows,
        })
    }

    fn trace(&mut self, trace_id: &str) -> Result<TraceDetail> {
        let id = hex_id(trace_id, 32)?;
        let s = &self.store;
        let spans = s.load_spans(Some(format!("trace_id = '{id}'").as_str()))?;
        if spans.is_empty() {
            bail!("trace {id} is not in the store");
        }
        let mut attrs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for r in rows(
            s,
            &format!("SELECT span_id, attributes FROM spans WHERE trace_id = '{id}'"),
        )? {
            let (Some(span), Some(json)) = (r[0].s(), r[1].s()) else {
                continue;
            };
            if let Ok(serde_json::Value::Object(m)) =
                serde_json::from_str::<serde_json::Value>(&json)
            {
                let mut v: Vec<(String, String)> = m
                    .into_iter()
                    .map(|(k, v)| {
                        let text = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, text)
                    })
                    .collect();
                v.sort();
                attrs.insert(span, v);
            }
        }
        let mut stats: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for r in rows(
            s,
            &format!(
                "SELECT span_id, self_ns, critical_ns FROM span_analysis WHERE trace_id = '{id}'"
            ),
        )? {
            if let Some(span) = r[0].s() {
                stats.insert(span, (r[1].i().unwrap_or(0), r[2].i().unwrap_or(0)));
            }
        }
        let sections: Vec<SectionInput> = rows(s, &format!(
            "SELECT span_id, start_ns, end_ns, cause, evidence, alternatives FROM critical_path_sections WHERE trace_id = '{id}' ORDER BY start_ns"
        ))?
        .into_iter()
        .filter_map(|r| {
            Some(SectionInput {
                span_id: r[0].s()?,
                start_ns: r[1].i()?,
                end_ns: r[2].i()?,
                cause: r[3].s().and_then(|c| Cause::parse(&c))?,
                evidence: r[4].s().and_then(|e| Evidence::parse(&e)),
                alternatives: CauseSet::parse_list(&r[5].s().unwrap_or_default()),
            })
        })
        .collect();
        let inputs: Vec<SpanInput> = spans
            .into_iter()
            .map(|sp| {
                let span_id = sp.span_id.to_hex();
                let (self_ns, critical_ns) = stats
                    .get(&span_id)
                    .copied()
                    .unwrap_or((sp.duration_ns(), 0));
                SpanInput {
                    attributes: attrs.remove(&span_id).unwrap_or_default(),
                    parent_span_id: sp.parent_span_id.map(|p| p.to_hex()),
                    name: sp.name,
                    service: sp.service_name,
                    kind: sp.kind.as_str().to_owned(),
                    status: if sp.status_message.is_empty() {
                        sp.status.as_str().to_owned()
                    } else {
                        format!("{}: {}", sp.status.as_str(), sp.status_message)
                    },
                    start_ns: sp.start_ns,
                    end_ns: sp.end_ns,
                    self_ns,
                    critical_ns,
                    class_cause: class_cause(sp.promoted.op_class),
                    events: sp
                        .events
                        .into_iter()
                        .map(|e| EventVm {
                            time_ns: e.time_ns,
                            name: e.name,
                            attributes: e
                                .attributes
                                .into_iter()
                                .map(|a| (a.key, a.value.to_display()))
                                .collect(),
                        })
                        .collect(),
                    links: sp
                        .links
                        .into_iter()
                        .map(|l| (l.trace_id.to_hex(), l.span_id.to_hex()))
                        .collect(),
                    span_id,
                }
            })
            .collect();
        let mut d = TraceDetail::build_with_evidence(id.to_owned(), inputs, &sections);
        if let Some(r) = rows(s, &format!("SELECT conversation_id, primary_cause, root, cause_evidence FROM trace_analysis WHERE trace_id = '{id}'"))?.first() {
            d.conversation_id = r[0].s();
            d.primary_cause = r[1].s().and_then(|c| Cause::parse(&c));
            if let Some((e, alts)) = d.primary_cause.zip(r[3].s()).and_then(|(c, json)| cause_evidence(&json, c)) {
                d.primary_evidence = Some(e);
                d.alternatives = alts;
            }
            if let Some(root) = r[2].s() {
                d.root = root;
            }
        } else {
            d.conversation_id = d
                .spans
                .iter()
                .find_map(|sp| sp.input.attributes.iter().find(|(k, _)| k == "gen_ai.conversation.id").map(|(_, v)| v.clone()));
        }
        Ok(d)
    }

    fn conversations(&self) -> Result<Vec<ConversationSummary>> {
        Ok(rows(&self.store, "SELECT conversation_id, count(*), sum(duration_ns), count(*) FILTER (WHERE kv_eviction_ns > 0)
             FROM trace_analysis WHERE conversation_id IS NOT NULL GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 1000")?
            .into_iter()
            .map(|r| ConversationSummary {
                conversation_id: r[0].s().unwrap_or_default(),
                turns: r[1].i().unwrap_or(0) as u64,
                total_ns: r[2].i().unwrap_or(0),
                evictions: r[3].i().unwrap_or(0) as u64,
            })
            .collect())
    }

    fn conversation(&self, id: &str) -> Result<Conversation> {
        let c = lit(id);
        let turns: Vec<TurnVm> = rows(&self.store, &format!(
            "SELECT t.trace_id, t.start_ns, t.duration_ns, a.ttft_ns, a.input_tokens, a.cache_read_tokens,
                    t.kv_eviction_ns > 0 OR EXISTS (SELECT 1 FROM findings f WHERE f.trace_id = t.trace_id AND f.kind = 'kv_eviction'),
                    t.primary_cause
             FROM trace_analysis t LEFT JOIN (
                SELECT trace_id, min(coalesce(time_to_first_chunk_ns, ttft_ns)) AS ttft_ns,
                       sum(input_tokens) AS input_tokens, sum(cache_read_tokens) AS cache_read_tokens
                FROM spans WHERE conversation_id = {c} AND op_class = 'llm' GROUP BY trace_id) a USING (trace_id)
             WHERE t.conversation_id = {c} ORDER BY t.start_ns"
        ))?
        .into_iter()
        .map(|r| TurnVm {
            trace_id: r[0].s().unwrap_or_default(),
            start_ns: r[1].i().unwrap_or(0),
            duration_ns: r[2].i().unwrap_or(0),
            ttft_ns: r[3].i(),
            input_tokens: r[4].i(),
            cache_read_tokens: r[5].i(),
            evicted: matches!(r[6].s().as_deref(), Some("true")),
            primary_cause: r[7].s().and_then(|c| Cause::parse(&c)),
        })
        .collect();
        if turns.is_empty() {
            bail!("conversation {id} has no analysed traces");
        }
        Ok(Conversation {
            conversation_id: id.to_owned(),
            turns,
        })
    }

    /// Canonical GPU / inference-server series on one grid (the store's alignment API),
    /// around a trace or conversation (shaded band), or over the whole store.
    fn metrics(&self, scope: &MetricsScope) -> Result<MetricsWindow> {
        let opts = AlignOptions::default();
        let (alignment, band) = match scope {
            MetricsScope::Trace(id) => {
                let id = hex_id(id, 32)?;
                let a = self
                    .store
                    .align_trace(id, &opts)?
                    .with_context(|| format!("trace {id} is not in the store"))?;
                let band = (a.from_ns + opts.padding_ns, a.to_ns - opts.padding_ns);
                (a, Some(band))
            }
            MetricsScope::Conversation(id) => {
                let a = self
                    .store
                    .align_conversation(id, &opts)?
                    .with_context(|| format!("conversation {id} has no spans"))?;
                let band = (a.from_ns + opts.padding_ns, a.to_ns - opts.padding_ns);
                (a, Some(band))
            }
            MetricsScope::All => {
                let r = rows(
                    &self.store,
                    "SELECT least(min(m), min(s)), greatest(max(m2), max(s2)) FROM
                     (SELECT min(time_ns) m, max(time_ns) m2 FROM metric_points),
                     (SELECT min(start_ns) s, max(end_ns) s2 FROM spans)",
                )?;
                let first = r.first();
                let from = first.and_then(|r| r[0].i()).unwrap_or(0);
                let to = first.and_then(|r| r[1].i()).unwrap_or(from);
                (self.store.align_window(from, to, &[], &opts)?, None)
            }
        };
        let from_ns = alignment.from_ns;
        let series = alignment
            .series
            .into_iter()
            .map(|s| SeriesVm {
                points: s
                    .points
                    .iter()
                    .map(|&(t, v)| [(t - from_ns) as f64 / 1e9, v])
                    .collect(),
                canonical: s.canonical,
                unit: s.unit,
                origin: s.origin,
                source: s.source,
                service: s.service,
                host: s.host,
                gpu: s.gpu_index.or(s.gpu),
            })
            .collect();
        Ok(MetricsWindow {
            from_ns,
            to_ns: alignment.to_ns,
            band,
            series,
        })
    }

    fn has_replays(&self) -> Result<bool> {
        Ok(rows(
            &self.store,
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('replay_runs', 'replay_turns', 'replay_evictions')",
        )?
        .first()
        .and_then(|r| r[0].i())
            == Some(3))
    }

    /// Saved replays, latest first.
    fn replays(&self) -> Result<Vec<ReplayListItem>> {
        if !self.has_replays()? {
            return Ok(Vec::new());
        }
        Ok(rows(
            &self.store,
            "SELECT replay_id, max(created_ns), any_value(focus) FROM replay_runs
             GROUP BY replay_id ORDER BY 2 DESC, 1 DESC LIMIT 200",
        )?
        .into_iter()
        .map(|r| ReplayListItem {
            replay_id: r[0].s().unwrap_or_default(),
            created_ns: r[1].i().unwrap_or(0),
            focus: r[2].s().unwrap_or_default(),
        })
        .collect())
    }

    /// One replay: per-side summaries (mean over repeats), turns and evictions of the
    /// first repeat.
    fn replay(&self, replay_id: &str) -> Result<ReplayVm> {
        let id: i64 = replay_id
            .trim()
            .parse()
            .with_context(|| format!("`{replay_id}` is not a replay id"))?;
        if !self.has_replays()? {
            bail!("this store has no replays");
        }
        let avgs = REPLAY_METRICS
            .iter()
            .map(|(_, c, _)| format!("avg({c})"))
            .collect::<Vec<_>>()
            .join(", ");
        let runs = rows(
            &self.store,
            &format!(
                "SELECT side, max(created_ns), any_value(focus), any_value(config_json), count(*), {avgs}
                 FROM replay_runs WHERE replay_id = {id} GROUP BY side ORDER BY side"
            ),
        )?;
        if runs.is_empty() {
            bail!("replay {id} is not in the store");
        }
        let mut vm = ReplayVm {
            replay_id: id.to_string(),
            ..ReplayVm::default()
        };
        for r in runs {
            vm.created_ns = r[1].i().unwrap_or(0);
            vm.focus = r[2].s().unwrap_or_default();
            vm.sides.push(ReplaySide {
                side: r[0].s().unwrap_or_default(),
                config_json: r[3].s().unwrap_or_default(),
                repeats: u32::try_from(r[4].i().unwrap_or(0)).unwrap_or(0),
                metrics: REPLAY_METRICS
                    .iter()
                    .enumerate()
                    .map(|(k, (label, _, unit))| {
                        (
                            (*label).to_owned(),
                            r[5 + k].f().unwrap_or(f64::NAN),
                            (*unit).to_owned(),
                        )
                    })
                    .collect(),
            });
        }
        vm.turns = rows(
            &self.store,
            &format!(
                "SELECT side, session_id, turn, arrival_ns, ttft_ns, prefix_hit_tokens, prefill_tokens, input_tokens
                 FROM replay_turns WHERE replay_id = {id}
                   AND repeat = (SELECT min(repeat) FROM replay_turns WHERE replay_id = {id})
                 ORDER BY side, arrival_ns, session_id, turn"
            ),
        )?
        .into_iter()
        .map(|r| ReplayTurnVm {
            side: r[0].s().unwrap_or_default(),
            session_id: r[1].s().unwrap_or_default(),
            turn: r[2].i().unwrap_or(0),
            arrival_ns: r[3].i().unwrap_or(0),
            ttft_ns: r[4].i().unwrap_or(0),
            prefix_hit_tokens: r[5].i().unwrap_or(0),
            prefill_tokens: r[6].i().unwrap_or(0),
            input_tokens: r[7].i().unwrap_or(0),
        })
        .collect();
        vm.evictions = rows(
            &self.store,
            &format!(
                "SELECT side, t_ns, coalesce(owner_session, ''), coalesce(owner_turn, -1), by_session, by_turn
                 FROM replay_evictions WHERE replay_id = {id}
                   AND repeat = (SELECT min(repeat) FROM replay_runs WHERE replay_id = {id})
                 ORDER BY side, t_ns LIMIT 100000"
            ),
        )?
        .into_iter()
        .map(|r| ReplayEvictionVm {
            side: r[0].s().unwrap_or_default(),
            t_ns: r[1].i().unwrap_or(0),
            owner_session: r[2].s().unwrap_or_default(),
            owner_turn: r[3].i().unwrap_or(-1),
            by_session: r[4].s().unwrap_or_default(),
            by_turn: r[5].i().unwrap_or(0),
        })
        .collect();
        Ok(vm)
    }

    fn sql(&self, sql: &str) -> Result<SqlResult> {
        const MAX: usize = 10_000;
        let t = Instant::now();
        let batches = self.store.query_read_only(sql)?;
        let elapsed_ms = t.elapsed().as_secs_f64() * 1e3;
        let columns = batches
            .first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_default();
        let opts = FormatOptions::default().with_null("NULL");
        let mut out = Vec::new();
        let mut truncated = false;
        'outer: for b in &batches {
            let fmts = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<Result<Vec<_>, _>>()?;
            for r in 0..b.num_rows() {
                if out.len() >= MAX {
                    truncated = true;
                    break 'outer;
                }
                out.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
            }
        }
        Ok(SqlResult {
            sql: sql.to_owned(),
            columns,
            rows: out,
            truncated,
            elapsed_ms,
        })
    }
}

/// A histogram (linear bins up to p99.9, the rest in the last bin) and a CDF of at
/// most ~500 points, in milliseconds, from sorted durations.
/// Histogram bins `(from_ms, to_ms, count)` and CDF points `[ms, fraction]`.
type Distribution = (Vec<(f64, f64, u64)>, Vec<[f64; 2]>);

pub(crate) fn distribution(sorted_ns: &[f64]) -> Distribution {
    if sorted_ns.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let n = sorted_ns.len();
    let hi_idx = ((n as f64 * 0.999) as usize).min(n - 1);
    let hi = sorted_ns[hi_idx].max(sorted_ns[0] + 1.0) / 1e6;
    let lo = 0.0;
    let bins = 40usize;
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for d in sorted_ns {
        let k = (((d / 1e6) - lo) / w) as usize;
        counts[k.min(bins - 1)] += 1;
    }
    let hist = counts
        .into_iter()
        .enumerate()
        .map(|(k, c)| (lo + k as f64 * w, lo + (k + 1) as f64 * w, c))
        .collect();
    let step = (n / 500).max(1);
    let mut cdf: Vec<[f64; 2]> = (0..n)
        .step_by(step)
        .map(|i| [sorted_ns[i] / 1e6, (i + 1) as f64 / n as f64])
        .collect();
    cdf.push([sorted_ns[n - 1] / 1e6, 1.0]);
    (hist, cdf)
}

/// What the slow traces share: `tailscope compare` at p99 over the stored results.
fn shared(store: &Store) -> Result<SharedValues> {
    use tailscope_analysis::compare::{compare, CompareOptions};
    let c = compare(store, &CompareOptions::default()).context("comparing the tail")?;
    Ok(SharedValues {
        percentile: c.percentile,
        tail_traces: c.tail_traces as u64,
        baseline_traces: c.baseline_traces as u64,
        values: c
            .attributes
            .into_iter()
            .map(|a| SharedValueVm {
                key: a.key,
                value: a.value,
                tail_share: a.tail_share,
                baseline_share: a.baseline_share,
                lift: a.lift,
                tail_traces: a.tail_traces as u64,
                excess_ns: a.excess_ns,
                score: a.score,
                same: a.same_traces,
            })
            .collect(),
    })
}

/// The seed scenario's configurations: the replay form's defaults for A and B.
const SEED_A: &str = include_str!("../../../engine/configs/seed-a.toml");
const SEED_B: &str = include_str!("../../../engine/configs/seed-b.toml");

/// Runs an A/B replay with progress and the cancel flag, and saves it in the store.
fn replay_job(
    store: &Store,
    workload: &tailscope_model::ReplayWorkload,
    (a, b): (
        &tailscope_engine::EngineConfig,
        &tailscope_engine::EngineConfig,
    ),
    opts: &tailscope_engine::ReplayOptions,
    tx: &SyncSender<Response>,
    cancel: &AtomicBool,
    wake: &Wake,
) {
    let turns: usize = workload
        .sessions
        .iter()
        .map(|s| s.turns.len())
        .sum::<usize>()
        .max(1);
    // two untimed warm-up runs, then A and B per repeat
    let runs = 2 * (u64::from(opts.repeats) + 1);
    let mut last: Option<Instant> = None;
    let mut report = |p: tailscope_engine::ReplayProgress| {
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100))
            && p.turns_done < p.turns_total
        {
            return;
        }
        last = Some(Instant::now());
        let run = match p.config {
            "A warm-up" => 0,
            "B warm-up" => 1,
            c => 2 + u64::from(p.repeat) * 2 + u64::from(c == "B"),
        };
        let done = run * turns as u64 + p.turns_done as u64;
        progress(
            tx,
            wake,
            JobProgress {
                job: REPLAY_JOB.into(),
                fraction: Some((done as f64 / (runs * turns as u64) as f64) as f32),
                message: format!("{} run {}/{}", p.config, p.repeat + 1, p.repeats),
                done: false,
            },
        );
    };
    let message = match tailscope_engine::run_ab_until(workload, a, b, opts, &mut report, cancel) {
        Ok(report) => match store.save_replay(&crate::replay_input::rows(&report, workload)) {
            Ok(id) => format!("saved replay {id} of {}", workload.focus),
            Err(e) => format!("the replay ran but could not be saved: {e}"),
        },
        Err(tailscope_engine::EngineError::Cancelled) => "replay cancelled".to_owned(),
        Err(e) => format!("replay failed: {e}"),
    };
    progress(
        tx,
        wake,
        JobProgress {
            job: REPLAY_JOB.into(),
            fraction: Some(1.0),
            message,
            done: true,
        },
    );
}

fn progress(tx: &SyncSender<Response>, wake: &Wake, p: JobProgress) {
    let _ = tx.send(Response::Progress(p));
    wake();
}

/// Imports one OTLP file through the store's one writer (the collector's, when it
/// runs); returns the spans stored.
fn import_one(store: &Store, path: &Path) -> Result<u64> {
    let writer = store.shared_writer(tailscope_store::WriterConfig::default())?;
    let mut acks = Vec::new();
    let read = tailscope_ingest::read_file(path, None, |chunk| {
        if !chunk.batch.is_empty() {
            acks.push(writer.submit_waiting(chunk.batch));
        }
    });
    let mut spans = 0u64;
    for ack in acks {
        let c = ack.recv().context("the store writer stopped")??;
        spans += c.spans as u64;
    }
    drop(writer);
    read?;
    Ok(spans)
}

fn import_job(
    store: &Store,
    files: &[PathBuf],
    tx: &SyncSender<Response>,
    cancel: &AtomicBool,
    wake: &Wake,
    changed: &AtomicBool,
) {
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum::<u64>()
        .max(1);
    let mut done_bytes = 0u64;
    let mut spans = 0u64;
    let mut failed = Vec::new();
    let mut cancelled = false;
    for f in files {
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        progress(
            tx,
            wake,
            JobProgress {
                job: "import".into(),
                fraction: Some(done_bytes as f32 / total as f32),
                message: f
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                done: false,
            },
        );
        match import_one(store, f) {
            Ok(n) => spans += n,
            Err(e) => failed.push(format!("{}: {e:#}", f.display())),
        }
        done_bytes += std::fs::metadata(f).map_or(0, |m| m.len());
    }
    changed.store(true, Ordering::Relaxed);
    let mut message = format!("imported {spans} spans from {} file(s)", files.len());
    if cancelled {
        message = format!("import cancelled after {spans} spans");
    }
    if !failed.is_empty() {
        message = format!("{message}; failed: {}", failed.join("; "));
    }
    progress(
        tx,
        wake,
        JobProgress {
            job: "import".into(),
            fraction: Some(1.0),
            message,
            done: true,
        },
    );
}

fn export_job(
    store: &Store,
    dir: &Path,
    tx: &SyncSender<Response>,
    cancel: &AtomicBool,
    wake: &Wake,
) {
    use tailscope_analysis::export::{export, ExportOptions};
    let mut report = |p: tailscope_analysis::export::ExportProgress| {
        progress(
            tx,
            wake,
            JobProgress {
                job: "export".into(),
                fraction: Some(p.fraction()),
                message: p.label.clone(),
                done: false,
            },
        );
    };
    let r = export(store, dir, &ExportOptions::default(), &mut report, cancel);
    let message = match r {
        Ok(s) => format!("exported {} traces to {}", s.traces, s.dir.display()),
        Err(e) => format!("export to {} failed: {e}", dir.display()),
    };
    progress(
        tx,
        wake,
        JobProgress {
            job: "export".into(),
            fraction: Some(1.0),
            message,
            done: true,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_bins_every_trace() {
        let d: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 1e6).collect();
        let (h, cdf) = distribution(&d);
        assert_eq!(h.iter().map(|b| b.2).sum::<u64>(), 1000);
        assert!((cdf.last().unwrap()[1] - 1.0).abs() < 1e-9);
        assert!(cdf.windows(2).all(|w| w[0][0] <= w[1][0]));
    }

    #[test]
    fn cause_evidence_reads_the_stored_json() {
        let json = r#"{"queue": {"evidence": "ambiguous", "alternatives": ["kv_eviction", "queue"]},
                      "decode": {"evidence": "measured", "alternatives": []}}"#;
        assert_eq!(
            cause_evidence(json, Cause::Queue),
            Some((Evidence::Ambiguous, CauseSet::of(&[Cause::KvEviction])))
        );
        assert_eq!(
            cause_evidence(json, Cause::Decode),
            Some((Evidence::Measured, CauseSet::EMPTY))
        );
        assert_eq!(cause_evidence(json, Cause::Tool), None);
        assert_eq!(cause_evidence("not json", Cause::Queue), None);
    }
}
