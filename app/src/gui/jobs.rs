//! The worker's long jobs (import, export, replay): each on a job thread started by
//! [`spawn_job`], reporting [`JobProgress`] over the response channel and stopping at
//! the cancel flag.

use super::wake::Wake;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tailscope_store::Store;
use tailscope_ui::protocol::JobProgress;
use tailscope_ui::Response;

/// A running job's way back to the UI: its name, the response channel, the wake-up
/// and the cancel flag.
pub(crate) struct Job {
    pub name: String,
    pub tx: SyncSender<Response>,
    pub wake: Wake,
    pub cancel: Arc<AtomicBool>,
}

impl Job {
    fn send(&self, fraction: Option<f32>, message: String, done: bool) {
        let _ = self.tx.send(Response::Progress(JobProgress {
            job: self.name.clone(),
            fraction,
            message,
            done,
        }));
        (self.wake)();
    }

    /// Reports progress.
    pub fn progress(&self, fraction: Option<f32>, message: String) {
        self.send(fraction, message, false);
    }

    /// Reports the end, with what came of it.
    pub fn done(&self, message: String) {
        self.send(Some(1.0), message, true);
    }
}

/// Starts `work` on a job thread named after the job; the first progress report
/// (`message`, nothing done yet) is the answer to the request that started it.
pub(crate) fn spawn_job(
    job: Job,
    message: String,
    work: impl FnOnce(&Job) + Send + 'static,
) -> Result<(JoinHandle<()>, Response)> {
    let first = Response::Progress(JobProgress {
        job: job.name.clone(),
        fraction: Some(0.0),
        message,
        done: false,
    });
    let name = job.name.clone();
    let handle = std::thread::Builder::new()
        .name(format!("tailscope-{name}"))
        .spawn(move || work(&job))
        .with_context(|| format!("starting the {name} thread"))?;
    Ok((handle, first))
}

/// The seed scenario's configurations: the replay form's defaults for A and B.
pub(crate) const SEED_A: &str = include_str!("../../../engine/configs/seed-a.toml");
pub(crate) const SEED_B: &str = include_str!("../../../engine/configs/seed-b.toml");

/// Runs an A/B replay with progress and the cancel flag, and saves it in the store.
pub(crate) fn replay_job(
    store: &Store,
    workload: &tailscope_model::ReplayWorkload,
    (a, b): (
        &tailscope_engine::EngineConfig,
        &tailscope_engine::EngineConfig,
    ),
    opts: &tailscope_engine::ReplayOptions,
    job: &Job,
) {
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
        // per run, its own total: a [background] section adds turns to one side only
        let within = p.turns_done as f64 / p.turns_total.max(1) as f64;
        job.progress(
            Some(((run as f64 + within) / runs as f64) as f32),
            format!("{} run {}/{}", p.config, p.repeat + 1, p.repeats),
        );
    };
    let message =
        match tailscope_engine::run_ab_until(workload, a, b, opts, &mut report, &job.cancel) {
            Ok(report) => match store.save_replay(&crate::replay_input::rows(&report, workload)) {
                Ok(id) => format!("saved replay {id} of {}", workload.focus),
                Err(e) => format!("the replay ran but could not be saved: {e}"),
            },
            Err(tailscope_engine::EngineError::Cancelled) => "replay cancelled".to_owned(),
            Err(e) => format!("replay failed: {e}"),
        };
    job.done(message);
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

/// Imports `files` one after another (progress by bytes); marks `changed` at the end.
pub(crate) fn import_job(store: &Store, files: &[PathBuf], job: &Job, changed: &AtomicBool) {
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
        if job.cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        job.progress(
            Some(done_bytes as f32 / total as f32),
            f.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
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
    job.done(message);
}

/// Exports the store's analysis to `dir` (Parquet and the notebook).
pub(crate) fn export_job(store: &Store, dir: &Path, job: &Job) {
    use tailscope_analysis::export::{export, ExportOptions};
    let mut report = |p: tailscope_analysis::export::ExportProgress| {
        job.progress(Some(p.fraction()), p.label.clone());
    };
    let r = export(
        store,
        dir,
        &ExportOptions::default(),
        &mut report,
        &job.cancel,
    );
    let message = match r {
        Ok(s) => format!("exported {} traces to {}", s.traces, s.dir.display()),
        Err(e) => format!("export to {} failed: {e}", dir.display()),
    };
    job.done(message);
}
