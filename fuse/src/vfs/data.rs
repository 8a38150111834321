//! The data path of an open file: buffered writes, flushes that upload slices and
//! commit them, reads that assemble pieces of block objects, compaction, and gc.

use super::handles::OpenFile;
use super::Vfs;
use ferrofs_core::chunk::block::{decode_block, encode_block, BlockError};
use ferrofs_core::chunk::{
    blocks_of_slice, compaction_plan, read_plan, BlockKey, ReadPiece, SliceRef, WriteBuffer,
};
use ferrofs_core::meta::COMPACT_THRESHOLD;
use ferrofs_core::{
    Attr, ChunkIndex, Ctx, Errno, Ino, Result, SetAttr, SliceId, Timespec, CHUNK_SIZE,
    FILE_SIZE_MAX,
};
use ferrofs_s3_backend::StoreError;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// What an open inode holds beyond its committed metadata.
#[derive(Default)]
pub struct FileState {
    buffer: WriteBuffer,
    /// Time of the newest buffered write: the mtime the flush will commit.
    last_write: Option<Timespec>,
}

impl OpenFile {
    /// Shows buffered length and mtime on top of committed attributes.
    pub(super) fn overlay_attr(&self, attr: &mut Attr) {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        if st.buffer.is_empty() {
            return;
        }
        attr.size = attr.size.max(st.buffer.end());
        if let Some(t) = st.last_write {
            attr.mtime = attr.mtime.max(t);
            attr.ctime = attr.ctime.max(t);
        }
    }

    pub(super) fn write(&self, vfs: &Vfs, offset: u64, data: &[u8]) -> Result<u32> {
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > FILE_SIZE_MAX {
            return Err(Errno::EFBIG);
        }
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let before = st.buffer.buffered_bytes();
        st.buffer.write(offset, data);
        st.last_write = Some(vfs.now());
        self.account(before, st.buffer.buffered_bytes());
        // A chunk that is completely written will not change again soon: upload it now
        // instead of holding 64 MiB per file in memory.
        let first = (offset / CHUNK_SIZE) as u32;
        let last = (end.saturating_sub(1) / CHUNK_SIZE) as u32;
        for idx in first..=last {
            if st.buffer.chunk_is_full(ChunkIndex(idx)) {
                self.flush_chunk(vfs, &mut st, ChunkIndex(idx))?;
            }
        }
        Ok(data.len() as u32)
    }

    pub(super) fn flush(&self, vfs: &Vfs) -> Result<()> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        self.flush_locked(vfs, &mut st)
    }

    fn flush_locked(&self, vfs: &Vfs, st: &mut FileState) -> Result<()> {
        for idx in st.buffer.dirty_chunks() {
            self.flush_chunk(vfs, st, idx)?;
        }
        st.last_write = None;
        Ok(())
    }

    /// Uploads and commits the buffered extents of one chunk. On failure the extents not
    /// yet committed go back into the buffer: nothing acknowledged is dropped.
    fn flush_chunk(&self, vfs: &Vfs, st: &mut FileState, idx: ChunkIndex) -> Result<()> {
        let before = st.buffer.buffered_bytes();
        let extents = st.buffer.take_chunk(idx);
        let mtime = st.last_write.unwrap_or_else(|| vfs.now());
        let mut result = Ok(());
        let mut slices_in_chunk = 0;
        let mut failed_at = extents.len();
        for (i, (pos, data)) in extents.iter().enumerate() {
            match commit_slice(vfs, self.ino(), idx, *pos, data, mtime) {
                Ok(n) => slices_in_chunk = n,
                Err(e) => {
                    result = Err(e);
                    failed_at = i;
                    break;
                }
            }
        }
        for (pos, data) in &extents[failed_at..] {
            st.buffer
                .write(idx.0 as u64 * CHUNK_SIZE + *pos as u64, data);
        }
        self.account(before, st.buffer.buffered_bytes());
        result?;
        if slices_in_chunk > COMPACT_THRESHOLD {
            if let Err(e) = compact(vfs, self.ino(), idx) {
                // Compaction is an optimisation: the chunk reads correctly without it.
                tracing::warn!(ino = self.ino().0, chunk = idx.0, "compaction failed: {e}");
            }
        }
        Ok(())
    }

    fn account(&self, before: u64, after: u64) {
        if after >= before {
            self.buffered_total
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.buffered_total
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    pub(super) fn read(&self, vfs: &Vfs, offset: u64, size: u32) -> Result<Vec<u8>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let attr = vfs.meta.getattr(self.ino())?;
        let len = attr.size.max(st.buffer.end());
        if offset >= len || size == 0 {
            return Ok(Vec::new());
        }
        let end = len.min(offset + size as u64);
        let mut buf = read_range(vfs, self.ino(), offset, end, &self.last_block)?;
        st.buffer.read_overlay(offset, &mut buf);
        Ok(buf)
    }

    /// `setattr` on an open inode: buffered bytes are flushed first so that a new
    /// length or mtime is applied on top of them, not overwritten by a later flush.
    pub(super) fn setattr(&self, vfs: &Vfs, ctx: &Ctx, set: &SetAttr) -> Result<Attr> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if !st.buffer.is_empty() {
            self.flush_locked(vfs, &mut st)?;
        }
        vfs.meta.setattr(ctx, self.ino(), set, vfs.now())
    }
}

/// Reads committed bytes `[offset, end)` of a file from its chunks.
fn read_range(vfs: &Vfs, ino: Ino, offset: u64, end: u64, last: &LastBlock) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity((end - offset) as usize);
    let mut pos = offset;
    while pos < end {
        let idx = ChunkIndex((pos / CHUNK_SIZE) as u32);
        let in_chunk = (pos % CHUNK_SIZE) as u32;
        let n = (end - pos).min(CHUNK_SIZE - in_chunk as u64) as u32;
        read_chunk_range(vfs, ino, idx, in_chunk, n, &mut out, last)?;
        pos += n as u64;
    }
    Ok(out)
}

/// Appends bytes `[start, start+len)` of chunk `idx` to `out`. A reader plans from the
/// slice list it read; if meanwhile the file was rewritten, truncated or compacted and gc
/// deleted the objects it planned to read, the list has changed: read again with the new
/// list. Only an object missing under an unchanged list is damage (EIO).
fn read_chunk_range(
    vfs: &Vfs,
    ino: Ino,
    idx: ChunkIndex,
    start: u32,
    len: u32,
    out: &mut Vec<u8>,
    last: &LastBlock,
) -> Result<()> {
    const ATTEMPTS: usize = 8;
    let mut slices = vfs.meta.read_chunk(ino, idx)?;
    for _ in 0..ATTEMPTS {
        let mut bytes = Vec::with_capacity(len as usize);
        match read_pieces(vfs, &slices, start, len, &mut bytes, last) {
            Ok(()) => {
                out.extend_from_slice(&bytes);
                return Ok(());
            }
            Err(Errno::ENOENT) => {
                let current = vfs.meta.read_chunk(ino, idx)?;
                if current == slices {
                    break;
                }
                slices = current;
            }
            Err(e) => return Err(e),
        }
    }
    tracing::error!(
        ino = ino.0,
        chunk = idx.0,
        "an object the metadata refers to is missing from the object store"
    );
    Err(Errno::EIO)
}

/// Appends chunk bytes `[start, start+len)` described by `slices` to `out`. A missing
/// object is ENOENT (the caller decides whether that is damage).
fn read_pieces(
    vfs: &Vfs,
    slices: &[SliceRef],
    start: u32,
    len: u32,
    out: &mut Vec<u8>,
    last: &LastBlock,
) -> Result<()> {
    let block_size = vfs.meta.format_info().block_size;
    for piece in read_plan(slices, start, len, block_size) {
        match piece {
            ReadPiece::Zero { len } => out.resize(out.len() + len as usize, 0),
            ReadPiece::Block { key, offset, len } => {
                let block = whole_block(vfs, &key, last)?;
                out.extend_from_slice(&block[offset as usize..(offset + len) as usize]);
            }
        }
    }
    Ok(())
}

/// The last block object an open file read, verified. Block objects never change once
/// written (a slice id is never reused), so a cached block is valid for as long as a slice
/// list names it: a sequential reader fetches each block with one GET and reads the rest
/// of it from memory, and a whole small file is one GET.
pub(super) type LastBlock = Mutex<Option<(BlockKey, Arc<Vec<u8>>)>>;

/// The verified data of block `key`, from `last` or fetched whole (and kept in `last`).
fn whole_block(vfs: &Vfs, key: &BlockKey, last: &LastBlock) -> Result<Arc<Vec<u8>>> {
    if let Some((k, data)) = &*last.lock().unwrap_or_else(|e| e.into_inner()) {
        if k == key {
            return Ok(data.clone());
        }
    }
    let name = key.object_name();
    let mut damage = None;
    // A mismatch may have been damage in flight: fetch once more before calling the
    // object corrupt.
    for _ in 0..2 {
        let object = vfs.store.get(&name, 0, None).map_err(|e| match e {
            StoreError::NotFound(_) => Errno::ENOENT,
            e => {
                tracing::error!(object = %name, "read failed: {e}");
                Errno::EIO
            }
        })?;
        let data = if vfs.config.verify_checksums {
            match decode_block(key.len, &object) {
                Ok(d) => d.to_vec(),
                Err(e) => {
                    tracing::warn!(object = %name, "{e}; reading it again");
                    damage = Some(e);
                    continue;
                }
            }
        } else {
            match object.get(..key.len as usize) {
                Some(d) => d.to_vec(),
                None => {
                    damage = Some(BlockError::Truncated);
                    continue;
                }
            }
        };
        let data = Arc::new(data);
        *last.lock().unwrap_or_else(|e| e.into_inner()) = Some((*key, data.clone()));
        return Ok(data);
    }
    tracing::error!(object = %name, "read failed: {}", damage.expect("two attempts failed"));
    Err(Errno::EIO)
}

/// Uploads `data` as a new slice and commits it at `pos` of chunk `idx`. Returns the
/// number of slices the chunk now has.
fn commit_slice(
    vfs: &Vfs,
    ino: Ino,
    idx: ChunkIndex,
    pos: u32,
    data: &[u8],
    mtime: Timespec,
) -> Result<usize> {
    let id = vfs.meta.new_slice_id()?;
    upload_slice(vfs, id, data)?;
    let slice = SliceRef::new(pos, id, data.len() as u32);
    let outcome = vfs.meta.write_slice(ino, idx, slice, mtime)?;
    Ok(outcome.slices_in_chunk)
}

/// Writes the block objects of a slice, several in parallel.
///
/// With `max_uploads == 1`, or a single block, the puts run inline on the caller's
/// thread: no thread is spawned, which the simulator relies on (it schedules every
/// store call of a client on that client's thread).
fn upload_slice(vfs: &Vfs, id: SliceId, data: &[u8]) -> Result<()> {
    let block_size = vfs.meta.format_info().block_size;
    let blocks = blocks_of_slice(id, data.len() as u32, block_size);
    let put = |key: &BlockKey| {
        let start = key.index as usize * block_size as usize;
        let name = key.object_name();
        vfs.store
            .put(&name, &encode_block(&data[start..start + key.len as usize]))
            .map_err(|e| {
                tracing::error!(object = %name, "upload failed: {e}");
                Errno::EIO
            })
    };
    let parallel = vfs.config.max_uploads.max(1);
    if parallel == 1 || blocks.len() <= 1 {
        return blocks.iter().try_for_each(put);
    }
    for group in blocks.chunks(parallel) {
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let tasks: Vec<_> = group.iter().map(|key| s.spawn(|| put(key))).collect();
            tasks
                .into_iter()
                .map(|t| t.join().unwrap_or(Err(Errno::EIO)))
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>>>()?;
    }
    Ok(())
}

/// Rewrites a chunk with a long slice list as one slice.
fn compact(vfs: &Vfs, ino: Ino, idx: ChunkIndex) -> Result<()> {
    let slices = vfs.meta.read_chunk(ino, idx)?;
    let Some(plan) = compaction_plan(&slices) else {
        return Ok(());
    };
    // Bytes past the end of the file are never read: don't rewrite them.
    let size = vfs.meta.getattr(ino)?.size;
    let chunk_start = idx.0 as u64 * CHUNK_SIZE;
    let limit = size.saturating_sub(chunk_start).min(CHUNK_SIZE) as u32;
    let end = (plan.start + plan.len).min(limit.max(plan.start));
    let len = end - plan.start;
    let replacement = if len == 0 {
        Vec::new()
    } else {
        let mut data = Vec::with_capacity(len as usize);
        read_pieces(
            vfs,
            &slices,
            plan.start,
            len,
            &mut data,
            &LastBlock::default(),
        )?;
        let id = vfs.meta.new_slice_id()?;
        upload_slice(vfs, id, &data)?;
        vec![SliceRef::new(plan.start, id, len)]
    };
    vfs.meta.compact_chunk(ino, idx, &slices, &replacement)?;
    Ok(())
}

/// Deletes the objects of slices in the gc queue, then their queue entries.
pub(super) fn collect_garbage(vfs: &Vfs, limit: usize) -> Result<usize> {
    let pending = vfs.meta.gc_pending(limit)?;
    if pending.is_empty() {
        return Ok(0);
    }
    // The transactions that queued these slices (an unlink, a truncate, a compaction)
    // must be durable before their objects go: if the metadata engine lost them in a
    // crash, the slices would be referenced again, with their objects deleted.
    vfs.meta.sync()?;
    let block_size = vfs.meta.format_info().block_size;
    let mut done = Vec::with_capacity(pending.len());
    for (id, size) in pending {
        let mut ok = true;
        for key in blocks_of_slice(id, size, block_size) {
            if let Err(e) = vfs.store.delete(&key.object_name()) {
                tracing::warn!(object = %key.object_name(), "delete failed, will retry: {e}");
                ok = false;
                break;
            }
        }
        if ok {
            done.push(id);
        }
    }
    vfs.meta.gc_done(&done)?;
    Ok(done.len())
}
