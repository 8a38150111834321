//! # ferrofs-s3-backend
//!
//! Object stores for ferrofs. Its one job: keep immutable objects (the block objects of
//! slices) under string keys behind one synchronous [`ObjectStore`] trait.
//!
//! Stores:
//! - [`S3Store`] (`--storage s3`): any S3-compatible endpoint or AWS S3 through
//!   `aws-sdk-s3`, with per-request timeouts, bounded concurrency, retries with
//!   exponential backoff and jitter, and errors that say what to fix (see [`s3`]);
//! - [`FileStore`] (`--storage file`, the embedded default): a crash-safe local directory;
//! - [`MemStore`] (`--storage memory`): memory, for tests and the simulator.
//!
//! Wrappers, for tests and the simulator: [`FaultyStore`] injects latency, transient
//! errors, lost responses, corruption and truncation as a [`FaultPlan`] decides;
//! [`RetryingStore`] retries transient failures of any store with the same loop
//! [`S3Store`] uses ([`RetryPolicy`]).
//!
//! [`open_store`]/[`open_store_with`] open the store a volume is configured with;
//! [`probe`] checks a store end to end (put, get, ranged get, delete).
//!
//! Cargo features:
//! - `tls`: `https://` endpoints and AWS S3 (rustls with ring; about 80 s more of a
//!   clean build). Without it only plain `http://` endpoints work, and an `https://`
//!   one is a clear error.
//! - `testing`: [`testing::S3Server`] runs a real S3 server (`s3s-fs`, installed with
//!   `cargo install s3s-fs --version 0.14.1 --features binary --locked`) on loopback
//!   for tests of this crate and the crates above it.
//!
//! Tests: `cargo test -p ferrofs-s3-backend` runs the shared store behaviour
//! (`tests/common`) against the file and memory stores (`tests/stores.rs`) and S3 on
//! s3s-fs (`tests/s3.rs`, with errors, retries and limits against scripted HTTP
//! servers), the fault and retry wrappers (`tests/faults.rs`), and the environment's
//! influence on S3 (`tests/s3_env.rs`). The S3 tests fail, saying how to install
//! s3s-fs, when it is missing.

pub mod error;
pub mod faulty;
pub mod file;
pub mod key;
pub mod mem;
pub mod retry;
pub mod s3;
#[cfg(feature = "testing")]
pub mod testing;

/// Object bodies: shared, cheap to clone, so a retried put never copies its bytes.
pub use bytes::Bytes;
pub use error::{StoreError, TransientKind};
pub use faulty::{Fault, FaultPlan, FaultRates, FaultStats, FaultyStore, Op, RandomFaults};
pub use file::FileStore;
pub use key::validate_key;
pub use mem::MemStore;
pub use retry::{RetryPolicy, RetryStats, RetryingStore, Sleeper, SplitMix64, ThreadSleeper};
pub use s3::{S3Config, S3Store};

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// An object as listed: its key and size in bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// When the object was last written, in seconds since the Unix epoch, if the store
    /// says (`gc` spares young objects: they may be uploads whose commit is under way).
    pub modified: Option<u64>,
}

/// A store of immutable objects under `/`-separated keys (see [`validate_key`]).
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Where the objects live, for messages (e.g. `file:///data/bucket`).
    fn describe(&self) -> String;
    /// Stores `data` under `key`, replacing any object there. When it returns, the
    /// object is durable and readers see all of it or (before) none of it. `data` is
    /// owned (shared) so that a store can send it without copying it.
    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    /// Bytes `[offset, offset+len)` of the object (`len` `None`: to its end). A range
    /// past the end returns the bytes that exist (possibly none).
    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError>;
    /// The object's size, or `None` if it does not exist.
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    /// Removes the object; a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Up to `limit` objects whose keys start with `prefix` and sort after
    /// `start_after` ("" for the beginning), in ascending key order.
    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError>;
}

/// A shared store is a store, so wrappers take `Arc<dyn ObjectStore>` too
/// (e.g. `FaultyStore::new(open_store(..)?, plan)`).
impl<T: ObjectStore + ?Sized> ObjectStore for Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        (**self).put(key, data)
    }
    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        (**self).get(key, offset, len)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        (**self).head(key)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key)
    }
    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        (**self).list(prefix, start_after, limit)
    }
}

/// Options of [`open_store_with`] beyond the storage kind and bucket; they apply to
/// `s3` only (`None`: the default, or the environment). `Debug` hides the keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Signing region; default: the bucket URL's, else `AWS_REGION`, else us-east-1.
    pub region: Option<String>,
    /// Requests in flight at once (default [`s3::DEFAULT_MAX_CONCURRENCY`]).
    pub max_concurrency: Option<usize>,
    /// Time allowed for one request (default [`s3::DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: Option<Duration>,
    /// Retries after a transient failure (default [`s3::DEFAULT_MAX_RETRIES`]).
    pub max_retries: Option<u32>,
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("StoreOptions")
            .field("access_key", &set(&self.access_key))
            .field("secret_key", &set(&self.secret_key))
            .field("region", &self.region)
            .field("max_concurrency", &self.max_concurrency)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl StoreOptions {
    /// Whether any S3-only option is set.
    pub fn any_set(&self) -> bool {
        *self != StoreOptions::default()
    }

    /// `config` with these options applied.
    pub fn apply(&self, mut config: S3Config) -> S3Config {
        if self.access_key.is_some() || self.secret_key.is_some() {
            config.access_key = self.access_key.clone();
            config.secret_key = self.secret_key.clone();
        }
        if let Some(r) = &self.region {
            config.region = r.clone();
        }
        if let Some(n) = self.max_concurrency {
            config.max_concurrency = n;
        }
        if let Some(t) = self.request_timeout {
            config.request_timeout = t;
        }
        if let Some(n) = self.max_retries {
            config.max_retries = n;
        }
        config
    }
}

/// Opens the store a volume is configured with: `storage` is its kind (`s3`, `file` or
/// `memory`) and `bucket` where it lives:
/// - `s3`: a bucket URL (see [`S3Config::from_bucket_url`]), e.g.
///   `http://127.0.0.1:9000/mybucket`; the bucket is checked with one listing request
///   (unreachable endpoint, rejected keys and a missing bucket are clear errors). Buckets
///   are never created, even with `create`.
/// - `file`: a directory path, optionally as `file:///path`; with `create`, a missing
///   directory is made.
/// - `memory`: ignored.
pub fn open_store_with(
    storage: &str,
    bucket: &str,
    options: &StoreOptions,
    create: bool,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    match storage {
        "s3" => {
            let config = options.apply(S3Config::from_bucket_url(bucket)?);
            Ok(Arc::new(S3Store::open(config)?))
        }
        "file" => {
            let path = bucket.strip_prefix("file://").unwrap_or(bucket);
            if path.is_empty() {
                return Err(StoreError::Config(
                    "the file storage needs a bucket directory, e.g. /var/lib/ferrofs/bucket"
                        .to_string(),
                ));
            }
            Ok(Arc::new(FileStore::open(Path::new(path), create)?))
        }
        "memory" => Ok(Arc::new(MemStore::new())),
        other => Err(StoreError::Config(format!(
            "unknown storage '{other}': use s3, file or memory"
        ))),
    }
}

/// [`open_store_with`] with default options (S3 keys from the environment).
pub fn open_store(
    storage: &str,
    bucket: &str,
    create: bool,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    open_store_with(storage, bucket, &StoreOptions::default(), create)
}

/// Key under which [`probe`] writes its object.
pub const PROBE_PREFIX: &str = "ferrofs-probe";

/// Checks that `store` works end to end: puts a small object under
/// [`PROBE_PREFIX`], reads it back (whole and a range), and deletes it.
pub fn probe(store: &dyn ObjectStore) -> Result<(), StoreError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = format!("{PROBE_PREFIX}/{}-{nanos}", std::process::id());
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    store.put(&key, Bytes::from(data.clone()))?;
    let whole = store.get(&key, 0, None);
    let part = store.get(&key, 100, Some(50));
    let deleted = store.delete(&key);
    let mismatch = |what: &str| {
        StoreError::Config(format!(
            "the object store {} returned wrong data for {what} of the probe object {key}",
            store.describe()
        ))
    };
    if whole? != data {
        return Err(mismatch("a read"));
    }
    if part?.as_slice() != &data[100..150] {
        return Err(mismatch("a ranged read"));
    }
    deleted
}
