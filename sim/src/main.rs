//! `sim`: runs batches of seeds and reports.
//!
//! ```text
//! cargo run -p sim --release -- --seeds 0..200 --faults all --clients 3
//! cargo run -p sim --release -- --time-limit 180s          # fresh seeds, time-boxed (CI)
//! cargo run -p sim -- --seeds 42..43 --trace               # replay one seed, every event
//! cargo run -p sim -- --plant lying-fsync --seeds 0..200   # does the simulator bite?
//! cargo run -p sim --release -- --raft --time-limit 30s    # the Raft layer (sim::raft_cluster)
//! cargo run -p sim --release -- --cache-group --seeds 0..200   # every seed a cache group
//! ```
//!
//! By default odd seeds run their clients as one cache group (`sim::peers`) and even
//! seeds without; `--cache-group` makes every seed a group, `--no-cache-group` none.
//!
//! Seeds run in parallel (`--jobs`); each run is deterministic on its own. The first
//! failing seed is printed with the command that replays it, and the exit code is 1.

use clap::Parser;
use sim::faults::{Fault, FaultCounts};
use sim::{FaultSet, Plant, RunConfig, RunReport};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "sim",
    about = "Deterministic simulation of ferrofs: real clients over a simulated metadata engine and object store, with seeded faults and invariant checkers."
)]
struct Args {
    /// Seeds to run, `A..B` (B excluded) or one seed `A`. Default: fresh seeds from the
    /// wall clock (100 of them, or as many as `--time-limit` allows).
    #[arg(long)]
    seeds: Option<String>,
    /// Simulated clients sharing the volume.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Operations per client per run.
    #[arg(long, default_value_t = 150)]
    steps: u64,
    /// Faults to inject: `none`, `all`, or a comma list of store, meta-latency, crash,
    /// system-crash, pause, meta-disk, cache-disk, peers.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Stop starting new seeds after this long (e.g. `120s`, `3m`).
    #[arg(long)]
    time_limit: Option<String>,
    /// Print every event of the run (one seed only).
    #[arg(long)]
    trace: bool,
    /// Plant a known bug: lying-fsync, non-atomic-txn, slice-id-reuse, lost-object-put,
    /// skip-checksum, swallowed-meta-error, misdirected-cache-read, ignored-cache-delete, unsynced-staging,
    /// peer-skip-verify (turns the cache group on).
    #[arg(long)]
    plant: Option<String>,
    /// Check the whole world every this many yield points (0: only at the end).
    #[arg(long, default_value_t = 200)]
    check_every: u64,
    /// Seeds run in parallel (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print one line per seed (trace hash, events, virtual time, leaks).
    #[arg(long, short)]
    verbose: bool,
    /// Run the replicated engine's Raft layer instead (`sim::raft_cluster`): replicas,
    /// a lossy partitioned network, crashes; `--clients` clients; `--plant
    /// ack-before-sync` plants its bug.
    #[arg(long)]
    raft: bool,
    /// Replicas in a `--raft` run.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Make the clients of every seed one cache group (default: odd seeds only).
    #[arg(long, conflicts_with = "no_cache_group")]
    cache_group: bool,
    /// No cache groups at all (default: odd seeds are one).
    #[arg(long)]
    no_cache_group: bool,
}

/// Which seeds run as a cache group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupMode {
    All,
    None,
    OddSeeds,
}

impl GroupMode {
    fn on(self, seed: u64) -> bool {
        match self {
            GroupMode::All => true,
            GroupMode::None => false,
            GroupMode::OddSeeds => seed % 2 == 1,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration '{s}': use e.g. 120s or 3m"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration '{s}': use e.g. 120s or 3m")),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_seeds(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("bad seed range '{s}': use A..B or A");
    match s.split_once("..") {
        Some((a, b)) => {
            let a: u64 = a.trim().parse().map_err(|_| bad())?;
            let b: u64 = b.trim().parse().map_err(|_| bad())?;
            if b <= a {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let a: u64 = s.trim().parse().map_err(|_| bad())?;
            Ok((a, a + 1))
        }
    }
}

fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // A readable number, different every run.
    (t.as_nanos() as u64 ^ (std::process::id() as u64) << 20) % 1_000_000_000_000 / 1000 * 1000
}

struct Batch {
    cfg: RunConfig,
    end: u64,
    groups: GroupMode,
}

impl Batch {
    fn replay(&self, seed: u64) -> String {
        let mut cmd = format!(
            "cargo run -p sim -- --seeds {seed}..{} --faults {} --clients {} --steps {}",
            seed + 1,
            self.cfg.faults,
            self.cfg.clients,
            self.cfg.steps
        );
        if self.cfg.check_every != RunConfig::default().check_every {
            cmd.push_str(&format!(" --check-every {}", self.cfg.check_every));
        }
        if let Some(p) = self.cfg.plant {
            cmd.push_str(&format!(" --plant {p}"));
        }
        if self.groups.on(seed) {
            cmd.push_str(" --cache-group");
        } else if self.groups != GroupMode::None {
            cmd.push_str(" --no-cache-group");
        }
        cmd.push_str(" --trace");
        cmd
    }
}

#[derive(Default)]
struct Totals {
    runs: u64,
    failed: Vec<RunReport>,
    events: u64,
    max_events: u64,
    sim_ns: u64,
    faults: FaultCounts,
    runs_with: [u64; Fault::ALL.len()],
    exact_reads: u64,
    raced_reads: u64,
    shared_reads: u64,
    bytes: u64,
    eio_injected: u64,
    enospc_injected: u64,
    op_errors_injected: u64,
    eio_raced: u64,
    eio_unuploaded: u64,
    enoent_open: u64,
    leaked: u64,
    runs_leaking: u64,
    leaks_unexplained: u64,
    refused: u64,
    compactions: u64,
    checks: u64,
    cache: sim::client_cache::CacheTotals,
    group_runs: u64,
    peers: sim::peers::PeerTotals,
}

impl Totals {
    fn add(&mut self, r: &RunReport) {
        self.runs += 1;
        self.events += r.events;
        self.max_events = self.max_events.max(r.events);
        self.sim_ns += r.sim_ns;
        for (i, f) in Fault::ALL.iter().enumerate() {
            let n = r.counts.get(*f);
            self.faults.add(*f, n);
            if n > 0 {
                self.runs_with[i] += 1;
            }
        }
        self.exact_reads += r.data.exact_reads;
        self.raced_reads += r.data.raced_reads;
        self.shared_reads += r.data.shared_reads;
        self.bytes += r.data.bytes_checked;
        self.eio_injected += r.data.eio_injected;
        self.enospc_injected += r.data.enospc_injected;
        self.op_errors_injected += r.data.op_errors_injected;
        self.eio_raced += r.data.eio_raced_gc;
        self.eio_unuploaded += r.data.eio_unuploaded;
        self.enoent_open += r.data.enoent_open;
        self.leaked += r.leaked;
        self.checks += r.checks;
        self.refused += r.abandoned_uploads;
        self.compactions += r.compactions;
        self.cache.merge(&r.cache);
        if r.group {
            self.group_runs += 1;
            self.peers.merge(&r.peers);
        }
        if r.leaked > 0 {
            self.runs_leaking += 1;
            if !r.counts.may_leak() {
                self.leaks_unexplained += r.leaked;
            }
        }
        if !r.passed() {
            self.failed.push(r.clone());
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sim: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--raft`: seeds of `sim::raft_cluster`, one after another (each takes milliseconds).
fn run_raft(args: &Args) -> Result<ExitCode, String> {
    use sim::raft_cluster::{run, RaftPlant, RaftRunConfig};
    let plant = match args.plant.as_deref() {
        None => None,
        Some(p) => Some(
            RaftPlant::parse(p)
                .ok_or_else(|| format!("unknown --raft plant '{p}': use ack-before-sync"))?,
        ),
    };
    if !(1..=9).contains(&args.replicas) {
        return Err("--replicas must be 1 to 9".into());
    }
    let limit = args.time_limit.as_deref().map(parse_duration).transpose()?;
    let (first, end) = match &args.seeds {
        Some(s) => parse_seeds(s)?,
        None => {
            let a = fresh_seed();
            (a, a + if limit.is_some() { u64::MAX / 4 } else { 100 })
        }
    };
    let faults = args.faults != "none";
    println!(
        "sim --raft: seeds {first}..{} · {} replicas · {} clients · faults {}",
        if end - first > 1 << 40 {
            "(time-boxed)".to_string()
        } else {
            end.to_string()
        },
        args.replicas,
        args.clients,
        if faults { "on" } else { "off" }
    );
    let started = Instant::now();
    let (mut runs, mut acked, mut crashes, mut partitions, mut terms) = (0u64, 0, 0, 0, 0);
    let (mut snapshots, mut disk, mut torn, mut replaced) = (0u64, 0u64, 0u64, 0u64);
    for seed in first..end {
        if limit.is_some_and(|l| started.elapsed() >= l) {
            break;
        }
        let r = run(RaftRunConfig {
            replicas: args.replicas,
            clients: args.clients,
            faults,
            plant,
            ..RaftRunConfig::new(seed)
        });
        runs += 1;
        acked += r.acked;
        crashes += r.crashes;
        partitions += r.partitions;
        terms += r.terms;
        snapshots += r.snapshots;
        disk += r.disk_errors;
        replaced += r.replacements;
        torn += r.torn;
        if args.verbose {
            println!(
                "seed {seed}: hash {:016x} acked {} conflicts {} resends {} terms {} crashes {} partitions {}",
                r.trace_hash, r.acked, r.conflicts, r.resends, r.terms, r.crashes, r.partitions
            );
        }
        if !r.passed() {
            println!("FAILED seed {seed}:");
            for v in &r.violations {
                println!("  {v}");
            }
            let mut replay = format!(
                "cargo run -p sim -- --raft --seeds {seed}..{} --replicas {} --clients {}",
                seed + 1,
                args.replicas,
                args.clients
            );
            if let Some(p) = &args.plant {
                replay.push_str(&format!(" --plant {p}"));
            }
            println!("replay: {replay}");
            return Ok(ExitCode::from(1));
        }
    }
    println!(
        "{runs} seeds passed in {:.1}s: {acked} increments acknowledged, {terms} leader terms, {crashes} crashes, {partitions} partitions, {disk} failed syncs, {torn} torn crashes, {snapshots} snapshots installed, {replaced} replicas replaced",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn run(args: Args) -> Result<ExitCode, String> {
    if args.raft {
        return run_raft(&args);
    }
    let faults = FaultSet::parse(&args.faults)?;
    let plant = args.plant.as_deref().map(Plant::parse).transpose()?;
    let limit = args.time_limit.as_deref().map(parse_duration).transpose()?;
    if args.clients == 0 || args.clients > 16 {
        return Err("--clients must be 1 to 16".into());
    }
    let (first, end, fresh) = match &args.seeds {
        Some(s) => {
            let (a, b) = parse_seeds(s)?;
            (a, b, false)
        }
        None => {
            let a = fresh_seed();
            let n = if limit.is_some() { u64::MAX / 4 } else { 100 };
            (a, a + n, true)
        }
    };
    if args.trace && end - first != 1 {
        return Err("--trace prints one run: give one seed, e.g. --seeds 42..43".into());
    }
    let batch = Arc::new(Batch {
        cfg: RunConfig {
            seed: 0,
            clients: args.clients,
            steps: args.steps,
            faults,
            plant,
            trace: args.trace,
            check_every: args.check_every,
            group: false,
        },
        end,
        groups: if args.cache_group {
            GroupMode::All
        } else if args.no_cache_group {
            GroupMode::None
        } else {
            GroupMode::OddSeeds
        },
    });
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let jobs = if args.trace { 1 } else { jobs };
    println!(
        "sim: seeds {first}..{}{} · {} clients × {} steps · faults {faults}{} · cache groups {} · {jobs} jobs",
        if end - first > 1 << 40 {
            "∞".to_string()
        } else {
            end.to_string()
        },
        if fresh {
            " (fresh, from the wall clock)"
        } else {
            ""
        },
        args.clients,
        args.steps,
        plant
            .map(|p| format!(" · planted bug {p}"))
            .unwrap_or_default(),
        match batch.groups {
            GroupMode::All => "in every seed",
            GroupMode::None => "off",
            GroupMode::OddSeeds => "in odd seeds",
        },
    );

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<RunReport>();
    let mut workers = Vec::new();
    for _ in 0..jobs {
        let (batch, next, stop, tx) = (batch.clone(), next.clone(), stop.clone(), tx.clone());
        workers.push(std::thread::spawn(move || loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let seed = next.fetch_add(1, Ordering::Relaxed);
            if seed >= batch.end {
                return;
            }
            let cfg = RunConfig {
                seed,
                group: batch.groups.on(seed),
                ..batch.cfg.clone()
            };
            if tx.send(sim::run(&cfg)).is_err() {
                return;
            }
        }));
    }
    drop(tx);

    let mut totals = Totals::default();
    let mut last_progress = Instant::now();
    let mut done: BTreeMap<u64, bool> = BTreeMap::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(r) => {
                if args.trace {
                    println!("trace hash {:016x}, {} events", r.trace_hash, r.events);
                }
                if args.verbose {
                    println!(
                        "  seed {:>6} {} hash {:016x} {:>6} events {:>7.1}s simulated, {} crashes, {} system crashes, {} leaked objects, {} reads of removed open files, {} reads failed by gc",
                        r.seed,
                        if r.passed() { "ok  " } else { "FAIL" },
                        r.trace_hash,
                        r.events,
                        r.sim_ns as f64 / 1e9,
                        r.counts.get(Fault::ClientCrash),
                        r.counts.get(Fault::SystemCrash),
                        r.leaked,
                        r.data.enoent_open,
                        r.data.eio_raced_gc,
                    );
                }
                if !r.passed() {
                    stop.store(true, Ordering::Relaxed);
                }
                done.insert(r.seed, r.passed());
                totals.add(&r);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            stop.store(true, Ordering::Relaxed);
        }
        if last_progress.elapsed() >= Duration::from_secs(2) && !args.trace {
            last_progress = Instant::now();
            progress(&totals, started.elapsed());
        }
    }
    for w in workers {
        let _ = w.join();
    }
    let covered_end = done.keys().next_back().map_or(first, |s| s + 1);
    let contiguous = done.keys().copied().eq(first..covered_end);
    summary(&totals, started.elapsed(), first, covered_end, contiguous);

    if let Some(r) = totals.failed.iter().min_by_key(|r| r.seed) {
        println!();
        println!(
            "FAILED seed {}: {}",
            r.seed,
            r.failure.as_deref().unwrap_or("?")
        );
        println!("replay: {}", batch.replay(r.seed));
        println!(
            "sim: {} passed, {} failed",
            totals.runs - totals.failed.len() as u64,
            totals.failed.len()
        );
        return Ok(ExitCode::from(1));
    }
    println!("sim: {} passed, 0 failed", totals.runs);
    Ok(ExitCode::SUCCESS)
}

fn rate(n: f64, wall: Duration) -> f64 {
    n / wall.as_secs_f64().max(1e-9)
}

fn progress(t: &Totals, wall: Duration) {
    println!(
        "  [{:>5.0}s] {} seeds ({} failed) · {:.1} seeds/s · {:.0} simulated s per wall s",
        wall.as_secs_f64(),
        t.runs,
        t.failed.len(),
        rate(t.runs as f64, wall),
        rate(t.sim_ns as f64 / 1e9, wall),
    );
}

fn summary(t: &Totals, wall: Duration, first: u64, end: u64, contiguous: bool) {
    let runs = t.runs.max(1) as f64;
    println!(
        "sim: covered seeds {first}..{end}{} — {} runs in {:.1}s: {:.2} seeds/s, {:.0} simulated s per wall s",
        if contiguous { "" } else { " (with gaps: stopped early)" },
        t.runs,
        wall.as_secs_f64(),
        rate(t.runs as f64, wall),
        rate(t.sim_ns as f64 / 1e9, wall),
    );
    println!(
        "  per run: {:.0} events (max {}), {:.1} simulated s, {:.1} world checks, {:.2} compactions",
        t.events as f64 / runs,
        t.max_events,
        t.sim_ns as f64 / 1e9 / runs,
        t.checks as f64 / runs,
        t.compactions as f64 / runs
    );
    println!("  faults fired (times, runs):");
    for (i, f) in Fault::ALL.iter().enumerate() {
        println!(
            "    {:<22} {:>9} {:>7}",
            f.name(),
            t.faults.get(*f),
            t.runs_with[i]
        );
    }
    println!(
        "  data checked: {} exact owned reads, {} reads racing a rewrite, {} shared reads, {:.1} MiB",
        t.exact_reads,
        t.raced_reads,
        t.shared_reads,
        t.bytes as f64 / (1 << 20) as f64
    );
    println!(
        "  read errors explained: {} EIO by injected store/meta-disk errors, {} ENOSPC by a full meta disk, {} EIO by gc deleting objects under a read, {} EIO by blocks staged (writeback) and not uploaded yet",
        t.eio_injected, t.enospc_injected, t.eio_raced, t.eio_unuploaded
    );
    println!(
        "  other ops failing with EIO/ENOSPC under an injected fault (namespace ops, unlinks, mounts): {}",
        t.op_errors_injected
    );
    let c = &t.cache;
    println!(
        "  block caches: {} hits, {} misses, {} admitted, {} evicted, {} refused; {} copies dropped ({} failed their checksums), {} dirs taken out, {} blocks found at mount, {} accounting checks",
        c.hits, c.misses, c.admitted, c.evicted, c.rejected, c.dropped, c.checksum_failures, c.failed_dirs, c.restored, c.checks
    );
    println!(
        "  open files removed by another client (read ENOENT through an open handle): {}",
        t.enoent_open
    );
    println!(
        "  leaked objects at the end: {} in {} runs ({} in runs with no crash or lost response); {} uploads abandoned",
        t.leaked, t.runs_leaking, t.leaks_unexplained, t.refused
    );
    if t.group_runs > 0 {
        let p = &t.peers;
        println!(
            "  cache groups ({} runs): {} peer calls — {} answered, {} timed out, {} refused, {} protocol errors; {} blocks from peers (verified), {} failed calls, {} corrupt answers caught, {} skipped by open breakers, {} pulled from previous owners; {} requests served",
            t.group_runs, p.calls, p.answered, p.timeouts, p.refused, p.protocol, p.hits, p.failures, p.corrupt, p.skipped, p.pulled, p.served
        );
        println!(
            "    peer faults: {} replies corrupted, {} truncated, {} slowed, {} late, {} partitions, {} messages lost to partitions or absent members, {} requests lost in crashes; membership: {} joins, {} clean leaves, {} refreshes; {} warm-ups ({} failed)",
            p.corrupted, p.truncated, p.slowed, p.late, p.partitions, p.dropped, p.lost_in_crash, p.joins, p.leaves, p.refreshes, p.warms, p.warm_errors
        );
        println!(
            "    call latency: max {:.3}s (answered: max {:.3}s), mean {:.3}ms; bound {:.3}s (the timeout) + {:.1}ms",
            p.max_latency_ns as f64 / 1e9,
            p.max_answered_ns as f64 / 1e9,
            p.latency_ns as f64 / 1e6 / p.calls.max(1) as f64,
            sim::peers::PEER_TIMEOUT.as_secs_f64(),
            sim::peers::LATENCY_SLACK_NS as f64 / 1e6
        );
    }
}
