//! The GUI's worker thread: owns every store access of the window and the long jobs.
//! It answers the UI's [`Request`]s with view-model [`Response`]s over a bounded
//! channel (the reads in [`super::query`]), wakes the UI after each, polls the store
//! for live data, and starts import, export and replay on a job thread
//! ([`super::jobs`]). The analysis never runs here: the worker asks its
//! [`super::analysis`] thread for runs and answers from the stored results meanwhile.

use super::analysis::{Analysis, Hook, Trigger};
use super::jobs::{self, spawn_job, Job};
use super::query;
pub use super::wake::Wake;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailscope_ingest::IngestStats;
use tailscope_store::Store;
use tailscope_ui::protocol::{CollectorStatus, ReplayRequest};
use tailscope_ui::{Request, Response, WorkerLink, REPLAY_JOB};

/// The worker's state: the store, and what the collector reports.
pub struct Worker {
    store: Store,
    label: String,
    link: WorkerLink,
    wake: Wake,
    stats: Option<(Arc<IngestStats>, String, String, Option<String>)>,
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
            if let Err(e) = self.store.results_changed() {
                tracing::warn!("refreshing the trace list: {e}");
            }
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
        query::span_count(&self.store)
    }

    fn overview(&self) -> Result<tailscope_ui::Overview> {
        query::overview(&self.store, &self.label)
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
            Request::Traces(q) => Response::Traces(query::traces(&self.store, q)?),
            Request::Trace { trace_id } => {
                Response::Trace(Box::new(query::trace(&self.store, &trace_id)?))
            }
            Request::Conversations => Response::Conversations(query::conversations(&self.store)?),
            Request::Conversation { conversation_id } => {
                Response::Conversation(query::conversation(&self.store, &conversation_id)?)
            }
            Request::Metrics { scope } => Response::Metrics(query::metrics(&self.store, &scope)?),
            Request::Replays => Response::Replays(query::replays(&self.store)?),
            Request::Replay { replay_id } => {
                Response::Replay(Box::new(query::replay(&self.store, &replay_id)?))
            }
            Request::Sql { sql } => Response::Sql(query::sql(&self.store, &sql)?),
            Request::Diff { periods } => {
                Response::Diff(Box::new(query::diff(&self.store, periods)?))
            }
            Request::FixFirst => Response::FixFirst(query::fix_first(&self.store)?),
            Request::SpanWhatif {
                trace_id,
                span_id,
                change,
            } => Response::SpanWhatif(query::span_whatif(
                &self.store,
                &trace_id,
                &span_id,
                change,
            )?),
            Request::ReplayDefaults => Response::ReplayDefaults {
                a: jobs::SEED_A.to_owned(),
                b: jobs::SEED_B.to_owned(),
            },
            Request::RunReplay(r) => self.start_replay(&r)?,
            Request::AsRecorded {
                conversation_id,
                token_scale,
                max_output_tokens,
            } => self.as_recorded(&conversation_id, token_scale, max_output_tokens)?,
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

    /// Starts `work` as the job `name` (one job at a time).
    fn spawn(
        &mut self,
        name: &str,
        message: String,
        work: impl FnOnce(&Job) + Send + 'static,
    ) -> Result<Response> {
        self.job_busy()?;
        let job = Job {
            name: name.to_owned(),
            tx: self.link.responses.clone(),
            wake: Arc::clone(&self.wake),
            cancel: Arc::clone(&self.link.cancel),
        };
        let (handle, first) = spawn_job(job, message, work)?;
        self.job = Some(handle);
        Ok(first)
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
        let changed = Arc::clone(&self.job_changed);
        self.spawn("import", "starting".into(), move |job| {
            jobs::import_job(&store, &files, job, &changed);
        })
    }

    fn start_export(&mut self, dir: PathBuf) -> Result<Response> {
        self.job_busy()?;
        let store = self.store.reader()?;
        self.spawn("export", "starting".into(), move |job| {
            jobs::export_job(&store, &dir, job);
        })
    }

    /// Starts an A/B replay of a stored conversation on the job thread: the workload is
    /// read here (a bad conversation or configuration is refused at once), the engine
    /// runs there with progress and the cancel flag, and the result is saved as the
    /// CLI saves it.
    /// The replay form's "A = as recorded": [`crate::as_recorded::derive`] over the
    /// conversation at the snapped token scale, as `tailscope replay --as-recorded` does.
    fn as_recorded(
        &self,
        conv: &str,
        token_scale: f64,
        max_output_tokens: u32,
    ) -> Result<Response> {
        use crate::as_recorded::{derive, snapped_scale};
        use crate::replay_input::{workload, InputOptions};
        let conv = conv.trim();
        if conv.is_empty() {
            bail!("pick a conversation to size A for");
        }
        let scale = snapped_scale(token_scale.clamp(0.001, 1.0));
        let input = InputOptions {
            token_scale: scale,
            max_background: 8,
            max_prompt_tokens: 4096,
        };
        let w = workload(&self.store, conv, &input)
            .with_context(|| format!("reading conversation {conv} for replay"))?;
        let focus = self.store.llm_calls(Some(conv), None)?;
        let base =
            tailscope_engine::EngineConfig::from_toml_str_named(jobs::SEED_A, "seed-a.toml")?;
        let d = derive(&w, &focus, scale, max_output_tokens, &base)?;
        Ok(Response::AsRecorded {
            conversation_id: conv.to_owned(),
            a: d.toml(),
            b: format!(
                "# B: the as-recorded A with twice the cache.\n\n{}",
                d.bigger_cache(2).to_toml()
            ),
            token_scale: scale,
            notes: d.notes,
        })
    }

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
        self.spawn(REPLAY_JOB, format!("loading {conv}"), move |job| {
            jobs::replay_job(&store, &workload, (&a, &b), &opts, job);
        })
    }
}
