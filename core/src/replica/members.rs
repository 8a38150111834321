//! The cluster's membership, kept in the replicated state itself: which replicas vote,
//! which only learn (a new replica catching up before it is promoted), and where each
//! one listens. Every replica applies a membership change at the same log index, in
//! the same transaction as its applied index, so the address book is in snapshots and
//! survives restarts with the rest of the state.
//!
//! ```text
//! Rmembers → version u8 (=1) | n u32 | n × voter u64 | m u32 | m × learner u64
//!          | k u32 | k × (id u64 | bytes address)         (integers big-endian)
//! ```
//!
//! The key is 8 bytes long: a request record's key (`R` client, 9 bytes, or `R` client
//! seq, 17 bytes) can never be equal to it, and no range of one client's records
//! (all keys starting with the same 9 bytes) can hold it.

use super::apply::REQUEST_PREFIX;
use crate::errno::{Errno, Result};
use crate::kv::{self, Kv};
use std::collections::BTreeMap;

/// The key of the membership record.
pub const MEMBERS_KEY: &[u8; 8] = b"Rmembers";
const VERSION: u8 = 1;

/// Who is in the cluster.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Membership {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Every member's address (`host:port`), voters and learners alike.
    pub addrs: BTreeMap<u64, String>,
}

impl Membership {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        for ids in [&self.voters, &self.learners] {
            out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
            for id in ids {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.addrs.len() as u32).to_be_bytes());
        for (id, a) in &self.addrs {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&(a.len() as u32).to_be_bytes());
            out.extend_from_slice(a.as_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<Membership> {
        let mut r = Bytes(b);
        if r.take(1)? != [VERSION] {
            return None;
        }
        let voters = r.ids()?;
        let learners = r.ids()?;
        let mut addrs = BTreeMap::new();
        for _ in 0..r.u32()? {
            let id = r.u64()?;
            let len = r.u32()? as usize;
            addrs.insert(id, String::from_utf8(r.take(len)?.to_vec()).ok()?);
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(Membership {
            voters,
            learners,
            addrs,
        })
    }
}

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn ids(&mut self) -> Option<Vec<u64>> {
        let n = self.u32()?;
        (0..n).map(|_| self.u64()).collect()
    }
}

/// The membership recorded in `engine` (`None`: no change applied yet; the cluster
/// is still the one it was started with).
pub fn membership(engine: &dyn Kv) -> Result<Option<Membership>> {
    kv::read(engine, |t| match t.get(MEMBERS_KEY)? {
        None => Ok(None),
        Some(v) => Membership::decode(&v).map(Some).ok_or(Errno::EIO),
    })
}

/// Records a membership change, applied at log `index`, in one transaction.
pub fn apply_membership(engine: &dyn Kv, index: u64, m: &Membership) -> Result<()> {
    kv::txn(engine, |t| {
        t.set(MEMBERS_KEY, &m.encode());
        t.set(&[REQUEST_PREFIX], &index.to_be_bytes());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;
    use crate::replica::{applied_index, request_key, RequestId};

    fn sample() -> Membership {
        Membership {
            voters: vec![1, 2, 4],
            learners: vec![5],
            addrs: [(1, "a:1"), (2, "b:2"), (4, "d:4"), (5, "e:5")]
                .into_iter()
                .map(|(i, a)| (i, a.to_string()))
                .collect(),
        }
    }

    #[test]
    fn membership_round_trips_and_rejects_bad_bytes() {
        let m = sample();
        assert_eq!(Membership::decode(&m.encode()), Some(m.clone()));
        let b = m.encode();
        assert_eq!(Membership::decode(&b[..b.len() - 1]), None);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Membership::decode(&longer), None);
        assert_eq!(Membership::decode(&[]), None);
    }

    #[test]
    fn applying_a_change_records_it_with_its_index() {
        let kv = MemKv::new();
        assert_eq!(membership(&kv).unwrap(), None);
        apply_membership(&kv, 9, &sample()).unwrap();
        assert_eq!(membership(&kv).unwrap(), Some(sample()));
        assert_eq!(applied_index(&kv).unwrap(), 9);
    }

    #[test]
    fn the_key_is_never_a_request_record() {
        for client in [0u64, u64::from_be_bytes(*b"members\0"), u64::MAX] {
            let floor = request_key(RequestId { client, seq: 0 });
            assert_ne!(&floor[..9], &MEMBERS_KEY[..], "length differs");
            assert_ne!(floor.len(), MEMBERS_KEY.len());
        }
    }
}
