//! Applying a command on a replica: deterministic, so every replica that applies the
//! same log ends in the same state and gives the same answers.
//!
//! Request records live in the replica's engine beside the metadata, so they are in
//! its snapshots and survive its restarts:
//!
//! ```text
//! R                    → u64: the last log index applied (Raft replicas)
//! R client(8)          → floor u64 | last u64: requests of this client below the floor
//!                        are answered; `last` is the log index of its latest command
//! R client(8) seq(8)   → outcome u8 of that request
//! Rmembers             → the cluster's membership (see `members`)
//! ```
//!
//! A replica applies a log entry and notes its index in one transaction, so after a
//! crash it resumes exactly after the last entry its engine holds.
//!
//! Clients come and go (a mount's client id is random per process), so the records of a
//! client that sent nothing for [`EXPIRE_AFTER`] entries are dropped, on every replica
//! alike, at every [`SWEEP_EVERY`]th entry. A client that comes back after that with a
//! request that says earlier ones were answered (`done_below > 1`) is refused as
//! [`Outcome::Stale`] (its client fails the call, EIO), since the replicas can no longer
//! tell whether that request was applied. A request with `done_below <= 1` from an
//! unknown client is a new client's.

use super::command::{digest_pairs, digest_value, Command, Outcome, ReadCheck, RequestId};
use crate::errno::{Errno, Result};
use crate::kv::{self, Kv, Txn};

/// First byte of the engine's own keys; a client's command may not write them.
pub const REQUEST_PREFIX: u8 = b'R';

/// Records older than the floor are deleted this many at a time per command.
const CLEANUP_PAGE: usize = 1024;
/// A client whose latest command is this many entries old is forgotten.
pub const EXPIRE_AFTER: u64 = 1 << 20;
/// Forgotten clients are looked for at every entry whose index is a multiple of this.
pub const SWEEP_EVERY: u64 = 1 << 12;

/// Key of a request's outcome record.
pub fn request_key(id: RequestId) -> Vec<u8> {
    let mut k = floor_key(id.client);
    k.extend_from_slice(&id.seq.to_be_bytes());
    k
}

fn floor_key(client: u64) -> Vec<u8> {
    let mut k = vec![REQUEST_PREFIX];
    k.extend_from_slice(&client.to_be_bytes());
    k
}

fn read_u64(t: &mut dyn Txn, key: &[u8]) -> Result<u64> {
    match t.get(key)? {
        None => Ok(0),
        Some(v) => Ok(u64::from_be_bytes(
            v.as_slice().try_into().map_err(|_| Errno::EIO)?,
        )),
    }
}

/// Whether every read of `reads` still returns what it returned to the client.
pub fn reads_hold(t: &mut dyn Txn, reads: &[ReadCheck]) -> Result<bool> {
    for r in reads {
        let holds = match r {
            ReadCheck::Get { key, digest } => t.get(key)?.map(|v| digest_value(&v)) == *digest,
            ReadCheck::Scan {
                start,
                end,
                limit,
                digest,
            } => digest_pairs(&t.scan(start, end, *limit as usize)?) == *digest,
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Applies `cmd` to a replica's engine in one transaction and returns its outcome.
///
/// - A request already recorded returns its recorded outcome and writes nothing.
/// - A request below the client's floor (answered, its record dropped) is [`Outcome::Stale`].
/// - A command that writes the engine's own keys is [`Outcome::Invalid`].
/// - Otherwise its reads are checked: if all hold, its writes are applied
///   ([`Outcome::Applied`]); if not, nothing is ([`Outcome::Conflict`]).
///
/// The outcome is recorded (except for stale requests), and the client's records below
/// `done_below` are dropped.
pub fn apply(engine: &dyn Kv, cmd: &Command) -> Result<Outcome> {
    kv::txn(engine, |t| apply_in(t, cmd, 0)).map(|a| a.outcome)
}

/// What applying a command answered, and whether it was a recorded answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Answer {
    pub outcome: Outcome,
    /// The request had been applied before (it was delivered or proposed twice): this
    /// is the first answer again, and nothing was written.
    pub repeated: bool,
}

/// [`apply`] of the log entry at `index`, noting it as applied in the same transaction.
pub fn apply_entry(engine: &dyn Kv, cmd: &Command, index: u64) -> Result<Answer> {
    kv::txn(engine, |t| {
        let a = apply_in(t, cmd, index)?;
        t.set(&[REQUEST_PREFIX], &index.to_be_bytes());
        if index.is_multiple_of(SWEEP_EVERY) {
            expire_clients(t, index.saturating_sub(EXPIRE_AFTER))?;
        }
        Ok(a)
    })
}

/// Drops every record of the clients whose latest command came before log index
/// `before`; returns how many clients were forgotten.
pub fn expire_clients(t: &mut dyn Txn, before: u64) -> Result<u64> {
    if before == 0 {
        return Ok(0);
    }
    let mut gone = 0;
    let (start, end) = (vec![REQUEST_PREFIX, 0], vec![REQUEST_PREFIX + 1]);
    let floors: Vec<(u64, u64)> = t
        .scan(&start, &end, usize::MAX)?
        .into_iter()
        .filter(|(k, _)| k.len() == 9)
        .filter_map(|(k, v)| {
            let client = u64::from_be_bytes(k[1..9].try_into().ok()?);
            Some((client, decode_floor(&v).ok()?.1))
        })
        .collect();
    for (client, last) in floors {
        if last < before {
            drop_records(t, client, 0, u64::MAX)?;
            t.delete(&floor_key(client));
            gone += 1;
        }
    }
    Ok(gone)
}

/// A floor record: (floor, index of the latest command). An 8-byte record (written
/// before the index was kept) has index 0.
fn decode_floor(v: &[u8]) -> Result<(u64, u64)> {
    let word = |b: &[u8]| b.try_into().map(u64::from_be_bytes).map_err(|_| Errno::EIO);
    match v.len() {
        8 => Ok((word(v)?, 0)),
        16 => Ok((word(&v[..8])?, word(&v[8..])?)),
        _ => Err(Errno::EIO),
    }
}

/// Notes a log entry that changes no metadata (a new leader's empty entry, a
/// membership change, an undecodable command) as applied.
pub fn mark_applied(engine: &dyn Kv, index: u64) -> Result<()> {
    kv::txn(engine, |t| {
        t.set(&[REQUEST_PREFIX], &index.to_be_bytes());
        Ok(())
    })
}

/// The last log index applied to `engine` (0: none).
pub fn applied_index(engine: &dyn Kv) -> Result<u64> {
    kv::read(engine, applied_index_in)
}

/// [`applied_index`] within a transaction.
pub fn applied_index_in(t: &mut dyn Txn) -> Result<u64> {
    read_u64(t, &[REQUEST_PREFIX])
}

fn apply_in(t: &mut dyn Txn, cmd: &Command, index: u64) -> Result<Answer> {
    {
        let rec = request_key(cmd.id);
        if let Some(v) = t.get(&rec)? {
            let outcome = v
                .first()
                .and_then(|c| Outcome::from_code(*c))
                .ok_or(Errno::EIO)?;
            return Ok(Answer {
                outcome,
                repeated: true,
            });
        }
        let floor_k = floor_key(cmd.id.client);
        let known = t.get(&floor_k)?.map(|v| decode_floor(&v)).transpose()?;
        let floor = known.map_or(0, |(f, _)| f);
        // Below the floor; or a client that says earlier requests were answered, whose
        // records are gone (forgotten after a long silence).
        if cmd.id.seq < floor || (known.is_none() && cmd.done_below > 1) {
            return Ok(Answer {
                outcome: Outcome::Stale,
                repeated: true,
            });
        }
        let outcome = if cmd
            .writes
            .keys()
            .any(|k| k.first() == Some(&REQUEST_PREFIX))
        {
            Outcome::Invalid
        } else if reads_hold(t, &cmd.reads)? {
            for (k, w) in &cmd.writes {
                match w {
                    Some(v) => t.set(k, v),
                    None => t.delete(k),
                }
            }
            Outcome::Applied
        } else {
            Outcome::Conflict
        };
        t.set(&rec, &[outcome.code()]);
        let new_floor = floor.max(cmd.done_below);
        if new_floor > floor {
            drop_records(t, cmd.id.client, floor, new_floor)?;
        }
        let mut v = new_floor.to_be_bytes().to_vec();
        v.extend_from_slice(&index.to_be_bytes());
        t.set(&floor_k, &v);
        Ok(Answer {
            outcome,
            repeated: false,
        })
    }
}

/// Deletes the records of `client`'s requests in `[from, below)`.
fn drop_records(t: &mut dyn Txn, client: u64, from: u64, below: u64) -> Result<()> {
    let start = request_key(RequestId { client, seq: from });
    let end = request_key(RequestId { client, seq: below });
    loop {
        let page = t.scan(&start, &end, CLEANUP_PAGE)?;
        for (k, _) in &page {
            t.delete(k);
        }
        if page.len() < CLEANUP_PAGE {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{MemKv, WriteSet};

    fn set(key: &[u8], value: &[u8]) -> WriteSet {
        let mut w = WriteSet::new();
        w.insert(key.to_vec(), Some(value.to_vec()));
        w
    }

    fn cmd(seq: u64, done_below: u64, reads: Vec<ReadCheck>, writes: WriteSet) -> Command {
        Command {
            id: RequestId { client: 5, seq },
            done_below,
            reads,
            writes,
        }
    }

    fn get(kv: &MemKv, key: &[u8]) -> Option<Vec<u8>> {
        kv::read(kv, |t| t.get(key)).unwrap()
    }

    #[test]
    fn applies_when_reads_hold_and_conflicts_when_not() {
        let kv = MemKv::new();
        let absent = ReadCheck::Get {
            key: b"k".to_vec(),
            digest: None,
        };
        let c1 = cmd(1, 0, vec![absent.clone()], set(b"k", b"1"));
        assert_eq!(apply(&kv, &c1), Ok(Outcome::Applied));
        // The same read again is now stale: k exists.
        let c2 = cmd(2, 0, vec![absent], set(b"k", b"2"));
        assert_eq!(apply(&kv, &c2), Ok(Outcome::Conflict));
        assert_eq!(get(&kv, b"k"), Some(b"1".to_vec()));
        let holds = ReadCheck::Get {
            key: b"k".to_vec(),
            digest: Some(digest_value(b"1")),
        };
        let c3 = cmd(3, 0, vec![holds], set(b"k", b"3"));
        assert_eq!(apply(&kv, &c3), Ok(Outcome::Applied));
        assert_eq!(get(&kv, b"k"), Some(b"3".to_vec()));
    }

    #[test]
    fn a_duplicate_applies_once_and_gets_the_first_answer() {
        let kv = MemKv::new();
        // An increment that read k = 0 (absent).
        let inc = cmd(
            1,
            0,
            vec![ReadCheck::Get {
                key: b"k".to_vec(),
                digest: None,
            }],
            set(b"k", b"1"),
        );
        assert_eq!(apply(&kv, &inc), Ok(Outcome::Applied));
        // Delivered again (a retry after a lost answer): the recorded outcome, and k
        // was not written twice (a second apply would have conflicted anyway; a blind
        // write shows it better).
        let blind = cmd(1, 0, vec![], set(b"k", b"other"));
        assert_eq!(apply(&kv, &blind), Ok(Outcome::Applied));
        assert_eq!(get(&kv, b"k"), Some(b"1".to_vec()));
    }

    #[test]
    fn answered_requests_are_forgotten_and_refused_after() {
        let kv = MemKv::new();
        for seq in 1..=3 {
            assert_eq!(
                apply(&kv, &cmd(seq, 0, vec![], set(b"a", &[seq as u8]))),
                Ok(Outcome::Applied)
            );
        }
        // Request 4 says 1..3 are answered.
        assert_eq!(
            apply(&kv, &cmd(4, 4, vec![], set(b"a", b"4"))),
            Ok(Outcome::Applied)
        );
        let records = kv
            .dump()
            .into_iter()
            .filter(|(k, _)| k.first() == Some(&REQUEST_PREFIX))
            .count();
        assert_eq!(records, 2, "the floor and request 4's record");
        // A stray copy of request 2: refused, nothing written.
        assert_eq!(
            apply(&kv, &cmd(2, 0, vec![], set(b"a", b"2"))),
            Ok(Outcome::Stale)
        );
        assert_eq!(get(&kv, b"a"), Some(b"4".to_vec()));
    }

    #[test]
    fn silent_clients_are_forgotten_and_refused_if_they_come_back_mid_stream() {
        let kv = MemKv::new();
        let at = |c: &Command, index| apply_entry(&kv, c, index).unwrap().outcome;
        let client = |id, seq, done_below| Command {
            id: RequestId { client: id, seq },
            done_below,
            reads: vec![],
            writes: set(format!("k{id}").as_bytes(), b"v"),
        };
        assert_eq!(at(&client(5, 1, 1), 10), Outcome::Applied);
        assert_eq!(at(&client(5, 2, 2), 11), Outcome::Applied);
        assert_eq!(at(&client(6, 1, 1), 10 + EXPIRE_AFTER), Outcome::Applied);
        // The sweep at the next multiple of SWEEP_EVERY forgets client 5 (silent since
        // 11), not 6.
        let sweep = (10 + EXPIRE_AFTER).next_multiple_of(SWEEP_EVERY);
        assert_eq!(at(&client(6, 2, 2), sweep), Outcome::Applied);
        let left: Vec<Vec<u8>> = kv
            .dump()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.len() > 1 && k[0] == REQUEST_PREFIX)
            .collect();
        assert!(
            left.iter().all(|k| k[1..9] == 6u64.to_be_bytes()),
            "{left:?}"
        );
        // Client 5 comes back with a request after answered ones: its records are gone,
        // so it cannot be told whether that request was applied: refused.
        assert_eq!(at(&client(5, 3, 3), sweep + 1), Outcome::Stale);
        // A new client (nothing answered yet) is welcome.
        assert_eq!(at(&client(7, 1, 1), sweep + 2), Outcome::Applied);
        assert_eq!(
            at(&client(7, 1, 1), sweep + 3),
            Outcome::Applied,
            "a resend"
        );
    }

    #[test]
    fn scans_catch_phantoms_and_engine_keys_are_refused() {
        let kv = MemKv::new();
        let empty_dir = ReadCheck::Scan {
            start: b"d/".to_vec(),
            end: b"d0".to_vec(),
            limit: 1,
            digest: digest_pairs(&[]),
        };
        assert_eq!(
            apply(&kv, &cmd(1, 0, vec![], set(b"d/x", b""))),
            Ok(Outcome::Applied)
        );
        // "rmdir if empty" decided on an empty scan: a name appeared since.
        let mut rm = WriteSet::new();
        rm.insert(b"d".to_vec(), None);
        assert_eq!(
            apply(&kv, &cmd(2, 0, vec![empty_dir], rm)),
            Ok(Outcome::Conflict)
        );
        let mut evil = WriteSet::new();
        evil.insert(request_key(RequestId { client: 9, seq: 1 }), Some(vec![1]));
        assert_eq!(apply(&kv, &cmd(3, 0, vec![], evil)), Ok(Outcome::Invalid));
    }
}
