//! Log compaction, catching up by snapshot, and membership changes of meta-server
//! replicas in this process, on loopback.

mod common;
use common::*;

use ferrofs_core::format::Format;
use ferrofs_core::kv::Kv;
use ferrofs_core::meta::Meta;
use ferrofs_core::{Ctx, Ino};
use ferrofs_meta::raft::{Change, RaftClient, Server};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn client(c: &Cluster) -> RaftClient {
    RaftClient::new(c.peers.values().cloned().collect()).secret(SECRET)
}

fn mkdirs(meta: &Meta, from: usize, to: usize) {
    for i in from..to {
        let name = format!("d{i}");
        meta.mkdir(&Ctx::root(), Ino::ROOT, name.as_bytes(), 0o755, 0, now())
            .unwrap();
    }
}

fn entries(meta: &Meta) -> usize {
    meta.readdir(&Ctx::root(), Ino::ROOT, 0, 10_000, false)
        .unwrap()
        .len()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replica_that_was_down_while_the_log_was_compacted_catches_up_by_snapshot() {
    let mut c = cluster_with(50);
    let engine: Arc<dyn Kv> = url(&c).open(true).unwrap();
    Meta::format(
        &*engine,
        &Format::new("raftvol", "00000000-0000-0000-0000-000000000002"),
        false,
        now(),
    )
    .unwrap();
    let meta = Meta::load(engine).unwrap();
    mkdirs(&meta, 0, 5);
    // Stop a follower; the others compact their logs far past it.
    let rc = client(&c);
    let leader = rc.members().unwrap().leader;
    let down = *c.peers.keys().find(|&&id| id != leader).unwrap();
    c.stop(down);
    mkdirs(&meta, 5, 150);
    let info = rc.members().unwrap();
    assert!(
        info.first_index > 60,
        "the leader compacted its log: {info:?}"
    );
    // Back, it gets the snapshot and the log after it.
    c.restart(down);
    wait_for("the restarted replica to catch up", || {
        let info = rc.members().unwrap();
        info.progress
            .iter()
            .any(|&(id, m)| id == down && m >= info.applied)
    });
    // Only it and one other are left: everything is there, and it goes on.
    let other = *c.servers.keys().find(|&&id| id != down).unwrap();
    c.stop(other);
    mkdirs(&meta, 150, 151);
    assert_eq!(entries(&meta), 153, "151 dirs, . and ..");
    c.stop_all();
}

#[test]
fn a_replica_is_added_promoted_and_another_removed_while_clients_write() {
    let mut c = cluster_with(40);
    let engine: Arc<dyn Kv> = url(&c).open(true).unwrap();
    Meta::format(
        &*engine,
        &Format::new("raftvol", "00000000-0000-0000-0000-000000000003"),
        false,
        now(),
    )
    .unwrap();
    let meta = Meta::load(engine).unwrap();
    mkdirs(&meta, 0, 100);
    // A fourth replica starts empty with --join and is added.
    let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let a4 = l4.local_addr().unwrap().to_string();
    let dir4 = tempfile::tempdir().unwrap();
    let mut peers4 = c.peers.clone();
    peers4.insert(4, a4.clone());
    let mut cfg = config(4, &peers4, dir4.path());
    cfg.join = true;
    let s4 = Server::start(cfg, l4).unwrap();
    let rc = client(&c);
    rc.change(&Change::AddLearner {
        id: 4,
        addr: a4.clone(),
    })
    .unwrap();
    wait_for("the learner to catch up", || {
        let info = rc.members().unwrap();
        info.progress
            .iter()
            .any(|&(id, m)| id == 4 && m >= info.applied)
    });
    rc.change(&Change::Promote {
        id: 4,
        addr: a4.clone(),
    })
    .unwrap();
    let info = rc.members().unwrap();
    assert_eq!(info.members.voters, vec![1, 2, 3, 4]);
    assert_eq!(
        info.members.addrs.get(&4),
        Some(&a4),
        "the address book has it"
    );
    assert_eq!(info.members.addrs.len(), 4);
    // Remove the leader: hand over first.
    let old = info.leader;
    let heir = if old == 4 { 1 } else { 4 };
    wait_for("the leader to hand over", || {
        rc.transfer_leader(heir).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        rc.members().unwrap().leader != old
    });
    rc.change(&Change::Remove { id: old }).unwrap();
    // The removed replica stops by itself.
    let removed = c.servers.remove(&old).unwrap();
    removed.wait().unwrap();
    mkdirs(&meta, 100, 110);
    // The three left, 4 among them, hold everything: stop one more and the other two
    // still make a majority of three.
    let info = rc.members().unwrap();
    assert_eq!(info.members.voters.len(), 3);
    assert!(!info.members.voters.contains(&old));
    let gone = *c.servers.keys().find(|&&id| id != info.leader).unwrap();
    c.stop(gone);
    mkdirs(&meta, 110, 111);
    assert_eq!(entries(&meta), 113);
    s4.stop();
    c.stop_all();
}
