//! One replica: a raft-rs `RawNode` over a durable log, applying committed commands to
//! its metadata engine.
//!
//! The order of one [`Replica::handle_ready`] is raft-rs's contract: messages a leader
//! may send at once go out first; committed entries are applied; new entries and the
//! hard state are written **and synced** to the log; only then go the messages that
//! promise them (votes, append acknowledgements). A replica therefore never votes or
//! acknowledges what a crash could take back. [`Replica::set_skip_sync`] breaks exactly
//! that rule, so that the simulator can show it would notice.

use ferrofs_core::replica::{
    applied_index, apply_entry, apply_membership, mark_applied, membership, snapshot, Command,
    Membership, Outcome, RequestId,
};
use ferrofs_core::{kv::Kv, Errno};
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where a replica keeps its Raft log, hard state, configuration and the snapshot
/// that stands for the entries it compacted.
pub trait DurableLog: raft::Storage {
    /// Appends `entries`, replacing any from the first one's index on.
    fn append(&self, entries: &[Entry]) -> Result<(), String>;
    fn set_hard_state(&self, hs: &HardState);
    fn set_commit(&self, commit: u64);
    /// The configuration as of the last applied entry (what `initial_state` returns).
    fn set_conf(&self, cs: &ConfState);
    /// The configuration the log was created with (the first voters; none for a
    /// replica that joins a running cluster).
    fn first_conf(&self) -> ConfState;
    /// Keeps `snap` (the engine as of its index) and drops the entries up to
    /// `drop_to` (at most the snapshot's index; the rest stay for slow followers).
    fn compact(&self, snap: &Snapshot, drop_to: u64) -> Result<(), String>;
    /// A leader's snapshot: kept, every entry dropped, the log continuing after it.
    fn install(&self, snap: &Snapshot) -> Result<(), String>;
    /// The kept snapshot (empty: none). A compaction may keep only its metadata (where
    /// the log was cut); its data is made when a follower needs it.
    fn kept_snapshot(&self) -> Snapshot;
    /// Whether raft asked for a snapshot the log could not give since the last call
    /// (none kept with data, or too old): the replica then makes one.
    fn take_snapshot_wanted(&self) -> bool;
    /// Makes every change so far durable.
    fn sync(&self) -> Result<(), String>;
}

/// The raft configuration of a membership.
pub fn conf_state(m: &Membership) -> ConfState {
    ConfState {
        voters: m.voters.clone(),
        learners: m.learners.clone(),
        ..ConfState::default()
    }
}

/// The membership of a raft configuration, in a deterministic order (raft-rs lists
/// ids in hash order, which differs between replicas).
fn membership_of(cs: &ConfState, addrs: BTreeMap<u64, String>) -> Membership {
    let (mut voters, mut learners) = (cs.voters.clone(), cs.learners.clone());
    voters.sort_unstable();
    learners.sort_unstable();
    Membership {
        voters,
        learners,
        addrs,
    }
}

/// The checks every [`DurableLog`] makes of an `entries(low, high)` request against a
/// log compacted up to `trunc` and ending at `last`.
pub fn check_range(low: u64, high: u64, trunc: u64, last: u64) -> raft::Result<()> {
    if low <= trunc {
        return Err(raft::Error::Store(raft::StorageError::Compacted));
    }
    if high > last + 1 || low > high {
        return Err(raft::Error::Store(raft::StorageError::Unavailable));
    }
    Ok(())
}

/// A replica's settings.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub id: u64,
    /// Ticks without a leader before this replica campaigns. Give replicas different
    /// values: raft-rs draws its randomized timeout from a thread RNG, so here it is
    /// fixed per replica (min = max - 1), which keeps runs deterministic.
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Take a snapshot and compact the log after this many applied entries (0: never).
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot, so that a follower a little behind catches up
    /// from the log rather than by snapshot.
    pub keep_entries: u64,
}

impl ReplicaConfig {
    /// Defaults for a replica `id`: distinct election timeouts (see `election_ticks`),
    /// a snapshot every 10,000 entries, 1,000 kept behind it.
    pub fn new(id: u64, election_ticks: usize) -> Self {
        ReplicaConfig {
            id,
            election_ticks,
            heartbeat_ticks: 2,
            snapshot_every: 10_000,
            keep_entries: 1_000,
        }
    }
}

/// Why a replica step failed.
#[derive(Debug)]
pub enum ReplicaError {
    /// Only the leader takes proposals; this is who it is believed to be (0: unknown).
    NotLeader {
        leader: u64,
    },
    Raft(raft::Error),
    Log(String),
    Engine(Errno),
}

impl fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaError::NotLeader { leader: 0 } => write!(f, "no leader is known"),
            ReplicaError::NotLeader { leader } => write!(f, "not the leader (replica {leader} is)"),
            ReplicaError::Raft(e) => write!(f, "raft: {e}"),
            ReplicaError::Log(e) => write!(f, "raft log: {e}"),
            ReplicaError::Engine(e) => write!(f, "metadata engine: {e}"),
        }
    }
}

impl std::error::Error for ReplicaError {}

impl From<raft::Error> for ReplicaError {
    fn from(e: raft::Error) -> Self {
        ReplicaError::Raft(e)
    }
}

impl From<Errno> for ReplicaError {
    fn from(e: Errno) -> Self {
        ReplicaError::Engine(e)
    }
}

/// A committed log entry, applied.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    /// The command's request (`None`: an entry with no command, or one that does not
    /// decode, which every replica skips alike).
    pub id: Option<RequestId>,
    pub outcome: Outcome,
    /// A request applied before (proposed twice): its first answer again, no writes.
    pub repeated: bool,
    /// The keys it wrote (for the change feed; empty unless newly applied).
    pub keys: Vec<Vec<u8>>,
}

/// What the shell has to do after [`Replica::handle_ready`].
#[derive(Default, Debug)]
pub struct Output {
    /// To send to their `to` replicas (in any order; they may be lost).
    pub messages: Vec<Message>,
    /// Entries applied, in log order: answers for the clients waiting on them.
    pub applied: Vec<Applied>,
    /// Read-index requests confirmed: `(context, index)`; the read may be served once
    /// [`Replica::applied`] reaches `index`.
    pub reads: Vec<(Vec<u8>, u64)>,
    /// The membership changed (a change applied, or a snapshot installed): the new one.
    pub membership: Option<Membership>,
    /// A snapshot from the leader replaced this replica's state, up to this index.
    pub installed: Option<u64>,
}

/// A membership change to propose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new replica that receives the log but does not vote (yet).
    AddLearner {
        id: u64,
        addr: String,
    },
    /// A learner (or a new replica) becomes a voter.
    Promote {
        id: u64,
        addr: String,
    },
    Remove {
        id: u64,
    },
}

/// One Raft replica and its engine.
pub struct Replica<L: DurableLog + Clone> {
    raw: RawNode<L>,
    log: L,
    engine: Arc<dyn Kv>,
    applied: u64,
    applied_term: u64,
    cfg: ReplicaConfig,
    /// The membership as applied (the first voters, with no addresses, until a change).
    members: Membership,
    /// Take a snapshot at the next chance (the membership changed: raft-rs refuses a
    /// snapshot whose configuration does not name the replica it is sent to).
    snapshot_due: bool,
    skip_sync: bool,
}

impl<L: DurableLog + Clone> Replica<L> {
    /// Starts (or restarts) a replica over `log` and `engine`; it resumes applying after
    /// the last entry `engine` holds.
    pub fn new(cfg: &ReplicaConfig, log: L, engine: Arc<dyn Kv>) -> Result<Self, ReplicaError> {
        let mut applied = applied_index(&*engine)?;
        // A snapshot the log kept but the engine does not include yet (a crash right
        // after a snapshot was installed, or an engine that starts empty): restore it.
        let kept = log.kept_snapshot();
        if kept.get_metadata().index > applied {
            if kept.data.is_empty() {
                return Err(ReplicaError::Log(format!(
                    "the metadata engine applied entry {applied}, but the raft log was \
                     compacted up to {}: the engine is not this log's (start this replica \
                     with an empty data dir and --join to rebuild it from the others)",
                    kept.get_metadata().index
                )));
            }
            applied = snapshot::restore(&*engine, &kept.data)
                .map_err(|e| ReplicaError::Log(format!("kept snapshot: {e}")))?;
        }
        // The configuration as of the engine's applied index: its membership record,
        // or, before any change, the first one. The log's copy (written after the
        // engine's, and ahead of an engine rebuilt from an older state) follows it;
        // the entries replayed after the applied index bring it up to date.
        let members = match membership(&*engine)? {
            Some(m) => m,
            None => membership_of(&log.first_conf(), BTreeMap::new()),
        };
        log.set_conf(&conf_state(&members));
        // The engine only ever applies committed entries, so what it applied was
        // committed even if the recorded commit index is older (written lazily): raise
        // it, or raft-rs would refuse an applied index past its commit index.
        let state = raft::Storage::initial_state(&log)?;
        let last = raft::Storage::last_index(&log)?;
        if applied > last {
            return Err(ReplicaError::Log(format!(
                "the metadata engine applied entry {applied} but the raft log ends at {last}: \
                 the log and the engine are not from the same replica"
            )));
        }
        if state.hard_state.commit < applied {
            log.set_commit(applied);
            log.sync().map_err(ReplicaError::Log)?;
        }
        let applied_term = if applied == 0 {
            0
        } else {
            raft::Storage::term(&log, applied)?
        };
        let c = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            min_election_tick: cfg.election_ticks,
            max_election_tick: cfg.election_ticks + 1,
            applied,
            // A replica cut off cannot depose a healthy leader when it returns, and a
            // leader that lost its quorum steps down.
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..raft::Config::default()
        };
        c.validate()?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&c, log.clone(), &logger)?;
        Ok(Replica {
            raw,
            log,
            engine,
            applied,
            applied_term,
            cfg: cfg.clone(),
            members,
            snapshot_due: false,
            skip_sync: false,
        })
    }

    /// Plants the bug "acknowledge before the log is durable" (simulator self-test).
    pub fn set_skip_sync(&mut self, skip: bool) {
        self.skip_sync = skip;
    }

    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Who this replica believes leads (0: nobody known).
    pub fn leader(&self) -> u64 {
        self.raw.raft.leader_id
    }

    /// The last log index applied to the engine.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The last index this replica knows committed.
    pub fn committed(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn engine(&self) -> &Arc<dyn Kv> {
        &self.engine
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    /// One tick of logical time (election and heartbeat timeouts count ticks).
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Takes a message from another replica.
    pub fn step(&mut self, m: Message) -> Result<(), ReplicaError> {
        // A joining replica (no configuration, nothing in its log) takes the state
        // from a snapshot, never entries from the log's start: it would apply their
        // membership changes to an empty configuration. Leaders compact their logs at
        // every membership change, so they send it one.
        if m.get_msg_type() == MessageType::MsgAppend && m.index == 0 && self.is_fresh_joiner() {
            return Ok(());
        }
        Ok(self.raw.step(m)?)
    }

    fn is_fresh_joiner(&self) -> bool {
        self.applied == 0
            && raft::Storage::last_index(&self.log).unwrap_or(0) == 0
            && self.log.first_conf().voters.is_empty()
            && self.log.kept_snapshot().get_metadata().index == 0
    }

    /// Proposes a command; its outcome comes back in [`Output::applied`] once committed
    /// (or never, if leadership is lost first: the client then sends it again, to the
    /// new leader, with the same request id).
    pub fn propose(&mut self, cmd: &Command) -> Result<(), ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeader {
                leader: self.leader(),
            });
        }
        Ok(self.raw.propose(Vec::new(), cmd.encode())?)
    }

    /// Proposes a membership change. `book` is every member's address as the shell
    /// knows it (the first members' come from its configuration); the change carries
    /// the whole address book, so that every replica records the same one. raft-rs
    /// takes one change at a time: a second one before the first is applied is
    /// refused (the caller tries again).
    /// Returns the proposed entry's index and term: the change is applied if the
    /// entry applied at that index has that term.
    pub fn propose_change(
        &mut self,
        change: &Change,
        book: &BTreeMap<u64, String>,
    ) -> Result<(u64, u64), ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeader {
                leader: self.leader(),
            });
        }
        let mut addrs = book.clone();
        let (change_type, node_id) = match change {
            Change::AddLearner { id, addr } => {
                addrs.insert(*id, addr.clone());
                (ConfChangeType::AddLearnerNode, *id)
            }
            Change::Promote { id, addr } => {
                addrs.insert(*id, addr.clone());
                (ConfChangeType::AddNode, *id)
            }
            Change::Remove { id } => {
                addrs.remove(id);
                (ConfChangeType::RemoveNode, *id)
            }
        };
        let book = Membership {
            addrs,
            ..Membership::default()
        };
        let cc = ConfChange {
            change_type,
            node_id,
            context: book.encode().into(),
            ..ConfChange::default()
        };
        // raft-rs would turn a second change into an empty entry.
        if self.raw.raft.has_pending_conf() {
            return Err(ReplicaError::Log(
                "another membership change is still pending; try again when it is applied".into(),
            ));
        }
        self.raw.propose_conf_change(Vec::new(), cc)?;
        Ok((self.raw.raft.raft_log.last_index(), self.term()))
    }

    /// Hands leadership to `to` (a caught-up voter), e.g. before removing this replica.
    pub fn transfer_leader(&mut self, to: u64) {
        self.raw.transfer_leader(to);
    }

    /// The membership as applied here.
    pub fn members(&self) -> &Membership {
        &self.members
    }

    /// How far each replica's log matches the leader's (the leader only).
    pub fn progress(&self) -> Vec<(u64, u64)> {
        if !self.is_leader() {
            return Vec::new();
        }
        let mut out: Vec<(u64, u64)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, p)| (*id, p.matched))
            .collect();
        out.sort();
        out
    }

    /// The log's first index (entries before it are compacted into the snapshot).
    pub fn first_index(&self) -> u64 {
        raft::Storage::first_index(&self.log).unwrap_or(1)
    }

    /// Asks for a linearizable read point; confirmed in [`Output::reads`].
    pub fn read_index(&mut self, ctx: Vec<u8>) {
        self.raw.read_index(ctx);
    }

    /// Persists, applies and collects what Raft has ready.
    pub fn handle_ready(&mut self) -> Result<Output, ReplicaError> {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut rd = self.raw.ready();
        out.messages.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.install(rd.snapshot().clone(), &mut out)?;
        }
        let committed = rd.take_committed_entries();
        self.log.append(rd.entries()).map_err(ReplicaError::Log)?;
        if let Some(hs) = rd.hs() {
            self.log.set_hard_state(hs);
        }
        // Only new entries, a new term or a vote need the disk before the messages
        // that promise them; a heartbeat answer or a commit index does not (raft-rs's
        // `must_sync`), which spares an fsync per heartbeat.
        if rd.must_sync() && !self.skip_sync {
            self.log.sync().map_err(ReplicaError::Log)?;
        }
        // Applied only after the log and the commit index that cover them are written:
        // an engine that shares the log's storage (sled) then never comes back from a
        // crash with entries applied past the commit index it recorded.
        self.apply(committed, &mut out)?;
        out.messages.extend(rd.take_persisted_messages());
        for rs in rd.take_read_states() {
            out.reads.push((rs.request_ctx, rs.index));
        }
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit);
        }
        out.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut out)?;
        self.raw.advance_apply();
        // A snapshot is on its way: the leader probes again after the next heartbeat
        // answer, and sends another if this one was lost.
        for m in &out.messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.raw.report_snapshot(m.to, SnapshotStatus::Finish);
            }
        }
        self.maybe_compact()?;
        Ok(out)
    }

    /// A leader's snapshot: kept in the log first, then restored into the engine (so
    /// a crash in between restores it again at restart).
    fn install(&mut self, snap: Snapshot, out: &mut Output) -> Result<(), ReplicaError> {
        let m = snap.get_metadata().clone();
        self.log.install(&snap).map_err(ReplicaError::Log)?;
        let index = snapshot::restore(&*self.engine, &snap.data)
            .map_err(|e| ReplicaError::Log(format!("snapshot from the leader: {e}")))?;
        if index != m.index {
            return Err(ReplicaError::Log(format!(
                "the leader's snapshot of entry {} holds the state of entry {index}",
                m.index
            )));
        }
        self.applied = m.index;
        self.applied_term = m.term;
        let cs = m.get_conf_state();
        self.members = match membership(&*self.engine)? {
            Some(m) => m,
            None => membership_of(cs, BTreeMap::new()),
        };
        out.installed = Some(m.index);
        out.membership = Some(self.members.clone());
        Ok(())
    }

    /// Every `snapshot_every` applied entries the log is compacted: cut behind the
    /// applied index, keeping where it cut (the snapshot's metadata). The engine's state
    /// is dumped only when needed: after a membership change (a joining replica needs
    /// it at once, and the whole log goes, see `step`) and when raft asks for a
    /// snapshot to send (a follower behind the cut).
    fn maybe_compact(&mut self) -> Result<(), ReplicaError> {
        let every = self.cfg.snapshot_every;
        let first = self.first_index();
        let kept = self.log.kept_snapshot().get_metadata().index;
        let due = self.snapshot_due && kept < self.applied;
        let periodic = every > 0 && self.applied >= first && self.applied - first + 1 >= every;
        let wanted = self.log.take_snapshot_wanted();
        if !due && !periodic && !wanted {
            return Ok(());
        }
        self.snapshot_due = false;
        let (data, drop_to) = if due {
            (self.dump()?, self.applied)
        } else if wanted {
            // Keep the cut where it is; only give the data.
            (self.dump()?, 0)
        } else {
            (
                Vec::new(),
                self.applied.saturating_sub(self.cfg.keep_entries),
            )
        };
        let mut snap = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let meta = snap.mut_metadata();
        meta.index = self.applied;
        meta.term = self.applied_term;
        meta.set_conf_state(self.raw.raft.prs().conf().to_conf_state());
        self.log
            .compact(&snap, drop_to)
            .map_err(ReplicaError::Log)?;
        tracing::debug!(
            index = self.applied,
            drop_to,
            data = snap.data.len(),
            "raft log compacted"
        );
        Ok(())
    }

    fn dump(&self) -> Result<Vec<u8>, ReplicaError> {
        let (index, data) = snapshot::dump(&*self.engine)?;
        debug_assert_eq!(index, self.applied);
        Ok(data)
    }

    fn apply_conf_change(&mut self, e: &Entry) -> Result<Option<Membership>, ReplicaError> {
        let Ok(cc) = ConfChange::parse_from_bytes(&e.data) else {
            mark_applied(&*self.engine, e.index)?;
            return Ok(None);
        };
        let cs = match self.raw.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(err) => {
                // Every replica refuses the same change alike (e.g. removing the last
                // voter): it is skipped.
                tracing::warn!("membership change at {} refused: {err}", e.index);
                mark_applied(&*self.engine, e.index)?;
                return Ok(None);
            }
        };
        // The address book the change carries, for the members it leaves.
        let mut addrs = Membership::decode(&cc.context)
            .map(|b| b.addrs)
            .unwrap_or_else(|| self.members.addrs.clone());
        addrs.retain(|id, _| cs.voters.contains(id) || cs.learners.contains(id));
        let m = membership_of(&cs, addrs);
        apply_membership(&*self.engine, e.index, &m)?;
        self.log.set_conf(&cs);
        self.members = m.clone();
        self.snapshot_due = true;
        Ok(Some(m))
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output) -> Result<(), ReplicaError> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            let applied = match (e.get_entry_type(), e.data.is_empty()) {
                (EntryType::EntryNormal, false) => match Command::decode(&e.data) {
                    Ok(cmd) => {
                        let answer = apply_entry(&*self.engine, &cmd, e.index)?;
                        let wrote = answer.outcome == Outcome::Applied && !answer.repeated;
                        Applied {
                            index: e.index,
                            term: e.term,
                            id: Some(cmd.id),
                            outcome: answer.outcome,
                            repeated: answer.repeated,
                            keys: if wrote {
                                cmd.writes.into_keys().collect()
                            } else {
                                Vec::new()
                            },
                        }
                    }
                    Err(_) => {
                        mark_applied(&*self.engine, e.index)?;
                        Applied {
                            index: e.index,
                            term: e.term,
                            id: None,
                            outcome: Outcome::Invalid,
                            repeated: false,
                            keys: Vec::new(),
                        }
                    }
                },
                (EntryType::EntryConfChange, false) => {
                    if let Some(m) = self.apply_conf_change(&e)? {
                        out.membership = Some(m);
                    }
                    Applied {
                        index: e.index,
                        term: e.term,
                        id: None,
                        outcome: Outcome::Applied,
                        repeated: false,
                        keys: Vec::new(),
                    }
                }
                // A new leader's empty entry (or a change of a kind never proposed).
                _ => {
                    mark_applied(&*self.engine, e.index)?;
                    Applied {
                        index: e.index,
                        term: e.term,
                        id: None,
                        outcome: Outcome::Applied,
                        repeated: false,
                        keys: Vec::new(),
                    }
                }
            };
            self.applied = e.index;
            self.applied_term = e.term;
            out.applied.push(applied);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::MemLog;
    use ferrofs_core::kv::{self, MemKv, WriteSet};

    fn cluster(n: u64) -> Vec<Replica<MemLog>> {
        let voters: Vec<u64> = (1..=n).collect();
        voters
            .iter()
            .map(|&id| {
                let cfg = ReplicaConfig::new(id, 10 + 3 * id as usize);
                Replica::new(&cfg, MemLog::new(voters.clone()), Arc::new(MemKv::new())).unwrap()
            })
            .collect()
    }

    /// Delivers every message until the cluster is quiet; returns what was applied.
    fn settle(rs: &mut [Replica<MemLog>]) -> Vec<Applied> {
        let mut applied = Vec::new();
        for _ in 0..100 {
            let mut msgs = Vec::new();
            for r in rs.iter_mut() {
                let out = r.handle_ready().unwrap();
                msgs.extend(out.messages);
                applied.extend(out.applied);
            }
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let to = m.to as usize - 1;
                let _ = rs[to].step(m);
            }
        }
        applied
    }

    fn put(seq: u64, key: &[u8]) -> Command {
        let mut writes = WriteSet::new();
        writes.insert(key.to_vec(), Some(b"v".to_vec()));
        Command {
            id: RequestId { client: 1, seq },
            done_below: 0,
            reads: vec![],
            writes,
        }
    }

    #[test]
    fn elects_a_leader_and_every_replica_applies_its_commands() {
        let mut rs = cluster(3);
        for _ in 0..40 {
            for r in rs.iter_mut() {
                r.tick();
            }
            settle(&mut rs);
        }
        let leaders: Vec<usize> = (0..3).filter(|&i| rs[i].is_leader()).collect();
        assert_eq!(leaders.len(), 1, "one leader");
        let l = leaders[0];
        let follower = (l + 1) % 3;
        match rs[follower].propose(&put(1, b"x")) {
            Err(ReplicaError::NotLeader { leader }) => assert_eq!(leader, l as u64 + 1),
            other => panic!("a follower took a proposal: {other:?}"),
        }
        rs[l].propose(&put(1, b"x")).unwrap();
        rs[l].propose(&put(1, b"x")).unwrap(); // proposed twice: applied once
        let applied = settle(&mut rs);
        let for_request: Vec<&Applied> = applied.iter().filter(|a| a.id.is_some()).collect();
        assert_eq!(for_request.len(), 6, "two entries on three replicas");
        assert_eq!(for_request.iter().filter(|a| !a.repeated).count(), 3);
        for r in &rs {
            let v = kv::read(&**r.engine(), |t| t.get(b"x")).unwrap();
            assert_eq!(v, Some(b"v".to_vec()));
            assert_eq!(r.applied(), r.committed());
        }
    }

    #[test]
    fn a_restarted_replica_resumes_after_what_its_engine_applied() {
        let mut rs = cluster(1);
        for _ in 0..30 {
            rs[0].tick();
            settle(&mut rs);
        }
        assert!(rs[0].is_leader());
        rs[0].propose(&put(1, b"a")).unwrap();
        settle(&mut rs);
        let (log, engine) = (rs[0].log().clone(), rs[0].engine().clone());
        let applied = rs[0].applied();
        drop(rs);
        let cfg = ReplicaConfig::new(1, 13);
        let r = Replica::new(&cfg, log, engine).unwrap();
        assert_eq!(r.applied(), applied);
    }

    /// Replicas by id (a slot may be empty: not started or stopped), and which are cut
    /// off from the network.
    struct Net {
        rs: BTreeMap<u64, Replica<MemLog>>,
        cut: Vec<u64>,
    }

    impl Net {
        fn new(n: u64, snapshot_every: u64) -> Net {
            let voters: Vec<u64> = (1..=n).collect();
            let rs = voters
                .iter()
                .map(|&id| {
                    (
                        id,
                        Net::replica(id, MemLog::new(voters.clone()), snapshot_every),
                    )
                })
                .collect();
            Net { rs, cut: vec![] }
        }

        fn replica(id: u64, log: MemLog, snapshot_every: u64) -> Replica<MemLog> {
            let mut cfg = ReplicaConfig::new(id, 10 + 3 * id as usize);
            cfg.snapshot_every = snapshot_every;
            cfg.keep_entries = 5;
            Replica::new(&cfg, log, Arc::new(MemKv::new())).unwrap()
        }

        fn settle(&mut self) {
            for _ in 0..200 {
                let mut msgs = Vec::new();
                for r in self.rs.values_mut() {
                    msgs.extend(r.handle_ready().unwrap().messages);
                }
                if msgs.is_empty() {
                    return;
                }
                for m in msgs {
                    if self.cut.contains(&m.to) || self.cut.contains(&m.from) {
                        continue;
                    }
                    if let Some(r) = self.rs.get_mut(&m.to) {
                        let _ = r.step(m);
                    }
                }
            }
        }

        fn run(&mut self, ticks: usize) {
            for _ in 0..ticks {
                for r in self.rs.values_mut() {
                    r.tick();
                }
                self.settle();
            }
        }

        fn leader(&mut self) -> &mut Replica<MemLog> {
            for _ in 0..100 {
                if self.rs.values().any(|r| r.is_leader()) {
                    break;
                }
                self.run(1);
            }
            self.rs
                .values_mut()
                .find(|r| r.is_leader())
                .expect("a leader")
        }

        fn put(&mut self, seq: u64) {
            let cmd = put(seq, format!("k{seq}").as_bytes());
            self.leader().propose(&cmd).unwrap();
            self.settle();
        }

        fn change(&mut self, c: Change) {
            let book = BTreeMap::new();
            self.leader().propose_change(&c, &book).unwrap();
            self.settle();
        }
    }

    fn state(r: &Replica<MemLog>) -> Vec<(Vec<u8>, Vec<u8>)> {
        kv::read(&**r.engine(), |t| t.scan(b"", &[0xff; 8], usize::MAX)).unwrap()
    }

    #[test]
    fn a_follower_that_missed_compacted_entries_catches_up_by_snapshot() {
        let mut net = Net::new(3, 20);
        net.leader();
        let behind = if net.leader().id() == 3 { 2 } else { 3 };
        net.cut = vec![behind];
        for seq in 1..=60 {
            net.put(seq);
        }
        let leader_first = net.leader().first_index();
        assert!(
            leader_first > 30,
            "the leader compacted its log (first {leader_first})"
        );
        assert!(net.rs[&behind].applied() < 10);
        net.cut.clear();
        net.run(20);
        let l = net.leader().id();
        assert_eq!(net.rs[&behind].applied(), net.rs[&l].applied());
        assert_eq!(state(&net.rs[&behind]), state(&net.rs[&l]), "same state");
        assert!(
            net.rs[&behind].first_index() > 30,
            "its log starts after the snapshot"
        );
        // It keeps up with the log from there.
        net.put(61);
        let v = kv::read(&**net.rs[&behind].engine(), |t| t.get(b"k61")).unwrap();
        assert_eq!(v, Some(b"v".to_vec()));
    }

    #[test]
    fn an_engine_behind_a_compacted_log_is_refused_and_an_installed_snapshot_restored() {
        let user_keys = |r: &Replica<MemLog>| {
            let mut s = state(r);
            s.retain(|(k, _)| k != b"R");
            s
        };
        // A compaction keeps only where it cut: an engine that lost what it applied
        // cannot be rebuilt from this log, and says what to do.
        let mut net = Net::new(1, 10);
        for seq in 1..=25 {
            net.put(seq);
        }
        let r = net.rs.remove(&1).unwrap();
        assert!(r.first_index() > 1);
        let log = r.log().clone();
        drop(r);
        let cfg = ReplicaConfig::new(1, 13);
        let e = Replica::new(&cfg, log, Arc::new(MemKv::new()))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("--join"), "{e}");
        // A snapshot installed from a leader is kept whole until the next compaction:
        // a crash right after it (engine not yet written) restores it at start.
        let mut net = Net::new(3, 10);
        net.leader();
        let behind = if net.leader().id() == 3 { 2 } else { 3 };
        net.cut = vec![behind];
        for seq in 1..=30 {
            net.put(seq);
        }
        net.cut.clear();
        net.run(20);
        let r = net.rs.remove(&behind).unwrap();
        let (log, before) = (r.log().clone(), user_keys(&r));
        assert!(
            !log.kept_snapshot().data.is_empty(),
            "the installed snapshot"
        );
        drop(r);
        let mut r = Net::replica(behind, log, 10);
        for _ in 0..40 {
            r.tick();
            r.handle_ready().unwrap();
        }
        assert_eq!(user_keys(&r), before);
    }

    #[test]
    fn replicas_join_as_learners_get_promoted_and_a_voter_is_removed() {
        let mut net = Net::new(3, 20);
        for seq in 1..=30 {
            net.put(seq);
        }
        // Replica 4 starts with no configuration and waits for the leader.
        net.rs.insert(4, Net::replica(4, MemLog::new(vec![]), 20));
        net.change(Change::AddLearner {
            id: 4,
            addr: "h:4".into(),
        });
        net.run(10);
        assert_eq!(net.rs[&4].members().learners, vec![4]);
        assert_eq!(
            net.rs[&4].members().addrs.get(&4).map(String::as_str),
            Some("h:4")
        );
        let l = net.leader().id();
        assert_eq!(state(&net.rs[&4]), state(&net.rs[&l]), "caught up");
        net.change(Change::Promote {
            id: 4,
            addr: "h:4".into(),
        });
        net.run(5);
        assert_eq!(net.rs[&4].members().voters, vec![1, 2, 3, 4]);
        // Remove the leader itself: it hands over first, as the CLI does.
        let old = net.leader().id();
        let heir = if old == 4 { 1 } else { 4 };
        net.leader().transfer_leader(heir);
        net.run(20);
        assert_ne!(net.leader().id(), old);
        net.change(Change::Remove { id: old });
        net.run(10);
        net.rs.remove(&old);
        for r in net.rs.values() {
            assert!(!r.members().voters.contains(&old));
        }
        net.put(31);
        let l = net.leader().id();
        for r in net.rs.values() {
            assert_eq!(r.applied(), net.rs[&l].applied());
        }
        // A second change before the first applies is refused, not queued.
        let book = BTreeMap::new();
        let leader = net.leader();
        leader
            .propose_change(&Change::Remove { id: 4 }, &book)
            .unwrap();
        assert!(leader
            .propose_change(&Change::Remove { id: 2 }, &book)
            .is_err());
    }

    #[test]
    fn a_joiner_never_rebuilds_the_configuration_from_the_log_start() {
        // The simulator found it: with the leader's log whole, a joiner replayed the
        // membership changes from entry 1 on its empty configuration, ended up the
        // only voter, and elected itself. Now the leader compacts at every change
        // (even with periodic snapshots off) and the joiner waits for a snapshot.
        let mut net = Net::new(3, 0);
        for seq in 1..=3 {
            net.put(seq);
        }
        net.rs.insert(4, Net::replica(4, MemLog::new(vec![]), 0));
        net.change(Change::AddLearner {
            id: 4,
            addr: "h:4".into(),
        });
        net.run(10);
        net.change(Change::Promote {
            id: 4,
            addr: "h:4".into(),
        });
        net.run(10);
        assert_eq!(net.rs[&4].members().voters, vec![1, 2, 3, 4]);
        // Alone, it cannot lead: it knows it needs a majority of four.
        net.cut = vec![4];
        net.run(200);
        assert!(!net.rs[&4].is_leader());
    }
}
