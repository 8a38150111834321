//! What `gc` and `fsck` need to know about the whole volume, gathered in pages (one read
//! transaction each, so a large volume is never one giant transaction), and what they
//! decide from it: which slices the metadata refers to, which are queued for deletion or
//! staged by writeback, how each object in the store stands, and the usage counters
//! recounted from the inodes.

use super::attr_codec::decode_inode;
use super::keys;
use super::Meta;
use crate::chunk::{blocks_of_slice, decode_slices, BlockKey};
use crate::errno::{Errno, Result};
use crate::kv;
use crate::types::{FileType, Ino, SliceId};
use std::collections::{BTreeMap, BTreeSet};

/// The slices the metadata knows of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceCensus {
    /// Slices chunk records refer to: their size and one file that holds them.
    pub referenced: BTreeMap<SliceId, (u32, Ino)>,
    /// Slices queued for deletion (`G`), with their size.
    pub pending: BTreeMap<SliceId, u32>,
    /// Slices whose blocks a writeback client staged and has not uploaded (`W`).
    pub staged: BTreeSet<SliceId>,
    /// Inodes, and bytes of regular files (what `totalInodes` and `usedSpace` should be).
    pub inodes: u64,
    pub file_bytes: u64,
}

/// How one object in the store stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectState {
    /// A block of a slice the metadata refers to.
    Referenced,
    /// A block of a slice queued for deletion: the clients' gc deletes it.
    Pending,
    /// A block of a staged slice (its upload may still be under way).
    Staged,
    /// A block of no known slice, old enough to be garbage.
    Leaked,
    /// A block of no known slice, but written recently (or at an unknown time): it may be
    /// an upload whose commit is under way, so it is left alone.
    Young,
    /// Not a block object (`gc` leaves what it did not write alone).
    Foreign,
}

impl SliceCensus {
    /// Classifies the object `name` written at `modified` (Unix seconds, if known) at
    /// `now`: unknown blocks are leaked once older than `min_age_secs` (a `modified` of
    /// `None` counts as young unless `min_age_secs` is 0).
    pub fn classify(
        &self,
        name: &str,
        modified: Option<u64>,
        now: u64,
        min_age_secs: u64,
    ) -> ObjectState {
        let Some(key) = BlockKey::parse_object_name(name) else {
            return ObjectState::Foreign;
        };
        if self.referenced.contains_key(&key.slice) {
            ObjectState::Referenced
        } else if self.pending.contains_key(&key.slice) {
            ObjectState::Pending
        } else if self.staged.contains(&key.slice) {
            ObjectState::Staged
        } else if min_age_secs == 0
            || modified.is_some_and(|m| m.saturating_add(min_age_secs) <= now)
        {
            ObjectState::Leaked
        } else {
            ObjectState::Young
        }
    }

    /// Every block object the referenced slices need, with a file that holds it.
    pub fn expected_blocks(&self, block_size: u32) -> impl Iterator<Item = (BlockKey, Ino)> + '_ {
        self.referenced.iter().flat_map(move |(&id, &(size, ino))| {
            blocks_of_slice(id, size, block_size)
                .into_iter()
                .map(move |k| (k, ino))
        })
    }
}

impl SliceCensus {
    /// Counts one (key, value) of the keyspace in: inodes and chunk records under `A`,
    /// the gc queue (`G`), staged slices (`W`); other keys are not the census's business.
    pub fn add(&mut self, k: &[u8], v: &[u8]) -> Result<()> {
        match k.first() {
            Some(b'A') if k.len() >= 10 => {
                let ino = Ino(keys::id_of(k).ok_or(Errno::EIO)?);
                match k[9] {
                    b'I' if k.len() == 10 => {
                        let inode = decode_inode(ino, v)?;
                        self.inodes += 1;
                        if inode.attr.kind == FileType::RegularFile {
                            self.file_bytes += inode.attr.size;
                        }
                    }
                    b'C' if k.len() == 14 => {
                        for s in decode_slices(v)? {
                            if s.id != SliceId::ZERO {
                                self.referenced.insert(s.id, (s.size, ino));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some(b'G') => {
                let id = SliceId(keys::id_of(k).ok_or(Errno::EIO)?);
                let size = u32::from_be_bytes(v.try_into().map_err(|_| Errno::EIO)?);
                self.pending.insert(id, size);
            }
            Some(b'W') => {
                self.staged
                    .insert(SliceId(keys::id_of(k).ok_or(Errno::EIO)?));
            }
            _ => {}
        }
        Ok(())
    }
}

impl Meta {
    /// Reads the census page by page (the ranges it counts only); `progress` gets the
    /// number of keys read so far.
    pub fn slice_census(&self, progress: &mut dyn FnMut(u64)) -> Result<SliceCensus> {
        let mut c = SliceCensus::default();
        let mut read = 0u64;
        let (gs, ge) = keys::gc_range();
        for (start, end) in [(&b"A"[..], &b"B"[..]), (&gs, &ge), (b"W", b"X")] {
            kv::for_each_page(&**self.kv(), start, end, &mut |page| {
                for (k, v) in page {
                    c.add(k, v)?;
                }
                read += page.len() as u64;
                progress(read);
                Ok(())
            })?;
        }
        Ok(c)
    }

    /// Sets `totalInodes` and `usedSpace` to what the census counted (`fsck --repair`);
    /// returns the values they had.
    pub fn set_usage_counters(&self, inodes: u64, bytes: u64) -> Result<(u64, u64)> {
        kv::txn(&**self.kv(), |t| {
            let before = (
                super::ids::get_counter(t, keys::TOTAL_INODES)?,
                super::ids::get_counter(t, keys::USED_SPACE)?,
            );
            super::ids::set_counter(t, keys::TOTAL_INODES, inodes);
            super::ids::set_counter(t, keys::USED_SPACE, bytes);
            Ok(before)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::tests::{root, setup};

    #[test]
    fn the_census_finds_files_slices_and_counts() {
        let fx = setup();
        let m = &fx.m;
        let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
        let id = m.new_slice_id().unwrap();
        let slice = crate::chunk::SliceRef {
            pos: 0,
            id,
            size: 300,
            off: 0,
            len: 300,
        };
        m.write_slice(
            f.ino,
            crate::ChunkIndex(0),
            slice,
            crate::meta::tests::ts(2),
        )
        .unwrap();
        let mut seen = 0;
        let c = m.slice_census(&mut |n| seen = n).unwrap();
        assert!(seen > 0);
        assert_eq!(c.referenced.get(&id), Some(&(300, f.ino)));
        assert_eq!((c.inodes, c.file_bytes), (2, 300));
        let name = BlockKey {
            slice: id,
            index: 0,
            len: 300,
        }
        .object_name();
        assert_eq!(
            c.classify(&name, Some(0), 10_000, 3600),
            ObjectState::Referenced
        );
        let other = BlockKey {
            slice: SliceId(id.0 + 99),
            index: 0,
            len: 5,
        }
        .object_name();
        assert_eq!(
            c.classify(&other, Some(0), 10_000, 3600),
            ObjectState::Leaked
        );
        assert_eq!(
            c.classify(&other, Some(9_000), 10_000, 3600),
            ObjectState::Young
        );
        assert_eq!(c.classify(&other, None, 10_000, 3600), ObjectState::Young);
        assert_eq!(c.classify(&other, None, 10_000, 0), ObjectState::Leaked);
        assert_eq!(
            c.classify("setting-backup", None, 10_000, 0),
            ObjectState::Foreign
        );
        let expected: Vec<BlockKey> = c.expected_blocks(1 << 20).map(|(k, _)| k).collect();
        assert_eq!(
            expected,
            vec![BlockKey {
                slice: id,
                index: 0,
                len: 300
            }]
        );
        assert_eq!(m.set_usage_counters(7, 9).unwrap(), (2, 300));
        assert_eq!(m.set_usage_counters(2, 300).unwrap(), (7, 9));
    }
}
