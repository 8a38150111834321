//! Distributed file locks: POSIX record locks (`fcntl` F_SETLK/F_SETLKW/F_GETLK) and
//! BSD `flock`, held in the metadata so that they hold across every client of a volume.
//!
//! A lock belongs to a [`LockOwner`]: the client's session and the lock owner the
//! kernel names within it (for POSIX locks the process's file table, for `flock` and
//! OFD locks the open file description). Each owner's locks on an inode are one key,
//! `A ino K session owner`, holding its ranges sorted, disjoint, and with touching
//! ranges of one kind merged; an index key `K session ino` says that the session holds
//! something on the inode, so that the locks of a dead session are found without
//! visiting every inode ([`Meta::cleanup_dead_clients`]).
//!
//! Every decision is here, as pure functions over the stored ranges ([`apply`],
//! [`first_conflict`]) and transactions that read every lock on the inode, decide,
//! and write the caller's key: two clients locking at once are serialized by the
//! engine (a concurrent change to any of the inode's lock keys makes one of them run
//! again). Waiting (F_SETLKW) is the shell's: it retries a non-blocking request.
//!
//! `flock` locks are whole-file locks in the same table (the kernel sends them with
//! their own owner, the open file description), so, as on NFS, an `flock` lock and a
//! POSIX lock of the same file conflict with each other.

use super::store::{load_opt, scan_all};
use super::{keys, lock, Meta};
use crate::errno::{Errno, Result};
use crate::kv::{self, Txn};
use crate::types::Ino;

/// A shared (read) or exclusive (write) lock.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum LockKind {
    Read,
    Write,
}

impl LockKind {
    /// Whether a lock of this kind and one of `other`'s, held by different owners over
    /// a common byte, exclude each other.
    pub fn conflicts_with(self, other: LockKind) -> bool {
        self == LockKind::Write || other == LockKind::Write
    }

    fn code(self) -> u8 {
        match self {
            LockKind::Read => 1,
            LockKind::Write => 2,
        }
    }

    fn from_code(c: u8) -> Option<LockKind> {
        match c {
            1 => Some(LockKind::Read),
            2 => Some(LockKind::Write),
            _ => None,
        }
    }
}

/// Who holds a lock: a client session, and the kernel's lock owner within it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct LockOwner {
    pub session: u64,
    pub owner: u64,
}

/// One locked byte range `[start, end]` (both inclusive; `end == u64::MAX` or the
/// kernel's `OFFSET_MAX` for "to the end of the file, however long").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct LockRange {
    pub start: u64,
    pub end: u64,
    pub kind: LockKind,
    /// The locking process as its client saw it (what F_GETLK reports).
    pub pid: u32,
    /// The file handle the lock was taken through (closing it drops the handle's
    /// `flock` and OFD locks).
    pub fh: u64,
}

impl LockRange {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }
}

/// A lock of another owner that stands in the way of a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Held {
    pub owner: LockOwner,
    pub range: LockRange,
}

/// A lock request of this client: lock `[start, end]` as `kind`, or unlock it
/// (`kind` None), for lock owner `owner` through handle `fh`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LockRequest {
    pub owner: u64,
    pub fh: u64,
    pub start: u64,
    pub end: u64,
    pub kind: Option<LockKind>,
    pub pid: u32,
}

/// Every owner's locks on one inode, as stored.
pub type InodeLocks = Vec<(LockOwner, Vec<LockRange>)>;

/// The ranges of one owner after a request: `mine` (sorted, disjoint, merged) with
/// `[start, end]` cut out, then, for a lock, `[start, end]` of `kind` put in and merged
/// with touching or overlapping ranges of the same kind. A range split by an unlock or
/// a lock of the other kind keeps its pid and handle; a merged range takes the
/// request's.
pub fn apply(
    mine: &[LockRange],
    start: u64,
    end: u64,
    kind: Option<LockKind>,
    pid: u32,
    fh: u64,
) -> Vec<LockRange> {
    let mut out: Vec<LockRange> = Vec::with_capacity(mine.len() + 2);
    for l in mine {
        if !l.overlaps(start, end) {
            out.push(*l);
            continue;
        }
        if l.start < start {
            out.push(LockRange {
                end: start - 1,
                ..*l
            });
        }
        if l.end > end {
            out.push(LockRange {
                start: end + 1,
                ..*l
            });
        }
    }
    if let Some(kind) = kind {
        out.push(LockRange {
            start,
            end,
            kind,
            pid,
            fh,
        });
    }
    out.sort_by_key(|l| l.start);
    let mut merged: Vec<LockRange> = Vec::with_capacity(out.len());
    for l in out {
        match merged.last_mut() {
            Some(last) if last.kind == l.kind && last.end.checked_add(1) == Some(l.start) => {
                last.end = l.end;
            }
            _ => merged.push(l),
        }
    }
    if let Some(kind) = kind {
        for l in merged.iter_mut() {
            if l.kind == kind && l.start <= start && end <= l.end {
                l.pid = pid;
                l.fh = fh;
            }
        }
    }
    merged
}

/// The lock of an owner other than `me` that conflicts with `kind` over `[start, end]`,
/// the one starting first if there are several (ties: the lowest owner).
pub fn first_conflict(
    locks: &[(LockOwner, Vec<LockRange>)],
    me: LockOwner,
    start: u64,
    end: u64,
    kind: LockKind,
) -> Option<Held> {
    locks
        .iter()
        .filter(|(o, _)| *o != me)
        .flat_map(|(o, ranges)| ranges.iter().map(move |r| (*o, *r)))
        .filter(|(_, r)| r.overlaps(start, end) && r.kind.conflicts_with(kind))
        .min_by_key(|(o, r)| (r.start, *o))
        .map(|(owner, range)| Held { owner, range })
}

/// Bytes per stored range: start u64, end u64, kind u8, pid u32, fh u64.
const RECORD: usize = 29;
/// The first byte of an `A ino K` value.
const VERSION: u8 = 1;

/// The value of an owner's `A ino K` key.
pub fn encode_ranges(ranges: &[LockRange]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + RECORD * ranges.len());
    v.push(VERSION);
    for r in ranges {
        v.extend_from_slice(&r.start.to_be_bytes());
        v.extend_from_slice(&r.end.to_be_bytes());
        v.push(r.kind.code());
        v.extend_from_slice(&r.pid.to_be_bytes());
        v.extend_from_slice(&r.fh.to_be_bytes());
    }
    v
}

/// Decodes an `A ino K` value: EIO unless it is well formed, with its ranges sorted,
/// each `start <= end`, and disjoint.
pub fn decode_ranges(v: &[u8]) -> Result<Vec<LockRange>> {
    let (&version, body) = v.split_first().ok_or(Errno::EIO)?;
    if version != VERSION || body.len() % RECORD != 0 {
        return Err(Errno::EIO);
    }
    let u64_at = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let mut out: Vec<LockRange> = Vec::with_capacity(body.len() / RECORD);
    for b in body.chunks_exact(RECORD) {
        let r = LockRange {
            start: u64_at(b, 0),
            end: u64_at(b, 8),
            kind: LockKind::from_code(b[16]).ok_or(Errno::EIO)?,
            pid: u32::from_be_bytes(b[17..21].try_into().unwrap()),
            fh: u64_at(b, 21),
        };
        let after_last = out.last().is_none_or(|l| l.end < r.start);
        if r.start > r.end || !after_last {
            return Err(Errno::EIO);
        }
        out.push(r);
    }
    Ok(out)
}

/// Every lock on `ino`, by owner.
fn read_locks(t: &mut dyn Txn, ino: Ino) -> Result<InodeLocks> {
    let (start, end) = keys::lock_range(ino);
    scan_all(t, &start, &end)?
        .into_iter()
        .map(|(k, v)| {
            let (session, owner) = keys::lock_owner_of(&k).ok_or(Errno::EIO)?;
            Ok((LockOwner { session, owner }, decode_ranges(&v)?))
        })
        .collect()
}

/// Replaces the ranges each owner in `changed` holds on `ino` (`locks` is what the
/// transaction read) and keeps the sessions' `K` index keys in step. Returns whether
/// `session` still holds any lock on `ino` afterwards.
fn write_locks(
    t: &mut dyn Txn,
    ino: Ino,
    locks: &InodeLocks,
    changed: &[(LockOwner, Vec<LockRange>)],
    session: u64,
) -> bool {
    for (o, ranges) in changed {
        let key = keys::lock(ino, o.session, o.owner);
        if ranges.is_empty() {
            t.delete(&key);
        } else {
            t.set(&key, &encode_ranges(ranges));
        }
    }
    let holds_after = |s: u64| {
        changed.iter().any(|(o, r)| o.session == s && !r.is_empty())
            || locks
                .iter()
                .any(|(o, _)| o.session == s && !changed.iter().any(|(c, _)| c == o))
    };
    let mut sessions: Vec<u64> = changed.iter().map(|(o, _)| o.session).collect();
    sessions.sort_unstable();
    sessions.dedup();
    for s in sessions {
        let before = locks.iter().any(|(o, _)| o.session == s);
        let after = holds_after(s);
        if after && !before {
            t.set(&keys::held(s, ino), b"");
        } else if before && !after {
            t.delete(&keys::held(s, ino));
        }
    }
    holds_after(session)
}

/// Deletes every lock of `session` on `ino` and its index key. Returns the ranges
/// removed.
pub(super) fn drop_session_locks(t: &mut dyn Txn, ino: Ino, session: u64) -> Result<u64> {
    let (start, end) = keys::session_lock_range(ino, session);
    let mut n = 0;
    for (k, v) in scan_all(t, &start, &end)? {
        // A value that does not decode is removed all the same (counted as one).
        n += decode_ranges(&v).map_or(1, |r| r.len() as u64);
        t.delete(&k);
    }
    t.delete(&keys::held(session, ino));
    Ok(n)
}

/// Deletes every lock of `session` (its index tells where they are). Returns the
/// ranges removed.
pub(super) fn drop_all_session_locks(t: &mut dyn Txn, session: u64) -> Result<u64> {
    let (start, end) = keys::session_held_range(session);
    let mut n = 0;
    for (k, _) in scan_all(t, &start, &end)? {
        let (_, ino) = keys::held_of(&k).ok_or(Errno::EIO)?;
        n += drop_session_locks(t, ino, session)?;
    }
    Ok(n)
}

impl Meta {
    fn lock_owner(&self, owner: u64) -> LockOwner {
        LockOwner {
            session: self.session_id(),
            owner,
        }
    }

    /// F_SETLK: locks or unlocks `[start, end]` of `ino` for this session's
    /// `req.owner`. A lock that conflicts with another owner's fails with EAGAIN and
    /// changes nothing; an unlock never fails for a conflict. EINVAL if `start > end`,
    /// ENOENT (for a lock) if the inode is gone.
    pub fn set_lock(&self, ino: Ino, req: &LockRequest) -> Result<()> {
        if req.start > req.end {
            return Err(Errno::EINVAL);
        }
        let mut locked = lock(&self.locked);
        if req.kind.is_none() && !locked.contains(&ino) {
            return Ok(());
        }
        let me = self.lock_owner(req.owner);
        let holds = kv::txn(&**self.kv(), |t| {
            let locks = read_locks(t, ino)?;
            if let Some(kind) = req.kind {
                if first_conflict(&locks, me, req.start, req.end, kind).is_some() {
                    return Err(Errno::EAGAIN);
                }
                if load_opt(t, ino)?.is_none() {
                    return Err(Errno::ENOENT);
                }
            }
            let mine: &[LockRange] = locks
                .iter()
                .find(|(o, _)| *o == me)
                .map_or(&[], |(_, r)| r.as_slice());
            let new = apply(mine, req.start, req.end, req.kind, req.pid, req.fh);
            if new == mine {
                return Ok(locks.iter().any(|(o, _)| o.session == me.session));
            }
            Ok(write_locks(t, ino, &locks, &[(me, new)], me.session))
        })?;
        if holds {
            locked.insert(ino);
        } else {
            locked.remove(&ino);
        }
        Ok(())
    }

    /// F_GETLK: the lock of another owner that would make `kind` over `[start, end]`
    /// fail for this session's `owner`, if any.
    pub fn test_lock(
        &self,
        ino: Ino,
        owner: u64,
        start: u64,
        end: u64,
        kind: LockKind,
    ) -> Result<Option<Held>> {
        if start > end {
            return Err(Errno::EINVAL);
        }
        let me = self.lock_owner(owner);
        kv::read(&**self.kv(), |t| {
            Ok(first_conflict(&read_locks(t, ino)?, me, start, end, kind))
        })
    }

    /// Drops this session's locks on `ino` that belong to lock owner `owner` (a POSIX
    /// owner closing any of its descriptors of the file; an `flock` owner's file being
    /// released) or were taken through handle `fh` (the handle is released). Returns
    /// the ranges removed. Costs nothing when this session holds no lock on `ino`.
    pub fn release_locks(&self, ino: Ino, owner: Option<u64>, fh: Option<u64>) -> Result<u64> {
        let mut locked = lock(&self.locked);
        if !locked.contains(&ino) || (owner.is_none() && fh.is_none()) {
            return Ok(0);
        }
        let session = self.session_id();
        let (removed, holds) = kv::txn(&**self.kv(), |t| {
            let locks = read_locks(t, ino)?;
            let mut removed = 0;
            let mut changed = Vec::new();
            for (o, ranges) in locks.iter().filter(|(o, _)| o.session == session) {
                let keep: Vec<LockRange> = if owner == Some(o.owner) {
                    Vec::new()
                } else {
                    ranges
                        .iter()
                        .filter(|r| Some(r.fh) != fh)
                        .copied()
                        .collect()
                };
                if keep.len() != ranges.len() {
                    removed += (ranges.len() - keep.len()) as u64;
                    changed.push((*o, keep));
                }
            }
            let holds = write_locks(t, ino, &locks, &changed, session);
            Ok((removed, holds))
        })?;
        if !holds {
            locked.remove(&ino);
        }
        Ok(removed)
    }

    /// Every lock on `ino`, by owner (for tests and status).
    pub fn locks_of(&self, ino: Ino) -> Result<InodeLocks> {
        kv::read(&**self.kv(), |t| read_locks(t, ino))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64, kind: LockKind) -> LockRange {
        LockRange {
            start,
            end,
            kind,
            pid: 7,
            fh: 1,
        }
    }

    fn spans(v: &[LockRange]) -> Vec<(u64, u64, LockKind)> {
        v.iter().map(|l| (l.start, l.end, l.kind)).collect()
    }

    use LockKind::{Read as R, Write as W};

    #[test]
    fn a_lock_merges_with_touching_ranges_of_its_kind_only() {
        let v = apply(&[], 10, 19, Some(R), 7, 1);
        let v = apply(&v, 20, 29, Some(R), 7, 1);
        assert_eq!(spans(&v), [(10, 29, R)]);
        let v = apply(&v, 30, 39, Some(W), 7, 1);
        assert_eq!(spans(&v), [(10, 29, R), (30, 39, W)]);
        // Overlapping: the new lock wins over its span, then merges.
        let v = apply(&v, 25, 35, Some(W), 7, 1);
        assert_eq!(spans(&v), [(10, 24, R), (25, 39, W)]);
        // Not touching: stays apart.
        let v = apply(&v, 41, 50, Some(W), 7, 1);
        assert_eq!(spans(&v), [(10, 24, R), (25, 39, W), (41, 50, W)]);
        let v = apply(&v, 40, 40, Some(W), 7, 1);
        assert_eq!(spans(&v), [(10, 24, R), (25, 50, W)]);
    }

    #[test]
    fn an_unlock_or_a_lock_of_the_other_kind_splits_a_range() {
        let v = vec![r(0, 99, W)];
        assert_eq!(
            spans(&apply(&v, 40, 49, None, 7, 1)),
            [(0, 39, W), (50, 99, W)]
        );
        assert_eq!(
            spans(&apply(&v, 40, 49, Some(R), 7, 1)),
            [(0, 39, W), (40, 49, R), (50, 99, W)]
        );
        assert_eq!(spans(&apply(&v, 0, u64::MAX, None, 7, 1)), []);
        assert_eq!(spans(&apply(&v, 0, 0, None, 7, 1)), [(1, 99, W)]);
        assert_eq!(spans(&apply(&v, 99, u64::MAX, None, 7, 1)), [(0, 98, W)]);
        // To the end of the file, then an unlock of the tail.
        let v = apply(&[], 5, u64::MAX, Some(R), 7, 1);
        assert_eq!(spans(&apply(&v, 100, u64::MAX, None, 7, 1)), [(5, 99, R)]);
    }

    #[test]
    fn split_pieces_keep_their_pid_and_merged_ranges_take_the_request_s() {
        let v = apply(&[], 0, 9, Some(W), 100, 1);
        let v = apply(&v, 10, 19, Some(W), 200, 2);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].pid, v[0].fh), (200, 2));
        let v = apply(&[r(0, 9, W)], 3, 4, Some(R), 300, 3);
        assert_eq!(v.iter().map(|l| l.pid).collect::<Vec<_>>(), [7, 300, 7]);
    }

    #[test]
    fn conflicts_are_between_owners_and_need_a_writer() {
        let a = LockOwner {
            session: 1,
            owner: 1,
        };
        let b = LockOwner {
            session: 1,
            owner: 2,
        };
        let c = LockOwner {
            session: 2,
            owner: 1,
        };
        let locks = vec![(a, vec![r(0, 9, R), r(20, 29, W)]), (c, vec![r(5, 14, R)])];
        // Readers share; the owner's own locks never conflict.
        assert_eq!(first_conflict(&locks, b, 0, 14, R), None);
        assert_eq!(first_conflict(&locks, a, 0, 100, W).unwrap().owner, c);
        // The first conflicting lock by start is reported.
        let h = first_conflict(&locks, b, 0, 100, W).unwrap();
        assert_eq!((h.owner, h.range.start, h.range.end), (a, 0, 9));
        let h = first_conflict(&locks, b, 10, 100, R).unwrap();
        assert_eq!((h.owner, h.range.start, h.range.kind), (a, 20, W));
        assert_eq!(first_conflict(&locks, b, 15, 19, W), None);
        // Same owner number in another session is another owner.
        assert!(first_conflict(
            &locks,
            LockOwner {
                session: 2,
                owner: 1
            },
            0,
            3,
            W
        )
        .is_some());
    }

    #[test]
    fn ranges_round_trip_and_bad_values_are_refused() {
        let v = vec![r(0, 9, R), r(10, u64::MAX, W)];
        assert_eq!(decode_ranges(&encode_ranges(&v)).unwrap(), v);
        assert_eq!(decode_ranges(&encode_ranges(&[])).unwrap(), []);
        let overlapping = encode_ranges(&[r(0, 9, R), r(9, 12, W)]);
        assert_eq!(decode_ranges(&overlapping), Err(Errno::EIO));
        let backwards = encode_ranges(&[r(9, 0, R)]);
        assert_eq!(decode_ranges(&backwards), Err(Errno::EIO));
        let mut bad_kind = encode_ranges(&[r(0, 1, R)]);
        bad_kind[17] = 9;
        assert_eq!(decode_ranges(&bad_kind), Err(Errno::EIO));
        assert_eq!(decode_ranges(&[]), Err(Errno::EIO));
        assert_eq!(decode_ranges(&[1, 0]), Err(Errno::EIO));
    }
}
