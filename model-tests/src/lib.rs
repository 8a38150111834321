//! # ferrofs-model-tests
//!
//! Property tests of ferrofs' POSIX semantics: random sequences of file-system
//! operations, run against a reference model and against the real thing, with every
//! result compared.
//!
//! ## What it proves
//!
//! - `tests/model_vs_linux.rs`: the reference model ([`model`]) agrees with Linux on a
//!   local directory — outcomes (values and errno) of every operation and the final
//!   namespace. This is what makes the model an oracle.
//! - `tests/model_vs_core.rs`: the ferrofs client library and core (`ferrofs::vfs::Vfs`
//!   over `ferrofs_core::meta::Meta`, on the in-memory KV and object store, 64 KiB
//!   blocks) agree with the model; after every handle is closed and gc has run, the
//!   object store holds exactly the objects the metadata refers to. Also: a directory of
//!   2500 entries lists completely and exactly once through pages of any size, also
//!   while entries are removed between pages.
//! - `tests/fuse_differential.rs`: a real FUSE mount of the `ferrofs` binary agrees with
//!   Linux on a local directory (Linux is the oracle, so this also covers what the
//!   model leaves out); the model runs alongside and its disagreements are reported.
//! - [`cases`]: every disagreement found so far, as a short fixed sequence; the model
//!   agrees with Linux on each, and the core and FUSE tests replay theirs.
//!
//! ## What is compared, and what is not
//!
//! Compared: the result of every operation — `Ok` with its value (bytes written, bytes
//! read, `stat` fields, sorted directory names, symlink targets) or the exact errno —
//! and at the end a [`target::Tree`] of the whole namespace: every path with its kind,
//! permission bits, owner, group, link count, size, content hash or symlink target, and
//! which paths are hard links of each other. Operations run as root and as two
//! unprivileged users (uid 1000 and 1001, both in group 1000), so permission checks,
//! sticky directories and ownership rules are exercised.
//!
//! Deliberately not compared (each is explained where it is excluded): times, inode
//! numbers, `st_blocks`, the size of directories, `.` and `..` in listings; never
//! generated: set-id bits, xattrs, ACLs, `..` in paths, `O_APPEND`, special files.
//! Kernel policy (`fs.protected_hardlinks`, `fs.protected_symlinks`,
//! `fs.protected_regular`) is read from `/proc/sys/fs` where Linux is the oracle, and
//! off against the library, which has no kernel in front of it.
//!
//! ## The pieces
//!
//! - [`ops`]: the [`ops::Op`]erations and the proptest strategies. Paths are drawn from
//!   a tiny namespace (names `a b c f g h s t`, at most three deep) so that they
//!   collide, and partly chosen among paths that exist ([`ops::PathGen`]), resolved
//!   against a shadow model as the sequence runs, as mountpoint-s3's reference tests do.
//! - [`model`]: the reference model; [`walk`]: Linux path resolution, shared by the
//!   model and the library target.
//! - [`target`]: the [`target::Target`] trait, outcomes, trees and the comparison
//!   harness; [`vfs`]: the library target; [`posix`]: the system-call target.
//!
//! ## Running
//!
//! ```text
//! cargo test -p ferrofs-model-tests                     # all; the Linux and FUSE tests need root
//! cargo test -p ferrofs-model-tests --test model_vs_core
//! PROPTEST_CASES=5000 cargo test -p ferrofs-model-tests --test model_vs_core
//! cargo build -p ferrofs && cargo test -p ferrofs-model-tests --test fuse_differential
//! cargo run -p ferrofs-model-tests --example op_stats   # what the generator produces
//! ```
//!
//! A failure prints the concrete operation sequence (shrunk) and both outcomes; proptest
//! saves its seed in `tests/<test>.regressions`, and replays it first on the next run.

pub mod cases;
pub mod model;
pub mod ops;
pub mod posix;
pub mod target;
pub mod vfs;
pub mod walk;

use std::path::Path;

/// The model configuration matching this machine's kernel policy, read from
/// `/proc/sys/fs`, for comparisons with Linux.
pub fn linux_model_config() -> model::ModelConfig {
    let read = |name: &str| -> u8 {
        std::fs::read_to_string(format!("/proc/sys/fs/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    model::ModelConfig {
        protected_hardlinks: read("protected_hardlinks") != 0,
        protected_symlinks: read("protected_symlinks") != 0,
        protected_regular: read("protected_regular"),
    }
}

/// Makes `dir` searchable (and listable) by everyone, so unprivileged callers can reach
/// a test root below it.
pub fn make_searchable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
}
