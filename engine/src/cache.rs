//! The block pool and prefix cache (vLLM semantics): full blocks only, hashes
//! chained on the parent block, reference counts, a free queue whose order the
//! [`EvictionPolicy`] decides, a finished request's blocks freed in reverse order.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use serde::Serialize;

use crate::config::PolicyKind;

/// Index of a block in the pool.
pub type BlockId = u32;

/// Hash of a full block's tokens chained on its parent block's hash.
pub fn block_hash(parent: Option<u64>, tokens: &[u32]) -> u64 {
    // DefaultHasher::new() uses fixed keys: deterministic across runs.
    let mut h = std::hash::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// The chained hashes of every full block of `tokens`.
pub fn chain_hashes(tokens: &[u32], block_size: usize) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(tokens.len() / block_size);
    for chunk in tokens.chunks_exact(block_size) {
        out.push(block_hash(out.last().copied(), chunk));
    }
    out
}

/// What a policy may look at when a block is freed.
#[derive(Debug, Clone, Copy)]
pub struct FreedBlock {
    pub id: BlockId,
    /// Whether the block holds a cached (hashed) full block.
    pub cached: bool,
    /// Monotonic counter value of when the block was first cached.
    pub cached_seq: u64,
}

/// Decides the order in which free blocks are reused (and cached ones evicted).
pub trait EvictionPolicy: Send {
    /// Name for reports.
    fn name(&self) -> &'static str;
    /// Whether prefix caching is on at all.
    fn caches(&self) -> bool {
        true
    }
    /// A block's reference count dropped to zero.
    fn push_free(&mut self, block: FreedBlock);
    /// A free block was reused by a prefix-cache hit: take it out of the queue.
    fn remove(&mut self, block: BlockId);
    /// The next block to reuse (evicting its cached content).
    fn pop_victim(&mut self) -> Option<BlockId>;
    /// Free blocks.
    fn len(&self) -> usize;
    /// Whether no block is free.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A free queue ordered by a key; shared by the built-in policies.
#[derive(Default)]
struct KeyedQueue {
    order: BTreeMap<(u64, u64), BlockId>,
    key_of: HashMap<BlockId, (u64, u64)>,
    counter: u64,
}

impl KeyedQueue {
    fn push(&mut self, id: BlockId, key0: u64, key1: Option<u64>) {
        self.counter += 1;
        let key = (key0, key1.unwrap_or(self.counter));
        self.order.insert(key, id);
        self.key_of.insert(id, key);
    }
    fn remove(&mut self, id: BlockId) {
        if let Some(k) = self.key_of.remove(&id) {
            self.order.remove(&k);
        }
    }
    fn pop(&mut self) -> Option<BlockId> {
        let (_, id) = self.order.pop_first()?;
        self.key_of.remove(&id);
        Some(id)
    }
}

/// `remove`, `pop_victim` and `len` of a policy that wraps a [`KeyedQueue`]; the
/// built-in policies differ only in how `push_free` keys a block.
macro_rules! keyed_queue_methods {
    () => {
        fn remove(&mut self, id: BlockId) {
            self.0.remove(id);
        }
        fn pop_victim(&mut self) -> Option<BlockId> {
            self.0.pop()
        }
        fn len(&self) -> usize {
            self.0.order.len()
        }
    };
}

/// vLLM's order: least recently freed first.
#[derive(Default)]
pub struct Lru(KeyedQueue);

impl EvictionPolicy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }
    fn push_free(&mut self, b: FreedBlock) {
        self.0.push(b.id, 0, None);
    }
    keyed_queue_methods!();
}

/// Uncached free blocks first, then cached blocks in the order they were first cached.
#[derive(Default)]
pub struct Fifo(KeyedQueue);

impl EvictionPolicy for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn push_free(&mut self, b: FreedBlock) {
        if b.cached {
            self.0.push(b.id, 1, Some(b.cached_seq));
        } else {
            self.0.push(b.id, 0, None);
        }
    }
    keyed_queue_methods!();
}

/// No prefix caching: blocks are plain KV storage, reused in free order.
#[derive(Default)]
pub struct NoCache(KeyedQueue);

impl EvictionPolicy for NoCache {
    fn name(&self) -> &'static str {
        "none"
    }
    fn caches(&self) -> bool {
        false
    }
    fn push_free(&mut self, b: FreedBlock) {
        self.0.push(b.id, 0, None);
    }
    keyed_queue_methods!();
}

/// The policy object for a configured kind.
pub fn make_policy(kind: PolicyKind) -> Box<dyn EvictionPolicy> {
    match kind {
        PolicyKind::Lru => Box::<Lru>::default(),
        PolicyKind::Fifo => Box::<Fifo>::default(),
        PolicyKind::None => Box::<NoCache>::default(),
    }
}

#[derive(Debug, Clone, Default)]
struct BlockMeta {
    ref_cnt: u32,
    hash: Option<u64>,
    cached_seq: u64,
    /// Request that cached the block's content.
    owner: Option<usize>,
}

/// A cached block that was evicted to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Eviction {
    pub block: BlockId,
    pub hash: u64,
    /// Request whose computation had filled (and cached) the block.
    pub owner: Option<usize>,
    /// Request whose allocation evicted it.
    pub by: usize,
}

/// The KV block pool with its prefix cache.
pub struct BlockPool {
    blocks: Vec<BlockMeta>,
    cached: HashMap<u64, BlockId>,
    policy: Box<dyn EvictionPolicy>,
    block_size: usize,
    seq: u64,
}

impl BlockPool {
    /// `num_blocks` free blocks of `block_size` tokens, queued in id order.
    pub fn new(num_blocks: usize, block_size: usize, mut policy: Box<dyn EvictionPolicy>) -> Self {
        for id in 0..num_blocks {
            policy.push_free(FreedBlock {
                id: id as BlockId,
                cached: false,
                cached_seq: 0,
            });
        }
        Self {
            blocks: vec![BlockMeta::default(); num_blocks],
            cached: HashMap::new(),
            policy,
            block_size,
            seq: 0,
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Whether prefix caching is on.
    pub fn caches(&self) -> bool {
        self.policy.caches()
    }

    /// Free blocks (cached or not).
    pub fn num_free(&self) -> usize {
        self.policy.len()
    }

    /// Blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Sum of all reference counts (zero when no request holds a block).
    pub fn total_refs(&self) -> u64 {
        self.blocks.iter().map(|b| u64::from(b.ref_cnt)).sum()
    }

    /// Reference count of one block.
    pub fn ref_count(&self, id: BlockId) -> u32 {
        self.blocks[id as usize].ref_cnt
    }

    /// Whether a block currently holds cached content.
    pub fn is_cached(&self, id: BlockId) -> bool {
        self.blocks[id as usize].hash.is_some()
    }

    /// Longest run of cached blocks matching `hashes` from the start.
    pub fn lookup(&self, hashes: &[u64]) -> Vec<BlockId> {
        if !self.caches() {
            return Vec::new();
        }
        hashes
            .iter()
            .map_while(|h| self.cached.get(h).copied())
            .collect()
    }

    /// Of `blocks`, how many are free now (a hit on them takes them off the free queue).
    pub fn free_among(&self, blocks: &[BlockId]) -> usize {
        blocks
            .iter()
            .filter(|&&b| self.blocks[b as usize].ref_cnt == 0)
            .count()
    }

    /// Takes a reference on cache-hit blocks.
    pub fn touch(&mut self, blocks: &[BlockId]) {
        for &b in blocks {
            let m = &mut self.blocks[b as usize];
            if m.ref_cnt == 0 {
                self.policy.remove(b);
            }
            m.ref_cnt += 1;
        }
    }

    /// Allocates `n` blocks for request `by`, evicting cached content as the policy
    /// orders; `None` (and nothing changed) when fewer than `n` are free.
    pub fn allocate(
        &mut self,
        n: usize,
        by: usize,
        evicted: &mut Vec<Eviction>,
    ) -> Option<Vec<BlockId>> {
        if self.policy.len() < n {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.policy.pop_victim()?;
            let m = &mut self.blocks[id as usize];
            debug_assert_eq!(m.ref_cnt, 0);
            if let Some(h) = m.hash.take() {
                if self.cached.get(&h) == Some(&id) {
                    self.cached.remove(&h);
                }
                evicted.push(Eviction {
                    block: id,
                    hash: h,
                    owner: m.owner,
                    by,
                });
            }
            m.owner = None;
            m.ref_cnt = 1;
            out.push(id);
        }
        Some(out)
    }

    /// Drops one reference on each block, last block first, so that a request's
    /// tail blocks are reused before its head (vLLM).
    pub fn free(&mut self, blocks: &[BlockId]) {
        for &b in blocks.iter().rev() {
            let m = &mut self.blocks[b as usize];
            debug_assert!(m.ref_cnt > 0, "double free of block {b}");
            m.ref_cnt = m.ref_cnt.saturating_sub(1);
            if m.ref_cnt == 0 {
                let fb = FreedBlock {
                    id: b,
                    cached: m.hash.is_some(),
                    cached_seq: m.cached_seq,
                };
                self.policy.push_free(fb);
            }
        }
    }

    /// Registers a computed full block under `hash` (no-op when caching is off or
    /// another block already caches the same content).
    pub fn cache_block(&mut self, id: BlockId, hash: u64, owner: usize) {
        if !self.caches()
            || self.blocks[id as usize].hash.is_some()
            || self.cached.contains_key(&hash)
        {
            return;
        }
        self.seq += 1;
        let m = &mut self.blocks[id as usize];
        m.hash = Some(hash);
        m.cached_seq = self.seq;
        m.owner = Some(owner);
        self.cached.insert(hash, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, kind: PolicyKind) -> BlockPool {
        BlockPool::new(n, 4, make_policy(kind))
    }

    #[test]
    fn hashes_are_chained_and_full_blocks_only() {
        let a = chain_hashes(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 4);
        assert_eq!(a.len(), 2, "the partial tail block is not hashed");
        let b = chain_hashes(&[0, 2, 3, 4, 5, 6, 7, 8], 4);
        assert_ne!(a[0], b[0]);
        assert_ne!(
            a[1], b[1],
            "same tokens under a different parent hash differently"
        );
        assert_eq!(a[1], block_hash(Some(a[0]), &[5, 6, 7, 8]));
    }

    #[test]
    fn lru_evicts_least_recently_freed_and_frees_in_reverse() {
        let mut p = pool(4, PolicyKind::Lru);
        let mut ev = Vec::new();
        let r0 = p.allocate(2, 0, &mut ev).unwrap();
        p.cache_block(r0[0], 10, 0);
        p.cache_block(r0[1], 11, 0);
        let r1 = p.allocate(2, 1, &mut ev).unwrap();
        p.cache_block(r1[0], 20, 1);
        p.cache_block(r1[1], 21, 1);
        p.free(&r0); // r0 freed first, in reverse: r0[1] then r0[0]
        p.free(&r1);
        assert_eq!(p.num_free(), 4);
        assert_eq!(p.total_refs(), 0);
        // A hit on r0's chain reuses r0's blocks and takes them off the queue.
        let hit = p.lookup(&[10, 11, 99]);
        assert_eq!(hit, r0);
        p.touch(&hit);
        p.free(&hit);
        // Now the free order is r1[1], r1[0], r0[1], r0[0].
        let got = p.allocate(1, 2, &mut ev).unwrap();
        assert_eq!(got, vec![r1[1]]);
        assert_eq!(
            ev,
            vec![Eviction {
                block: r1[1],
                hash: 21,
                owner: Some(1),
                by: 2
            }]
        );
        let got = p.allocate(2, 2, &mut ev).unwrap();
        assert_eq!(got, vec![r1[0], r0[1]]);
        assert!(p.lookup(&[20]).is_empty());
        assert_eq!(
            p.lookup(&[10, 11]),
            vec![r0[0]],
            "chain stops at the evicted block"
        );
    }

    #[test]
    fn fifo_evicts_first_cached_whatever_the_reuse() {
        let mut p = pool(4, PolicyKind::Fifo);
        let mut ev = Vec::new();
        let a = p.allocate(1, 0, &mut ev).unwrap();
        p.cache_block(a[0], 1, 0);
        let b = p.allocate(1, 1, &mut ev).unwrap();
        p.cache_block(b[0], 2, 1);
        p.free(&a);
        p.free(&b);
        // Reuse a (touch + free) so that it is the most recently freed.
        p.touch(&a);
        p.free(&a);
        // Two uncached blocks go first, then a (cached first) although b was freed earlier.
        let got = p.allocate(3, 2, &mut ev).unwrap();
        assert_eq!(got[2], a[0]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].block, a[0]);
        // LRU would have taken b.
        let mut p = pool(4, PolicyKind::Lru);
        let a = p.allocate(1, 0, &mut ev).unwrap();
        p.cache_block(a[0], 1, 0);
        let b = p.allocate(1, 1, &mut ev).unwrap();
        p.cache_block(b[0], 2, 1);
        p.free(&a);
        p.free(&b);
        p.touch(&a);
        p.free(&a);
        let got = p.allocate(3, 2, &mut ev).unwrap();
        assert_eq!(got[2], b[0]);
    }

    #[test]
    fn none_policy_never_caches_and_refuses_overallocation() {
        let mut p = pool(3, PolicyKind::None);
        let mut ev = Vec::new();
        let a = p.allocate(2, 0, &mut ev).unwrap();
        p.cache_block(a[0], 5, 0);
        assert!(!p.is_cached(a[0]));
        assert!(p.lookup(&[5]).is_empty());
        assert!(p.allocate(2, 1, &mut ev).is_none());
        assert_eq!(p.num_free(), 1, "a failed allocation changes nothing");
        p.free(&a);
        assert_eq!(p.total_refs(), 0);
    }

    #[test]
    fn shared_blocks_are_ref_counted() {
        let mut p = pool(4, PolicyKind::Lru);
        let mut ev = Vec::new();
        let a = p.allocate(1, 0, &mut ev).unwrap();
        p.cache_block(a[0], 7, 0);
        let hit = p.lookup(&[7]);
        p.touch(&hit);
        assert_eq!(p.ref_count(a[0]), 2);
        p.free(&a);
        assert_eq!(p.num_free(), 3, "still held by the second request");
        p.free(&hit);
        assert_eq!(p.num_free(), 4);
        assert_eq!(p.total_refs(), 0);
    }
}
