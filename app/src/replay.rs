//! `tailscope replay`: replays a recorded conversation (from the store, a Mooncake
//! trace, or the built-in seed scenario) through the embedded engine under
//! configurations A and B and compares them.

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use tailscope::as_recorded;
use tailscope::replay_input::rows;
use tailscope::replay_input::{self, InputOptions};
use tailscope_engine::{run_ab, AbReport, Arrival, EngineConfig, ReplayOptions};
use tailscope_model::ReplayWorkload;
use tailscope_store::Store;

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Scenario {
    /// A long conversation whose cached prefix a burst evicts under A only.
    Seed,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("input").required(true).args(["conversation", "scenario", "mooncake", "list"])))]
pub struct ReplayArgs {
    /// Conversation id (gen_ai.conversation.id) to replay from the store.
    #[arg(long)]
    conversation: Option<String>,
    /// Run a built-in scenario instead of a stored conversation.
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
    /// Replay a Mooncake trace (JSON lines with timestamp, input_length, output_length, hash_ids).
    #[arg(long, value_name = "FILE")]
    mooncake: Option<PathBuf>,
    /// List the stored conversations worth replaying (most KV evictions first).
    #[arg(long)]
    pub list: bool,
    /// Configuration A (TOML). Defaults to the scenario's A with --scenario.
    #[arg(long, value_name = "A.toml", conflicts_with = "as_recorded")]
    a: Option<PathBuf>,
    /// Derive configuration A from the store, sized like the recorded server (cache
    /// capacity from the hit/miss pattern, unseen load as bursts before the recorded
    /// misses), write it to this TOML file (edit it and pass it as --a later) and use it
    /// as A. Without --b, B is the same with twice the cache (written beside it as
    /// NAME.b.toml). Replays open loop at the recorded times.
    #[arg(
        long,
        value_name = "OUT.toml",
        requires = "conversation",
        conflicts_with = "closed_loop"
    )]
    as_recorded: Option<PathBuf>,
    /// Configuration B (TOML).
    #[arg(long, value_name = "B.toml")]
    b: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Runs per side, interleaved, to measure run-to-run noise.
    #[arg(long, default_value_t = 3)]
    repeats: u32,
    /// Closed loop: a turn arrives after the previous one completed plus its think time.
    #[arg(long)]
    closed_loop: bool,
    /// Open loop: multiply recorded arrival times by this (0.5 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Multiply recorded token counts by this (stored conversations only), so long
    /// prompts replay in reasonable time on a small CPU model.
    #[arg(long, default_value_t = 0.05)]
    token_scale: f64,
    /// At most this many competing conversations from the same window.
    #[arg(long, default_value_t = 8)]
    max_background: usize,
    /// Cap on generated tokens per turn.
    #[arg(long, default_value_t = 32)]
    max_output_tokens: u32,
    #[arg(long, default_value_t = 200.0)]
    slo_ttft_ms: f64,
    #[arg(long, default_value_t = 50.0)]
    slo_tpot_ms: f64,
}

fn config(path: Option<&Path>, default: Option<&EngineConfig>, side: &str) -> Result<EngineConfig> {
    match (path, default) {
        (Some(p), _) => Ok(EngineConfig::from_file(p)?),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => anyhow::bail!("configuration {side} is missing: pass --{} FILE.toml (see engine/configs/seed-{}.toml for the fields)", side.to_lowercase(), side.to_lowercase()),
    }
}

fn list(db: &Path) -> Result<()> {
    let store = analysed(db)?;
    list_on(&store, &db.display().to_string())
}

/// `replay --list` over an analysed store (a local one, or one pulled from
/// `--source`) that `shown` names.
pub fn list_on(store: &Store, shown: &str) -> Result<()> {
    let rows = store.replay_candidates(20)?;
    if rows.is_empty() {
        let census = store.llm_call_census(None)?;
        println!("no conversation with two or more replayable LLM calls in {shown}: {census}");
        return Ok(());
    }
    println!(
        "{:<40} {:>6} {:>10} {:>12}",
        "conversation", "calls", "evictions", "max input"
    );
    for r in rows {
        println!(
            "{:<40} {:>6} {:>10} {:>12}",
            r.conversation_id, r.calls, r.kv_evictions, r.max_input_tokens
        );
    }
    Ok(())
}

fn open(db: &Path) -> Result<Store> {
    Store::open(db).with_context(|| format!("opening store {}", db.display()))
}

/// Opens the store with its analysis up to date: a call's conversation may be inherited
/// from an ancestor span, and analysis is what records that.
fn analysed(db: &Path) -> Result<Store> {
    let store = open(db)?;
    // the results are what replay reads; no report is needed
    let stats = tailscope_analysis::update(&store, &|_| {})
        .with_context(|| format!("bringing the analysis of {} up to date", db.display()))?;
    if stats.recomputed > 0 {
        eprintln!("analysed {} new traces", stats.recomputed);
    }
    Ok(store)
}

pub fn run(db: &Path, args: &ReplayArgs) -> Result<()> {
    if args.list {
        return list(db);
    }
    let (workload, a, b, store) = source(db, args)?;
    let opts = ReplayOptions {
        arrival: if args.closed_loop {
            Arrival::ClosedLoop
        } else {
            Arrival::OpenLoop {
                time_scale: args.time_scale,
            }
        },
        repeats: args.repeats.max(1),
        slo_ttft_ms: args.slo_ttft_ms,
        slo_tpot_ms: args.slo_tpot_ms,
        max_output_tokens: Some(args.max_output_tokens.max(1)),
    };
    let report = run_with_progress(
        &workload,
        &a,
        &b,
        &opts,
        matches!(args.format, Format::Text),
    )?;
    let id = store
        .save_replay(&rows(&report, &workload))
        .context("saving the replay results in the store")?;
    tracing::info!(
        "replay {id} saved in {} (tables replay_runs, replay_turns, replay_evictions)",
        db.display()
    );
    match args.format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!("{}", serde_json::to_string(&report)?),
    }
    Ok(())
}

type Source = (ReplayWorkload, EngineConfig, EngineConfig, Store);

fn source(db: &Path, args: &ReplayArgs) -> Result<Source> {
    if args.scenario.is_some() {
        let (w, a, b) = tailscope_engine::scenario::seed();
        return Ok((
            w,
            config(args.a.as_deref(), Some(&a), "A")?,
            config(args.b.as_deref(), Some(&b), "B")?,
            open(db)?,
        ));
    }
    if let Some(out) = &args.as_recorded {
        return as_recorded(db, args, out);
    }
    let a = config(args.a.as_deref(), None, "A")?;
    let b = config(args.b.as_deref(), None, "B")?;
    if let Some(path) = &args.mooncake {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading Mooncake trace {}", path.display()))?;
        let w = tailscope_engine::mooncake::parse(&text)
            .with_context(|| format!("parsing Mooncake trace {}", path.display()))?;
        return Ok((w, a, b, open(db)?));
    }
    let conv = args.conversation.as_deref().unwrap_or_default();
    let store = analysed(db)?;
    let input = InputOptions {
        token_scale: args.token_scale,
        max_background: args.max_background,
        max_prompt_tokens: 4096,
    };
    let w = replay_input::workload(&store, conv, &input)?;
    Ok((w, a, b, store))
}

/// `--as-recorded OUT.toml`: the workload at the snapped token scale, A derived from
/// the store and written to `OUT.toml`, B from `--b` or A with twice the cache.
fn as_recorded(db: &Path, args: &ReplayArgs, out: &Path) -> Result<Source> {
    let conv = args.conversation.as_deref().unwrap_or_default();
    let store = analysed(db)?;
    let scale = as_recorded::snapped_scale(args.token_scale);
    if (scale - args.token_scale).abs() > 1e-9 {
        eprintln!(
            "token scale {} -> {scale}: one recorded 16-token block is then one replay block",
            args.token_scale
        );
    }
    let input = InputOptions {
        token_scale: scale,
        max_background: args.max_background,
        max_prompt_tokens: 4096,
    };
    let w = replay_input::workload(&store, conv, &input)?;
    let focus = store
        .llm_calls(Some(conv), None)
        .context("reading the conversation's calls")?;
    let base =
        EngineConfig::from_toml_str_named(tailscope_engine::scenario::SEED_A_TOML, "seed-a.toml")?;
    let derived = as_recorded::derive(&w, &focus, scale, args.max_output_tokens, &base)?;
    std::fs::write(out, derived.toml())
        .with_context(|| format!("writing the as-recorded configuration {}", out.display()))?;
    eprintln!(
        "configuration A (as recorded) written to {}:",
        out.display()
    );
    for n in &derived.notes {
        eprintln!("  {n}");
    }
    let b = if let Some(p) = &args.b {
        EngineConfig::from_file(p)?
    } else {
        let b = derived.bigger_cache(2);
        let path = out.with_extension("b.toml");
        std::fs::write(
            &path,
            format!(
                "# B: the as-recorded configuration ({}) with twice the cache.\n\n{}",
                out.display(),
                b.to_toml()
            ),
        )
        .with_context(|| format!("writing configuration B {}", path.display()))?;
        eprintln!(
            "configuration B (twice the cache) written to {}",
            path.display()
        );
        b
    };
    Ok((w, derived.config, b, store))
}

fn run_with_progress(
    w: &ReplayWorkload,
    a: &EngineConfig,
    b: &EngineConfig,
    opts: &ReplayOptions,
    show: bool,
) -> Result<AbReport> {
    // per run, in thousandths of its own turns (a [background] section adds turns)
    let total = 1000 * 2 * u64::from(opts.repeats);
    let bar = if show {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} replay {msg} [{bar:30}] {percent}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = |p: tailscope_engine::ReplayProgress| {
        let run = u64::from(p.repeat) * 2 + u64::from(p.config == "B");
        if p.config.ends_with("warm-up") {
            return;
        }
        let within = 1000 * p.turns_done as u64 / p.turns_total.max(1) as u64;
        bar.set_position(run * 1000 + within);
        bar.set_message(format!("{} run {}/{}", p.config, p.repeat + 1, p.repeats));
    };
    let r = run_ab(w, a, b, opts, &mut progress).context("replaying")?;
    bar.finish_and_clear();
    Ok(r)
}
