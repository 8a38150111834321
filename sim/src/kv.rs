//! `SimKv`: the simulated metadata engine, behind the production `Kv` trait.
//!
//! One engine is shared by every client; each client talks to it through its own
//! [`SimKv`] handle (its "connection"), so every call knows who made it. A transaction
//! is one yield point: the client parks for the call's latency, then the closure runs
//! against the live map and its writes apply atomically while no other client runs —
//! serializable by construction.
//!
//! Durability is modelled like sled's: committed transactions are visible at once but
//! sit in an unsynced tail until `sync()` (or the engine's periodic flush every 500
//! virtual ms) makes them durable. A system crash drops the tail: the engine comes back
//! with a prefix of the commit order.
//!
//! The engine's disk can fail (fault `meta-disk`, see [`crate::faults`]): a transaction
//! fails with EIO before it runs, or — while the disk is full — a transaction that
//! would write, or a sync with something to write, fails with ENOSPC. Either way
//! nothing is applied, and the error counts as injected into the caller's call.

use crate::faults::{Failure, Fault, Service};
use crate::plant::Plant;
use crate::trace::Fnv;
use crate::world::{Step, World};
use ferrofs_core::kv::{apply_writes, BufferedTxn, Kv, Txn, WriteSet};
use ferrofs_core::meta::keys;
use ferrofs_core::{Errno, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The engine's data: the live map, the durable map and the tail between them.
#[derive(Debug, Default)]
pub struct KvState {
    pub live: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Committed, not yet durable, in commit order.
    tail: Vec<WriteSet>,
    /// Sequence number of the last commit.
    pub commits: u64,
    /// Every commit up to here is durable.
    pub durable_seq: u64,
    /// Every commit up to here was covered by a `sync()` that returned success: what
    /// clients were promised (with an honest engine, `acked_sync <= durable_seq`).
    pub acked_sync: u64,
    /// Each client's last commit.
    last_commit_by: BTreeMap<usize, u64>,
    /// Commits that replaced a chunk's slice list with a shorter one (compactions).
    pub compactions: u64,
}

fn digest(writes: &WriteSet) -> u64 {
    let mut h = Fnv::default();
    for (k, v) in writes {
        h.field(k);
        match v {
            Some(v) => h.u64(1).field(v),
            None => h.u64(0),
        };
    }
    h.finish()
}

impl KvState {
    /// Applies `writes` to the live map; returns the digest of the write set.
    pub fn commit(&mut self, client: usize, writes: WriteSet) -> u64 {
        let d = digest(&writes);
        let shrunk = writes.iter().any(|(k, v)| {
            keys::tag_of(k) == Some(b'C')
                && k.first() == Some(&b'A')
                && v.as_ref()
                    .is_some_and(|v| self.live.get(k).is_some_and(|old| v.len() < old.len()))
        });
        if shrunk {
            self.compactions += 1;
        }
        self.commits += 1;
        self.last_commit_by.insert(client, self.commits);
        self.tail.push(writes.clone());
        apply_writes(&mut self.live, writes);
        d
    }

    /// Makes every commit durable.
    pub fn sync(&mut self) {
        for w in self.tail.drain(..) {
            apply_writes(&mut self.durable, w);
        }
        self.durable_seq = self.commits;
    }

    /// Whether anything committed is not durable yet.
    pub fn dirty(&self) -> bool {
        !self.tail.is_empty()
    }

    /// A crash of the engine: the live map becomes the durable one. Returns how many
    /// committed transactions were lost.
    pub fn crash(&mut self) -> u64 {
        let lost = self.tail.len() as u64;
        self.tail.clear();
        self.live = self.durable.clone();
        lost
    }

    /// The last commit made by `client` (0 if none).
    pub fn last_commit_of(&self, client: usize) -> u64 {
        self.last_commit_by.get(&client).copied().unwrap_or(0)
    }

    /// Planted bug `slice-id-reuse`: moves `nextSlice` back by `by`, durably.
    pub fn rewind_next_slice(&mut self, by: u64) {
        let key = keys::counter(keys::NEXT_SLICE);
        for map in [&mut self.live, &mut self.durable] {
            if let Some(v) = map.get_mut(&key) {
                if let Ok(b) = <[u8; 8]>::try_from(v.as_slice()) {
                    let n = u64::from_be_bytes(b).saturating_sub(by).max(1);
                    *v = n.to_be_bytes().to_vec();
                }
            }
        }
    }
}

/// One client's connection to the simulated engine.
pub struct SimKv {
    world: Arc<World>,
    me: usize,
}

impl SimKv {
    pub fn new(world: &Arc<World>, me: usize) -> SimKv {
        SimKv {
            world: world.clone(),
            me,
        }
    }

    fn run(
        &self,
        kind: &'static str,
        read_only: bool,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>,
    ) -> Result<()> {
        let me = self.me;
        let split = self.world.plant() == Some(Plant::NonAtomicTxn);
        let swallow = self.world.plant() == Some(Plant::SwallowedMetaError);
        let rest = self.world.call(me, Service::Meta, kind, |st, failure| {
            let after_put = st.put_last.get_mut(me).is_some_and(std::mem::take);
            if failure == Failure::MetaEio && swallow {
                // Planted: the closure runs (its caller gets its result), its writes
                // are dropped, and success is reported.
                let mut t = BufferedTxn::new(&st.kv.live);
                let r = f(&mut t);
                return Step::new(r.map(|()| None), Vec::new(), 0, "EIO swallowed (planted)");
            }
            if failure == Failure::MetaEio {
                // Counted in `faults_seen` by the call, like every injected failure.
                if after_put {
                    st.abandoned_uploads += 1;
                }
                let e = Errno::EIO;
                return Step::new(Err(e), Vec::new(), e.0 as u64, "injected EIO");
            }
            let mut t = BufferedTxn::new(&st.kv.live);
            let r = f(&mut t);
            let writes = t.into_writes();
            match r {
                Err(e) => {
                    if after_put && !read_only {
                        st.abandoned_uploads += 1;
                    }
                    Step::new(Err(e), Vec::new(), e.0 as u64, e.name())
                }
                Ok(()) if read_only || writes.is_empty() => {
                    Step::new(Ok(None), Vec::new(), 0, "ok")
                }
                Ok(()) if st.disk_full() && swallow => {
                    st.counts.add(Fault::MetaNoSpace, 1);
                    Step::new(Ok(None), Vec::new(), 0, "ENOSPC swallowed (planted)")
                }
                Ok(()) if st.disk_full() => {
                    st.counts.add(Fault::MetaNoSpace, 1);
                    st.faults_seen[me] += 1;
                    if after_put {
                        st.abandoned_uploads += 1;
                    }
                    let e = Errno::ENOSPC;
                    Step::new(Err(e), Vec::new(), e.0 as u64, "disk full")
                }
                Ok(()) => {
                    let first_key = writes.keys().next().cloned().unwrap_or_default();
                    if split && writes.len() >= 2 {
                        let mut first = writes;
                        let mid = first
                            .keys()
                            .nth(first.len() / 2)
                            .cloned()
                            .unwrap_or_default();
                        let rest = first.split_off(&mid);
                        let d = st.kv.commit(me, first);
                        Step::new(Ok(Some(rest)), first_key, d, "half committed")
                    } else {
                        let d = st.kv.commit(me, writes);
                        Step::new(Ok(None), first_key, d, "committed")
                    }
                }
            }
        })?;
        if let Some(rest) = rest {
            self.world.call(me, Service::Meta, "kv.txn.rest", |st, _| {
                let key = rest.keys().next().cloned().unwrap_or_default();
                let d = st.kv.commit(me, rest);
                Step::new((), key, d, "rest committed")
            });
        }
        Ok(())
    }
}

impl Kv for SimKv {
    fn txn(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        self.run("kv.txn", false, f)
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        self.run("kv.read", true, f)
    }

    fn sync(&self) -> Result<()> {
        let lying = self.world.plant() == Some(Plant::LyingFsync);
        let me = self.me;
        self.world.call(me, Service::Meta, "kv.sync", |st, _| {
            if st.disk_full() && st.kv.dirty() {
                st.counts.add(Fault::MetaNoSpace, 1);
                st.faults_seen[me] += 1;
                let e = Errno::ENOSPC;
                return Step::new(Err(e), Vec::new(), e.0 as u64, "disk full");
            }
            if !lying {
                st.kv.sync();
            }
            st.kv.acked_sync = st.kv.commits;
            Step::new(Ok(()), Vec::new(), st.kv.commits, "synced")
        })
    }
}
