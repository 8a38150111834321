//! # ferrofs (the client)
//!
//! The `ferrofs` command line and the FUSE mount. [`vfs`] is the client's I/O glue
//! (handles, write buffers, object reads and uploads, gc) and knows nothing of FUSE;
//! [`limit`] keeps its object-store and peer traffic within `--upload-limit` and
//! `--download-limit`; [`group`] makes it a member of a cache group (peers, their server, membership);
//! [`fs`] adapts it to `fuser`; [`cli`] holds the subcommands.

pub mod cli;
pub mod fs;
pub mod group;
pub mod limit;
pub mod metrics;
pub mod units;
pub mod vfs;
