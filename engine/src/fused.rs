//! Fused CPU kernels for decode-sized batches (a few rows), as candle custom ops.
//!
//! At batch 1 a decode step is a chain of matrix-vector products. candle's CPU product
//! sends a one-row product to `gemm`'s gemv, which runs on one thread, and every
//! projection, norm, activation and residual is its own operation with its own
//! allocation; its attention gathers the context out of the pool and copies it twice
//! more (transposes). These ops cover the f32 decode path on the CPU:
//!
//! - [`linear`]: `x W^T` for `x` of at most [`MAX_ROWS`] rows through the same gemv
//!   (no copy of the weight), the output columns of a large weight split over candle's
//!   CPU pool (weights of 2 MiB or more); with `+ residual` ([`linear_add`]) or
//!   SiLU(gate) x up over the stacked `[gate; up]` weight ([`gate_up_silu`]), so the
//!   MLP is two operations.
//! - [`paged_attention`]: attention of a few query rows per sequence that reads K and V
//!   in place from the paged pool by slot (no gather, no transposed copies), one task
//!   per (row, KV head) computing its whole query group, vectorised through pulp's
//!   runtime dispatch (AVX2 + FMA where the CPU has it).
//!
//! Each output element is computed by one thread in a fixed order, so results do not
//! depend on the thread count. Every other case (GPU, half precision, prefill) goes
//! through candle's own operations; [`applies`] says which.

// Kernel code names its operands as the maths does (x, w, q, k, n, g, ...); and the
// SIMD kernels must be inlined into pulp's target-feature function to be compiled
// for AVX2, which only `#[inline(always)]` guarantees (measured: without it the
// attention ran at 4-wide SSE with shuffles, 30% slower).
#![allow(clippy::many_single_char_names, clippy::inline_always)]

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use std::sync::Mutex;

type CResult<T> = candle_core::Result<T>;

/// The most rows (packed tokens) the fused CPU ops take; larger batches use candle's
/// products, which are efficient there.
pub const MAX_ROWS: usize = 8;

/// Below this many multiply-adds attention runs on the calling thread (always, unless
/// products are split: see [`PARALLEL_MIN_WEIGHT_BYTES`]).
const PARALLEL_MIN_ATTN_MACS: usize = 1 << 20;

/// Whether the fused CPU ops apply to a tensor of `rows` rows like `x`.
pub fn applies(x: &Tensor, rows: usize) -> bool {
    applies_to(x.device(), x.dtype(), rows)
}

/// Whether the fused CPU ops apply to `rows` rows on `device` in `dtype`.
pub fn applies_to(device: &candle_core::Device, dtype: DType, rows: usize) -> bool {
    device.is_cpu() && dtype == DType::F32 && rows <= MAX_ROWS
}

/// A contiguous f32 slice of a CPU tensor's storage.
fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> CResult<&'a [f32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("fused op: {what} is not contiguous")))?;
    Ok(&s.as_slice::<f32>()?[a..b])
}

/// Dot product in `S`'s vector width (8 lanes with AVX2), fused multiply-adds where
/// the CPU has them.
#[inline(always)]
fn dot<S: pulp::Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (a8, at) = S::as_simd_f32s(a);
    let (b8, bt) = S::as_simd_f32s(b);
    let mut acc = simd.splat_f32s(0.0);
    for (x, y) in a8.iter().zip(b8) {
        acc = simd.mul_add_e_f32s(*x, *y, acc);
    }
    let mut s = simd.reduce_sum_f32s(acc);
    for (x, y) in at.iter().zip(bt) {
        s += x * y;
    }
    s
}

/// `acc += p * v`, elementwise, in `S`'s vector width.
#[inline(always)]
fn axpy<S: pulp::Simd>(simd: S, acc: &mut [f32], p: f32, v: &[f32]) {
    let (a8, at) = S::as_mut_simd_f32s(acc);
    let (v8, vt) = S::as_simd_f32s(v);
    let ps = simd.splat_f32s(p);
    for (a, x) in a8.iter_mut().zip(v8) {
        *a = simd.mul_add_e_f32s(ps, *x, *a);
    }
    for (a, x) in at.iter_mut().zip(vt) {
        *a += p * x;
    }
}

/// `acc += p[0] v[0] + p[1] v[1] + p[2] v[2] + p[3] v[3]`: four rows per load and
/// store of `acc`, summed as a tree, so consecutive rows do not wait on each other's
/// store of the accumulator.
#[inline(always)]
fn axpy4<S: pulp::Simd>(simd: S, acc: &mut [f32], p: [f32; 4], v: [&[f32]; 4]) {
    let (a8, at) = S::as_mut_simd_f32s(acc);
    let (v0, t0) = S::as_simd_f32s(v[0]);
    let (v1, t1) = S::as_simd_f32s(v[1]);
    let (v2, t2) = S::as_simd_f32s(v[2]);
    let (v3, t3) = S::as_simd_f32s(v[3]);
    let (p0, p1) = (simd.splat_f32s(p[0]), simd.splat_f32s(p[1]));
    let (p2, p3) = (simd.splat_f32s(p[2]), simd.splat_f32s(p[3]));
    for (i, a) in a8.iter_mut().enumerate() {
        let lo = simd.mul_add_e_f32s(p1, v1[i], simd.mul_f32s(p0, v0[i]));
        let hi = simd.mul_add_e_f32s(p3, v3[i], simd.mul_f32s(p2, v2[i]));
        *a = simd.add_f32s(*a, simd.add_f32s(lo, hi));
    }
    for (i, a) in at.iter_mut().enumerate() {
        *a += (p[0] * t0[i] + p[1] * t1[i]) + (p[2] * t2[i] + p[3] * t3[i]);
    }
}

/// `exp(x)` for `x <= 0` (softmax after subtracting the maximum), in plain arithmetic
/// so that a loop of it vectorises: `e^x = 2^n e^f` with `n` the integer nearest to
/// `x / ln 2`, `f = x - n ln 2` reduced in two parts (Cody-Waite, so `f` keeps its
/// precision for large `|x|`), and a degree-6 Taylor polynomial for `e^f`,
/// `|f| <= ln 2 / 2` (relative error about 2e-7). Below -87 it returns about 1e-38,
/// not 0.
#[inline(always)]
fn exp_le0(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375: exact in 9 bits, so n * LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let f = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + f * (1.0
            + f * (1.0 / 2.0
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

/// The sum of `v`, in `S`'s vector width.
#[inline(always)]
fn sum<S: pulp::Simd>(simd: S, v: &[f32]) -> f32 {
    let (v8, vt) = S::as_simd_f32s(v);
    let mut acc = simd.splat_f32s(0.0);
    for x in v8 {
        acc = simd.add_f32s(acc, *x);
    }
    simd.reduce_sum_f32s(acc) + vt.iter().sum::<f32>()
}

#[inline]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Products with at least this many weight bytes are split over candle's CPU pool
/// (the calling thread takes parts too, from a shared cursor, so a core busy with
/// other work takes fewer). On the 2-core development machine one core's gemv reads
/// about 24 GB/s of the 35-37 GB/s both cores read; small-100m decoded at 1.04-1.13x
/// candle-transformers' tokens/s split against 0.97-1.04x unsplit (same binary,
/// interleaved runs). Through rayon instead, whose hand-off blocks the caller, the
/// split had cost 10-15% under heavy load. `TAILSCOPE_FUSED_SPLIT_BYTES` overrides it
/// (a huge value: never split).
const PARALLEL_MIN_WEIGHT_BYTES: usize = 2 << 20;

/// Whether products may be split over candle's CPU thread pool (it has workers and
/// the split threshold is not `usize::MAX`).
pub fn splits() -> bool {
    split_min_bytes() != usize::MAX && candle_core::utils::barrier_pool().n_workers() > 0
}

/// [`PARALLEL_MIN_WEIGHT_BYTES`], or `TAILSCOPE_FUSED_SPLIT_BYTES` when set (read once).
fn split_min_bytes() -> usize {
    static V: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var("TAILSCOPE_FUSED_SPLIT_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(PARALLEL_MIN_WEIGHT_BYTES)
    })
}

/// `x` `[rows, k]` times the transposed rows `first..first + n` of the `[out, k]` weight
/// stored in `w` with layout `wl`: `[rows, n]`, through candle's own CPU product (gemm's
/// vectorised gemv for one row), without copying the weight.
fn part_product(
    x: &CpuStorage,
    xl: &Layout,
    w: &CpuStorage,
    wl: &Layout,
    first: usize,
    n: usize,
) -> CResult<Vec<f32>> {
    let (rows, k) = xl.shape().dims2()?;
    let rhs = Layout::new(
        Shape::from((k, n)),
        vec![1, k],
        wl.start_offset() + first * k,
    );
    match x.matmul(w, (1, rows, n, k), xl, &rhs)? {
        CpuStorage::F32(v) => Ok(v),
        _ => candle_core::bail!("fused linear: the product is not f32"),
    }
}

/// What a [`Linear`] does after the product.
#[derive(Clone, Copy)]
enum Epilogue {
    /// `x W^T`.
    Plain,
    /// `SiLU(x Wg^T) * (x Wu^T)` over `W = [Wg; Wu]`.
    SiluMul,
}

#[derive(Clone, Copy)]
struct Linear(Epilogue);

impl Linear {
    /// `[rows, cols]` of `x` `[rows, in]` and `w` `[out, in]` (cols = out, or out / 2 for
    /// SiLU-mul), the output columns split over candle's CPU pool when the weight is large.
    fn product(
        self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> CResult<(Vec<f32>, usize, usize)> {
        let (rows, k) = xl.shape().dims2()?;
        let (n, k2) = wl.shape().dims2()?;
        if k != k2 || !xl.is_contiguous() || !wl.is_contiguous() {
            candle_core::bail!("fused linear: x [{rows}, {k}] and weight [{n}, {k2}] do not match");
        }
        let cols = match self.0 {
            Epilogue::Plain => n,
            Epilogue::SiluMul => n / 2,
        };
        // Columns first..first + len of the result, `[rows, len]`.
        let part = |first: usize, len: usize| -> CResult<Vec<f32>> {
            match self.0 {
                Epilogue::Plain => part_product(x, xl, w, wl, first, len),
                Epilogue::SiluMul => {
                    let mut g = part_product(x, xl, w, wl, first, len)?;
                    let u = part_product(x, xl, w, wl, cols + first, len)?;
                    for (g, u) in g.iter_mut().zip(&u) {
                        *g = silu(*g) * u;
                    }
                    Ok(g)
                }
            }
        };
        let bytes = n * k * 4;
        if !splits() || bytes < split_min_bytes() {
            return Ok((part(0, cols)?, rows, cols));
        }
        // Parts of about 1 MiB of weights, 2 to 16, taken from a shared cursor by the
        // calling thread and candle's pool: a core busy with other work takes fewer.
        let n_parts = (bytes >> 20).clamp(2, 16).min(cols);
        let per = cols.div_ceil(n_parts);
        let n_parts = cols.div_ceil(per);
        let results: Vec<Mutex<Option<CResult<Vec<f32>>>>> =
            (0..n_parts).map(|_| Mutex::new(None)).collect();
        candle_core::utils::barrier_pool().execute_chunked(n_parts, |range| {
            for i in range {
                let r = part(i * per, per.min(cols - i * per));
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(r);
                }
            }
        });
        let mut out = vec![0f32; rows * cols];
        for (i, slot) in results.into_iter().enumerate() {
            let p = slot.into_inner().ok().flatten().ok_or_else(|| {
                candle_core::Error::Msg("fused linear: a part did not run".into())
            })??;
            let len = p.len() / rows;
            for r in 0..rows {
                out[r * cols + i * per..r * cols + i * per + len]
                    .copy_from_slice(&p[r * len..(r + 1) * len]);
            }
        }
        Ok((out, rows, cols))
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "tailscope-fused-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (out, rows, cols) = Linear(self.0).product(s1, l1, s2, l2)?;
        Ok((CpuStorage::F32(out), Shape::from((rows, cols))))
    }
}

/// `residual + x W^T`.
struct LinearAdd;

impl CustomOp3 for LinearAdd {
    fn name(&self) -> &'static str {
        "tailscope-fused-linear-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let res = slice(s3, l3, "residual")?;
        let (mut out, rows, cols) = Linear(Epilogue::Plain).product(s1, l1, s2, l2)?;
        if res.len() != out.len() {
            candle_core::bail!(
                "fused linear: residual has {} values, not {}",
                res.len(),
                out.len()
            );
        }
        for (o, r) in out.iter_mut().zip(res) {
            *o += r;
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, cols))))
    }
}

/// `x W^T` for `x` `[rows, in]` and a contiguous `w` `[out, in]` (CPU, f32, rows <= [`MAX_ROWS`]).
pub fn linear(x: &Tensor, w: &Tensor) -> CResult<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(w, &Linear(Epilogue::Plain))
}

/// `residual + x W^T` in one pass.
pub fn linear_add(x: &Tensor, w: &Tensor, residual: &Tensor) -> CResult<Tensor> {
    x.contiguous()?
        .apply_op3_no_bwd(w, &residual.contiguous()?, &LinearAdd)
}

/// `SiLU(x Wg^T) * (x Wu^T)` over the fused `w = [Wg; Wu]` (`[2 * inter, in]`).
pub fn gate_up_silu(x: &Tensor, w: &Tensor) -> CResult<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(w, &Linear(Epilogue::SiluMul))
}

/// Attention of packed query rows against K/V read in place from the paged pool.
struct PagedAttention {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Per query row: (offset into `slots`, context length). The row attends to the
    /// pool slots `slots[offset..offset + len]`, its causal context.
    rows: Vec<(usize, usize)>,
    slots: Vec<u32>,
}

impl PagedAttention {
    /// Task `i` = (query row, KV head): the head group's attention output `o`
    /// (`g * head_dim` values).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn group<S: pulp::Simd>(
        &self,
        simd: S,
        i: usize,
        q: &[f32],
        q_stride: usize,
        kp: &[f32],
        vp: &[f32],
        o: &mut [f32],
    ) {
        let (hd, g) = (self.head_dim, self.heads / self.kv_heads);
        let kvd = self.kv_heads * hd;
        let (row, kvh) = (i / self.kv_heads, i % self.kv_heads);
        let (off, len) = self.rows[row];
        let slots = &self.slots[off..off + len];
        let mut scores = vec![0f32; len];
        for gi in 0..g {
            let h = kvh * g + gi;
            let qh = &q[row * q_stride + h * hd..row * q_stride + (h + 1) * hd];
            for (s, &slot) in scores.iter_mut().zip(slots) {
                let b = slot as usize * kvd + kvh * hd;
                *s = dot(simd, qh, &kp[b..b + hd]);
            }
            let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // Exponentials in a loop of their own (it vectorises), then their sum.
            for s in &mut scores {
                *s = exp_le0(*s - m);
            }
            let inv = 1.0 / sum(simd, &scores);
            let oh = &mut o[gi * hd..(gi + 1) * hd];
            let vrow = |j: usize| {
                let b = slots[j] as usize * kvd + kvh * hd;
                &vp[b..b + hd]
            };
            let mut j = 0;
            while j + 4 <= len {
                let p = [scores[j], scores[j + 1], scores[j + 2], scores[j + 3]];
                let p = p.map(|x| x * inv);
                axpy4(
                    simd,
                    oh,
                    p,
                    [vrow(j), vrow(j + 1), vrow(j + 2), vrow(j + 3)],
                );
                j += 4;
            }
            for (jj, p) in scores.iter().enumerate().skip(j) {
                axpy(simd, oh, p * inv, vrow(jj));
            }
        }
    }
}

/// One [`PagedAttention::group`] call as a pulp operation: `with_simd` is compiled
/// for the instruction set pulp detects, and everything it calls is inlined into it.
struct Group<'a> {
    op: &'a PagedAttention,
    i: usize,
    q: &'a [f32],
    q_stride: usize,
    kp: &'a [f32],
    vp: &'a [f32],
    o: &'a mut [f32],
}

impl pulp::WithSimd for Group<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        self.op.group(
            simd,
            self.i,
            self.q,
            self.q_stride,
            self.kp,
            self.vp,
            self.o,
        );
    }
}

impl CustomOp3 for PagedAttention {
    fn name(&self) -> &'static str {
        "tailscope-paged-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let q = slice(s1, l1, "queries")?;
        let (kp, vp) = (slice(s2, l2, "K pool")?, slice(s3, l3, "V pool")?);
        let (t, q_stride) = l1.shape().dims2()?;
        let (hd, g) = (self.head_dim, self.heads / self.kv_heads);
        let kvd = self.kv_heads * hd;
        let qd = self.heads * hd;
        if t != self.rows.len() || q_stride < qd || l2.shape().dims2()?.1 != kvd {
            candle_core::bail!("paged attention: shapes do not match the rows");
        }
        let pool_slots = kp.len() / kvd;
        if self.slots.iter().any(|&s| s as usize >= pool_slots) || vp.len() != kp.len() {
            candle_core::bail!("paged attention: a slot is outside the pool");
        }
        let max_ctx = self.rows.iter().map(|r| r.1).max().unwrap_or(0);
        let mut out = vec![0f32; t * qd];
        let task = |i: usize, o: &mut [f32]| {
            pulp::Arch::new().dispatch(Group {
                op: self,
                i,
                q,
                q_stride,
                kp,
                vp,
                o,
            });
        };
        // One task per (row, KV head): the head group's output columns are contiguous.
        let work = t * self.heads * max_ctx * hd * 2;
        if !splits() || work < PARALLEL_MIN_ATTN_MACS {
            out.chunks_exact_mut(g * hd)
                .enumerate()
                .for_each(|(i, o)| task(i, o));
        } else {
            let parts: Vec<Mutex<&mut [f32]>> =
                out.chunks_exact_mut(g * hd).map(Mutex::new).collect();
            candle_core::utils::barrier_pool().execute_chunked(parts.len(), |range| {
                for i in range {
                    if let Ok(mut o) = parts[i].lock() {
                        task(i, &mut o);
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((t, qd))))
    }
}

/// One sequence's query rows for [`paged_attention`]: `rows` queries at positions
/// `start..start + rows`, whose pool slots (positions `0..start + rows`) are `slots`.
pub struct AttnChunk {
    pub rows: usize,
    pub start: usize,
    pub slots: Vec<u32>,
}

/// Attention of the packed queries in the first `heads * head_dim` columns of `q`
/// (`[T, >= heads * head_dim]`, contiguous, pre-scaled) against the K and V pools
/// (`[slots, kv_heads * head_dim]`), causal within each chunk. Returns `[T, heads * head_dim]`.
pub fn paged_attention(
    q: &Tensor,
    k_pool: &Tensor,
    v_pool: &Tensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    chunks: &[AttnChunk],
) -> CResult<Tensor> {
    let mut rows = Vec::new();
    let mut slots = Vec::new();
    for c in chunks {
        let off = slots.len();
        slots.extend_from_slice(&c.slots);
        rows.extend((0..c.rows).map(|i| (off, c.start + i + 1)));
    }
    let op = PagedAttention {
        heads,
        kv_heads,
        head_dim,
        rows,
        slots,
    };
    q.contiguous()?.apply_op3_no_bwd(k_pool, v_pool, &op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn seq(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn exp_le0_tracks_exp() {
        for i in 0..=20_000 {
            let x = -(i as f32) * 0.005; // 0 down to -100
            let (got, want) = (exp_le0(x), x.exp());
            assert!(
                (got - want).abs() <= 1e-6 * want + 1e-37,
                "exp({x}) = {want}, got {got}"
            );
        }
    }

    #[test]
    fn fused_linear_matches_candle_products() -> CResult<()> {
        let dev = Device::Cpu;
        for rows in [1usize, 3] {
            let x = Tensor::from_vec(seq(rows * 200, 1), (rows, 200), &dev)?;
            let w = Tensor::from_vec(seq(2 * 300 * 200, 2), (600, 200), &dev)?;
            let r = Tensor::from_vec(seq(rows * 600, 3), (rows, 600), &dev)?;
            let want = x.matmul(&w.t()?)?;
            let diff = |a: &Tensor, b: &Tensor| -> CResult<f32> {
                (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
            };
            assert!(diff(&linear(&x, &w)?, &want)? < 1e-4);
            assert!(diff(&linear_add(&x, &w, &r)?, &(&want + &r)?)? < 1e-4);
            let g = want.narrow(1, 0, 300)?;
            let u = want.narrow(1, 300, 300)?;
            let swiglu = (candle_nn::ops::silu(&g)? * u)?;
            assert!(diff(&gate_up_silu(&x, &w)?, &swiglu)? < 1e-4);
        }
        Ok(())
    }
}
