//! `SimCacheDir`: a cache dir of a client's local block cache on a simulated disk,
//! behind the production `ferrofs::vfs::cache::CacheDir` trait.
//!
//! Each client slot has 1–2 dirs (drawn per seed), each on its own disk. Their files live
//! in the world ([`CacheDisks`]), not in the client, so they outlive a crash of the client
//! like a local disk does: the next incarnation opens a new `BlockCache` over the same
//! dirs and its scan finds what is there. Every call is a yield point (`World::call`).
//!
//! Files are keyed by (staged, block key). A staged write is durable when it returns; a
//! cached one only some seconds later (the page cache): a system crash before that
//! loses it or tears it (a prefix, or the right size with a zeroed tail). Faults (class
//! `cache-disk`, see [`crate::faults`]) are decided when a call takes effect: read EIO,
//! a full disk (ENOSPC, little free space), bit flips in what a read returns or in the
//! stored file, a file cut short, another block's file returned (misdirected), the dir
//! vanishing. A dir that returned what makes the
//! `BlockCache` take it out is marked `failed` for [`crate::checkers::cache`].
//!
//! Planted bugs: `misdirected-cache-read` turns the client's key check off and misdirects
//! more reads (a well-formed object, checksums and all); `ignored-cache-delete`
//! acknowledges some deletes and keeps the files.

use crate::client_cache::CacheTotals;
use crate::faults::{Fault, FaultCounts, Rates, Service};
use crate::plant::Plant;
use crate::rng::Rng;
use crate::trace::Fnv;
use crate::world::{State, Step, World};
use ferrofs::vfs::cache::cache_file_len;
use ferrofs::vfs::cache::{CacheConfig, CacheDir, Found};
use ferrofs_core::cache::policy::PolicyKind;
use ferrofs_core::chunk::BlockKey;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

/// Bytes a client's block cache may hold over all its dirs: small, so it evicts.
pub const CACHE_CAPACITY: u64 = 3 << 20;
/// Size of each simulated cache disk; other files use some of it (drawn per disk).
pub const DISK_TOTAL: u64 = 16 << 20;
/// Fraction of each disk the cache keeps free.
pub const FREE_RATIO: f64 = 0.1;
/// An unsynced cached write is on the disk this long after it returned.
const DIRTY_NS: u64 = 5_000_000_000;
/// Share of seeds whose clients write back.
const WRITEBACK_SHARE: f64 = 0.4;
/// Share of reads the planted `misdirected-cache-read` serves from another block.
const MISDIRECT_RATE: f64 = 0.05;
/// Share of deletes the planted `ignored-cache-delete` ignores.
const IGNORED_DELETE_RATE: f64 = 0.05;

#[derive(Debug)]
struct File {
    bytes: Vec<u8>,
    written_at: u64,
    /// Staged: synced before the write returned.
    synced: bool,
}

/// One simulated cache disk.
#[derive(Debug, Default)]
pub struct Disk {
    files: BTreeMap<(bool, BlockKey), File>,
    /// The dir is gone (fault): every file with it.
    pub vanished: bool,
    full_until: u64,
    /// Bytes other programs use on the disk.
    other: u64,
    /// This incarnation's `BlockCache` has taken the dir out (it saw an I/O error, a full
    /// disk or the dir gone).
    pub failed: bool,
}

impl Disk {
    fn used(&self) -> u64 {
        self.files.values().map(|f| f.bytes.len() as u64).sum()
    }

    fn free(&self, now: u64) -> u64 {
        let free = DISK_TOTAL.saturating_sub(self.other + self.used());
        if now < self.full_until {
            free.min(DISK_TOTAL / 100)
        } else {
            free
        }
    }

    /// Whether the disk holds staged blocks.
    pub fn has_staged(&self) -> bool {
        self.files.keys().any(|(s, _)| *s)
    }

    /// The blocks in the dir: (staged, key).
    pub fn blocks(&self) -> impl Iterator<Item = (bool, BlockKey)> + '_ {
        self.files.keys().copied()
    }
}

/// Every client's cache disks, and how their caches are set up.
#[derive(Debug)]
pub struct CacheDisks {
    /// Per client slot, per dir.
    pub disks: Vec<Vec<Disk>>,
    pub policy: PolicyKind,
    pub seed: u64,
    pub totals: CacheTotals,
    /// Per client: object names of staged (writeback) blocks that left a disk without
    /// being moved to the cache: lost with a vanished dir, dropped as damaged, or removed
    /// after an upload (then the object is in the store and nothing is missing).
    pub staged_gone: Vec<BTreeSet<String>>,
    /// The clients write back (`VfsConfig::writeback`): blocks are staged here and
    /// uploaded later (drawn per seed).
    pub writeback: bool,
}

impl Default for CacheDisks {
    fn default() -> Self {
        CacheDisks {
            disks: Vec::new(),
            policy: PolicyKind::Lru,
            seed: 0,
            totals: CacheTotals::default(),
            staged_gone: Vec::new(),
            writeback: false,
        }
    }
}

impl CacheDisks {
    /// Object names that may be missing from the store because a writeback client has
    /// them staged, or lost them: every staged block on a disk, and every staged block
    /// that left one.
    pub fn may_be_unuploaded(&self) -> BTreeSet<String> {
        let on_disks = self.disks.iter().flatten().flat_map(|d| {
            d.files
                .keys()
                .filter(|(s, _)| *s)
                .map(|(_, k)| k.object_name())
        });
        let gone = self.staged_gone.iter().flatten().cloned();
        on_disks.chain(gone).collect()
    }

    /// Whether client `k` may have data other clients cannot read yet (or ever): staged
    /// blocks on its disks, or staged blocks it lost.
    pub fn holds_unuploaded(&self, k: usize) -> bool {
        let on_disk = self
            .disks
            .get(k)
            .is_some_and(|ds| ds.iter().any(Disk::has_staged));
        on_disk || self.staged_gone.get(k).is_some_and(|g| !g.is_empty())
    }

    /// Disks for `slots` clients, drawn from `rng`: 1–2 dirs each, an eviction policy.
    pub fn draw(slots: usize, rng: &mut Rng) -> CacheDisks {
        let disks = (0..slots)
            .map(|_| {
                (0..rng.range(1, 3))
                    .map(|_| Disk {
                        other: rng.below(12 << 20),
                        ..Disk::default()
                    })
                    .collect()
            })
            .collect();
        CacheDisks {
            disks,
            policy: PolicyKind::ALL[rng.index(PolicyKind::ALL.len())],
            seed: rng.next_u64(),
            totals: CacheTotals::default(),
            staged_gone: vec![BTreeSet::new(); slots],
            writeback: rng.chance(WRITEBACK_SHARE),
        }
    }

    /// The cache setup of client `me`.
    pub fn config(&self, me: usize, plant: Option<Plant>) -> CacheConfig {
        CacheConfig {
            capacity: CACHE_CAPACITY,
            free_ratio: FREE_RATIO,
            policy: self.policy,
            seed: self.seed.wrapping_add(me as u64),
            // The planted bug: the client takes whatever file the disk returns.
            verify_keys: plant != Some(Plant::MisdirectedCacheRead),
        }
    }

    /// Client `me` (re)starts: its dirs are usable again; a vanished one may be back,
    /// empty.
    pub fn remount(&mut self, me: usize, rng: &mut Rng) {
        for d in self.disks.get_mut(me).into_iter().flatten() {
            d.failed = false;
            if d.vanished && rng.chance(0.7) {
                d.vanished = false;
            }
        }
    }

    /// A system crash: cached writes not yet on the disk are lost or torn.
    pub fn system_crash(&mut self, now: u64, rng: &mut Rng, counts: &mut FaultCounts) {
        for disk in self.disks.iter_mut().flatten() {
            disk.files.retain(|_, f| {
                if f.synced || f.written_at + DIRTY_NS <= now {
                    return true;
                }
                match rng.below(10) {
                    0..=3 => {
                        counts.add(Fault::CacheLostWrite, 1);
                        false
                    }
                    4..=6 => {
                        counts.add(Fault::CacheTorn, 1);
                        let cut = rng.below(f.bytes.len() as u64) as usize;
                        if rng.chance(0.5) {
                            f.bytes.truncate(cut);
                        } else {
                            f.bytes[cut..].fill(0);
                        }
                        true
                    }
                    _ => true,
                }
            });
        }
    }
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn not_found() -> io::Error {
    io::ErrorKind::NotFound.into()
}

fn flip(rng: &mut Rng, b: &mut [u8]) {
    if !b.is_empty() {
        let bit = rng.index(b.len() * 8);
        b[bit / 8] ^= 1 << (bit % 8);
    }
}

/// What an effect works with: the dir's disk and the world's dice.
struct Env<'a> {
    disk: &'a mut Disk,
    /// This client's `CacheDisks::staged_gone`.
    staged_gone: &'a mut BTreeSet<String>,
    rng: &'a mut Rng,
    counts: &'a mut FaultCounts,
    rates: Rates,
    now: u64,
}

/// Cache dir `dir` of client `me`.
pub struct SimCacheDir {
    world: Arc<World>,
    me: usize,
    dir: usize,
}

impl SimCacheDir {
    /// The dirs of client `me`.
    pub fn all_of(world: &Arc<World>, me: usize) -> Vec<Box<dyn CacheDir>> {
        let n = world.with(|st| st.cache.disks.get(me).map_or(0, Vec::len));
        (0..n)
            .map(|dir| {
                Box::new(SimCacheDir {
                    world: world.clone(),
                    me,
                    dir,
                }) as Box<dyn CacheDir>
            })
            .collect()
    }

    /// One call: a yield point whose effect runs on this dir's disk. The dir may vanish
    /// as the call takes effect. `f` returns the value, the trace code and note.
    fn call<R>(
        &self,
        kind: &'static str,
        key: Option<&BlockKey>,
        f: impl FnOnce(&mut Env<'_>) -> (io::Result<R>, u64, &'static str),
    ) -> io::Result<R> {
        let (me, dir) = (self.me, self.dir);
        self.world.call(me, Service::CacheDisk, kind, |st, _| {
            let State {
                cache,
                rng,
                counts,
                rates,
                faults_on,
                sched,
                ..
            } = st;
            let rates = if *faults_on { *rates } else { Rates::default() };
            let disk = &mut cache.disks[me][dir];
            if !disk.vanished && rng.chance(rates.cache_vanish) {
                counts.add(Fault::CacheVanished, 1);
                disk.vanished = true;
                let staged = disk.files.keys().filter(|(s, _)| *s);
                cache.staged_gone[me].extend(staged.map(|(_, k)| k.object_name()));
                disk.files.clear();
            }
            let mut env = Env {
                disk,
                staged_gone: &mut cache.staged_gone[me],
                rng,
                counts,
                rates,
                now: sched.now,
            };
            let (r, code, note) = f(&mut env);
            let mut tkey = format!("c{me}d{dir}").into_bytes();
            if let Some(k) = key {
                tkey.push(b'/');
                tkey.extend_from_slice(k.object_name().as_bytes());
            }
            let code = match &r {
                Ok(_) => code,
                Err(e) => 1 << 32 | e.raw_os_error().unwrap_or(0xffff) as u64,
            };
            Step::new(r, tkey, code, note)
        })
    }
}

impl CacheDir for SimCacheDir {
    fn describe(&self) -> String {
        format!("sim://c{}/cache{}", self.me, self.dir)
    }

    fn read(&self, key: &BlockKey, staged: bool) -> io::Result<Vec<u8>> {
        let misdirect = self.world.plant() == Some(Plant::MisdirectedCacheRead);
        self.call("cache.read", Some(key), |e| {
            if e.disk.vanished {
                return (Err(not_found()), 0, "dir vanished");
            }
            if e.rng.chance(e.rates.cache_eio) {
                e.counts.add(Fault::CacheIoError, 1);
                e.disk.failed = true;
                return (Err(errno(libc::EIO)), 0, "EIO");
            }
            let Some(file) = e.disk.files.get_mut(&(staged, *key)) else {
                return (Err(not_found()), 0, "not found");
            };
            let mut note = "ok";
            if e.rng.chance(e.rates.cache_torn) {
                e.counts.add(Fault::CacheTorn, 1);
                let cut = e.rng.below(file.bytes.len() as u64) as usize;
                file.bytes.truncate(cut);
                note = "ok (torn on disk)";
            }
            if e.rng.chance(e.rates.cache_rot) {
                e.counts.add(Fault::CacheCorrupt, 1);
                flip(e.rng, &mut file.bytes);
                note = "ok (rotted on disk)";
            }
            let mut out = file.bytes.clone();
            if e.rng.chance(e.rates.cache_flip) {
                e.counts.add(Fault::CacheCorrupt, 1);
                flip(e.rng, &mut out);
                note = "ok (bit flipped in the read)";
            }
            let planted = misdirect && e.rng.chance(MISDIRECT_RATE);
            if planted || e.rng.chance(e.rates.cache_misdirect) {
                let others: Vec<&File> = (e.disk.files.iter())
                    .filter(|((s, k), _)| *s == staged && k.len == key.len && k != key)
                    .map(|(_, f)| f)
                    .collect();
                if !others.is_empty() {
                    out = others[e.rng.index(others.len())].bytes.clone();
                    note = "another block's file";
                    if !planted {
                        e.counts.add(Fault::CacheMisdirected, 1);
                    }
                }
            }
            let code = Fnv::default().data(&out).finish();
            (Ok(out), code, note)
        })
    }

    fn write(&self, key: &BlockKey, object: &[u8], staged: bool) -> io::Result<()> {
        let unsynced_staging = self.world.plant() == Some(Plant::UnsyncedStaging);
        self.call("cache.write", Some(key), |e| {
            if e.disk.vanished {
                e.disk.failed = true;
                return (Err(not_found()), 0, "dir vanished");
            }
            if e.now >= e.disk.full_until && e.rng.chance(e.rates.cache_full) {
                e.counts.add(Fault::CacheDiskFull, 1);
                e.disk.full_until = e.now + e.rng.range(500_000_000, 5_000_000_000);
            }
            let old = e
                .disk
                .files
                .get(&(staged, *key))
                .map_or(0, |f| f.bytes.len());
            let room = e.disk.free(e.now) + old as u64;
            if e.now < e.disk.full_until || object.len() as u64 > room {
                e.counts.add(Fault::CacheNoSpace, 1);
                // A full disk stops caching for a while; only a failed staging write
                // takes the dir out.
                e.disk.failed |= staged;
                return (Err(errno(libc::ENOSPC)), 0, "disk full");
            }
            let file = File {
                bytes: object.to_vec(),
                written_at: e.now,
                synced: staged && !unsynced_staging,
            };
            e.disk.files.insert((staged, *key), file);
            (Ok(()), Fnv::default().data(object).finish(), "written")
        })
        .inspect(|()| {
            if staged {
                // Like an upload: if the commit right after it is refused, the staged
                // block is never committed, and once it is uploaded (by a later mount)
                // its object leaks legitimately.
                let me = self.me;
                self.world.with(|st| {
                    if let Some(p) = st.put_last.get_mut(me) {
                        *p = true;
                    }
                });
            }
        })
    }

    fn remove(&self, key: &BlockKey, staged: bool) -> io::Result<()> {
        let ignore = self.world.plant() == Some(Plant::IgnoredCacheDelete);
        self.call("cache.remove", Some(key), |e| {
            if ignore && e.rng.chance(IGNORED_DELETE_RATE) {
                return (Ok(()), 0, "ok (planted: kept)");
            }
            let gone = e.disk.files.remove(&(staged, *key)).is_some();
            if gone && staged {
                e.staged_gone.insert(key.object_name());
            }
            (Ok(()), gone as u64, "ok")
        })
    }

    fn unstage(&self, key: &BlockKey) -> io::Result<()> {
        self.call("cache.unstage", Some(key), |e| {
            match e.disk.files.remove(&(true, *key)) {
                Some(f) => {
                    e.disk.files.insert((false, *key), f);
                    (Ok(()), 0, "ok")
                }
                None => (Err(not_found()), 0, "not found"),
            }
        })
    }

    fn scan(&self) -> io::Result<Vec<Found>> {
        self.call("cache.scan", None, |e| {
            if e.disk.vanished {
                e.disk.failed = true;
                return (Err(not_found()), 0, "dir vanished");
            }
            // Like `DiskDir`: files of the wrong size are partial; they are deleted (a
            // staged one is data lost).
            let gone = &mut *e.staged_gone;
            e.disk.files.retain(|&(staged, k), f| {
                let whole = f.bytes.len() as u64 == cache_file_len(&k);
                if !whole && staged {
                    gone.insert(k.object_name());
                }
                whole
            });
            let found: Vec<Found> = (e.disk.files.iter())
                .map(|(&(staged, key), f)| Found {
                    key,
                    size: f.bytes.len() as u64,
                    staged,
                    age: (f.written_at / 1_000_000_000) as i64,
                })
                .collect();
            let n = found.len() as u64;
            (Ok(found), n, "scanned")
        })
    }

    fn space(&self) -> io::Result<Option<(u64, u64)>> {
        self.call("cache.space", None, |e| {
            if e.disk.vanished {
                e.disk.failed = true;
                return (Err(not_found()), 0, "dir vanished");
            }
            let free = e.disk.free(e.now);
            (Ok(Some((free, DISK_TOTAL))), free, "ok")
        })
    }

    fn exists(&self) -> bool {
        self.call("cache.exists", None, |e| {
            if e.disk.vanished {
                e.disk.failed = true;
            }
            (Ok(!e.disk.vanished), 0, "ok")
        })
        .unwrap_or(false)
    }
}
