//! The meta server's sockets: the listener, one thread per connection (frames in:
//! peers' Raft messages and clients' requests; frames out: answers), and one sender
//! thread per peer. Connection threads answer reads of the applied state and the
//! change feed themselves; everything else goes to the driver (`server`).

use super::tls::Stream;
use super::wire::{self, Request, Response};
use ferrofs_core::kv::{self, Kv};
use ferrofs_core::replica::{applied_index_in, apply::reads_hold, Feed};
use protobuf::Message as _;
use raft::eraftpb::Message;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The most keys one change-feed answer carries.
const FEED_PAGE: usize = 8192;

/// What reaches the driver.
pub(super) enum Event {
    Peer(Message),
    Request {
        id: u64,
        req: Request,
        reply: Sender<Vec<u8>>,
    },
}

/// What connection threads may know without asking the driver: the engine (for reads
/// of the applied state) and whether this replica leads.
pub(super) struct Shared {
    pub(super) engine: Arc<dyn Kv>,
    pub(super) leading: AtomicBool,
    /// The leader's address ("" unknown).
    pub(super) leader: Mutex<String>,
    /// The keys the last applied entries wrote.
    pub(super) feed: Mutex<Feed>,
}

pub(super) fn spawn_listener(
    listener: TcpListener,
    tx: Sender<Event>,
    stop: Arc<AtomicBool>,
    secret: Option<Arc<Vec<u8>>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let _ = conn.set_nodelay(true);
            let (tx, stop, secret, shared, tls) = (
                tx.clone(),
                stop.clone(),
                secret.clone(),
                shared.clone(),
                tls.clone(),
            );
            thread::spawn(move || {
                let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                match Stream::accept(conn, tls.as_ref()) {
                    Ok(conn) => serve_connection(conn, tx, stop, secret, shared),
                    Err(e) => tracing::warn!(peer = %peer, "TLS handshake failed: {e}"),
                }
            });
        }
    });
}

/// The server side of the handshake (see `wire`): challenge, proof, or denied.
fn authenticate(conn: &mut Stream, secret: Option<&[u8]>) -> bool {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(ch) = wire::challenge() else {
        return false;
    };
    if wire::write_frame(conn, wire::KIND_CHALLENGE, &ch).is_err() {
        return false;
    }
    let ok = match wire::read_frame(conn) {
        Ok((wire::KIND_HELLO, p)) => secret.is_none_or(|s| wire::verify(s, &ch, &p)),
        Ok(_) => false,
        Err(e) => {
            // Gone before it answered (a probe, a reset, a proxy closing): not a refusal.
            tracing::debug!("a connection closed during the handshake: {e}");
            return false;
        }
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
    mut conn: Stream,
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
                Ok((id, Request::Changes { since })) => {
                    let feed = shared.feed.lock().unwrap_or_else(|e| e.into_inner());
                    let resp = Response::Changes(feed.since(since, FEED_PAGE));
                    drop(feed);
                    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                    let body = wire::encode_response(id, &resp);
                    if wire::write_frame(&mut *w, wire::KIND_RESPONSE, &body).is_err() {
                        break;
                    }
                    continue;
                }
                Ok((
                    id,
                    req @ (Request::GetApplied(_)
                    | Request::ScanApplied { .. }
                    | Request::GetManyApplied(_)),
                )) => {
                    let (resp, at) = if shared.leading.load(Ordering::Acquire) {
                        serve_read(&*shared.engine, &req)
                    } else {
                        let leader = shared.leader.lock().unwrap_or_else(|e| e.into_inner());
                        (Response::NotLeader(leader.clone()), None)
                    };
                    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                    let body = wire::encode_read_response(id, &resp, at);
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

/// A sender thread for the peer at `addr`: connects when there is something to send,
/// drops messages it cannot deliver (Raft sends again). It ends when the returned
/// sender is dropped (the peer left the cluster) or the server stops.
pub(super) fn spawn_peer_sender(
    addr: String,
    secret: Vec<u8>,
    tls: Option<Arc<rustls::ClientConfig>>,
    stop: &Arc<AtomicBool>,
) -> SyncSender<Message> {
    let (tx, rx) = mpsc::sync_channel::<Message>(4096);
    let stop = stop.clone();
    thread::spawn(move || peer_sender(addr, rx, stop, secret, tls));
    tx
}

fn peer_sender(
    addr: String,
    rx: Receiver<Message>,
    stop: Arc<AtomicBool>,
    secret: Vec<u8>,
    tls: Option<Arc<rustls::ClientConfig>>,
) {
    let mut conn: Option<Stream> = None;
    let mut retry_at = Instant::now();
    for m in rx {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if conn.is_none() && Instant::now() >= retry_at {
            conn = connect_stream(&addr, Duration::from_millis(500), tls.as_ref())
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

/// Connects to `addr` within `timeout`, with TLS if `tls` is given.
pub fn connect_stream(
    addr: &str,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<Stream> {
    let s = connect(addr, timeout)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Stream::connect(s, addr, tls)
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

/// A read of `engine`'s applied state, and the log index of that state (read in the
/// same view), which lets a client see that several reads came from one state.
pub(super) fn serve_read(engine: &dyn Kv, req: &Request) -> (Response, Option<u64>) {
    let at = |t: &mut dyn ferrofs_core::kv::Txn| applied_index_in(t);
    let r = match req {
        Request::Get(k) | Request::GetApplied(k) => {
            kv::read(engine, |t| Ok((Response::Value(t.get(k)?), Some(at(t)?))))
        }
        Request::Scan { start, end, limit } | Request::ScanApplied { start, end, limit } => {
            kv::read(engine, |t| {
                let pairs = t.scan(start, end, *limit as usize)?;
                Ok((Response::Pairs(pairs), Some(at(t)?)))
            })
        }
        Request::Check(cmd) => kv::read(engine, |t| {
            Ok((Response::Holds(reads_hold(t, &cmd.reads)?), None))
        }),
        Request::GetManyApplied(keys) => kv::read(engine, |t| {
            Ok((Response::Values(t.get_many(keys)?), Some(at(t)?)))
        }),
        _ => return (Response::Retry("not a read".into()), None),
    };
    r.unwrap_or_else(|e| (Response::Retry(format!("engine error: {e}")), None))
}
