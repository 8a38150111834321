//! `ferrofs meta-server`: one replica of the replicated engine on the network.
//!
//! One driver thread owns the [`Replica`]: it ticks it every `tick`, steps it with
//! peers' messages, proposes clients' commits, asks read indexes for their reads, and
//! after every batch of events handles its ready state (log synced before any vote or
//! acknowledgement goes out), answers the commits that were applied and serves the
//! reads whose index is applied. Connection threads only move frames: peers' messages
//! and clients' requests in, responses and outgoing Raft messages out.
//!
//! Only the leader answers; others say who leads. Reads are linearizable by read
//! index (raft-rs `ReadOnlySafe`: the leader confirms with a quorum of heartbeats that
//! it still leads, then serves at the commit index it had), which needs no clock
//! assumptions, unlike leases.

use super::replica::{Replica, ReplicaConfig};
use super::sled_log::SledLog;
use super::wire::{self, Request, Response};
use crate::SledKv;
use ferrofs_core::kv::{self, Kv};
use ferrofs_core::replica::{apply::reads_hold, RequestId};
use protobuf::Message as _;
use raft::eraftpb::Message;
use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A replica's settings on the network.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: u64,
    /// Every replica's id and address, this one's included.
    pub peers: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    /// Raft's clock: heartbeats every 2 ticks, elections after 10 to 20.
    pub tick: Duration,
    /// The shared secret every client and peer must prove it knows (`None`: anyone
    /// may connect; only for a trusted network).
    pub secret: Option<Vec<u8>>,
}

/// Waiting requests are failed (the client tries again) after this long.
const WAIT_LIMIT: Duration = Duration::from_secs(5);

enum Event {
    Peer(Message),
    Request {
        id: u64,
        req: Request,
        reply: Sender<Vec<u8>>,
    },
}

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
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", cfg.data_dir.display()))?;
        let kv = Arc::new(SledKv::open(&cfg.data_dir).map_err(|e| e.to_string())?);
        let voters: Vec<u64> = cfg.peers.keys().copied().collect();
        let log = SledLog::open(kv.db(), voters)?;
        let rcfg = ReplicaConfig {
            id: cfg.id,
            // Distinct timeouts (see ReplicaConfig): 10, 12, 14, ... ticks.
            election_ticks: 10 + 2 * (cfg.id.saturating_sub(1) % 5) as usize,
            heartbeat_ticks: 2,
        };
        let engine: Arc<dyn Kv> = kv;
        let replica = Replica::new(&rcfg, log, engine.clone()).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let peers = spawn_peer_senders(&cfg, &stop);
        let shared = Arc::new(Shared {
            engine,
            leading: AtomicBool::new(false),
            leader: std::sync::Mutex::new(String::new()),
        });
        spawn_listener(
            listener,
            tx,
            stop.clone(),
            cfg.secret.clone().map(Arc::new),
            shared.clone(),
        );
        let s = stop.clone();
        let driver = thread::Builder::new()
            .name(format!("raft-{}", cfg.id))
            .spawn(move || Driver::new(cfg, replica, peers, shared).run(rx, &s))
            .map_err(|e| e.to_string())?;
        tracing::info!(addr = %addr, "meta server replica started");
        Ok(Server {
            stop,
            driver: Some(driver),
            addr,
        })
    }

    /// Runs until the driver fails (a log write error) or the process is stopped.
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

/// What connection threads may know without asking the driver: the engine (for reads
/// of the applied state) and whether this replica leads.
struct Shared {
    engine: Arc<dyn Kv>,
    leading: AtomicBool,
    /// The leader's address ("" unknown).
    leader: std::sync::Mutex<String>,
}

fn spawn_listener(
    listener: TcpListener,
    tx: Sender<Event>,
    stop: Arc<AtomicBool>,
    secret: Option<Arc<Vec<u8>>>,
    shared: Arc<Shared>,
) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let _ = conn.set_nodelay(true);
            let (tx, stop, secret, shared) =
                (tx.clone(), stop.clone(), secret.clone(), shared.clone());
            thread::spawn(move || serve_connection(conn, tx, stop, secret, shared));
        }
    });
}

/// The server side of the handshake (see `wire`): challenge, proof, or denied.
fn authenticate(conn: &mut TcpStream, secret: Option<&[u8]>) -> bool {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(ch) = wire::challenge() else {
        return false;
    };
    if wire::write_frame(conn, wire::KIND_CHALLENGE, &ch).is_err() {
        return false;
    }
    let ok = match wire::read_frame(conn) {
        Ok((wire::KIND_HELLO, p)) => secret.is_none_or(|s| wire::verify(s, &ch, &p)),
        _ => false,
    };
    if !ok {
        let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!(peer = %peer, "refused a connection that did not prove the volume's secret");
        let _ = wire::write_frame(conn, wire::KIND_DENIED, b"wrong secret");
    }
    let _ = conn.set_read_timeout(None);
    ok
}

/// Reads frames from one connection until it closes or sends something bad.
fn serve_connection(
    mut conn: TcpStream,
    tx: Sender<Event>,
    stop: Arc<AtomicBool>,
    secret: Option<Arc<Vec<u8>>>,
    shared: Arc<Shared>,
) {
    if !authenticate(&mut conn, secret.as_deref().map(|s| s.as_slice())) {
        return;
    }
    let Ok(writer) = conn.try_clone() else {
        return;
    };
    let writer = Arc::new(std::sync::Mutex::new(writer));
    let (reply_tx, reply_rx) = mpsc::channel::<Vec<u8>>();
    let (stop_w, w) = (stop.clone(), writer.clone());
    thread::spawn(move || {
        for body in reply_rx {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            if stop_w.load(Ordering::SeqCst)
                || wire::write_frame(&mut *w, wire::KIND_RESPONSE, &body).is_err()
            {
                return;
            }
        }
    });
    let mut reader = BufReader::new(conn);
    while !stop.load(Ordering::SeqCst) {
        let ev = match wire::read_frame(&mut reader) {
            Ok((wire::KIND_RAFT, body)) => match Message::parse_from_bytes(&body) {
                Ok(m) => Event::Peer(m),
                Err(_) => break,
            },
            Ok((wire::KIND_REQUEST, body)) => match wire::decode_request(&body) {
                // Reads of the applied state need no Raft: answered here, at once.
                Ok((
                    id,
                    req @ (Request::GetApplied(_)
                    | Request::ScanApplied { .. }
                    | Request::GetManyApplied(_)),
                )) => {
                    let resp = if shared.leading.load(Ordering::Acquire) {
                        serve_read(&*shared.engine, &req)
                    } else {
                        let leader = shared.leader.lock().unwrap_or_else(|e| e.into_inner());
                        Response::NotLeader(leader.clone())
                    };
                    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                    let body = wire::encode_response(id, &resp);
                    if wire::write_frame(&mut *w, wire::KIND_RESPONSE, &body).is_err() {
                        break;
                    }
                    continue;
                }
                Ok((id, req)) => Event::Request {
                    id,
                    req,
                    reply: reply_tx.clone(),
                },
                Err(_) => break,
            },
            // A bad frame closes the connection; nothing else is affected.
            _ => break,
        };
        if tx.send(ev).is_err() {
            break;
        }
    }
}

/// One sender thread per peer: connects when there is something to send, drops
/// messages it cannot deliver (Raft sends again).
fn spawn_peer_senders(
    cfg: &ServerConfig,
    stop: &Arc<AtomicBool>,
) -> HashMap<u64, SyncSender<Message>> {
    let mut out = HashMap::new();
    for (&id, addr) in &cfg.peers {
        if id == cfg.id {
            continue;
        }
        let (tx, rx) = mpsc::sync_channel::<Message>(4096);
        let (addr, stop) = (addr.clone(), stop.clone());
        let secret = cfg.secret.clone().unwrap_or_default();
        thread::spawn(move || peer_sender(addr, rx, stop, secret));
        out.insert(id, tx);
    }
    out
}

fn peer_sender(addr: String, rx: Receiver<Message>, stop: Arc<AtomicBool>, secret: Vec<u8>) {
    let mut conn: Option<TcpStream> = None;
    let mut retry_at = Instant::now();
    for m in rx {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if conn.is_none() && Instant::now() >= retry_at {
            conn = connect(&addr, Duration::from_millis(500))
                .and_then(|mut c| {
                    c.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let mut r = c.try_clone()?;
                    wire::answer_challenge(&mut r, &mut c, &secret)?;
                    Ok(c)
                })
                .ok();
            if conn.is_none() {
                retry_at = Instant::now() + Duration::from_millis(100);
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let Ok(body) = m.write_to_bytes() else {
            continue;
        };
        if wire::write_frame(c, wire::KIND_RAFT, &body).is_err() {
            conn = None;
        }
    }
}

/// Connects to `addr` (host:port, resolved) within `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing"))))
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
    peers: HashMap<u64, SyncSender<Message>>,
    commits: HashMap<RequestId, Vec<Waiting>>,
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
        peers: HashMap<u64, SyncSender<Message>>,
        shared: Arc<Shared>,
    ) -> Self {
        Driver {
            shared,
            cfg,
            replica,
            peers,
            commits: HashMap::new(),
            reads: HashMap::new(),
            confirmed: Vec::new(),
            next_ctx: 1,
            was_leader: false,
        }
    }

    fn run(mut self, rx: Receiver<Event>, stop: &AtomicBool) -> Result<(), String> {
        let mut next_tick = Instant::now() + self.cfg.tick;
        while !stop.load(Ordering::SeqCst) {
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
        self.cfg
            .peers
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
                    // Reads a later commit or check will confirm: what is applied now.
                    read @ (Request::GetApplied(_)
                    | Request::ScanApplied { .. }
                    | Request::GetManyApplied(_)) => answer(&w, &self.serve(&read)),
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
        for m in out.messages {
            if let Some(p) = self.peers.get(&m.to) {
                // A full queue drops the message: Raft sends again.
                let _ = p.try_send(m);
            }
        }
        for a in out.applied {
            let Some(id) = a.id else { continue };
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
                answer(&w, &self.serve(&req));
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
    fn serve(&self, req: &Request) -> Response {
        serve_read(&**self.replica.engine(), req)
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
    }
}

fn answer(w: &Waiting, r: &Response) {
    let _ = w.reply.send(wire::encode_response(w.id, r));
}

/// A read of `engine`'s applied state.
fn serve_read(engine: &dyn Kv, req: &Request) -> Response {
    let r = match req {
        Request::Get(k) | Request::GetApplied(k) => {
            kv::read(engine, |t| t.get(k)).map(Response::Value)
        }
        Request::Scan { start, end, limit } | Request::ScanApplied { start, end, limit } => {
            kv::read(engine, |t| t.scan(start, end, *limit as usize)).map(Response::Pairs)
        }
        Request::Check(cmd) => kv::read(engine, |t| reads_hold(t, &cmd.reads)).map(Response::Holds),
        Request::GetManyApplied(keys) => {
            kv::read(engine, |t| t.get_many(keys)).map(Response::Values)
        }
        Request::Commit(_) => return Response::Retry("not a read".into()),
    };
    r.unwrap_or_else(|e| Response::Retry(format!("engine error: {e}")))
}
