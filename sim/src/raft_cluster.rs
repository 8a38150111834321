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
use ferrofs_core::kv::{self, Kv, MemKv, WriteSet};
use ferrofs_core::replica::{Command, Digest, Outcome, ReadCheck, RequestId};
use ferrofs_meta::raft::{MemLog, Message, Replica, ReplicaConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
                    id,
                    // Different election timeouts per replica (see ReplicaConfig).
                    election_ticks: 10 + 3 * (id as usize - 1) + rng.below(3) as usize,
                    heartbeat_ticks: 2,
                },
                log: MemLog::new(voters.clone()),
                replica: None,
                restart_at: 0,
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

    /// Starts replica `i` from its durable log, with an empty engine that it fills by
    /// applying the log again.
    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let engine: Arc<dyn Kv> = Arc::new(MemKv::new());
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
            node.log.crash();
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
                    Some(Err(e)) => {
                        let id = i + 1;
                        self.violation(format!("replica {id} failed: {e}"));
                        continue;
                    }
                };
                any |= !out.messages.is_empty() || !out.applied.is_empty();
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

    fn on_applied(&mut self, node: usize, a: &ferrofs_meta::raft::Applied) {
        let digest = match a.id {
            Some(id) => Fnv::default().u64(id.client).u64(id.seq).finish(),
            None => 0,
        };
        match self.applied_at.get(&a.index) {
            Some(&(term, d)) if (term, d) != (a.term, digest) => {
                let id = node + 1;
                self.violation(format!(
                    "replica {id} applied entry {} of term {} with another command than \
                     the term-{term} entry applied elsewhere at that index",
                    a.index, a.term
                ));
            }
            Some(_) => {}
            None => {
                self.applied_at.insert(a.index, (a.term, digest));
                match (a.id, a.outcome, a.repeated) {
                    (Some(id), Outcome::Applied, false) => {
                        if let Some(first) = self.applied_requests.insert(id, a.index) {
                            self.violation(format!(
                                "request {id:?} applied twice, at {first} and {}",
                                a.index
                            ));
                        }
                    }
                    (Some(id), Outcome::Applied, true)
                        if !self.applied_requests.contains_key(&id) =>
                    {
                        self.violation(format!(
                            "request {id:?} answered 'applied' from a record, but never applied"
                        ));
                    }
                    _ => {}
                }
            }
        }
        self.trace.u64(4).u64(node as u64).u64(a.index);
        // The answer reaches a client that sent the request to this replica.
        let node_id = node as u64 + 1;
        for c in self.clients.iter_mut() {
            let Some((cmd, to, _)) = &c.pending else {
                continue;
            };
            if Some(cmd.id) != a.id || *to != node_id {
                continue;
            }
            self.events += 1;
            let op = &mut self.history[c.op];
            op.ret = Some(self.events);
            match a.outcome {
                Outcome::Applied => {
                    c.acked.insert(cmd.id);
                    self.report.acked += 1;
                    op.output = Some(CounterOut::Swapped(true));
                }
                Outcome::Conflict => {
                    self.report.conflicts += 1;
                    op.output = Some(CounterOut::Swapped(false));
                }
                o => {
                    let msg = format!("client {} got {o:?} for its live request", c.id);
                    self.report.violations.push(msg);
                }
            }
            c.pending = None;
            // Think time before the next request.
            c.idle_until = self.now + 20 + self.rng.below(100);
        }
    }

    fn check_leaders(&mut self) {
        let mut found = Vec::new();
        for n in &self.nodes {
            if let Some(r) = &n.replica {
                if r.is_leader() {
                    found.push((r.term(), r.id()));
                }
            }
        }
        for (term, id) in found {
            match self.leaders.get(&term) {
                Some(&other) if other != id => {
                    self.violation(format!("two leaders in term {term}: {other} and {id}"))
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                }
            }
        }
    }

    /// Clients that can act: send a new increment or read, or send again.
    fn clients_act(&mut self) {
        for c in 0..self.clients.len() {
            let now = self.now;
            if let Some(r) = self.clients[c].reading {
                if now >= r.sent + CLIENT_TIMEOUT {
                    // No answer: the read is given up (it returned nothing, so it
                    // constrains nothing) and the client goes on.
                    self.clients[c].reading = None;
                }
                continue;
            }
            if self.clients[c].idle_until > now {
                continue;
            }
            if self.clients[c].pending.is_none() && self.rng.chance(0.3) {
                self.start_read(c);
                continue;
            }
            match self.clients[c].pending.clone() {
                Some((cmd, _, sent)) if now >= sent + CLIENT_TIMEOUT => {
                    // No answer: the same request again, maybe to another replica.
                    self.report.resends += 1;
                    let to = self.pick_leader(c);
                    self.send_request(c, cmd, to);
                }
                Some(_) => {}
                None => {
                    let to = self.pick_leader(c);
                    let Some((cmd, from)) = self.new_increment(c, to) else {
                        self.clients[c].idle_until = now + 50;
                        continue;
                    };
                    self.events += 1;
                    self.clients[c].op = self.history.len();
                    self.history.push(Operation {
                        client: self.clients[c].id,
                        call: self.events,
                        ret: None,
                        input: CounterOp::Cas { from },
                        output: None,
                    });
                    self.send_request(c, cmd, to);
                }
            }
        }
    }

    /// The replica client `c` should talk to: its belief, corrected by that replica's
    /// own belief, else a random one.
    fn pick_leader(&mut self, c: usize) -> u64 {
        let believed = self.clients[c].leader;
        let hint = self.nodes[believed as usize - 1]
            .replica
            .as_ref()
            .map(|r| if r.is_leader() { r.id() } else { r.leader() })
            .unwrap_or(0);
        let to = if hint != 0 {
            hint
        } else {
            1 + self.rng.below(self.nodes.len() as u64)
        };
        self.clients[c].leader = to;
        to
    }

    /// An increment as a client would build it: the counter read from replica `to`
    /// (its applied state), the write of that value plus one.
    fn new_increment(&mut self, c: usize, to: u64) -> Option<(Command, u64)> {
        let r = self.nodes[to as usize - 1].replica.as_ref()?;
        if !r.is_leader() {
            return None;
        }
        let current = kv::read(&**r.engine(), |t| t.get(COUNTER)).ok()?;
        let digest: Option<Digest> = current
            .as_deref()
            .map(ferrofs_core::replica::command::digest_value);
        let n = value_of(current);
        let client = &mut self.clients[c];
        let id = RequestId {
            client: client.id,
            seq: client.next_seq,
        };
        client.next_seq += 1;
        let mut writes = WriteSet::new();
        writes.insert(COUNTER.to_vec(), Some((n + 1).to_be_bytes().to_vec()));
        let cmd = Command {
            id,
            // One request at a time: everything before this one is answered.
            done_below: id.seq,
            reads: vec![ReadCheck::Get {
                key: COUNTER.to_vec(),
                digest,
            }],
            writes,
        };
        Some((cmd, n))
    }

    /// A linearizable read: a read index from the replica the client asks, the value
    /// once that replica has applied up to it.
    fn start_read(&mut self, c: usize) {
        let to = self.pick_leader(c) as usize - 1;
        if self.nodes[to].replica.is_none() {
            self.clients[c].idle_until = self.now + 50;
            return;
        }
        self.events += 1;
        let op = self.history.len();
        self.history.push(Operation {
            client: self.clients[c].id,
            call: self.events,
            ret: None,
            input: CounterOp::Read,
            output: None,
        });
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        self.trace.u64(7).u64(ctx).u64(to as u64);
        if self.cfg.plant == Some(RaftPlant::StaleReads) {
            self.clients[c].reading = Some(PendingRead {
                ctx,
                node: to,
                sent: self.now,
                op,
            });
            self.answer_read(ctx, to);
            return;
        }
        self.guarded(to, |r| r.read_index(ctx.to_be_bytes().to_vec()));
        self.clients[c].reading = Some(PendingRead {
            ctx,
            node: to,
            sent: self.now,
            op,
        });
    }

    /// Replica `node` answers read `ctx` from what it has applied.
    fn answer_read(&mut self, ctx: u64, node: usize) {
        let Some(c) = self
            .clients
            .iter()
            .position(|c| c.reading.is_some_and(|r| r.ctx == ctx && r.node == node))
        else {
            return;
        };
        let Some(r) = self.nodes[node].replica.as_ref() else {
            return;
        };
        let Ok(v) = kv::read(&**r.engine(), |t| t.get(COUNTER)) else {
            return;
        };
        let read = self.clients[c].reading.take().expect("found above");
        self.events += 1;
        let op = &mut self.history[read.op];
        op.ret = Some(self.events);
        op.output = Some(CounterOut::Value(value_of(v)));
        self.report.reads += 1;
        self.clients[c].idle_until = self.now + 20 + self.rng.below(100);
    }

    /// Serves confirmed read indexes that their replica has applied up to.
    fn serve_reads(&mut self) {
        let waits = std::mem::take(&mut self.read_waits);
        for (ctx, node, index) in waits {
            match self.nodes[node].replica.as_ref().map(|r| r.applied()) {
                Some(applied) if applied >= index => self.answer_read(ctx, node),
                Some(_) => self.read_waits.push((ctx, node, index)),
                // Down: the read is lost with it.
                None => {}
            }
        }
    }

    fn send_request(&mut self, c: usize, cmd: Command, to: u64) {
        let now = self.now;
        self.trace.u64(5).u64(cmd.id.client).u64(cmd.id.seq).u64(to);
        let accepted = match self.nodes[to as usize - 1].replica.as_mut() {
            Some(r) => r.propose(&cmd).is_ok(),
            None => false,
        };
        let client = &mut self.clients[c];
        client.pending = Some((cmd, to, now));
        if !accepted {
            // Refused (not the leader, or down): wait, then try again (same request).
            client.pending = client
                .pending
                .take()
                .map(|(cmd, to, _)| (cmd, to, now.saturating_sub(CLIENT_TIMEOUT) + 100));
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
            if self.nodes[i].replica.is_none() && self.now >= self.nodes[i].restart_at {
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
        self.restart_due();
        self.deliver_due();
        self.drain_ready();
        self.check_leaders();
        self.clients_act();
        self.drain_ready();
        self.serve_reads();
    }

    fn heal_and_check(&mut self) {
        self.faults = false;
        for g in self.group.iter_mut() {
            *g = 0;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none() {
                self.start(i);
            }
        }
        // Let every client finish, then let the replicas catch up.
        let deadline = self.now + 20_000;
        while self.now < deadline
            && self
                .clients
                .iter()
                .any(|c| c.pending.is_some() || c.reading.is_some())
        {
            self.step();
        }
        for c in self.clients.iter_mut() {
            // No new requests from here on.
            c.idle_until = u64::MAX;
        }
        for _ in 0..3_000 {
            self.step();
        }
        let stuck: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| c.pending.is_some())
            .map(|c| c.id)
            .collect();
        if !stuck.is_empty() {
            self.violation(format!(
                "clients {stuck:?} got no answer 20,000 time units after the heal"
            ));
        }
        let states: Vec<Vec<(Vec<u8>, Vec<u8>)>> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| engine_state(&**r.engine()))
            .collect();
        if states.windows(2).any(|w| w[0] != w[1]) {
            self.violation("replicas did not converge to one state after the heal".into());
        }
        let Some(state) = states.first() else {
            return;
        };
        let counter = state
            .iter()
            .find(|(k, _)| k == COUNTER)
            .map(|(_, v)| value_of(Some(v.clone())))
            .unwrap_or(0);
        let applied = self.applied_requests.len() as u64;
        if counter != applied {
            self.violation(format!(
                "the counter is {counter} but {applied} increments were applied"
            ));
        }
        let acked: Vec<RequestId> = self
            .clients
            .iter()
            .flat_map(|c| c.acked.iter().copied())
            .collect();
        let lost: Vec<&RequestId> = acked
            .iter()
            .filter(|id| !self.applied_requests.contains_key(id))
            .collect();
        if !lost.is_empty() {
            let msg = format!(
                "{} acknowledged increments are not applied (lost), e.g. {:?}",
                lost.len(),
                lost[0]
            );
            self.violation(msg);
        }
        self.report.terms = self.leaders.len() as u64;
        // Reads that never returned constrain nothing: leave them out of the search.
        let history: Vec<_> = self
            .history
            .iter()
            .filter(|o| o.ret.is_some() || !matches!(o.input, CounterOp::Read))
            .cloned()
            .collect();
        if let Err(e) = linearizable::check(Counter(0), &history) {
            self.violation(e);
        }
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
