//! The change feed: which keys the last applied entries wrote, so that clients can
//! keep long metadata-cache lifetimes and still drop what other clients changed,
//! within one poll of the feed.
//!
//! A replica keeps the keys of its most recent entries, up to a bound; a client asks
//! for what was applied after the index it has seen. A client that asks for entries the
//! feed no longer holds (it fell behind the bound, or the replica restarted or
//! installed a snapshot) is told to reset: drop every cached entry.

use std::collections::VecDeque;

/// A page of the feed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChangeBatch {
    /// The keys cover the entries applied up to this index: ask from here next.
    pub upto: u64,
    /// Entries after the index asked for are no longer in the feed: drop everything.
    pub reset: bool,
    pub keys: Vec<Vec<u8>>,
}

/// The recent changes of one replica.
#[derive(Debug)]
pub struct Feed {
    /// What the feed knows begins after this index.
    start: u64,
    /// The last index applied.
    upto: u64,
    entries: VecDeque<(u64, Vec<Vec<u8>>)>,
    keys: usize,
    max_keys: usize,
}

impl Feed {
    /// A feed that starts at `applied` and remembers about `max_keys` keys.
    pub fn new(applied: u64, max_keys: usize) -> Feed {
        Feed {
            start: applied,
            upto: applied,
            entries: VecDeque::new(),
            keys: 0,
            max_keys: max_keys.max(1),
        }
    }

    /// The entry at `index` was applied and wrote `keys`.
    pub fn push(&mut self, index: u64, keys: Vec<Vec<u8>>) {
        if index <= self.upto {
            return;
        }
        self.upto = index;
        if keys.is_empty() {
            return;
        }
        self.keys += keys.len();
        self.entries.push_back((index, keys));
        while self.keys > self.max_keys {
            let Some((i, ks)) = self.entries.pop_front() else {
                break;
            };
            self.keys -= ks.len();
            self.start = i;
        }
    }

    /// The state jumped to `index` (a snapshot was installed): nothing before is known.
    pub fn reset(&mut self, index: u64) {
        self.entries.clear();
        self.keys = 0;
        self.start = index;
        self.upto = self.upto.max(index);
    }

    /// The last index applied.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// What was written after `since`, at most about `limit` keys (whole entries).
    pub fn since(&self, since: u64, limit: usize) -> ChangeBatch {
        if since < self.start {
            return ChangeBatch {
                upto: self.upto,
                reset: true,
                keys: Vec::new(),
            };
        }
        if since >= self.upto {
            // Nothing new (or this replica is behind the one the client last asked).
            return ChangeBatch {
                upto: since,
                reset: false,
                keys: Vec::new(),
            };
        }
        let mut out = ChangeBatch {
            upto: self.upto,
            reset: false,
            keys: Vec::new(),
        };
        for (i, ks) in self.entries.iter().filter(|(i, _)| *i > since) {
            if !out.keys.is_empty() && out.keys.len() + ks.len() > limit {
                out.upto = i - 1;
                break;
            }
            out.keys.extend(ks.iter().cloned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<Vec<u8>> {
        vec![s.as_bytes().to_vec()]
    }

    #[test]
    fn a_client_gets_what_was_written_after_what_it_saw() {
        let mut f = Feed::new(10, 100);
        f.push(11, k("a"));
        f.push(12, vec![]);
        f.push(13, k("b"));
        assert_eq!(f.since(10, 100).keys, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(f.since(11, 100).keys, vec![b"b".to_vec()]);
        let none = f.since(13, 100);
        assert_eq!((none.upto, none.reset, none.keys.len()), (13, false, 0));
        // A client that saw more than this replica applied waits, it does not reset.
        assert_eq!(f.since(20, 100).upto, 20);
        assert!(f.since(9, 100).reset, "before the feed began");
    }

    #[test]
    fn pages_end_on_entry_boundaries_and_old_entries_fall_out() {
        let mut f = Feed::new(0, 4);
        for i in 1..=3 {
            f.push(i, vec![vec![i as u8], vec![i as u8 + 100]]);
        }
        // Only 4 keys are kept: entry 1 fell out.
        assert!(f.since(0, 10).reset);
        let p = f.since(1, 2);
        assert_eq!((p.upto, p.keys.len()), (2, 2));
        let p = f.since(p.upto, 2);
        assert_eq!((p.upto, p.keys.len()), (3, 2));
        f.reset(50);
        assert!(f.since(3, 10).reset, "a snapshot installed");
        assert!(!f.since(50, 10).reset);
    }
}
