//! `tailscope import FILE...`: OTLP files into the store, with a progress bar and a
//! summary of what was stored and rejected.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use tailscope_ingest::{read_file, Signal};
use tailscope_model::Rejections;
use tailscope_store::{Committed, Store, StoreError, Writer, WriterConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SignalArg {
    Traces,
    Metrics,
    Logs,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Files to import (.json, .jsonl, .pb, optionally gzip-compressed).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Signal of protobuf files (default: from the file name, else traces). JSON says its own.
    #[arg(long, value_enum)]
    signal: Option<SignalArg>,
}

/// What an import stored and rejected.
#[derive(Debug, Default)]
pub struct Summary {
    pub stored: Committed,
    pub rejected: Rejections,
    pub failed_files: Vec<String>,
}

impl Summary {
    pub fn line(&self) -> String {
        let s = &self.stored;
        let skipped: Vec<String> = [
            (s.duplicate_spans, "spans"),
            (s.duplicate_metric_points, "metric points"),
            (s.duplicate_logs, "logs"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let again = if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} already stored were skipped)", skipped.join(", "))
        };
        format!(
            "stored {} spans, {} metric points, {} logs; rejected {} item(s){again}",
            self.stored.spans, self.stored.metric_points, self.stored.logs, self.rejected.count
        )
    }
}

/// `--signal`'s value as text (the live service takes it so).
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    match s {
        "traces" => Ok(Signal::Traces),
        "metrics" => Ok(Signal::Metrics),
        "logs" => Ok(Signal::Logs),
        other => Err(format!("unknown signal {other:?}: traces, metrics or logs")),
    }
}

/// Imports files into an open store through its one writer (shared with a collector
/// running in this process); used by `import` and `demo`.
pub fn import_files(
    store: &Store,
    files: &[PathBuf],
    signal: Option<Signal>,
    progress: &ProgressBar,
) -> Result<Summary> {
    let writer = store.shared_writer(WriterConfig::default())?;
    let summary = import_with(&writer, files, signal, progress)?;
    // the last holder's drop commits what is queued and stops the writer
    drop(writer);
    Ok(summary)
}

/// Imports files through `writer`, waiting until every row is committed.
pub fn import_with(
    writer: &Writer,
    files: &[PathBuf],
    signal: Option<Signal>,
    progress: &ProgressBar,
) -> Result<Summary> {
    let mut summary = Summary::default();
    let mut acks = Vec::new();
    let mut base = 0u64;
    for path in files {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        progress.set_message(short_name(path));
        let read = read_file(path, signal, |chunk| {
            progress.set_position(base + chunk.bytes_read.min(len));
            summary.rejected.merge(chunk.rejections);
            if !chunk.batch.is_empty() {
                acks.push(writer.submit_waiting(chunk.batch));
            }
        });
        if let Err(e) = read {
            progress.suspend(|| eprintln!("error: {e}"));
            summary.failed_files.push(e.to_string());
        }
        base += len;
        progress.set_position(base);
    }
    for ack in acks {
        let c = ack
            .recv()
            .map_err(|_| StoreError::WriterGone)
            .and_then(|r| r)
            .context("committing imported rows")?;
        summary.stored.spans += c.spans;
        summary.stored.metric_points += c.metric_points;
        summary.stored.logs += c.logs;
        summary.stored.duplicate_spans += c.duplicate_spans;
        summary.stored.duplicate_metric_points += c.duplicate_metric_points;
        summary.stored.duplicate_logs += c.duplicate_logs;
    }
    Ok(summary)
}

/// What `import` prints, and its error when some files could not be read.
pub fn finish_text(summary: &Summary, db: &Path, files: usize) -> (String, Option<String>) {
    use std::fmt::Write;
    let mut out = format!("{} into {}\n", summary.line(), db.display());
    for m in &summary.rejected.messages {
        let _ = writeln!(out, "  rejected: {m}");
    }
    if summary.rejected.count > summary.rejected.messages.len() as u64 {
        let _ = writeln!(
            out,
            "  ... and {} more rejected",
            summary.rejected.count - summary.rejected.messages.len() as u64
        );
    }
    let error = (!summary.failed_files.is_empty()).then(|| {
        format!(
            "{} of {files} file(s) could not be read",
            summary.failed_files.len()
        )
    });
    (out, error)
}

fn short_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

pub fn bytes_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

pub fn run(db: &Path, args: &ImportArgs) -> Result<()> {
    for f in &args.files {
        if !f.is_file() {
            anyhow::bail!("cannot import {}: no such file", f.display());
        }
    }
    let signal = args.signal.map(|s| match s {
        SignalArg::Traces => Signal::Traces,
        SignalArg::Metrics => Signal::Metrics,
        SignalArg::Logs => Signal::Logs,
    });
    let store = match Store::open(db) {
        Ok(s) => s,
        Err(e) => {
            let live = crate::live::client::held_by_other(db, e)?;
            live.announce("importing");
            let files = args
                .files
                .iter()
                .map(|f| {
                    std::path::absolute(f).with_context(|| format!("resolving {}", f.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let signal = args.signal.map(|s| match s {
                SignalArg::Traces => "traces".to_owned(),
                SignalArg::Metrics => "metrics".to_owned(),
                SignalArg::Logs => "logs".to_owned(),
            });
            return live.run(
                "/import",
                &crate::live::protocol::ImportRequest { files, signal },
            );
        }
    };
    let total: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = bytes_bar(total);
    let summary = import_files(&store, &args.files, signal, &bar)?;
    bar.finish_and_clear();
    let (text, error) = finish_text(&summary, db, args.files.len());
    print!("{text}");
    match error {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(()),
    }
}
