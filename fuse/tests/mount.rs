//! End-to-end tests through a real FUSE mount (root and /dev/fuse needed): everyday
//! tools work, data survives unmount and remount, and deleted data is collected.

mod common;
use common::*;
use ferrofs_s3_backend::testing::S3Server;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn objects_in(dir: &std::path::Path) -> usize {
    let out = sh(dir, "find . -type f -path './chunks/*' | wc -l");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn data_survives_remount_and_reads_are_exact() {
    let mut v = Volume::new();
    v.format();
    data_survives_remount(&mut v);
}

#[test]
fn data_survives_remount_over_s3() {
    let server = S3Server::start();
    let mut v = Volume::new();
    v.format_s3(&server);
    data_survives_remount(&mut v);
}

fn data_survives_remount(v: &mut Volume) {
    v.mount();
    // Multi-block, multi-chunk file with holes and overwrites (block size is 64K).
    let mut expected = vec![0u8; 70 << 20];
    {
        let mut f = std::fs::File::create(v.path("big")).unwrap();
        let a = pattern(3 << 20, 1);
        f.write_all(&a).unwrap();
        expected[..a.len()].copy_from_slice(&a);
        let b = pattern(1 << 20, 2);
        f.seek(SeekFrom::Start(66 << 20)).unwrap();
        f.write_all(&b).unwrap();
        expected[66 << 20..67 << 20].copy_from_slice(&b);
        let c = pattern(100_000, 3);
        f.seek(SeekFrom::Start(1_000_000)).unwrap();
        f.write_all(&c).unwrap();
        expected[1_000_000..1_100_000].copy_from_slice(&c);
        f.set_len(70 << 20).unwrap();
        f.sync_all().unwrap();
    }
    std::fs::write(v.path("small"), b"hello").unwrap();
    std::fs::create_dir_all(v.path("a/b/c")).unwrap();
    std::os::unix::fs::symlink("../small", v.path("a/link")).unwrap();
    std::fs::hard_link(v.path("small"), v.path("a/b/hard")).unwrap();
    v.umount();
    v.mount();
    let got = std::fs::read(v.path("big")).unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "big file differs after remount");
    assert_eq!(std::fs::read(v.path("a/link")).unwrap(), b"hello");
    assert_eq!(std::fs::metadata(v.path("small")).unwrap().nlink(), 2);
    assert!(v.path("a/b/c").is_dir());
    v.umount();
}

#[test]
fn everyday_tools_work() {
    let mut v = Volume::new();
    v.format();
    everyday_tools(&mut v);
}

#[test]
fn everyday_tools_work_over_s3() {
    let server = S3Server::start();
    let mut v = Volume::new();
    v.format_s3(&server);
    everyday_tools(&mut v);
}

fn everyday_tools(v: &mut Volume) {
    v.mount();
    let src = env!("CARGO_MANIFEST_DIR");
    let script = format!(
        "set -e
        cp -a {src}/src copied
        diff -r {src}/src copied
        tar cf t.tar copied && mkdir untar && tar xf t.tar -C untar && diff -r copied untar/copied
        printf 'int main(void){{return 42;}}\\n' > m.c
        if command -v cc >/dev/null; then cc -o m m.c; ./m || test $? -eq 42; fi
        if command -v git >/dev/null; then
            git init -q repo && cd repo && git config user.email t@t && git config user.name t
            cp -a ../copied . && git add -A && git commit -qm one && git clone -q . ../clone && cd ..
            diff -r copied clone/copied
        fi
        mv copied renamed && test ! -e copied && ls renamed >/dev/null
        rm -rf renamed untar t.tar
        echo ok"
    );
    let out = sh(&v.mnt, &script);
    assert!(
        out.status.success() && stdout(&out).contains("ok"),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    v.umount();
}

#[test]
fn unlinked_open_file_stays_readable_until_closed() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    let data = pattern(300_000, 9);
    std::fs::write(v.path("f"), &data).unwrap();
    let mut f = std::fs::File::open(v.path("f")).unwrap();
    std::fs::remove_file(v.path("f")).unwrap();
    assert!(!v.path("f").exists());
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    assert_eq!(got, data);
    drop(f);
    v.umount();
}

#[test]
fn deleted_and_overwritten_data_is_collected() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    std::fs::write(v.path("f"), pattern(1 << 20, 4)).unwrap();
    let before = objects_in(&v.data);
    assert!(
        before >= 16,
        "1 MiB at 64K blocks is 16 objects, found {before}"
    );
    // Many small overwrites of one chunk trigger compaction; the old slices go.
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(v.path("f"))
            .unwrap();
        for i in 0..100u64 {
            f.seek(SeekFrom::Start(i * 4096)).unwrap();
            f.write_all(&[i as u8; 100]).unwrap();
            f.flush().unwrap();
            f.sync_all().unwrap();
        }
    }
    let got = std::fs::read(v.path("f")).unwrap();
    let mut expected = pattern(1 << 20, 4);
    for i in 0..100usize {
        expected[i * 4096..i * 4096 + 100].fill(i as u8);
    }
    assert!(got == expected, "content after overwrites differs");
    std::fs::remove_file(v.path("f")).unwrap();
    // The mount's gc deletes unreferenced objects in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while objects_in(&v.data) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(objects_in(&v.data), 0, "objects leaked after delete");
    v.umount();
}

#[test]
fn status_of_a_mounted_volume_lists_its_session() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    std::fs::write(v.path("f"), b"12345").unwrap();
    let o = ferrofs(&["status", &v.meta_url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sessions = json["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{json}");
    assert_eq!(
        sessions[0]["mountpoint"],
        v.mnt.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(json["usage"]["used_inodes"], 2);
    v.umount();
    let o = ferrofs(&["status", &v.meta_url]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(json["sessions"].as_array().unwrap().is_empty(), "{json}");
}

#[test]
fn busy_mountpoint_is_refused() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    let other = Volume::new();
    other.format();
    let o = ferrofs(&["mount", &other.meta_url, v.mnt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is busy"), "{}", stderr(&o));
    v.umount();
}

#[test]
fn sigterm_unmounts_cleanly_and_keeps_data() {
    let mut v = Volume::new();
    v.format();
    let child = std::process::Command::new(bin())
        .args(["mount", &v.meta_url, v.mnt.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !is_mounted(&v.mnt) {
        assert!(std::time::Instant::now() < deadline, "mount not ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(v.path("kept"), b"data").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mount process exit: {:?}", out.status);
    assert!(!is_mounted(&v.mnt));
    v.mount();
    assert_eq!(std::fs::read(v.path("kept")).unwrap(), b"data");
    v.umount();
}

fn is_mounted(p: &std::path::Path) -> bool {
    let p = p.canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

#[test]
fn damaged_objects_are_eio_never_wrong_bytes() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    let data = pattern(200_000, 5);
    std::fs::write(v.path("f"), &data).unwrap();
    v.umount();
    // Flip one byte in the data of the first block object, truncate the second.
    let list = sh(&v.data, "find . -type f -path './chunks/*' | sort");
    let objects: Vec<String> = stdout(&list).lines().map(str::to_string).collect();
    assert_eq!(objects.len(), 4, "200000 bytes at 64K blocks: {objects:?}");
    let first = v.data.join(&objects[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    let second = v.data.join(&objects[1]);
    let bytes = std::fs::read(&second).unwrap();
    std::fs::write(&second, &bytes[..bytes.len() - 10]).unwrap();
    // Without the local cache, which kept good copies of what this client wrote.
    v.mount_with(&["--cache-size", "0"]);
    let mut f = std::fs::File::open(v.path("f")).unwrap();
    let mut buf = vec![0u8; 4096];
    let err = f.read_exact(&mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "corrupt block: {err}");
    f.seek(SeekFrom::Start(70_000)).unwrap();
    let err = f.read_exact(&mut buf).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "truncated block: {err}"
    );
    // Undamaged blocks still read.
    f.seek(SeekFrom::Start(140_000)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data[140_000..144_096]);
    drop(f);
    v.umount();
}

#[test]
fn the_block_cache_serves_reads_across_remounts_and_refetches_damaged_copies() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    let data = pattern(200_000, 9);
    std::fs::write(v.path("f"), &data).unwrap();
    v.umount();
    // What the client wrote, it cached: four 64 KiB blocks.
    let cached = sh(
        &v.cache_dir(),
        "find . -type f -path '*/raw/chunks/*' | sort",
    );
    let cached: Vec<String> = stdout(&cached).lines().map(str::to_string).collect();
    assert_eq!(cached.len(), 4, "{cached:?}");
    let first = v.cache_dir().join(&cached[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();
    v.mount();
    assert_eq!(
        std::fs::read(v.path("f")).unwrap(),
        data,
        "damaged copy refetched"
    );
    v.umount();
    // With every object gone from the store, the cache alone serves the file.
    let o = sh(&v.data, "find . -type f -path './chunks/*' -delete");
    assert!(o.status.success());
    assert_eq!(objects_in(&v.data), 0);
    v.mount();
    assert_eq!(
        std::fs::read(v.path("f")).unwrap(),
        data,
        "read from the cache"
    );
    v.umount();
}

#[test]
fn warmup_fills_checks_and_evicts_the_cache() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    std::fs::create_dir_all(v.path("ds/a")).unwrap();
    for i in 0..20 {
        std::fs::write(v.path(&format!("ds/a/f{i}")), pattern(100_000, i as u8)).unwrap();
    }
    let ds = v.path("ds");
    let ds = ds.to_str().unwrap();
    let cached_files = || {
        let o = sh(
            &v.cache_dir(),
            "find . -type f -path '*/raw/chunks/*' | wc -l",
        );
        stdout(&o).trim().parse::<usize>().unwrap()
    };
    // 20 files of 100,000 bytes at 64 KiB blocks: 40 blocks, cached as written.
    assert_eq!(cached_files(), 40);
    let o = ferrofs(&["warmup", ds, "--evict"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cached_files(), 0);
    let o = ferrofs(&["warmup", ds, "--check"]);
    assert!(stdout(&o).contains("(0.0%)"), "{}", stdout(&o));
    let list = v.dir.path().join("list");
    std::fs::write(&list, format!("{}/a/f0\n{}/a/f1\n", ds, ds)).unwrap();
    let o = ferrofs(&["warmup", "-f", list.to_str().unwrap(), "-p", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cached_files(), 4);
    let o = ferrofs(&["warmup", ds]);
    assert!(stdout(&o).contains("100.0% now cached"), "{}", stdout(&o));
    assert_eq!(cached_files(), 40);
    let o = ferrofs(&["warmup", ds, "--check"]);
    assert!(stdout(&o).contains("(100.0%)"), "{}", stdout(&o));
    // The mount's counters, over its control socket.
    let sock = mount_pid_file(&v.mnt).with_extension("sock");
    let counters = || {
        use std::io::BufRead;
        let sock = sock.clone();
        let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
        s.write_all(b"{\"op\":\"cache\"}\n").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["done"].clone()
    };
    assert_eq!(counters()["blocks"], 40);
    v.umount();
    // With the store emptied, the warmed cache alone serves every file.
    sh(&v.data, "find . -type f -path './chunks/*' -delete");
    v.mount();
    for i in 0..20 {
        let got = std::fs::read(v.path(&format!("ds/a/f{i}"))).unwrap();
        assert_eq!(got, pattern(100_000, i as u8));
    }
    let c = counters();
    assert_eq!(
        (c["hits"].as_u64(), c["restored"].as_u64()),
        (Some(40), Some(40)),
        "{c}"
    );
    v.umount();
}

/// The pid file of the mount process at `mnt` (its control socket is beside it).
fn mount_pid_file(mnt: &std::path::Path) -> std::path::PathBuf {
    let name: String = mnt
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    std::env::temp_dir().join(format!("ferrofs{name}.pid"))
}

/// The pid of the mount process at `mnt`.
fn mount_pid(mnt: &std::path::Path) -> i32 {
    let f = mount_pid_file(mnt);
    std::fs::read_to_string(&f).unwrap().trim().parse().unwrap()
}

#[test]
fn writeback_stages_commits_and_uploads_after_a_crash() {
    let mut v = Volume::new();
    v.format();
    let o = sh(
        v.dir.path(),
        "mkdir -p data/chunks && chattr +i data/chunks",
    );
    assert!(o.status.success(), "chattr: {}", stderr(&o));
    // The object store refuses every write (an immutable directory): with writeback,
    // writes still complete, staged on the local cache disk.
    v.mount_with(&["--writeback"]);
    let data = pattern(300_000, 3);
    let mut f = std::fs::File::create(v.path("f")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(
        std::fs::read(v.path("f")).unwrap(),
        data,
        "read back while staged"
    );
    assert_eq!(objects_in(&v.data), 0, "nothing reached the store");
    // The client dies before it could upload anything.
    let pid = mount_pid(&v.mnt);
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for _ in 0..100 {
        if unsafe { libc::kill(pid, 0) } != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mnt = v.mnt.to_str().unwrap().to_string();
    sh(
        v.dir.path(),
        &format!("fusermount3 -u -z {mnt} || umount -l {mnt}"),
    );
    sh(v.dir.path(), "chattr -i data/chunks");
    // The next mount uploads what was staged; then even a client without the cache
    // (another machine) reads the file.
    v.mount_with(&["--writeback"]);
    v.umount();
    assert_eq!(objects_in(&v.data), 5, "300,000 bytes at 64 KiB blocks");
    v.mount_with(&["--cache-size", "0"]);
    assert_eq!(std::fs::read(v.path("f")).unwrap(), data);
    v.umount();
}
