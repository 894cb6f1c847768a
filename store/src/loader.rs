//! The writer with an ingest log: a log thread appends each group of submitted
//! batches to `<store>.ingest/` and syncs it, then acknowledges the batches that
//! asked for durability; the loader thread follows the log and commits its frames
//! into the tables (exactly-once window, resource de-duplication, stamps: the
//! `Worker` of `writer.rs`), recording the last loaded frame in the same
//! transaction, and answers the batches that asked to be visible once they are.

use crate::append::{weight, Ack, Committed, Done, Dropped, Job, Worker};
use crate::ingestlog::{self, FileReader, Frame, LogFile, Stop};
use crate::StoreError;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tailscope_model::Batch;

/// Loader idle this long: checkpoint DuckDB.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(2);

/// The loader keeps one transaction open across groups of frames until it holds four
/// DuckDB row groups' worth of rows (4 x 122,880): DuckDB then writes full row groups
/// to the file as they fill, compressing each once, instead of writing every row to
/// its WAL and compressing the same partly filled row group again at each checkpoint.
/// Four, not one: what is left past the last full row group goes the slow way, and a
/// commit lands at a frame's end, not at a row group's. Measured with ingest-bench
/// (1M spans): load plus close took 25.7 s with one row group a commit (a 5.3 s
/// checkpoint at close) and 18.8 s with four (0.25 s at close).
const COMMIT_ROWS: usize = 4 * 122_880;

/// ... or until no new frame came for this long (the stream paused: commit what is
/// there) ...
const LINGER: Duration = Duration::from_millis(100);

/// ... or until it has been open this long, so rows show up within seconds under any
/// load. A batch answered once loaded (`tailscope import`) and a live read waiting
/// for the backlog (`wait_loaded`) have it committed as soon as their frames are in.
const MAX_OPEN: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Progress {
    /// Frames up to here are synced (and may be acknowledged).
    durable_seq: u64,
    /// Frames up to here are committed to the tables.
    loaded_seq: u64,
    /// Bytes of frames past the loaded mark at start, plus those appended since.
    logged_bytes: u64,
    loaded_bytes: u64,
    /// Bumped when the log thread cut a failed group back: a reader reopens.
    generation: u64,
    /// The log thread stopped: load what is durable, then stop.
    closing: bool,
    /// The loader stopped.
    loader_done: bool,
    /// The frame callers of `wait_loaded` wait for: the loader commits as soon as it
    /// has appended it, rather than filling its transaction first.
    reader_want: u64,
}

/// The log's progress, shared by the log thread, the loader and the `Writer`.
pub(crate) struct LogShared {
    dir: PathBuf,
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl LogShared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Frames and bytes acknowledged but not yet loaded.
    pub fn backlog(&self) -> (u64, u64) {
        let p = self.lock();
        (
            p.durable_seq.saturating_sub(p.loaded_seq),
            p.logged_bytes.saturating_sub(p.loaded_bytes),
        )
    }

    /// Waits until every frame durable now is loaded, at most `timeout`.
    pub fn wait_loaded(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = self.lock();
        let want = p.durable_seq;
        if want > p.reader_want {
            p.reader_want = want;
            self.changed.notify_all();
        }
        loop {
            if p.loaded_seq >= want {
                return true;
            }
            if p.loader_done {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            p = self
                .changed
                .wait_timeout(p, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

fn log_error(dir: &Path, source: io::Error) -> StoreError {
    let full = source.kind() == io::ErrorKind::StorageFull
        || source.kind() == io::ErrorKind::FileTooLarge
        || matches!(source.raw_os_error(), Some(27 | 28 | 122));
    if full {
        StoreError::DiskFull(format!(
            "writing the ingest log {}: {source}",
            dir.display()
        ))
    } else {
        StoreError::IngestLog {
            path: dir.to_path_buf(),
            source,
        }
    }
}

/// Opens the log in `dir` (checking it, cutting a torn tail, setting damaged files
/// aside, each recorded in `store_recoveries`) and builds the two threads' bodies.
pub(crate) fn start(
    dir: &Path,
    worker: Worker,
    stopped: Arc<Mutex<Option<String>>>,
) -> Result<(Arc<LogShared>, Logger, Loader), StoreError> {
    let io = |e| StoreError::IngestLog {
        path: dir.to_path_buf(),
        source: e,
    };
    let loaded = ingestlog::loaded_seq(&worker.conn)?;
    let scan = ingestlog::scan(dir, loaded).map_err(io)?;
    let now = crate::append::now_ns();
    if scan.torn_bytes > 0 {
        let what = format!(
            "ingest log: a torn tail of {} bytes (an append cut short by a crash, never acknowledged) was cut off",
            scan.torn_bytes
        );
        tracing::warn!("{what}");
        eprintln!("warning: {what}");
        worker.conn.execute(
            "INSERT INTO store_recoveries VALUES (?, 'ingest-log-torn', ?, 0, NULL)",
            duckdb::params![now, i64::try_from(scan.torn_bytes).unwrap_or(i64::MAX)],
        )?;
    }
    for (aside, lost) in &scan.damaged {
        let what = format!(
            "ingest log: a damaged frame; the file was set aside as {} and about {lost} frame(s) after the damage are lost",
            aside.display()
        );
        tracing::error!("{what}");
        eprintln!("warning: {what}");
        worker.conn.execute(
            "INSERT INTO store_recoveries VALUES (?, 'ingest-log-damaged', ?, 0, ?)",
            duckdb::params![
                now,
                i64::try_from(*lost).unwrap_or(i64::MAX),
                aside.display().to_string()
            ],
        )?;
    }
    let next_seq = scan.last_seq.max(loaded) + 1;
    ingestlog::remove_loaded(dir, loaded).map_err(io)?;
    // Appends always go to a fresh file: never after a tail that a crash left.
    let file = LogFile::create(dir, next_seq).map_err(io)?;
    let shared = Arc::new(LogShared {
        dir: dir.to_path_buf(),
        progress: Mutex::new(Progress {
            durable_seq: next_seq - 1,
            loaded_seq: loaded,
            logged_bytes: scan.pending_bytes,
            ..Progress::default()
        }),
        changed: Condvar::new(),
    });
    if scan.pending_frames > 0 {
        tracing::info!(
            "ingest log: {} acknowledged batch(es), {} bytes, to load",
            scan.pending_frames,
            scan.pending_bytes
        );
    }
    // Waiters for frames already loaded were taken by the loader before it loaded
    // them, so the channel holds at most one group's jobs (each weighs at least 1).
    let (wtx, wrx) = bounded(worker.cfg.max_group_items.max(1) * 2);
    let rx = worker.rx.clone();
    let stats = Arc::clone(&worker.stats);
    let logger = Logger {
        shared: Arc::clone(&shared),
        rx,
        file,
        next_seq,
        waiters: wtx,
        stopped: Arc::clone(&stopped),
        pending: Arc::clone(&worker.pending),
        stats: Arc::clone(&worker.stats),
        group_items: worker.cfg.max_group_items,
    };
    let loader = Loader {
        shared: Arc::clone(&shared),
        worker,
        waiters: wrx,
        waiting: BTreeMap::new(),
        stopped,
        loaded,
        appended: loaded,
        open: Vec::new(),
        opened_at: None,
        frames: Ahead::start(Frames {
            dir: dir.to_path_buf(),
            reader: None,
            next: 0,
            stats,
        })
        .map_err(io)?,
        generation: 0,
    };
    Ok((shared, logger, loader))
}

/// The log thread's state.
pub(crate) struct Logger {
    shared: Arc<LogShared>,
    rx: Receiver<Job>,
    file: LogFile,
    next_seq: u64,
    /// `(seq, done)` of batches answered once loaded.
    waiters: Sender<(u64, Done)>,
    stopped: Arc<Mutex<Option<String>>>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    stats: Arc<crate::append::WriterStats>,
    group_items: usize,
}

impl Drop for Logger {
    fn drop(&mut self) {
        // normal end or a panic: the loader loads what is durable and stops
        self.shared.update(|p| p.closing = true);
    }
}

impl Logger {
    pub fn run(&mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut items = first.weight;
            let mut group = vec![first];
            while items < self.group_items {
                match self.rx.try_recv() {
                    Ok(job) => {
                        items += job.weight;
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            if !self.write_group(group) {
                break;
            }
        }
    }

    /// Appends and syncs a group, then answers it; false if the log cannot go on.
    fn write_group(&mut self, group: Vec<Job>) -> bool {
        let dir = self.shared.dir.clone();
        if self.file.len >= ingestlog::ROLL_BYTES {
            let rolled = self
                .file
                .sync()
                .and_then(|()| LogFile::create(&dir, self.next_seq));
            match rolled {
                Ok(f) => self.file = f,
                Err(e) => {
                    self.fail(group, &e);
                    return true;
                }
            }
        }
        let (len0, seq0) = (self.file.len, self.next_seq);
        let mut bytes = 0;
        let (mut encode_ns, mut write_ns, mut sync_ns) = (0, 0, 0);
        let written = (|| -> io::Result<()> {
            for job in &group {
                let t = Instant::now();
                let encoded;
                let payload = if let Some(p) = &job.encoded {
                    p
                } else {
                    encoded = ingestlog::encode(&job.batch).map_err(io::Error::other)?;
                    &encoded
                };
                let t2 = Instant::now();
                bytes += self.file.append_raw(self.next_seq, payload)?;
                encode_ns += nanos(t2 - t);
                write_ns += nanos(t2.elapsed());
                self.next_seq += 1;
            }
            let t = Instant::now();
            let synced = self.file.sync();
            sync_ns = nanos(t.elapsed());
            synced
        })();
        self.stats
            .log_encode_ns
            .fetch_add(encode_ns, Ordering::Relaxed);
        self.stats
            .log_write_ns
            .fetch_add(write_ns, Ordering::Relaxed);
        self.stats.log_sync_ns.fetch_add(sync_ns, Ordering::Relaxed);
        if let Err(e) = written {
            // nothing of the group may stay in the log: it was not acknowledged
            self.next_seq = seq0;
            let cut = self.file.cut_back(len0);
            self.shared.update(|p| p.generation += 1);
            self.fail(group, &e);
            if let Err(c) = cut {
                let why = format!(
                    "the store writer stopped: a failed write could not be taken back out of the ingest log {} ({c})",
                    dir.display()
                );
                tracing::error!("{why}");
                self.stopped
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_or_insert(why);
                return false;
            }
            return true;
        }
        let mut durable = Vec::new();
        for (k, job) in group.into_iter().enumerate() {
            self.pending.fetch_sub(job.weight, Ordering::AcqRel);
            match job.ack {
                // sent before the durable mark moves, so the loader finds it
                Ack::Loaded => {
                    let _ = self.waiters.send((seq0 + k as u64, job.done));
                }
                Ack::Durable => durable.push(job),
            }
        }
        self.stats.logged_bytes.fetch_add(bytes, Ordering::Relaxed);
        let last = self.next_seq - 1;
        self.shared.update(|p| {
            p.durable_seq = last;
            p.logged_bytes += bytes;
        });
        for job in durable {
            let c = job.counts;
            self.stats
                .logged_spans
                .fetch_add(c.spans as u64, Ordering::Relaxed);
            (job.done)(Ok(c));
        }
        true
    }

    /// Answers every batch of a group that did not reach the disk.
    fn fail(&self, group: Vec<Job>, e: &io::Error) {
        let dir = &self.shared.dir;
        if !matches!(log_error(dir, clone_io(e)), StoreError::DiskFull(_)) {
            tracing::error!("ingest log write failed: {e}");
        }
        for job in group {
            self.pending.fetch_sub(job.weight, Ordering::AcqRel);
            self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            (job.done)(Err(log_error(dir, clone_io(e))));
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn clone_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The loader thread's state.
pub(crate) struct Loader {
    shared: Arc<LogShared>,
    worker: Worker,
    waiters: Receiver<(u64, Done)>,
    waiting: BTreeMap<u64, Done>,
    stopped: Arc<Mutex<Option<String>>>,
    /// The loaded mark: frames up to here are committed.
    loaded: u64,
    /// Frames up to here are appended (in the open transaction past `loaded`).
    appended: u64,
    /// The frames of the open transaction, answered when it commits.
    open: Vec<Appended>,
    /// When the open transaction took its first frame.
    opened_at: Option<Instant>,
    /// Reads and decodes frames on a thread of its own, a group ahead.
    frames: Ahead,
    generation: u64,
}

enum Wait {
    Work {
        durable: u64,
        generation: u64,
    },
    /// Commit the open transaction (it is full, old, the stream paused, or someone
    /// waits for it).
    Commit,
    Idle,
    Done,
}

/// One frame read for loading: its batch, or `None` when it did not decode.
struct Item {
    seq: u64,
    batch: Option<Batch>,
    bytes: u64,
}

/// A frame appended in the open transaction: its answer once committed.
struct Appended {
    seq: u64,
    bytes: u64,
    /// Its counts, or `None` where the frame did not decode.
    counts: Option<Committed>,
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared.update(|p| p.loader_done = true);
    }
}

impl Loader {
    pub fn run(&mut self) {
        lower_priority();
        self.worker.seed_window();
        let mut dirty = false;
        loop {
            match self.wait() {
                Wait::Done => {
                    if !self.commit_open() {
                        return;
                    }
                    // The log thread has stopped and everything durable is loaded: the
                    // log holds nothing the tables lack.
                    if let Err(e) = ingestlog::remove_all_loaded(&self.shared.dir, self.loaded) {
                        tracing::warn!("removing loaded ingest log files: {e}");
                    }
                    break;
                }
                Wait::Commit => {
                    if !self.commit_open() {
                        return;
                    }
                }
                Wait::Idle => {
                    if dirty {
                        if let Err(e) = self.worker.conn.execute_batch("CHECKPOINT") {
                            tracing::warn!("idle checkpoint failed: {e}");
                        }
                        dirty = false;
                    }
                }
                Wait::Work {
                    durable,
                    generation,
                } => {
                    let reset = generation != self.generation;
                    self.generation = generation;
                    let group = match self.read_group(durable, reset) {
                        Ok(g) => g,
                        Err(e) => {
                            self.stop(format!(
                                "the store writer stopped: reading the ingest log failed: {e}"
                            ));
                            return;
                        }
                    };
                    dirty = true;
                    // the next group is read and decoded while this one is appended
                    if let Some(last) = group.last() {
                        let durable = self.shared.lock().durable_seq;
                        if durable > last.seq {
                            self.ask(last.seq + 1, durable);
                        }
                    }
                    if !self.append(&group) {
                        return;
                    }
                    self.waiting.extend(self.waiters.try_iter());
                    let awaited = self.waiting.range(..=self.appended).next().is_some();
                    if (awaited || self.worker.open_rows() >= COMMIT_ROWS) && !self.commit_open() {
                        return;
                    }
                }
            }
        }
    }

    fn stop(&self, why: String) {
        tracing::error!("{why}");
        self.stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(why);
    }

    fn wait(&self) -> Wait {
        let mut p = self.shared.lock();
        if let Some(opened) = self.opened_at {
            // a transaction is open: more frames, or commit
            let deadline = opened + MAX_OPEN;
            let mut waited = false;
            loop {
                let now = Instant::now();
                let awaited = p.reader_want > self.loaded && self.appended >= p.reader_want;
                if awaited || now >= deadline {
                    return Wait::Commit;
                }
                if p.durable_seq > self.appended {
                    return Wait::Work {
                        durable: p.durable_seq,
                        generation: p.generation,
                    };
                }
                if waited || p.closing {
                    return Wait::Commit;
                }
                p = self
                    .shared
                    .changed
                    .wait_timeout(p, LINGER.min(deadline - now))
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
                waited = true;
            }
        }
        for round in 0..2 {
            if p.durable_seq > self.appended {
                return Wait::Work {
                    durable: p.durable_seq,
                    generation: p.generation,
                };
            }
            if p.closing {
                return Wait::Done;
            }
            if round == 0 {
                p = self
                    .shared
                    .changed
                    .wait_timeout(p, IDLE_CHECKPOINT)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
        Wait::Idle
    }

    /// Asks the log reader for the frames `from..=through`, a group's worth.
    fn ask(&mut self, from: u64, through: u64) {
        self.frames.ask(Ask {
            from,
            through,
            max_items: self.worker.cfg.max_group_items,
            loaded: self.loaded,
        });
    }

    /// The frames after the appended mark, up to `through` and a group's worth: the
    /// group read ahead when it starts there (and the log was not cut back since),
    /// else one read now.
    fn read_group(&mut self, through: u64, reset: bool) -> io::Result<Vec<Item>> {
        let from = self.appended + 1;
        if let Some((ahead, group)) = self.frames.take() {
            if ahead == from && !reset {
                return group;
            }
        }
        if reset {
            self.frames.reset();
        }
        self.ask(from, through);
        self.frames
            .take()
            .map_or_else(|| Err(io::Error::other("the log reader stopped")), |g| g.1)
    }

    /// Appends a group to the open transaction; false if the loader must stop. A
    /// failure rolls the whole transaction back and loads its frames again, a group a
    /// transaction, setting aside a batch that fails on its own.
    fn append(&mut self, group: &[Item]) -> bool {
        let Some(last) = group.last().map(|i| i.seq) else {
            return true;
        };
        let started = Instant::now();
        let batches: Vec<&Batch> = group.iter().filter_map(|i| i.batch.as_ref()).collect();
        let appended = self.worker.append(&batches);
        self.add_load_time(started);
        match appended {
            Ok(dropped) => {
                // `dropped` has one entry per batch that decoded, in order
                let mut d = dropped.into_iter();
                for item in group {
                    let counts = item.batch.as_ref().map(|b| counts(b, d.next()));
                    self.open.push(Appended {
                        seq: item.seq,
                        bytes: item.bytes,
                        counts,
                    });
                }
                self.appended = last;
                self.opened_at.get_or_insert(started);
                true
            }
            Err(e) => {
                self.worker.rollback_open();
                self.reload(last, &e)
            }
        }
    }

    /// Commits the open transaction with the loaded mark, answers its frames; false
    /// if the loader must stop.
    fn commit_open(&mut self) -> bool {
        if self.opened_at.is_none() {
            return true;
        }
        let started = Instant::now();
        let committed = self.worker.commit_open(Some(self.appended));
        self.add_load_time(started);
        match committed {
            Ok(()) => {
                self.waiting.extend(self.waiters.try_iter());
                let open = std::mem::take(&mut self.open);
                self.opened_at = None;
                let bytes = open.iter().map(|a| a.bytes).sum();
                for a in open {
                    let r = self.loaded(a.seq, a.counts);
                    self.answer(a.seq, r);
                }
                self.mark_loaded(self.appended, bytes);
                true
            }
            Err(e) => self.reload(self.appended, &e),
        }
    }

    fn add_load_time(&self, started: Instant) {
        self.worker
            .stats
            .load_ns
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
    }

    fn mark_loaded(&mut self, last: u64, bytes: u64) {
        self.loaded = last;
        self.appended = last;
        self.shared.update(|p| {
            p.loaded_seq = last;
            p.loaded_bytes += bytes;
        });
    }

    /// After a failed transaction (rolled back): loads the frames after the loaded
    /// mark through `through` again from the log, one group a transaction.
    fn reload(&mut self, through: u64, e: &StoreError) -> bool {
        tracing::warn!(
            "loading the ingest log failed ({e}); loading frames {}..={through} again, a group at a time",
            self.loaded + 1
        );
        self.open.clear();
        self.opened_at = None;
        self.appended = self.loaded;
        let mut reset = true;
        while self.loaded < through {
            let group = match self.read_group(through, std::mem::take(&mut reset)) {
                Ok(g) if !g.is_empty() => g,
                Ok(_) => return true,
                Err(e) => {
                    self.stop(format!(
                        "the store writer stopped: reading the ingest log failed: {e}"
                    ));
                    return false;
                }
            };
            if !self.load(&group) {
                return false;
            }
        }
        true
    }

    /// Commits a group in a transaction of its own, answers its waiters and moves the
    /// loaded mark; false if the loader must stop.
    fn load(&mut self, group: &[Item]) -> bool {
        let Some(last) = group.last().map(|i| i.seq) else {
            return true;
        };
        self.waiting.extend(self.waiters.try_iter());
        let batches: Vec<&Batch> = group.iter().filter_map(|i| i.batch.as_ref()).collect();
        let mut warned = false;
        let started = Instant::now();
        let outcome = loop {
            match self.worker.commit(&batches, Some(last)) {
                Ok(dropped) => break Ok(dropped),
                Err(e) if e.is_disk_full() => {
                    if self.shared.lock().closing {
                        // shutting down: what is left stays in the log for the next start
                        eprintln!(
                            "warning: the disk is full; {} acknowledged batch(es) stay in the ingest log and load at the next start",
                            self.shared.backlog().0
                        );
                        return false;
                    }
                    if !warned {
                        tracing::warn!("loading the ingest log: {e}; retrying");
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(dropped) => {
                // `dropped` has one entry per batch that decoded, in order
                let mut d = dropped.into_iter();
                for item in group {
                    let counts = item.batch.as_ref().map(|b| counts(b, d.next()));
                    let r = self.loaded(item.seq, counts);
                    self.answer(item.seq, r);
                }
            }
            Err(e) => {
                // Isolate the batch at fault: load the rest one by one; one that fails
                // on its own is skipped (its frame stays in the log until the file
                // goes) and reported.
                tracing::warn!("loading a group failed ({e}); loading its batches one by one");
                for item in group {
                    let one: Vec<&Batch> = item.batch.iter().collect();
                    let r = match self.worker.commit(&one, Some(item.seq)) {
                        Ok(d) => {
                            let c = item.batch.as_ref().map(|b| counts(b, d.first().copied()));
                            self.loaded(item.seq, c)
                        }
                        Err(e) => {
                            tracing::error!(
                                "an acknowledged batch (ingest log frame {}) could not be loaded and is skipped: {e}",
                                item.seq
                            );
                            self.worker
                                .stats
                                .failed_batches
                                .fetch_add(1, Ordering::Relaxed);
                            if let Err(e2) = self.worker.commit(&[], Some(item.seq)) {
                                self.stop(format!(
                                    "the store writer stopped: the ingest log's loaded mark cannot move ({e2})"
                                ));
                                return false;
                            }
                            Err(StoreError::WriteFailed(e.to_string()))
                        }
                    };
                    self.answer(item.seq, r);
                }
            }
        }
        self.add_load_time(started);
        let bytes: u64 = group.iter().map(|i| i.bytes).sum();
        self.mark_loaded(last, bytes);
        true
    }

    /// The answer for a frame that was committed: its counts (and the counters
    /// moved), or that it did not decode.
    fn loaded(&self, seq: u64, counts: Option<Committed>) -> Result<Committed, StoreError> {
        let Some(c) = counts else {
            return Err(StoreError::WriteFailed(format!(
                "ingest log frame {seq} does not decode"
            )));
        };
        self.worker.count(&c);
        Ok(c)
    }

    fn answer(&mut self, seq: u64, r: Result<Committed, StoreError>) {
        if let Some(done) = self.waiting.remove(&seq) {
            done(r);
        }
    }
}

/// What the log reader is asked for: the frames `from..=through`, at most a group's
/// worth (`max_items`, by [`weight`]); `loaded` is the loaded mark, for removing the
/// files read past that hold only loaded frames.
struct Ask {
    from: u64,
    through: u64,
    max_items: usize,
    loaded: u64,
}

/// Reads frames from the log and decodes them.
struct Frames {
    dir: PathBuf,
    /// The file being read: its first sequence number and a reader.
    reader: Option<(u64, FileReader)>,
    /// The frame after the last one returned (0: none yet).
    next: u64,
    stats: Arc<crate::append::WriterStats>,
}

impl Frames {
    fn group(&mut self, a: &Ask) -> io::Result<Vec<Item>> {
        let cpu = crate::append::thread_cpu_ns();
        if a.from != self.next {
            // not where the last group ended (a group read ahead was not taken): the
            // reader only goes forward, so it starts over
            self.reader = None;
        }
        let mut group = Vec::new();
        let mut items = 0;
        let mut want = a.from;
        while want <= a.through && items < a.max_items {
            let f = self.read(want, a.loaded)?;
            want = f.seq + 1;
            self.next = want;
            let batch = match ingestlog::decode(&f.payload) {
                Ok(b) => {
                    items += weight(&b);
                    Some(b)
                }
                Err(e) => {
                    tracing::error!(
                        "ingest log frame {} does not decode ({e}); it is skipped",
                        f.seq
                    );
                    None
                }
            };
            group.push(Item {
                seq: f.seq,
                batch,
                bytes: f.bytes,
            });
        }
        crate::append::add_cpu(&self.stats.load_decode_cpu_ns, cpu);
        Ok(group)
    }

    /// The frame `want`, or the first after it where frames are missing (a damaged
    /// file set aside at start).
    fn read(&mut self, want: u64, loaded: u64) -> io::Result<Frame> {
        let dir = self.dir.clone();
        loop {
            if self.reader.is_none() {
                let files = ingestlog::files(&dir)?;
                let Some((first, path)) = files
                    .iter()
                    .rev()
                    .find(|f| f.0 <= want)
                    .or_else(|| files.first())
                else {
                    return Err(io::Error::other(format!(
                        "frame {want} is acknowledged but no log file holds it"
                    )));
                };
                self.reader = Some((*first, FileReader::open(path)?));
            }
            let Some((first, r)) = self.reader.as_mut() else {
                continue;
            };
            match r.next()? {
                Ok(f) if f.seq < want => {}
                Ok(f) => return Ok(f),
                Err(Stop::End { .. }) => {
                    // on to the next file, if the log rolled
                    let current = *first;
                    let next = ingestlog::files(&dir)?.into_iter().find(|f| f.0 > current);
                    let Some((nfirst, path)) = next else {
                        return Err(io::Error::other(format!(
                            "frame {want} is acknowledged but the log ends before it"
                        )));
                    };
                    self.reader = Some((nfirst, FileReader::open(&path)?));
                    // a file passed in full: drop the files already loaded
                    if let Err(e) = ingestlog::remove_loaded(&dir, loaded) {
                        tracing::warn!("removing loaded ingest log files: {e}");
                    }
                }
                Err(Stop::Damaged) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a damaged frame before {want}"),
                    ))
                }
            }
        }
    }
}

/// Reading and decoding log frames (about a fifth of the loader's CPU per span) on a
/// thread of its own, so that the next group is ready when the loader has appended
/// the last: [`Frames`] behind a channel, one request out at a time.
struct Ahead {
    ask: Option<Sender<(Ask, bool)>>,
    got: Receiver<(u64, io::Result<Vec<Item>>)>,
    /// The first frame of the request out, if one is.
    out: Option<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Start the reader over at the next request (the log was cut back).
    reset: bool,
}

impl Ahead {
    fn start(mut frames: Frames) -> io::Result<Ahead> {
        let (ask_tx, ask_rx) = bounded::<(Ask, bool)>(1);
        // one answer at most is ever waiting (a request goes out only once the last
        // answer was taken), so the thread never blocks on an answer nobody takes
        let (got_tx, got_rx) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("tailscope-log-reader".into())
            .spawn(move || {
                lower_priority();
                for (a, reset) in ask_rx {
                    if reset {
                        frames.reader = None;
                    }
                    let r = frames.group(&a);
                    if got_tx.send((a.from, r)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Ahead {
            ask: Some(ask_tx),
            got: got_rx,
            out: None,
            thread: Some(thread),
            reset: false,
        })
    }

    /// Asks for a group (the request out, if any, is taken and dropped first).
    fn ask(&mut self, a: Ask) {
        drop(self.take());
        let from = a.from;
        let reset = std::mem::take(&mut self.reset);
        if self
            .ask
            .as_ref()
            .is_some_and(|t| t.send((a, reset)).is_ok())
        {
            self.out = Some(from);
        }
    }

    /// The answer to the request out: its first frame and the group.
    fn take(&mut self) -> Option<(u64, io::Result<Vec<Item>>)> {
        self.out.take()?;
        self.got.recv().ok()
    }

    fn reset(&mut self) {
        self.reset = true;
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.ask = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a batch stored, less what was `dropped` as duplicates.
fn counts(b: &Batch, dropped: Option<Dropped>) -> Committed {
    dropped.unwrap_or_default().counts(b)
}

/// Loading is batch work behind the acknowledgements: it runs at a somewhat lower
/// CPU priority (nice +5) than the receivers, so a burst is acknowledged at the speed
/// of decoding and the log. Not lower: the nice value counts against every process
/// on the machine, and a loader starved by other work would fill the log until the
/// collector refuses spans.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    {
        // SAFETY: setpriority takes plain integers and touches no memory of ours. On
        // Linux the nice value is per thread, and `who = 0` names the calling thread.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) };
        if r != 0 {
            tracing::debug!(
                "the loader keeps its priority: {}",
                io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn seqs(g: &[Item]) -> Vec<u64> {
        g.iter().map(|i| i.seq).collect()
    }

    /// The reader a group ahead: groups continue where the last ended, and a group
    /// read ahead but not taken (the loader went back after a rollback) does not make
    /// the next request skip the frames it held.
    #[test]
    fn groups_read_ahead_continue_and_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LogFile::create(dir.path(), 1).unwrap();
        for seq in 1..=10 {
            f.append_raw(seq, &ingestlog::encode(&Batch::default()).unwrap())
                .unwrap();
        }
        f.sync().unwrap();
        drop(f);
        let mut ahead = Ahead::start(Frames {
            dir: dir.path().to_path_buf(),
            reader: None,
            next: 0,
            stats: Arc::default(),
        })
        .unwrap();
        let ask = |from, through| Ask {
            from,
            through,
            max_items: 3,
            loaded: 0,
        };
        ahead.ask(ask(1, 10));
        let (from, g) = ahead.take().unwrap();
        assert_eq!((from, seqs(&g.unwrap())), (1, vec![1, 2, 3]));
        ahead.ask(ask(4, 10));
        assert_eq!(seqs(&ahead.take().unwrap().1.unwrap()), vec![4, 5, 6]);
        // read ahead, then not taken: the loader asks from 2 again
        ahead.ask(ask(7, 10));
        ahead.ask(ask(2, 10));
        assert_eq!(seqs(&ahead.take().unwrap().1.unwrap()), vec![2, 3, 4]);
        ahead.reset();
        ahead.ask(ask(5, 6));
        assert_eq!(seqs(&ahead.take().unwrap().1.unwrap()), vec![5, 6]);
        assert!(ahead.take().is_none(), "nothing out");
        // a frame past the log's end is an error, not a hang
        ahead.ask(ask(11, 11));
        assert!(ahead.take().unwrap().1.is_err());
    }
}
