//! A simple shared inference server: FIFO admission under a sequence limit and a KV-cache
//! budget, LRU prefix cache with block-aligned hits, prefill ∝ uncached tokens, decode ∝
//! output tokens with a batch-size slow-down. Requests must be submitted in arrival order.

use crate::config::ServerConfig;
use crate::plan::Timing;
use crate::util::block_align;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// One request as the server saw it (drives the vLLM and GPU metrics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReqRecord {
    pub(crate) arrival: i64,
    pub(crate) start: i64,
    pub(crate) first_token: i64,
    pub(crate) end: i64,
    pub(crate) input: i64,
    pub(crate) output: i64,
    pub(crate) cache_read: i64,
    /// The request had to wait for KV space (counted as a preemption).
    pub(crate) preempted: bool,
    /// Its prompt stays in the prefix cache when it finishes.
    pub(crate) cacheable: bool,
}

#[derive(Debug)]
pub(crate) struct Server {
    cfg: ServerConfig,
    /// Admitted requests by end time: (end, record index).
    running: BinaryHeap<Reverse<(i64, usize)>>,
    last_start: i64,
    pinned: i64,
    cached_total: i64,
    lru: BTreeMap<(i64, u64), i64>,
    entries: HashMap<u64, i64>,
    owners: Vec<u64>,
    pub(crate) records: Vec<ReqRecord>,
    pub(crate) evicted_entries: u64,
}

impl Server {
    pub(crate) fn new(cfg: &ServerConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            running: BinaryHeap::new(),
            last_start: i64::MIN,
            pinned: 0,
            cached_total: 0,
            lru: BTreeMap::new(),
            entries: HashMap::new(),
            owners: Vec::new(),
            records: Vec::new(),
            evicted_entries: 0,
        }
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Puts a cached prefix in (used to start with a warm, full cache).
    pub(crate) fn warm(&mut self, owner: u64, tokens: i64, last_use: i64) {
        self.remove_entry(owner);
        if self.pinned + self.cached_total + tokens > self.cfg.kv_capacity_tokens {
            return;
        }
        self.lru.insert((last_use, owner), tokens);
        self.entries.insert(owner, last_use);
        self.cached_total += tokens;
    }

    fn remove_entry(&mut self, owner: u64) -> i64 {
        match self.entries.remove(&owner) {
            Some(lu) => {
                let tok = self.lru.remove(&(lu, owner)).unwrap_or(0);
                self.cached_total -= tok;
                tok
            }
            None => 0,
        }
    }

    fn retire(&mut self, idx: usize) {
        let Some(r) = self.records.get(idx).copied() else {
            return;
        };
        let owner = self.owners.get(idx).copied().unwrap_or(u64::MAX);
        self.pinned -= r.input + r.output;
        if !r.cacheable {
            return;
        }
        self.remove_entry(owner);
        let tokens = block_align(r.input, self.cfg.block_size);
        self.lru.insert((r.end, owner), tokens);
        self.entries.insert(owner, r.end);
        self.cached_total += tokens;
    }

    /// Retires every request that finished by `t`.
    pub(crate) fn advance(&mut self, t: i64) {
        while let Some(Reverse((end, idx))) = self.running.peek().copied() {
            if end > t {
                break;
            }
            self.running.pop();
            self.retire(idx);
        }
    }

    /// KV tokens neither pinned by running requests nor holding cached prefixes.
    pub(crate) fn free_tokens(&self) -> i64 {
        self.cfg.kv_capacity_tokens - self.pinned - self.cached_total
    }

    /// Cached prefixes, least recently used first: (owner, tokens).
    pub(crate) fn lru_entries(&self) -> impl Iterator<Item = (u64, i64)> + '_ {
        self.lru.iter().map(|((_, owner), tok)| (*owner, *tok))
    }

    /// Tokens cached for `owner` right now (0 when evicted or never cached).
    #[cfg(test)]
    pub(crate) fn cached_for(&self, owner: u64) -> i64 {
        self.entries
            .get(&owner)
            .and_then(|lu| self.lru.get(&(*lu, owner)))
            .copied()
            .unwrap_or(0)
    }

    fn evict_for(&mut self, need: i64) {
        while self.pinned + self.cached_total + need > self.cfg.kv_capacity_tokens {
            let Some(((lu, owner), tok)) = self.lru.pop_first() else {
                break;
            };
            let _ = lu;
            self.entries.remove(&owner);
            self.cached_total -= tok;
            self.evicted_entries += 1;
        }
    }

    /// Admits a request arriving at `t` (calls must come in non-decreasing `t`). Requests
    /// that are not `cacheable` (one-off batch documents sent with a unique cache salt) free
    /// their blocks instead of leaving them in the prefix cache.
    pub(crate) fn submit(
        &mut self,
        t: i64,
        owner: u64,
        input: i64,
        output: i64,
        cacheable: bool,
    ) -> Timing {
        let input = input.max(1);
        let output = output.max(1);
        self.advance(t);
        let cached = self.remove_entry(owner);
        let hit = cached.min(block_align(input - 1, self.cfg.block_size));
        let need = input + output;
        let cap = self.cfg.kv_capacity_tokens;
        let mut start = t.max(self.last_start);
        let mut preempted = false;
        loop {
            self.advance(start);
            if self.running.len() < self.cfg.max_num_seqs {
                self.evict_for(need);
                if self.pinned + need <= cap {
                    break;
                }
                preempted = true;
            }
            let Some(Reverse((end, idx))) = self.running.pop() else {
                break;
            };
            start = start.max(end);
            self.retire(idx);
        }
        let running = self.running.len() as f64;
        let tpot = self.cfg.decode_secs_per_token
            * (1.0 + self.cfg.batch_slowdown * running / self.cfg.max_num_seqs as f64);
        let prefill_ns =
            3_000_000 + ((input - hit) as f64 / self.cfg.prefill_tokens_per_sec * 1e9) as i64;
        let decode_ns = ((output - 1) as f64 * tpot * 1e9) as i64;
        let end = start + prefill_ns + decode_ns;
        let idx = self.records.len();
        self.records.push(ReqRecord {
            arrival: t,
            start,
            first_token: start + prefill_ns,
            end,
            input,
            output,
            cache_read: hit,
            preempted,
            cacheable,
        });
        self.owners.push(owner);
        self.running.push(Reverse((end, idx)));
        self.pinned += need;
        self.last_start = start;
        Timing {
            arrival_ns: t,
            queue_ns: start - t,
            prefill_ns,
            decode_ns,
            cache_read: hit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ServerConfig {
        ServerConfig {
            max_num_seqs: 2,
            kv_capacity_tokens: 10_000,
            ..ServerConfig::default()
        }
    }

    #[test]
    fn queues_when_slots_are_full_and_hits_cached_prefix() {
        let mut server = Server::new(&cfg());
        let first = server.submit(0, 1, 1000, 100, true);
        let second = server.submit(0, 2, 1000, 100, true);
        let third = server.submit(1, 3, 1000, 100, true);
        assert_eq!(first.queue_ns, 0);
        assert_eq!(second.queue_ns, 0);
        assert!(third.queue_ns > 0, "third request waits for a slot");
        // Owner 1 comes back after finishing: block-aligned hit on its previous prompt.
        let later = 100 * 1_000_000_000;
        let again = server.submit(later, 1, 1500, 50, true);
        assert_eq!(again.cache_read, 992);
        assert!(again.prefill_ns < first.prefill_ns);
    }

    #[test]
    fn lru_eviction_drops_the_oldest_prefix() {
        let mut s = Server::new(&cfg());
        s.warm(7, 4000, 0);
        s.warm(8, 4000, 10);
        // Needs 5000 tokens: only 2000 free, so owner 7 (oldest) is evicted.
        let _ = s.submit(100, 9, 4900, 100, true);
        assert_eq!(s.cached_for(7), 0);
        assert_eq!(s.cached_for(8), 4000);
        assert_eq!(s.evicted_entries, 1);
    }
}
