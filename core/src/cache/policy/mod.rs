//! Eviction policies of the block cache: which cached block goes when the cache needs room.
//!
//! One policy per file behind one trait, so they are easy to compare (`benches/eviction.rs`
//! replays training-platform traces through each) and to swap (a setting names a
//! [`PolicyKind`]). Policies track keys and sizes only; the cache index owns
//! capacity and calls [`EvictionPolicy::evict`] until the new block fits.
//!
//! Every policy is deterministic: the same operations (and, for the random ones, the same
//! seed) give the same victims. All keep ordered maps or a dense `Vec`, never a hash table's
//! iteration order, and cost O(log n) per operation (amortized for SIEVE and S3-FIFO, whose
//! eviction may step over entries that earned another lap).

pub mod fifo;
pub mod lru;
pub mod random;
pub mod s3fifo;
pub mod sieve;

use std::fmt;
use std::str::FromStr;

pub use fifo::Fifo;
pub use lru::Lru;
pub use random::{Random, SplitMix64};
pub use s3fifo::S3Fifo;
pub use sieve::Sieve;

/// Decides which cached entry goes when the block cache needs room. Sizes are in bytes;
/// the cache index (not the policy) tracks capacity and calls `evict` until it fits.
pub trait EvictionPolicy<K: Ord + Clone>: Send {
    /// A new entry was admitted (not present before). Inserting a resident key anyway
    /// counts as a hit and updates its size.
    fn insert(&mut self, key: K, size: u64);
    /// The entry was read (a cache hit). Unknown keys are ignored.
    fn touch(&mut self, key: &K);
    /// The entry left the cache for another reason (corrupt, its dir failed, explicitly
    /// evicted). Unknown keys are ignored.
    fn remove(&mut self, key: &K);
    /// Chooses the next victim, forgets it and returns it; `None` when empty.
    fn evict(&mut self) -> Option<K>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The policies one can choose, by the names settings and the benchmark use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// First in, first out; hits change nothing.
    Fifo,
    /// FIFO with a visited bit and a hand that spares visited entries (NSDI'24).
    Sieve,
    /// Small, main and ghost FIFOs (SOSP'23): scan-resistant.
    S3Fifo,
    /// A uniformly random victim.
    Random,
    /// The less recently used of two random entries.
    Random2,
}

/// Chosen from `benches/eviction.rs`: S3-FIFO has the best average hit ratio over its
/// training traces (56% by bytes; SIEVE 55%, random 53.5%, LRU 49.6%). It wins the
/// realistic mixed trace by far (34% by bytes against 27% for SIEVE and 18% for LRU),
/// because a one-shot checkpoint scan and first reads pass through its small queue without
/// flushing the datasets that are read again, and it is among the best on skewed reads.
/// Its weak spot is a single job whose dataset exceeds the cache (32% against 39% for plain
/// random, 24% for LRU; the ceiling is 53%).
pub const DEFAULT_POLICY: PolicyKind = PolicyKind::S3Fifo;

impl PolicyKind {
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Lru,
        PolicyKind::Fifo,
        PolicyKind::Sieve,
        PolicyKind::S3Fifo,
        PolicyKind::Random,
        PolicyKind::Random2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Fifo => "fifo",
            PolicyKind::Sieve => "sieve",
            PolicyKind::S3Fifo => "s3-fifo",
            PolicyKind::Random => "random",
            PolicyKind::Random2 => "2-random",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name that is none of [`PolicyKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown eviction policy {:?}; expected one of: ", self.0)?;
        let names: Vec<&str> = PolicyKind::ALL.iter().map(|k| k.name()).collect();
        f.write_str(&names.join(", "))
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// A fresh, empty policy of the given kind. `seed` drives the random ones and is ignored by
/// the others.
pub fn new_policy<K: Ord + Clone + Send + 'static>(
    kind: PolicyKind,
    seed: u64,
) -> Box<dyn EvictionPolicy<K>> {
    match kind {
        PolicyKind::Lru => Box::new(Lru::new()),
        PolicyKind::Fifo => Box::new(Fifo::new()),
        PolicyKind::Sieve => Box::new(Sieve::new()),
        PolicyKind::S3Fifo => Box::new(S3Fifo::new()),
        PolicyKind::Random => Box::new(Random::new(seed)),
        PolicyKind::Random2 => Box::new(Random::two_choices(seed)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Evicts until empty, in eviction order.
    pub(crate) fn drain<K: Ord + Clone>(p: &mut dyn EvictionPolicy<K>) -> Vec<K> {
        std::iter::from_fn(|| p.evict()).collect()
    }

    #[test]
    fn names_round_trip() {
        for kind in PolicyKind::ALL {
            assert_eq!(kind.to_string().parse::<PolicyKind>(), Ok(kind));
        }
        assert_eq!("S3-FIFO".parse::<PolicyKind>(), Ok(PolicyKind::S3Fifo));
        let err = "arc".parse::<PolicyKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown eviction policy \"arc\"; expected one of: \
             lru, fifo, sieve, s3-fifo, random, 2-random"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u64),
        Touch(u8),
        Remove(u8),
        Evict,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys, so that keys come back after eviction and ghosts matter.
        prop_oneof![
            4 => (0u8..24, 1u64..1000).prop_map(|(k, s)| Op::Insert(k, s)),
            3 => (0u8..24).prop_map(Op::Touch),
            1 => (0u8..24).prop_map(Op::Remove),
            3 => Just(Op::Evict),
        ]
    }

    /// Replays `ops` against a model of the resident set, checking each answer; returns the
    /// victims in order.
    fn replay(kind: PolicyKind, seed: u64, ops: &[Op]) -> Result<Vec<u8>, TestCaseError> {
        let mut p = new_policy::<u8>(kind, seed);
        let mut resident = BTreeSet::new();
        let mut victims = Vec::new();
        for op in ops {
            match *op {
                // Includes re-inserting a resident key, which counts as a hit.
                Op::Insert(k, size) => {
                    p.insert(k, size);
                    resident.insert(k);
                }
                Op::Touch(k) => p.touch(&k),
                Op::Remove(k) => {
                    p.remove(&k);
                    resident.remove(&k);
                }
                Op::Evict => {
                    let v = p.evict();
                    match v {
                        Some(k) => prop_assert!(resident.remove(&k), "{kind}: {k} not resident"),
                        None => prop_assert!(resident.is_empty(), "{kind}: None while resident"),
                    }
                    victims.extend(v);
                }
            }
            prop_assert_eq!(p.len(), resident.len(), "{}", kind);
            prop_assert_eq!(p.is_empty(), resident.is_empty());
        }
        let rest = drain(&mut *p);
        prop_assert_eq!(rest.len(), resident.len(), "{}: a key evicted twice", kind);
        prop_assert_eq!(rest.iter().copied().collect::<BTreeSet<_>>(), resident);
        prop_assert!(p.is_empty() && p.evict().is_none());
        victims.extend(rest);
        Ok(victims)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            cases: 64,
            ..ProptestConfig::default()
        })]

        #[test]
        fn policies_evict_only_resident_keys(
            ops in proptest::collection::vec(op(), 0..300),
            seed in any::<u64>(),
        ) {
            for kind in PolicyKind::ALL {
                let first = replay(kind, seed, &ops)?;
                // Deterministic: the same seed and operations pick the same victims.
                prop_assert_eq!(first, replay(kind, seed, &ops)?, "{}", kind);
            }
        }
    }
}
