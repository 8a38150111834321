//! The portable dump of a volume's metadata (`ferrofs dump` / `ferrofs load`): one JSON
//! document, written and read as a stream, so a volume of millions of files never has
//! to fit in memory. ARCHITECTURE.md ("Dump format") describes the document.
//!
//! The dump holds what the volume *is* (settings, counters, inodes with their chunks,
//! symlink targets and extended attributes, directory entries with their readdir
//! cookies, the gc queue, staged slices) and none of what its clients are doing
//! (sessions, locks, cache-group registrations, the replicated engine's records). It
//! names the engine's things logically, not by key, so a dump of one engine loads into
//! another.
//!
//! [`write::dump`] pages through the keyspace (one read transaction per page) and writes
//! records as it goes. [`read::load`] parses records as they arrive, checks each, and
//! writes them in batches; the settings go last, so an engine with half a load is never
//! a volume, and a failed load removes what it wrote.

mod read;
mod record;
mod write;

pub use read::{load, LoadError, LoadStats};
pub use record::{Bytes, ChunkRecord, EntryRecord, InodeRecord, TypeName, XattrRecord};
pub use write::{dump, DumpError, DumpOptions, DumpProgress, DumpStats};

/// The format version in the document's first member, `"ferrofs_dump"`.
pub const DUMP_VERSION: u64 = 1;

/// The document's members, in the order they are written and must be read.
pub const SECTIONS: [&str; 8] = [
    "ferrofs_dump",
    "setting",
    "counters",
    "unlinked_open",
    "inodes",
    "entries",
    "deleted_slices",
    "staged_slices",
];

#[cfg(test)]
mod tests;
