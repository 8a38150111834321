//! The same generated sequences against a real FUSE mount of ferrofs and against a
//! local directory, with Linux itself as the oracle; the reference model runs alongside
//! and its disagreements with Linux are reported (they are model bugs, and do not fail
//! this test: `model_vs_linux` is the test for those).
//!
//! Needs root and /dev/fuse (the CI container has both) and a built binary:
//! `cargo build -p ferrofs && cargo test -p ferrofs-model-tests --test fuse_differential`.
//! `FERROFS_BIN` overrides the binary's path, `FERROFS_MOUNT_ARGS` adds mount options,
//! `PROPTEST_CASES` sets the number of sequences (24). The volume uses 64 KiB blocks.
//!
//! Each case runs in a fresh subdirectory of one mount (and of one local directory),
//! so cases are cheap and the mount lives through all of them.

use ferrofs_model_tests::cases::{self, Layer};
use ferrofs_model_tests::model::ModelTarget;
use ferrofs_model_tests::ops::ops;
use ferrofs_model_tests::posix::{require_root, PosixTarget};
use ferrofs_model_tests::target::run_differential;
use ferrofs_model_tests::{linux_model_config, make_searchable};
use ferrofs_s3_backend::testing::S3Server;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `ferrofs` binary: `$FERROFS_BIN`, else `target/<profile>/ferrofs` next to the
/// `deps/` directory holding this test executable.
fn ferrofs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERROFS_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "FERROFS_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("ferrofs"))
        .expect("test executable lives in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "the ferrofs binary is missing at {}: run `cargo build -p ferrofs` first (or set FERROFS_BIN)",
        bin.display()
    );
    bin
}

fn run(bin: &Path, args: &[&str]) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "`ferrofs {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A formatted and mounted volume in a temp dir; unmounted on drop.
struct Mounted {
    bin: PathBuf,
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

/// Where the mounted volume keeps its objects.
enum Storage<'a> {
    /// A local directory.
    File,
    /// A bucket on a real S3 server on loopback.
    S3(&'a S3Server),
}

impl Mounted {
    fn new(test: &str, storage: Storage<'_>) -> Mounted {
        require_root("fuse_differential");
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: this test needs FUSE (load the fuse module, or run in the CI container)"
        );
        let bin = ferrofs_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferrofs-{test}-"))
            .tempdir()
            .expect("temp dir");
        make_searchable(dir.path());
        let d = dir.path().to_str().expect("utf-8 temp path").to_string();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let meta = format!("sled://{d}/meta");
        let mut format: Vec<String> = ["format", &meta, "model-tests", "--block-size", "64K"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let storage_args: Vec<String> = match storage {
            Storage::File => vec![
                "--storage".into(),
                "file".into(),
                "--bucket".into(),
                format!("{d}/data"),
            ],
            Storage::S3(server) => vec![
                "--storage".into(),
                "s3".into(),
                "--access-key".into(),
                server.access_key().into(),
                "--secret-key".into(),
                server.secret_key().into(),
                "--bucket".into(),
                server.create_bucket(&format!("{test}-{}", std::process::id())),
            ],
        };
        format.extend(storage_args);
        let format: Vec<&str> = format.iter().map(String::as_str).collect();
        run(&bin, &format);
        let log = format!("{d}/ferrofs.log");
        let cache = format!("{d}/cache");
        let mut args = vec![
            "mount",
            &meta,
            mnt.to_str().unwrap(),
            "-d",
            "--log",
            &log,
            "--cache-dir",
            &cache,
        ];
        // Extra mount options, e.g. `--entry-cache 0 --dir-entry-cache 0` to look behind
        // the kernel's caches.
        let extra = std::env::var("FERROFS_MOUNT_ARGS").unwrap_or_default();
        args.extend(extra.split_whitespace());
        run(&bin, &args);
        // Make sure the comparison runs against ferrofs, not the directory below it.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(mnt.to_str().unwrap()).unwrap();
        assert_eq!(
            unsafe { libc::statfs(c.as_ptr(), &mut sfs) },
            0,
            "statfs {}",
            mnt.display()
        );
        const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
        assert_eq!(
            sfs.f_type as i64,
            FUSE_SUPER_MAGIC,
            "{} is not a FUSE mount after `ferrofs mount -d`",
            mnt.display()
        );
        Mounted { bin, dir, mnt }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ferrofs.log")).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let out = Command::new(&self.bin)
            .arg("umount")
            .arg(&self.mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            other => {
                eprintln!(
                    "ferrofs umount {} failed ({other:?}); detaching it",
                    self.mnt.display()
                );
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(&self.mnt)
                    .status();
            }
        }
    }
}

/// Lazily unmounts `mnt` if the test is still running after `limit`, so that a hung
/// FUSE server turns into failing calls instead of a hung test.
fn watchdog(mnt: PathBuf, limit: Duration, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "fuse_differential: still running after {limit:?}; detaching {} (hung server?)",
            mnt.display()
        );
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&mnt)
            .status();
    });
}

#[test]
fn ferrofs_mount_agrees_with_linux() {
    differential(&Mounted::new("differential", Storage::File));
}

/// The same comparison with the volume's data on a real S3 server (s3s-fs).
#[test]
fn ferrofs_mount_over_s3_agrees_with_linux() {
    let server = S3Server::start();
    differential(&Mounted::new("differential-s3", Storage::S3(&server)));
}

fn differential(m: &Mounted) {
    let done = Arc::new(AtomicBool::new(false));
    watchdog(m.mnt.clone(), Duration::from_secs(900), done.clone());
    let local = tempfile::Builder::new()
        .prefix("ferrofs-differential-local-")
        .tempdir()
        .unwrap();
    make_searchable(local.path());
    let config = linux_model_config();
    let case = AtomicUsize::new(0);
    let model_reports: Mutex<Vec<String>> = Mutex::new(Vec::new());

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        source_file: Some(file!()),
        ..ProptestConfig::default()
    });
    let result = runner.run(&ops(40), |seq| {
        let n = case.fetch_add(1, Ordering::Relaxed);
        let (fuse_root, local_root) = (
            m.mnt.join(format!("case-{n}")),
            local.path().join(format!("case-{n}")),
        );
        std::fs::create_dir(&fuse_root)
            .map_err(|e| TestCaseError::fail(format!("mkdir in the mount: {e}")))?;
        std::fs::create_dir(&local_root).unwrap();
        let mut linux = PosixTarget::new("linux", &local_root);
        let mut fuse = PosixTarget::new("ferrofs-fuse", &fuse_root);
        let mut model = ModelTarget::new(config);
        let d = run_differential(&seq, &mut linux, &mut fuse, &mut model);
        linux.close_all();
        fuse.close_all();
        if let Some(side) = d.side {
            model_reports.lock().unwrap().push(side.report);
        }
        d.subject.map_err(|m| TestCaseError::fail(m.report))
    });
    done.store(true, Ordering::Relaxed);

    let reports = model_reports.into_inner().unwrap();
    if !reports.is_empty() {
        eprintln!(
            "the model disagreed with Linux in {} case(s); the first:\n{}",
            reports.len(),
            reports[0]
        );
    }
    if let Err(e) = result {
        let e = match e {
            proptest::test_runner::TestError::Fail(reason, _) => reason.to_string(),
            other => other.to_string(),
        };
        let log = m.log();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "ferrofs through FUSE disagrees with Linux: {e}\nlast lines of the mount's log:\n{}",
            tail.join("\n")
        );
    }
}

/// Every reported case about the FUSE mount, replayed against Linux (see `cases.rs`;
/// `model_vs_linux` checks the model agrees with Linux on them).
#[test]
fn reported_fuse_cases() {
    let m = Mounted::new("cases", Storage::File);
    let local = tempfile::Builder::new()
        .prefix("ferrofs-cases-local-")
        .tempdir()
        .unwrap();
    make_searchable(local.path());
    let mut failures = Vec::new();
    for case in cases::all().into_iter().filter(|c| c.layer == Layer::Fuse) {
        let (fuse_root, local_root) = (m.mnt.join(case.name), local.path().join(case.name));
        std::fs::create_dir(&fuse_root).unwrap();
        std::fs::create_dir(&local_root).unwrap();
        let mut linux = PosixTarget::new("linux", &local_root);
        let mut fuse = PosixTarget::new("ferrofs-fuse", &fuse_root);
        if let Err(e) = cases::replay(&case.ops, &mut linux, &mut fuse) {
            failures.push(format!("{}: {e}", case.name));
        }
        linux.close_all();
        fuse.close_all();
    }
    assert!(
        failures.is_empty(),
        "ferrofs through FUSE disagrees with Linux:\n  {}",
        failures.join("\n  ")
    );
}
