//! # sim — deterministic simulation of ferrofs
//!
//! The simulator runs the **real client code** — `ferrofs::vfs::Vfs` over
//! `ferrofs_core::meta::Meta`, unchanged — against a simulated metadata engine
//! ([`kv::SimKv`], behind `ferrofs_core::kv::Kv`) and a simulated object store
//! ([`store::SimStore`], behind `ferrofs_s3_backend::ObjectStore`), under seeded faults,
//! and checks invariants during and after every run. One `u64` seed determines the
//! whole run; the same seed gives the same trace hash, byte for byte.
//!
//! ## Which layer runs under which simulator, and why
//!
//! *(For ARCHITECTURE.md.)*
//!
//! - **The client (`fuse::vfs`) and the core (`core::meta`, `core::chunk`) run under this
//!   crate's own baton scheduler.** Their shells are synchronous — a sync `Kv`, a sync
//!   `ObjectStore`, a `Vfs` with std locks — so an async simulator cannot drive them.
//!   Instead every simulated client is an OS thread, and only one thread runs at a
//!   time: each call into `SimKv` or `SimStore` is a yield point where the caller
//!   records the event, the scheduler (seeded PRNG) decides the call's latency and
//!   faults, advances virtual time and hands the baton to the client that is due next.
//!   Each client has its own `Meta` and `Vfs` (a separate process); all share one
//!   engine and one store. The client's clock is virtual time. A client crash unwinds
//!   its thread and drops its `Vfs`/`Meta`; a system crash also drops the engine's
//!   unsynced tail. No second build is needed: the simulator is an ordinary crate of
//!   the workspace.
//! - **Cache-group peers run under the baton scheduler too** ([`peers`]): the client's
//!   `Group` calls a sync `Transport`, so the simulator's transport turns each call
//!   into a message to the owner's inbox and a wait in virtual time; the owner answers
//!   from its own thread between its steps (the real TCP transport and server are not
//!   simulated; the frames' codec is).
//! - **turmoil is reserved for the networked pieces** — the replicated metadata
//!   service when it arrives, and the peers' real TCP transport. They are async, on
//!   tokio, talking over sockets: turmoil runs real tokio inside simulated hosts with
//!   partitions, loss, crash/bounce, and (with `unstable-fs`) a crash-consistency disk.
//!   Their clients will still be driven through the same sync traits from here.
//! - **The replicated engine's Raft layer needs neither**: raft-rs's `RawNode` is sans-IO,
//!   so [`raft_cluster`] holds every message itself and decides its fate, with real
//!   replicas (`ferrofs_meta::raft::Replica`) and crashes that drop unsynced log tails.
//! - **madsim is not used.** It needs the whole workspace built a second time with
//!   `--cfg madsim` (and sled, the AWS SDK and anything on real tokio do not run inside
//!   it); while the shells are synchronous that second build would simulate nothing the
//!   baton scheduler does not already cover.
//!
//! ## Pieces
//!
//! - [`rng`]: the seeded PRNG; [`trace`]: events and the trace hash;
//! - [`scheduler`] and [`world`]: virtual time, the baton, yield points, crashes;
//! - [`faults`]: fault classes, per-run rates, per-call decisions, counters;
//! - [`kv`] and [`store`]: the simulated engine and store; [`cache_disk`]: the disks of
//!   the clients' local block caches; [`plant`]: planted bugs;
//! - [`workload`] and [`namespace`]: what the clients do; [`pattern`] and [`oracle`]:
//!   attributable data and what files may contain;
//! - [`checkers`]: metadata consistency, objects vs metadata, no loss / no garbage, block
//!   cache accounting;
//! - [`client`]: a client thread's incarnations; [`client_cache`]: its block cache; [`finale`]: heal, clean up, check;
//!   [`run`]: one seed, start to end;
//! - [`peers`]: cache groups (`RunConfig::group`, `--cache-group`) — the clients as
//!   members joining, leaving, crashing and partitioned, serving each other blocks over
//!   a simulated network whose replies go through the real codec and may arrive
//!   corrupt, truncated or late; every peer call is bounded by its timeout.

pub mod cache_disk;
pub mod checkers;
pub mod client;
pub mod client_cache;
pub mod faults;
pub mod finale;
pub mod kv;
pub mod namespace;
pub mod oracle;
pub mod pattern;
pub mod peers;
pub mod plant;
pub mod raft_cluster;
pub mod rng;
pub mod run;
pub mod scheduler;
pub mod store;
pub mod trace;
pub mod workload;
pub mod world;

pub use faults::FaultSet;
pub use plant::Plant;
pub use run::{run, RunConfig, RunReport};
