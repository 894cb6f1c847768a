//! spec-bench: replay A/B of speculative decoding off (A) against on (B) at several
//! batch sizes and draft noises (which set the acceptance rate), through the same
//! `run_ab` as `tailscope replay`. The workload is `--requests` (default: the largest
//! batch) requests arriving together, each a distinct `--prompt`-token prompt
//! generating `--output` tokens; batch size B is `max_num_seqs = B`, so every batch
//! size decodes the same requests (TTFT then includes queueing behind the batch).
//!
//! `cargo run --release -p tailscope-engine --bin spec-bench [-- OPTIONS]`
//! Options: `--model tiny` (a shape), `--batches 1,8,32`, `--noises 0,0.05,0.1,0.2`,
//! `--k 4`, `--draft-layers N` (the draft keeps the target's first N layers),
//! `--method draft|ngram`, `--temperature T` (0: greedy), `--prompt 64`,
//! `--output 64`, `--requests N`, `--repeats 3`, `--json FILE` (every row as JSON).

use std::process::ExitCode;

use serde::Serialize;
use tailscope_engine::{run_ab, EngineConfig, ReplayOptions, SpecMethod, SpeculativeConfig};
use tailscope_model::{ReplayWorkload, Segment, Session, Turn};

struct Args {
    model: String,
    batches: Vec<usize>,
    noises: Vec<f64>,
    k: usize,
    draft_layers: Option<usize>,
    method: SpecMethod,
    temperature: f64,
    prompt: u32,
    output: u32,
    repeats: u32,
    requests: usize,
    json: Option<String>,
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| x.trim().parse().map_err(|_| format!("bad value {x:?}")))
        .collect()
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: "tiny".into(),
        batches: vec![1, 8, 32],
        noises: vec![0.0, 0.05, 0.1, 0.2],
        k: 4,
        draft_layers: None,
        method: SpecMethod::Draft,
        temperature: 0.0,
        prompt: 64,
        output: 64,
        repeats: 3,
        requests: 0,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: bad value {v:?}"))
        };
        let int = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: bad value {v:?}"))
        };
        match flag.as_str() {
            "--model" => a.model = v,
            "--batches" => a.batches = list(&v)?,
            "--noises" => a.noises = list(&v)?,
            "--k" => a.k = int(&v)?,
            "--draft-layers" => a.draft_layers = Some(int(&v)?),
            "--method" => {
                a.method = match v.as_str() {
                    "draft" => SpecMethod::Draft,
                    "ngram" => SpecMethod::Ngram,
                    _ => return Err(format!("--method: {v:?} (draft or ngram)")),
                }
            }
            "--temperature" => a.temperature = num(&v)?,
            "--prompt" => a.prompt = u32::try_from(int(&v)?).map_err(|e| e.to_string())?,
            "--output" => a.output = u32::try_from(int(&v)?).map_err(|e| e.to_string())?,
            "--repeats" => a.repeats = u32::try_from(int(&v)?).map_err(|e| e.to_string())?,
            "--requests" => a.requests = int(&v)?,
            "--json" => a.json = Some(v),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.requests == 0 {
        a.requests = a.batches.iter().copied().max().unwrap_or(1);
    }
    Ok(a)
}

/// `n` one-turn conversations arriving at 0, each its own token stream.
fn workload(n: usize, prompt: u32, output: u32) -> ReplayWorkload {
    let sessions = (0..n)
        .map(|i| Session {
            id: format!("req-{i}"),
            turns: vec![Turn {
                index: 0,
                trace_id: None,
                arrival_ns: 0,
                think_ns: 0,
                prompt: vec![Segment {
                    stream: 0xB00_0000 + i as u64,
                    len: prompt,
                }],
                output_tokens: output,
                recorded_ttft_ns: None,
                recorded_e2e_ns: None,
            }],
        })
        .collect();
    ReplayWorkload {
        focus: "req-0".into(),
        sessions,
    }
}

/// One (batch, noise) cell: means over the repeats, A = off, B = on.
#[derive(Serialize)]
struct Row {
    batch: usize,
    noise: f64,
    k: usize,
    spec_decode_draft_acceptance_rate: f64,
    spec_decode_mean_acceptance_length: f64,
    ttft_p50_ms_off: f64,
    ttft_p50_ms_on: f64,
    tpot_p50_ms_off: f64,
    tpot_p50_ms_on: f64,
    itl_p50_ms_off: f64,
    itl_p50_ms_on: f64,
    itl_p99_ms_off: f64,
    itl_p99_ms_on: f64,
    throughput_tok_s_off: f64,
    throughput_tok_s_on: f64,
    /// TPOT off / on (above 1: speculation helps).
    tpot_speedup: f64,
    /// Greedy outputs identical with and without (greedy runs only).
    outputs_identical: bool,
}

fn run(a: &Args) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    for &batch in &a.batches {
        let base = EngineConfig {
            model: Some(a.model.clone()),
            seed: 7,
            max_num_seqs: batch,
            max_num_batched_tokens: (batch * (a.k + 1)).max(a.prompt as usize * batch).max(512),
            cache_capacity_blocks: (a.requests * (a.prompt + a.output) as usize).div_ceil(16) + 64,
            temperature: a.temperature,
            ..EngineConfig::default()
        };
        // The same requests at every batch size (as many as the largest batch);
        // `max_num_seqs = batch` runs `batch` of them at a time.
        let w = workload(a.requests, a.prompt, a.output);
        let opts = ReplayOptions {
            repeats: a.repeats,
            max_output_tokens: Some(a.output),
            ..ReplayOptions::default()
        };
        for &noise in &a.noises {
            let on = EngineConfig {
                speculative: Some(SpeculativeConfig {
                    method: a.method,
                    draft_layers: a.draft_layers,
                    ..SpeculativeConfig::self_noised(a.k, noise)
                }),
                ..base.clone()
            };
            let r = run_ab(&w, &base, &on, &opts, &mut |_| {})?;
            let m = |name: &str| {
                r.overall
                    .iter()
                    .find(|c| c.metric == name)
                    .map_or((f64::NAN, f64::NAN), |c| (c.a_mean, c.b_mean))
            };
            let (tpot_off, tpot_on) = m("tpot_p50_ms");
            let row = Row {
                batch,
                noise,
                k: a.k,
                spec_decode_draft_acceptance_rate: m("spec_decode_draft_acceptance_rate").1,
                spec_decode_mean_acceptance_length: m("spec_decode_mean_acceptance_length").1,
                ttft_p50_ms_off: m("ttft_p50_ms").0,
                ttft_p50_ms_on: m("ttft_p50_ms").1,
                tpot_p50_ms_off: tpot_off,
                tpot_p50_ms_on: tpot_on,
                itl_p50_ms_off: m("itl_p50_ms").0,
                itl_p50_ms_on: m("itl_p50_ms").1,
                itl_p99_ms_off: m("itl_p99_ms").0,
                itl_p99_ms_on: m("itl_p99_ms").1,
                throughput_tok_s_off: m("throughput_tok_s").0,
                throughput_tok_s_on: m("throughput_tok_s").1,
                tpot_speedup: tpot_off / tpot_on,
                outputs_identical: r.outputs_identical,
            };
            println!(
                "{:>5} {:>6.3} {:>6.2} {:>6.2} {:>8.3} {:>8.3} {:>7.2}x {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.0} {:>9.0} {}",
                row.batch,
                row.noise,
                row.spec_decode_draft_acceptance_rate,
                row.spec_decode_mean_acceptance_length,
                row.tpot_p50_ms_off,
                row.tpot_p50_ms_on,
                row.tpot_speedup,
                row.itl_p50_ms_off,
                row.itl_p50_ms_on,
                row.itl_p99_ms_off,
                row.itl_p99_ms_on,
                row.throughput_tok_s_off,
                row.throughput_tok_s_on,
                if a.temperature > 0.0 {
                    "-"
                } else if row.outputs_identical {
                    "yes"
                } else {
                    "NO"
                }
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("spec-bench: {e}");
            }
            eprintln!(
                "{}",
                include_str!("spec-bench.rs")
                    .lines()
                    .take(14)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            return ExitCode::from(2);
        }
    };
    println!(
        "speculative decoding A/B: model {} k={} method {:?}{} temperature {} prompt {} output {} repeats {}",
        a.model,
        a.k,
        a.method,
        a.draft_layers.map(|l| format!(" draft_layers={l}")).unwrap_or_default(),
        a.temperature,
        a.prompt,
        a.output,
        a.repeats
    );
    println!(
        "batch  noise accept  len   tpot_off  tpot_on  speedup  itl50_off itl50_on itl99_off itl99_on  tok/s_off  tok/s_on same"
    );
    let rows = match run(&a) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spec-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Does the gain shrink as the batch grows? Per noise, TPOT speed-up at the
    // smallest against the largest batch.
    if let (Some(&lo), Some(&hi)) = (a.batches.iter().min(), a.batches.iter().max()) {
        for &noise in &a.noises {
            let at = |b: usize| {
                rows.iter()
                    .find(|r| r.batch == b && r.noise.to_bits() == noise.to_bits())
                    .map(|r| (r.tpot_speedup, r.spec_decode_draft_acceptance_rate))
            };
            if let (Some((s_lo, acc)), Some((s_hi, _))) = (at(lo), at(hi)) {
                println!(
                    "noise {noise}: acceptance {acc:.2}; TPOT speed-up {s_lo:.2}x at batch {lo}, {s_hi:.2}x at batch {hi}: the gain {}",
                    if s_hi < s_lo { "shrinks as the batch grows" } else { "does not shrink" }
                );
            }
        }
    }
    if let Some(path) = &a.json {
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => {
                if let Err(e) = std::fs::write(path, s) {
                    eprintln!("spec-bench: cannot write {path}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("spec-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
