//! # jepsen — ferrofs's real-process fault suite
//!
//! Three `ferrofs meta-server` processes on loopback; concurrent clients (threads of
//! this process, each with its own `RaftClient`, as mounts have) read counters and
//! compare-and-set them (one optimistic command: "if it is v, make it v + 1"). Half of
//! the clients go through `OptimisticKv`, the engine mounts use: an increment is a
//! transaction (its read from the leader's applied state, confirmed by the commit,
//! retried on conflict) and a read is a read-only transaction. A nemesis, one fault
//! at a time, kills replicas with SIGKILL and restarts them, pauses the leader with
//! SIGSTOP/SIGCONT, and partitions the network. Every operation is recorded (call,
//! return, result). At the end everything is healed, each counter is read once more,
//! and each counter's history is checked for linearizability
//! (`sim::checkers::linearizable`). A lost acknowledged write, a duplicated one or a
//! stale read each make the history non-linearizable.
//!
//! The network (`proxy`): every connection goes through a TCP proxy of its directed
//! link, which the nemesis can drop (connections reset, new ones refused) or
//! blackhole (nothing forwarded, new ones never connected on) and heal. Replica `i`'s
//! `--peers` names itself at its real address (where it listens) and each other
//! replica `j` at the proxy of link `i -> j`. The clients are one more node: they
//! know the replicas by the proxies of links `clients -> j`, so a partition puts them
//! on one side. A follower's NotLeader answer names the proxy of *its* link to the
//! leader; a client that follows it is told apart there by its first request and from
//! then on gets the clients' link to the leader, so a hint never gets a client past
//! a partition. Partitions: the leader alone, a random minority against the majority,
//! and a bridge (two halves that each see one middle replica).
//!
//! ```text
//! cargo build -p ferrofs && cargo run -p ferrofs-jepsen -- --time 60s
//! cargo run -p ferrofs-jepsen -- --time 10m --clients 8     # the long run
//! cargo run -p ferrofs-jepsen -- --faults kill,pause        # no partitions
//! cargo run -p ferrofs-jepsen -- --seed 1234                # the same faults again
//! ```
//!
//! The `ferrofs` binary is taken from `--bin`, `FERROFS_BIN`, or beside this one.
//! Modules: `cluster` (the processes and their network), `proxy`, `nemesis`, `clients`.

mod clients;
mod cluster;
mod nemesis;
mod proxy;

use clap::Parser;
use clients::{key, value_of, Shared};
use cluster::Cluster;
use ferrofs_meta::raft::wire::{Request, Response};
use ferrofs_meta::raft::RaftClient;
use sim::checkers::linearizable::{self, Counter, CounterOp, CounterOut, Operation};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The cluster's secret (replicas and clients).
const SECRET: &str = "jepsen-secret";

#[derive(Parser, Debug)]
#[command(
    name = "jepsen",
    about = "Kill, pause, restart and partition ferrofs meta servers under concurrent clients; check the histories."
)]
struct Args {
    /// How long the clients and the nemesis run (e.g. 60s, 10m).
    #[arg(long, default_value = "60s")]
    time: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Counters (independent histories; more keys, more concurrency per replica).
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// The ferrofs binary (default: FERROFS_BIN, else the `ferrofs` beside this binary).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Seed of the nemesis's choices.
    #[arg(long)]
    seed: Option<u64>,
    /// The faults the nemesis chooses from (e.g. `--faults kill,pause` for no partitions).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause,partition")]
    faults: Vec<nemesis::Fault>,
    /// Keep the replicas' data and logs (printed at the end).
    #[arg(long)]
    keep: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split]
        .parse()
        .map_err(|_| format!("bad duration '{s}'"))?;
    match &s[split..] {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("bad duration '{s}': use e.g. 60s or 10m")),
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("jepsen: {e}");
            ExitCode::from(2)
        }
    }
}

fn ferrofs_bin(args: &Args) -> Result<PathBuf, String> {
    let bin = match (&args.bin, std::env::var_os("FERROFS_BIN")) {
        (Some(b), _) => b.clone(),
        (None, Some(b)) => PathBuf::from(b),
        (None, None) => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ferrofs"),
    };
    if !bin.is_file() {
        return Err(format!(
            "no ferrofs binary at {}: build it (cargo build -p ferrofs) or pass --bin",
            bin.display()
        ));
    }
    Ok(bin)
}

fn run(args: Args) -> Result<bool, String> {
    let duration = parse_duration(&args.time)?;
    let bin = ferrofs_bin(&args)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let work = tempfile::Builder::new()
        .prefix("ferrofs-jepsen-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut cluster = Cluster::start(bin.clone(), work.path().to_path_buf())?;
    println!(
        "jepsen: 3 replicas ({}), {} clients, {} keys, {:?}, seed {seed}",
        bin.display(),
        args.clients,
        args.keys,
        duration
    );
    // Wait for a leader before the clock starts.
    let t0 = Instant::now();
    while cluster.leader().is_none() {
        if let Some(why) = cluster.exited() {
            return Err(why);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "no leader was elected within 30 s; the replicas' logs are in {} (--keep keeps them)",
                cluster.work.display()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
    let shared = Arc::new(Shared::new(args.keys));
    let workers: Vec<_> = (0..args.clients as u64)
        .map(|n| {
            let (addrs, s, keys) = (cluster.addrs(), shared.clone(), args.keys);
            if n % 2 == 1 {
                thread::spawn(move || clients::optimistic_client(n, addrs, keys, s))
            } else {
                thread::spawn(move || clients::client(n, addrs, keys, s))
            }
        })
        .collect();
    let faults = nemesis::run(&mut cluster, &args.faults, duration, seed)?;
    cluster.heal()?;
    shared.stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join();
    }
    // A final read of every counter, after the heal.
    let rc = RaftClient::new(cluster.addrs())
        .secret(SECRET.as_bytes())
        .patience(Duration::from_secs(30));
    let mut anomalies = Vec::new();
    for k in 0..args.keys {
        let call = shared.tick();
        match rc.call(&Request::Get(key(k))) {
            Ok(Response::Value(v)) => {
                let ret = shared.tick();
                shared.histories[k].lock().unwrap().push(Operation {
                    client: 0,
                    call,
                    ret: Some(ret),
                    input: CounterOp::Read,
                    output: Some(CounterOut::Value(value_of(&v))),
                });
            }
            other => anomalies.push(format!("key {k}: no final read after the heal: {other:?}")),
        }
    }
    let mut checked = 0;
    for (k, h) in shared.histories.iter().enumerate() {
        let h = h.lock().unwrap();
        checked += h.len();
        if let Err(e) = linearizable::check(Counter(0), &h) {
            anomalies.push(format!("key {k}: {e}"));
        }
    }
    println!(
        "ops: {} answered, {} without an answer (outcome unknown), {} reads that failed; faults: {faults}",
        shared.ok.load(Ordering::Relaxed),
        shared.unknown.load(Ordering::Relaxed),
        shared.failed.load(Ordering::Relaxed),
    );
    if args.keep {
        let kept = work.keep();
        println!("kept {}", kept.display());
    }
    if anomalies.is_empty() {
        println!(
            "checked {checked} operations on {} keys: linearizable, no anomalies",
            args.keys
        );
        Ok(true)
    } else {
        println!("ANOMALIES:");
        for a in &anomalies {
            println!("  {a}");
        }
        // What the replicas said last (their logs go with the scratch dir).
        for i in 0..cluster.replicas.len() {
            println!("replica {} log, last lines:", i + 1);
            for l in cluster.log_tail(i, 8) {
                println!("  {l}");
            }
        }
        Ok(false)
    }
}
