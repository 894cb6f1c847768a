//! tailscope's embedded DuckDB store.
//!
//! [`Store`] opens (and migrates, see `schema.rs`) a DuckDB file; [`Writer`] is the
//! single writer thread that appends [`tailscope_model::Batch`]es through DuckDB's
//! Arrow appender and acknowledges each only after its transaction committed.
//! Reads come back as Arrow [`RecordBatch`]es ([`Store::query_arrow`]); user SQL goes
//! through [`Store::query_read_only`], which refuses statements that write.
//! [`Store::align_window`] / [`Store::align_span`] (and trace, conversation) return the
//! GPU and inference-server series around a time window as [`AlignedSeries`] on one
//! grid, with canonical names and units (`series.rs`).

mod append;
mod cache_lookups;
pub mod clickhouse;
mod columns;
mod dedupe;
pub mod ingestlog;
mod llm_calls;
mod loader;
mod otel_export;
mod otel_metrics;
mod otel_traces;
mod pushdown;
pub mod query;
mod read;
mod readonly;
mod replay;
mod results;
mod rowbinary;
mod schema;
mod segments;
mod series;
mod shared_results;
mod writer;

pub use append::{Committed, Done, WriterConfig, WriterStats, DEFAULT_DEDUPE_WINDOW};
pub use duckdb::arrow;
pub use duckdb::arrow::record_batch::RecordBatch;
pub use llm_calls::{CallCensus, CallSampleRow, LlmCallRow, ReplayCandidate};
pub use otel_export::{ExporterTable, Pushed, ROWS_PER_INSERT};
pub use otel_traces::{Pulled, SourceRun, SpanMatch};
pub use read::{SeriesPoint, Traces};
pub use readonly::check_read_only;
pub use replay::{ReplayEvictionRow, ReplayRows, ReplayRunRow, ReplayTurnRow};
pub use results::{
    AnalysisRows, FindingRow, RunRow, SectionPage, SectionRow, SpanRow, TraceGraph, TraceInfo,
    TraceRow, TraceSummaries, CAUSE_COLUMNS,
};
pub use schema::SCHEMA_VERSION;
pub use segments::{Published, SEGMENT_TABLES};
pub use series::{as_of, AlignOptions, AlignedSeries, Alignment};
pub use shared_results::Earlier;
pub use writer::{Saturated, Writer};

use duckdb::{AccessMode, Config, Connection};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the store. Messages name the file or statement at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {path}: {source}")]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error("no store at {0}: run `tailscope import` or `tailscope serve` first")]
    Missing(PathBuf),
    #[error("cannot create folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store was written by a newer tailscope (schema {found}, this build reads up to {supported})")]
    NewerSchema { found: i32, supported: i32 },
    #[error("migration to schema {version} failed: {source}")]
    Migration { version: i32, source: duckdb::Error },
    #[error("{0}")]
    Duckdb(#[from] duckdb::Error),
    #[error("unexpected query result: {0}")]
    Schema(String),
    #[error("arrow: {0}")]
    Arrow(#[from] duckdb::arrow::error::ArrowError),
    #[error("query refused: tailscope query is read-only and `{0}` statements write; use SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or SUMMARIZE")]
    WriteRefused(String),
    #[error("write failed: {0}")]
    WriteFailed(String),
    #[error(transparent)]
    ClickHouse(#[from] clickhouse::ClickHouseError),
    #[error("the store writer stopped")]
    WriterGone,
    #[error("{0}")]
    WriterStopped(String),
    #[error("the disk is full (or the file size limit was reached): {0}; free space, then retry (nothing was stored from this request)")]
    DiskFull(String),
    #[error("a writer is already running for store {0} in this process; share it (Store::shared_writer) rather than starting a second")]
    WriterExists(PathBuf),
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("ingest log {path}: {source}")]
    IngestLog {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether this is the disk filling up (or a file size limit): nothing was
    /// stored, and a retry can succeed once there is room.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull(_) => true,
            StoreError::Duckdb(_) | StoreError::WriteFailed(_) => {
                let t = self.to_string();
                t.contains("No space left on device") || t.contains("File too large")
            }
            _ => false,
        }
    }
}

/// The one-writer-per-store rule, shared by every handle of one opened store
/// ([`Store::reader`] clones it).
#[derive(Default)]
struct WriterSlot {
    /// A writer is running (owned or shared).
    claimed: std::sync::Mutex<bool>,
    /// The shared writer, while someone holds it.
    shared: std::sync::Mutex<std::sync::Weak<Writer>>,
}

/// Held by a running [`Writer`]; frees the store's writer slot when dropped.
pub(crate) struct WriterGuard(Arc<WriterSlot>);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        *self
            .0
            .claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
    }
}

/// Row counts of the main tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub spans: u64,
    pub traces: u64,
    pub span_attributes: u64,
    pub events: u64,
    pub links: u64,
    pub resources: u64,
    pub metric_points: u64,
    pub logs: u64,
}

/// An open store. Cheap to [`Store::reader`]-clone for other threads.
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
    writers: Arc<WriterSlot>,
    recovered: Option<Recovery>,
    /// Whether this connection's trace list (a temp table the traces pages read) is
    /// built and current (see `query::traces`).
    trace_list: std::sync::atomic::AtomicBool,
}

/// What [`Store::open`] found wrong with the write-ahead log of a store that was not
/// closed cleanly, and did about it; logged in `store_recoveries` and on stderr.
///
/// A *torn tail* is a last entry cut short by a crash: a commit that never finished,
/// so never acknowledged. DuckDB skips it; tailscope finds it by walking the log's
/// entry frames before opening, and reports it. A *damaged entry* (its checksum does
/// not match) stops DuckDB from opening the file at all: every entry before it is
/// kept, the whole log is copied aside for inspection, and the rest is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// A torn tail (true) or a damaged entry (false).
    pub torn: bool,
    pub wal_bytes: u64,
    pub kept_bytes: u64,
    /// The copy of the whole damaged log.
    pub set_aside: Option<PathBuf>,
}

impl Recovery {
    fn what(&self) -> &'static str {
        if self.torn {
            "torn write-ahead log tail skipped"
        } else {
            "damaged write-ahead log cut back"
        }
    }
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let skipped = self.wal_bytes - self.kept_bytes;
        if self.torn {
            write!(
                f,
                "the store's write-ahead log ends in a torn entry (a commit cut short by a crash, never acknowledged): skipped its {skipped} bytes, kept the {} before it",
                self.kept_bytes
            )
        } else {
            write!(
                f,
                "the store's write-ahead log was damaged at byte {} of {}: kept the {} bytes before it, skipped {skipped} bytes (a copy of the whole log is at {})",
                self.kept_bytes,
                self.wal_bytes,
                self.kept_bytes,
                self.set_aside
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| p.display().to_string())
            )
        }
    }
}

/// The bytes of a torn last entry of the write-ahead log at `wal`, by its frames:
/// a version header (one serialized object, ended by 0xFFFF), then entries of
/// `[u64 size][u64 checksum][size bytes]`. `None` when there is no log, it ends on
/// an entry boundary, or its frames do not read as expected (nothing is claimed then).
fn torn_tail(wal: &Path) -> Option<u64> {
    let b = std::fs::read(wal).ok()?;
    // the header object ends at the first 0xFFFF within its first 32 bytes
    let head = b
        .get(..b.len().min(32))?
        .windows(2)
        .position(|w| w == [0xff, 0xff])?
        + 2;
    let mut p = head;
    let mut entries = 0;
    while p < b.len() {
        let rest = b.len() - p;
        if rest < 16 {
            break;
        }
        let size = u64::from_le_bytes(b[p..p + 8].try_into().ok()?);
        if size == 0 {
            return None;
        }
        if size > (rest - 16) as u64 {
            break;
        }
        p += 16 + usize::try_from(size).ok()?;
        entries += 1;
    }
    (p < b.len() && entries > 0).then(|| (b.len() - p) as u64)
}

/// `<db>.wal`
fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// The byte position of the damaged entry in DuckDB's "Corrupt WAL file" error.
fn damaged_at(message: &str) -> Option<u64> {
    if !message.contains("Corrupt WAL") {
        return None;
    }
    let rest = message.split("byte position ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Opens `path`; a write-ahead log with a damaged entry is cut back before that entry
/// (after a copy of it is set aside) and the open retried once.
fn open_recovering(path: &Path) -> Result<(Connection, Option<Recovery>), StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let wal = wal_path(path);
    let torn = torn_tail(&wal).map(|n| {
        let wal_bytes = std::fs::metadata(&wal).map_or(n, |m| m.len());
        Recovery {
            torn: true,
            wal_bytes,
            kept_bytes: wal_bytes - n,
            set_aside: None,
        }
    });
    let e = match Connection::open(path) {
        Ok(c) => {
            if let Some(r) = &torn {
                tracing::warn!("{r}");
                eprintln!("warning: {r}");
            }
            return Ok((c, torn));
        }
        Err(e) => e,
    };
    let Some(at) = damaged_at(&e.to_string()) else {
        return Err(open_error(e));
    };
    let io = |source: std::io::Error| StoreError::CreateDir {
        path: wal.clone(),
        source,
    };
    let wal_bytes = std::fs::metadata(&wal).map_err(io)?.len();
    if at >= wal_bytes {
        return Err(open_error(e));
    }
    let mut aside = wal.as_os_str().to_owned();
    aside.push(format!(".damaged-{}", append::now_ns()));
    let set_aside = PathBuf::from(aside);
    std::fs::copy(&wal, &set_aside).map_err(io)?;
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .map_err(io)?;
        f.set_len(at).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    let r = Recovery {
        torn: false,
        wal_bytes,
        kept_bytes: at,
        set_aside: Some(set_aside),
    };
    tracing::warn!("{r}");
    eprintln!("warning: {r}");
    let conn = Connection::open(path).map_err(open_error)?;
    Ok((conn, Some(r)))
}

impl Store {
    /// Opens or creates the store at `path` (creating its folder) and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let (conn, recovered) = open_recovering(path)?;
        // Checkpoints copy the WAL into the file; DuckDB's default 16 MiB threshold put
        // one inside every few commits, on the path of acknowledged exports. The writer
        // also checkpoints whenever its queue is idle.
        conn.execute_batch("SET checkpoint_threshold = '256MB'")?;
        schema::migrate(&conn)?;
        schema::sync_metric_names(&conn)?;
        if let Some(r) = &recovered {
            conn.execute(
                "INSERT INTO store_recoveries VALUES (?, ?, ?, ?, ?)",
                duckdb::params![
                    append::now_ns(),
                    r.what(),
                    i64::try_from(r.wal_bytes).unwrap_or(i64::MAX),
                    i64::try_from(r.kept_bytes).unwrap_or(i64::MAX),
                    r.set_aside.as_ref().map(|p| p.display().to_string())
                ],
            )?;
        }
        let store = Self {
            conn,
            path: Some(path.to_path_buf()),
            writers: Arc::default(),
            recovered,
            trace_list: std::sync::atomic::AtomicBool::new(false),
        };
        store.load_ingest_log()?;
        Ok(store)
    }

    /// Loads what the ingest log holds past its loaded mark (batches a collector
    /// acknowledged before it stopped) into the tables, so every reader sees them.
    fn load_ingest_log(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = ingestlog::pending(&self.conn, path)? {
            eprintln!(
                "loading acknowledged batches from the ingest log {} into the store ...",
                dir.display()
            );
            self.writer(WriterConfig::default())?.close()?;
        }
        Ok(())
    }

    /// What opening had to repair: a damaged write-ahead log cut back to its last
    /// intact entry (`None` when the store opened as it was).
    pub fn recovered(&self) -> Option<&Recovery> {
        self.recovered.as_ref()
    }

    /// An in-memory store (tests, benchmarks).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        schema::migrate(&conn)?;
        schema::sync_metric_names(&conn)?;
        Ok(Self {
            conn,
            path: None,
            writers: Arc::default(),
            recovered: None,
            trace_list: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Opens an existing store read-only, with access to other files disabled,
    /// for `tailscope query` and other readers that must not change anything.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let store = Self::open_read_only_as_is(path)?;
        // Batches acknowledged into the ingest log but not loaded (the collector was
        // killed) are loaded first, where this process may write. (A store older than
        // the log has no `ingest_log` table: nothing to load.)
        let Some(dir) = ingestlog::pending(&store.conn, path).unwrap_or(None) else {
            return Ok(store);
        };
        drop(store);
        if let Err(e) = Store::open(path) {
            eprintln!(
                "warning: acknowledged batches in the ingest log {} are not loaded yet ({e}); this read does not see them",
                dir.display()
            );
        }
        Self::open_read_only_as_is(path)
    }

    fn open_read_only_as_is(path: &Path) -> Result<Self, StoreError> {
        let config = Config::default()
            .access_mode(AccessMode::ReadOnly)
            .and_then(|c| c.enable_external_access(false))
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let conn =
            Connection::open_with_flags(path, config).map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let version: i32 = conn
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Self {
            conn,
            path: Some(path.to_path_buf()),
            writers: Arc::default(),
            recovered: None,
            trace_list: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Another connection to the same database, for a reader thread.
    pub fn reader(&self) -> Result<Store, StoreError> {
        Ok(Store {
            conn: self.conn.try_clone()?,
            path: self.path.clone(),
            writers: Arc::clone(&self.writers),
            recovered: self.recovered.clone(),
            trace_list: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Claims the store's one writer slot.
    fn claim_writer(&self) -> Result<WriterGuard, StoreError> {
        let mut claimed = self
            .writers
            .claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *claimed {
            return Err(StoreError::WriterExists(
                self.path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(":memory:")),
            ));
        }
        *claimed = true;
        Ok(WriterGuard(Arc::clone(&self.writers)))
    }

    /// Starts the store's single writer on its own connection, owned by the caller.
    /// A store has one writer at a time (so its exactly-once window and resource
    /// de-duplication see every write): while one runs, this fails with
    /// [`StoreError::WriterExists`]. Parts of one process that write side by side
    /// (collector, GPU sampler, GUI import) use [`Store::shared_writer`].
    pub fn writer(&self, cfg: WriterConfig) -> Result<Writer, StoreError> {
        let guard = self.claim_writer()?;
        let log = self
            .path
            .as_deref()
            .filter(|_| cfg.ingest_log)
            .map(ingestlog::dir_of);
        Writer::spawn(self.conn.try_clone()?, cfg, Some(guard), log)
    }

    /// The store's single writer, shared: the running one if any part of this process
    /// holds it, else a new one (with `cfg`). It stops when the last holder drops it.
    pub fn shared_writer(&self, cfg: WriterConfig) -> Result<Arc<Writer>, StoreError> {
        let mut shared = self
            .writers
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = shared.upgrade() {
            return Ok(w);
        }
        let w = Arc::new(self.writer(cfg)?);
        *shared = Arc::downgrade(&w);
        Ok(w)
    }

    /// The applied schema version.
    pub fn schema_version(&self) -> Result<i32, StoreError> {
        Ok(self.conn.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?)
    }

    /// Runs trusted SQL (our own queries) and returns the result as Arrow batches.
    pub fn query_arrow(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        Ok(stmt.query_arrow([])?.collect())
    }

    /// Runs user SQL after refusing anything that writes (see [`check_read_only`]).
    pub fn query_read_only(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
        check_read_only(sql)?;
        self.query_arrow(sql).map_err(|e| match e {
            StoreError::Duckdb(d) if d.to_string().contains("read-only mode") => {
                StoreError::WriteRefused(first_keyword(sql))
            }
            other => other,
        })
    }

    /// Runs trusted SQL that changes the store (analysis tables, maintenance).
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    /// Appends batches on the calling thread with DuckDB's appender, one transaction
    /// per batch, with no queue: the ceiling the writer is benchmarked against.
    pub fn append_direct(&self, batches: &[tailscope_model::Batch]) -> Result<(), StoreError> {
        let mut known = std::collections::HashSet::new();
        for b in batches {
            append::stamped(|stamp| {
                let mut cols = columns::Columns::new();
                cols.add(b, stamp, columns::Keep::default(), |id| known.insert(id));
                self.conn.execute_batch("BEGIN TRANSACTION")?;
                match append::append_tables(&self.conn, &mut cols) {
                    Ok(()) => Ok(self.conn.execute_batch("COMMIT")?),
                    Err(e) => {
                        // the append error is the one to report
                        let _ = self.conn.execute_batch("ROLLBACK");
                        Err(e)
                    }
                }
            })?;
        }
        Ok(())
    }

    /// Spans in the store (one count; what the polling loops ask every second).
    pub fn span_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM spans", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Spans and distinct traces (cheaper than [`Store::counts`], which also counts
    /// every attribute).
    pub fn spans_and_traces(&self) -> Result<(u64, u64), StoreError> {
        let (spans, traces): (i64, i64) = self.conn.query_row(
            "SELECT count(*), count(DISTINCT trace_id) FROM spans",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            u64::try_from(spans).unwrap_or(0),
            u64::try_from(traces).unwrap_or(0),
        ))
    }

    /// DuckDB's buffer-cache limit for this database (`512MB`, `2GB`: digits and a
    /// unit).
    pub fn set_memory_limit(&self, limit: &str) -> Result<(), StoreError> {
        if limit.is_empty() || !limit.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StoreError::Schema(format!(
                "`{limit}` is not a size such as 512MB"
            )));
        }
        self.execute_batch(&format!("SET memory_limit = '{limit}'"))
    }

    /// DuckDB's worker threads for this database.
    pub fn set_threads(&self, threads: usize) -> Result<(), StoreError> {
        self.execute_batch(&format!("SET threads = {}", threads.max(1)))
    }

    /// Writes every span row to one Parquet file (zstd), as `serve --segments` lays
    /// them out; what ingest-bench compares the appender with.
    pub fn write_spans_parquet(&self, path: &Path) -> Result<(), StoreError> {
        self.execute_batch(&format!(
            "COPY (SELECT * FROM spans) TO {} (FORMAT parquet, COMPRESSION zstd)",
            sql_lit(&path.display().to_string())
        ))
    }

    /// Row counts of the main tables.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let n = |sql: &str| -> Result<u64, StoreError> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(Counts {
            spans: n("SELECT count(*) FROM spans")?,
            traces: n("SELECT count(DISTINCT trace_id) FROM spans")?,
            span_attributes: n("SELECT count(*) FROM span_attributes")?,
            events: n("SELECT count(*) FROM events")?,
            links: n("SELECT count(*) FROM links")?,
            resources: n("SELECT count(*) FROM resources")?,
            metric_points: n("SELECT count(*) FROM metric_points")?,
            logs: n("SELECT count(*) FROM logs")?,
        })
    }

    /// The (table, column, type) list of the writer's tables as migrated, for tests.
    #[doc(hidden)]
    pub fn describe_columns(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT table_name, column_name, data_type FROM information_schema.columns
             WHERE table_schema = 'main' ORDER BY table_name, ordinal_position",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates a store at an older schema version (tests of migrations).
    #[doc(hidden)]
    pub fn create_at_version(path: &Path, version: i32) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        schema::migrate_to(&conn, version)?;
        Ok(Self {
            conn,
            path: Some(path.to_path_buf()),
            writers: Arc::default(),
            recovered: None,
            trace_list: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The writer's expected (table, column, type) list, for tests.
    #[doc(hidden)]
    pub fn expected_columns() -> Vec<(String, String, String)> {
        columns::TABLES
            .iter()
            .flat_map(|(table, spec)| {
                spec.iter().map(move |(col, ty)| {
                    (
                        (*table).to_owned(),
                        (*col).to_owned(),
                        ty.duckdb_name().to_owned(),
                    )
                })
            })
            .collect()
    }
}

/// A SQL string literal (single quotes doubled): the one escaper of the store's own SQL.
pub(crate) fn sql_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn first_keyword(sql: &str) -> String {
    readonly::statements(sql)
        .first()
        .map(|s| readonly::leading_keyword(s))
        .unwrap_or_default()
}
