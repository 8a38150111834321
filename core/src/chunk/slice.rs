//! Slice records: how a chunk's content is described in metadata.

use crate::errno::{Errno, Result};
use crate::types::SliceId;

/// One slice as referenced by a chunk: bytes `[off, off+len)` of slice `id` (whose
/// stored size is `size`) appear at `[pos, pos+len)` of the chunk. Records are kept in
/// commit order; later records win where they overlap. `id == SliceId::ZERO` marks a
/// hole (written by truncate): it reads as zeros and stores nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SliceRef {
    pub pos: u32,
    pub id: SliceId,
    pub size: u32,
    pub off: u32,
    pub len: u32,
}

/// Bytes of one encoded [`SliceRef`].
pub const SLICE_REF_LEN: usize = 24;

impl SliceRef {
    /// A whole freshly written slice of `len` bytes placed at `pos`.
    pub fn new(pos: u32, id: SliceId, len: u32) -> Self {
        SliceRef {
            pos,
            id,
            size: len,
            off: 0,
            len,
        }
    }

    /// A hole of `len` bytes at `pos`.
    pub fn zero(pos: u32, len: u32) -> Self {
        SliceRef::new(pos, SliceId::ZERO, len)
    }

    /// End of the record within the chunk.
    pub fn end(&self) -> u64 {
        self.pos as u64 + self.len as u64
    }

    /// Big-endian fixed encoding: pos u32, id u64, size u32, off u32, len u32.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pos.to_be_bytes());
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.off.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<SliceRef> {
        if b.len() != SLICE_REF_LEN {
            return Err(Errno::EIO);
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        Ok(SliceRef {
            pos: u32_at(0),
            id: SliceId(u64::from_be_bytes(b[4..12].try_into().unwrap())),
            size: u32_at(12),
            off: u32_at(16),
            len: u32_at(20),
        })
    }
}

/// Encodes a chunk's slice list (the value of a chunk key).
pub fn encode_slices(slices: &[SliceRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(slices.len() * SLICE_REF_LEN);
    for s in slices {
        s.encode_into(&mut out);
    }
    out
}

/// Decodes a chunk's slice list; a value whose length is not a multiple of the record
/// size is corrupt metadata (EIO).
pub fn decode_slices(b: &[u8]) -> Result<Vec<SliceRef>> {
    if !b.len().is_multiple_of(SLICE_REF_LEN) {
        return Err(Errno::EIO);
    }
    b.chunks(SLICE_REF_LEN).map(SliceRef::decode).collect()
}

/// One block object of a slice. A slice of `size` bytes is stored as
/// `ceil(size / block_size)` objects; all but the last are `block_size` long.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BlockKey {
    pub slice: SliceId,
    pub index: u32,
    /// Length of this block object in bytes.
    pub len: u32,
}

impl BlockKey {
    /// The object name: `chunks/{id/1e6}/{id/1e3}/{id}_{index}_{len}`. Spreading ids
    /// over two directory levels keeps listings and local directories small.
    pub fn object_name(&self) -> String {
        let id = self.slice.0;
        format!(
            "chunks/{}/{}/{}_{}_{}",
            id / 1_000_000,
            id / 1_000,
            id,
            self.index,
            self.len
        )
    }

    /// Parses an object name made by [`BlockKey::object_name`] (for gc and fsck).
    pub fn parse_object_name(name: &str) -> Option<BlockKey> {
        let rest = name.strip_prefix("chunks/")?;
        let mut dirs = rest.split('/');
        let (d1, d2, file) = (dirs.next()?, dirs.next()?, dirs.next()?);
        if dirs.next().is_some() {
            return None;
        }
        let mut parts = file.split('_');
        let id: u64 = parts.next()?.parse().ok()?;
        let index: u32 = parts.next()?.parse().ok()?;
        let len: u32 = parts.next()?.parse().ok()?;
        if parts.next().is_some()
            || d1.parse::<u64>().ok()? != id / 1_000_000
            || d2.parse::<u64>().ok()? != id / 1_000
        {
            return None;
        }
        Some(BlockKey {
            slice: SliceId(id),
            index,
            len,
        })
    }
}

/// The block objects that store a slice of `size` bytes.
pub fn blocks_of_slice(id: SliceId, size: u32, block_size: u32) -> Vec<BlockKey> {
    assert!(block_size > 0);
    let mut out = Vec::new();
    if id == SliceId::ZERO {
        return out;
    }
    let mut done = 0u32;
    let mut index = 0u32;
    while done < size {
        let len = (size - done).min(block_size);
        out.push(BlockKey {
            slice: id,
            index,
            len,
        });
        done += len;
        index += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_list_roundtrip_and_corruption() {
        let list = vec![
            SliceRef::new(0, SliceId(7), 100),
            SliceRef::zero(50, 10),
            SliceRef {
                pos: 1,
                id: SliceId(u64::MAX),
                size: 9,
                off: 2,
                len: 3,
            },
        ];
        let enc = encode_slices(&list);
        assert_eq!(enc.len(), 3 * SLICE_REF_LEN);
        assert_eq!(decode_slices(&enc).unwrap(), list);
        assert_eq!(decode_slices(&enc[1..]), Err(Errno::EIO));
    }

    #[test]
    fn object_names_roundtrip() {
        let k = BlockKey {
            slice: SliceId(1_234_567),
            index: 3,
            len: 4096,
        };
        assert_eq!(k.object_name(), "chunks/1/1234/1234567_3_4096");
        assert_eq!(BlockKey::parse_object_name(&k.object_name()), Some(k));
        assert_eq!(BlockKey::parse_object_name("chunks/0/0/1_0"), None);
        assert_eq!(BlockKey::parse_object_name("chunks/9/0/1_0_1"), None);
    }

    #[test]
    fn blocks_cover_slice() {
        let b = blocks_of_slice(SliceId(5), 10, 4);
        assert_eq!(b.iter().map(|k| k.len).collect::<Vec<_>>(), vec![4, 4, 2]);
        assert!(blocks_of_slice(SliceId::ZERO, 10, 4).is_empty());
        assert!(blocks_of_slice(SliceId(5), 0, 4).is_empty());
    }
}
