//! Warm-up: filling, checking or emptying the block cache for whole files, for
//! `ferrofs warmup` through the running mount: the local cache, or in a cache group the
//! cache of each block's owner.

use super::Vfs;
use ferrofs_core::cache::group::Route;
use ferrofs_core::cache::peer_wire::Op;
use ferrofs_core::chunk::block::encode_block;
use ferrofs_core::chunk::{read_plan, BlockKey, ReadPiece};
use ferrofs_core::{ChunkIndex, Errno, Ino, Result, CHUNK_SIZE};
use std::collections::BTreeSet;

/// What warm-up does to a file's blocks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WarmMode {
    /// Fetch every block that is not cached into the cache.
    Fill,
    /// Only count how much is cached.
    Check,
    /// Drop the file's blocks from the cache.
    Evict,
}

/// What warm-up found for one file.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Warmed {
    /// Bytes of the file's blocks.
    pub bytes: u64,
    /// Of those, bytes cached when warm-up ends (after `Fill`, all unless errors).
    pub cached: u64,
    /// Bytes this warm-up brought into the cache.
    pub fetched: u64,
}

impl Vfs {
    /// The distinct blocks holding a file's committed data.
    pub fn blocks_of_file(&self, ino: Ino) -> Result<Vec<BlockKey>> {
        let size = self.meta.getattr(ino)?.size;
        let mut keys = BTreeSet::new();
        let chunks = size.div_ceil(CHUNK_SIZE);
        for c in 0..chunks {
            let idx = ChunkIndex(c as u32);
            let len = (size - c * CHUNK_SIZE).min(CHUNK_SIZE) as u32;
            let slices = self.meta.read_chunk(ino, idx)?;
            for piece in read_plan(&slices, 0, len, self.block_size()) {
                if let ReadPiece::Block { key, .. } = piece {
                    keys.insert(key);
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Warms one block: `Fill` fetches it into the cache unless it is there. In a cache
    /// group the block's owner does it in its own cache (warm once, read anywhere); a
    /// block this member owns is warmed here.
    pub fn warm_block(&self, key: &BlockKey, mode: WarmMode) -> Result<Warmed> {
        let bytes = key.len as u64;
        if let Some(g) = self.blocks.group() {
            if let Route::Peer { id, .. } = g.route(key) {
                let op = match mode {
                    WarmMode::Fill => Op::Warm,
                    WarmMode::Check => Op::Check,
                    WarmMode::Evict => Op::Evict,
                };
                let w = match g.warm(key, op) {
                    Some(Ok(w)) => w,
                    Some(Err(e)) => {
                        tracing::warn!("warm-up of block {key:?}: {e}");
                        return Err(Errno::EIO);
                    }
                    None => {
                        tracing::warn!("warm-up of block {key:?}: its owner {id} did not answer");
                        return Err(Errno::EIO);
                    }
                };
                let n = |b: bool| if b { bytes } else { 0 };
                return Ok(Warmed {
                    bytes,
                    cached: n(w.cached),
                    fetched: n(w.fetched),
                });
            }
        }
        let cache = self.cache.as_ref().ok_or(Errno::EOPNOTSUPP)?;
        let cached = cache.contains(key);
        let fetched = match (mode, cached) {
            (WarmMode::Fill, false) => {
                let data = self.blocks.block(key)?;
                if !cache.contains(key) {
                    // It was in memory already (read ahead, or just read), not cached.
                    cache.put(key, &encode_block(&data));
                }
                bytes
            }
            (WarmMode::Evict, true) => {
                cache.evict(key);
                0
            }
            _ => 0,
        };
        let cached = cache.contains(key);
        Ok(Warmed {
            bytes,
            cached: if cached { bytes } else { 0 },
            fetched,
        })
    }
}
