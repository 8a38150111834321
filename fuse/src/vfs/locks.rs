//! File locks (`fcntl` record locks and `flock`) as the client serves them. What is
//! locked, what conflicts, and what a close releases are decided in
//! `ferrofs_core::meta` (`Meta::set_lock` and friends), in the shared metadata; this
//! module names the inode behind a handle and makes blocking requests wait.
//!
//! A blocking request (F_SETLKW, `flock` without LOCK_NB) that conflicts is parked
//! with a waiter thread and its answer is sent later, so it holds none of the
//! threads that serve FUSE requests (the lock's holder may need one to unlock). The
//! waiter retries each parked request, first after 10 ms, backing off to every
//! 500 ms, and at once when this client releases a lock. Between tries it asks
//! `interrupted` (the shell checks whether the caller has a signal pending) and
//! answers EINTR when it says so: the kernel does not forward interrupts to fuser,
//! so this is how a waiting process can still be killed. There is no deadlock
//! detection: two owners each waiting for the other's range wait until one is
//! interrupted.

use super::{Fh, Vfs};
use ferrofs_core::meta::{Held, LockKind, LockRequest, Meta};
use ferrofs_core::{Errno, Ino, Result};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The first retry of a parked request comes this soon...
const FIRST_RETRY: Duration = Duration::from_millis(10);
/// ...then ever later, up to this.
const MAX_RETRY: Duration = Duration::from_millis(500);
/// How often parked requests are checked for interruption.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// Whether the process waiting for a lock was interrupted (asked between tries).
pub type Interrupted = Box<dyn Fn() -> bool + Send>;
/// Where the answer of a blocking lock request goes.
pub type Answer = Box<dyn FnOnce(Result<()>) + Send>;

struct Parked {
    ino: Ino,
    req: LockRequest,
    next_try: Instant,
    backoff: Duration,
    interrupted: Interrupted,
    answer: Answer,
}

#[derive(Default)]
struct State {
    parked: Vec<Parked>,
    /// A lock was released here since the waiter last looked: retry everything now.
    kicked: bool,
    stop: bool,
    running: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The blocking requests of one client, and the thread that retries them (started
/// with the first one).
#[derive(Default)]
pub(super) struct LockWaits {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LockWaits {
    fn park(&self, meta: &Arc<Meta>, p: Parked) {
        let mut st = self.shared.lock();
        if st.stop {
            drop(st);
            (p.answer)(Err(Errno::EINTR));
            return;
        }
        st.parked.push(p);
        if !st.running {
            st.running = true;
            let shared = self.shared.clone();
            let meta = meta.clone();
            let t = std::thread::Builder::new()
                .name("ferrofs-locks".into())
                .spawn(move || wait_loop(&shared, &meta));
            match t {
                Ok(t) => *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t),
                Err(e) => {
                    tracing::error!("cannot start the lock waiter: {e}");
                    st.running = false;
                    let parked = std::mem::take(&mut st.parked);
                    drop(st);
                    for p in parked {
                        (p.answer)(Err(Errno::ENOLCK));
                    }
                    return;
                }
            }
        }
        self.shared.wake.notify_all();
    }

    /// Something was unlocked here: parked requests try again now (also those the
    /// waiter has taken out to try, so a kick during a round is not lost).
    fn kick(&self) {
        let mut st = self.shared.lock();
        if st.running {
            st.kicked = true;
            self.shared.wake.notify_all();
        }
    }

    /// Requests parked now.
    fn len(&self) -> usize {
        self.shared.lock().parked.len()
    }
}

impl Drop for LockWaits {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self
            .thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
        for p in std::mem::take(&mut self.shared.lock().parked) {
            (p.answer)(Err(Errno::EINTR));
        }
    }
}

fn wait_loop(shared: &Shared, meta: &Meta) {
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        let kicked = std::mem::take(&mut st.kicked);
        let (due, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut st.parked)
            .into_iter()
            .partition(|p| kicked || p.next_try <= now);
        st.parked = waiting;
        drop(st);
        // Tries (and answers) happen without the state lock: a try is a metadata
        // transaction, and new requests must still be able to park meanwhile.
        let mut again = Vec::new();
        for mut p in due {
            if (p.interrupted)() {
                (p.answer)(Err(Errno::EINTR));
                continue;
            }
            match meta.set_lock(p.ino, &p.req) {
                Err(Errno::EAGAIN) => {
                    p.next_try = Instant::now() + p.backoff;
                    p.backoff = (p.backoff * 2).min(MAX_RETRY);
                    again.push(p);
                }
                r => (p.answer)(r),
            }
        }
        st = shared.lock();
        // Waiting ones that were interrupted are answered now, not at their next try.
        let (gone, mut waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut st.parked)
            .into_iter()
            .partition(|p| (p.interrupted)());
        // The ones just tried keep their place ahead of later arrivals.
        again.append(&mut waiting);
        st.parked = again;
        if !gone.is_empty() {
            drop(st);
            for p in gone {
                (p.answer)(Err(Errno::EINTR));
            }
            st = shared.lock();
        }
        if st.stop || st.kicked {
            continue;
        }
        let next = st.parked.iter().map(|p| p.next_try).min();
        let timeout = match next {
            Some(t) => t
                .saturating_duration_since(Instant::now())
                .min(INTERRUPT_POLL),
            None => Duration::from_secs(3600),
        };
        st = shared
            .wake
            .wait_timeout(st, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

impl Vfs {
    fn locked_ino(&self, fh: Fh) -> Result<Ino> {
        self.handles.get(fh).map(|h| h.ino).ok_or(Errno::EBADF)
    }

    /// F_GETLK through handle `fh` for lock owner `owner`: the lock of another owner
    /// (of this client or another) that stands in the way of `kind` over
    /// `[start, end]`, if any.
    pub fn getlk(
        &self,
        fh: Fh,
        owner: u64,
        start: u64,
        end: u64,
        kind: LockKind,
    ) -> Result<Option<Held>> {
        let ino = self.locked_ino(fh)?;
        self.meta.test_lock(ino, owner, start, end, kind)
    }

    /// F_SETLK (and `flock` with LOCK_NB, and any unlock): EAGAIN if another owner's
    /// lock conflicts.
    pub fn setlk(&self, fh: Fh, req: &LockRequest) -> Result<()> {
        let ino = self.locked_ino(fh)?;
        let r = self.meta.set_lock(ino, req);
        if req.kind.is_none() {
            self.lock_waits.kick();
        }
        r
    }

    /// F_SETLKW (and `flock` without LOCK_NB): tries at once; on a conflict the
    /// request is parked and `answer` is called from the waiter thread once it is
    /// granted, fails otherwise, or `interrupted` says the caller gave up (EINTR).
    pub fn setlk_wait(&self, fh: Fh, req: LockRequest, interrupted: Interrupted, answer: Answer) {
        let ino = match self.locked_ino(fh) {
            Ok(ino) => ino,
            Err(e) => return answer(Err(e)),
        };
        match self.meta.set_lock(ino, &req) {
            Err(Errno::EAGAIN) if req.kind.is_some() => {}
            r => return answer(r),
        }
        let p = Parked {
            ino,
            req,
            next_try: Instant::now() + FIRST_RETRY,
            backoff: FIRST_RETRY * 2,
            interrupted,
            answer,
        };
        self.lock_waits.park(&self.meta, p);
    }

    /// Releases the locks a close drops: those of lock owner `owner` on the handle's
    /// inode (a POSIX owner closing a descriptor; an `flock` owner at the release of
    /// its file) and, with `whole_handle`, every lock taken through the handle (its
    /// release: `flock` and OFD locks).
    pub fn release_locks(&self, fh: Fh, owner: Option<u64>, whole_handle: bool) -> Result<()> {
        let Ok(ino) = self.locked_ino(fh) else {
            return Ok(());
        };
        let handle = whole_handle.then_some(fh.0);
        if self.meta.release_locks(ino, owner, handle)? > 0 {
            self.lock_waits.kick();
        }
        Ok(())
    }

    /// Blocking lock requests waiting now.
    pub fn lock_waiters(&self) -> usize {
        self.lock_waits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{system_clock, VfsConfig};
    use ferrofs_core::format::Format;
    use ferrofs_core::kv::MemKv;
    use ferrofs_core::{Ctx, Timespec};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    /// Two clients of one in-memory volume, and a file both have open.
    fn two_clients() -> (Vfs, Vfs, Fh, Fh) {
        let kv = Arc::new(MemKv::new());
        Meta::format(
            &*kv,
            &Format::new("lock-vol", "uuid-1"),
            false,
            Timespec::new(1, 0),
        )
        .unwrap();
        let store: Arc<dyn ferrofs_s3_backend::ObjectStore> =
            Arc::new(ferrofs_s3_backend::MemStore::new());
        let client = |pid: u32| {
            let meta = Arc::new(Meta::load(kv.clone()).unwrap());
            meta.new_session(&format!("{{\"pid\":{pid}}}")).unwrap();
            Vfs::new(meta, store.clone(), system_clock(), VfsConfig::default())
        };
        let (a, b) = (client(1), client(2));
        let root = Ctx::root();
        let (fa, attr) = a.create(&root, Ino::ROOT, b"f", 0o644, 0, 2).unwrap();
        let (fb, _) = b.open(&root, attr.ino, 2).unwrap();
        (a, b, fa, fb)
    }

    fn req(owner: u64, kind: Option<LockKind>) -> LockRequest {
        LockRequest {
            owner,
            fh: 0,
            start: 0,
            end: 99,
            kind,
            pid: 1,
        }
    }

    fn never() -> Interrupted {
        Box::new(|| false)
    }

    fn answer_to(tx: mpsc::Sender<Result<()>>) -> Answer {
        Box::new(move |r| {
            let _ = tx.send(r);
        })
    }

    #[test]
    fn a_blocked_request_is_granted_when_the_holder_unlocks() {
        let (a, b, fa, fb) = two_clients();
        a.setlk(fa, &req(1, Some(LockKind::Write))).unwrap();
        assert_eq!(
            b.setlk(fb, &req(1, Some(LockKind::Read))),
            Err(Errno::EAGAIN)
        );
        let (tx, rx) = mpsc::channel();
        b.setlk_wait(fb, req(1, Some(LockKind::Read)), never(), answer_to(tx));
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "granted early"
        );
        assert_eq!(b.lock_waiters(), 1);
        // The holder is another client: the waiter finds out by polling.
        a.setlk(fa, &req(1, None)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok(()));
        assert_eq!(b.lock_waiters(), 0);
        assert_eq!(
            a.setlk(fa, &req(1, Some(LockKind::Write))),
            Err(Errno::EAGAIN)
        );
    }

    #[test]
    fn a_local_release_wakes_a_waiter_at_once() {
        let (a, _b, fa, _fb) = two_clients();
        a.setlk(fa, &req(1, Some(LockKind::Write))).unwrap();
        let (tx, rx) = mpsc::channel();
        a.setlk_wait(fa, req(2, Some(LockKind::Write)), never(), answer_to(tx));
        // Let it back off to its longest wait, then close owner 1's descriptor.
        std::thread::sleep(Duration::from_millis(1200));
        let t = Instant::now();
        a.release_locks(fa, Some(1), false).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok(()));
        assert!(t.elapsed() < MAX_RETRY / 2, "woke after {:?}", t.elapsed());
    }

    #[test]
    fn an_interrupted_waiter_gets_eintr_and_takes_nothing() {
        let (a, b, fa, fb) = two_clients();
        a.setlk(fa, &req(1, Some(LockKind::Write))).unwrap();
        let signal = Arc::new(AtomicBool::new(false));
        let s = signal.clone();
        let (tx, rx) = mpsc::channel();
        b.setlk_wait(
            fb,
            req(1, Some(LockKind::Write)),
            Box::new(move || s.load(Ordering::SeqCst)),
            answer_to(tx),
        );
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        signal.store(true, Ordering::SeqCst);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(2)).unwrap(),
            Err(Errno::EINTR)
        );
        a.setlk(fa, &req(1, None)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            b.meta().locks_of(a.handles.get(fa).unwrap().ino).unwrap(),
            []
        );
    }

    #[test]
    fn parked_requests_are_answered_when_the_client_goes() {
        let (a, b, fa, fb) = two_clients();
        a.setlk(fa, &req(1, Some(LockKind::Write))).unwrap();
        let (tx, rx) = mpsc::channel();
        b.setlk_wait(fb, req(1, Some(LockKind::Write)), never(), answer_to(tx));
        drop(b);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(2)).unwrap(),
            Err(Errno::EINTR)
        );
    }
}
