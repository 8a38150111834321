//! Checker: a client's block cache accounts for the files in its dirs.
//!
//! Run at a clean unmount, when the cache is quiet. For every dir the cache has not
//! taken out (the simulated disk knows: it returned an I/O error, a full disk or a
//! missing dir to this incarnation, or not):
//! - every block file in it is in the cache's index — nothing evicted, dropped or
//!   refused was left on the disk to fill it for good;
//! - the index holds exactly the blocks of those dirs, by count and by stored bytes —
//!   no entry for a file that is not there;
//! - the cache holds at most its capacity (staged blocks, pinned, may overfill it).
//!
//! A dir that vanished without the cache noticing yet (no call reached it since) still
//! has its blocks in the index: then only the first point is checked.

use crate::cache_disk::Disk;
use ferrofs::vfs::cache::cache_file_len;
use ferrofs::vfs::cache::CacheCounters;
use ferrofs_core::chunk::BlockKey;

/// Violations of the cache's accounting over `disks` (one client's dirs).
pub fn check(
    disks: &[Disk],
    counters: &CacheCounters,
    contains: impl Fn(&BlockKey) -> bool,
    capacity: u64,
) -> Vec<String> {
    let mut found = Vec::new();
    let (mut blocks, mut bytes, mut staged_bytes) = (0, 0, 0);
    for (d, disk) in disks.iter().enumerate() {
        if disk.failed || disk.vanished {
            continue;
        }
        for (staged, key) in disk.blocks() {
            blocks += 1;
            bytes += cache_file_len(&key);
            if staged {
                staged_bytes += cache_file_len(&key);
            }
            if !contains(&key) && found.len() < 8 {
                let area = if staged { "staged" } else { "cached" };
                found.push(format!(
                    "{area} file {} in dir {d} is not in the index (leaked on the disk)",
                    key.object_name()
                ));
            }
        }
    }
    let unnoticed = disks.iter().any(|d| d.vanished && !d.failed);
    if !unnoticed && (counters.blocks, counters.bytes) != (blocks, bytes) {
        found.push(format!(
            "the index holds {} blocks ({} bytes), its live dirs {blocks} ({bytes} bytes)",
            counters.blocks, counters.bytes
        ));
    }
    if counters.bytes > capacity + staged_bytes {
        found.push(format!(
            "the cache holds {} bytes, over its capacity of {capacity}",
            counters.bytes
        ));
    }
    found
}
