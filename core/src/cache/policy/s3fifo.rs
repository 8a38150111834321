//! S3-FIFO eviction (Yang et al., "FIFO queues are all you need for cache eviction",
//! SOSP'23): a small FIFO that filters one-hit wonders, a main FIFO with reinsertion for what
//! proved useful, and a ghost FIFO of keys recently dropped from the small one.
//!
//! - New entries go to the small queue, or straight to main when their key is a ghost (it
//!   was dropped too early last time).
//! - Evicting from the small queue: an entry hit since it came in moves to main (its count
//!   cleared); one never hit leaves the cache and its key becomes a ghost.
//! - Evicting from main: an entry with a nonzero count goes back to the newest end with the
//!   count decremented (a 2-bit CLOCK); the first one at zero leaves.
//! - The small queue is evicted from while it holds at least 10% of the resident bytes. The
//!   policy does not know the capacity: `evict` is called when the cache is full, so the
//!   resident bytes are the capacity then.
//!
//! One-shot scans (a checkpoint read once) pass through the small queue without displacing
//! main, which is why it suits a block cache shared by training jobs.

use super::fifo::KeyedQueue;
use super::EvictionPolicy;

/// Share of resident bytes the small queue may hold before it is evicted from (the paper's
/// 10%, which it found to generalize across traces).
const SMALL_PERCENT: u64 = 10;
/// Ghost keys kept, as a share of resident entries: the paper's ghost holds as many entries
/// as main, i.e. about 90% of the cache.
const GHOST_PERCENT: usize = 90;
/// The access counter saturates here (two bits): more hits than that earn no more laps.
const MAX_FREQ: u8 = 3;

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    freq: u8,
}

#[derive(Debug, Clone)]
pub struct S3Fifo<K> {
    small: KeyedQueue<K, Entry>,
    main: KeyedQueue<K, Entry>,
    ghost: KeyedQueue<K, ()>,
    small_bytes: u64,
    main_bytes: u64,
}

impl<K: Ord + Clone> S3Fifo<K> {
    pub fn new() -> Self {
        Self {
            small: KeyedQueue::new(),
            main: KeyedQueue::new(),
            ghost: KeyedQueue::new(),
            small_bytes: 0,
            main_bytes: 0,
        }
    }

    fn entry_mut(&mut self, key: &K) -> Option<&mut Entry> {
        match self.small.get_mut(key) {
            Some(e) => Some(e),
            None => self.main.get_mut(key),
        }
    }

    /// Drops the oldest never-hit entry of the small queue, moving hit ones to main on the
    /// way; `None` when the small queue emptied without a victim.
    fn evict_small(&mut self) -> Option<K> {
        while let Some((key, entry)) = self.small.pop_front() {
            self.small_bytes -= entry.size;
            if entry.freq > 0 {
                self.main_bytes += entry.size;
                self.main.push_back(
                    key,
                    Entry {
                        size: entry.size,
                        freq: 0,
                    },
                );
            } else {
                self.ghost.push_back(key.clone(), ());
                let resident = self.small.len() + self.main.len();
                let keep = (resident * GHOST_PERCENT / 100).max(1);
                while self.ghost.len() > keep {
                    self.ghost.pop_front();
                }
                return Some(key);
            }
        }
        None
    }

    /// Amortized O(log n): each reinsertion spends one of at most `MAX_FREQ` counts.
    fn evict_main(&mut self) -> Option<K> {
        while let Some((key, mut entry)) = self.main.pop_front() {
            if entry.freq > 0 {
                entry.freq -= 1;
                self.main.push_back(key, entry);
            } else {
                self.main_bytes -= entry.size;
                return Some(key);
            }
        }
        None
    }
}

impl<K: Ord + Clone> Default for S3Fifo<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone + Send> EvictionPolicy<K> for S3Fifo<K> {
    fn insert(&mut self, key: K, size: u64) {
        if let Some(entry) = self.small.get_mut(&key) {
            // A resident key: a hit, with a possibly new size.
            self.small_bytes = self.small_bytes - entry.size + size;
            entry.size = size;
            entry.freq = (entry.freq + 1).min(MAX_FREQ);
        } else if let Some(entry) = self.main.get_mut(&key) {
            self.main_bytes = self.main_bytes - entry.size + size;
            entry.size = size;
            entry.freq = (entry.freq + 1).min(MAX_FREQ);
        } else if self.ghost.remove(&key).is_some() {
            self.main_bytes += size;
            self.main.push_back(key, Entry { size, freq: 0 });
        } else {
            self.small_bytes += size;
            self.small.push_back(key, Entry { size, freq: 0 });
        }
    }

    fn touch(&mut self, key: &K) {
        if let Some(entry) = self.entry_mut(key) {
            entry.freq = (entry.freq + 1).min(MAX_FREQ);
        }
    }

    fn remove(&mut self, key: &K) {
        // Not made a ghost: it left for a reason that says nothing about its popularity.
        if let Some(entry) = self.small.remove(key) {
            self.small_bytes -= entry.size;
        } else if let Some(entry) = self.main.remove(key) {
            self.main_bytes -= entry.size;
        }
    }

    fn evict(&mut self) -> Option<K> {
        let resident = self.small_bytes + self.main_bytes;
        if self.small_bytes * 100 >= resident * SMALL_PERCENT || self.main.len() == 0 {
            if let Some(key) = self.evict_small() {
                return Some(key);
            }
        }
        self.evict_main().or_else(|| self.evict_small())
    }

    fn len(&self) -> usize {
        self.small.len() + self.main.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::tests::drain;

    #[test]
    fn one_hit_wonders_leave_from_the_small_queue_first() {
        let mut p = S3Fifo::new();
        for k in 0..10 {
            p.insert(k, 10);
        }
        p.touch(&0);
        p.touch(&1);
        // Everything is in the small queue: 0 and 1 move to main, 2 is the victim.
        assert_eq!(p.evict(), Some(2));
        assert_eq!(p.main.len(), 2);
        assert_eq!(p.evict(), Some(3));
        // Small keeps being evicted while it holds >= 10% of the bytes.
        assert_eq!(drain(&mut p), vec![4, 5, 6, 7, 8, 9, 0, 1]);
    }

    #[test]
    fn a_ghost_comes_back_into_main() {
        let mut p = S3Fifo::new();
        for k in 0..10 {
            p.insert(k, 10);
        }
        assert_eq!(p.evict(), Some(0));
        assert!(p.ghost.contains(&0));
        p.insert(0, 10);
        assert!(p.main.contains(&0) && !p.ghost.contains(&0));
        assert_eq!(p.len(), 10);
    }

    #[test]
    fn main_reinserts_entries_with_hits_left() {
        let mut p = S3Fifo::new();
        for (k, size) in [("a", 100), ("b", 100), ("c", 1), ("d", 1), ("e", 1)] {
            p.insert(k, size);
        }
        // a and b are dropped from the small queue, then read again: they enter main.
        assert_eq!(p.evict(), Some("a"));
        assert_eq!(p.evict(), Some("b"));
        p.insert("a", 100);
        p.insert("b", 100);
        assert_eq!(p.main.len(), 2);
        // Small now holds ~1.5% of the bytes, so main is evicted from; a's hit buys it a lap.
        p.touch(&"a");
        assert_eq!(drain(&mut p), vec!["b", "a", "c", "d", "e"]);
    }

    #[test]
    fn unknown_keys_and_removal() {
        let mut p = S3Fifo::new();
        p.insert(1u32, 5);
        p.insert(2, 5);
        p.touch(&7);
        p.remove(&7);
        p.remove(&1);
        assert_eq!((p.len(), p.small_bytes), (1, 5));
        assert!(!p.ghost.contains(&1));
        assert_eq!(drain(&mut p), vec![2]);
    }
}
