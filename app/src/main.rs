//! The `tailscope` binary: CLI, collector runtime, store wiring.
//!
//! Commands follow the CLI contract of design.md. Each runs in its own module:
//! [`serve`] (headless collector), [`import`] (OTLP files), [`query`] (read-only SQL),
//! [`demo`] (generated workload), [`compare`] (what slow traces share), [`diff`] (what
//! changed between two periods). Errors go to stderr as one sentence; exit codes are
//! 0 ok, 1 runtime error, 2 usage error.

mod demo;
mod generate;
mod replay;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tailscope::{analyze, compare, diff, export, gui, import, query, source, whatif};
use tailscope_store::clickhouse::ClickHouseUrl;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "tailscope",
    version,
    about = "Latency profiler and trace explorer for LLM and agent applications: why is my p99 slow?"
)]
struct Cli {
    /// The DuckDB store to use (default: tailscope.duckdb in the platform data folder).
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Read traces from the OpenTelemetry Collector ClickHouse exporter's tables instead
    /// of the local store: clickhouse://[user[:password]@]HOST[:8123]/DATABASE, over HTTPS
    /// with ?secure=true (port 8443; &ca=PEM to trust a private CA) (reading
    /// commands: gui, analyze, compare, diff, whatif, query, export, replay --list).
    #[arg(long, global = true, env = "TAILSCOPE_SOURCE", value_name = "URL", value_parser = source::parse)]
    source: Option<ClickHouseUrl>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a realistic agent workload, ingest it, and show it.
    Demo(demo::DemoArgs),
    /// Generate the agent workload as OTLP files, sample files, or live OTLP load.
    Generate(generate::GenerateArgs),
    /// Run the OTLP collector headless (gRPC and HTTP).
    Serve(serve::ServeArgs),
    /// Open the desktop app (and the OTLP collector unless --no-collector).
    Gui(gui::GuiArgs),
    /// Critical paths, causes, tail attribution and findings over the store.
    Analyze(analyze::AnalyzeArgs),
    /// Import OTLP files: JSON, JSON lines (Collector file exporter) or protobuf.
    Import(import::ImportArgs),
    /// Run read-only SQL over the store.
    Query(query::QueryArgs),
    /// Replay a recorded conversation through the embedded engine under configurations A and B.
    Replay(replay::ReplayArgs),
    /// Write Parquet tables, a README and a ready-to-run analysis notebook.
    Export(export::ExportArgs),
    /// What the slow traces share: attribute values over-represented in the tail.
    Compare(compare::CompareArgs),
    /// What changed between two periods (or two stores), with confidence intervals.
    Diff(diff::DiffArgs),
    /// The latency after a change to an operation, cause, tool or model, predicted
    /// from the stored traces; --rank: what would move the tail most.
    Whatif(whatif::WhatifArgs),
}

/// The default store: `<data dir>/tailscope/tailscope.duckdb`.
pub fn default_db() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("tailscope")
        .join("tailscope.duckdb")
}

/// Default collector addresses (loopback).
pub fn default_grpc() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4317))
}

pub fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4318))
}

/// A command line that cannot work as given (exit code 2), found after parsing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A reading command over the traces of a ClickHouse source.
fn run_on_source(url: &ClickHouseUrl, command: Option<Command>) -> Result<()> {
    let reading = "gui, analyze, compare, diff, whatif, query, export or replay --list";
    let command = command.unwrap_or_else(|| Command::Gui(gui::GuiArgs::standard()));
    if let Command::Diff(args) = &command {
        if args.names_stores() {
            return Err(UsageError("diff --source compares two periods of one source: give --before and --after, not --before-db / --after-db".into()).into());
        }
    }
    if !matches!(
        command,
        Command::Analyze(_)
            | Command::Compare(_)
            | Command::Diff(_)
            | Command::Whatif(_)
            | Command::Query(_)
            | Command::Export(_)
            | Command::Gui(_)
    ) && !matches!(&command, Command::Replay(r) if r.list)
    {
        return Err(
            UsageError(format!("--source works with a reading command ({reading})")).into(),
        );
    }
    // what each command reads of the traces analysed before: the report their results
    // (the JSON report with their sections), and its cohorts' critical time per
    // operation summed in ClickHouse; compare nothing, its cohorts and values (per
    // tenant: a row per trace) come from ClickHouse; diff nothing, its periods' traces,
    // operations and calls come from ClickHouse; the other commands every span
    // whatif with an operation, tool or model: the sections of every trace, and the
    // spans only of those with a span it may name (the others keep their durations)
    let only = match &command {
        Command::Whatif(w) => w.span_match(),
        _ => None,
    };
    let earlier = match &command {
        Command::Analyze(a) if a.is_json() => tailscope_store::Earlier::Sections,
        Command::Compare(_) | Command::Diff(_) => tailscope_store::Earlier::Nothing,
        Command::Analyze(_) => tailscope_store::Earlier::Results,
        Command::Whatif(_) if only.is_some() => tailscope_store::Earlier::Sections,
        _ => tailscope_store::Earlier::Everything,
    };
    let run = source::open_matching(url, earlier, only.as_ref())?;
    let store = run.store();
    let shown = PathBuf::from(url.shown());
    let done = match command {
        Command::Analyze(args) if args.is_json() => analyze::run_on_source(&run, &args),
        // the text report's cohorts' critical time per operation is summed there
        Command::Analyze(args) => source::received_by(
            &run,
            "summed the cohorts' critical time per operation",
            || analyze::run_on_source(&run, &args),
        ),
        Command::Compare(args) => {
            let out = source::received_by(&run, "counted", || compare::output(&run, &args))?;
            print!("{out}");
            Ok(())
        }
        Command::Diff(args) => {
            let periods = source::periods(&run, &args)?;
            let out = source::received_by(&run, "the two periods read", || {
                diff::output_in(&run, periods, &shown, &args)
            })?;
            print!("{out}");
            Ok(())
        }
        Command::Whatif(args) => {
            print!("{}", whatif::output(store, &args)?);
            Ok(())
        }
        Command::Query(args) => query::run_on(store, &args),
        Command::Export(args) => export::run_on(store, &args),
        Command::Replay(_) => replay::list_on(store, &url.shown()),
        Command::Gui(args) => gui::run_source(store, url.shown(), &args),
        _ => unreachable!("checked above"),
    };
    let (received, sent) = run.bytes();
    eprintln!(
        "{received} bytes received from {} in all ({sent} sent)",
        url.shown()
    );
    done
}

fn run(cli: Cli) -> Result<()> {
    if let Some(url) = &cli.source {
        return run_on_source(url, cli.command);
    }
    if let Some(Command::Demo(args)) = &cli.command {
        return demo::run(cli.db.as_deref(), args);
    }
    let db = cli.db.unwrap_or_else(default_db);
    match cli.command {
        Some(Command::Demo(_)) => unreachable!("handled above"),
        Some(Command::Generate(args)) => generate::run(&args),
        Some(Command::Serve(args)) => serve::run(&db, &args),
        Some(Command::Analyze(args)) => analyze::run(&db, &args),
        Some(Command::Import(args)) => import::run(&db, &args),
        Some(Command::Query(args)) => query::run(&db, &args),
        Some(Command::Replay(args)) => replay::run(&db, &args),
        Some(Command::Export(args)) => export::run(&db, &args),
        Some(Command::Compare(args)) => compare::run(&db, &args),
        Some(Command::Diff(args)) => diff::run(&db, &args),
        Some(Command::Whatif(args)) => whatif::run(&db, &args),
        Some(Command::Gui(args)) => gui::run(&db, &args),
        None => gui::run(&db, &gui::GuiArgs::standard()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tailscope=info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
