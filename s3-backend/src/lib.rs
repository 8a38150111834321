//! # ferrofs-s3-backend
//!
//! Object stores for ferrofs. Its one job: keep immutable objects (the block objects of
//! slices) under string keys behind one synchronous [`ObjectStore`] trait. Stores: a
//! crash-safe local directory ([`FileStore`], the embedded default) and memory
//! ([`MemStore`], for tests and the simulator); S3 comes later behind the same trait.

pub mod error;
pub mod file;
pub mod key;
pub mod mem;

pub use error::StoreError;
pub use file::FileStore;
pub use key::validate_key;
pub use mem::MemStore;

use std::path::Path;
use std::sync::Arc;

/// An object as listed: its key and size in bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// A store of immutable objects under `/`-separated keys (see [`validate_key`]).
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Where the objects live, for messages (e.g. `file:///data/bucket`).
    fn describe(&self) -> String;
    /// Stores `data` under `key`, replacing any object there. When it returns, the
    /// object is durable and readers see all of it or (before) none of it.
    fn put(&self, key: &str, data: &[u8]) -> Result<(), StoreError>;
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

/// Opens the store a volume is configured with: `storage` is its kind (`file` or
/// `memory`) and `bucket` where it lives (for `file`, a directory path, optionally as
/// `file:///path`). With `create`, a missing bucket directory is made.
pub fn open_store(
    storage: &str,
    bucket: &str,
    create: bool,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    match storage {
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
            "unknown storage '{other}': use file (s3 comes later) or memory"
        ))),
    }
}
