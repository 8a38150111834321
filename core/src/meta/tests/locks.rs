//! File locks over the metadata: conflicts between owners and clients, range split
//! and merge, F_GETLK answers, release by owner and by handle, cleanup of a dead
//! client's locks, locks racing through the optimistic engine, and a property test
//! against a per-byte reference model.

use super::*;
use crate::meta::{Cleanup, Held, LockKind, LockOwner, LockRequest};
use LockKind::{Read as R, Write as W};

/// A second client of the same volume, with its own session.
fn client(fx: &Fx, pid: u32) -> Meta {
    let m = Meta::load(fx.kv.clone()).unwrap();
    m.new_session(&format!("{{\"pid\":{pid}}}")).unwrap();
    m
}

fn req(owner: u64, start: u64, end: u64, kind: Option<LockKind>) -> LockRequest {
    LockRequest {
        owner,
        fh: owner + 1000,
        start,
        end,
        kind,
        pid: owner as u32 + 100,
    }
}

fn lock(m: &Meta, ino: Ino, owner: u64, start: u64, end: u64, kind: LockKind) -> Result<(), Errno> {
    m.set_lock(ino, &req(owner, start, end, Some(kind)))
}

fn unlock(m: &Meta, ino: Ino, owner: u64, start: u64, end: u64) {
    m.set_lock(ino, &req(owner, start, end, None)).unwrap()
}

/// (start, end, kind) of every range `m`'s session's `owner` holds on `ino`.
fn ranges(m: &Meta, ino: Ino, session: u64, owner: u64) -> Vec<(u64, u64, LockKind)> {
    m.locks_of(ino)
        .unwrap()
        .into_iter()
        .filter(|(o, _)| *o == LockOwner { session, owner })
        .flat_map(|(_, r)| r.into_iter().map(|l| (l.start, l.end, l.kind)))
        .collect()
}

const EOF: u64 = i64::MAX as u64;

#[test]
fn writers_exclude_everyone_else_and_readers_share() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let a = client(&fx, 1);
    let b = client(&fx, 2);
    lock(&a, f.ino, 1, 0, 99, W).unwrap();
    // Another client: any overlap conflicts, the bytes after do not.
    assert_eq!(lock(&b, f.ino, 1, 50, 60, W), Err(Errno::EAGAIN));
    assert_eq!(lock(&b, f.ino, 1, 99, 99, R), Err(Errno::EAGAIN));
    lock(&b, f.ino, 1, 100, 199, W).unwrap();
    // Another owner of the same client conflicts too; the same owner does not.
    assert_eq!(lock(&a, f.ino, 2, 0, 0, R), Err(Errno::EAGAIN));
    lock(&a, f.ino, 1, 0, 49, R).unwrap();
    // After the downgrade, readers share the first half.
    lock(&a, f.ino, 2, 0, 49, R).unwrap();
    lock(&b, f.ino, 7, 10, 20, R).unwrap();
    assert_eq!(lock(&b, f.ino, 7, 10, 20, W), Err(Errno::EAGAIN));
    assert_eq!(lock(&b, f.ino, 7, 50, 50, R), Err(Errno::EAGAIN));
    // A refused request changed nothing.
    assert_eq!(ranges(&b, f.ino, 2, 7), [(10, 20, R)]);
    // An unlock never conflicts, even over others' locks.
    unlock(&b, f.ino, 7, 0, EOF);
    assert_eq!(ranges(&b, f.ino, 2, 7), []);
    assert_eq!(ranges(&a, f.ino, 1, 1), [(0, 49, R), (50, 99, W)]);
    fx.check();
}

#[test]
fn a_lock_of_the_same_owner_replaces_merges_and_an_unlock_splits() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let a = client(&fx, 1);
    let b = client(&fx, 2);
    lock(&a, f.ino, 1, 0, 9, W).unwrap();
    lock(&a, f.ino, 1, 10, 19, W).unwrap();
    lock(&a, f.ino, 1, 30, 39, W).unwrap();
    assert_eq!(ranges(&a, f.ino, 1, 1), [(0, 19, W), (30, 39, W)]);
    lock(&a, f.ino, 1, 15, 34, R).unwrap();
    assert_eq!(
        ranges(&a, f.ino, 1, 1),
        [(0, 14, W), (15, 34, R), (35, 39, W)]
    );
    lock(&a, f.ino, 1, 0, 39, W).unwrap();
    assert_eq!(ranges(&a, f.ino, 1, 1), [(0, 39, W)]);
    // Unlock a middle piece: two ranges; the hole is free for others.
    unlock(&a, f.ino, 1, 10, 19);
    assert_eq!(ranges(&a, f.ino, 1, 1), [(0, 9, W), (20, 39, W)]);
    lock(&b, f.ino, 1, 10, 19, W).unwrap();
    assert_eq!(lock(&b, f.ino, 1, 9, 9, R), Err(Errno::EAGAIN));
    assert_eq!(lock(&b, f.ino, 1, 20, 20, R), Err(Errno::EAGAIN));
    // To the end of the file, and a tail unlocked.
    lock(&a, f.ino, 1, 100, EOF, R).unwrap();
    unlock(&a, f.ino, 1, 1000, EOF);
    assert_eq!(
        ranges(&a, f.ino, 1, 1),
        [(0, 9, W), (20, 39, W), (100, 999, R)]
    );
    assert_eq!(
        a.set_lock(f.ino, &req(1, 5, 4, Some(W))),
        Err(Errno::EINVAL)
    );
    fx.check();
}

#[test]
fn getlk_reports_the_first_conflicting_lock_of_another_owner() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let a = client(&fx, 1);
    let b = client(&fx, 2);
    lock(&a, f.ino, 1, 100, 199, R).unwrap();
    lock(&a, f.ino, 1, 300, EOF, W).unwrap();
    let held = |m: &Meta, owner, s, e, k| m.test_lock(f.ino, owner, s, e, k).unwrap();
    // Readers do not stop a reader; the writer further on does.
    assert_eq!(held(&b, 1, 0, 250, R), None);
    let h = held(&b, 1, 0, EOF, R).unwrap();
    assert_eq!(
        (
            h.owner,
            h.range.start,
            h.range.end,
            h.range.kind,
            h.range.pid
        ),
        (
            LockOwner {
                session: 1,
                owner: 1
            },
            300,
            EOF,
            W,
            101
        )
    );
    // A writer is stopped by the first lock it overlaps.
    let h: Held = held(&b, 1, 150, EOF, W).unwrap();
    assert_eq!((h.range.start, h.range.kind), (100, R));
    // Its own locks are no obstacle to an owner.
    assert_eq!(held(&a, 1, 0, EOF, W), None);
    assert!(held(&a, 2, 0, EOF, W).is_some());
    fx.check();
}

#[test]
fn closing_releases_an_owner_s_locks_and_a_handle_s_locks() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let g = fx.file(&root(), Ino::ROOT, "g", 0o644);
    let a = client(&fx, 1);
    let b = client(&fx, 2);
    lock(&a, f.ino, 1, 0, 9, W).unwrap();
    lock(&a, f.ino, 1, 20, 29, R).unwrap();
    lock(&a, f.ino, 2, 10, 19, W).unwrap();
    lock(&a, g.ino, 1, 0, 9, W).unwrap();
    // POSIX: owner 1 closes a descriptor of f: all of its locks on f go, nothing else.
    assert_eq!(a.release_locks(f.ino, Some(1), None).unwrap(), 2);
    assert_eq!(ranges(&a, f.ino, 1, 1), []);
    assert_eq!(ranges(&a, f.ino, 1, 2), [(10, 19, W)]);
    assert_eq!(ranges(&a, g.ino, 1, 1), [(0, 9, W)]);
    lock(&b, f.ino, 1, 0, 9, W).unwrap();
    // Another client's close does not touch this client's locks.
    assert_eq!(b.release_locks(f.ino, Some(2), None).unwrap(), 0);
    assert_eq!(ranges(&a, f.ino, 1, 2), [(10, 19, W)]);
    // flock or OFD locks: the handle they were taken through is released.
    let whole = LockRequest {
        owner: 0xf11e,
        fh: 77,
        start: 0,
        end: EOF,
        kind: Some(R),
        pid: 5,
    };
    a.set_lock(
        g.ino,
        &LockRequest {
            owner: 0xf11f,
            ..whole
        },
    )
    .unwrap_err();
    unlock(&a, g.ino, 1, 0, EOF);
    a.set_lock(g.ino, &whole).unwrap();
    b.set_lock(
        g.ino,
        &LockRequest {
            owner: 9,
            fh: 3,
            ..whole
        },
    )
    .unwrap();
    assert_eq!(a.release_locks(g.ino, None, Some(76)).unwrap(), 0);
    assert_eq!(a.release_locks(g.ino, None, Some(77)).unwrap(), 1);
    assert_eq!(
        a.locks_of(g.ino).unwrap().len(),
        1,
        "the other client's stays"
    );
    lock(&a, g.ino, 4, 0, 0, R).unwrap();
    assert_eq!(lock(&a, g.ino, 4, 0, 0, W), Err(Errno::EAGAIN));
    b.release_locks(g.ino, Some(9), None).unwrap();
    lock(&a, g.ino, 4, 0, 0, W).unwrap();
    fx.check();
}

#[test]
fn a_dead_client_s_locks_are_cleaned_up_and_a_live_one_s_stay() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let g = fx.file(&root(), Ino::ROOT, "g", 0o644);
    let me = client(&fx, 1);
    me.heartbeat(ts(100)).unwrap();
    let live = client(&fx, 2);
    live.heartbeat(ts(100)).unwrap();
    lock(&live, f.ino, 1, 0, 9, W).unwrap();
    {
        let dead = client(&fx, 3);
        dead.heartbeat(ts(100)).unwrap();
        lock(&dead, f.ino, 1, 10, 19, W).unwrap();
        lock(&dead, f.ino, 2, 30, 39, R).unwrap();
        lock(&dead, g.ino, 1, 0, EOF, W).unwrap();
    }
    lock(&me, f.ino, 1, 40, 49, W).unwrap();
    // Within the TTL both are alive.
    let c = me.cleanup_dead_clients(ts(130), 60).unwrap();
    assert_eq!(c, Cleanup::default());
    assert_eq!(lock(&me, g.ino, 1, 0, 0, R), Err(Errno::EAGAIN));
    // The live one keeps beating; the dead one is silent for more than the TTL.
    live.heartbeat(ts(150)).unwrap();
    let c = me.cleanup_dead_clients(ts(161), 60).unwrap();
    assert_eq!(
        c,
        Cleanup {
            sessions: 1,
            inodes: 0,
            lock_sessions: 1,
            lock_ranges: 3
        }
    );
    assert_eq!(me.locks_of(g.ino).unwrap(), []);
    let owners: Vec<LockOwner> = me
        .locks_of(f.ino)
        .unwrap()
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(
        owners,
        [
            LockOwner {
                session: 1,
                owner: 1
            },
            LockOwner {
                session: 2,
                owner: 1
            }
        ]
    );
    lock(&me, g.ino, 1, 0, 0, W).unwrap();
    lock(&me, f.ino, 2, 10, 39, W).unwrap();
    assert_eq!(lock(&me, f.ino, 2, 9, 9, R), Err(Errno::EAGAIN));
    // On an engine only one process can open (TTL 0), every other session is dead.
    let c = me.cleanup_dead_clients(ts(161), 0).unwrap();
    assert_eq!((c.sessions, c.lock_sessions, c.lock_ranges), (1, 1, 1));
    assert_eq!(me.cleanup_orphans(ts(161), 0).unwrap(), (0, 0));
    fx.check();
}

#[test]
fn locks_of_a_session_without_a_record_are_cleaned_up_too() {
    // A client whose record went (its session closed elsewhere) but whose locks were
    // left behind: the K index finds them.
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let me = client(&fx, 1);
    let other = client(&fx, 2);
    lock(&other, f.ino, 1, 0, 9, W).unwrap();
    crate::kv::txn(&*fx.kv, |t| {
        t.delete(&keys::session(2));
        Ok(())
    })
    .unwrap();
    let c = me.cleanup_dead_clients(ts(10), 60).unwrap();
    assert_eq!((c.sessions, c.lock_sessions, c.lock_ranges), (0, 1, 1));
    lock(&me, f.ino, 1, 0, 9, W).unwrap();
    fx.check();
}

#[test]
fn closing_a_session_drops_its_locks() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let a = client(&fx, 1);
    let b = client(&fx, 2);
    lock(&a, f.ino, 1, 0, EOF, W).unwrap();
    assert_eq!(lock(&b, f.ino, 1, 0, 0, R), Err(Errno::EAGAIN));
    a.close_session(1).unwrap();
    lock(&b, f.ino, 1, 0, 0, R).unwrap();
    assert!(fx
        .kv
        .dump()
        .iter()
        .all(|(k, _)| k[0] != b'L' || keys::id_of(k) != Some(1)));
    fx.check();
}

#[test]
fn deleting_a_locked_inode_removes_its_locks_and_their_index() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let a = client(&fx, 1);
    lock(&a, f.ino, 1, 0, 9, W).unwrap();
    // Another client (which does not have it open) unlinks it: the inode goes.
    fx.m.unlink(&root(), Ino::ROOT, b"f", ts(3)).unwrap();
    assert!(fx.kv.dump().iter().all(|(k, _)| k[0] != b'K'));
    assert_eq!(a.locks_of(f.ino).unwrap(), []);
    // A new lock on the gone inode is refused; unlocking it is harmless.
    assert_eq!(lock(&a, f.ino, 1, 0, 9, W), Err(Errno::ENOENT));
    unlock(&a, f.ino, 1, 0, EOF);
    assert_eq!(a.release_locks(f.ino, Some(1), Some(1)).unwrap(), 0);
    fx.check();
}

/// Another client's commit, run once.
type Interference = Arc<std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// A remote through which another client commits right before this client's
/// `at`-th read (counted from when `reads` was last reset).
struct Racing {
    inner: crate::replica::LocalReplica,
    reads: Arc<std::sync::atomic::AtomicUsize>,
    at: usize,
    interfere: Interference,
}

impl Racing {
    fn read(&self) {
        let n = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n == self.at {
            let f = self.interfere.lock().unwrap().take();
            if let Some(f) = f {
                f();
            }
        }
    }
}

impl crate::replica::Remote for Racing {
    fn get(&self, key: &[u8], fresh: bool) -> crate::Result<Option<Vec<u8>>> {
        self.read();
        self.inner.get(key, fresh)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        fresh: bool,
    ) -> crate::Result<Vec<crate::kv::KvPair>> {
        self.read();
        self.inner.scan(start, end, limit, fresh)
    }
    fn check(&self, reads: &[crate::replica::ReadCheck]) -> crate::Result<bool> {
        self.inner.check(reads)
    }
    fn commit(&self, cmd: &crate::replica::Command) -> crate::Result<crate::replica::Outcome> {
        self.inner.commit(cmd)
    }
}

#[test]
fn two_clients_racing_through_the_optimistic_engine_never_both_get_the_lock() {
    use crate::replica::{LocalReplica, OptimisticKv};
    use std::sync::atomic::{AtomicUsize, Ordering};
    for (a_kind, b_kind) in [(W, W), (R, W), (W, R), (R, R)] {
        let fx = setup();
        let ino = fx.file(&root(), Ino::ROOT, "f", 0o644).ino;
        let engine: Arc<dyn crate::kv::Kv> = fx.kv.clone();
        let remote_b = OptimisticKv::new(LocalReplica::new(engine.clone()), 2, 0);
        let b = Meta::load(Arc::new(remote_b)).unwrap();
        b.new_session("{}").unwrap();
        let reads = Arc::new(AtomicUsize::new(0));
        let interfere: Interference = Arc::default();
        // a's lock transaction reads the inode's locks, then its attributes: b commits
        // in between, so what a read is stale when it commits.
        let racing = Racing {
            inner: LocalReplica::new(engine.clone()),
            reads: reads.clone(),
            at: 2,
            interfere: interfere.clone(),
        };
        let a = Meta::load(Arc::new(OptimisticKv::new(racing, 1, 0))).unwrap();
        a.new_session("{}").unwrap();
        let b_won = Arc::new(AtomicUsize::new(0));
        let won = b_won.clone();
        *interfere.lock().unwrap() = Some(Box::new(move || {
            lock(&b, ino, 1, 0, 9, b_kind).unwrap();
            won.fetch_add(1, Ordering::SeqCst);
        }) as Box<dyn FnOnce() + Send>);
        reads.store(0, Ordering::SeqCst);
        let r = lock(&a, ino, 1, 5, 5, a_kind);
        assert_eq!(
            b_won.load(Ordering::SeqCst),
            1,
            "b locked inside a's transaction"
        );
        assert!(
            reads.load(Ordering::SeqCst) > 2,
            "a ran its transaction again"
        );
        if a_kind == R && b_kind == R {
            assert_eq!(r, Ok(()));
            assert_eq!(a.locks_of(ino).unwrap().len(), 2);
        } else {
            assert_eq!(r, Err(Errno::EAGAIN), "{a_kind:?} after {b_kind:?}");
            assert_eq!(a.locks_of(ino).unwrap().len(), 1);
        }
        fx.check();
    }
}

mod model {
    //! POSIX range locks against a reference model: each owner's lock state per byte
    //! of a small file, where the last byte stands for everything from there to the
    //! end of the file.

    use super::*;
    use proptest::prelude::*;

    /// Bytes modelled: 0..CELLS-1 themselves, and CELLS-1 for [CELLS-1, ∞).
    const CELLS: usize = 12;
    const LAST: u64 = CELLS as u64 - 1;
    /// Owners: two clients with two lock owners each.
    const OWNERS: usize = 4;

    #[derive(Clone, Debug)]
    enum Op {
        Set {
            who: usize,
            start: u64,
            end: Option<u64>,
            kind: Option<LockKind>,
        },
        Test {
            who: usize,
            start: u64,
            end: Option<u64>,
            kind: LockKind,
        },
        Close {
            who: usize,
        },
        /// The client of `who` dies and the other cleans up; it comes back as a new
        /// session.
        Crash {
            who: usize,
        },
    }

    fn kind() -> impl Strategy<Value = LockKind> {
        prop_oneof![Just(LockKind::Read), Just(LockKind::Write)]
    }

    /// A range [start, end] with `None` for "to the end of the file".
    fn range() -> impl Strategy<Value = (u64, Option<u64>)> {
        (0..LAST).prop_flat_map(|s| {
            (
                Just(s),
                prop_oneof![1 => Just(None), 4 => (s..LAST).prop_map(Some)],
            )
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..OWNERS, range(), proptest::option::weighted(0.75, kind())).prop_map(
                |(who, (start, end), kind)| Op::Set { who, start, end, kind }
            ),
            3 => (0..OWNERS, range(), kind())
                .prop_map(|(who, (start, end), kind)| Op::Test { who, start, end, kind }),
            1 => (0..OWNERS).prop_map(|who| Op::Close { who }),
            1 => (0..OWNERS).prop_map(|who| Op::Crash { who }),
        ]
    }

    /// The cells of a range as stored or requested.
    fn cells(start: u64, end: u64) -> std::ops::RangeInclusive<usize> {
        assert!(
            start <= LAST && (end < LAST || end == u64::MAX),
            "{start}..={end}"
        );
        start as usize..=end.min(LAST) as usize
    }

    fn end_of(end: Option<u64>) -> u64 {
        end.unwrap_or(u64::MAX)
    }

    type Model = [[Option<LockKind>; CELLS]; OWNERS];

    /// The model's own rule (not the code's): a writer excludes everyone.
    fn excludes(a: LockKind, b: LockKind) -> bool {
        matches!((a, b), (LockKind::Write, _) | (_, LockKind::Write))
    }

    /// Whether another owner's lock conflicts with `kind` somewhere in the range.
    fn model_conflict(m: &Model, who: usize, start: u64, end: u64, kind: LockKind) -> bool {
        cells(start, end)
            .any(|c| (0..OWNERS).any(|o| o != who && m[o][c].is_some_and(|k| excludes(k, kind))))
    }

    /// An owner's maximal runs of one kind, as stored ranges.
    fn runs(cells: &[Option<LockKind>; CELLS]) -> Vec<(u64, u64, LockKind)> {
        let mut out: Vec<(u64, u64, LockKind)> = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            let Some(k) = c else { continue };
            match out.last_mut() {
                Some((_, e, lk)) if *lk == *k && *e + 1 == i as u64 => *e = i as u64,
                _ => out.push((i as u64, i as u64, *k)),
            }
        }
        for r in out.iter_mut() {
            if r.1 == LAST {
                r.1 = u64::MAX;
            }
        }
        out
    }

    struct World {
        fx: Fx,
        ino: Ino,
        clients: [Meta; 2],
        sessions: [u64; 2],
        model: Model,
        now: i64,
    }

    impl World {
        fn new() -> World {
            let fx = setup();
            let ino = fx.file(&root(), Ino::ROOT, "f", 0o644).ino;
            let a = client(&fx, 1);
            let b = client(&fx, 2);
            World {
                fx,
                ino,
                clients: [a, b],
                sessions: [1, 2],
                model: [[None; CELLS]; OWNERS],
                now: 10,
            }
        }

        /// The client and lock owner of model owner `who`.
        fn of(&self, who: usize) -> (&Meta, u64, LockOwner) {
            let c = who / 2;
            let owner = (who % 2) as u64 + 1;
            let session = self.sessions[c];
            (&self.clients[c], owner, LockOwner { session, owner })
        }

        fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
            match *op {
                Op::Set {
                    who,
                    start,
                    end,
                    kind,
                } => {
                    let end = end_of(end);
                    let (m, owner, _) = self.of(who);
                    let r = m.set_lock(self.ino, &req(owner, start, end, kind));
                    let refused =
                        kind.is_some_and(|k| model_conflict(&self.model, who, start, end, k));
                    if refused {
                        prop_assert_eq!(r, Err(Errno::EAGAIN));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        for c in cells(start, end) {
                            self.model[who][c] = kind;
                        }
                    }
                }
                Op::Test {
                    who,
                    start,
                    end,
                    kind,
                } => {
                    let end = end_of(end);
                    let (m, owner, me) = self.of(who);
                    let got = m.test_lock(self.ino, owner, start, end, kind).unwrap();
                    let conflict = model_conflict(&self.model, who, start, end, kind);
                    prop_assert_eq!(got.is_some(), conflict, "{:?}", got);
                    if let Some(h) = got {
                        // A real lock of another owner, as stored, overlapping and
                        // conflicting, with the holder's pid.
                        prop_assert!(h.owner != me);
                        let o = (0..OWNERS).find(|&o| self.of(o).2 == h.owner).unwrap();
                        let held = (h.range.start, h.range.end, h.range.kind);
                        prop_assert!(runs(&self.model[o]).contains(&held), "{:?}", held);
                        prop_assert!(h.range.start <= end && start <= h.range.end);
                        prop_assert!(excludes(h.range.kind, kind));
                        prop_assert_eq!(h.range.pid, h.owner.owner as u32 + 100);
                    }
                }
                Op::Close { who } => {
                    let (m, owner, _) = self.of(who);
                    let held: u64 = runs(&self.model[who]).len() as u64;
                    prop_assert_eq!(m.release_locks(self.ino, Some(owner), None).unwrap(), held);
                    self.model[who] = [None; CELLS];
                }
                Op::Crash { who } => {
                    let c = who / 2;
                    let other = 1 - c;
                    self.now += 1;
                    let fresh = client(&self.fx, 9);
                    self.sessions[c] = fresh.session_id();
                    self.clients[c] = fresh;
                    let dead: u64 = [2 * c, 2 * c + 1]
                        .iter()
                        .map(|&o| runs(&self.model[o]).len() as u64)
                        .sum();
                    let cleaned = self.clients[other]
                        .cleanup_dead_clients(ts(self.now), 0)
                        .unwrap();
                    prop_assert_eq!(cleaned.lock_ranges, dead);
                    self.model[2 * c] = [None; CELLS];
                    self.model[2 * c + 1] = [None; CELLS];
                    // The cleanup took the fresh session as dead too (TTL 0): it was
                    // not the cleaner's; it holds nothing yet, so nothing is lost.
                }
            }
            self.compare()
        }

        /// Every owner's stored ranges are the model's maximal runs.
        fn compare(&self) -> Result<(), TestCaseError> {
            for who in 0..OWNERS {
                let (m, _, me) = self.of(who);
                let stored: Vec<(u64, u64, LockKind)> = m
                    .locks_of(self.ino)
                    .unwrap()
                    .into_iter()
                    .filter(|(o, _)| *o == me)
                    .flat_map(|(_, r)| r.into_iter().map(|l| (l.start, l.end, l.kind)))
                    .collect();
                prop_assert_eq!(&stored, &runs(&self.model[who]), "owner {}", who);
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn range_locks_match_a_per_byte_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut w = World::new();
            for op in &ops {
                w.run(op)?;
            }
            w.fx.check();
        }
    }
}
