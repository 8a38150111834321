//! # jepsen — ferrofs's real-process fault suite
//!
//! Three `ferrofs meta-server` processes on loopback; concurrent clients (threads of
//! this process, each with its own `RaftClient`, as mounts have) read counters and
//! compare-and-set them (one optimistic command: "if it is v, make it v + 1"). Half of
//! the clients go through `OptimisticKv`, the engine mounts use: an increment is a
//! transaction (its read from the leader's applied state, confirmed by the commit,
//! retried on conflict) and a read is a read-only transaction; a
//! nemesis kills replicas with SIGKILL and restarts them, and pauses the leader with
//! SIGSTOP/SIGCONT. Every operation is recorded (call, return, result). At the end
//! everything is healed, each counter is read once more, and each counter's history
//! is checked for linearizability (`sim::checkers::linearizable`). A lost
//! acknowledged write, a duplicated one or a stale read each make the history
//! non-linearizable.
//!
//! ```text
//! cargo build -p ferrofs && cargo run -p ferrofs-jepsen -- --time 60s
//! cargo run -p ferrofs-jepsen -- --time 10m --clients 8     # the long run
//! ```
//!
//! The `ferrofs` binary is taken from `--bin`, `FERROFS_BIN`, or beside this one.
//! Not yet: network partitions (a TCP proxy per link, or namespaces with veth).

use clap::Parser;
use ferrofs_core::kv::WriteSet;
use ferrofs_core::replica::command::digest_value;
use ferrofs_core::replica::{Command, Outcome, ReadCheck, RequestId};
use ferrofs_meta::raft::wire::{Request, Response};
use ferrofs_meta::raft::RaftClient;
use sim::checkers::linearizable::{self, Counter, CounterOp, CounterOut, Operation};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command as Process, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "jepsen",
    about = "Kill, pause and restart ferrofs meta servers under concurrent clients; check the histories."
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

/// A small seeded generator for the nemesis.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Replica {
    id: u64,
    addr: String,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

struct Cluster {
    bin: PathBuf,
    peers: String,
    replicas: Vec<Replica>,
    work: PathBuf,
}

impl Cluster {
    fn start(bin: PathBuf, work: PathBuf) -> Result<Cluster, String> {
        let addrs: Vec<String> = (0..3)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.to_string())
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let peers = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let replicas = addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| Replica {
                id: i as u64 + 1,
                addr,
                dir: work.join(format!("r{}", i + 1)),
                child: None,
                paused: false,
            })
            .collect();
        let mut c = Cluster {
            bin,
            peers,
            replicas,
            work,
        };
        for i in 0..3 {
            c.spawn(i)?;
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let r = &mut self.replicas[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join(format!("replica{}.log", r.id)))
            .map_err(|e| e.to_string())?;
        let child = Process::new(&self.bin)
            .env("FERROFS_META_SECRET", SECRET)
            .args([
                "meta-server",
                "--id",
                &r.id.to_string(),
                "--peers",
                &self.peers,
            ])
            .args([
                "--data-dir",
                r.dir.to_str().unwrap_or_default(),
                "--tick",
                "50ms",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        r.child = Some(child);
        r.paused = false;
        Ok(())
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.replicas[i].child {
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    fn kill(&mut self, i: usize) {
        self.signal(i, libc::SIGKILL);
        if let Some(mut c) = self.replicas[i].child.take() {
            let _ = c.wait();
        }
    }

    fn leader(&self) -> Option<usize> {
        (0..self.replicas.len()).find(|&i| {
            self.replicas[i].child.is_some()
                && !self.replicas[i].paused
                && RaftClient::is_leader(&self.replicas[i].addr, SECRET.as_bytes())
        })
    }

    /// A replica that exited on its own, with the end of its log.
    fn exited(&mut self) -> Option<String> {
        for r in self.replicas.iter_mut() {
            let Some(c) = r.child.as_mut() else { continue };
            if let Ok(Some(status)) = c.try_wait() {
                let log = std::fs::read_to_string(self.work.join(format!("replica{}.log", r.id)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Some(format!(
                    "replica {} exited ({status}): {}",
                    r.id,
                    tail.join(" | ")
                ));
            }
        }
        None
    }

    fn addrs(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.addr.clone()).collect()
    }

    fn heal(&mut self) -> Result<(), String> {
        for i in 0..self.replicas.len() {
            if self.replicas[i].paused {
                self.signal(i, libc::SIGCONT);
                self.replicas[i].paused = false;
            }
            if self.replicas[i].child.is_none() {
                self.spawn(i)?;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.signal(i, libc::SIGCONT);
            self.kill(i);
        }
    }
}

type History = Vec<Operation<CounterOp, CounterOut>>;

/// The cluster's secret (replicas and clients).
const SECRET: &str = "jepsen-secret";

struct Shared {
    clock: AtomicU64,
    histories: Vec<Mutex<History>>,
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
}

impl Shared {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }
}

fn key(k: usize) -> Vec<u8> {
    format!("jepsen/counter/{k}").into_bytes()
}

fn value_of(v: &Option<Vec<u8>>) -> u64 {
    v.as_ref()
        .and_then(|v| v.as_slice().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// A client through `OptimisticKv` (what a mount uses): read-only transactions and
/// increment transactions.
fn optimistic_client(n: u64, addrs: Vec<String>, keys: usize, shared: Arc<Shared>) {
    use ferrofs_core::kv::{self, Kv};
    use ferrofs_core::replica::OptimisticKv;
    let rc = RaftClient::new(addrs)
        .secret(SECRET.as_bytes())
        .patience(Duration::from_secs(5));
    let engine = OptimisticKv::new(rc, 5000 + n, 1);
    let engine: &dyn Kv = &engine;
    let client_id = 5000 + n;
    let mut i = n as usize;
    while !shared.stop.load(Ordering::SeqCst) {
        i += 1;
        let k = i % keys;
        let call = shared.tick();
        if i.is_multiple_of(2) {
            if let Ok(v) = kv::read(engine, |t| t.get(&key(k))) {
                let ret = shared.tick();
                shared.histories[k].lock().unwrap().push(Operation {
                    client: client_id,
                    call,
                    ret: Some(ret),
                    input: CounterOp::Read,
                    output: Some(CounterOut::Value(value_of(&v))),
                });
                shared.ok.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let r = kv::txn(engine, |t| {
            let v = value_of(&t.get(&key(k))?);
            t.set(&key(k), &(v + 1).to_be_bytes());
            Ok(v)
        });
        let ret = shared.tick();
        let op = match r {
            // It read v and wrote v + 1 atomically: a compare-and-set from v.
            Ok(from) => {
                shared.ok.fetch_add(1, Ordering::Relaxed);
                Operation {
                    client: client_id,
                    call,
                    ret: Some(ret),
                    input: CounterOp::Cas { from },
                    output: Some(CounterOut::Swapped(true)),
                }
            }
            // It may have committed, once, at any time from its call on.
            Err(_) => {
                shared.unknown.fetch_add(1, Ordering::Relaxed);
                Operation {
                    client: client_id,
                    call,
                    ret: None,
                    input: CounterOp::Inc,
                    output: None,
                }
            }
        };
        shared.histories[k].lock().unwrap().push(op);
    }
}

/// One client: read a counter, then compare-and-set it, over and over.
fn client(n: u64, addrs: Vec<String>, keys: usize, shared: Arc<Shared>) {
    let rc = RaftClient::new(addrs)
        .secret(SECRET.as_bytes())
        .patience(Duration::from_secs(5));
    let client_id = 1000 + n;
    let mut seq = 1;
    let mut i = n as usize;
    while !shared.stop.load(Ordering::SeqCst) {
        i += 1;
        let k = i % keys;
        // A read.
        let call = shared.tick();
        let read = rc.call(&Request::Get(key(k)));
        let Ok(Response::Value(v)) = read else {
            // An unanswered read constrains nothing: not recorded.
            shared.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let ret = shared.tick();
        let from = value_of(&v);
        shared.histories[k].lock().unwrap().push(Operation {
            client: client_id,
            call,
            ret: Some(ret),
            input: CounterOp::Read,
            output: Some(CounterOut::Value(from)),
        });
        shared.ok.fetch_add(1, Ordering::Relaxed);
        // A compare-and-set from what was read.
        let mut writes = WriteSet::new();
        writes.insert(key(k), Some((from + 1).to_be_bytes().to_vec()));
        let cmd = Command {
            id: RequestId {
                client: client_id,
                seq,
            },
            done_below: seq,
            reads: vec![ReadCheck::Get {
                key: key(k),
                digest: v.as_deref().map(digest_value),
            }],
            writes,
        };
        seq += 1;
        let call = shared.tick();
        let r = rc.call(&Request::Commit(cmd));
        let ret = shared.tick();
        let (ret, output) = match r {
            Ok(Response::Outcome(Outcome::Applied)) => (Some(ret), Some(CounterOut::Swapped(true))),
            Ok(Response::Outcome(Outcome::Conflict)) => {
                (Some(ret), Some(CounterOut::Swapped(false)))
            }
            // No answer: it may have been applied, or not, at any time from its call on.
            _ => (None, None),
        };
        if output.is_some() {
            shared.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.unknown.fetch_add(1, Ordering::Relaxed);
        }
        shared.histories[k].lock().unwrap().push(Operation {
            client: client_id,
            call,
            ret,
            input: CounterOp::Cas { from },
            output,
        });
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
    let shared = Arc::new(Shared {
        clock: AtomicU64::new(0),
        histories: (0..args.keys).map(|_| Mutex::new(Vec::new())).collect(),
        stop: AtomicBool::new(false),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
    });
    let workers: Vec<_> = (0..args.clients as u64)
        .map(|n| {
            let (addrs, s, keys) = (cluster.addrs(), shared.clone(), args.keys);
            if n % 2 == 1 {
                thread::spawn(move || optimistic_client(n, addrs, keys, s))
            } else {
                thread::spawn(move || client(n, addrs, keys, s))
            }
        })
        .collect();

    // The nemesis: one fault at a time, then a quiet spell.
    let mut rng = Rng(seed);
    let (mut kills, mut pauses) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < duration {
        thread::sleep(Duration::from_millis(1000 + rng.below(2000)));
        match rng.below(3) {
            0 => {
                let i = rng.below(3) as usize;
                println!(
                    "[{:>5.1}s] nemesis: kill -9 replica {}",
                    start.elapsed().as_secs_f64(),
                    i + 1
                );
                cluster.kill(i);
                kills += 1;
                thread::sleep(Duration::from_millis(500 + rng.below(2500)));
                cluster.spawn(i)?;
                println!(
                    "[{:>5.1}s] nemesis: restart replica {}",
                    start.elapsed().as_secs_f64(),
                    i + 1
                );
            }
            1 => {
                if let Some(l) = cluster.leader() {
                    println!(
                        "[{:>5.1}s] nemesis: SIGSTOP leader {}",
                        start.elapsed().as_secs_f64(),
                        l + 1
                    );
                    cluster.signal(l, libc::SIGSTOP);
                    cluster.replicas[l].paused = true;
                    pauses += 1;
                    thread::sleep(Duration::from_millis(1000 + rng.below(2000)));
                    cluster.signal(l, libc::SIGCONT);
                    cluster.replicas[l].paused = false;
                    println!(
                        "[{:>5.1}s] nemesis: SIGCONT replica {}",
                        start.elapsed().as_secs_f64(),
                        l + 1
                    );
                }
            }
            _ => {}
        }
    }
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
        "ops: {} answered, {} without an answer (outcome unknown), {} reads that failed; faults: {kills} kills, {pauses} pauses",
        shared.ok.load(Ordering::Relaxed),
        shared.unknown.load(Ordering::Relaxed),
        shared.failed.load(Ordering::Relaxed)
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
        for r in &cluster.replicas {
            let log = std::fs::read_to_string(cluster.work.join(format!("replica{}.log", r.id)))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            println!("replica {} log, last lines:", r.id);
            for l in &lines[lines.len().saturating_sub(8)..] {
                println!("  {l}");
            }
        }
        Ok(false)
    }
}
