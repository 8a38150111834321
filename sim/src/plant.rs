//! Known bugs the simulator can plant (`--plant`), to prove its checkers bite.
//!
//! Each is a wrong behaviour of the simulated engine or store, never of production code:
//! - `lying-fsync`: the metadata engine acknowledges `sync` without making anything
//!   durable (only its periodic flush does) — found by the data checker after a system
//!   crash, when an fsync'd version is gone;
//! - `non-atomic-txn`: the engine applies a transaction's writes in two halves with a yield
//!   point between them (others run, or the client crashes, in between) — found by the
//!   metadata checker;
//! - `slice-id-reuse`: after a crash the engine's `nextSlice` counter goes back one batch,
//!   so new slices reuse ids (and object names) that committed chunks still name — found
//!   by the metadata and data checkers;
//! - `lost-object-put`: the store acknowledges some puts it dropped — found by the objects
//!   checker and by reads that fail with EIO although no fault was injected;
//! - `skip-checksum`: the client does not verify block checksums (its one production
//!   switch, `VfsConfig::verify_checksums`), so corrupt responses reach applications —
//!   found by the data checker as garbage or lost data;
//! - `swallowed-meta-error`: a transaction the metadata disk failed (EIO, or ENOSPC while
//!   the disk is full) reports success although nothing was applied — as if the client
//!   ignored a failed commit — found by the data checker (a closed file lost its data)
//!   and the metadata checker. Needs the `meta-disk` faults;
//! - `misdirected-cache-read`: the client does not check which block a cached file holds
//!   (its production switch, `CacheConfig::verify_keys`, off) while its cache disk now
//!   and then answers a read with the file of another cached block of the same length.
//!   That file is well-formed — data, checksums, magic — so only the key trailer of a
//!   cached copy tells it apart; without it the data checker finds garbage or lost data.
//!   (Misdirected reads with the check on are an ordinary `cache-disk` fault.)
//! - `ignored-cache-delete`: a cache disk acknowledges some deletes of cached files and
//!   keeps the files — found by the cache checker (files on the disk the index does not
//!   know, which would fill the disk for good);
//! - `unsynced-staging`: a writeback client's staged blocks are not durable when staging
//!   returns (as if it forgot the fsync), so a system crash can lose blocks whose
//!   metadata was committed and synced — found by the data checker (EIO with nothing
//!   to explain it, or lost data, once the world has healed). Needs writeback, which a
//!   share of seeds draws, and `system-crash`;
//! - `peer-skip-verify`: cache-group members take the blocks their peers give without
//!   checking them (the client's switch `Group::skip_verification`), while peer replies
//!   are now and then corrupted in flight ([`crate::peers`]) — found by the data checker
//!   as garbage or lost data. Turns the cache group on, and needs the `peers` faults.

use std::fmt;

/// How far `slice-id-reuse` moves `nextSlice` back: one batch of a client's ids.
pub const REWIND_SLICES: u64 = 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Plant {
    LyingFsync,
    NonAtomicTxn,
    SliceIdReuse,
    LostObjectPut,
    SkipChecksum,
    SwallowedMetaError,
    MisdirectedCacheRead,
    IgnoredCacheDelete,
    UnsyncedStaging,
    PeerSkipVerify,
}

impl Plant {
    pub const ALL: [Plant; 10] = [
        Plant::LyingFsync,
        Plant::NonAtomicTxn,
        Plant::SliceIdReuse,
        Plant::LostObjectPut,
        Plant::SkipChecksum,
        Plant::SwallowedMetaError,
        Plant::MisdirectedCacheRead,
        Plant::IgnoredCacheDelete,
        Plant::UnsyncedStaging,
        Plant::PeerSkipVerify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Plant::LyingFsync => "lying-fsync",
            Plant::NonAtomicTxn => "non-atomic-txn",
            Plant::SliceIdReuse => "slice-id-reuse",
            Plant::LostObjectPut => "lost-object-put",
            Plant::SkipChecksum => "skip-checksum",
            Plant::SwallowedMetaError => "swallowed-meta-error",
            Plant::MisdirectedCacheRead => "misdirected-cache-read",
            Plant::IgnoredCacheDelete => "ignored-cache-delete",
            Plant::UnsyncedStaging => "unsynced-staging",
            Plant::PeerSkipVerify => "peer-skip-verify",
        }
    }

    pub fn parse(s: &str) -> Result<Plant, String> {
        Plant::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Plant::ALL.iter().map(|p| p.name()).collect();
                format!("unknown bug '{s}': plant one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for Plant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
