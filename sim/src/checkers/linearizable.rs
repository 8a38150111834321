//! Linearizability of a history of operations on one object, checked the way Knossos
//! and porcupine do (Wing & Gong's search, memoized as Lowe suggests). The question:
//! is there an order of the operations, each taking effect at one instant between its
//! call and its return, in which a sequential model of the object gives every result
//! that was observed?
//!
//! An operation that never returned (its client gave up or the run ended) may have
//! taken effect at any time after its call, or not at all; its result is unknown.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// The sequential object.
pub trait Model: Clone + Eq + Hash + Debug {
    type Input: Debug;
    type Output: PartialEq + Debug;
    /// What `input` returns on this state, and the state after it.
    fn step(&self, input: &Self::Input) -> (Self::Output, Self);
}

/// One operation of a history. Times are any strictly increasing event counter shared
/// by all clients.
#[derive(Clone, Debug)]
pub struct Operation<I, O> {
    pub client: u64,
    pub call: u64,
    /// `None`: it never returned.
    pub ret: Option<u64>,
    pub input: I,
    /// `None`: not known (it never returned).
    pub output: Option<O>,
}

/// `Ok` if `history` is linearizable from `init`; else a description of where no
/// order could go on.
///
/// The search is iterative (histories of a long run have tens of thousands of
/// operations) and remembers the states it has been in — the set of operations taken
/// so far (as a Zobrist hash: 128 random bits per operation, XORed) and the model's
/// state — so that it never explores one twice.
pub fn check<M: Model>(init: M, history: &[Operation<M::Input, M::Output>]) -> Result<(), String> {
    let n = history.len();
    // Answered operations by call time; those that never returned, apart.
    let mut answered: Vec<usize> = (0..n).filter(|&i| history[i].ret.is_some()).collect();
    answered.sort_by_key(|&i| history[i].call);
    let mut unanswered: Vec<usize> = (0..n).filter(|&i| history[i].ret.is_none()).collect();
    unanswered.sort_by_key(|&i| history[i].call);
    let mut pos = vec![usize::MAX; n];
    for (p, &i) in answered.iter().enumerate() {
        pos[i] = p;
    }
    let mut keys = Vec::with_capacity(n);
    let mut seed = 0x5EED_u64;
    for _ in 0..n {
        let a = splitmix(&mut seed);
        let b = splitmix(&mut seed);
        keys.push(((a as u128) << 64) | b as u128);
    }

    struct Frame<M> {
        taken: usize,
        prev: M,
        candidates: Vec<usize>,
        next: usize,
    }
    let mut done = vec![false; n];
    let mut hash: u128 = 0;
    let mut lo = 0; // first answered operation not taken
    let mut state = init;
    let mut visited: HashSet<(u128, M)> = HashSet::new();
    let mut stack: Vec<Frame<M>> = Vec::new();
    let mut budget: u64 = 20_000_000;
    // How far the search got: depth, state, and the operations it could not take next.
    let mut deepest = (0usize, state.clone(), Vec::new());
    // Candidates at the current node: operations not taken that were called before
    // every pending answered operation returned.
    let candidates = |done: &[bool], lo: usize| -> Vec<usize> {
        let mut horizon = u64::MAX;
        let mut out = Vec::new();
        for &i in &answered[lo..] {
            let op = &history[i];
            if op.call > horizon {
                break;
            }
            if !done[i] {
                horizon = horizon.min(op.ret.unwrap_or(u64::MAX));
                out.push(i);
            }
        }
        out.retain(|&i| history[i].call <= horizon);
        out.extend(
            unanswered
                .iter()
                .copied()
                .filter(|&i| !done[i] && history[i].call <= horizon),
        );
        out
    };
    let mut frame_candidates = candidates(&done, lo);
    let mut next = 0;
    loop {
        if lo == answered.len() {
            // Only operations that never returned are left: they need not happen.
            return Ok(());
        }
        if budget == 0 {
            return Err(format!(
                "linearizability undecided: the search of {n} operations ran out of budget"
            ));
        }
        budget -= 1;
        if stack.len() >= deepest.0 && next == 0 {
            deepest = (stack.len(), state.clone(), frame_candidates.clone());
        }
        // The next candidate whose result the model agrees with.
        let mut step = None;
        while next < frame_candidates.len() {
            let i = frame_candidates[next];
            next += 1;
            let (out, after) = state.step(&history[i].input);
            if history[i].output.as_ref().is_some_and(|o| *o != out) {
                continue;
            }
            if visited.contains(&(hash ^ keys[i], after.clone())) {
                continue;
            }
            step = Some((i, after));
            break;
        }
        match step {
            Some((i, after)) => {
                done[i] = true;
                hash ^= keys[i];
                visited.insert((hash, after.clone()));
                let prev = std::mem::replace(&mut state, after);
                stack.push(Frame {
                    taken: i,
                    prev,
                    candidates: std::mem::take(&mut frame_candidates),
                    next,
                });
                while lo < answered.len() && done[answered[lo]] {
                    lo += 1;
                }
                frame_candidates = candidates(&done, lo);
                next = 0;
            }
            None => {
                let Some(f) = stack.pop() else {
                    let stuck: Vec<String> = deepest
                        .2
                        .iter()
                        .take(6)
                        .map(|&i| format!("{:?}", history[i]))
                        .collect();
                    return Err(format!(
                        "the history of {n} operations is not linearizable: at most {} fit an \
                         order (ending in state {:?}); none of these fits next: {}",
                        deepest.0,
                        deepest.1,
                        stuck.join(", ")
                    ));
                };
                done[f.taken] = false;
                hash ^= keys[f.taken];
                state = f.prev;
                if pos[f.taken] < lo {
                    lo = pos[f.taken];
                }
                frame_candidates = f.candidates;
                next = f.next;
            }
        }
    }
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A counter that is read and compare-and-set (what `sim --raft` clients do: an
/// increment is "if it is `from`, make it `from + 1`").
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Counter(pub u64);

#[derive(Clone, Debug)]
pub enum CounterOp {
    Read,
    Cas {
        from: u64,
    },
    /// Add one (a transaction retried until it commits, whose outcome is unknown).
    Inc,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CounterOut {
    Value(u64),
    Swapped(bool),
}

impl Model for Counter {
    type Input = CounterOp;
    type Output = CounterOut;
    fn step(&self, input: &CounterOp) -> (CounterOut, Counter) {
        match input {
            CounterOp::Read => (CounterOut::Value(self.0), self.clone()),
            CounterOp::Cas { from } if *from == self.0 => {
                (CounterOut::Swapped(true), Counter(from + 1))
            }
            CounterOp::Cas { .. } => (CounterOut::Swapped(false), self.clone()),
            CounterOp::Inc => (CounterOut::Swapped(true), Counter(self.0 + 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        call: u64,
        ret: Option<u64>,
        input: CounterOp,
        output: Option<CounterOut>,
    ) -> Operation<CounterOp, CounterOut> {
        Operation {
            client: 0,
            call,
            ret,
            input,
            output,
        }
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // A read overlapping an increment may see either value.
        let h = vec![
            op(
                1,
                Some(4),
                CounterOp::Cas { from: 0 },
                Some(CounterOut::Swapped(true)),
            ),
            op(2, Some(3), CounterOp::Read, Some(CounterOut::Value(1))),
            op(5, Some(6), CounterOp::Read, Some(CounterOut::Value(1))),
        ];
        assert_eq!(check(Counter(0), &h), Ok(()));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let h = vec![
            op(
                1,
                Some(2),
                CounterOp::Cas { from: 0 },
                Some(CounterOut::Swapped(true)),
            ),
            op(3, Some(4), CounterOp::Read, Some(CounterOut::Value(0))),
        ];
        assert!(check(Counter(0), &h).is_err());
    }

    #[test]
    fn an_unanswered_operation_may_or_may_not_have_happened() {
        let lost = op(1, None, CounterOp::Cas { from: 0 }, None);
        let read = |v| op(5, Some(6), CounterOp::Read, Some(CounterOut::Value(v)));
        assert_eq!(check(Counter(0), &[lost.clone(), read(0)]), Ok(()));
        assert_eq!(check(Counter(0), &[lost.clone(), read(1)]), Ok(()));
        assert!(check(Counter(0), &[lost, read(2)]).is_err());
    }

    #[test]
    fn long_histories_are_checked_without_deep_recursion() {
        // 60,000 operations by three clients, overlapping in pairs.
        let mut h = Vec::new();
        for v in 0..20_000u64 {
            let t = v * 10;
            h.push(op(
                t,
                Some(t + 4),
                CounterOp::Cas { from: v },
                Some(CounterOut::Swapped(true)),
            ));
            h.push(op(
                t + 1,
                Some(t + 3),
                CounterOp::Cas { from: v },
                Some(CounterOut::Swapped(false)),
            ));
            h.push(op(
                t + 5,
                Some(t + 6),
                CounterOp::Read,
                Some(CounterOut::Value(v + 1)),
            ));
        }
        assert_eq!(check(Counter(0), &h), Ok(()));
        h.push(op(
            u64::MAX - 1,
            Some(u64::MAX),
            CounterOp::Read,
            Some(CounterOut::Value(3)),
        ));
        assert!(check(Counter(0), &h).is_err());
    }

    #[test]
    fn two_winners_of_one_compare_and_set_are_caught() {
        let h = vec![
            op(
                1,
                Some(3),
                CounterOp::Cas { from: 0 },
                Some(CounterOut::Swapped(true)),
            ),
            op(
                2,
                Some(4),
                CounterOp::Cas { from: 0 },
                Some(CounterOut::Swapped(true)),
            ),
        ];
        assert!(check(Counter(0), &h).is_err());
    }
}
