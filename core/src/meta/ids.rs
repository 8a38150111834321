//! Counters and id batches. Inode and slice ids are handed out from batches reserved
//! with one counter transaction each (synced), so most creates and flushes cost no
//! extra round trip; ids of a batch left unused when the process ends are simply never
//! used, and no id is ever handed out twice, even across an engine crash.

use super::attr_codec::decode_u64;
use super::keys;
use crate::errno::Result;
use crate::kv::{self, Kv, Txn};

/// Inode ids reserved per counter transaction.
pub const INODE_BATCH: u64 = 256;
/// Slice ids reserved per counter transaction.
pub const SLICE_BATCH: u64 = 1024;

/// Reads counter `name` (0 when missing).
pub fn get_counter(t: &mut dyn Txn, name: &str) -> Result<u64> {
    match t.get(&keys::counter(name))? {
        Some(v) => decode_u64(&v),
        None => Ok(0),
    }
}

pub fn set_counter(t: &mut dyn Txn, name: &str, value: u64) {
    t.set(&keys::counter(name), &value.to_be_bytes());
}

/// Adds `delta` to counter `name` (saturating at 0 and u64::MAX); returns the new value.
pub fn add_counter(t: &mut dyn Txn, name: &str, delta: i64) -> Result<u64> {
    let v = get_counter(t, name)?;
    let n = if delta >= 0 {
        v.saturating_add(delta as u64)
    } else {
        v.saturating_sub(delta.unsigned_abs())
    };
    set_counter(t, name, n);
    Ok(n)
}

/// A range `[next, end)` of reserved ids.
#[derive(Debug, Default)]
pub struct IdBatch {
    next: u64,
    end: u64,
}

impl IdBatch {
    /// The next id; reserves `size` more from counter `name` (whose ids start at
    /// `first`) when the batch is used up.
    pub fn take(&mut self, kv: &dyn Kv, name: &str, size: u64, first: u64) -> Result<u64> {
        if self.next >= self.end {
            let start = kv::txn(kv, |t| {
                let start = get_counter(t, name)?.max(first);
                set_counter(t, name, start + size);
                Ok(start)
            })?;
            // Durable before any id of the batch is used: an engine crash must not hand
            // the same ids out again. Slice ids name immutable objects, and copies of
            // them live on in clients' block caches, which survive such a crash; a
            // reused id would serve the old bytes as the new slice's.
            kv.sync()?;
            self.next = start;
            self.end = start + size;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}
