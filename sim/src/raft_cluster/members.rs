//! Membership changes during the run, as an operator makes them with
//! `ferrofs meta-member replace`: a new replica (empty log and engine) is added as a
//! learner, catches up (by snapshot: logs are compacted every 40 entries), is
//! promoted to voter, and an old replica is removed, leadership handed over first if
//! it leads. Each step is proposed to whoever leads and retried until the leader's
//! applied membership shows it, through the same crashes, partitions and lost
//! messages as everything else. A removed replica is stopped for good and left out of
//! the convergence check; every other check covers the new replicas.

use super::*;
use ferrofs_meta::raft::Change;

/// How often (per time unit, with faults on) a replacement starts.
const START_CHANCE: f64 = 0.0004;
/// A step not applied after this long is proposed again.
const RETRY_AFTER: u64 = 1_500;
/// At most this many replicas are ever added in one run.
const MAX_ADDED: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    AddLearner,
    Promote,
    Remove,
}

/// A replacement under way: node indexes, and the step proposed last.
#[derive(Clone, Debug)]
pub(super) struct Replacing {
    old: usize,
    new: usize,
    stage: Stage,
    proposed_at: Option<u64>,
}

impl World {
    /// The leader with the highest term, if any replica leads.
    fn current_leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].removed)
            .filter_map(|i| self.nodes[i].replica.as_ref().map(|r| (i, r)))
            .filter(|(_, r)| r.is_leader())
            .max_by_key(|(_, r)| r.term())
            .map(|(i, _)| i)
    }

    fn begin_replacement(&mut self) {
        let added = self.nodes.len() - self.cfg.replicas;
        if self.change.is_some() || added >= MAX_ADDED || !self.rng.chance(START_CHANCE) {
            return;
        }
        let Some(l) = self.current_leader() else {
            return;
        };
        let voters = self.nodes[l]
            .replica
            .as_ref()
            .map(|r| r.members().voters.clone());
        let Some(voters) = voters else { return };
        let old = voters[self.rng.index(voters.len())] as usize - 1;
        let id = self.nodes.len() as u64 + 1;
        self.nodes.push(Node {
            cfg: ReplicaConfig {
                election_ticks: 10 + 3 * (id as usize % 5) + self.rng.below(3) as usize,
                snapshot_every: 40,
                keep_entries: 10,
                ..ReplicaConfig::new(id, 10)
            },
            // Started with --join: no configuration until the leader sends one.
            log: MemLog::new(vec![]),
            replica: None,
            restart_at: 0,
            removed: false,
            durable_engine: Arc::default(),
        });
        self.group.push(0);
        let new = self.nodes.len() - 1;
        self.start(new);
        self.trace.u64(8).u64(old as u64).u64(new as u64);
        self.change = Some(Replacing {
            old,
            new,
            stage: Stage::AddLearner,
            proposed_at: None,
        });
    }

    /// Moves the replacement under way one step on, if its last step was applied.
    pub(super) fn drive_membership(&mut self) {
        if self.faults {
            self.begin_replacement();
        }
        let Some(mut c) = self.change.clone() else {
            return;
        };
        let Some(l) = self.current_leader() else {
            return;
        };
        let (old_id, new_id) = (c.old as u64 + 1, c.new as u64 + 1);
        let Some(r) = self.nodes[l].replica.as_ref() else {
            return;
        };
        let (m, leader_applied) = (r.members().clone(), r.applied());
        // Whether the step proposed last is applied (on the leader).
        let done = match c.stage {
            Stage::AddLearner => m.learners.contains(&new_id) || m.voters.contains(&new_id),
            Stage::Promote => m.voters.contains(&new_id),
            Stage::Remove => !m.voters.contains(&old_id) && !m.learners.contains(&old_id),
        };
        if done {
            c.proposed_at = None;
            c.stage = match c.stage {
                Stage::AddLearner => Stage::Promote,
                Stage::Promote => Stage::Remove,
                Stage::Remove => {
                    // The operator stops the removed replica (it stops itself once it
                    // applies its removal, if it hears of it).
                    let node = &mut self.nodes[c.old];
                    node.removed = true;
                    node.replica = None;
                    self.report.replacements += 1;
                    self.trace.u64(9).u64(c.old as u64);
                    self.change = None;
                    return;
                }
            };
        }
        let due = c.proposed_at.is_none_or(|at| self.now >= at + RETRY_AFTER);
        if due {
            // A learner is promoted once it has caught up with the leader.
            let caught_up = self.nodes[c.new]
                .replica
                .as_ref()
                .is_some_and(|n| n.applied() + 5 >= leader_applied);
            let change = match c.stage {
                Stage::AddLearner => Some(Change::AddLearner {
                    id: new_id,
                    addr: format!("sim:{new_id}"),
                }),
                Stage::Promote if caught_up => Some(Change::Promote {
                    id: new_id,
                    addr: format!("sim:{new_id}"),
                }),
                Stage::Promote => None,
                Stage::Remove if l == c.old => {
                    // Hand over first, to the new replica.
                    self.guarded(l, |r| r.transfer_leader(new_id));
                    None
                }
                Stage::Remove => Some(Change::Remove { id: old_id }),
            };
            if let Some(ch) = change {
                let book = BTreeMap::new();
                if let Some(Ok(_)) = self.guarded(l, |r| r.propose_change(&ch, &book)) {
                    self.trace.u64(10).u64(l as u64);
                }
            }
            c.proposed_at = Some(self.now);
        }
        self.change = Some(c);
    }
}
