//! The write path of an open file: buffered writes, slices uploading in the background,
//! commits in order, compaction.
//!
//! A write lands in the file's [`WriteBuffer`]. A chunk that is written completely (and
//! everything at `close`, `fsync` or when the client's buffer is full) becomes a
//! *pending slice*: it gets a slice id, its blocks are handed to the upload workers, and
//! the writer carries on. Pending slices are committed to the metadata engine strictly
//! in the order they were cut, each only after all of its blocks are stored, so an
//! object is always written before metadata refers to it and newer bytes win over older
//! ones exactly as they did in the buffer. `close`/`fsync` wait until every pending
//! slice is committed. A failed upload keeps its slice (and its bytes) pending; the next
//! flush uploads it again, so nothing that was written is dropped on an error.

use super::handles::OpenFile;
use super::pool::Task;
use super::Vfs;
use ferrofs_core::chunk::block::encode_block;
use ferrofs_core::chunk::{blocks_of_slice, compaction_plan, SliceRef, WriteBuffer};
use ferrofs_core::meta::COMPACT_THRESHOLD;
use ferrofs_core::{
    Attr, ChunkIndex, Ctx, Errno, Ino, Result, SetAttr, SliceId, Timespec, CHUNK_SIZE,
    FILE_SIZE_MAX,
};
use ferrofs_s3_backend::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What an open inode holds beyond its committed metadata.
#[derive(Default)]
pub struct FileState {
    buffer: WriteBuffer,
    /// Cut from the buffer, uploading or uploaded, not yet committed; oldest first.
    pending: VecDeque<PendingSlice>,
    /// Time of the newest buffered write: the mtime the flush will commit.
    last_write: Option<Timespec>,
}

/// A slice on its way to the object store.
struct PendingSlice {
    chunk: ChunkIndex,
    pos: u32,
    id: SliceId,
    data: Arc<Vec<u8>>,
    mtime: Timespec,
    /// Done when every block is stored; `true` if any was staged (writeback) instead.
    upload: Arc<Task<Result<bool>>>,
}

impl PendingSlice {
    fn file_range(&self) -> (u64, u64) {
        let start = self.chunk.0 as u64 * CHUNK_SIZE + self.pos as u64;
        (start, start + self.data.len() as u64)
    }
}

impl FileState {
    /// The file is at least this long with what this client has not committed yet.
    pub(super) fn end(&self) -> u64 {
        let pending = self.pending.iter().map(|p| p.file_range().1).max();
        self.buffer.end().max(pending.unwrap_or(0))
    }

    fn is_clean(&self) -> bool {
        self.buffer.is_empty() && self.pending.is_empty()
    }

    /// Copies the uncommitted bytes of `[offset, offset+buf.len())` over `buf`: pending
    /// slices oldest first, then the buffer, so the newest bytes win.
    pub(super) fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        for p in &self.pending {
            let (s, e) = p.file_range();
            let (from, to) = (s.max(offset), e.min(end));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&p.data[(from - s) as usize..(to - s) as usize]);
            }
        }
        self.buffer.read_overlay(offset, buf);
    }

    fn uncommitted_bytes(&self) -> u64 {
        let pending: u64 = self.pending.iter().map(|p| p.data.len() as u64).sum();
        self.buffer.buffered_bytes() + pending
    }
}

/// Optimistic tries of [`OpenFile::consistent`] before it holds commits off.
const OPTIMISTIC_READS: usize = 4;

impl OpenFile {
    /// Runs `read` (of committed state: attributes, slice lists, block data) and then
    /// `finish` with the uncommitted state, with no commit of this client in between.
    /// Otherwise a read could see the old committed length and then find the new bytes
    /// gone from the overlay (committed meanwhile): a file that was just written would
    /// read as empty. Optimistic first: if a commit landed while `read` ran, it runs
    /// again; after a few tries it runs with commits held off.
    pub(super) fn consistent<T, R>(
        &self,
        mut read: impl FnMut() -> Result<T>,
        finish: impl FnOnce(T, &FileState) -> R,
    ) -> Result<R> {
        for _ in 0..OPTIMISTIC_READS {
            let seen = self.changes();
            let got = read()?;
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            // Commits count themselves under the state's write lock: holding the read
            // lock with an unchanged count, nothing was committed since `seen`.
            if self.changes() == seen {
                return Ok(finish(got, &st));
            }
        }
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let got = read()?;
        Ok(finish(got, &st))
    }

    /// Shows uncommitted length and mtime on top of committed attributes (read
    /// consistently with them by [`OpenFile::consistent`]).
    pub(super) fn overlay_attr(st: &FileState, attr: &mut Attr) {
        if st.is_clean() {
            return;
        }
        attr.size = attr.size.max(st.end());
        let newest = st
            .pending
            .iter()
            .map(|p| p.mtime)
            .chain(st.last_write)
            .max();
        if let Some(t) = newest {
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
        // Over the client's buffer limit: this writer first waits for its own oldest
        // slices. An upload error stops the write here, before anything is buffered.
        while vfs.handles.buffered_bytes() > vfs.config.buffer_size {
            let before = st.uncommitted_bytes();
            let waited = if !st.pending.is_empty() {
                self.commit_front(vfs, &mut st)
            } else if !st.buffer.is_empty() {
                self.cut_all(vfs, &mut st)
            } else {
                break;
            };
            self.account(before, st.uncommitted_bytes());
            waited?;
        }
        let before = st.uncommitted_bytes();
        st.buffer.write(offset, data);
        st.last_write = Some(vfs.now());
        // A chunk that is completely written will not change again soon: send it off
        // now instead of holding 64 MiB per file in memory. Errors here lose nothing
        // (the bytes stay buffered) and surface at the next flush.
        let first = (offset / CHUNK_SIZE) as u32;
        let last = (end.saturating_sub(1) / CHUNK_SIZE) as u32;
        for idx in first..=last {
            if st.buffer.chunk_is_full(ChunkIndex(idx)) {
                let _ = self.cut_chunk(vfs, &mut st, ChunkIndex(idx));
            }
        }
        let _ = self.commit_uploaded(vfs, &mut st, false);
        self.account(before, st.uncommitted_bytes());
        Ok(data.len() as u32)
    }

    /// Makes everything written so far committed (close-to-open: other clients see it).
    pub(super) fn flush(&self, vfs: &Vfs) -> Result<()> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        self.flush_locked(vfs, &mut st)
    }

    fn flush_locked(&self, vfs: &Vfs, st: &mut FileState) -> Result<()> {
        let before = st.uncommitted_bytes();
        let mut result = self.cut_all(vfs, st);
        // Uploads that failed before are tried again, once, by this flush.
        for p in st.pending.iter_mut() {
            if matches!(p.upload.peek(), Some(Err(_))) {
                p.upload = upload_slice(vfs, p.id, p.data.clone(), true);
            }
        }
        if result.is_ok() {
            result = self.commit_uploaded(vfs, st, true);
        }
        if st.buffer.is_empty() {
            st.last_write = None;
        }
        self.account(before, st.uncommitted_bytes());
        result
    }

    /// Turns the buffered extents of chunk `idx` into pending slices.
    fn cut_chunk(&self, vfs: &Vfs, st: &mut FileState, idx: ChunkIndex) -> Result<()> {
        let mtime = st.last_write.unwrap_or_else(|| vfs.now());
        let mut extents = st.buffer.take_chunk(idx).into_iter();
        while let Some((pos, data)) = extents.next() {
            let id = match vfs.meta.new_slice_id() {
                Ok(id) => id,
                Err(e) => {
                    // Nothing is lost: the extents not yet cut go back (no newer write
                    // can be there, the state is locked).
                    let start = idx.0 as u64 * CHUNK_SIZE;
                    st.buffer.write(start + pos as u64, &data);
                    for (pos, data) in extents {
                        st.buffer.write(start + pos as u64, &data);
                    }
                    return Err(e);
                }
            };
            let data = Arc::new(data);
            let upload = upload_slice(vfs, id, data.clone(), true);
            st.pending.push_back(PendingSlice {
                chunk: idx,
                pos,
                id,
                data,
                mtime,
                upload,
            });
        }
        Ok(())
    }

    fn cut_all(&self, vfs: &Vfs, st: &mut FileState) -> Result<()> {
        for idx in st.buffer.dirty_chunks() {
            self.cut_chunk(vfs, st, idx)?;
        }
        Ok(())
    }

    /// Commits pending slices from the front whose uploads succeeded; with `wait`, waits
    /// for each in turn until none is left (or one fails).
    fn commit_uploaded(&self, vfs: &Vfs, st: &mut FileState, wait: bool) -> Result<()> {
        while let Some(front) = st.pending.front() {
            if !wait && !matches!(front.upload.peek(), Some(Ok(_))) {
                return Ok(());
            }
            self.commit_front(vfs, st)?;
        }
        Ok(())
    }

    /// Waits for the oldest pending slice's upload and commits it.
    fn commit_front(&self, vfs: &Vfs, st: &mut FileState) -> Result<()> {
        let Some(p) = st.pending.front() else {
            return Ok(());
        };
        let staged = p.upload.wait()?;
        let slice = SliceRef::new(p.pos, p.id, p.data.len() as u32);
        let (ino, idx) = (self.ino(), p.chunk);
        let committed = if staged {
            vfs.meta.write_staged_slice(ino, idx, slice, p.mtime)
        } else {
            vfs.meta.write_slice(ino, idx, slice, p.mtime)
        };
        // Counted before the caches are forgotten (see `OpenFile::changed`).
        self.changed();
        vfs.forget_attr(ino);
        self.forget_chunk(idx);
        let outcome = committed?;
        if let (true, Some(wb)) = (staged, &vfs.writeback) {
            let keys = blocks_of_slice(p.id, p.data.len() as u32, vfs.block_size());
            wb.enqueue(keys.into_iter().filter(|k| wb.cache().is_staged(k)));
        }
        st.pending.pop_front();
        if outcome.slices_in_chunk > COMPACT_THRESHOLD {
            let compacted = compact(vfs, ino, idx);
            self.forget_chunk(idx);
            if let Err(e) = compacted {
                // Compaction is an optimisation: the chunk reads correctly without it.
                tracing::warn!(ino = ino.0, chunk = idx.0, "compaction failed: {e}");
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

    /// `setattr` on an open inode: uncommitted bytes are committed first so that a new
    /// length or mtime is applied on top of them, not overwritten by a later commit.
    pub(super) fn setattr(&self, vfs: &Vfs, ctx: &Ctx, set: &SetAttr) -> Result<Attr> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if !st.is_clean() {
            self.flush_locked(vfs, &mut st)?;
        }
        let r = vfs.meta.setattr(ctx, self.ino(), set, vfs.now());
        if set.size.is_some() {
            self.forget_chunks();
        }
        r
    }
}

/// Starts writing the block objects of slice `id` on the upload workers; the task
/// completes when all are stored or staged (`true` if any was staged), or one failed.
fn upload_slice(
    vfs: &Vfs,
    id: SliceId,
    data: Arc<Vec<u8>>,
    may_stage: bool,
) -> Arc<Task<Result<bool>>> {
    let block_size = vfs.meta.format_info().block_size;
    let blocks = blocks_of_slice(id, data.len() as u32, block_size);
    let done = Task::new();
    if blocks.is_empty() {
        done.complete(Ok(false));
        return done;
    }
    let remaining = Arc::new(AtomicUsize::new(blocks.len()));
    let failed: Arc<Mutex<Option<Errno>>> = Arc::default();
    let staged = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for key in blocks {
        let (store, data, done) = (vfs.store.clone(), data.clone(), done.clone());
        let (remaining, failed) = (remaining.clone(), failed.clone());
        let cache = vfs.cache.clone();
        let writeback = vfs.writeback.clone().filter(|_| may_stage);
        let staged = staged.clone();
        vfs.uploads.spawn(move || {
            let finish = || {
                if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let failed = *failed.lock().unwrap_or_else(|e| e.into_inner());
                    let staged = staged.load(Ordering::Acquire);
                    done.complete(failed.map_or(Ok(staged), Err));
                }
            };
            let start = key.index as usize * block_size as usize;
            let name = key.object_name();
            let object = Bytes::from(encode_block(&data[start..start + key.len as usize]));
            if let Some(wb) = &writeback {
                match wb.cache().stage(&key, &object) {
                    // Queued for upload once the slice is committed (with its `W`
                    // mark), so the mark is never cleared before it is set.
                    Ok(()) => {
                        staged.store(true, Ordering::Release);
                        return finish();
                    }
                    // Not staged (no cache dir left): upload it now instead.
                    Err(e) => tracing::warn!(object = %name, "cannot stage, uploading: {e}"),
                }
            }
            match store.put(&name, object.clone()) {
                // What this client wrote, it will likely read: keep it.
                Ok(()) => {
                    if let Some(c) = &cache {
                        c.put(&key, &object);
                    }
                }
                Err(e) => {
                    tracing::error!(object = %name, "upload failed: {e}");
                    *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Errno::EIO);
                }
            }
            finish();
        });
    }
    done
}

/// Writes `data` as a new slice and waits until its objects are stored.
fn write_new_slice(vfs: &Vfs, data: Vec<u8>) -> Result<SliceId> {
    let id = vfs.meta.new_slice_id()?;
    // Uploaded, never staged: `compact_chunk` commits it and queues the old slices at
    // once, so its blocks must be in the store by then.
    upload_slice(vfs, id, Arc::new(data), false).wait()?;
    Ok(id)
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
        super::read::read_pieces(vfs, &slices, plan.start, len, true, &mut data)?;
        let id = write_new_slice(vfs, data)?;
        vec![SliceRef::new(plan.start, id, len)]
    };
    vfs.meta.compact_chunk(ino, idx, &slices, &replacement)?;
    Ok(())
}
