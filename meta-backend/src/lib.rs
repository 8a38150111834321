//! # ferrofs-meta
//!
//! Metadata engines for ferrofs. Its one job: turn a META-URL into an engine that
//! implements the core's transactional KV interface ([`ferrofs_core::kv::Kv`]). Today
//! that is the embedded sled engine ([`SledKv`]); the replicated engine is being built
//! ([`raft`]: a replica's Raft layer).

pub mod error;
pub mod raft;
pub mod sled_kv;
pub mod url;

pub use error::MetaError;
pub use sled_kv::SledKv;
pub use url::{open, MetaUrl};
