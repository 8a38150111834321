//! A consistent-hash ring with virtual nodes and weights: which member (a local cache dir
//! now, a cache-group peer later) owns a block key.
//!
//! Each member gets `weight × vnodes_per_weight` points on a 64-bit ring; a key belongs to
//! the first point at or after its hash, wrapping around. Adding a member therefore takes
//! about its fair share of the keys, all of them moving to the newcomer, and removing one hands only
//! its own keys to the others — a dir that fails or a peer that leaves does not reshuffle
//! the whole cache.
//!
//! Hashes are xxh3-64 of the bytes, which is stable across platforms, processes and
//! releases (never std's seeded `RandomState`): the owner of a block must be the same after a
//! restart, or the cache would look empty. Points of member `id` are `xxh3("{id}#{i}")`;
//! changing that formula moves every cached block, so a test pins it.

use std::collections::BTreeMap;

use xxhash_rust::xxh3::xxh3_64;

/// Virtual nodes per unit of weight: with 100, a member's share of the keys is typically
/// within about 10% of its fair share.
pub const DEFAULT_VNODES: u32 = 100;

#[derive(Debug, Clone)]
pub struct HashRing {
    vnodes_per_weight: u32,
    /// All members and their weights, including weight 0 (listed, owning nothing).
    members: BTreeMap<String, u32>,
    /// Owning members (weight > 0) in id order; `points` refer to them by index.
    owners: Vec<String>,
    /// (hash, index into `owners`), sorted. Equal hashes of different members are ordered
    /// by id, so the ring does not depend on the order members were added.
    points: Vec<(u64, usize)>,
}

impl HashRing {
    pub fn new(vnodes_per_weight: u32) -> Self {
        Self {
            vnodes_per_weight,
            members: BTreeMap::new(),
            owners: Vec::new(),
            points: Vec::new(),
        }
    }

    /// Adds a member, or updates the weight of an existing one. Weight 0 keeps the member
    /// listed but owning no keys. Weights are relative capacities (small integers): a
    /// member costs `weight × vnodes_per_weight` points. Its first points do not depend on
    /// the weight, so changing a weight moves only the difference.
    pub fn add(&mut self, id: &str, weight: u32) {
        if self.members.insert(id.to_string(), weight) != Some(weight) {
            self.rebuild();
        }
    }

    /// Removes a member; false when it was not one.
    pub fn remove(&mut self, id: &str) -> bool {
        let removed = self.members.remove(id).is_some();
        if removed {
            self.rebuild();
        }
        removed
    }

    /// The member that owns `key`; `None` when no member has a weight.
    pub fn owner(&self, key: &[u8]) -> Option<&str> {
        let start = self.start(key)?;
        Some(&self.owners[self.points[start].1])
    }

    /// Up to `n` distinct members in ring order from the key's position, owner first: where
    /// to fall back when the owner is down, or where a block may still sit after the
    /// membership changed (the previous owner of a key is the next member in line).
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<&str> {
        let mut found = Vec::new();
        let Some(start) = self.start(key) else {
            return found;
        };
        let want = n.min(self.owners.len());
        let mut seen = vec![false; self.owners.len()];
        let ring = self.points[start..].iter().chain(&self.points[..start]);
        for &(_, member) in ring {
            if found.len() == want {
                break;
            }
            if !seen[member] {
                seen[member] = true;
                found.push(self.owners[member].as_str());
            }
        }
        found
    }

    /// All members with their weights, sorted by id.
    pub fn members(&self) -> impl Iterator<Item = (&str, u32)> {
        self.members.iter().map(|(id, &w)| (id.as_str(), w))
    }

    /// Number of members, weight-0 ones included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Index of the first point at or after the key's hash, wrapping to 0.
    fn start(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = xxh3_64(key);
        let i = self.points.partition_point(|&(p, _)| p < h);
        Some(if i == self.points.len() { 0 } else { i })
    }

    /// Recomputes every point. Membership changes are rare (a dir added or failed, a peer
    /// joined) and cost a few thousand hashes; lookups, which are hot, stay a binary search.
    fn rebuild(&mut self) {
        self.owners = self
            .members
            .iter()
            .filter(|(_, &w)| w > 0)
            .map(|(id, _)| id.clone())
            .collect();
        self.points.clear();
        let mut name = Vec::new();
        for (index, id) in self.owners.iter().enumerate() {
            let vnodes = u64::from(self.members[id]) * u64::from(self.vnodes_per_weight);
            for i in 0..vnodes {
                name.clear();
                name.extend_from_slice(id.as_bytes());
                name.push(b'#');
                name.extend_from_slice(i.to_string().as_bytes());
                self.points.push((xxh3_64(&name), index));
            }
        }
        // Indices follow id order, so sorting the pairs breaks hash ties by id.
        self.points.sort_unstable();
    }
}

impl Default for HashRing {
    fn default() -> Self {
        Self::new(DEFAULT_VNODES)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("block/{i}").into_bytes()).collect()
    }

    fn owned(ring: &HashRing, keys: &[Vec<u8>]) -> Vec<String> {
        keys.iter()
            .map(|k| ring.owner(k).expect("ring has owners").to_string())
            .collect()
    }

    fn ring_of(ids: &[String]) -> HashRing {
        let mut ring = HashRing::default();
        for id in ids {
            ring.add(id, 1);
        }
        ring
    }

    #[test]
    fn empty_and_single_member() {
        let mut ring = HashRing::default();
        assert!(ring.is_empty());
        assert_eq!(ring.owner(b"k"), None);
        assert!(ring.owners(b"k", 3).is_empty());
        ring.add("dir0", 0);
        assert_eq!((ring.len(), ring.owner(b"k")), (1, None));
        ring.add("dir0", 1);
        assert_eq!(ring.owner(b"k"), Some("dir0"));
        assert_eq!(ring.owners(b"k", 3), vec!["dir0"]);
        assert!(!ring.remove("nope"));
        assert!(ring.remove("dir0"));
        assert_eq!(ring.owner(b"k"), None);
    }

    #[test]
    fn placement_is_pinned() {
        // If this changes, every cached block moves to another dir after an upgrade.
        let ring = ring_of(&["a".into(), "b".into(), "c".into()]);
        let got: Vec<&str> = (0..8)
            .map(|i| ring.owner(format!("k{i}").as_bytes()).unwrap())
            .collect();
        assert_eq!(got, vec!["b", "b", "c", "a", "a", "a", "a", "c"]);
    }

    #[test]
    fn owner_does_not_depend_on_insertion_order() {
        let ids: Vec<String> = (0..6).map(|i| format!("/var/cache/ferrofs{i}")).collect();
        let mut reversed = ids.clone();
        reversed.reverse();
        let mut ring = ring_of(&reversed);
        // An update that changes nothing in the end.
        ring.add(&ids[2], 3);
        ring.add(&ids[2], 1);
        let keys = keys(2000);
        assert_eq!(owned(&ring_of(&ids), &keys), owned(&ring, &keys));
        let members: Vec<(&str, u32)> = ring.members().collect();
        assert_eq!(
            members,
            ids.iter().map(|id| (id.as_str(), 1)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn owners_lists_distinct_members_owner_first() {
        let ids: Vec<String> = (0..4).map(|i| format!("m{i}")).collect();
        let mut ring = ring_of(&ids);
        ring.add("idle", 0);
        for key in keys(200) {
            let all = ring.owners(&key, 10);
            assert_eq!(all.len(), 4, "weight-0 members own nothing");
            assert_eq!(all[0], ring.owner(&key).unwrap());
            let mut sorted = all.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 4);
            assert_eq!(ring.owners(&key, 2), all[..2]);
            // Without the owner, the next in line takes over: the fallback order is real.
            let mut without = ring.clone();
            without.remove(all[0]);
            assert_eq!(without.owner(&key), Some(all[1]));
        }
    }

    #[test]
    fn weight_two_owns_about_twice_as_much() {
        let mut ring = HashRing::default();
        for (id, w) in [("big", 2), ("s1", 1), ("s2", 1), ("s3", 1)] {
            ring.add(id, w);
        }
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for owner in owned(&ring, &keys(20_000)) {
            *count.entry(owner).or_default() += 1;
        }
        let small = (count["s1"] + count["s2"] + count["s3"]) as f64 / 3.0;
        let ratio = count["big"] as f64 / small;
        assert!((1.5..=2.5).contains(&ratio), "ratio {ratio}: {count:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            cases: 24,
            ..ProptestConfig::default()
        })]

        /// A membership change moves about 1/N of the keys, and only the keys it must.
        #[test]
        fn membership_change_moves_about_one_nth(
            n in 2usize..10,
            salt in any::<u32>(),
            gone in any::<usize>(),
        ) {
            let ids: Vec<String> = (0..n).map(|i| format!("peer-{salt}-{i}")).collect();
            let keys = keys(20_000);
            let ring = ring_of(&ids);
            let before = owned(&ring, &keys);

            let newcomer = format!("peer-{salt}-new");
            let mut grown = ring.clone();
            grown.add(&newcomer, 1);
            let after = owned(&grown, &keys);
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            let share = moved as f64 / keys.len() as f64;
            let fair = 1.0 / (n + 1) as f64;
            prop_assert!(share >= 0.5 * fair && share <= 1.6 * fair, "moved {share}, fair {fair}");
            prop_assert!(before.iter().zip(&after).all(|(b, a)| b == a || *a == newcomer));

            let gone = &ids[gone % n];
            let mut shrunk = ring.clone();
            prop_assert!(shrunk.remove(gone));
            let after = owned(&shrunk, &keys);
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(b == a || b == gone, "{b} -> {a} though only {gone} left");
                prop_assert!(a != gone);
            }
        }
    }
}
