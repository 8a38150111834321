//! A simulated client's local block cache: opened over the client's
//! [`SimCacheDir`](crate::cache_disk::SimCacheDir)s at every mount (so a restarted
//! incarnation finds what the last one left on the disks), its counters added up when
//! the incarnation ends — cleanly or in a crash — and its accounting checked at a clean
//! unmount ([`crate::checkers::cache`]).

use crate::cache_disk::{SimCacheDir, CACHE_CAPACITY};
use crate::checkers;
use crate::world::World;
use ferrofs::vfs::cache::{BlockCache, CacheCounters};
use ferrofs_core::chunk::BlockKey;
use std::sync::Arc;

/// Opens client `me`'s block cache over its dirs (after a restart, a vanished dir may
/// be back, empty), with the staged blocks found in them (for `Vfs::resume_staged`).
pub fn open(world: &Arc<World>, me: usize) -> (Arc<BlockCache>, Vec<BlockKey>) {
    let plant = world.plant();
    let config = world.with(|st| {
        let s = &mut *st;
        s.cache.remount(me, &mut s.rng);
        s.cache.config(me, plant)
    });
    let (cache, staged) = BlockCache::open(SimCacheDir::all_of(world, me), &config);
    let restored = cache.counters().restored;
    world.note(
        me,
        "cache.opened",
        &[],
        restored << 32 | staged.len() as u64,
    );
    (Arc::new(cache), staged)
}

/// Adds a cache's counters to the world's totals when the incarnation ends.
pub struct Tally {
    pub world: Arc<World>,
    pub cache: Arc<BlockCache>,
}

impl Drop for Tally {
    fn drop(&mut self) {
        let c = self.cache.counters();
        self.world.with(|st| st.cache.totals.add(&c));
    }
}

/// At a clean unmount of `me`: does its cache account for its dirs?
pub fn check_unmount(world: &World, me: usize, cache: &BlockCache) {
    let found = world.with(|st| {
        st.cache.totals.checks += 1;
        let disks = st.cache.disks.get(me).map_or(&[][..], Vec::as_slice);
        checkers::cache::check(
            disks,
            &cache.counters(),
            |k| cache.contains(k),
            CACHE_CAPACITY,
        )
    });
    if !found.is_empty() {
        world.fail(me, format!("cache: {}", found.join("; ")));
    }
}

/// Totals of the clients' `BlockCache` counters, added up when each incarnation ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheTotals {
    pub hits: u64,
    pub misses: u64,
    pub admitted: u64,
    pub evicted: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub checksum_failures: u64,
    pub failed_dirs: u64,
    pub restored: u64,
    /// Accounting checks run at clean unmounts.
    pub checks: u64,
}

impl CacheTotals {
    pub fn add(&mut self, c: &CacheCounters) {
        self.hits += c.index.hits;
        self.misses += c.index.misses;
        self.admitted += c.index.admitted;
        self.evicted += c.index.evicted;
        self.rejected += c.index.rejected;
        self.dropped += c.index.dropped;
        self.failed_dirs += c.index.failed_dirs;
        self.checksum_failures += c.checksum_failures;
        self.restored += c.restored;
    }

    pub fn merge(&mut self, o: &CacheTotals) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.admitted += o.admitted;
        self.evicted += o.evicted;
        self.rejected += o.rejected;
        self.dropped += o.dropped;
        self.checksum_failures += o.checksum_failures;
        self.failed_dirs += o.failed_dirs;
        self.restored += o.restored;
        self.checks += o.checks;
    }
}
