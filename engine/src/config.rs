//! Engine configuration (the A/B TOML files) and model shapes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// Which prefix-cache eviction policy the block pool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Free queue in least-recently-freed order (vLLM).
    #[default]
    Lru,
    /// Evict the block that was cached first, whatever its last use.
    Fifo,
    /// No prefix caching: every request recomputes its whole prompt.
    None,
}

/// One engine configuration (side A or B of a replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Named shape: "tiny", "small-100m", "llama-3.2-1b", "llama-3.1-8b".
    #[serde(default)]
    pub model: Option<String>,
    /// Local Hugging Face Llama directory (config.json + *.safetensors); wins over `model`.
    #[serde(default)]
    pub model_path: Option<PathBuf>,
    /// Seed of the random weights of a named shape.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// "cpu" or "cuda" (or "cuda:N").
    #[serde(default = "default_device")]
    pub device: String,
    /// "f32", "bf16" or "f16": weights, activations and the KV pool (half precision
    /// is meant for a GPU; on a CPU it is slower than f32).
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Tokens per KV block.
    #[serde(default = "default_block_size")]
    pub block_size: usize,
    /// KV pool (and prefix cache) capacity in blocks.
    #[serde(default = "default_capacity")]
    pub cache_capacity_blocks: usize,
    #[serde(default)]
    pub policy: PolicyKind,
    #[serde(default = "default_batched_tokens")]
    pub max_num_batched_tokens: usize,
    #[serde(default = "default_max_seqs")]
    pub max_num_seqs: usize,
    #[serde(default = "default_true")]
    pub chunked_prefill: bool,
    /// Sampling temperature: 0 (the default) is greedy; above 0 samples from
    /// softmax(logits / temperature) with a generator seeded from `seed`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub temperature: f64,
    /// Speculative decoding (`[speculative]`); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative: Option<SpeculativeConfig>,
    /// Load the recording could not see (`[background]`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<BackgroundLoad>,
}

/// The `[background]` section: other tenants' requests on the same server that no
/// trace shows, replayed as unrelated prompts (each its own token stream, so they share
/// nothing with each other or with the conversations): a steady rate and bursts at
/// given times. They take scheduler slots and KV blocks and, under LRU, push older
/// cached prefixes out, which is how a recorded server evicts a conversation that no
/// traced request competed with. `tailscope replay --as-recorded` derives the bursts
/// from the store's prefix-cache hits and misses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackgroundLoad {
    /// Steady requests per second (evenly spaced; 0 = none).
    #[serde(default)]
    pub rate_per_s: f64,
    /// Prompt tokens of each request (a burst's last request takes the remainder).
    pub prompt_tokens: u32,
    /// Output tokens of each request.
    #[serde(default = "default_bg_output")]
    pub output_tokens: u32,
    /// Seconds of steady load before the workload's first arrival.
    #[serde(default)]
    pub warmup_s: f64,
    /// Bursts: `tokens` prompt tokens pushed through the server at `at_s`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bursts: Vec<Burst>,
}

/// A burst of unseen load: `tokens` prompt tokens, in requests of the load's
/// `prompt_tokens`, all arriving at `at_s` seconds after the workload's first arrival.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub at_s: f64,
    pub tokens: u32,
}

fn default_bg_output() -> u32 {
    8
}

impl BackgroundLoad {
    /// Id of the replayed session that carries this load.
    pub const SESSION: &'static str = "background (unseen load)";
    /// Most requests one replay generates (a config that asks for more is refused).
    pub const MAX_REQUESTS: usize = 20_000;
}

/// How proposals are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpecMethod {
    /// A draft model proposes `k` tokens autoregressively (its own paged KV cache).
    #[default]
    Draft,
    /// Prompt lookup: the tokens that followed the latest earlier occurrence of the
    /// sequence's last n-gram (n = 3, 2, 1); no model.
    Ngram,
}

/// The `[speculative]` section: a draft proposes `k` tokens, the target verifies
/// them in one forward pass over `k + 1` positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeculativeConfig {
    #[serde(default)]
    pub method: SpecMethod,
    /// `"self-noised"` (a copy of the target's weights plus gaussian noise of
    /// relative scale `noise`: the noise sets the acceptance rate), a named shape
    /// (random weights from `draft_seed`), or a local Hugging Face Llama directory;
    /// the draft must have the target's vocabulary.
    #[serde(default = "default_draft")]
    pub draft: String,
    /// Tokens proposed per step.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Relative standard deviation of the noise added to every weight matrix of a
    /// `"self-noised"` draft (0 = the target itself).
    #[serde(default)]
    pub noise: f64,
    /// A `"self-noised"` draft keeps only the target's first `draft_layers` layers
    /// (a cheaper draft); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_layers: Option<usize>,
    /// Seed of the noise (or of a named shape's weights); `seed + 1` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_seed: Option<u64>,
}

fn default_draft() -> String {
    SpeculativeConfig::SELF_NOISED.into()
}
fn default_k() -> usize {
    4
}
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl SpeculativeConfig {
    /// The `draft` value of a noised copy of the target.
    pub const SELF_NOISED: &'static str = "self-noised";

    /// A noised copy of the target proposing `k` tokens.
    pub fn self_noised(k: usize, noise: f64) -> Self {
        Self {
            method: SpecMethod::Draft,
            draft: Self::SELF_NOISED.into(),
            k,
            noise,
            draft_layers: None,
            draft_seed: None,
        }
    }

    /// One line for reports.
    pub fn summary(&self) -> String {
        match self.method {
            SpecMethod::Ngram => format!("ngram k={}", self.k),
            SpecMethod::Draft if self.draft == Self::SELF_NOISED => format!(
                "draft=self-noised noise={} k={}{}",
                self.noise,
                self.k,
                self.draft_layers
                    .map(|l| format!(" layers={l}"))
                    .unwrap_or_default()
            ),
            SpecMethod::Draft => format!("draft={} k={}", self.draft, self.k),
        }
    }
}

/// A TOML basic string.
fn toml_string(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// "f32", "bf16" or "f16" as a candle dtype.
pub fn parse_dtype(name: &str) -> Option<candle_core::DType> {
    match name {
        "f32" => Some(candle_core::DType::F32),
        "bf16" => Some(candle_core::DType::BF16),
        "f16" => Some(candle_core::DType::F16),
        _ => None,
    }
}

fn default_seed() -> u64 {
    0
}
fn default_device() -> String {
    "cpu".into()
}
fn default_dtype() -> String {
    "f32".into()
}
fn default_block_size() -> usize {
    16
}
fn default_capacity() -> usize {
    1024
}
fn default_batched_tokens() -> usize {
    512
}
fn default_max_seqs() -> usize {
    16
}
fn default_true() -> bool {
    true
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model: Some("tiny".into()),
            model_path: None,
            seed: default_seed(),
            device: default_device(),
            dtype: default_dtype(),
            block_size: default_block_size(),
            cache_capacity_blocks: default_capacity(),
            policy: PolicyKind::Lru,
            max_num_batched_tokens: default_batched_tokens(),
            max_num_seqs: default_max_seqs(),
            chunked_prefill: true,
            temperature: 0.0,
            speculative: None,
            background: None,
        }
    }
}

impl EngineConfig {
    /// Parses and validates a TOML configuration; `origin` names it in errors.
    pub fn from_toml_str_named(text: &str, origin: &str) -> Result<Self, EngineError> {
        let cfg: Self = toml::from_str(text).map_err(|e| EngineError::Config {
            origin: origin.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Parses and validates a TOML configuration.
    pub fn from_toml_str(text: &str) -> Result<Self, EngineError> {
        Self::from_toml_str_named(text, "<string>")
    }

    /// Reads, parses and validates a TOML configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, EngineError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::ConfigIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str_named(&text, &path.display().to_string())
    }

    /// Checks field values; errors name the field.
    pub fn validate(&self, origin: &str) -> Result<(), EngineError> {
        let bad = |field: &str, why: String| EngineError::Config {
            origin: origin.to_string(),
            message: format!("field `{field}`: {why}"),
        };
        if self.model_path.is_none() {
            let name = self.model.as_deref().unwrap_or("");
            if ModelShape::named(name).is_none() {
                return Err(bad(
                    "model",
                    format!(
                        "unknown shape {name:?} (expected one of {:?}, or set model_path)",
                        ModelShape::NAMES
                    ),
                ));
            }
        }
        if parse_dtype(&self.dtype).is_none() {
            return Err(bad(
                "dtype",
                format!(
                    "{:?} is not supported (expected \"f32\", \"bf16\" or \"f16\")",
                    self.dtype
                ),
            ));
        }
        if !(self.device == "cpu" || self.device.starts_with("cuda")) {
            return Err(bad(
                "device",
                format!("{:?} (expected \"cpu\" or \"cuda\")", self.device),
            ));
        }
        if self.block_size == 0 {
            return Err(bad("block_size", "must be at least 1".into()));
        }
        if self.cache_capacity_blocks < 2 {
            return Err(bad("cache_capacity_blocks", "must be at least 2".into()));
        }
        if self.max_num_batched_tokens == 0 {
            return Err(bad("max_num_batched_tokens", "must be at least 1".into()));
        }
        if self.max_num_seqs == 0 {
            return Err(bad("max_num_seqs", "must be at least 1".into()));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(bad("temperature", "must be 0 (greedy) or more".into()));
        }
        if let Some(sp) = &self.speculative {
            if !(1..=32).contains(&sp.k) {
                return Err(bad("speculative.k", format!("{} (expected 1 to 32)", sp.k)));
            }
            if !(sp.noise.is_finite() && sp.noise >= 0.0) {
                return Err(bad("speculative.noise", "must be 0 or more".into()));
            }
            if sp.draft_layers == Some(0) {
                return Err(bad("speculative.draft_layers", "must be at least 1".into()));
            }
            if sp.method == SpecMethod::Draft
                && sp.draft != SpeculativeConfig::SELF_NOISED
                && ModelShape::named(&sp.draft).is_none()
                && !Path::new(&sp.draft).is_dir()
            {
                return Err(bad(
                    "speculative.draft",
                    format!(
                        "{:?} is neither \"self-noised\", a shape ({:?}) nor a directory",
                        sp.draft,
                        ModelShape::NAMES
                    ),
                ));
            }
        }
        if let Some(bg) = &self.background {
            if !(bg.rate_per_s.is_finite() && (0.0..=1000.0).contains(&bg.rate_per_s)) {
                return Err(bad(
                    "background.rate_per_s",
                    format!("{} (expected 0 to 1000)", bg.rate_per_s),
                ));
            }
            if let Some(b) = bg
                .bursts
                .iter()
                .find(|b| !(b.at_s.is_finite() && b.at_s.abs() <= 86_400.0))
            {
                return Err(bad(
                    "background.bursts.at_s",
                    format!("{} (expected within a day of the first arrival)", b.at_s),
                ));
            }
            if !(bg.warmup_s.is_finite() && (0.0..=3600.0).contains(&bg.warmup_s)) {
                return Err(bad(
                    "background.warmup_s",
                    format!("{} (expected 0 to 3600)", bg.warmup_s),
                ));
            }
            let blocks = (bg.prompt_tokens as usize + bg.output_tokens as usize)
                .div_ceil(self.block_size.max(1));
            if bg.prompt_tokens == 0 || blocks > self.cache_capacity_blocks {
                return Err(bad(
                    "background.prompt_tokens",
                    format!(
                        "{} (expected 1 or more, and prompt + output within the {} blocks of the cache)",
                        bg.prompt_tokens, self.cache_capacity_blocks
                    ),
                ));
            }
        }
        Ok(())
    }

    /// This configuration as TOML text (every field, `[speculative]` and `[background]`
    /// when set), which [`EngineConfig::from_toml_str`] reads back to an equal value.
    pub fn to_toml(&self) -> String {
        let q = toml_string;
        let mut s = String::new();
        if let Some(m) = &self.model {
            let _ = writeln!(s, "model = {}", q(m));
        }
        if let Some(p) = &self.model_path {
            let _ = writeln!(s, "model_path = {}", q(&p.display().to_string()));
        }
        let _ = writeln!(s,
            "seed = {}\ndevice = {}\ndtype = {}\nblock_size = {}\ncache_capacity_blocks = {}\npolicy = {}\nmax_num_batched_tokens = {}\nmax_num_seqs = {}\nchunked_prefill = {}",
            self.seed,
            q(&self.device),
            q(&self.dtype),
            self.block_size,
            self.cache_capacity_blocks,
            q(match self.policy {
                PolicyKind::Lru => "lru",
                PolicyKind::Fifo => "fifo",
                PolicyKind::None => "none",
            }),
            self.max_num_batched_tokens,
            self.max_num_seqs,
            self.chunked_prefill
        );
        if self.temperature > 0.0 {
            let _ = writeln!(s, "temperature = {:?}", self.temperature);
        }
        if let Some(sp) = &self.speculative {
            let _ = write!(
                s,
                "\n[speculative]\nmethod = {}\ndraft = {}\nk = {}\nnoise = {:?}\n",
                q(match sp.method {
                    SpecMethod::Draft => "draft",
                    SpecMethod::Ngram => "ngram",
                }),
                q(&sp.draft),
                sp.k,
                sp.noise
            );
            if let Some(l) = sp.draft_layers {
                let _ = writeln!(s, "draft_layers = {l}");
            }
            if let Some(d) = sp.draft_seed {
                let _ = writeln!(s, "draft_seed = {d}");
            }
        }
        if let Some(bg) = &self.background {
            let _ = writeln!(s,
                "\n[background]\nrate_per_s = {:?}\nprompt_tokens = {}\noutput_tokens = {}\nwarmup_s = {:?}",
                bg.rate_per_s, bg.prompt_tokens, bg.output_tokens, bg.warmup_s
            );
            if !bg.bursts.is_empty() {
                s += "bursts = [\n";
                for b in &bg.bursts {
                    let _ = writeln!(s, "    {{ at_s = {:?}, tokens = {} }},", b.at_s, b.tokens);
                }
                s += "]\n";
            }
        }
        s
    }

    /// The configured dtype (f32 if the field was never validated and is unknown).
    pub fn candle_dtype(&self) -> candle_core::DType {
        parse_dtype(&self.dtype).unwrap_or(candle_core::DType::F32)
    }

    /// A one-line description for reports.
    pub fn summary(&self) -> String {
        let model = match &self.model_path {
            Some(p) => p.display().to_string(),
            None => self.model.clone().unwrap_or_default(),
        };
        format!(
            "model={model} device={} dtype={} block_size={} capacity={} blocks policy={:?} max_batched_tokens={} max_seqs={} chunked_prefill={}",
            self.device,
            self.dtype,
            self.block_size,
            self.cache_capacity_blocks,
            self.policy,
            self.max_num_batched_tokens,
            self.max_num_seqs,
            self.chunked_prefill
        ) + &self
            .speculative
            .as_ref()
            .map(|sp| format!(" speculative=[{}]", sp.summary()))
            .unwrap_or_default()
            + &if self.temperature > 0.0 {
                format!(" temperature={}", self.temperature)
            } else {
                String::new()
            }
            + &self
                .background
                .as_ref()
                .map(|bg| {
                    format!(
                        " background=[{:.2} req/s x {} + {} tokens, warm-up {:.1} s, {} bursts of {} tokens]",
                        bg.rate_per_s,
                        bg.prompt_tokens,
                        bg.output_tokens,
                        bg.warmup_s,
                        bg.bursts.len(),
                        bg.bursts.iter().map(|b| u64::from(b.tokens)).sum::<u64>()
                    )
                })
                .unwrap_or_default()
    }
}

/// The hyper-parameters of a Llama-architecture model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama 3 RoPE frequency scaling (`rope_type = "llama3"`), as in config.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
}

/// Llama 3 RoPE scaling parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
    #[serde(default)]
    pub rope_type: Option<String>,
}

impl RopeScaling {
    /// Llama 3's adjustment of one inverse frequency.
    pub fn adjust(&self, inv_freq: f64) -> f64 {
        let old = self.original_max_position_embeddings as f64;
        let low_wavelen = old / self.low_freq_factor;
        let high_wavelen = old / self.high_freq_factor;
        let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
        if wavelen < high_wavelen {
            inv_freq
        } else if wavelen > low_wavelen {
            inv_freq / self.factor
        } else {
            let smooth = (old / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * inv_freq / self.factor + smooth * inv_freq
        }
    }
}

fn default_rms_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    8192
}

impl ModelShape {
    /// The named shapes.
    pub const NAMES: [&'static str; 4] = ["tiny", "small-100m", "llama-3.2-1b", "llama-3.1-8b"];

    /// A named shape, or `None`.
    pub fn named(name: &str) -> Option<Self> {
        let s = |vocab, hidden, inter, layers, heads, kv, tie| Self {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            max_position_embeddings: 16_384,
            tie_word_embeddings: tie,
            rope_scaling: None,
        };
        let llama3 = |mut s: Self, factor: f64| {
            s.rope_scaling = Some(RopeScaling {
                factor,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
                rope_type: Some("llama3".into()),
            });
            s.max_position_embeddings = 131_072;
            s
        };
        Some(match name {
            // ~1.1M parameters.
            "tiny" => s(2048, 128, 384, 4, 4, 2, true),
            // ~105M parameters.
            "small-100m" => s(32_000, 768, 2048, 12, 12, 4, true),
            "llama-3.2-1b" => llama3(s(128_256, 2048, 8192, 16, 32, 8, true), 32.0),
            "llama-3.1-8b" => llama3(s(128_256, 4096, 14_336, 32, 32, 8, false), 8.0),
            _ => return None,
        })
    }

    /// Dimension of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Parameter count.
    pub fn params(&self) -> usize {
        let h = self.hidden_size;
        let kv = self.num_key_value_heads * self.head_dim();
        let layer = h * h * 2 + h * kv * 2 + 3 * h * self.intermediate_size + 2 * h;
        let emb = self.vocab_size * h;
        emb + if self.tie_word_embeddings { 0 } else { emb } + self.num_hidden_layers * layer + h
    }

    /// KV bytes per token (all layers, K and V, f32).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim() * 4
    }
}
