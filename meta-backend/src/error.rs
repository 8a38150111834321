//! Errors of opening and running a metadata engine, worded to say what to do next.

use ferrofs_core::Errno;
use std::path::PathBuf;

/// Why a metadata engine could not be reached or used.
#[derive(thiserror::Error, Debug)]
pub enum MetaError {
    /// The META-URL could not be understood.
    #[error("bad META-URL '{url}': {reason}. Supported: sled:///path/to/dir (an embedded database directory), raft://host1:port,host2:port,host3:port (ferrofs meta-server replicas)")]
    BadUrl { url: String, reason: String },

    /// There is no metadata at the given place.
    #[error("no ferrofs metadata at {}: run `ferrofs format` first, or check the META-URL", path.display())]
    NotFound { path: PathBuf },

    /// Another process holds the engine open.
    #[error("the metadata at {} is in use by another process (is the volume mounted?): unmount it or stop that process, then retry", path.display())]
    Busy { path: PathBuf },

    /// The engine failed to open.
    #[error("cannot open the metadata at {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// No meta server answered as leader.
    #[error("cannot reach the meta servers at {servers}: start them with `ferrofs meta-server` (a majority must be up), or check the META-URL")]
    Unreachable { servers: String },

    /// The meta servers refused the secret.
    #[error("the meta servers at {servers} refused this client's secret: give the volume's secret as raft://:SECRET@host:port,... or in FERROFS_META_SECRET")]
    Denied { servers: String },

    /// A metadata operation failed.
    #[error("metadata operation failed: {0}")]
    Op(#[from] Errno),
}
