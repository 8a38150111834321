//! The stored form of a block object: its bytes followed by a checksum trailer, so
//! that damaged or truncated objects are detected and never returned as data.
//!
//! ```text
//! object = data (len bytes) || crc32c of each 64 KiB segment of data (u32 LE each) || "FRB1"
//! ```
//!
//! Per-segment checksums keep ranged reads cheap: reading bytes `[off, off+n)` of a
//! block fetches only the segments that cover them and their checksums.

use std::fmt;
use std::ops::Range;

/// Bytes covered by one checksum.
pub const SEGMENT: u32 = 64 << 10;
/// Last four bytes of every block object (format version 1).
pub const MAGIC: &[u8; 4] = b"FRB1";

/// Why stored bytes were rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlockError {
    /// Fewer bytes than the block's length and trailer need.
    Truncated,
    /// The bytes of segment `segment` do not match its checksum.
    Checksum { segment: u32 },
    /// The object does not end with the format's magic bytes.
    BadMagic,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Truncated => write!(f, "object is truncated"),
            BlockError::Checksum { segment } => {
                write!(f, "checksum mismatch in segment {segment} (corrupt object)")
            }
            BlockError::BadMagic => write!(f, "object has no ferrofs block trailer"),
        }
    }
}

impl std::error::Error for BlockError {}

fn segments(len: u32) -> u32 {
    len.div_ceil(SEGMENT)
}

/// Size of the stored object of a block of `len` data bytes.
pub fn stored_len(len: u32) -> u64 {
    len as u64 + 4 * segments(len) as u64 + MAGIC.len() as u64
}

/// The object to store for a block's bytes.
pub fn encode_block(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(data.len() as u32) as usize);
    out.extend_from_slice(data);
    for seg in data.chunks(SEGMENT as usize) {
        out.extend_from_slice(&crc32c::crc32c(seg).to_le_bytes());
    }
    out.extend_from_slice(MAGIC);
    out
}

/// Returns the data of a whole stored object of a block of `len` bytes, verified.
pub fn decode_block(len: u32, object: &[u8]) -> Result<&[u8], BlockError> {
    if (object.len() as u64) < stored_len(len) {
        return Err(BlockError::Truncated);
    }
    if object.len() as u64 != stored_len(len) || !object.ends_with(MAGIC) {
        return Err(BlockError::BadMagic);
    }
    let data = &object[..len as usize];
    let crcs = &object[len as usize..object.len() - MAGIC.len()];
    verify(data, crcs, 0)?;
    Ok(data)
}

/// The byte ranges of a stored object to fetch to read `[offset, offset+n)` of a block
/// of `len` bytes: whole segments of data, and their checksums.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockRead {
    pub data: Range<u64>,
    pub checksums: Range<u64>,
    first_segment: u32,
}

impl BlockRead {
    /// Whether one ranged read from `data.start` to `checksums.end` fetches at most
    /// `slack` bytes that are not needed (then one request beats two).
    pub fn contiguous_within(&self, slack: u64) -> bool {
        self.checksums.start - self.data.end <= slack
    }
}

/// Plans a ranged read of `[offset, offset+n)` (within `len`) of a block.
pub fn plan_block_read(len: u32, offset: u32, n: u32) -> BlockRead {
    debug_assert!(offset as u64 + n as u64 <= len as u64 && n > 0);
    let first = offset / SEGMENT;
    let last = (offset + n - 1) / SEGMENT;
    let data = first as u64 * SEGMENT as u64..((last as u64 + 1) * SEGMENT as u64).min(len as u64);
    let crc0 = len as u64 + 4 * first as u64;
    BlockRead {
        data,
        checksums: crc0..crc0 + 4 * (last - first + 1) as u64,
        first_segment: first,
    }
}

/// Verifies fetched segments against fetched checksums and returns bytes
/// `[offset, offset+n)` of the block.
pub fn verify_block_read<'a>(
    plan: &BlockRead,
    offset: u32,
    n: u32,
    data: &'a [u8],
    checksums: &[u8],
) -> Result<&'a [u8], BlockError> {
    let want_data = (plan.data.end - plan.data.start) as usize;
    let want_crcs = (plan.checksums.end - plan.checksums.start) as usize;
    if data.len() < want_data || checksums.len() < want_crcs {
        return Err(BlockError::Truncated);
    }
    let data = &data[..want_data];
    verify(data, &checksums[..want_crcs], plan.first_segment)?;
    let start = (offset as u64 - plan.data.start) as usize;
    Ok(&data[start..start + n as usize])
}

fn verify(data: &[u8], crcs: &[u8], first_segment: u32) -> Result<(), BlockError> {
    for (i, seg) in data.chunks(SEGMENT as usize).enumerate() {
        let want = crcs.get(4 * i..4 * i + 4).ok_or(BlockError::Truncated)?;
        if crc32c::crc32c(seg).to_le_bytes() != want {
            return Err(BlockError::Checksum {
                segment: first_segment + i as u32,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn roundtrip_and_lengths() {
        for len in [1usize, 100, 65536, 65537, 200_000, 4 << 20] {
            let data = bytes(len);
            let obj = encode_block(&data);
            assert_eq!(obj.len() as u64, stored_len(len as u32));
            assert_eq!(decode_block(len as u32, &obj).unwrap(), &data[..]);
        }
    }

    #[test]
    fn damage_is_detected() {
        let data = bytes(200_000);
        let obj = encode_block(&data);
        let mut flipped = obj.clone();
        flipped[150_000] ^= 1;
        assert_eq!(
            decode_block(200_000, &flipped),
            Err(BlockError::Checksum { segment: 2 })
        );
        assert_eq!(
            decode_block(200_000, &obj[..obj.len() - 1]),
            Err(BlockError::Truncated)
        );
        assert_eq!(decode_block(200_000, &data), Err(BlockError::Truncated));
        let mut longer = obj.clone();
        longer.push(0);
        assert_eq!(decode_block(200_000, &longer), Err(BlockError::BadMagic));
        // A ranged read of the flipped segment fails; of another segment, succeeds.
        let p = plan_block_read(200_000, 140_000, 10);
        let d = &flipped[p.data.start as usize..p.data.end as usize];
        let c = &flipped[p.checksums.start as usize..p.checksums.end as usize];
        assert!(verify_block_read(&p, 140_000, 10, d, c).is_err());
        let p = plan_block_read(200_000, 10, 10);
        let d = &flipped[p.data.start as usize..p.data.end as usize];
        let c = &flipped[p.checksums.start as usize..p.checksums.end as usize];
        assert_eq!(verify_block_read(&p, 10, 10, d, c).unwrap(), &data[10..20]);
    }

    proptest! {
        #[test]
        fn ranged_reads_return_exact_bytes(len in 1u32..300_000, a in 0u32..300_000, b in 1u32..300_000) {
            let offset = a % len;
            let n = 1 + b % (len - offset);
            let data = bytes(len as usize);
            let obj = encode_block(&data);
            let p = plan_block_read(len, offset, n);
            prop_assert!(p.data.start <= offset as u64 && p.data.end >= (offset + n) as u64);
            let d = &obj[p.data.start as usize..p.data.end as usize];
            let c = &obj[p.checksums.start as usize..p.checksums.end as usize];
            let got = verify_block_read(&p, offset, n, d, c).unwrap();
            prop_assert_eq!(got, &data[offset as usize..(offset + n) as usize]);
        }
    }
}
