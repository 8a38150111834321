//! The replicated metadata engine's decisions, apart from Raft and from any I/O.
//!
//! Clients run the metadata operations themselves — the same [`crate::meta`] code as
//! over the embedded engine — against a remote read view, optimistically
//! ([`optimistic::OptimisticKv`]): a transaction's reads are recorded as
//! [`ReadCheck`]s and sent with its writes as one [`Command`]. Raft orders the commands;
//! every replica applies each one to its own engine with [`apply::apply`], which is
//! deterministic: it checks the recorded reads against the replica's state (all
//! replicas are in the same state before the same log index, so they all decide alike),
//! applies the writes only if every read still holds, and records the outcome under the
//! client's request id, so that a command that is delivered or proposed twice is
//! applied once.

pub mod apply;
pub mod command;
pub mod feed;
pub mod local;
pub mod members;
pub mod optimistic;
pub mod snapshot;

pub use apply::{
    applied_index, applied_index_in, apply, apply_entry, mark_applied, request_key, REQUEST_PREFIX,
};
pub use command::{Command, DecodeError, Digest, Outcome, ReadCheck, RequestId};
pub use feed::{ChangeBatch, Feed};
pub use local::LocalReplica;
pub use members::{apply_membership, membership, Membership, MEMBERS_KEY};
pub use optimistic::{OptimisticKv, Remote};
pub use snapshot::SnapshotError;
