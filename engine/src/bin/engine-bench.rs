//! engine-bench: prefill and decode tokens/s of our forward against
//! candle-transformers' llama on the same shape and the same (seeded) weights,
//! beside design.md's floors.
//!
//! `cargo run --release -p tailscope-engine --features reference --bin engine-bench [-- --quick]`
//! Options: `--shapes tiny,small-100m,llama-3.2-1b,llama-3.1-8b`, `--dtype f32|bf16|f16`,
//! `--no-ref` (ours only), `--prompt N --decode N --reps N`, `--device cuda` (a build
//! with the `cuda` feature; scripts/build-cuda), `--bandwidth-gbs G` (floor denominator;
//! measured when absent), `--seed-scenario` (the seed scenario's A/B replay instead, on
//! `--device`/`--dtype`), `--steps` (one decode step's time on the tiny shape); `--help`
//! lists them.

use std::collections::HashMap;
use std::time::Instant;

use anyhow_free::Result;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::llama as reference;
use clap::Parser;
use tailscope_engine::model::{random_tensors, KvPool, Llama, SeqChunk};
use tailscope_engine::ModelShape;

mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}

/// The nearest-rank median of the repetitions (NaN for none).
fn median(mut v: Vec<f64>) -> f64 {
    tailscope_model::stats::median_of(&mut v).unwrap_or(f64::NAN)
}

fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// Seconds for (prefill of `prompt` tokens, `decode` single-token steps), ours.
fn ours(m: &Llama, prompt: &[u32], decode: usize) -> Result<(f64, f64)> {
    let bs = 16;
    let blocks = (prompt.len() + decode).div_ceil(bs) + 1;
    let pool = KvPool::new(m, blocks, bs)?;
    let table: Vec<u32> = (0..blocks as u32).collect();
    let t0 = Instant::now();
    let l = m.forward(
        &pool,
        &[SeqChunk {
            tokens: prompt,
            start: 0,
            block_table: &table,
        }],
        false,
    )?;
    let mut next = Llama::greedy(&l)?[0];
    let prefill = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for i in 0..decode {
        let tok = [next];
        let l = m.forward(
            &pool,
            &[SeqChunk {
                tokens: &tok,
                start: prompt.len() + i,
                block_table: &table,
            }],
            false,
        )?;
        next = Llama::greedy(&l)?[0];
    }
    Ok((prefill, t1.elapsed().as_secs_f64()))
}

fn theirs(
    dev: &Device,
    m: &reference::Llama,
    cfg: &reference::Config,
    dtype: DType,
    prompt: &[u32],
    decode: usize,
) -> Result<(f64, f64)> {
    let mut cache = reference::Cache::new(true, dtype, cfg, dev)?;
    let t0 = Instant::now();
    let input = Tensor::new(prompt, dev)?.unsqueeze(0)?;
    let l = m.forward(&input, 0, &mut cache)?;
    let mut next = l.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
    let prefill = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for i in 0..decode {
        let input = Tensor::new(&[next], dev)?.unsqueeze(0)?;
        let l = m.forward(&input, prompt.len() + i, &mut cache)?;
        next = l.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
    }
    Ok((prefill, t1.elapsed().as_secs_f64()))
}

/// This device's copy bandwidth (bytes/s, read + write) and matrix-product rate in
/// `dtype` (FLOP/s): the denominators of design.md's floors. On a GPU, a device-to-device
/// copy of 1 GiB and 8192^3 products; on a CPU, a host copy and 1024^3 products.
fn machine(dev: &Device, dtype: DType) -> Result<(f64, f64)> {
    if dev.is_cuda() {
        return gpu_machine(dev, dtype);
    }
    let n = 64 << 20;
    let src = vec![1.0f32; n / 4];
    let mut dst = vec![0.0f32; n / 4];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    // Decode reads weights: the floor's bandwidth is the better of the copy (read +
    // write) and a read over all of candle's threads of a buffer far beyond the caches.
    let bw = (2.0 * n as f64 / best).max(read_bandwidth(256 << 20));
    let a = Tensor::ones((1024, 1024), dtype, dev)?;
    let mut bestm = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let c = a.matmul(&a)?;
        std::hint::black_box(c.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?);
        bestm = bestm.min(t.elapsed().as_secs_f64());
    }
    Ok((bw, 2.0 * 1024f64.powi(3) / bestm))
}

/// Bytes/s of a read of a `bytes`-sized buffer by candle's CPU pool and this thread, the best of several passes after a warm-up: beyond the last-level cache this
/// is the memory's read bandwidth, within it the cache's.
fn read_bandwidth(bytes: usize) -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    let words = (bytes / 8).max(1024);
    let buf: Vec<u64> = (0..words as u64).collect();
    let pool = candle_core::utils::barrier_pool();
    let parts = (pool.n_workers() + 1) * 8;
    let per = words.div_ceil(parts);
    let pass = || -> u64 {
        let total = AtomicU64::new(0);
        pool.execute_chunked(parts, |range| {
            for i in range {
                let c = &buf[(i * per).min(words)..((i + 1) * per).min(words)];
                let s = c.iter().fold(0u64, |a, &x| a.wrapping_add(x));
                total.fetch_add(s, Ordering::Relaxed);
            }
        });
        total.into_inner()
    };
    std::hint::black_box(pass());
    // Enough passes that the timing is not a handful of microseconds.
    let passes = (64usize << 20).div_ceil(words * 8).clamp(1, 1000);
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..passes {
            std::hint::black_box(pass());
        }
        best = best.min(t.elapsed().as_secs_f64() / passes as f64);
    }
    (words * 8) as f64 / best
}

/// [`machine`] on a GPU: 1 GiB of f32, allocated before the clock starts, copied
/// (read + write) by candle's copy kernel and read by a row sum (the better of the
/// two), and 8192^3 products in `dtype`.
fn gpu_machine(dev: &Device, dtype: DType) -> Result<(f64, f64)> {
    let elems = 1usize << 28;
    let src = Tensor::ones((elems / 1024, 1024), DType::F32, dev)?;
    let dst = Tensor::zeros((elems / 1024, 1024), DType::F32, dev)?;
    dst.slice_set(&src, 0, 0)?;
    std::hint::black_box(src.sum_keepdim(1)?);
    let timed = |reps: u32, f: &dyn Fn() -> candle_core::Result<()>| -> Result<f64> {
        dev.synchronize()?;
        let start = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        dev.synchronize()?;
        Ok(start.elapsed().as_secs_f64() / f64::from(reps))
    };
    let copy = timed(10, &|| dst.slice_set(&src, 0, 0))?;
    let read = timed(10, &|| src.sum_keepdim(1).map(|_| ()))?;
    let bytes = (elems * 4) as f64;
    println!(
        "device memory: copy {:.0} GB/s (read + write), row-sum read {:.0} GB/s",
        2.0 * bytes / copy / 1e9,
        bytes / read / 1e9
    );
    let bw = (2.0 * bytes / copy).max(bytes / read);
    let side = 8192usize;
    let mat = Tensor::ones((side, side), dtype, dev)?;
    std::hint::black_box(mat.matmul(&mat)?);
    let product = timed(8, &|| mat.matmul(&mat).map(|_| ()))?;
    let flops = 2.0 * (side as f64).powi(3) / product;
    Ok((bw, flops))
}

/// Random weights of `shape` made on the device itself (a GPU fills 16 GB in well
/// under a second, where the seeded CPU generator takes minutes), already in `dtype`.
fn device_random_tensors(
    shape: &ModelShape,
    dev: &Device,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    Ok(tailscope_engine::model::llama_tensors(
        shape,
        dtype,
        dev,
        |rows, cols, a| Tensor::rand(-a, a, (rows, cols), dev)?.to_dtype(dtype),
    )?)
}

/// Both models over the same weights: ours from a safetensors file round trip on a CPU
/// (as `tailscope replay` loads a directory), straight from device tensors on a GPU.
fn load_models(
    shape_name: &str,
    shape: &ModelShape,
    dev: &Device,
    dtype: DType,
    with_ref: bool,
) -> Result<(Llama, Option<(reference::Llama, reference::Config)>)> {
    let rcfg = || -> Result<reference::Config> {
        let lcfg: reference::LlamaConfig = serde_json::from_str(&serde_json::to_string(shape)?)?;
        Ok(lcfg.into_config(false))
    };
    if dev.is_cuda() {
        let t = device_random_tensors(shape, dev, dtype)?;
        let ours_m = Llama::from_tensors_as(shape, &t, dev, dtype)?;
        let reference = if with_ref {
            let cfg = rcfg()?;
            let vb = candle_nn::VarBuilder::from_tensors(t, dtype, dev);
            Some((reference::Llama::load(vb, &cfg)?, cfg))
        } else {
            None
        };
        return Ok((ours_m, reference));
    }
    let dir = std::env::temp_dir().join(format!(
        "tailscope-engine-bench-{shape_name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let t: HashMap<String, Tensor> = random_tensors(shape, 1, &Device::Cpu)?;
    candle_core::safetensors::save(&t, dir.join("model.safetensors"))?;
    std::fs::write(dir.join("config.json"), serde_json::to_string(shape)?)?;
    // Both models load the same file.
    let ours_m = Llama::from_dir_as(&dir, dev, dtype)?;
    let reference = if with_ref {
        let loaded = candle_core::safetensors::load(dir.join("model.safetensors"), dev)?;
        let vb = candle_nn::VarBuilder::from_tensors(loaded, dtype, dev);
        let cfg = rcfg()?;
        Some((reference::Llama::load(vb, &cfg)?, cfg))
    } else {
        None
    };
    std::fs::remove_dir_all(&dir)?;
    Ok((ours_m, reference))
}

/// Prefill and decode tokens/s of our forward against candle-transformers' llama on the
/// same shape and the same (seeded) weights, beside design.md's floors.
#[derive(Parser)]
#[command(name = "engine-bench")]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches
struct Args {
    /// Fewer repetitions on the CPU.
    #[arg(long)]
    quick: bool,
    /// Comma-separated shapes: tiny, small-100m, llama-3.2-1b, llama-3.1-8b.
    #[arg(long, default_value = "tiny,small-100m")]
    shapes: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// cpu, or cuda in a build with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Ours only, without candle-transformers' reference.
    #[arg(long)]
    no_ref: bool,
    /// Prompt tokens (default: by shape and device).
    #[arg(long, value_name = "N")]
    prompt: Option<usize>,
    /// Decode steps (default: by shape and device).
    #[arg(long, value_name = "N")]
    decode: Option<usize>,
    /// Repetitions (default: by shape and device; at least 1).
    #[arg(long, value_name = "N")]
    reps: Option<usize>,
    /// The floor's memory bandwidth in GB/s, such as the card's datasheet figure (H100
    /// SXM 3350, H200 4800); measured when absent.
    #[arg(long, value_name = "G")]
    bandwidth_gbs: Option<f64>,
    /// The seed scenario's A/B replay on `--device` / `--dtype` instead.
    #[arg(long)]
    seed_scenario: bool,
    /// One decode step's time on the tiny shape instead (`--decode` steps, default 200).
    #[arg(long)]
    steps: bool,
    /// With `--steps`: the unfused path.
    #[arg(long)]
    unfused: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("engine-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let quick = args.quick;
    let device_name = args.device;
    let dtype_name = args.dtype;
    let dtype = tailscope_engine::config::parse_dtype(&dtype_name)
        .ok_or_else(|| format!("--dtype {dtype_name}: expected f32, bf16 or f16"))?;
    if args.seed_scenario {
        let (workload, mut cfg_a, mut cfg_b) = tailscope_engine::scenario::seed();
        for c in [&mut cfg_a, &mut cfg_b] {
            c.device.clone_from(&device_name);
            c.dtype.clone_from(&dtype_name);
        }
        let started = Instant::now();
        let opts = tailscope_engine::ReplayOptions::default();
        let report = tailscope_engine::run_ab(&workload, &cfg_a, &cfg_b, &opts, &mut |_| {})?;
        println!("{}", report.to_text());
        println!(
            "seed scenario A/B on {device_name} {dtype_name} (3 repeats per side + warm-up) took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let dev = tailscope_engine::engine::open_device(&device_name)?;
    if args.steps {
        return steps(&dev, dtype, args.decode.unwrap_or(200), args.unfused);
    }
    let gpu = dev.is_cuda();
    let shapes = args.shapes;
    let with_ref = !args.no_ref;
    let (measured_bw, flops) = machine(&dev, dtype)?;
    // --bandwidth-gbs: the card's datasheet figure (H100 SXM 3350, H200 4800), if the
    // floor should use it rather than the measured copy bandwidth.
    let bw = args.bandwidth_gbs.map_or(measured_bw, |g| g * 1e9);
    println!(
        "device {device_name} {dtype_name}: memory bandwidth {:.1} GB/s measured, floor uses {:.1} GB/s; {dtype_name} matmul {:.1} TFLOP/s; {} CPU threads",
        measured_bw / 1e9,
        bw / 1e9,
        flops / 1e12,
        candle_core::utils::get_num_threads()
    );
    println!(
        "{:<12} {:>5} {:>7} {:>10} {:>13} {:>13} {:>6} {:>12} {:>12} {:>12} {:>6} | {:>9} {:>6} {:>6} {:>6} {:>9} {:>8}",
        "shape",
        "dtype",
        "params",
        "prompt/dec",
        "prefill",
        "pf ref",
        "ratio",
        "decode",
        "unfused",
        "dec ref",
        "ratio",
        "floor/step",
        "floor%",
        "unf%",
        "ref%",
        "ws GB/s",
        "ws flr%",
    );
    for name in shapes.split(',') {
        let shape = ModelShape::named(name).ok_or_else(|| format!("unknown shape {name}"))?;
        let big = shape.params() > 500_000_000;
        let (d_prompt, d_decode, d_reps) = match (name, gpu) {
            (_, true) => (512, 128, 3),
            ("tiny", false) => (512, 64, if quick { 2 } else { 5 }),
            _ => (256, 16, if quick || big { 1 } else { 3 }),
        };
        let prompt_len = args.prompt.unwrap_or(d_prompt);
        let decode = args.decode.unwrap_or(d_decode);
        let reps = args.reps.unwrap_or(d_reps).max(1);
        let (ours_m, ref_m) = load_models(name, &shape, &dev, dtype, with_ref)?;
        // The same weights on the unfused path (separate Q/K/V and gate/up products,
        // candle's attention over gathered K/V): the before of the fused kernels.
        let unfused_m = ours_m.clone().with_fused(false);
        let prompt = tokens(prompt_len, shape.vocab_size);
        // Warm-up, then interleaved repetitions.
        ours(&ours_m, &prompt, 2)?;
        ours(&unfused_m, &prompt, 2)?;
        if let Some((m, cfg)) = &ref_m {
            theirs(&dev, m, cfg, dtype, &prompt, 2)?;
        }
        let (mut po, mut pr, mut d_o, mut du, mut dr) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // The floor's bandwidth is re-measured between repetitions and the best kept:
        // other load on a shared machine lowers it for a while, and the floor is what
        // the machine can do.
        let mut run_bw = bw;
        for _ in 0..reps {
            if !gpu && args.bandwidth_gbs.is_none() {
                run_bw = run_bw.max(read_bandwidth(256 << 20));
            }
            let (p, d) = ours(&ours_m, &prompt, decode)?;
            po.push(p);
            d_o.push(d);
            du.push(ours(&unfused_m, &prompt, decode)?.1);
            if let Some((m, cfg)) = &ref_m {
                let (p, d) = theirs(&dev, m, cfg, dtype, &prompt, decode)?;
                pr.push(p);
                dr.push(d);
            }
        }
        let pf = |s: f64| prompt_len as f64 / s;
        let dc = |s: f64| decode as f64 / s;
        let (po, d_o, du) = (median(po), median(d_o), median(du));
        // Floors: prefill >= 2 * params * tokens / FLOP/s; decode step >= bytes read / bandwidth.
        let params = shape.params() as f64;
        let el = dtype.size_in_bytes() as f64;
        let pf_floor = 2.0 * params * prompt_len as f64 / flops;
        let kv_per_token = shape.kv_bytes_per_token() as f64 / 4.0 * el;
        let kv_read = kv_per_token * (prompt_len as f64 + decode as f64 / 2.0);
        let step_bytes = params * el + kv_read;
        let step_floor = step_bytes / run_bw;
        let dec_floor = step_floor * decode as f64;
        // The same bytes read at the rate this machine reads a buffer of their size (a
        // working set that fits in the last-level cache is read faster than memory).
        let ws_bw = if gpu {
            bw
        } else {
            read_bandwidth(step_bytes as usize)
        };
        let ws_floor = step_bytes / ws_bw * decode as f64;
        let dash = || "-".to_string();
        let (pref, pratio, dref, dratio, dref_pct) = if pr.is_empty() {
            (dash(), dash(), dash(), dash(), dash())
        } else {
            let (pr, dr) = (median(pr), median(dr));
            (
                format!("{:.0} t/s", pf(pr)),
                format!("{:.2}", pr / po),
                format!("{:.1} t/s", dc(dr)),
                format!("{:.2}", dr / d_o),
                format!("{:.0}%", 100.0 * dec_floor / dr),
            )
        };
        // scripts/gpu-verdict reads this row: shape, dtype, params, prompt/decode,
        // "N t/s" prefill, "N t/s" or "-", ratio or "-", "N t/s" decode, then the rest.
        println!(
            "{:<12} {:>5} {:>6.1}M {:>10} {:>9.0} t/s {:>13} {:>6} {:>8.1} t/s {:>8.1} t/s {:>12} {:>6} | {:>6.3} ms {:>5.0}% {:>5.0}% {:>6} {:>9.1} {:>7.0}%",
            name,
            dtype_name,
            params / 1e6,
            format!("{prompt_len}/{decode}"),
            pf(po),
            pref,
            pratio,
            dc(d_o),
            dc(du),
            dref,
            dratio,
            step_floor * 1e3,
            100.0 * dec_floor / d_o,
            100.0 * dec_floor / du,
            dref_pct,
            ws_bw / 1e9,
            100.0 * ws_floor / d_o,
        );
        println!(
            "{:<12} prefill {:.0}% of its floor ({:.1} TFLOP/s); decode step ours {:.3} ms, unfused {:.3} ms, floor {:.3} ms at {:.1} GB/s",
            "",
            100.0 * pf_floor / po,
            flops / 1e12,
            d_o / decode as f64 * 1e3,
            du / decode as f64 * 1e3,
            step_floor * 1e3,
            run_bw / 1e9,
        );
    }
    println!("prefill/decode: tokens/s at batch 1; decode = ours (fused), unfused = ours with the fused path off, ref = candle-transformers' llama, same weights, same run;");
    println!("ratio = ours / candle-transformers tokens/s (>= 1.0: ours is at least as fast);");
    println!("floor% / unf% / ref% = decode floor time / measured time (100% = at the floor);");
    println!("decode floor = (weight bytes + KV bytes read) / memory bandwidth per step;");
    println!("ws flr% = the same bytes at the read rate of a buffer of their size (cache-resident when small).");
    Ok(())
}

/// The per-step cost of decoding on the tiny shape (forward + argmax + copy back),
/// where per-step overhead, not arithmetic or bandwidth, sets the pace.
fn steps(dev: &Device, dtype: DType, n: usize, unfused: bool) -> Result<()> {
    let shape = ModelShape::named("tiny").ok_or("tiny")?;
    let m = Llama::random_as(&shape, 1, dev, dtype)?.with_fused(!unfused);
    let prompt = tokens(512, shape.vocab_size);
    let bs = 16;
    let blocks = (prompt.len() + n + 8).div_ceil(bs) + 1;
    let pool = KvPool::new(&m, blocks, bs)?;
    let table: Vec<u32> = (0..blocks as u32).collect();
    let chunk = |toks: &[u32], start: usize| -> Result<Tensor> {
        Ok(m.forward(
            &pool,
            &[SeqChunk {
                tokens: toks,
                start,
                block_table: &table,
            }],
            false,
        )?)
    };
    let l = chunk(&prompt, 0)?;
    let mut next = Llama::greedy(&l)?[0];
    let mut pos = prompt.len();
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64() / n as f64 * 1e6)
    };
    let step = time(&mut || {
        for _ in 0..n {
            let l = chunk(&[next], pos)?;
            next = Llama::greedy(&l)?[0];
            pos += 1;
        }
        Ok(())
    })?;
    let path = if unfused { "unfused" } else { "fused" };
    println!("tiny {dtype:?} {path} decode step (forward + argmax + to host): {step:.1} us");
    Ok(())
}
