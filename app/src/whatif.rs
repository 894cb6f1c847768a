//! `tailscope whatif`: the latency the stored traces would have had after a change to
//! an operation, a cause, a tool or a model; `--rank`: the operations whose 50%
//! speed-up moves the tail most.

use crate::analyze::Format;
use anyhow::Result;
use clap::{ArgGroup, Args};
use std::path::Path;
use tailscope_analysis::whatif::Change;
use tailscope_analysis::whatif::{rank, rank_json, rank_text, whatif, Target};
use tailscope_analysis::Options;
use tailscope_store::Store;

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("change").args(["speedup", "duration", "parallel", "cache"])))]
pub struct WhatifArgs {
    /// What changes, as KIND:NAME: op:SPAN_NAME (or op:"SERVICE · NAME"), cause:CAUSE,
    /// tool:TOOL, model:MODEL.
    #[arg(long, value_parser = parse_target, required_unless_present = "rank", requires = "change")]
    target: Option<Target>,
    /// It gets this much faster (0.5: −50%).
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    speedup: Option<f64>,
    /// It takes this long, e.g. 200ms, 1.5s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ns)]
    duration: Option<i64>,
    /// It runs in parallel with its siblings instead of after them.
    #[arg(long)]
    parallel: bool,
    /// It is served from a cache: HIT_RATE:HIT_LATENCY, e.g. 0.3:20ms.
    #[arg(long, value_name = "HIT_RATE:HIT_LATENCY", value_parser = parse_cache)]
    cache: Option<(f64, i64)>,
    /// List the operations on the tail's critical paths whose 50% speed-up alone moves
    /// the percentile most.
    #[arg(long, conflicts_with = "target")]
    rank: bool,
    /// The tail percentile predicted (with p50, p90 and the mean).
    #[arg(long, default_value_t = 99.0)]
    percentile: f64,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse()
        .map_err(|e: tailscope_analysis::AnalysisError| e.to_string())
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "a fraction from 0 to 1 (0.5: 50% faster), got {s:?}"
        )),
    }
}

/// `200ms`, `1.5s`, `300us`, `20000ns` as nanoseconds.
fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return Err(format!("a duration such as 200ms or 1.5s, got {s:?}")),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok((v * scale).round() as i64),
        _ => Err(format!("a duration such as 200ms or 1.5s, got {s:?}")),
    }
}

fn parse_cache(s: &str) -> Result<(f64, i64), String> {
    let (rate, latency) = s
        .split_once(':')
        .ok_or_else(|| format!("HIT_RATE:HIT_LATENCY such as 0.3:20ms, got {s:?}"))?;
    Ok((parse_fraction(rate)?, parse_duration_ns(latency)?))
}

impl WhatifArgs {
    fn change(&self) -> Option<Change> {
        if let Some(f) = self.speedup {
            Some(Change::SpeedUp(f))
        } else if let Some(ns) = self.duration {
            Some(Change::Duration(ns))
        } else if self.parallel {
            Some(Change::Parallel)
        } else {
            self.cache
                .map(|(hit_rate, hit_ns)| Change::Cache { hit_rate, hit_ns })
        }
    }
}

pub fn run(db: &Path, args: &WhatifArgs) -> Result<()> {
    Options {
        percentile: args.percentile,
    }
    .check()?;
    if let Some(live) = crate::live::client::held(db) {
        live.announce("predicting");
        return live.run("/cli", &crate::live::protocol::forwarded_args("whatif"));
    }
    let store = crate::compare::open_analysed(db)?;
    print!("{}", output(&store, args)?);
    Ok(())
}

impl WhatifArgs {
    /// The spans a `--source` run must pull of the traces analysed before: those its
    /// target may name (an operation's spans, spans with the tool's or model's name
    /// among their attribute values, or a trace with a critical-path section of the
    /// cause); `None`: every trace's (`--rank`).
    pub fn span_match(&self) -> Option<tailscope_store::SpanMatch> {
        use tailscope_analysis::whatif::TargetKind;
        use tailscope_store::SpanMatch;
        let t = self.target.as_ref().filter(|_| !self.rank)?;
        match t.kind {
            TargetKind::Op => {
                let (service, name) = t.op_parts();
                Some(SpanMatch::Named {
                    service: service.map(str::to_owned),
                    name: name.to_owned(),
                })
            }
            TargetKind::Tool | TargetKind::Model => Some(SpanMatch::AttributeValue(t.name.clone())),
            // the traces whose stored critical path has a section of the cause
            TargetKind::Cause => tailscope_model::Cause::parse(&t.name)
                .map(|c| SpanMatch::Cause(c.as_str().to_owned())),
        }
    }
}

/// What `whatif` prints for an analysed store.
pub fn output(store: &Store, args: &WhatifArgs) -> Result<String> {
    let opts = Options {
        percentile: args.percentile,
    };
    if args.rank {
        let r = rank(store, opts)?;
        return Ok(match args.format {
            Format::Text => rank_text(&r, args.percentile),
            Format::Json => format!("{}\n", serde_json::to_string(&rank_json(&r))?),
        });
    }
    let (Some(target), Some(change)) = (&args.target, args.change()) else {
        anyhow::bail!("give --target KIND:NAME and one change (--speedup, --duration, --parallel or --cache), or --rank");
    };
    let w = whatif(store, target, change, opts)?;
    Ok(match args.format {
        Format::Text => w.to_text(),
        Format::Json => format!("{}\n", serde_json::to_string(&w.to_json())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_caches_parse() {
        assert_eq!(parse_duration_ns("200ms"), Ok(200_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration_ns("300us"), Ok(300_000));
        assert!(parse_duration_ns("fast").is_err());
        assert!(parse_duration_ns("-2ms").is_err());
        assert_eq!(parse_cache("0.3:20ms"), Ok((0.3, 20_000_000)));
        assert!(parse_cache("1.5:20ms").is_err());
        assert!(parse_fraction("0.5").is_ok() && parse_fraction("2").is_err());
    }
}
