//! # ferrofs (the client)
//!
//! The `ferrofs` command line and the FUSE mount. [`vfs`] is the client's I/O glue
//! (handles, write buffers, object reads and uploads, gc) and knows nothing of FUSE;
//! [`fs`] adapts it to `fuser`; [`cli`] holds the subcommands.

pub mod cli;
pub mod fs;
pub mod units;
pub mod vfs;
