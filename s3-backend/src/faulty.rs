//! Fault injection: [`FaultyStore`] wraps any store and, before each call, asks a
//! [`FaultPlan`] what should go wrong with it — latency, a transient error, a lost
//! response (the operation happens but the caller sees an error), corrupted or
//! truncated data.
//!
//! [`RandomFaults`] is a seeded plan drawing faults with given probabilities; a test
//! can also pass a closure `|op, key| Fault::...` as a plan, and the simulator plugs its
//! own. Nothing here reads the clock or sleeps on its own: latency is handed to a
//! [`Sleeper`] (by default [`ThreadSleeper`]), which a simulator replaces with one that
//! advances virtual time.

use crate::error::{StoreError, TransientKind};
use crate::retry::{Sleeper, SplitMix64, ThreadSleeper};
use crate::{Bytes, ObjectInfo, ObjectStore};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The operation a fault is decided for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Op {
    Put,
    Get,
    Head,
    Delete,
    List,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Head => "head",
            Op::Delete => "delete",
            Op::List => "list",
        }
    }
}

/// What goes wrong with one call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// Nothing: the call goes through.
    None,
    /// The call goes through after this delay.
    Latency(Duration),
    /// The call is not performed; it fails with a transient error of this kind
    /// ([`TransientKind::ServerError`] for a 5xx, [`TransientKind::Throttle`] for a
    /// 503 SlowDown, [`TransientKind::Timeout`], ...).
    Error(TransientKind),
    /// The call is performed, then reported as failed (a connection reset before the
    /// response): a put or delete did happen although the caller saw an error.
    LostResponse,
    /// Get: one byte of the returned data is flipped. Put: the stored object has one
    /// byte flipped. Other calls go through unharmed.
    Corrupt,
    /// Get: the returned data loses its second half (at least one byte). Put: only the
    /// first half is stored. Other calls go through unharmed.
    Truncate,
}

/// Decides the fault of each call. Called once per call of the wrapped store, before
/// the call; `key` is the object's key (for [`Op::List`], the prefix).
pub trait FaultPlan: Send + Sync {
    fn decide(&self, op: Op, key: &str) -> Fault;
}

impl<F: Fn(Op, &str) -> Fault + Send + Sync> FaultPlan for F {
    fn decide(&self, op: Op, key: &str) -> Fault {
        self(op, key)
    }
}

/// Per-call probabilities of each fault for [`RandomFaults`]; they are tried in this
/// order and should add up to at most 1. All zero by default.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct FaultRates {
    /// Delay the call by a uniform time in `[0, max_latency]`.
    pub latency: f64,
    pub max_latency: Duration,
    /// A 5xx.
    pub server_error: f64,
    /// A 503 SlowDown.
    pub throttle: f64,
    /// A timeout (the call is not performed).
    pub timeout: f64,
    /// The call is performed but its response lost.
    pub lost_response: f64,
    /// Data corrupted (get and put only).
    pub corrupt: f64,
    /// Data truncated (get and put only).
    pub truncate: f64,
}

impl FaultRates {
    /// Only transient errors: `p` split evenly between 5xx, throttling, timeouts and
    /// lost responses — what retries must hide.
    pub fn transient(p: f64) -> FaultRates {
        FaultRates {
            server_error: p / 4.0,
            throttle: p / 4.0,
            timeout: p / 4.0,
            lost_response: p / 4.0,
            ..FaultRates::default()
        }
    }
}

/// A seeded plan: each call draws its fault from [`FaultRates`] with a [`SplitMix64`],
/// so a seed replays the same faults for the same sequence of calls.
pub struct RandomFaults {
    rates: FaultRates,
    rng: Mutex<SplitMix64>,
}

impl RandomFaults {
    pub fn new(seed: u64, rates: FaultRates) -> RandomFaults {
        RandomFaults {
            rates,
            rng: Mutex::new(SplitMix64::new(seed)),
        }
    }
}

impl fmt::Debug for RandomFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RandomFaults")
            .field("rates", &self.rates)
            .finish()
    }
}

impl FaultPlan for RandomFaults {
    fn decide(&self, op: Op, _key: &str) -> Fault {
        let r = &self.rates;
        let mut g = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let x = g.next_f64();
        let data_op = matches!(op, Op::Get | Op::Put);
        let choices = [
            (r.latency, None),
            (
                r.server_error,
                Some(Fault::Error(TransientKind::ServerError)),
            ),
            (r.throttle, Some(Fault::Error(TransientKind::Throttle))),
            (r.timeout, Some(Fault::Error(TransientKind::Timeout))),
            (r.lost_response, Some(Fault::LostResponse)),
            (if data_op { r.corrupt } else { 0.0 }, Some(Fault::Corrupt)),
            (
                if data_op { r.truncate } else { 0.0 },
                Some(Fault::Truncate),
            ),
        ];
        let mut acc = 0.0;
        for (p, fault) in choices {
            acc += p;
            if x < acc {
                return fault.unwrap_or_else(|| {
                    let max = r.max_latency.as_nanos().min(u128::from(u64::MAX)) as u64;
                    Fault::Latency(Duration::from_nanos(g.below(max.saturating_add(1))))
                });
            }
        }
        Fault::None
    }
}

/// How many faults a [`FaultyStore`] injected.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FaultStats {
    pub calls: u64,
    pub latencies: u64,
    pub errors: u64,
    pub lost_responses: u64,
    pub corruptions: u64,
    pub truncations: u64,
}

impl FaultStats {
    /// Faults that made the call fail or return/store wrong data (not latency).
    pub fn harmful(&self) -> u64 {
        self.errors + self.lost_responses + self.corruptions + self.truncations
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    latencies: AtomicU64,
    errors: AtomicU64,
    lost_responses: AtomicU64,
    corruptions: AtomicU64,
    truncations: AtomicU64,
}

/// Wraps a store and injects the faults its [`FaultPlan`] decides (see the module doc).
pub struct FaultyStore<S> {
    inner: S,
    plan: Box<dyn FaultPlan>,
    sleeper: Arc<dyn Sleeper>,
    counters: Counters,
}

impl<S: ObjectStore> FaultyStore<S> {
    /// Injects `plan`'s faults; latency sleeps the calling thread.
    pub fn new(inner: S, plan: impl FaultPlan + 'static) -> FaultyStore<S> {
        Self::with_sleeper(inner, plan, Arc::new(ThreadSleeper))
    }

    /// Injects `plan`'s faults; latency goes through `sleeper`.
    pub fn with_sleeper(
        inner: S,
        plan: impl FaultPlan + 'static,
        sleeper: Arc<dyn Sleeper>,
    ) -> FaultyStore<S> {
        FaultyStore {
            inner,
            plan: Box::new(plan),
            sleeper,
            counters: Counters::default(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn stats(&self) -> FaultStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultStats {
            calls: l(&c.calls),
            latencies: l(&c.latencies),
            errors: l(&c.errors),
            lost_responses: l(&c.lost_responses),
            corruptions: l(&c.corruptions),
            truncations: l(&c.truncations),
        }
    }

    /// Asks the plan, applies latency, counts. Returns the fault still to apply.
    fn decide(&self, op: Op, key: &str) -> Fault {
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::Relaxed);
        let fault = self.plan.decide(op, key);
        let count = match fault {
            Fault::None => None,
            Fault::Latency(d) => {
                self.sleeper.sleep(d);
                Some(&c.latencies)
            }
            Fault::Error(_) => Some(&c.errors),
            Fault::LostResponse => Some(&c.lost_responses),
            Fault::Corrupt if matches!(op, Op::Get | Op::Put) => Some(&c.corruptions),
            Fault::Truncate if matches!(op, Op::Get | Op::Put) => Some(&c.truncations),
            Fault::Corrupt | Fault::Truncate => None,
        };
        if let Some(n) = count {
            n.fetch_add(1, Ordering::Relaxed);
            if !matches!(fault, Fault::Latency(_)) {
                tracing::debug!(
                    op = op.name(),
                    key,
                    ?fault,
                    "injecting an object-store fault"
                );
            }
        }
        fault
    }

    /// Runs `call` under `fault`: an injected error skips it, a lost response runs it
    /// and fails anyway.
    fn apply<T>(
        op: Op,
        key: &str,
        fault: Fault,
        call: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match fault {
            Fault::Error(kind) => Err(injected_error(op, key, kind)),
            Fault::LostResponse => {
                call()?;
                Err(StoreError::unavailable(
                    op.name(),
                    key,
                    TransientKind::Connection,
                    "connection reset before the response arrived (injected; the operation was performed)",
                ))
            }
            _ => call(),
        }
    }
}

fn injected_error(op: Op, key: &str, kind: TransientKind) -> StoreError {
    let detail = match kind {
        TransientKind::ServerError => "HTTP 500 InternalError (injected)",
        TransientKind::Throttle => "HTTP 503 SlowDown (injected)",
        TransientKind::Timeout => "no response within the request timeout (injected)",
        TransientKind::Connect => "could not connect (injected)",
        TransientKind::Connection => "connection reset (injected)",
    };
    StoreError::unavailable(op.name(), key, kind, detail)
}

/// Flips every bit of one byte (chosen from the data's length, so it is repeatable).
fn corrupt(data: &mut [u8]) {
    if !data.is_empty() {
        let i = data.len() / 2;
        data[i] ^= 0xff;
    }
}

fn truncated_len(len: usize) -> usize {
    len / 2
}

impl<S: ObjectStore> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }

    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let fault = self.decide(Op::Put, key);
        Self::apply(Op::Put, key, fault, || match fault {
            Fault::Corrupt => {
                let mut bad = data.to_vec();
                corrupt(&mut bad);
                self.inner.put(key, bad.into())
            }
            Fault::Truncate => self.inner.put(key, data.slice(..truncated_len(data.len()))),
            _ => self.inner.put(key, data.clone()),
        })
    }

    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        let fault = self.decide(Op::Get, key);
        Self::apply(Op::Get, key, fault, || {
            let mut data = self.inner.get(key, offset, len)?;
            match fault {
                Fault::Corrupt => corrupt(&mut data),
                Fault::Truncate => data.truncate(truncated_len(data.len())),
                _ => {}
            }
            Ok(data)
        })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let fault = self.decide(Op::Head, key);
        Self::apply(Op::Head, key, fault, || self.inner.head(key))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let fault = self.decide(Op::Delete, key);
        Self::apply(Op::Delete, key, fault, || self.inner.delete(key))
    }

    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let fault = self.decide(Op::List, prefix);
        Self::apply(Op::List, prefix, fault, || {
            self.inner.list(prefix, start_after, limit)
        })
    }
}
