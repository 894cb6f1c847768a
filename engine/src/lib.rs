//! tailscope-engine: the embedded inference engine behind `tailscope replay`.
//!
//! A Llama-architecture forward on candle ([`model::Llama`]: RMSNorm, RoPE,
//! grouped-query attention, SwiGLU) over packed batches of sequences, reading and
//! writing K/V through a paged pool ([`model::KvPool`]); a block-hash prefix cache
//! with vLLM semantics behind the [`EvictionPolicy`] trait ([`cache::BlockPool`]);
//! a scheduler with chunked prefill and recompute preemption ([`engine::Engine`]);
//! replay of recorded conversations and the A/B comparison ([`run_ab`],
//! [`AbReport`]); Mooncake trace import ([`mooncake::parse`]); and the seed
//! scenario ([`scenario::seed`]); speculative decoding (a draft model or prompt
//! lookup proposes, the target verifies k proposals in one pass, both KV caches
//! rewind past a rejection; [`spec`], [`SpeculativeConfig`]). Configurations are
//! TOML ([`EngineConfig`]).

pub mod cache;
pub mod config;
pub mod engine;
pub mod error;
pub mod fused;
pub mod model;
pub mod mooncake;
pub mod replay;
pub mod scenario;
pub mod spec;

pub use cache::EvictionPolicy;
pub use config::{
    BackgroundLoad, Burst, EngineConfig, ModelShape, PolicyKind, SpecMethod, SpeculativeConfig,
};
pub use engine::{Event, EventKind};
pub use error::EngineError;
pub use replay::{
    percentile, run_ab, run_ab_until, run_one, AbReport, Arrival, Compared, EvictionNote,
    FocusTurn, ReplayOptions, ReplayProgress, RunReport, Summary, TurnMetrics,
};
