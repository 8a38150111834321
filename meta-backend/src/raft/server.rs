//! `ferrofs meta-server`: one replica of the replicated engine on the network.
//!
//! One driver thread owns the [`Replica`]: it ticks it every `tick`, steps it with
//! peers' messages, proposes clients' commits and membership changes, asks read
//! indexes for their reads, and after every batch of events handles its ready state
//! (log synced before any vote or acknowledgement goes out), answers the commits and
//! changes that were applied and serves the reads whose index is applied. Connection
//! threads (`net`) only move frames, and answer reads of the applied state and the
//! change feed themselves.
//!
//! Only the leader answers; others say who leads. Reads are linearizable by read
//! index (raft-rs `ReadOnlySafe`: the leader confirms with a quorum of heartbeats that
//! it still leads, then serves at the commit index it had), which needs no clock
//! assumptions, unlike leases.
//!
//! Membership: the first members are the ones `--peers` names. Later changes are Raft
//! entries that carry the whole address book, applied into the replicated state
//! (`core::replica::members`), so every replica sends to the same addresses and a
//! replica that restarts or catches up by snapshot knows them. A replica removed from
//! the cluster stops.

use super::net::{self, serve_read, Event, Shared};
use super::replica::{Replica, ReplicaConfig};
use super::sled_log::SledLog;
use super::wire::{self, MembersInfo, Request, Response};
use crate::SledKv;
use ferrofs_core::kv::Kv;
use ferrofs_core::replica::{Feed, Membership, RequestId};
use raft::eraftpb::Message;
use std::collections::{BTreeMap, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A replica's settings on the network.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: u64,
    /// The replicas' ids and addresses, this one's included: the whole first cluster,
    /// or (with `join`) at least this replica and the members to reach.
    pub peers: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    /// Raft's clock: heartbeats every 2 ticks, elections after 10 to 20.
    pub tick: Duration,
    /// The shared secret every client and peer must prove it knows (`None`: anyone
    /// may connect; only for a trusted network).
    pub secret: Option<Vec<u8>>,
    /// A new replica for a running cluster: it starts with no configuration and waits
    /// for the leader (after `ferrofs meta-member add`) to send it the state.
    pub join: bool,
    /// Snapshot and compact the log every this many entries (0: never).
    pub snapshot_every: u64,
    /// TLS for every connection, clients' and peers' (`None`: plain TCP).
    pub tls: Option<ServerTls>,
}

/// A replica's TLS files.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// This replica's certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that vouches for the other replicas' certificates (PEM).
    pub ca: PathBuf,
}

impl ServerConfig {
    /// A configuration with the defaults for the rest.
    pub fn new(id: u64, peers: BTreeMap<u64, String>, data_dir: PathBuf) -> Self {
        ServerConfig {
            id,
            peers,
            data_dir,
            tick: Duration::from_millis(100),
            secret: None,
            join: false,
            snapshot_every: 10_000,
            tls: None,
        }
    }
}

/// Waiting requests are failed (the client tries again) after this long.
const WAIT_LIMIT: Duration = Duration::from_secs(5);
/// The change feed remembers about this many keys.
const FEED_KEYS: usize = 200_000;

/// A running replica; [`Server::stop`] ends it.
pub struct Server {
    stop: Arc<AtomicBool>,
    driver: Option<JoinHandle<Result<(), String>>>,
    addr: String,
}

impl Server {
    /// Starts replica `cfg.id`, serving on `listener` (already bound to its address).
    pub fn start(cfg: ServerConfig, listener: TcpListener) -> Result<Server, String> {
        let addr = cfg
            .peers
            .get(&cfg.id)
            .cloned()
            .ok_or_else(|| format!("--peers does not list this replica's id {}", cfg.id))?;
        let (server_tls, peer_tls) = match &cfg.tls {
            None => (None, None),
            Some(t) => (
                Some(super::tls::server_config(&t.cert, &t.key)?),
                Some(super::tls::client_config(&t.ca)?),
            ),
        };
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", cfg.data_dir.display()))?;
        let kv = Arc::new(SledKv::open(&cfg.data_dir).map_err(|e| e.to_string())?);
        let voters: Vec<u64> = if cfg.join {
            Vec::new()
        } else {
            cfg.peers.keys().copied().collect()
        };
        let log = SledLog::open(kv.db(), voters)?;
        let mut rcfg = ReplicaConfig::new(
            cfg.id,
            // Distinct timeouts (see ReplicaConfig): 10, 12, 14, ... ticks.
            10 + 2 * (cfg.id.saturating_sub(1) % 5) as usize,
        );
        rcfg.snapshot_every = cfg.snapshot_every;
        rcfg.keep_entries = (cfg.snapshot_every / 10).max(1);
        let engine: Arc<dyn Kv> = kv;
        let replica = Replica::new(&rcfg, log, engine.clone()).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            engine,
            leading: AtomicBool::new(false),
            leader: Mutex::new(String::new()),
            feed: Mutex::new(Feed::new(replica.applied(), FEED_KEYS)),
        });
        net::spawn_listener(
            listener,
            tx,
            stop.clone(),
            cfg.secret.clone().map(Arc::new),
            server_tls,
            shared.clone(),
        );
        let s = stop.clone();
        let driver = thread::Builder::new()
            .name(format!("raft-{}", cfg.id))
            .spawn(move || Driver::new(cfg, replica, shared, s.clone(), peer_tls).run(rx, &s))
            .map_err(|e| e.to_string())?;
        tracing::info!(addr = %addr, "meta server replica started");
        Ok(Server {
            stop,
            driver: Some(driver),
            addr,
        })
    }

    /// Runs until the driver fails (a log write error), the replica is removed from
    /// the cluster, or the process is stopped.
    pub fn wait(mut self) -> Result<(), String> {
        match self.driver.take().map(|d| d.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the replica's driver thread panicked".into()),
            None => Ok(()),
        }
    }

    /// Stops serving (as a killed process would, minus the process).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the listener.
        let _ = TcpStream::connect(&self.addr);
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
    }
}

struct Waiting {
    id: u64,
    reply: Sender<Vec<u8>>,
    since: Instant,
}

struct Driver {
    shared: Arc<Shared>,
    cfg: ServerConfig,
    replica: Replica<SledLog>,
    stop: Arc<AtomicBool>,
    /// Every member's address: `--peers` until the first membership change.
    book: BTreeMap<u64, String>,
    peers: HashMap<u64, (String, SyncSender<Message>)>,
    /// Whether this replica has been a member (a joining one is not, at first).
    member: bool,
    peer_tls: Option<Arc<rustls::ClientConfig>>,
    commits: HashMap<RequestId, Vec<Waiting>>,
    /// Membership changes proposed: (index, term) of their entry.
    changes: Vec<(u64, u64, Waiting)>,
    /// Reads waiting for their read index: context → (request, waiter).
    reads: HashMap<u64, (Request, Waiting)>,
    /// Confirmed read indexes: (index, context), served once applied.
    confirmed: Vec<(u64, u64)>,
    next_ctx: u64,
    was_leader: bool,
}

impl Driver {
    fn new(
        cfg: ServerConfig,
        replica: Replica<SledLog>,
        shared: Arc<Shared>,
        stop: Arc<AtomicBool>,
        peer_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let members = replica.members().clone();
        let mut d = Driver {
            shared,
            peer_tls,
            book: BTreeMap::new(),
            member: is_member(&members, cfg.id),
            cfg,
            replica,
            stop,
            peers: HashMap::new(),
            changes: Vec::new(),
            commits: HashMap::new(),
            reads: HashMap::new(),
            confirmed: Vec::new(),
            next_ctx: 1,
            was_leader: false,
        };
        d.set_members(&members);
        d
    }

    /// Takes a membership: its address book (or `--peers`' while it has none) and a
    /// sender per other member.
    fn set_members(&mut self, m: &Membership) {
        self.book = if m.addrs.is_empty() {
            self.cfg.peers.clone()
        } else {
            m.addrs.clone()
        };
        let secret = self.cfg.secret.clone().unwrap_or_default();
        let mut ids: Vec<u64> = self.book.keys().copied().collect();
        // A joining replica hears from a leader its --peers may name.
        ids.extend(self.cfg.peers.keys().copied());
        self.peers.retain(|id, (addr, _)| {
            ids.contains(id) && self.book.get(id).is_none_or(|a| a == addr)
        });
        for id in ids {
            if id == self.cfg.id || self.peers.contains_key(&id) {
                continue;
            }
            let Some(addr) = self.book.get(&id).or_else(|| self.cfg.peers.get(&id)) else {
                continue;
            };
            let tx = net::spawn_peer_sender(
                addr.clone(),
                secret.clone(),
                self.peer_tls.clone(),
                &self.stop,
            );
            self.peers.insert(id, (addr.clone(), tx));
        }
    }

    fn run(mut self, rx: Receiver<Event>, stop: &AtomicBool) -> Result<(), String> {
        let mut next_tick = Instant::now() + self.cfg.tick;
        while !stop.load(Ordering::SeqCst) {
            if self.member && !is_member(self.replica.members(), self.cfg.id) {
                tracing::warn!(
                    id = self.cfg.id,
                    "this replica was removed from the cluster; it stops (its data dir can be deleted)"
                );
                self.fail_all("this replica left the cluster");
                return Ok(());
            }
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            // Everything that arrived meanwhile goes into the same ready (one sync).
            while let Ok(ev) = rx.try_recv() {
                self.handle(ev);
            }
            if Instant::now() >= next_tick {
                self.replica.tick();
                next_tick += self.cfg.tick;
                self.expire();
            }
            self.ready()?;
        }
        Ok(())
    }

    fn leader_addr(&self) -> String {
        self.book
            .get(&self.replica.leader())
            .cloned()
            .unwrap_or_default()
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Peer(m) => {
                if let Err(e) = self.replica.step(m) {
                    tracing::debug!("raft message refused: {e}");
                }
            }
            Event::Request { id, req, reply } => {
                if !self.replica.is_leader() {
                    let r = Response::NotLeader(self.leader_addr());
                    let _ = reply.send(wire::encode_response(id, &r));
                    return;
                }
                let w = Waiting {
                    id,
                    reply,
                    since: Instant::now(),
                };
                match req {
                    Request::Commit(cmd) => match self.replica.propose(&cmd) {
                        Ok(()) => self.commits.entry(cmd.id).or_default().push(w),
                        Err(e) => answer(&w, &Response::Retry(e.to_string())),
                    },
                    Request::Members => answer(&w, &Response::Members(self.members_info())),
                    Request::Change(ch) => match self.replica.propose_change(&ch, &self.book) {
                        Ok((index, term)) => self.changes.push((index, term, w)),
                        Err(e) => answer(&w, &Response::Retry(e.to_string())),
                    },
                    Request::TransferLeader(to) => {
                        self.replica.transfer_leader(to);
                        answer(&w, &Response::Done);
                    }
                    // Reads a later commit or check will confirm: what is applied now.
                    read @ (Request::GetApplied(_)
                    | Request::ScanApplied { .. }
                    | Request::GetManyApplied(_)) => answer_read(&w, self.serve(&read)),
                    read => {
                        let ctx = self.next_ctx;
                        self.next_ctx += 1;
                        self.replica.read_index(ctx.to_be_bytes().to_vec());
                        self.reads.insert(ctx, (read, w));
                    }
                }
            }
        }
    }

    fn ready(&mut self) -> Result<(), String> {
        let out = self.replica.handle_ready().map_err(|e| {
            tracing::error!("replica failed: {e}");
            e.to_string()
        })?;
        if let Some(m) = &out.membership {
            self.set_members(m);
            self.member |= is_member(m, self.cfg.id);
            tracing::info!(voters = ?m.voters, learners = ?m.learners, "membership changed");
        }
        for m in out.messages {
            if let Some((_, p)) = self.peers.get(&m.to) {
                // A full queue drops the message: Raft sends again.
                let _ = p.try_send(m);
            }
        }
        {
            let mut feed = self.shared.feed.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(index) = out.installed {
                tracing::info!(index, "caught up by a snapshot from the leader");
                feed.reset(index);
            }
            for a in &out.applied {
                feed.push(a.index, a.keys.clone());
            }
        }
        for a in out.applied {
            let Some(id) = a.id else {
                // A membership change (or an empty entry) at this index.
                let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.changes)
                    .into_iter()
                    .partition(|(index, _, _)| *index <= a.index);
                self.changes = waiting;
                for (index, term, w) in done {
                    let r = if index == a.index && term == a.term {
                        Response::Done
                    } else {
                        Response::Retry("the change was lost with a leader change".into())
                    };
                    answer(&w, &r);
                }
                continue;
            };
            for w in self.commits.remove(&id).unwrap_or_default() {
                answer(&w, &Response::Outcome(a.outcome));
            }
        }
        for (ctx, index) in out.reads {
            self.confirmed
                .push((index, u64::from_be_bytes(ctx.try_into().unwrap_or([0; 8]))));
        }
        let applied = self.replica.applied();
        let confirmed = std::mem::take(&mut self.confirmed);
        for (index, ctx) in confirmed {
            if index > applied {
                self.confirmed.push((index, ctx));
                continue;
            }
            if let Some((req, w)) = self.reads.remove(&ctx) {
                answer_read(&w, self.serve(&req));
            }
        }
        let leader = self.replica.is_leader();
        self.shared.leading.store(leader, Ordering::Release);
        let addr = self.leader_addr();
        let mut known = self.shared.leader.lock().unwrap_or_else(|e| e.into_inner());
        if *known != addr {
            *known = addr;
        }
        drop(known);
        if self.was_leader && !leader {
            // Whatever was waiting may or may not commit: the clients ask again (the
            // same request id, so a commit applies once).
            self.fail_all("leadership changed");
        }
        self.was_leader = leader;
        Ok(())
    }

    /// A read, on this replica's engine, at an applied index past its read index.
    fn serve(&self, req: &Request) -> (Response, Option<u64>) {
        serve_read(&**self.replica.engine(), req)
    }

    fn members_info(&self) -> MembersInfo {
        let mut members = self.replica.members().clone();
        members.addrs = self.book.clone();
        MembersInfo {
            leader: self.replica.leader(),
            applied: self.replica.applied(),
            first_index: self.replica.first_index(),
            members,
            progress: self.replica.progress(),
        }
    }

    fn fail_all(&mut self, why: &str) {
        for (_, ws) in self.commits.drain() {
            for w in ws {
                answer(&w, &Response::Retry(why.into()));
            }
        }
        for (_, (_, w)) in self.reads.drain() {
            answer(&w, &Response::Retry(why.into()));
        }
        for (_, _, w) in self.changes.drain(..) {
            answer(&w, &Response::Retry(why.into()));
        }
        self.confirmed.clear();
    }

    /// Requests that waited too long (a read index lost with a leader change, a
    /// proposal dropped) are failed: the client tries again.
    fn expire(&mut self) {
        let now = Instant::now();
        let old = |w: &Waiting| now.duration_since(w.since) > WAIT_LIMIT;
        for ws in self.commits.values_mut() {
            for w in ws.iter().filter(|w| old(w)) {
                answer(w, &Response::Retry("timed out".into()));
            }
            ws.retain(|w| !old(w));
        }
        self.commits.retain(|_, ws| !ws.is_empty());
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, (_, w))| old(w))
            .map(|(c, _)| *c)
            .collect();
        for c in expired {
            if let Some((_, w)) = self.reads.remove(&c) {
                answer(&w, &Response::Retry("timed out".into()));
            }
        }
        for (_, _, w) in self.changes.iter().filter(|(_, _, w)| old(w)) {
            answer(w, &Response::Retry("timed out".into()));
        }
        self.changes.retain(|(_, _, w)| !old(w));
    }
}

fn is_member(m: &Membership, id: u64) -> bool {
    m.voters.contains(&id) || m.learners.contains(&id)
}

fn answer(w: &Waiting, r: &Response) {
    let _ = w.reply.send(wire::encode_response(w.id, r));
}

fn answer_read(w: &Waiting, (r, at): (Response, Option<u64>)) {
    let _ = w.reply.send(wire::encode_read_response(w.id, &r, at));
}
