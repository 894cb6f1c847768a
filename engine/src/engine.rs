//! The scheduler and run loop: admits requests at their arrival times, packs
//! prefill chunks and decode steps into batches under `max_num_batched_tokens`
//! and `max_num_seqs`, allocates KV blocks (prefix-cache hits first), preempts by
//! recomputation when blocks run out, and records timestamped events.
//!
//! Time: the engine clock advances by the measured wall-clock time of each step
//! (scheduling, the real forward pass, sampling) and jumps over idle gaps to the
//! next arrival instead of sleeping, so an hour of recorded idle time costs nothing
//! while every busy interval is real compute on this machine.

use std::collections::VecDeque;
use std::time::Instant;

use candle_core::Device;
use serde::Serialize;

use crate::cache::{chain_hashes, make_policy, BlockId, BlockPool, Eviction};
use crate::config::{EngineConfig, ModelShape, PolicyKind, SpecMethod};
use crate::error::EngineError;
use crate::model::{KvPool, Llama, SeqChunk};
use crate::spec::{self, Rng, SpecStats};

/// What happened, when (ns on the run's clock, from 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    Queued,
    /// Part of a batch: `new_tokens` computed this step; `cached_tokens` prefix hits
    /// (only on admission).
    Scheduled {
        new_tokens: usize,
        cached_tokens: usize,
    },
    Preempted,
    FirstToken,
    Token,
    Finished,
    /// A cached block was evicted by this event's request; `owner` had cached it.
    EvictedBlock {
        block: BlockId,
        owner: Option<usize>,
    },
}

/// One timestamped engine event about request `request`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub t_ns: i64,
    pub request: usize,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A request to run: prompt tokens, tokens to generate, arrival time.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub prompt: Vec<u32>,
    pub max_output: usize,
    pub arrival_ns: i64,
}

/// Per-request outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestOutcome {
    pub arrival_ns: i64,
    pub first_token_ns: Option<i64>,
    pub finished_ns: Option<i64>,
    pub token_ns: Vec<i64>,
    pub output: Vec<u32>,
    pub prompt_tokens: usize,
    pub prefix_hit_tokens: usize,
    /// Tokens computed before the first token (prompt minus prefix hits, plus any
    /// recomputation after a preemption).
    pub prefill_tokens: usize,
    pub preemptions: u32,
}

struct Req {
    tokens: Vec<u32>,
    prompt_len: usize,
    max_output: usize,
    computed: usize,
    blocks: Vec<BlockId>,
    hashes: Vec<u64>,
    cached_blocks: usize,
    admitted_once: bool,
    out: RequestOutcome,
    /// The draft's KV blocks and how many leading positions it holds.
    draft_blocks: Vec<BlockId>,
    draft_computed: usize,
}

/// The draft model of speculative decoding with its own paged KV cache (no prefix
/// caching: its blocks are plain storage).
struct Draft {
    model: Llama,
    kv: KvPool,
    pool: BlockPool,
}

/// What one scheduled request proposed this step.
#[derive(Default)]
struct Proposal {
    tokens: Vec<u32>,
    /// The draft's distribution of each proposed token (sampled decoding only).
    q: Vec<Vec<f32>>,
}

/// A loaded model with its KV pool and block pool, ready to serve requests.
pub struct Engine {
    cfg: EngineConfig,
    model: Llama,
    kv: KvPool,
    pool: BlockPool,
    reqs: Vec<Req>,
    waiting: VecDeque<usize>,
    running: Vec<usize>,
    /// Events so far.
    pub events: Vec<Event>,
    /// Cached blocks evicted so far.
    pub evictions: Vec<Eviction>,
    /// When set, every sampled token's logits are checked against a naive full
    /// recomputation; the largest absolute difference is kept here.
    pub check_logits: Option<f32>,
    clock_ns: i64,
    draft: Option<Draft>,
    /// Proposals per step (0: speculative decoding off).
    spec_k: usize,
    spec_method: SpecMethod,
    temperature: f64,
    rng: Rng,
    /// Speculative decoding's counters so far.
    pub spec_stats: SpecStats,
}

/// Opens the configured device: "cpu", or "cuda" / "cuda:N" in a build with the
/// `cuda` feature on a machine with an NVIDIA driver. Without a driver the error
/// says so in one line (the CUDA libraries are loaded at run time, not at start).
pub fn open_device(name: &str) -> Result<Device, EngineError> {
    if name == "cpu" {
        pin_cpu_threads();
        return Ok(Device::Cpu);
    }
    let ordinal = name
        .strip_prefix("cuda")
        .map_or("", |s| s.trim_start_matches(':'));
    let ordinal: usize = if ordinal.is_empty() {
        0
    } else {
        ordinal
            .parse()
            .map_err(|_| EngineError::Device(name.into()))?
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(EngineError::Device(name.into()));
    }
    new_cuda(name, ordinal)
}

/// candle sizes every CPU matrix product by the physical core count, which `num_cpus`
/// finds by parsing /proc/cpuinfo, on every product, unless `RAYON_NUM_THREADS` is set:
/// on the tiny shape that was a third of a decode step. Pin the variable once, to the
/// count candle would find (a value the user set is kept).
fn pin_cpu_threads() {
    static PIN: std::sync::Once = std::sync::Once::new();
    PIN.call_once(|| {
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            let n = candle_core::utils::get_num_threads();
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
    });
}

/// `Device::new_cuda`, with cudarc's panic on a missing driver library turned into an
/// error (the panic message is kept from the terminal; the error carries its gist).
fn new_cuda(name: &str, ordinal: usize) -> Result<Device, EngineError> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(quiet);
    let unavailable = |why: String| EngineError::NoGpu {
        device: name.into(),
        why,
    };
    match opened {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(unavailable(first_line(&e.to_string()))),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the CUDA driver could not be loaded");
            // cudarc: `Unable to dynamically load the "cublas" shared library - ...`
            let lib = msg
                .strip_prefix("Unable to dynamically load the \"")
                .and_then(|rest| rest.split('"').next());
            Err(unavailable(match lib {
                Some("cuda") => "no NVIDIA driver (libcuda.so.1) on this machine".into(),
                Some(lib) => format!(
                    "the CUDA library lib{lib}.so was not found (add its folder to LD_LIBRARY_PATH)"
                ),
                None => first_line(msg),
            }))
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// Loads the configured model (named shape with seeded weights, or a directory).
pub fn load_model(cfg: &EngineConfig) -> Result<Llama, EngineError> {
    let device = open_device(&cfg.device)?;
    if let Some(dir) = &cfg.model_path {
        return Llama::from_dir_as(dir, &device, cfg.candle_dtype());
    }
    let name = cfg.model.as_deref().unwrap_or("");
    let shape = ModelShape::named(name).ok_or_else(|| EngineError::Config {
        origin: "config".into(),
        message: format!("field `model`: unknown shape {name:?}"),
    })?;
    Llama::random_as(&shape, cfg.seed, &device, cfg.candle_dtype())
}

impl Engine {
    /// Builds an engine around a loaded model (and loads the configured draft).
    pub fn new(cfg: &EngineConfig, model: Llama) -> Result<Self, EngineError> {
        let draft = match &cfg.speculative {
            Some(sp) => spec::load_draft(sp, &model, cfg.seed)?,
            None => None,
        };
        Self::with_draft(cfg, model, draft)
    }

    /// Builds an engine around a loaded model and an already loaded draft (used only
    /// when `cfg.speculative` asks for the draft method).
    pub fn with_draft(
        cfg: &EngineConfig,
        model: Llama,
        draft: Option<Llama>,
    ) -> Result<Self, EngineError> {
        let (spec_k, spec_method) = cfg
            .speculative
            .as_ref()
            .map_or((0, SpecMethod::Draft), |sp| (sp.k, sp.method));
        if let Some(d) = &draft {
            if d.shape().vocab_size != model.shape().vocab_size {
                return Err(EngineError::Config {
                    origin: "speculative".into(),
                    message: format!(
                        "field `speculative.draft`: the draft's vocabulary has {} tokens, the target's {}",
                        d.shape().vocab_size,
                        model.shape().vocab_size
                    ),
                });
            }
        }
        let draft = match (spec_k, spec_method, draft) {
            (1.., SpecMethod::Draft, Some(m)) => Some(Draft {
                kv: KvPool::new(&m, cfg.cache_capacity_blocks, cfg.block_size)?,
                pool: BlockPool::new(
                    cfg.cache_capacity_blocks,
                    cfg.block_size,
                    make_policy(PolicyKind::None),
                ),
                model: m,
            }),
            (1.., SpecMethod::Draft, None) => {
                return Err(EngineError::Config {
                    origin: "speculative".into(),
                    message: "field `speculative.draft`: no draft model was loaded".into(),
                })
            }
            _ => None,
        };
        let kv = KvPool::new(&model, cfg.cache_capacity_blocks, cfg.block_size)?;
        let pool = BlockPool::new(
            cfg.cache_capacity_blocks,
            cfg.block_size,
            make_policy(cfg.policy),
        );
        Ok(Self {
            cfg: cfg.clone(),
            model,
            kv,
            pool,
            reqs: Vec::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            events: Vec::new(),
            evictions: Vec::new(),
            check_logits: None,
            clock_ns: 0,
            draft,
            spec_k,
            spec_method,
            temperature: cfg.temperature,
            rng: Rng::new(cfg.seed),
            spec_stats: SpecStats::default(),
        })
    }

    /// The draft's block pool, when speculative decoding runs a draft model.
    pub fn draft_pool(&self) -> Option<&BlockPool> {
        self.draft.as_ref().map(|d| &d.pool)
    }

    /// Request `id`'s KV state: (positions the target holds, its blocks, positions
    /// the draft holds, the draft's blocks).
    pub fn kv_state(&self, id: usize) -> (usize, usize, usize, usize) {
        let r = &self.reqs[id];
        (
            r.computed,
            r.blocks.len(),
            r.draft_computed,
            r.draft_blocks.len(),
        )
    }

    /// The model.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// The block pool (for accounting checks).
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// The engine clock (ns).
    pub fn clock_ns(&self) -> i64 {
        self.clock_ns
    }

    /// Outcome of request `id` so far.
    pub fn outcome(&self, id: usize) -> &RequestOutcome {
        &self.reqs[id].out
    }

    /// Whether request `id` has finished.
    pub fn is_finished(&self, id: usize) -> bool {
        self.reqs[id].out.finished_ns.is_some()
    }

    /// Whether requests are queued or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Queues a request at `max(arrival, clock)`; returns its id.
    pub fn add_request(&mut self, spec: RequestSpec) -> Result<usize, EngineError> {
        if spec.prompt.is_empty() {
            return Err(EngineError::Workload(
                "a request has an empty prompt".into(),
            ));
        }
        let total = spec.prompt.len() + spec.max_output.max(1);
        let bs = self.cfg.block_size;
        if total.div_ceil(bs) > self.pool.num_blocks() {
            return Err(EngineError::Workload(format!(
                "a request of {total} tokens needs {} blocks, more than cache_capacity_blocks = {}",
                total.div_ceil(bs),
                self.pool.num_blocks()
            )));
        }
        if total > self.model.shape().max_position_embeddings {
            return Err(EngineError::Workload(format!(
                "a request of {total} tokens exceeds the model's {} positions",
                self.model.shape().max_position_embeddings
            )));
        }
        let id = self.reqs.len();
        let hashes = if self.pool.caches() {
            chain_hashes(&spec.prompt, bs)
        } else {
            Vec::new()
        };
        let t = spec.arrival_ns;
        self.reqs.push(Req {
            prompt_len: spec.prompt.len(),
            tokens: spec.prompt,
            max_output: spec.max_output.max(1),
            computed: 0,
            blocks: Vec::new(),
            hashes,
            cached_blocks: 0,
            admitted_once: false,
            out: RequestOutcome {
                arrival_ns: t,
                ..RequestOutcome::default()
            },
            draft_blocks: Vec::new(),
            draft_computed: 0,
        });
        self.reqs[id].out.prompt_tokens = self.reqs[id].prompt_len;
        self.waiting.push_back(id);
        self.events.push(Event {
            t_ns: t,
            request: id,
            kind: EventKind::Queued,
        });
        Ok(id)
    }

    /// Moves the clock forward to `t_ns` (idle time).
    pub fn advance_to(&mut self, t_ns: i64) {
        self.clock_ns = self.clock_ns.max(t_ns);
    }

    fn preempt(&mut self, id: usize) {
        let r = &mut self.reqs[id];
        let blocks = std::mem::take(&mut r.blocks);
        r.computed = 0;
        r.cached_blocks = 0;
        r.out.preemptions += 1;
        let draft_blocks = std::mem::take(&mut r.draft_blocks);
        r.draft_computed = 0;
        self.pool.free(&blocks);
        if let Some(d) = &mut self.draft {
            d.pool.free(&draft_blocks);
        }
        self.events.push(Event {
            t_ns: self.clock_ns,
            request: id,
            kind: EventKind::Preempted,
        });
        self.waiting.push_front(id);
    }

    /// The proposals of each scheduled request that asked for some (`sched`'s third
    /// field): prompt lookup, or the draft run autoregressively, batched over the
    /// requests (first a pass that catches the draft's cache up with the sequence
    /// and proposes one token, then one single-token pass per further proposal).
    fn propose(&mut self, sched: &[(usize, usize, usize)]) -> Result<Vec<Proposal>, EngineError> {
        let mut out: Vec<Proposal> = sched.iter().map(|_| Proposal::default()).collect();
        if self.spec_method == SpecMethod::Ngram {
            for (p, &(id, _, k)) in out.iter_mut().zip(sched) {
                if k > 0 {
                    p.tokens = spec::ngram_proposals(&self.reqs[id].tokens, k);
                }
            }
            return Ok(out);
        }
        let Some(d) = &mut self.draft else {
            return Ok(out);
        };
        let bs = self.cfg.block_size;
        // Draft KV blocks for positions up to computed + k - 1.
        let mut asked: Vec<(usize, usize, usize)> = Vec::new(); // (sched index, id, k)
        let mut unused = Vec::new();
        for (i, &(id, _, k)) in sched.iter().enumerate() {
            if k == 0 {
                continue;
            }
            let r = &mut self.reqs[id];
            let want = (r.computed + k)
                .div_ceil(bs)
                .saturating_sub(r.draft_blocks.len());
            if let Some(new) = d.pool.allocate(want, id, &mut unused) {
                r.draft_blocks.extend(new);
                asked.push((i, id, k));
            } else {
                // The draft's pool is full: this request decodes without proposals
                // and its draft cache starts again.
                let blocks = std::mem::take(&mut r.draft_blocks);
                r.draft_computed = 0;
                d.pool.free(&blocks);
            }
        }
        let max_k = asked.iter().map(|a| a.2).max().unwrap_or(0);
        for round in 0..max_k {
            let live: Vec<&(usize, usize, usize)> = asked.iter().filter(|a| a.2 > round).collect();
            let chunks: Vec<SeqChunk<'_>> = live
                .iter()
                .map(|&&(i, id, _)| {
                    let r = &self.reqs[id];
                    if round == 0 {
                        SeqChunk {
                            tokens: &r.tokens[r.draft_computed..=r.computed],
                            start: r.draft_computed,
                            block_table: &r.draft_blocks,
                        }
                    } else {
                        SeqChunk {
                            tokens: &out[i].tokens[round - 1..round],
                            start: r.computed + round,
                            block_table: &r.draft_blocks,
                        }
                    }
                })
                .collect();
            let logits = d.model.forward(&d.kv, &chunks, false)?;
            drop(chunks);
            let next: Vec<(u32, Vec<f32>)> = if self.temperature > 0.0 {
                logits
                    .to_vec2::<f32>()?
                    .into_iter()
                    .map(|row| {
                        let q = spec::probs(&row, self.temperature);
                        (spec::sample(&q, self.rng.uniform()), q)
                    })
                    .collect()
            } else {
                Llama::greedy(&logits)?
                    .into_iter()
                    .map(|t| (t, Vec::new()))
                    .collect()
            };
            for (&&(i, _, _), (tok, q)) in live.iter().zip(next) {
                out[i].tokens.push(tok);
                if self.temperature > 0.0 {
                    out[i].q.push(q);
                }
            }
        }
        for &(_, id, k) in &asked {
            let r = &mut self.reqs[id];
            r.draft_computed = r.computed + k;
        }
        Ok(out)
    }

    /// Verifies request `id`'s proposals against the target's rows from `row`
    /// (argmax `greedy`, or host logits `host` when sampling): greedy accepts while
    /// the proposal is the target's own token, sampling by the rejection rule; the
    /// first rejection emits the target's token instead, full acceptance a bonus
    /// token. Takes the proposals back out of the request's tokens, moves `computed`
    /// (and the draft's) to the accepted positions, and returns the emitted tokens.
    fn verify(
        &mut self,
        id: usize,
        proposed: &Proposal,
        row: usize,
        greedy: &[u32],
        host: &[Vec<f32>],
    ) -> Vec<u32> {
        let k = proposed.tokens.len();
        let mut emitted = Vec::with_capacity(k + 1);
        let mut accepted = 0;
        for (j, &tok) in proposed.tokens.iter().enumerate() {
            let verdict = if self.temperature > 0.0 {
                let p = spec::probs(&host[row + j], self.temperature);
                spec::verify_proposal(&p, proposed.q.get(j).map(Vec::as_slice), tok, &mut self.rng)
            } else if greedy[row + j] == tok {
                None
            } else {
                Some(greedy[row + j])
            };
            match verdict {
                None => {
                    accepted += 1;
                    emitted.push(tok);
                }
                Some(t) => {
                    emitted.push(t);
                    break;
                }
            }
        }
        if accepted == k {
            let bonus = if self.temperature > 0.0 {
                let p = spec::probs(&host[row + k], self.temperature);
                spec::sample(&p, self.rng.uniform())
            } else {
                greedy[row + k]
            };
            emitted.push(bonus);
        }
        self.spec_stats.record(k, accepted);
        let r = &mut self.reqs[id];
        let last = r.computed; // position of the last sampled token
        r.tokens.truncate(last + 1);
        r.computed = last + 1 + accepted;
        r.draft_computed = r.draft_computed.min(r.computed);
        emitted
    }

    /// Runs one scheduling step and its forward pass; returns the finished request ids.
    pub fn step(&mut self) -> Result<Vec<usize>, EngineError> {
        let t0 = Instant::now();
        let bs = self.cfg.block_size;
        let chunked = self.cfg.chunked_prefill;
        let mut budget = self.cfg.max_num_batched_tokens;
        // (request, tokens computed, proposals asked for)
        let mut sched: Vec<(usize, usize, usize)> = Vec::new();
        let mut preempted = false;
        let mut evicted = Vec::new();
        // Running requests first, in admission order.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let r = &self.reqs[id];
            let need = r.tokens.len() - r.computed;
            // A decode step verifies up to k proposals: k + 1 positions, never more
            // tokens than the request still has to generate.
            let k = if need == 1 && self.spec_k > 0 && !r.out.output.is_empty() {
                let left = r.max_output.saturating_sub(r.out.output.len());
                self.spec_k
                    .min(left.saturating_sub(1))
                    .min(budget.saturating_sub(1))
            } else {
                0
            };
            let n = if chunked { need.min(budget) } else { need } + k;
            if n > budget {
                i += 1;
                continue;
            }
            let mut ok = false;
            loop {
                let r = &self.reqs[id];
                let want = (r.computed + n).div_ceil(bs).saturating_sub(r.blocks.len());
                if let Some(new) = self.pool.allocate(want, id, &mut evicted) {
                    self.reqs[id].blocks.extend(new);
                    ok = true;
                    break;
                }
                // Recompute preemption of the lowest-priority (last admitted) request.
                let Some(victim) = self.running.pop() else {
                    break;
                };
                self.preempt(victim);
                preempted = true;
                if victim == id {
                    break;
                }
            }
            if !ok {
                break;
            }
            sched.push((id, n, k));
            budget -= n;
            i += 1;
        }
        // Then waiting requests, first come first served.
        while !preempted && budget > 0 && self.running.len() < self.cfg.max_num_seqs {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let r = &self.reqs[id];
            let max_hit_blocks = (r.tokens.len() - 1) / bs;
            let hits = if self.pool.caches() {
                self.pool
                    .lookup(&r.hashes[..max_hit_blocks.min(r.hashes.len())])
            } else {
                Vec::new()
            };
            let hit_tokens = hits.len() * bs;
            let need = r.tokens.len() - hit_tokens;
            let n = if chunked { need.min(budget) } else { need };
            if n > budget && !sched.is_empty() {
                break;
            }
            let want = (hit_tokens + n).div_ceil(bs) - hits.len();
            if self.pool.num_free() < want + self.pool.free_among(&hits) {
                break;
            }
            self.pool.touch(&hits);
            let Some(new) = self.pool.allocate(want, id, &mut evicted) else {
                self.pool.free(&hits);
                break;
            };
            self.waiting.pop_front();
            let r = &mut self.reqs[id];
            r.blocks = hits;
            r.blocks.extend(new);
            r.computed = hit_tokens;
            r.cached_blocks = r.blocks.len().min(hit_tokens / bs);
            if !r.admitted_once {
                r.admitted_once = true;
                r.out.prefix_hit_tokens = hit_tokens;
            }
            self.events.push(Event {
                t_ns: self.clock_ns,
                request: id,
                kind: EventKind::Scheduled {
                    new_tokens: n,
                    cached_tokens: hit_tokens,
                },
            });
            self.running.push(id);
            sched.push((id, n, 0));
            budget = budget.saturating_sub(n);
        }
        for e in &evicted {
            self.events.push(Event {
                t_ns: self.clock_ns,
                request: e.by,
                kind: EventKind::EvictedBlock {
                    block: e.block,
                    owner: e.owner,
                },
            });
        }
        self.evictions.extend(evicted);
        if sched.is_empty() {
            if self.has_work() {
                return Err(EngineError::Workload(
                    "no request can be scheduled (cache too small for the running requests?)"
                        .into(),
                ));
            }
            return Ok(Vec::new());
        }
        // Speculative decoding: proposals, appended to the requests' tokens for the
        // verification pass (taken back after it).
        let proposals = self.propose(&sched)?;
        for (e, p) in sched.iter_mut().zip(&proposals) {
            if e.2 > 0 {
                e.1 = 1 + p.tokens.len();
                self.reqs[e.0].tokens.extend_from_slice(&p.tokens);
            }
        }
        // The forward pass over the packed batch: the last row of each chunk, every
        // row of a verified one.
        let chunks: Vec<SeqChunk<'_>> = sched
            .iter()
            .map(|&(id, n, _)| {
                let r = &self.reqs[id];
                SeqChunk {
                    tokens: &r.tokens[r.computed..r.computed + n],
                    start: r.computed,
                    block_table: &r.blocks,
                }
            })
            .collect();
        let mut rows: Vec<u32> = Vec::with_capacity(sched.len());
        let mut first_row = Vec::with_capacity(sched.len());
        let mut off = 0u32;
        for (&(_, n, _), p) in sched.iter().zip(&proposals) {
            first_row.push(rows.len());
            let n = n as u32;
            if p.tokens.is_empty() {
                rows.push(off + n - 1);
            } else {
                rows.extend(off..off + n);
            }
            off += n;
        }
        let logits = self.model.forward_rows(&self.kv, &chunks, Some(&rows))?;
        drop(chunks);
        let greedy = Llama::greedy(&logits)?;
        let host: Vec<Vec<f32>> = if self.temperature > 0.0 {
            logits.to_vec2::<f32>()?
        } else {
            Vec::new()
        };
        if let Some(worst) = self.check_logits {
            let mut worst = worst;
            for (i, &(id, n, _)) in sched.iter().enumerate() {
                let r = &self.reqs[id];
                if r.computed + n != r.tokens.len() {
                    continue;
                }
                let naive = self.model.forward_naive(&r.tokens)?;
                let picked = first_row.get(i + 1).copied().unwrap_or(rows.len()) - first_row[i];
                for j in 0..picked {
                    let pos = r.tokens.len() - picked + j;
                    let want = Llama::row(&naive, pos)?;
                    let got = Llama::row(&logits, first_row[i] + j)?;
                    for (a, b) in want.iter().zip(&got) {
                        worst = worst.max((a - b).abs());
                    }
                }
            }
            self.check_logits = Some(worst);
        }
        let elapsed = i64::try_from(t0.elapsed().as_nanos()).unwrap_or(i64::MAX);
        self.clock_ns = self.clock_ns.saturating_add(elapsed);
        let now = self.clock_ns;
        let mut finished = Vec::new();
        for (i, &(id, n, _)) in sched.iter().enumerate() {
            let row = first_row[i];
            let proposed = &proposals[i];
            let emitted = if proposed.tokens.is_empty() {
                let r = &mut self.reqs[id];
                r.computed += n;
                if r.out.first_token_ns.is_none() {
                    r.out.prefill_tokens += n;
                }
                if r.computed == r.tokens.len() {
                    let tok = if self.temperature > 0.0 {
                        let p = spec::probs(&host[row], self.temperature);
                        spec::sample(&p, self.rng.uniform())
                    } else {
                        greedy[row]
                    };
                    vec![tok]
                } else {
                    Vec::new()
                }
            } else {
                self.verify(id, proposed, row, &greedy, &host)
            };
            let r = &mut self.reqs[id];
            // Rewind: blocks past the computed positions (those of rejected
            // proposals) go back to the pool, in the target and in the draft.
            let keep = r.computed.div_ceil(bs);
            if r.blocks.len() > keep {
                let tail = r.blocks.split_off(keep);
                self.pool.free(&tail);
            }
            if let Some(d) = &mut self.draft {
                let keep = r.draft_computed.div_ceil(bs);
                if r.draft_blocks.len() > keep {
                    let tail = r.draft_blocks.split_off(keep);
                    d.pool.free(&tail);
                }
            }
            r.tokens.extend_from_slice(&emitted);
            // Register newly full blocks in the prefix cache.
            let full = r.computed / bs;
            while r.cached_blocks < full {
                let b = r.cached_blocks;
                if b >= r.hashes.len() {
                    if !self.pool.caches() {
                        break;
                    }
                    let parent = r.hashes.last().copied();
                    let h = crate::cache::block_hash(parent, &r.tokens[b * bs..(b + 1) * bs]);
                    r.hashes.push(h);
                }
                self.pool.cache_block(r.blocks[b], r.hashes[b], id);
                r.cached_blocks += 1;
            }
            for tok in emitted {
                r.out.output.push(tok);
                r.out.token_ns.push(now);
                let kind = if r.out.first_token_ns.is_none() {
                    r.out.first_token_ns = Some(now);
                    EventKind::FirstToken
                } else {
                    EventKind::Token
                };
                self.events.push(Event {
                    t_ns: now,
                    request: id,
                    kind,
                });
                if r.out.output.len() >= r.max_output {
                    r.out.finished_ns = Some(now);
                    let blocks = std::mem::take(&mut r.blocks);
                    self.pool.free(&blocks);
                    let draft_blocks = std::mem::take(&mut r.draft_blocks);
                    r.draft_computed = 0;
                    if let Some(d) = &mut self.draft {
                        d.pool.free(&draft_blocks);
                    }
                    self.events.push(Event {
                        t_ns: now,
                        request: id,
                        kind: EventKind::Finished,
                    });
                    finished.push(id);
                    break;
                }
            }
        }
        self.running.retain(|id| !finished.contains(id));
        Ok(finished)
    }
}
