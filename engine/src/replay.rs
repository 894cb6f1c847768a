//! Replay of a [`ReplayWorkload`] through the engine, and the A/B comparison.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tailscope_model::{ReplayWorkload, Segment, Session, Turn};

use crate::cache::Eviction;
use crate::config::{BackgroundLoad, EngineConfig};
use crate::engine::{load_model, Engine, Event, RequestSpec};
use crate::error::EngineError;
use crate::model::Llama;
use crate::spec::{load_draft, SpecStats};

/// How turns arrive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Arrival {
    /// At the recorded arrival times, multiplied by `time_scale` (0.5 = twice as fast).
    OpenLoop { time_scale: f64 },
    /// A conversation's next turn arrives when its previous turn completed plus the
    /// recorded think time; first turns at their recorded arrival.
    ClosedLoop,
}

/// Replay options shared by both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayOptions {
    pub arrival: Arrival,
    /// Runs per side (interleaved A, B, A, B, ...).
    pub repeats: u32,
    /// Service-level objectives for goodput.
    pub slo_ttft_ms: f64,
    pub slo_tpot_ms: f64,
    /// Caps every turn's generated tokens (replays stay short).
    pub max_output_tokens: Option<u32>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            arrival: Arrival::OpenLoop { time_scale: 1.0 },
            repeats: 3,
            slo_ttft_ms: 200.0,
            slo_tpot_ms: 50.0,
            max_output_tokens: Some(64),
        }
    }
}

/// Progress of a replay, for a progress bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayProgress {
    /// "A" or "B"; "A warm-up" / "B warm-up" for the untimed first run of each side.
    pub config: &'static str,
    /// From 0.
    pub repeat: u32,
    pub repeats: u32,
    pub turns_done: usize,
    pub turns_total: usize,
}

/// One replayed request (a turn of a conversation) and its metrics.
#[derive(Debug, Clone, Serialize)]
pub struct TurnMetrics {
    pub request: usize,
    pub session: String,
    pub turn: u32,
    pub input_tokens: usize,
    pub output_tokens: usize,
    pub arrival_ns: i64,
    pub ttft_ns: i64,
    pub e2e_ns: i64,
    /// (e2e - ttft) / (output - 1); 0 for one output token.
    pub tpot_ns: i64,
    pub itl_ns: Vec<i64>,
    pub prefix_hit_tokens: usize,
    /// Tokens computed before the first token (what the prefix cache did not save).
    pub prefill_tokens: usize,
    pub preemptions: u32,
    pub recorded_ttft_ns: Option<i64>,
    pub recorded_e2e_ns: Option<i64>,
    /// Greedy output token ids.
    pub output: Vec<u32>,
}

/// Whole-run statistics (vLLM definitions). Times in ms, rates per second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub tpot_p50_ms: f64,
    pub tpot_p99_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p99_ms: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub throughput_tok_s: f64,
    pub goodput_req_s: f64,
    pub goodput_fraction: f64,
    pub prefix_hit_tokens: f64,
    pub evicted_blocks: f64,
    pub preemptions: f64,
    pub makespan_ms: f64,
    /// Speculative decoding (vLLM's names; 0 when it is off): accepted over proposed tokens.
    pub spec_decode_draft_acceptance_rate: f64,
    /// Tokens per verification step, 1 + accepted / drafts.
    pub spec_decode_mean_acceptance_length: f64,
    pub spec_decode_num_drafts: f64,
    pub spec_decode_num_draft_tokens: f64,
    pub spec_decode_num_accepted_tokens: f64,
}

/// An evicted block, with the conversations involved.
#[derive(Debug, Clone, Serialize)]
pub struct EvictionNote {
    pub t_ns: i64,
    pub block: u32,
    /// Conversation/turn whose cached content was evicted.
    pub owner_session: Option<String>,
    pub owner_turn: Option<u32>,
    /// Conversation/turn whose allocation evicted it.
    pub by_session: String,
    pub by_turn: u32,
}

/// One run of a workload under one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub config: EngineConfig,
    pub turns: Vec<TurnMetrics>,
    pub summary: Summary,
    pub evictions: Vec<EvictionNote>,
    /// Raw timestamped events (QUEUED, SCHEDULED, PREEMPTED, FIRST_TOKEN, TOKEN,
    /// FINISHED, EVICTED_BLOCK); `request` indexes `turns`.
    pub events: Vec<Event>,
    /// Sum of block reference counts after the run (0 when nothing leaked).
    pub leaked_refs: u64,
    /// Speculative decoding's counters, when it was on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_decode: Option<SpecStats>,
}

/// Nearest-rank percentile of unsorted values ([`tailscope_model::stats::percentile_of`];
/// 0 for none).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    tailscope_model::stats::percentile_of(&mut values.to_vec(), p).unwrap_or(0.0)
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Replays `workload` once under `cfg`.
pub fn run_one(
    workload: &ReplayWorkload,
    cfg: &EngineConfig,
    opts: &ReplayOptions,
    progress: &mut dyn FnMut(ReplayProgress),
) -> Result<RunReport, EngineError> {
    let model = load_model(cfg)?;
    run_with_model(workload, cfg, model, opts, "A", 0, false, progress).map(|(r, _)| r)
}

/// The target and, when `cfg` asks for a draft model, the draft.
fn load_models(cfg: &EngineConfig) -> Result<(Llama, Option<Llama>), EngineError> {
    let model = load_model(cfg)?;
    with_draft(cfg, model)
}

fn with_draft(cfg: &EngineConfig, model: Llama) -> Result<(Llama, Option<Llama>), EngineError> {
    let draft = match &cfg.speculative {
        Some(sp) => load_draft(sp, &model, cfg.seed)?,
        None => None,
    };
    Ok((model, draft))
}

/// Replays with an already loaded model; `check_logits` compares every sampled
/// token's logits with a naive recomputation and returns the largest difference.
#[allow(clippy::too_many_arguments)]
pub fn run_with_model(
    workload: &ReplayWorkload,
    cfg: &EngineConfig,
    model: Llama,
    opts: &ReplayOptions,
    label: &'static str,
    repeat: u32,
    check_logits: bool,
    progress: &mut dyn FnMut(ReplayProgress),
) -> Result<(RunReport, Option<f32>), EngineError> {
    let never = AtomicBool::new(false);
    run_model(
        workload,
        cfg,
        with_draft(cfg, model)?,
        opts,
        (label, repeat),
        check_logits,
        progress,
        &never,
    )
}

/// [`run_with_model`] that stops with [`EngineError::Cancelled`] at the next engine
/// step once `cancel` is set.
#[allow(clippy::too_many_arguments)]
fn run_model(
    workload: &ReplayWorkload,
    cfg: &EngineConfig,
    (model, draft): (Llama, Option<Llama>),
    opts: &ReplayOptions,
    (label, repeat): (&'static str, u32),
    check_logits: bool,
    progress: &mut dyn FnMut(ReplayProgress),
    cancel: &AtomicBool,
) -> Result<(RunReport, Option<f32>), EngineError> {
    if workload.sessions.iter().all(|s| s.turns.is_empty()) {
        return Err(EngineError::Workload("the workload has no turns".into()));
    }
    let loaded;
    let workload = match &cfg.background {
        Some(bg) => {
            loaded = with_background(workload, bg)?;
            &loaded
        }
        None => workload,
    };
    let vocab = model.shape().vocab_size as u32;
    let mut engine = Engine::with_draft(cfg, model, draft)?;
    if check_logits {
        engine.check_logits = Some(0.0);
    }
    let t0 = workload.first_arrival_ns();
    let scale = match opts.arrival {
        Arrival::OpenLoop { time_scale } => time_scale.max(0.0),
        Arrival::ClosedLoop => 1.0,
    };
    let closed = matches!(opts.arrival, Arrival::ClosedLoop);
    let at = |ns: i64| ((ns - t0) as f64 * scale) as i64;
    // Pending arrivals: (time, session index, turn index).
    let mut pending: Vec<(i64, usize, usize)> = Vec::new();
    for (si, s) in workload.sessions.iter().enumerate() {
        for (ti, t) in s.turns.iter().enumerate() {
            if !closed || ti == 0 {
                pending.push((at(t.arrival_ns), si, ti));
            }
        }
    }
    let total: usize = workload.sessions.iter().map(|s| s.turns.len()).sum();
    let mut req_of: Vec<(usize, usize)> = Vec::new();
    let mut done = 0usize;
    progress(ReplayProgress {
        config: label,
        repeat,
        repeats: opts.repeats,
        turns_done: 0,
        turns_total: total,
    });
    loop {
        pending.sort_by_key(|p| std::cmp::Reverse(*p));
        while let Some(&(t, si, ti)) = pending.last() {
            if t > engine.clock_ns() && engine.has_work() {
                break;
            }
            if !engine.has_work() {
                engine.advance_to(t);
            }
            pending.pop();
            let turn = &workload.sessions[si].turns[ti];
            let cap = opts.max_output_tokens.unwrap_or(u32::MAX);
            let id = engine.add_request(RequestSpec {
                prompt: turn.prompt_tokens(vocab),
                max_output: turn.output_tokens.min(cap).max(1) as usize,
                arrival_ns: t,
            })?;
            debug_assert_eq!(id, req_of.len());
            req_of.push((si, ti));
        }
        if !engine.has_work() {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        for id in engine.step()? {
            done += 1;
            progress(ReplayProgress {
                config: label,
                repeat,
                repeats: opts.repeats,
                turns_done: done,
                turns_total: total,
            });
            let (si, ti) = req_of[id];
            if closed && ti + 1 < workload.sessions[si].turns.len() {
                let next = &workload.sessions[si].turns[ti + 1];
                let fin = engine.outcome(id).finished_ns.unwrap_or(engine.clock_ns());
                pending.push((fin + next.think_ns.max(0), si, ti + 1));
            }
        }
    }
    let turns: Vec<TurnMetrics> = req_of
        .iter()
        .enumerate()
        .map(|(id, &(si, ti))| {
            let o = engine.outcome(id);
            let s = &workload.sessions[si];
            let t = &s.turns[ti];
            let first = o.first_token_ns.unwrap_or(o.arrival_ns);
            let fin = o.finished_ns.unwrap_or(first);
            let ttft = first - o.arrival_ns;
            let e2e = fin - o.arrival_ns;
            let n = o.output.len();
            TurnMetrics {
                request: id,
                session: s.id.clone(),
                turn: t.index,
                input_tokens: o.prompt_tokens,
                output_tokens: n,
                arrival_ns: o.arrival_ns,
                ttft_ns: ttft,
                e2e_ns: e2e,
                tpot_ns: if n > 1 {
                    (e2e - ttft) / (n as i64 - 1)
                } else {
                    0
                },
                itl_ns: o.token_ns.windows(2).map(|w| w[1] - w[0]).collect(),
                prefix_hit_tokens: o.prefix_hit_tokens,
                prefill_tokens: o.prefill_tokens,
                preemptions: o.preemptions,
                recorded_ttft_ns: t.recorded_ttft_ns,
                recorded_e2e_ns: t.recorded_e2e_ns,
                output: o.output.clone(),
            }
        })
        .collect();
    let evictions = eviction_notes(&engine.evictions, &engine.events, &turns);
    let mut summary = summarise(&turns, evictions.len(), opts);
    let spec_decode = cfg.speculative.as_ref().map(|_| engine.spec_stats.clone());
    if let Some(st) = &spec_decode {
        summary.spec_decode_draft_acceptance_rate = st.draft_acceptance_rate();
        summary.spec_decode_mean_acceptance_length = st.mean_acceptance_length();
        summary.spec_decode_num_drafts = st.num_drafts as f64;
        summary.spec_decode_num_draft_tokens = st.num_draft_tokens as f64;
        summary.spec_decode_num_accepted_tokens = st.num_accepted_tokens as f64;
    }
    let leaked_refs = engine.pool().total_refs();
    // Arrivals are logged when admitted, possibly after later events: order by time.
    engine.events.sort_by_key(|e| e.t_ns);
    let worst = engine.check_logits;
    Ok((
        RunReport {
            config: cfg.clone(),
            turns,
            summary,
            evictions,
            events: std::mem::take(&mut engine.events),
            leaked_refs,
            spec_decode,
        },
        worst,
    ))
}

/// `workload` plus the background load: one single-turn session
/// [`BackgroundLoad::SESSION`] per request (so a closed-loop replay keeps their
/// arrival times), steady ones every `1 / rate_per_s` seconds from `warmup_s` before
/// the first arrival to the last one, then the bursts; each prompt its own token stream.
pub fn with_background(
    workload: &ReplayWorkload,
    bg: &BackgroundLoad,
) -> Result<ReplayWorkload, EngineError> {
    let arrivals = workload
        .sessions
        .iter()
        .flat_map(|s| s.turns.iter().map(|t| t.arrival_ns));
    let (first, last) = arrivals.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if first > last {
        return Ok(workload.clone());
    }
    let too_many = |n: usize| {
        EngineError::Workload(format!(
            "[background] asks for {n} requests or more; at most {} are replayed",
            BackgroundLoad::MAX_REQUESTS
        ))
    };
    // (arrival, prompt tokens)
    let mut reqs: Vec<(i64, u32)> = Vec::new();
    if bg.rate_per_s > 0.0 {
        let step = 1e9 / bg.rate_per_s;
        let start = first as f64 - bg.warmup_s * 1e9;
        let n = ((last as f64 - start) / step).floor() + 1.0;
        if n > BackgroundLoad::MAX_REQUESTS as f64 {
            return Err(too_many(n as usize));
        }
        reqs.extend((0..n as usize).map(|i| ((start + step * i as f64) as i64, bg.prompt_tokens)));
    }
    let per = bg.prompt_tokens.max(1);
    for b in &bg.bursts {
        let n = b.tokens.div_ceil(per) as usize;
        if reqs.len() + n > BackgroundLoad::MAX_REQUESTS {
            return Err(too_many(reqs.len() + n));
        }
        let at = first + (b.at_s * 1e9) as i64;
        let mut left = b.tokens;
        while left > 0 {
            let len = left.min(per);
            reqs.push((at, len));
            left -= len;
        }
    }
    let mut out = workload.clone();
    out.sessions.extend(
        reqs.iter()
            .enumerate()
            .map(|(i, &(arrival_ns, len))| Session {
                id: BackgroundLoad::SESSION.to_owned(),
                turns: vec![Turn {
                    index: i as u32,
                    trace_id: None,
                    arrival_ns,
                    think_ns: 0,
                    prompt: vec![Segment {
                        // a stream of its own (the recorded ones are FNV-1a hashes of ids)
                        stream: 0xB6_0000_0000_0000
                            ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                        len,
                    }],
                    output_tokens: bg.output_tokens.max(1),
                    recorded_ttft_ns: None,
                    recorded_e2e_ns: None,
                }],
            }),
    );
    Ok(out)
}

fn eviction_notes(
    evictions: &[Eviction],
    events: &[Event],
    turns: &[TurnMetrics],
) -> Vec<EvictionNote> {
    use crate::engine::EventKind;
    let times: Vec<i64> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::EvictedBlock { .. }))
        .map(|e| e.t_ns)
        .collect();
    evictions
        .iter()
        .zip(times.iter().copied().chain(std::iter::repeat(0)))
        .map(|(e, t_ns)| EvictionNote {
            t_ns,
            block: e.block,
            owner_session: e.owner.map(|o| turns[o].session.clone()),
            owner_turn: e.owner.map(|o| turns[o].turn),
            by_session: turns[e.by].session.clone(),
            by_turn: turns[e.by].turn,
        })
        .collect()
}

fn summarise(turns: &[TurnMetrics], evicted: usize, opts: &ReplayOptions) -> Summary {
    let col = |f: &dyn Fn(&TurnMetrics) -> f64| turns.iter().map(f).collect::<Vec<f64>>();
    let ttft = col(&|t| ms(t.ttft_ns));
    let e2e = col(&|t| ms(t.e2e_ns));
    let tpot: Vec<f64> = turns
        .iter()
        .filter(|t| t.output_tokens > 1)
        .map(|t| ms(t.tpot_ns))
        .collect();
    let itl: Vec<f64> = turns
        .iter()
        .flat_map(|t| t.itl_ns.iter().map(|&x| ms(x)))
        .collect();
    let start = turns.iter().map(|t| t.arrival_ns).min().unwrap_or(0);
    let end = turns
        .iter()
        .map(|t| t.arrival_ns + t.e2e_ns)
        .max()
        .unwrap_or(0);
    let secs = ((end - start) as f64 / 1e9).max(1e-9);
    let out: usize = turns.iter().map(|t| t.output_tokens).sum();
    let good = turns
        .iter()
        .filter(|t| {
            ms(t.ttft_ns) <= opts.slo_ttft_ms
                && (t.output_tokens <= 1 || ms(t.tpot_ns) <= opts.slo_tpot_ms)
        })
        .count();
    Summary {
        ttft_p50_ms: percentile(&ttft, 50.0),
        ttft_p99_ms: percentile(&ttft, 99.0),
        tpot_p50_ms: percentile(&tpot, 50.0),
        tpot_p99_ms: percentile(&tpot, 99.0),
        itl_p50_ms: percentile(&itl, 50.0),
        itl_p99_ms: percentile(&itl, 99.0),
        e2e_p50_ms: percentile(&e2e, 50.0),
        e2e_p99_ms: percentile(&e2e, 99.0),
        throughput_tok_s: out as f64 / secs,
        goodput_req_s: good as f64 / secs,
        goodput_fraction: if turns.is_empty() {
            0.0
        } else {
            good as f64 / turns.len() as f64
        },
        prefix_hit_tokens: turns.iter().map(|t| t.prefix_hit_tokens as f64).sum(),
        evicted_blocks: evicted as f64,
        preemptions: turns.iter().map(|t| f64::from(t.preemptions)).sum(),
        makespan_ms: secs * 1e3,
        ..Summary::default()
    }
}

/// A metric under A and B over the repeats.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub metric: String,
    pub a_mean: f64,
    pub b_mean: f64,
    /// b_mean - a_mean.
    pub diff: f64,
    pub a_min: f64,
    pub a_max: f64,
    pub b_min: f64,
    pub b_max: f64,
    /// Largest run-to-run range of either side.
    pub spread: f64,
    /// At least two repeats and the A and B ranges do not overlap.
    pub exceeds_noise: bool,
}

fn compare(metric: &str, a: &[f64], b: &[f64]) -> Compared {
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (mean, min, max)
    };
    let (am, amin, amax) = stats(a);
    let (bm, bmin, bmax) = stats(b);
    Compared {
        metric: metric.to_string(),
        a_mean: am,
        b_mean: bm,
        diff: bm - am,
        a_min: amin,
        a_max: amax,
        b_min: bmin,
        b_max: bmax,
        spread: (amax - amin).max(bmax - bmin),
        exceeds_noise: a.len() >= 2 && b.len() >= 2 && (amax < bmin || bmax < amin),
    }
}

/// One turn of the focus conversation under A and B.
#[derive(Debug, Clone, Serialize)]
pub struct FocusTurn {
    pub turn: u32,
    pub input_tokens: usize,
    pub output_tokens: usize,
    pub metrics: Vec<Compared>,
    /// Blocks of the focus conversation evicted before this turn ran (first repeat).
    pub evicted_before_a: Vec<EvictionNote>,
    pub evicted_before_b: Vec<EvictionNote>,
    /// One sentence: why this turn differs, when it does.
    pub explanation: Option<String>,
}

/// The A/B comparison (the `--format json` output of `tailscope replay`).
#[derive(Debug, Clone, Serialize)]
pub struct AbReport {
    pub focus: String,
    pub a: EngineConfig,
    pub b: EngineConfig,
    pub options: ReplayOptions,
    pub overall: Vec<Compared>,
    pub focus_turns: Vec<FocusTurn>,
    /// Every run, in the order A0, B0, A1, B1, ...; each with its raw events.
    pub runs_a: Vec<RunReport>,
    pub runs_b: Vec<RunReport>,
    /// Greedy outputs were identical in every run of both sides.
    pub outputs_identical: bool,
}

/// Runs `workload` under `a` and `b`, `opts.repeats` times each, interleaved.
pub fn run_ab(
    workload: &ReplayWorkload,
    a: &EngineConfig,
    b: &EngineConfig,
    opts: &ReplayOptions,
    progress: &mut dyn FnMut(ReplayProgress),
) -> Result<AbReport, EngineError> {
    run_ab_until(workload, a, b, opts, progress, &AtomicBool::new(false))
}

/// [`run_ab`] that stops with [`EngineError::Cancelled`] at the next engine step once
/// `cancel` is set (the GUI's Cancel).
pub fn run_ab_until(
    workload: &ReplayWorkload,
    a: &EngineConfig,
    b: &EngineConfig,
    opts: &ReplayOptions,
    progress: &mut dyn FnMut(ReplayProgress),
    cancel: &AtomicBool,
) -> Result<AbReport, EngineError> {
    if !workload.sessions.iter().any(|s| s.id == workload.focus) {
        return Err(EngineError::Workload(format!(
            "focus conversation {:?} is not in the workload",
            workload.focus
        )));
    }
    let repeats = opts.repeats.max(1);
    let mut runs_a = Vec::new();
    let mut runs_b = Vec::new();
    let model_a = load_models(a)?;
    let model_b = load_models(b)?;
    // Warm-up (untimed): first-touch page faults and allocator growth would
    // otherwise land on whichever side runs first.
    run_model(
        workload,
        a,
        model_a.clone(),
        opts,
        ("A warm-up", 0),
        false,
        progress,
        cancel,
    )?;
    run_model(
        workload,
        b,
        model_b.clone(),
        opts,
        ("B warm-up", 0),
        false,
        progress,
        cancel,
    )?;
    for r in 0..repeats {
        let (rep, _) = run_model(
            workload,
            a,
            model_a.clone(),
            opts,
            ("A", r),
            false,
            progress,
            cancel,
        )?;
        runs_a.push(rep);
        let (rep, _) = run_model(
            workload,
            b,
            model_b.clone(),
            opts,
            ("B", r),
            false,
            progress,
            cancel,
        )?;
        runs_b.push(rep);
    }
    Ok(build_ab(workload, a, b, opts, runs_a, runs_b))
}

fn build_ab(
    workload: &ReplayWorkload,
    a: &EngineConfig,
    b: &EngineConfig,
    opts: &ReplayOptions,
    runs_a: Vec<RunReport>,
    runs_b: Vec<RunReport>,
) -> AbReport {
    type Getter = fn(&Summary) -> f64;
    let fields: [(&str, Getter); 20] = [
        ("ttft_p50_ms", |s| s.ttft_p50_ms),
        ("ttft_p99_ms", |s| s.ttft_p99_ms),
        ("tpot_p50_ms", |s| s.tpot_p50_ms),
        ("tpot_p99_ms", |s| s.tpot_p99_ms),
        ("itl_p50_ms", |s| s.itl_p50_ms),
        ("itl_p99_ms", |s| s.itl_p99_ms),
        ("e2e_p50_ms", |s| s.e2e_p50_ms),
        ("e2e_p99_ms", |s| s.e2e_p99_ms),
        ("throughput_tok_s", |s| s.throughput_tok_s),
        ("goodput_req_s", |s| s.goodput_req_s),
        ("goodput_fraction", |s| s.goodput_fraction),
        ("prefix_hit_tokens", |s| s.prefix_hit_tokens),
        ("evicted_blocks", |s| s.evicted_blocks),
        ("preemptions", |s| s.preemptions),
        ("makespan_ms", |s| s.makespan_ms),
        ("spec_decode_draft_acceptance_rate", |s| {
            s.spec_decode_draft_acceptance_rate
        }),
        ("spec_decode_mean_acceptance_length", |s| {
            s.spec_decode_mean_acceptance_length
        }),
        ("spec_decode_num_drafts", |s| s.spec_decode_num_drafts),
        ("spec_decode_num_draft_tokens", |s| {
            s.spec_decode_num_draft_tokens
        }),
        ("spec_decode_num_accepted_tokens", |s| {
            s.spec_decode_num_accepted_tokens
        }),
    ];
    let overall = fields
        .iter()
        .map(|(name, f)| {
            let va: Vec<f64> = runs_a.iter().map(|r| f(&r.summary)).collect();
            let vb: Vec<f64> = runs_b.iter().map(|r| f(&r.summary)).collect();
            compare(name, &va, &vb)
        })
        .collect();
    let focus = &workload.focus;
    let focus_turns = focus_rows(focus, &runs_a, &runs_b);
    let outputs = |r: &RunReport| r.turns.iter().map(|t| t.output.clone()).collect::<Vec<_>>();
    let reference = runs_a.first().map(outputs);
    let outputs_identical = runs_a
        .iter()
        .chain(&runs_b)
        .all(|r| Some(outputs(r)) == reference);
    AbReport {
        focus: focus.clone(),
        a: a.clone(),
        b: b.clone(),
        options: opts.clone(),
        overall,
        focus_turns,
        runs_a,
        runs_b,
        outputs_identical,
    }
}

fn focus_rows(focus: &str, runs_a: &[RunReport], runs_b: &[RunReport]) -> Vec<FocusTurn> {
    let Some(first_a) = runs_a.first() else {
        return Vec::new();
    };
    let Some(first_b) = runs_b.first() else {
        return Vec::new();
    };
    let turns_of = |r: &RunReport| -> Vec<TurnMetrics> {
        let mut v: Vec<TurnMetrics> = r
            .turns
            .iter()
            .filter(|t| t.session == focus)
            .cloned()
            .collect();
        v.sort_by_key(|t| t.turn);
        v
    };
    let fa = turns_of(first_a);
    let fb = turns_of(first_b);
    // Evictions of the focus conversation's blocks before each turn was admitted.
    let before = |r: &RunReport, turns: &[TurnMetrics], k: usize| -> Vec<EvictionNote> {
        let lo = if k == 0 {
            i64::MIN
        } else {
            turns[k - 1].arrival_ns + turns[k - 1].e2e_ns
        };
        let hi = turns[k].arrival_ns + turns[k].ttft_ns;
        r.evictions
            .iter()
            .filter(|e| e.owner_session.as_deref() == Some(focus) && e.t_ns >= lo && e.t_ns <= hi)
            .cloned()
            .collect()
    };
    let mut rows = Vec::new();
    for k in 0..fa.len().min(fb.len()) {
        let per = |runs: &[RunReport], f: fn(&TurnMetrics) -> f64| -> Vec<f64> {
            runs.iter()
                .filter_map(|r| turns_of(r).get(k).map(f))
                .collect()
        };
        let metrics: Vec<Compared> = [
            ("ttft_ms", (|t| ms(t.ttft_ns)) as fn(&TurnMetrics) -> f64),
            ("tpot_ms", |t| ms(t.tpot_ns)),
            ("e2e_ms", |t| ms(t.e2e_ns)),
            ("prefix_hit_tokens", |t| t.prefix_hit_tokens as f64),
            ("prefill_tokens", |t| t.prefill_tokens as f64),
            ("preemptions", |t| f64::from(t.preemptions)),
        ]
        .iter()
        .map(|(name, f)| compare(name, &per(runs_a, *f), &per(runs_b, *f)))
        .collect();
        let ev_a = before(first_a, &fa, k);
        let ev_b = before(first_b, &fb, k);
        let explanation = explain(&fa[k], &fb[k], &ev_a, &ev_b, &metrics[0]);
        rows.push(FocusTurn {
            turn: fa[k].turn,
            input_tokens: fa[k].input_tokens,
            output_tokens: fa[k].output_tokens,
            metrics,
            evicted_before_a: ev_a,
            evicted_before_b: ev_b,
            explanation,
        });
    }
    rows
}

fn who(ev: &[EvictionNote]) -> String {
    // the background load's requests count as one evicter
    let mut by: Vec<(String, Option<u32>, usize)> = Vec::new();
    for e in ev {
        let turn = (e.by_session != BackgroundLoad::SESSION).then_some(e.by_turn);
        match by
            .iter_mut()
            .find(|(s, t, _)| *s == e.by_session && *t == turn)
        {
            Some(x) => x.2 += 1,
            None => by.push((e.by_session.clone(), turn, 1)),
        }
    }
    by.iter()
        .map(|(s, t, n)| match t {
            Some(t) => format!("{n} by {s} turn {t}"),
            None => format!("{n} by the {s}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn explain(
    a: &TurnMetrics,
    b: &TurnMetrics,
    ev_a: &[EvictionNote],
    ev_b: &[EvictionNote],
    ttft: &Compared,
) -> Option<String> {
    let lost_a = b.prefix_hit_tokens.saturating_sub(a.prefix_hit_tokens);
    let lost_b = a.prefix_hit_tokens.saturating_sub(b.prefix_hit_tokens);
    if lost_a > 0 && !ev_a.is_empty() {
        Some(format!(
            "under A this turn re-prefilled {lost_a} prompt tokens that B served from the prefix cache: {} of its cached blocks were evicted ({}); TTFT {:+.1} ms B vs A",
            ev_a.len(),
            who(ev_a),
            ttft.diff
        ))
    } else if lost_b > 0 && !ev_b.is_empty() {
        Some(format!(
            "under B this turn re-prefilled {lost_b} prompt tokens that A served from the prefix cache: {} of its cached blocks were evicted ({}); TTFT {:+.1} ms B vs A",
            ev_b.len(),
            who(ev_b),
            ttft.diff
        ))
    } else if ttft.exceeds_noise {
        Some(format!(
            "TTFT {:+.1} ms B vs A with the same prefix hits (scheduling or batching)",
            ttft.diff
        ))
    } else {
        None
    }
}

impl AbReport {
    /// Human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "replay of conversation {} ({} repeats per side)",
            self.focus,
            self.options.repeats.max(1)
        );
        let _ = writeln!(s, "  A: {}", self.a.summary());
        let _ = writeln!(s, "  B: {}", self.b.summary());
        // The spec_decode_* rows (and their wider name column) only when a side uses it.
        let spec = self.a.speculative.is_some() || self.b.speculative.is_some();
        let w = if spec { 34 } else { 22 };
        let _ = writeln!(
            s,
            "\n{:<w$}A mean      B mean        B-A    spread  beyond noise",
            "overall",
            w = w + 5
        );
        for m in &self.overall {
            if !spec && m.metric.starts_with("spec_decode_") {
                continue;
            }
            let _ = writeln!(
                s,
                "  {:<w$} {:>10.2}  {:>10.2}  {:>+9.2}  {:>8.2}  {}",
                m.metric,
                m.a_mean,
                m.b_mean,
                m.diff,
                m.spread,
                if m.exceeds_noise { "yes" } else { "no" }
            );
        }
        let _ = writeln!(
            s,
            "\nfocus conversation, per turn (ms; A -> B, [A min..max] [B min..max])"
        );
        for t in &self.focus_turns {
            let g = |name: &str| t.metrics.iter().find(|m| m.metric == name);
            let _ = write!(
                s,
                "  turn {:>3}  in {:>6}  out {:>4}",
                t.turn, t.input_tokens, t.output_tokens
            );
            if let Some(m) = g("ttft_ms") {
                let _ = write!(
                    s,
                    "  ttft {:.1} -> {:.1} [{:.1}..{:.1}] [{:.1}..{:.1}]{}",
                    m.a_mean,
                    m.b_mean,
                    m.a_min,
                    m.a_max,
                    m.b_min,
                    m.b_max,
                    if m.exceeds_noise { " *" } else { "" }
                );
            }
            if let Some(m) = g("e2e_ms") {
                let _ = write!(s, "  e2e {:.1} -> {:.1}", m.a_mean, m.b_mean);
            }
            if let Some(m) = g("prefix_hit_tokens") {
                let _ = write!(s, "  hits {:.0} -> {:.0}", m.a_mean, m.b_mean);
            }
            if let Some(m) = g("prefill_tokens") {
                let _ = write!(s, "  prefilled {:.0} -> {:.0}", m.a_mean, m.b_mean);
            }
            let _ = writeln!(s);
            if let Some(e) = &t.explanation {
                let _ = writeln!(s, "            {e}");
            }
        }
        let _ = writeln!(
            s,
            "\n* = A and B ranges over the repeats do not overlap. Greedy outputs identical under A and B: {}",
            if self.outputs_identical { "yes" } else { "NO" }
        );
        s
    }
}
