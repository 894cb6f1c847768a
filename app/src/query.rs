//! `tailscope query "SQL"`: read-only SQL over the store, as a table, CSV or JSON.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::Path;
use tailscope_store::arrow::array::{Array, AsArray};
use tailscope_store::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use tailscope_store::arrow::util::display::{ArrayFormatter, FormatOptions};
use tailscope_store::{RecordBatch, Store};

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Format {
    /// An aligned table for people.
    #[default]
    Table,
    Csv,
    /// One JSON array of objects.
    Json,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The SQL (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, SUMMARIZE).
    sql: String,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(db: &Path, args: &QueryArgs) -> Result<()> {
    // A store a running serve or GUI holds is read through that process.
    let opened = if db.is_dir() {
        Store::open_segments(db)
    } else {
        Store::open_read_only(db)
    };
    let batches = match opened {
        Ok(store) => store.query_read_only(&args.sql)?,
        Err(e) => {
            let live = crate::live::client::held_by_other(db, e)?;
            live.announce("querying");
            live.query(&args.sql)?
        }
    };
    print(&batches, args)
}

/// `query` over an open store (a local one, or one pulled from `--source`).
pub fn run_on(store: &Store, args: &QueryArgs) -> Result<()> {
    print(&store.query_read_only(&args.sql)?, args)
}

fn print(batches: &[RecordBatch], args: &QueryArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Table => {
            let text = tailscope_store::arrow::util::pretty::pretty_format_batches(batches)
                .context("formatting the result")?;
            writeln!(out, "{text}")?;
        }
        Format::Csv => write_csv(&mut out, batches)?,
        Format::Json => write_json(&mut out, batches)?,
    }
    Ok(())
}

fn formatters<'a>(
    b: &'a RecordBatch,
    opts: &'a FormatOptions<'a>,
) -> Result<Vec<ArrayFormatter<'a>>> {
    Ok(b.columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), opts))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The result as CSV (RFC 4180 quoting by the csv crate; NULL as an empty field).
fn write_csv(out: &mut impl Write, batches: &[RecordBatch]) -> Result<()> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let mut w = csv::Writer::from_writer(out);
    w.write_record(first.schema().fields().iter().map(|f| f.name().as_str()))?;
    let opts = FormatOptions::default().with_null("");
    let mut cells: Vec<String> = Vec::new();
    for b in batches {
        let fmts = formatters(b, &opts)?;
        for row in 0..b.num_rows() {
            cells.clear();
            cells.extend(fmts.iter().map(|f| f.value(row).to_string()));
            w.write_record(&cells)?;
        }
    }
    w.flush()?;
    Ok(())
}

fn json_cell(col: &dyn Array, row: usize, fmt: &ArrayFormatter<'_>) -> serde_json::Value {
    if col.is_null(row) {
        return serde_json::Value::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            serde_json::Value::from(col.as_primitive::<$t>().value(row))
        };
    }
    match col.data_type() {
        DataType::Boolean => serde_json::Value::Bool(col.as_boolean().value(row)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 => {
            serde_json::Number::from_f64(f64::from(col.as_primitive::<Float32Type>().value(row)))
                .map_or(serde_json::Value::Null, Into::into)
        }
        DataType::Float64 => {
            serde_json::Number::from_f64(col.as_primitive::<Float64Type>().value(row))
                .map_or(serde_json::Value::Null, Into::into)
        }
        _ => serde_json::Value::String(fmt.value(row).to_string()),
    }
}

fn write_json(out: &mut impl Write, batches: &[RecordBatch]) -> Result<()> {
    let opts = FormatOptions::default();
    let mut rows = Vec::new();
    for b in batches {
        let schema = b.schema();
        let fmts = formatters(b, &opts)?;
        for row in 0..b.num_rows() {
            let mut obj = serde_json::Map::new();
            for (i, field) in schema.fields().iter().enumerate() {
                obj.insert(
                    field.name().clone(),
                    json_cell(b.column(i).as_ref(), row, &fmts[i]),
                );
            }
            rows.push(serde_json::Value::Object(obj));
        }
    }
    serde_json::to_writer(&mut *out, &rows)?;
    writeln!(out)?;
    Ok(())
}
