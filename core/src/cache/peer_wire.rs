//! The cache-group peer protocol's frames, encoded and decoded without I/O: the shell
//! feeds bytes in and writes what comes out.
//!
//! ```text
//! frame    = len u32 | kind u8 | body            (len counts kind and body; big-endian)
//! kind 1   challenge (server, first):  version u8 (=1) | nonce [32]
//! kind 2   hello (client):             proof [32] of the server's nonce | nonce [32]
//! kind 3   welcome (server):           proof [32] of the client's nonce
//! kind 4   request:  id u64 | op u8 | flags u8 | block
//!          op 1 get (the block object), 2 warm (into the owner's cache),
//!          3 check (is it cached?), 4 evict (drop it from the cache)
//!          flags bit 0: local only (do not ask another member; object storage is fine)
//! kind 5   response: id u64 | status u8 | payload
//!          status 0 block:   block | object (the block's data, then its segment checksums)
//!          status 1 missing: the object is not in object storage
//!          status 2 warmed:  cached u8 | fetched u8
//!          status 3 failed:  message (UTF-8)
//! kind 6   denied (wrong proof; the connection is closed)
//! block    = slice u64 | index u32 | len u32
//! ```
//!
//! A connection starts with the handshake: both sides prove they hold the group key
//! (HMAC of the other side's nonce, computed by the shell), so neither a stranger nor a
//! replayed proof gets a block. Requests are pipelined: many may be in flight on one
//! connection and responses come back in any order, matched by id. A block response
//! names its block, so a misrouted answer is caught, and carries the object with its
//! checksums, which the reader verifies: checksums hold from object storage to reader.
//! Anything malformed is a [`WireError`]; the shell closes the connection on one.

use crate::chunk::block::stored_len;
use crate::chunk::BlockKey;
use crate::format::MAX_BLOCK_SIZE;
use crate::types::SliceId;

pub const VERSION: u8 = 1;
pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;

/// The largest frame: a block response for the largest block, plus headers.
pub fn max_frame() -> usize {
    stored_len(MAX_BLOCK_SIZE) as usize + 64
}

const KIND_CHALLENGE: u8 = 1;
const KIND_HELLO: u8 = 2;
const KIND_WELCOME: u8 = 3;
const KIND_REQUEST: u8 = 4;
const KIND_RESPONSE: u8 = 5;
const KIND_DENIED: u8 = 6;

/// What a request asks of the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Warm,
    Check,
    Evict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Block(BlockKey, Vec<u8>),
    Missing,
    Warmed { cached: bool, fetched: bool },
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Challenge {
        nonce: [u8; NONCE_LEN],
    },
    Hello {
        proof: [u8; PROOF_LEN],
        nonce: [u8; NONCE_LEN],
    },
    Welcome {
        proof: [u8; PROOF_LEN],
    },
    Request {
        id: u64,
        op: Op,
        local_only: bool,
        key: BlockKey,
    },
    Response {
        id: u64,
        reply: Reply,
    },
    Denied,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    TooLarge(usize),
    Malformed(&'static str),
    Version(u8),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TooLarge(n) => write!(f, "a frame of {n} bytes is larger than any block"),
            WireError::Malformed(what) => write!(f, "malformed frame: {what}"),
            WireError::Version(v) => write!(
                f,
                "peer speaks protocol version {v}, this one {VERSION}: upgrade the older member"
            ),
        }
    }
}

impl std::error::Error for WireError {}

fn put_key(out: &mut Vec<u8>, k: &BlockKey) {
    out.extend_from_slice(&k.slice.0.to_be_bytes());
    out.extend_from_slice(&k.index.to_be_bytes());
    out.extend_from_slice(&k.len.to_be_bytes());
}

fn op_code(op: Op) -> u8 {
    match op {
        Op::Get => 1,
        Op::Warm => 2,
        Op::Check => 3,
        Op::Evict => 4,
    }
}

impl Frame {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        match self {
            Frame::Challenge { nonce } => {
                b.push(KIND_CHALLENGE);
                b.push(VERSION);
                b.extend_from_slice(nonce);
            }
            Frame::Hello { proof, nonce } => {
                b.push(KIND_HELLO);
                b.extend_from_slice(proof);
                b.extend_from_slice(nonce);
            }
            Frame::Welcome { proof } => {
                b.push(KIND_WELCOME);
                b.extend_from_slice(proof);
            }
            Frame::Request {
                id,
                op,
                local_only,
                key,
            } => {
                b.push(KIND_REQUEST);
                b.extend_from_slice(&id.to_be_bytes());
                b.push(op_code(*op));
                b.push(u8::from(*local_only));
                put_key(&mut b, key);
            }
            Frame::Response { id, reply } => {
                b.push(KIND_RESPONSE);
                b.extend_from_slice(&id.to_be_bytes());
                match reply {
                    Reply::Block(key, object) => {
                        b.reserve(object.len() + 17);
                        b.push(0);
                        put_key(&mut b, key);
                        b.extend_from_slice(object);
                    }
                    Reply::Missing => b.push(1),
                    Reply::Warmed { cached, fetched } => {
                        b.extend_from_slice(&[2, u8::from(*cached), u8::from(*fetched)])
                    }
                    Reply::Failed(m) => {
                        b.push(3);
                        b.extend_from_slice(m.as_bytes());
                    }
                }
            }
            Frame::Denied => b.push(KIND_DENIED),
        }
        let len = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        b
    }

    /// The length of the frame at the start of `buf` (prefix included) once its prefix
    /// is there: how much to read. Refuses lengths no frame can have before any of the
    /// body is buffered, so a bad peer cannot make us allocate a lot.
    pub fn wanted(buf: &[u8]) -> Result<Option<usize>, WireError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return Err(WireError::Malformed("empty frame"));
        }
        if len > max_frame() {
            return Err(WireError::TooLarge(len));
        }
        Ok(Some(4 + len))
    }

    /// Decodes the frame at the start of `buf`: `None` until all of it is there, else
    /// the frame and how many bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
        let Some(total) = Frame::wanted(buf)? else {
            return Ok(None);
        };
        if buf.len() < total {
            return Ok(None);
        }
        let body = &buf[5..total];
        let frame = match buf[4] {
            KIND_CHALLENGE => {
                let (&version, nonce) = body
                    .split_first()
                    .ok_or(WireError::Malformed("empty challenge"))?;
                if version != VERSION {
                    return Err(WireError::Version(version));
                }
                Frame::Challenge {
                    nonce: fixed(nonce, "challenge")?,
                }
            }
            KIND_HELLO if body.len() == PROOF_LEN + NONCE_LEN => Frame::Hello {
                proof: fixed(&body[..PROOF_LEN], "hello")?,
                nonce: fixed(&body[PROOF_LEN..], "hello")?,
            },
            KIND_WELCOME => Frame::Welcome {
                proof: fixed(body, "welcome")?,
            },
            KIND_REQUEST if body.len() == 8 + 2 + 16 => Frame::Request {
                id: be_u64(&body[..8]),
                op: match body[8] {
                    1 => Op::Get,
                    2 => Op::Warm,
                    3 => Op::Check,
                    4 => Op::Evict,
                    _ => return Err(WireError::Malformed("unknown request op")),
                },
                local_only: match body[9] {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("unknown request flags")),
                },
                key: key_of(&body[10..])?,
            },
            KIND_RESPONSE if body.len() >= 9 => {
                let id = be_u64(&body[..8]);
                let payload = &body[9..];
                let reply = match body[8] {
                    0 if payload.len() >= 16 => {
                        let key = key_of(&payload[..16])?;
                        let object = &payload[16..];
                        if object.len() as u64 != stored_len(key.len) {
                            return Err(WireError::Malformed("block object of the wrong size"));
                        }
                        Reply::Block(key, object.to_vec())
                    }
                    1 if payload.is_empty() => Reply::Missing,
                    2 if payload.len() == 2 && payload.iter().all(|&b| b <= 1) => Reply::Warmed {
                        cached: payload[0] == 1,
                        fetched: payload[1] == 1,
                    },
                    3 => Reply::Failed(String::from_utf8_lossy(payload).into_owned()),
                    _ => return Err(WireError::Malformed("bad response")),
                };
                Frame::Response { id, reply }
            }
            KIND_DENIED if body.is_empty() => Frame::Denied,
            _ => return Err(WireError::Malformed("unknown kind or wrong length")),
        };
        Ok(Some((frame, total)))
    }
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

fn fixed<const N: usize>(b: &[u8], what: &'static str) -> Result<[u8; N], WireError> {
    b.try_into().map_err(|_| WireError::Malformed(what))
}

fn key_of(b: &[u8]) -> Result<BlockKey, WireError> {
    let key = BlockKey {
        slice: SliceId(be_u64(&b[..8])),
        index: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
        len: u32::from_be_bytes(b[12..16].try_into().expect("4 bytes")),
    };
    if key.len == 0 || key.len > MAX_BLOCK_SIZE {
        return Err(WireError::Malformed("block length out of range"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::block::encode_block;
    use proptest::prelude::*;

    fn key(len: u32) -> BlockKey {
        BlockKey {
            slice: SliceId(42),
            index: 3,
            len,
        }
    }

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Challenge { nonce: [1; 32] },
            Frame::Hello {
                proof: [2; 32],
                nonce: [3; 32],
            },
            Frame::Welcome { proof: [4; 32] },
            Frame::Request {
                id: 7,
                op: Op::Warm,
                local_only: true,
                key: key(100),
            },
            Frame::Response {
                id: 7,
                reply: Reply::Block(key(5), encode_block(b"hello")),
            },
            Frame::Response {
                id: 8,
                reply: Reply::Missing,
            },
            Frame::Response {
                id: 9,
                reply: Reply::Warmed {
                    cached: true,
                    fetched: false,
                },
            },
            Frame::Response {
                id: 10,
                reply: Reply::Failed("disk full".into()),
            },
            Frame::Denied,
        ]
    }

    #[test]
    fn frames_round_trip_and_wait_for_all_their_bytes() {
        for f in samples() {
            let b = f.encode();
            for cut in 0..b.len() {
                assert_eq!(Frame::decode(&b[..cut]), Ok(None), "{f:?} cut at {cut}");
            }
            let mut two = b.clone();
            two.extend_from_slice(&b);
            assert_eq!(Frame::decode(&two), Ok(Some((f.clone(), b.len()))));
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(
            Frame::decode(&[0, 0, 0, 0]),
            Err(WireError::Malformed("empty frame"))
        );
        let huge = (max_frame() as u32 + 1).to_be_bytes();
        assert!(matches!(Frame::decode(&huge), Err(WireError::TooLarge(_))));
        let mut old = Frame::Challenge { nonce: [0; 32] }.encode();
        old[5] = 9;
        assert_eq!(Frame::decode(&old), Err(WireError::Version(9)));
        // A block response whose object is not the size of its block.
        let mut b = Frame::Response {
            id: 1,
            reply: Reply::Block(key(5), encode_block(b"hello")),
        }
        .encode();
        b.pop();
        let len = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        assert!(Frame::decode(&b).is_err());
    }

    proptest! {
        /// Whatever bytes arrive, decoding returns a frame, "not yet" or an error: never
        /// a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Frame::decode(&bytes);
        }

        /// Any single corrupted byte of a valid frame decodes to an error, another frame,
        /// or "not yet": never a panic.
        #[test]
        fn corrupted_frames_never_panic(which in 0usize..9, at in any::<prop::sample::Index>(), to in any::<u8>()) {
            let mut b = samples()[which].encode();
            let i = at.index(b.len());
            b[i] = to;
            let _ = Frame::decode(&b);
        }
    }
}
