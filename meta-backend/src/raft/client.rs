//! The client of a meta-server cluster (`raft://host1:port,host2:port,...`): the
//! [`Remote`] that `core::replica::OptimisticKv` runs transactions over.
//!
//! It finds the leader (a follower answers with the leader's address), follows it
//! when it changes, and tries the next server when one does not answer. A commit it
//! sends again carries the same request id, so replicas apply it once. A call that
//! finds no working leader for [`RaftClient::patience`] fails with EIO.

use super::net::connect_stream;
use super::replica::Change;
use super::tls::Stream;
use super::wire::{self, MembersInfo, Request, Response};
use ferrofs_core::kv::KvPair;
use ferrofs_core::replica::optimistic::Values;
use ferrofs_core::replica::{ChangeBatch, Command, Outcome, ReadCheck, Remote, RequestId};
use ferrofs_core::{Errno, Result};
use std::collections::HashMap;
use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a call waits for one server's answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// A connection with its reader.
struct Conn {
    writer: Stream,
    reader: BufReader<Stream>,
}

/// A client of the cluster at `addrs`.
pub struct RaftClient {
    addrs: Vec<String>,
    /// The server believed to lead.
    leader: Mutex<String>,
    /// Idle connections per server (each call takes one: calls run in parallel).
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    next_id: AtomicU64,
    patience: Duration,
    /// The volume's secret, proven to every server on connecting.
    secret: Vec<u8>,
    /// TLS to the servers (with the CA that vouches for them), if they speak it.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A clone has the same servers and settings, and connections of its own.
impl Clone for RaftClient {
    fn clone(&self) -> Self {
        let leader = self
            .leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        RaftClient {
            addrs: self.addrs.clone(),
            leader: Mutex::new(leader),
            idle: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            patience: self.patience,
            secret: self.secret.clone(),
            tls: self.tls.clone(),
        }
    }
}

impl std::fmt::Debug for RaftClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RaftClient({})", self.addrs.join(","))
    }
}

impl RaftClient {
    pub fn new(addrs: Vec<String>) -> RaftClient {
        RaftClient {
            leader: Mutex::new(addrs.first().cloned().unwrap_or_default()),
            addrs,
            idle: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            patience: Duration::from_secs(30),
            secret: Vec::new(),
            tls: None,
        }
    }

    /// Speak TLS to the servers, trusting the certificates `tls` trusts.
    pub fn tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The shared secret the servers ask for.
    pub fn secret(mut self, secret: &[u8]) -> Self {
        self.secret = secret.to_vec();
        self
    }

    /// How long a call keeps looking for a leader before it fails (default 30 s).
    pub fn patience(mut self, d: Duration) -> Self {
        self.patience = d;
        self
    }

    fn next_after(&self, addr: &str) -> String {
        let i = self
            .addrs
            .iter()
            .position(|a| a == addr)
            .map_or(0, |i| i + 1);
        self.addrs[i % self.addrs.len()].clone()
    }

    /// Sends `req` to the leader, following redirects, until it is answered.
    pub fn call(&self, req: &Request) -> Result<Response> {
        self.call_indexed(req).map(|(r, _)| r)
    }

    /// [`RaftClient::call`], and for a read, the log index of the state it came from.
    pub fn call_indexed(&self, req: &Request) -> Result<(Response, Option<u64>)> {
        if self.addrs.is_empty() {
            return Err(Errno::EIO);
        }
        let deadline = Instant::now() + self.patience;
        let mut target = self
            .leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut last_error: String;
        loop {
            // A server that took the request but does not answer (paused, cut off) is
            // given up on when the patience runs out, not after the socket's timeout.
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(200), ANSWER_LIMIT);
            match self.call_at(&target, req, wait) {
                Ok((Response::NotLeader(hint), _)) => {
                    target = if !hint.is_empty() && hint != target {
                        hint
                    } else {
                        std::thread::sleep(Duration::from_millis(50));
                        self.next_after(&target)
                    };
                    last_error = "no leader".into();
                }
                Ok((Response::Retry(why), _)) => {
                    last_error = why;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(r) => {
                    *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = target;
                    return Ok(r);
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    tracing::error!(
                        server = %target,
                        "the meta server refused this client's secret: give the volume's secret \
                         in the META-URL (raft://:SECRET@host:port,...) or FERROFS_META_SECRET"
                    );
                    return Err(Errno::EACCES);
                }
                Err(e) => {
                    last_error = format!("{target}: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    target = self.next_after(&target);
                }
            }
            if Instant::now() >= deadline {
                tracing::error!(
                    servers = %self.addrs.join(","),
                    "no meta server answered as leader for {:?} (last: {last_error})",
                    self.patience
                );
                return Err(Errno::EIO);
            }
        }
    }

    /// The cluster as its leader sees it: members, addresses, how far each replica is.
    pub fn members(&self) -> Result<MembersInfo> {
        match self.call(&Request::Members)? {
            Response::Members(m) => Ok(m),
            r => Err(unexpected(r)),
        }
    }

    /// Proposes a membership change and waits until it is applied. A change refused
    /// for now (another one pending) is tried again until [`RaftClient::patience`]
    /// runs out.
    pub fn change(&self, change: &Change) -> Result<()> {
        match self.call(&Request::Change(change.clone()))? {
            Response::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Asks the leader to hand leadership to replica `to`.
    pub fn transfer_leader(&self, to: u64) -> Result<()> {
        match self.call(&Request::TransferLeader(to))? {
            Response::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// The change feed after `since`, from the server this client last reached.
    pub fn changes(&self, since: u64) -> Result<ChangeBatch> {
        match self.call(&Request::Changes { since })? {
            Response::Changes(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    /// Whether the server at `addr` answers as the leader right now.
    pub fn is_leader(addr: &str, secret: &[u8]) -> bool {
        let c = RaftClient::new(vec![addr.to_string()]).secret(secret);
        matches!(
            c.call_once(addr, &Request::Get(b"setting".to_vec())),
            Ok(Response::Value(_))
        )
    }

    /// One request to one server, no redirects or retries.
    pub fn call_once(&self, addr: &str, req: &Request) -> std::io::Result<Response> {
        self.call_at(addr, req, ANSWER_LIMIT).map(|(r, _)| r)
    }

    fn call_at(
        &self,
        addr: &str,
        req: &Request,
        wait: Duration,
    ) -> std::io::Result<(Response, Option<u64>)> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(addr)
            .and_then(|v| v.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let mut s = connect_stream(addr, Duration::from_secs(1), self.tls.as_ref())?;
                let mut reader = BufReader::new(s.try_clone()?);
                wire::answer_challenge(&mut reader, &mut s, &self.secret)?;
                Conn { reader, writer: s }
            }
        };
        conn.writer.set_read_timeout(Some(wait))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        wire::write_frame(
            &mut conn.writer,
            wire::KIND_REQUEST,
            &wire::encode_request(id, req),
        )?;
        let (kind, body) = wire::read_frame(&mut conn.reader)?;
        if kind == wire::KIND_DENIED {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the server refused the secret",
            ));
        }
        if kind != wire::KIND_RESPONSE {
            return Err(std::io::Error::other("not a response"));
        }
        let (got, resp, at) = wire::decode_read_response(&body, req)?;
        if got != id {
            return Err(std::io::Error::other("a response to another request"));
        }
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_string())
            .or_default()
            .push(conn);
        Ok((resp, at))
    }
}

fn unexpected(r: Response) -> Errno {
    tracing::error!("unexpected answer from a meta server: {r:?}");
    Errno::EIO
}

impl Remote for RaftClient {
    fn get(&self, key: &[u8], fresh: bool) -> Result<Option<Vec<u8>>> {
        self.get_at(key, fresh).map(|(v, _)| v)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize, fresh: bool) -> Result<Vec<KvPair>> {
        self.scan_at(start, end, limit, fresh).map(|(p, _)| p)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.get_many_at(keys).map(|(v, _)| v)
    }

    fn get_at(&self, key: &[u8], fresh: bool) -> Result<(Option<Vec<u8>>, Option<u64>)> {
        let req = if fresh {
            Request::Get(key.to_vec())
        } else {
            Request::GetApplied(key.to_vec())
        };
        match self.call_indexed(&req)? {
            (Response::Value(v), at) => Ok((v, at)),
            (r, _) => Err(unexpected(r)),
        }
    }

    fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        fresh: bool,
    ) -> Result<(Vec<KvPair>, Option<u64>)> {
        let (start, end) = (start.to_vec(), end.to_vec());
        let limit = limit.min(u32::MAX as usize) as u32;
        let req = if fresh {
            Request::Scan { start, end, limit }
        } else {
            Request::ScanApplied { start, end, limit }
        };
        match self.call_indexed(&req)? {
            (Response::Pairs(p), at) => Ok((p, at)),
            (r, _) => Err(unexpected(r)),
        }
    }

    fn get_many_at(&self, keys: &[Vec<u8>]) -> Result<(Values, Option<u64>)> {
        match self.call_indexed(&Request::GetManyApplied(keys.to_vec()))? {
            (Response::Values(v), at) if v.len() == keys.len() => Ok((v, at)),
            (r, _) => Err(unexpected(r)),
        }
    }

    fn check(&self, reads: &[ReadCheck]) -> Result<bool> {
        let cmd = Command {
            id: RequestId { client: 0, seq: 0 },
            done_below: 0,
            reads: reads.to_vec(),
            writes: Default::default(),
        };
        match self.call(&Request::Check(cmd))? {
            Response::Holds(h) => Ok(h),
            r => Err(unexpected(r)),
        }
    }

    fn commit(&self, cmd: &Command) -> Result<Outcome> {
        match self.call(&Request::Commit(cmd.clone()))? {
            Response::Outcome(o) => Ok(o),
            r => Err(unexpected(r)),
        }
    }
}
