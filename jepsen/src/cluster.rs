//! The replicas: three `ferrofs meta-server` processes on loopback, started, killed,
//! paused, restarted and partitioned by the nemesis. Every connection between them,
//! and from the clients to them, goes through a proxy of its link (see `proxy`).

use crate::proxy::{Net, Proxy, Upstream, CLIENTS};
use crate::SECRET;
use ferrofs_meta::raft::RaftClient;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub struct Replica {
    pub id: u64,
    /// Where it listens (its own entry in its `--peers`).
    pub addr: String,
    /// The same, for the proxies of the links to it.
    upstream: Arc<Upstream>,
    /// The proxies of its links to the others, by replica (`None`: itself).
    links: Vec<Option<String>>,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
}

impl Replica {
    /// Its `--peers`: itself at `addr`, the others at the proxies of its links to
    /// them. It listens on its own entry (so no `--listen`).
    fn peers(&self) -> String {
        let entry = |(j, l): (usize, &Option<String>)| {
            format!("{}={}", j + 1, l.as_deref().unwrap_or(&self.addr))
        };
        let v: Vec<String> = self.links.iter().enumerate().map(entry).collect();
        v.join(",")
    }
}

pub struct Cluster {
    pub bin: PathBuf,
    pub replicas: Vec<Replica>,
    pub work: PathBuf,
    /// The links between the replicas, and from the clients to each (node `i + 1` is
    /// replica `i`'s; node 0 the clients').
    pub net: Arc<Net>,
    /// The proxies of the clients' links, by replica: what clients are given.
    clients: Vec<String>,
    /// The proxies stay up as long as the cluster.
    _proxies: Vec<Proxy>,
}

/// A loopback port free right now, held until the listener is dropped.
fn reserve() -> Result<(TcpListener, String), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let a = l.local_addr().map_err(|e| e.to_string())?.to_string();
    Ok((l, a))
}

/// How a replica process started.
enum Started {
    Listening,
    PortTaken,
}

impl Cluster {
    pub fn start(bin: PathBuf, work: PathBuf) -> Result<Cluster, String> {
        let n = 3;
        // The replicas' ports stay held while the proxies take theirs.
        let (held, addrs): (Vec<TcpListener>, Vec<String>) = (0..n)
            .map(|_| reserve())
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        let upstreams: Vec<Arc<Upstream>> = addrs
            .iter()
            .map(|a| Upstream::new(a).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let net = Net::new(n + 1);
        let mut proxies = Vec::new();
        let mut proxy = |from: usize, to: usize, sniff: bool| -> Result<String, String> {
            let p = Proxy::start(net.clone(), from, to, upstreams[to - 1].clone(), sniff)
                .map_err(|e| format!("cannot start the proxy of link {from} -> {to}: {e}"))?;
            let addr = p.addr.clone();
            proxies.push(p);
            Ok(addr)
        };
        let mut replicas = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let links = (0..n)
                .map(|j| (j != i).then(|| proxy(i + 1, j + 1, true)).transpose())
                .collect::<Result<_, _>>()?;
            replicas.push(Replica {
                id: i as u64 + 1,
                addr: addr.clone(),
                upstream: upstreams[i].clone(),
                links,
                dir: work.join(format!("r{}", i + 1)),
                child: None,
                paused: false,
            });
        }
        let clients = (1..=n)
            .map(|j| proxy(CLIENTS, j, false))
            .collect::<Result<_, _>>()?;
        let mut c = Cluster {
            bin,
            replicas,
            work,
            net,
            clients,
            _proxies: proxies,
        };
        drop(held);
        for i in 0..n {
            c.spawn(i)?;
        }
        Ok(c)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.work.join(format!("replica{}.log", i + 1))
    }

    /// Starts replica `i` and waits until it listens. Its port was free when chosen,
    /// but anything on the machine may take it before the replica binds it (a restart
    /// comes seconds after a kill): then the replica moves to another port, which
    /// only the proxies of the links to it need to know. A replica that exits at
    /// start for another reason is an error, with the end of its log.
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        for _ in 0..5 {
            let seen = std::fs::metadata(self.log_path(i)).map_or(0, |m| m.len() as usize);
            self.start_process(i)?;
            match self.started(i, seen)? {
                Started::Listening => return Ok(()),
                Started::PortTaken => {
                    let (l, a) = reserve()?;
                    drop(l);
                    println!(
                        "jepsen: replica {}'s port {} was taken; it moves to {a}",
                        i + 1,
                        self.replicas[i].addr
                    );
                    let r = &mut self.replicas[i];
                    r.upstream.set(&a).map_err(|e| e.to_string())?;
                    r.addr = a;
                }
            }
        }
        Err(format!("replica {} found no free port", i + 1))
    }

    /// Waits for replica `i`'s log (past its first `seen` bytes) to say it listens,
    /// or for the process to exit.
    fn started(&mut self, i: usize, seen: usize) -> Result<Started, String> {
        let t0 = Instant::now();
        loop {
            let log = std::fs::read(self.log_path(i)).unwrap_or_default();
            let new = String::from_utf8_lossy(log.get(seen..).unwrap_or_default());
            if new.contains("starting meta server") {
                return Ok(Started::Listening);
            }
            let Some(child) = self.replicas[i].child.as_mut() else {
                return Ok(Started::Listening);
            };
            if let Ok(Some(status)) = child.try_wait() {
                self.replicas[i].child = None;
                if new.contains("Address already in use") {
                    return Ok(Started::PortTaken);
                }
                let tail: Vec<&str> = new.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!(
                    "replica {} exited at start ({status}): {}",
                    i + 1,
                    tail.join(" | ")
                ));
            }
            // Slow (a loaded machine): the run's own checks will tell.
            if t0.elapsed() > Duration::from_secs(10) {
                return Ok(Started::Listening);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn start_process(&mut self, i: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| e.to_string())?;
        let r = &mut self.replicas[i];
        let child = Process::new(&self.bin)
            .env("FERROFS_META_SECRET", SECRET)
            .args([
                "meta-server",
                "--id",
                &r.id.to_string(),
                "--peers",
                &r.peers(),
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

    pub fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.replicas[i].child {
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    pub fn kill(&mut self, i: usize) {
        self.signal(i, libc::SIGKILL);
        if let Some(mut c) = self.replicas[i].child.take() {
            let _ = c.wait();
        }
    }

    pub fn leader(&self) -> Option<usize> {
        (0..self.replicas.len()).find(|&i| {
            self.replicas[i].child.is_some()
                && !self.replicas[i].paused
                && RaftClient::is_leader(&self.replicas[i].addr, SECRET.as_bytes())
        })
    }

    /// The last `n` lines of replica `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> Vec<String> {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// A replica that exited on its own, with the end of its log.
    pub fn exited(&mut self) -> Option<String> {
        for i in 0..self.replicas.len() {
            let Some(c) = self.replicas[i].child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = c.try_wait() {
                return Some(format!(
                    "replica {} exited ({status}): {}",
                    i + 1,
                    self.log_tail(i, 5).join(" | ")
                ));
            }
        }
        None
    }

    /// The clients' addresses of the replicas: the proxies of their links.
    pub fn addrs(&self) -> Vec<String> {
        self.clients.clone()
    }

    /// Every replica running, none paused, every link open.
    pub fn heal(&mut self) -> Result<(), String> {
        self.net.heal();
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
