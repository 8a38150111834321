//! Cache groups: which member of a group of clients and cache nodes owns a block, how a
//! member's registration is stored, and when a peer that keeps failing is skipped.
//!
//! Members register under `N len group id` in the metadata engine (see
//! [`crate::meta::Meta::register_member`]) with their address, weight and the time they
//! last said they were alive. Every member reads the group's registrations now and then and
//! feeds them to its [`GroupView`], which keeps a consistent-hash ring
//! ([`super::ring::HashRing`]) of the live members: a block's owner is the same on every
//! member that has seen the same registrations. `--no-sharing` members do not register, so
//! they own nothing and always ask an owner.
//!
//! After a membership change the view remembers the previous ring for a grace period:
//! an owner that misses a block may pull it from the member that owned it before, instead
//! of going to object storage (warm once, keep it warm while the group changes).
//!
//! [`Breaker`] trips after repeated failures of one peer: its blocks come from object
//! storage until a probe succeeds. Time is always an argument (nanoseconds, any origin, as
//! long as one view or breaker is given one clock).

use super::ring::{HashRing, DEFAULT_VNODES};
use crate::chunk::BlockKey;
use std::collections::BTreeMap;

/// A member's registration, as stored in the metadata engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Where its peer server listens (`host:port`).
    pub addr: String,
    /// Its share of the blocks, relative to the others (its cache size, in some unit).
    pub weight: u32,
    /// When it last said it is alive, in seconds since the Unix epoch.
    pub seen: u64,
}

const REGISTRATION_VERSION: u8 = 1;

impl Registration {
    /// `version u8 (=1) | weight u32 | seen u64 | addr` (big-endian; addr UTF-8, the rest).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(13 + self.addr.len());
        v.push(REGISTRATION_VERSION);
        v.extend_from_slice(&self.weight.to_be_bytes());
        v.extend_from_slice(&self.seen.to_be_bytes());
        v.extend_from_slice(self.addr.as_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Registration> {
        if v.len() < 13 || v[0] != REGISTRATION_VERSION {
            return None;
        }
        Some(Registration {
            weight: u32::from_be_bytes(v[1..5].try_into().ok()?),
            seen: u64::from_be_bytes(v[5..13].try_into().ok()?),
            addr: std::str::from_utf8(&v[13..]).ok()?.to_string(),
        })
    }
}

/// Checks a group name or member id: 1 to `max` printable ASCII characters, no spaces.
pub fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!("{what} must be 1 to {max} characters long"));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{what} {name:?} may hold only printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

/// The bytes a block is placed by on a group's ring: a tag, the slice id and the block
/// index. The tag keeps group placement independent of the cache-dir placement, which
/// hashes the same ids. Pinned by a test: changing it moves every cached block.
pub fn ring_key(key: &BlockKey) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = b'g';
    k[1..9].copy_from_slice(&key.slice.0.to_be_bytes());
    k[9..].copy_from_slice(&key.index.to_be_bytes());
    k
}

/// Where a reader gets a block from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This member owns it (or the group is empty): its own cache, then object storage.
    Local,
    /// Member `id` at `addr` owns it.
    Peer { id: String, addr: String },
}

/// Who a member fetches a block for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requester {
    /// A reader of this member: a peer owner may give it.
    Reader,
    /// A peer asking this member: never asks the owner (that could loop); with
    /// `local_only` false it may pull from the previous owner.
    Peer { local_only: bool },
}

/// Which member to ask for a block missing from this member's cache, before object
/// storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The owner, member `id` at `addr`.
    Owner { id: String, addr: String },
    /// The member that owned it before the last change (this member owns it now).
    PreviousOwner,
    /// Nobody: straight to object storage.
    Nobody,
}

/// How to fetch a block this member's cache misses, and whether to keep it there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPlan {
    pub ask: Ask,
    /// Cache what is fetched: a sharing member keeps only what it owns (the owner
    /// caches the rest), a `--no-sharing` member keeps what it reads, and a block
    /// served to a peer is kept (the peer asked because it routes the block here).
    pub keep: bool,
}

/// The plan for a miss of a block routed `route`, fetched for `who` by a member that
/// shares its cache (`sharing`) or not.
pub fn plan_fetch(route: Route, sharing: bool, who: Requester) -> FetchPlan {
    let owned = route == Route::Local;
    let ask = match (who, route) {
        (Requester::Reader, Route::Peer { id, addr }) => Ask::Owner { id, addr },
        (Requester::Reader, Route::Local) => Ask::PreviousOwner,
        (Requester::Peer { local_only: false }, Route::Local) => Ask::PreviousOwner,
        (Requester::Peer { .. }, _) => Ask::Nobody,
    };
    let keep = owned || !sharing || matches!(who, Requester::Peer { .. });
    FetchPlan { ask, keep }
}

/// How a member sees its group.
#[derive(Clone, Debug)]
pub struct GroupView {
    /// This member's id; `None` for a `--no-sharing` member.
    me: Option<String>,
    /// How long a registration counts without being renewed.
    ttl_secs: u64,
    /// How long the previous ring is kept after a change.
    grace_ns: u64,
    ring: HashRing,
    addrs: BTreeMap<String, String>,
    /// The ring before the last change, until the given time.
    previous: Option<(HashRing, u64)>,
    changes: u64,
}

/// What one [`GroupView::update`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewChange {
    pub joined: Vec<String>,
    pub left: Vec<String>,
}

impl ViewChange {
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty()
    }
}

impl GroupView {
    pub fn new(me: Option<&str>, ttl_secs: u64, grace_ns: u64) -> GroupView {
        GroupView {
            me: me.map(str::to_string),
            ttl_secs,
            grace_ns,
            ring: HashRing::new(DEFAULT_VNODES),
            addrs: BTreeMap::new(),
            previous: None,
            changes: 0,
        }
    }

    /// Takes the group's registrations as read at `now_ns` (`now_secs` on the clock the
    /// members stamp `seen` with). Members whose registration is older than the TTL are
    /// left out, except this member itself, which is alive by definition. When the set
    /// of owners or a weight changes, the old ring is kept for the grace period.
    pub fn update(
        &mut self,
        members: &[(String, Registration)],
        now_secs: u64,
        now_ns: u64,
    ) -> ViewChange {
        let mut ring = HashRing::new(DEFAULT_VNODES);
        let mut addrs = BTreeMap::new();
        for (id, r) in members {
            let mine = self.me.as_deref() == Some(id.as_str());
            if !mine && r.seen.saturating_add(self.ttl_secs) < now_secs {
                continue;
            }
            ring.add(id, r.weight);
            addrs.insert(id.clone(), r.addr.clone());
        }
        let old: BTreeMap<&str, u32> = self.ring.members().collect();
        let new: BTreeMap<&str, u32> = ring.members().collect();
        let mut change = ViewChange::default();
        for id in new.keys() {
            if !old.contains_key(id) {
                change.joined.push(id.to_string());
            }
        }
        for id in old.keys() {
            if !new.contains_key(id) {
                change.left.push(id.to_string());
            }
        }
        let differs = old != new;
        let me_in_new = self.me.as_deref().is_some_and(|me| new.contains_key(me));
        if differs {
            let until = now_ns.saturating_add(self.grace_ns);
            let before = std::mem::replace(&mut self.ring, ring);
            if !before.is_empty() {
                self.previous = Some((before, until));
            } else if let (Some(me), true) = (self.me.as_deref(), me_in_new) {
                // This member's first view: it just joined (or restarted), so the group
                // before it came was this ring without it. Its new blocks are there.
                let mut others = self.ring.clone();
                others.remove(me);
                if !others.is_empty() {
                    self.previous = Some((others, until));
                }
            }
            self.changes += 1;
        }
        self.addrs = addrs;
        if self
            .previous
            .as_ref()
            .is_some_and(|(_, until)| now_ns >= *until)
        {
            self.previous = None;
        }
        change
    }

    /// Where block `key` is read from.
    pub fn route(&self, key: &BlockKey) -> Route {
        match self.ring.owner(&ring_key(key)) {
            None => Route::Local,
            Some(id) if self.me.as_deref() == Some(id) => Route::Local,
            Some(id) => Route::Peer {
                id: id.to_string(),
                addr: self.addrs.get(id).cloned().unwrap_or_default(),
            },
        }
    }

    /// The member that owned `key` before the last change, if that was within the grace
    /// period, is another member than the owner now, and is still in the group (so it can
    /// answer): where an owner that misses the block may pull it from.
    pub fn previous_owner(&self, key: &BlockKey, now_ns: u64) -> Option<(String, String)> {
        let (before, until) = self.previous.as_ref()?;
        if now_ns >= *until {
            return None;
        }
        let rk = ring_key(key);
        let was = before.owner(&rk)?;
        if Some(was) == self.ring.owner(&rk) || self.me.as_deref() == Some(was) {
            return None;
        }
        let addr = self.addrs.get(was)?;
        Some((was.to_string(), addr.clone()))
    }

    /// The live members with their weights and addresses, by id.
    pub fn members(&self) -> Vec<(String, u32, String)> {
        self.ring
            .members()
            .map(|(id, w)| {
                let addr = self.addrs.get(id).cloned().unwrap_or_default();
                (id.to_string(), w, addr)
            })
            .collect()
    }

    /// The address of member `id`, if it is live.
    pub fn addr_of(&self, id: &str) -> Option<&str> {
        self.addrs.get(id).map(String::as_str)
    }

    /// How many times the set of owners changed.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn me(&self) -> Option<&str> {
        self.me.as_deref()
    }
}

/// A circuit breaker for one peer: closed while it answers; open (skipped) for
/// `cooldown_ns` after `threshold` failures in a row; then one probe is let through per
/// cooldown, and a success closes it again.
#[derive(Clone, Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown_ns: u64,
    failures: u32,
    open_until: u64,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown_ns: u64) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown_ns,
            failures: 0,
            open_until: 0,
        }
    }

    /// Whether to try the peer now. When open and the cooldown has passed, this lets
    /// exactly one caller through (the probe) and keeps the others out for another
    /// cooldown.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        if self.failures < self.threshold {
            return true;
        }
        if now_ns >= self.open_until {
            self.open_until = now_ns.saturating_add(self.cooldown_ns);
            return true;
        }
        false
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = 0;
    }

    pub fn failure(&mut self, now_ns: u64) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.threshold {
            self.open_until = now_ns.saturating_add(self.cooldown_ns);
        }
    }

    /// Whether the breaker is open (the peer is being skipped).
    pub fn is_open(&self, now_ns: u64) -> bool {
        self.failures >= self.threshold && now_ns < self.open_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_asks_the_owner_then_the_previous_owner_and_peers_never_forward() {
        let peer = || Route::Peer {
            id: "b".into(),
            addr: "h:1".into(),
        };
        let plan = |r, sharing, who| plan_fetch(r, sharing, who);
        let owner = Ask::Owner {
            id: "b".into(),
            addr: "h:1".into(),
        };
        assert_eq!(
            plan(peer(), true, Requester::Reader),
            FetchPlan {
                ask: owner.clone(),
                keep: false
            }
        );
        assert_eq!(
            plan(peer(), false, Requester::Reader),
            FetchPlan {
                ask: owner,
                keep: true
            }
        );
        assert_eq!(
            plan(Route::Local, true, Requester::Reader),
            FetchPlan {
                ask: Ask::PreviousOwner,
                keep: true
            }
        );
        let asked = Requester::Peer { local_only: false };
        assert_eq!(
            plan(Route::Local, true, asked),
            FetchPlan {
                ask: Ask::PreviousOwner,
                keep: true
            }
        );
        // A peer's request is never forwarded to the owner it thinks is elsewhere.
        assert_eq!(
            plan(peer(), true, asked),
            FetchPlan {
                ask: Ask::Nobody,
                keep: true
            }
        );
        let local_only = Requester::Peer { local_only: true };
        assert_eq!(
            plan(Route::Local, true, local_only),
            FetchPlan {
                ask: Ask::Nobody,
                keep: true
            }
        );
    }
    use crate::types::SliceId;
    use proptest::prelude::*;

    fn reg(addr: &str, weight: u32, seen: u64) -> Registration {
        Registration {
            addr: addr.into(),
            weight,
            seen,
        }
    }

    fn key(slice: u64, index: u32) -> BlockKey {
        BlockKey {
            slice: SliceId(slice),
            index,
            len: 4 << 20,
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn registration_round_trips_and_rejects_garbage() {
        let r = reg("10.0.0.1:7000", 3, 1_700_000_000);
        assert_eq!(Registration::decode(&r.encode()), Some(r));
        assert_eq!(Registration::decode(b"\x02xxxxxxxxxxxxxx"), None);
        assert_eq!(Registration::decode(b"\x01short"), None);
    }

    #[test]
    fn ring_key_is_pinned() {
        assert_eq!(
            ring_key(&key(0x0102, 7)),
            [b'g', 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 7]
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("group", "gpu-a", 63).is_ok());
        assert!(check_name("group", "", 63).is_err());
        assert!(check_name("group", "a b", 63).is_err());
        assert!(check_name("group", &"x".repeat(64), 63).is_err());
    }

    #[test]
    fn stale_members_drop_out_but_not_me() {
        let mut v = GroupView::new(Some("a"), 30, 10 * SEC);
        let members = vec![
            ("a".to_string(), reg("h:1", 1, 0)),
            ("b".to_string(), reg("h:2", 1, 100)),
            ("c".to_string(), reg("h:3", 1, 69)),
        ];
        let change = v.update(&members, 100, 100 * SEC);
        assert_eq!(change.joined, vec!["a", "b"]);
        let ids: Vec<String> = v.members().into_iter().map(|m| m.0).collect();
        assert_eq!(ids, vec!["a", "b"]);
    }

    #[test]
    fn routes_to_owner_and_no_sharing_never_owns() {
        let members = vec![
            ("a".to_string(), reg("h:1", 1, 10)),
            ("b".to_string(), reg("h:2", 1, 10)),
        ];
        let mut a = GroupView::new(Some("a"), 30, 0);
        let mut reader = GroupView::new(None, 30, 0);
        a.update(&members, 10, 0);
        reader.update(&members, 10, 0);
        let (mut local, mut peer) = (0, 0);
        for i in 0..200 {
            let k = key(i, 0);
            match (a.route(&k), reader.route(&k)) {
                (Route::Local, Route::Peer { id, addr }) => {
                    assert_eq!((id.as_str(), addr.as_str()), ("a", "h:1"));
                    local += 1;
                }
                (Route::Peer { id, .. }, Route::Peer { id: id2, .. }) => {
                    assert_eq!((id.as_str(), id2.as_str()), ("b", "b"));
                    peer += 1;
                }
                other => panic!("unexpected routes {other:?}"),
            }
        }
        assert!(local > 50 && peer > 50, "{local} {peer}");
        assert_eq!(GroupView::new(None, 30, 0).route(&key(1, 0)), Route::Local);
    }

    #[test]
    fn previous_owner_during_grace_only() {
        let two = vec![
            ("a".to_string(), reg("h:1", 1, 10)),
            ("b".to_string(), reg("h:2", 1, 10)),
        ];
        let mut three = two.clone();
        three.push(("c".to_string(), reg("h:3", 1, 10)));
        let mut c = GroupView::new(Some("c"), 30, 5 * SEC);
        c.update(&two, 10, 0);
        c.update(&three, 10, SEC);
        // Every block c now owns was owned by a or b before: within the grace period c
        // may pull it from them; after it, not.
        let mut pulled = 0;
        for i in 0..300 {
            let k = key(i, 1);
            if c.route(&k) == Route::Local {
                let (was, _) = c.previous_owner(&k, 2 * SEC).expect("a previous owner");
                assert!(was == "a" || was == "b");
                assert_eq!(c.previous_owner(&k, 6 * SEC), None);
                pulled += 1;
            } else {
                assert_eq!(c.previous_owner(&k, 2 * SEC), None);
            }
        }
        assert!(pulled > 50);
        // A previous owner that left cannot be asked.
        let mut b = GroupView::new(Some("b"), 30, 5 * SEC);
        b.update(&two, 10, 0);
        b.update(&[two[1].clone()], 10, SEC);
        for i in 0..100 {
            assert_eq!(b.previous_owner(&key(i, 1), 2 * SEC), None);
        }
    }

    #[test]
    fn a_joiner_pulls_from_the_owners_before_it_even_on_its_first_view() {
        let mut members: Vec<(String, Registration)> = (0..3)
            .map(|i| (format!("n{i}"), reg(&format!("h:{i}"), 1, 10)))
            .collect();
        let mut old = GroupView::new(None, 30, 0);
        old.update(&members, 10, 0);
        members.push(("new".to_string(), reg("h:new", 1, 10)));
        let mut joiner = GroupView::new(Some("new"), 30, 5 * SEC);
        joiner.update(&members, 10, 0);
        let mut owned = 0;
        for i in 0..500 {
            let k = key(i, 2);
            if joiner.route(&k) == Route::Local {
                let Route::Peer { id, addr } = old.route(&k) else {
                    panic!("the old group had owners");
                };
                assert_eq!(joiner.previous_owner(&k, SEC), Some((id, addr)));
                owned += 1;
            }
        }
        assert!(owned > 50, "{owned}");
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let mut b = Breaker::new(3, 10 * SEC);
        for _ in 0..2 {
            assert!(b.allow(0));
            b.failure(0);
        }
        assert!(b.allow(0));
        b.failure(SEC);
        assert!(b.is_open(SEC) && !b.allow(2 * SEC));
        // One probe after the cooldown; the next caller waits for another cooldown.
        assert!(b.allow(11 * SEC));
        assert!(!b.allow(11 * SEC));
        b.failure(12 * SEC);
        assert!(!b.allow(13 * SEC));
        assert!(b.allow(22 * SEC));
        b.success();
        assert!(!b.is_open(22 * SEC) && b.allow(22 * SEC));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        /// A member joining a view moves only the keys it takes, about 1/N of them, and
        /// every moved key had a previous owner it can be pulled from.
        #[test]
        fn a_join_moves_about_one_nth_and_all_of_it_is_pullable(n in 2usize..8) {
            let members: Vec<(String, Registration)> = (0..n)
                .map(|i| (format!("node-{i}"), reg(&format!("h:{i}"), 1, 10)))
                .collect();
            let mut grown = members.clone();
            grown.push(("new".to_string(), reg("h:new", 1, 10)));
            let mut v = GroupView::new(Some("new"), 30, 60 * SEC);
            v.update(&members, 10, 0);
            let before: Vec<Route> = (0..4000).map(|i| v.route(&key(i, 0))).collect();
            v.update(&grown, 10, SEC);
            let mut moved = 0;
            for (i, was) in before.iter().enumerate() {
                let k = key(i as u64, 0);
                let now = v.route(&k);
                if &now != was {
                    prop_assert_eq!(&now, &Route::Local);
                    prop_assert!(v.previous_owner(&k, 2 * SEC).is_some());
                    moved += 1;
                }
            }
            let share = moved as f64 / 4000.0;
            let fair = 1.0 / (n as f64 + 1.0);
            prop_assert!((share - fair).abs() < fair * 0.35, "moved {share}, fair {fair}");
        }
    }
}
