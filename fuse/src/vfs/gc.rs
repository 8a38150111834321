//! Background deletion of objects no metadata refers to any more (the gc queue).

use super::Vfs;
use ferrofs_core::chunk::{blocks_of_slice, BlockKey};
use ferrofs_core::{Result, SliceId};

/// Deletes the objects of up to `limit` queued slices, then their queue entries.
pub(super) fn collect_garbage(vfs: &Vfs, limit: usize) -> Result<usize> {
    let pending = vfs.meta.gc_pending(limit)?;
    if pending.is_empty() {
        return Ok(0);
    }
    let block_size = vfs.block_size();
    let ready: Vec<(SliceId, Vec<BlockKey>)> = pending
        .into_iter()
        .map(|(id, size)| (id, blocks_of_slice(id, size, block_size)))
        .filter(|(id, keys)| collectable(vfs, *id, keys))
        .collect();
    // The transactions that queued these slices (an unlink, a truncate, a compaction),
    // and any upload mark cleared above, must be durable before the objects go: if the
    // metadata engine lost them in a crash, the slices would be referenced (or waiting
    // for an upload) again, with their objects deleted.
    vfs.meta.sync()?;
    let mut done = Vec::with_capacity(ready.len());
    for (id, keys) in ready {
        let deleted = keys.iter().try_for_each(|key| {
            vfs.store.delete(&key.object_name()).inspect_err(
                |e| tracing::warn!(object = %key.object_name(), "delete failed, will retry: {e}"),
            )
        });
        if deleted.is_err() {
            continue;
        }
        done.push(id);
        if let Some(c) = &vfs.cache {
            // Never read again: give the room back.
            keys.iter().for_each(|k| c.evict(k));
        }
    }
    vfs.meta.gc_done(&done)?;
    Ok(done.len())
}

/// Whether the objects of queued slice `id` may be deleted now. A staged (writeback)
/// block deleted now would be uploaded later and leak: the slice waits until the client
/// that staged it (this one, or another: its `W` mark) has uploaded it. A mark can
/// outlive the upload (clearing it failed, or a crash lost the clearing): with every
/// object in the store the upload happened, and the mark is cleared here.
fn collectable(vfs: &Vfs, id: SliceId, keys: &[BlockKey]) -> bool {
    if vfs.cache.as_ref().is_some_and(|c| c.slice_is_staged(id)) {
        return false;
    }
    match vfs.meta.slice_is_staged(id) {
        Ok(false) => true,
        Ok(true) if all_stored(vfs, keys) => vfs
            .meta
            .slice_uploaded(id)
            .inspect_err(|e| tracing::warn!(slice = id.0, "gc: cannot clear an upload mark: {e}"))
            .is_ok(),
        Ok(true) => false,
        Err(e) => {
            tracing::warn!(
                slice = id.0,
                "gc: cannot tell whether the slice is staged: {e}"
            );
            false
        }
    }
}

/// Whether every block object of a slice is in the store.
fn all_stored(vfs: &Vfs, keys: &[BlockKey]) -> bool {
    keys.iter()
        .all(|k| matches!(vfs.store.head(&k.object_name()), Ok(Some(_))))
}
