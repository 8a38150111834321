//! Least-recently-used eviction: the victim is the entry whose last insert or hit is oldest.
//!
//! The classic choice and the reference the others are measured against. On training
//! epochs larger than the cache it does badly: each epoch evicts what the next one would
//! have read (see `benches/eviction.rs`).

use super::fifo::KeyedQueue;
use super::EvictionPolicy;

/// A FIFO whose hits move the entry to the back: O(log n) per operation.
#[derive(Debug, Clone)]
pub struct Lru<K> {
    queue: KeyedQueue<K, ()>,
}

impl<K: Ord + Clone> Lru<K> {
    pub fn new() -> Self {
        Self {
            queue: KeyedQueue::new(),
        }
    }
}

impl<K: Ord + Clone> Default for Lru<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone + Send> EvictionPolicy<K> for Lru<K> {
    fn insert(&mut self, key: K, _size: u64) {
        // A resident key moves to the back, as a hit would.
        self.queue.push_back(key, ());
    }

    fn touch(&mut self, key: &K) {
        self.queue.move_to_back(key);
    }

    fn remove(&mut self, key: &K) {
        self.queue.remove(key);
    }

    fn evict(&mut self) -> Option<K> {
        self.queue.pop_front().map(|(key, ())| key)
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
    fn evicts_least_recently_used_first() {
        let mut p = Lru::new();
        for k in [1, 2, 3, 4] {
            p.insert(k, 100);
        }
        p.touch(&1);
        p.touch(&3);
        assert_eq!(p.evict(), Some(2));
        p.insert(5, 100);
        p.touch(&4);
        assert_eq!(drain(&mut p), vec![1, 3, 5, 4]);
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let mut p = Lru::new();
        p.insert("a", 1);
        p.touch(&"zz");
        p.remove(&"zz");
        assert_eq!(p.len(), 1);
        p.remove(&"a");
        assert!(p.is_empty());
        assert_eq!(p.evict(), None);
    }

    #[test]
    fn reinsert_of_a_resident_key_counts_as_a_hit() {
        let mut p = Lru::new();
        p.insert(1, 1);
        p.insert(2, 1);
        p.insert(1, 1);
        assert_eq!(p.len(), 2);
        assert_eq!(drain(&mut p), vec![2, 1]);
    }
}
