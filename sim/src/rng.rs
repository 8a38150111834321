//! The simulator's only source of randomness: a seeded xoshiro256** generator.
//!
//! Every random choice of a run (faults, latencies, which client runs next, what each
//! client does) is drawn from generators derived from the run's seed, so a seed names one
//! run exactly. Only integer arithmetic and basic float comparisons are used — no `ln`,
//! `exp` or `cos`, whose last bits differ between libms — so a seed gives the same run on
//! every machine.

/// xoshiro256** (Blackman & Vigna), seeded through SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// One step of SplitMix64: a good 64-bit mixer for seeding and hashing.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 2^(i/16) × 1024 for i in 0..=16: fractional powers of two for latency shapes.
const POW2_SIXTEENTHS: [u64; 17] = [
    1024, 1069, 1116, 1166, 1217, 1271, 1327, 1386, 1448, 1512, 1579, 1649, 1722, 1798, 1878, 1961,
    2048,
];

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut s = [0u64; 4];
        for w in s.iter_mut() {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *w = splitmix64(x);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    /// An independent generator for a named purpose (a client, an incarnation), so that
    /// adding draws in one place does not shift every other stream.
    pub fn derive(seed: u64, stream: u64) -> Rng {
        Rng::new(splitmix64(seed ^ splitmix64(stream.wrapping_add(0x5EED))))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, n)`; 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[lo, hi)` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// Uniform index into a slice of length `n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 2^53 steps: exact for the probabilities used here, and free of libm.
        let threshold = (p * (1u64 << 53) as f64) as u64;
        (self.next_u64() >> 11) < threshold
    }

    /// An index chosen with probability proportional to `weights[i]`.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w as u64 {
                return i;
            }
            x -= w as u64;
        }
        weights.len().saturating_sub(1)
    }

    /// `median × 2^(e/16)` for an exponent `e` in sixteenths.
    fn scale(median: u64, e: i64) -> u64 {
        let whole = e.div_euclid(16);
        let frac = e.rem_euclid(16) as usize;
        let v = median.saturating_mul(POW2_SIXTEENTHS[frac]) >> 10;
        if whole >= 0 {
            v.saturating_mul(1u64 << whole.min(40))
        } else {
            v >> (-whole).min(63)
        }
    }

    /// A latency around `median` with a log-normal-like body (about ±1.5× at one
    /// standard deviation) and, with probability `tail`, a long tail of 2× to 256×.
    pub fn latency(&mut self, median: u64, tail: f64) -> u64 {
        // A sum of three uniform exponents approximates a normal in log space.
        let mut e: i64 = 0;
        for _ in 0..3 {
            e += self.range(0, 21) as i64 - 10;
        }
        if self.chance(tail) {
            e += 16 * (1 + self.below(8) as i64);
        }
        Self::scale(median, e).max(1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let w = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
        assert_ne!(Rng::derive(7, 1).next_u64(), Rng::derive(7, 2).next_u64());
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let x = r.range(5, 9);
            assert!((5..9).contains(&x));
            assert!(r.weighted(&[0, 3, 0, 1]) % 2 == 1);
        }
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
    }

    #[test]
    fn latency_has_a_body_and_a_tail() {
        let mut r = Rng::new(3);
        let mut v: Vec<u64> = (0..10_000).map(|_| r.latency(1000, 0.01)).collect();
        v.sort();
        let median = v[v.len() / 2];
        assert!((700..1400).contains(&median), "median {median}");
        assert!(v[v.len() - 1] > 10_000, "no tail: max {}", v[v.len() - 1]);
        assert!(v[0] >= 1);
    }
}
