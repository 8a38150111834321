//! Errors of object stores, worded to say what went wrong and where.

use std::fmt;
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

    /// A failure that may pass if the request is repeated: a server error (5xx),
    /// throttling, a timeout, or a connection that could not be made or broke. Stores
    /// with retries ([`crate::RetryingStore`], [`crate::S3Store`]) retry these; `attempts`
    /// says how many requests were made before giving up.
    #[error("{} failed{}: {detail}", subject(op, key), attempts_note(*.attempts))]
    Unavailable {
        op: &'static str,
        key: String,
        kind: TransientKind,
        detail: String,
        attempts: u32,
    },

    /// The store rejected the credentials, or they lack a permission. Never retried.
    #[error("{0}")]
    Auth(String),

    /// The store refused the request for another reason (an HTTP 4xx other than
    /// 403/404/416). Never retried.
    #[error("{} was refused: {detail}", subject(op, key))]
    Refused {
        op: &'static str,
        key: String,
        detail: String,
    },
}

/// "put of object 'k'", "list of objects under 'p'", "list of the bucket".
fn subject(op: &str, key: &str) -> String {
    match op {
        "list" if key.is_empty() => "listing the bucket".to_string(),
        "list" => format!("listing objects under '{key}'"),
        _ => format!("{op} of object '{key}'"),
    }
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

/// What kind of transient failure a [`StoreError::Unavailable`] is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum TransientKind {
    /// The server answered with a 5xx (InternalError, ServiceUnavailable, ...).
    ServerError,
    /// The server asked to slow down (429, SlowDown, Throttling, ...).
    Throttle,
    /// No complete answer within the per-request timeout.
    Timeout,
    /// No connection could be made (refused, unreachable, DNS failure).
    Connect,
    /// The connection broke, or the response was cut short or unreadable.
    Connection,
}

impl fmt::Display for TransientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransientKind::ServerError => "server error",
            TransientKind::Throttle => "throttled",
            TransientKind::Timeout => "timed out",
            TransientKind::Connect => "cannot connect",
            TransientKind::Connection => "connection failed",
        })
    }
}

impl StoreError {
    pub(crate) fn io(op: &'static str, key: &str, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            key: key.to_string(),
            source,
        }
    }

    /// A transient failure of one request (see [`StoreError::Unavailable`]).
    pub fn unavailable(
        op: &'static str,
        key: &str,
        kind: TransientKind,
        detail: impl Into<String>,
    ) -> StoreError {
        StoreError::Unavailable {
            op,
            key: key.to_string(),
            kind,
            detail: detail.into(),
            attempts: 1,
        }
    }

    /// Whether repeating the request may succeed: true for
    /// [`StoreError::Unavailable`] only.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// The kind of a transient failure, `None` for others.
    pub fn transient_kind(&self) -> Option<TransientKind> {
        match self {
            StoreError::Unavailable { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Records that the operation was given up after `n` requests.
    pub(crate) fn with_attempts(mut self, n: u32) -> StoreError {
        if let StoreError::Unavailable { attempts, .. } = &mut self {
            *attempts = n;
        }
        self
    }
}
