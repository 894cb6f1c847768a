//! `tailscope export --out DIR`: Parquet tables, a README and a ready-to-run analysis
//! notebook (see `tailscope_analysis::export`), with a progress bar and a time-window /
//! trace filter.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use tailscope_analysis::export::{export, ExportOptions, ExportProgress, ExportSummary};
use tailscope_store::clickhouse::ClickHouseUrl;
use tailscope_store::Store;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The folder to write (created if missing; must be empty unless --force).
    #[arg(long, value_name = "DIR", required_unless_present = "to")]
    out: Option<PathBuf>,
    /// Copy the store's spans up into ClickHouse instead, in the OpenTelemetry Collector
    /// ClickHouse exporter's schema (tables created when missing):
    /// clickhouse://[user[:password]@]HOST[:8123]/DATABASE[?secure=true[&ca=PEM]].
    #[arg(long, value_name = "URL", conflicts_with_all = ["out", "since", "until", "traces", "force"], value_parser = crate::source::parse)]
    to: Option<ClickHouseUrl>,
    /// Only traces whose root starts at or after this time (ns since the Unix epoch, or
    /// RFC 3339 such as 2026-11-23T10:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// Only traces whose root starts before this time (ns or RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,
    /// Only this trace (32 hex digits); repeat for several.
    #[arg(long = "trace", value_name = "ID")]
    traces: Vec<String>,
    /// Write into a non-empty folder, overwriting the files export writes.
    #[arg(long)]
    force: bool,
}

/// Nanoseconds since the Unix epoch, or an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    tailscope_model::time::parse_rfc3339(s).ok_or_else(|| {
        format!("`{s}` is neither nanoseconds since the Unix epoch nor an RFC 3339 time such as 2026-11-23T10:00:00Z")
    })
}

/// The export's options from the command line (a bad window is refused).
fn options(args: &ExportArgs) -> Result<ExportOptions> {
    let window = match (args.since, args.until) {
        (None, None) => None,
        (a, b) => Some((a.unwrap_or(i64::MIN), b.unwrap_or(i64::MAX))),
    };
    if let Some((a, b)) = window {
        if b <= a {
            bail!("--until ({b}) must be after --since ({a})");
        }
    }
    Ok(ExportOptions {
        window,
        trace_ids: (!args.traces.is_empty()).then(|| args.traces.clone()),
        force: args.force,
    })
}

pub fn run(db: &Path, args: &ExportArgs) -> Result<()> {
    let opts = options(args)?;
    if let Some(url) = &args.to {
        let store = Store::open(db).with_context(|| format!("opening store {}", db.display()))?;
        return push(&store, url);
    }
    let store = match Store::open(db) {
        Ok(s) => s,
        Err(e) => {
            let live = crate::live::client::held_by_other(db, e)?;
            live.announce("exporting");
            let dir = args.out.as_deref().unwrap_or(Path::new("."));
            let out =
                std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
            return live.run(
                "/export",
                &crate::live::protocol::ExportRequest {
                    out,
                    window: opts.window,
                    trace_ids: opts.trace_ids,
                    force: opts.force,
                },
            );
        }
    };
    write(&store, &opts, args)
}

/// `export` over an open store (a local one, or one pulled from `--source`).
pub fn run_on(store: &Store, args: &ExportArgs) -> Result<()> {
    if let Some(url) = &args.to {
        return push(store, url);
    }
    write(store, &options(args)?, args)
}

/// `export --to clickhouse://...`: the store's spans copied up in the exporter's schema.
fn push(store: &Store, url: &ClickHouseUrl) -> Result<()> {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("copying to ClickHouse [{bar:30}] {pos}/{len} spans")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let t0 = std::time::Instant::now();
    let pushed = store
        .push_clickhouse(url, &|done, all| {
            bar.set_length(all);
            bar.set_position(done);
        })
        .with_context(|| format!("copying the store to {}", url.shown()))?;
    bar.finish_and_clear();
    println!(
        "copied {} spans to {}.{} in {} inserts ({} bytes of RowBinary, {:.1} s){}",
        pushed.spans,
        url.shown(),
        url.traces_table,
        pushed.inserts,
        pushed.bytes,
        t0.elapsed().as_secs_f64(),
        if pushed.created {
            "; created the exporter's tables"
        } else {
            ""
        }
    );
    Ok(())
}

fn write(store: &Store, opts: &ExportOptions, args: &ExportArgs) -> Result<()> {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("exporting [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut on_progress = |p: ExportProgress| {
        bar.set_length(p.steps as u64);
        bar.set_position((p.step + usize::from(p.rows.is_some())) as u64);
        bar.set_message(p.label);
    };
    let cancel = AtomicBool::new(false);
    let dir = args.out.as_deref().unwrap_or(Path::new("."));
    let summary = export(store, dir, opts, &mut on_progress, &cancel)
        .with_context(|| format!("exporting to {}", dir.display()))?;
    bar.finish_and_clear();
    print!("{}", summary_text(&summary));
    Ok(())
}

/// What `export` prints when it is done.
pub fn summary_text(summary: &ExportSummary) -> String {
    use std::fmt::Write;
    let rows: usize = summary.tables.iter().map(|t| t.rows).sum();
    let bytes: u64 = summary.tables.iter().map(|t| t.bytes).sum();
    let mut out = format!(
        "exported {} traces: {} tables, {rows} rows, {:.1} MiB of Parquet in {:.2} s to {}\n",
        summary.traces,
        summary.tables.len(),
        bytes as f64 / (1024.0 * 1024.0),
        summary.elapsed.as_secs_f64(),
        summary.dir.display()
    );
    for t in &summary.tables {
        let _ = writeln!(
            out,
            "  {:<24} {:>9} rows",
            format!("{}.parquet", t.name),
            t.rows
        );
    }
    let _ = writeln!(
        out,
        "open {} in Jupyter (pip install polars duckdb pyarrow matplotlib); tables are described in {}",
        summary.notebook.display(),
        summary.readme.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_ns_or_rfc3339() {
        assert_eq!(
            parse_time("1544712660000000000"),
            Ok(1_544_712_660_000_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("2018-12-13T14:51:00Z"),
            Ok(1_544_712_660_000_000_000)
        );
        assert_eq!(
            parse_time("2018-12-13T15:51:00.5+01:00"),
            Ok(1_544_712_660_500_000_000)
        );
        assert_eq!(
            parse_time("2000-03-01T00:00:00.000000001Z"),
            Ok(951_868_800_000_000_001)
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2018-13-13T14:51:00Z").is_err());
    }
}
