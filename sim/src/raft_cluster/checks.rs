//! What `sim --raft` checks: each applied entry against every other replica's, one
//! leader per term, and after the heal: convergence, no lost acknowledged write,
//! exactly once, liveness and the linearizability of what clients saw.

use super::*;

impl World {
    pub(super) fn on_applied(&mut self, node: usize, a: &ferrofs_meta::raft::Applied) {
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

    pub(super) fn check_leaders(&mut self) {
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

    pub(super) fn heal_and_check(&mut self) {
        self.faults = false;
        for g in self.group.iter_mut() {
            *g = 0;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none() && !self.nodes[i].removed {
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
        // A replacement under way finishes once the faults stop.
        let deadline = self.now + 20_000;
        while self.change.is_some() && self.now < deadline {
            self.step();
        }
        if let Some(c) = &self.change {
            self.violation(format!(
                "a membership change did not finish after the heal: {c:?}"
            ));
        }
        for _ in 0..1_000 {
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
            .filter(|n| !n.removed)
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
