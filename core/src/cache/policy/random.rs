//! Random eviction, plain and with two choices ("2-random": sample two resident entries and
//! evict the less recently used), plus the tiny seeded PRNG they draw from.
//!
//! The core draws no randomness of its own: the seed is an argument, so a given seed and
//! operation sequence always pick the same victims (the simulator depends on it). Sampling
//! is O(1) from a dense `Vec` of entries; a key → slot map finds an entry, and removal
//! swaps the last entry into the hole.

use std::collections::BTreeMap;

use super::EvictionPolicy;

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state, one add and a mix per number. Not
/// for cryptography; plenty for choosing victims, and trivially reproducible.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift: no division, bias below 2^-64 · n.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[derive(Debug, Clone)]
struct Slot<K> {
    key: K,
    /// Tick of the last insert or hit; a smaller tick is less recently used.
    last_use: u64,
}

/// Evicts a uniformly random entry, or with `two_choices` the less recently used of two
/// distinct random entries — close to LRU on skewed reads, but without LRU's collapse on
/// loops larger than the cache, because what survives is left to chance.
#[derive(Debug, Clone)]
pub struct Random<K> {
    slots: Vec<Slot<K>>,
    index: BTreeMap<K, usize>,
    tick: u64,
    rng: SplitMix64,
    two_choices: bool,
}

impl<K: Ord + Clone> Random<K> {
    /// Plain random eviction.
    pub fn new(seed: u64) -> Self {
        Self::with_choices(seed, false)
    }

    /// 2-random: the less recently used of two sampled entries.
    pub fn two_choices(seed: u64) -> Self {
        Self::with_choices(seed, true)
    }

    fn with_choices(seed: u64, two_choices: bool) -> Self {
        Self {
            slots: Vec::new(),
            index: BTreeMap::new(),
            tick: 0,
            rng: SplitMix64::new(seed),
            two_choices,
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn take_slot(&mut self, i: usize) -> K {
        let slot = self.slots.swap_remove(i);
        self.index.remove(&slot.key);
        if let Some(moved) = self.slots.get(i) {
            *self
                .index
                .get_mut(&moved.key)
                .expect("every slot is indexed") = i;
        }
        slot.key
    }
}

impl<K: Ord + Clone + Send> EvictionPolicy<K> for Random<K> {
    fn insert(&mut self, key: K, _size: u64) {
        let last_use = self.next_tick();
        match self.index.get(&key) {
            Some(&i) => self.slots[i].last_use = last_use,
            None => {
                self.index.insert(key.clone(), self.slots.len());
                self.slots.push(Slot { key, last_use });
            }
        }
    }

    fn touch(&mut self, key: &K) {
        if let Some(&i) = self.index.get(key) {
            self.slots[i].last_use = self.next_tick();
        }
    }

    fn remove(&mut self, key: &K) {
        if let Some(&i) = self.index.get(key) {
            self.take_slot(i);
        }
    }

    fn evict(&mut self) -> Option<K> {
        let n = self.slots.len() as u64;
        if n == 0 {
            return None;
        }
        let mut victim = self.rng.below(n) as usize;
        if self.two_choices && n > 1 {
            // A second entry distinct from the first: draw from the n - 1 others.
            let mut other = self.rng.below(n - 1) as usize;
            if other >= victim {
                other += 1;
            }
            if self.slots[other].last_use < self.slots[victim].last_use {
                victim = other;
            }
        }
        Some(self.take_slot(victim))
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::tests::drain;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs for seed 1234567 of the reference C implementation.
        let mut r = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            vec![
                6457827717110365317,
                3203168211198807973,
                9817491932198370423
            ]
        );
        assert!((0..1000).all(|_| r.below(7) < 7));
    }

    #[test]
    fn two_random_with_two_entries_evicts_the_older() {
        for seed in 0..20 {
            let mut p = Random::two_choices(seed);
            p.insert('a', 1);
            p.insert('b', 1);
            p.touch(&'a');
            assert_eq!(p.evict(), Some('b'), "seed {seed}");
        }
    }

    #[test]
    fn two_random_never_evicts_the_most_recent_of_three_first() {
        for seed in 0..50 {
            let mut p = Random::two_choices(seed);
            for k in 0..3 {
                p.insert(k, 1);
            }
            p.touch(&0);
            assert_ne!(p.evict(), Some(0), "seed {seed}");
        }
    }

    #[test]
    fn same_seed_same_victims() {
        let run = |seed| {
            let mut p = Random::new(seed);
            for k in 0..100 {
                p.insert(k, 1);
            }
            p.remove(&5);
            p.touch(&500);
            p.remove(&500);
            assert_eq!(p.len(), 99);
            drain(&mut p)
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let mut all = run(7);
        all.sort();
        assert_eq!(all, (0..100).filter(|&k| k != 5).collect::<Vec<_>>());
    }
}
