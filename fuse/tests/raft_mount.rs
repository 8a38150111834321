//! A volume on three `ferrofs meta-server` processes: format, mount, files, the
//! leader killed with SIGKILL mid-way, files again, status.

mod common;

use common::{bin, ferrofs, free_addrs, stderr, stdout, Volume};
use ferrofs_meta::raft::RaftClient;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Three replicas proving `secret` (each test its own: a client that reached another
/// test's cluster would be refused, not served).
fn start_replicas(dir: &std::path::Path, secret: &str) -> Replicas {
    let addrs = free_addrs(3);
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
                    .env("FERROFS_META_SECRET", secret)
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
    const SECRET: &str = "outlives-its-leader-secret";
    let mut vol = Volume::new();
    let replicas = start_replicas(vol.dir.path(), SECRET);
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
        stdout(&o).contains("\"replicas\"") && stdout(&o).contains("\"leader\""),
        "status lists the replicas: {}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("\"name\": \"testvol\""),
        "{}",
        stdout(&o)
    );
}

/// Waits until `cond` holds (checked every 5 ms) and returns how long that took, or
/// `None` after `limit`.
fn time_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if cond() {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn exists(p: &std::path::Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn size(p: &std::path::Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

fn mode(p: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

fn names(p: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Two mounts of one volume, with caches of 60 s in the kernel and the client: what
/// one changes, the other sees within a poll of the change feed. A third mount with
/// the feed off still sees the old state afterwards (so it is the feed that does it).
#[test]
fn the_change_feed_shows_other_clients_changes_despite_long_ttls() {
    const SECRET: &str = "change-feed-secret";
    let mut a = Volume::new();
    let replicas = start_replicas(a.dir.path(), SECRET);
    a.meta_url = format!("raft://:{SECRET}@{}", replicas.addrs.join(","));
    a.format();
    let long = [
        "--attr-cache",
        "60s",
        "--entry-cache",
        "60s",
        "--dir-entry-cache",
        "60s",
        "--negative-entry-cache",
        "60s",
        "--meta-cache",
        "60s",
    ];
    a.mount_with(&long);
    let mut b = Volume::new();
    b.meta_url = a.meta_url.clone();
    b.mount_with(&long);
    let mut c = Volume::new();
    c.meta_url = a.meta_url.clone();
    c.mount_with(&[&long[..], &["--meta-feed-interval", "0"]].concat());
    // Until its feed is in sync, a mount uses short lifetimes: wait for it.
    let log = b.dir.path().join("mount.log");
    let synced = time_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("change feed in sync"))
    });
    assert!(synced.is_some(), "B's feed never got in sync");

    // What each change starts from, seen (and so cached) by B and C once B's feed
    // has delivered its creation (else the feed's invalidations of it would empty
    // B's caches again): B sees a name it had looked up in vain appear.
    assert!(!exists(&b.path("ready")));
    std::fs::write(a.path("old"), "o").unwrap();
    std::fs::write(a.path("doomed"), "d").unwrap();
    std::fs::write(a.path("grow"), "12345").unwrap();
    std::fs::write(a.path("perm"), "p").unwrap();
    std::fs::create_dir(a.path("dir")).unwrap();
    std::fs::write(a.path("dir/one"), "1").unwrap();
    std::fs::write(a.path("ready"), "").unwrap();
    let ready = time_until(Duration::from_secs(2), || exists(&b.path("ready")));
    assert!(ready.is_some(), "B's feed did not deliver the set-up");
    let prime = |v: &Volume| {
        assert!(!exists(&v.path("created")));
        assert!(exists(&v.path("old")) && !exists(&v.path("new")));
        assert!(exists(&v.path("doomed")));
        assert_eq!(size(&v.path("grow")), Some(5));
        assert_eq!(mode(&v.path("perm")), Some(0o644));
        assert_eq!(names(&v.path("dir")), ["one"]);
    };
    prime(&b);
    prime(&c);

    /// A change made in A, and whether a mount shows it.
    type Change<'a> = (
        &'static str,
        Box<dyn Fn() + 'a>,
        Box<dyn Fn(&Volume) -> bool>,
    );
    let changes: Vec<Change> = vec![
        (
            "create",
            Box::new(|| std::fs::write(a.path("created"), "c").unwrap()),
            Box::new(|v| exists(&v.path("created"))),
        ),
        (
            "rename",
            Box::new(|| std::fs::rename(a.path("old"), a.path("new")).unwrap()),
            Box::new(|v| !exists(&v.path("old")) && exists(&v.path("new"))),
        ),
        (
            "unlink",
            Box::new(|| std::fs::remove_file(a.path("doomed")).unwrap()),
            Box::new(|v| !exists(&v.path("doomed"))),
        ),
        (
            "write",
            Box::new(|| std::fs::write(a.path("grow"), vec![7u8; 5000]).unwrap()),
            Box::new(|v| size(&v.path("grow")) == Some(5000)),
        ),
        (
            "chmod",
            Box::new(|| {
                use std::os::unix::fs::PermissionsExt;
                let p = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(a.path("perm"), p).unwrap()
            }),
            Box::new(|v| mode(&v.path("perm")) == Some(0o600)),
        ),
        (
            "create in a listed dir",
            Box::new(|| std::fs::write(a.path("dir/two"), "2").unwrap()),
            Box::new(|v| names(&v.path("dir")) == ["one", "two"]),
        ),
    ];
    let mut delays = Vec::new();
    for (i, (what, change, seen)) in changes.iter().enumerate() {
        let began = Instant::now();
        change();
        let took = began.elapsed();
        let d = time_until(Duration::from_secs(2), || seen(&b));
        let Some(d) = d else {
            panic!("B did not see the {what} within 2 s of A's call returning");
        };
        // After A's call returned, and after it began (the change may be committed
        // and fed before the call returns).
        delays.push((*what, d, took + d));
        // Well past B's delay, C (no feed) still answers from its caches. (The
        // pause also varies where the next change falls between two polls.)
        std::thread::sleep(Duration::from_millis(500 + i as u64 * 77 % 200));
        assert!(!seen(&c), "C saw the {what} without the feed");
    }
    for (what, after_return, after_start) in &delays {
        eprintln!("{what}: seen by B {after_return:?} after A's call returned ({after_start:?} after it began)");
    }
    // B read the new content too (open reads afresh; the pages were dropped).
    assert_eq!(std::fs::read(b.path("grow")).unwrap(), vec![7u8; 5000]);
    drop(changes);
    c.umount();
    b.umount();
    a.umount();
}
