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
//! The file workload (`files`, `--files N`, 0 for none): a volume formatted on the
//! cluster keeps its data in a real S3 server (`s3s-fs` on loopback; the run fails if
//! it is not installed). File clients create, write (slice, PUT, `write_slice`),
//! unlink and rename files as a mount does; after the heal every acknowledged file
//! must be there with its bytes (lost acknowledged writes), a failed one must be
//! missing, empty or whole, and the metadata invariants (`meta::check`) must hold.
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
//! Modules: `cluster` (the processes and their network), `proxy`, `nemesis`, `clients`,
//! `files`.

mod clients;
mod cluster;
mod files;
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
    /// File clients: they write files of a volume whose data is in a real S3 server
    /// (`s3s-fs`, which must be installed; 0: no file workload and no S3 server).
    #[arg(long, default_value_t = 2)]
    files: usize,
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
    // The volume of the file workload, its data in a real S3 server.
    let s3 = if args.files > 0 {
        let s3 = ferrofs_s3_backend::testing::S3Server::try_start().map_err(|e| {
            format!("the file workload needs the S3 server: {e} (or run with --files 0)")
        })?;
        format_volume(&cluster, &s3, seed)?;
        Some(s3)
    } else {
        None
    };
    let file_stats = Arc::new(files::FileStats::default());
    let file_workers: Vec<_> = (0..args.files as u64)
        .map(|n| {
            let (addrs, s) = (cluster.addrs(), file_stats.clone());
            thread::spawn(move || files::client(n, addrs, seed, s))
        })
        .collect();
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
    file_stats.stop.store(true, Ordering::SeqCst);
    for w in workers.into_iter().chain(file_workers) {
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
    if let Some(s3) = &s3 {
        check_files(&cluster, s3, &file_stats, &mut anomalies);
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

/// Formats the file workload's volume on the cluster, its data in a bucket of `s3`.
fn format_volume(
    cluster: &Cluster,
    s3: &ferrofs_s3_backend::testing::S3Server,
    seed: u64,
) -> Result<(), String> {
    let mut f = ferrofs_core::format::Format::new("jepsen", &format!("jepsen-{seed}"));
    f.storage = "s3".into();
    f.bucket = s3.create_bucket("jepsen");
    f.access_key = Some(s3.access_key().into());
    f.secret_key = Some(s3.secret_key().into());
    f.validate()
        .map_err(|e| format!("invalid volume settings: {e}"))?;
    let rc = RaftClient::new(cluster.addrs())
        .secret(SECRET.as_bytes())
        .patience(Duration::from_secs(30));
    let kv = ferrofs_core::replica::OptimisticKv::new(rc, 8999, 1);
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = ferrofs_core::Timespec::new(d.as_secs() as i64, d.subsec_nanos());
    ferrofs_core::meta::Meta::format(&kv, &f, false, now)
        .map_err(|e| format!("cannot format the volume on the cluster: {e}"))
}

/// The file workload's final check (after the heal): every record against what a
/// fresh client sees, and the metadata invariants over the whole keyspace.
fn check_files(
    cluster: &Cluster,
    s3: &ferrofs_s3_backend::testing::S3Server,
    stats: &files::FileStats,
    anomalies: &mut Vec<String>,
) {
    use files::{FileRec, Later};
    let records = stats.records.lock().unwrap();
    let acked = records.iter().filter(|r| r.written.is_ok()).count();
    let later = |f: fn(&FileRec) -> bool| records.iter().filter(|r| f(r)).count();
    let unlinked = later(|r| matches!(r.later, Later::Unlinked { acked: true }));
    let renamed = later(|r| matches!(r.later, Later::Renamed { acked: true, .. }));
    let mut found = Vec::new();
    // One snapshot of the whole keyspace, read from the healed cluster in one
    // transaction; the counters' keys are not the volume's. The checks read it from
    // memory (thousands of lookups through the cluster would take minutes here).
    let rc = RaftClient::new(cluster.addrs())
        .secret(SECRET.as_bytes())
        .patience(Duration::from_secs(30));
    let engine = ferrofs_core::replica::OptimisticKv::new(rc, 8998, 1);
    let mut read_back = Duration::ZERO;
    let verified = match ferrofs_core::meta::check::dump(&engine) {
        Err(e) => {
            found.push(format!("cannot read the volume after the heal: {e}"));
            0
        }
        Ok(mut pairs) => {
            pairs.retain(|(k, _)| !k.starts_with(b"jepsen/"));
            let opts = ferrofs_core::meta::check::CheckOptions {
                no_open_files: true,
                ids_from_counters: true,
            };
            let pairs_ref = pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
            for v in ferrofs_core::meta::check::check_keyspace(pairs_ref, opts) {
                found.push(format!("metadata invariant {v}"));
            }
            let mem = Arc::new(ferrofs_core::kv::MemKv::new());
            let copied = ferrofs_core::kv::txn(&*mem, |t| {
                for (k, v) in &pairs {
                    t.set(k, v);
                }
                Ok(())
            });
            match copied
                .and_then(|()| ferrofs_core::meta::Meta::load(mem))
                .map_err(|e| format!("cannot load the volume from its snapshot: {e}"))
                .and_then(|meta| files::open_store(&meta).map(|store| (meta, store)))
            {
                Err(e) => {
                    found.push(e);
                    0
                }
                Ok((meta, store)) => {
                    // Read every name once, on a few threads (the GETs dominate).
                    let mut names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
                    names.extend(records.iter().filter_map(|r| match &r.later {
                        Later::Renamed { to, .. } => Some(to.as_str()),
                        _ => None,
                    }));
                    let t = Instant::now();
                    let seen: std::collections::HashMap<&str, _> = thread::scope(|s| {
                        let per = names.len().div_ceil(4).max(1);
                        let parts: Vec<_> = names
                            .chunks(per)
                            .map(|part| {
                                let (meta, store) = (&meta, &store);
                                s.spawn(move || {
                                    part.iter()
                                        .map(|n| (*n, files::observe(meta, &**store, n)))
                                        .collect::<Vec<_>>()
                                })
                            })
                            .collect();
                        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
                    });
                    read_back = t.elapsed();
                    let (verified, bad) = files::check(&records, |name| seen[name].clone());
                    found.extend(bad);
                    verified
                }
            }
        }
    };
    found.extend(stats.anomalies.lock().unwrap().iter().cloned());
    println!(
        "files ({}): {} written, {acked} acknowledged, {} failed (outcome unknown), {} bytes acknowledged; {unlinked} unlinked, {renamed} renamed; {verified} verified (read back in {:.1}s), {} anomalies",
        s3.endpoint(),
        records.len(),
        records.len() - acked,
        stats.bytes.load(Ordering::Relaxed),
        read_back.as_secs_f64(),
        found.len()
    );
    anomalies.extend(found.into_iter().map(|a| format!("files: {a}")));
}
