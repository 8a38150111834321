//! A real S3 server for tests: [`S3Server`] runs `s3s-fs` on a free loopback port
//! with a temporary root directory and random keys, and stops it when dropped.
//!
//! `s3s-fs` is found at `$FERROFS_S3S_FS`, else on `PATH`, else in `~/.cargo/bin`.
//! Install it with [`INSTALL_HINT`]; a test that needs it and cannot find it fails with
//! that hint (it is never skipped silently).
//!
//! s3s-fs keeps each bucket as a directory under its root ([`S3Server::create_bucket`]
//! makes one) and checks SigV4 signatures. Known differences from AWS S3: a HEAD or GET
//! of a "key" that is a directory there (a prefix of other keys, like `chunks/0`)
//! answers HTTP 500 instead of 404, keys ending in `/` answer 500, a PUT into a missing
//! bucket creates its directory, a GET in a missing bucket answers NoSuchKey (HEAD,
//! DELETE and LIST say NoSuchBucket), and an object's data and its stored checksum are
//! replaced by two separate renames, so racing overwrites of one key with different
//! bytes can leave a checksum that no longer matches (whole-object GETs of it then fail
//! the SDK's check). None of these matter for ferrofs, whose keys are never prefixes of
//! others and whose objects are never overwritten with other bytes.

use crate::s3::{S3Config, S3Store};
use crate::{StoreError, StoreOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install the server binary.
pub const INSTALL_HINT: &str = "cargo install s3s-fs --version 0.14.1 --features binary --locked";

/// The environment variable that names the `s3s-fs` binary.
pub const BINARY_ENV: &str = "FERROFS_S3S_FS";

/// A running `s3s-fs` on 127.0.0.1; killed on drop.
pub struct S3Server {
    child: Child,
    root: tempfile::TempDir,
    log: PathBuf,
    endpoint: String,
    access_key: String,
    secret_key: String,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "S3Server({}, root {})",
            self.endpoint,
            self.root.path().display()
        )
    }
}

/// Finds the `s3s-fs` binary (see the module doc).
pub fn find_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(BINARY_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{BINARY_ENV}={} is not a file: point it at the s3s-fs binary, or unset it and install s3s-fs with `{INSTALL_HINT}`",
                p.display()
            ))
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "the S3 test server s3s-fs was not found (looked at ${BINARY_ENV}, PATH and ~/.cargo/bin): install it with `{INSTALL_HINT}` (a few minutes), or set {BINARY_ENV} to its path"
            )
        })
}

/// Random hex from the kernel (no rand crate).
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl S3Server {
    /// Starts a server; panics with the install hint if `s3s-fs` is missing.
    pub fn start() -> S3Server {
        S3Server::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server on a free loopback port and waits until it answers.
    pub fn try_start() -> Result<S3Server, String> {
        let bin = find_binary()?;
        let root = tempfile::Builder::new()
            .prefix("ferrofs-s3s-")
            .tempdir()
            .map_err(|e| format!("cannot make the S3 server's root directory: {e}"))?;
        let data = root.path().join("data");
        std::fs::create_dir(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        let log = root.path().join("server.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let access_key = format!("AK{}", random_hex(8).to_uppercase());
        let secret_key = random_hex(20);
        // Port 0: the server picks a free port and logs it, so there is no race for it.
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--access-key")
            .arg(&access_key)
            .arg("--secret-key")
            .arg(&secret_key)
            .arg(&data)
            .env("RUST_LOG", "warn,s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoint = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(i) = text.find("server is running at http://") {
                let url: String = text[i + "server is running at ".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !c.is_control())
                    .collect();
                break url;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "s3s-fs ({}) exited with {status} before serving; its log:\n{text}",
                    bin.display()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "s3s-fs did not start within 30 s; its log:\n{text}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(S3Server {
            child,
            root,
            log,
            endpoint,
            access_key,
            secret_key,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The directory that holds the buckets.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates bucket `name` (a directory under the data dir); returns its URL.
    pub fn create_bucket(&self, name: &str) -> String {
        let dir = self.data_dir().join(name);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create bucket directory {}: {e}", dir.display()));
        self.bucket_url(name)
    }

    /// `http://127.0.0.1:PORT/NAME` (whether or not the bucket exists).
    pub fn bucket_url(&self, name: &str) -> String {
        format!("{}/{name}", self.endpoint)
    }

    /// Options with this server's keys, for [`crate::open_store_with`].
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            access_key: Some(self.access_key.clone()),
            secret_key: Some(self.secret_key.clone()),
            ..StoreOptions::default()
        }
    }

    /// A configuration for `bucket_url` (a bucket of this server, optionally with a
    /// prefix) with this server's keys and short timeouts fit for tests.
    pub fn config(&self, bucket_url: &str) -> S3Config {
        let mut c = S3Config::from_bucket_url(bucket_url).expect("a valid bucket URL");
        c.access_key = Some(self.access_key.clone());
        c.secret_key = Some(self.secret_key.clone());
        c.request_timeout = Duration::from_secs(10);
        c
    }

    /// Creates bucket `name` and opens a store on it.
    pub fn store(&self, name: &str) -> Result<S3Store, StoreError> {
        let url = self.create_bucket(name);
        S3Store::open(self.config(&url))
    }

    /// Whether the server process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Where the data lives on disk.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
