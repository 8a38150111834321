//! Metadata latency: the embedded sled engine against a three-replica cluster of
//! meta servers on loopback (in this process, real TCP, every commit synced on a
//! majority), in one run; and the client-visible stall when the leader stops.
//!
//! `cargo bench -p ferrofs-meta --bench meta_latency` (N=1000 entries by default;
//! `N=200` for a quick run). See bench/README.md.

use ferrofs_core::format::Format;
use ferrofs_core::kv::Kv;
use ferrofs_core::meta::usage::DeferredUsage;
use ferrofs_core::meta::Meta;
use ferrofs_core::{Ctx, FileType, Ino, RenameFlags, Timespec};
use ferrofs_meta::raft::{RaftClient, Server, ServerConfig};
use ferrofs_meta::{MetaUrl, SledKv};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn now() -> Timespec {
    Timespec::new(1_700_000_000, 0)
}

struct Stats {
    name: &'static str,
    micros: Vec<f64>,
}

impl Stats {
    fn mean(&self) -> f64 {
        self.micros.iter().sum::<f64>() / self.micros.len().max(1) as f64
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.micros.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    }
}

fn time<T>(out: &mut Vec<f64>, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    out.push(t.elapsed().as_secs_f64() * 1e6);
    r
}

/// create, getattr, lookup, rename of `n` files in one directory, then readdir of all.
fn run(engine: Arc<dyn Kv>, n: usize) -> Vec<Stats> {
    if Meta::load(engine.clone()).is_err() {
        let format = Format::new("benchvol", "00000000-0000-0000-0000-0000000000b1");
        Meta::format(&*engine, &format, false, now()).unwrap();
    }
    let meta = Meta::load(engine).unwrap();
    let root = Ctx::root();
    let dir = meta
        .mkdir(&root, Ino::ROOT, b"d", 0o755, 0, now())
        .unwrap()
        .ino;
    let (mut create, mut getattr, mut lookup, mut rename, mut readdir) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut inos = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("file-{i:06}");
        let a = time(&mut create, || {
            meta.mknod(
                &root,
                dir,
                name.as_bytes(),
                FileType::RegularFile,
                0o644,
                0,
                0,
                now(),
            )
            .unwrap()
        });
        inos.push(a.ino);
    }
    for &ino in &inos {
        time(&mut getattr, || meta.getattr(ino).unwrap());
    }
    for i in 0..n {
        let name = format!("file-{i:06}");
        time(&mut lookup, || {
            meta.lookup(&root, dir, name.as_bytes()).unwrap()
        });
    }
    for i in 0..n {
        let (from, to) = (format!("file-{i:06}"), format!("renamed-{i:06}"));
        time(&mut rename, || {
            meta.rename(
                &root,
                dir,
                from.as_bytes(),
                dir,
                to.as_bytes(),
                RenameFlags::default(),
                now(),
            )
            .unwrap()
        });
    }
    for _ in 0..10 {
        time(&mut readdir, || {
            let mut seen = 0;
            let mut off = 0;
            loop {
                let page = meta.readdir(&root, dir, off, 1024, true).unwrap();
                let Some(last) = page.last() else { break };
                off = last.next_offset;
                seen += page.len();
            }
            assert_eq!(seen, n + 2);
        });
    }
    vec![
        Stats {
            name: "create",
            micros: create,
        },
        Stats {
            name: "getattr",
            micros: getattr,
        },
        Stats {
            name: "lookup",
            micros: lookup,
        },
        Stats {
            name: "rename",
            micros: rename,
        },
        Stats {
            name: "readdir (all, plus)",
            micros: readdir,
        },
    ]
}

/// Creates and then getattrs `n` files from `threads` clients at once, each in its own
/// directory; `open` gives each client its engine. Returns (creates/s, getattrs/s).
fn concurrent(open: &(dyn Fn() -> Arc<dyn Kv> + Sync), n: usize, threads: usize) -> (f64, f64) {
    let per = n / threads;
    let metas: Vec<Meta> = (0..threads).map(|_| Meta::load(open()).unwrap()).collect();
    let root = Ctx::root();
    let dirs: Vec<Ino> = metas
        .iter()
        .enumerate()
        .map(|(t, m)| {
            m.mkdir(
                &root,
                Ino::ROOT,
                format!("t{t}").as_bytes(),
                0o755,
                0,
                now(),
            )
            .unwrap()
            .ino
        })
        .collect();
    let root = &root;
    let t0 = Instant::now();
    let inos: Vec<Vec<Ino>> = std::thread::scope(|s| {
        let hs: Vec<_> = metas
            .iter()
            .zip(&dirs)
            .map(|(m, &d)| {
                s.spawn(move || {
                    (0..per)
                        .map(|i| {
                            let name = format!("c-{i:06}");
                            m.mknod(
                                root,
                                d,
                                name.as_bytes(),
                                FileType::RegularFile,
                                0o644,
                                0,
                                0,
                                now(),
                            )
                            .unwrap()
                            .ino
                        })
                        .collect::<Vec<Ino>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let creates = (per * threads) as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (m, inos) in metas.iter().zip(&inos) {
            s.spawn(move || {
                for &ino in inos {
                    m.getattr(ino).unwrap();
                }
            });
        }
    });
    let getattrs = (per * threads) as f64 / t0.elapsed().as_secs_f64();
    (creates, getattrs)
}

fn cluster(tick: Duration) -> (Vec<Option<Server>>, Vec<String>, Vec<tempfile::TempDir>) {
    let ls: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: BTreeMap<u64, String> = ls
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        let cfg = ServerConfig {
            tick,
            secret: Some(b"bench".to_vec()),
            ..ServerConfig::new(i as u64 + 1, peers.clone(), d.path().to_path_buf())
        };
        servers.push(Some(Server::start(cfg, l).unwrap()));
        dirs.push(d);
    }
    (servers, peers.into_values().collect(), dirs)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let sled_dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Kv> = Arc::new(SledKv::open(sled_dir.path()).unwrap());
    let embedded = run(sled.clone(), n);

    let tick = Duration::from_millis(100);
    let (mut servers, addrs, _dirs) = cluster(tick);
    let url = MetaUrl::Raft {
        addrs: addrs.clone(),
        secret: Some("bench".into()),
        tls_ca: None,
    };
    // As a mount of a replicated volume does: usage counters written once a second.
    let deferred = || -> Arc<dyn Kv> { DeferredUsage::new(url.open(false).unwrap()).unwrap() };
    Meta::format(
        &*url.open(true).unwrap(),
        &Format::new("benchvol", "00000000-0000-0000-0000-0000000000b1"),
        false,
        now(),
    )
    .unwrap();
    let replicated = run(deferred(), n);

    println!("metadata latency, {n} entries in one directory, one client thread, loopback");
    println!("embedded = sled in this process (not synced per op); cluster = 3 meta servers in");
    println!("(clients of the cluster write usage counters once a second, as mounts do)");
    println!("this process over TCP, every commit synced on a majority before it is answered\n");
    println!(
        "{:<22} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "op", "sled mean", "sled p99", "raft mean", "raft p50", "raft p99", "raft/sled"
    );
    for (e, r) in embedded.iter().zip(&replicated) {
        println!(
            "{:<22} {:>10.0}µs {:>10.0}µs {:>10.0}µs {:>10.0}µs {:>10.0}µs {:>9.1}x",
            e.name,
            e.mean(),
            e.pct(0.99),
            r.mean(),
            r.pct(0.5),
            r.pct(0.99),
            r.mean() / e.mean().max(0.001)
        );
    }
    for (e, r) in embedded.iter().zip(&replicated).take(4) {
        println!(
            "{:<22} throughput: sled {:>8.0} ops/s, raft {:>8.0} ops/s (one thread)",
            e.name,
            1e6 / e.mean().max(0.001),
            1e6 / r.mean().max(0.001)
        );
    }

    // Throughput with concurrent clients (each its own client of the cluster; on sled,
    // threads of one process, as one mount's FUSE threads are).
    let threads = 8;
    let (sc, sg) = concurrent(&|| sled.clone(), n, threads);
    let (rc, rg) = concurrent(&deferred, n, threads);
    println!(
        "\n{threads} concurrent clients, {} creates then getattrs each:",
        n / threads
    );
    println!(
        "create  throughput: sled {sc:>8.0} ops/s, raft {rc:>8.0} ops/s ({:.2}x of sled)",
        rc / sc
    );
    println!(
        "getattr throughput: sled {sg:>8.0} ops/s, raft {rg:>8.0} ops/s ({:.2}x of sled)",
        rg / sg
    );

    // Failover: a client creating files while the leader stops.
    let engine = url.open(false).unwrap();
    let meta = Meta::load(engine).unwrap();
    let root = Ctx::root();
    let dir = meta
        .mkdir(&root, Ino::ROOT, b"failover", 0o755, 0, now())
        .unwrap()
        .ino;
    let leader = (0..3)
        .find(|&i| RaftClient::is_leader(&addrs[i], b"bench"))
        .expect("a leader");
    let mut worst = Duration::ZERO;
    let mut last = Instant::now();
    for i in 0..400 {
        if i == 100 {
            servers[leader].take().unwrap().stop();
        }
        meta.mknod(
            &root,
            dir,
            format!("f{i}").as_bytes(),
            FileType::RegularFile,
            0o644,
            0,
            0,
            now(),
        )
        .unwrap();
        worst = worst.max(last.elapsed());
        last = Instant::now();
    }
    println!(
        "\nfailover: the longest wait of one create while the leader stopped: {:.2} s \
         (tick {:?}: elections after 10 to 18 ticks without a leader)",
        worst.as_secs_f64(),
        tick
    );
    for s in servers.into_iter().flatten() {
        s.stop();
    }
}
