//! Usage counters (`usedSpace`, `totalInodes`) added up per client and written once a
//! flush, instead of in every transaction.
//!
//! Every create, write, truncate and delete changes them. Over the optimistic
//! replicated engine, two clients that both read and write one key conflict, and one
//! of them runs its transaction again: with the counters in every transaction, clients
//! creating files in different directories conflict all the time. [`DeferredUsage`]
//! wraps an engine so that transactions see the counters as this client last knew
//! them plus its own pending changes, without reading them from the engine, and their
//! changes to them stay in this client's memory; [`DeferredUsage::flush`] adds them to
//! the engine's counters in one transaction (the mount flushes every second and at
//! unmount). This is what JuiceFS does too.
//!
//! The cost: limits (`capacity`, `inodes`) are checked against usage up to one flush
//! old, and `statfs` shows other clients' changes one flush late; a client that dies
//! loses at most one flush of its changes to the counters (`fsck` recounts them).
//! Other keys pass through untouched.

use super::attr_codec::decode_u64;
use super::ids::{add_counter, get_counter};
use super::keys;
use crate::errno::Result;
use crate::kv::{self, Kv, KvPair, Txn};
use std::sync::{Arc, Mutex};

const NAMES: [&str; 2] = [keys::USED_SPACE, keys::TOTAL_INODES];

#[derive(Default, Debug, Clone, Copy)]
struct State {
    /// The engine's counters as last read.
    base: [u64; 2],
    /// This client's changes not yet written.
    pending: [i64; 2],
}

impl State {
    fn shown(&self) -> [u64; 2] {
        [0, 1].map(|i| apply(self.base[i], self.pending[i]))
    }
}

fn apply(v: u64, delta: i64) -> u64 {
    if delta >= 0 {
        v.saturating_add(delta as u64)
    } else {
        v.saturating_sub(delta.unsigned_abs())
    }
}

/// An engine whose usage counters are kept per client until flushed.
pub struct DeferredUsage {
    inner: Arc<dyn Kv>,
    state: Mutex<State>,
    keys: [Vec<u8>; 2],
}

impl DeferredUsage {
    /// Wraps `inner`, reading its counters.
    pub fn new(inner: Arc<dyn Kv>) -> Result<Arc<DeferredUsage>> {
        let d = DeferredUsage {
            inner,
            state: Mutex::new(State::default()),
            keys: NAMES.map(keys::counter),
        };
        d.refresh()?;
        Ok(Arc::new(d))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh(&self) -> Result<()> {
        let base = kv::read(&*self.inner, |t| {
            Ok([get_counter(t, NAMES[0])?, get_counter(t, NAMES[1])?])
        })?;
        self.lock().base = base;
        Ok(())
    }

    /// This client's changes not yet written: (bytes, inodes).
    pub fn pending(&self) -> (i64, i64) {
        let s = self.lock();
        (s.pending[0], s.pending[1])
    }

    /// Adds the pending changes to the engine's counters and reads them back.
    pub fn flush(&self) -> Result<()> {
        let taken = self.lock().pending;
        let base = kv::txn(&*self.inner, |t| {
            let mut out = [0u64; 2];
            for i in 0..2 {
                out[i] = if taken[i] == 0 {
                    get_counter(t, NAMES[i])?
                } else {
                    add_counter(t, NAMES[i], taken[i])?
                };
            }
            Ok(out)
        })?;
        let mut s = self.lock();
        for (p, t) in s.pending.iter_mut().zip(taken) {
            *p -= t;
        }
        s.base = base;
        Ok(())
    }

    fn which(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }
}

impl Kv for DeferredUsage {
    fn txn(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        let mut delta = [0i64; 2];
        self.inner.txn(&mut |t| {
            // Each run starts afresh: only the last one's changes count.
            delta = [0, 0];
            let shown = self.lock().shown();
            f(&mut Deferred {
                t,
                owner: self,
                shown,
                delta: &mut delta,
            })
        })?;
        let mut s = self.lock();
        for (p, d) in s.pending.iter_mut().zip(delta) {
            *p += d;
        }
        Ok(())
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        let mut delta = [0i64; 2];
        self.inner.read(&mut |t| {
            let shown = self.lock().shown();
            f(&mut Deferred {
                t,
                owner: self,
                shown,
                delta: &mut delta,
            })
        })
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

/// A transaction of [`DeferredUsage`].
struct Deferred<'a> {
    t: &'a mut dyn Txn,
    owner: &'a DeferredUsage,
    /// The counters as this client knew them when the transaction began.
    shown: [u64; 2],
    /// What the transaction changed them by.
    delta: &'a mut [i64; 2],
}

impl Deferred<'_> {
    fn value(&self, i: usize) -> Vec<u8> {
        apply(self.shown[i], self.delta[i]).to_be_bytes().to_vec()
    }
}

impl Txn for Deferred<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.owner.which(key) {
            Some(i) => Ok(Some(self.value(i))),
            None => self.t.get(key),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        match self.owner.which(key) {
            Some(i) => {
                let v = decode_u64(value).unwrap_or(0);
                self.delta[i] = (v as i128 - self.shown[i] as i128)
                    .clamp(i64::MIN as i128, i64::MAX as i128)
                    as i64;
            }
            None => self.t.set(key, value),
        }
    }

    fn delete(&mut self, key: &[u8]) {
        match self.owner.which(key) {
            Some(i) => self.delta[i] = -(self.shown[i].min(i64::MAX as u64) as i64),
            None => self.t.delete(key),
        }
    }

    /// Scans pass through: a scan over the counters sees the engine's values.
    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        self.t.scan(start, end, limit)
    }

    fn get_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let others: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| self.owner.which(k).is_none())
            .cloned()
            .collect();
        let mut fetched = self.t.get_many(&others)?.into_iter();
        keys.iter()
            .map(|k| match self.owner.which(k) {
                Some(i) => Ok(Some(self.value(i))),
                None => fetched.next().ok_or(crate::Errno::EIO),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::slice::SliceRef;
    use crate::format::Format;
    use crate::kv::MemKv;
    use crate::meta::Meta;
    use crate::replica::{Command, LocalReplica, OptimisticKv, Outcome, ReadCheck, Remote};
    use crate::{ChunkIndex, Ctx, FileType, Ino, Timespec};

    fn now() -> Timespec {
        Timespec::new(1_700_000_000, 0)
    }

    fn counters(kv: &dyn Kv) -> (u64, u64) {
        kv::read(kv, |t| {
            Ok((
                get_counter(t, keys::USED_SPACE)?,
                get_counter(t, keys::TOTAL_INODES)?,
            ))
        })
        .unwrap()
    }

    #[test]
    fn two_clients_changes_add_up_once_flushed() {
        let engine: Arc<dyn Kv> = Arc::new(MemKv::new());
        let format = Format::new("usagevol", "00000000-0000-0000-0000-0000000000u1");
        Meta::format(&*engine, &format, false, now()).unwrap();
        let (a, b) = (
            DeferredUsage::new(engine.clone()).unwrap(),
            DeferredUsage::new(engine.clone()).unwrap(),
        );
        let (ma, mb) = (
            Meta::load(a.clone()).unwrap(),
            Meta::load(b.clone()).unwrap(),
        );
        let root = Ctx::root();
        for (m, name) in [(&ma, "x"), (&ma, "y"), (&mb, "z")] {
            m.mknod(
                &root,
                Ino::ROOT,
                name.as_bytes(),
                FileType::RegularFile,
                0o644,
                0,
                0,
                now(),
            )
            .unwrap();
        }
        assert_eq!(counters(&*engine), (0, 1), "only the root so far");
        assert_eq!(ma.statfs().unwrap().used_inodes, 3, "a sees its own");
        assert_eq!(a.pending(), (0, 2));
        a.flush().unwrap();
        b.flush().unwrap();
        assert_eq!(counters(&*engine), (0, 4));
        assert_eq!(a.pending(), (0, 0));
        a.flush().unwrap();
        assert_eq!(ma.statfs().unwrap().used_inodes, 4, "and b's after a flush");
        ma.unlink(&root, Ino::ROOT, b"z", now()).unwrap();
        a.flush().unwrap();
        assert_eq!(counters(&*engine), (0, 3));
    }

    /// A remote that notes which keys the commands it is sent read or write.
    struct Watching {
        inner: LocalReplica,
        touched: Mutex<Vec<Vec<u8>>>,
    }

    impl Remote for Watching {
        fn get(&self, key: &[u8], fresh: bool) -> Result<Option<Vec<u8>>> {
            self.inner.get(key, fresh)
        }
        fn scan(&self, start: &[u8], end: &[u8], limit: usize, fresh: bool) -> Result<Vec<KvPair>> {
            self.inner.scan(start, end, limit, fresh)
        }
        fn check(&self, reads: &[ReadCheck]) -> Result<bool> {
            self.inner.check(reads)
        }
        fn commit(&self, cmd: &Command) -> Result<Outcome> {
            let mut t = self.touched.lock().unwrap();
            t.extend(cmd.writes.keys().cloned());
            for r in &cmd.reads {
                if let ReadCheck::Get { key, .. } = r {
                    t.push(key.clone());
                }
            }
            drop(t);
            self.inner.commit(cmd)
        }
    }

    #[test]
    fn creates_over_the_optimistic_engine_neither_read_nor_write_the_counters() {
        // So clients creating in different directories never conflict on them.
        let engine: Arc<dyn Kv> = Arc::new(MemKv::new());
        let format = Format::new("usagevol", "00000000-0000-0000-0000-0000000000u2");
        Meta::format(&*engine, &format, false, now()).unwrap();
        let remote = Arc::new(Watching {
            inner: LocalReplica::new(engine.clone()),
            touched: Mutex::new(Vec::new()),
        });
        struct Shared(Arc<Watching>);
        impl Remote for Shared {
            fn get(&self, key: &[u8], fresh: bool) -> Result<Option<Vec<u8>>> {
                self.0.get(key, fresh)
            }
            fn scan(&self, s: &[u8], e: &[u8], l: usize, fresh: bool) -> Result<Vec<KvPair>> {
                self.0.scan(s, e, l, fresh)
            }
            fn check(&self, reads: &[ReadCheck]) -> Result<bool> {
                self.0.check(reads)
            }
            fn commit(&self, cmd: &Command) -> Result<Outcome> {
                self.0.commit(cmd)
            }
        }
        let o: Arc<dyn Kv> = Arc::new(OptimisticKv::new(Shared(remote.clone()), 7, 1));
        let usage = DeferredUsage::new(o).unwrap();
        let m = Meta::load(usage.clone()).unwrap();
        let root = Ctx::root();
        for i in 0..10 {
            let a = m
                .mknod(
                    &root,
                    Ino::ROOT,
                    format!("f{i}").as_bytes(),
                    FileType::RegularFile,
                    0o644,
                    0,
                    0,
                    now(),
                )
                .unwrap();
            let id = m.new_slice_id().unwrap();
            m.write_slice(a.ino, ChunkIndex(0), SliceRef::new(0, id, 4096), now())
                .unwrap();
        }
        let counter_keys = NAMES.map(keys::counter);
        let touched = remote.touched.lock().unwrap().clone();
        assert!(!touched.is_empty());
        assert!(
            !touched.iter().any(|k| counter_keys.contains(k)),
            "a create or write touched a usage counter"
        );
        usage.flush().unwrap();
        assert_eq!(counters(&*engine), (40960, 11));
    }
}
