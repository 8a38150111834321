//! The read path of an open file: committed bytes assembled from block objects (whole
//! blocks for sequential readers, verified ranges for small random reads), readahead in
//! the background, and this client's uncommitted bytes on top.

use super::handles::OpenFile;
use super::Vfs;
use ferrofs_core::chunk::{read_plan, ReadPiece, SliceRef};
use ferrofs_core::{ChunkIndex, Errno, Result, CHUNK_SIZE};
use std::ops::Range;
use std::sync::Arc;

/// A random read of at least this part of a block fetches the whole block.
const WHOLE_BLOCK_FRACTION: u32 = 4;

impl OpenFile {
    pub(super) fn read(&self, vfs: &Vfs, offset: u64, size: u32) -> Result<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let want_end = offset.saturating_add(size as u64);
        // Whether the reader is sequential: decided once, even if the read is retried.
        let mut sequential = None;
        // The committed bytes and the uncommitted ones on top must be of one moment:
        // `consistent` reads again if this client committed in between.
        self.consistent(
            || {
                let committed = vfs.committed_attr(self.ino())?.size;
                if offset >= committed {
                    return Ok((committed, Vec::new()));
                }
                let end = want_end.min(committed);
                let seq = *sequential.get_or_insert_with(|| {
                    let advice = self
                        .readahead
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .on_read(offset, end - offset, committed);
                    if advice.sequential {
                        // Ask for what comes next first, so it arrives while this
                        // read waits.
                        self.prefetch_range(vfs, advice.prefetch);
                    }
                    advice.sequential
                });
                let buf = self.read_range(vfs, offset, end, seq)?;
                if !seq {
                    // A small random read: with --prefetch N, the whole block it fell
                    // in (and the N-1 after it) comes in the background, for the
                    // reads nearby.
                    let bs = vfs.block_size() as u64;
                    let start = offset - offset % bs;
                    let n = vfs.config.prefetch_blocks as u64;
                    self.prefetch_range(vfs, start..(start + n * bs).min(committed));
                }
                Ok((committed, buf))
            },
            |(committed, mut buf), st| {
                let len = committed.max(st.end());
                if offset >= len {
                    return Vec::new();
                }
                buf.resize((len.min(want_end) - offset) as usize, 0);
                st.overlay(offset, &mut buf);
                buf
            },
        )
    }

    /// The slice list of chunk `idx`: cached while fresh, else read (and cached).
    fn slices(&self, vfs: &Vfs, idx: ChunkIndex) -> Result<Arc<Vec<SliceRef>>> {
        let now = vfs.now_ns();
        let ttl = vfs.slice_ttl();
        if let Some((s, at)) = self
            .chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&idx)
        {
            if now.saturating_sub(*at) < ttl && now >= *at {
                return Ok(s.clone());
            }
        }
        self.reread_slices(vfs, idx)
    }

    fn reread_slices(&self, vfs: &Vfs, idx: ChunkIndex) -> Result<Arc<Vec<SliceRef>>> {
        let now = vfs.now_ns();
        let seen = self.changes();
        let s = Arc::new(vfs.meta.read_chunk(self.ino(), idx)?);
        if vfs.slice_ttl() > 0 {
            let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
            // A commit of this client since the read may have made it stale: then it
            // is used for this read (which `consistent` retries) but not kept.
            if self.changes() == seen {
                chunks.insert(idx, (s.clone(), now));
            }
        }
        Ok(s)
    }

    /// Starts background fetches of the blocks holding committed bytes `range`.
    fn prefetch_range(&self, vfs: &Vfs, range: Range<u64>) {
        if range.is_empty() || !vfs.blocks.prefetches() {
            return;
        }
        for_each_chunk(range, |idx, start, len| {
            let Ok(slices) = self.slices(vfs, idx) else {
                return;
            };
            for piece in read_plan(&slices, start, len, vfs.block_size()) {
                if let ReadPiece::Block { key, .. } = piece {
                    vfs.blocks.prefetch(key);
                }
            }
        });
    }

    /// Reads committed bytes `[offset, end)` from the chunks.
    fn read_range(&self, vfs: &Vfs, offset: u64, end: u64, whole: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut result = Ok(());
        for_each_chunk(offset..end, |idx, start, len| {
            if result.is_ok() {
                result = self.read_chunk_range(vfs, idx, start, len, whole, &mut out);
            }
        });
        result.map(|()| out)
    }

    /// Appends bytes `[start, start+len)` of chunk `idx` to `out`. A reader plans from
    /// the slice list it has; if meanwhile the file was rewritten, truncated or
    /// compacted and gc deleted the objects it planned to read, the list has changed:
    /// read it again and re-plan. Only an object missing under an unchanged list is
    /// damage (EIO).
    fn read_chunk_range(
        &self,
        vfs: &Vfs,
        idx: ChunkIndex,
        start: u32,
        len: u32,
        whole: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        const ATTEMPTS: usize = 8;
        let mut slices = self.slices(vfs, idx)?;
        for _ in 0..ATTEMPTS {
            let mut bytes = Vec::with_capacity(len as usize);
            match read_pieces(vfs, &slices, start, len, whole, &mut bytes) {
                Ok(()) => {
                    out.extend_from_slice(&bytes);
                    return Ok(());
                }
                Err(Errno::ENOENT) => {
                    let current = self.reread_slices(vfs, idx)?;
                    if current == slices {
                        break;
                    }
                    slices = current;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::error!(
            ino = self.ino().0,
            chunk = idx.0,
            "an object the metadata refers to is missing from the object store"
        );
        Err(Errno::EIO)
    }
}

/// Calls `f(chunk, start in chunk, len)` for the pieces of `range` in each chunk.
fn for_each_chunk(range: Range<u64>, mut f: impl FnMut(ChunkIndex, u32, u32)) {
    let mut pos = range.start;
    while pos < range.end {
        let idx = ChunkIndex((pos / CHUNK_SIZE) as u32);
        let in_chunk = (pos % CHUNK_SIZE) as u32;
        let n = (range.end - pos).min(CHUNK_SIZE - in_chunk as u64) as u32;
        f(idx, in_chunk, n);
        pos += n as u64;
    }
}

/// Appends chunk bytes `[start, start+len)` described by `slices` to `out`, fetching
/// whole blocks when `whole` (sequential readers, compaction) or when a good part of the
/// block is wanted, else just the verified range. A missing object is ENOENT (the
/// caller decides whether that is damage).
pub(super) fn read_pieces(
    vfs: &Vfs,
    slices: &[SliceRef],
    start: u32,
    len: u32,
    whole: bool,
    out: &mut Vec<u8>,
) -> Result<()> {
    for piece in read_plan(slices, start, len, vfs.block_size()) {
        match piece {
            ReadPiece::Zero { len } => out.resize(out.len() + len as usize, 0),
            ReadPiece::Block { key, offset, len } => {
                if whole || len >= key.len / WHOLE_BLOCK_FRACTION {
                    let block = vfs.blocks.block(&key)?;
                    out.extend_from_slice(&block[offset as usize..(offset + len) as usize]);
                } else {
                    out.extend_from_slice(&vfs.blocks.range(&key, offset, len)?);
                }
            }
        }
    }
    Ok(())
}
