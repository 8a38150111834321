//! The nemesis: one fault at a time, each undone after a random while, then a quiet
//! spell; its choices come from the run's seed. Faults: SIGKILL and restart a replica,
//! SIGSTOP and SIGCONT the leader, and partition the network (see [`Nemesis::partition`]).

use crate::cluster::Cluster;
use crate::proxy::{Link, CLIENTS};
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

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    Kill,
    Pause,
    Partition,
}

/// The shapes of partitions.
const SHAPES: [&str; 3] = ["isolated leader", "majority/minority", "bridge"];

/// What the nemesis did.
#[derive(Default, Debug)]
pub struct Stats {
    pub kills: u64,
    pub pauses: u64,
    /// Partitions by shape (as in `SHAPES`).
    pub partitions: [u64; 3],
    /// Partitions that blackholed their links (the others dropped them).
    pub blackholes: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.partitions;
        let total: u64 = p.iter().sum();
        write!(
            f,
            "{} kills, {} pauses, {total} partitions ({} {}, {} {}, {} {}; {} dropped, {} blackholed)",
            self.kills,
            self.pauses,
            p[0],
            SHAPES[0],
            p[1],
            SHAPES[1],
            p[2],
            SHAPES[2],
            total - self.blackholes,
            self.blackholes
        )
    }
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

    /// Replicas `1..=n` in a random order.
    fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (1..=n).collect();
        for i in (1..n).rev() {
            v.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
        v
    }

    /// Cuts the network into groups (a node talks only to nodes it shares a group
    /// with), waits, heals. Shapes: the leader alone (a random replica when none
    /// answers as leader); a random minority against the majority; a bridge, two
    /// halves that each see only a middle replica. The clients sit in one group (the
    /// biggest half the time, else any: cut off from a majority, their calls wait and,
    /// past their patience, fail with unknown outcomes). The cut links are dropped or
    /// blackholed.
    fn partition(&mut self) {
        let n = self.cluster.replicas.len();
        let order = self.shuffled(n);
        let shape = self.rng.below(3) as usize;
        let mut groups: Vec<Vec<usize>> = match shape {
            0 => {
                let alone = self.cluster.leader().map_or(order[0], |l| l + 1);
                let rest = (1..=n).filter(|&r| r != alone).collect();
                vec![vec![alone], rest]
            }
            1 => {
                let (minority, majority) = order.split_at((n - 1) / 2);
                vec![minority.to_vec(), majority.to_vec()]
            }
            _ => {
                let (middle, rest) = (order[0], &order[1..]);
                let (a, b) = rest.split_at(rest.len() / 2);
                vec![[a, &[middle]].concat(), [&[middle], b].concat()]
            }
        };
        let biggest = (0..groups.len())
            .max_by_key(|&g| groups[g].len())
            .unwrap_or(0);
        let with = if self.rng.below(2) == 0 {
            biggest
        } else {
            self.rng.below(groups.len() as u64) as usize
        };
        groups[with].push(CLIENTS);
        let mode = if self.rng.below(2) == 0 {
            Link::Drop
        } else {
            Link::Blackhole
        };
        let shown: Vec<String> = groups
            .iter()
            .map(|g| {
                let names: Vec<String> = g
                    .iter()
                    .map(|&x| match x {
                        CLIENTS => "clients".to_string(),
                        r => r.to_string(),
                    })
                    .collect();
                format!("{{{}}}", names.join(" "))
            })
            .collect();
        self.say(&format!(
            "partition ({}, {}): {}",
            SHAPES[shape],
            if mode == Link::Drop {
                "dropped"
            } else {
                "blackholed"
            },
            shown.join(" ")
        ));
        self.cluster.net.partition(&groups, mode);
        self.stats.partitions[shape] += 1;
        self.stats.blackholes += u64::from(mode == Link::Blackhole);
        // Some outlast the clients' patience (5 s): their calls fail, outcome unknown.
        self.sleep(1000, 5000);
        let led = match self.cluster.leader() {
            Some(l) => format!("replica {} led at the end", l + 1),
            None => "no leader at the end".into(),
        };
        self.cluster.net.heal();
        self.say(&format!("heal the network ({led})"));
    }
}

/// Faults until `duration` has passed; the cluster is left as the last fault left it
/// (undone): the caller heals it.
pub fn run(
    cluster: &mut Cluster,
    faults: &[Fault],
    duration: Duration,
    seed: u64,
) -> Result<Stats, String> {
    let mut n = Nemesis {
        cluster,
        rng: Rng(seed),
        start: Instant::now(),
        stats: Stats::default(),
    };
    while n.start.elapsed() < duration {
        n.sleep(1000, 2000);
        // One chance in `faults.len() + 1` of no fault.
        match faults.get(n.rng.below(faults.len() as u64 + 1) as usize) {
            Some(Fault::Kill) => n.kill()?,
            Some(Fault::Pause) => n.pause(),
            Some(Fault::Partition) => n.partition(),
            None => {}
        }
        // A replica that died on its own (not killed) is a finding, not a fault.
        if let Some(why) = n.cluster.exited() {
            return Err(why);
        }
    }
    Ok(n.stats)
}
