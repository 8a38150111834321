//! # ferrofs-core
//!
//! The sans-IO heart of ferrofs. Everything here decides; nothing here does I/O, reads
//! a clock, draws randomness or spawns threads. Time (`now`), ids and the results of
//! I/O are arguments; what to do next (objects to write, fetch or delete) is returned.
//!
//! - [`kv`]: the transactional key-value interface metadata engines implement, and an
//!   in-memory engine.
//! - [`meta`]: POSIX metadata operations over that interface (namespace, attributes,
//!   permissions, xattrs, readdir, open files, slice commits, truncation, gc queue).
//! - [`chunk`]: the data layout: files → 64 MiB chunks → slices → block objects; read
//!   plans that overlay slices newest-wins, write buffers, compaction.
//! - [`cache`]: caching decisions: eviction policies, the block cache index,
//!   consistent hashing of blocks to cache dirs and peers, readahead, metadata TTLs.
//! - [`format`]: the volume's settings, written once by `format`.
//! - [`ratelimit`]: the token bucket of per-client upload and download limits.
//! - [`replica`]: the replicated engine's decisions: the commands replicas apply, how
//!   they apply them (deterministically, exactly once), and the client's optimistic
//!   transactions over a remote engine.

pub mod errno;
pub mod kv;
pub mod types;

pub use errno::{Errno, Result};
pub use types::*;
pub mod cache;
pub mod chunk;
pub mod format;
pub mod meta;
pub mod ratelimit;
pub mod replica;
