//! `ferrofs meta-member` on `meta-server` processes: a new replica started with
//! `--join` replaces one of three, catching up by snapshot (the log is compacted
//! every 20 entries), while the volume stays usable; the replaced one stops.

mod common;

use common::{bin, ferrofs, free_addrs, stderr, stdout, Volume};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "member-test-secret";

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replica(dir: &std::path::Path, id: u64, peers: &str, join: bool) -> Replica {
    let log = std::fs::File::create(dir.join(format!("replica{id}.log"))).unwrap();
    let mut c = Command::new(bin());
    c.env("FERROFS_META_SECRET", SECRET)
        .args(["meta-server", "--id", &id.to_string(), "--peers", peers])
        .args(["--data-dir", dir.join(format!("r{id}")).to_str().unwrap()])
        .args(["--tick", "50ms", "--snapshot-every", "20"])
        .stdout(Stdio::null())
        .stderr(log);
    if join {
        c.arg("--join");
    }
    Replica(c.spawn().expect("start a meta server"))
}

fn url(addrs: &[&String]) -> String {
    let hosts: Vec<&str> = addrs.iter().map(|a| a.as_str()).collect();
    format!("raft://:{SECRET}@{}", hosts.join(","))
}

#[test]
fn a_joining_replica_replaces_a_member_without_downtime() {
    let mut vol = Volume::new();
    let dir = vol.dir.path().to_path_buf();
    let a = free_addrs(4);
    let peers = format!("1={},2={},3={}", a[0], a[1], a[2]);
    let mut rs: Vec<Option<Replica>> = (1..=3)
        .map(|id| Some(replica(&dir, id, &peers, false)))
        .collect();
    vol.meta_url = url(&[&a[0], &a[1], &a[2]]);
    vol.format();
    vol.mount();
    for i in 0..60 {
        std::fs::write(vol.path(&format!("f{i}")), format!("file {i}")).unwrap();
    }
    // Replica 4 starts empty and waits; `replace` adds it, waits for it to catch up,
    // makes it a voter and removes replica 1.
    let join_peers = format!("{peers},4={}", a[3]);
    let _r4 = replica(&dir, 4, &join_peers, true);
    let o = ferrofs(&[
        "meta-member",
        "replace",
        &vol.meta_url,
        "1",
        &format!("4={}", a[3]),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    assert!(list.contains(&a[3]) && !list.contains(&a[0]), "{list}");
    // The mount went on meanwhile, and still does.
    std::fs::write(vol.path("during"), "x").unwrap();
    // Replica 1 stops by itself.
    let mut r1 = rs[0].take().unwrap();
    let t = Instant::now();
    loop {
        if r1.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the removed replica still runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stop replica 2 as well: 3 and 4 are a majority of {2, 3, 4}, so the new replica
    // votes and holds the data.
    drop(rs[1].take());
    std::fs::write(vol.path("after"), "y").unwrap();
    for i in 0..60 {
        assert_eq!(
            std::fs::read_to_string(vol.path(&format!("f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
    let o = ferrofs(&["meta-member", "list", &url(&[&a[2], &a[3]])]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    assert!(
        list.lines()
            .any(|l| l.starts_with('4') && (l.contains("voter") || l.contains("leader"))),
        "{list}"
    );
    // Bad requests say what is wrong.
    let o = ferrofs(&["meta-member", "remove", &url(&[&a[2], &a[3]]), "9"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a member"), "{}", stderr(&o));
    vol.umount();
}
