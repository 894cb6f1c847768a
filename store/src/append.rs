//! What the writer's threads share: a submitted batch as a [`Job`] and its
//! acknowledgement, the writer's limits and counters, commit stamps, and the
//! [`Worker`] that appends jobs to DuckDB as Arrow batches with the exactly-once
//! windows (the writer thread's loop, and the loader's for a store with an ingest log).

use crate::columns::{Columns, Keep};
use crate::dedupe::{self, Window};
use crate::StoreError;
use crossbeam_channel::Receiver;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tailscope_model::Batch;
/// What one acknowledged batch put in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Spans stored (those of the batch less `duplicate_spans`).
    pub spans: usize,
    /// Metric points stored (less `duplicate_metric_points`).
    pub metric_points: usize,
    /// Log records stored (less `duplicate_logs`).
    pub logs: usize,
    /// Spans of the batch not stored because the store already had them (same
    /// trace and span id, within the writer's de-duplication window).
    pub duplicate_spans: usize,
    /// Metric points not stored because the store already had them (the same
    /// content in the same resource, within the window).
    pub duplicate_metric_points: usize,
    /// Log records not stored because the store already had them (likewise).
    pub duplicate_logs: usize,
}

/// Called once per submitted batch: after its transaction committed or failed, or,
/// for [`Writer::try_submit`] on a store with an ingest log, once it is on disk in
/// the log (then the `duplicate_*` counts are 0: duplicates are dropped when it is
/// loaded).
pub type Done = Box<dyn FnOnce(Result<Committed, StoreError>) + Send>;

/// Limits of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Items (spans, events, metric points, logs) queued but not yet committed.
    pub max_pending_items: usize,
    /// Items grouped into one transaction at most.
    pub max_group_items: usize,
    /// Items remembered for exactly-once, per signal: a span whose trace and span id
    /// are among the last this many spans stored is not stored again, nor a metric
    /// point or log record whose content is among the last this many points or
    /// records (`dedupe.rs`; 0: no de-duplication).
    pub dedupe_window: usize,
    /// Acknowledge [`Writer::try_submit`] batches once they are fsync'ed to the
    /// store's ingest log (`<store>.ingest/`) and load them into the tables behind
    /// (file stores only). Off: acknowledge after the tables' COMMIT.
    pub ingest_log: bool,
    /// Log bytes not yet loaded into the tables beyond which submissions are refused
    /// as saturated (the loader is behind).
    pub max_log_backlog_bytes: u64,
}

/// The default de-duplication window: 2,097,152 items per signal (about 34 MiB each,
/// once full).
pub const DEFAULT_DEDUPE_WINDOW: usize = 1 << 21;

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_pending_items: 262_144,
            max_group_items: 65_536,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            ingest_log: true,
            max_log_backlog_bytes: 4 << 30,
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
    /// Spans, metric points and log records received again and not stored
    /// (exactly-once).
    pub duplicate_spans: AtomicU64,
    pub duplicate_metric_points: AtomicU64,
    pub duplicate_logs: AtomicU64,
    /// Spans acknowledged once on disk in the ingest log (loaded later).
    pub logged_spans: AtomicU64,
    /// Bytes appended to the ingest log.
    pub logged_bytes: AtomicU64,
    /// Time the log thread spent encoding, writing and syncing (ns).
    pub log_encode_ns: AtomicU64,
    pub log_write_ns: AtomicU64,
    pub log_sync_ns: AtomicU64,
    /// Time the loader spent committing to the tables (ns).
    pub load_ns: AtomicU64,
    /// The loader thread's CPU time (ns) reading and decoding log frames, building Arrow columns,
    /// appending them to DuckDB, and committing (DuckDB's own worker threads aside).
    pub load_decode_cpu_ns: AtomicU64,
    pub load_build_cpu_ns: AtomicU64,
    pub load_append_cpu_ns: AtomicU64,
    pub load_commit_cpu_ns: AtomicU64,
}

/// This thread's CPU time (ns): where a thread's time goes, without a profiler.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: clock_gettime writes one timespec that we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut t) };
    if r != 0 {
        return 0;
    }
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// Adds the CPU time since `since` to `to`; returns now.
pub(crate) fn add_cpu(to: &AtomicU64, since: u64) -> u64 {
    let now = thread_cpu_ns();
    to.fetch_add(now.saturating_sub(since), Ordering::Relaxed);
    now
}

/// When a job's `done` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// Once durable: in the ingest log, or committed where there is no log.
    Durable,
    /// Once committed to the tables (and visible to queries).
    Loaded,
}

pub(crate) struct Job {
    /// The batch (empty when `encoded` holds it).
    pub(crate) batch: Batch,
    /// The batch as an ingest-log frame payload, encoded by the submitter.
    pub(crate) encoded: Option<Vec<u8>>,
    /// What the batch holds (no duplicates).
    pub(crate) counts: Committed,
    pub(crate) weight: usize,
    pub(crate) done: Done,
    pub(crate) ack: Ack,
}

/// Queue idle this long: checkpoint.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(2);

pub(crate) fn weight(b: &Batch) -> usize {
    let events: usize = b.spans.iter().map(|s| s.events.len()).sum();
    (b.spans.len() + events + b.metrics.len() + b.logs.len()).max(1)
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The last `ingested_ns` stamp given out in this process: stamps never repeat and
/// never go back with the wall clock. A store has one writer, which appends and
/// commits in order (its open transaction's rows are stamped after every committed
/// row and before any later append), so stamps rise in commit order within a store:
/// an analysis that has seen the stamp `w` has seen every row stamped `<= w` (its
/// incremental watermark).
static COMMIT_STAMP: std::sync::Mutex<i64> = std::sync::Mutex::new(0);

/// Runs `commit` (an append) with the next stamp.
pub(crate) fn stamped<T>(commit: impl FnOnce(i64) -> T) -> T {
    let mut last = COMMIT_STAMP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let stamp = now_ns().max(*last + 1);
    *last = stamp;
    commit(stamp)
}

pub(crate) struct Worker {
    pub(crate) conn: Connection,
    pub(crate) rx: Receiver<Job>,
    known: HashSet<i64>,
    /// The exactly-once windows of spans, metric points and log records.
    window: Window,
    point_window: Window,
    log_window: Window,
    pub(crate) pending: Arc<AtomicUsize>,
    pub(crate) stats: Arc<WriterStats>,
    pub(crate) cfg: WriterConfig,
    /// The loader's open transaction, if any.
    open: Option<OpenTxn>,
    /// Rows built for the open transaction and not yet given to DuckDB: small appends
    /// are gathered up to [`APPEND_ROWS`] (or the commit), as DuckDB's appender costs
    /// about twice as much a row when it gets a request's 512 spans at a time.
    gathered: Option<Columns>,
}

/// The rows gathered before they go to DuckDB's appender in one call.
const APPEND_ROWS: usize = 16_384;

impl Worker {
    /// A worker over `conn` that takes jobs from `rx` (the resources already stored
    /// are read here, so each is written once).
    pub(crate) fn new(
        conn: Connection,
        rx: Receiver<Job>,
        pending: Arc<AtomicUsize>,
        stats: Arc<WriterStats>,
        cfg: WriterConfig,
    ) -> Result<Self, StoreError> {
        let known: HashSet<i64> = {
            let mut stmt = conn.prepare("SELECT resource_id FROM resources")?;
            let ids = stmt.query_map([], |r| r.get::<_, i64>(0))?;
            ids.collect::<Result<_, _>>()?
        };
        Ok(Self {
            conn,
            rx,
            known,
            window: Window::new(cfg.dedupe_window),
            point_window: Window::new(cfg.dedupe_window),
            log_window: Window::new(cfg.dedupe_window),
            pending,
            stats,
            cfg,
            open: None,
            gathered: None,
        })
    }

    /// Fills the exactly-once windows with the newest stored spans, metric points and
    /// log records, so a request sent again after a restart (the collector died
    /// between COMMIT and its answer) is still recognised. Rows are appended, never
    /// deleted, so the newest `cap` are the rows from `count - cap` on.
    pub(crate) fn seed_window(&mut self) {
        let cap = self.cfg.dedupe_window;
        if cap == 0 {
            return;
        }
        let seeded = (|| -> Result<(), StoreError> {
            let mut stmt = self.conn.prepare(
                "SELECT trace_id, span_id, ingested_ns FROM spans
                 WHERE rowid >= (SELECT count(*) FROM spans) - ?",
            )?;
            let mut rows: Vec<(i64, u64)> = Vec::new();
            for b in stmt.query_arrow([i64::try_from(cap).unwrap_or(i64::MAX)])? {
                let at = crate::read::Columns::new(&b).i64("ingested_ns")?;
                span_keys(&b, |r, t, sp| {
                    rows.push((at.value(r), dedupe::fingerprint(&t, sp)));
                })?;
            }
            rows.sort_unstable_by_key(|r| r.0);
            for chunk in rows.chunk_by(|a, b| a.0 == b.0) {
                self.window.push(chunk[0].0, chunk.iter().map(|r| r.1));
            }
            Ok(())
        })();
        if let Err(e) = seeded {
            tracing::warn!("exactly-once window not seeded from the store: {e}");
        }
        let conn = &self.conn;
        let seeded = seed_content(conn, "metric_points", dedupe::POINT_COLS, cap, |b, fps| {
            let rows = dedupe::PointRows::new(b)?;
            fps.extend((0..b.num_rows()).filter_map(|r| rows.view(r).fingerprint()));
            Ok(())
        })
        .map(|fps| self.point_window.push(0, fps));
        if let Err(e) = seeded {
            tracing::warn!("exactly-once window of metric points not seeded from the store: {e}");
        }
        let seeded = seed_content(conn, "logs", dedupe::LOG_COLS, cap, |b, fps| {
            let rows = dedupe::LogRows::new(b)?;
            fps.extend(
                (0..b.num_rows()).filter_map(|r| rows.view(r).and_then(|v| v.fingerprint())),
            );
            Ok(())
        })
        .map(|fps| self.log_window.push(0, fps));
        if let Err(e) = seeded {
            tracing::warn!("exactly-once window of log records not seeded from the store: {e}");
        }
    }

    pub(crate) fn run(&mut self) {
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
        match self.commit(&batches, None) {
            Ok(dropped) => self.finish(group, Ok(&dropped)),
            Err(e) if group.len() == 1 => self.finish(group, Err(&e)),
            Err(e) if e.is_disk_full() => self.finish(group, Err(&e)),
            Err(_) => {
                // Isolate the batch at fault: commit the rest one by one.
                for job in group {
                    match self.commit(&[&job.batch], None) {
                        Ok(dropped) => self.finish(vec![job], Ok(&dropped)),
                        Err(e) => self.finish(vec![job], Err(&e)),
                    }
                }
            }
        }
    }

    /// Answers each job of a group: `Ok` with the duplicates dropped per job.
    fn finish(&mut self, group: Vec<Job>, result: Result<&[Dropped], &StoreError>) {
        for (k, job) in group.into_iter().enumerate() {
            self.pending.fetch_sub(job.weight, Ordering::AcqRel);
            let result = match result {
                Ok(dropped) => {
                    let c = dropped
                        .get(k)
                        .copied()
                        .unwrap_or_default()
                        .counts(&job.batch);
                    self.count(&c);
                    Ok(c)
                }
                Err(e) => {
                    self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                    Err(if e.is_disk_full() {
                        StoreError::DiskFull(e.to_string())
                    } else {
                        StoreError::WriteFailed(e.to_string())
                    })
                }
            };
            (job.done)(result);
        }
    }

    /// Adds a committed batch to the counters.
    pub(crate) fn count(&self, c: &Committed) {
        let s = &self.stats;
        s.committed_spans
            .fetch_add(c.spans as u64, Ordering::Relaxed);
        s.committed_metric_points
            .fetch_add(c.metric_points as u64, Ordering::Relaxed);
        s.committed_logs.fetch_add(c.logs as u64, Ordering::Relaxed);
        s.duplicate_spans
            .fetch_add(c.duplicate_spans as u64, Ordering::Relaxed);
        s.duplicate_metric_points
            .fetch_add(c.duplicate_metric_points as u64, Ordering::Relaxed);
        s.duplicate_logs
            .fetch_add(c.duplicate_logs as u64, Ordering::Relaxed);
    }

    /// Which stored spans of the window (rows stamped from `since` on) are among `keys`
    /// (the suspects of a commit).
    fn stored_among(
        conn: &Connection,
        since: i64,
        keys: &[(tailscope_model::TraceId, tailscope_model::SpanId)],
    ) -> Result<HashSet<(tailscope_model::TraceId, tailscope_model::SpanId)>, StoreError> {
        let mut traces: Vec<String> = keys.iter().map(|k| format!("'{}'", k.0)).collect();
        traces.dedup();
        let wanted: HashSet<_> = keys.iter().copied().collect();
        let mut found = HashSet::new();
        // hex ids only (from parsed ids): safe to inline
        for part in traces.chunks(1000) {
            let sql = format!(
                "SELECT trace_id, span_id FROM spans WHERE ingested_ns >= {since} AND trace_id IN ({})",
                part.join(",")
            );
            let mut stmt = conn.prepare(&sql)?;
            for b in stmt.query_arrow([])? {
                span_keys(&b, |_, t, sp| {
                    if wanted.contains(&(t, sp)) {
                        found.insert((t, sp));
                    }
                })?;
            }
        }
        Ok(found)
    }

    /// Commits `batches` in one transaction, less what is already stored, and with
    /// `loaded_seq` the ingest log's loaded mark; returns what was dropped as
    /// duplicates per batch.
    pub(crate) fn commit(
        &mut self,
        batches: &[&Batch],
        loaded_seq: Option<u64>,
    ) -> Result<Vec<Dropped>, StoreError> {
        let dropped = match self.append(batches) {
            Ok(d) => d,
            Err(e) => {
                self.rollback_open();
                return Err(e);
            }
        };
        self.commit_open(loaded_seq)?;
        Ok(dropped)
    }

    /// Rows appended in the open transaction (0 when none is open).
    pub(crate) fn open_rows(&self) -> usize {
        self.open.as_ref().map_or(0, |o| o.rows)
    }

    /// Appends `batches`, less the spans already stored, in the open transaction
    /// (begun here if none is open); returns the spans dropped as duplicates per
    /// batch. Nothing is visible until `commit_open`; after an error the caller
    /// rolls back with `rollback_open`.
    ///
    /// The window learns the spans at once, so a later append of the same
    /// transaction drops them too; after a rollback its entries for them are only
    /// suspects that the stored rows no longer confirm.
    pub(crate) fn append(&mut self, batches: &[&Batch]) -> Result<Vec<Dropped>, StoreError> {
        if self.open.is_none() {
            self.conn.execute_batch("BEGIN TRANSACTION")?;
            self.open = Some(OpenTxn::default());
        }
        let since = self.window.oldest_stamp().unwrap_or(i64::MIN);
        let (conn, gathered, stats) = (&self.conn, &mut self.gathered, &self.stats);
        let plan = dedupe::plan(&self.window, batches.iter().map(|b| &b.spans[..]), |k| {
            // suspects are confirmed against the stored rows: the gathered ones must
            // be in the table for that
            append_gathered(conn, gathered, stats)?;
            Self::stored_among(conn, since, k)
        })?;
        let on = self.cfg.dedupe_window > 0;
        let points = dedupe::Points(batches);
        let point_fps = if on {
            points.fingerprints()
        } else {
            Vec::new()
        };
        let point_keep =
            dedupe::plan_content(&self.point_window, &point_fps, points.same(), |suspects| {
                append_gathered(conn, gathered, stats)?;
                points.stored(conn, &point_fps, suspects)
            })?;
        let logs = dedupe::Logs(batches);
        let log_fps = if on { logs.fingerprints() } else { Vec::new() };
        let log_keep = dedupe::plan_content(&self.log_window, &log_fps, logs.same(), |suspects| {
            append_gathered(conn, gathered, stats)?;
            logs.stored(conn, &log_fps, suspects)
        })?;
        let keep = |b: usize| Keep {
            spans: plan.keep[b].as_deref(),
            metrics: point_keep.get(b).and_then(Option::as_deref),
            logs: log_keep.get(b).and_then(Option::as_deref),
        };
        let mut fresh = Vec::new();
        let mut stamp = 0;
        let mut rows = 0;
        let stats = Arc::clone(&self.stats);
        let mut cols = self.gathered.take().unwrap_or_else(Columns::new);
        let largest = |c: &Columns| {
            c.tables
                .iter()
                .map(crate::columns::TableBuilder::rows)
                .max()
                .unwrap_or(0)
        };
        let result = stamped(|ingested| {
            stamp = ingested;
            let cpu = thread_cpu_ns();
            let before = largest(&cols);
            for (k, b) in batches.iter().enumerate() {
                cols.add(b, ingested, keep(k), |id| {
                    if self.known.insert(id) {
                        fresh.push(id);
                        true
                    } else {
                        false
                    }
                });
            }
            let now = largest(&cols);
            rows = now - before.min(now);
            let cpu = add_cpu(&stats.load_build_cpu_ns, cpu);
            if now < APPEND_ROWS {
                return Ok(());
            }
            let r = append_tables(&self.conn, &mut cols);
            add_cpu(&stats.load_append_cpu_ns, cpu);
            r
        });
        self.gathered = Some(cols);
        if let Some(open) = self.open.as_mut() {
            // the ids a rollback must forget again
            open.fresh.extend(fresh);
            open.rows += rows;
        }
        result?;
        let mut dropped = Vec::with_capacity(batches.len());
        let (mut fps, mut pfps, mut lfps) = (Vec::new(), Vec::new(), Vec::new());
        // the fingerprints of what was stored, for the windows; what was not, counted
        let learn = |mask: Option<&[bool]>, n: usize, fp: &mut dyn FnMut(usize)| {
            let mut gone = 0;
            for k in 0..n {
                if mask.is_none_or(|m| m[k]) {
                    fp(k);
                } else {
                    gone += 1;
                }
            }
            gone
        };
        for (k, b) in batches.iter().enumerate() {
            let keep = keep(k);
            let spans = learn(keep.spans, b.spans.len(), &mut |i| {
                let s = &b.spans[i];
                fps.push(dedupe::fingerprint(&s.trace_id, s.span_id));
            });
            let metric_points = learn(keep.metrics, b.metrics.len(), &mut |i| {
                pfps.extend(point_fps.get(k).and_then(|f| f[i]));
            });
            let logs = learn(keep.logs, b.logs.len(), &mut |i| {
                lfps.extend(log_fps.get(k).and_then(|f| f[i]));
            });
            dropped.push(Dropped {
                spans,
                metric_points,
                logs,
            });
        }
        self.window.push(stamp, fps);
        self.point_window.push(stamp, pfps);
        self.log_window.push(stamp, lfps);
        Ok(dropped)
    }

    /// Commits the open transaction, if one is open, with `loaded_seq` the ingest
    /// log's loaded mark; rolls it back if the commit fails. (`commit(&[], mark)`
    /// moves the mark alone: its empty append opens the transaction.)
    pub(crate) fn commit_open(&mut self, loaded_seq: Option<u64>) -> Result<(), StoreError> {
        if self.open.is_none() {
            return Ok(());
        }
        if let Err(e) = append_gathered(&self.conn, &mut self.gathered, &self.stats) {
            self.rollback_open();
            return Err(e);
        }
        let cpu = thread_cpu_ns();
        let committed = (|| -> Result<(), StoreError> {
            if let Some(seq) = loaded_seq {
                self.conn.execute(
                    "UPDATE ingest_log SET loaded_seq = ?",
                    [i64::try_from(seq).unwrap_or(i64::MAX)],
                )?;
            }
            self.conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        add_cpu(&self.stats.load_commit_cpu_ns, cpu);
        match committed {
            Ok(()) => {
                self.open = None;
                self.stats.transactions.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.rollback_open();
                Err(e)
            }
        }
    }

    /// Rolls the open transaction back, if one is open.
    pub(crate) fn rollback_open(&mut self) {
        // rows built for it and not appended yet go with it
        self.gathered = None;
        if let Some(open) = self.open.take() {
            // A failing rollback adds nothing to the error that led here; DuckDB
            // discards the transaction either way.
            let _ = self.conn.execute_batch("ROLLBACK");
            for id in open.fresh {
                self.known.remove(&id);
            }
        }
    }
}

/// What an append dropped of one batch as already stored, per signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub(crate) spans: usize,
    pub(crate) metric_points: usize,
    pub(crate) logs: usize,
}

impl Dropped {
    /// What `batch` stored, less these.
    pub(crate) fn counts(self, batch: &Batch) -> Committed {
        Committed {
            spans: batch.spans.len() - self.spans,
            metric_points: batch.metrics.len() - self.metric_points,
            logs: batch.logs.len() - self.logs,
            duplicate_spans: self.spans,
            duplicate_metric_points: self.metric_points,
            duplicate_logs: self.logs,
        }
    }
}

/// Reads the exactly-once key columns `cols` of the newest `cap` rows of `table`
/// and returns their fingerprints, oldest first (`each` adds a result batch's).
fn seed_content(
    conn: &Connection,
    table: &str,
    cols: &str,
    cap: usize,
    mut each: impl FnMut(&RecordBatch, &mut Vec<u64>) -> Result<(), StoreError>,
) -> Result<Vec<u64>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {cols} FROM {table} WHERE rowid >= (SELECT count(*) FROM {table}) - ? ORDER BY rowid"
    ))?;
    let mut fps = Vec::new();
    for b in stmt.query_arrow([i64::try_from(cap).unwrap_or(i64::MAX)])? {
        each(&b, &mut fps)?;
    }
    Ok(fps)
}

/// The loader's transaction while it is open: rows appended so far (the largest
/// table's), and the resource ids first stored in it.
#[derive(Default)]
pub(crate) struct OpenTxn {
    rows: usize,
    fresh: Vec<i64>,
}

/// Calls `each(row, trace, span)` for the rows of a batch with `trace_id` and
/// `span_id` columns whose ids parse.
fn span_keys(
    b: &duckdb::arrow::record_batch::RecordBatch,
    mut each: impl FnMut(usize, tailscope_model::TraceId, tailscope_model::SpanId),
) -> Result<(), StoreError> {
    let c = crate::read::Columns::new(b);
    let (t, sp) = (c.str("trace_id")?, c.str("span_id")?);
    for r in 0..b.num_rows() {
        if let (Ok(t), Ok(sp)) = (
            tailscope_model::TraceId::from_hex(t.value(r)),
            tailscope_model::SpanId::from_hex(sp.value(r)),
        ) {
            each(r, t, sp);
        }
    }
    Ok(())
}

/// Gives the rows gathered for the open transaction to DuckDB's appender.
fn append_gathered(
    conn: &Connection,
    gathered: &mut Option<Columns>,
    stats: &WriterStats,
) -> Result<(), StoreError> {
    let Some(cols) = gathered.as_mut() else {
        return Ok(());
    };
    let cpu = thread_cpu_ns();
    let r = append_tables(conn, cols);
    add_cpu(&stats.load_append_cpu_ns, cpu);
    r
}

/// Appends every non-empty table of `cols` in the current transaction.
pub(crate) fn append_tables(conn: &Connection, cols: &mut Columns) -> Result<(), StoreError> {
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
}
