//! The store as immutable Parquet segments: the layout other engines read in place.
//!
//! ```text
//! DIR/
//!   spans/publisher=3f9c0e1d2b4a6c8e/ingest_date=2026-11-27/seg-000000000000-000000122879.parquet
//!   spans/publisher=3f9c0e1d2b4a6c8e/ingest_date=2026-11-27/seg-000000122880-000000130001.parquet
//!   spans/publisher=9a1b.../ingest_date=.../seg-....parquet      (another machine's store)
//!   events/publisher=.../ingest_date=.../seg-....parquet
//!   links/ resources/ resource_attributes/ metric_points/ logs/
//! ```
//!
//! Each store publishes under its own `publisher=` folder (a hash of its host name
//! and absolute path), so several machines (or stores) can publish into one tree:
//! row ids, and so file names, repeat across stores but never within one folder,
//! and each publisher resumes after its own highest row id.
//!
//! Each data table (append-only: rows are never updated or deleted) is cut into
//! segments by DuckDB row id: a segment holds the rows `FROM..=TO` of its name,
//! committed before it was written, in the table's own columns (schema.rs), zstd.
//! Segments are written to a hidden temporary name, synced and renamed into place, so
//! a reader never sees half a file, and publishing again continues after the highest
//! `TO` found on disk (a crash between two tables only delays the second). The folder
//! is Hive-partitioned by the UTC day the segment was written, so DuckDB, Polars,
//! Spark, Trino or ClickHouse read it with a glob (`DIR/spans/*/*/*.parquet`,
//! `hive_partitioning`) and prune by day; within a segment rows are in commit order.
//! Analysis results are not published: [`Store::open_segments`] rebuilds a store from
//! the segments, and analysis runs over it as over any store.

use crate::{Store, StoreError};
use std::path::{Path, PathBuf};

/// The append-only tables published as segments.
pub const SEGMENT_TABLES: &[&str] = &[
    "resources",
    "resource_attributes",
    "spans",
    "events",
    "links",
    "metric_points",
    "logs",
];

/// What one publication wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    pub files: usize,
    pub rows: u64,
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::CreateDir {
        path: path.to_path_buf(),
        source,
    }
}

/// The `(from, to)` row ids of a segment file name.
fn range_of(name: &str) -> Option<(i64, i64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".parquet")?;
    let (a, b) = rest.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The segment files under a folder (its day folders, or its publishers' day
/// folders), and the highest row id they hold; leftover temporary files of an
/// interrupted publication are removed.
fn segment_files(table_dir: &Path) -> (Vec<PathBuf>, Option<i64>) {
    let mut files = Vec::new();
    let mut top = None;
    let Ok(subs) = std::fs::read_dir(table_dir) else {
        return (files, top);
    };
    let mut days = Vec::new();
    for sub in subs.flatten() {
        let path = sub.path();
        if sub.file_name().to_string_lossy().starts_with("publisher=") {
            days.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|d| d.path()),
            );
        } else {
            days.push(path);
        }
    }
    for day in days {
        let Ok(entries) = std::fs::read_dir(&day) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let tmp = Path::new(&name)
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("tmp"));
            if name.starts_with('.') && tmp {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            if let Some((_, to)) = range_of(&name) {
                top = top.max(Some(to));
                files.push(e.path());
            }
        }
    }
    files.sort();
    (files, top)
}

/// This store's publisher folder name: a hash of the host name and the store's
/// absolute path, the same at every start.
fn publisher(store: &Store) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let path = store
        .path
        .as_deref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
        .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
    let hash = format!("{}\0{path}", host.trim())
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("publisher={hash:016x}")
}

fn sql_path(p: &Path) -> String {
    crate::sql_lit(&p.display().to_string())
}

impl Store {
    /// Writes the rows committed since the last publication into `dir` as Parquet
    /// segments (see the module docs). Safe to call again at any time; a call that
    /// finds nothing new writes nothing.
    pub fn publish_segments(&self, dir: &Path) -> Result<Published, StoreError> {
        let mut out = Published::default();
        let day = tailscope_model::time::utc_date(crate::append::now_ns());
        let me = publisher(self);
        for table in SEGMENT_TABLES {
            let table_dir = dir.join(table).join(&me);
            let (_, done) = segment_files(&table_dir);
            let top: Option<i64> =
                self.conn
                    .query_row(&format!("SELECT max(rowid) FROM {table}"), [], |r| r.get(0))?;
            let (Some(top), from) = (top, done.map_or(0, |d| d + 1)) else {
                continue;
            };
            if top < from {
                continue;
            }
            let part = table_dir.join(format!("ingest_date={day}"));
            std::fs::create_dir_all(&part).map_err(|e| io_error(&part, e))?;
            let name = format!("seg-{from:012}-{top:012}.parquet");
            let tmp = part.join(format!(".{name}.tmp"));
            let rows: i64 = self.conn.query_row(
                &format!(
                    "COPY (SELECT * FROM {table} WHERE rowid BETWEEN {from} AND {top}) TO {} (FORMAT parquet, COMPRESSION zstd)",
                    sql_path(&tmp)
                ),
                [],
                |r| r.get(0),
            )?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_error(&tmp, e))?;
            let target = part.join(&name);
            std::fs::rename(&tmp, &target).map_err(|e| io_error(&target, e))?;
            if let Ok(d) = std::fs::File::open(&part) {
                let _ = d.sync_all();
            }
            out.files += 1;
            out.rows += u64::try_from(rows).unwrap_or(0);
        }
        Ok(out)
    }

    /// A store over a folder of segments (written by [`Store::publish_segments`],
    /// possibly by several machines into one folder tree, or copied down from a
    /// bucket), to query and analyse as any store. The big tables (spans, events,
    /// links, metric points, logs) are read in place: each is a view over its files,
    /// so a folder larger than memory is analysed a chunk at a time, as a store is.
    /// Only the resources (small, and deduplicated across publishers) and the analysis
    /// results live in memory.
    ///
    /// A view has no row ids of its own: its `rowid` column is the file's place in
    /// the sorted file list (publisher, day, first row) times 2^32 plus the row's
    /// place in its file, so rows keep the order they were committed in and reads by
    /// stretches of rows work as over a table. (DuckDB filters that column after
    /// reading, so such a read decodes more than the stretch; `SELECT *` over these
    /// tables shows the column.)
    pub fn open_segments(dir: &Path) -> Result<Store, StoreError> {
        if !dir.join("spans").is_dir() {
            return Err(StoreError::Schema(format!(
                "{} is not a folder of tailscope segments (it has no spans/ folder)",
                dir.display()
            )));
        }
        let store = Store::open_in_memory()?;
        for table in SEGMENT_TABLES {
            let (files, _) = segment_files(&dir.join(table));
            if files.is_empty() {
                continue;
            }
            if table.starts_with("resource") {
                // the files hold the table's columns; the folders' day and publisher
                // are not columns of it. A resource two publishers both saw is kept once.
                store.conn.execute_batch(&format!(
                    "INSERT INTO {table} BY NAME SELECT DISTINCT * FROM {}",
                    read_parquet(&files, "")
                ))?;
                continue;
            }
            store
                .conn
                .execute_batch(&view_over_files(&store.conn, table, &files)?)?;
        }
        Ok(store)
    }
}

impl Store {
    /// A store with a segments folder's tables copied into memory, as
    /// [`Store::open_segments`] built it before it read the files in place: the
    /// "before" of `analysis-bench --db DIR --segments-copied`.
    pub fn open_segments_copied(dir: &Path) -> Result<Store, StoreError> {
        let store = Store::open_in_memory()?;
        for table in SEGMENT_TABLES {
            let (files, _) = segment_files(&dir.join(table));
            if !files.is_empty() {
                // a resource two publishers both saw is kept once
                let distinct = if table.starts_with("resource") {
                    "DISTINCT "
                } else {
                    ""
                };
                store.conn.execute_batch(&format!(
                    "INSERT INTO {table} BY NAME SELECT {distinct}* FROM {}",
                    read_parquet(&files, "")
                ))?;
            }
        }
        Ok(store)
    }
}

/// `read_parquet` over `files` (the folders' day and publisher are not columns; files
/// of older schemas lack some columns), with `extra` options.
fn read_parquet(files: &[PathBuf], extra: &str) -> String {
    let list: Vec<String> = files.iter().map(|f| sql_path(f)).collect();
    format!(
        "read_parquet([{}], hive_partitioning = false, union_by_name = true{extra})",
        list.join(", ")
    )
}

/// The SQL that replaces `table` by a view over `files`: the table's columns in its
/// order, NULL where no file has one (files written by an older schema), plus `rowid`
/// (see [`Store::open_segments`]).
fn view_over_files(
    conn: &duckdb::Connection,
    table: &str,
    files: &[PathBuf],
) -> Result<String, StoreError> {
    // file index << 32 stays within a BIGINT
    if i32::try_from(files.len()).is_err() {
        return Err(StoreError::Schema(format!(
            "{} segment files of {table}: too many",
            files.len()
        )));
    }
    let mut stmt = conn.prepare(
        "SELECT column_name, data_type FROM duckdb_columns()
         WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
    )?;
    let columns: Vec<(String, String)> = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(&format!(
        "DESCRIBE SELECT * FROM {}",
        read_parquet(files, "")
    ))?;
    let in_files: std::collections::HashSet<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    let select: Vec<String> = columns
        .iter()
        .map(|(name, ty)| {
            if in_files.contains(name) {
                format!("\"{name}\"")
            } else {
                format!("NULL::{ty} AS \"{name}\"")
            }
        })
        .collect();
    Ok(format!(
        "DROP TABLE {table};
         CREATE VIEW {table} AS
         SELECT {}, (file_index::BIGINT << 32) + file_row_number AS rowid FROM {};",
        select.join(", "),
        read_parquet(files, ", file_row_number = true")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(
            range_of("seg-000000000010-000000000020.parquet"),
            Some((10, 20))
        );
        assert_eq!(range_of(".seg-1-2.parquet.tmp"), None);
    }
}
