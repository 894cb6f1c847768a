//! Replay input: recorded conversations as sequences of turns, with enough
//! structure to re-create their prefix sharing.
//!
//! A turn's prompt is a list of [`Segment`]s. A segment names a *token stream*
//! and a length; token ids are synthesised deterministically from the stream and
//! the position in it ([`Segment::token`]), so two prompts that share a stream
//! prefix share identical token ids, and the engine's prefix cache sees exactly
//! the sharing the recording had. A multi-turn conversation is one stream that
//! grows turn after turn (the previous prompt, its answer, the new user message);
//! a system prompt shared across conversations is a stream of its own; a Mooncake
//! trace's `hash_ids` become one 512-token segment per hash.

use serde::{Deserialize, Serialize};

/// A run of synthesised tokens: positions `0..len` of the stream `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Segment {
    pub stream: u64,
    pub len: u32,
}

impl Segment {
    /// The token id at `pos` of `stream`, in `0..vocab` (deterministic, well spread).
    pub fn token(stream: u64, pos: u32, vocab: u32) -> u32 {
        // splitmix64 over (stream, pos): cheap, stateless, no visible structure.
        let mut z = stream ^ (u64::from(pos).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % u64::from(vocab.max(1))) as u32
    }

    /// Appends this segment's token ids to `out`.
    pub fn extend_tokens(&self, vocab: u32, out: &mut Vec<u32>) {
        out.extend((0..self.len).map(|p| Self::token(self.stream, p, vocab)));
    }
}

/// One request of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Position in the conversation, from 0.
    pub index: u32,
    /// The recorded trace this turn came from, when it came from the store.
    pub trace_id: Option<String>,
    /// Arrival time relative to the start of the workload (open loop), ns.
    pub arrival_ns: i64,
    /// Time between the previous turn's completion and this arrival (closed loop), ns.
    pub think_ns: i64,
    /// The prompt, as segments; its length is the input token count.
    pub prompt: Vec<Segment>,
    /// Tokens to generate.
    pub output_tokens: u32,
    /// What the recording measured, for side-by-side display (ns).
    pub recorded_ttft_ns: Option<i64>,
    pub recorded_e2e_ns: Option<i64>,
}

impl Turn {
    /// Input token count (sum of the prompt's segments).
    pub fn input_tokens(&self) -> u32 {
        self.prompt.iter().map(|s| s.len).sum()
    }

    /// The prompt's token ids for a vocabulary of `vocab` ids.
    pub fn prompt_tokens(&self, vocab: u32) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.input_tokens() as usize);
        for s in &self.prompt {
            s.extend_tokens(vocab, &mut out);
        }
        out
    }
}

/// A recorded conversation (an agent session or a chat), in turn order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// `gen_ai.conversation.id` (or the Mooncake/other source id).
    pub id: String,
    pub turns: Vec<Turn>,
}

/// What a replay runs: the conversation under study plus the conversations that
/// were active in the same window (contention), all on one time axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayWorkload {
    /// Id of the conversation the report is about (one of `sessions`).
    pub focus: String,
    pub sessions: Vec<Session>,
}

impl ReplayWorkload {
    /// The earliest turn arrival of any session (0 for an empty workload).
    pub fn first_arrival_ns(&self) -> i64 {
        self.sessions
            .iter()
            .flat_map(|s| s.turns.iter().map(|t| t.arrival_ns))
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_stream_prefix_gives_identical_tokens() {
        let t1 = Turn {
            index: 0,
            trace_id: None,
            arrival_ns: 0,
            think_ns: 0,
            prompt: vec![Segment { stream: 7, len: 40 }],
            output_tokens: 4,
            recorded_ttft_ns: None,
            recorded_e2e_ns: None,
        };
        let mut t2 = t1.clone();
        t2.prompt = vec![Segment { stream: 7, len: 90 }];
        let a = t1.prompt_tokens(32_000);
        let b = t2.prompt_tokens(32_000);
        assert_eq!(a.len(), 40);
        assert_eq!(&b[..40], &a[..]);
        assert!(b.iter().all(|&t| t < 32_000));
        let other = Segment { stream: 8, len: 40 };
        let mut c = Vec::new();
        other.extend_tokens(32_000, &mut c);
        assert_ne!(a, c, "different streams give different tokens");
    }
}
