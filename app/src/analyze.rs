//! `tailscope analyze`: critical paths, causes, tail attribution and findings over the
//! store, as a text report or design.md's JSON.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use tailscope_analysis::{
    load_report, load_report_with, update, OperationSums, Options, Progress, Report,
};
use tailscope_model::samples::CohortRanks;
use tailscope_store::{SourceRun, Store};

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The tail percentile compared with the 40th–60th band.
    #[arg(long, default_value_t = 99.0)]
    percentile: f64,
}

impl AnalyzeArgs {
    /// Whether it writes the JSON report (which lists every trace's critical path).
    pub fn is_json(&self) -> bool {
        matches!(self.format, Format::Json)
    }
}

/// The store at `db`: a DuckDB file, or a folder of Parquet segments (rebuilt in
/// memory, see `Store::open_segments`).
fn open_store(db: &Path) -> Result<Store, tailscope_store::StoreError> {
    if db.is_dir() {
        Store::open_segments(db)
    } else {
        Store::open(db)
    }
}

/// Analyses what is new in an open store (a progress bar on stderr while chunks are
/// written), stores the results, returns the report (without critical paths: the text
/// report's; the JSON report streams, see [`write_report`]).
pub fn report(store: &Store, percentile: f64) -> Result<Report> {
    let opts = Options { percentile };
    // before any work: a bad percentile is refused without analysing
    opts.check()?;
    analyse_new(store, true)?;
    load_report(store, opts, false).context("reading the analysis results")
}

/// Analyses what is new (a progress bar on stderr when `bar_shown` and the work spans
/// more than one chunk) and stores the results.
pub(crate) fn analyse_new(store: &Store, bar_shown: bool) -> Result<()> {
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("analysing [{bar:30}] {pos}/{len} chunks {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let stats = update(store, &|p: Progress| {
        if bar_shown && bar.is_hidden() && p.chunks > 1 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(p.chunks as u64);
        bar.set_position(p.chunks_done as u64);
        bar.set_message(format!("({} of {} traces)", p.traces_done, p.traces));
    })
    .context("analysing the store")?;
    bar.finish_and_clear();
    if stats.refreshed > 0 {
        eprintln!(
            "the latency model was fitted again (the store has grown): {} traces the old fit judged were recomputed",
            stats.refreshed
        );
    }
    tracing::debug!(
        "analysis: {} traces recomputed, {} reused",
        stats.recomputed,
        stats.reused
    );
    Ok(())
}

/// Analyses what is new, then writes the report to `out`: the text report, or the
/// JSON report streamed from the stored results a page at a time (memory does not
/// grow with the store), with a final newline.
pub fn write_report(
    store: &Store,
    percentile: f64,
    format: Format,
    bar_shown: bool,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    write_report_with(store, None, percentile, format, bar_shown, out)
}

/// [`write_report`], with the cohorts' critical time per operation summed by `sums`
/// where given (a source that keeps the spans elsewhere).
fn write_report_with(
    store: &Store,
    sums: Option<&OperationSums<'_>>,
    percentile: f64,
    format: Format,
    bar_shown: bool,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let opts = Options { percentile };
    opts.check()?;
    analyse_new(store, bar_shown)?;
    match format {
        Format::Text => {
            let r = load_report_with(store, sums, opts, false)
                .context("reading the analysis results")?;
            out.write_all(r.to_text().as_bytes())?;
        }
        Format::Json => {
            tailscope_analysis::json::write_report_json(
                store,
                opts,
                tailscope_analysis::json::PAGE,
                out,
            )
            .context("writing the JSON report")?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

pub fn run(db: &Path, args: &AnalyzeArgs) -> Result<()> {
    let store = match open_store(db) {
        Ok(s) => s,
        Err(e) => {
            let live = crate::live::client::held_by_other(db, e)?;
            live.announce("analysing");
            return live.run(
                "/analyze",
                &crate::live::protocol::AnalyzeRequest {
                    percentile: args.percentile,
                    json: matches!(args.format, Format::Json),
                },
            );
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    write_report(&store, args.percentile, args.format, true, &mut out)
}

/// `analyze` over a ClickHouse source (already analysed and saved): the results from
/// its in-memory store, the cohorts' critical time per operation summed in ClickHouse.
pub fn run_on_source(run: &SourceRun, args: &AnalyzeArgs) -> Result<()> {
    let pushdown = run.pushdown();
    let sums = |c: &CohortRanks| pushdown.critical_time_of_ranks(c);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    write_report_with(
        run.store(),
        Some(&sums),
        args.percentile,
        args.format,
        true,
        &mut out,
    )
}
