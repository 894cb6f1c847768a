//! Our Llama-architecture forward (RMSNorm, RoPE, grouped-query attention, SwiGLU)
//! over packed batches of sequences at different positions, reading and writing
//! K/V through a paged pool of blocks.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor, D};

use crate::config::ModelShape;
use crate::error::EngineError;
use crate::fused;

type CResult<T> = candle_core::Result<T>;

/// One transformer layer's weights, each projection contiguous as `[out, in]` (products
/// use the transposed view). Q, K and V are one stacked matrix, gate and up another, so
/// that a step runs one product for each (fused QKV and gate/up projections).
#[derive(Clone)]
struct Layer {
    attn_norm: Tensor,
    /// `[q_dim + 2 * kv_dim, hidden]`: Q (pre-scaled by 1/sqrt(head_dim)), then K, then V.
    wqkv: Tensor,
    /// `[hidden, q_dim]`.
    wo: Tensor,
    mlp_norm: Tensor,
    /// `[2 * intermediate, hidden]`: gate, then up.
    wgu: Tensor,
    /// `[hidden, intermediate]`.
    wdown: Tensor,
}

/// A Llama-architecture model on one device (cloning shares the weights).
#[derive(Clone)]
pub struct Llama {
    shape: ModelShape,
    device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `[vocab, hidden]` (the embedding itself when tied).
    lm_head: Tensor,
    cos: Tensor,
    sin: Tensor,
    /// Weights, activations and the KV pool are in this type; logits come back as f32.
    dtype: DType,
    /// One product for QKV and one for gate/up, and on the CPU in f32 the fused decode
    /// kernels of [`crate::fused`]; `false`: the unfused reference path (separate Q, K,
    /// V, gate and up products, candle's attention), for comparison.
    fused: bool,
}

/// The paged KV pool: per layer, K and V as `[num_blocks * block_size, kv_dim]`.
pub struct KvPool {
    block_size: usize,
    num_blocks: usize,
    k: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl KvPool {
    /// Allocates a zeroed pool of `num_blocks` blocks of `block_size` tokens, in the
    /// model's dtype.
    pub fn new(model: &Llama, num_blocks: usize, block_size: usize) -> Result<Self, EngineError> {
        let s = &model.shape;
        let kv_dim = s.num_key_value_heads * s.head_dim();
        let mut k = Vec::with_capacity(s.num_hidden_layers);
        let mut v = Vec::with_capacity(s.num_hidden_layers);
        for _ in 0..s.num_hidden_layers {
            k.push(Tensor::zeros(
                (num_blocks * block_size, kv_dim),
                model.dtype,
                &model.device,
            )?);
            v.push(Tensor::zeros(
                (num_blocks * block_size, kv_dim),
                model.dtype,
                &model.device,
            )?);
        }
        Ok(Self {
            block_size,
            num_blocks,
            k,
            v,
        })
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }
}

/// One sequence's slice of a packed batch: `tokens` are at positions
/// `start..start + tokens.len()`; `block_table` maps position / block_size to a block.
#[derive(Debug, Clone, Copy)]
pub struct SeqChunk<'a> {
    pub tokens: &'a [u32],
    pub start: usize,
    pub block_table: &'a [u32],
}

/// Where a batch's new K/V rows go in a layer's pool tensor.
enum KvWrite {
    /// (first row of the batch, first pool slot, rows): contiguous copies.
    Runs(Vec<(usize, usize, usize)>),
    /// A `[rows, kv_dim]` index of pool slots for one scatter.
    Scatter(Tensor),
}

impl KvWrite {
    /// Writes the batch's rows `new` (`[rows, kv_dim]`, contiguous) into `pool`.
    fn apply(&self, pool: &Tensor, new: &Tensor) -> CResult<()> {
        match self {
            Self::Runs(runs) => {
                for &(row, slot, len) in runs {
                    pool.slice_set(&new.narrow(0, row, len)?, 0, slot)?;
                }
                Ok(())
            }
            Self::Scatter(index) => pool.scatter_set(index, new, 0),
        }
    }
}

/// Deterministic pseudo-random numbers (splitmix64) for seeded weights.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Standard normal (Box-Muller).
    fn next_gaussian(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

impl Llama {
    /// Seeded random weights of `shape` (uniform, scaled by 1/sqrt(fan_in); norms at 1).
    pub fn random(shape: &ModelShape, seed: u64, device: &Device) -> Result<Self, EngineError> {
        Self::random_as(shape, seed, device, DType::F32)
    }

    /// [`Llama::random`] with the weights (and activations, KV) in `dtype`: the same
    /// seeded values, rounded.
    pub fn random_as(
        shape: &ModelShape,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, EngineError> {
        Ok(Self::from_tensors_as(
            shape,
            &random_tensors(shape, seed, device)?,
            device,
            dtype,
        )?)
    }

    /// Loads a Hugging Face Llama directory (config.json + *.safetensors) in f32.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, EngineError> {
        Self::from_dir_as(dir, device, DType::F32)
    }

    /// Loads a Hugging Face Llama directory, converting the weights to `dtype`.
    pub fn from_dir_as(dir: &Path, device: &Device, dtype: DType) -> Result<Self, EngineError> {
        let werr = |message: String| EngineError::Weights {
            path: dir.to_path_buf(),
            message,
        };
        let cfg_text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| werr(format!("config.json: {e}")))?;
        let shape: ModelShape =
            serde_json::from_str(&cfg_text).map_err(|e| werr(format!("config.json: {e}")))?;
        let mut tensors = HashMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| werr(e.to_string()))?;
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(werr("no *.safetensors file".into()));
        }
        for f in files {
            let t = candle_core::safetensors::load(&f, device)
                .map_err(|e| werr(format!("{}: {e}", f.display())))?;
            tensors.extend(t);
        }
        Self::from_tensors_as(&shape, &tensors, device, dtype).map_err(|e| werr(e.to_string()))
    }

    /// Builds an f32 model from tensors named as in Hugging Face's Llama layout.
    pub fn from_tensors(
        shape: &ModelShape,
        t: &HashMap<String, Tensor>,
        device: &Device,
    ) -> CResult<Self> {
        Self::from_tensors_as(shape, t, device, DType::F32)
    }

    /// Builds the model from tensors named as in Hugging Face's Llama layout,
    /// converted to `dtype` (f32, bf16 or f16).
    pub fn from_tensors_as(
        shape: &ModelShape,
        t: &HashMap<String, Tensor>,
        device: &Device,
        dtype: DType,
    ) -> CResult<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            candle_core::bail!("dtype {dtype:?} is not supported (f32, bf16, f16)");
        }
        let get = |name: &str| -> CResult<Tensor> {
            t.get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?
                .to_device(device)?
                .to_dtype(dtype)
        };
        // Attention's 1/sqrt(head_dim) is folded into W_q (RoPE is linear): one
        // operation less per layer and step.
        let q_scale = 1.0 / (shape.head_dim() as f64).sqrt();
        let mut layers = Vec::with_capacity(shape.num_hidden_layers);
        for i in 0..shape.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let w = |n: &str| get(&format!("{p}.{n}.weight"));
            layers.push(Layer {
                attn_norm: w("input_layernorm")?,
                wqkv: Tensor::cat(
                    &[
                        (w("self_attn.q_proj")? * q_scale)?,
                        w("self_attn.k_proj")?,
                        w("self_attn.v_proj")?,
                    ],
                    0,
                )?,
                wo: w("self_attn.o_proj")?.contiguous()?,
                mlp_norm: w("post_attention_layernorm")?,
                wgu: Tensor::cat(&[w("mlp.gate_proj")?, w("mlp.up_proj")?], 0)?,
                wdown: w("mlp.down_proj")?.contiguous()?,
            });
        }
        let embed = get("model.embed_tokens.weight")?.contiguous()?;
        let lm_head = match t.get("lm_head.weight") {
            Some(_) if !shape.tie_word_embeddings => get("lm_head.weight")?.contiguous()?,
            _ => embed.clone(),
        };
        let hd = shape.head_dim();
        let max_pos = shape.max_position_embeddings;
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| {
                let f = 1.0 / shape.rope_theta.powf(2.0 * i as f64 / hd as f64);
                shape.rope_scaling.as_ref().map_or(f, |r| r.adjust(f)) as f32
            })
            .collect();
        let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
        let pos = Tensor::arange(0u32, max_pos as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_pos, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Self {
            shape: shape.clone(),
            device: device.clone(),
            embed,
            layers,
            norm: get("model.norm.weight")?,
            lm_head,
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            dtype,
            fused: true,
        })
    }

    /// This model with the fused path on (the default) or off: off runs separate Q, K,
    /// V, gate and up products and candle's attention over gathered K/V, the reference
    /// the fused path is tested against. The weights are shared.
    #[must_use]
    pub fn with_fused(mut self, fused: bool) -> Self {
        self.fused = fused;
        self
    }

    /// Whether the fused path is on.
    pub fn fused(&self) -> bool {
        self.fused
    }

    /// The type of the weights, activations and KV pool.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The model's shape.
    pub fn shape(&self) -> &ModelShape {
        &self.shape
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Forward over a packed batch. K/V of the new tokens are written to `pool`
    /// at the slots their block tables give; attention reads every earlier position
    /// of the sequence from the pool. Returns logits `[n_chunks, vocab]` of each
    /// chunk's last token, or `[total_tokens, vocab]` when `all_logits`, in f32.
    pub fn forward(
        &self,
        pool: &KvPool,
        chunks: &[SeqChunk<'_>],
        all_logits: bool,
    ) -> CResult<Tensor> {
        if all_logits {
            return self.forward_rows(pool, chunks, None);
        }
        let mut last = Vec::with_capacity(chunks.len());
        let mut off = 0u32;
        for c in chunks {
            off += c.tokens.len() as u32;
            last.push(off.saturating_sub(1));
        }
        self.forward_rows(pool, chunks, Some(&last))
    }

    /// [`Llama::forward`] returning the logits of the packed batch's rows `rows`
    /// (indices into the concatenated tokens; every row when `None`), in f32:
    /// speculative verification takes all `k + 1` rows of a verified chunk and the
    /// last row of the others.
    pub fn forward_rows(
        &self,
        pool: &KvPool,
        chunks: &[SeqChunk<'_>],
        rows: Option<&[u32]>,
    ) -> CResult<Tensor> {
        self.forward_rows_inner(pool, chunks, rows)
    }

    #[allow(clippy::many_single_char_names)] // x, h, k, v, s as in the maths
    fn forward_rows_inner(
        &self,
        pool: &KvPool,
        chunks: &[SeqChunk<'_>],
        rows: Option<&[u32]>,
    ) -> CResult<Tensor> {
        let bs = pool.block_size;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        for c in chunks {
            ids.extend_from_slice(c.tokens);
            positions.extend((c.start..c.start + c.tokens.len()).map(|p| p as u32));
            let needed = (c.start + c.tokens.len()).div_ceil(bs);
            if c.block_table.len() < needed {
                candle_core::bail!(
                    "block table has {} blocks, {needed} needed",
                    c.block_table.len()
                );
            }
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let pos_t = Tensor::from_vec(positions, total, &self.device)?;
        let cos = self.cos.index_select(&pos_t, 0)?;
        let sin = self.sin.index_select(&pos_t, 0)?;
        let kv_write = self.kv_write(chunks, bs, total)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        if self.fused && fused::applies(&x, total) {
            // Decode-sized batch on the CPU: fused kernels, attention in place in the pool.
            let attn_chunks: Vec<fused::AttnChunk> = chunks
                .iter()
                .map(|c| fused::AttnChunk {
                    rows: c.tokens.len(),
                    start: c.start,
                    slots: (0..c.start + c.tokens.len())
                        .map(|p| c.block_table[p / bs] * bs as u32 + (p % bs) as u32)
                        .collect(),
                })
                .collect();
            let s = &self.shape;
            let (nh, nkv, hd) = (s.num_attention_heads, s.num_key_value_heads, s.head_dim());
            let eps = s.rms_norm_eps as f32;
            for (li, layer) in self.layers.iter().enumerate() {
                let (kc, vc) = (&pool.k[li], &pool.v[li]);
                let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
                let (qk, k, v) = self.qkv_roped(layer, &h, &cos, &sin)?;
                kv_write.apply(kc, &k)?;
                kv_write.apply(vc, &v)?;
                let a = fused::paged_attention(&qk, kc, vc, nh, nkv, hd, &attn_chunks)?;
                x = fused::linear_add(&a, &layer.wo, &x)?;
                let h = candle_nn::ops::rms_norm(&x, &layer.mlp_norm, eps)?;
                let m = fused::gate_up_silu(&h, &layer.wgu)?;
                x = fused::linear_add(&m, &layer.wdown, &x)?;
            }
        } else {
            // Context slots (positions 0..start+len) of each chunk that continues a sequence.
            let ctx_slots = chunks
                .iter()
                .map(|c| {
                    if c.start == 0 {
                        return Ok(None);
                    }
                    let slots: Vec<u32> = (0..c.start + c.tokens.len())
                        .map(|p| c.block_table[p / bs] * bs as u32 + (p % bs) as u32)
                        .collect();
                    let n = slots.len();
                    Tensor::from_vec(slots, n, &self.device).map(Some)
                })
                .collect::<CResult<Vec<_>>>()?;
            let masks = chunks
                .iter()
                .map(|c| self.causal_mask(c.tokens.len(), c.start))
                .collect::<CResult<Vec<_>>>()?;
            for (li, layer) in self.layers.iter().enumerate() {
                let kc = &pool.k[li];
                let vc = &pool.v[li];
                let attn = self.attention(layer, &x, &cos, &sin, |k, v| {
                    // Write the new K/V, then gather each chunk's context.
                    kv_write.apply(kc, &k.contiguous()?)?;
                    kv_write.apply(vc, &v.contiguous()?)?;
                    let mut off = 0;
                    let mut outs = Vec::with_capacity(chunks.len());
                    for ((c, slots), mask) in chunks.iter().zip(&ctx_slots).zip(&masks) {
                        let n = c.tokens.len();
                        // A chunk from position 0 attends only to itself: no gather needed.
                        let (kctx, vctx) = match slots {
                            None => (k.narrow(0, off, n)?, v.narrow(0, off, n)?),
                            Some(slots) => (kc.index_select(slots, 0)?, vc.index_select(slots, 0)?),
                        };
                        outs.push((off, n, kctx, vctx, mask.clone()));
                        off += n;
                    }
                    Ok(outs)
                })?;
                x = (x + attn)?;
                x = (&x + self.mlp(layer, &x)?)?;
            }
        }
        let x = match rows {
            None => x,
            Some(rows) => x.index_select(
                &Tensor::from_vec(rows.to_vec(), rows.len(), &self.device)?,
                0,
            )?,
        };
        self.logits(&x)
    }

    /// The final norm and the LM head, in f32.
    fn logits(&self, x: &Tensor) -> CResult<Tensor> {
        let x = candle_nn::ops::rms_norm(x, &self.norm, self.shape.rms_norm_eps as f32)?;
        let rows = x.dim(0)?;
        if self.fused && fused::applies(&x, rows) {
            return fused::linear(&x, &self.lm_head);
        }
        x.matmul(&self.lm_head.t()?)?.to_dtype(DType::F32)
    }

    /// The fused QKV product of the normed `h` (`[T, hidden]`) with RoPE applied to Q and
    /// K in one call: (`[T, q_dim + kv_dim]` roped Q then K, K `[T, kv_dim]`, V
    /// `[T, kv_dim]`), K and V contiguous.
    #[allow(clippy::many_single_char_names)]
    fn qkv_roped(
        &self,
        layer: &Layer,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> CResult<(Tensor, Tensor, Tensor)> {
        let s = &self.shape;
        let (t, _) = h.dims2()?;
        let (nh, nkv, hd) = (s.num_attention_heads, s.num_key_value_heads, s.head_dim());
        let (qd, kvd) = (nh * hd, nkv * hd);
        let qkv = if fused::applies(h, t) {
            fused::linear(h, &layer.wqkv)?
        } else {
            h.matmul(&layer.wqkv.t()?)?
        };
        // Q and K have the same head size: one RoPE call over their nh + nkv heads.
        let qk = qkv
            .narrow(1, 0, qd + kvd)?
            .contiguous()?
            .reshape((1, t, nh + nkv, hd))?;
        let qk = candle_nn::rotary_emb::rope_thd(&qk, cos, sin)?.reshape((t, qd + kvd))?;
        let k = qk.narrow(1, qd, kvd)?.contiguous()?;
        let v = qkv.narrow(1, qd + kvd, kvd)?.contiguous()?;
        Ok((qk, k, v))
    }

    /// How this batch's new K/V rows reach their pool slots (the same for every layer).
    /// Slots that follow each other are copied as runs (one copy per run); scattered
    /// slots with one scatter. candle's CUDA scatter walks the rows in one thread per
    /// column, so a long prefill on a GPU always goes by runs.
    fn kv_write(&self, chunks: &[SeqChunk<'_>], bs: usize, total: usize) -> CResult<KvWrite> {
        let slots: Vec<u32> = chunks
            .iter()
            .flat_map(|c| {
                (c.start..c.start + c.tokens.len())
                    .map(move |p| c.block_table[p / bs] * bs as u32 + (p % bs) as u32)
            })
            .collect();
        let mut runs: Vec<(usize, usize, usize)> = Vec::new(); // (row, slot, len)
        for (row, &slot) in slots.iter().enumerate() {
            match runs.last_mut() {
                Some((_, s, len)) if *s + *len == slot as usize => *len += 1,
                _ => runs.push((row, slot as usize, 1)),
            }
        }
        if runs.len() <= 2 || (self.device.is_cuda() && total > 64) {
            return Ok(KvWrite::Runs(runs));
        }
        let kv_dim = self.shape.num_key_value_heads * self.shape.head_dim();
        let index = Tensor::from_vec(slots, (total, 1), &self.device)?
            .broadcast_as((total, kv_dim))?
            .contiguous()?;
        Ok(KvWrite::Scatter(index))
    }

    /// Naive full recomputation of one sequence (no pool, no paging): logits `[len, vocab]` (f32).
    pub fn forward_naive(&self, tokens: &[u32]) -> CResult<Tensor> {
        let n = tokens.len();
        let ids = Tensor::from_vec(tokens.to_vec(), n, &self.device)?;
        let cos = self.cos.narrow(0, 0, n)?;
        let sin = self.sin.narrow(0, 0, n)?;
        let mask = self.causal_mask(n, 0)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        for layer in &self.layers {
            let attn = self.attention(layer, &x, &cos, &sin, |k, v| {
                Ok(vec![(0, n, k.clone(), v.clone(), mask.clone())])
            })?;
            x = (x + attn)?;
            x = (&x + self.mlp(layer, &x)?)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.shape.rms_norm_eps as f32)?;
        x.matmul(&self.lm_head.t()?)?.to_dtype(DType::F32)
    }

    /// Additive causal mask `[1, 1, n, start + n]` for `n` queries at positions
    /// `start..start + n`; `None` for a single query (it sees everything).
    fn causal_mask(&self, n: usize, start: usize) -> CResult<Option<Tensor>> {
        if n <= 1 {
            return Ok(None);
        }
        let ctx = start + n;
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| {
                (0..ctx).map(move |j| {
                    if j > start + i {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        Tensor::from_vec(mask, (1, 1, n, ctx), &self.device)?
            .to_dtype(self.dtype)
            .map(Some)
    }

    /// Attention of the packed tokens `x` (`[T, hidden]`); `kv` stores the new K/V
    /// and returns, per sequence, (row offset, rows, K ctx, V ctx, causal mask).
    #[allow(clippy::type_complexity, clippy::many_single_char_names)]
    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        kv: impl FnOnce(
            &Tensor,
            &Tensor,
        ) -> CResult<Vec<(usize, usize, Tensor, Tensor, Option<Tensor>)>>,
    ) -> CResult<Tensor> {
        let s = &self.shape;
        let (t, _) = x.dims2()?;
        let (nh, nkv, hd) = (s.num_attention_heads, s.num_key_value_heads, s.head_dim());
        let g = nh / nkv;
        let h = candle_nn::ops::rms_norm(x, &layer.attn_norm, s.rms_norm_eps as f32)?;
        let (q, k, v) = if self.fused {
            let (qk, k, v) = self.qkv_roped(layer, &h, cos, sin)?;
            (qk.narrow(1, 0, nh * hd)?, k, v)
        } else {
            // Unfused: three products over row blocks of the stacked weight, RoPE on Q
            // and on K.
            let w = |from: usize, rows: usize| layer.wqkv.narrow(0, from, rows)?.t();
            let (qd, kvd) = (nh * hd, nkv * hd);
            let q = h.matmul(&w(0, qd)?)?.reshape((1, t, nh, hd))?;
            let k = h.matmul(&w(qd, kvd)?)?.reshape((1, t, nkv, hd))?;
            let v = h.matmul(&w(qd + kvd, kvd)?)?;
            let q = candle_nn::rotary_emb::rope_thd(&q, cos, sin)?.reshape((t, qd))?;
            let k = candle_nn::rotary_emb::rope_thd(&k, cos, sin)?.reshape((t, kvd))?;
            (q, k, v)
        };
        let seqs = kv(&k, &v)?;
        let mut outs = Vec::with_capacity(seqs.len());
        for (off, n, kctx, vctx, mask) in seqs {
            let ctx = kctx.dim(0)?;
            let qs = q
                .narrow(0, off, n)?
                .reshape((n, nkv, g, hd))?
                .permute((1, 2, 0, 3))?
                .contiguous()?
                .reshape((nkv, g * n, hd))?;
            let ks = kctx
                .reshape((ctx, nkv, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            let vs = vctx
                .reshape((ctx, nkv, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            // (Q is pre-scaled by 1/sqrt(head_dim) through W_q.)
            let mut att = qs.matmul(&ks.t()?)?;
            if let Some(mask) = mask {
                att = att
                    .reshape((nkv, g, n, ctx))?
                    .broadcast_add(&mask)?
                    .reshape((nkv, g * n, ctx))?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let o = att
                .matmul(&vs)?
                .reshape((nkv, g, n, hd))?
                .permute((2, 0, 1, 3))?
                .contiguous()?
                .reshape((n, nh * hd))?;
            outs.push(o);
        }
        let o = if outs.len() == 1 {
            outs.pop().unwrap_or_else(|| unreachable!())
        } else {
            Tensor::cat(&outs, 0)?
        };
        o.matmul(&layer.wo.t()?)
    }

    /// SwiGLU: one gate/up product and candle's SiLU-mul when fused, two products and
    /// SiLU then mul when not.
    fn mlp(&self, layer: &Layer, x: &Tensor) -> CResult<Tensor> {
        let h = candle_nn::ops::rms_norm(x, &layer.mlp_norm, self.shape.rms_norm_eps as f32)?;
        let act = if self.fused {
            candle_nn::ops::swiglu(&h.matmul(&layer.wgu.t()?)?)?
        } else {
            let inter = self.shape.intermediate_size;
            let gate = h.matmul(&layer.wgu.narrow(0, 0, inter)?.t()?)?;
            let up = h.matmul(&layer.wgu.narrow(0, inter, inter)?.t()?)?;
            (candle_nn::ops::silu(&gate)? * up)?
        };
        act.matmul(&layer.wdown.t()?)
    }

    /// A draft for speculative decoding: these weights with gaussian noise of
    /// relative scale `noise` (standard deviation `noise` times the tensor's RMS)
    /// added to every matrix (norms kept), keeping the first `layers` layers (all
    /// when `None`). Noise 0 and all layers is the model itself (weights shared).
    /// The noise is seeded: the same `seed` gives the same draft.
    pub fn perturbed(&self, noise: f64, layers: Option<usize>, seed: u64) -> CResult<Self> {
        let mut out = self.clone();
        if let Some(n) = layers {
            let n = n.clamp(1, self.layers.len());
            out.layers.truncate(n);
            out.shape.num_hidden_layers = n;
        }
        if noise <= 0.0 {
            return Ok(out);
        }
        let mut rng = SplitMix(seed ^ 0x6472_6166_7400_0001);
        let mut add = |w: &Tensor| -> CResult<Tensor> {
            let f = w.to_dtype(DType::F32)?;
            let rms = f.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
            let n = f.elem_count();
            let z: Vec<f32> = (0..n).map(|_| rng.next_gaussian()).collect();
            let z = Tensor::from_vec(z, f.shape(), &self.device)?;
            (f + (z * (noise * f64::from(rms)))?)?.to_dtype(self.dtype)
        };
        // Noise each projection on its own (its own RMS), in the order Q, K, V, O, gate,
        // up, down, then restack: the same draft as with separate matrices.
        let s = &self.shape;
        let (qd, kvd) = (
            s.num_attention_heads * s.head_dim(),
            s.num_key_value_heads * s.head_dim(),
        );
        let inter = s.intermediate_size;
        for l in &mut out.layers {
            let q = add(&l.wqkv.narrow(0, 0, qd)?)?;
            let k = add(&l.wqkv.narrow(0, qd, kvd)?)?;
            let v = add(&l.wqkv.narrow(0, qd + kvd, kvd)?)?;
            l.wqkv = Tensor::cat(&[q, k, v], 0)?;
            l.wo = add(&l.wo)?;
            let gate = add(&l.wgu.narrow(0, 0, inter)?)?;
            let up = add(&l.wgu.narrow(0, inter, inter)?)?;
            l.wgu = Tensor::cat(&[gate, up], 0)?;
            l.wdown = add(&l.wdown)?;
        }
        out.embed = add(&out.embed)?;
        out.lm_head = if self.shape.tie_word_embeddings {
            out.embed.clone()
        } else {
            add(&self.lm_head)?
        };
        Ok(out)
    }

    /// Argmax of each row of `logits` (`[n, vocab]`).
    pub fn greedy(logits: &Tensor) -> CResult<Vec<u32>> {
        logits.argmax(D::Minus1)?.to_vec1::<u32>()
    }

    /// Row `i` of a logits matrix as a vector.
    pub fn row(logits: &Tensor, i: usize) -> CResult<Vec<f32>> {
        logits.i(i)?.to_vec1::<f32>()
    }
}

/// Seeded random tensors of `shape`, named as in Hugging Face's Llama layout.
pub fn random_tensors(
    shape: &ModelShape,
    seed: u64,
    device: &Device,
) -> CResult<HashMap<String, Tensor>> {
    let mut rng = SplitMix(seed ^ 0x7461_696C_7363_6F70);
    llama_tensors(shape, DType::F32, device, |rows, cols, scale| {
        let data: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32() * scale).collect();
        Tensor::from_vec(data, (rows, cols), device)
    })
}

/// The tensors of a Llama `shape` in Hugging Face's layout: every matrix from
/// `mat(rows, cols, a)` (uniform in (-a, a), with a chosen so the standard deviation is
/// 1/sqrt(fan_in)), norms as ones in `dtype`.
pub fn llama_tensors(
    shape: &ModelShape,
    dtype: DType,
    device: &Device,
    mut mat: impl FnMut(usize, usize, f32) -> CResult<Tensor>,
) -> CResult<HashMap<String, Tensor>> {
    let mut t = HashMap::new();
    let h = shape.hidden_size;
    let kv = shape.num_key_value_heads * shape.head_dim();
    let inter = shape.intermediate_size;
    // Uniform(-a, a) has std a/sqrt(3); pick a so that std = 1/sqrt(fan_in).
    let sc = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    t.insert(
        "model.embed_tokens.weight".to_string(),
        mat(shape.vocab_size, h, 1.0)?,
    );
    for i in 0..shape.num_hidden_layers {
        let p = format!("model.layers.{i}");
        t.insert(format!("{p}.self_attn.q_proj.weight"), mat(h, h, sc(h))?);
        t.insert(format!("{p}.self_attn.k_proj.weight"), mat(kv, h, sc(h))?);
        t.insert(format!("{p}.self_attn.v_proj.weight"), mat(kv, h, sc(h))?);
        t.insert(format!("{p}.self_attn.o_proj.weight"), mat(h, h, sc(h))?);
        t.insert(format!("{p}.mlp.gate_proj.weight"), mat(inter, h, sc(h))?);
        t.insert(format!("{p}.mlp.up_proj.weight"), mat(inter, h, sc(h))?);
        t.insert(
            format!("{p}.mlp.down_proj.weight"),
            mat(h, inter, sc(inter))?,
        );
        for n in ["input_layernorm", "post_attention_layernorm"] {
            t.insert(format!("{p}.{n}.weight"), Tensor::ones(h, dtype, device)?);
        }
    }
    t.insert(
        "model.norm.weight".to_string(),
        Tensor::ones(h, dtype, device)?,
    );
    if !shape.tie_word_embeddings {
        t.insert(
            "lm_head.weight".to_string(),
            mat(shape.vocab_size, h, sc(h))?,
        );
    }
    Ok(t)
}
