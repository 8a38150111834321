//! The not-yet-flushed bytes of one file.
//!
//! Writes land here first and become slices when the shell flushes them. The buffer keeps
//! disjoint extents, newest bytes winning; extents that touch are merged so a flush makes
//! few, large slices. An extent never crosses a chunk boundary, because a slice belongs to
//! exactly one chunk.

use crate::types::{ChunkIndex, CHUNK_SIZE};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Dirty extents of one file, keyed by file offset.
///
/// Invariants: extents are non-empty and disjoint; two extents of the same chunk never
/// touch (they would have been merged); no extent crosses a multiple of [`CHUNK_SIZE`].
#[derive(Clone, Debug, Default)]
pub struct WriteBuffer {
    extents: BTreeMap<u64, Vec<u8>>,
    /// Sum of the extents' lengths, kept so that the shell can cheaply apply its
    /// buffer-size limit after every write.
    bytes: u64,
}

fn chunk_start(offset: u64) -> u64 {
    offset - offset % CHUNK_SIZE
}

/// Capacity of a new extent starting at `s` with `len` bytes, in a chunk ending at
/// `chunk_end`. A large write is likely the start of a stream that will fill the rest of
/// the chunk: reserving that room up front (address space only; pages are touched as
/// bytes arrive) spares the copies of growing a 64 MiB Vec by doubling.
fn initial_capacity(s: u64, len: usize, chunk_end: u64) -> usize {
    const STREAMING_WRITE: usize = 64 << 10;
    if len >= STREAMING_WRITE {
        (chunk_end - s) as usize
    } else {
        len
    }
}

impl WriteBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Buffers `data` at file offset `offset`, replacing any buffered bytes it overlaps.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut off = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let room = chunk_start(off) + CHUNK_SIZE - off;
            let n = (rest.len() as u64).min(room) as usize;
            self.write_in_chunk(off, &rest[..n]);
            off += n as u64;
            rest = &rest[n..];
        }
    }

    /// Writes `data` (non-empty, inside one chunk) at `s`, merging with every extent of
    /// that chunk it overlaps or touches.
    ///
    /// The merged extent reuses the Vec of the extent that starts at or before `s`, so a
    /// sequential append only extends that Vec (amortised O(len)). Writing backwards in
    /// front of a large extent copies that extent's tail; that pattern is rare.
    fn write_in_chunk(&mut self, s: u64, data: &[u8]) {
        let e = s + data.len() as u64;
        let (lo, hi) = (chunk_start(s), chunk_start(s) + CHUNK_SIZE);
        let left = match self.extents.range(lo..=s).next_back() {
            Some((&ls, v)) if ls + v.len() as u64 >= s => Some(ls),
            _ => None,
        };
        let rights: Vec<u64> = self
            .extents
            .range((Bound::Excluded(s), Bound::Included(e)))
            .map(|(&k, _)| k)
            .take_while(|&k| k < hi)
            .collect();
        let (base, mut buf) = match left {
            Some(ls) => (ls, self.remove(ls)),
            None => (s, Vec::with_capacity(initial_capacity(s, data.len(), hi))),
        };
        let at = (s - base) as usize;
        if buf.len() >= at + data.len() {
            buf[at..at + data.len()].copy_from_slice(data);
        } else {
            buf.truncate(at);
            buf.extend_from_slice(data);
        }
        for r in rights {
            let v = self.remove(r);
            let cur_end = base + buf.len() as u64;
            if r + v.len() as u64 > cur_end {
                buf.extend_from_slice(&v[(cur_end - r) as usize..]);
            }
        }
        self.bytes += buf.len() as u64;
        self.extents.insert(base, buf);
    }

    fn remove(&mut self, start: u64) -> Vec<u8> {
        let v = self.extents.remove(&start).unwrap_or_default();
        self.bytes -= v.len() as u64;
        v
    }

    /// Copies the buffered bytes of `[offset, offset+buf.len())` over `buf`; bytes not
    /// buffered are left as they are (they come from the object store).
    pub fn read_overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        let before = self
            .extents
            .range(..offset)
            .next_back()
            .map(|(&k, v)| (k, v));
        let inside = self.extents.range(offset..end).map(|(&k, v)| (k, v));
        for (s, v) in before.into_iter().chain(inside) {
            let (from, to) = (s.max(offset), (s + v.len() as u64).min(end));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&v[(from - s) as usize..(to - s) as usize]);
            }
        }
    }

    /// Total bytes buffered.
    pub fn buffered_bytes(&self) -> u64 {
        self.bytes
    }

    /// End of the highest buffered byte (the file is at least this long), 0 if empty.
    pub fn end(&self) -> u64 {
        self.extents
            .last_key_value()
            .map_or(0, |(&s, v)| s + v.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// The chunks that have buffered bytes, ascending.
    pub fn dirty_chunks(&self) -> Vec<ChunkIndex> {
        // Jump from chunk to chunk instead of visiting every extent.
        let mut out = Vec::new();
        let mut from = 0u64;
        while let Some((&s, _)) = self.extents.range(from..).next() {
            let idx = s / CHUNK_SIZE;
            out.push(ChunkIndex(idx as u32));
            from = (idx + 1) * CHUNK_SIZE;
        }
        out
    }

    /// Whether one extent covers chunk `idx` entirely (it can be flushed right away as a
    /// whole-chunk slice).
    pub fn chunk_is_full(&self, idx: ChunkIndex) -> bool {
        let lo = idx.0 as u64 * CHUNK_SIZE;
        self.extents
            .get(&lo)
            .is_some_and(|v| v.len() as u64 == CHUNK_SIZE)
    }

    /// Removes and returns the extents of chunk `idx` as (position in chunk, bytes),
    /// ascending.
    pub fn take_chunk(&mut self, idx: ChunkIndex) -> Vec<(u32, Vec<u8>)> {
        let lo = idx.0 as u64 * CHUNK_SIZE;
        let keys: Vec<u64> = self
            .extents
            .range(lo..lo + CHUNK_SIZE)
            .map(|(&k, _)| k)
            .collect();
        keys.into_iter()
            .map(|k| ((k - lo) as u32, self.remove(k)))
            .collect()
    }

    /// Removes and returns every extent as (chunk, position in chunk, bytes), ascending.
    pub fn take_all(&mut self) -> Vec<(ChunkIndex, u32, Vec<u8>)> {
        self.bytes = 0;
        std::mem::take(&mut self.extents)
            .into_iter()
            .map(|(s, v)| {
                let idx = s / CHUNK_SIZE;
                (ChunkIndex(idx as u32), (s - idx * CHUNK_SIZE) as u32, v)
            })
            .collect()
    }

    /// Drops buffered bytes at or past `new_len` (the file was truncated).
    pub fn truncate(&mut self, new_len: u64) {
        let dropped = self.extents.split_off(&new_len);
        self.bytes -= dropped.values().map(|v| v.len() as u64).sum::<u64>();
        if let Some((&s, v)) = self.extents.last_key_value() {
            if s + v.len() as u64 > new_len {
                let keep = (new_len - s) as usize;
                self.bytes -= (v.len() - keep) as u64;
                if let Some(v) = self.extents.get_mut(&s) {
                    v.truncate(keep);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: u64 = CHUNK_SIZE;
    /// The tests look at a window of 2·W bytes around the first chunk boundary.
    const W: u64 = 4096;
    const BASE: u64 = C - W;

    fn check_invariants(b: &WriteBuffer) {
        let mut prev: Option<(u64, u64)> = None;
        let mut total = 0;
        for (&s, v) in &b.extents {
            let e = s + v.len() as u64;
            assert!(!v.is_empty(), "empty extent at {s}");
            assert_eq!(
                chunk_start(s),
                chunk_start(e - 1),
                "extent {s}..{e} crosses a chunk"
            );
            if let Some((ps, pe)) = prev {
                assert!(pe <= s, "overlap {ps}..{pe} / {s}..{e}");
                assert!(
                    pe < s || s % C == 0,
                    "touching extents {ps}..{pe} / {s}..{e} not merged"
                );
            }
            prev = Some((s, e));
            total += v.len() as u64;
        }
        assert_eq!(total, b.buffered_bytes());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Write { off: u64, len: usize },
        Truncate(u64),
        TakeChunk(u32),
        TakeAll,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (BASE..BASE + 2 * W, 1usize..900).prop_map(|(off, len)| Op::Write { off, len }),
            1 => (BASE - 100..BASE + 2 * W).prop_map(Op::Truncate),
            1 => (0u32..2).prop_map(Op::TakeChunk),
            1 => Just(Op::TakeAll),
        ]
    }

    /// The model: one optional byte per window position (writes past the window are
    /// clipped by construction: off + len < BASE + 2W + 900, so the model is larger).
    const M: usize = (2 * W + 1000) as usize;

    fn taken_to_model(model_out: &mut [Option<u8>], chunk: u32, pos: u32, v: &[u8]) {
        let file = chunk as u64 * C + pos as u64;
        for (i, &byte) in v.iter().enumerate() {
            let idx = (file + i as u64 - BASE) as usize;
            assert!(
                model_out[idx].is_none(),
                "byte {} returned twice",
                file + i as u64
            );
            model_out[idx] = Some(byte);
        }
    }

    proptest! {
        #[test]
        fn buffer_matches_byte_model(ops in prop::collection::vec(arb_op(), 1..40)) {
            let mut b = WriteBuffer::new();
            let mut model: Vec<Option<u8>> = vec![None; M];
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Write { off, len } => {
                        let data: Vec<u8> = (0..len).map(|i| (n * 37 + i) as u8).collect();
                        b.write(off, &data);
                        for (i, &d) in data.iter().enumerate() {
                            model[(off - BASE) as usize + i] = Some(d);
                        }
                    }
                    Op::Truncate(len) => {
                        b.truncate(len);
                        let from = len.saturating_sub(BASE) as usize;
                        model[from.min(M)..].iter_mut().for_each(|m| *m = None);
                    }
                    Op::TakeChunk(c) => {
                        let mut got = vec![None; M];
                        for (pos, v) in b.take_chunk(ChunkIndex(c)) {
                            taken_to_model(&mut got, c, pos, &v);
                        }
                        for (i, m) in model.iter_mut().enumerate() {
                            let in_chunk = (BASE + i as u64) / C == c as u64;
                            let want = if in_chunk { m.take() } else { None };
                            prop_assert_eq!(got[i], want);
                        }
                    }
                    Op::TakeAll => {
                        let mut got = vec![None; M];
                        for (c, pos, v) in b.take_all() {
                            taken_to_model(&mut got, c.0, pos, &v);
                        }
                        prop_assert_eq!(&got, &model);
                        model.iter_mut().for_each(|m| *m = None);
                    }
                }
                check_invariants(&b);
                let count = model.iter().filter(|m| m.is_some()).count() as u64;
                prop_assert_eq!(b.buffered_bytes(), count);
                prop_assert_eq!(b.is_empty(), count == 0);
                let end = model.iter().rposition(|m| m.is_some()).map_or(0, |i| BASE + i as u64 + 1);
                prop_assert_eq!(b.end(), end);
                let mut dirty = Vec::new();
                for c in 0..2u32 {
                    let any = model.iter().enumerate().any(|(i, m)| m.is_some() && (BASE + i as u64) / C == c as u64);
                    if any {
                        dirty.push(ChunkIndex(c));
                    }
                }
                prop_assert_eq!(b.dirty_chunks(), dirty);
                for fill in [0u8, 0xff] {
                    // Read a window slightly larger than the model's on the left.
                    let mut buf = vec![fill; M + 50];
                    b.read_overlay(BASE - 50, &mut buf);
                    prop_assert!(buf[..50].iter().all(|&x| x == fill));
                    for (i, m) in model.iter().enumerate() {
                        prop_assert_eq!(buf[50 + i], m.unwrap_or(fill));
                    }
                }
            }
        }
    }

    #[test]
    fn sequential_appends_fill_a_chunk_in_one_extent() {
        let mut b = WriteBuffer::new();
        let block = vec![7u8; 128 << 10];
        let mut off = 0;
        while off < C + (1 << 20) {
            b.write(off, &block);
            off += block.len() as u64;
        }
        assert!(b.chunk_is_full(ChunkIndex(0)));
        assert!(!b.chunk_is_full(ChunkIndex(1)));
        assert_eq!(b.extents.len(), 2);
        assert_eq!(b.buffered_bytes(), off);
        assert_eq!(b.dirty_chunks(), vec![ChunkIndex(0), ChunkIndex(1)]);
        let whole = b.take_chunk(ChunkIndex(0));
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].0, whole[0].1.len() as u64), (0, C));
        assert_eq!(b.buffered_bytes(), 1 << 20);
        assert_eq!(b.end(), C + (1 << 20));
    }

    #[test]
    fn write_across_boundary_splits_and_overwrite_in_middle() {
        let mut b = WriteBuffer::new();
        b.write(C - 2, b"abcd");
        assert_eq!(b.dirty_chunks(), vec![ChunkIndex(0), ChunkIndex(1)]);
        b.write(C - 1, b"X");
        let mut buf = [0u8; 4];
        b.read_overlay(C - 2, &mut buf);
        assert_eq!(&buf, b"aXcd");
        let all = b.take_all();
        assert_eq!(
            all,
            vec![
                (ChunkIndex(0), (C - 2) as u32, b"aX".to_vec()),
                (ChunkIndex(1), 0, b"cd".to_vec()),
            ]
        );
        assert!(b.is_empty());
        assert_eq!(b.end(), 0);
        b.write(10, b"");
        assert!(b.is_empty());
    }
}
