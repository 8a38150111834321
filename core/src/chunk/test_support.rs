//! Test-only helpers shared by the chunk tests: a deterministic slice content, a naive
//! byte-array model of a chunk's records, and a plan executor that checks block keys.

use super::read::ReadPiece;
use super::slice::{blocks_of_slice, SliceRef};
use crate::types::SliceId;
use proptest::prelude::*;

/// The content of byte `i` of slice `id` in these tests.
pub fn content(id: SliceId, i: u64) -> u8 {
    let x = id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 29) as u8 | 1
}

/// Bytes `[start, start+len)` by applying each record in order to a byte array.
pub fn naive(slices: &[SliceRef], start: u32, len: u32) -> Vec<u8> {
    let end = slices.iter().map(|s| s.end()).max().unwrap_or(0);
    let mut arr = vec![0u8; end.max(start as u64 + len as u64) as usize];
    for s in slices {
        for i in 0..s.len as u64 {
            arr[(s.pos as u64 + i) as usize] = if s.id == SliceId::ZERO {
                0
            } else {
                content(s.id, s.off as u64 + i)
            };
        }
    }
    arr[start as usize..(start + len) as usize].to_vec()
}

/// Executes a plan the way the shell would, checking every block key is real.
pub fn execute(
    plan: &[ReadPiece],
    slices: &[SliceRef],
    block_size: u32,
    content: &dyn Fn(SliceId, u64) -> u8,
) -> Vec<u8> {
    let mut out = Vec::new();
    for p in plan {
        match *p {
            ReadPiece::Zero { len } => out.extend(std::iter::repeat_n(0, len as usize)),
            ReadPiece::Block { key, offset, len } => {
                let rec = slices.iter().find(|s| s.id == key.slice).unwrap();
                assert!(blocks_of_slice(rec.id, rec.size, block_size).contains(&key));
                assert!(len > 0 && offset + len <= key.len);
                let base = key.index as u64 * block_size as u64 + offset as u64;
                out.extend((0..len as u64).map(|i| content(key.slice, base + i)));
            }
        }
    }
    out
}

pub fn arb_slices(max_records: usize) -> impl Strategy<Value = Vec<SliceRef>> {
    let rec = (0u32..3000, 1u32..1200, 0u32..300, 0u32..300, any::<bool>()).prop_map(
        |(pos, len, extra_off, extra_tail, zero)| {
            if zero {
                SliceRef::zero(pos, len)
            } else {
                // The id is filled in below; 1 marks "not a hole" until then.
                SliceRef {
                    pos,
                    id: SliceId(1),
                    size: extra_off + len + extra_tail,
                    off: extra_off,
                    len,
                }
            }
        },
    );
    prop::collection::vec(rec, 0..max_records).prop_map(|mut v| {
        // Distinct ids in commit order, as the metadata layer hands them out.
        for (i, s) in v.iter_mut().enumerate() {
            if s.id != SliceId::ZERO {
                s.id = SliceId(i as u64 + 1);
            }
        }
        v
    })
}
