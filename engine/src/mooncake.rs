//! Import of Mooncake traces (JSON lines: `timestamp` in ms, `input_length`,
//! `output_length`, `hash_ids` of 512-token blocks; equal ids mean equal content).

use serde::Deserialize;
use tailscope_model::{ReplayWorkload, Segment, Session, Turn};

use crate::error::EngineError;

/// Tokens per Mooncake hash block.
pub const MOONCAKE_BLOCK: u32 = 512;

#[derive(Deserialize)]
struct Line {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Token stream of a Mooncake hash id (kept apart from other streams).
pub fn stream_of(hash_id: u64) -> u64 {
    0x4D4F_4F4E_4341_4B45 ^ hash_id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Parses a Mooncake trace. Every request becomes a one-turn conversation
/// `mooncake-<n>` (n from 0 in file order); the focus is `mooncake-0`.
pub fn parse(text: &str) -> Result<ReplayWorkload, EngineError> {
    let mut sessions = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let err = |message: String| EngineError::Mooncake {
            line: i + 1,
            message,
        };
        let l: Line = serde_json::from_str(raw).map_err(|e| err(e.to_string()))?;
        if l.input_length == 0 {
            return Err(err("input_length is 0".into()));
        }
        if !l.timestamp.is_finite() || l.timestamp < 0.0 {
            return Err(err(format!("bad timestamp {}", l.timestamp)));
        }
        let blocks_needed = l.input_length.div_ceil(MOONCAKE_BLOCK) as usize;
        if !l.hash_ids.is_empty() && l.hash_ids.len() != blocks_needed {
            return Err(err(format!(
                "{} hash_ids for input_length {} (expected {blocks_needed} blocks of {MOONCAKE_BLOCK})",
                l.hash_ids.len(),
                l.input_length
            )));
        }
        let n = sessions.len();
        let mut prompt = Vec::with_capacity(blocks_needed);
        let mut left = l.input_length;
        for b in 0..blocks_needed {
            let len = left.min(MOONCAKE_BLOCK);
            left -= len;
            // Without hash_ids the request shares nothing: one private stream.
            let stream = l.hash_ids.get(b).map_or_else(
                || stream_of(u64::MAX - n as u64 * 4096 - b as u64),
                |&h| stream_of(h),
            );
            prompt.push(Segment { stream, len });
        }
        sessions.push(Session {
            id: format!("mooncake-{n}"),
            turns: vec![Turn {
                index: 0,
                trace_id: None,
                arrival_ns: (l.timestamp * 1e6) as i64,
                think_ns: 0,
                prompt,
                output_tokens: l.output_length.max(1),
                recorded_ttft_ns: None,
                recorded_e2e_ns: None,
            }],
        });
    }
    if sessions.is_empty() {
        return Err(EngineError::Mooncake {
            line: 0,
            message: "the trace has no requests".into(),
        });
    }
    Ok(ReplayWorkload {
        focus: "mooncake-0".into(),
        sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_hash_ids_share_tokens() {
        let w = parse(
            "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 5, \"hash_ids\": [1, 2]}\n\
             {\"timestamp\": 250, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [1, 3]}\n",
        )
        .unwrap();
        assert_eq!(w.sessions.len(), 2);
        let a = w.sessions[0].turns[0].prompt_tokens(2048);
        let b = w.sessions[1].turns[0].prompt_tokens(2048);
        assert_eq!(a.len(), 1000);
        assert_eq!(b.len(), 600);
        assert_eq!(a[..512], b[..512]);
        assert_ne!(a[512..600], b[512..600]);
        assert_eq!(w.sessions[1].turns[0].arrival_ns, 250_000_000);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}\nnot json\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse(
            "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 1, \"hash_ids\": [1]}",
        )
        .unwrap_err();
        assert!(e.to_string().contains("hash_ids"), "{e}");
    }
}
