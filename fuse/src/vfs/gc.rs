//! Background deletion of objects no metadata refers to any more (the gc queue).

use super::Vfs;
use ferrofs_core::chunk::blocks_of_slice;
use ferrofs_core::Result;

/// Deletes the objects of up to `limit` queued slices, then their queue entries.
pub(super) fn collect_garbage(vfs: &Vfs, limit: usize) -> Result<usize> {
    let pending = vfs.meta.gc_pending(limit)?;
    if pending.is_empty() {
        return Ok(0);
    }
    // The transactions that queued these slices (an unlink, a truncate, a compaction)
    // must be durable before their objects go: if the metadata engine lost them in a
    // crash, the slices would be referenced again, with their objects deleted.
    vfs.meta.sync()?;
    let block_size = vfs.block_size();
    let mut done = Vec::with_capacity(pending.len());
    for (id, size) in pending {
        let keys = blocks_of_slice(id, size, block_size);
        // A staged block deleted now would be uploaded later and leak: its slice waits
        // until writeback has uploaded it.
        if let Some(c) = &vfs.cache {
            if keys.iter().any(|k| c.is_staged(k)) {
                continue;
            }
        }
        let mut ok = true;
        for key in keys {
            if let Err(e) = vfs.store.delete(&key.object_name()) {
                tracing::warn!(object = %key.object_name(), "delete failed, will retry: {e}");
                ok = false;
                break;
            }
        }
        if ok {
            done.push(id);
        }
        if let (true, Some(c)) = (ok, &vfs.cache) {
            // Never read again: give the room back.
            for key in blocks_of_slice(id, size, block_size) {
                c.evict(&key);
            }
        }
    }
    vfs.meta.gc_done(&done)?;
    Ok(done.len())
}
