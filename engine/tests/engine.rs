#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Engine correctness: paged + prefix-cached + chunked logits against a naive
//! recomputation (also across evictions and preemptions), block accounting, A/B
//! determinism, the seed scenario, configuration errors, speculative decoding
//! (greedy output unchanged, acceptance 1 with the target as its own draft, rejected
//! slots back in both pools, the sampled rejection rule's distribution), and the fused
//! decode path against the unfused one.

use candle_core::{DType, Device};
use tailscope_engine::engine::{Engine, RequestSpec};
use tailscope_engine::model::{KvPool, Llama, SeqChunk};
use tailscope_engine::replay::run_with_model;
use tailscope_engine::{
    run_ab, scenario, BackgroundLoad, Burst, EngineConfig, ModelShape, PolicyKind, ReplayOptions,
    SpecMethod, SpeculativeConfig,
};
use tailscope_model::{ReplayWorkload, Segment, Session, Turn};

/// The device the model tests run on: `TAILSCOPE_TEST_DEVICE` ("cpu" unless set;
/// scripts/gpu-check runs the logits tests with "cuda").
fn device() -> Device {
    let name = std::env::var("TAILSCOPE_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    tailscope_engine::engine::open_device(&name).unwrap()
}

fn tiny() -> Llama {
    Llama::random(&ModelShape::named("tiny").unwrap(), 3, &device()).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tokens(stream: u64, n: u32) -> Vec<u32> {
    let mut v = Vec::new();
    Segment { stream, len: n }.extend_tokens(2048, &mut v);
    v
}

#[test]
fn tiny_shape_has_about_a_million_parameters() {
    let p = ModelShape::named("tiny").unwrap().params();
    assert!((800_000..1_500_000).contains(&p), "{p}");
    let p = ModelShape::named("small-100m").unwrap().params();
    assert!((80_000_000..130_000_000).contains(&p), "{p}");
    assert!(ModelShape::named("llama-3.1-8b").unwrap().params() > 7_000_000_000);
}

#[test]
fn chunked_paged_logits_equal_naive_recomputation() {
    let m = tiny();
    let seq = tokens(11, 45);
    let naive = m.forward_naive(&seq).unwrap().to_vec2::<f32>().unwrap();
    // Scattered, out-of-order blocks; the sequence fed in chunks of 7, 13, 25.
    let pool = KvPool::new(&m, 20, 4).unwrap();
    let table: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 20).collect();
    let mut start = 0;
    for len in [7usize, 13, 25] {
        let chunk = SeqChunk {
            tokens: &seq[start..start + len],
            start,
            block_table: &table,
        };
        let got = m
            .forward(&pool, &[chunk], true)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (i, row) in got.iter().enumerate() {
            let d = max_diff(row, &naive[start + i]);
            assert!(d < 1e-4, "position {}: {d}", start + i);
        }
        start += len;
    }
    // A packed batch of two sequences at different positions, one a decode step.
    let other = tokens(12, 30);
    let naive_other = m.forward_naive(&other).unwrap().to_vec2::<f32>().unwrap();
    // Blocks of its own (the first table holds 3, 10, 17, 4, 11, 18, 5, 12, 19, 6, 13, 0):
    // two sequences of a batch never share a block they write.
    let table2: Vec<u32> = vec![1, 8, 15, 2, 9, 16, 7, 14];
    let pool = KvPool::new(&m, 20, 4).unwrap();
    let first = SeqChunk {
        tokens: &seq[..44],
        start: 0,
        block_table: &table,
    };
    let o1 = SeqChunk {
        tokens: &other[..20],
        start: 0,
        block_table: &table2,
    };
    m.forward(&pool, &[first, o1], false).unwrap();
    let dec = SeqChunk {
        tokens: &seq[44..45],
        start: 44,
        block_table: &table,
    };
    let o2 = SeqChunk {
        tokens: &other[20..30],
        start: 20,
        block_table: &table2,
    };
    let got = m
        .forward(&pool, &[dec, o2], false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(max_diff(&got[0], &naive[44]) < 1e-4);
    assert!(max_diff(&got[1], &naive_other[29]) < 1e-4);
}

/// The fused path (one QKV and one gate/up product, SiLU-mul, residual adds, attention
/// read in place from the paged pool: on the CPU in f32 the kernels of
/// `tailscope_engine::fused`) against the unfused one on the same weights: every
/// logit within 1e-4 (logits here are of magnitude 1-10; f32 sums in another order differ
/// by about 1e-6), and the greedy tokens identical. The shape's gate/up, down and LM-head
/// weights reach the 2 MiB split threshold, so those products are split over candle's
/// pool; 8 decode rows over ~300-token contexts split attention too; a 5-row chunk (a
/// speculative verification) checks the causal rows.
#[test]
fn fused_decode_logits_match_the_unfused_path() {
    let mut shape = ModelShape::named("tiny").unwrap();
    shape.hidden_size = 256;
    shape.intermediate_size = 2048;
    shape.num_hidden_layers = 2;
    shape.num_attention_heads = 4;
    shape.num_key_value_heads = 2;
    let fused = Llama::random(&shape, 5, &device()).unwrap();
    assert!(fused.fused());
    let unfused = fused.clone().with_fused(false);
    let bs = 16;
    let seqs = 8usize;
    let per_seq = 22usize;
    // Sequence i owns blocks i, i + 8, i + 16, ...: scattered slots.
    let tables: Vec<Vec<u32>> = (0..seqs)
        .map(|i| (0..per_seq).map(|b| (b * seqs + i) as u32).collect())
        .collect();
    let prompts: Vec<Vec<u32>> = (0..seqs)
        .map(|i| tokens(40 + i as u64, 290 + i as u32))
        .collect();
    // Each model on its own pool: prefill, 6 batched decode steps, one 5-row chunk.
    let run = |m: &Llama| -> (Vec<Vec<Vec<f32>>>, Vec<Vec<u32>>) {
        let pool = KvPool::new(m, seqs * per_seq, bs).unwrap();
        let mut logits = Vec::new();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); seqs];
        let mut lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
        let mut last = Vec::new();
        for (p, t) in prompts.iter().zip(&tables) {
            let chunk = SeqChunk {
                tokens: p,
                start: 0,
                block_table: t,
            };
            let l = m.forward(&pool, &[chunk], false).unwrap();
            last.push(Llama::greedy(&l).unwrap()[0]);
            logits.push(l.to_vec2::<f32>().unwrap());
        }
        for _ in 0..6 {
            let toks: Vec<[u32; 1]> = last.iter().map(|&t| [t]).collect();
            let chunks: Vec<SeqChunk> = (0..seqs)
                .map(|i| SeqChunk {
                    tokens: &toks[i],
                    start: lens[i],
                    block_table: &tables[i],
                })
                .collect();
            let l = m.forward(&pool, &chunks, false).unwrap();
            for (i, &t) in last.iter().enumerate() {
                out[i].push(t);
                lens[i] += 1;
            }
            last = Llama::greedy(&l).unwrap();
            logits.push(l.to_vec2::<f32>().unwrap());
        }
        let verify = [last[0], 7, 99, 1234, 5];
        let chunk = SeqChunk {
            tokens: &verify,
            start: lens[0],
            block_table: &tables[0],
        };
        let l = m.forward(&pool, &[chunk], true).unwrap();
        out[0].extend(Llama::greedy(&l).unwrap());
        logits.push(l.to_vec2::<f32>().unwrap());
        (logits, out)
    };
    let (lf, tf) = run(&fused);
    let (lu, tu) = run(&unfused);
    assert_eq!(
        tf, tu,
        "greedy tokens differ between the fused and unfused paths"
    );
    let mut worst = 0f32;
    for (a, b) in lf.iter().zip(&lu) {
        for (ra, rb) in a.iter().zip(b) {
            worst = worst.max(max_diff(ra, rb));
        }
    }
    assert!(worst < 1e-4, "fused vs unfused logits differ by {worst}");
    // The comparison can fail: a perturbed model's logits are far outside the bound.
    let other = fused.perturbed(0.01, None, 1).unwrap();
    let (lo, _) = run(&other);
    assert!(max_diff(&lo[0][0], &lf[0][0]) > 1e-3);
}

#[test]
fn half_precision_paged_logits_track_naive_and_f32() {
    let shape = ModelShape::named("tiny").unwrap();
    let f32_model = tiny();
    let seq = tokens(11, 45);
    let reference = f32_model
        .forward_naive(&seq)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let scale = reference
        .iter()
        .flatten()
        .fold(0.0f32, |m, x| m.max(x.abs()));
    for dtype in [DType::BF16, DType::F16] {
        let m = Llama::random_as(&shape, 3, &device(), dtype).unwrap();
        assert_eq!(m.dtype(), dtype);
        let naive = m.forward_naive(&seq).unwrap().to_vec2::<f32>().unwrap();
        let pool = KvPool::new(&m, 20, 4).unwrap();
        let table: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 20).collect();
        let mut start = 0;
        let mut worst_paged = 0.0f32;
        let mut worst_f32 = 0.0f32;
        for len in [7usize, 13, 25] {
            let chunk = SeqChunk {
                tokens: &seq[start..start + len],
                start,
                block_table: &table,
            };
            let got = m
                .forward(&pool, &[chunk], true)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (i, row) in got.iter().enumerate() {
                worst_paged = worst_paged.max(max_diff(row, &naive[start + i]));
                worst_f32 = worst_f32.max(max_diff(row, &reference[start + i]));
            }
            start += len;
        }
        println!(
            "{dtype:?}: paged vs naive {worst_paged:.2e}, vs f32 {worst_f32:.2e} (logit scale {scale:.2})"
        );
        // Half precision rounds differently along the two paths: bounded, relative
        // to the logits' range (about 3 significant bits for bf16).
        assert!(
            worst_paged < 0.05 * scale,
            "{dtype:?}: paged vs naive {worst_paged} (scale {scale})"
        );
        assert!(
            worst_f32 < 0.1 * scale,
            "{dtype:?}: half vs f32 {worst_f32} (scale {scale})"
        );
    }
}

fn cfg(capacity: usize, policy: PolicyKind, budget: usize, chunked: bool) -> EngineConfig {
    EngineConfig {
        block_size: 4,
        cache_capacity_blocks: capacity,
        policy,
        max_num_batched_tokens: budget,
        max_num_seqs: 4,
        chunked_prefill: chunked,
        ..EngineConfig::default()
    }
}

/// Requests sharing a system prompt, arriving together, on a pool too small for all.
fn run_engine(c: &EngineConfig) -> (Engine, Vec<usize>) {
    let mut e = Engine::new(c, tiny()).unwrap();
    e.check_logits = Some(0.0);
    let mut ids = Vec::new();
    for i in 0..6u64 {
        let mut prompt = tokens(100, 24);
        prompt.extend(tokens(200 + i % 3, 10 + i as u32));
        ids.push(
            e.add_request(RequestSpec {
                prompt,
                max_output: 6,
                arrival_ns: 0,
            })
            .unwrap(),
        );
    }
    let mut steps = 0;
    while e.has_work() {
        e.step().unwrap();
        steps += 1;
        assert!(steps < 10_000);
        // Late arrivals hit a cache that has seen evictions.
        if steps == 12 {
            let mut prompt = tokens(100, 24);
            prompt.extend(tokens(200, 13));
            ids.push(
                e.add_request(RequestSpec {
                    prompt,
                    max_output: 4,
                    arrival_ns: e.clock_ns(),
                })
                .unwrap(),
            );
        }
    }
    (e, ids)
}

#[test]
fn engine_logits_match_naive_through_evictions_and_preemptions() {
    for (c, expect_preempt) in [
        (cfg(16, PolicyKind::Lru, 16, true), true),
        (cfg(16, PolicyKind::Fifo, 64, false), true),
        (cfg(28, PolicyKind::Lru, 9, true), false),
        (cfg(16, PolicyKind::None, 16, true), true),
    ] {
        let (e, ids) = run_engine(&c);
        let worst = e.check_logits.unwrap();
        println!("{:?}: largest logits difference {worst:.2e}", c.policy);
        assert!(worst < 1e-4, "{:?}: logits differ by {worst}", c.policy);
        let preemptions: u32 = ids.iter().map(|&i| e.outcome(i).preemptions).sum();
        if expect_preempt {
            assert!(preemptions > 0, "{c:?} should preempt");
        }
        if c.policy == PolicyKind::None {
            assert!(e.evictions.is_empty());
            assert!(ids.iter().all(|&i| e.outcome(i).prefix_hit_tokens == 0));
        } else {
            // The tight pools also evict cached blocks.
            assert!(
                !expect_preempt || !e.evictions.is_empty(),
                "{c:?} should evict"
            );
            assert!(
                ids.iter().any(|&i| e.outcome(i).prefix_hit_tokens > 0),
                "{c:?} should hit the prefix cache"
            );
        }
        assert!(ids.iter().all(|&i| e.is_finished(i)));
        assert_eq!(e.pool().total_refs(), 0, "ref counts return to zero");
        assert_eq!(e.pool().num_free(), e.pool().num_blocks());
    }
}

#[test]
fn greedy_outputs_do_not_depend_on_the_configuration() {
    let outputs = |c: &EngineConfig| {
        let (e, ids) = run_engine(c);
        ids.iter()
            .map(|&i| e.outcome(i).output.clone())
            .collect::<Vec<_>>()
    };
    let a = outputs(&cfg(24, PolicyKind::Lru, 16, true));
    let b = outputs(&cfg(200, PolicyKind::Fifo, 512, false));
    assert_eq!(a, b);
    let naive = tiny();
    // And they are the greedy continuation of a naive recomputation.
    let mut prompt = tokens(100, 24);
    prompt.extend(tokens(200, 10));
    let mut seq = prompt.clone();
    for _ in 0..6 {
        let l = naive.forward_naive(&seq).unwrap();
        let next = Llama::greedy(&l).unwrap();
        seq.push(*next.last().unwrap());
    }
    assert_eq!(a[0], seq[prompt.len()..]);
}

#[test]
fn seed_scenario_evicts_the_focus_prefix_under_a_only() {
    let (w, a, b) = scenario::seed();
    let opts = ReplayOptions {
        repeats: 2,
        ..ReplayOptions::default()
    };
    let mut ticks = 0;
    let r = run_ab(&w, &a, &b, &opts, &mut |_| ticks += 1).unwrap();
    assert!(ticks > 0);
    assert!(r.outputs_identical);
    assert_eq!(r.runs_a.len(), 2);
    for run in r.runs_a.iter().chain(&r.runs_b) {
        assert_eq!(run.leaked_refs, 0);
    }
    let t1 = &r.focus_turns[1];
    let hits = t1
        .metrics
        .iter()
        .find(|m| m.metric == "prefix_hit_tokens")
        .unwrap();
    assert!(hits.a_mean.abs() < 0.5, "A lost the whole cached prefix");
    assert!((hits.b_mean - 1536.0).abs() < 0.5, "B kept it");
    assert!(!t1.evicted_before_a.is_empty());
    assert!(t1
        .evicted_before_a
        .iter()
        .all(|e| e.by_session == "batch-burst"));
    assert!(t1.evicted_before_b.is_empty());
    assert!(t1.explanation.as_deref().unwrap().contains("batch-burst"));
    // The work behind the TTFT jump (timings themselves are not asserted here).
    let pf = t1
        .metrics
        .iter()
        .find(|m| m.metric == "prefill_tokens")
        .unwrap();
    assert!(
        (pf.a_mean - 1600.0).abs() < 0.5 && (pf.b_mean - 64.0).abs() < 0.5,
        "{pf:?}"
    );
    let text = r.to_text();
    assert!(
        text.contains("support-chat") && text.contains("batch-burst"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["runs_a"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "EVICTED_BLOCK"));
}

/// A conversation of two turns (64 then 80 tokens, blocks of 4) and a `[background]`
/// burst of 64 tokens between them. With 24 blocks the burst's 16 allocations take the
/// 7 never-used blocks, turn 0's freed decode block, then 8 of its 16 cached prompt
/// blocks, tail first: turn 1 finds exactly 8 blocks (`capacity - kept` allocations evict
/// down to `kept`). With 48 blocks nothing of the conversation is evicted.
#[test]
fn background_burst_evicts_an_idle_prefix_down_to_what_lru_keeps() {
    let turn = |i: u32, at_ms: i64, len: u32| Turn {
        index: i,
        trace_id: None,
        arrival_ns: at_ms * 1_000_000,
        think_ns: 0,
        prompt: vec![Segment { stream: 9, len }],
        output_tokens: 2,
        recorded_ttft_ns: None,
        recorded_e2e_ns: None,
    };
    let w = ReplayWorkload {
        focus: "chat".into(),
        sessions: vec![Session {
            id: "chat".into(),
            turns: vec![turn(0, 0, 64), turn(1, 1_000, 80)],
        }],
    };
    let load = BackgroundLoad {
        rate_per_s: 0.0,
        prompt_tokens: 16,
        output_tokens: 1,
        warmup_s: 0.0,
        bursts: vec![Burst {
            at_s: 0.5,
            tokens: 64,
        }],
    };
    let with = |capacity: usize| EngineConfig {
        background: Some(load.clone()),
        ..cfg(capacity, PolicyKind::Lru, 512, true)
    };
    let opts = ReplayOptions::default();
    let run = |c: &EngineConfig| {
        run_with_model(&w, c, tiny(), &opts, "A", 0, false, &mut |_| {})
            .unwrap()
            .0
    };
    let small = run(&with(24));
    let focus = |r: &tailscope_engine::RunReport, t: u32| {
        r.turns
            .iter()
            .find(|x| x.session == "chat" && x.turn == t)
            .unwrap()
            .clone()
    };
    assert_eq!(
        small
            .turns
            .iter()
            .filter(|t| t.session == BackgroundLoad::SESSION)
            .count(),
        4,
        "64 tokens in requests of 16"
    );
    assert_eq!(focus(&small, 1).prefix_hit_tokens, 8 * 4);
    let lost: Vec<_> = small
        .evictions
        .iter()
        .filter(|e| e.owner_session.as_deref() == Some("chat"))
        .collect();
    assert_eq!(lost.len(), 8, "{lost:?}");
    assert!(lost.iter().all(|e| e.by_session == BackgroundLoad::SESSION));
    assert_eq!(small.leaked_refs, 0);
    let big = run(&with(48));
    assert_eq!(focus(&big, 1).prefix_hit_tokens, 16 * 4);
    assert!(big
        .evictions
        .iter()
        .all(|e| e.owner_session.as_deref() != Some("chat")));
    // The same load without the burst: nothing is evicted at 24 blocks either.
    let calm = run(&EngineConfig {
        background: Some(BackgroundLoad {
            bursts: Vec::new(),
            ..load.clone()
        }),
        ..cfg(24, PolicyKind::Lru, 512, true)
    });
    assert_eq!(focus(&calm, 1).prefix_hit_tokens, 16 * 4);
}

/// `to_toml` writes every field; reading it back gives the same configuration, and a
/// `[background]` with a bad field is refused by name.
#[test]
fn config_to_toml_reads_back_equal() {
    let mut c = EngineConfig::from_toml_str(scenario::SEED_A_TOML).unwrap();
    c.temperature = 0.5;
    c.speculative = Some(SpeculativeConfig {
        draft_layers: Some(1),
        draft_seed: Some(11),
        ..SpeculativeConfig::self_noised(3, 0.125)
    });
    c.background = Some(BackgroundLoad {
        rate_per_s: 0.5,
        prompt_tokens: 32,
        output_tokens: 2,
        warmup_s: 1.5,
        bursts: vec![
            Burst {
                at_s: 0.25,
                tokens: 100,
            },
            Burst {
                at_s: 3.0,
                tokens: 7,
            },
        ],
    });
    let text = c.to_toml();
    assert_eq!(EngineConfig::from_toml_str(&text).unwrap(), c, "{text}");
    c.model_path = Some("/tmp/a \"quoted\" dir".into());
    assert_eq!(EngineConfig::from_toml_str(&c.to_toml()).unwrap(), c);
    let bad = format!(
        "{}\n[background]\nprompt_tokens = 0\n",
        scenario::SEED_A_TOML
    );
    let e = EngineConfig::from_toml_str(&bad).unwrap_err().to_string();
    assert!(e.contains("background.prompt_tokens"), "{e}");
}

#[test]
fn closed_loop_waits_for_the_previous_turn() {
    let turn = |i: u32, len: u32| Turn {
        index: i,
        trace_id: None,
        arrival_ns: 0,
        think_ns: 5_000_000_000,
        prompt: vec![Segment { stream: 1, len }],
        output_tokens: 3,
        recorded_ttft_ns: None,
        recorded_e2e_ns: None,
    };
    let w = ReplayWorkload {
        focus: "c".into(),
        sessions: vec![Session {
            id: "c".into(),
            turns: vec![turn(0, 40), turn(1, 50)],
        }],
    };
    let c = cfg(64, PolicyKind::Lru, 64, true);
    let opts = ReplayOptions {
        arrival: tailscope_engine::Arrival::ClosedLoop,
        ..ReplayOptions::default()
    };
    let (r, worst) = run_with_model(&w, &c, tiny(), &opts, "A", 0, true, &mut |_| {}).unwrap();
    assert!(worst.unwrap() < 1e-4);
    let end0 = r.turns[0].arrival_ns + r.turns[0].e2e_ns;
    assert_eq!(r.turns[1].arrival_ns, end0 + 5_000_000_000);
    assert_eq!(r.turns[1].prefix_hit_tokens, 40);
}

#[test]
fn mooncake_trace_replays() {
    let text = "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 2, \"hash_ids\": [1, 2]}\n\
                {\"timestamp\": 10, \"input_length\": 700, \"output_length\": 2, \"hash_ids\": [1, 3]}\n";
    let w = tailscope_engine::mooncake::parse(text).unwrap();
    let c = EngineConfig {
        block_size: 16,
        cache_capacity_blocks: 128,
        ..EngineConfig::default()
    };
    let opts = ReplayOptions::default();
    let (r, _) = run_with_model(&w, &c, tiny(), &opts, "A", 0, false, &mut |_| {}).unwrap();
    assert_eq!(r.turns.len(), 2);
    assert_eq!(
        r.turns[1].prefix_hit_tokens, 512,
        "the shared 512-token hash block is reused"
    );
}

#[test]
fn config_errors_name_the_file_and_field() {
    let dir = std::env::temp_dir().join(format!("tailscope-engine-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(&p, "model = \"tiny\"\npolicy = \"random\"\n").unwrap();
    let e = EngineConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("bad.toml") && e.contains("policy"), "{e}");
    std::fs::write(&p, "model = \"huge\"\n").unwrap();
    let e = EngineConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("bad.toml") && e.contains("`model`"), "{e}");
    std::fs::write(&p, "model = \"tiny\"\nblock_size = 0\n").unwrap();
    let e = EngineConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("block_size"), "{e}");
    let e = EngineConfig::from_file(dir.join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.toml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let (_, a, b) = scenario::seed();
    assert_eq!(
        EngineConfig::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/seed-a.toml"))
            .unwrap(),
        a
    );
    assert_eq!(
        EngineConfig::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/seed-b.toml"))
            .unwrap(),
        b
    );
}

#[test]
fn weights_round_trip_through_a_hugging_face_directory() {
    let shape = ModelShape::named("tiny").unwrap();
    let dir = std::env::temp_dir().join(format!("tailscope-engine-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = tailscope_engine::model::random_tensors(&shape, 3, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&shape).unwrap(),
    )
    .unwrap();
    let c = EngineConfig {
        model: None,
        model_path: Some(dir.clone()),
        ..EngineConfig::default()
    };
    let loaded = tailscope_engine::engine::load_model(&c).unwrap();
    let seq = tokens(5, 9);
    let a = loaded
        .forward_naive(&seq)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let b = tiny()
        .forward_naive(&seq)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn llama3_rope_scaling_keeps_high_and_divides_low_frequencies() {
    let s = ModelShape::named("llama-3.2-1b").unwrap();
    let r = s.rope_scaling.as_ref().unwrap();
    assert!(
        (r.adjust(1.0) - 1.0).abs() < 1e-12,
        "short wavelengths unchanged"
    );
    let low = 2.0 * std::f64::consts::PI / 100_000.0;
    assert!(
        (r.adjust(low) - low / 32.0).abs() < 1e-15,
        "long wavelengths divided by the factor"
    );
    let mid = 2.0 * std::f64::consts::PI / 4096.0;
    assert!(r.adjust(mid) < mid && r.adjust(mid) > mid / 32.0);
}

#[test]
fn scheduler_respects_budgets_and_sequence_limit() {
    use tailscope_engine::EventKind;
    let run = |c: &EngineConfig| {
        let mut e = Engine::new(c, tiny()).unwrap();
        for i in 0..3u64 {
            let prompt = tokens(300 + i, 30);
            e.add_request(RequestSpec {
                prompt,
                max_output: 3,
                arrival_ns: 0,
            })
            .unwrap();
        }
        while e.has_work() {
            e.step().unwrap();
        }
        e.events.clone()
    };
    // Chunked: no step computes more than the token budget for one request.
    let chunked = EngineConfig {
        max_num_seqs: 1,
        ..cfg(64, PolicyKind::Lru, 8, true)
    };
    let ev = run(&chunked);
    let sched: Vec<usize> = ev
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Scheduled { new_tokens, .. } => Some(new_tokens),
            _ => None,
        })
        .collect();
    assert_eq!(
        sched,
        vec![8, 8, 8],
        "admission chunks are capped by the budget"
    );
    // One sequence at a time: each request is admitted after the previous finished.
    let order: Vec<(usize, bool)> = ev
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Scheduled { .. } => Some((e.request, true)),
            EventKind::Finished => Some((e.request, false)),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        vec![
            (0, true),
            (0, false),
            (1, true),
            (1, false),
            (2, true),
            (2, false)
        ]
    );
    // Not chunked: the whole prompt in one step, even over the budget when alone.
    let whole = cfg(64, PolicyKind::Lru, 8, false);
    let ev = run(&whole);
    assert!(ev
        .iter()
        .any(|e| matches!(e.kind, EventKind::Scheduled { new_tokens: 30, .. })));
    assert!(!ev
        .iter()
        .any(|e| matches!(e.kind, EventKind::Scheduled { new_tokens, .. } if new_tokens < 30)));
}

/// `c` with speculative decoding: a self-noised draft of relative noise `noise`.
fn speculative(c: &EngineConfig, k: usize, noise: f64) -> EngineConfig {
    EngineConfig {
        speculative: Some(SpeculativeConfig::self_noised(k, noise)),
        ..c.clone()
    }
}

/// Five requests (two sharing a prefix, one arriving late) with 20 output tokens each;
/// after every step, checks that each unfinished request holds exactly the KV blocks
/// of the positions it has computed, in the target's pool and in the draft's (a
/// rejected proposal's slots are not kept). Returns the engine and the outputs.
fn run_spec(c: &EngineConfig) -> (Engine, Vec<Vec<u32>>) {
    let mut e = Engine::new(c, tiny()).unwrap();
    e.check_logits = Some(0.0);
    let bs = c.block_size;
    let add = |e: &mut Engine, ids: &mut Vec<usize>, i: u64| {
        let mut prompt = tokens(100 + i % 2, 21);
        prompt.extend(tokens(400 + i, 5 + i as u32));
        ids.push(
            e.add_request(RequestSpec {
                prompt,
                max_output: 20,
                arrival_ns: e.clock_ns(),
            })
            .unwrap(),
        );
    };
    let mut ids = Vec::new();
    for i in 0..4 {
        add(&mut e, &mut ids, i);
    }
    let mut steps = 0;
    while e.has_work() {
        e.step().unwrap();
        steps += 1;
        assert!(steps < 10_000);
        if steps == 5 {
            add(&mut e, &mut ids, 4);
        }
        let mut held = 0;
        let mut draft_held = 0;
        for &id in &ids {
            if e.is_finished(id) {
                continue;
            }
            let (computed, blocks, draft_computed, draft_blocks) = e.kv_state(id);
            assert_eq!(blocks, computed.div_ceil(bs), "request {id}, step {steps}");
            assert_eq!(
                draft_blocks,
                draft_computed.div_ceil(bs),
                "request {id}, step {steps}: the draft keeps rejected slots"
            );
            held += blocks;
            draft_held += draft_blocks;
        }
        if let Some(d) = e.draft_pool() {
            assert_eq!(d.num_blocks() - d.num_free(), draft_held);
        }
        if c.policy == PolicyKind::None {
            assert_eq!(e.pool().num_blocks() - e.pool().num_free(), held);
        }
    }
    assert!(ids.iter().all(|&i| e.is_finished(i)));
    let worst = e.check_logits.unwrap();
    assert!(worst < 1e-4, "verification logits differ by {worst}");
    let out = ids.iter().map(|&i| e.outcome(i).output.clone()).collect();
    (e, out)
}

#[test]
fn speculative_greedy_output_equals_plain_greedy() {
    for base in [
        cfg(64, PolicyKind::Lru, 64, true),
        cfg(24, PolicyKind::Lru, 16, true), // preemptions and evictions on the way
        cfg(64, PolicyKind::None, 9, false),
    ] {
        let (_, plain) = run_spec(&base);
        assert!(plain.iter().all(|o| o.len() == 20));
        for (k, noise) in [(1, 0.2), (3, 0.1), (5, 0.5)] {
            let (e, spec) = run_spec(&speculative(&base, k, noise));
            let st = &e.spec_stats;
            println!(
                "k={k} noise={noise}: acceptance {:.2}, mean acceptance length {:.2}",
                st.draft_acceptance_rate(),
                st.mean_acceptance_length()
            );
            assert!(st.num_draft_tokens > 0);
            assert!(
                st.num_accepted_tokens < st.num_draft_tokens,
                "k={k} noise={noise}: some proposals should be rejected"
            );
            assert_eq!(spec, plain, "k={k} noise={noise} changed the greedy output");
        }
        // Prompt lookup proposes without a model; same output.
        let ngram = EngineConfig {
            speculative: Some(SpeculativeConfig {
                method: SpecMethod::Ngram,
                ..SpeculativeConfig::self_noised(4, 0.0)
            }),
            ..base.clone()
        };
        let (e, spec) = run_spec(&ngram);
        assert!(e.spec_stats.num_draft_tokens > 0);
        assert_eq!(spec, plain, "prompt lookup changed the greedy output");
    }
}

#[test]
#[allow(clippy::float_cmp)] // exactly 1.0 is the claim
fn speculative_acceptance_is_one_when_the_draft_is_the_target() {
    let base = cfg(64, PolicyKind::Lru, 64, true);
    let (e, _) = run_spec(&speculative(&base, 4, 0.0));
    let st = &e.spec_stats;
    assert!(st.num_draft_tokens > 50, "{st:?}");
    assert_eq!(st.num_accepted_tokens, st.num_draft_tokens, "{st:?}");
    assert_eq!(st.draft_acceptance_rate(), 1.0);
    // Every step accepts all k proposals (k + 1 tokens) except where fewer were left.
    assert!(st.mean_acceptance_length() > 4.0, "{st:?}");
    // Noise lowers it: acceptance falls as the noise grows.
    let rate = |noise| {
        run_spec(&speculative(&base, 4, noise))
            .0
            .spec_stats
            .draft_acceptance_rate()
    };
    let (low, high) = (rate(0.05), rate(1.0));
    println!("acceptance: noise 0.05 {low:.2}, noise 1.0 {high:.2}");
    assert!(low < 1.0 && high < low, "{low} {high}");
}

#[test]
fn rejected_speculative_slots_return_to_the_pool() {
    // run_spec checks the per-step accounting; here the pools after runs with
    // rejections, with and without preemption, against a run without speculation.
    for base in [
        cfg(64, PolicyKind::None, 64, true),
        cfg(24, PolicyKind::Lru, 16, true),
    ] {
        let (plain, _) = run_spec(&base);
        let free_plain = plain.pool().num_free();
        for temperature in [0.0, 0.8] {
            let c = EngineConfig {
                temperature,
                ..speculative(&base, 4, 0.3)
            };
            let (e, _) = run_spec(&c);
            let st = &e.spec_stats;
            assert!(
                st.num_accepted_tokens < st.num_draft_tokens,
                "rejections expected: {st:?}"
            );
            assert_eq!(e.pool().num_free(), free_plain);
            assert_eq!(e.pool().num_free(), e.pool().num_blocks());
            assert_eq!(e.pool().total_refs(), 0);
            let d = e.draft_pool().unwrap();
            assert_eq!(d.num_free(), d.num_blocks());
            assert_eq!(d.total_refs(), 0);
        }
    }
}

#[test]
fn speculative_section_parses_and_errors_name_the_field() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/speculative.toml");
    let c = EngineConfig::from_file(path).unwrap();
    let sp = c.speculative.as_ref().unwrap();
    assert_eq!(
        (sp.method, sp.draft.as_str(), sp.k),
        (SpecMethod::Draft, "self-noised", 4)
    );
    assert!(c
        .summary()
        .contains("speculative=[draft=self-noised noise=0.2 k=4]"));
    let text = std::fs::read_to_string(path).unwrap();
    for (from, to, field) in [
        ("k = 4", "k = 0", "speculative.k"),
        ("noise = 0.2", "noise = -1.0", "speculative.noise"),
        (
            "draft = \"self-noised\"",
            "draft = \"no-such\"",
            "speculative.draft",
        ),
        ("temperature = 0.0", "temperature = -1.0", "temperature"),
    ] {
        let bad = text.replace(from, to);
        let err = EngineConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains(&format!("`{field}`")), "{err}");
    }
    let unknown = text.replace("k = 4", "kk = 4");
    assert!(EngineConfig::from_toml_str(&unknown).is_err());
    // A draft whose vocabulary differs from the target's is refused when loaded.
    let c = EngineConfig {
        speculative: Some(SpeculativeConfig::self_noised(2, 0.0)),
        ..EngineConfig::default()
    };
    let other = ModelShape {
        vocab_size: 1000,
        ..ModelShape::named("tiny").unwrap()
    };
    let draft = Llama::random(&other, 1, &device()).unwrap();
    let err = Engine::with_draft(&c, tiny(), Some(draft))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("vocabulary"), "{err}");
}

#[test]
fn replay_ab_reports_speculation_with_vllm_names() {
    let turn = |stream: u64| Turn {
        index: 0,
        trace_id: None,
        arrival_ns: 0,
        think_ns: 0,
        prompt: vec![Segment { stream, len: 30 }],
        output_tokens: 12,
        recorded_ttft_ns: None,
        recorded_e2e_ns: None,
    };
    let workload = ReplayWorkload {
        focus: "s0".into(),
        sessions: (0..3)
            .map(|i| Session {
                id: format!("s{i}"),
                turns: vec![turn(700 + i)],
            })
            .collect(),
    };
    let a = cfg(64, PolicyKind::Lru, 64, true);
    let b = speculative(&a, 3, 0.2);
    let opts = ReplayOptions {
        repeats: 2,
        ..ReplayOptions::default()
    };
    let r = run_ab(&workload, &a, &b, &opts, &mut |_| {}).unwrap();
    assert!(
        r.outputs_identical,
        "greedy output changed under speculation"
    );
    let metric = |name: &str| r.overall.iter().find(|c| c.metric == name).unwrap();
    let rate = metric("spec_decode_draft_acceptance_rate");
    assert!(rate.a_mean.abs() < f64::EPSILON, "A has no speculation");
    assert!(rate.b_mean > 0.0 && rate.b_mean <= 1.0, "{rate:?}");
    assert!(metric("spec_decode_mean_acceptance_length").b_mean >= 1.0);
    assert!(metric("spec_decode_num_draft_tokens").b_mean > 0.0);
    let st = r.runs_b[0].spec_decode.as_ref().unwrap();
    assert!(st.num_accepted_tokens <= st.num_draft_tokens);
    assert!(r.runs_a[0].spec_decode.is_none());
    for name in ["tpot_p50_ms", "itl_p99_ms", "ttft_p50_ms"] {
        metric(name);
    }
    let text = r.to_text();
    assert!(text.contains("spec_decode_draft_acceptance_rate"), "{text}");
    assert!(
        text.contains("speculative=[draft=self-noised noise=0.2 k=3]"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["runs_b"][0]["spec_decode"]["num_accepted_tokens_per_pos"].is_array());
    assert_eq!(json["b"]["speculative"]["k"], 3);
    // Without speculation on either side the text report has no spec_decode rows.
    let plain = run_ab(&workload, &a, &a, &opts, &mut |_| {}).unwrap();
    assert!(!plain.to_text().contains("spec_decode_"));
}

#[test]
fn sampled_speculation_keeps_the_target_distribution() {
    use tailscope_engine::spec::{sample, verify_proposal, Rng};
    // The rejection rule: proposal drawn from q, accepted with min(1, p/q), else a
    // draw from max(0, p - q) normalised; the emitted token is distributed as p.
    let p = [0.5f32, 0.3, 0.15, 0.05, 0.0];
    let q = [0.1f32, 0.2, 0.3, 0.2, 0.2];
    let mut rng = Rng::new(42);
    let draws = 200_000;
    let mut count = [0usize; 5];
    let mut accepted = 0;
    for _ in 0..draws {
        let d = sample(&q, rng.uniform());
        let t = match verify_proposal(&p, Some(&q), d, &mut rng) {
            None => {
                accepted += 1;
                d
            }
            Some(t) => t,
        };
        count[t as usize] += 1;
    }
    for (i, &c) in count.iter().enumerate() {
        let f = c as f64 / f64::from(draws);
        assert!(
            (f - f64::from(p[i])).abs() < 0.005,
            "token {i}: {f} vs {}",
            p[i]
        );
    }
    // Acceptance is sum(min(p, q)) = 0.1 + 0.2 + 0.15 + 0.05 = 0.5.
    let rate = f64::from(accepted) / f64::from(draws);
    assert!((rate - 0.5).abs() < 0.005, "{rate}");
    // A draft equal to the target is always accepted.
    for d in 0..4 {
        assert_eq!(verify_proposal(&p, Some(&p), d, &mut rng), None);
    }
}

/// `scripts/gpu-verdict`, the checking logic of `scripts/gpu-check`, as a CPU dry run over
/// a recorded result folder: it passes the recorded H200 run and fails, naming the check,
/// on a failed step, a missing NVML series, a bench figure under half of its baseline, and
/// a deliberately broken expectation (a baseline twice too high).
#[test]
fn gpu_verdict_fails_on_broken_expectations() {
    use std::path::Path;
    use std::process::Command;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fixture = root.join("engine/tests/data/gpu-check");
    let baselines = root.join("engine/gpu-baselines.tsv");
    let verdict = |dir: &Path, baselines: &Path| {
        let o = Command::new("python3")
            .arg(root.join("scripts/gpu-verdict"))
            .arg(dir)
            .arg("--baselines")
            .arg(baselines)
            .output()
            .expect("python3 runs scripts/gpu-verdict");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, out) = verdict(&fixture, &baselines);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("all checks passed (card H200)"), "{out}");
    assert!(
        out.contains("ok   bench llama-3.1-8b bf16 decode 106 tok/s"),
        "{out}"
    );
    // broken copies of the recorded folder: (name, file, text, replaced by, the failure)
    let cases = [
        (
            "step",
            "checks.tsv",
            "logits-equality\t0",
            "logits-equality\t101",
            "FAIL step logits-equality: exit 101",
        ),
        (
            "nvml",
            "nvml.json",
            "\"nvml.clock.sm\"",
            "\"nvml.clock.mem\"",
            "FAIL NVML series nvml.clock.sm: missing",
        ),
        (
            "bench",
            "gpu-check.log",
            "   106.4 t/s",
            "    40.0 t/s",
            "FAIL bench llama-3.1-8b bf16 decode 40 tok/s",
        ),
    ];
    for (name, file, from, to, want) in cases {
        let dir = std::env::temp_dir().join(format!(
            "tailscope-gpu-verdict-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["checks.tsv", "gpu-check.log", "nvml.json"] {
            std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
        }
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains(from), "{from:?} in {file}");
        std::fs::write(dir.join(file), text.replacen(from, to, 1)).unwrap();
        let (code, out) = verdict(&dir, &baselines);
        assert_eq!(code, Some(1), "{name}: {out}");
        assert!(out.contains(want), "{name}: {out}");
        assert!(out.contains("FAILED: 1 check(s)"), "{name}: {out}");
        std::fs::remove_dir_all(&dir).ok();
    }
    // a deliberately broken expectation: the recorded run against a baseline twice too high
    let high = std::env::temp_dir().join(format!(
        "tailscope-gpu-baselines-{}.tsv",
        std::process::id()
    ));
    std::fs::write(&high, "H200\tsmall-100m\tbf16\t129000\t800\n").unwrap();
    let (code, out) = verdict(&fixture, &high);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL bench small-100m bf16 decode 351 tok/s (baseline 800"),
        "{out}"
    );
    std::fs::remove_file(&high).ok();
}
