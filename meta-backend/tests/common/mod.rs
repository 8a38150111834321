//! What the meta-server tests share: replicas in this process, on loopback.
#![allow(dead_code)]

use ferrofs_core::Timespec;
use ferrofs_meta::raft::{Server, ServerConfig};
use ferrofs_meta::MetaUrl;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

pub const SECRET: &[u8] = b"test-secret";

pub struct Cluster {
    pub servers: BTreeMap<u64, Server>,
    pub peers: BTreeMap<u64, String>,
    pub dirs: BTreeMap<u64, tempfile::TempDir>,
    pub snapshot_every: u64,
}

pub fn config(id: u64, peers: &BTreeMap<u64, String>, dir: &std::path::Path) -> ServerConfig {
    ServerConfig {
        tick: Duration::from_millis(20),
        secret: Some(SECRET.to_vec()),
        ..ServerConfig::new(id, peers.clone(), dir.to_path_buf())
    }
}

pub fn start(
    id: u64,
    peers: &BTreeMap<u64, String>,
    dir: &std::path::Path,
    listener: TcpListener,
) -> Server {
    Server::start(config(id, peers, dir), listener).unwrap()
}

impl Cluster {
    /// Starts (again) replica `id` on its address and data dir.
    pub fn restart(&mut self, id: u64) {
        let l = TcpListener::bind(&self.peers[&id]).unwrap();
        let mut cfg = config(id, &self.peers, self.dirs[&id].path());
        cfg.snapshot_every = self.snapshot_every;
        self.servers.insert(id, Server::start(cfg, l).unwrap());
    }

    pub fn stop(&mut self, id: u64) {
        self.servers.remove(&id).unwrap().stop();
    }

    pub fn stop_all(self) {
        for (_, s) in self.servers {
            s.stop();
        }
    }
}

/// The TLS fixtures of `tests/tls`.
pub fn tls_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// Three replicas that speak only TLS.
pub fn cluster_tls() -> Cluster {
    let tls = ferrofs_meta::raft::ServerTls {
        cert: tls_file("server.pem"),
        key: tls_file("server.key"),
        ca: tls_file("ca.pem"),
    };
    cluster_of(10_000, Some(tls))
}

/// Three replicas that snapshot every `snapshot_every` entries.
pub fn cluster_with(snapshot_every: u64) -> Cluster {
    cluster_of(snapshot_every, None)
}

fn cluster_of(snapshot_every: u64, tls: Option<ferrofs_meta::raft::ServerTls>) -> Cluster {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let mut c = Cluster {
        servers: BTreeMap::new(),
        peers: peers.clone(),
        dirs: BTreeMap::new(),
        snapshot_every,
    };
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(id, &peers, dir.path());
        cfg.snapshot_every = snapshot_every;
        cfg.tls = tls.clone();
        c.servers.insert(id, Server::start(cfg, l).unwrap());
        c.dirs.insert(id, dir);
    }
    c
}

pub fn cluster() -> Cluster {
    cluster_with(10_000)
}

pub fn url(c: &Cluster) -> MetaUrl {
    MetaUrl::Raft {
        addrs: c.peers.values().cloned().collect(),
        secret: Some(String::from_utf8(SECRET.to_vec()).unwrap()),
        tls_ca: None,
    }
}

pub fn now() -> Timespec {
    Timespec::new(1_700_000_000, 0)
}
