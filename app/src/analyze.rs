//! `tailscope analyze`: critical paths, causes, tail attribution and findings over the
//! store, as a text report or design.md's JSON.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::Path;
use tailscope_analysis::{analyze_and_store, Options, Report};
use tailscope_store::Store;

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

/// Analyses what is new in an open store, stores the results, returns the report.
pub fn report(store: &Store, percentile: f64) -> Result<Report> {
    let (r, stats) =
        analyze_and_store(store, Options { percentile }).context("analysing the store")?;
    tracing::debug!(
        "analysis: {} traces recomputed, {} reused",
        stats.recomputed,
        stats.reused
    );
    Ok(r)
}

pub fn run(db: &Path, args: &AnalyzeArgs) -> Result<()> {
    let store = Store::open(db).with_context(|| format!("opening store {}", db.display()))?;
    let r = report(&store, args.percentile)?;
    match args.format {
        Format::Text => print!("{}", r.to_text()),
        Format::Json => println!("{}", serde_json::to_string(&r.to_json())?),
    }
    Ok(())
}
