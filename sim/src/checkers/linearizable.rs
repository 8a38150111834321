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

/// States the search visited: which operations were linearized, and the model state.
type Visited<M> = HashSet<(Vec<u64>, M)>;

/// How far the search got: the most operations it could place in some order, and the
/// state after them.
struct Deepest<M> {
    placed: usize,
    state: Option<M>,
    done: Vec<u64>,
}

/// `Ok` if `history` is linearizable from `init`; else a description of the
/// operations no order could explain.
pub fn check<M: Model>(init: M, history: &[Operation<M::Input, M::Output>]) -> Result<(), String> {
    let n = history.len();
    let mut done = vec![0u64; n.div_ceil(64)];
    let mut visited: Visited<M> = HashSet::new();
    let mut budget: u64 = 5_000_000;
    let mut deepest = Deepest {
        placed: 0,
        state: None,
        done: done.clone(),
    };
    if search(
        &init,
        history,
        &mut done,
        0,
        &mut visited,
        &mut budget,
        &mut deepest,
    ) {
        return Ok(());
    }
    if budget == 0 {
        // Too big to decide: say so rather than guess.
        return Err(format!(
            "linearizability undecided: the search of {n} operations ran out of budget"
        ));
    }
    // The operations that were due next where the search got furthest.
    let horizon = history
        .iter()
        .enumerate()
        .filter(|(i, _)| !is_done(&deepest.done, *i))
        .filter_map(|(_, o)| o.ret)
        .min()
        .unwrap_or(u64::MAX);
    let stuck: Vec<String> = history
        .iter()
        .enumerate()
        .filter(|(i, o)| !is_done(&deepest.done, *i) && o.call <= horizon)
        .take(6)
        .map(|(_, o)| format!("{o:?}"))
        .collect();
    Err(format!(
        "the history of {n} operations is not linearizable: at most {} fit an order \
         (ending in state {:?}); none of these fits next: {}",
        deepest.placed,
        deepest.state,
        stuck.join(", ")
    ))
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

fn flip(done: &mut [u64], i: usize) {
    done[i / 64] ^= 1 << (i % 64);
}

fn search<M: Model>(
    state: &M,
    history: &[Operation<M::Input, M::Output>],
    done: &mut Vec<u64>,
    linearized: usize,
    visited: &mut Visited<M>,
    budget: &mut u64,
    deepest: &mut Deepest<M>,
) -> bool {
    if linearized == history.len() {
        return true;
    }
    if linearized >= deepest.placed {
        deepest.placed = linearized;
        deepest.state = Some(state.clone());
        deepest.done.clone_from(done);
    }
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    if !visited.insert((done.clone(), state.clone())) {
        return false;
    }
    // The next operation to take effect must have been called before every pending
    // operation returned.
    let horizon = history
        .iter()
        .enumerate()
        .filter(|(i, _)| !is_done(done, *i))
        .filter_map(|(_, o)| o.ret)
        .min()
        .unwrap_or(u64::MAX);
    // Operations that never returned need not take effect at all: once only they are
    // left, the history is explained.
    if history
        .iter()
        .enumerate()
        .all(|(i, o)| is_done(done, i) || o.ret.is_none())
    {
        return true;
    }
    for (i, op) in history.iter().enumerate() {
        if is_done(done, i) || op.call > horizon {
            continue;
        }
        let (out, next) = state.step(&op.input);
        if op.output.as_ref().is_some_and(|o| *o != out) {
            continue;
        }
        flip(done, i);
        let ok = search(
            &next,
            history,
            done,
            linearized + 1,
            visited,
            budget,
            deepest,
        );
        flip(done, i);
        if ok {
            return true;
        }
    }
    false
}

/// A counter that is read and compare-and-set (what `sim --raft` clients do: an
/// increment is "if it is `from`, make it `from + 1`").
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Counter(pub u64);

#[derive(Clone, Debug)]
pub enum CounterOp {
    Read,
    Cas { from: u64 },
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
