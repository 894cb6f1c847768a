//! The single writer: one named thread owns a DuckDB connection, groups queued
//! batches into one transaction, appends them as Arrow record batches and only then
//! acknowledges each batch. The queue is bounded in items, so memory is bounded and a
//! saturated writer answers at once instead of growing.

use crate::columns::Columns;
use crate::StoreError;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use duckdb::Connection;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tailscope_model::Batch;

/// What one acknowledged batch put in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub spans: usize,
    pub metric_points: usize,
    pub logs: usize,
}

/// Called once per submitted batch, after its transaction committed or failed.
pub type Done = Box<dyn FnOnce(Result<Committed, StoreError>) + Send>;

/// The writer's queue is full: try again later (the caller keeps the batch).
#[derive(Debug)]
pub struct Saturated {
    pub batch: Batch,
    /// A hint for `Retry-After`.
    pub retry_after: Duration,
}

/// Limits of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Items (spans, events, metric points, logs) queued but not yet committed.
    pub max_pending_items: usize,
    /// Items grouped into one transaction at most.
    pub max_group_items: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_pending_items: 262_144,
            max_group_items: 65_536,
        }
    }
}

/// Counters, readable from any thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub committed_spans: AtomicU64,
    pub committed_metric_points: AtomicU64,
    pub committed_logs: AtomicU64,
    pub transactions: AtomicU64,
    pub failed_batches: AtomicU64,
    pub saturated: AtomicU64,
}

struct Job {
    batch: Batch,
    weight: usize,
    done: Done,
}

/// Handle to the writer thread. Dropping it drains the queue and joins the thread.
pub struct Writer {
    tx: Option<Sender<Job>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
    cfg: WriterConfig,
    thread: Option<JoinHandle<()>>,
}

/// Queue idle this long: checkpoint.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(2);

fn weight(b: &Batch) -> usize {
    let events: usize = b.spans.iter().map(|s| s.events.len()).sum();
    (b.spans.len() + events + b.metrics.len() + b.logs.len()).max(1)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The last `ingested_ns` stamp given out in this process. Held from stamping until
/// COMMIT, so stamps rise in commit order across every writer of the process, never
/// repeat, and never go back with the wall clock: an analysis that has seen the
/// stamp `w` has seen every row stamped `<= w` (its incremental watermark).
static COMMIT_STAMP: std::sync::Mutex<i64> = std::sync::Mutex::new(0);

/// Runs `commit` with the next stamp while holding the process-wide commit order.
pub(crate) fn stamped<T>(commit: impl FnOnce(i64) -> T) -> T {
    let mut last = COMMIT_STAMP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let stamp = now_ns().max(*last + 1);
    *last = stamp;
    commit(stamp)
}

impl Writer {
    pub(crate) fn spawn(conn: Connection, cfg: WriterConfig) -> Result<Self, StoreError> {
        let known: HashSet<i64> = {
            let mut stmt = conn.prepare("SELECT resource_id FROM resources")?;
            let ids = stmt.query_map([], |r| r.get::<_, i64>(0))?;
            ids.collect::<Result<_, _>>()?
        };
        let (tx, rx) = bounded::<Job>(4096);
        let pending = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(WriterStats::default());
        let mut worker = Worker {
            conn,
            rx,
            known,
            pending: Arc::clone(&pending),
            stats: Arc::clone(&stats),
            cfg,
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || worker.run())
            .map_err(StoreError::Thread)?;
        Ok(Self {
            tx: Some(tx),
            pending,
            stats,
            cfg,
            thread: Some(thread),
        })
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
    pub fn try_submit(&self, batch: Batch, done: Done) -> Result<(), Saturated> {
        let w = weight(&batch);
        let prev = self.pending.fetch_add(w, Ordering::AcqRel);
        if prev > 0 && prev + w > self.cfg.max_pending_items {
            self.pending.fetch_sub(w, Ordering::AcqRel);
            self.stats.saturated.fetch_add(1, Ordering::Relaxed);
            return Err(Saturated {
                batch,
                retry_after: Duration::from_secs(1),
            });
        }
        let Some(tx) = &self.tx else {
            self.pending.fetch_sub(w, Ordering::AcqRel);
            return Err(Saturated {
                batch,
                retry_after: Duration::from_secs(1),
            });
        };
        match tx.try_send(Job {
            batch,
            weight: w,
            done,
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.pending.fetch_sub(w, Ordering::AcqRel);
                self.stats.saturated.fetch_add(1, Ordering::Relaxed);
                Err(Saturated {
                    batch: job.batch,
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }

    /// Queues a batch, waiting for room, and returns a receiver that yields the
    /// commit result. Used by file import, which has no client to push back on.
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
            match self.try_submit(batch, done) {
                Ok(()) => return rx,
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
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Drains the queue, commits what is left and stops the thread.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| StoreError::WriterGone)?;
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

struct Worker {
    conn: Connection,
    rx: Receiver<Job>,
    known: HashSet<i64>,
    pending: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
    cfg: WriterConfig,
}

impl Worker {
    fn run(&mut self) {
        let mut dirty = false;
        loop {
            let first = match self.rx.recv_timeout(IDLE_CHECKPOINT) {
                Ok(job) => job,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if dirty {
                        // Idle: fold the WAL into the file now rather than in a commit
                        // that a client is waiting on (see `Store::open`).
                        if let Err(e) = self.conn.execute_batch("CHECKPOINT") {
                            tracing::warn!("idle checkpoint failed: {e}");
                        }
                        dirty = false;
                    }
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            dirty = true;
            let mut items = first.weight;
            let mut group = vec![first];
            while items < self.cfg.max_group_items {
                match self.rx.try_recv() {
                    Ok(job) => {
                        items += job.weight;
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Job>) {
        let batches: Vec<&Batch> = group.iter().map(|j| &j.batch).collect();
        match self.commit(&batches) {
            Ok(()) => self.finish(group, None),
            Err(e) if group.len() == 1 => self.finish(group, Some(&e)),
            Err(_) => {
                // Isolate the batch at fault: commit the rest one by one.
                for job in group {
                    match self.commit(&[&job.batch]) {
                        Ok(()) => self.finish(vec![job], None),
                        Err(e) => self.finish(vec![job], Some(&e)),
                    }
                }
            }
        }
    }

    fn finish(&mut self, group: Vec<Job>, err: Option<&StoreError>) {
        for job in group {
            self.pending.fetch_sub(job.weight, Ordering::AcqRel);
            let result = match err {
                None => {
                    let c = Committed {
                        spans: job.batch.spans.len(),
                        metric_points: job.batch.metrics.len(),
                        logs: job.batch.logs.len(),
                    };
                    self.stats
                        .committed_spans
                        .fetch_add(c.spans as u64, Ordering::Relaxed);
                    self.stats
                        .committed_metric_points
                        .fetch_add(c.metric_points as u64, Ordering::Relaxed);
                    self.stats
                        .committed_logs
                        .fetch_add(c.logs as u64, Ordering::Relaxed);
                    Ok(c)
                }
                Some(e) => {
                    self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                    Err(StoreError::WriteFailed(e.to_string()))
                }
            };
            (job.done)(result);
        }
    }

    fn commit(&mut self, batches: &[&Batch]) -> Result<(), StoreError> {
        let mut fresh = Vec::new();
        let result = stamped(|ingested| {
            let mut cols = Columns::new();
            for b in batches {
                cols.add(b, ingested, |id| {
                    if self.known.insert(id) {
                        fresh.push(id);
                        true
                    } else {
                        false
                    }
                });
            }
            append_all(&self.conn, &mut cols)
        });
        if result.is_err() {
            for id in fresh {
                self.known.remove(&id);
            }
        } else {
            self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// Appends every non-empty table of `cols` in one transaction.
pub(crate) fn append_all(conn: &Connection, cols: &mut Columns) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let appended = (|| -> Result<(), StoreError> {
        for t in &mut cols.tables {
            if t.rows() == 0 {
                continue;
            }
            let rb = t.finish()?;
            let mut app = conn.appender(t.table)?;
            app.append_record_batch(rb)?;
            app.flush()?;
        }
        Ok(())
    })();
    match appended {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            // Report the append error; a failing rollback adds nothing to it.
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
