//! The nemesis: one fault at a time, each undone after a random while, then a quiet
//! spell; its choices come from the run's seed.

use crate::cluster::Cluster;
use std::thread;
use std::time::{Duration, Instant};

/// A small seeded generator for the nemesis.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the nemesis did.
#[derive(Default, Debug)]
pub struct Stats {
    pub kills: u64,
    pub pauses: u64,
}

struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    rng: Rng,
    start: Instant,
    stats: Stats,
}

impl Nemesis<'_> {
    fn say(&self, what: &str) {
        println!(
            "[{:>5.1}s] nemesis: {what}",
            self.start.elapsed().as_secs_f64()
        );
    }

    fn sleep(&mut self, min_ms: u64, spread_ms: u64) {
        thread::sleep(Duration::from_millis(min_ms + self.rng.below(spread_ms)));
    }

    /// SIGKILL a replica, wait, restart it.
    fn kill(&mut self) -> Result<(), String> {
        let i = self.rng.below(3) as usize;
        self.say(&format!("kill -9 replica {}", i + 1));
        self.cluster.kill(i);
        self.stats.kills += 1;
        self.sleep(500, 2500);
        self.cluster.spawn(i)?;
        self.say(&format!("restart replica {}", i + 1));
        Ok(())
    }

    /// SIGSTOP the leader, wait, SIGCONT it.
    fn pause(&mut self) {
        let Some(l) = self.cluster.leader() else {
            return;
        };
        self.say(&format!("SIGSTOP leader {}", l + 1));
        self.cluster.signal(l, libc::SIGSTOP);
        self.cluster.replicas[l].paused = true;
        self.stats.pauses += 1;
        self.sleep(1000, 2000);
        self.cluster.signal(l, libc::SIGCONT);
        self.cluster.replicas[l].paused = false;
        self.say(&format!("SIGCONT replica {}", l + 1));
    }
}

/// Faults until `duration` has passed; the cluster is left as the last fault left it
/// (undone): the caller heals it.
pub fn run(cluster: &mut Cluster, duration: Duration, seed: u64) -> Result<Stats, String> {
    let mut n = Nemesis {
        cluster,
        rng: Rng(seed),
        start: Instant::now(),
        stats: Stats::default(),
    };
    while n.start.elapsed() < duration {
        n.sleep(1000, 2000);
        match n.rng.below(3) {
            0 => n.kill()?,
            1 => n.pause(),
            _ => {}
        }
    }
    Ok(n.stats)
}
