//! # ferrofs-meta
//!
//! Metadata engines for ferrofs. Its one job: turn a META-URL into an engine that
//! implements the core's transactional KV interface ([`ferrofs_core::kv::Kv`]): the
//! embedded sled engine ([`SledKv`], `sled://DIR`) or a client of a replicated cluster
//! ([`raft`]: Raft replicas over sled, `raft://HOST:PORT,...`).

pub mod error;
pub mod raft;
pub mod sled_kv;
pub mod url;

pub use error::MetaError;
pub use sled_kv::SledKv;
pub use url::{open, MetaUrl};
