//! `--source clickhouse://...` (or `TAILSCOPE_SOURCE`): a reading command's traces come
//! from the OpenTelemetry Collector ClickHouse exporter's tables, read in place and
//! pulled to the desktop as `RowBinary`, a time window at a time, into an in-memory
//! store that the command then analyses like a local one.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;
use tailscope_analysis::diff::Window;
use tailscope_store::clickhouse::ClickHouseUrl;
use tailscope_store::{Earlier, SourceRun, SpanMatch, Store};

/// Parses a `--source` value (clap's value parser).
pub fn parse(s: &str) -> std::result::Result<ClickHouseUrl, String> {
    s.parse()
        .map_err(|e: tailscope_store::clickhouse::ClickHouseError| e.to_string())
}

/// Opens the source (a progress bar on stderr while spans are pulled; `earlier`: what
/// the command reads of the traces analysed before), says on stderr
/// what came over the network, analyses what it pulled and writes those results back
/// to the source's shared result tables.
pub fn open(url: &ClickHouseUrl, earlier: Earlier) -> Result<SourceRun> {
    open_matching(url, earlier, None)
}

/// [`open`], pulling also the spans of the earlier traces that `only` may name.
pub fn open_matching(
    url: &ClickHouseUrl,
    earlier: Earlier,
    only: Option<&SpanMatch>,
) -> Result<SourceRun> {
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("pulling [{bar:30}] {pos}/{len} spans")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let t0 = Instant::now();
    let run = Store::open_clickhouse_matching(url, earlier, only, &|done, all| {
        if bar.is_hidden() && done < all {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(all);
        bar.set_position(done);
    })
    .with_context(|| format!("reading traces from {}", url.shown()))?;
    bar.finish_and_clear();
    let p = &run.pulled;
    let reused = if p.reused_traces > 0 {
        format!(", with the shared results of {} traces", p.reused_traces)
    } else {
        String::new()
    };
    eprintln!(
        "pulled {} spans{} from {} ({} bytes of RowBinary in {} queries, {:.1} s){reused}",
        p.spans,
        if p.metric_points > 0 {
            format!(" and {} metric points", p.metric_points)
        } else {
            String::new()
        },
        url.shown(),
        p.bytes,
        p.pulls,
        t0.elapsed().as_secs_f64()
    );
    if p.rejected.count > 0 {
        eprintln!(
            "{} rows of {} are not valid spans and were left out: {}",
            p.rejected.count,
            url.traces_table,
            p.rejected.summary()
        );
    }
    crate::analyze::analyse_new(run.store(), true)
        .with_context(|| format!("analysing the traces of {}", url.shown()))?;
    if p.spans > 0 {
        let n = run
            .save()
            .with_context(|| format!("writing the results to {}", url.shown()))?;
        tracing::debug!("results of {n} traces written to {}", url.shown());
    }
    Ok(run)
}

/// Runs `work` over the source and says on stderr what it did there (`what`) and the
/// bytes it received for it.
pub fn received_by<T>(run: &SourceRun, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let before = run.bytes().0;
    let out = work()?;
    eprintln!(
        "{what} in {} ({} bytes received)",
        run.url().shown(),
        run.bytes().0 - before
    );
    Ok(out)
}

/// `diff`'s two periods resolved against the whole source's span starts (what it
/// reads of them is found in ClickHouse: `SourceRun::period_rows`).
pub fn periods(run: &SourceRun, args: &crate::diff::DiffArgs) -> Result<(Window, Window)> {
    let range = run
        .span_starts()
        .map_or((0, 0), |(lo, hi)| (lo, hi.saturating_add(1)));
    args.windows(range)
}
