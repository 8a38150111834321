//! Errors of object stores, worded to say what went wrong and where.

use std::io;

/// Why an object-store operation failed.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object '{0}' not found")]
    NotFound(String),

    /// The store's I/O failed.
    #[error("{op} of object '{key}' failed: {source}")]
    Io {
        op: &'static str,
        key: String,
        #[source]
        source: io::Error,
    },

    /// The key cannot name an object.
    #[error("invalid object key {0:?}: keys are '/'-separated relative paths without empty, '.' or '..' components, NUL bytes, a leading '/' or a '.tmp.' name")]
    InvalidKey(String),

    /// The store is configured wrongly (unknown kind, missing bucket, ...).
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, key: &str, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            key: key.to_string(),
            source,
        }
    }
}
