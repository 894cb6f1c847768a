//! The event loop: conversations, async jobs and batch bursts share one simulated server.

use crate::config::{GroundTruth, PlantedCause, Workload, WorkloadConfig};
use crate::metrics;
use crate::plan::{find_node, llm_calls, walk, LlmCallRef, Node, Timing};
use crate::render::{render, RenderCx};
use crate::resources::Resources;
use crate::server_sim::Server;
use crate::trace_gen::{
    plan_batch_request, plan_turn, think_time, Conversation, Planted, AUX_OWNER_BASE,
};
use crate::util::{int, ms, rng_for, uni, IdGen, SEC};
use rand::rngs::StdRng;
use rand::Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use tailscope_model::{Batch, TraceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Turn(usize),
    Job,
    Batch,
}

/// One trace being simulated.
#[derive(Debug)]
struct Run {
    trace_id: TraceId,
    root: Node,
    kind: RunKind,
    start_ns: i64,
    calls: Vec<LlmCallRef>,
    /// Server arrival of call k minus server end of call k-1 (run start for k = 0).
    leads: Vec<i64>,
    /// Run end minus the last call's server end.
    tail_ns: i64,
    timings: Vec<Timing>,
    planted: Option<Planted>,
    conversation_id: String,
    /// Async job started after the last call: (run index, offset from the last call's end).
    spawn: Option<(usize, i64)>,
    /// (conversation, turn, in the turn's async job): the key of its calls' held timings.
    key: Option<(usize, usize, bool)>,
}

impl Run {
    fn new(trace_id: TraceId, mut root: Node, kind: RunKind, conversation_id: String) -> Self {
        let mut dry = Vec::new();
        walk(&mut root, 0, &[], &mut dry);
        let mut leads = Vec::with_capacity(dry.len());
        let mut prev = 0;
        for (arrival, end) in &dry {
            leads.push(arrival - prev);
            prev = *end;
        }
        let tail_ns = root.end - prev;
        let mut calls = Vec::with_capacity(dry.len());
        llm_calls(&root, &mut calls);
        Self {
            trace_id,
            root,
            kind,
            start_ns: 0,
            calls,
            leads,
            tail_ns,
            timings: Vec::new(),
            planted: None,
            conversation_id,
            spawn: None,
            key: None,
        }
    }

    /// Offset of `node`'s end from the last LLM call's end, in the dry layout.
    fn offset_after_last_call(&self, id: tailscope_model::SpanId) -> i64 {
        let last_end = self.root.end - self.tail_ns;
        find_node(&self.root, id).map_or(0, |n| n.end - last_end)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    TurnStart(usize),
    Call(usize, usize),
}

struct Sim<'a> {
    cfg: &'a WorkloadConfig,
    ids: IdGen,
    rng: StdRng,
    server: Server,
    convs: Vec<Conversation>,
    runs: Vec<Run>,
    heap: BinaryHeap<Reverse<(i64, u64, Ev)>>,
    seq: u64,
    next_owner: u64,
    bursts: u64,
    planted_counts: BTreeMap<PlantedCause, u64>,
}

impl Sim<'_> {
    fn push(&mut self, t: i64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, ev)));
    }

    fn add_run(&mut self, run: Run, start: i64) -> usize {
        let idx = self.runs.len();
        let mut run = run;
        run.start_ns = start;
        let first = run.leads.first().copied();
        self.runs.push(run);
        if let Some(lead) = first {
            self.push(start + lead, Ev::Call(idx, 0));
        }
        idx
    }

    /// The enabled cause furthest behind its share (so every cause shows up even in small
    /// workloads), skipping `exclude`.
    fn pick_cause(&self, exclude: Option<PlantedCause>) -> Option<PlantedCause> {
        // Queue bursts slow every request that arrives during them, so plant them less often.
        let weight = |p: PlantedCause| match p {
            PlantedCause::Queue => 0.1,
            PlantedCause::KvEviction => 0.4,
            _ => 1.0,
        };
        let mut best: Option<(f64, PlantedCause)> = None;
        for p in self.cfg.causes.iter().filter(|p| Some(**p) != exclude) {
            let done = self.planted_counts.get(p).copied().unwrap_or(0) as f64;
            let score = done / weight(*p);
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, *p));
            }
        }
        best.map(|(_, p)| p)
    }

    fn turn_start(&mut self, t: i64, conv: usize) {
        self.server.advance(t);
        let cfg = self.cfg;
        let Some(c) = self.convs.get_mut(conv) else {
            return;
        };
        c.active = true;
        let wants = !cfg.causes.is_empty() && c.rng.random_bool(cfg.cause_rate);
        let mut cause = if wants { self.pick_cause(None) } else { None };
        if cause == Some(PlantedCause::KvEviction) && !self.kv_burst(t) {
            // No evictable conversation right now: plant something else, retry later.
            cause = self.pick_cause(Some(PlantedCause::KvEviction));
        }
        if let Some(p) = cause {
            *self.planted_counts.entry(p).or_insert(0) += 1;
        }
        let in_trace =
            cause.filter(|c| !matches!(c, PlantedCause::Queue | PlantedCause::KvEviction));
        let Some(c) = self.convs.get_mut(conv) else {
            return;
        };
        let turn = c.next_turn;
        let plan = plan_turn(c, self.cfg, &mut self.ids, &mut self.next_owner, in_trace);
        let conv_id = c.id.clone();
        let mut run = Run::new(plan.trace_id, plan.root, RunKind::Turn(conv), conv_id);
        run.planted = plan.planted;
        run.key = Some((conv, turn, false));
        let first_arrival = t + run.leads.first().copied().unwrap_or(0);
        let job = plan.job.map(|j| {
            let offset = run.offset_after_last_call(j.spawn_id) + j.dispatch_ns;
            let mut job = Run::new(j.trace_id, j.root, RunKind::Job, j.conversation_id);
            job.key = Some((conv, turn, true));
            (job, offset)
        });
        let idx = self.add_run(run, t);
        if let Some((job_run, offset)) = job {
            let job_idx = self.runs.len();
            self.runs.push(job_run);
            if let Some(r) = self.runs.get_mut(idx) {
                r.spawn = Some((job_idx, offset));
            }
        }
        if self.runs.get(idx).is_some_and(|r| r.calls.is_empty()) {
            self.finish_run(idx, t);
        }
        if cause == Some(PlantedCause::Queue) {
            self.queue_burst(t, first_arrival);
        }
    }

    fn batch_request(&mut self, batch_id: &str, arrival: i64, input: i64, output: i64) {
        let (trace_id, root, conv_id) = plan_batch_request(
            &mut self.rng,
            &mut self.ids,
            self.cfg,
            &mut self.next_owner,
            batch_id,
            input,
            output,
        );
        let run = Run::new(trace_id, root, RunKind::Batch, conv_id);
        let lead = run.leads.first().copied().unwrap_or(0);
        self.add_run(run, arrival - lead);
    }

    /// Enough long-decode requests to fill every slot just before `victim_arrival`.
    fn queue_burst(&mut self, now: i64, victim_arrival: i64) {
        self.bursts += 1;
        // the seed keeps batch ids of different workloads in one store apart
        let batch_id = format!("batch-{:x}-q{:04}", self.cfg.seed, self.bursts);
        let s = &self.cfg.server;
        let n = s.max_num_seqs + int(&mut self.rng, 2, 6) as usize;
        let hold = self.cfg.magnitude * uni(&mut self.rng, 1.5, 3.5);
        let tpot = s.decode_secs_per_token * (1.0 + s.batch_slowdown);
        for _ in 0..n {
            let arrival = (victim_arrival - ms(&mut self.rng, 1.0, 25.0)).max(now);
            let input = int(&mut self.rng, 300, 900);
            let output = ((hold * uni(&mut self.rng, 0.9, 1.1)) / tpot).max(8.0) as i64;
            self.batch_request(&batch_id, arrival, input, output);
        }
    }

    /// Long-context requests sized to evict the least recently used live conversation prefix.
    fn kv_burst(&mut self, now: i64) -> bool {
        self.server.advance(now);
        let cap = self.server.config().kv_capacity_tokens;
        // Big enough that the re-prefill counts as the turn's cause.
        let min_prefix = (truth_threshold_ns(self.cfg) as f64
            * self.cfg.server.prefill_tokens_per_sec
            / 1e9) as i64;
        let mut cum = 0;
        let mut victim = None;
        for (owner, tokens) in self.server.lru_entries() {
            cum += tokens;
            if owner < AUX_OWNER_BASE {
                let live = self
                    .convs
                    .get(owner as usize)
                    .is_some_and(|c| c.active || c.has_more_turns());
                if live && tokens >= min_prefix {
                    victim = Some(owner);
                    break;
                }
            }
        }
        let need = self.server.free_tokens().max(0) + cum + 2 * self.server.config().block_size;
        if victim.is_none() || need > cap / 2 {
            return false;
        }
        self.bursts += 1;
        let batch_id = format!("batch-kv{:04}", self.bursts);
        // Each request pins its prompt and its output; together they add up to `need`.
        let mut left = need;
        while left > 0 {
            let output = int(&mut self.rng, 24, 64);
            let input = (left - output).clamp(2_000, 60_000);
            left -= input + output;
            let arrival = now + ms(&mut self.rng, 0.1, 2.0);
            self.batch_request(&batch_id, arrival, input, output);
        }
        true
    }

    fn call(&mut self, t: i64, run: usize, k: usize) {
        let Some(c) = self.runs.get(run).and_then(|r| r.calls.get(k)).copied() else {
            return;
        };
        let cacheable = self.runs.get(run).is_some_and(|r| r.kind != RunKind::Batch);
        let mut timing = self.server.submit(t, c.owner, c.input, c.output, cacheable);
        let held = self
            .runs
            .get(run)
            .and_then(|r| r.key)
            .and_then(|(conv, turn, job)| {
                self.cfg.held_timings.as_ref()?.0.get(&(conv, turn, job, k))
            });
        if let Some(held) = held {
            timing = crate::plan::Timing {
                arrival_ns: t,
                ..*held
            };
        }
        let end = t + timing.e2e_ns();
        let Some(r) = self.runs.get_mut(run) else {
            return;
        };
        r.timings.push(timing);
        if let Some(lead) = r.leads.get(k + 1).copied() {
            self.push(end + lead, Ev::Call(run, k + 1));
        } else {
            self.finish_run(run, end);
        }
    }

    /// The run's last call ended at `last_end`: start its async job and the next turn.
    fn finish_run(&mut self, run: usize, last_end: i64) {
        let Some(r) = self.runs.get(run) else {
            return;
        };
        let end = last_end + r.tail_ns;
        let kind = r.kind;
        if let Some((job, offset)) = r.spawn {
            let job_start = last_end + offset;
            if let Some(j) = self.runs.get_mut(job) {
                j.start_ns = job_start;
                if let Some(lead) = j.leads.first().copied() {
                    self.push(job_start + lead, Ev::Call(job, 0));
                }
            }
        }
        if let RunKind::Turn(conv) = kind {
            if let Some(c) = self.convs.get_mut(conv) {
                c.active = false;
                if c.has_more_turns() {
                    let next = end + think_time(&mut c.rng);
                    self.push(next, Ev::TurnStart(conv));
                }
            }
        }
    }

    /// Fills the prefix cache with prefixes of earlier (finished) traffic.
    fn warm_cache(&mut self, start: i64) {
        let cap = self.server.config().kv_capacity_tokens;
        let mut filled = 0;
        let mut age = 600 * SEC;
        while filled < cap * 95 / 100 {
            self.next_owner += 1;
            let tokens = int(&mut self.rng, 2_000, 16_000) / 16 * 16;
            age -= ms(&mut self.rng, 100.0, 2_000.0);
            self.server
                .warm(self.next_owner, tokens, start - age.max(SEC));
            filled += tokens;
        }
    }
}

/// Smallest simulated queueing / re-prefill delay that counts as a trace's cause.
fn truth_threshold_ns(cfg: &WorkloadConfig) -> i64 {
    ((0.5 * cfg.magnitude) * 1e9).max(50e6) as i64
}

/// Picks the ground truth of one turn: the planted cause or what the simulation did to it
/// (queueing, a re-prefill after eviction), whichever added the most time.
fn turn_truth(run: &Run, block: i64, prefill_ns_per_token: f64, min_ns: i64) -> Option<Planted> {
    let mut best = run.planted;
    let mut consider = |p: Planted| {
        if best.is_none_or(|b| p.extra_ns > b.extra_ns) {
            best = Some(p);
        }
    };
    let mut queue_sum = 0;
    let mut queue_max: Option<(i64, usize)> = None;
    let mut evict: Option<(i64, usize)> = None;
    for (k, (call, t)) in run.calls.iter().zip(&run.timings).enumerate() {
        queue_sum += t.queue_ns;
        if queue_max.is_none_or(|(q, _)| t.queue_ns > q) {
            queue_max = Some((t.queue_ns, k));
        }
        let lost = call.expected_cache - t.cache_read;
        if lost >= block {
            let extra = (lost as f64 * prefill_ns_per_token) as i64;
            if evict.is_none_or(|(e, _)| extra > e) {
                evict = Some((extra, k));
            }
        }
    }
    if let Some((_, k)) = queue_max {
        if queue_sum >= min_ns {
            if let Some(c) = run.calls.get(k) {
                consider(Planted {
                    cause: PlantedCause::Queue,
                    span_id: c.server_id,
                    extra_ns: queue_sum,
                });
            }
        }
    }
    if let Some((extra, k)) = evict {
        if extra >= min_ns {
            if let Some(c) = run.calls.get(k) {
                consider(Planted {
                    cause: PlantedCause::KvEviction,
                    span_id: c.server_id,
                    extra_ns: extra,
                });
            }
        }
    }
    best
}

/// Every simulated queueing and re-prefill of a run that is not `truth`, one per cause:
/// (cause, span of the call that lost most, time summed over the calls).
fn incidental(
    run: &Run,
    block: i64,
    prefill_ns_per_token: f64,
    truth: Option<&Planted>,
) -> Vec<Planted> {
    let mut queue: Option<Planted> = None;
    let mut evict: Option<Planted> = None;
    let add = |slot: &mut Option<Planted>, cause, span_id, ns: i64| {
        if ns <= 0 {
            return;
        }
        let p = slot.get_or_insert(Planted {
            cause,
            span_id,
            extra_ns: 0,
        });
        let biggest = p.extra_ns.max(0);
        p.extra_ns += ns;
        if ns > biggest {
            p.span_id = span_id;
        }
    };
    for (call, t) in run.calls.iter().zip(&run.timings) {
        add(&mut queue, PlantedCause::Queue, call.server_id, t.queue_ns);
        let lost = call.expected_cache - t.cache_read;
        if lost >= block {
            let extra = (lost as f64 * prefill_ns_per_token) as i64;
            add(&mut evict, PlantedCause::KvEviction, call.server_id, extra);
        }
    }
    [queue, evict]
        .into_iter()
        .flatten()
        .filter(|p| truth.is_none_or(|t| t.cause != p.cause))
        .collect()
}

/// Generates a workload, deterministically from `cfg.seed`.
///
/// Conversations start uniformly over `cfg.span_secs` and run their turns one after another
/// (with a think time between turns); every LLM call goes through one shared simulated vLLM
/// server in arrival order. A fraction `cfg.cause_rate` of turns gets a planted cause from
/// `cfg.causes`: in-trace ones are drawn into the turn's plan, `queue` and `kv_eviction` are
/// planted as bursts of a batch tenant (`batch-summarizer`) that fill the server's slots or
/// evict the least recently used live conversation prefix. The ground truth is one entry per
/// slowed turn: the planted cause, or the simulated queueing / re-prefill when that added more
/// (at least half a second × magnitude), pointing at the span where the time went. The
/// other simulated queueing and re-prefills, of any size and on any trace, are listed in
/// [`Workload::incidental`]. Out-of-range config values are clamped.
pub fn generate(cfg: &WorkloadConfig) -> Workload {
    let cfg = cfg.sanitized();
    let mut sim = Sim {
        cfg: &cfg,
        ids: IdGen::new(cfg.seed),
        rng: rng_for(cfg.seed, 0xB0B5),
        server: Server::new(&cfg.server),
        convs: (0..cfg.conversations)
            .map(|i| Conversation::new(i, &cfg))
            .collect(),
        runs: Vec::new(),
        heap: BinaryHeap::new(),
        seq: 0,
        next_owner: AUX_OWNER_BASE,
        bursts: 0,
        planted_counts: BTreeMap::new(),
    };
    sim.warm_cache(cfg.start_ns);
    let window = (cfg.span_secs * 1e9) as i64;
    for i in 0..cfg.conversations {
        let offset = sim
            .convs
            .get_mut(i)
            .map_or(0, |c| (uni(&mut c.rng, 0.0, 1.0) * window as f64) as i64);
        sim.push(cfg.start_ns + offset, Ev::TurnStart(i));
    }
    while let Some(Reverse((t, _, ev))) = sim.heap.pop() {
        match ev {
            Ev::TurnStart(c) => sim.turn_start(t, c),
            Ev::Call(r, k) => sim.call(t, r, k),
        }
    }

    let resources = Resources::new();
    let block = cfg.server.block_size;
    let per_token = 1e9 / cfg.server.prefill_tokens_per_sec;
    let min_ns = truth_threshold_ns(&cfg);
    let mut truth = Vec::new();
    let mut incidentals = Vec::new();
    let mut spans = Vec::with_capacity(sim.runs.len() * 24);
    // each call's timing by where it sits, for a later run to hold (see `HeldTimings`)
    let mut timings = crate::config::HeldTimings::default();
    for run in &sim.runs {
        if let Some((conv, turn, job)) = run.key {
            for (k, t) in run.timings.iter().enumerate() {
                timings.0.insert((conv, turn, job, k), *t);
            }
        }
    }
    for run in sim.runs {
        let entry = |p: Planted| GroundTruth {
            trace_id: run.trace_id,
            cause: p.cause.as_str().to_owned(),
            span_id: p.span_id,
            extra_ns: p.extra_ns,
            conversation_id: run.conversation_id.clone(),
        };
        let chosen = match run.kind {
            RunKind::Turn(_) => turn_truth(&run, block, per_token, min_ns),
            RunKind::Job | RunKind::Batch => None,
        };
        incidentals.extend(
            incidental(&run, block, per_token, chosen.as_ref())
                .into_iter()
                .map(entry),
        );
        truth.extend(chosen.map(entry));
        if run.timings.len() != run.calls.len() {
            // A job whose parent never finished (cannot happen: every run runs to the end).
            continue;
        }
        let mut root = run.root;
        let mut placed = Vec::with_capacity(run.timings.len());
        walk(&mut root, run.start_ns, &run.timings, &mut placed);
        debug_assert!(placed
            .iter()
            .zip(&run.timings)
            .all(|((a, _), t)| *a == t.arrival_ns));
        let mut cx = RenderCx {
            res: &resources,
            trace_id: run.trace_id,
            timings: &run.timings,
            next_call: 0,
        };
        render(root, None, &mut cx, &mut spans);
    }
    let metrics = metrics::build(&cfg, &sim.server, &spans, &resources);
    Workload {
        batch: Batch {
            resources: resources.all,
            spans,
            metrics,
            logs: Vec::new(),
        },
        truth,
        incidental: incidentals,
        timings,
    }
}
