//! Workload configuration, planted causes, ground truth and the generated [`Workload`].

use tailscope_model::{Batch, SpanId, TraceId};

/// A slow-down the generator can plant in a turn: one of design.md's causes or a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlantedCause {
    /// A batch job's long-context burst evicts a conversation's cached prefix; its next turn re-prefills.
    KvEviction,
    /// The DB connection pool is exhausted; `pool.acquire` waits.
    PoolWait,
    /// Chunking, embedding or prompt assembly is slow.
    Preprocessing,
    /// A burst from other tenants fills the inference server; requests wait in its queue.
    Queue,
    /// The MCP tool server is cold: a slow `initialize` before the first call.
    ToolColdStart,
    /// An LLM call fails (timeout / 5xx) and is retried after a back-off.
    Retry,
    /// Finding: independent tool calls run one after another.
    SequentialWaterfall,
    /// Finding: one call of a parallel fan-out is much slower than its siblings.
    FanoutStraggler,
    /// Finding: the same tool is called N times in one agent step.
    NPlusOne,
    /// Finding: long gaps between streamed chunks.
    StreamStutter,
    /// Finding: a semantic cache's lookup (a Redis `GET` before the model call) is slow.
    /// Planted only with a semantic cache ([`WorkloadConfig::semantic_cache`]); not in
    /// [`PlantedCause::ALL`], the default mix.
    SlowCacheLookup,
    /// Finding: one tool call writes to three or more stores one after another (a
    /// Postgres INSERT, a Redis SET, an Elasticsearch index, an object-store PUT). Not
    /// in [`PlantedCause::ALL`], the default mix.
    WriteAmplification,
}

impl PlantedCause {
    pub const ALL: [PlantedCause; 10] = [
        PlantedCause::KvEviction,
        PlantedCause::PoolWait,
        PlantedCause::Preprocessing,
        PlantedCause::Queue,
        PlantedCause::ToolColdStart,
        PlantedCause::Retry,
        PlantedCause::SequentialWaterfall,
        PlantedCause::FanoutStraggler,
        PlantedCause::NPlusOne,
        PlantedCause::StreamStutter,
    ];

    /// The design.md cause name (or finding kind) written to [`GroundTruth::cause`].
    pub fn as_str(self) -> &'static str {
        match self {
            PlantedCause::KvEviction => "kv_eviction",
            PlantedCause::PoolWait => "pool_wait",
            PlantedCause::Preprocessing => "preprocessing",
            PlantedCause::Queue => "queue",
            PlantedCause::ToolColdStart => "tool_cold_start",
            PlantedCause::Retry => "retry",
            PlantedCause::SequentialWaterfall => "sequential_waterfall",
            PlantedCause::FanoutStraggler => "fanout_straggler",
            PlantedCause::NPlusOne => "n_plus_one",
            PlantedCause::StreamStutter => "stream_stutter",
            PlantedCause::SlowCacheLookup => "slow_cache_lookup",
            PlantedCause::WriteAmplification => "write_amplification",
        }
    }

    pub fn parse(s: &str) -> Option<PlantedCause> {
        PlantedCause::ALL
            .into_iter()
            .chain([
                PlantedCause::SlowCacheLookup,
                PlantedCause::WriteAmplification,
            ])
            .find(|c| c.as_str() == s)
    }

    /// True for the findings (patterns), false for the latency causes of design.md.
    pub fn is_finding(self) -> bool {
        matches!(
            self,
            PlantedCause::SequentialWaterfall
                | PlantedCause::FanoutStraggler
                | PlantedCause::NPlusOne
                | PlantedCause::StreamStutter
                | PlantedCause::SlowCacheLookup
                | PlantedCause::WriteAmplification
        )
    }

    /// True when the cause needs a tool-calling step in the turn.
    pub(crate) fn needs_tools(self) -> bool {
        matches!(
            self,
            PlantedCause::ToolColdStart
                | PlantedCause::SequentialWaterfall
                | PlantedCause::FanoutStraggler
                | PlantedCause::NPlusOne
                | PlantedCause::WriteAmplification
        )
    }
}

impl std::fmt::Display for PlantedCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The simulated shared inference server (one vLLM instance on one GPU).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Most sequences running at once (vLLM `max_num_seqs`).
    pub max_num_seqs: usize,
    /// KV-cache capacity in tokens (running requests plus cached prefixes).
    pub kv_capacity_tokens: i64,
    /// Prefix-cache block size in tokens; cache hits are whole blocks.
    pub block_size: i64,
    /// Prefill throughput for uncached prompt tokens.
    pub prefill_tokens_per_sec: f64,
    /// Time per output token with an empty batch.
    pub decode_secs_per_token: f64,
    /// Decode slow-down at a full batch: TPOT × (1 + this × running / max_num_seqs).
    pub batch_slowdown: f64,
    /// Served model name.
    pub model: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 64,
            kv_capacity_tokens: 900_000,
            block_size: 16,
            prefill_tokens_per_sec: 6_000.0,
            decode_secs_per_token: 0.008,
            batch_slowdown: 0.8,
            model: "meta-llama/Llama-3.1-8B-Instruct".to_owned(),
        }
    }
}

/// What to generate. `Default` gives a few hundred overlapping conversations over three minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadConfig {
    pub seed: u64,
    /// Number of user conversations.
    pub conversations: usize,
    /// Turns per conversation, `(min, max)` inclusive.
    pub turns: (usize, usize),
    /// Wall-clock start of the window, ns since the Unix epoch.
    pub start_ns: i64,
    /// Conversations start uniformly over this many seconds (and then overlap).
    pub span_secs: f64,
    /// Fraction of turns that get a planted cause (0..=1).
    pub cause_rate: f64,
    /// Scale of injected delays (1.0 = roughly one to three seconds).
    pub magnitude: f64,
    /// Scale of the natural variation (1.0 = the default workload, 0 = every draw at its
    /// typical value): widens the spread of output lengths, of user messages and retrieved
    /// context (so prompt sizes), and of the durations of tools, DB queries, pool waits,
    /// retrieval and preprocessing. Above 1 output lengths also get a heavy (log-normal) tail.
    pub variance: f64,
    /// Which causes may be planted (default: all of [`PlantedCause::ALL`]).
    pub causes: Vec<PlantedCause>,
    /// Seconds between metric samples.
    pub metric_interval_secs: f64,
    /// The shared inference server.
    pub server: ServerConfig,
    /// A what-if applied for real: the named tool's calls take this fraction less time
    /// (the draws are the same, so the rest of the workload is too).
    pub tool_speedup: Option<(String, f64)>,
    /// A what-if applied for real: the named tool's calls are served from a cache that
    /// hits with this rate (drawn from the call's own duration draw, so no other draw
    /// moves) and then take this many ns.
    pub tool_cache: Option<(String, f64, i64)>,
    /// A what-if applied for real: in a sequential run of tool calls (the
    /// `sequential_waterfall` plant), the named tool runs in parallel with the call
    /// before it instead of after it (the draws are the same, so the rest of the
    /// workload is too).
    pub tool_parallel: Option<String>,
    /// A semantic cache in front of every turn (a Redis `GET` as redis-py's
    /// instrumentation writes it, before anything else): it answers this share of the
    /// turns without a model call; a miss runs the turn and writes the answer back
    /// (`SET`). `None`: no cache (and no draw for it).
    pub semantic_cache: Option<f64>,
    /// Server timings to reuse per LLM call (from an earlier run's
    /// [`Workload::timings`]) instead of simulating the server, so that a changed
    /// workload does not feed back into the server's queue and cache.
    pub held_timings: Option<std::sync::Arc<HeldTimings>>,
}

/// The server's timing of every LLM call of a run, keyed by where the call sits
/// (conversation, turn, whether in the turn's async job, call index): stable when the
/// same workload is generated again with a change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeldTimings(
    pub(crate) std::collections::HashMap<(usize, usize, bool, usize), crate::plan::Timing>,
);

impl HeldTimings {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            conversations: 240,
            turns: (2, 7),
            // 2026-03-02T09:00:00Z
            start_ns: 1_772_442_000 * 1_000_000_000,
            span_secs: 180.0,
            cause_rate: 0.15,
            magnitude: 1.0,
            variance: 1.0,
            causes: PlantedCause::ALL.to_vec(),
            metric_interval_secs: 1.0,
            server: ServerConfig::default(),
            tool_speedup: None,
            tool_cache: None,
            tool_parallel: None,
            semantic_cache: None,
            held_timings: None,
        }
    }
}

impl WorkloadConfig {
    /// A small workload for quick tests: `conversations` conversations over a short window.
    pub fn small(seed: u64, conversations: usize) -> Self {
        Self {
            seed,
            conversations,
            turns: (2, 5),
            span_secs: 20.0 + conversations as f64 * 0.5,
            cause_rate: 0.3,
            // A server sized to the traffic, so the prefix cache is under pressure here too.
            server: ServerConfig {
                kv_capacity_tokens: 100_000 + 5_000 * conversations as i64,
                ..ServerConfig::default()
            },
            ..Self::default()
        }
    }

    /// A workload with nothing to find: no planted causes, and a server with room for
    /// everyone (more sequence slots than requests in flight, a KV cache larger than every
    /// prefix), so no request queues and no cached prefix of a live conversation is evicted.
    /// The ground truth is empty. Conversations arrive at the default workload's rate.
    pub fn clean(seed: u64, conversations: usize) -> Self {
        Self {
            seed,
            conversations,
            span_secs: default_span_secs(conversations),
            cause_rate: 0.0,
            causes: Vec::new(),
            server: ServerConfig {
                max_num_seqs: 4_096,
                kv_capacity_tokens: 2_000_000 + 50_000 * conversations as i64,
                ..ServerConfig::default()
            },
            ..Self::default()
        }
    }

    /// A workload whose natural variation is large ([`WorkloadConfig::variance`] 2: output
    /// lengths, prompt sizes and tool / DB / retrieval / preprocessing durations spread
    /// widely), with causes planted at the default rate on the default server. Conversations
    /// arrive at the default workload's rate.
    pub fn noisy(seed: u64, conversations: usize) -> Self {
        Self {
            seed,
            conversations,
            span_secs: default_span_secs(conversations),
            variance: 2.0,
            ..Self::default()
        }
    }

    /// Conversations per second the default server is sized for (240 over 180 s).
    const SIZED_FOR_PER_SEC: f64 = 240.0 / 180.0;

    /// How many default-rate servers this workload's arrival rate needs (at least 1).
    /// A day of traffic is served by a fleet, not by one GPU: the simulated server gets
    /// this many times the sequence slots and KV capacity, so a busy workload keeps
    /// realistic latencies instead of queueing for minutes.
    pub fn load_factor(&self) -> f64 {
        let rate = self.conversations as f64 / self.span_secs.max(1.0);
        (rate / Self::SIZED_FOR_PER_SEC).max(1.0)
    }

    /// The same config with out-of-range values clamped (min ≤ max, rates in 0..=1, ...)
    /// and the server scaled by [`WorkloadConfig::load_factor`].
    pub(crate) fn sanitized(&self) -> Self {
        let mut c = self.clone();
        c.turns.0 = c.turns.0.max(1);
        c.turns.1 = c.turns.1.max(c.turns.0);
        c.span_secs = if c.span_secs.is_finite() {
            c.span_secs.max(1.0)
        } else {
            60.0
        };
        c.cause_rate = if c.cause_rate.is_finite() {
            c.cause_rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        c.magnitude = if c.magnitude.is_finite() {
            c.magnitude.clamp(0.05, 20.0)
        } else {
            1.0
        };
        c.variance = if c.variance.is_finite() {
            c.variance.clamp(0.0, 5.0)
        } else {
            1.0
        };
        c.metric_interval_secs = if c.metric_interval_secs.is_finite() {
            c.metric_interval_secs.clamp(0.1, 60.0)
        } else {
            1.0
        };
        let factor = c.load_factor();
        let s = &mut c.server;
        if factor > 1.0 {
            s.max_num_seqs = (s.max_num_seqs as f64 * factor).ceil() as usize;
            s.kv_capacity_tokens = (s.kv_capacity_tokens as f64 * factor).ceil() as i64;
        }
        s.max_num_seqs = s.max_num_seqs.max(1);
        s.block_size = s.block_size.max(1);
        s.kv_capacity_tokens = s.kv_capacity_tokens.max(100_000);
        if !(s.prefill_tokens_per_sec.is_finite() && s.prefill_tokens_per_sec > 0.0) {
            s.prefill_tokens_per_sec = 6_000.0;
        }
        if !(s.decode_secs_per_token.is_finite() && s.decode_secs_per_token > 0.0) {
            s.decode_secs_per_token = 0.008;
        }
        if !(s.batch_slowdown.is_finite() && s.batch_slowdown >= 0.0) {
            s.batch_slowdown = 0.0;
        }
        c
    }
}

/// The window over which `conversations` conversations start at the default workload's
/// rate (240 in 180 s, the rate one default server is sized for), at least 20 s.
pub fn default_span_secs(conversations: usize) -> f64 {
    let d = WorkloadConfig::default();
    (d.span_secs * conversations as f64 / d.conversations as f64).max(20.0)
}

/// One planted (or simulated) slow-down: which trace, why, where, and how much it added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruth {
    pub trace_id: TraceId,
    /// A design.md cause name (`kv_eviction`, `pool_wait`, ...) or finding kind (`n_plus_one`, ...).
    pub cause: String,
    /// The span where the slow-down lives (e.g. the `pool.acquire` span, the vLLM `llm_request`).
    pub span_id: SpanId,
    /// Time the slow-down added to the trace, in nanoseconds.
    pub extra_ns: i64,
    pub conversation_id: String,
}

/// A generated workload: telemetry plus the list of planted slow-downs.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub batch: Batch,
    pub truth: Vec<GroundTruth>,
    /// Simulated slow-downs that are not a trace's truth: queueing at the server and
    /// re-prefills after an eviction that stayed below the truth threshold (half a second ×
    /// magnitude) or sat beside a larger cause, on any trace (turns, async jobs, the batch
    /// tenant's requests). They are real, so a finding about one is not a false alarm, but
    /// they are not the trace's cause. One entry per trace and cause: `extra_ns` summed over
    /// the trace's calls, `span_id` the vLLM span of the call that lost the most.
    pub incidental: Vec<GroundTruth>,
    /// The server's timing of every conversation's LLM calls (see [`HeldTimings`]).
    pub timings: HeldTimings,
}
