//! SIEVE eviction (Zhang et al., NSDI'24): a FIFO with one "visited" bit per entry and a hand
//! that walks from the oldest entry toward the newest. A visited entry the hand passes keeps
//! its place (unlike CLOCK, it is not moved to the head) and loses its bit; the first
//! unvisited one is the victim. New entries are appended at the newest end.
//!
//! Cheap like FIFO, and it keeps popular entries without LRU's reordering on every hit.

use super::fifo::KeyedQueue;
use super::EvictionPolicy;

#[derive(Debug, Clone)]
pub struct Sieve<K> {
    /// Value: visited since the hand last passed.
    queue: KeyedQueue<K, bool>,
    /// Queue position the hand looks at next; past the newest entry it wraps to the oldest.
    hand: u64,
}

impl<K: Ord + Clone> Sieve<K> {
    pub fn new() -> Self {
        Self {
            queue: KeyedQueue::new(),
            hand: 0,
        }
    }
}

impl<K: Ord + Clone> Default for Sieve<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone + Send> EvictionPolicy<K> for Sieve<K> {
    fn insert(&mut self, key: K, _size: u64) {
        if self.queue.contains(&key) {
            self.touch(&key);
        } else {
            self.queue.push_back(key, false);
        }
    }

    fn touch(&mut self, key: &K) {
        if let Some(visited) = self.queue.get_mut(key) {
            *visited = true;
        }
    }

    fn remove(&mut self, key: &K) {
        // The hand holds a position, not an entry, so it stays valid.
        self.queue.remove(key);
    }

    /// Amortized O(log n): every step past a visited entry clears a bit set by an earlier hit,
    /// and one full lap clears them all.
    fn evict(&mut self) -> Option<K> {
        loop {
            let (pos, key) = match self.queue.first_from(self.hand) {
                Some(found) => found,
                None => self.queue.first_from(0)?,
            };
            let key = key.clone();
            self.hand = pos + 1;
            let visited = self.queue.get_mut(&key).expect("the hand found this key");
            if *visited {
                *visited = false;
            } else {
                self.queue.remove(&key);
                return Some(key);
            }
        }
    }

    fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::tests::drain;

    #[test]
    fn hand_skips_visited_entries_and_keeps_their_place() {
        let mut p = Sieve::new();
        for k in 1..=4 {
            p.insert(k, 1);
        }
        p.touch(&1);
        p.touch(&3);
        // The hand clears 1, evicts 2, then stops after it.
        assert_eq!(p.evict(), Some(2));
        p.insert(5, 1);
        // From the hand: 3 (visited, cleared), 4 goes.
        assert_eq!(p.evict(), Some(4));
        // Then 5, and wrapping: 1 and 3 (both cleared by now).
        assert_eq!(drain(&mut p), vec![5, 1, 3]);
    }

    #[test]
    fn all_visited_evicts_the_oldest_after_a_lap() {
        let mut p = Sieve::new();
        for k in 1..=3 {
            p.insert(k, 1);
            p.touch(&k);
        }
        p.touch(&9);
        p.remove(&9);
        assert_eq!(p.evict(), Some(1));
        assert_eq!(p.len(), 2);
    }
}
