//! A cache group of real processes: a meta server, two `ferrofs cache-node`s and
//! `--no-sharing` mounts. Warm once from one mount, read everything from another with no
//! object-store GET; a cache node killed mid-way costs only fallback reads; a volume-wide
//! rate limit set with `ferrofs config` reaches a running mount.

mod common;

use common::{bin, ferrofs, free_addr, stderr};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "group-test-secret";

struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[&str], log: &Path) -> Child {
    Command::new(bin())
        .env("FERROFS_META_SECRET", SECRET)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start ferrofs")
}

/// Asks a control socket for the group counters.
fn group_counters(sock: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = UnixStream::connect(sock) {
            s.write_all(b"{\"op\":\"group\"}\n").unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            return v["done"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no control socket at {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mount_socket(mnt: &Path) -> PathBuf {
    let name: String = mnt
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    std::env::temp_dir().join(format!("ferrofs{name}.sock"))
}

fn node_socket(id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ferrofs-cache-node-{id}.sock"))
}

fn content(i: usize) -> Vec<u8> {
    let len = 50_000 + i * 7_919;
    (0..len).map(|b| (b * 131 + i * 17) as u8).collect()
}

#[test]
fn warm_once_read_anywhere_and_survive_a_dead_cache_node() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root and /dev/fuse");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let meta_addr = free_addr();
    let mut procs = Kill(vec![spawn(
        &[
            "meta-server",
            "--id",
            "1",
            "--peers",
            &format!("1={meta_addr}"),
            "--data-dir",
            d.join("r1").to_str().unwrap(),
            "--tick",
            "50ms",
        ],
        &d.join("meta.log"),
    )]);
    let url = format!("raft://:{SECRET}@{meta_addr}");
    let data = d.join("data");
    let o = ferrofs(&[
        "format",
        &url,
        "groupvol",
        "--bucket",
        data.to_str().unwrap(),
        "--block-size",
        "64K",
    ]);
    assert!(o.status.success(), "format: {}", stderr(&o));

    // Two dedicated cache nodes.
    let tag = std::process::id();
    let ids: Vec<String> = (1..=2).map(|i| format!("t{tag}-n{i}")).collect();
    for id in &ids {
        let cache = d.join(format!("cache-{id}"));
        procs.0.push(spawn(
            &[
                "cache-node",
                &url,
                "--cache-group",
                "g",
                "--group-id",
                id,
                "--cache-dir",
                cache.to_str().unwrap(),
                "--cache-size",
                "1G",
            ],
            &d.join(format!("{id}.log")),
        ));
    }
    for id in &ids {
        group_counters(&node_socket(id));
    }
    // `status` lists the group's members.
    let o = ferrofs(&["status", &url]);
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    let listed: Vec<&str> = status["cache_groups"]["g"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());

    let mount = |name: &str| -> PathBuf {
        let mnt = d.join(name);
        std::fs::create_dir_all(&mnt).unwrap();
        let log = d.join(format!("{name}.log"));
        let o = Command::new(bin())
            .env("FERROFS_META_SECRET", SECRET)
            .args(["mount", &url, mnt.to_str().unwrap(), "-d"])
            .args(["--log", log.to_str().unwrap(), "--cache-size", "0"])
            .args([
                "--cache-group",
                "g",
                "--no-sharing",
                "--remote-timeout",
                "500ms",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "mount {name}: {}", stderr(&o));
        mnt
    };
    let umount = |mnt: &Path| {
        let o = ferrofs(&["umount", mnt.to_str().unwrap()]);
        assert!(o.status.success(), "umount: {}", stderr(&o));
    };

    let a = mount("a");
    let files = 40;
    for i in 0..files {
        std::fs::write(a.join(format!("f{i}")), content(i)).unwrap();
    }
    let blocks: u64 = (0..files)
        .map(|i| (content(i).len() as u64).div_ceil(64 << 10))
        .sum();
    let o = ferrofs(&["warmup", a.to_str().unwrap()]);
    assert!(o.status.success(), "warmup: {}", stderr(&o));
    let gets_of = |ids: &[String]| -> u64 {
        ids.iter()
            .map(|id| {
                group_counters(&node_socket(id))["store_gets"]
                    .as_u64()
                    .unwrap()
            })
            .sum()
    };
    let node_gets = gets_of(&ids);
    assert_eq!(node_gets, blocks, "each block fetched once, by its owner");
    let both_served = ids
        .iter()
        .all(|id| group_counters(&node_socket(id))["served"].as_u64().unwrap() > 0);
    assert!(both_served, "both owners got warm-up requests");
    umount(&a);

    // Another client reads everything from the group: no GET of its own, none by the
    // owners either.
    let b = mount("b");
    for i in 0..files {
        assert_eq!(
            std::fs::read(b.join(format!("f{i}"))).unwrap(),
            content(i),
            "f{i}"
        );
    }
    let c = group_counters(&mount_socket(&b));
    assert_eq!(c["store_gets"].as_u64(), Some(0), "{c}");
    assert_eq!(c["hits"].as_u64(), Some(blocks), "{c}");
    assert_eq!(gets_of(&ids), node_gets);
    umount(&b);

    // One cache node dies: its blocks come from object storage, within the timeout.
    let mut dead = procs.0.remove(1);
    dead.kill().unwrap();
    dead.wait().unwrap();
    let c_mnt = mount("c");
    let t = Instant::now();
    for i in 0..files {
        assert_eq!(
            std::fs::read(c_mnt.join(format!("f{i}"))).unwrap(),
            content(i),
            "f{i}"
        );
    }
    let took = t.elapsed();
    let c = group_counters(&mount_socket(&c_mnt));
    assert!(c["store_gets"].as_u64().unwrap() > 0, "{c}");
    assert!(c["hits"].as_u64().unwrap() > 0, "{c}");
    assert!(took < Duration::from_secs(15), "reads took {took:?}");

    // A volume-wide download limit reaches the running mount without a remount.
    let o = ferrofs(&["config", &url, "--download-limit", "80"]);
    assert!(o.status.success(), "config: {}", stderr(&o));
    let settings: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(settings["download_limit"], 10_000_000, "80 Mbps");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = UnixStream::connect(mount_socket(&c_mnt)).unwrap();
        s.write_all(b"{\"op\":\"limits\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["done"]["download"]["rate"] == 10_000_000 {
            assert_eq!(v["done"]["upload"]["rate"], 0, "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mount did not pick the limit up: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    umount(&c_mnt);
}
