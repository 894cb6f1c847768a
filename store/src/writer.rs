//! The single writer: one named thread owns a DuckDB connection, groups queued
//! batches into one transaction, appends them as Arrow record batches and only then
//! acknowledges each batch. The queue is bounded in items, so memory is bounded and a
//! saturated writer answers at once instead of growing.

use crate::append::{weight, Ack, Committed, Done, Job, Worker, WriterConfig, WriterStats};
use crate::StoreError;
use crossbeam_channel::{bounded, Sender, TrySendError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tailscope_model::Batch;

/// The writer's queue is full: try again later (the caller keeps the batch).
#[derive(Debug)]
pub struct Saturated {
    pub batch: Batch,
    /// A hint for `Retry-After`.
    pub retry_after: Duration,
    /// The writer has stopped, for this reason: retrying will not help.
    pub stopped: Option<Box<str>>,
}

/// Handle to the writer thread. Dropping it drains the queue and joins the thread.
pub struct Writer {
    tx: Option<Sender<Job>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
    cfg: WriterConfig,
    /// The log thread (with an ingest log) and the thread that commits to the tables,
    /// in the order they are joined.
    threads: Vec<JoinHandle<()>>,
    /// The ingest log's progress, with an ingest log.
    log: Option<Arc<crate::loader::LogShared>>,
    /// Why the writer thread stopped, once it has stopped on its own.
    stopped: Arc<Mutex<Option<String>>>,
    /// Held while this writer lives: the store's one-writer guard.
    _guard: Option<crate::WriterGuard>,
}

impl Writer {
    pub(crate) fn spawn(
        conn: duckdb::Connection,
        cfg: WriterConfig,
        guard: Option<crate::WriterGuard>,
        log_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = bounded::<Job>(4096);
        let pending = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(WriterStats::default());
        let stopped: Arc<Mutex<Option<String>>> = Arc::default();
        let mut worker = Worker::new(conn, rx, Arc::clone(&pending), Arc::clone(&stats), cfg)?;
        let mut threads = Vec::new();
        let log = match log_dir {
            None => {
                threads.push(guarded("store-writer", &stopped, move || {
                    worker.seed_window();
                    worker.run();
                })?);
                None
            }
            Some(dir) => {
                let (log, mut logger, mut loader) =
                    crate::loader::start(&dir, worker, Arc::clone(&stopped))?;
                threads.push(guarded("store-log", &stopped, move || logger.run())?);
                threads.push(guarded("store-writer", &stopped, move || {
                    loader.run();
                })?);
                Some(log)
            }
        };
        Ok(Self {
            tx: Some(tx),
            pending,
            stats,
            cfg,
            threads,
            log,
            stopped,
            _guard: guard,
        })
    }

    /// Why the writer thread stopped, if it stopped on its own (a panic); `None` while
    /// it runs.
    pub fn stopped(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Items queued and not yet committed.
    pub fn pending_items(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Queues a batch without blocking; `done` runs on the writer thread after commit.
    /// A batch larger than the whole queue is still accepted when the queue is empty,
    /// so no single request can be refused forever.
    #[allow(clippy::result_large_err)] // the refused batch goes back to the caller, by value
    pub fn try_submit(&self, batch: Batch, done: Done) -> Result<(), Saturated> {
        self.submit(batch, done, Ack::Durable)
    }

    /// Waits until every batch acknowledged so far is loaded into the tables (a read
    /// after this sees them), at most `timeout`; false if it timed out or the writer
    /// stopped. At once where there is no ingest log (acknowledged means committed).
    pub fn wait_loaded(&self, timeout: Duration) -> bool {
        self.log.as_ref().is_none_or(|l| l.wait_loaded(timeout))
    }

    /// The ingest log's backlog: frames and bytes acknowledged but not yet loaded into
    /// the tables (`None` without an ingest log).
    pub fn log_backlog(&self) -> Option<(u64, u64)> {
        self.log.as_ref().map(|l| l.backlog())
    }

    #[allow(clippy::result_large_err)] // the refused batch goes back to the caller, by value
    fn submit(&self, batch: Batch, done: Done, ack: Ack) -> Result<(), Saturated> {
        let refuse = |batch: Batch| {
            let stopped = self
                .stopped()
                .or_else(|| {
                    self.tx
                        .is_none()
                        .then(|| "the store writer is closed".to_owned())
                })
                .map(String::into_boxed_str);
            if stopped.is_none() {
                self.stats.saturated.fetch_add(1, Ordering::Relaxed);
            }
            Saturated {
                batch,
                retry_after: Duration::from_secs(1),
                stopped,
            }
        };
        // A writer that died refuses at once, even while its thread is still
        // unwinding and the queue still takes jobs that nobody would answer.
        if self.stopped().is_some() {
            return Err(refuse(batch));
        }
        if let Some(log) = &self.log {
            if log.backlog().1 > self.cfg.max_log_backlog_bytes {
                return Err(refuse(batch));
            }
        }
        let w = weight(&batch);
        let prev = self.pending.fetch_add(w, Ordering::AcqRel);
        if prev > 0 && prev + w > self.cfg.max_pending_items {
            self.pending.fetch_sub(w, Ordering::AcqRel);
            return Err(refuse(batch));
        }
        let Some(tx) = &self.tx else {
            self.pending.fetch_sub(w, Ordering::AcqRel);
            return Err(refuse(batch));
        };
        let counts = Committed {
            spans: batch.spans.len(),
            metric_points: batch.metrics.len(),
            logs: batch.logs.len(),
            ..Committed::default()
        };
        // With an ingest log, the frame is encoded here, on the caller's thread (the
        // receivers decode on one thread per core), so the log thread only writes;
        // the batch is then dropped here too. It is kept until the queue took the job,
        // to hand it back if it did not.
        let encoded = self
            .log
            .as_ref()
            .and_then(|_| crate::ingestlog::encode(&batch).ok());
        let (job_batch, kept) = if encoded.is_some() {
            (Batch::default(), Some(batch))
        } else {
            (batch, None)
        };
        let sent = tx.try_send(Job {
            batch: job_batch,
            encoded,
            counts,
            weight: w,
            done,
            ack,
        });
        let back = |job: Job, kept: Option<Batch>| kept.unwrap_or(job.batch);
        match sent {
            Ok(()) => {
                drop(kept);
                Ok(())
            }
            Err(TrySendError::Full(job)) => {
                self.pending.fetch_sub(w, Ordering::AcqRel);
                Err(refuse(back(job, kept)))
            }
            Err(TrySendError::Disconnected(job)) => {
                self.pending.fetch_sub(w, Ordering::AcqRel);
                let mut s = refuse(back(job, kept));
                s.stopped
                    .get_or_insert_with(|| "the store writer stopped".into());
                Err(s)
            }
        }
    }

    /// Queues a batch, waiting for room, and returns a receiver that yields the
    /// commit result. Used by file import, which has no client to push back on.
    /// A writer that has stopped answers at once with [`StoreError::WriterStopped`].
    pub fn submit_waiting(
        &self,
        mut batch: Batch,
    ) -> crossbeam_channel::Receiver<Result<Committed, StoreError>> {
        let (tx, rx) = bounded(1);
        let mut backoff = Duration::from_millis(1);
        loop {
            let tx = tx.clone();
            let done: Done = Box::new(move |r| {
                // The receiver may have been dropped by a caller that stopped waiting.
                let _ = tx.send(r);
            });
            match self.submit(batch, done, Ack::Loaded) {
                Ok(()) => return rx,
                Err(Saturated {
                    stopped: Some(why), ..
                }) => {
                    let (tx, rx) = bounded(1);
                    let _ = tx.send(Err(StoreError::WriterStopped(why.into())));
                    return rx;
                }
                Err(s) => {
                    batch = s.batch;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Queues a batch and waits until it is committed.
    pub fn write(&self, batch: Batch) -> Result<Committed, StoreError> {
        self.submit_waiting(batch)
            .recv()
            .map_err(|_| match self.stopped() {
                Some(why) => StoreError::WriterStopped(why),
                None => StoreError::WriterGone,
            })?
    }

    /// Drains the queue, commits what is left and stops the thread.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        self.tx = None;
        let mut gone = false;
        for t in self.threads.drain(..) {
            gone |= t.join().is_err();
        }
        if gone {
            return Err(StoreError::WriterGone);
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Errors were already reported to each batch's `done`.
        let _ = self.shutdown();
    }
}

/// Spawns a named writer thread; a panic in it is recorded in `stopped` (so clients
/// are answered with why, not an endless "busy") instead of vanishing.
fn guarded(
    name: &str,
    stopped: &Arc<Mutex<Option<String>>>,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, StoreError> {
    let why = Arc::clone(stopped);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
                let text = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".to_owned());
                tracing::error!("the store writer stopped: it panicked ({text})");
                why.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_or_insert(format!("the store writer stopped: it panicked ({text})"));
            }
        })
        .map_err(StoreError::Thread)
}
