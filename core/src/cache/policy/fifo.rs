//! Plain FIFO eviction, and the keyed FIFO queue that the other queue-based policies (LRU,
//! SIEVE, S3-FIFO) are built from.
//!
//! A queue is two ordered maps: position → key for the order, key → (position, value) for
//! lookups. Positions come from a counter that only grows, so "move to the back" is a remove
//! plus a push at a new position. Every operation is O(log n), and nothing depends on hashing
//! or on addresses, so the same operations always give the same order.

use std::collections::BTreeMap;

use super::EvictionPolicy;

/// A FIFO of distinct keys, each carrying a value, with removal from the middle.
#[derive(Debug, Clone)]
pub(super) struct KeyedQueue<K, V> {
    order: BTreeMap<u64, K>,
    entries: BTreeMap<K, (u64, V)>,
    next_pos: u64,
}

impl<K: Ord + Clone, V> KeyedQueue<K, V> {
    pub(super) fn new() -> Self {
        Self {
            order: BTreeMap::new(),
            entries: BTreeMap::new(),
            next_pos: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    pub(super) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(_, v)| v)
    }

    /// Appends at the back (the newest end). A key already queued moves to the back and its
    /// old value is returned.
    pub(super) fn push_back(&mut self, key: K, value: V) -> Option<V> {
        let old = self.remove(&key);
        let pos = self.next_pos;
        self.next_pos += 1;
        self.order.insert(pos, key.clone());
        self.entries.insert(key, (pos, value));
        old
    }

    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        let (pos, value) = self.entries.remove(key)?;
        self.order.remove(&pos);
        Some(value)
    }

    pub(super) fn pop_front(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let (_, value) = self
            .entries
            .remove(&key)
            .expect("queue order and entries agree");
        Some((key, value))
    }

    /// Moves a queued key to the back; false when it is not queued.
    pub(super) fn move_to_back(&mut self, key: &K) -> bool {
        match self.remove(key) {
            Some(value) => {
                self.push_back(key.clone(), value);
                true
            }
            None => false,
        }
    }

    /// The key nearest the front whose position is at least `from`, with its position: lets a
    /// "hand" walk the queue without holding a borrow (SIEVE).
    pub(super) fn first_from(&self, from: u64) -> Option<(u64, &K)> {
        self.order
            .range(from..)
            .next()
            .map(|(pos, key)| (*pos, key))
    }
}

/// Evicts in insertion order; hits change nothing. The baseline every other policy must beat.
#[derive(Debug, Clone)]
pub struct Fifo<K> {
    queue: KeyedQueue<K, ()>,
}

impl<K: Ord + Clone> Fifo<K> {
    pub fn new() -> Self {
        Self {
            queue: KeyedQueue::new(),
        }
    }
}

impl<K: Ord + Clone> Default for Fifo<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone + Send> EvictionPolicy<K> for Fifo<K> {
    fn insert(&mut self, key: K, _size: u64) {
        // Re-inserting a resident key is a hit, and hits do not reorder a FIFO.
        if !self.queue.contains(&key) {
            self.queue.push_back(key, ());
        }
    }

    fn touch(&mut self, _key: &K) {}

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
    fn evicts_in_insertion_order_ignoring_hits() {
        let mut p = Fifo::new();
        for k in [3, 1, 2] {
            p.insert(k, 10);
        }
        p.touch(&3);
        p.touch(&99);
        p.insert(3, 10);
        assert_eq!(p.len(), 3);
        assert_eq!(drain(&mut p), vec![3, 1, 2]);
    }

    #[test]
    fn remove_takes_a_key_out_of_the_middle() {
        let mut p = Fifo::new();
        for k in 0..5 {
            p.insert(k, 1);
        }
        p.remove(&2);
        p.remove(&42);
        assert_eq!(p.len(), 4);
        assert_eq!(drain(&mut p), vec![0, 1, 3, 4]);
        assert!(p.is_empty());
    }
}
