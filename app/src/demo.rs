//! `tailscope demo`: generate a realistic agent workload with planted causes, ingest it
//! through the store writer into a demo store, and show what was stored.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tailscope_ingest::otlp;
use tailscope_model::Batch;
use tailscope_samples::{generate, WorkloadConfig};
use tailscope_store::{Store, WriterConfig};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Print a report instead of opening the GUI.
    #[arg(long)]
    headless: bool,
    /// Conversations to generate.
    #[arg(long, default_value_t = WorkloadConfig::default().conversations)]
    conversations: usize,
    /// Seed of the generator (same seed, same workload).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// The demo store: `<data dir>/tailscope/demo.duckdb`, recreated on each run.
fn demo_db() -> PathBuf {
    crate::default_db().with_file_name("demo.duckdb")
}

fn spinner(msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(msg);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

pub fn run(db: Option<&Path>, args: &DemoArgs) -> Result<()> {
    let db = db.map_or_else(demo_db, Path::to_path_buf);
    let started = Instant::now();
    let cfg = WorkloadConfig {
        seed: args.seed,
        conversations: args.conversations,
        ..WorkloadConfig::default()
    };
    let bar = spinner("generating workload");
    let workload = generate(&cfg);
    bar.finish_and_clear();
    let n_spans = workload.batch.spans.len();
    println!(
        "generated {} conversations: {} spans, {} metric points, {} planted causes (seed {})",
        cfg.conversations,
        n_spans,
        workload.batch.metrics.len(),
        workload.truth.len(),
        cfg.seed
    );

    for p in [db.clone(), PathBuf::from(format!("{}.wal", db.display()))] {
        if p.exists() {
            std::fs::remove_file(&p)
                .with_context(|| format!("removing old demo store {}", p.display()))?;
        }
    }
    let store =
        Store::open(&db).with_context(|| format!("creating demo store {}", db.display()))?;
    let writer = store.writer(WriterConfig::default())?;
    let bar = ProgressBar::new(n_spans as u64);
    bar.set_style(
        ProgressStyle::with_template("ingesting [{bar:30}] {pos}/{len} spans {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    // Through the same OTLP conversion and normalisation a live client gets (no socket):
    // each chunk is encoded as an OTLP request and normalised back by ingest.
    let Batch {
        resources,
        spans,
        metrics,
        logs,
    } = workload.batch;
    let mut acks = Vec::new();
    let (mut first, rej) = otlp::metrics_to_model(&otlp::metrics_from_model(&Batch {
        resources: resources.clone(),
        metrics,
        ..Batch::default()
    }));
    let mut rejected = rej.count;
    first.logs = logs;
    acks.push(writer.submit_waiting(first));
    let mut spans = spans.into_iter().peekable();
    while spans.peek().is_some() {
        let chunk = Batch {
            resources: resources.clone(),
            spans: spans.by_ref().take(2048).collect(),
            ..Batch::default()
        };
        let (batch, rej) = otlp::traces_to_model(&otlp::traces_from_model(&chunk));
        rejected += rej.count;
        acks.push(writer.submit_waiting(batch));
    }
    if rejected > 0 {
        bar.suspend(|| {
            eprintln!("warning: {rejected} generated item(s) were rejected by normalisation");
        });
    }
    for ack in acks {
        let c = ack.recv().context("store writer stopped")??;
        bar.inc(c.spans as u64);
    }
    writer.close()?;
    bar.finish_and_clear();

    let truth_path = db.with_extension("truth.json");
    let truth = crate::generate::truth_json(&workload.truth);
    std::fs::write(&truth_path, serde_json::to_vec_pretty(&truth)?)
        .with_context(|| format!("writing ground truth {}", truth_path.display()))?;

    let counts = store.counts()?;
    println!(
        "stored {} traces, {} spans, {} attributes, {} events, {} metric points in {} ({:.1} s)",
        counts.traces,
        counts.spans,
        counts.span_attributes,
        counts.events,
        counts.metric_points,
        db.display(),
        started.elapsed().as_secs_f64()
    );
    println!("ground truth: {}", truth_path.display());
    let bar = spinner("analysing");
    let report = crate::analyze::report(&store, 99.0)?;
    bar.finish_and_clear();
    println!("\n{}", report.to_text());
    if !args.headless {
        drop(store);
        tailscope::gui::run(&db, &tailscope::gui::GuiArgs::demo())?;
    }
    Ok(())
}
