//! The local block cache: verified block objects kept in one or more cache dirs, as
//! `core::cache::index` decides (placement by consistent hashing, sizes, eviction). This
//! module does the file I/O and reports back: a block that fails its checksum or is
//! missing is dropped and refetched, never returned; a dir that fails (I/O error, full,
//! vanished) is taken out and its blocks come from the next level (the object store).
//!
//! It also holds blocks *staged* for upload by writeback: written durably, pinned
//! against eviction, uploaded in the background and then kept as ordinary cached blocks.

mod dir;

pub use dir::{CacheDir, DiskDir, Found, MemDir};

use ferrofs_core::cache::index::{Admission, BlockCacheIndex, CacheStats, DirId};
use ferrofs_core::cache::policy::PolicyKind;
use ferrofs_core::chunk::block::{decode_block, stored_len};
use ferrofs_core::chunk::BlockKey;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Cache writes between two looks at a dir's free disk space.
const SPACE_CHECK_EVERY: u64 = 64;

/// What a cached copy adds after the block object: the block's key (slice u64, index
/// u32, len u32, little-endian), a crc32c over the key and the object's segment
/// checksums, and a magic. The block format carries no key, so without this a disk
/// that returns another block's (well-formed) file would pass every checksum.
const KEY_TRAILER: usize = 8 + 4 + 4 + 4 + 4;
const KEY_MAGIC: &[u8; 4] = b"FRK1";

/// Size of the cache file of block `key`.
pub fn cache_file_len(key: &BlockKey) -> u64 {
    stored_len(key.len) + KEY_TRAILER as u64
}

fn key_bytes(key: &BlockKey) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&key.slice.0.to_le_bytes());
    b[8..12].copy_from_slice(&key.index.to_le_bytes());
    b[12..].copy_from_slice(&key.len.to_le_bytes());
    b
}

fn key_crc(key: &[u8], object: &[u8], len: u32) -> u32 {
    let segment_crcs = object.get(len as usize..).unwrap_or_default();
    crc32c::crc32c_append(crc32c::crc32c(key), segment_crcs)
}

/// The cache file of block `key` with object `object`.
fn seal(key: &BlockKey, object: &[u8]) -> Vec<u8> {
    let k = key_bytes(key);
    let mut f = Vec::with_capacity(object.len() + KEY_TRAILER);
    f.extend_from_slice(object);
    f.extend_from_slice(&k);
    f.extend_from_slice(&key_crc(&k, object, key.len).to_le_bytes());
    f.extend_from_slice(KEY_MAGIC);
    f
}

/// The block object in cache file `file` if the file is block `key`'s and whole
/// (`check_key` false: if it is whole).
fn unseal<'a>(key: &BlockKey, file: &'a [u8], check_key: bool) -> Result<&'a [u8], String> {
    if file.len() as u64 != cache_file_len(key) || !file.ends_with(KEY_MAGIC) {
        return Err("torn or not a cache file".into());
    }
    let (object, trailer) = file.split_at(file.len() - KEY_TRAILER);
    if !check_key {
        return Ok(object);
    }
    if trailer[..16] != key_bytes(key) {
        return Err("it holds another block (a misdirected write or read)".into());
    }
    let crc = u32::from_le_bytes(trailer[16..20].try_into().expect("4 bytes"));
    if crc != key_crc(&trailer[..16], object, key.len) {
        return Err("its key checksum does not match".into());
    }
    Ok(object)
}

/// How the cache is set up.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Total bytes over all dirs.
    pub capacity: u64,
    /// Fraction of each disk kept free.
    pub free_ratio: f64,
    pub policy: PolicyKind,
    pub seed: u64,
    /// Check that a cached file holds the block asked for (on by default). Only the
    /// simulator turns it off, to prove its data checker catches misdirected reads.
    pub verify_keys: bool,
}

/// Counters of the shell, beside the index's.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct CacheCounters {
    pub index: CacheStats,
    /// Cached blocks that failed their checksums (or were truncated) on read.
    pub checksum_failures: u64,
    /// I/O errors of cache dirs.
    pub io_errors: u64,
    /// Blocks found in the dirs at start.
    pub restored: u64,
    pub blocks: u64,
    pub bytes: u64,
}

/// The block cache of one client.
pub struct BlockCache {
    dirs: Vec<Box<dyn CacheDir>>,
    verify_keys: bool,
    index: Mutex<BlockCacheIndex>,
    checksum_failures: AtomicU64,
    io_errors: AtomicU64,
    restored: AtomicU64,
    admissions: AtomicU64,
}

impl BlockCache {
    /// A cache over `dirs`, its index rebuilt from what they hold (blocks of the wrong
    /// size and temp files are deleted). Staged blocks found are returned with it, for
    /// the writeback uploader to finish.
    pub fn open(dirs: Vec<Box<dyn CacheDir>>, config: &CacheConfig) -> (BlockCache, Vec<BlockKey>) {
        let names: Vec<String> = dirs.iter().map(|d| d.describe()).collect();
        let index = BlockCacheIndex::new(
            &names,
            config.capacity,
            config.free_ratio,
            config.policy,
            config.seed,
        );
        let cache = BlockCache {
            dirs,
            verify_keys: config.verify_keys,
            index: Mutex::new(index),
            checksum_failures: AtomicU64::new(0),
            io_errors: AtomicU64::new(0),
            restored: AtomicU64::new(0),
            admissions: AtomicU64::new(0),
        };
        let staged = cache.restore();
        for d in 0..cache.dirs.len() {
            cache.check_space(DirId(d));
        }
        (cache, staged)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, BlockCacheIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn restore(&self) -> Vec<BlockKey> {
        let mut scanned = Vec::new();
        for (d, dir) in self.dirs.iter().enumerate() {
            match dir.scan() {
                Ok(mut found) => {
                    found.sort_by_key(|f| (f.age, f.key));
                    self.restored
                        .fetch_add(found.len() as u64, Ordering::Relaxed);
                    scanned.push((DirId(d), found));
                }
                Err(e) => self.fail(DirId(d), "cannot list it", &e),
            }
        }
        // Staged copies first, over every dir: a staged block may be the only copy of
        // written data, so where a block is found twice, the cached copy is the one
        // to delete.
        let mut staged = Vec::new();
        for pass_staged in [true, false] {
            for (dir, found) in &scanned {
                let part = found.iter().filter(|f| f.staged == pass_staged);
                let evict = self
                    .index()
                    .restore(*dir, part.clone().map(|f| (f.key, f.size, f.staged)));
                for k in &evict {
                    if let Err(e) = self.dirs[dir.0].remove(k, pass_staged) {
                        self.fail(*dir, "a delete failed", &e);
                        break;
                    }
                }
                if pass_staged {
                    staged.extend(part.map(|f| f.key).filter(|k| !evict.contains(k)));
                }
            }
        }
        staged
    }

    /// The verified data of a cached block; `None` on a miss. A damaged or vanished
    /// copy is dropped (and counted) and reads as a miss.
    pub fn get(&self, key: &BlockKey) -> Option<Vec<u8>> {
        let (dir, staged) = self.index().lookup(key)?;
        match self.dirs[dir.0].read(key, staged) {
            Ok(mut file) => match verify(key, &file, self.verify_keys) {
                Ok(()) => {
                    file.truncate(key.len as usize);
                    Some(file)
                }
                Err(e) => {
                    self.checksum_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        dir = %self.dirs[dir.0].describe(),
                        block = %key.object_name(),
                        "cached block is damaged ({e}); dropped, reading it from the object store"
                    );
                    if !staged {
                        self.index().drop_damaged(key);
                        let _ = self.dirs[dir.0].remove(key, false);
                    }
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.dirs[dir.0].exists() {
                    self.fail(dir, "it vanished", &e);
                } else if !staged {
                    self.index().drop_damaged(key);
                }
                None
            }
            Err(e) => {
                self.fail(dir, "a read failed", &e);
                None
            }
        }
    }

    /// Whether `key` is staged for upload (writeback) and not uploaded yet.
    pub fn is_staged(&self, key: &BlockKey) -> bool {
        matches!(self.index().dir_of(key), Some((_, true)))
    }

    /// Whether any block of `slice` is staged and not uploaded yet.
    pub fn slice_is_staged(&self, slice: ferrofs_core::SliceId) -> bool {
        self.index().slice_has_pinned(slice)
    }

    /// Whether `key` is cached (for `warmup --check`; counts nothing).
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.index().contains(key)
    }

    /// Keeps a verified block object fetched from the store, if the index admits it.
    pub fn put(&self, key: &BlockKey, object: &[u8]) {
        // Looked at every so many writes, not admissions: a dir short of space admits
        // nothing, and must still be seen to recover.
        let n = self.admissions.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(SPACE_CHECK_EVERY) {
            let dir = self.index().dir_for(key);
            if let Some(dir) = dir {
                self.check_space(dir);
            }
        }
        let file = seal(key, object);
        let Some(Admission { dir, evict }) = self.index().admit(*key, file.len() as u64) else {
            return;
        };
        self.delete(dir, &evict);
        if let Err(e) = self.dirs[dir.0].write(key, &file, false) {
            self.index().remove(key);
            if e.raw_os_error() == Some(libc::ENOSPC) {
                // A full disk is not a broken one: stop admitting until space returns.
                let _ = self.dirs[dir.0].remove(key, false);
                self.index().mark_short_of_space(dir);
                tracing::warn!(dir = %self.dirs[dir.0].describe(), "cache disk full; not caching until space frees up");
                return;
            }
            self.fail(dir, "a write failed", &e);
        }
    }

    /// Stages a block for writeback: durably written to a cache dir and pinned until
    /// [`Self::uploaded`]. An error means it is not staged (the caller uploads it itself).
    pub fn stage(&self, key: &BlockKey, object: &[u8]) -> io::Result<()> {
        let file = seal(key, object);
        let admission = self.index().admit_pinned(*key, file.len() as u64);
        let Some(Admission { dir, evict }) = admission else {
            return Err(io::Error::other("no cache dir is left to stage blocks in"));
        };
        self.delete(dir, &evict);
        if let Err(e) = self.dirs[dir.0].write(key, &file, true) {
            self.index().remove(key);
            self.fail(dir, "staging a block failed", &e);
            return Err(e);
        }
        Ok(())
    }

    /// The stored object of a staged block, verified, for its upload. A damaged copy
    /// is an `InvalidData` error: uploading it would only turn it into a corrupt object.
    pub fn read_staged(&self, key: &BlockKey) -> io::Result<Vec<u8>> {
        let dir = self.index().dir_of(key);
        let Some((dir, true)) = dir else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let mut file = match self.dirs[dir.0].read(key, true) {
            Ok(f) => f,
            Err(e) => {
                self.fail(dir, "reading a staged block failed", &e);
                return Err(e);
            }
        };
        verify(key, &file, self.verify_keys)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        file.truncate(file.len() - KEY_TRAILER);
        Ok(file)
    }

    /// Forgets a staged block that cannot be uploaded (its copy is damaged).
    pub fn drop_staged(&self, key: &BlockKey) {
        let found = self.index().dir_of(key);
        if let Some((dir, true)) = found {
            self.index().drop_damaged(key);
            let _ = self.dirs[dir.0].remove(key, true);
        }
    }

    /// Forgets a staged block that nothing will ever refer to (its commit never landed):
    /// no data is lost, so it is not counted as a lost staged block.
    pub fn discard_staged(&self, key: &BlockKey) {
        let found = self.index().dir_of(key);
        if let Some((dir, true)) = found {
            self.index().remove(key);
            let _ = self.dirs[dir.0].remove(key, true);
        }
    }

    /// A staged block is in the object store: it becomes an ordinary cached block.
    pub fn uploaded(&self, key: &BlockKey) {
        let Some((dir, true)) = self.index().dir_of(key) else {
            return;
        };
        if let Err(e) = self.dirs[dir.0].unstage(key) {
            // The object is safe in the store; just stop caching this block.
            self.index().remove(key);
            let _ = self.dirs[dir.0].remove(key, true);
            tracing::warn!(block = %key.object_name(), "cannot move an uploaded block into the cache: {e}");
            return;
        }
        let evict = self.index().unpin(key);
        self.delete(dir, &evict);
    }

    /// Drops `key` from the cache (`warmup --evict`).
    pub fn evict(&self, key: &BlockKey) {
        let mut index = self.index();
        if index.dir_of(key).is_none_or(|(_, staged)| staged) {
            return; // a staged block stays until it is uploaded
        }
        let removed = index.remove(key);
        drop(index);
        if let Some(dir) = removed {
            if let Err(e) = self.dirs[dir.0].remove(key, false) {
                self.fail(dir, "a delete failed", &e);
            }
        }
    }

    fn delete(&self, dir: DirId, keys: &[BlockKey]) {
        for k in keys {
            if let Err(e) = self.dirs[dir.0].remove(k, false) {
                self.fail(dir, "a delete failed", &e);
                return;
            }
        }
    }

    fn check_space(&self, dir: DirId) {
        match self.dirs[dir.0].space() {
            Ok(Some((free, total))) => {
                let evict = self.index().set_disk_space(dir, free, total);
                self.delete(dir, &evict);
            }
            Ok(None) => {}
            Err(e) => self.fail(dir, "cannot read its free space", &e),
        }
    }

    /// Takes a failed dir out of the cache; its blocks now come from the object store.
    fn fail(&self, dir: DirId, what: &str, e: &io::Error) {
        self.io_errors.fetch_add(1, Ordering::Relaxed);
        let mut index = self.index();
        if !index.is_alive(dir) {
            return;
        }
        let staged_before = index.stats().staged_lost;
        let lost = index.dir_failed(dir);
        let staged_lost = index.stats().staged_lost - staged_before;
        drop(index);
        tracing::error!(
            dir = %self.dirs[dir.0].describe(),
            blocks = lost.len(),
            "cache dir taken out until the next mount: {what}: {e}"
        );
        if staged_lost > 0 {
            tracing::error!(
                dir = %self.dirs[dir.0].describe(),
                blocks = staged_lost,
                "staged blocks not yet uploaded were lost with the dir: files written with --writeback lost data"
            );
        }
    }

    pub fn counters(&self) -> CacheCounters {
        let index = self.index();
        let (blocks, bytes) = index.usage();
        CacheCounters {
            index: index.stats(),
            checksum_failures: self.checksum_failures.load(Ordering::Relaxed),
            io_errors: self.io_errors.load(Ordering::Relaxed),
            restored: self.restored.load(Ordering::Relaxed),
            blocks,
            bytes,
        }
    }
}

/// Checks a cache file: it is `key`'s, whole, and its block verifies.
fn verify(key: &BlockKey, file: &[u8], check_key: bool) -> Result<(), String> {
    let object = unseal(key, file, check_key)?;
    decode_block(key.len, object)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
