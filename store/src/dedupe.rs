//! Exactly-once spans: the writer drops a span whose (trace_id, span_id) it stored
//! recently, so a request sent again (an SDK's retry after a timeout, or after the
//! collector died between COMMIT and its answer) stores nothing new.
//!
//! The window is the last [`WriterConfig::dedupe_window`](crate::WriterConfig) spans
//! stored, kept as 64-bit fingerprints (16 bytes a span with the ring, ~34 MiB at the
//! default 2,097,152). A fingerprint hit is only a suspect: the writer confirms it
//! against the stored rows of the window (`ingested_ns` at or after the window's
//! oldest commit, which DuckDB's zone maps narrow to the newest row groups), so a
//! fingerprint collision never drops a span. At start the window is seeded from the
//! newest stored spans, so a re-send across a crash and restart is caught too.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use tailscope_model::{SpanId, TraceId};

/// The fingerprint of a span key: the ids' words mixed (splitmix64 finaliser), so
/// ids that are not random (sequential test ids) still spread.
pub(crate) fn fingerprint(t: &TraceId, s: SpanId) -> u64 {
    let w = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let mut h = w(&t.0[..8]) ^ w(&t.0[8..]).rotate_left(21) ^ w(&s.0).rotate_left(43);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Fingerprints are already mixed: hash them as they are.
#[derive(Default)]
pub(crate) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type FpMap = HashMap<u64, u32, BuildHasherDefault<Identity>>;

/// The recent spans, oldest first.
pub(crate) struct Window {
    cap: usize,
    /// fingerprint -> how many spans in the ring have it
    counts: FpMap,
    ring: VecDeque<u64>,
    /// (commit stamp, spans of it still in the ring), oldest first
    commits: VecDeque<(i64, usize)>,
}

impl Window {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            counts: FpMap::default(),
            ring: VecDeque::new(),
            commits: VecDeque::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether a span with this fingerprint may be in the window.
    pub(crate) fn suspect(&self, fp: u64) -> bool {
        self.counts.contains_key(&fp)
    }

    /// The stamp of the oldest commit still in the window.
    pub(crate) fn oldest_stamp(&self) -> Option<i64> {
        self.commits.front().map(|c| c.0)
    }

    /// Records the spans of one commit (stamp `stamp`), forgetting the oldest beyond
    /// the capacity.
    pub(crate) fn push(&mut self, stamp: i64, fps: impl IntoIterator<Item = u64>) {
        if self.cap == 0 {
            return;
        }
        let mut n = 0usize;
        for fp in fps {
            *self.counts.entry(fp).or_insert(0) += 1;
            self.ring.push_back(fp);
            n += 1;
        }
        if n == 0 {
            return;
        }
        match self.commits.back_mut() {
            Some(last) if last.0 == stamp => last.1 += n,
            _ => self.commits.push_back((stamp, n)),
        }
        while self.ring.len() > self.cap {
            let Some(old) = self.ring.pop_front() else {
                break;
            };
            if let Entry::Occupied(mut e) = self.counts.entry(old) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
            if let Some(front) = self.commits.front_mut() {
                front.1 -= 1;
                if front.1 == 0 {
                    self.commits.pop_front();
                }
            }
        }
    }
}

/// Which spans of a commit to keep: `None` keeps all. Spans repeated within the
/// commit itself are dropped after their first; spans whose fingerprint is in the
/// window are dropped when `stored` confirms they are in the store.
pub(crate) struct Plan {
    /// per batch, per span: keep it
    pub(crate) keep: Vec<Option<Vec<bool>>>,
}

/// Decides which spans of `batches` are new. `stored` is asked (once, if any span is
/// a suspect) which of the suspect keys are already stored.
pub(crate) fn plan<'a, E>(
    window: &Window,
    batches: impl Iterator<Item = &'a [tailscope_model::Span]>,
    stored: impl FnOnce(&[(TraceId, SpanId)]) -> Result<HashSet<(TraceId, SpanId)>, E>,
) -> Result<Plan, E> {
    let batches: Vec<&[tailscope_model::Span]> = batches.collect();
    let mut suspects: Vec<(TraceId, SpanId)> = Vec::new();
    for spans in &batches {
        for s in *spans {
            if window.suspect(fingerprint(&s.trace_id, s.span_id)) {
                suspects.push((s.trace_id, s.span_id));
            }
        }
    }
    let found = if suspects.is_empty() {
        HashSet::new()
    } else {
        suspects.sort_unstable();
        suspects.dedup();
        stored(&suspects)?
    };
    let mut seen: HashSet<(TraceId, SpanId)> = HashSet::new();
    let keep = batches
        .iter()
        .map(|spans| {
            let mask: Vec<bool> = spans
                .iter()
                .map(|s| {
                    let key = (s.trace_id, s.span_id);
                    !found.contains(&key) && seen.insert(key)
                })
                .collect();
            mask.contains(&false).then_some(mask)
        })
        .collect();
    Ok(Plan { keep })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> (TraceId, SpanId) {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&(n + 1).to_be_bytes());
        (TraceId(t), SpanId((n + 1).to_be_bytes()))
    }

    #[test]
    fn sequential_ids_get_distinct_fingerprints() {
        let fps: HashSet<u64> = (0..100_000)
            .map(|n| {
                let (t, s) = key(n);
                fingerprint(&t, s)
            })
            .collect();
        assert_eq!(fps.len(), 100_000);
    }

    #[test]
    fn window_forgets_the_oldest_beyond_its_capacity() {
        let mut w = Window::new(3);
        let fp = |n| {
            let (t, s) = key(n);
            fingerprint(&t, s)
        };
        w.push(10, [fp(1), fp(2)]);
        w.push(11, [fp(3)]);
        assert_eq!(w.oldest_stamp(), Some(10));
        assert!(w.suspect(fp(1)));
        w.push(12, [fp(4), fp(5)]);
        assert_eq!(w.len(), 3);
        assert!(!w.suspect(fp(1)) && !w.suspect(fp(2)));
        assert!(w.suspect(fp(3)) && w.suspect(fp(5)));
        // commit 10 left entirely; commit 11 is now the oldest
        assert_eq!(w.oldest_stamp(), Some(11));
    }

    #[test]
    fn a_window_of_zero_remembers_nothing() {
        let mut w = Window::new(0);
        let (t, s) = key(1);
        w.push(1, [fingerprint(&t, s)]);
        assert_eq!(w.len(), 0);
        assert_eq!(w.oldest_stamp(), None);
    }
}
