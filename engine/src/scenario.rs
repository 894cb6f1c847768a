//! The seed scenario: a long conversation whose cached prefix another
//! conversation's burst evicts under A (small cache, LRU) but not under B.

use tailscope_model::{ReplayWorkload, Segment, Session, Turn};

use crate::config::EngineConfig;

/// Side A of the seed scenario (also `engine/configs/seed-a.toml`).
pub const SEED_A_TOML: &str = include_str!("../configs/seed-a.toml");
/// Side B of the seed scenario (also `engine/configs/seed-b.toml`).
pub const SEED_B_TOML: &str = include_str!("../configs/seed-b.toml");

/// Id of the conversation under study.
pub const FOCUS: &str = "support-chat";

const MS: i64 = 1_000_000;

fn turn(index: u32, arrival_ms: i64, prompt: Vec<Segment>, output_tokens: u32) -> Turn {
    Turn {
        index,
        trace_id: None,
        arrival_ns: arrival_ms * MS,
        think_ns: if index == 0 { 0 } else { 2_000 * MS },
        prompt,
        output_tokens,
        recorded_ttft_ns: None,
        recorded_e2e_ns: None,
    }
}

/// The workload and configurations A and B.
///
/// `support-chat` has three turns on one growing token stream (1536, 1600 and 1664
/// prompt tokens). Between its first and second turns, `batch-burst` sends six
/// unrelated 512-token prompts. With 160 blocks of 16 tokens (A) the burst needs
/// more blocks than are free and never used, so LRU reuses the conversation's
/// cached blocks and turn 1 re-prefills its whole prompt; with 512 blocks (B)
/// they survive and turn 1 prefills only its 64 new tokens.
pub fn seed() -> (ReplayWorkload, EngineConfig, EngineConfig) {
    let chat = 0x5EED_0001;
    let focus = Session {
        id: FOCUS.into(),
        turns: vec![
            turn(
                0,
                0,
                vec![Segment {
                    stream: chat,
                    len: 1536,
                }],
                16,
            ),
            turn(
                1,
                3_000,
                vec![Segment {
                    stream: chat,
                    len: 1600,
                }],
                16,
            ),
            turn(
                2,
                6_000,
                vec![Segment {
                    stream: chat,
                    len: 1664,
                }],
                16,
            ),
        ],
    };
    let burst = Session {
        id: "batch-burst".into(),
        turns: (0..6u32)
            .map(|i| {
                turn(
                    i,
                    1_000 + 100 * i64::from(i),
                    vec![Segment {
                        stream: 0xB0_0000 + u64::from(i),
                        len: 512,
                    }],
                    8,
                )
            })
            .collect(),
    };
    let workload = ReplayWorkload {
        focus: FOCUS.into(),
        sessions: vec![focus, burst],
    };
    let parse = |text: &str, name: &str| {
        EngineConfig::from_toml_str_named(text, name)
            .unwrap_or_else(|e| panic!("built-in config {name}: {e}"))
    };
    (
        workload,
        parse(SEED_A_TOML, "seed-a.toml"),
        parse(SEED_B_TOML, "seed-b.toml"),
    )
}
