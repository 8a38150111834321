//! Hit ratios of the block-cache eviction policies on traces shaped like an AI-training
//! platform's reads, to choose `policy::DEFAULT_POLICY` from numbers rather than folklore.
//!
//! `cargo bench -p ferrofs-core --bench eviction` prints a markdown table: per trace and
//! policy, the hit ratio by bytes (what the object store is spared) and by count (what the
//! latency is spared), and the time per access of the policy plus this file's small cache.
//! A last row per trace, `belady`, is the offline optimum (farthest next use, with bypass):
//! not a policy, a ceiling.
//!
//! The traces are generated from a seed, so every run replays the same accesses. Small files
//! are one block of ~110 KiB each; big files are 4 MiB blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ferrofs_core::cache::policy::{new_policy, PolicyKind, SplitMix64, DEFAULT_POLICY};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// About 19,000 small files: large enough for the ratios to settle, small enough to run
/// every policy on every trace in seconds.
const CACHE_BYTES: u64 = 2048 * MIB;
const BLOCK: u64 = 4 * MIB;
const EPOCHS: usize = 5;
/// Seed of the traces and of the random policies; `EVICTION_SEED=n` replays others, to see
/// that the ranking is not an accident of one seed.
const SEED: u64 = 42;

#[derive(Clone, Copy)]
struct Access {
    key: u64,
    size: u64,
}

struct Trace {
    name: &'static str,
    about: &'static str,
    accesses: Vec<Access>,
}

/// Hands out fresh keys for datasets, and the randomness that shapes the traces.
struct Gen {
    rng: SplitMix64,
    next_key: u64,
}

impl Gen {
    /// Small files of 60–160 KiB (mean ~110 KiB) adding up to `share` of the cache.
    fn small_files(&mut self, share: f64) -> Vec<Access> {
        let want = (CACHE_BYTES as f64 * share) as u64;
        let mut files = Vec::new();
        let mut total = 0;
        while total < want {
            let size = 60 * KIB + self.rng.below(100 * KIB);
            files.push(self.fresh(size));
            total += size;
        }
        files
    }

    /// A big file's 4 MiB blocks, in order, adding up to `share` of the cache.
    fn big_file(&mut self, share: f64) -> Vec<Access> {
        let blocks = (CACHE_BYTES as f64 * share) as u64 / BLOCK;
        (0..blocks).map(|_| self.fresh(BLOCK)).collect()
    }

    fn fresh(&mut self, size: u64) -> Access {
        self.next_key += 1;
        Access {
            key: self.next_key,
            size,
        }
    }

    /// A fresh random permutation (Fisher–Yates), as a training data loader draws each epoch.
    fn shuffled(&mut self, items: &[Access]) -> Vec<Access> {
        let mut v = items.to_vec();
        for i in (1..v.len()).rev() {
            v.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
        v
    }
}

/// A job reading its dataset in epochs, each a new permutation.
struct Job {
    dataset: Vec<Access>,
    order: Vec<Access>,
}

impl Job {
    fn next(&mut self, g: &mut Gen) -> Access {
        if self.order.is_empty() {
            self.order = g.shuffled(&self.dataset);
        }
        self.order.pop().expect("datasets are not empty")
    }
}

fn epochs(g: &mut Gen, name: &'static str, about: &'static str, share: f64) -> Trace {
    let dataset = g.small_files(share);
    let accesses = (0..EPOCHS).flat_map(|_| g.shuffled(&dataset)).collect();
    Trace {
        name,
        about,
        accesses,
    }
}

fn mixed(g: &mut Gen) -> Trace {
    let mut jobs = [
        Job {
            dataset: g.small_files(0.5),
            order: Vec::new(),
        },
        Job {
            dataset: g.small_files(0.7),
            order: Vec::new(),
        },
    ];
    let validation = g.small_files(0.05);
    // One "period" is the time both jobs need for an epoch each if they alternate.
    let period = jobs[0].dataset.len() + jobs[1].dataset.len();
    let mut accesses = Vec::new();
    for step in 0..EPOCHS * period {
        if step % (period / 4) == 0 {
            accesses.extend(g.shuffled(&validation));
        }
        if step % period == period / 2 {
            // Someone loads a checkpoint once (evaluation, a restart): never read again.
            accesses.extend(g.big_file(0.6));
        }
        let job = g.rng.below(2) as usize;
        accesses.push(jobs[job].next(g));
    }
    Trace {
        name: "mixed",
        about: "two jobs' epochs over 0.5× and 0.7× (interleaved), a 0.05× validation set every \
                quarter period, a 0.6× one-shot checkpoint scan (4 MiB blocks) every period",
        accesses,
    }
}

fn zipf(g: &mut Gen) -> Trace {
    const ALPHA: f64 = 0.9;
    let population = g.small_files(3.0);
    let mut cdf = Vec::with_capacity(population.len());
    let mut total = 0.0;
    for rank in 1..=population.len() {
        total += (rank as f64).powf(-ALPHA);
        cdf.push(total);
    }
    let accesses = (0..6 * population.len())
        .map(|_| {
            let u = (g.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            population[cdf.partition_point(|&c| c < u).min(population.len() - 1)]
        })
        .collect();
    Trace {
        name: "zipf",
        about: "Zipf α=0.9 reads over a population of 3× the cache",
        accesses,
    }
}

#[derive(Default, Clone, Copy)]
struct Score {
    hits: u64,
    hit_bytes: u64,
    count: u64,
    bytes: u64,
    nanos: u128,
}

impl Score {
    fn record(&mut self, a: Access, hit: bool) {
        self.count += 1;
        self.bytes += a.size;
        if hit {
            self.hits += 1;
            self.hit_bytes += a.size;
        }
    }
    fn by_bytes(&self) -> f64 {
        100.0 * self.hit_bytes as f64 / self.bytes as f64
    }
    fn by_count(&self) -> f64 {
        100.0 * self.hits as f64 / self.count as f64
    }
    fn ns_per_op(&self) -> f64 {
        self.nanos as f64 / self.count as f64
    }
}

/// The smallest byte-capacity cache around a policy, as the block cache index drives it.
fn run_policy(kind: PolicyKind, seed: u64, trace: &[Access]) -> Score {
    let mut policy = new_policy::<u64>(kind, seed);
    let mut resident: BTreeMap<u64, u64> = BTreeMap::new();
    let mut used = 0;
    let mut score = Score::default();
    let start = Instant::now();
    for &a in trace {
        let hit = resident.contains_key(&a.key);
        if hit {
            policy.touch(&a.key);
        } else {
            while used + a.size > CACHE_BYTES {
                let victim = policy.evict().expect("a full cache has a victim");
                used -= resident.remove(&victim).expect("victims are resident");
            }
            resident.insert(a.key, a.size);
            used += a.size;
            policy.insert(a.key, a.size);
        }
        score.record(a, hit);
    }
    score.nanos = start.elapsed().as_nanos();
    score
}

/// Belady's rule with bypass: evict what is read again farthest in the future, and do not
/// admit a block read again later than everything resident.
fn run_belady(trace: &[Access]) -> Score {
    let mut next_use = vec![usize::MAX; trace.len()];
    let mut last: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, a) in trace.iter().enumerate().rev() {
        next_use[i] = last.insert(a.key, i).unwrap_or(usize::MAX);
    }
    let mut resident: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    let mut by_next: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut used = 0;
    let mut score = Score::default();
    let start = Instant::now();
    for (i, &a) in trace.iter().enumerate() {
        let hit = if let Some((next, _)) = resident.get_mut(&a.key) {
            by_next.remove(&(*next, a.key));
            *next = next_use[i];
            by_next.insert((next_use[i], a.key));
            true
        } else {
            while used + a.size > CACHE_BYTES {
                let &(far, key) = by_next.last().expect("a full cache has a victim");
                if far <= next_use[i] {
                    break;
                }
                by_next.pop_last();
                used -= resident.remove(&key).expect("victims are resident").1;
            }
            if used + a.size <= CACHE_BYTES {
                resident.insert(a.key, (next_use[i], a.size));
                by_next.insert((next_use[i], a.key));
                used += a.size;
            }
            false
        };
        score.record(a, hit);
    }
    score.nanos = start.elapsed().as_nanos();
    score
}

fn main() {
    let seed = match std::env::var("EVICTION_SEED") {
        Ok(s) => s.parse().expect("EVICTION_SEED is a u64"),
        Err(_) => SEED,
    };
    let mut g = Gen {
        rng: SplitMix64::new(seed),
        next_key: 0,
    };
    let traces = [
        epochs(
            &mut g,
            "epochs",
            "5 epochs over a dataset of 1.5× the cache",
            1.5,
        ),
        epochs(
            &mut g,
            "epochs-fit",
            "5 epochs over a dataset of 0.8× the cache",
            0.8,
        ),
        mixed(&mut g),
        zipf(&mut g),
    ];
    println!(
        "## Eviction policies on training traces\n\ncache {} MiB, seed {seed}\n",
        CACHE_BYTES / MIB
    );
    println!("| trace | accesses | what |\n| --- | ---: | --- |");
    for t in &traces {
        println!("| {} | {} | {} |", t.name, t.accesses.len(), t.about);
    }
    println!("\n| trace | policy | hit % by bytes | hit % by count | ns/access |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let mut totals: BTreeMap<PolicyKind, (f64, f64, f64)> = BTreeMap::new();
    for t in &traces {
        for kind in PolicyKind::ALL {
            let s = run_policy(kind, seed, &t.accesses);
            let row = format!(
                "{:.1} | {:.1} | {:.0}",
                s.by_bytes(),
                s.by_count(),
                s.ns_per_op()
            );
            println!("| {} | {kind} | {row} |", t.name);
            let total = totals.entry(kind).or_default();
            total.0 += s.by_bytes();
            total.1 += s.by_count();
            total.2 += s.ns_per_op();
        }
        let s = run_belady(&t.accesses);
        println!(
            "| {} | *belady* | *{:.1}* | *{:.1}* | |",
            t.name,
            s.by_bytes(),
            s.by_count()
        );
    }
    let n = traces.len() as f64;
    println!("\n| policy | average hit % by bytes | by count | ns/access |");
    println!("| --- | ---: | ---: | ---: |");
    for (kind, (b, c, ns)) in &totals {
        println!("| {kind} | {:.1} | {:.1} | {:.0} |", b / n, c / n, ns / n);
    }
    let (best, _) = totals
        .iter()
        .max_by(|x, y| x.1 .0.total_cmp(&y.1 .0))
        .expect("at least one policy");
    println!("\nbest average hit ratio by bytes: {best} (DEFAULT_POLICY is {DEFAULT_POLICY})");
}
