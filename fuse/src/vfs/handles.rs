//! Open file handles and the per-inode state they share.

use super::write::FileState;
use ferrofs_core::cache::readahead::Readahead;
use ferrofs_core::chunk::SliceRef;
use ferrofs_core::{ChunkIndex, Ino};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A chunk's slice list as read, and when (nanoseconds).
pub(super) type CachedSlices = (Arc<Vec<SliceRef>>, u64);

/// A file handle number as the kernel sees it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct Fh(pub u64);

/// One `open()` of an inode.
pub struct Handle {
    pub ino: Ino,
    pub flags: i32,
    pub file: Arc<OpenFile>,
}

impl Handle {
    pub fn readable(&self) -> bool {
        self.flags & libc::O_ACCMODE != libc::O_WRONLY
    }

    pub fn writable(&self) -> bool {
        self.flags & libc::O_ACCMODE != libc::O_RDONLY
    }
}

/// The state of an inode that is open in this client, shared by all its handles:
/// the write buffer is per inode, so every handle reads what any handle wrote.
pub struct OpenFile {
    ino: Ino,
    pub(super) state: RwLock<FileState>,
    /// Bytes buffered across all files of this client.
    pub(super) buffered_total: Arc<AtomicU64>,
    /// Whether its reader is sequential, and how far ahead to fetch.
    pub(super) readahead: Mutex<Readahead>,
    /// Slice lists of its chunks as last read, and when (nanoseconds): valid until
    /// this client changes the chunk, the metadata TTL runs out, or the file is opened
    /// again (close-to-open).
    pub(super) chunks: Mutex<BTreeMap<ChunkIndex, CachedSlices>>,
    /// Counts this client's changes to the file's committed state (commits,
    /// truncation, compaction, reopening): a reader that saw it move while it read
    /// committed attributes or slice lists reads again, so it never pairs old
    /// committed bytes with an overlay that no longer holds the new ones.
    changes: AtomicU64,
}

impl OpenFile {
    pub fn ino(&self) -> Ino {
        self.ino
    }

    /// Where the file's change count stands (take it before reading committed state).
    pub(super) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Counts a change to the committed state. Call it after the change reached the
    /// engine and before forgetting what was cached about it, so that a reader that
    /// caches an old read in between is seen (see `reread_slices`).
    pub(super) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops every cached slice list (the file was reopened, truncated or compacted).
    pub(super) fn forget_chunks(&self) {
        self.changed();
        self.chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Drops the cached slice list of one chunk (this client committed to it).
    pub(super) fn forget_chunk(&self, idx: ChunkIndex) {
        self.changed();
        self.chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&idx);
    }
}

#[derive(Default)]
struct Table {
    next_fh: u64,
    handles: BTreeMap<u64, Arc<Handle>>,
    /// Open inodes and how many handles refer to each.
    files: BTreeMap<Ino, (Arc<OpenFile>, usize)>,
}

/// The handle table of one client.
#[derive(Default)]
pub struct Handles {
    table: Mutex<Table>,
    buffered_total: Arc<AtomicU64>,
}

impl Handles {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a handle of `ino`; `readahead` is the state a newly opened inode starts with.
    pub fn open(&self, ino: Ino, flags: i32, readahead: Readahead) -> Fh {
        let mut t = self.lock();
        let total = self.buffered_total.clone();
        let entry = t.files.entry(ino).or_insert_with(|| {
            let file = OpenFile {
                ino,
                state: RwLock::new(FileState::default()),
                buffered_total: total,
                readahead: Mutex::new(readahead),
                chunks: Mutex::default(),
                changes: AtomicU64::new(0),
            };
            (Arc::new(file), 0)
        });
        entry.1 += 1;
        let file = entry.0.clone();
        t.next_fh += 1;
        let fh = t.next_fh;
        t.handles.insert(fh, Arc::new(Handle { ino, flags, file }));
        Fh(fh)
    }

    pub fn get(&self, fh: Fh) -> Option<Arc<Handle>> {
        self.lock().handles.get(&fh.0).cloned()
    }

    /// Removes a handle; the inode's shared state goes when its last handle does.
    pub fn close(&self, fh: Fh) -> Option<Arc<Handle>> {
        let mut t = self.lock();
        let h = t.handles.remove(&fh.0)?;
        if let Some(entry) = t.files.get_mut(&h.ino) {
            entry.1 -= 1;
            if entry.1 == 0 {
                t.files.remove(&h.ino);
            }
        }
        Some(h)
    }

    pub fn file(&self, ino: Ino) -> Option<Arc<OpenFile>> {
        self.lock().files.get(&ino).map(|(f, _)| f.clone())
    }

    pub fn all_files(&self) -> Vec<Arc<OpenFile>> {
        self.lock().files.values().map(|(f, _)| f.clone()).collect()
    }

    pub fn buffered_bytes(&self) -> u64 {
        self.buffered_total.load(Ordering::Relaxed)
    }
}
