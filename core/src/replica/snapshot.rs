//! A replica's whole engine as one snapshot: what a Raft log keeps in place of the
//! entries it compacted, and what a leader sends a replica too far behind (or new).
//!
//! ```text
//! snapshot = "FSNP" | version u8 (=1) | index u64 | n u64
//!          | n × (bytes key | bytes value) | digest 16     (integers big-endian)
//! bytes    = len u32 | len bytes
//! digest   = xxh3-128 of everything before it
//! ```
//!
//! It holds every key of the engine, the replica's own (`R`: applied index, request
//! records, membership) included, so a restored replica answers a retried request as
//! the others would. `index` is the last log entry the state includes. The digest
//! catches a snapshot damaged on disk or on the wire: such a snapshot is refused and
//! nothing is written.

use super::apply::{applied_index_in, REQUEST_PREFIX};
use crate::errno::{Errno, Result};
use crate::kv::{self, Kv, KvPair};
use std::fmt;
use xxhash_rust::xxh3::xxh3_128;

const MAGIC: &[u8; 4] = b"FSNP";
const VERSION: u8 = 1;
/// Keys are read and deleted this many at a time.
const PAGE: usize = 4096;
/// Above every key an engine holds (metadata keys start with ASCII letters).
const END: &[u8] = &[0xFF; 16];

/// Why bytes are not a snapshot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SnapshotError {
    NotASnapshot,
    Version(u8),
    Truncated,
    Damaged,
    /// The engine failed while the snapshot was read or written.
    Engine(Errno),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NotASnapshot => write!(f, "not a ferrofs snapshot"),
            SnapshotError::Version(v) => write!(f, "unknown snapshot version {v}"),
            SnapshotError::Truncated => write!(f, "the snapshot is truncated"),
            SnapshotError::Damaged => write!(f, "the snapshot's checksum does not match"),
            SnapshotError::Engine(e) => write!(f, "metadata engine: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<Errno> for SnapshotError {
    fn from(e: Errno) -> Self {
        SnapshotError::Engine(e)
    }
}

fn all_pairs(t: &mut dyn kv::Txn) -> Result<Vec<KvPair>> {
    let mut out: Vec<KvPair> = Vec::new();
    let mut start = Vec::new();
    loop {
        let page = t.scan(&start, END, PAGE)?;
        let full = page.len() == PAGE;
        if let Some((k, _)) = page.last() {
            start = k.clone();
            start.push(0);
        }
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// The engine's state, in one consistent view, as a snapshot; and the log index it
/// includes (the engine's applied index).
pub fn dump(engine: &dyn Kv) -> Result<(u64, Vec<u8>)> {
    kv::read(engine, |t| {
        let index = applied_index_in(t)?;
        let pairs = all_pairs(t)?;
        Ok((index, encode(index, &pairs)))
    })
}

fn encode(index: u64, pairs: &[KvPair]) -> Vec<u8> {
    let size: usize = pairs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(4 + 1 + 16 + size + 16);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&(pairs.len() as u64).to_be_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    let digest = xxh3_128(&out);
    out.extend_from_slice(&digest.to_be_bytes());
    out
}

/// The log index a snapshot includes, and its pairs, if it is whole.
pub fn decode(data: &[u8]) -> std::result::Result<(u64, Vec<KvPair>), SnapshotError> {
    if data.len() < 4 || &data[..4] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    if data.len() < 4 + 1 + 16 + 16 {
        return Err(SnapshotError::Truncated);
    }
    if data[4] != VERSION {
        return Err(SnapshotError::Version(data[4]));
    }
    let (body, digest) = data.split_at(data.len() - 16);
    if xxh3_128(body).to_be_bytes() != digest {
        return Err(SnapshotError::Damaged);
    }
    let mut r = Reader(&body[5..]);
    let index = r.u64()?;
    let n = r.u64()?;
    let mut pairs = Vec::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        let k = r.bytes()?;
        let v = r.bytes()?;
        pairs.push((k, v));
    }
    if !r.0.is_empty() {
        return Err(SnapshotError::Damaged);
    }
    Ok((index, pairs))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], SnapshotError> {
        if self.0.len() < n {
            return Err(SnapshotError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u64(&mut self) -> std::result::Result<u64, SnapshotError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> std::result::Result<Vec<u8>, SnapshotError> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Replaces the engine's whole state by the snapshot's, in one transaction; returns
/// the log index the state now includes. A damaged snapshot changes nothing.
pub fn restore(engine: &dyn Kv, data: &[u8]) -> std::result::Result<u64, SnapshotError> {
    let (index, pairs) = decode(data)?;
    kv::txn(engine, |t| {
        for (k, _) in all_pairs(t)? {
            t.delete(&k);
        }
        for (k, v) in &pairs {
            t.set(k, v);
        }
        // The snapshot's own record of its index wins over whatever it carries.
        t.set(&[REQUEST_PREFIX], &index.to_be_bytes());
        Ok(())
    })?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;
    use crate::replica::{applied_index, mark_applied};

    fn engine_with(n: usize) -> MemKv {
        let kv = MemKv::new();
        kv::txn(&kv, |t| {
            for i in 0..n {
                t.set(format!("A{i:06}").as_bytes(), format!("v{i}").as_bytes());
            }
            Ok(())
        })
        .unwrap();
        mark_applied(&kv, 42).unwrap();
        kv
    }

    #[test]
    fn a_restored_engine_equals_the_dumped_one_and_loses_its_own_keys() {
        let src = engine_with(2 * PAGE + 7);
        let (index, data) = dump(&src).unwrap();
        assert_eq!(index, 42);
        let dst = MemKv::new();
        kv::txn(&dst, |t| {
            t.set(b"Zstale", b"x");
            Ok(())
        })
        .unwrap();
        assert_eq!(restore(&dst, &data).unwrap(), 42);
        assert_eq!(dst.dump(), src.dump(), "every key, no stale one");
        assert_eq!(applied_index(&dst).unwrap(), 42);
    }

    #[test]
    fn damaged_or_truncated_snapshots_are_refused_and_change_nothing() {
        let (_, data) = dump(&engine_with(10)).unwrap();
        let dst = engine_with(3);
        let before = dst.dump();
        let mut flipped = data.clone();
        flipped[30] ^= 1;
        assert_eq!(restore(&dst, &flipped), Err(SnapshotError::Damaged));
        assert_eq!(
            restore(&dst, &data[..data.len() - 1]),
            Err(SnapshotError::Damaged)
        );
        assert_eq!(restore(&dst, &data[..10]), Err(SnapshotError::Truncated));
        assert_eq!(restore(&dst, b"nope"), Err(SnapshotError::NotASnapshot));
        let mut v2 = data.clone();
        v2[4] = 9;
        assert_eq!(restore(&dst, &v2), Err(SnapshotError::Version(9)));
        assert_eq!(dst.dump(), before);
    }

    #[test]
    fn an_empty_engine_round_trips() {
        let (index, data) = dump(&MemKv::new()).unwrap();
        assert_eq!(index, 0);
        assert_eq!(decode(&data).unwrap(), (0, vec![]));
    }
}
