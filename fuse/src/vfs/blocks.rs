//! Where a client gets verified block data from: recently fetched blocks in memory,
//! a fetch already in flight (single-flight: concurrent readers of one block share one
//! GET), the local block cache, and last the object store. Prefetches for readahead run
//! on a pool of download threads and land in the same memory set.
//!
//! In a cache group (`--cache-group`) a block owned by a peer is asked of that peer
//! after the local cache, before object storage; an owner that misses a block may pull it
//! from its previous owner (grace period); and this member serves the blocks it owns to
//! its peers ([`BlockService`]), reading object storage at most once per block at a time.
//!
//! Block objects never change once written (a slice id is never reused), so a block in
//! memory or in a cache is valid for as long as any slice list names it.

use super::cache::BlockCache;
use super::pool::{Pool, Task};
use crate::group::{BlockService, Group};
use ferrofs_core::cache::group::{plan_fetch, Ask, Requester, Route};
use ferrofs_core::cache::peer_wire::{Op, Reply};
use ferrofs_core::cache::policy::{new_policy, EvictionPolicy, PolicyKind};
use ferrofs_core::chunk::block::{
    decode_block, encode_block, plan_block_read, verify_block_read, BlockError,
};
use ferrofs_core::chunk::BlockKey;
use ferrofs_core::{Errno, Result};
use ferrofs_s3_backend::{ObjectStore, StoreError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Verified bytes of a whole block, or why there are none (ENOENT: the object is missing).
pub type Fetched = Result<Arc<Vec<u8>>>;

/// Recently fetched blocks, least recently used first out, bounded in bytes.
struct Recent {
    blocks: BTreeMap<BlockKey, Arc<Vec<u8>>>,
    order: Box<dyn EvictionPolicy<BlockKey>>,
    bytes: u64,
    capacity: u64,
}

impl Recent {
    fn get(&mut self, key: &BlockKey) -> Option<Arc<Vec<u8>>> {
        let b = self.blocks.get(key)?.clone();
        self.order.touch(key);
        Some(b)
    }

    fn insert(&mut self, key: BlockKey, data: Arc<Vec<u8>>) {
        if self.capacity == 0 || self.blocks.contains_key(&key) {
            return;
        }
        self.bytes += data.len() as u64;
        self.order.insert(key, data.len() as u64);
        self.blocks.insert(key, data);
        while self.bytes > self.capacity {
            let Some(victim) = self.order.evict() else {
                break;
            };
            if let Some(b) = self.blocks.remove(&victim) {
                self.bytes -= b.len() as u64;
            }
        }
    }
}

/// The block source of one client.
pub struct Blocks {
    store: Arc<dyn ObjectStore>,
    cache: Option<Arc<BlockCache>>,
    verify: bool,
    recent: Mutex<Recent>,
    inflight: Mutex<BTreeMap<BlockKey, Arc<Task<Fetched>>>>,
    prefetcher: Pool,
    group: OnceLock<Arc<Group>>,
    /// GETs sent to the object store (whole blocks and ranges).
    store_gets: AtomicU64,
}

impl Blocks {
    /// `memory`: bytes of recently fetched blocks kept (readahead lands there);
    /// `prefetch_threads`: background fetchers (0: prefetching is off).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cache: Option<Arc<BlockCache>>,
        verify: bool,
        memory: u64,
        prefetch_threads: usize,
    ) -> Blocks {
        Blocks {
            store,
            cache,
            verify,
            recent: Mutex::new(Recent {
                blocks: BTreeMap::new(),
                order: new_policy(PolicyKind::Lru, 0),
                bytes: 0,
                capacity: memory,
            }),
            inflight: Mutex::default(),
            prefetcher: Pool::new("ferrofs-prefetch", prefetch_threads),
            group: OnceLock::new(),
            store_gets: AtomicU64::new(0),
        }
    }

    /// Makes this client a member of a cache group (once).
    pub fn join_group(&self, group: Arc<Group>) -> Result<()> {
        self.group.set(group).map_err(|_| Errno::EEXIST)
    }

    pub fn group(&self) -> Option<&Arc<Group>> {
        self.group.get()
    }

    /// GETs this client sent to the object store so far.
    pub fn store_gets(&self) -> u64 {
        self.store_gets.load(Ordering::Relaxed)
    }

    /// The verified data of block `key`.
    pub fn block(&self, key: &BlockKey) -> Fetched {
        self.block_as(key, Requester::Reader)
    }

    fn block_as(&self, key: &BlockKey, who: Requester) -> Fetched {
        if let Some(b) = lock(&self.recent).get(key) {
            return Ok(b);
        }
        match self.claim(key) {
            Err(t) => t.wait(),
            Ok(task) => self.fetch_for(key, &task, who),
        }
    }

    /// Makes this caller the one to fetch `key` (`Ok`: complete the task), or hands
    /// back the fetch already under way (`Err`: wait for it).
    fn claim(&self, key: &BlockKey) -> std::result::Result<Arc<Task<Fetched>>, Arc<Task<Fetched>>> {
        let mut inflight = lock(&self.inflight);
        if let Some(t) = inflight.get(key) {
            return Err(t.clone());
        }
        let t = Task::new();
        inflight.insert(*key, t.clone());
        Ok(t)
    }

    /// Fetches a claimed block and completes its task.
    fn fetch_for(&self, key: &BlockKey, task: &Task<Fetched>, who: Requester) -> Fetched {
        let fetched = self.fetch_whole(key, who);
        if let Ok(b) = &fetched {
            lock(&self.recent).insert(*key, b.clone());
        }
        task.complete(fetched.clone());
        lock(&self.inflight).remove(key);
        fetched
    }

    /// Bytes `[offset, offset+len)` of block `key`, verified: from memory if the block
    /// is there, else with a ranged read of just the segments they lie in (not waiting
    /// for a whole-block fetch that may be under way: the range comes sooner).
    pub fn range(&self, key: &BlockKey, offset: u32, len: u32) -> Result<Vec<u8>> {
        if let Some(b) = lock(&self.recent).get(key) {
            return Ok(b[offset as usize..(offset + len) as usize].to_vec());
        }
        let from_peer = self
            .group
            .get()
            .is_some_and(|g| matches!(g.route(key), Route::Peer { .. }));
        if from_peer || self.cache.as_ref().is_some_and(|c| c.contains(key)) {
            // A peer serves whole blocks: its copy beats a ranged read of the store.
            let b = self.block(key)?;
            return Ok(b[offset as usize..(offset + len) as usize].to_vec());
        }
        self.fetch_range(key, offset, len)
    }

    /// Whether background fetching is on.
    pub fn prefetches(&self) -> bool {
        !self.prefetcher.is_inline()
    }

    /// Fetches `key` in the background unless it is at hand (or prefetching is off).
    pub fn prefetch(self: &Arc<Self>, key: BlockKey) {
        if self.prefetcher.is_inline() || lock(&self.recent).blocks.contains_key(&key) {
            return;
        }
        // Claimed now, not when a worker gets to it: a reader arriving meanwhile
        // waits for this fetch instead of starting its own, and the key is not queued
        // twice.
        let Ok(task) = self.claim(&key) else {
            return;
        };
        let me = self.clone();
        self.prefetcher.spawn(move || {
            let _ = me.fetch_for(&key, &task, Requester::Reader);
        });
    }

    fn get(&self, name: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>> {
        self.store_gets.fetch_add(1, Ordering::Relaxed);
        self.store.get(name, offset, len).map_err(|e| match e {
            StoreError::NotFound(_) => Errno::ENOENT,
            e => {
                tracing::error!(object = %name, "read failed: {e}");
                Errno::EIO
            }
        })
    }

    /// The block from the local cache, else from its owner in the cache group (or its
    /// previous owner), else one GET of the whole object, verified and then cached. A
    /// mismatch may have been damage in flight: it is fetched once more before the
    /// object is called corrupt (EIO).
    ///
    /// A sharing member caches only the blocks it owns (the others are its peers' to
    /// keep); a `--no-sharing` member and a client outside any group cache what they read.
    fn fetch_whole(&self, key: &BlockKey, who: Requester) -> Fetched {
        if let Some(data) = self.cache.as_ref().and_then(|c| c.get(key)) {
            return Ok(Arc::new(data));
        }
        let mut keep = true;
        if let Some(g) = self.group.get() {
            let plan = plan_fetch(g.route(key), g.sharing(), who);
            keep = plan.keep;
            let from_peer = match plan.ask {
                Ask::Owner { id, addr } => g.get_from_owner(&id, &addr, key),
                Ask::PreviousOwner => g.pull_previous(key),
                Ask::Nobody => None,
            };
            if let Some(data) = from_peer {
                if keep {
                    if let Some(c) = &self.cache {
                        c.put(key, &encode_block(&data));
                    }
                }
                return Ok(Arc::new(data));
            }
        }
        let name = key.object_name();
        self.verified(&name, || {
            let mut object = self.get(&name, 0, None)?;
            if self.verify {
                if let Err(e) = decode_block(key.len, &object) {
                    return Ok(Err(e));
                }
                if let (Some(c), true) = (&self.cache, keep) {
                    c.put(key, &object);
                }
            } else if object.len() < key.len as usize {
                return Ok(Err(BlockError::Truncated));
            }
            object.truncate(key.len as usize);
            Ok(Ok(object))
        })
        .map(Arc::new)
    }

    /// A ranged read of the segments holding `[offset, offset+len)` and their checksums.
    fn fetch_range(&self, key: &BlockKey, offset: u32, len: u32) -> Result<Vec<u8>> {
        let name = key.object_name();
        let plan = plan_block_read(key.len, offset, len);
        self.verified(&name, || {
            let (data, crcs) = if plan.contiguous_within(64 << 10) {
                let all = self.get(
                    &name,
                    plan.data.start,
                    Some(plan.checksums.end - plan.data.start),
                )?;
                let split = ((plan.checksums.start - plan.data.start) as usize).min(all.len());
                (all[..split].to_vec(), all[split..].to_vec())
            } else {
                let n = plan.data.end - plan.data.start;
                let data = self.get(&name, plan.data.start, Some(n))?;
                let n = plan.checksums.end - plan.checksums.start;
                (data, self.get(&name, plan.checksums.start, Some(n))?)
            };
            if !self.verify {
                let start = (offset as u64 - plan.data.start) as usize;
                return Ok(data
                    .get(start..start + len as usize)
                    .map(|d| d.to_vec())
                    .ok_or(BlockError::Truncated));
            }
            Ok(verify_block_read(&plan, offset, len, &data, &crcs).map(|d| d.to_vec()))
        })
    }

    /// Runs `attempt` up to twice while it returns damaged data.
    fn verified(
        &self,
        name: &str,
        attempt: impl Fn() -> Result<std::result::Result<Vec<u8>, BlockError>>,
    ) -> Result<Vec<u8>> {
        let mut damage = None;
        for _ in 0..2 {
            match attempt()? {
                Ok(data) => return Ok(data),
                Err(e) => {
                    tracing::warn!(object = %name, "{e}; reading it again");
                    damage = Some(e);
                }
            }
        }
        tracing::error!(object = %name, "read failed: {}", damage.expect("two attempts failed"));
        Err(Errno::EIO)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BlockService for Blocks {
    /// A peer's request for a block this member owns (or owned): from memory, a fetch
    /// under way, the cache, the previous owner, then object storage once.
    fn serve(&self, op: Op, local_only: bool, key: &BlockKey) -> Reply {
        let reply = match op {
            Op::Get => match self.block_as(key, Requester::Peer { local_only }) {
                Ok(data) => Reply::Block(*key, encode_block(&data)),
                Err(e) => failed(e),
            },
            Op::Check => Reply::Warmed {
                cached: self.cache.as_ref().is_some_and(|c| c.contains(key)),
                fetched: false,
            },
            Op::Evict => {
                if let Some(c) = &self.cache {
                    c.evict(key);
                }
                Reply::Warmed {
                    cached: false,
                    fetched: false,
                }
            }
            Op::Warm => match &self.cache {
                None => Reply::Failed("this member has no block cache".into()),
                Some(c) if c.contains(key) => Reply::Warmed {
                    cached: true,
                    fetched: false,
                },
                Some(c) => match self.block_as(key, Requester::Peer { local_only }) {
                    Ok(data) => {
                        if !c.contains(key) {
                            // It was in memory already, not cached.
                            c.put(key, &encode_block(&data));
                        }
                        Reply::Warmed {
                            cached: c.contains(key),
                            fetched: true,
                        }
                    }
                    Err(e) => failed(e),
                },
            },
        };
        if let Some(g) = self.group.get() {
            g.stats.served.fetch_add(1, Ordering::Relaxed);
            if let Reply::Block(_, object) = &reply {
                g.stats
                    .bytes_out
                    .fetch_add(object.len() as u64, Ordering::Relaxed);
            }
        }
        reply
    }
}

fn failed(e: Errno) -> Reply {
    if e == Errno::ENOENT {
        Reply::Missing
    } else {
        Reply::Failed(format!("cannot read the block from object storage ({e:?})"))
    }
}
