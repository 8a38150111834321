//! The replicas: three `ferrofs meta-server` processes on loopback, started, killed,
//! paused, restarted and partitioned by the nemesis. Every connection between them,
//! and from the clients to them, goes through a proxy of its link (see `proxy`).

use crate::proxy::{Net, Proxy, CLIENTS};
use crate::SECRET;
use ferrofs_meta::raft::RaftClient;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;

pub struct Replica {
    pub id: u64,
    /// Where it listens (its own entry in its `--peers`).
    pub addr: String,
    /// Its `--peers`: itself at `addr`, the others at the proxies of its links to them.
    pub peers: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
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

impl Cluster {
    pub fn start(bin: PathBuf, work: PathBuf) -> Result<Cluster, String> {
        let n = 3;
        let addrs: Vec<String> = (0..n)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.to_string())
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let net = Net::new(n + 1);
        let mut proxies = Vec::new();
        let mut proxy = |from: usize, to: usize, sniff: bool| -> Result<String, String> {
            let p = Proxy::start(net.clone(), from, to, &addrs[to - 1], sniff)
                .map_err(|e| format!("cannot start the proxy of link {from} -> {to}: {e}"))?;
            let addr = p.addr.clone();
            proxies.push(p);
            Ok(addr)
        };
        let mut replicas = Vec::new();
        for (i, own) in addrs.iter().enumerate() {
            // The server listens on its own entry (no --listen needed).
            let mut peers = Vec::new();
            for j in 0..n {
                let a = if j == i {
                    own.clone()
                } else {
                    proxy(i + 1, j + 1, true)?
                };
                peers.push(format!("{}={a}", j + 1));
            }
            replicas.push(Replica {
                id: i as u64 + 1,
                addr: own.clone(),
                peers: peers.join(","),
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
        for i in 0..n {
            c.spawn(i)?;
        }
        Ok(c)
    }

    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
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
                &r.peers,
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
        let log = std::fs::read_to_string(self.work.join(format!("replica{}.log", i + 1)))
            .unwrap_or_default();
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
