//! What replicas apply: a client's transaction as its reads (to check) and its writes
//! (to apply), and the compact binary form it travels and is logged in.
//!
//! ```text
//! command = version u8 (=1) | client u64 | seq u64 | done_below u64
//!         | n u32 | n × read | m u32 | m × write            (integers big-endian)
//! read    = 1 | bytes key | present u8 | [digest 16]        (a get)
//!         | 2 | bytes start | bytes end | limit u32 | digest 16   (a scan)
//! write   = bytes key | 0                                   (delete)
//!         | bytes key | 1 | bytes value                     (set)
//! bytes   = len u32 | len bytes
//! ```

use crate::kv::{KvPair, WriteSet};
use std::fmt;
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// A 128-bit digest of what a read returned.
pub type Digest = u128;

/// Names one request of one client, for exactly-once application.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct RequestId {
    pub client: u64,
    pub seq: u64,
}

/// One read a transaction's decisions depended on, and what it returned.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ReadCheck {
    /// `get(key)` returned a value with this digest, or nothing (`None`).
    Get {
        key: Vec<u8>,
        digest: Option<Digest>,
    },
    /// `scan(start, end, limit)` returned pairs with this digest ([`digest_pairs`]),
    /// so a key that appeared in the range (a phantom) is seen too.
    Scan {
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
        digest: Digest,
    },
}

/// A transaction for the replicas to apply.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Command {
    pub id: RequestId,
    /// Every request of this client below this seq has its answer: the replicas drop
    /// their records, and refuse those requests if they come again.
    pub done_below: u64,
    pub reads: Vec<ReadCheck>,
    pub writes: WriteSet,
}

/// What applying a command did (the same on every replica).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Every read held: the writes are applied.
    Applied,
    /// A read no longer holds: nothing was written; the client runs its transaction
    /// again (as a new request).
    Conflict,
    /// A request the client had already declared answered (a stray duplicate):
    /// nothing was written.
    Stale,
    /// The command writes keys that belong to the engine: refused.
    Invalid,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Applied => 1,
            Outcome::Conflict => 2,
            Outcome::Stale => 3,
            Outcome::Invalid => 4,
        }
    }

    pub fn from_code(c: u8) -> Option<Outcome> {
        Some(match c {
            1 => Outcome::Applied,
            2 => Outcome::Conflict,
            3 => Outcome::Stale,
            4 => Outcome::Invalid,
            _ => return None,
        })
    }
}

/// The digest of a value.
pub fn digest_value(v: &[u8]) -> Digest {
    xxh3_128(v)
}

/// The digest of a scan's result: every pair, length-prefixed, in order.
pub fn digest_pairs(pairs: &[KvPair]) -> Digest {
    let mut h = Xxh3::new();
    h.update(&(pairs.len() as u64).to_be_bytes());
    for (k, v) in pairs {
        h.update(&(k.len() as u32).to_be_bytes());
        h.update(k);
        h.update(&(v.len() as u32).to_be_bytes());
        h.update(v);
    }
    h.digest128()
}

/// Why bytes are not a command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    Version(u8),
    Truncated,
    BadTag(u8),
    Trailing,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Version(v) => write!(f, "unknown command version {v}"),
            DecodeError::Truncated => write!(f, "command is truncated"),
            DecodeError::BadTag(t) => write!(f, "unknown tag {t} in command"),
            DecodeError::Trailing => write!(f, "bytes after the end of the command"),
        }
    }
}

impl std::error::Error for DecodeError {}

const VERSION: u8 = 1;

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        out.extend_from_slice(&self.id.client.to_be_bytes());
        out.extend_from_slice(&self.id.seq.to_be_bytes());
        out.extend_from_slice(&self.done_below.to_be_bytes());
        out.extend_from_slice(&(self.reads.len() as u32).to_be_bytes());
        for r in &self.reads {
            match r {
                ReadCheck::Get { key, digest } => {
                    out.push(1);
                    put_bytes(&mut out, key);
                    match digest {
                        Some(d) => {
                            out.push(1);
                            out.extend_from_slice(&d.to_be_bytes());
                        }
                        None => out.push(0),
                    }
                }
                ReadCheck::Scan {
                    start,
                    end,
                    limit,
                    digest,
                } => {
                    out.push(2);
                    put_bytes(&mut out, start);
                    put_bytes(&mut out, end);
                    out.extend_from_slice(&limit.to_be_bytes());
                    out.extend_from_slice(&digest.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&(self.writes.len() as u32).to_be_bytes());
        for (k, w) in &self.writes {
            put_bytes(&mut out, k);
            match w {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    put_bytes(&mut out, v);
                }
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Command, DecodeError> {
        let mut r = Reader(b);
        let v = r.u8()?;
        if v != VERSION {
            return Err(DecodeError::Version(v));
        }
        let id = RequestId {
            client: r.u64()?,
            seq: r.u64()?,
        };
        let done_below = r.u64()?;
        let n = r.u32()?;
        let mut reads = Vec::with_capacity((n as usize).min(1024));
        for _ in 0..n {
            reads.push(match r.u8()? {
                1 => {
                    let key = r.bytes()?;
                    let digest = match r.u8()? {
                        0 => None,
                        1 => Some(r.u128()?),
                        t => return Err(DecodeError::BadTag(t)),
                    };
                    ReadCheck::Get { key, digest }
                }
                2 => ReadCheck::Scan {
                    start: r.bytes()?,
                    end: r.bytes()?,
                    limit: r.u32()?,
                    digest: r.u128()?,
                },
                t => return Err(DecodeError::BadTag(t)),
            });
        }
        let m = r.u32()?;
        let mut writes = WriteSet::new();
        for _ in 0..m {
            let k = r.bytes()?;
            let w = match r.u8()? {
                0 => None,
                1 => Some(r.bytes()?),
                t => return Err(DecodeError::BadTag(t)),
            };
            writes.insert(k, w);
        }
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing);
        }
        Ok(Command {
            id,
            done_below,
            reads,
            writes,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(
            self.take(16)?.try_into().unwrap_or([0; 16]),
        ))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Command {
        let mut writes = WriteSet::new();
        writes.insert(b"a".to_vec(), Some(b"1".to_vec()));
        writes.insert(b"b".to_vec(), None);
        Command {
            id: RequestId { client: 7, seq: 9 },
            done_below: 3,
            reads: vec![
                ReadCheck::Get {
                    key: b"x".to_vec(),
                    digest: Some(digest_value(b"v")),
                },
                ReadCheck::Get {
                    key: b"y".to_vec(),
                    digest: None,
                },
                ReadCheck::Scan {
                    start: b"a".to_vec(),
                    end: b"b".to_vec(),
                    limit: 10,
                    digest: digest_pairs(&[]),
                },
            ],
            writes,
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let c = sample();
        let b = c.encode();
        assert_eq!(Command::decode(&b), Ok(c));
        assert_eq!(
            Command::decode(&b[..b.len() - 1]),
            Err(DecodeError::Truncated)
        );
        let mut v2 = b.clone();
        v2[0] = 2;
        assert_eq!(Command::decode(&v2), Err(DecodeError::Version(2)));
        let mut long = b;
        long.push(0);
        assert_eq!(Command::decode(&long), Err(DecodeError::Trailing));
    }

    #[test]
    fn scan_digests_see_boundaries_between_keys_and_values() {
        let a = vec![(b"ab".to_vec(), b"c".to_vec())];
        let b = vec![(b"a".to_vec(), b"bc".to_vec())];
        assert_ne!(digest_pairs(&a), digest_pairs(&b));
        assert_ne!(digest_pairs(&[]), digest_pairs(&a));
    }

    proptest! {
        #[test]
        fn any_command_round_trips(
            client in any::<u64>(), seq in any::<u64>(), below in any::<u64>(),
            gets in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..8), proptest::option::of(any::<u128>())), 0..5),
            writes in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 0..8), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)), 0..5),
        ) {
            let c = Command {
                id: RequestId { client, seq },
                done_below: below,
                reads: gets.into_iter().map(|(key, digest)| ReadCheck::Get { key, digest }).collect(),
                writes,
            };
            prop_assert_eq!(Command::decode(&c.encode()), Ok(c));
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Command::decode(&b);
        }
    }
}
