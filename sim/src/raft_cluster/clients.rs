//! The simulated clients of `sim --raft`: increments (compare-and-set commands sent
//! to the replica they believe leads, sent again with the same id when no answer
//! comes) and reads (read index, served once the replica has applied that far).

use super::*;

impl World {
    /// Clients that can act: send a new increment or read, or send again.
    pub(super) fn clients_act(&mut self) {
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
    pub(super) fn pick_leader(&mut self, c: usize) -> u64 {
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
    pub(super) fn new_increment(&mut self, c: usize, to: u64) -> Option<(Command, u64)> {
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
    pub(super) fn start_read(&mut self, c: usize) {
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
    pub(super) fn answer_read(&mut self, ctx: u64, node: usize) {
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
    pub(super) fn serve_reads(&mut self) {
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

    pub(super) fn send_request(&mut self, c: usize, cmd: Command, to: u64) {
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
}
