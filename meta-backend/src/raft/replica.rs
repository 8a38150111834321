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
    applied_index, apply_entry, mark_applied, Command, Outcome, RequestId,
};
use ferrofs_core::{kv::Kv, Errno};
use raft::eraftpb::{Entry, EntryType, HardState, Message};
use raft::{RawNode, StateRole};
use std::fmt;
use std::sync::Arc;

/// Where a replica keeps its Raft log and hard state.
pub trait DurableLog: raft::Storage {
    /// Appends `entries`, replacing any from the first one's index on.
    fn append(&self, entries: &[Entry]) -> Result<(), String>;
    fn set_hard_state(&self, hs: &HardState);
    fn set_commit(&self, commit: u64);
    /// Makes every change so far durable.
    fn sync(&self) -> Result<(), String>;
}

/// The checks every [`DurableLog`] makes of an `entries(low, high)` request against a
/// whole log (no compaction) ending at `last`.
pub fn check_range(low: u64, high: u64, last: u64) -> raft::Result<()> {
    if low == 0 {
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
}

/// One Raft replica and its engine.
pub struct Replica<L: DurableLog + Clone> {
    raw: RawNode<L>,
    log: L,
    engine: Arc<dyn Kv>,
    applied: u64,
    skip_sync: bool,
}

impl<L: DurableLog + Clone> Replica<L> {
    /// Starts (or restarts) a replica over `log` and `engine`; it resumes applying after
    /// the last entry `engine` holds.
    pub fn new(cfg: &ReplicaConfig, log: L, engine: Arc<dyn Kv>) -> Result<Self, ReplicaError> {
        let applied = applied_index(&*engine)?;
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
        Ok(self.raw.step(m)?)
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
            // The whole log is kept (no compaction yet), so no leader sends one.
            return Err(ReplicaError::Log("snapshots are not supported yet".into()));
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
        Ok(out)
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
                        Applied {
                            index: e.index,
                            term: e.term,
                            id: Some(cmd.id),
                            outcome: answer.outcome,
                            repeated: answer.repeated,
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
                        }
                    }
                },
                // A new leader's empty entry (membership changes come later).
                _ => {
                    mark_applied(&*self.engine, e.index)?;
                    Applied {
                        index: e.index,
                        term: e.term,
                        id: None,
                        outcome: Outcome::Applied,
                        repeated: false,
                    }
                }
            };
            self.applied = e.index;
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
                let cfg = ReplicaConfig {
                    id,
                    election_ticks: 10 + 3 * id as usize,
                    heartbeat_ticks: 2,
                };
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
        let cfg = ReplicaConfig {
            id: 1,
            election_ticks: 13,
            heartbeat_ticks: 2,
        };
        let r = Replica::new(&cfg, log, engine).unwrap();
        assert_eq!(r.applied(), applied);
    }
}
