//! The small transactional key-value interface every metadata engine implements.
//!
//! Metadata operations are written once against [`Txn`]; an engine only has to offer
//! a consistent read view and apply a [`WriteSet`] atomically. [`BufferedTxn`] turns
//! those two into a full transaction that sees its own writes, so the embedded sled
//! engine, each replica of the replicated engine and the simulator run the very same
//! operation code. [`MemKv`] is the in-memory engine used by tests and the simulator.

use crate::errno::{Errno, Result};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

/// One key-value pair.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// A transaction: reads see the transaction's own earlier writes; writes become
/// visible to others only when the engine commits the whole transaction.
pub trait Txn {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn set(&mut self, key: &[u8], value: &[u8]);
    fn delete(&mut self, key: &[u8]);
    /// Keys in `[start, end)` in ascending order, at most `limit` of them.
    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>>;
    /// Several keys at once: what `get` of each returns, in order. A remote engine
    /// answers them in one round trip.
    fn get_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
}

/// A metadata engine. Transactions are serializable: the engine runs `f` against a
/// consistent view and applies its writes atomically, or not at all if `f` fails.
/// An optimistic engine (the replicated one, `replica::OptimisticKv`) may run `f`
/// again when what it read changed meanwhile; only the last run's result and writes
/// count. So a closure must have no effect beyond its writes and its result (a value
/// it hands out through a captured `Option` is overwritten by each run).
pub trait Kv: Send + Sync {
    /// Runs a read-write transaction.
    fn txn(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()>;
    /// Runs a read-only transaction; writes made by `f` are discarded.
    fn read(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        self.txn(&mut |t| {
            let mut ro = ReadOnly(t);
            f(&mut ro)
        })
    }
    /// Makes every committed transaction durable (fsync of the metadata).
    fn sync(&self) -> Result<()>;
}

/// Runs `f` in a read-write transaction of `kv` and returns its value.
pub fn txn<R>(kv: &dyn Kv, mut f: impl FnMut(&mut dyn Txn) -> Result<R>) -> Result<R> {
    let mut out = None;
    kv.txn(&mut |t| {
        out = Some(f(t)?);
        Ok(())
    })?;
    out.ok_or(Errno::EIO)
}

/// Runs `f` in a read-only transaction of `kv` and returns its value.
pub fn read<R>(kv: &dyn Kv, mut f: impl FnMut(&mut dyn Txn) -> Result<R>) -> Result<R> {
    let mut out = None;
    kv.read(&mut |t| {
        out = Some(f(t)?);
        Ok(())
    })?;
    out.ok_or(Errno::EIO)
}

/// Keys [`for_each_page`] reads per page.
pub const PAGE: usize = 4096;

/// Calls `f` with each page of up to [`PAGE`] pairs of `[start, end)` in key order, one
/// read transaction per page: a pass over a large range that never holds it whole (nor
/// one transaction open for long). Not a snapshot: pages are read at different times.
pub fn for_each_page<E: From<Errno>>(
    kv: &dyn Kv,
    start: &[u8],
    end: &[u8],
    f: &mut dyn FnMut(&[KvPair]) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut from = start.to_vec();
    loop {
        let page = read(kv, |t| t.scan(&from, end, PAGE))?;
        f(&page)?;
        match page.last() {
            Some((k, _)) if page.len() == PAGE => {
                from = k.clone();
                from.push(0);
            }
            _ => return Ok(()),
        }
    }
}

struct ReadOnly<'a>(&'a mut dyn Txn);

impl Txn for ReadOnly<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(key)
    }
    fn set(&mut self, _key: &[u8], _value: &[u8]) {}
    fn delete(&mut self, _key: &[u8]) {}
    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        self.0.scan(start, end, limit)
    }
    fn get_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.0.get_many(keys)
    }
}

/// What a read view of an engine offers [`BufferedTxn`].
pub trait ReadView {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>>;
    /// Several keys at once (see [`Txn::get_many`]).
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
}

/// The writes of a transaction: key → `Some(value)` to set, `None` to delete.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A transaction over a [`ReadView`] that buffers its writes in a [`WriteSet`].
pub struct BufferedTxn<'a, V: ReadView + ?Sized> {
    view: &'a V,
    writes: WriteSet,
}

impl<'a, V: ReadView + ?Sized> BufferedTxn<'a, V> {
    pub fn new(view: &'a V) -> Self {
        BufferedTxn {
            view,
            writes: WriteSet::new(),
        }
    }

    /// The buffered writes, to be applied atomically by the engine.
    pub fn into_writes(self) -> WriteSet {
        self.writes
    }
}

impl<V: ReadView + ?Sized> Txn for BufferedTxn<'_, V> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(w) => Ok(w.clone()),
            None => self.view.get(key),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    fn get_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        // The transaction's own writes answer first; the rest go to the view at once.
        let missing: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !self.writes.contains_key(*k))
            .cloned()
            .collect();
        let mut fetched = self.view.get_many(&missing)?.into_iter();
        keys.iter()
            .map(|k| match self.writes.get(k) {
                Some(w) => Ok(w.clone()),
                None => fetched.next().ok_or(Errno::EIO),
            })
            .collect()
    }

    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        // Merge the view with the buffered writes. Deleted keys may hide view entries,
        // so keep reading pages of the view until `limit` live entries are found.
        let mut out = Vec::new();
        let mut from = start.to_vec();
        let mut inclusive = true;
        loop {
            let want = limit.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            let page_limit = want.saturating_add(self.deletes_in(&from, end));
            let mut page = self.view.scan(&from, end, page_limit)?;
            if !inclusive && page.first().map(|(k, _)| k == &from).unwrap_or(false) {
                page.remove(0);
            }
            let exhausted = page.len() < page_limit;
            let page_end: Option<Vec<u8>> = if exhausted {
                None
            } else {
                page.last().map(|(k, _)| k.clone())
            };
            // Buffered writes in [from, page_end] (or [from, end) when exhausted).
            let lo = if inclusive {
                Bound::Included(from.clone())
            } else {
                Bound::Excluded(from.clone())
            };
            let hi = match &page_end {
                Some(k) => Bound::Included(k.clone()),
                None => Bound::Excluded(end.to_vec()),
            };
            let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
                page.into_iter().map(|(k, v)| (k, Some(v))).collect();
            for (k, w) in self.writes.range((lo, hi)) {
                merged.insert(k.clone(), w.clone());
            }
            for (k, v) in merged {
                if let Some(v) = v {
                    out.push((k, v));
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            match page_end {
                Some(k) => {
                    from = k;
                    inclusive = false;
                }
                None => break,
            }
        }
        Ok(out)
    }
}

impl<V: ReadView + ?Sized> BufferedTxn<'_, V> {
    fn deletes_in(&self, from: &[u8], end: &[u8]) -> usize {
        if from >= end {
            return 0;
        }
        self.writes
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(end)))
            .filter(|(_, w)| w.is_none())
            .count()
            .min(1024)
    }
}

/// An in-memory engine: a `BTreeMap` behind a lock. Used by unit and model tests and
/// by the simulator (where "durable" is decided by the simulated disk, not here).
#[derive(Default)]
pub struct MemKv {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemKv {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every key and value, in key order (for checkers and snapshots).
    pub fn dump(&self) -> Vec<KvPair> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl ReadView for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(BTreeMap::get(self, key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Applies `writes` to a map (helper for in-memory engines).
pub fn apply_writes(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, writes: WriteSet) {
    for (k, w) in writes {
        match w {
            Some(v) => {
                map.insert(k, v);
            }
            None => {
                map.remove(&k);
            }
        }
    }
}

impl Kv for MemKv {
    fn txn(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let writes = {
            let mut t = BufferedTxn::new(&*map);
            f(&mut t)?;
            t.into_writes()
        };
        apply_writes(&mut map, writes);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_sees_own_writes_and_aborts_cleanly() {
        let kv = MemKv::new();
        txn(&kv, |t| {
            t.set(b"a", b"1");
            assert_eq!(t.get(b"a")?, Some(b"1".to_vec()));
            Ok(())
        })
        .unwrap();
        let r: Result<()> = txn(&kv, |t| {
            t.set(b"b", b"2");
            Err(Errno::EEXIST)
        });
        assert_eq!(r, Err(Errno::EEXIST));
        assert_eq!(kv.dump(), vec![(b"a".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn scan_merges_buffered_writes_and_deletes() {
        let kv = MemKv::new();
        txn(&kv, |t| {
            for i in 0..10u8 {
                t.set(&[b'k', i], &[i]);
            }
            Ok(())
        })
        .unwrap();
        let got = txn(&kv, |t| {
            for i in 0..6u8 {
                t.delete(&[b'k', i]);
            }
            t.set(&[b'k', 20], b"x");
            t.scan(b"k", b"l", 3)
        })
        .unwrap();
        let keys: Vec<u8> = got.iter().map(|(k, _)| k[1]).collect();
        assert_eq!(keys, vec![6, 7, 8]);
        let all = read(&kv, |t| t.scan(b"k", b"l", 100)).unwrap();
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn get_many_sees_own_writes_and_the_view_in_order() {
        let kv = MemKv::new();
        txn(&kv, |t| {
            t.set(b"a", b"1");
            t.set(b"b", b"2");
            Ok(())
        })
        .unwrap();
        let got = txn(&kv, |t| {
            t.delete(b"a");
            t.set(b"c", b"3");
            t.get_many(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()])
        })
        .unwrap();
        assert_eq!(
            got,
            vec![None, Some(b"2".to_vec()), Some(b"3".to_vec()), None]
        );
    }

    #[test]
    fn read_only_discards_writes() {
        let kv = MemKv::new();
        read(&kv, |t| {
            t.set(b"x", b"y");
            Ok(())
        })
        .unwrap();
        assert!(kv.dump().is_empty());
    }
}
