//! `tailscope generate`: the workload generator as files (OTLP/JSON, JSON lines like
//! the Collector's file exporter, length-prefixed protobuf), as the fixed sample set,
//! or as live open-loop OTLP/gRPC load with real timestamps.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tailscope_ingest::client::OtlpClient;
use tailscope_ingest::encode;
use tailscope_model::{Batch, Span, TraceId};
use tailscope_samples::{generate, GroundTruth, WorkloadConfig};

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum FileFormat {
    /// traces.json and metrics.json, one OTLP/JSON document each.
    #[default]
    Json,
    /// otel-export.jsonl: one OTLP/JSON document per line (Collector file exporter).
    Jsonl,
    /// traces.pb and metrics.pb: 4-byte big-endian length-prefixed protobuf messages.
    Protobuf,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Seed (same seed, same workload).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Conversations to generate.
    #[arg(long, default_value_t = WorkloadConfig::default().conversations)]
    conversations: usize,
    /// Seconds over which the conversations start (then their turns run on). Default:
    /// the rate one inference server is sized for (240 conversations in 180 s), so a big
    /// run is a longer stretch of realistic traffic. A shorter window packs the same
    /// conversations into a burst served by a scaled-up server (the shape earlier
    /// versions gave every run: `--span-secs 180`, heavily queued at thousands of
    /// conversations).
    #[arg(long, value_name = "SECS")]
    span_secs: Option<f64>,
    /// Fraction of turns with a planted cause (0..1).
    #[arg(long, default_value_t = WorkloadConfig::default().cause_rate)]
    cause_rate: f64,
    /// Put a semantic cache (Redis, as redis-py's instrumentation writes it) in front of
    /// every turn, answering this share of them; slow lookups join the planted causes.
    #[arg(long, value_name = "HIT_RATE", value_parser = parse_rate)]
    semantic_cache: Option<f64>,
    /// Scale of the planted delays (1.0: about 1.5 to 3.5 s).
    #[arg(long, default_value_t = 1.0)]
    magnitude: f64,
    /// Write files into this folder (with truth.json, the planted causes).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["endpoint", "samples"])]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: FileFormat,
    /// Export live to this OTLP/gRPC endpoint, e.g. http://127.0.0.1:4317.
    #[arg(long, value_name = "URL", conflicts_with = "samples")]
    endpoint: Option<String>,
    /// Live export: target spans per second (traces start when their shifted start
    /// time comes; default: the workload's own pace).
    #[arg(long)]
    rate: Option<f64>,
    /// Write the fixed sample set (one file per dialect, a Collector file, planted causes).
    #[arg(long, value_name = "DIR")]
    samples: Option<PathBuf>,
}

/// The planted causes as JSON (`trace_id`, `cause`, `span_id`, `extra_ns`, `conversation_id`).
pub fn truth_json(truth: &[GroundTruth]) -> serde_json::Value {
    truth
        .iter()
        .map(|t| {
            serde_json::json!({
                "trace_id": t.trace_id.to_hex(), "cause": t.cause, "span_id": t.span_id.to_hex(),
                "extra_ns": t.extra_ns, "conversation_id": t.conversation_id,
            })
        })
        .collect()
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Spans grouped by trace, in trace start order.
fn by_trace(spans: Vec<Span>) -> Vec<Vec<Span>> {
    let mut map: BTreeMap<TraceId, Vec<Span>> = BTreeMap::new();
    for s in spans {
        map.entry(s.trace_id).or_default().push(s);
    }
    let mut traces: Vec<Vec<Span>> = map.into_values().collect();
    traces.sort_by_key(|t| t.iter().map(|s| s.start_ns).min().unwrap_or(0));
    traces
}

/// Chunks of whole traces with at most about `max_spans` spans each.
fn chunks(traces: Vec<Vec<Span>>, max_spans: usize) -> Vec<Vec<Span>> {
    let mut out: Vec<Vec<Span>> = Vec::new();
    let mut cur = Vec::new();
    for t in traces {
        if !cur.is_empty() && cur.len() + t.len() > max_spans {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend(t);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Traces, and the nearest-rank p50 and p99 of their durations (first start to last
/// end), of generated spans.
fn trace_shape(spans: &[Span]) -> (usize, i64, i64) {
    let mut ends: std::collections::HashMap<TraceId, (i64, i64)> = std::collections::HashMap::new();
    for s in spans {
        let e = ends.entry(s.trace_id).or_insert((s.start_ns, s.end_ns));
        e.0 = e.0.min(s.start_ns);
        e.1 = e.1.max(s.end_ns);
    }
    let mut d: Vec<i64> = ends.values().map(|(a, b)| b - a).collect();
    d.sort_unstable();
    let q = |p: f64| tailscope_model::stats::percentile(&d, p).unwrap_or(0);
    (d.len(), q(50.0), q(99.0))
}

fn with_spans(resources: &[tailscope_model::Resource], spans: Vec<Span>) -> Batch {
    Batch {
        resources: resources.to_vec(),
        spans,
        ..Batch::default()
    }
}

fn framed(messages: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&u32::try_from(m.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&m);
    }
    out
}

fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a hit rate between 0 and 1")),
    }
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let cfg = WorkloadConfig {
        seed: args.seed,
        conversations: args.conversations,
        cause_rate: args.cause_rate,
        magnitude: args.magnitude,
        span_secs: args
            .span_secs
            .unwrap_or_else(|| tailscope_samples::default_span_secs(args.conversations)),
        semantic_cache: args.semantic_cache,
        causes: {
            let mut c = WorkloadConfig::default().causes;
            if args.semantic_cache.is_some() {
                c.push(tailscope_samples::PlantedCause::SlowCacheLookup);
            }
            c
        },
        ..WorkloadConfig::default()
    };
    if let Some(dir) = &args.samples {
        return write_samples(dir);
    }
    let w = generate(&cfg);
    let (traces, p50, p99) = trace_shape(&w.batch.spans);
    println!(
        "generated {} conversations over {:.0} s: {} spans in {traces} traces (p50 {:.2} s, p99 {:.2} s), {} metric points, {} planted causes (seed {})",
        cfg.conversations,
        cfg.span_secs,
        w.batch.spans.len(),
        p50 as f64 / 1e9,
        p99 as f64 / 1e9,
        w.batch.metrics.len(),
        w.truth.len(),
        cfg.seed
    );
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_files(dir, args.format, w.batch)?;
        write(
            &dir.join("truth.json"),
            serde_json::to_vec_pretty(&truth_json(&w.truth))?,
        )?;
        println!(
            "wrote {} (import with: tailscope import {}/*)",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    if let Some(endpoint) = &args.endpoint {
        return live(endpoint, args.rate, cfg.span_secs, w.batch);
    }
    bail!("say where the workload goes: --out DIR, --endpoint URL or --samples DIR")
}

fn write_files(dir: &Path, format: FileFormat, batch: Batch) -> Result<()> {
    let Batch {
        resources,
        spans,
        metrics,
        ..
    } = batch;
    let metrics = Batch {
        resources: resources.clone(),
        metrics,
        ..Batch::default()
    };
    let traces = chunks(by_trace(spans), 2048);
    match format {
        FileFormat::Json => {
            let all = with_spans(&resources, traces.into_iter().flatten().collect());
            write(&dir.join("traces.json"), encode::traces_json(&all))?;
            write(&dir.join("metrics.json"), encode::metrics_json(&metrics))?;
        }
        FileFormat::Jsonl => {
            let mut text = String::new();
            for c in traces {
                text.push_str(&encode::traces_json(&with_spans(&resources, c)));
                text.push('\n');
            }
            text.push_str(&encode::metrics_json(&metrics));
            text.push('\n');
            write(&dir.join("otel-export.jsonl"), text)?;
        }
        FileFormat::Protobuf => {
            let bytes = framed(
                traces
                    .into_iter()
                    .map(|c| encode::traces_protobuf(&with_spans(&resources, c))),
            );
            write(&dir.join("traces.pb"), bytes)?;
            write(
                &dir.join("metrics.pb"),
                framed(std::iter::once(encode::metrics_protobuf(&metrics))),
            )?;
        }
    }
    Ok(())
}

/// Which semantic-convention dialect a trace speaks.
fn dialect(trace: &[Span]) -> &'static str {
    let has = |k: &str| {
        trace
            .iter()
            .any(|s| s.attributes.iter().any(|a| a.key == k))
    };
    if has("openinference.span.kind") {
        "openinference"
    } else if has("gen_ai.system") {
        "genai-deprecated"
    } else {
        "genai-current"
    }
}

/// The committed sample files of samples/data (small, deterministic).
fn write_samples(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let w = generate(&WorkloadConfig::small(7, 40));
    let resources = w.batch.resources.clone();
    let traces = by_trace(w.batch.spans.clone());
    let llm_traces = || {
        traces
            .iter()
            .filter(|t| t.iter().any(|s| s.promoted.model.is_some()))
    };
    for d in ["genai-current", "genai-deprecated", "openinference"] {
        let picked: Vec<Span> = llm_traces()
            .filter(|t| dialect(t) == d)
            .take(3)
            .flatten()
            .cloned()
            .collect();
        if picked.is_empty() {
            bail!("the sample workload has no {d} trace");
        }
        write(
            &dir.join(format!("{d}.json")),
            encode::traces_json(&with_spans(&resources, picked)),
        )?;
    }
    // A Collector file-exporter file: trace lines and a metrics line.
    let mut text = String::new();
    for t in llm_traces().take(4) {
        text.push_str(&encode::traces_json(&with_spans(&resources, t.clone())));
        text.push('\n');
    }
    let first = traces
        .first()
        .and_then(|t| t.first())
        .map_or(0, |s| s.start_ns);
    let metrics = Batch {
        resources: resources.clone(),
        metrics: w
            .batch
            .metrics
            .iter()
            .filter(|m| m.time_ns < first + 20_000_000_000)
            .cloned()
            .collect(),
        ..Batch::default()
    };
    text.push_str(&encode::metrics_json(&metrics));
    text.push('\n');
    write(&dir.join("collector-file-exporter.jsonl"), text)?;
    // One trace per planted cause, with its ground truth.
    let mut causes: BTreeMap<&str, &GroundTruth> = BTreeMap::new();
    for t in &w.truth {
        causes.entry(t.cause.as_str()).or_insert(t);
    }
    let picked: Vec<&GroundTruth> = causes.into_values().collect();
    let spans: Vec<Span> = w
        .batch
        .spans
        .iter()
        .filter(|s| picked.iter().any(|t| t.trace_id == s.trace_id))
        .cloned()
        .collect();
    write(
        &dir.join("planted-causes.json"),
        encode::traces_json(&with_spans(&resources, spans)),
    )?;
    let owned: Vec<GroundTruth> = picked.into_iter().cloned().collect();
    write(
        &dir.join("planted-causes.truth.json"),
        serde_json::to_vec_pretty(&truth_json(&owned))?,
    )?;
    println!("wrote the sample set into {}", dir.display());
    Ok(())
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Open-loop live export: each trace is sent when its (shifted, optionally
/// compressed) end time arrives, without waiting for earlier answers.
fn live(endpoint: &str, rate: Option<f64>, window_secs: f64, batch: Batch) -> Result<()> {
    let Batch {
        resources,
        spans,
        mut metrics,
        ..
    } = batch;
    let total = spans.len();
    let natural = total as f64 / window_secs.max(1.0);
    let speed = rate.map_or(1.0, |r| (r / natural).max(1e-3));
    let mut traces = by_trace(spans);
    let t0 = traces
        .first()
        .and_then(|t| t.iter().map(|s| s.start_ns).min())
        .unwrap_or(0);
    let start = now_ns();
    // Shift every trace so the window starts now; compress the gaps between traces by
    // `speed` but keep each trace's own durations.
    for t in &mut traces {
        let begin = t.iter().map(|s| s.start_ns).min().unwrap_or(t0);
        let new_begin = start + ((begin - t0) as f64 / speed) as i64;
        let shift = new_begin - begin;
        for s in t.iter_mut() {
            s.start_ns += shift;
            s.end_ns += shift;
            for e in &mut s.events {
                e.time_ns += shift;
            }
        }
    }
    for m in &mut metrics {
        let shift = |t: i64| start + ((t - t0) as f64 / speed) as i64;
        m.time_ns = shift(m.time_ns);
        if m.start_ns != 0 {
            m.start_ns = shift(m.start_ns);
        }
    }
    traces.sort_by_key(|t| t.iter().map(|s| s.end_ns).max().unwrap_or(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("live export [{bar:30}] {pos}/{len} spans {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let (sent, failed) = rt.block_on(async {
        let client = OtlpClient::connect(endpoint).await?;
        let began = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut pending: Vec<Span> = Vec::new();
        let mut iter = traces.into_iter().peekable();
        let mut sent = 0usize;
        while iter.peek().is_some() {
            let due = began.elapsed().as_nanos() as i64 + start;
            while let Some(t) =
                iter.next_if(|t| t.iter().map(|s| s.end_ns).max().unwrap_or(0) <= due)
            {
                pending.extend(t);
            }
            if !pending.is_empty() {
                let b = with_spans(&resources, std::mem::take(&mut pending));
                sent += b.spans.len();
                let mut c = client.clone();
                tasks.spawn(async move { c.export_traces(&b).await.map(|_| b.spans.len()) });
                bar.set_position(sent as u64);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut failed = 0usize;
        while let Some(r) = tasks.join_next().await {
            if !matches!(r, Ok(Ok(_))) {
                failed += 1;
            }
        }
        let mut c = client.clone();
        c.export_metrics(&Batch {
            resources: resources.clone(),
            metrics,
            ..Batch::default()
        })
        .await?;
        anyhow::Ok((sent, failed))
    })?;
    bar.finish_and_clear();
    println!("exported {sent} spans to {endpoint} at {speed:.1}x the workload's pace; {failed} export(s) failed");
    if failed > 0 {
        bail!("{failed} export(s) failed");
    }
    Ok(())
}
