//! The replicas: three `ferrofs meta-server` processes on loopback, started, killed,
//! paused and restarted by the nemesis.

use crate::SECRET;
use ferrofs_meta::raft::RaftClient;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};

pub struct Replica {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
}

pub struct Cluster {
    pub bin: PathBuf,
    pub peers: String,
    pub replicas: Vec<Replica>,
    pub work: PathBuf,
}

impl Cluster {
    pub fn start(bin: PathBuf, work: PathBuf) -> Result<Cluster, String> {
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

    pub fn addrs(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.addr.clone()).collect()
    }

    pub fn heal(&mut self) -> Result<(), String> {
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
