//! The peer protocol over TCP (frames in `core::cache::peer_wire`): the group key and the
//! handshake's proofs, reading and writing frames on tokio streams, and [`TcpPeers`], the
//! client side: one multiplexed connection per peer, with any number of requests in
//! flight, answered in any order.
//!
//! Callers are synchronous threads (FUSE, warm-up, a peer server's blocking pool): a call
//! hands its request to the connection's task over a channel and waits for the answer on
//! a std channel with the deadline, so no thread ever blocks inside the runtime.

use super::{PeerError, Transport};
use ferrofs_core::cache::peer_wire::{Frame, Op, Reply, WireError, NONCE_LEN, PROOF_LEN};
use ferrofs_core::chunk::BlockKey;
use hmac::{KeyInit, Mac};
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc as tmpsc;

/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The key members of `group` in volume `uuid` prove to each other, derived from the
/// volume's peer secret (kept in the metadata engine, so only clients of the volume
/// know it).
pub fn group_key(peer_secret: &[u8; 32], uuid: &str, group: &str) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(peer_secret).expect("HMAC takes any key");
    m.update(b"ferrofs-peer-key-1");
    m.update(&(uuid.len() as u32).to_be_bytes());
    m.update(uuid.as_bytes());
    m.update(group.as_bytes());
    m.finalize().into_bytes().into()
}

/// The proof that the side playing `role` (b'c' client, b's' server) holds `key`, for
/// the other side's `nonce`. Roles differ so a server's proof cannot be replayed as a
/// client's.
pub fn proof(key: &[u8; 32], role: u8, nonce: &[u8; NONCE_LEN]) -> [u8; PROOF_LEN] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
    m.update(b"ferrofs-peer-1");
    m.update(&[role]);
    m.update(nonce);
    m.finalize().into_bytes().into()
}

/// Whether `got` proves `key` for `role` and `nonce` (in constant time).
pub fn verify(key: &[u8; 32], role: u8, nonce: &[u8; NONCE_LEN], got: &[u8]) -> bool {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
    m.update(b"ferrofs-peer-1");
    m.update(&[role]);
    m.update(nonce);
    m.verify_slice(got).is_ok()
}

/// 32 fresh random bytes.
pub fn random_bytes() -> io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// The runtime the group's connections and server run on (two workers: they only move
/// bytes; block I/O runs on its blocking pool).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferrofs-peer")
            .enable_all()
            .build()
            .expect("cannot start the cache group's runtime")
    })
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut buf = vec![0u8; 4];
    match r.read_exact(&mut buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let total = Frame::wanted(&buf)
        .map_err(bad)?
        .expect("4 bytes are there");
    buf.resize(total, 0);
    r.read_exact(&mut buf[4..]).await?;
    match Frame::decode(&buf).map_err(bad)? {
        Some((f, _)) => Ok(Some(f)),
        None => Err(bad(WireError::Malformed("short frame"))),
    }
}

fn bad(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The client's half of the handshake on a fresh connection.
pub async fn client_handshake<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    s: &mut S,
    key: &[u8; 32],
) -> Result<(), PeerError> {
    let nonce = random_bytes().map_err(|e| PeerError::Unreachable(e.to_string()))?;
    let proto = |e: io::Error| PeerError::Protocol(e.to_string());
    let Some(Frame::Challenge { nonce: theirs }) = read_frame(s).await.map_err(proto)? else {
        return Err(PeerError::Protocol(
            "the peer did not start with a challenge (not a ferrofs cache-group member?)".into(),
        ));
    };
    let hello = Frame::Hello {
        proof: proof(key, b'c', &theirs),
        nonce,
    };
    s.write_all(&hello.encode()).await.map_err(proto)?;
    match read_frame(s).await.map_err(proto)? {
        Some(Frame::Welcome { proof: p }) if verify(key, b's', &nonce, &p) => Ok(()),
        Some(Frame::Welcome { .. }) => Err(PeerError::Protocol(
            "the peer could not prove the group key (a member of another volume or group?)".into(),
        )),
        Some(Frame::Denied) => Err(PeerError::Protocol(
            "the peer refused our proof: is it a member of this volume's group?".into(),
        )),
        _ => Err(PeerError::Protocol(
            "unexpected answer to the handshake".into(),
        )),
    }
}

type Answer = mpsc::SyncSender<Result<Reply, PeerError>>;

struct Outgoing {
    id: u64,
    frame: Vec<u8>,
    answer: Answer,
}

/// One connection to a peer, as its callers see it.
struct Conn {
    tx: tmpsc::UnboundedSender<Outgoing>,
    dead: Arc<AtomicBool>,
}

/// Calls to peers over TCP.
pub struct TcpPeers {
    key: [u8; 32],
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl TcpPeers {
    pub fn new(key: [u8; 32]) -> TcpPeers {
        TcpPeers {
            key,
            conns: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The live connection to `addr`, or a new one (connected in the background:
    /// requests queue until the handshake is done).
    fn conn(&self, addr: &str, timeout: Duration) -> Arc<Conn> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = conns.get(addr) {
            if !c.dead.load(Ordering::Relaxed) {
                return c.clone();
            }
        }
        let (tx, rx) = tmpsc::unbounded_channel();
        let dead = Arc::new(AtomicBool::new(false));
        let c = Arc::new(Conn {
            tx,
            dead: dead.clone(),
        });
        conns.insert(addr.to_string(), c.clone());
        let (addr, key) = (addr.to_string(), self.key);
        runtime().spawn(async move {
            let why = run_conn(&addr, key, rx, timeout.max(HANDSHAKE_TIMEOUT)).await;
            dead.store(true, Ordering::Relaxed);
            tracing::debug!(peer = %addr, "peer connection closed: {why}");
        });
        c
    }
}

impl Transport for TcpPeers {
    fn call(
        &self,
        addr: &str,
        op: Op,
        local_only: bool,
        key: &BlockKey,
        timeout: Duration,
    ) -> Result<Reply, PeerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::Request {
            id,
            op,
            local_only,
            key: *key,
        }
        .encode();
        let (answer, got) = mpsc::sync_channel(1);
        let conn = self.conn(addr, timeout);
        if conn.tx.send(Outgoing { id, frame, answer }).is_err() {
            conn.dead.store(true, Ordering::Relaxed);
            return Err(PeerError::Unreachable("connection closed".into()));
        }
        match got.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PeerError::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(PeerError::Unreachable("connection closed".into()))
            }
        }
    }
}

/// Connects, shakes hands, then sends queued requests and routes answers to their
/// callers until either side fails. Every caller still waiting is told when it ends.
async fn run_conn(
    addr: &str,
    key: [u8; 32],
    mut rx: tmpsc::UnboundedReceiver<Outgoing>,
    connect_timeout: Duration,
) -> String {
    let pending: Arc<Mutex<HashMap<u64, Answer>>> = Arc::default();
    let fail_all = |pending: &Mutex<HashMap<u64, Answer>>, why: &str| {
        for (_, a) in pending.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = a.try_send(Err(PeerError::Unreachable(why.to_string())));
        }
    };
    let connected = tokio::time::timeout(connect_timeout, async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let _ = s.set_nodelay(true);
        client_handshake(&mut s, &key).await?;
        Ok::<_, PeerError>(s)
    })
    .await;
    let stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = e.to_string();
            rx.close();
            while let Ok(o) = rx.try_recv() {
                let _ = o.answer.try_send(Err(e.clone()));
            }
            if matches!(e, PeerError::Protocol(_)) {
                tracing::warn!(peer = %addr, "cache group peer: {why}");
            }
            return why;
        }
        Err(_) => {
            rx.close();
            while let Ok(o) = rx.try_recv() {
                let _ = o.answer.try_send(Err(PeerError::Timeout));
            }
            return "connect timed out".into();
        }
    };
    let (mut r, mut w) = stream.into_split();
    let reader_pending = pending.clone();
    let reader = async move {
        loop {
            match read_frame(&mut r).await {
                Ok(Some(Frame::Response { id, reply })) => {
                    let a = reader_pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    if let Some(a) = a {
                        let _ = a.try_send(Ok(reply));
                    }
                }
                Ok(Some(_)) => return "the peer sent a frame that is not a response".to_string(),
                Ok(None) => return "the peer closed the connection".to_string(),
                Err(e) => return e.to_string(),
            }
        }
    };
    let writer = async {
        while let Some(o) = rx.recv().await {
            pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(o.id, o.answer);
            if let Err(e) = w.write_all(&o.frame).await {
                return e.to_string();
            }
        }
        "no more callers".to_string()
    };
    let why = tokio::select! {
        why = reader => why,
        why = writer => why,
    };
    rx.close();
    while let Ok(o) = rx.try_recv() {
        let _ = o.answer.try_send(Err(PeerError::Unreachable(why.clone())));
    }
    fail_all(&pending, &why);
    why
}
