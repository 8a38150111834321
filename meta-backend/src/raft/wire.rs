//! The meta server's wire format: length-prefixed frames on TCP, one port for peers
//! (Raft messages) and clients (requests and responses, matched by id so a
//! connection can pipeline).
//!
//! ```text
//! frame    = len u32 | kind u8 | body            (len counts kind and body; BE)
//! kind 1   = a Raft message (protobuf)
//! kind 2   = request:  id u64 | op u8 | payload
//!            op 1 get    bytes key
//!            op 2 scan   bytes start | bytes end | limit u32
//!            op 3 check  a command holding only reads (core::replica::Command)
//!            op 4 commit a command
//!            op 5 get, op 6 scan, as the leader has applied (no read index: part of
//!                 a transaction whose reads are checked later)
//!            op 7 get-many as applied: n u32, n × bytes key
//!            op 8 members (the leader's view: membership, progress, log bounds)
//!            op 9 change  kind u8 (1 add learner, 2 promote, 3 remove) | id u64 | bytes addr
//!            op 10 transfer-leader  id u64
//!            op 11 changes since index u64 (the change feed; any replica answers)
//! kind 3   = response: id u64 | status u8 | payload
//!            status 0 ok: get: present u8 [bytes value]; scan: n u32, n × (bytes k, bytes v);
//!                         get-many: n u32, n × (present u8 [bytes value]);
//!                         check: holds u8; commit: outcome u8; change, transfer: nothing;
//!                         members: leader u64 | applied u64 | first u64 | bytes membership
//!                                  | n u32 | n × (id u64 | matched u64);
//!                         changes: upto u64 | reset u8 | n u32 | n × bytes key
//!            a read (get, scan, get-many, fresh or applied) may end with `at u64`: the
//!            log index of the state it was read from
//!            status 1 not the leader: bytes leader address ("" unknown)
//!            status 2 failed here, try again: bytes message
//! bytes    = len u32 | len bytes
//! ```
//!
//! Before anything else on a connection the server sends `kind 4` (a challenge: 32
//! random bytes) and the connecting side answers `kind 5` with
//! HMAC-SHA256(secret, "ferrofs-meta-1" | challenge). A wrong proof gets `kind 6`
//! (denied) and the connection is closed, so the secret never crosses the network and
//! an old proof is worth nothing on a new connection.

use super::replica::Change;
use ferrofs_core::kv::KvPair;
use ferrofs_core::replica::{ChangeBatch, Command, Membership, Outcome};
use std::io::{self, Read, Write};

/// Frames larger than this are refused. A snapshot travels in one frame, which bounds
/// the metadata of one volume to about this size; the buffer grows as bytes arrive,
/// so a bad peer cannot make us allocate it by announcing it.
pub const MAX_FRAME: usize = 1 << 30;

pub const KIND_RAFT: u8 = 1;
pub const KIND_REQUEST: u8 = 2;
pub const KIND_RESPONSE: u8 = 3;
pub const KIND_CHALLENGE: u8 = 4;
pub const KIND_HELLO: u8 = 5;
pub const KIND_DENIED: u8 = 6;

/// A fresh challenge.
pub fn challenge() -> io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// The proof of knowing `secret` for `challenge`.
pub fn proof(secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    m.update(b"ferrofs-meta-1");
    m.update(challenge);
    m.finalize().into_bytes().to_vec()
}

/// Whether `proof` proves `secret` for `challenge` (in constant time).
pub fn verify(secret: &[u8], challenge: &[u8], proof: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    m.update(b"ferrofs-meta-1");
    m.update(challenge);
    m.verify_slice(proof).is_ok()
}

/// The connecting side of the handshake: reads the challenge, sends the proof.
pub fn answer_challenge(r: &mut impl Read, w: &mut impl Write, secret: &[u8]) -> io::Result<()> {
    let (kind, ch) = read_frame(r)?;
    if kind == KIND_DENIED && ch == super::tls::TLS_ONLY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "this meta server speaks TLS only: add ?tls-ca=CA.pem to the META-URL \
             (or set FERROFS_META_TLS_CA)",
        ));
    }
    if kind != KIND_CHALLENGE {
        return Err(bad(
            "the server did not start with a challenge (not a ferrofs meta server?)",
        ));
    }
    write_frame(w, KIND_HELLO, &proof(secret, &ch))
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Get(Vec<u8>),
    Scan {
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    },
    Check(Command),
    Commit(Command),
    /// `Get` as the leader has applied it, without confirming leadership.
    GetApplied(Vec<u8>),
    /// `Scan` as the leader has applied it.
    ScanApplied {
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    },
    /// Several keys as the leader has applied them.
    GetManyApplied(Vec<Vec<u8>>),
    /// The cluster as the leader sees it.
    Members,
    /// A membership change, answered once applied.
    Change(Change),
    /// Hand leadership to this replica.
    TransferLeader(u64),
    /// The keys written by the entries applied after `since` (the change feed).
    Changes {
        since: u64,
    },
}

/// The cluster as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MembersInfo {
    pub leader: u64,
    pub applied: u64,
    /// The log's first index (earlier entries are in the snapshot).
    pub first_index: u64,
    pub members: Membership,
    /// `(id, matched index)` per replica.
    pub progress: Vec<(u64, u64)>,
}

/// What a server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Value(Option<Vec<u8>>),
    Values(Vec<Option<Vec<u8>>>),
    Pairs(Vec<KvPair>),
    Holds(bool),
    Outcome(Outcome),
    Members(MembersInfo),
    Changes(ChangeBatch),
    /// A change or transfer was done.
    Done,
    /// Ask the leader instead (its address, if known).
    NotLeader(String),
    /// Failed here (e.g. leadership lost while waiting); the client tries again.
    Retry(String),
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

pub fn write_frame(w: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len() + 1).map_err(|_| bad("frame too large"))?;
    let mut buf = Vec::with_capacity(body.len() + 5);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame: `(kind, body)`.
pub fn read_frame(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(bad("bad frame length"));
    }
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let kind = buf[0];
    buf.remove(0);
    Ok((kind, buf))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(bad("truncated message"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| bad("u32"))?,
        ))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| bad("u64"))?,
        ))
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

pub fn encode_request(id: u64, req: &Request) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    match req {
        Request::Get(k) => {
            out.push(1);
            put_bytes(&mut out, k);
        }
        Request::Scan { start, end, limit } => {
            out.push(2);
            put_bytes(&mut out, start);
            put_bytes(&mut out, end);
            out.extend_from_slice(&limit.to_be_bytes());
        }
        Request::Check(c) => {
            out.push(3);
            out.extend_from_slice(&c.encode());
        }
        Request::Commit(c) => {
            out.push(4);
            out.extend_from_slice(&c.encode());
        }
        Request::GetApplied(k) => {
            out.push(5);
            put_bytes(&mut out, k);
        }
        Request::ScanApplied { start, end, limit } => {
            out.push(6);
            put_bytes(&mut out, start);
            put_bytes(&mut out, end);
            out.extend_from_slice(&limit.to_be_bytes());
        }
        Request::GetManyApplied(keys) => {
            out.push(7);
            out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
            for k in keys {
                put_bytes(&mut out, k);
            }
        }
        Request::Members => out.push(8),
        Request::Change(ch) => {
            out.push(9);
            let (kind, id, addr) = match ch {
                Change::AddLearner { id, addr } => (1u8, *id, addr.as_str()),
                Change::Promote { id, addr } => (2, *id, addr.as_str()),
                Change::Remove { id } => (3, *id, ""),
            };
            out.push(kind);
            out.extend_from_slice(&id.to_be_bytes());
            put_bytes(&mut out, addr.as_bytes());
        }
        Request::TransferLeader(id) => {
            out.push(10);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Request::Changes { since } => {
            out.push(11);
            out.extend_from_slice(&since.to_be_bytes());
        }
    }
    out
}

pub fn decode_request(b: &[u8]) -> io::Result<(u64, Request)> {
    let mut c = Cursor(b);
    let id = c.u64()?;
    let command = |rest: &[u8]| Command::decode(rest).map_err(|e| bad(&e.to_string()));
    let req = match c.u8()? {
        1 => Request::Get(c.bytes()?),
        2 => Request::Scan {
            start: c.bytes()?,
            end: c.bytes()?,
            limit: c.u32()?,
        },
        3 => Request::Check(command(c.0)?),
        4 => Request::Commit(command(c.0)?),
        5 => Request::GetApplied(c.bytes()?),
        6 => Request::ScanApplied {
            start: c.bytes()?,
            end: c.bytes()?,
            limit: c.u32()?,
        },
        7 => {
            let n = c.u32()? as usize;
            let mut keys = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                keys.push(c.bytes()?);
            }
            Request::GetManyApplied(keys)
        }
        8 => Request::Members,
        9 => {
            let kind = c.u8()?;
            let id = c.u64()?;
            let addr = String::from_utf8(c.bytes()?).map_err(|_| bad("address"))?;
            Request::Change(match kind {
                1 => Change::AddLearner { id, addr },
                2 => Change::Promote { id, addr },
                3 => Change::Remove { id },
                _ => return Err(bad("unknown change")),
            })
        }
        10 => Request::TransferLeader(c.u64()?),
        11 => Request::Changes { since: c.u64()? },
        _ => return Err(bad("unknown request")),
    };
    Ok((id, req))
}

pub fn encode_response(id: u64, resp: &Response) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    match resp {
        Response::Value(v) => {
            out.push(0);
            match v {
                Some(v) => {
                    out.push(1);
                    put_bytes(&mut out, v);
                }
                None => out.push(0),
            }
        }
        Response::Values(vs) => {
            out.push(0);
            out.extend_from_slice(&(vs.len() as u32).to_be_bytes());
            for v in vs {
                match v {
                    Some(v) => {
                        out.push(1);
                        put_bytes(&mut out, v);
                    }
                    None => out.push(0),
                }
            }
        }
        Response::Pairs(pairs) => {
            out.push(0);
            out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
            for (k, v) in pairs {
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
        }
        Response::Holds(h) => {
            out.push(0);
            out.push(*h as u8);
        }
        Response::Outcome(o) => {
            out.push(0);
            out.push(o.code());
        }
        Response::Members(m) => {
            out.push(0);
            for v in [m.leader, m.applied, m.first_index] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            put_bytes(&mut out, &m.members.encode());
            out.extend_from_slice(&(m.progress.len() as u32).to_be_bytes());
            for (id, matched) in &m.progress {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&matched.to_be_bytes());
            }
        }
        Response::Changes(b) => {
            out.push(0);
            out.extend_from_slice(&b.upto.to_be_bytes());
            out.push(b.reset as u8);
            out.extend_from_slice(&(b.keys.len() as u32).to_be_bytes());
            for k in &b.keys {
                put_bytes(&mut out, k);
            }
        }
        Response::Done => out.push(0),
        Response::NotLeader(addr) => {
            out.push(1);
            put_bytes(&mut out, addr.as_bytes());
        }
        Response::Retry(msg) => {
            out.push(2);
            put_bytes(&mut out, msg.as_bytes());
        }
    }
    out
}

/// [`encode_response`] of a read served from the state of log index `at`.
pub fn encode_read_response(id: u64, resp: &Response, at: Option<u64>) -> Vec<u8> {
    let mut out = encode_response(id, resp);
    if let (Some(at), Response::Value(_) | Response::Values(_) | Response::Pairs(_)) = (at, resp) {
        out.extend_from_slice(&at.to_be_bytes());
    }
    out
}

/// Decodes a response to a request of the given kind (the payload of `ok` depends on it).
pub fn decode_response(b: &[u8], req: &Request) -> io::Result<(u64, Response)> {
    decode_read_response(b, req).map(|(id, r, _)| (id, r))
}

/// [`decode_response`], and the log index a read was served at, if the server said.
pub fn decode_read_response(b: &[u8], req: &Request) -> io::Result<(u64, Response, Option<u64>)> {
    let mut c = Cursor(b);
    let id = c.u64()?;
    let resp = match c.u8()? {
        0 => match req {
            Request::Get(_) | Request::GetApplied(_) => Response::Value(match c.u8()? {
                0 => None,
                _ => Some(c.bytes()?),
            }),
            Request::Scan { .. } | Request::ScanApplied { .. } => {
                let n = c.u32()? as usize;
                let mut pairs = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    pairs.push((c.bytes()?, c.bytes()?));
                }
                Response::Pairs(pairs)
            }
            Request::Check(_) => Response::Holds(c.u8()? != 0),
            Request::GetManyApplied(_) => {
                let n = c.u32()? as usize;
                let mut vs = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    vs.push(match c.u8()? {
                        0 => None,
                        _ => Some(c.bytes()?),
                    });
                }
                Response::Values(vs)
            }
            Request::Commit(_) => Response::Outcome(
                Outcome::from_code(c.u8()?).ok_or_else(|| bad("unknown outcome"))?,
            ),
            Request::Members => {
                let (leader, applied, first_index) = (c.u64()?, c.u64()?, c.u64()?);
                let members =
                    Membership::decode(&c.bytes()?).ok_or_else(|| bad("bad membership"))?;
                let n = c.u32()? as usize;
                let mut progress = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    progress.push((c.u64()?, c.u64()?));
                }
                Response::Members(MembersInfo {
                    leader,
                    applied,
                    first_index,
                    members,
                    progress,
                })
            }
            Request::Changes { .. } => {
                let upto = c.u64()?;
                let reset = c.u8()? != 0;
                let n = c.u32()? as usize;
                let mut keys = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    keys.push(c.bytes()?);
                }
                Response::Changes(ChangeBatch { upto, reset, keys })
            }
            Request::Change(_) | Request::TransferLeader(_) => Response::Done,
        },
        1 => Response::NotLeader(String::from_utf8_lossy(&c.bytes()?).into_owned()),
        2 => Response::Retry(String::from_utf8_lossy(&c.bytes()?).into_owned()),
        _ => return Err(bad("unknown response status")),
    };
    let at = match (&resp, c.0.len()) {
        (Response::Value(_) | Response::Values(_) | Response::Pairs(_), 8) => Some(c.u64()?),
        _ => None,
    };
    Ok((id, resp, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofs_core::kv::WriteSet;
    use ferrofs_core::replica::RequestId;

    #[test]
    fn proofs_need_the_secret_and_the_challenge() {
        let (a, b) = (challenge().unwrap(), challenge().unwrap());
        assert_ne!(a, b);
        let p = proof(b"s3cret", &a);
        assert!(verify(b"s3cret", &a, &p));
        assert!(!verify(b"other", &a, &p), "another secret");
        assert!(!verify(b"s3cret", &b, &p), "a replayed proof");
        assert!(!verify(b"s3cret", &a, &p[..31]), "a truncated proof");
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let cmd = Command {
            id: RequestId { client: 1, seq: 2 },
            done_below: 1,
            reads: vec![],
            writes: WriteSet::new(),
        };
        let reqs = [
            Request::Get(b"k".to_vec()),
            Request::Scan {
                start: b"a".to_vec(),
                end: b"b".to_vec(),
                limit: 7,
            },
            Request::Check(cmd.clone()),
            Request::Commit(cmd),
            Request::GetApplied(b"k".to_vec()),
            Request::ScanApplied {
                start: b"a".to_vec(),
                end: b"b".to_vec(),
                limit: 1,
            },
            Request::GetManyApplied(vec![b"x".to_vec(), b"y".to_vec()]),
            Request::Members,
            Request::Change(Change::AddLearner {
                id: 4,
                addr: "h:4".into(),
            }),
            Request::Change(Change::Promote {
                id: 4,
                addr: "h:4".into(),
            }),
            Request::Change(Change::Remove { id: 2 }),
            Request::TransferLeader(3),
            Request::Changes { since: 77 },
        ];
        for (i, r) in reqs.iter().enumerate() {
            assert_eq!(
                decode_request(&encode_request(i as u64, r)).unwrap(),
                (i as u64, r.clone())
            );
        }
        let cases = [
            (&reqs[0], Response::Value(Some(b"v".to_vec()))),
            (&reqs[0], Response::Value(None)),
            (
                &reqs[1],
                Response::Pairs(vec![(b"a".to_vec(), b"1".to_vec())]),
            ),
            (&reqs[2], Response::Holds(true)),
            (&reqs[3], Response::Outcome(Outcome::Conflict)),
            (&reqs[3], Response::NotLeader("127.0.0.1:1".into())),
            (&reqs[1], Response::Retry("lost leadership".into())),
            (&reqs[6], Response::Values(vec![Some(b"1".to_vec()), None])),
            (
                &reqs[7],
                Response::Members(MembersInfo {
                    leader: 2,
                    applied: 90,
                    first_index: 40,
                    members: Membership {
                        voters: vec![1, 2, 3],
                        learners: vec![4],
                        addrs: [(4, "h:4".to_string())].into_iter().collect(),
                    },
                    progress: vec![(1, 90), (4, 12)],
                }),
            ),
            (&reqs[8], Response::Done),
            (&reqs[11], Response::Done),
            (
                &reqs[12],
                Response::Changes(ChangeBatch {
                    upto: 80,
                    reset: false,
                    keys: vec![b"Ax".to_vec()],
                }),
            ),
        ];
        for (req, resp) in cases {
            assert_eq!(
                decode_response(&encode_response(9, &resp), req).unwrap(),
                (9, resp)
            );
        }
        // A read says which state it came from.
        let v = Response::Value(Some(b"v".to_vec()));
        let b = encode_read_response(3, &v, Some(42));
        assert_eq!(
            decode_read_response(&b, &reqs[0]).unwrap(),
            (3, v.clone(), Some(42))
        );
        assert_eq!(decode_response(&b, &reqs[0]).unwrap(), (3, v.clone()));
        let b = encode_read_response(3, &v, None);
        assert_eq!(decode_read_response(&b, &reqs[0]).unwrap(), (3, v, None));
        let mut buf = Vec::new();
        write_frame(&mut buf, KIND_REQUEST, b"xyz").unwrap();
        assert_eq!(
            read_frame(&mut &buf[..]).unwrap(),
            (KIND_REQUEST, b"xyz".to_vec())
        );
        assert!(
            read_frame(&mut &[0u8, 0, 0, 0][..]).is_err(),
            "an empty frame"
        );
    }
}
