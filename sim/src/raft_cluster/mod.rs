//! The replicated metadata engine's Raft layer under deterministic simulation.
//!
//! Real [`Replica`]s (raft-rs `RawNode` + `core::replica::apply_entry` on an in-memory
//! engine) exchange real Raft messages through a simulated network that this module
//! controls completely. The network delays, drops, duplicates and reorders messages,
//! and partitions the replicas. Replicas crash (losing everything their log had not
//! synced, and their engine, which they rebuild from the log) and restart. Clients
//! send increment commands (read the counter, write it plus one; optimistic, so a
//! stale read conflicts) to the replica they believe leads. They send again, with the
//! same request id, when no answer comes.
//!
//! Checked during the run:
//! - **election safety**: at most one leader per term;
//! - **state-machine safety**: no two replicas apply different entries at one index.
//!
//! Checked after a heal phase (no faults, everyone up):
//! - every replica converged to the same engine state;
//! - **no acknowledged write lost**: each increment a client was told was applied is in
//!   every replica's state;
//! - **exactly once**: the counter equals the number of increments applied, each
//!   request applied at most once (resends included);
//! - **liveness**: every client's last request was answered;
//! - **linearizability** of what clients saw: their increments (compare-and-set) and
//!   their reads (read index on the replica they ask, served once it has applied that
//!   far) against a sequential counter ([`crate::checkers::linearizable`]).
//!
//! One `u64` seed determines the run; the trace hash proves it.

use crate::checkers::linearizable::{self, Counter, CounterOp, CounterOut, Operation};
use crate::rng::Rng;
use crate::trace::Fnv;
use ferrofs_core::kv::{self, Kv, KvPair, MemKv, WriteSet};
use ferrofs_core::replica::{Command, Digest, Outcome, ReadCheck, RequestId};
use ferrofs_meta::raft::mem_log::INJECTED_IO_ERROR;
use ferrofs_meta::raft::{MemLog, Message, Replica, ReplicaConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

mod checks;
mod clients;
mod members;

/// The key every client increments.
const COUNTER: &[u8] = b"counter";
/// Virtual time units between two Raft ticks.
const TICK: u64 = 10;
/// A client sends again after this long without an answer.
const CLIENT_TIMEOUT: u64 = 400;

/// A bug to plant, to show that the checkers catch it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RaftPlant {
    /// Replicas vote and acknowledge appends before their log is synced.
    AckBeforeSync,
    /// Reads are answered from whatever the asked replica has applied, without a read
    /// index (a deposed leader or a follower answers stale values).
    StaleReads,
}

impl RaftPlant {
    pub fn parse(s: &str) -> Option<RaftPlant> {
        match s {
            "ack-before-sync" => Some(RaftPlant::AckBeforeSync),
            "stale-reads" => Some(RaftPlant::StaleReads),
            _ => None,
        }
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct RaftRunConfig {
    pub seed: u64,
    pub replicas: usize,
    pub clients: usize,
    /// Virtual time of the fault phase.
    pub duration: u64,
    pub faults: bool,
    pub plant: Option<RaftPlant>,
}

impl RaftRunConfig {
    pub fn new(seed: u64) -> Self {
        RaftRunConfig {
            seed,
            replicas: 3,
            clients: 3,
            duration: 30_000,
            faults: true,
            plant: None,
        }
    }
}

/// What a run did and found.
#[derive(Clone, Debug, Default)]
pub struct RaftRunReport {
    pub seed: u64,
    pub trace_hash: u64,
    /// Increments clients were told were applied.
    pub acked: u64,
    /// Linearizable reads answered.
    pub reads: u64,
    pub conflicts: u64,
    /// Requests sent again (same id) after a timeout.
    pub resends: u64,
    pub terms: u64,
    pub crashes: u64,
    pub partitions: u64,
    /// Snapshots a replica installed from its leader (it was too far behind the log).
    pub snapshots: u64,
    /// Replicas replaced by new ones (added as learners, promoted, the old one removed).
    pub replacements: u64,
    /// Syncs failed by the disk (the replica then crashes and restarts).
    pub disk_errors: u64,
    /// Crashes that left more than was synced on disk (a torn tail).
    pub torn: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub violations: Vec<String>,
}

impl RaftRunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

struct Node {
    cfg: ReplicaConfig,
    log: MemLog,
    replica: Option<Replica<MemLog>>,
    /// Virtual time at which a crashed replica restarts.
    restart_at: u64,
    /// Removed from the cluster: stopped for good, left out of the checks.
    removed: bool,
    /// The engine as of the log's last sync: what a crash leaves of it (a sled replica's
    /// log and engine are made durable by one flush).
    durable_engine: Arc<Mutex<Vec<KvPair>>>,
}

struct Client {
    id: u64,
    next_seq: u64,
    /// The request waiting for an answer, where it went and when.
    pending: Option<(Command, u64, u64)>,
    /// The replica it believes leads.
    leader: u64,
    /// Not before this time (after a conflict or a failed send).
    idle_until: u64,
    /// Requests it was told were applied.
    acked: BTreeSet<RequestId>,
    /// The history entry of its pending increment.
    op: usize,
    /// A read waiting for its answer.
    reading: Option<PendingRead>,
}

#[derive(Clone, Copy)]
struct PendingRead {
    ctx: u64,
    node: usize,
    sent: u64,
    op: usize,
}

struct InFlight {
    at: u64,
    order: u64,
    msg: Message,
}

struct World {
    cfg: RaftRunConfig,
    rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    net: Vec<InFlight>,
    sent: u64,
    /// Partition group of each replica (messages cross only within a group).
    group: Vec<u8>,
    faults: bool,
    leaders: BTreeMap<u64, u64>,
    /// Index → (term, digest of the entry's command) as first applied anywhere.
    applied_at: BTreeMap<u64, (u64, u64)>,
    /// Requests applied with `Applied`, and at which index.
    applied_requests: BTreeMap<RequestId, u64>,
    trace: Fnv,
    report: RaftRunReport,
    /// What clients called and saw, for the linearizability check.
    history: Vec<Operation<CounterOp, CounterOut>>,
    events: u64,
    /// Read-index answers: (context, replica, index), served once it applied that far.
    read_waits: Vec<(u64, usize, u64)>,
    next_ctx: u64,
    /// A replacement of one replica by a new one, under way.
    change: Option<members::Replacing>,
}

fn value_of(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|v| v.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn engine_state(e: &dyn Kv) -> Vec<(Vec<u8>, Vec<u8>)> {
    kv::read(e, |t| t.scan(b"", &[0xff; 8], usize::MAX)).unwrap_or_default()
}

impl World {
    fn new(cfg: RaftRunConfig) -> World {
        let mut rng = Rng::derive(cfg.seed, 0x4AF7);
        let voters: Vec<u64> = (1..=cfg.replicas as u64).collect();
        let nodes = voters
            .iter()
            .map(|&id| Node {
                cfg: ReplicaConfig {
                    // Different election timeouts per replica (see ReplicaConfig).
                    election_ticks: 10 + 3 * (id as usize - 1) + rng.below(3) as usize,
                    // Small, so that compaction, snapshots sent to lagging or
                    // restarted replicas, and restores happen in every run.
                    snapshot_every: 40,
                    keep_entries: 10,
                    ..ReplicaConfig::new(id, 10)
                },
                log: MemLog::new(voters.clone()),
                replica: None,
                restart_at: 0,
                removed: false,
                durable_engine: Arc::default(),
            })
            .collect();
        let clients = (0..cfg.clients as u64)
            .map(|i| Client {
                id: 100 + i,
                next_seq: 1,
                pending: None,
                leader: 1 + i % cfg.replicas as u64,
                idle_until: 0,
                acked: BTreeSet::new(),
                op: 0,
                reading: None,
            })
            .collect();
        let faults = cfg.faults;
        let mut w = World {
            group: vec![0; cfg.replicas],
            report: RaftRunReport {
                seed: cfg.seed,
                ..RaftRunReport::default()
            },
            cfg,
            rng,
            now: 0,
            nodes,
            clients,
            net: Vec::new(),
            sent: 0,
            faults,
            leaders: BTreeMap::new(),
            applied_at: BTreeMap::new(),
            applied_requests: BTreeMap::new(),
            trace: Fnv::default(),
            history: Vec::new(),
            events: 0,
            read_waits: Vec::new(),
            next_ctx: 1,
            change: None,
        };
        for i in 0..w.nodes.len() {
            w.start(i);
        }
        w
    }

    fn violation(&mut self, what: String) {
        if self.report.violations.len() < 20 {
            self.report
                .violations
                .push(format!("t={}: {what}", self.now));
        }
    }

    /// Starts replica `i` from its durable log and what its engine had when the log was
    /// last synced; it applies the log after that again.
    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mem = Arc::new(MemKv::new());
        let pairs = node
            .durable_engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = kv::txn(&*mem, |t| {
            for (k, v) in &pairs {
                t.set(k, v);
            }
            Ok(())
        });
        let (m, durable) = (mem.clone(), node.durable_engine.clone());
        node.log.on_sync(Arc::new(move || {
            *durable.lock().unwrap_or_else(|e| e.into_inner()) = m.dump();
        }));
        let engine: Arc<dyn Kv> = mem;
        match Replica::new(&node.cfg, node.log.clone(), engine) {
            Ok(mut r) => {
                r.set_skip_sync(self.cfg.plant == Some(RaftPlant::AckBeforeSync));
                node.replica = Some(r);
            }
            Err(e) => {
                let id = node.cfg.id;
                self.violation(format!("replica {id} cannot restart: {e}"));
            }
        }
        self.trace.u64(1).u64(i as u64);
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.replica.take().is_some() {
            // Sometimes more than was synced reached the disk: a prefix of the
            // entries written since (a torn tail), the hard state only with all of them.
            if self.faults && self.rng.chance(0.3) {
                node.log.crash_torn(self.rng.below(4) as usize);
                self.report.torn += 1;
            } else {
                node.log.crash();
            }
            node.restart_at = self.now + 200 + self.rng.below(2000);
            self.report.crashes += 1;
            self.trace.u64(2).u64(i as u64);
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            if self.faults && self.rng.chance(0.03) {
                self.report.dropped += 1;
                continue;
            }
            let copies = if self.faults && self.rng.chance(0.02) {
                self.report.duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = if self.faults {
                    1 + self.rng.latency(3, 0.05)
                } else {
                    1 + self.rng.below(3)
                };
                self.sent += 1;
                self.net.push(InFlight {
                    at: self.now + delay,
                    order: self.sent,
                    msg: msg.clone(),
                });
            }
        }
    }

    fn deliver_due(&mut self) {
        let mut due: Vec<InFlight> = Vec::new();
        let mut rest = Vec::with_capacity(self.net.len());
        for m in self.net.drain(..) {
            if m.at <= self.now {
                due.push(m);
            } else {
                rest.push(m);
            }
        }
        self.net = rest;
        due.sort_by_key(|m| (m.at, m.order));
        for m in due {
            let (from, to) = (m.msg.from as usize - 1, m.msg.to as usize - 1);
            if to >= self.nodes.len() || self.group[from] != self.group[to] {
                self.report.dropped += 1;
                continue;
            }
            self.trace
                .u64(3)
                .u64(m.msg.from)
                .u64(m.msg.to)
                .u64(m.msg.index);
            // Errors are messages from a term or peer the replica refuses.
            self.guarded(to, |r| {
                let _ = r.step(m.msg);
            });
        }
    }

    /// Handles every replica's ready state until nothing is left to do.
    fn drain_ready(&mut self) {
        for _round in 0..8 {
            let mut any = false;
            for i in 0..self.nodes.len() {
                let out = match self.guarded(i, |r| r.handle_ready()) {
                    None => continue,
                    Some(Ok(out)) => out,
                    Some(Err(e)) if e.to_string().contains(INJECTED_IO_ERROR) => {
                        // A replica stops at a failed fsync (it cannot know what
                        // reached the disk) and restarts from what did.
                        self.crash(i);
                        continue;
                    }
                    Some(Err(e)) => {
                        let id = i + 1;
                        self.violation(format!("replica {id} failed: {e}"));
                        continue;
                    }
                };
                any |= !out.messages.is_empty() || !out.applied.is_empty();
                if out.installed.is_some() {
                    self.report.snapshots += 1;
                }
                for a in &out.applied {
                    self.on_applied(i, a);
                }
                for (ctx, index) in out.reads {
                    let ctx = u64::from_be_bytes(ctx.try_into().unwrap_or([0; 8]));
                    self.read_waits.push((ctx, i, index));
                }
                self.send(out.messages);
            }
            if !any {
                break;
            }
        }
    }

    /// Runs `f` on replica `i` if it is up. raft-rs panics when it finds its own
    /// invariants broken (a follower asked to commit entries its log lost): that is a
    /// finding, reported, and the replica is taken down.
    fn guarded<T>(&mut self, i: usize, f: impl FnOnce(&mut Replica<MemLog>) -> T) -> Option<T> {
        let r = self.nodes[i].replica.as_mut()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(r))) {
            Ok(v) => Some(v),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.violation(format!("replica {} broke a Raft invariant: {msg}", i + 1));
                self.nodes[i].replica = None;
                self.nodes[i].restart_at = u64::MAX;
                None
            }
        }
    }

    fn inject_faults(&mut self) {
        if !self.faults {
            return;
        }
        let n = self.nodes.len();
        if self.rng.chance(0.002) {
            let i = self.rng.index(n);
            self.crash(i);
        }
        if self.rng.chance(0.0003) {
            // The disk fails the next sync.
            let i = self.rng.index(n);
            self.nodes[i].log.fail_syncs(1);
            self.report.disk_errors += 1;
            self.trace.u64(7).u64(i as u64);
        }
        if self.rng.chance(0.001) {
            // Split into two groups (a minority may be alone).
            for g in self.group.iter_mut() {
                *g = 0;
            }
            let cut = 1 + self.rng.index(n - 1);
            let mut ids: Vec<usize> = (0..n).collect();
            for k in 0..n {
                let j = k + self.rng.index(n - k);
                ids.swap(k, j);
            }
            for &i in &ids[..cut] {
                self.group[i] = 1;
            }
            self.report.partitions += 1;
            self.trace.u64(6).u64(cut as u64);
        }
        if self.rng.chance(0.002) {
            for g in self.group.iter_mut() {
                *g = 0;
            }
        }
    }

    fn restart_due(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none()
                && !self.nodes[i].removed
                && self.now >= self.nodes[i].restart_at
            {
                self.start(i);
            }
        }
    }

    fn step(&mut self) {
        self.now += 1;
        if self.now.is_multiple_of(TICK) {
            for i in 0..self.nodes.len() {
                self.guarded(i, |r| r.tick());
            }
        }
        self.inject_faults();
        self.drive_membership();
        self.restart_due();
        self.deliver_due();
        self.drain_ready();
        self.check_leaders();
        self.clients_act();
        self.drain_ready();
        self.serve_reads();
    }
}

/// Runs one seed.
pub fn run(cfg: RaftRunConfig) -> RaftRunReport {
    let mut w = World::new(cfg);
    while w.now < w.cfg.duration && w.report.violations.is_empty() {
        w.step();
    }
    if w.report.violations.is_empty() {
        w.heal_and_check();
    }
    w.report.trace_hash = w.trace.finish();
    w.report
}
