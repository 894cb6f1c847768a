//! `tailscope export`: the store's spans, analysis results and metrics as Parquet
//! (written by DuckDB's own Parquet writer), a `README.md` describing every table and column, and a
//! ready-to-run `analysis.ipynb` that reproduces the report from the Parquet files.
//!
//! Every exported table comes from one spec ([`TABLES`]): the SELECT that reads it and
//! the README that describes it are both generated from it, so they cannot drift.
//! [`export`] is callable from any thread (the GUI's worker): it reports
//! [`ExportProgress`] per table and stops between tables when `cancel` is set.

use crate::AnalysisError;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tailscope_store::query::export::{ExportScope, ParquetColumn, ParquetWritten};
use tailscope_store::{Store, StoreError, CAUSE_COLUMNS};

/// Errors of an export; each names the folder, file or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export folder {0} is not empty (use --force to overwrite the tailscope files in it)")]
    NotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write Parquet {path}: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("reading table {table} from the store: {source}")]
    Query { table: String, source: StoreError },
    #[error("trace id `{0}` is not 32 hex digits")]
    BadTraceId(String),
    #[error("trace {0} is not in the store")]
    UnknownTrace(String),
    #[error("no trace starts inside the requested window")]
    NoTraces,
    #[error("the time window ends ({end}) before it starts ({start})")]
    BadWindow { start: i64, end: i64 },
    #[error("analysing the store before export: {0}")]
    Analysis(#[from] AnalysisError),
    #[error("export cancelled")]
    Cancelled,
}

/// What to export. The default exports everything.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only traces whose root starts in `[start_ns, end_ns)` (ns since the Unix
    /// epoch), and only metric points in that window.
    pub window: Option<(i64, i64)>,
    /// Only these traces (32 hex digits each).
    pub trace_ids: Option<Vec<String>>,
    /// Overwrite the files tailscope writes when the folder is not empty (other files
    /// in it are left alone).
    pub force: bool,
}

/// Progress of an export: step `step` of `steps` is `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportProgress {
    pub step: usize,
    pub steps: usize,
    pub label: String,
    /// Rows written by the step, once it is done.
    pub rows: Option<usize>,
}

impl ExportProgress {
    /// The share of the export done, 0.0–1.0.
    pub fn fraction(&self) -> f32 {
        if self.steps == 0 {
            return 1.0;
        }
        let done = self.step + usize::from(self.rows.is_some());
        (done as f32 / self.steps as f32).min(1.0)
    }
}

/// One written Parquet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    pub name: String,
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub tables: Vec<TableSummary>,
    pub notebook: PathBuf,
    pub readme: PathBuf,
    /// Traces exported.
    pub traces: usize,
    pub elapsed: Duration,
}

pub use tailscope_store::query::export::{ColumnSpec, FilterBy, TableSpec, TABLES};

/// The notebook's file name in the export folder.
pub const NOTEBOOK: &str = "analysis.ipynb";
/// The README's file name in the export folder.
pub const README: &str = "README.md";

/// Which rows the export keeps, and how the README says it.
struct Filter {
    scope: ExportScope,
    description: String,
}

fn scope_filter(scope: ExportScope, description: String) -> Filter {
    Filter { scope, description }
}

fn parquet_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.parquet"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_dir(dir: &Path, force: bool) -> Result<(), ExportError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(ExportError::NotEmpty(dir.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))
        }
        Err(e) => Err(io(dir)(e)),
    }
}

/// A failed read of `table`.
fn reading(table: &str) -> impl FnOnce(StoreError) -> ExportError + '_ {
    move |source| ExportError::Query {
        table: table.to_owned(),
        source,
    }
}

fn normalise_trace_id(id: &str) -> Result<String, ExportError> {
    let t = id.trim().to_ascii_lowercase();
    if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(ExportError::BadTraceId(id.to_owned()))
    }
}

/// Resolves the options into the selected traces and the time window of metrics.
fn select(store: &Store, opts: &ExportOptions) -> Result<(Filter, usize), ExportError> {
    let traces = store
        .analysed_trace_times()
        .map_err(reading("trace_analysis"))?;
    if opts.window.is_none() && opts.trace_ids.is_none() {
        return Ok((
            Filter {
                scope: ExportScope::default(),
                description: "everything in the store".to_owned(),
            },
            traces.len(),
        ));
    }
    if let Some((start, end)) = opts.window {
        if end < start {
            return Err(ExportError::BadWindow { start, end });
        }
    }
    let wanted: Option<BTreeSet<String>> = opts
        .trace_ids
        .as_ref()
        .map(|v| v.iter().map(|t| normalise_trace_id(t)).collect())
        .transpose()?;
    if let Some(w) = &wanted {
        let known: BTreeSet<&str> = traces.iter().map(|t| t.0.as_str()).collect();
        if let Some(missing) = w.iter().find(|t| !known.contains(t.as_str())) {
            return Err(ExportError::UnknownTrace(missing.clone()));
        }
    }
    let mut selected = Vec::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (id, start, duration) in &traces {
        let (start, end) = (*start, start + duration);
        let in_window = opts.window.is_none_or(|(a, b)| start >= a && start < b);
        let in_set = wanted.as_ref().is_none_or(|w| w.contains(id));
        if in_window && in_set {
            selected.push(id.clone());
            lo = lo.min(start);
            hi = hi.max(end);
        }
    }
    if selected.is_empty() {
        return Err(ExportError::NoTraces);
    }
    let mut description = String::new();
    if let Some((a, b)) = opts.window {
        let _ = write!(
            description,
            "traces whose root starts in [{a}, {b}) ns and metric points in that window"
        );
    }
    if let Some(w) = &wanted {
        if !description.is_empty() {
            description.push_str("; ");
        }
        let _ = write!(description, "{} requested trace(s)", w.len());
        if opts.window.is_none() {
            let _ = write!(
                description,
                ", and metric points while they ran ([{lo}, {hi}] ns)"
            );
        }
    }
    let time = opts.window.or(Some((lo, hi.saturating_add(1))));
    let scope = store
        .export_scope(Some(&selected), time)
        .map_err(reading("trace_filter"))?;
    Ok((scope_filter(scope, description), selected.len()))
}

/// The size of a written file; a failed write names the file.
fn wrote(
    path: &Path,
    table: &str,
    done: Result<ParquetWritten, StoreError>,
) -> Result<(ParquetWritten, u64), ExportError> {
    let w = done.map_err(|e| match e {
        StoreError::Duckdb(d) => ExportError::Parquet {
            path: path.to_path_buf(),
            message: d.to_string(),
        },
        source => ExportError::Query {
            table: table.to_owned(),
            source,
        },
    })?;
    Ok((w, std::fs::metadata(path).map_err(io(path))?.len()))
}

/// One written table and what the README says about it.
struct Written {
    summary: TableSummary,
    about: String,
    columns: Vec<(String, String, String)>,
}

/// Writes the export of `store` into `dir` (see the module docs). The analysis results
/// are brought up to date first.
pub fn export(
    store: &Store,
    dir: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(ExportProgress),
    cancel: &AtomicBool,
) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    check_dir(dir, opts.force)?;
    let replays = store
        .replay_tables()
        .map_err(reading("information_schema.tables"))?;
    let steps = 1 + TABLES.len() + replays.len() + 2;
    let mut step = 0;
    let mut report = |step: usize, label: &str, rows: Option<usize>| {
        progress(ExportProgress {
            step,
            steps,
            label: label.to_owned(),
            rows,
        });
    };
    report(step, "analysing traces", None);
    // the export reads the result tables; the report is not needed
    crate::update(store, &|_| {})?;
    let (filter, traces) = select(store, opts)?;
    report(step, "analysing traces", Some(traces));
    let mut written: Vec<Written> = Vec::new();
    let check_cancel = |written: &[Written]| -> Result<(), ExportError> {
        if cancel.load(Ordering::Relaxed) {
            for w in written {
                // best effort: the error that matters is the cancellation
                let _ = std::fs::remove_file(&w.summary.path);
            }
            return Err(ExportError::Cancelled);
        }
        Ok(())
    };
    for spec in TABLES {
        step += 1;
        check_cancel(&written)?;
        report(step, spec.name, None);
        let path = parquet_path(dir, spec.name);
        let (w, bytes) = wrote(
            &path,
            spec.name,
            store.export_parquet(spec, &filter.scope, &path),
        )?;
        let rows = w.rows;
        written.push(Written {
            summary: TableSummary {
                name: spec.name.to_owned(),
                path,
                rows,
                bytes,
            },
            about: spec.about.to_owned(),
            columns: spec
                .columns
                .iter()
                .map(|c| (c.name.to_owned(), type_of(&w, c.name), c.about.to_owned()))
                .collect(),
        });
        report(step, spec.name, Some(rows));
    }
    for table in &replays {
        step += 1;
        check_cancel(&written)?;
        report(step, table, None);
        let path = parquet_path(dir, table);
        let (w, bytes) = wrote(
            &path,
            table,
            store.replay_parquet(table, &filter.scope, &path),
        )?;
        let rows = w.rows;
        written.push(Written {
            summary: TableSummary {
                name: table.clone(),
                path,
                rows,
                bytes,
            },
            about: "Replay results (A/B replay through the embedded engine), as stored.".to_owned(),
            columns: w
                .columns
                .into_iter()
                .map(|(n, t)| (n, t, String::new()))
                .collect(),
        });
        report(step, table, Some(rows));
    }
    step += 1;
    check_cancel(&written)?;
    report(step, WHATIF_TABLE, None);
    written.push(whatif_ranking(store, dir)?);
    report(
        step,
        WHATIF_TABLE,
        Some(written.last().map_or(0, |w| w.summary.rows)),
    );
    step += 1;
    check_cancel(&written)?;
    report(step, "README and notebook", None);
    let readme = dir.join(README);
    std::fs::write(&readme, readme_text(&written, &filter.description, traces))
        .map_err(io(&readme))?;
    let notebook = dir.join(NOTEBOOK);
    let nb = crate::notebook::notebook(&filter.description);
    std::fs::write(&notebook, nb).map_err(io(&notebook))?;
    report(step, "README and notebook", Some(0));
    Ok(ExportSummary {
        dir: dir.to_path_buf(),
        tables: written.into_iter().map(|w| w.summary).collect(),
        notebook,
        readme,
        traces,
        elapsed: started.elapsed(),
    })
}

/// A written column's DuckDB type, empty when the column is not there.
fn type_of(w: &ParquetWritten, column: &str) -> String {
    w.columns
        .iter()
        .find(|(n, _)| n == column)
        .map_or_else(String::new, |(_, t)| t.clone())
}

/// The exported `whatif --rank` table.
pub const WHATIF_TABLE: &str = "whatif_ranking";

/// `whatif --rank` over every analysed trace of the store, as a Parquet table.
fn whatif_ranking(store: &Store, dir: &Path) -> Result<Written, ExportError> {
    let ranked = crate::whatif::rank(store, crate::Options::default())?;
    let path = parquet_path(dir, WHATIF_TABLE);
    let ints = |name, f: fn(&crate::whatif::Ranked) -> i64| {
        ParquetColumn::Int(name, ranked.iter().map(f).collect())
    };
    let columns = [
        ParquetColumn::Text(
            "kind",
            ranked.iter().map(|r| r.target.kind.as_str()).collect(),
        ),
        ParquetColumn::Text(
            "name",
            ranked.iter().map(|r| r.target.name.as_str()).collect(),
        ),
        ints("p_change_ns", |r| r.p_change_ns),
        ints("p_ci_low_ns", |r| r.p_ci_ns.0),
        ints("p_ci_high_ns", |r| r.p_ci_ns.1),
    ];
    let (w, bytes) = wrote(&path, WHATIF_TABLE, store.rows_to_parquet(&columns, &path))?;
    let about = [
        (
            "kind",
            "what was changed: op (an operation: service · span name)",
        ),
        ("name", "the operation"),
        (
            "p_change_ns",
            "the p99's change if this operation alone were 50% faster (negative: faster)",
        ),
        (
            "p_ci_low_ns",
            "95% interval of that change, low end (paired bootstrap over traces)",
        ),
        ("p_ci_high_ns", "95% interval of that change, high end"),
    ];
    Ok(Written {
        summary: TableSummary {
            name: WHATIF_TABLE.to_owned(),
            path,
            rows: w.rows,
            bytes,
        },
        about: "`tailscope whatif --rank` over every analysed trace of the store: the operations with the most critical-path time in the p99 tail, each made 50% faster alone, largest reduction first.".to_owned(),
        columns: about
            .iter()
            .map(|(n, a)| ((*n).to_owned(), type_of(&w, n), (*a).to_owned()))
            .collect(),
    })
}

fn readme_text(written: &[Written], filter: &str, traces: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# tailscope export\n");
    let _ = writeln!(
        o,
        "Written by tailscope {} ({traces} traces; filter: {filter}). Times are \
         nanoseconds since the Unix epoch and durations nanoseconds, exactly as in OTLP. \
         Open `{NOTEBOOK}` in Jupyter (pip packages: polars, duckdb, pyarrow, matplotlib) \
         to reproduce the report step by step; it also writes `notebook_results.json`.\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        o,
        "Causes (`cause` in critical_path_sections, `<cause>_ns` in trace_analysis): {}.\n",
        CAUSE_COLUMNS.join(", ")
    );
    let _ = writeln!(o, "| file | rows | bytes |\n|---|---:|---:|");
    for w in written {
        let _ = writeln!(
            o,
            "| `{}.parquet` | {} | {} |",
            w.summary.name, w.summary.rows, w.summary.bytes
        );
    }
    for w in written {
        let _ = writeln!(
            o,
            "\n## {}.parquet\n\n{}\n\n| column | type | meaning |\n|---|---|---|",
            w.summary.name, w.about
        );
        for (name, ty, about) in &w.columns {
            let _ = writeln!(o, "| `{name}` | {ty} | {about} |");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_named_once_and_described() {
        for t in TABLES {
            let mut seen = BTreeSet::new();
            for c in t.columns {
                assert!(seen.insert(c.name), "{}.{} twice", t.name, c.name);
                assert!(!c.about.is_empty(), "{}.{} undescribed", t.name, c.name);
            }
        }
        let ta = TABLES.iter().find(|t| t.name == "trace_analysis").unwrap();
        for cause in CAUSE_COLUMNS {
            let col = format!("{cause}_ns");
            assert!(ta.columns.iter().any(|c| c.name == col), "{col}");
        }
    }

    #[test]
    fn trace_ids_are_checked() {
        assert_eq!(
            normalise_trace_id(" 5B8EFFF798038103D269B633813FC60C").unwrap(),
            "5b8efff798038103d269b633813fc60c"
        );
        assert!(matches!(
            normalise_trace_id("5b8e' OR 1=1 --"),
            Err(ExportError::BadTraceId(_))
        ));
    }

    #[test]
    fn progress_fraction() {
        let p = |step, rows| ExportProgress {
            step,
            steps: 4,
            label: String::new(),
            rows,
        };
        assert!((p(0, None).fraction() - 0.0).abs() < f32::EPSILON);
        assert!((p(1, Some(3)).fraction() - 0.5).abs() < f32::EPSILON);
        assert!((p(3, Some(0)).fraction() - 1.0).abs() < f32::EPSILON);
    }
}
