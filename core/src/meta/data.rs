//! File data in metadata: chunk slice lists, slice commits, truncation, compaction
//! commits, the gc queue, and removal of an inode's keys.

use super::attr_codec::{decode_u32, Inode};
use super::ids::{add_counter, SLICE_BATCH};
use super::keys;
use super::store::{load, load_opt, scan_all, store};
use super::Meta;
use crate::chunk::{decode_slices, encode_slices, BlockKey, SliceRef};
use crate::errno::{Errno, Result};
use crate::kv::{self, Txn};
use crate::types::{Attr, ChunkIndex, FileType, Ino, SliceId, Timespec, CHUNK_SIZE, FILE_SIZE_MAX};
use std::collections::BTreeSet;

/// Slices per chunk beyond which the shell compacts the chunk.
pub const COMPACT_THRESHOLD: usize = 32;

/// What committing a slice did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WriteOutcome {
    /// The file's attributes after the commit.
    pub attr: Attr,
    /// Records in the chunk's slice list now (compare with [`COMPACT_THRESHOLD`]).
    pub slices_in_chunk: usize,
}

/// Queues the non-zero slices of `slices` for deletion.
pub fn queue_slices(t: &mut dyn Txn, slices: &[SliceRef]) {
    for s in slices {
        if s.id != SliceId::ZERO {
            t.set(&keys::gc(s.id), &s.size.to_be_bytes());
        }
    }
}

/// Changes the stored data of regular file `ino` from `old` to `new` bytes: chunks wholly
/// past the new end are dropped (their slices queued for gc) and the chunk that straddles
/// it gets a hole record over its tail, so bytes cut off never reappear when the file
/// grows again. Updates `usedSpace`. The caller stores the new size in the inode.
pub fn resize(t: &mut dyn Txn, ino: Ino, old: u64, new: u64) -> Result<()> {
    if new < old {
        let (start, end) = keys::chunk_range_from(ino, new.div_ceil(CHUNK_SIZE));
        for (k, v) in scan_all(t, &start, &end)? {
            queue_slices(t, &decode_slices(&v)?);
            t.delete(&k);
        }
        let pos = (new % CHUNK_SIZE) as u32;
        if pos != 0 {
            let key = keys::chunk(ino, ChunkIndex((new / CHUNK_SIZE) as u32));
            if let Some(mut v) = t.get(&key)? {
                if !v.is_empty() {
                    SliceRef::zero(pos, CHUNK_SIZE as u32 - pos).encode_into(&mut v);
                    t.set(&key, &v);
                }
            }
        }
    }
    add_counter(t, keys::USED_SPACE, new as i64 - old as i64)?;
    Ok(())
}

/// Deletes every key of inode `n` (attributes, entries index, chunks, symlink target,
/// xattrs, locks with their `K` index keys) and its `U` key, queues its slices for gc
/// and updates the counters.
pub fn delete_inode(t: &mut dyn Txn, n: &Inode) -> Result<()> {
    let (start, end) = keys::inode_range(n.ino());
    for (k, v) in scan_all(t, &start, &end)? {
        match keys::tag_of(&k) {
            Some(b'C') => queue_slices(t, &decode_slices(&v)?),
            // A lock on it: its session's index key goes too.
            Some(b'K') => {
                if let Some((session, _)) = keys::lock_owner_of(&k) {
                    t.delete(&keys::held(session, n.ino()));
                }
            }
            _ => {}
        }
        t.delete(&k);
    }
    t.delete(&keys::unlinked(n.ino()));
    add_counter(t, keys::TOTAL_INODES, -1)?;
    if n.attr.kind == FileType::RegularFile {
        add_counter(t, keys::USED_SPACE, -(n.attr.size as i64))?;
    }
    Ok(())
}

/// Removes one link of non-directory `ino` (unlink, or a rename replacing it). At zero
/// links the inode is deleted, unless it is open here (`open`): then it stays, with a
/// `U` key naming `session`, until the last close.
pub fn drop_link(t: &mut dyn Txn, ino: Ino, open: bool, session: u64, now: Timespec) -> Result<()> {
    let mut n = load(t, ino)?;
    n.attr.nlink = n.attr.nlink.saturating_sub(1);
    n.attr.ctime = now;
    if n.attr.nlink > 0 {
        store(t, &n);
    } else if open {
        store(t, &n);
        t.set(&keys::unlinked(ino), &session.to_be_bytes());
    } else {
        delete_inode(t, &n)?;
    }
    Ok(())
}

fn get_slices(t: &mut dyn Txn, ino: Ino, index: ChunkIndex) -> Result<Vec<SliceRef>> {
    match t.get(&keys::chunk(ino, index))? {
        Some(v) => decode_slices(&v),
        None => Ok(Vec::new()),
    }
}

fn check_slice(s: &SliceRef) -> Result<()> {
    let bad_range = s.end() > CHUNK_SIZE;
    let bad_source = s.id != SliceId::ZERO && s.off as u64 + s.len as u64 > s.size as u64;
    if bad_range || bad_source {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

impl Meta {
    /// The slice list of chunk `index` of `ino` (empty when nothing was written).
    pub fn read_chunk(&self, ino: Ino, index: ChunkIndex) -> Result<Vec<SliceRef>> {
        kv::read(&**self.kv(), |t| get_slices(t, ino, index))
    }

    /// A new slice id, from a batch reserved with one counter transaction.
    pub fn new_slice_id(&self) -> Result<SliceId> {
        let mut b = self.slices.lock().unwrap_or_else(|e| e.into_inner());
        b.take(&**self.kv(), keys::NEXT_SLICE, SLICE_BATCH, 1)
            .map(SliceId)
    }

    /// Commits a written slice: appends its record to the chunk, grows the length to
    /// cover it, stamps mtime and ctime. EFBIG past [`FILE_SIZE_MAX`].
    pub fn write_slice(
        &self,
        ino: Ino,
        index: ChunkIndex,
        slice: SliceRef,
        now: Timespec,
    ) -> Result<WriteOutcome> {
        self.commit_slice(ino, index, slice, now, false)
    }

    /// [`Meta::write_slice`] for a slice whose blocks are staged, not uploaded
    /// (writeback): the same transaction marks it (`W` key) so that no client's gc
    /// deletes its objects before [`Meta::slice_uploaded`] — a late upload would
    /// otherwise bring back an object nothing refers to.
    pub fn write_staged_slice(
        &self,
        ino: Ino,
        index: ChunkIndex,
        slice: SliceRef,
        now: Timespec,
    ) -> Result<WriteOutcome> {
        self.commit_slice(ino, index, slice, now, true)
    }

    /// Every block of a staged slice is in the object store.
    pub fn slice_uploaded(&self, id: SliceId) -> Result<()> {
        kv::txn(&**self.kv(), |t| {
            t.delete(&keys::staged(id));
            Ok(())
        })
    }

    /// Whether slice `id` is staged by a writeback client and not uploaded yet.
    pub fn slice_is_staged(&self, id: SliceId) -> Result<bool> {
        kv::read(&**self.kv(), |t| Ok(t.get(&keys::staged(id))?.is_some()))
    }

    /// Sorts the blocks an earlier run left staged into those to upload and those to
    /// drop, with one read of their slices' `W` marks. The mark is written by the
    /// commit itself, so a slice without one was never committed (the commit was
    /// refused, say because another client removed the file, or the client died first):
    /// nothing will ever refer to its blocks, and uploading them would leak objects. (A
    /// slice whose every block went up has no mark either, and no staged block left.)
    pub fn split_staged(&self, blocks: Vec<BlockKey>) -> Result<(Vec<BlockKey>, Vec<BlockKey>)> {
        let slices: Vec<SliceId> = blocks
            .iter()
            .map(|k| k.slice)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let wanted: Vec<Vec<u8>> = slices.iter().map(|&id| keys::staged(id)).collect();
        let marks = kv::read(&**self.kv(), |t| t.get_many(&wanted))?;
        let marked: BTreeSet<SliceId> = slices
            .into_iter()
            .zip(marks)
            .filter_map(|(id, m)| m.map(|_| id))
            .collect();
        Ok(blocks.into_iter().partition(|k| marked.contains(&k.slice)))
    }

    fn commit_slice(
        &self,
        ino: Ino,
        index: ChunkIndex,
        slice: SliceRef,
        now: Timespec,
        staged: bool,
    ) -> Result<WriteOutcome> {
        check_slice(&slice)?;
        let end = index.0 as u64 * CHUNK_SIZE + slice.end();
        if end > FILE_SIZE_MAX {
            return Err(Errno::EFBIG);
        }
        kv::txn(&**self.kv(), |t| {
            let mut n = load(t, ino)?;
            match n.attr.kind {
                FileType::RegularFile => {}
                FileType::Directory => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            let key = keys::chunk(ino, index);
            let mut v = t.get(&key)?.unwrap_or_default();
            if slice.len > 0 {
                slice.encode_into(&mut v);
                t.set(&key, &v);
            }
            if end > n.attr.size {
                let used = add_counter(t, keys::USED_SPACE, (end - n.attr.size) as i64)?;
                let capacity = self.format_info().capacity;
                if capacity > 0 && used > capacity {
                    return Err(Errno::ENOSPC);
                }
                n.attr.size = end;
            }
            n.attr.mtime = now;
            n.attr.ctime = now;
            store(t, &n);
            if staged && slice.id != SliceId::ZERO {
                t.set(&keys::staged(slice.id), &[]);
            }
            Ok(WriteOutcome {
                attr: n.attr,
                slices_in_chunk: v.len() / crate::chunk::slice::SLICE_REF_LEN,
            })
        })
    }

    /// Commits a compaction: if the chunk's list still equals `expected`, replaces it
    /// with `replacement` and queues the slices no longer referenced; otherwise (the
    /// chunk changed meanwhile, or the inode is gone) queues the replacement's new
    /// slices and returns false.
    pub fn compact_chunk(
        &self,
        ino: Ino,
        index: ChunkIndex,
        expected: &[SliceRef],
        replacement: &[SliceRef],
    ) -> Result<bool> {
        for s in replacement {
            check_slice(s)?;
        }
        kv::txn(&**self.kv(), |t| {
            let current = get_slices(t, ino, index)?;
            let live = load_opt(t, ino)?.is_some();
            if live && current == expected {
                let old: Vec<SliceRef> = expected
                    .iter()
                    .filter(|s| !replacement.iter().any(|r| r.id == s.id))
                    .copied()
                    .collect();
                queue_slices(t, &old);
                let key = keys::chunk(ino, index);
                if replacement.is_empty() {
                    t.delete(&key);
                } else {
                    t.set(&key, &encode_slices(replacement));
                }
                Ok(true)
            } else {
                let new: Vec<SliceRef> = replacement
                    .iter()
                    .filter(|r| !expected.iter().any(|s| s.id == r.id))
                    .filter(|r| !current.iter().any(|s| s.id == r.id))
                    .copied()
                    .collect();
                queue_slices(t, &new);
                Ok(false)
            }
        })
    }

    /// Up to `limit` slices waiting for their objects to be deleted: (id, size).
    pub fn gc_pending(&self, limit: usize) -> Result<Vec<(SliceId, u32)>> {
        let (start, end) = keys::gc_range();
        kv::read(&**self.kv(), |t| {
            t.scan(&start, &end, limit)?
                .into_iter()
                .map(|(k, v)| {
                    let id = keys::id_of(&k).ok_or(Errno::EIO)?;
                    Ok((SliceId(id), decode_u32(&v)?))
                })
                .collect()
        })
    }

    /// Removes slices whose objects are deleted from the gc queue.
    pub fn gc_done(&self, slices: &[SliceId]) -> Result<()> {
        kv::txn(&**self.kv(), |t| {
            for s in slices {
                t.delete(&keys::gc(*s));
            }
            Ok(())
        })
    }
}
