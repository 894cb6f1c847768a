//! `tailscope diff`: what changed between two periods of the store (or two stores):
//! per route and operation p50/p99, per-cause critical-path time, LLM calls per model
//! and server, each with a confidence interval, and a one-sentence headline.

use crate::analyze::Format;
use crate::compare::open_analysed;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use tailscope_analysis::diff::{self, DiffOptions, Window, WindowSpec};
use tailscope_store::query::TraceSource;
use tailscope_store::Store;

fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    /// The earlier period, FROM..TO: RFC 3339 (2026-03-02T09:00:00Z), a date, Unix
    /// time, now, or -2h (before the newest span); an empty side is the store's start
    /// or end. Default with --before-db: the whole store.
    #[arg(long, value_name = "FROM..TO", required_unless_present = "before_db")]
    before: Option<WindowSpec>,
    /// The later period, written as --before.
    #[arg(long, value_name = "FROM..TO", required_unless_present = "after_db")]
    after: Option<WindowSpec>,
    /// Read the earlier period from this store instead of --db.
    #[arg(long, value_name = "PATH")]
    before_db: Option<PathBuf>,
    /// Read the later period from this store instead of --db.
    #[arg(long, value_name = "PATH")]
    after_db: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Smallest relative change that counts as significant (0.1 = 10%).
    #[arg(long, default_value_t = 0.10, value_parser = share)]
    min_change: f64,
    /// Confidence of the intervals.
    #[arg(long, default_value_t = 0.99, value_parser = share)]
    confidence: f64,
    /// Text: list every change, not only the significant ones.
    #[arg(long)]
    all: bool,
}

/// The window of one side over its store, refused when it is empty or has no traces.
fn window(store: &Store, spec: Option<WindowSpec>, side: &str) -> Result<Window> {
    resolve(diff::store_range(store)?, spec, side)
}

/// A period given on the command line, resolved against the span starts `range`.
fn resolve(range: (i64, i64), spec: Option<WindowSpec>, side: &str) -> Result<Window> {
    let spec = spec.unwrap_or(WindowSpec {
        from: diff::Bound::Open,
        to: diff::Bound::Open,
    });
    let w = spec.resolve(range);
    if w.from_ns >= w.to_ns {
        bail!(
            "the {side} period {}..{} is empty (it ends before it starts)",
            diff::rfc3339(w.from_ns),
            diff::rfc3339(w.to_ns)
        );
    }
    Ok(w)
}

impl DiffArgs {
    /// `--before-db` or `--after-db` given.
    pub fn names_stores(&self) -> bool {
        self.before_db.is_some() || self.after_db.is_some()
    }
}

pub fn run(db: &Path, args: &DiffArgs) -> Result<()> {
    let before_db = args.before_db.as_deref().unwrap_or(db);
    let after_db = args.after_db.as_deref().unwrap_or(db);
    if before_db == db && after_db == db {
        if let Some(live) = crate::live::client::held(db) {
            live.announce("comparing periods");
            return live.run("/cli", &crate::live::protocol::forwarded_args("diff"));
        }
    }
    let before_store = open_analysed(before_db)?;
    let after_store = if after_db == before_db {
        None
    } else {
        Some(open_analysed(after_db)?)
    };
    print!(
        "{}",
        output(
            &before_store,
            after_store.as_ref(),
            (before_db, after_db),
            args
        )?
    );
    Ok(())
}

/// What `diff` prints, for analysed stores (`after` `None`: the same store).
pub fn output(
    before_store: &Store,
    after_store: Option<&Store>,
    (before_db, after_db): (&Path, &Path),
    args: &DiffArgs,
) -> Result<String> {
    let after_ref = after_store.unwrap_or(before_store);
    let bw = window(before_store, args.before, "before")?;
    let aw = window(after_ref, args.after, "after")?;
    compared(
        before_store,
        after_ref,
        (bw, aw),
        (before_db, after_db),
        args,
    )
}

impl DiffArgs {
    /// The two periods resolved against the span starts `range` (`[first, last + 1)`)
    /// of a source that does not hold every span in memory.
    pub fn windows(&self, range: (i64, i64)) -> Result<(Window, Window)> {
        Ok((
            resolve(range, self.before, "before")?,
            resolve(range, self.after, "after")?,
        ))
    }
}

/// `diff` over one analysed store whose periods are already resolved.
pub fn output_in(
    store: &impl TraceSource,
    (bw, aw): (Window, Window),
    shown: &Path,
    args: &DiffArgs,
) -> Result<String> {
    compared(store, store, (bw, aw), (shown, shown), args)
}

fn compared(
    before_store: &impl TraceSource,
    after_ref: &impl TraceSource,
    (bw, aw): (Window, Window),
    (before_db, after_db): (&Path, &Path),
    args: &DiffArgs,
) -> Result<String> {
    let opts = DiffOptions {
        min_change: args.min_change,
        confidence: args.confidence,
        ..DiffOptions::default()
    };
    let b = diff::sample(before_store, bw)
        .with_context(|| format!("reading the before period from {}", before_db.display()))?;
    let a = diff::sample(after_ref, aw)
        .with_context(|| format!("reading the after period from {}", after_db.display()))?;
    for (s, side, path) in [(&b, "before", before_db), (&a, "after", after_db)] {
        if s.traces == 0 {
            let w = s.window.unwrap_or(Window {
                from_ns: 0,
                to_ns: 0,
            });
            bail!(
                "the {side} period {}..{} has no analysed traces in {}",
                diff::rfc3339(w.from_ns),
                diff::rfc3339(w.to_ns),
                path.display()
            );
        }
    }
    let d = diff::diff(&b, &a, &opts);
    Ok(match args.format {
        Format::Text => d.to_text(args.all),
        Format::Json => format!("{}\n", serde_json::to_string(&d)?),
    })
}
