//! Helpers for tests that run the `ferrofs` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferrofs")
}

/// Runs `ferrofs ARGS` and returns its output.
pub fn ferrofs(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ferrofs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A scratch volume: a meta dir, a data dir and a mount point under one temp dir.
pub struct Volume {
    pub dir: tempfile::TempDir,
    pub meta_url: String,
    pub data: PathBuf,
    pub mnt: PathBuf,
    mounted: bool,
}

impl Default for Volume {
    fn default() -> Self {
        Self::new()
    }
}

impl Volume {
    pub fn new() -> Volume {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta_url = format!("sled://{}/meta", dir.path().display());
        let data = dir.path().join("data");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        Volume {
            dir,
            meta_url,
            data,
            mnt,
            mounted: false,
        }
    }

    pub fn format(&self) {
        let o = ferrofs(&[
            "format",
            &self.meta_url,
            "testvol",
            "--storage",
            "file",
            "--bucket",
            self.data.to_str().unwrap(),
            "--block-size",
            "64K",
        ]);
        assert!(o.status.success(), "format failed: {}", stderr(&o));
    }

    /// Formats the volume with its data in a new bucket of a real S3 server.
    pub fn format_s3(&self, server: &ferrofs_s3_backend::testing::S3Server) {
        let bucket = server.create_bucket(&format!("vol-{}", std::process::id()));
        let o = ferrofs(&[
            "format",
            &self.meta_url,
            "testvol",
            "--storage",
            "s3",
            "--bucket",
            &bucket,
            "--access-key",
            server.access_key(),
            "--secret-key",
            server.secret_key(),
            "--block-size",
            "64K",
        ]);
        assert!(o.status.success(), "format over S3 failed: {}", stderr(&o));
    }

    pub fn mount(&mut self) {
        self.mount_with(&[]);
    }

    /// Mounts with extra `ferrofs mount` arguments.
    pub fn mount_with(&mut self, extra: &[&str]) {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the mount tests need root and /dev/fuse (run scripts/test-all.sh as root)"
        );
        let log = self.dir.path().join("mount.log");
        let cache = self.dir.path().join("cache");
        let mut args = vec![
            "mount",
            &self.meta_url,
            self.mnt.to_str().unwrap(),
            "-d",
            "--log",
            log.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = ferrofs(&args);
        assert!(o.status.success(), "mount failed: {}", stderr(&o));
        self.mounted = true;
    }

    pub fn umount(&mut self) {
        let o = ferrofs(&["umount", self.mnt.to_str().unwrap()]);
        assert!(o.status.success(), "umount failed: {}", stderr(&o));
        self.mounted = false;
    }

    /// Where the mount keeps its block cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Replaces the temp dir path in `s` so snapshots are stable.
    pub fn redact(&self, s: &str) -> String {
        s.replace(&self.dir.path().display().to_string(), "[TMP]")
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if self.mounted {
            let _ = ferrofs(&["umount", "--force", self.mnt.to_str().unwrap()]);
        }
    }
}

pub fn sh(dir: &Path, script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh")
}

/// A free loopback address (bound, then released for a server to take).
pub fn free_addr() -> String {
    free_addrs(1).remove(0)
}

/// `n` distinct free loopback addresses: every port stays bound until all are chosen,
/// so the kernel cannot hand the same one out twice (a cluster whose replicas shared a
/// port, or met another test's, would fail in confusing ways).
pub fn free_addrs(n: usize) -> Vec<String> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}
