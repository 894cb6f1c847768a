//! engine-bench: prefill and decode tokens/s of our forward against
//! candle-transformers' llama on the same shape and the same (seeded) weights.
//!
//! `cargo run --release -p tailscope-engine --features reference --bin engine-bench [-- --quick]`
//! (`-- --seed-scenario` runs the seed scenario's A/B replay instead; with the
//! `cuda` feature, `-- --device cuda --bandwidth-gbs 3350` measures on the GPU).

use std::collections::HashMap;
use std::time::Instant;

use anyhow_free::Result;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::llama as reference;
use tailscope_engine::model::{random_tensors, KvPool, Llama, SeqChunk};
use tailscope_engine::ModelShape;

mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}

struct Case {
    shape: &'static str,
    prompt: usize,
    decode: usize,
    reps: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    prompt: &[u32],
    decode: usize,
) -> Result<(f64, f64)> {
    let mut cache = reference::Cache::new(true, DType::F32, cfg, dev)?;
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

/// Measured copy bandwidth (bytes/s) and f32 matmul rate (FLOP/s) of this CPU,
/// the denominators of design.md's floors.
fn machine(dev: &Device) -> Result<(f64, f64)> {
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
    let bw = 2.0 * n as f64 / best; // read + write
    let a = Tensor::ones((1024, 1024), DType::F32, dev)?;
    let mut bestm = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let c = a.matmul(&a)?;
        std::hint::black_box(c.sum_all()?.to_scalar::<f32>()?);
        bestm = bestm.min(t.elapsed().as_secs_f64());
    }
    Ok((bw, 2.0 * 1024f64.powi(3) / bestm))
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--seed-scenario") {
        let (workload, cfg_a, cfg_b) = tailscope_engine::scenario::seed();
        let started = Instant::now();
        let opts = tailscope_engine::ReplayOptions::default();
        let report = tailscope_engine::run_ab(&workload, &cfg_a, &cfg_b, &opts, &mut |_| {})?;
        println!("{}", report.to_text());
        println!(
            "seed scenario A/B (3 repeats per side + warm-up) took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let cases = [
        Case {
            shape: "tiny",
            prompt: 512,
            decode: 64,
            reps: if quick { 2 } else { 5 },
        },
        Case {
            shape: "small-100m",
            prompt: 256,
            decode: 16,
            reps: if quick { 1 } else { 3 },
        },
    ];
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let device_name = arg("--device").unwrap_or_else(|| "cpu".into());
    let dev = tailscope_engine::engine::open_device(&device_name)?;
    let (cpu_bw, flops) = machine(&dev)?;
    // On a GPU the host copy bandwidth says nothing: take the card's (GB/s) from
    // --bandwidth-gbs (H100 SXM: 3350).
    let bw = arg("--bandwidth-gbs")
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(cpu_bw, |g| g * 1e9);
    println!(
        "device {device_name}: bandwidth {:.1} GB/s, f32 matmul {:.1} GFLOP/s (1024^3), {} CPU threads",
        bw / 1e9,
        flops / 1e9,
        candle_core::utils::get_num_threads()
    );
    println!(
        "{:<11} {:>7} {:>13} {:>13} {:>6} {:>12} {:>12} {:>6} {:>10} {:>10}",
        "shape",
        "params",
        "prefill ours",
        "prefill ref",
        "ratio",
        "decode ours",
        "decode ref",
        "ratio",
        "pf floor",
        "dec floor"
    );
    for c in cases {
        let shape = ModelShape::named(c.shape).ok_or("unknown shape")?;
        let dir = std::env::temp_dir().join(format!(
            "tailscope-engine-bench-{}-{}",
            c.shape,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let t: HashMap<String, Tensor> = random_tensors(&shape, 1, &Device::Cpu)?;
        candle_core::safetensors::save(&t, dir.join("model.safetensors"))?;
        std::fs::write(dir.join("config.json"), serde_json::to_string(&shape)?)?;
        // Both models load the same file.
        let ours_m = Llama::from_dir(&dir, &dev)?;
        let loaded = candle_core::safetensors::load(dir.join("model.safetensors"), &dev)?;
        let vb = candle_nn::VarBuilder::from_tensors(loaded, DType::F32, &dev);
        let lcfg: reference::LlamaConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
        let rcfg = lcfg.into_config(false);
        let ref_m = reference::Llama::load(vb, &rcfg)?;
        let prompt = tokens(c.prompt, shape.vocab_size);
        // Warm-up, then interleaved repetitions.
        ours(&ours_m, &prompt, 2)?;
        theirs(&dev, &ref_m, &rcfg, &prompt, 2)?;
        let (mut po, mut pr, mut d_o, mut dr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..c.reps {
            let (p, d) = ours(&ours_m, &prompt, c.decode)?;
            po.push(p);
            d_o.push(d);
            let (p, d) = theirs(&dev, &ref_m, &rcfg, &prompt, c.decode)?;
            pr.push(p);
            dr.push(d);
        }
        let pf = |s: f64| c.prompt as f64 / s;
        let dc = |s: f64| c.decode as f64 / s;
        let (po, pr, d_o, dr) = (median(po), median(pr), median(d_o), median(dr));
        // Floors: prefill >= 2 * params * tokens / FLOP/s; decode step >= bytes read / bandwidth.
        let params = shape.params() as f64;
        let pf_floor = 2.0 * params * c.prompt as f64 / flops;
        let kv_read = shape.kv_bytes_per_token() as f64 * (c.prompt as f64 + c.decode as f64 / 2.0);
        let dec_floor = (params * 4.0 + kv_read) / bw * c.decode as f64;
        println!(
            "{:<11} {:>6.1}M {:>9.0} t/s {:>9.0} t/s {:>6.2} {:>8.1} t/s {:>8.1} t/s {:>6.2} {:>9.0}% {:>9.0}%",
            c.shape,
            params / 1e6,
            pf(po),
            pf(pr),
            pr / po,
            dc(d_o),
            dc(dr),
            dr / d_o,
            100.0 * pf_floor / po,
            100.0 * dec_floor / d_o,
        );
        std::fs::remove_dir_all(&dir)?;
    }
    println!("ratio = ours / candle-transformers tokens/s (>= 1.0: ours is at least as fast);");
    println!("floor % = design.md floor time / our measured time (100% = at the floor).");
    Ok(())
}
