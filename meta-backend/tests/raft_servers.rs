//! Three meta-server replicas in this process, on loopback: the metadata code over
//! the optimistic client, through leader changes.

use ferrofs_core::format::Format;
use ferrofs_core::kv::{self, Kv};
use ferrofs_core::meta::Meta;
use ferrofs_core::{Ctx, Ino};
use ferrofs_meta::raft::RaftClient;
use ferrofs_meta::MetaUrl;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::*;

#[test]
fn metadata_over_three_replicas_survives_the_leader_stopping() {
    let mut c = cluster();
    let engine: Arc<dyn Kv> = url(&c).open(true).expect("the cluster answers");
    let format = Format::new("raftvol", "00000000-0000-0000-0000-000000000001");
    Meta::format(&*engine, &format, false, now()).unwrap();
    let meta = Meta::load(engine.clone()).unwrap();
    let root = Ctx::root();
    for i in 0..20 {
        meta.mkdir(
            &root,
            Ino::ROOT,
            format!("d{i}").as_bytes(),
            0o755,
            0,
            now(),
        )
        .unwrap();
    }
    // Find and stop the leader: a follower redirects, so ask each server directly.
    let leader = c
        .peers
        .iter()
        .find(|(_, a)| RaftClient::is_leader(a, SECRET))
        .map(|(id, _)| *id)
        .expect("a leader");
    c.servers.remove(&leader).unwrap().stop();
    // The two others elect a new leader; the same client goes on.
    for i in 20..30 {
        meta.mkdir(
            &root,
            Ino::ROOT,
            format!("d{i}").as_bytes(),
            0o755,
            0,
            now(),
        )
        .unwrap();
    }
    let names = meta.readdir(&root, Ino::ROOT, 0, 100, false).unwrap();
    assert_eq!(names.len(), 32, "30 dirs, . and ..");
    // A second client sees it all, and a name taken is taken for it too.
    let other = Meta::load(url(&c).open(false).unwrap()).unwrap();
    // A client without the secret is refused, with a message saying what to do.
    let stranger = MetaUrl::Raft {
        addrs: c.peers.values().cloned().collect(),
        secret: Some("guess".into()),
        tls_ca: None,
    };
    let e = stranger.open(false).err().expect("refused");
    assert!(
        e.to_string().contains("refused this client's secret"),
        "{e}"
    );
    let e = other.mkdir(&root, Ino::ROOT, b"d3", 0o755, 0, now());
    assert_eq!(e.err(), Some(ferrofs_core::Errno::EEXIST));
    // The stopped replica comes back; then another one stops, so that nothing can be
    // done without the one that came back: it caught up.
    let l = TcpListener::bind(&c.peers[&leader]).unwrap();
    let dir = c.dirs[&leader].path().to_path_buf();
    c.servers.insert(leader, start(leader, &c.peers, &dir, l));
    let another = *c.servers.keys().find(|&&id| id != leader).unwrap();
    c.servers.remove(&another).unwrap().stop();
    meta.mkdir(&root, Ino::ROOT, b"after", 0o755, 0, now())
        .unwrap();
    let names = meta.readdir(&root, Ino::ROOT, 0, 100, false).unwrap();
    assert_eq!(names.len(), 33);
    let total = kv::read(&*engine, |t| t.scan(b"", &[0xff], usize::MAX))
        .unwrap()
        .len();
    assert!(total > 30);
    for (_, s) in c.servers {
        s.stop();
    }
}

#[test]
fn a_tls_cluster_serves_clients_that_trust_its_ca_and_no_others() {
    let c = cluster_tls();
    let tls_url = |ca: Option<&str>| MetaUrl::Raft {
        addrs: c.peers.values().cloned().collect(),
        secret: Some(String::from_utf8(SECRET.to_vec()).unwrap()),
        tls_ca: ca.map(tls_file),
    };
    let engine = tls_url(Some("ca.pem"))
        .open(true)
        .expect("a client with the CA");
    let format = Format::new("raftvol", "00000000-0000-0000-0000-000000000004");
    Meta::format(&*engine, &format, false, now()).unwrap();
    let meta = Meta::load(engine).unwrap();
    meta.mkdir(&Ctx::root(), Ino::ROOT, b"over-tls", 0o755, 0, now())
        .unwrap();
    // Replicas reached each other over TLS too: a commit needs a majority.
    assert_eq!(
        meta.readdir(&Ctx::root(), Ino::ROOT, 0, 10, false)
            .unwrap()
            .len(),
        3
    );
    for url in [tls_url(None), tls_url(Some("other-ca.pem"))] {
        let client = url
            .raft_client()
            .unwrap()
            .unwrap()
            .patience(Duration::from_secs(2));
        assert!(client.members().is_err(), "{url} must not get an answer");
    }
    // A plain client is told why.
    let plain = RaftClient::new(c.peers.values().cloned().collect()).secret(SECRET);
    let e = plain
        .call_once(&c.peers[&1], &ferrofs_meta::raft::wire::Request::Members)
        .expect_err("refused");
    assert!(e.to_string().contains("TLS only"), "{e}");
    c.stop_all();
}
