//! A volume on three `ferrofs meta-server` processes: format, mount, files, the
//! leader killed with SIGKILL mid-way, files again, status.

mod common;

use common::{bin, ferrofs, stderr, stdout, Volume};
use ferrofs_meta::raft::RaftClient;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "mount-test-secret";

struct Replicas {
    children: Vec<Option<Child>>,
    addrs: Vec<String>,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_replicas(dir: &std::path::Path) -> Replicas {
    // Free ports (bound, then released for the servers).
    let addrs: Vec<String> = (0..3)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .to_string()
        })
        .collect();
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let peers = peers.join(",");
    let children = (1..=3)
        .map(|id| {
            let log = std::fs::File::create(dir.join(format!("replica{id}.log"))).unwrap();
            Some(
                Command::new(bin())
                    .env("FERROFS_META_SECRET", SECRET)
                    .args(["meta-server", "--id", &id.to_string(), "--peers", &peers])
                    .args(["--data-dir", dir.join(format!("r{id}")).to_str().unwrap()])
                    .args(["--tick", "50ms"])
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start a meta server"),
            )
        })
        .collect();
    Replicas { children, addrs }
}

#[test]
fn a_volume_on_three_replicas_outlives_its_leader() {
    let mut vol = Volume::new();
    let replicas = start_replicas(vol.dir.path());
    let mut replicas = replicas;
    // A wrong secret is refused with a message that says what to do.
    let wrong = format!("raft://:nope@{}", replicas.addrs.join(","));
    let o = ferrofs(&[
        "format",
        &wrong,
        "testvol",
        "--bucket",
        vol.data.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("refused this client's secret"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("nope"),
        "the secret is not echoed: {}",
        stderr(&o)
    );
    vol.meta_url = format!("raft://:{SECRET}@{}", replicas.addrs.join(","));
    vol.format();
    vol.mount();
    for i in 0..50 {
        std::fs::write(vol.path(&format!("f{i}")), format!("file {i}")).unwrap();
    }
    let leader = (0..3)
        .find(|&i| RaftClient::is_leader(&replicas.addrs[i], SECRET.as_bytes()))
        .expect("one replica leads");
    let mut child = replicas.children[leader].take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t = Instant::now();
    std::fs::write(vol.path("after-kill"), "still here").unwrap();
    let stall = t.elapsed();
    assert!(
        stall < Duration::from_secs(20),
        "a write waited {stall:?} for a new leader"
    );
    for i in 50..80 {
        std::fs::write(vol.path(&format!("f{i}")), format!("file {i}")).unwrap();
    }
    for i in 0..80 {
        assert_eq!(
            std::fs::read_to_string(vol.path(&format!("f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
    assert_eq!(std::fs::read_dir(&vol.mnt).unwrap().count(), 81);
    // A file this client keeps open after unlinking it survives another client's mount
    // (which cleans up only after dead clients).
    use std::io::{Read, Seek, Write};
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(vol.path("held"))
        .unwrap();
    held.write_all(b"still mine").unwrap();
    held.sync_all().unwrap();
    std::fs::remove_file(vol.path("held")).unwrap();
    let mut second = Volume::new();
    second.meta_url = vol.meta_url.clone();
    second.mount();
    let mut back = String::new();
    held.rewind().unwrap();
    held.read_to_string(&mut back).unwrap();
    assert_eq!(back, "still mine");
    assert_eq!(std::fs::read_dir(&second.mnt).unwrap().count(), 81);
    second.umount();
    drop(held);
    vol.umount();
    let o = ferrofs(&["status", &vol.meta_url]);
    assert!(o.status.success(), "status: {}", stderr(&o));
    assert!(
        stdout(&o).contains("\"name\": \"testvol\""),
        "{}",
        stdout(&o)
    );
}
