//! Invariant checkers, one file per invariant (as TigerBeetle's `*_checker.zig`):
//! - [`meta_consistency`]: the metadata keyspace keeps the invariants of ARCHITECTURE.md;
//! - [`objects`]: the object store and the metadata agree;
//! - [`data`]: no data loss and no garbage, for every read a client makes;
//! - [`cache`]: a client's block cache accounts for the files in its dirs;
//! - [`linearizable`]: a history of operations on one object is linearizable (used by
//!   the Raft simulation, `raft_cluster`).
//!
//! The first two look at the whole simulated world at once; the world runs them every
//! few hundred yield points (any scheduling point is between transactions, since a
//! transaction is one yield point), after a system crash, and strictly at the end of
//! every run. The data checker runs inside the clients, on every read they make; the
//! cache checker at every clean unmount of a client.

pub mod cache;
pub mod data;
pub mod linearizable;
pub mod meta_consistency;
pub mod objects;
