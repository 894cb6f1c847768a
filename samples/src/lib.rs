//! tailscope-samples: realistic LLM-agent telemetry with planted latency causes.
//!
//! [`generate`] turns a [`WorkloadConfig`] into a [`Workload`]: a `tailscope_model::Batch`
//! (resources, spans, metric points) plus the [`GroundTruth`] of every slowed-down trace.
//! Conversations of several turns run on three applications (a copilot, an OpenInference
//! support bot, a research agent with fan-outs and sub-agents) and share **one** simulated
//! inference server ([`ServerConfig`]): FIFO admission under `max_num_seqs`, a KV budget with
//! an LRU prefix cache, prefill ∝ uncached tokens, decode ∝ output tokens. Queueing and
//! KV evictions therefore come from other tenants' bursts, and the vLLM / DCGM / pool
//! metrics show the same bursts at the same moments.
//!
//! Each turn is one trace: `POST /…` (server) → preprocessing (chunking, embeddings, prompt
//! assembly) → retrieval → `pool.acquire` + DB query → agent steps (`invoke_agent …`), each an
//! LLM call (`chat {model}` with streamed `gen_ai.chunk` events and a vLLM `llm_request`
//! child) followed by MCP tool calls (`tools/call {tool}`, `initialize` on a cold session),
//! parallel fan-outs, synchronous sub-agents, retries; sometimes an async sub-agent in its own
//! trace linked to the publishing span. Three attribute dialects appear: current GenAI
//! semconv, deprecated aliases, and OpenInference.
//!
//! [`PlantedCause`] lists what can be planted (`kv_eviction`, `pool_wait`, `preprocessing`,
//! `queue`, `tool_cold_start`, `retry`, and the findings `sequential_waterfall`,
//! `fanout_straggler`, `n_plus_one`, `stream_stutter`). [`validate`] checks a workload's
//! structure, units, token arithmetic and ground truth. [`load_spans`] is a fast, flat
//! stream of agent spans for load tests. [`Workload::on_replica`] moves a workload onto
//! another replica of the inference server, so several workloads can share a store as
//! traffic behind a load balancer does (one slow replica, one model per replica).
//!
//! Everything is deterministic in the seed.

mod apps;
mod attrs;
mod config;
mod load;
mod metrics;
mod plan;
mod render;
mod replica;
mod resources;
mod server_sim;
mod trace_gen;
mod util;
mod validate;
mod workload;

pub use config::{
    default_span_secs, GroundTruth, HeldTimings, PlantedCause, ServerConfig, Workload,
    WorkloadConfig,
};
pub use load::{load_spans, LOAD_ATTRS_PER_SPAN};
pub use replica::{replica_address, replica_host};
pub use validate::validate;
pub use workload::generate;

#[cfg(test)]
mod tests;
