//! `--source clickhouse://...` (or `TAILSCOPE_SOURCE`): a reading command's traces come
//! from the OpenTelemetry Collector ClickHouse exporter's tables, read in place and
//! pulled to the desktop as `RowBinary`, a time window at a time, into an in-memory
//! store that the command then analyses like a local one.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;
use tailscope_store::clickhouse::ClickHouseUrl;
use tailscope_store::Store;

/// Parses a `--source` value (clap's value parser).
pub fn parse(s: &str) -> std::result::Result<ClickHouseUrl, String> {
    s.parse()
        .map_err(|e: tailscope_store::clickhouse::ClickHouseError| e.to_string())
}

/// Pulls the source's spans into an in-memory store (a progress bar on stderr), says
/// on stderr what came over the network, and analyses them.
pub fn open(url: &ClickHouseUrl) -> Result<Store> {
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("pulling [{bar:30}] {pos}/{len} spans")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let t0 = Instant::now();
    let (store, pulled) = Store::open_clickhouse(url, None, &|done, all| {
        if bar.is_hidden() && done < all {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(all);
        bar.set_position(done);
    })
    .with_context(|| format!("reading traces from {}", url.shown()))?;
    bar.finish_and_clear();
    eprintln!(
        "pulled {} spans from {} ({} bytes of RowBinary in {} queries, {:.1} s)",
        pulled.spans,
        url.shown(),
        pulled.bytes,
        pulled.pulls,
        t0.elapsed().as_secs_f64()
    );
    if pulled.rejected.count > 0 {
        eprintln!(
            "{} rows of {} are not valid spans and were left out: {}",
            pulled.rejected.count,
            url.traces_table,
            pulled.rejected.summary()
        );
    }
    crate::analyze::analyse_new(&store, true)
        .with_context(|| format!("analysing the traces of {}", url.shown()))?;
    Ok(store)
}
