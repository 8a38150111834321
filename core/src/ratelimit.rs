//! Per-client rate limits (`--upload-limit`, `--download-limit`): a token bucket with
//! time passed in. The shell asks how long a transfer of `n` bytes must wait and sleeps
//! that long; this module never sleeps or reads a clock.
//!
//! The bucket holds up to `burst` bytes of credit and refills at `rate` bytes per second.
//! A transfer takes its bytes at once, even into debt; the debt is the wait. Concurrent
//! transfers therefore queue behind one another in the order they asked, and over any
//! window much longer than `burst / rate` the bytes that went through are
//! `rate × window + burst` at most, and within one transfer of that if every caller
//! waits as told.

/// Bytes per second of a token bucket's refill, and its burst.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Bytes per second; 0 means unlimited.
    rate: u64,
    /// Most credit, in bytes.
    burst: u64,
    /// Credit in bytes × 1e9 (byte-nanoseconds per second units), negative in debt.
    credit: i128,
    /// When `credit` was last brought up to date.
    at_ns: u64,
}

const NS: i128 = 1_000_000_000;

/// The burst a limit gets by default: a tenth of a second of traffic, at least 1 MiB
/// (one block of most volumes needs to pass without waiting twice).
pub fn default_burst(rate: u64) -> u64 {
    (rate / 10).max(1 << 20)
}

impl TokenBucket {
    /// A bucket refilling at `rate` bytes/s (0: unlimited), starting full.
    pub fn new(rate: u64, burst: u64, now_ns: u64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            credit: burst as i128 * NS,
            at_ns: now_ns,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refill(&mut self, now_ns: u64) {
        let dt = now_ns.saturating_sub(self.at_ns) as i128;
        self.at_ns = self.at_ns.max(now_ns);
        self.credit = (self.credit + dt * self.rate as i128).min(self.burst as i128 * NS);
    }

    /// Takes `n` bytes at `now_ns` and returns how many nanoseconds the caller must wait
    /// before (or after) moving them: 0 while there is credit.
    pub fn take(&mut self, n: u64, now_ns: u64) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        self.refill(now_ns);
        self.credit -= n as i128 * NS;
        if self.credit >= 0 {
            0
        } else {
            (-self.credit / self.rate as i128).min(u64::MAX as i128) as u64
        }
    }

    /// Gives back `n` bytes taken by an estimate that was too high.
    pub fn refund(&mut self, n: u64, now_ns: u64) {
        self.refill(now_ns);
        self.credit = (self.credit + n as i128 * NS).min(self.burst as i128 * NS);
    }

    /// Changes the rate (a new volume-wide default, say); debt already owed stays owed.
    pub fn set_rate(&mut self, rate: u64, burst: u64, now_ns: u64) {
        self.refill(now_ns);
        self.rate = rate;
        self.burst = burst;
        self.credit = self.credit.min(burst as i128 * NS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn credit_then_waits_in_proportion() {
        let mut b = TokenBucket::new(1000, 500, 0);
        assert_eq!(b.take(500, 0), 0);
        // 250 bytes of debt at 1000 B/s: a quarter of a second.
        assert_eq!(b.take(250, 0), SEC / 4);
        // Half a second later the debt is paid and 250 more accrued.
        assert_eq!(b.take(250, SEC * 3 / 4), 0);
        let mut free = TokenBucket::new(0, 0, 0);
        assert_eq!(free.take(u64::MAX, 0), 0);
    }

    #[test]
    fn a_new_rate_applies_from_now() {
        let mut b = TokenBucket::new(1000, 1000, 0);
        assert_eq!(b.take(2000, 0), SEC);
        b.set_rate(2000, 1000, 0);
        assert_eq!(b.take(0, 0), SEC / 2);
    }

    /// Concurrent senders in simulated time: each sends chunks, waiting as the bucket
    /// says (the shell's sleep, here a jump of virtual time). Over 10 simulated seconds
    /// the bytes sent are within 1% (plus the burst) of the rate.
    fn simulate(rate: u64, senders: usize, chunk: u64, secs: u64) -> u64 {
        let mut b = TokenBucket::new(rate, default_burst(rate), 0);
        // (time the sender may send next, sender)
        let mut ready: Vec<u64> = vec![0; senders];
        let end = secs * SEC;
        let mut sent = 0u64;
        loop {
            let (i, &t) = ready
                .iter()
                .enumerate()
                .min_by_key(|&(i, &t)| (t, i))
                .expect("senders");
            if t >= end {
                break;
            }
            let wait = b.take(chunk, t);
            // The transfer itself takes a little time too (a fast link).
            ready[i] = t + wait + 1_000;
            if t + wait < end {
                sent += chunk;
            }
        }
        sent
    }

    #[test]
    fn achieved_rate_matches_the_limit_in_simulated_time() {
        for (rate, senders, chunk) in [
            (10u64 << 20, 8, 4 << 20),
            (50 << 20, 4, 1 << 20),
            (100_000_000 / 8, 16, 64 << 10),
        ] {
            let sent = simulate(rate, senders, chunk, 10);
            let want = rate * 10 + default_burst(rate);
            let err = (sent as f64 - want as f64).abs() / want as f64;
            assert!(
                err < 0.05,
                "rate {rate}: sent {sent} in 10 s, want {want} (off {err:.3})"
            );
        }
    }

    proptest! {
        /// Whatever the rate, senders and chunk size, 10 s of simulated traffic stays
        /// within 5% of rate × 10 s + burst + one chunk per sender.
        #[test]
        fn never_much_more_than_the_limit(rate in 1u64 << 16..1 << 30, senders in 1usize..32, chunk in 1u64 << 12..8 << 20) {
            let sent = simulate(rate, senders, chunk, 10);
            let cap = rate * 10 + default_burst(rate) + chunk * senders as u64;
            prop_assert!(sent as f64 <= cap as f64 * 1.05, "sent {sent}, cap {cap}");
        }
    }
}
