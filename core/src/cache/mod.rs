//! Caching decisions of the client: which blocks stay in the local block cache and which
//! go (`policy`), which cache dir (or, later, which cache-group member) owns a block
//! (`ring`), what the block cache holds and how full each dir is (`index`), what to read
//! ahead for a sequential reader (`readahead`), and how long metadata may be served from
//! memory (`meta`) and what other clients' changes, reported by the replicated engine's
//! change feed, invalidate there (`coherence`). Like the rest of the core it does no
//! I/O: the shell reports what it read, wrote and found on disk, and passes time and
//! seeds in.

pub mod coherence;
pub mod group;
pub mod index;
pub mod meta;
pub mod peer_wire;
pub mod policy;
pub mod readahead;
pub mod ring;
