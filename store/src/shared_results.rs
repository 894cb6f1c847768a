//! tailscope's analysis results kept in ClickHouse beside the exporter's tables, so
//! that several desktops share them and the next run over a ClickHouse source is
//! incremental.
//!
//! Each result table of the local store has a twin `tailscope_<table>` with the same
//! columns and a `_run` (the run that wrote the row). `tailscope_trace_analysis` is a
//! ReplacingMergeTree on `trace_id` (one row per trace: the latest run's); the rows of
//! the other per-trace tables count only where their `(trace_id, _run)` is that row's,
//! so a re-analysed trace's older sections and findings drop out without deletes, and
//! two desktops writing the same trace agree on the latest. `tailscope_source_runs`
//! records, per run, how far into `otel_traces` it had read.

use crate::clickhouse::{ClickHouse, ClickHouseError};
use crate::results::{append, batch};
use crate::rowbinary::{Reader, Truncated, Writer};
use crate::{Store, StoreError};
use duckdb::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder,
};
use duckdb::arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use std::sync::Arc;

/// The per-trace result tables, the trace table first.
const PER_TRACE: [&str; 4] = [
    "trace_analysis",
    "critical_path_sections",
    "span_analysis",
    "findings",
];

/// The columns of `tailscope_llm_calls`: each analysed trace's innermost LLM client
/// calls as `diff` reads them ([`crate::query::innermost_calls_sql`]), kept so that
/// `diff` reads a period's calls in ClickHouse rather than pulling their spans.
fn call_columns() -> Vec<Col> {
    let col = Col::new;
    let mut cols = vec![
        col("trace_id", Ty::Str, false),
        col("start_ns", Ty::I64, false),
        col("model", Ty::Str, false),
        col("server", Ty::Str, false),
        col("duration_ns", Ty::I64, false),
    ];
    for name in [
        "ttfc",
        "output_tokens",
        "input_tokens",
        "cache_read",
        "events",
    ] {
        cols.push(col(name, Ty::I64, true));
    }
    cols.push(col("stream", Ty::Bool, false));
    cols.push(col("srv_ttft", Ty::I64, true));
    cols.push(col("srv_decode", Ty::I64, true));
    cols
}

/// A result table column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    I64,
    I32,
    Bool,
    F64,
}

#[derive(Debug, Clone)]
struct Col {
    name: String,
    ty: Ty,
    nullable: bool,
}

impl Col {
    fn new(name: &str, ty: Ty, nullable: bool) -> Self {
        Self {
            name: name.to_owned(),
            ty,
            nullable,
        }
    }

    fn clickhouse(&self) -> String {
        let t = match self.ty {
            Ty::Str => "String",
            Ty::I64 => "Int64",
            Ty::I32 => "Int32",
            Ty::Bool => "Bool",
            Ty::F64 => "Float64",
        };
        if self.nullable {
            format!("`{}` Nullable({t})", self.name)
        } else {
            format!("`{}` {t}", self.name)
        }
    }
}

/// The columns of a local result table, in order.
fn columns(store: &Store, table: &str) -> Result<Vec<Col>, StoreError> {
    let mut stmt = store.conn.prepare(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns
         WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
    )?;
    let rows = stmt.query_map([table], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, ty, nullable) = row?;
        let ty = match ty.as_str() {
            "VARCHAR" => Ty::Str,
            "BIGINT" => Ty::I64,
            "INTEGER" => Ty::I32,
            "BOOLEAN" => Ty::Bool,
            "DOUBLE" => Ty::F64,
            other => {
                return Err(StoreError::Schema(format!(
                    "{table}.{name} has type {other}, which the shared results do not carry"
                )))
            }
        };
        // the views of schema v10 report every column nullable; the shared tables keep
        // the columns of the tables they replaced (ClickHouse sorts by the ids)
        let not_null = match table {
            "critical_path_sections" => {
                ["trace_id", "span_id", "start_ns", "end_ns", "cause"].contains(&name.as_str())
            }
            "span_analysis" => [
                "trace_id",
                "span_id",
                "total_ns",
                "self_ns",
                "critical_ns",
                "skew_ns",
                "orphan",
            ]
            .contains(&name.as_str()),
            _ => false,
        };
        let nullable = nullable == "YES" && !not_null;
        out.push(Col { name, ty, nullable });
    }
    Ok(out)
}

/// The column list quoted for ClickHouse.
fn quoted(cols: &[Col]) -> String {
    cols.iter()
        .map(|c| format!("`{}`", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The column list quoted for DuckDB.
fn local(cols: &[Col]) -> String {
    cols.iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns of `tailscope_trace_tokens`: each analysed trace's tokens as the
/// per-tenant view counts them ([`crate::query::trace_tokens_sql`]), kept because a
/// later run may not pull its spans again.
fn token_columns() -> Vec<Col> {
    vec![
        Col::new("trace_id", Ty::Str, false),
        Col::new("input_tokens", Ty::I64, false),
        Col::new("output_tokens", Ty::I64, false),
    ]
}

/// The name of a run's kept trace ids, before its run number.
const KEPT: &str = "tailscope_pull_";

/// What a command reads of the traces an earlier run analysed (their results are
/// the shared ones), least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Earlier {
    /// None of their results, only the latest run's fits (`compare` and `diff`, which
    /// read their cohorts, values and periods in ClickHouse).
    Nothing,
    /// Their per-trace results and findings (the text report).
    Results,
    /// Also their critical-path sections (the JSON report).
    Sections,
    /// Also their spans and per-span times (a trace's detail, `whatif`, `query`,
    /// `export`, `replay --list`).
    Everything,
}

/// tailscope's result tables in one ClickHouse database.
pub struct SharedResults<'a> {
    ch: &'a ClickHouse,
    db: String,
}

/// What a run found in the shared results.
#[derive(Debug, Default, Clone, Copy)]
pub struct Shared {
    /// Traces with results.
    pub traces: u64,
    /// How far (span start, ns) the last run had read `otel_traces`.
    pub read_upto_ns: Option<i64>,
}

impl<'a> SharedResults<'a> {
    /// The tables of an earlier [`SharedResults::open`] (nothing is created).
    pub fn existing(ch: &'a ClickHouse) -> Self {
        Self {
            ch,
            db: ch.url.database.clone(),
        }
    }

    /// Creates the tables where missing (their columns follow the local store's).
    pub fn open(ch: &'a ClickHouse, store: &Store) -> Result<Self, StoreError> {
        let db = ch.url.database.clone();
        let s = Self { ch, db };
        // a twin of `cols` with the run that wrote each row
        let create = |table: &str, cols: &[Col], engine: &str| {
            let body: Vec<String> = cols.iter().map(Col::clickhouse).collect();
            ch.execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} (`_run` UInt64, {}) ENGINE = {engine}",
                s.name(table),
                body.join(", ")
            ))
        };
        for table in PER_TRACE {
            let engine = if table == "trace_analysis" {
                "ReplacingMergeTree(_run) ORDER BY (trace_id)"
            } else {
                "MergeTree ORDER BY (trace_id, _run)"
            };
            create(table, &columns(store, table)?, engine)?;
        }
        create(
            "analysis_runs",
            &columns(store, "analysis_runs")?,
            "MergeTree ORDER BY (_run)",
        )?;
        ch.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (`_run` UInt64, read_upto_ns Int64, traces UInt64, spans UInt64, finished DateTime64(9)) ENGINE = MergeTree ORDER BY (_run)",
            s.name("source_runs")
        ))?;
        create(
            "trace_tokens",
            &token_columns(),
            "MergeTree ORDER BY (trace_id, _run)",
        )?;
        create(
            "llm_calls",
            &call_columns(),
            "MergeTree ORDER BY (start_ns, trace_id, _run)",
        )?;
        Ok(s)
    }

    /// The shared table of a local result table (`span_analysis`), as SQL names it.
    pub fn name(&self, table: &str) -> String {
        format!("`{}`.`tailscope_{table}`", self.db)
    }

    /// Keeps the ids of the traces in `table` that meet `pred` in a table of run `run`
    /// (`tailscope_pull_RUN`), so that each later query tests membership instead of
    /// evaluating `pred` over the whole table again; the predicate that does. Kept
    /// tables of runs over an hour old (left by a run that died) are dropped first.
    pub fn keep_traces(&self, table: &str, pred: &str, run: u64) -> Result<String, StoreError> {
        let out = self.ch.query(&format!(
            "SELECT name FROM system.tables WHERE database = '{}' AND startsWith(name, '{KEPT}') FORMAT TabSeparated",
            self.db.replace('\'', "")
        ))?;
        let hour_ago = run.saturating_sub(3_600_000_000_000);
        for name in String::from_utf8_lossy(&out).lines() {
            if name[KEPT.len()..]
                .parse::<u64>()
                .is_ok_and(|r| r < hour_ago)
            {
                self.ch
                    .execute(&format!("DROP TABLE IF EXISTS `{}`.`{name}`", self.db))?;
            }
        }
        let kept = self.kept(run);
        self.ch.execute(&format!(
            "CREATE TABLE {kept} ENGINE = MergeTree ORDER BY TraceId AS SELECT DISTINCT TraceId FROM {table} WHERE {pred}"
        ))?;
        Ok(format!("TraceId IN {kept}"))
    }

    /// Drops run `run`'s kept trace ids.
    pub fn drop_kept(&self, run: u64) -> Result<(), StoreError> {
        Ok(self
            .ch
            .execute(&format!("DROP TABLE IF EXISTS {}", self.kept(run)))?)
    }

    fn kept(&self, run: u64) -> String {
        format!("`{}`.`{KEPT}{run}`", self.db)
    }

    /// What the earlier runs left.
    pub fn state(&self) -> Result<Shared, StoreError> {
        let out = self.ch.query(&format!(
            // a scalar subquery is Nullable: ifNull makes each a plain number
            "SELECT toUInt64(ifNull((SELECT count() FROM {} FINAL), 0)), toInt64(ifNull((SELECT max(read_upto_ns) FROM {}), 0)), \
             toUInt64(ifNull((SELECT count() FROM {}), 0)) FORMAT RowBinary",
            self.name("trace_analysis"),
            self.name("source_runs"),
            self.name("source_runs"),
        ))?;
        let mut r = Reader::new(&out);
        let bad = |e: Truncated| ClickHouseError::Format(e.to_string());
        let traces = r.u64().map_err(bad)?;
        let upto = r.i64().map_err(bad)?;
        let runs = r.u64().map_err(bad)?;
        Ok(Shared {
            traces,
            read_upto_ns: (runs > 0).then_some(upto),
        })
    }

    /// The current `tailscope_trace_analysis` rows (one per trace).
    pub fn current_traces_sql(&self) -> String {
        format!("SELECT * FROM {} FINAL", self.name("trace_analysis"))
    }

    /// The SQL set of trace ids with results.
    pub fn analysed_traces_sql(&self) -> String {
        format!("SELECT trace_id FROM {}", self.name("trace_analysis"))
    }

    /// Loads the current result rows `earlier` asks for into the (empty) local result
    /// tables, and the latest run (its fits and watermark); the traces loaded.
    pub fn load_into(&self, store: &Store, earlier: Earlier) -> Result<u64, StoreError> {
        let mut traces = 0;
        let current = format!(
            "SELECT trace_id, _run FROM {} FINAL",
            self.name("trace_analysis")
        );
        for table in PER_TRACE {
            let wanted = match table {
                "critical_path_sections" => earlier >= Earlier::Sections,
                "span_analysis" => earlier >= Earlier::Everything,
                _ => earlier >= Earlier::Results,
            };
            if !wanted {
                continue;
            }
            let cols = columns(store, table)?;
            let sql = if table == "trace_analysis" {
                format!("SELECT {} FROM {} FINAL", quoted(&cols), self.name(table))
            } else {
                format!(
                    "SELECT {} FROM {} WHERE (trace_id, _run) IN ({current})",
                    quoted(&cols),
                    self.name(table)
                )
            };
            let n = self.load_table(store, table, &cols, &sql)?;
            if table == "trace_analysis" {
                traces = n;
            }
        }
        let cols = columns(store, "analysis_runs")?;
        let sql = format!(
            "SELECT {} FROM {} ORDER BY _run DESC LIMIT 1",
            quoted(&cols),
            self.name("analysis_runs")
        );
        self.load_table(store, "analysis_runs", &cols, &sql)?;
        Ok(traces)
    }

    fn load_table(
        &self,
        store: &Store,
        table: &str,
        cols: &[Col],
        sql: &str,
    ) -> Result<u64, StoreError> {
        let out = self.ch.query(&format!("{sql} FORMAT RowBinary"))?;
        let arrays = decode(&out, cols).map_err(|e| ClickHouseError::Format(e.to_string()))?;
        let n = arrays.first().map_or(0, Array::len);
        // the sections and span rows are views (schema v10) over compact tables: the
        // rows go through a staging table with the view's columns
        let into = match table {
            "critical_path_sections" => Some(concat!(
                "INSERT INTO path_sections ",
                crate::schema::sections_from_text!("shared_staging")
            )),
            "span_analysis" => Some(concat!(
                "INSERT INTO span_times ",
                crate::schema::spans_from_text!("shared_staging")
            )),
            _ => None,
        };
        match into {
            None => append(&store.conn, table, batch(arrays)?)?,
            Some(insert) => {
                store.conn.execute_batch(&format!(
                    "CREATE OR REPLACE TEMP TABLE shared_staging AS SELECT * FROM {table} LIMIT 0"
                ))?;
                append(&store.conn, "shared_staging", batch(arrays)?)?;
                store
                    .conn
                    .execute_batch(&format!("{insert}; DROP TABLE shared_staging;"))?;
            }
        }
        Ok(n as u64)
    }

    /// Writes the local results of the traces `ids` (a SQL set over the local store)
    /// and the latest local run under `run`, and records how far the source was read.
    pub fn save_from(
        &self,
        store: &Store,
        ids: &str,
        run: u64,
        read_upto_ns: i64,
        spans: u64,
    ) -> Result<u64, StoreError> {
        let mut traces = 0;
        for table in PER_TRACE {
            let cols = columns(store, table)?;
            let sql = format!(
                "SELECT {} FROM {table} WHERE trace_id IN ({ids})",
                local(&cols)
            );
            let n = self.save_table(store, table, &cols, &sql, run)?;
            if table == "trace_analysis" {
                traces = n;
            }
        }
        let cols = columns(store, "analysis_runs")?;
        let sql = format!(
            "SELECT {} FROM analysis_runs ORDER BY finished_ns DESC LIMIT 1",
            local(&cols)
        );
        self.save_table(store, "analysis_runs", &cols, &sql, run)?;
        let sql = crate::query::trace_tokens_sql(Some(ids));
        self.save_table(store, "trace_tokens", &token_columns(), &sql, run)?;
        let sql = crate::query::innermost_calls_sql(&format!("trace_id IN ({ids})"));
        self.save_table(store, "llm_calls", &call_columns(), &sql, run)?;
        let mut w = Writer::default();
        w.u64(run);
        w.i64(read_upto_ns);
        w.u64(traces);
        w.u64(spans);
        w.i64(crate::append::now_ns());
        self.ch.insert(
            &format!("INSERT INTO {} FORMAT RowBinary", self.name("source_runs")),
            &w.buf,
        )?;
        Ok(traces)
    }

    /// The tokens of the traces with current results (`trace_id, input_tokens,
    /// output_tokens`; a trace without LLM calls has no row).
    pub fn current_tokens_sql(&self) -> String {
        format!(
            "SELECT trace_id, input_tokens, output_tokens FROM {} WHERE (trace_id, _run) IN \
             (SELECT trace_id, _run FROM {} FINAL)",
            self.name("trace_tokens"),
            self.name("trace_analysis")
        )
    }

    fn save_table(
        &self,
        store: &Store,
        table: &str,
        cols: &[Col],
        sql: &str,
        run: u64,
    ) -> Result<u64, StoreError> {
        let mut rows = 0u64;
        let mut w = Writer::default();
        for b in store.query_arrow(sql)? {
            for i in 0..b.num_rows() {
                w.u64(run);
                for (c, a) in cols.iter().zip(b.columns()) {
                    encode(&mut w, c, a, i)?;
                }
            }
            rows += b.num_rows() as u64;
        }
        if rows > 0 {
            self.ch.insert(
                &format!(
                    "INSERT INTO {} (`_run`, {}) FORMAT RowBinary",
                    self.name(table),
                    quoted(cols)
                ),
                &w.buf,
            )?;
        }
        Ok(rows)
    }
}

/// One value of a local result column as `RowBinary` (`Nullable`: a null flag first).
fn encode(w: &mut Writer, c: &Col, a: &ArrayRef, i: usize) -> Result<(), StoreError> {
    if c.nullable {
        w.u8(u8::from(a.is_null(i)));
        if a.is_null(i) {
            return Ok(());
        }
    }
    let bad = || StoreError::Schema(format!("column {} is not {:?}", c.name, c.ty));
    match c.ty {
        Ty::Str => w.str(a.as_string_opt::<i32>().ok_or_else(bad)?.value(i)),
        Ty::I64 => w.i64(a.as_primitive_opt::<Int64Type>().ok_or_else(bad)?.value(i)),
        Ty::I32 => w.i32(a.as_primitive_opt::<Int32Type>().ok_or_else(bad)?.value(i)),
        Ty::F64 => w.f64(
            a.as_primitive_opt::<Float64Type>()
                .ok_or_else(bad)?
                .value(i),
        ),
        Ty::Bool => w.u8(u8::from(a.as_boolean_opt().ok_or_else(bad)?.value(i))),
    }
    Ok(())
}

/// Rows of `cols` in `RowBinary` as Arrow columns of the local table's types.
fn decode(buf: &[u8], cols: &[Col]) -> Result<Vec<ArrayRef>, Truncated> {
    enum B {
        S(StringBuilder),
        L(Int64Builder),
        I(Int32Builder),
        F(Float64Builder),
        T(BooleanBuilder),
    }
    let mut builders: Vec<B> = cols
        .iter()
        .map(|c| match c.ty {
            Ty::Str => B::S(StringBuilder::new()),
            Ty::I64 => B::L(Int64Builder::new()),
            Ty::I32 => B::I(Int32Builder::new()),
            Ty::F64 => B::F(Float64Builder::new()),
            Ty::Bool => B::T(BooleanBuilder::new()),
        })
        .collect();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        for (c, b) in cols.iter().zip(builders.iter_mut()) {
            let null = c.nullable && r.u8()? == 1;
            match b {
                B::S(b) if null => b.append_null(),
                B::S(b) => b.append_value(r.str()?),
                B::L(b) if null => b.append_null(),
                B::L(b) => b.append_value(r.i64()?),
                B::I(b) if null => b.append_null(),
                B::I(b) => b.append_value(r.i32()?),
                B::F(b) if null => b.append_null(),
                B::F(b) => b.append_value(r.f64()?),
                B::T(b) if null => b.append_null(),
                B::T(b) => b.append_value(r.u8()? != 0),
            }
        }
    }
    Ok(builders
        .into_iter()
        .map(|b| -> ArrayRef {
            match b {
                B::S(mut b) => Arc::new(b.finish()),
                B::L(mut b) => Arc::new(b.finish()),
                B::I(mut b) => Arc::new(b.finish()),
                B::F(mut b) => Arc::new(b.finish()),
                B::T(mut b) => Arc::new(b.finish()),
            }
        })
        .collect())
}
