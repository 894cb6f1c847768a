//! Speculative decoding's parts that do not schedule: loading the draft
//! ([`load_draft`]), prompt-lookup proposals ([`ngram_proposals`]), sampling and the
//! standard rejection rule ([`probs`], [`sample`], [`verify_proposal`]), and the
//! counters under vLLM's metric names ([`SpecStats`]). The engine drafts, verifies
//! the `k` proposals in one target pass over `k + 1` positions, and rewinds both KV
//! caches past the first rejection.

use std::path::Path;

use serde::Serialize;

use crate::config::{ModelShape, SpecMethod, SpeculativeConfig};
use crate::error::EngineError;
use crate::model::Llama;

/// Counters of a run with speculative decoding (vLLM's `spec_decode_*` metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpecStats {
    /// Verification steps of a request with at least one proposal
    /// (`vllm:spec_decode_num_drafts`).
    pub num_drafts: u64,
    /// Proposed tokens (`vllm:spec_decode_num_draft_tokens`).
    pub num_draft_tokens: u64,
    /// Proposed tokens the target accepted (`vllm:spec_decode_num_accepted_tokens`).
    pub num_accepted_tokens: u64,
    /// Tokens emitted by verification steps: accepted plus one bonus or correction each.
    pub num_emitted_tokens: u64,
    /// Accepted tokens by proposal position (`vllm:spec_decode_num_accepted_tokens_per_pos`).
    pub num_accepted_tokens_per_pos: Vec<u64>,
}

impl SpecStats {
    /// Accepted over proposed tokens (`spec_decode_draft_acceptance_rate`); 0 with no proposal.
    pub fn draft_acceptance_rate(&self) -> f64 {
        if self.num_draft_tokens == 0 {
            0.0
        } else {
            self.num_accepted_tokens as f64 / self.num_draft_tokens as f64
        }
    }

    /// Tokens emitted per verification step, 1 + accepted / drafts (vLLM's mean
    /// acceptance length); 0 with no draft.
    pub fn mean_acceptance_length(&self) -> f64 {
        if self.num_drafts == 0 {
            0.0
        } else {
            1.0 + self.num_accepted_tokens as f64 / self.num_drafts as f64
        }
    }

    /// Records one verification of `proposed` tokens of which the first `accepted` held.
    pub fn record(&mut self, proposed: usize, accepted: usize) {
        if proposed == 0 {
            return;
        }
        self.num_drafts += 1;
        self.num_draft_tokens += proposed as u64;
        self.num_accepted_tokens += accepted as u64;
        self.num_emitted_tokens += accepted as u64 + 1;
        if self.num_accepted_tokens_per_pos.len() < proposed {
            self.num_accepted_tokens_per_pos.resize(proposed, 0);
        }
        for c in &mut self.num_accepted_tokens_per_pos[..accepted] {
            *c += 1;
        }
    }
}

/// Loads the draft of `sp` for `target` on its device and dtype; `seed` is the
/// target's (the draft's defaults to `seed + 1`). `None` for the n-gram method.
/// The engine refuses a draft whose vocabulary differs from the target's.
pub fn load_draft(
    sp: &SpeculativeConfig,
    target: &Llama,
    seed: u64,
) -> Result<Option<Llama>, EngineError> {
    if sp.method == SpecMethod::Ngram {
        return Ok(None);
    }
    let draft_seed = sp.draft_seed.unwrap_or(seed.wrapping_add(1));
    let draft = if sp.draft == SpeculativeConfig::SELF_NOISED {
        target.perturbed(sp.noise, sp.draft_layers, draft_seed)?
    } else if let Some(shape) = ModelShape::named(&sp.draft) {
        Llama::random_as(&shape, draft_seed, target.device(), target.dtype())?
    } else {
        Llama::from_dir_as(Path::new(&sp.draft), target.device(), target.dtype())?
    };
    Ok(Some(draft))
}

/// Prompt lookup: the (up to `k`) tokens that followed an earlier occurrence of
/// the last n-gram of `tokens`, trying n = 3, 2, 1: the latest occurrence followed
/// by `k` tokens, else the latest one; none if no match.
pub fn ngram_proposals(tokens: &[u32], k: usize) -> Vec<u32> {
    let len = tokens.len();
    for n in (1..=3usize).rev() {
        if len <= n {
            continue;
        }
        let tail = &tokens[len - n..];
        let matches = |i: &usize| &tokens[*i..*i + n] == tail;
        let full = (0..len.saturating_sub(n + k)).rev().find(matches);
        if let Some(i) = full.or_else(|| (0..len - n).rev().find(matches)) {
            let from = i + n;
            let to = (from + k).min(len);
            return tokens[from..to].to_vec();
        }
    }
    Vec::new()
}

/// Deterministic uniform numbers for sampling (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5350_4543_0000_0001)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// softmax(logits / temperature) (`temperature` > 0).
pub fn probs(logits: &[f32], temperature: f64) -> Vec<f32> {
    let t = temperature.max(1e-6) as f32;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut p: Vec<f32> = logits.iter().map(|&l| ((l - max) / t).exp()).collect();
    let sum: f32 = p.iter().sum();
    if sum > 0.0 {
        for x in &mut p {
            *x /= sum;
        }
    }
    p
}

/// The token whose cumulative probability first exceeds `u` (in [0, 1)) of
/// `weights`, normalised by their sum; the last token with weight on round-off.
pub fn sample(weights: &[f32], u: f64) -> u32 {
    let sum: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let target = u * sum;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            last = i;
            acc += f64::from(w);
            if acc > target {
                return i as u32;
            }
        }
    }
    last as u32
}

/// The standard rejection rule for one proposed `token` drawn from the draft's `q`
/// (`None`: a deterministic proposal, q = 1 at `token`) under the target's `p`:
/// accepted (`None`) with probability min(1, p/q), otherwise `Some` of a token drawn
/// from the normalised max(0, p - q). Proposal and correction together are
/// distributed exactly as `p`.
pub fn verify_proposal(p: &[f32], q: Option<&[f32]>, token: u32, rng: &mut Rng) -> Option<u32> {
    let t = token as usize;
    let pt = f64::from(p.get(t).copied().unwrap_or(0.0));
    let qt = q.map_or(1.0, |q| f64::from(q.get(t).copied().unwrap_or(0.0)));
    let u = rng.uniform();
    if qt > 0.0 && u < (pt / qt).min(1.0) {
        return None;
    }
    let residual: Vec<f32> = match q {
        Some(q) => p.iter().zip(q).map(|(&a, &b)| (a - b).max(0.0)).collect(),
        None => p
            .iter()
            .enumerate()
            .map(|(i, &a)| if i == t { 0.0 } else { a })
            .collect(),
    };
    let u = rng.uniform();
    if residual.iter().all(|&r| r <= 0.0) {
        // p == q up to round-off: the residual is empty; p itself is the answer.
        return Some(sample(p, u));
    }
    Some(sample(&residual, u))
}
