//! The Raft layer of the replicated engine: tikv's raft-rs `RawNode` (sans-IO: ticks,
//! messages in, a `Ready` of messages out, entries to persist and entries to apply),
//! driven by [`Replica`] over a [`DurableLog`] and a replica's metadata engine, where
//! committed commands are applied by `ferrofs_core::replica::apply_entry`.
//!
//! Everything here runs on the caller's thread with no clock: the shell (the meta
//! server, or the simulator) decides when to tick, delivers messages and sends what
//! comes out. See ARCHITECTURE.md, "Replicated metadata engine".

pub mod client;
pub mod mem_log;
mod net;
pub mod replica;
pub mod server;
pub mod sled_log;
pub mod tls;
pub mod wire;

pub use client::RaftClient;
pub use mem_log::MemLog;
pub use net::connect;
pub use raft::eraftpb::Message;
pub use replica::{Applied, Change, DurableLog, Output, Replica, ReplicaConfig, ReplicaError};
pub use server::{Server, ServerConfig, ServerTls};
pub use sled_log::SledLog;
