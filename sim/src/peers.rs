//! Cache-group peers in the simulation: [`SimPeers`], the simulator's `Transport` for
//! the client's real `ferrofs::group::Group`, and [`PeerNet`], the network between the
//! members (inboxes, replies in flight, partitions, faults, counters).
//!
//! A member's `Vfs` may only run on its own thread (its store and cache-disk calls
//! yield as that client), so a peer request is an asynchronous message: the caller puts
//! it into the target's inbox and parks in virtual time until the deadline (the
//! group's timeout); the target serves its inbox between its own workload steps, with
//! no locks held, through its own `Vfs::block_service()`, and posts the reply, which
//! wakes the caller at the reply's arrival time. A target that is crashed, not mounted,
//! not serving yet or partitioned never answers: the caller times out (or, for a target
//! whose process is gone, gets a refused connection at once). A crash drops the
//! crashed member's inbox.
//!
//! Replies travel through the real codec (`Frame::Response` encoded, then decoded by
//! the caller): with seeded rates a byte of the frame is flipped (corrupt) or the frame
//! is cut short (truncated). A frame that no longer decodes is a protocol error; a
//! block that still decodes must be caught by the group's checksum check. Partitions
//! cut a member off for a stretch of virtual time; slow replies arrive late.
//!
//! Every call's virtual latency is recorded; a call that takes longer than its timeout
//! (plus [`LATENCY_SLACK_NS`]) is a violation: the fallback to object storage must
//! come within the deadline.

use crate::faults::Service;
use crate::plant::Plant;
use crate::rng::Rng;
use crate::world::{State, World};
use ferrofs::group::membership::{self, Me};
use ferrofs::group::{Group, PeerError, Transport};
use ferrofs::vfs::Vfs;
use ferrofs_core::cache::peer_wire::{Frame, Op, Reply};
use ferrofs_core::chunk::BlockKey;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// The group every simulated member is in.
pub const GROUP: &str = "sim";
/// The members' `--remote-timeout` (the production default).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// How much longer than its timeout a peer call may take.
pub const LATENCY_SLACK_NS: u64 = 1_000_000;
/// Median one-way latency of a message between members (a LAN).
const NET_MEDIAN_NS: u64 = 150_000;
/// How long a refused connection takes to be refused.
const REFUSE_NS: u64 = 300_000;

/// Member id of client `me`.
pub fn member_id(me: usize) -> String {
    format!("c{me}")
}

/// Peer address of client `me`.
pub fn member_addr(me: usize) -> String {
    format!("sim:{me}")
}

fn parse_addr(addr: &str) -> Option<usize> {
    addr.strip_prefix("sim:")?.parse().ok()
}

/// Per-run probabilities of the peer faults.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerRates {
    /// Per reply: one byte of the frame is flipped.
    pub corrupt: f64,
    /// Per reply: the frame is cut short (the connection broke mid-frame).
    pub truncate: f64,
    /// Per reply: it arrives late (a network or scheduling stall).
    pub slow: f64,
    /// Per request: the caller or the target is partitioned off for a while.
    pub partition: f64,
}

impl PeerRates {
    /// Rates for a run (all zero when `on` is false), scaled like the other classes.
    pub fn draw(on: bool, rng: &mut Rng) -> PeerRates {
        const SCALE: [f64; 5] = [0.25, 1.0, 1.0, 2.0, 4.0];
        if !on {
            return PeerRates::default();
        }
        let m = SCALE[rng.index(SCALE.len())];
        PeerRates {
            corrupt: 0.02 * m,
            truncate: 0.01 * m,
            slow: 0.01 * m,
            partition: 0.004 * m,
        }
    }
}

/// The transport's and the members' counters, all incarnations together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerTotals {
    /// Calls through the transport.
    pub calls: u64,
    /// Of those: answered (a reply that decoded), timed out, refused, protocol errors.
    pub answered: u64,
    pub timeouts: u64,
    pub refused: u64,
    pub protocol: u64,
    /// Replies corrupted, truncated, delayed; requests or replies lost to partitions.
    pub corrupted: u64,
    pub truncated: u64,
    pub slowed: u64,
    pub partitions: u64,
    pub dropped: u64,
    /// Replies that came after their caller had given up.
    pub late: u64,
    /// Requests served (replies posted).
    pub served: u64,
    /// Inboxes dropped by crashes (requests in them).
    pub lost_in_crash: u64,
    /// Longest call, in virtual ns; longest answered call.
    pub max_latency_ns: u64,
    pub max_answered_ns: u64,
    /// Sum of call latencies (for the mean).
    pub latency_ns: u64,
    /// From the members' `Group` counters: blocks peers gave (verified), failed calls,
    /// timeouts, corrupt answers caught, calls skipped by an open breaker, requests
    /// served, blocks pulled from a previous owner.
    pub hits: u64,
    pub failures: u64,
    pub group_timeouts: u64,
    pub corrupt: u64,
    pub skipped: u64,
    pub group_served: u64,
    pub pulled: u64,
    /// Membership refreshes, joins (mounts into the group) and clean leaves.
    pub refreshes: u64,
    pub joins: u64,
    pub leaves: u64,
    /// Warm-up requests made by the workload, and those that failed.
    pub warms: u64,
    pub warm_errors: u64,
}

impl PeerTotals {
    pub fn merge(&mut self, o: &PeerTotals) {
        let PeerTotals {
            calls,
            answered,
            timeouts,
            refused,
            protocol,
            corrupted,
            truncated,
            slowed,
            partitions,
            dropped,
            late,
            served,
            lost_in_crash,
            max_latency_ns,
            max_answered_ns,
            latency_ns,
            hits,
            failures,
            group_timeouts,
            corrupt,
            skipped,
            group_served,
            pulled,
            refreshes,
            joins,
            leaves,
            warms,
            warm_errors,
        } = *o;
        self.calls += calls;
        self.answered += answered;
        self.timeouts += timeouts;
        self.refused += refused;
        self.protocol += protocol;
        self.corrupted += corrupted;
        self.truncated += truncated;
        self.slowed += slowed;
        self.partitions += partitions;
        self.dropped += dropped;
        self.late += late;
        self.served += served;
        self.lost_in_crash += lost_in_crash;
        self.max_latency_ns = self.max_latency_ns.max(max_latency_ns);
        self.max_answered_ns = self.max_answered_ns.max(max_answered_ns);
        self.latency_ns += latency_ns;
        self.hits += hits;
        self.failures += failures;
        self.group_timeouts += group_timeouts;
        self.corrupt += corrupt;
        self.skipped += skipped;
        self.group_served += group_served;
        self.pulled += pulled;
        self.refreshes += refreshes;
        self.joins += joins;
        self.leaves += leaves;
        self.warms += warms;
        self.warm_errors += warm_errors;
    }

    /// Adds a member's `Group` counters (when its incarnation ends).
    pub fn add_group(&mut self, g: &ferrofs::group::GroupCounts) {
        self.hits += g.hits;
        self.failures += g.failures;
        self.group_timeouts += g.timeouts;
        self.corrupt += g.corrupt;
        self.skipped += g.skipped;
        self.group_served += g.served;
        self.pulled += g.pulled;
    }
}

/// A request waiting in a member's inbox.
#[derive(Clone, Debug)]
pub struct Request {
    pub from: usize,
    pub id: u64,
    pub op: Op,
    pub local_only: bool,
    pub key: BlockKey,
    /// When the caller gives up.
    pub deadline: u64,
}

/// What a sent request became.
enum Sent {
    /// In the target's inbox.
    Queued(u64),
    /// Lost (partition, or a target that is not there): the caller will time out.
    Lost(u64),
    /// The target's process is gone: the connection is refused at once.
    Refused,
}

/// The network between the members of one run.
#[derive(Debug, Default)]
pub struct PeerNet {
    /// Whether this run's clients are cache-group members.
    pub enabled: bool,
    pub rates: PeerRates,
    rng: Option<Rng>,
    /// Per client: mounted and serving its inbox.
    serving: Vec<bool>,
    inbox: Vec<VecDeque<Request>>,
    /// Per client: the request it is waiting for, and its reply when it came (the
    /// frame's bytes as received, and the arrival time).
    waiting: Vec<Option<u64>>,
    reply: Vec<Option<(Vec<u8>, u64)>>,
    /// Per client: cut off from the others until this virtual time.
    partitioned_until: Vec<u64>,
    next_id: u64,
    pub totals: PeerTotals,
}

impl PeerNet {
    pub fn new(enabled: bool, slots: usize, rates: PeerRates, rng: Rng) -> PeerNet {
        PeerNet {
            enabled,
            rates,
            rng: Some(rng),
            serving: vec![false; slots],
            inbox: vec![VecDeque::new(); slots],
            waiting: vec![None; slots],
            reply: vec![None; slots],
            partitioned_until: vec![0; slots],
            next_id: 1,
            totals: PeerTotals::default(),
        }
    }

    pub fn rng(&mut self) -> &mut Rng {
        self.rng.get_or_insert_with(|| Rng::new(0x9ee5))
    }

    fn partitioned(&self, c: usize, now: u64) -> bool {
        self.partitioned_until.get(c).is_some_and(|&t| now < t)
    }

    /// Client `me` starts serving its peers (mounted, in the group).
    pub fn join(&mut self, me: usize) {
        if let Some(s) = self.serving.get_mut(me) {
            *s = true;
        }
    }

    /// Client `me` stops serving: a clean unmount, or a crash (`crashed`: its inbox
    /// and any reply on its way to it are gone with the process).
    pub fn leave(&mut self, me: usize, crashed: bool) {
        if me >= self.serving.len() {
            return;
        }
        self.serving[me] = false;
        let n = self.inbox[me].len() as u64;
        self.inbox[me].clear();
        if crashed {
            self.totals.lost_in_crash += n;
        }
        self.waiting[me] = None;
        self.reply[me] = None;
    }

    /// Every member is gone (a system crash).
    pub fn all_down(&mut self) {
        for c in 0..self.serving.len() {
            self.leave(c, true);
        }
    }

    /// The next request in `me`'s inbox.
    pub fn next_request(&mut self, me: usize) -> Option<Request> {
        if !self.serving.get(me).copied().unwrap_or(false) {
            return None;
        }
        self.inbox[me].pop_front()
    }

    /// Sends a request of `from` to `to` at `now`.
    fn send(&mut self, from: usize, to: usize, req: Request, now: u64) -> Sent {
        let id = req.id;
        self.totals.calls += 1;
        let p = self.rates.partition;
        if self.rng().chance(p) {
            let who = if self.rng().chance(0.5) { from } else { to };
            let stretch = self.rng().range(500_000_000, 5_000_000_000);
            if let Some(t) = self.partitioned_until.get_mut(who) {
                *t = (*t).max(now + stretch);
            }
            self.totals.partitions += 1;
        }
        if to >= self.serving.len() {
            self.totals.refused += 1;
            return Sent::Refused;
        }
        if self.partitioned(from, now) || self.partitioned(to, now) {
            self.totals.dropped += 1;
            return Sent::Lost(id);
        }
        if !self.serving[to] {
            // A process that is gone: its host refuses the connection, or (a host that
            // is down too) nothing answers.
            if self.rng().chance(0.5) {
                self.totals.refused += 1;
                return Sent::Refused;
            }
            self.totals.dropped += 1;
            return Sent::Lost(id);
        }
        self.inbox[to].push_back(req);
        Sent::Queued(id)
    }

    /// `me` posts its reply to `req` at `now`: through the codec and the faults, to the
    /// caller if it still waits. Returns the arrival time, if the reply is on its way.
    pub fn respond(&mut self, me: usize, req: &Request, reply: Reply, now: u64) -> Option<u64> {
        self.totals.served += 1;
        let mut bytes = Frame::Response { id: req.id, reply }.encode();
        if self.partitioned(me, now) || self.partitioned(req.from, now) {
            self.totals.dropped += 1;
            return None;
        }
        let rates = self.rates;
        let mut arrival = now + self.rng().latency(NET_MEDIAN_NS, 0.0);
        if self.rng().chance(rates.corrupt) {
            let i = self.rng().index(bytes.len());
            let bit = self.rng().below(8) as u8;
            bytes[i] ^= 1 << bit;
            self.totals.corrupted += 1;
        } else if self.rng().chance(rates.truncate) {
            let keep = self.rng().index(bytes.len());
            bytes.truncate(keep);
            self.totals.truncated += 1;
        }
        if self.rng().chance(rates.slow) {
            arrival += self.rng().range(100_000_000, 3_000_000_000);
            self.totals.slowed += 1;
        }
        if self.waiting.get(req.from).copied().flatten() != Some(req.id) || arrival > req.deadline {
            self.totals.late += 1;
            return None;
        }
        self.reply[req.from] = Some((bytes, arrival));
        Some(arrival)
    }
}

/// Client `me`'s transport to its peers.
pub struct SimPeers {
    world: Arc<World>,
    me: usize,
}

impl SimPeers {
    pub fn new(world: &Arc<World>, me: usize) -> SimPeers {
        SimPeers {
            world: world.clone(),
            me,
        }
    }
}

/// Clears the caller's wait when its call ends, however it ends (a crash unwinds
/// through it).
struct Waiting<'a> {
    world: &'a World,
    me: usize,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let me = self.me;
        self.world.with(|st| {
            st.peers.waiting[me] = None;
            st.peers.reply[me] = None;
        });
    }
}

fn op_code(op: Op) -> u64 {
    match op {
        Op::Get => 1,
        Op::Warm => 2,
        Op::Check => 3,
        Op::Evict => 4,
    }
}

fn key_bytes(key: &BlockKey) -> Vec<u8> {
    let mut k = key.slice.0.to_be_bytes().to_vec();
    k.extend_from_slice(&key.index.to_be_bytes());
    k
}

impl Transport for SimPeers {
    fn call(
        &self,
        addr: &str,
        op: Op,
        local_only: bool,
        key: &BlockKey,
        timeout: Duration,
    ) -> Result<Reply, PeerError> {
        let me = self.me;
        let timeout_ns = timeout.as_nanos() as u64;
        let Some(to) = parse_addr(addr) else {
            return Err(PeerError::Unreachable(format!("bad address {addr:?}")));
        };
        let (start, sent) = self.world.with(|st| {
            let now = st.sched.now;
            let id = st.peers.next_id;
            st.peers.next_id += 1;
            let req = Request {
                from: me,
                id,
                op,
                local_only,
                key: *key,
                deadline: now + timeout_ns,
            };
            let sent = st.peers.send(me, to, req, now);
            if let Sent::Queued(id) | Sent::Lost(id) = sent {
                st.peers.waiting[me] = Some(id);
            }
            let code = to as u64 | op_code(op) << 8;
            st.trace
                .record(now, me, "peer.call", &key_bytes(key), code, || {
                    format!("{op:?} to c{to}")
                });
            (now, sent)
        });
        let outcome = match sent {
            Sent::Refused => {
                self.world.wait_peer(me, REFUSE_NS);
                Err(PeerError::Unreachable("connection refused".into()))
            }
            Sent::Queued(id) | Sent::Lost(id) => {
                let _waiting = Waiting {
                    world: &self.world,
                    me,
                };
                self.world.wait_peer(me, timeout_ns);
                let got = self.world.with(|st| {
                    let now = st.sched.now;
                    match st.peers.reply[me].take() {
                        Some((bytes, at)) if at <= now => Some(bytes),
                        _ => None,
                    }
                });
                match got {
                    None => Err(PeerError::Timeout),
                    Some(bytes) => decode(&bytes, id),
                }
            }
        };
        let elapsed = self.world.with(|st| {
            let now = st.sched.now;
            let elapsed = now - start;
            let t = &mut st.peers.totals;
            t.max_latency_ns = t.max_latency_ns.max(elapsed);
            t.latency_ns += elapsed;
            let code = match &outcome {
                Ok(_) => {
                    t.answered += 1;
                    t.max_answered_ns = t.max_answered_ns.max(elapsed);
                    0
                }
                Err(PeerError::Timeout) => {
                    t.timeouts += 1;
                    1
                }
                Err(PeerError::Unreachable(_)) => 2,
                Err(PeerError::Protocol(_)) => {
                    t.protocol += 1;
                    3
                }
            };
            st.trace
                .record(now, me, "peer.done", &key_bytes(key), code, || {
                    format!(
                        "{:?} after {:.3}ms",
                        outcome.as_ref().err(),
                        elapsed as f64 / 1e6
                    )
                });
            elapsed
        });
        if elapsed > timeout_ns + LATENCY_SLACK_NS {
            self.world.fail(
                me,
                format!(
                    "peer call to c{to} took {:.3}s, more than its timeout of {:.3}s",
                    elapsed as f64 / 1e9,
                    timeout_ns as f64 / 1e9
                ),
            );
        }
        outcome
    }
}

/// The reply to request `id` in a received frame.
fn decode(bytes: &[u8], id: u64) -> Result<Reply, PeerError> {
    match Frame::decode(bytes) {
        Ok(Some((Frame::Response { id: got, reply }, _))) if got == id => Ok(reply),
        Ok(Some((Frame::Response { id: got, .. }, _))) => Err(PeerError::Protocol(format!(
            "a response to request {got}, waiting for {id}"
        ))),
        Ok(Some((f, _))) => Err(PeerError::Protocol(format!("unexpected frame {f:?}"))),
        Ok(None) => Err(PeerError::Unreachable(
            "connection closed in the middle of a frame".into(),
        )),
        Err(e) => Err(PeerError::Protocol(e.to_string())),
    }
}

impl World {
    /// Parks `me` for up to `ns` waiting for a peer's reply (a yield point without a
    /// pause fault: the deadline is the caller's own timer); a reply wakes it sooner.
    pub fn wait_peer(&self, me: usize, ns: u64) {
        self.call(me, Service::PeerWait(ns), "peer.wait", |_, _| {
            crate::world::Step::new((), Vec::new(), 0, "")
        })
    }

    /// Client `me` serves the requests in its inbox (between its workload steps, with
    /// no locks held) from its own block service.
    pub fn serve_peers(&self, me: usize, service: &dyn ferrofs::group::BlockService) {
        // A bounded number per turn, so a member keeps doing its own work.
        for _ in 0..8 {
            let Some(req) = self.with(|st| st.peers.next_request(me)) else {
                return;
            };
            let reply = service.serve(req.op, req.local_only, &req.key);
            self.with(|st| post(st, me, &req, reply));
        }
    }
}

fn post(st: &mut State, me: usize, req: &Request, reply: Reply) {
    let now = st.sched.now;
    let code = match &reply {
        Reply::Block(..) => 0,
        Reply::Missing => 1,
        Reply::Warmed { .. } => 2,
        Reply::Failed(_) => 3,
    };
    // A member that crashed (or left) while serving does not answer.
    if !st.peers.serving.get(me).copied().unwrap_or(false) {
        return;
    }
    let arrival = st.peers.respond(me, req, reply, now);
    st.trace.record(
        now,
        me,
        "peer.serve",
        &key_bytes(&req.key),
        code | (req.from as u64) << 8 | u64::from(arrival.is_some()) << 16,
        String::new,
    );
    if let Some(at) = arrival {
        // Wake the caller when its reply arrives (it is parked until its deadline).
        let s = &mut st.sched.slots[req.from];
        if s.status == crate::scheduler::Status::Parked && !s.down {
            s.wake_at = s.wake_at.min(at.max(now));
        }
    }
}

/// How often a member renews its registration and rereads the group's (in virtual
/// time; production's `membership::REFRESH`).
pub const REFRESH_NS: u64 = ferrofs::group::membership::REFRESH.as_nanos() as u64;

/// One incarnation's membership of the cache group: its `Group` (joined to its `Vfs`),
/// its registration, and when it last refreshed. A `--no-sharing` member (client 0,
/// now and then) owns nothing and always asks the owners. Its `Group` counters are added to the
/// run's when the incarnation ends, cleanly or in a crash.
pub struct Member {
    pub group: Arc<Group>,
    me: usize,
    reg: Option<Me>,
    last_refresh: u64,
    world: Arc<World>,
}

impl Member {
    /// Joins client `me`'s `vfs` to the group: registers, reads the members, serves.
    pub fn join(world: &Arc<World>, me: usize, vfs: &Vfs) -> Member {
        // Client 0 is `--no-sharing` in about half its incarnations; every sharing
        // incarnation registers a weight (its cache size) of 1 to 3, so a restart can
        // move blocks between members that stay.
        let (sharing, weight) = world.with(|st| {
            let r = st.peers.rng();
            (me != 0 || r.chance(0.5), r.range(1, 4) as u32)
        });
        let reg = sharing.then(|| Me {
            id: member_id(me),
            addr: member_addr(me),
            weight,
        });
        let group = Arc::new(Group::new(
            GROUP,
            reg.as_ref().map(|r| r.id.as_str()),
            Arc::new(SimPeers::new(world, me)),
            PEER_TIMEOUT,
            world.clock(),
        ));
        if world.plant() == Some(Plant::PeerSkipVerify) {
            group.skip_verification();
        }
        if vfs.join_group(group.clone()).is_err() {
            world.fail(me, "a fresh Vfs was in a cache group already".into());
        }
        world.with(|st| {
            st.peers.join(me);
            st.peers.totals.joins += 1;
        });
        let mut m = Member {
            group,
            me,
            reg,
            last_refresh: 0,
            world: world.clone(),
        };
        m.refresh(vfs);
        m
    }

    fn refresh(&mut self, vfs: &Vfs) {
        self.last_refresh = self.world.with(|st| st.sched.now);
        // An injected metadata error leaves the view as it was; the next refresh retries.
        let r = membership::refresh(vfs.meta(), &self.group, self.reg.as_ref());
        let me = self.me;
        self.world.with(|st| {
            st.peers.totals.refreshes += 1;
            let now = st.sched.now;
            let (code, what) = match &r {
                Ok(c) => (
                    (c.joined.len() as u64) << 8 | c.left.len() as u64,
                    format!("joined {:?} left {:?}", c.joined, c.left),
                ),
                Err(e) => (1 << 32, format!("{e:?}")),
            };
            st.trace
                .record(now, me, "group.refresh", &[], code, move || what);
        });
    }

    /// Between two workload steps: answer the peers' requests, refresh when due.
    pub fn between_steps(&mut self, world: &World, vfs: &Vfs) {
        world.serve_peers(self.me, &*vfs.block_service());
        let now = world.with(|st| st.sched.now);
        if now >= self.last_refresh + REFRESH_NS {
            self.refresh(vfs);
        }
    }

    /// A clean unmount: stop serving (what is in the inbox is dropped; its callers time
    /// out) and unregister.
    pub fn leave(self, world: &World, vfs: &Vfs) {
        let me = self.me;
        world.with(|st| {
            st.peers.leave(me, false);
            st.peers.totals.leaves += 1;
        });
        if let Some(r) = &self.reg {
            // A failed unregister leaves the registration to expire (TTL).
            let _ = vfs.meta().unregister_member(GROUP, &r.id);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let g = self.group.stats.snapshot();
        self.world.with(|st| st.peers.totals.add_group(&g));
    }
}
