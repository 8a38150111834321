//! Which faults a run injects, how often, and how often they fired.
//!
//! Fault classes (each switchable with `--faults`):
//! - `store`: object-store latency tails, 5xx errors, timeouts (a long delay, then an
//!   error; the request may or may not have been applied) and lost responses (applied,
//!   but the client gets an error);
//! - `meta-latency`: latency tails of metadata transactions;
//! - `crash`: a client process dies at a yield point, before or after its call took
//!   effect; its memory (open files, unflushed writes, id batches) is gone; it restarts
//!   later as a new process;
//! - `system-crash`: every client and the metadata engine crash together; the engine
//!   keeps only what was synced (explicitly or by its periodic flush);
//! - `pause`: a client is not scheduled for a long virtual time (GC pause, VM stall);
//! - `meta-disk`: the metadata engine's disk. *Read/write errors*: a transaction
//!   (`Kv::txn` or `Kv::read`) fails with EIO and applies nothing. *Full disk*: for a
//!   stretch of virtual time (0.5–5 s, then space frees) every read-write transaction
//!   that would write fails with ENOSPC and applies nothing, `Kv::sync` of a dirty
//!   engine fails with ENOSPC and the periodic flush waits; reads still work. Torn
//!   writes and silent corruption of the engine's own files are not modelled apart:
//!   they are the engine's (sled's) business, which checksums its pages and reports a
//!   damaged or torn page as an I/O error — to ferrofs they are the same EIO.
//! - `cache-disk`: the disks of the clients' local block caches ([`crate::cache_disk`]).
//!   A read fails with EIO; the disk fills up for a stretch (writes fail with ENOSPC,
//!   free space reads as almost none); a cached block is silently corrupted (a bit
//!   flipped in what a read returns, or in the stored file); a file is torn (cut to a
//!   prefix); a read returns another block's file of the same length (misdirected);
//!   the whole dir vanishes (every file gone, the dir missing until the
//!   client restarts, when it may come back empty). Unsynced cached writes lost or torn
//!   by a system crash are that fault's doing and counted with these. None of these
//!   may ever reach an application: the cache must drop the copy or the dir and read
//!   from the object store, so they do not count as errors injected into a client.
//! - `peers`: cache-group peers ([`crate::peers`], only in runs with a cache group):
//!   replies corrupted or cut short in flight, late replies, members partitioned off
//!   for a while. Members that crash, leave or have not joined yet are not faults of
//!   this class: they come with the workload and the `crash` faults.
//!
//! Rates are drawn per run from the seed: each enabled class gets a multiplier between
//! 0 and 4, so a batch of seeds mixes calm runs with harsh ones.

use crate::rng::Rng;
use std::fmt;

/// The fault classes switched on for a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FaultSet {
    pub store: bool,
    pub meta_latency: bool,
    pub crash: bool,
    pub system_crash: bool,
    pub pause: bool,
    pub meta_disk: bool,
    pub cache_disk: bool,
    /// Cache-group peer faults ([`crate::peers`]): only in runs with a cache group.
    pub peers: bool,
}

const CLASSES: [&str; 8] = [
    "store",
    "meta-latency",
    "crash",
    "system-crash",
    "pause",
    "meta-disk",
    "cache-disk",
    "peers",
];

impl FaultSet {
    pub fn none() -> FaultSet {
        FaultSet::default()
    }

    pub fn all() -> FaultSet {
        FaultSet {
            store: true,
            meta_latency: true,
            crash: true,
            system_crash: true,
            pause: true,
            meta_disk: true,
            cache_disk: true,
            peers: true,
        }
    }

    /// Parses `none`, `all` or a comma list of classes.
    pub fn parse(s: &str) -> Result<FaultSet, String> {
        match s {
            "none" => return Ok(FaultSet::none()),
            "all" => return Ok(FaultSet::all()),
            _ => {}
        }
        let mut f = FaultSet::none();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "store" => f.store = true,
                "meta-latency" => f.meta_latency = true,
                "crash" => f.crash = true,
                "system-crash" => f.system_crash = true,
                "pause" => f.pause = true,
                "meta-disk" => f.meta_disk = true,
                "cache-disk" => f.cache_disk = true,
                "peers" => f.peers = true,
                other => {
                    return Err(format!(
                        "unknown fault class '{other}': use none, all, or a comma list of {}",
                        CLASSES.join(", ")
                    ))
                }
            }
        }
        Ok(f)
    }

    fn flags(&self) -> [bool; 8] {
        [
            self.store,
            self.meta_latency,
            self.crash,
            self.system_crash,
            self.pause,
            self.meta_disk,
            self.cache_disk,
            self.peers,
        ]
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on: Vec<&str> = CLASSES
            .iter()
            .zip(self.flags())
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        match on.len() {
            0 => write!(f, "none"),
            n if n == CLASSES.len() => write!(f, "all"),
            _ => write!(f, "{}", on.join(",")),
        }
    }
}

/// Everything the simulator counts as "a fault fired".
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum Fault {
    StoreTail,
    StoreError,
    StoreTimeout,
    StoreLostResponse,
    StoreCorrupt,
    MetaTail,
    /// Metadata transactions that failed with EIO (a read/write error of the engine's
    /// disk, or a torn/corrupt page its checksums caught).
    MetaIoError,
    /// Stretches of time the engine's disk was full.
    MetaDiskFull,
    /// Metadata writes (transactions, syncs) refused with ENOSPC.
    MetaNoSpace,
    ClientCrash,
    SystemCrash,
    /// Committed metadata transactions a system crash threw away (unsynced tail).
    LostTxns,
    Pause,
    /// Cache-disk reads that failed with EIO.
    CacheIoError,
    /// Stretches of time a cache disk was full.
    CacheDiskFull,
    /// Cache-disk writes refused with ENOSPC.
    CacheNoSpace,
    /// Cached blocks silently corrupted (in what a read returned, or on the disk).
    CacheCorrupt,
    /// Cached files torn: cut short on the disk, or torn by a system crash.
    CacheTorn,
    /// Unsynced cached writes a system crash threw away.
    CacheLostWrite,
    /// Cache dirs that vanished.
    CacheVanished,
    /// Cache-disk reads answered with another block's file (misdirected).
    CacheMisdirected,
}

impl Fault {
    pub const ALL: [Fault; 21] = [
        Fault::StoreTail,
        Fault::StoreError,
        Fault::StoreTimeout,
        Fault::StoreLostResponse,
        Fault::StoreCorrupt,
        Fault::MetaTail,
        Fault::MetaIoError,
        Fault::MetaDiskFull,
        Fault::MetaNoSpace,
        Fault::ClientCrash,
        Fault::SystemCrash,
        Fault::LostTxns,
        Fault::Pause,
        Fault::CacheIoError,
        Fault::CacheDiskFull,
        Fault::CacheNoSpace,
        Fault::CacheCorrupt,
        Fault::CacheTorn,
        Fault::CacheLostWrite,
        Fault::CacheVanished,
        Fault::CacheMisdirected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::StoreTail => "store latency tail",
            Fault::StoreError => "store 5xx",
            Fault::StoreTimeout => "store timeout",
            Fault::StoreLostResponse => "store lost response",
            Fault::StoreCorrupt => "store corrupt response",
            Fault::MetaTail => "meta latency tail",
            Fault::MetaIoError => "meta disk EIO",
            Fault::MetaDiskFull => "meta disk full",
            Fault::MetaNoSpace => "meta ENOSPC",
            Fault::ClientCrash => "client crash",
            Fault::SystemCrash => "system crash",
            Fault::LostTxns => "unsynced txns lost",
            Fault::Pause => "client pause",
            Fault::CacheIoError => "cache disk EIO",
            Fault::CacheDiskFull => "cache disk full",
            Fault::CacheNoSpace => "cache ENOSPC",
            Fault::CacheCorrupt => "cache corrupt block",
            Fault::CacheTorn => "cache torn file",
            Fault::CacheLostWrite => "cache unsynced lost",
            Fault::CacheVanished => "cache dir vanished",
            Fault::CacheMisdirected => "cache misdirected read",
        }
    }
}

/// How many times each [`Fault`] fired.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FaultCounts(pub [u64; Fault::ALL.len()]);

impl FaultCounts {
    pub fn add(&mut self, f: Fault, n: u64) {
        self.0[f as usize] += n;
    }

    pub fn get(&self, f: Fault) -> u64 {
        self.0[f as usize]
    }

    /// Whether anything fired that can legitimately leave objects no metadata refers to
    /// (a crash between upload and commit, an upload whose success was not reported, a
    /// commit the metadata disk refused).
    pub fn may_leak(&self) -> bool {
        [
            Fault::MetaIoError,
            Fault::MetaNoSpace,
            Fault::ClientCrash,
            Fault::SystemCrash,
            Fault::StoreLostResponse,
            Fault::StoreTimeout,
        ]
        .iter()
        .any(|&f| self.get(f) > 0)
    }
}

/// The per-call probabilities of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    pub store_tail: f64,
    pub store_error: f64,
    pub store_timeout: f64,
    pub store_lost: f64,
    pub store_corrupt: f64,
    pub meta_tail: f64,
    pub crash: f64,
    pub system_crash: f64,
    pub pause: f64,
    /// Per metadata transaction: it fails with EIO.
    pub meta_eio: f64,
    /// Per metadata call while the disk has space: the disk fills up now.
    pub meta_full: f64,
    /// Per cache-disk read: it fails with EIO.
    pub cache_eio: f64,
    /// Per cache-disk write while the disk has space: the disk fills up now.
    pub cache_full: f64,
    /// Per cache-disk read: a bit of what it returns is flipped.
    pub cache_flip: f64,
    /// Per cache-disk read: a bit of the stored file is flipped first (bit rot).
    pub cache_rot: f64,
    /// Per cache-disk read: the stored file is cut to a prefix first.
    pub cache_torn: f64,
    /// Per cache-disk call: the whole dir vanishes.
    pub cache_vanish: f64,
    /// Per cache-disk read: another block's file of the same length is returned.
    pub cache_misdirect: f64,
}

impl Rates {
    /// Rates for the enabled classes, each scaled by a multiplier drawn from `rng`.
    pub fn draw(set: FaultSet, rng: &mut Rng) -> Rates {
        const SCALE: [f64; 6] = [0.0, 0.25, 1.0, 1.0, 2.0, 4.0];
        let mut m = |on: bool| {
            if on {
                SCALE[rng.index(SCALE.len())]
            } else {
                0.0
            }
        };
        let (store, meta, crash, system, pause) = (
            m(set.store),
            m(set.meta_latency),
            m(set.crash),
            m(set.system_crash),
            m(set.pause),
        );
        let disk = m(set.meta_disk);
        let cache = m(set.cache_disk);
        Rates {
            store_tail: 0.03 * store,
            store_error: 0.01 * store,
            store_timeout: 0.003 * store,
            store_lost: 0.004 * store,
            store_corrupt: 0.003 * store,
            meta_tail: 0.02 * meta,
            crash: crash / 1500.0,
            system_crash: system / 5000.0,
            pause: pause / 1000.0,
            meta_eio: 0.002 * disk,
            meta_full: disk / 2500.0,
            cache_eio: 0.0025 * cache,
            cache_full: cache / 800.0,
            cache_flip: 0.005 * cache,
            cache_rot: 0.003 * cache,
            cache_torn: 0.004 * cache,
            cache_vanish: cache / 5000.0,
            cache_misdirect: 0.003 * cache,
        }
    }
}

/// Median latency of a metadata call (virtual ns).
pub const META_MEDIAN_NS: u64 = 250_000;
/// Median latency of an object-store call (virtual ns).
pub const STORE_MEDIAN_NS: u64 = 12_000_000;
/// Median latency of a cache-disk call (virtual ns): a local SSD.
pub const CACHE_MEDIAN_NS: u64 = 60_000;

/// What happens to one call's request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Failure {
    None,
    /// Rejected (a 5xx): not applied.
    Error,
    /// No answer for a long time, then an error; applied or not.
    Timeout {
        applied: bool,
    },
    /// Applied, but the answer is lost: the caller gets an error.
    LostResponse,
    /// A GET whose response bytes arrive damaged (one bit flipped in flight). Only
    /// reads are hit; the caller must detect it (checksums) and never return the bytes.
    Corrupt,
    /// A metadata transaction fails with EIO (the engine's disk): not applied.
    MetaEio,
}

impl Failure {
    pub fn applied(self) -> bool {
        matches!(
            self,
            Failure::None
                | Failure::LostResponse
                | Failure::Timeout { applied: true }
                | Failure::Corrupt
        )
    }

    pub fn is_error(self) -> bool {
        self != Failure::None
    }
}

/// Where a crash strikes relative to the call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrashAt {
    None,
    /// The process dies before the request is sent.
    Before,
    /// The call takes effect, then the process dies before seeing the answer.
    After,
}

/// The fate of one call, decided when it is made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Decision {
    pub latency: u64,
    pub failure: Failure,
    pub crash: CrashAt,
    pub system_crash: bool,
}

impl Decision {
    pub fn clean(latency: u64) -> Decision {
        Decision {
            latency,
            failure: Failure::None,
            crash: CrashAt::None,
            system_crash: false,
        }
    }
}

/// Which service a call goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Service {
    Meta,
    Store,
    /// A client's local cache disk (its faults are decided by [`crate::cache_disk`]).
    CacheDisk,
    /// Not a call: a client thinking between operations (a yield point without I/O).
    Think(u64),
    /// A client waiting up to this long for a cache-group peer's reply
    /// ([`crate::peers`]); the reply may wake it sooner. Never paused: the wait is the
    /// caller's own deadline.
    PeerWait(u64),
}

/// Decides the fate of one call and counts what fired.
pub fn decide(
    rates: &Rates,
    service: Service,
    rng: &mut Rng,
    counts: &mut FaultCounts,
) -> Decision {
    let mut d = match service {
        Service::Meta => {
            let tail = rng.chance(rates.meta_tail);
            if tail {
                counts.add(Fault::MetaTail, 1);
            }
            let l = rng.latency(META_MEDIAN_NS, if tail { 1.0 } else { 0.0 });
            Decision::clean(l)
        }
        Service::Store => {
            let tail = rng.chance(rates.store_tail);
            if tail {
                counts.add(Fault::StoreTail, 1);
            }
            let mut d = Decision::clean(rng.latency(STORE_MEDIAN_NS, if tail { 1.0 } else { 0.0 }));
            let x = rng.next_u64() >> 11;
            let p = |r: f64| (r * (1u64 << 53) as f64) as u64;
            let (e, t, l, c) = (
                p(rates.store_error),
                p(rates.store_timeout),
                p(rates.store_lost),
                p(rates.store_corrupt),
            );
            if x < e {
                counts.add(Fault::StoreError, 1);
                d.failure = Failure::Error;
            } else if x < e + t {
                counts.add(Fault::StoreTimeout, 1);
                d.failure = Failure::Timeout {
                    applied: rng.chance(0.5),
                };
                d.latency += rng.range(5_000_000_000, 30_000_000_000);
            } else if x < e + t + l {
                counts.add(Fault::StoreLostResponse, 1);
                d.failure = Failure::LostResponse;
            } else if x < e + t + l + c {
                // Counted by the caller: only GETs can be corrupted.
                d.failure = Failure::Corrupt;
            }
            d
        }
        Service::CacheDisk => Decision::clean(rng.latency(CACHE_MEDIAN_NS, 0.0)),
        Service::Think(ns) | Service::PeerWait(ns) => Decision::clean(ns),
    };
    if !matches!(service, Service::PeerWait(_)) && rng.chance(rates.pause) {
        counts.add(Fault::Pause, 1);
        d.latency += rng.range(500_000_000, 20_000_000_000);
    }
    if rng.chance(rates.crash) {
        d.crash = if rng.chance(0.5) {
            CrashAt::Before
        } else {
            CrashAt::After
        };
    }
    d.system_crash = rng.chance(rates.system_crash);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "none",
            "all",
            "store,crash",
            "system-crash,pause",
            "meta-latency",
            "crash,meta-disk",
            "cache-disk",
            "store,cache-disk",
        ] {
            assert_eq!(FaultSet::parse(s).unwrap().to_string(), s);
        }
        assert!(FaultSet::parse("store,bogus").is_err());
    }

    #[test]
    fn no_faults_means_clean_calls() {
        let mut rng = Rng::new(1);
        let mut c = FaultCounts::default();
        let r = Rates::draw(FaultSet::none(), &mut rng);
        for _ in 0..10_000 {
            let d = decide(&r, Service::Store, &mut rng, &mut c);
            assert_eq!(
                (d.failure, d.crash, d.system_crash),
                (Failure::None, CrashAt::None, false)
            );
        }
        assert_eq!(c, FaultCounts::default());
    }
}
