//! A diff as people read it: values with units, the headline sentence and the report.

use super::{rfc3339, Change, Diff, DiffOptions, Period, Scope};
use std::fmt::Write;

/// A value of `metric` as a person reads it.
pub fn value_text(metric: &str, v: f64) -> String {
    match metric {
        "tokens_per_chunk" => format!("{v:.1}"),
        "output_tokens" => format!("{v:.0}"),
        "cache_hit_ratio" => format!("{:.1}%", v * 100.0),
        _ => duration_text(v),
    }
}

fn duration_text(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if a >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

fn pct(c: f64) -> String {
    format!("{:+.0}%", c * 100.0)
}

/// The group a change is about, as a person names it.
fn subject(c: &Change) -> String {
    match c.scope {
        Scope::Llm => {
            let model = c
                .model
                .as_deref()
                .filter(|m| !m.is_empty())
                .unwrap_or("(no model)");
            match c.server.as_deref().filter(|s| !s.is_empty()) {
                Some(server) => format!("{model} on {server}"),
                None => model.to_owned(),
            }
        }
        _ => format!("{} {}", c.service, c.operation).trim().to_owned(),
    }
}

fn metric_words(metric: &str) -> String {
    match metric {
        "p50_ns" => "p50".to_owned(),
        "p99_ns" => "p99".to_owned(),
        "ttft_ns" => "time to first token".to_owned(),
        "decode_ns_per_token" => "decode time per token".to_owned(),
        "tokens_per_chunk" => "tokens per streamed chunk".to_owned(),
        "output_tokens" => "output tokens per call".to_owned(),
        "cache_hit_ratio" => "cache-hit ratio".to_owned(),
        m => m.strip_suffix("_ns").unwrap_or(m).replace('_', " "),
    }
}

/// The LLM metrics that explain a cause's time.
fn llm_metrics_of(cause: &str) -> &'static [&'static str] {
    match cause {
        "decode_ns" => &["decode_ns_per_token", "output_tokens", "tokens_per_chunk"],
        "prefill_ns" | "kv_eviction_ns" => &["cache_hit_ratio", "ttft_ns"],
        "queue_ns" => &["ttft_ns"],
        _ => &[],
    }
}

fn llm_phrase(c: &Change) -> String {
    let dir = |up: &str, down: &str| {
        if c.after >= c.before {
            up.to_owned()
        } else {
            down.to_owned()
        }
    };
    let ch = c
        .change
        .map_or_else(String::new, |x| format!("{:.0}% ", x.abs() * 100.0));
    let what = match c.metric.as_str() {
        "decode_ns_per_token" => format!("decodes {ch}{} per token", dir("slower", "faster")),
        "ttft_ns" => format!(
            "takes {ch}{} to its first token",
            dir("longer", "less time")
        ),
        "tokens_per_chunk" => format!("streams {ch}{} chunks", dir("larger", "smaller")),
        "output_tokens" => format!("writes {ch}{} tokens per answer", dir("more", "fewer")),
        "cache_hit_ratio" => format!("hits its prefix cache {}", dir("more", "less")),
        m => format!(
            "{} {}",
            metric_words(m),
            c.change.map_or_else(String::new, pct)
        ),
    };
    format!(
        "{} {what} ({} → {})",
        subject(c),
        value_text(&c.metric, c.before),
        value_text(&c.metric, c.after)
    )
}

/// One sentence: what got slower (or faster) and by how much, and the likely reason.
/// `calls(llm, route)`: whether the route's traces call that LLM group.
pub(super) fn headline(
    changes: &[Change],
    n_before: usize,
    n_after: usize,
    opts: &DiffOptions,
    calls: &dyn Fn(&Change, &Change) -> bool,
) -> String {
    let sig: Vec<&Change> = changes.iter().filter(|c| c.significant).collect();
    if sig.is_empty() {
        return format!(
            "No significant change: across {n_before} traces before and {n_after} after, every shift is within noise or under {:.0}%.",
            opts.min_change * 100.0
        );
    }
    let latency =
        |c: &&&Change| c.scope == Scope::Route && (c.metric == "p99_ns" || c.metric == "p50_ns");
    // the route latency change that moved most, slower ones first
    let lead = sig
        .iter()
        .filter(latency)
        .max_by(|a, b| {
            let key = |c: &Change| (c.after > c.before, c.change.unwrap_or(0.0).abs());
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        })
        .copied();
    // the LLM change (of the groups the route calls) that moved most
    let best_llm = |metrics: &[&str], route: &Change| {
        sig.iter()
            .filter(|c| c.scope == Scope::Llm && metrics.contains(&c.metric.as_str()))
            .filter(|c| calls(c, route))
            .max_by(|a, b| {
                a.change
                    .unwrap_or(0.0)
                    .abs()
                    .total_cmp(&b.change.unwrap_or(0.0).abs())
            })
            .copied()
    };
    let Some(lead) = lead else {
        // no route latency moved: lead with the largest change of anything
        let top = sig[0];
        return if top.scope == Scope::Llm {
            // where that shows on the critical path: the related cause that moved most
            let related: Vec<&str> = ["decode_ns", "prefill_ns", "kv_eviction_ns", "queue_ns"]
                .into_iter()
                .filter(|c| llm_metrics_of(c).contains(&top.metric.as_str()))
                .collect();
            let on_path = sig
                .iter()
                .filter(|c| c.scope == Scope::Route && related.contains(&c.metric.as_str()))
                .filter(|c| calls(top, c))
                .max_by(|a, b| {
                    (a.after - a.before)
                        .abs()
                        .total_cmp(&(b.after - b.before).abs())
                });
            let path = on_path.map_or_else(String::new, |c| {
                format!(
                    ", {} {} of {} per trace on {}'s critical path",
                    if c.after >= c.before {
                        "adding"
                    } else {
                        "saving"
                    },
                    duration_text((c.after - c.before).abs()),
                    metric_words(&c.metric),
                    subject(c)
                )
            });
            format!(
                "{}{path}; no route's p50 or p99 moved significantly.",
                llm_phrase(top)
            )
        } else {
            format!(
                "{}: {} {} ({} → {}); no route's p50 or p99 moved significantly.",
                subject(top),
                metric_words(&top.metric),
                top.change.map_or_else(|| "new".to_owned(), pct),
                value_text(&top.metric, top.before),
                value_text(&top.metric, top.after)
            )
        };
    };
    let slower = lead.after > lead.before;
    let mut s = format!(
        "{} got {:.0}% {} at {} ({} → {})",
        subject(lead),
        lead.change.unwrap_or(0.0).abs() * 100.0,
        if slower { "slower" } else { "faster" },
        metric_words(&lead.metric),
        value_text(&lead.metric, lead.before),
        value_text(&lead.metric, lead.after)
    );
    // the cause of that route that moved most in the same direction
    let cause = sig
        .iter()
        .filter(|c| {
            c.scope == Scope::Route
                && c.service == lead.service
                && c.operation == lead.operation
                && c.metric.ends_with("_ns")
                && !latency(c)
                && (c.after > c.before) == slower
        })
        .max_by(|a, b| {
            (a.after - a.before)
                .abs()
                .total_cmp(&(b.after - b.before).abs())
        })
        .copied();
    let llm = match cause {
        Some(c) => best_llm(llm_metrics_of(&c.metric), lead),
        None => best_llm(
            &[
                "decode_ns_per_token",
                "ttft_ns",
                "cache_hit_ratio",
                "tokens_per_chunk",
                "output_tokens",
            ],
            lead,
        ),
    };
    if let Some(c) = cause {
        let _ = write!(
            s,
            ", mostly {} ({}{} per trace on the critical path)",
            metric_words(&c.metric),
            if c.after >= c.before { "+" } else { "−" },
            duration_text((c.after - c.before).abs())
        );
    }
    match llm {
        Some(l) => {
            let _ = write!(s, ": likely because {}.", llm_phrase(l));
        }
        None => s.push('.'),
    }
    s
}

impl Diff {
    /// The readable report; `all`: list every change, not only the significant ones.
    pub fn to_text(&self, all: bool) -> String {
        let mut o = String::new();
        let side = |p: &Period| {
            format!(
                "{} .. {} ({} traces)",
                rfc3339(p.from_ns),
                rfc3339(p.to_ns),
                p.traces
            )
        };
        let _ = writeln!(o, "before: {}", side(&self.before));
        let _ = writeln!(o, "after:  {}", side(&self.after));
        let _ = writeln!(o, "\n{}", self.headline);
        let sig = self.changes.iter().filter(|c| c.significant).count();
        let shown: Vec<&Change> = self
            .changes
            .iter()
            .filter(|c| all || c.significant)
            .collect();
        if !shown.is_empty() {
            let width = shown
                .iter()
                .map(|c| subject(c).chars().count())
                .max()
                .unwrap_or(4)
                .clamp(4, 90);
            let _ = writeln!(
                o,
                "\n{}:\n  {:<9} {:<width$} {:<22} {:>10} {:>10} {:>7}  {:<17}",
                if all {
                    "Changes, significant first"
                } else {
                    "Significant changes"
                },
                "scope",
                "what",
                "metric",
                "before",
                "after",
                "change",
                format!("{:.0}% interval", self.confidence * 100.0)
            );
            for c in shown {
                let what: String = subject(c).chars().take(width).collect();
                let iv = match (c.ci_low, c.ci_high) {
                    (Some(l), Some(h)) if c.change.is_some() && pct(l) == pct(h) => {
                        format!("[{:+.1}%, {:+.1}%]", l * 100.0, h * 100.0)
                    }
                    (Some(l), Some(h)) if c.change.is_some() => format!("[{}, {}]", pct(l), pct(h)),
                    (Some(l), Some(h)) => format!(
                        "[{}, {}]",
                        value_text(&c.metric, l),
                        value_text(&c.metric, h)
                    ),
                    _ => "too few".to_owned(),
                };
                let _ = writeln!(
                    o,
                    "  {:<9} {:<width$} {:<22} {:>10} {:>10} {:>7}  {:<17}{}",
                    c.scope.as_str(),
                    what,
                    c.metric,
                    value_text(&c.metric, c.before),
                    value_text(&c.metric, c.after),
                    c.change.map_or_else(|| "new".to_owned(), pct),
                    iv,
                    if all && c.significant { " *" } else { "" }
                );
            }
        }
        let rest = self.changes.len() - sig;
        if !all && rest > 0 {
            let _ = writeln!(
                o,
                "\n{rest} other shifts are within noise or too small to matter (--all lists them; --format json has every one)."
            );
        }
        o
    }
}
