//! `fuzz-bench`: the decoders' fuzz targets at scale. Per target it prints the inputs
//! run, inputs/s, how many decoded and failed, disagreements between decoders of one
//! format, panics, and the peak RSS; exits 1 on any panic or disagreement.
//!
//! ```sh
//! cargo run --release -p tailscope-tests --bin fuzz-bench -- --inputs 10000000
//! ```
//! Targets: `wire` (direct protobuf vs prost), `json` (direct OTLP/JSON vs serde),
//! `prost` (metrics and logs messages), `file` (file import, plain and gzip),
//! `ingestlog` (the ingest log's frames and payloads); `all` runs each in turn.

use anyhow::{bail, Result};
use clap::Parser;
use std::time::Instant;
use tailscope_ingest::fuzz::{run, Report, Target};
use tailscope_tests::mem::{mib, proc_status_kib, reset_peak_rss};

#[derive(Parser)]
#[command(name = "fuzz-bench", bin_name = "fuzz-bench")]
struct Args {
    /// wire, json, prost, file, ingestlog or all.
    #[arg(long, default_value = "all")]
    target: String,
    /// Inputs per target.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    inputs: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let names: Vec<&str> = if a.target == "all" {
        vec!["wire", "json", "prost", "file", "ingestlog"]
    } else {
        vec![a.target.as_str()]
    };
    let scratch = std::env::temp_dir().join(format!("tailscope-fuzz-{}", std::process::id()));
    let mut bad = 0;
    for name in names {
        reset_peak_rss();
        let t = Instant::now();
        let r: Report = match (name, Target::parse(name)) {
            ("ingestlog", _) => tailscope_tests::fuzz_log::run(a.inputs, a.seed, &scratch),
            (_, Some(target)) => run(target, a.inputs, a.seed, Some(&scratch)),
            _ => bail!("unknown target {name}: wire, json, prost, file, ingestlog or all"),
        };
        let s = t.elapsed().as_secs_f64();
        println!(
            "{name:<10} {:>11} inputs in {s:>7.1} s ({:>8.0}/s): {} decoded, {} failed, {} disagreements, {} panics; peak RSS {}",
            r.inputs,
            r.inputs as f64 / s.max(1e-9),
            r.accepted,
            r.declined,
            r.disagreements,
            r.panics,
            mib(proc_status_kib("VmHWM"))
        );
        for e in &r.examples {
            println!("    {}", e.chars().take(400).collect::<String>());
        }
        bad += r.panics + r.disagreements;
    }
    let _ = std::fs::remove_file(&scratch);
    if bad > 0 {
        bail!("{bad} panics or disagreements");
    }
    Ok(())
}
