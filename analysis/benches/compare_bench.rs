//! `compare-bench`: `compare` (the tail against the median band over every attribute),
//! the per-tenant view and `diff` (two halves of the store's time range) on a big
//! store, each timed over a few runs.
//!
//! Opens `--db` (generating about `--conversations` × 120 spans with the workload
//! generator first when the file does not exist), brings the analysis up to date, then
//! prints the fastest and median wall time of each. Target (issue 15): compare and
//! diff on 1M spans under 2 s each. Never run against a store you want unchanged: the
//! analysis results are brought up to date in place.
//!
//! ```sh
//! cp /tmp/big-base.duckdb /tmp/cmp.duckdb   # or let it generate one
//! CARGO_TARGET_DIR=$HOME/.cache/tailscope/target-release \
//!   cargo bench -p tailscope-analysis --bench compare-bench -- --db /tmp/cmp.duckdb
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tailscope_analysis::compare::{compare, CompareOptions};
use tailscope_analysis::diff::{self, DiffOptions, Window};
use tailscope_analysis::tenant::{tenants, TenantOptions};
use tailscope_analysis::{update, Progress};
use tailscope_samples::{generate, WorkloadConfig};
use tailscope_store::{Store, WriterConfig};

/// compare, the per-tenant view and diff on a big store, each timed over a few runs.
#[derive(Parser)]
#[command(name = "compare-bench", bin_name = "compare-bench")]
struct Args {
    /// Conversations to generate (about 120 spans each) when `--db` does not exist.
    #[arg(long, value_name = "N", default_value_t = 8500)]
    conversations: usize,
    /// The store (generated first when missing; its analysis is brought up to date in
    /// place).
    #[arg(long, value_name = "PATH", default_value_os_t = std::env::temp_dir().join("tailscope-compare-bench.duckdb"))]
    db: PathBuf,
    /// Runs of each (at least 1).
    #[arg(long, value_name = "N", default_value_t = 5)]
    runs: usize,
    /// Passed by `cargo bench` to harness-less benches; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Writes `conversations` conversations in chunks of 500 (one seed each).
fn fill(store: &Store, conversations: usize) -> Result<()> {
    let writer = store.writer(WriterConfig::default())?;
    let (mut left, mut k) = (conversations, 0u64);
    while left > 0 {
        let n = left.min(500);
        writer.write(
            generate(&WorkloadConfig {
                seed: 1 + k,
                conversations: n,
                span_secs: 180.0 * n as f64 / 240.0,
                ..WorkloadConfig::default()
            })
            .batch,
        )?;
        left -= n;
        k += 1;
        eprint!(
            "\rgenerated {} of {conversations} conversations",
            conversations - left
        );
    }
    eprintln!();
    writer.close()?;
    Ok(())
}

/// Runs `f` `runs` times; prints and returns (fastest, median).
fn time<T>(label: &str, runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Duration, T)> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f()?);
        times.push(t.elapsed());
    }
    times.sort();
    let median = tailscope_model::stats::median(&times).unwrap_or_default();
    println!(
        "{label:<44} fastest {:.3} s, median {:.3} s over {runs} runs",
        times[0].as_secs_f64(),
        median.as_secs_f64()
    );
    Ok((median, last.context("no run")?))
}

fn span_count(store: &Store) -> Result<i64> {
    Ok(i64::try_from(store.span_count()?)?)
}

fn verdict(d: Duration) -> &'static str {
    if d < Duration::from_secs(2) {
        "met"
    } else {
        "MISSED"
    }
}

fn main() -> Result<()> {
    let mut a = Args::parse();
    a.runs = a.runs.max(1);
    let fresh = !a.db.exists();
    let store = Store::open(&a.db).with_context(|| format!("opening {}", a.db.display()))?;
    if fresh {
        fill(&store, a.conversations)?;
    }
    let t = Instant::now();
    let stats = update(&store, &|_: Progress| {})?;
    let took = t.elapsed();
    let spans = span_count(&store)?;
    println!(
        "store {}: {spans} spans; analysis brought up to date in {:.2} s ({} traces recomputed)",
        a.db.display(),
        took.as_secs_f64(),
        stats.recomputed
    );
    let t = Instant::now();
    update(&store, &|_: Progress| {})?;
    println!(
        "  and again (nothing new, what compare and diff pay first): {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let (c_time, c) = time("compare (p99 vs 40th-60th band)", a.runs, || {
        Ok(compare(&store, &CompareOptions::default())?)
    })?;
    println!(
        "  {} tail traces, {} baseline, {} values listed; first: {}",
        c.tail_traces,
        c.baseline_traces,
        c.attributes.len(),
        c.attributes.first().map_or_else(String::new, |x| format!(
            "{}={} (score {:.2})",
            x.key, x.value, x.score
        ))
    );
    let (_, tv) = time("tenants", a.runs, || {
        Ok(tenants(&store, &TenantOptions::default())?)
    })?;
    println!("  key {}, {} tenants", tv.key, tv.tenants.len());
    let (from, to) = diff::store_range(&store)?;
    let mid = from + (to - from) / 2;
    let (before, after) = (
        Window {
            from_ns: from,
            to_ns: mid,
        },
        Window {
            from_ns: mid,
            to_ns: to,
        },
    );
    let (d_time, d) = time("diff (first half vs second half)", a.runs, || {
        Ok(diff::diff_store(
            &store,
            before,
            &store,
            after,
            &DiffOptions::default(),
        )?)
    })?;
    println!(
        "  {} + {} traces, {} changes ({} significant): {}",
        d.before.traces,
        d.after.traces,
        d.changes.len(),
        d.changes.iter().filter(|c| c.significant).count(),
        d.headline
    );
    println!("\ntargets (issue 15, ~1M spans on 2 cores):");
    println!(
        "  compare < 2 s: {:.3} s {}",
        c_time.as_secs_f64(),
        verdict(c_time)
    );
    println!(
        "  diff < 2 s: {:.3} s {}",
        d_time.as_secs_f64(),
        verdict(d_time)
    );
    Ok(())
}
