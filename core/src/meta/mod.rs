//! POSIX metadata operations over a transactional KV ([`crate::kv::Kv`]).
//!
//! [`Meta`] is the facade the shells call. Every public operation is exactly one KV
//! transaction (plus, now and then, one counter transaction reserving a batch of ids),
//! so a failed operation never leaves a partial write. The key layout, the inode record
//! and the readdir cookies are those of ARCHITECTURE.md.
//!
//! Modules: [`keys`] (key layout), [`attr_codec`] (value encodings), [`perm`]
//! (permission rules and name checks), [`check`] (the invariant checker over a whole
//! keyspace), `store` (transaction helpers), `ids` (counters and id batches), and one
//! module per group of operations (`locks`: distributed `fcntl`/`flock` locks).

pub mod attr_codec;
pub mod check;
pub mod dump;
pub mod keys;
pub mod perm;

mod attrs;
mod census;
mod data;
mod group;
mod ids;
mod locks;
mod namespace;
mod open;
mod readdir;
mod remove;
mod rename;
mod session;
mod settings;
mod store;
pub mod usage;
mod xattr;

#[cfg(test)]
mod tests;

pub use census::{ObjectState, SliceCensus};
pub use data::{WriteOutcome, COMPACT_THRESHOLD};
pub use locks::{
    apply as apply_lock, decode_ranges, encode_ranges, first_conflict, Held, InodeLocks, LockKind,
    LockOwner, LockRange, LockRequest,
};
pub use perm::{R_OK, W_OK, X_OK};
pub use session::Cleanup;

use crate::errno::{Errno, Result};
use crate::format::Format;
use crate::kv::{self, Kv};
use crate::types::{FileType, Ino, StatFs, Timespec};
use ids::{get_counter, set_counter, IdBatch, INODE_BATCH};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Total bytes reported by `statfs` for a volume without a capacity (1 PiB).
pub const UNLIMITED_BYTES: u64 = 1 << 50;
/// Total inodes reported by `statfs` for a volume without an inode limit.
pub const UNLIMITED_INODES: u64 = 10_000_000_000;
/// The block size `statfs` reports (the unit of `df`, not the object block size).
pub const STATFS_BLOCK_SIZE: u32 = 4096;
/// Most links a non-directory may have (ext4's limit).
pub const LINK_MAX: u32 = 65000;

/// The metadata engine of one client process.
pub struct Meta {
    kv: Arc<dyn Kv>,
    format: Format,
    inos: Mutex<IdBatch>,
    slices: Mutex<IdBatch>,
    /// Open file handles of this process per inode. Lock order: this lock, then a KV
    /// transaction (operations that consult it hold it across their transaction, so an
    /// open cannot slip between an unlink's check and its commit).
    opens: Mutex<BTreeMap<Ino, u32>>,
    /// This process's session (0 before [`Meta::new_session`]); named by `U` keys.
    session: Mutex<u64>,
    /// Inodes this session may hold file locks on (a superset: a release elsewhere is
    /// skipped only for inodes not in it). Lock order: this lock, then a transaction.
    locked: Mutex<BTreeSet<Ino>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Meta {
    /// Writes the volume settings and, when missing, the root directory and counters.
    /// EEXIST if the volume is formatted and `force` is false (with `force` the settings
    /// are overwritten and all data kept); EINVAL if `format` does not validate.
    pub fn format(kv: &dyn Kv, format: &Format, force: bool, now: Timespec) -> Result<()> {
        format.validate().map_err(|_| Errno::EINVAL)?;
        let json = format.to_json();
        kv::txn(kv, |t| {
            if t.get(keys::SETTING)?.is_some() && !force {
                return Err(Errno::EEXIST);
            }
            t.set(keys::SETTING, json.as_bytes());
            if store::load_opt(t, Ino::ROOT)?.is_none() {
                let root = store::new_inode(
                    Ino::ROOT,
                    FileType::Directory,
                    0o777,
                    0,
                    0,
                    0,
                    Ino::ROOT,
                    now,
                );
                store::store(t, &root);
                ids::add_counter(t, keys::TOTAL_INODES, 1)?;
            }
            for (name, first) in [
                (keys::NEXT_INODE, 2),
                (keys::NEXT_SLICE, 1),
                (keys::NEXT_SESSION, 1),
                (keys::USED_SPACE, 0),
                (keys::TOTAL_INODES, 0),
            ] {
                if t.get(&keys::counter(name))?.is_none() {
                    set_counter(t, name, first);
                }
            }
            Ok(())
        })
    }

    /// Opens a formatted volume: ENOENT if it is not formatted, EIO if its settings are
    /// corrupt.
    pub fn load(kv: Arc<dyn Kv>) -> Result<Meta> {
        let raw = kv::read(&*kv, |t| t.get(keys::SETTING))?.ok_or(Errno::ENOENT)?;
        let json = std::str::from_utf8(&raw).map_err(|_| Errno::EIO)?;
        let format = Format::from_json(json).map_err(|_| Errno::EIO)?;
        Ok(Meta {
            kv,
            format,
            inos: Mutex::new(IdBatch::default()),
            slices: Mutex::new(IdBatch::default()),
            opens: Mutex::new(BTreeMap::new()),
            session: Mutex::new(0),
            locked: Mutex::new(BTreeSet::new()),
        })
    }

    /// The volume settings read by [`Meta::load`].
    pub fn format_info(&self) -> &Format {
        &self.format
    }

    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    /// Usage against the volume's limits.
    pub fn statfs(&self) -> Result<StatFs> {
        let (used_bytes, used_inodes) = kv::read(&*self.kv, |t| {
            Ok((
                get_counter(t, keys::USED_SPACE)?,
                get_counter(t, keys::TOTAL_INODES)?,
            ))
        })?;
        let total_bytes = match self.format.capacity {
            0 => UNLIMITED_BYTES,
            c => c,
        };
        let total_inodes = match self.format.inodes {
            0 => UNLIMITED_INODES,
            n => n,
        };
        Ok(StatFs {
            total_bytes: total_bytes.max(used_bytes),
            used_bytes,
            total_inodes: total_inodes.max(used_inodes),
            used_inodes,
            block_size: STATFS_BLOCK_SIZE,
        })
    }

    /// Makes every committed transaction durable.
    pub fn sync(&self) -> Result<()> {
        self.kv.sync()
    }

    /// A new inode id from the current batch.
    fn alloc_ino(&self) -> Result<Ino> {
        let mut b = lock(&self.inos);
        b.take(&*self.kv, keys::NEXT_INODE, INODE_BATCH, 2).map(Ino)
    }

    fn session_id(&self) -> u64 {
        *lock(&self.session)
    }
}
