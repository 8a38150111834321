//! Cache groups, the shell side: a member asks a block's owner for it over the peer
//! protocol, serves the blocks it owns to the others, and keeps its registration and its
//! view of the group fresh in the metadata engine.
//!
//! - [`Group`]: where a block comes from ([`core::cache::group::GroupView`] decides), the
//!   call to its owner with a deadline (`--remote-timeout`) and a circuit breaker per peer,
//!   and the counters of peer traffic. Any failure — timeout, refused connection, a bad
//!   or corrupt answer — makes the caller read object storage instead: faults degrade,
//!   never break.
//! - [`Transport`]: how calls reach peers. [`net::TcpPeers`] is the real one (tokio,
//!   one multiplexed connection per peer, pipelined requests); the simulator has its own.
//! - [`server`]: the tokio server answering peers' requests from a [`BlockService`]
//!   (the member's block source: its cache, or object storage once, single-flight).
//! - [`membership`]: registering, renewing and reading the group's registrations.
//!
//! [`core::cache::group::GroupView`]: ferrofs_core::cache::group::GroupView

pub mod membership;
pub mod net;
pub mod server;

use crate::vfs::Clock;
use ferrofs_core::cache::group::{Breaker, GroupView, Registration, Route, ViewChange};
use ferrofs_core::cache::peer_wire::{Op, Reply};
use ferrofs_core::chunk::block::decode_block;
use ferrofs_core::chunk::BlockKey;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Failures in a row after which a peer is skipped.
pub const BREAKER_THRESHOLD: u32 = 3;
/// How long a tripped peer is skipped before one probe is let through.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(5);
/// Registrations older than this are of members that are gone.
pub const MEMBER_TTL_SECS: u64 = 30;
/// How long after a membership change an owner may pull a block from its previous
/// owner instead of object storage.
pub const GRACE: Duration = Duration::from_secs(300);

/// Why a call to a peer gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// No answer within the deadline.
    Timeout,
    /// Could not connect, or the connection broke.
    Unreachable(String),
    /// The peer said something that is not the protocol, or failed the handshake.
    Protocol(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Timeout => write!(f, "no answer in time"),
            PeerError::Unreachable(e) => write!(f, "unreachable: {e}"),
            PeerError::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// How calls reach peers.
pub trait Transport: Send + Sync {
    /// Asks the member at `addr` for `op` on `key`, waiting at most `timeout`.
    fn call(
        &self,
        addr: &str,
        op: Op,
        local_only: bool,
        key: &BlockKey,
        timeout: Duration,
    ) -> Result<Reply, PeerError>;
}

/// What a member serves to its peers.
pub trait BlockService: Send + Sync {
    fn serve(&self, op: Op, local_only: bool, key: &BlockKey) -> Reply;
}

/// Counters of peer traffic, as this member saw it.
#[derive(Default, Debug)]
pub struct GroupStats {
    /// Calls made to peers.
    pub calls: AtomicU64,
    /// Blocks peers gave (verified).
    pub hits: AtomicU64,
    /// Bytes of those blocks.
    pub bytes_in: AtomicU64,
    /// Calls that failed (timeout, unreachable, protocol, corrupt answer).
    pub failures: AtomicU64,
    /// Of those, timeouts.
    pub timeouts: AtomicU64,
    /// Answers that failed their checksums or named another block.
    pub corrupt: AtomicU64,
    /// Calls not made because the peer's breaker was open.
    pub skipped: AtomicU64,
    /// Requests this member served.
    pub served: AtomicU64,
    /// Bytes of blocks it served.
    pub bytes_out: AtomicU64,
    /// Blocks it pulled from a previous owner (grace period).
    pub pulled: AtomicU64,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounts {
    pub calls: u64,
    pub hits: u64,
    pub bytes_in: u64,
    pub failures: u64,
    pub timeouts: u64,
    pub corrupt: u64,
    pub skipped: u64,
    pub served: u64,
    pub bytes_out: u64,
    pub pulled: u64,
}

impl GroupStats {
    pub fn snapshot(&self) -> GroupCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GroupCounts {
            calls: g(&self.calls),
            hits: g(&self.hits),
            bytes_in: g(&self.bytes_in),
            failures: g(&self.failures),
            timeouts: g(&self.timeouts),
            corrupt: g(&self.corrupt),
            skipped: g(&self.skipped),
            served: g(&self.served),
            bytes_out: g(&self.bytes_out),
            pulled: g(&self.pulled),
        }
    }
}

/// One member's side of a cache group.
pub struct Group {
    name: String,
    view: Mutex<GroupView>,
    breakers: Mutex<BTreeMap<String, Breaker>>,
    transport: Arc<dyn Transport>,
    timeout: Duration,
    clock: Clock,
    /// Check blocks peers give against their checksums (always, but for the
    /// simulator's planted bug that proves its data checker would notice).
    verify: AtomicBool,
    pub stats: GroupStats,
}

/// What a peer's answer to a warm-up request said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerWarm {
    pub cached: bool,
    pub fetched: bool,
}

impl Group {
    /// `me`: this member's id (`None`: `--no-sharing`, owns nothing).
    pub fn new(
        name: &str,
        me: Option<&str>,
        transport: Arc<dyn Transport>,
        timeout: Duration,
        clock: Clock,
    ) -> Group {
        Group {
            name: name.to_string(),
            view: Mutex::new(GroupView::new(me, MEMBER_TTL_SECS, GRACE.as_nanos() as u64)),
            breakers: Mutex::default(),
            transport,
            timeout,
            clock,
            verify: AtomicBool::new(true),
            stats: GroupStats::default(),
        }
    }

    /// Turns checking peers' blocks off (the simulator's planted bug only).
    pub fn skip_verification(&self) {
        self.verify.store(false, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this member owns blocks (it is not `--no-sharing`).
    pub fn sharing(&self) -> bool {
        lock(&self.view).me().is_some()
    }

    /// Seconds since the Unix epoch on this member's clock (registrations' stamps).
    pub fn now_secs(&self) -> u64 {
        (self.clock)().sec.max(0) as u64
    }

    fn now_ns(&self) -> u64 {
        let t = (self.clock)();
        (t.sec.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.nsec as u64)
    }

    /// Takes the group's registrations as just read.
    pub fn update(&self, members: &[(String, Registration)]) -> ViewChange {
        let now = self.now_ns();
        let change = lock(&self.view).update(members, now / 1_000_000_000, now);
        if !change.is_empty() {
            let mut b = lock(&self.breakers);
            for id in &change.left {
                b.remove(id);
            }
            tracing::info!(
                group = %self.name,
                joined = ?change.joined,
                left = ?change.left,
                "cache group membership changed"
            );
        }
        change
    }

    /// Where block `key` comes from.
    pub fn route(&self, key: &BlockKey) -> Route {
        lock(&self.view).route(key)
    }

    /// The live members: (id, weight, address).
    pub fn members(&self) -> Vec<(String, u32, String)> {
        lock(&self.view).members()
    }

    /// Times the set of owners changed.
    pub fn changes(&self) -> u64 {
        lock(&self.view).changes()
    }

    /// The block's verified data from its owner, if a peer owns it and gives it in time.
    /// `None`: read it from this member's cache or object storage.
    pub fn get(&self, key: &BlockKey) -> Option<Vec<u8>> {
        let Route::Peer { id, addr } = self.route(key) else {
            return None;
        };
        self.get_from_owner(&id, &addr, key)
    }

    /// The block from its owner `id` at `addr` (as routed by the caller).
    pub fn get_from_owner(&self, id: &str, addr: &str, key: &BlockKey) -> Option<Vec<u8>> {
        self.get_from(id, addr, key, false)
    }

    /// The block from the member that owned it before the last membership change, if
    /// that was within the grace period (an owner's miss, before object storage).
    pub fn pull_previous(&self, key: &BlockKey) -> Option<Vec<u8>> {
        let (id, addr) = lock(&self.view).previous_owner(key, self.now_ns())?;
        let data = self.get_from(&id, &addr, key, true)?;
        self.stats.pulled.fetch_add(1, Ordering::Relaxed);
        Some(data)
    }

    fn get_from(&self, id: &str, addr: &str, key: &BlockKey, local_only: bool) -> Option<Vec<u8>> {
        let reply = self.call(id, addr, Op::Get, local_only, key)?;
        if matches!(reply, Reply::Missing | Reply::Failed(_)) {
            self.answered(id);
        }
        match reply {
            Reply::Block(k, object) if !self.verify.load(Ordering::Relaxed) => {
                let mut data = object;
                data.truncate(k.len.min(key.len) as usize);
                Some(data)
            }
            Reply::Block(k, object) if k == *key => match decode_block(key.len, &object) {
                Ok(_) => {
                    self.answered(id);
                    let mut data = object;
                    data.truncate(key.len as usize);
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    Some(data)
                }
                Err(e) => {
                    self.corrupt(id, &format!("block {key:?} failed its checksums: {e}"));
                    None
                }
            },
            Reply::Block(k, _) => {
                self.corrupt(id, &format!("asked for block {key:?}, got {k:?}"));
                None
            }
            Reply::Missing => None,
            Reply::Failed(e) => {
                tracing::debug!(peer = %id, "peer could not serve {key:?}: {e}");
                None
            }
            Reply::Warmed { .. } => {
                self.corrupt(id, "answered a read with a warm-up result");
                None
            }
        }
    }

    /// Asks the block's owner to warm (`Warm`), check (`Check`) or evict (`Evict`) it.
    /// `None` when this member owns it, or the owner does not answer.
    pub fn warm(&self, key: &BlockKey, op: Op) -> Option<Result<PeerWarm, String>> {
        let Route::Peer { id, addr } = self.route(key) else {
            return None;
        };
        let reply = self.call(&id, &addr, op, false, key)?;
        if !matches!(reply, Reply::Block(..)) {
            self.answered(&id);
        }
        match reply {
            Reply::Warmed { cached, fetched } => Some(Ok(PeerWarm { cached, fetched })),
            Reply::Missing => Some(Err(format!("block {key:?} is not in object storage"))),
            Reply::Failed(e) => Some(Err(format!("member {id}: {e}"))),
            Reply::Block(..) => {
                self.corrupt(&id, "answered a warm-up with a block");
                None
            }
        }
    }

    fn answered(&self, id: &str) {
        if let Some(b) = lock(&self.breakers).get_mut(id) {
            b.success();
        }
    }

    /// One call through the breaker and the deadline; `None` on any failure.
    fn call(
        &self,
        id: &str,
        addr: &str,
        op: Op,
        local_only: bool,
        key: &BlockKey,
    ) -> Option<Reply> {
        let now = self.now_ns();
        let allowed = breaker(&mut lock(&self.breakers), id).allow(now);
        if !allowed {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        match self.transport.call(addr, op, local_only, key, self.timeout) {
            // The caller closes the breaker once the answer proves good.
            Ok(reply) => Some(reply),
            Err(e) => {
                if e == PeerError::Timeout {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                self.failed(id, &e.to_string());
                None
            }
        }
    }

    fn corrupt(&self, id: &str, what: &str) {
        self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
        self.failed(id, what);
    }

    fn failed(&self, id: &str, what: &str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ns();
        let mut breakers = lock(&self.breakers);
        let b = breaker(&mut breakers, id);
        let was_open = b.is_open(now);
        b.failure(now);
        if !was_open && b.is_open(now) {
            tracing::warn!(
                group = %self.name,
                peer = %id,
                "cache group peer failing ({what}): reading its blocks from object storage for {}s",
                BREAKER_COOLDOWN.as_secs()
            );
        } else {
            tracing::debug!(peer = %id, "cache group call failed: {what}");
        }
    }
}

/// The breaker of member `id`, made on first use.
fn breaker<'a>(breakers: &'a mut BTreeMap<String, Breaker>, id: &str) -> &'a mut Breaker {
    breakers
        .entry(id.to_string())
        .or_insert_with(|| Breaker::new(BREAKER_THRESHOLD, BREAKER_COOLDOWN.as_nanos() as u64))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
