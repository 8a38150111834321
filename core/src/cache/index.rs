//! The block cache index: which blocks the local cache holds, in which cache dir, how
//! full each dir is, and what to evict to make room.
//!
//! The shell owns the files (or memory) and reports what happened: blocks found on disk
//! at mount ([`BlockCacheIndex::restore`]), a block fetched that it wants to keep
//! ([`BlockCacheIndex::admit`], which says where it goes and what to delete first), a
//! cached block that turned out damaged or missing ([`BlockCacheIndex::remove`]), a dir
//! that failed ([`BlockCacheIndex::dir_failed`]), the free space of a disk
//! ([`BlockCacheIndex::set_disk_space`]). Blocks are spread over the dirs by consistent
//! hashing, so losing one dir moves only that dir's blocks, and each dir has its own
//! share of `--cache-size` and its own eviction policy.
//!
//! Blocks staged for upload (writeback) are *pinned*: they count towards the dir's size
//! but are never evicted until [`BlockCacheIndex::unpin`] says they are uploaded.
//!
//! Guarantee: an admission never leaves a dir above its share, so the cache as a whole
//! never exceeds `--cache-size` (pinned blocks aside); a block larger than a dir's
//! share is not admitted.

use super::policy::{new_policy, EvictionPolicy, PolicyKind};
use super::ring::{HashRing, DEFAULT_VNODES};
use crate::chunk::BlockKey;
use std::collections::BTreeMap;

/// A cache dir, by its position in the configured list.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct DirId(pub usize);

/// Counters of the block cache (the metrics issue exposes them).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct CacheStats {
    pub hits: u64,
    pub hit_bytes: u64,
    pub misses: u64,
    pub admitted: u64,
    pub admitted_bytes: u64,
    pub evicted: u64,
    pub evicted_bytes: u64,
    /// Admissions refused: no dir alive, a dir short of disk space, a block too big.
    pub rejected: u64,
    /// Cached blocks found damaged or missing and dropped.
    pub dropped: u64,
    pub failed_dirs: u64,
    /// Staged blocks lost before they were uploaded (their dir failed, or the copy was
    /// damaged): data written with writeback that no one can read any more.
    pub staged_lost: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    dir: DirId,
    size: u64,
    pinned: bool,
}

struct Dir {
    name: String,
    capacity: u64,
    used: u64,
    /// Of `used`, bytes of pinned (staged) blocks.
    pinned: u64,
    alive: bool,
    /// The disk is below its free-space ratio: admit nothing until it recovers.
    short_of_space: bool,
    policy: Box<dyn EvictionPolicy<BlockKey>>,
}

/// Where an admitted block goes, and which blocks to delete from that dir first.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Admission {
    pub dir: DirId,
    pub evict: Vec<BlockKey>,
}

/// The index of a block cache over one or more dirs.
pub struct BlockCacheIndex {
    dirs: Vec<Dir>,
    ring: HashRing,
    entries: BTreeMap<BlockKey, Entry>,
    free_ratio: f64,
    stats: CacheStats,
    /// Slices that had staged blocks in a dir that failed: those blocks may still be
    /// on that disk (and be uploaded by a later mount), so the slice counts as staged.
    staged_in_failed_dirs: std::collections::BTreeSet<crate::types::SliceId>,
}

impl BlockCacheIndex {
    /// A cache over dirs named `names` (the names place blocks: keep them stable)
    /// holding at most `capacity` bytes in all, split evenly; each dir keeps at least
    /// `free_ratio` of its disk free. `seed` feeds randomised policies.
    pub fn new(
        names: &[String],
        capacity: u64,
        free_ratio: f64,
        policy: PolicyKind,
        seed: u64,
    ) -> BlockCacheIndex {
        let share = if names.is_empty() {
            0
        } else {
            capacity / names.len() as u64
        };
        let mut ring = HashRing::new(DEFAULT_VNODES);
        let dirs = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                ring.add(name, 1);
                Dir {
                    name: name.clone(),
                    capacity: share,
                    used: 0,
                    pinned: 0,
                    alive: true,
                    short_of_space: false,
                    policy: new_policy(policy, seed.wrapping_add(i as u64)),
                }
            })
            .collect();
        BlockCacheIndex {
            dirs,
            ring,
            entries: BTreeMap::new(),
            free_ratio,
            stats: CacheStats::default(),
            staged_in_failed_dirs: Default::default(),
        }
    }

    /// The dir that owns `key` among the dirs still alive.
    pub fn dir_for(&self, key: &BlockKey) -> Option<DirId> {
        let name = self.ring.owner(&ring_key(key))?;
        self.dirs.iter().position(|d| d.name == name).map(DirId)
    }

    /// Where `key` is cached and whether it is pinned (staged), counting a hit or a
    /// miss.
    pub fn lookup(&mut self, key: &BlockKey) -> Option<(DirId, bool)> {
        match self.entries.get(key) {
            Some(e) => {
                self.stats.hits += 1;
                self.stats.hit_bytes += key.len as u64;
                if !e.pinned {
                    self.dirs[e.dir.0].policy.touch(key);
                }
                Some((e.dir, e.pinned))
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Where `key` is cached and whether it is pinned (no counting, no touching).
    pub fn dir_of(&self, key: &BlockKey) -> Option<(DirId, bool)> {
        self.entries.get(key).map(|e| (e.dir, e.pinned))
    }

    /// Whether any block of slice `slice` is pinned (staged, not uploaded), or was when
    /// its dir failed.
    pub fn slice_has_pinned(&self, slice: crate::types::SliceId) -> bool {
        if self.staged_in_failed_dirs.contains(&slice) {
            return true;
        }
        let lo = BlockKey {
            slice,
            index: 0,
            len: 0,
        };
        let hi = BlockKey {
            slice,
            index: u32::MAX,
            len: u32::MAX,
        };
        self.entries.range(lo..=hi).any(|(_, e)| e.pinned)
    }

    /// Whether `key` is cached (no counting, no touching).
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Admits a block of `size` stored bytes: where to write it and what to delete from
    /// that dir first, or `None` if it should not be cached (then nothing changed).
    /// The entry counts as cached from now on; if writing it fails, [`Self::remove`] it.
    pub fn admit(&mut self, key: BlockKey, size: u64) -> Option<Admission> {
        self.admit_as(key, size, false)
    }

    /// Admits a block staged for upload: like [`Self::admit`], but it is never evicted
    /// until unpinned, and only a dead dir (or none) refuses it.
    pub fn admit_pinned(&mut self, key: BlockKey, size: u64) -> Option<Admission> {
        self.admit_as(key, size, true)
    }

    fn admit_as(&mut self, key: BlockKey, size: u64, pinned: bool) -> Option<Admission> {
        if let Some(e) = self.entries.get_mut(&key) {
            // Already cached (a racing fetch, or a staged copy whose read failed): keep
            // the copy; nothing to write, unless it is to be staged.
            if !pinned {
                return None;
            }
            if !e.pinned {
                e.pinned = true;
                let d = &mut self.dirs[e.dir.0];
                d.policy.remove(&key);
                d.pinned += e.size;
            }
            return Some(Admission {
                dir: e.dir,
                evict: Vec::new(),
            });
        }
        let Some(dir) = self.dir_for(&key) else {
            self.stats.rejected += 1;
            return None;
        };
        let d = &mut self.dirs[dir.0];
        // Pinned blocks cannot make room: if they leave too little, refuse before
        // evicting anything.
        if !pinned && (d.short_of_space || d.pinned + size > d.capacity) {
            self.stats.rejected += 1;
            return None;
        }
        // (A pinned admission may overfill a dir that only pinned blocks fill.)
        let evict = self.shrink(dir, size);
        let d = &mut self.dirs[dir.0];
        if pinned {
            d.pinned += size;
        }
        d.used += size;
        if !pinned {
            d.policy.insert(key, size);
        }
        self.entries.insert(key, Entry { dir, size, pinned });
        self.stats.admitted += 1;
        self.stats.admitted_bytes += size;
        Some(Admission { dir, evict })
    }

    /// A staged block was uploaded: it becomes an ordinary cached block. Returns the
    /// blocks to delete if staging had filled its dir past its share.
    pub fn unpin(&mut self, key: &BlockKey) -> Vec<BlockKey> {
        let Some(e) = self.entries.get_mut(key) else {
            return Vec::new();
        };
        if !e.pinned {
            return Vec::new();
        }
        e.pinned = false;
        let (dir, size) = (e.dir, e.size);
        let d = &mut self.dirs[dir.0];
        d.pinned -= size;
        d.policy.insert(*key, size);
        self.shrink(dir, 0)
    }

    /// Evicts from `dir` until `extra` more bytes fit in its share.
    fn shrink(&mut self, dir: DirId, extra: u64) -> Vec<BlockKey> {
        let d = &mut self.dirs[dir.0];
        let mut evict = Vec::new();
        while d.used + extra > d.capacity {
            let Some(victim) = d.policy.evict() else {
                break; // only pinned blocks left
            };
            if let Some(e) = self.entries.remove(&victim) {
                d.used -= e.size;
                self.stats.evicted += 1;
                self.stats.evicted_bytes += e.size;
            }
            evict.push(victim);
        }
        evict
    }

    /// Drops `key` (damaged, missing, or evicted on request). Returns its dir.
    pub fn remove(&mut self, key: &BlockKey) -> Option<DirId> {
        let e = self.entries.remove(key)?;
        let d = &mut self.dirs[e.dir.0];
        d.used -= e.size;
        if e.pinned {
            d.pinned -= e.size;
        }
        d.policy.remove(key);
        Some(e.dir)
    }

    /// Like [`Self::remove`], counting the block as found damaged or missing.
    pub fn drop_damaged(&mut self, key: &BlockKey) -> Option<DirId> {
        if self.entries.get(key).is_some_and(|e| e.pinned) {
            self.stats.staged_lost += 1;
        }
        let dir = self.remove(key)?;
        self.stats.dropped += 1;
        Some(dir)
    }

    /// Takes a failed dir out: its blocks are forgotten (and returned, pinned ones
    /// included, so the shell can tell what staged data it lost) and its share of
    /// blocks goes to the other dirs.
    pub fn dir_failed(&mut self, dir: DirId) -> Vec<BlockKey> {
        let d = &mut self.dirs[dir.0];
        if !d.alive {
            return Vec::new();
        }
        d.alive = false;
        d.used = 0;
        d.pinned = 0;
        self.ring.remove(&d.name);
        self.stats.failed_dirs += 1;
        let lost: Vec<BlockKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.dir == dir)
            .map(|(k, _)| *k)
            .collect();
        for k in lost.iter().filter(|k| self.entries[*k].pinned) {
            self.stats.staged_lost += 1;
            self.staged_in_failed_dirs.insert(k.slice);
        }
        for k in &lost {
            self.entries.remove(k);
            self.dirs[dir.0].policy.remove(k);
        }
        lost
    }

    /// The dir's disk turned out full (a write failed): admit nothing to it until a
    /// [`Self::set_disk_space`] shows room again.
    pub fn mark_short_of_space(&mut self, dir: DirId) {
        self.dirs[dir.0].short_of_space = true;
    }

    pub fn is_alive(&self, dir: DirId) -> bool {
        self.dirs.get(dir.0).is_some_and(|d| d.alive)
    }

    /// Reports the disk space of a dir's file system. Below the free-space ratio the
    /// dir admits nothing more and gives up the blocks returned (delete them) to get
    /// back above it.
    pub fn set_disk_space(&mut self, dir: DirId, free: u64, total: u64) -> Vec<BlockKey> {
        let want = (total as f64 * self.free_ratio) as u64;
        let d = &mut self.dirs[dir.0];
        d.short_of_space = free < want;
        let mut evict = Vec::new();
        let mut freed = 0;
        while free + freed < want {
            let Some(victim) = d.policy.evict() else {
                break;
            };
            if let Some(e) = self.entries.remove(&victim) {
                d.used -= e.size;
                freed += e.size;
                self.stats.evicted += 1;
                self.stats.evicted_bytes += e.size;
            }
            evict.push(victim);
        }
        evict
    }

    /// Adds blocks found in a dir at mount, oldest first (`pinned`: staged, not yet
    /// uploaded). Returns the blocks to delete from this dir: second copies of blocks
    /// another dir holds, and the oldest while the dir is over its share (the size was
    /// lowered, or the dirs changed). Blocks stay in the dir they were found in.
    pub fn restore(
        &mut self,
        dir: DirId,
        found: impl IntoIterator<Item = (BlockKey, u64, bool)>,
    ) -> Vec<BlockKey> {
        let mut evict = Vec::new();
        for (key, size, pinned) in found {
            if self.entries.contains_key(&key) {
                evict.push(key); // a second copy, in another dir
                continue;
            }
            let d = &mut self.dirs[dir.0];
            d.used += size;
            if pinned {
                d.pinned += size;
            } else {
                d.policy.insert(key, size);
            }
            self.entries.insert(key, Entry { dir, size, pinned });
        }
        evict.extend(self.shrink(dir, 0));
        evict
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Blocks cached and their stored bytes, over all dirs.
    pub fn usage(&self) -> (u64, u64) {
        let bytes = self.dirs.iter().map(|d| d.used).sum();
        (self.entries.len() as u64, bytes)
    }

    /// Bytes used and allowed in one dir.
    pub fn dir_usage(&self, dir: DirId) -> (u64, u64) {
        let d = &self.dirs[dir.0];
        (d.used, d.capacity)
    }
}

/// What the ring hashes for a block: its object name's identity, fixed-width.
fn ring_key(key: &BlockKey) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&key.slice.0.to_be_bytes());
    k[8..].copy_from_slice(&key.index.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SliceId;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn key(n: u64) -> BlockKey {
        BlockKey {
            slice: SliceId(n),
            index: 0,
            len: 100,
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("/cache{i}")).collect()
    }

    #[test]
    fn admits_evicts_and_counts() {
        let mut c = BlockCacheIndex::new(&names(1), 300, 0.0, PolicyKind::Lru, 1);
        for n in 0..3 {
            let a = c.admit(key(n), 100).unwrap();
            assert!(a.evict.is_empty());
        }
        assert_eq!(c.lookup(&key(0)), Some((DirId(0), false)));
        let a = c.admit(key(3), 100).unwrap();
        assert_eq!(a.evict, vec![key(1)], "the least recently used goes");
        assert_eq!(c.lookup(&key(1)), None);
        assert!(c.admit(key(9), 301).is_none(), "bigger than the cache");
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.evicted, s.rejected), (1, 1, 1, 1));
        assert_eq!(c.usage(), (3, 300));
    }

    #[test]
    fn pinned_blocks_stay_until_unpinned() {
        let mut c = BlockCacheIndex::new(&names(1), 200, 0.0, PolicyKind::Lru, 1);
        c.admit_pinned(key(1), 100).unwrap();
        c.admit_pinned(key(2), 100).unwrap();
        assert!(c.admit(key(3), 100).is_none(), "pinned blocks fill it");
        // A staged block is admitted even over the size.
        assert!(c.admit_pinned(key(4), 100).unwrap().evict.is_empty());
        // Staging overfilled the dir: the first block to be unpinned makes up for it.
        assert_eq!(c.unpin(&key(1)), vec![key(1)]);
        assert!(c.unpin(&key(2)).is_empty());
        let a = c.admit(key(5), 100).unwrap();
        assert_eq!(a.evict, vec![key(2)]);
        assert!(c.contains(&key(4)) && c.contains(&key(5)));
    }

    #[test]
    fn a_failed_dir_moves_only_its_blocks() {
        let mut c = BlockCacheIndex::new(&names(3), 3 << 30, 0.0, PolicyKind::Lru, 1);
        let before: Vec<DirId> = (0..3000).map(|n| c.dir_for(&key(n)).unwrap()).collect();
        for n in 0..3000 {
            c.admit(key(n), 100).unwrap();
        }
        let lost = c.dir_failed(DirId(1));
        assert!(!c.is_alive(DirId(1)));
        for n in 0..3000u64 {
            let now = c.dir_for(&key(n)).unwrap();
            assert_ne!(now, DirId(1));
            if before[n as usize] != DirId(1) {
                assert_eq!(now, before[n as usize], "a block of a live dir moved");
                assert!(c.contains(&key(n)));
            } else {
                assert!(lost.contains(&key(n)) && !c.contains(&key(n)));
            }
        }
        assert!(lost.len() > 600 && lost.len() < 1400, "{}", lost.len());
    }

    #[test]
    fn low_disk_space_evicts_and_stops_admission() {
        let mut c = BlockCacheIndex::new(&names(1), 10_000, 0.1, PolicyKind::Lru, 1);
        for n in 0..10 {
            c.admit(key(n), 100).unwrap();
        }
        let evict = c.set_disk_space(DirId(0), 50, 1000);
        assert_eq!(evict, vec![key(0)], "50 bytes short: one block of 100");
        assert!(c.admit(key(20), 100).is_none());
        assert!(c.set_disk_space(DirId(0), 500, 1000).is_empty());
        assert!(c.admit(key(20), 100).is_some());
    }

    #[test]
    fn restore_keeps_the_newest_within_the_share() {
        let mut c = BlockCacheIndex::new(&names(1), 250, 0.0, PolicyKind::Lru, 1);
        let found = (0..5).map(|n| (key(n), 100, n == 0));
        let evict = c.restore(DirId(0), found);
        // Key 0 is staged (pinned): kept; the oldest unpinned go.
        assert_eq!(evict, vec![key(1), key(2), key(3)]);
        assert!(c.contains(&key(0)) && c.contains(&key(4)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Admit(u64, u64),
        AdmitPinned(u64, u64),
        Unpin(u64),
        Lookup(u64),
        Remove(u64),
        Fail(usize),
        Space(usize, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..60, 1u64..400).prop_map(|(k, s)| Op::Admit(k, s)),
            1 => (0u64..60, 1u64..400).prop_map(|(k, s)| Op::AdmitPinned(k, s)),
            1 => (0u64..60).prop_map(Op::Unpin),
            3 => (0u64..60).prop_map(Op::Lookup),
            1 => (0u64..60).prop_map(Op::Remove),
            1 => (0usize..3).prop_map(Op::Fail),
            1 => (0usize..3, 0u64..1000).prop_map(|(d, f)| Op::Space(d, f)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, cases: 200, ..ProptestConfig::default() })]
        /// The cache never holds more than its size (pinned blocks aside), its counts
        /// match what it holds, and it only ever evicts blocks it holds.
        #[test]
        fn never_over_size_and_counts_agree(
            ops in proptest::collection::vec(op(), 1..200),
            policy in prop_oneof![Just(PolicyKind::Lru), Just(PolicyKind::S3Fifo), Just(PolicyKind::Random2)],
        ) {
            let mut c = BlockCacheIndex::new(&names(3), 3000, 0.2, policy, 7);
            let mut held: BTreeMap<BlockKey, (u64, bool)> = BTreeMap::new();
            for op in ops {
                let mut evicted = Vec::new();
                match op {
                    Op::Admit(k, s) | Op::AdmitPinned(k, s) => {
                        let pinned = matches!(op, Op::AdmitPinned(..));
                        let r = if pinned { c.admit_pinned(key(k), s) } else { c.admit(key(k), s) };
                        if let Some(a) = r {
                            prop_assert!(c.is_alive(a.dir));
                            evicted = a.evict;
                            let e = held.entry(key(k)).or_insert((s, false));
                            e.1 |= pinned;
                        }
                    }
                    Op::Unpin(k) => {
                        if let Some(e) = held.get_mut(&key(k)) { e.1 = false; }
                        evicted = c.unpin(&key(k));
                    }
                    Op::Lookup(k) => {
                        prop_assert_eq!(c.lookup(&key(k)).is_some(), held.contains_key(&key(k)));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(c.remove(&key(k)).is_some(), held.remove(&key(k)).is_some());
                    }
                    Op::Fail(d) => {
                        for k in c.dir_failed(DirId(d)) {
                            prop_assert!(held.remove(&k).is_some());
                        }
                    }
                    Op::Space(d, free) => {
                        if c.is_alive(DirId(d)) {
                            evicted = c.set_disk_space(DirId(d), free, 1000);
                        }
                    }
                }
                let unique: BTreeSet<_> = evicted.iter().collect();
                prop_assert_eq!(unique.len(), evicted.len());
                for k in evicted {
                    let (_, pinned) = held.remove(&k).expect("evicted a block it did not hold");
                    prop_assert!(!pinned, "evicted a pinned block");
                }
                let total: u64 = held.values().map(|v| v.0).sum();
                prop_assert_eq!(c.usage(), (held.len() as u64, total));
                for d in 0..3 {
                    let (used, cap) = c.dir_usage(DirId(d));
                    let pinned: u64 = held.iter()
                        .filter(|(k, v)| v.1 && c.entries[*k].dir == DirId(d))
                        .map(|(_, v)| v.0).sum();
                    prop_assert!(used <= cap.max(pinned), "dir {d}: {used} > {cap}");
                }
            }
        }
    }
}
