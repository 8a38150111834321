//! The simulated world: one lock around everything shared, and the baton.
//!
//! [`State`] holds the metadata engine, the object store, the clients' cache disks, the
//! oracle, the trace, the fault rates and counters, and the [`Scheduler`]. Client
//! threads touch it only while they hold the baton, so the lock is never contended; it
//! exists to hand the baton over (one [`Condvar`] per client) and to keep Rust's
//! aliasing rules honest.
//!
//! [`World::call`] is the yield point every simulated service call goes through: it
//! decides the call's fate (latency, failure, crash), parks the caller until the
//! scheduler picks it again at the call's completion time, then applies the call's
//! effect atomically. A crash unwinds the client's thread with a private payload
//! ([`Crashed`]) that the client loop catches; dropping the client's `Vfs` and `Meta` on
//! the way loses what only lived in its memory, as a process crash would.

use crate::cache_disk::CacheDisks;
use crate::checkers::{meta_consistency, objects};
use crate::faults::{decide, CrashAt, Decision, Failure, Fault, FaultCounts, Rates, Service};
use crate::kv::KvState;
use crate::oracle::Oracle;
use crate::peers::PeerNet;
use crate::plant::Plant;
use crate::rng::Rng;
use crate::scheduler::{Scheduler, Status};
use crate::store::StoreState;
use crate::trace::{Trace, WORLD};
use crate::workload::Layout;
use ferrofs::vfs::Clock;
use ferrofs_core::Timespec;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Unwind payload: this client process crashed.
pub struct Crashed;
/// Unwind payload: the run is over (a checker failed); leave quietly.
pub struct Stopped;

/// Virtual time 0 is this wall-clock second (2024-01-01), so stamps look real.
const EPOCH_SECS: i64 = 1_704_067_200;
/// The metadata engine flushes its tail this often, like sled's `flush_every_ms`.
pub const AUTOSYNC_NS: u64 = 500_000_000;
/// A run that goes on past this much virtual time is stuck.
const MAX_VIRTUAL_NS: u64 = 6 * 3600 * 1_000_000_000;

/// The result of a call's effect: its value and what the trace records of it.
pub struct Step<R> {
    pub value: R,
    pub key: Vec<u8>,
    pub code: u64,
    pub note: &'static str,
}

impl<R> Step<R> {
    pub fn new(value: R, key: Vec<u8>, code: u64, note: &'static str) -> Step<R> {
        Step {
            value,
            key,
            code,
            note,
        }
    }
}

/// Everything shared by the clients of one run.
pub struct State {
    /// Draws the fate of calls and the world's own choices.
    pub rng: Rng,
    pub rates: Rates,
    /// False once the world is healed for the final phase.
    pub faults_on: bool,
    pub sched: Scheduler,
    pub kv: KvState,
    pub store: StoreState,
    /// The disks of the clients' local block caches.
    pub cache: CacheDisks,
    pub oracle: Oracle,
    pub trace: Trace,
    pub counts: FaultCounts,
    pub layout: Layout,
    /// The first violation found; the run stops.
    pub failure: Option<String>,
    pub stop: bool,
    pub yields: u64,
    next_autosync: u64,
    /// Per client: calls that returned an injected error to it.
    pub faults_seen: Vec<u64>,
    /// Whole-world checks run so far.
    pub checks: u64,
    /// Most leaked objects seen by a check.
    pub leaked: u64,
    /// Per client: whether its last call was an object put (to spot refused commits).
    pub put_last: Vec<bool>,
    /// Uploads whose slice was never committed, so their objects leak legitimately: a
    /// put of the slice failed after earlier blocks were stored, or the commit right
    /// after the upload was refused (the file was removed meanwhile by another client).
    pub abandoned_uploads: u64,
    /// The metadata engine's disk is full until this virtual time (fault `meta-disk`).
    pub disk_full_until: u64,
    /// The cache-group network between the clients ([`crate::peers`]).
    pub peers: PeerNet,
}

impl State {
    /// Whether the metadata engine's disk is full now.
    pub fn disk_full(&self) -> bool {
        self.sched.now < self.disk_full_until
    }
}

/// The shared world of one run.
pub struct World {
    state: Mutex<State>,
    turn: Vec<Condvar>,
    clock_ns: Arc<AtomicU64>,
    plant: Option<Plant>,
    check_every: u64,
    block_size: u32,
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

impl World {
    pub fn new(
        seed: u64,
        slots: usize,
        rates: Rates,
        plant: Option<Plant>,
        check_every: u64,
        block_size: u32,
        print_trace: bool,
    ) -> Arc<World> {
        let state = State {
            rng: Rng::derive(seed, u64::MAX),
            rates,
            faults_on: true,
            sched: Scheduler::new(slots),
            kv: KvState::default(),
            store: StoreState::default(),
            cache: CacheDisks::default(),
            oracle: Oracle::default(),
            trace: Trace::new(print_trace),
            counts: FaultCounts::default(),
            layout: Layout::default(),
            failure: None,
            stop: false,
            yields: 0,
            next_autosync: AUTOSYNC_NS,
            faults_seen: vec![0; slots],
            checks: 0,
            leaked: 0,
            put_last: vec![false; slots],
            abandoned_uploads: 0,
            disk_full_until: 0,
            peers: PeerNet::default(),
        };
        Arc::new(World {
            state: Mutex::new(state),
            turn: (0..slots).map(|_| Condvar::new()).collect(),
            clock_ns: Arc::new(AtomicU64::new(0)),
            plant,
            check_every,
            block_size,
        })
    }

    /// The world's state. Never hold the guard across a call into a `Vfs`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    pub fn plant(&self) -> Option<Plant> {
        self.plant
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The clock a simulated client's `Vfs` reads: virtual time.
    pub fn clock(&self) -> Clock {
        let ns = self.clock_ns.clone();
        Arc::new(move || {
            let t = ns.load(Ordering::Relaxed);
            Timespec::new(
                EPOCH_SECS + (t / 1_000_000_000) as i64,
                (t % 1_000_000_000) as u32,
            )
        })
    }

    /// Records a workload event in the trace.
    pub fn note(&self, me: usize, kind: &'static str, key: &[u8], code: u64) {
        let mut st = self.lock();
        let now = st.sched.now;
        st.trace.record(now, me, kind, key, code, String::new);
    }

    /// Records a violation found by a client; the run stops.
    pub fn fail(&self, me: usize, what: String) {
        let mut st = self.lock();
        let now = st.sched.now;
        let who = if me == WORLD {
            "world".to_string()
        } else {
            format!("client {me}")
        };
        let msg = format!("{what} (found by {who} at {:.6}s)", now as f64 / 1e9);
        st.trace
            .record(now, me, "VIOLATION", msg.as_bytes(), 0, || msg.clone());
        if st.failure.is_none() {
            st.failure = Some(msg);
        }
        st.stop = true;
    }

    /// Records a panic that escaped a client as a violation.
    pub fn fail_panic(&self, me: usize, p: &(dyn std::any::Any + Send)) {
        self.fail(me, format!("panic: {}", panic_text(p)));
    }

    /// One call of client `me` into a simulated service: decides its fate, parks the
    /// caller for its latency, then applies `effect` (with no other client running) and
    /// returns its value — unless the client crashes before or after.
    pub fn call<R>(
        &self,
        me: usize,
        service: Service,
        kind: &'static str,
        effect: impl FnOnce(&mut State, Failure) -> Step<R>,
    ) -> R {
        let mut st = self.lock();
        if me == WORLD {
            let step = effect(&mut st, Failure::None);
            let now = st.sched.now;
            let note = step.note;
            st.trace
                .record(now, me, kind, &step.key, step.code, || note.to_string());
            return step.value;
        }
        debug_assert_eq!(st.sched.running, Some(me), "{kind} without the baton");
        if st.stop {
            drop(st);
            resume_unwind(Box::new(Stopped));
        }
        let d: Decision = {
            let s = &mut *st;
            let none = Rates::default();
            let rates = if s.faults_on { &s.rates } else { &none };
            decide(rates, service, &mut s.rng, &mut s.counts)
        };
        let mut d = d;
        if service == Service::Meta && st.faults_on {
            self.meta_disk(&mut st, me, kind, &mut d);
        }
        if d.failure == Failure::Corrupt {
            if kind == "s3.get" {
                st.counts.add(crate::faults::Fault::StoreCorrupt, 1);
            } else {
                d.failure = Failure::None;
            }
        }
        if d.system_crash {
            self.system_crash(st, me, kind);
        }
        if d.crash == CrashAt::Before {
            self.crash(st, me, kind, "before");
        }
        let wake = st.sched.now + d.latency;
        st = self.park(st, me, wake);
        let step = effect(&mut st, d.failure);
        if d.failure.is_error() {
            st.faults_seen[me] += 1;
        }
        let now = st.sched.now;
        let note = step.note;
        st.trace
            .record(now, me, kind, &step.key, step.code, || note.to_string());
        if d.crash == CrashAt::After {
            self.crash(st, me, kind, "after");
        }
        step.value
    }

    /// Fault `meta-disk` for a metadata call of `me`: the disk may fill up now (it stays
    /// full for a while; the engine's calls see it when they take effect), and a
    /// transaction may fail with EIO.
    fn meta_disk(&self, st: &mut State, me: usize, kind: &'static str, d: &mut Decision) {
        let (full, eio) = (st.rates.meta_full, st.rates.meta_eio);
        if !st.disk_full() && st.rng.chance(full) {
            let now = st.sched.now;
            let stretch = st.rng.range(500_000_000, 5_000_000_000);
            st.disk_full_until = now + stretch;
            st.counts.add(Fault::MetaDiskFull, 1);
            st.trace
                .record(now, me, "DISK-FULL", kind.as_bytes(), stretch, || {
                    format!("metadata disk full for {:.3}s", stretch as f64 / 1e9)
                });
        }
        if matches!(kind, "kv.txn" | "kv.read") && st.rng.chance(eio) {
            st.counts.add(Fault::MetaIoError, 1);
            d.failure = Failure::MetaEio;
        }
    }

    /// Parks `me` for `ns` of thinking (a yield point with no call).
    pub fn think(&self, me: usize, ns: u64) {
        self.call(me, Service::Think(ns), "think", |_, _| {
            Step::new((), Vec::new(), 0, "")
        })
    }

    /// Makes slot `me` runnable at `wake_at` (before [`World::start`] or by the main
    /// thread between phases).
    pub fn activate(&self, me: usize, wake_at: u64) {
        let mut st = self.lock();
        st.sched.park(me, wake_at);
        st.sched.slots[me].down = false;
        st.sched.slots[me].doomed = false;
    }

    /// Hands the baton to the first client (called by the main thread).
    pub fn start(&self) {
        let mut st = self.lock();
        self.hand_off(&mut st);
    }

    /// Blocks a new client thread until its first turn.
    pub fn enter(&self, me: usize) {
        let st = self.lock();
        let mut st = self.wait_turn(st, me);
        st.sched.slots[me].started = true;
        st.sched.slots[me].doomed = false;
    }

    /// After a crash of `me`: parks it until its restart. Returns false if the run
    /// stopped meanwhile.
    pub fn await_restart(&self, me: usize) -> bool {
        let mut st = self.lock();
        if st.stop {
            return false;
        }
        let delay = st.rng.range(200_000_000, 3_000_000_000);
        st.sched.slots[me].down = true;
        let wake = st.sched.now + delay;
        let mut st = self.park_quiet(st, me, wake);
        st.sched.slots[me].down = false;
        st.sched.slots[me].doomed = false;
        let now = st.sched.now;
        st.trace.record(now, me, "restart", &[], 0, String::new);
        !st.stop
    }

    /// `me` is finished: it leaves the schedule and passes the baton on.
    pub fn finish(&self, me: usize) {
        let mut st = self.lock();
        st.sched.slots[me].status = Status::Absent;
        if st.sched.running == Some(me) || st.sched.running.is_none() {
            st.sched.running = None;
            self.hand_off(&mut st);
        }
    }

    /// Switches every fault off for the final phase.
    pub fn heal(&self) {
        let mut st = self.lock();
        st.faults_on = false;
        st.disk_full_until = 0;
    }

    /// Parks `me` until `wake_at`; unwinds if the run stops or `me` is killed meanwhile.
    fn park<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        me: usize,
        wake_at: u64,
    ) -> MutexGuard<'a, State> {
        self.tick(&mut st);
        if st.stop {
            drop(st);
            resume_unwind(Box::new(Stopped));
        }
        let st = self.park_quiet(st, me, wake_at);
        if st.stop {
            drop(st);
            resume_unwind(Box::new(Stopped));
        }
        let mut st = st;
        if st.sched.slots[me].doomed {
            st.sched.slots[me].doomed = false;
            drop(st);
            resume_unwind(Box::new(Crashed));
        }
        st
    }

    fn park_quiet<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        me: usize,
        wake_at: u64,
    ) -> MutexGuard<'a, State> {
        st.sched.park(me, wake_at);
        self.hand_off(&mut st);
        self.wait_turn(st, me)
    }

    fn wait_turn<'a>(&'a self, mut st: MutexGuard<'a, State>, me: usize) -> MutexGuard<'a, State> {
        while st.sched.running != Some(me) {
            st = self.turn[me].wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st
    }

    /// Picks the next client, runs the engine's periodic flush if its time came, moves
    /// time forward and wakes the client.
    fn hand_off(&self, st: &mut State) {
        let Some(next) = st.sched.pick() else {
            st.sched.running = None;
            return;
        };
        let at = st.sched.slots[next].wake_at.max(st.sched.now);
        // A full disk holds the flush back until space frees.
        if at >= st.next_autosync && at >= st.disk_full_until {
            if st.kv.dirty() {
                st.kv.sync();
                let t = st.next_autosync;
                let seq = st.kv.durable_seq;
                st.trace
                    .record(t, WORLD, "kv.autosync", &[], seq, String::new);
            }
            st.next_autosync = (at / AUTOSYNC_NS + 1) * AUTOSYNC_NS;
        }
        st.sched.run(next);
        self.clock_ns.store(st.sched.now, Ordering::Relaxed);
        self.turn[next].notify_one();
    }

    /// Runs the whole-world checks every `check_every` yields, and stops runaway runs.
    fn tick(&self, st: &mut State) {
        st.yields += 1;
        if self.check_every > 0 && st.yields.is_multiple_of(self.check_every) {
            self.check_world(st, "periodic check");
        }
        if st.sched.now > MAX_VIRTUAL_NS && st.failure.is_none() {
            st.failure = Some(format!(
                "liveness: the run is still going after {} virtual seconds",
                st.sched.now / 1_000_000_000
            ));
            st.stop = true;
        }
    }

    /// Runs the metadata and objects checkers over the current state.
    pub fn check_world(&self, st: &mut State, when: &str) {
        st.checks += 1;
        let mut found = meta_consistency::check(&st.kv.live, false);
        let staged = st.cache.may_be_unuploaded();
        let o = objects::check(
            &st.kv.live,
            &st.store.objects,
            self.block_size,
            false,
            &staged,
        );
        st.leaked = st.leaked.max(o.leaked);
        found.extend(o.violations);
        let now = st.sched.now;
        st.trace.record(
            now,
            WORLD,
            "check",
            when.as_bytes(),
            found.len() as u64,
            String::new,
        );
        if !found.is_empty() && st.failure.is_none() {
            let mut msg = format!("{when} at {:.6}s found:", now as f64 / 1e9);
            for f in found.iter().take(12) {
                msg.push_str("\n    ");
                msg.push_str(f);
            }
            if found.len() > 12 {
                msg.push_str(&format!("\n    … and {} more", found.len() - 12));
            }
            let m = msg.clone();
            st.trace.record(now, WORLD, "VIOLATION", &[], 0, || m);
            st.failure = Some(msg);
            st.stop = true;
        }
    }

    /// Client `me` crashes at `kind` (`when` the call took effect or not).
    fn crash(&self, mut st: MutexGuard<'_, State>, me: usize, kind: &str, when: &str) -> ! {
        st.counts.add(Fault::ClientCrash, 1);
        let now = st.sched.now;
        let what = format!("{when} {kind}");
        st.trace
            .record(now, me, "CRASH", what.as_bytes(), 0, String::new);
        let (seq, acked) = (st.kv.last_commit_of(me), st.kv.acked_sync);
        st.oracle.client_crashed(me, seq, acked);
        st.peers.leave(me, true);
        if self.plant == Some(Plant::SliceIdReuse) {
            st.kv.rewind_next_slice(crate::plant::REWIND_SLICES);
        }
        drop(st);
        resume_unwind(Box::new(Crashed))
    }

    /// Every client, the metadata engine and the cache disks crash at once (during
    /// `me`'s `kind`).
    fn system_crash(&self, mut st: MutexGuard<'_, State>, me: usize, kind: &str) -> ! {
        st.counts.add(Fault::SystemCrash, 1);
        let lost = st.kv.crash();
        st.counts.add(Fault::LostTxns, lost);
        let now = st.sched.now;
        let s = &mut *st;
        s.cache.system_crash(now, &mut s.rng, &mut s.counts);
        st.trace
            .record(now, me, "SYSTEM-CRASH", kind.as_bytes(), lost, || {
                format!("{lost} unsynced transactions lost")
            });
        let acked = st.kv.acked_sync;
        for c in 0..st.sched.slots.len() {
            let s = &st.sched.slots[c];
            let alive = s.status != Status::Absent && s.started && !s.down;
            if !alive {
                continue;
            }
            if c != me {
                st.sched.slots[c].doomed = true;
                st.sched.slots[c].wake_at = now;
            }
            let seq = st.kv.last_commit_of(c);
            st.oracle.client_crashed(c, seq, acked);
        }
        st.oracle.system_crash(acked);
        st.peers.all_down();
        if self.plant == Some(Plant::SliceIdReuse) {
            st.kv.rewind_next_slice(crate::plant::REWIND_SLICES);
        }
        if self.check_every > 0 {
            self.check_world(&mut st, "check after a system crash");
        }
        drop(st);
        resume_unwind(Box::new(Crashed))
    }
}
