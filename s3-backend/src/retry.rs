//! Retries with exponential backoff and full jitter.
//!
//! One loop ([`RetryPolicy::run`]) serves both [`RetryingStore`] (a wrapper around any
//! store, used with [`crate::FaultyStore`] in tests and the simulator) and
//! [`crate::S3Store`] (which retries its own requests). Only
//! [transient](StoreError::is_transient) failures are retried: 5xx, throttling,
//! timeouts and connection failures, never a 403, a 404 or an invalid key. After
//! `max_retries` retries the last error is returned, with the number of attempts made:
//! an operation that keeps failing ends in an error (EIO to the application), never a
//! hang.
//!
//! Waiting goes through a [`Sleeper`], so a simulator can advance virtual time instead
//! of sleeping, and the jitter comes from a seeded [`SplitMix64`], so runs repeat.

use crate::error::StoreError;
use crate::{Bytes, ObjectInfo, ObjectStore};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Waits between attempts (and, in [`crate::FaultyStore`], for injected latency).
pub trait Sleeper: Send + Sync {
    fn sleep(&self, d: Duration);
}

/// Sleeps the calling thread ([`std::thread::sleep`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadSleeper;

impl Sleeper for ThreadSleeper {
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// Any `Fn(Duration)` is a sleeper: e.g. `|d| clock.advance(d)` in a simulator.
impl<F: Fn(Duration) + Send + Sync> Sleeper for F {
    fn sleep(&self, d: Duration) {
        self(d)
    }
}

/// A small, fast, seeded pseudo-random generator (SplitMix64). Not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// A seed that differs between processes and calls (time, pid, a counter): for
    /// jitter in production, where repeatability does not matter.
    pub fn entropy_seed() -> u64 {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut g = SplitMix64(nanos ^ (u64::from(std::process::id()) << 32) ^ n);
        g.next_u64()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for jitter and fault choice.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// How often and how patiently to retry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` requests).
    pub max_retries: u32,
    /// The backoff cap before the first retry; it doubles with every retry...
    pub base_delay: Duration,
    /// ...up to this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 retries (5 attempts), waits drawn from up to 100 ms, 200 ms, 400 ms, 800 ms.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (1-based): "full jitter", uniform in
    /// `[0, min(max_delay, base_delay * 2^(retry-1))]`, so that clients that failed
    /// together do not come back together.
    pub fn backoff(&self, retry: u32, rng: &mut SplitMix64) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay);
        let nanos = cap.as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(rng.below(nanos.saturating_add(1)))
    }

    /// Runs `attempt` until it succeeds, fails permanently, or has failed transiently
    /// `max_retries + 1` times; waits [`RetryPolicy::backoff`] with `sleeper` between
    /// attempts. The error of a given-up operation carries the number of attempts.
    pub fn run<T>(
        &self,
        sleeper: &dyn Sleeper,
        rng: &Mutex<SplitMix64>,
        counters: &RetryCounters,
        mut attempt: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut retries = 0u32;
        loop {
            counters.attempts.fetch_add(1, Ordering::Relaxed);
            match attempt() {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && retries < self.max_retries => {
                    retries += 1;
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = {
                        let mut g = rng.lock().unwrap_or_else(|p| p.into_inner());
                        self.backoff(retries, &mut g)
                    };
                    tracing::debug!(error = %e, retry = retries, ?wait, "transient object-store error, retrying");
                    sleeper.sleep(wait);
                }
                Err(e) => {
                    if e.is_transient() {
                        counters.given_up.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, attempts = retries + 1, "object-store request keeps failing, giving up");
                    }
                    return Err(e.with_attempts(retries + 1));
                }
            }
        }
    }
}

/// Counts of a retrying store's requests.
#[derive(Debug, Default)]
pub struct RetryCounters {
    attempts: AtomicU64,
    retries: AtomicU64,
    given_up: AtomicU64,
}

/// A snapshot of [`RetryCounters`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RetryStats {
    /// Requests made (first attempts and retries).
    pub attempts: u64,
    /// Of those, retries after a transient failure.
    pub retries: u64,
    /// Operations that failed transiently `max_retries + 1` times and were given up.
    pub given_up: u64,
}

impl RetryCounters {
    pub fn snapshot(&self) -> RetryStats {
        RetryStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            given_up: self.given_up.load(Ordering::Relaxed),
        }
    }
}

/// Retries the transient failures of any store (see the module doc). Every operation
/// of the trait is idempotent for immutable objects (a repeated put stores the same
/// bytes, a repeated delete finds nothing), so all of them are retried.
pub struct RetryingStore<S> {
    inner: S,
    policy: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
    rng: Mutex<SplitMix64>,
    counters: RetryCounters,
}

impl<S: ObjectStore> RetryingStore<S> {
    /// Retries with `policy`, sleeping the calling thread, with jitter from a
    /// process-unique seed.
    pub fn new(inner: S, policy: RetryPolicy) -> RetryingStore<S> {
        Self::with_sleeper(
            inner,
            policy,
            Arc::new(ThreadSleeper),
            SplitMix64::entropy_seed(),
        )
    }

    /// Retries with `policy`, waiting through `sleeper` with jitter from `seed`
    /// (deterministic: for tests and the simulator).
    pub fn with_sleeper(
        inner: S,
        policy: RetryPolicy,
        sleeper: Arc<dyn Sleeper>,
        seed: u64,
    ) -> RetryingStore<S> {
        RetryingStore {
            inner,
            policy,
            sleeper,
            rng: Mutex::new(SplitMix64::new(seed)),
            counters: RetryCounters::default(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Requests, retries and given-up operations so far.
    pub fn stats(&self) -> RetryStats {
        self.counters.snapshot()
    }

    fn run<T>(&self, attempt: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.policy
            .run(&*self.sleeper, &self.rng, &self.counters, attempt)
    }
}

impl<S: ObjectStore> fmt::Debug for RetryingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingStore")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S: ObjectStore> ObjectStore for RetryingStore<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.run(|| self.inner.put(key, data.clone()))
    }

    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        self.run(|| self.inner.get(key, offset, len))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.run(|| self.inner.head(key))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.run(|| self.inner.delete(key))
    }

    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        self.run(|| self.inner.list(prefix, start_after, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let mut g = SplitMix64::new(7);
        for retry in 1..=10u32 {
            let cap =
                Duration::from_millis(100 * (1 << (retry - 1).min(10))).min(Duration::from_secs(1));
            let waits: Vec<_> = (0..200).map(|_| p.backoff(retry, &mut g)).collect();
            assert!(waits.iter().all(|w| *w <= cap), "retry {retry}");
            // Spread over the whole range, not stuck at the cap.
            assert!(waits.iter().any(|w| *w < cap / 4), "retry {retry}");
            assert!(waits.iter().any(|w| *w > cap * 3 / 4), "retry {retry}");
        }
        assert_eq!(
            RetryPolicy {
                max_retries: 1,
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO
            }
            .backoff(1, &mut g),
            Duration::ZERO
        );
        // Huge retry numbers neither overflow nor exceed the cap.
        assert!(p.backoff(u32::MAX, &mut g) <= Duration::from_secs(1));
    }

    #[test]
    fn splitmix_is_seeded() {
        let a: Vec<_> = (0..5)
            .scan(SplitMix64::new(1), |g, _| Some(g.next_u64()))
            .collect();
        let b: Vec<_> = (0..5)
            .scan(SplitMix64::new(1), |g, _| Some(g.next_u64()))
            .collect();
        assert_eq!(a, b);
        let mut g = SplitMix64::new(2);
        assert!((0..1000).all(|_| {
            let x = g.next_f64();
            (0.0..1.0).contains(&x)
        }));
        assert!((0..1000).all(|_| g.below(3) < 3));
    }
}
