//! Read plans: which bytes of which block objects make up a range of a chunk.
//!
//! A chunk is described by its slice records in commit order; later records win where
//! they overlap. [`visible`] resolves that overlay into the non-overlapping segments that
//! each record still shows, and [`read_plan`] turns a byte range of the chunk into
//! [`ReadPiece`]s: runs of zeros, or byte ranges of block objects for the shell to fetch.

use super::slice::{BlockKey, SliceRef};
use crate::types::{SliceId, CHUNK_SIZE};
use std::collections::BTreeMap;

/// One piece of a read, in chunk order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadPiece {
    /// `len` bytes that read as zeros (a hole, or never written).
    Zero { len: u32 },
    /// Bytes `[offset, offset+len)` of the block object `key`.
    Block {
        key: BlockKey,
        offset: u32,
        len: u32,
    },
}

impl ReadPiece {
    pub fn len(&self) -> u32 {
        match *self {
            ReadPiece::Zero { len } | ReadPiece::Block { len, .. } => len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A segment `[start, end)` of a chunk whose bytes come from `slice` (the newest record
/// covering them). `slice.id` may be [`SliceId::ZERO`]: the segment is a hole.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Visible {
    pub start: u32,
    pub end: u32,
    pub slice: SliceRef,
}

/// The visible segments of a whole chunk, in chunk order. Bytes covered by no record
/// are in no segment.
pub fn visible(slices: &[SliceRef]) -> Vec<Visible> {
    visible_in(slices, 0, CHUNK_SIZE)
}

/// The visible segments clipped to the window `[lo, hi)`.
///
/// Walks records newest to oldest keeping the still-uncovered gaps of the window in an
/// ordered map: each record claims the gaps it overlaps and splits at most one gap in
/// two, so the work is O(n log n) plus the output, however many records overlap.
fn visible_in(slices: &[SliceRef], lo: u64, hi: u64) -> Vec<Visible> {
    let mut out = Vec::new();
    if lo >= hi {
        return out;
    }
    // start -> end of byte ranges no newer record covers yet.
    let mut gaps: BTreeMap<u64, u64> = BTreeMap::new();
    gaps.insert(lo, hi);
    for rec in slices.iter().rev() {
        if gaps.is_empty() {
            break;
        }
        let (rs, re) = ((rec.pos as u64).max(lo), rec.end().min(hi));
        if rs >= re {
            continue;
        }
        // Gaps overlapping [rs, re): possibly one starting before rs, then those
        // starting inside.
        let mut hit: Vec<(u64, u64)> = Vec::new();
        if let Some((&s, &e)) = gaps.range(..rs).next_back() {
            if e > rs {
                hit.push((s, e));
            }
        }
        hit.extend(gaps.range(rs..re).map(|(&s, &e)| (s, e)));
        for (s, e) in hit {
            gaps.remove(&s);
            if s < rs {
                gaps.insert(s, rs);
            }
            if e > re {
                gaps.insert(re, e);
            }
            out.push(Visible {
                start: s.max(rs) as u32,
                end: e.min(re) as u32,
                slice: *rec,
            });
        }
    }
    out.sort_unstable_by_key(|v| v.start);
    out
}

/// The pieces that make up bytes `[start, start+len)` of a chunk whose records are
/// `slices` (commit order), for a volume with blocks of `block_size` bytes.
///
/// Pieces are in order, their lengths sum to `len`, and adjacent zero pieces are merged
/// (as are adjacent ranges of the same block). A record whose bytes would lie past its
/// slice's stored size is corrupt; those bytes read as zeros rather than naming a block
/// that does not exist.
pub fn read_plan(slices: &[SliceRef], start: u32, len: u32, block_size: u32) -> Vec<ReadPiece> {
    assert!(block_size > 0, "block size must be positive");
    debug_assert!(start as u64 + len as u64 <= CHUNK_SIZE);
    let (lo, hi) = (start as u64, start as u64 + len as u64);
    let mut out = Vec::new();
    let mut at = lo;
    for seg in visible_in(slices, lo, hi) {
        let (s, e) = (seg.start as u64, seg.end as u64);
        push_zero(&mut out, s - at);
        if seg.slice.id == SliceId::ZERO {
            push_zero(&mut out, e - s);
        } else {
            push_blocks(&mut out, &seg.slice, s, e, block_size);
        }
        at = e;
    }
    push_zero(&mut out, hi - at);
    out
}

/// Pushes the block ranges holding chunk bytes `[s, e)` of record `rec`.
fn push_blocks(out: &mut Vec<ReadPiece>, rec: &SliceRef, s: u64, e: u64, block_size: u32) {
    let (bs, size) = (block_size as u64, rec.size as u64);
    let mut p = s;
    while p < e {
        let sb = rec.off as u64 + (p - rec.pos as u64);
        if sb >= size {
            push_zero(out, e - p);
            return;
        }
        let index = sb / bs;
        let in_block = sb % bs;
        let block_len = bs.min(size - index * bs);
        let n = (e - p).min(block_len - in_block);
        let key = BlockKey {
            slice: rec.id,
            index: index as u32,
            len: block_len as u32,
        };
        push_block(out, key, in_block as u32, n as u32);
        p += n;
    }
}

fn push_zero(out: &mut Vec<ReadPiece>, len: u64) {
    if len == 0 {
        return;
    }
    if let Some(ReadPiece::Zero { len: prev }) = out.last_mut() {
        *prev += len as u32;
    } else {
        out.push(ReadPiece::Zero { len: len as u32 });
    }
}

fn push_block(out: &mut Vec<ReadPiece>, key: BlockKey, offset: u32, len: u32) {
    if let Some(ReadPiece::Block {
        key: k,
        offset: o,
        len: l,
    }) = out.last_mut()
    {
        // Two records naming adjacent bytes of one block: one ranged read, not two.
        if *k == key && *o + *l == offset {
            *l += len;
            return;
        }
    }
    out.push(ReadPiece::Block { key, offset, len });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::test_support::{arb_slices, content, execute, naive};
    use proptest::prelude::*;

    fn check_shape(plan: &[ReadPiece], len: u32) {
        assert_eq!(plan.iter().map(|p| p.len() as u64).sum::<u64>(), len as u64);
        assert!(plan.iter().all(|p| !p.is_empty()));
        for w in plan.windows(2) {
            assert!(!matches!(
                w,
                [ReadPiece::Zero { .. }, ReadPiece::Zero { .. }]
            ));
        }
    }

    #[test]
    fn empty_chunk_is_one_zero_piece() {
        assert_eq!(
            read_plan(&[], 10, 100, 4),
            vec![ReadPiece::Zero { len: 100 }]
        );
        assert!(read_plan(&[], 10, 0, 4).is_empty());
    }

    #[test]
    fn newest_wins_and_blocks_split() {
        let slices = [
            SliceRef::new(0, SliceId(1), 10),
            SliceRef::new(4, SliceId(2), 3),
            SliceRef::zero(8, 4),
        ];
        let plan = read_plan(&slices, 0, 14, 4);
        let k = |slice, index, len| BlockKey {
            slice: SliceId(slice),
            index,
            len,
        };
        assert_eq!(
            plan,
            vec![
                ReadPiece::Block {
                    key: k(1, 0, 4),
                    offset: 0,
                    len: 4
                },
                ReadPiece::Block {
                    key: k(2, 0, 3),
                    offset: 0,
                    len: 3
                },
                ReadPiece::Block {
                    key: k(1, 1, 4),
                    offset: 3,
                    len: 1
                },
                ReadPiece::Zero { len: 6 },
            ]
        );
    }

    #[test]
    fn corrupt_record_past_size_reads_zero() {
        let rec = SliceRef {
            pos: 0,
            id: SliceId(3),
            size: 4,
            off: 2,
            len: 6,
        };
        let plan = read_plan(&[rec], 0, 6, 16);
        check_shape(&plan, 6);
        assert_eq!(plan[1], ReadPiece::Zero { len: 4 });
    }

    #[test]
    fn many_records_stay_fast() {
        // 10 000 overlapping records over a full chunk: must not be quadratic in bytes.
        let slices: Vec<SliceRef> = (0..10_000u32)
            .map(|i| SliceRef::new(i * 6000, SliceId(i as u64 + 1), 12_000))
            .collect();
        let plan = read_plan(&slices, 0, CHUNK_SIZE as u32, 4 << 20);
        check_shape(&plan, CHUNK_SIZE as u32);
        assert_eq!(visible(&slices).len(), 10_000);
    }

    proptest! {
        #[test]
        fn plan_matches_naive_overlay(
            slices in arb_slices(40),
            start in 0u32..4000,
            len in 0u32..2000,
            block_size in 1u32..700,
        ) {
            let plan = read_plan(&slices, start, len, block_size);
            check_shape(&plan, len);
            let got = execute(&plan, &slices, block_size, &content);
            prop_assert_eq!(got, naive(&slices, start, len));
        }

        #[test]
        fn visible_segments_are_disjoint_and_sorted(slices in arb_slices(40)) {
            let v = visible(&slices);
            for w in v.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
            }
            prop_assert!(v.iter().all(|s| s.start < s.end));
        }
    }
}
