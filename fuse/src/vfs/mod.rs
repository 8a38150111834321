//! The client's I/O glue, independent of FUSE: open handles (`handles`), the write path
//! with background uploads committed in order (`write`), the read path with readahead
//! (`read`), where verified block data comes from (`blocks`), background deletion of
//! unreferenced objects (`gc`), the worker threads (`pool`) and file locks, whose
//! blocking requests wait on a thread of their own (`locks`). Every decision it needs
//! (layout, permissions, readahead, what to delete) comes from `ferrofs-core`; this
//! module only performs the I/O those decisions call for.

mod blocks;
pub mod cache;
pub mod feed;
mod gc;
mod handles;
mod locks;
mod meta_cache;
mod pool;
mod read;
mod warm;
mod write;
mod writeback;

#[cfg(test)]
mod tests;

pub use locks::{Answer, Interrupted};
pub use warm::{WarmMode, Warmed};

use blocks::Blocks;
use cache::BlockCache;
use ferrofs_core::cache::meta::{MetaCache, MetaCacheTtl};
use ferrofs_core::cache::readahead::Readahead;
use ferrofs_core::chunk::BlockKey;
use ferrofs_core::meta::Meta;
use ferrofs_core::{
    Attr, Ctx, DirEntry, Errno, FileType, Ino, RenameFlags, Result, SetAttr, StatFs, Timespec,
    XattrMode,
};
use ferrofs_s3_backend::ObjectStore;
use handles::{Handles, OpenFile};
use pool::Pool;
use std::sync::{Arc, Mutex};
use writeback::Writeback;

/// Attributes, names and listing pages the metadata cache holds at most (each).
const META_CACHE_ITEMS: usize = 1 << 20;

pub use handles::Fh;

/// Where the client gets the time from (the wall clock in a mount, a fake in tests).
pub type Clock = Arc<dyn Fn() -> Timespec + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timespec::new(d.as_secs() as i64, d.subsec_nanos())
    })
}

/// Client tuning.
#[derive(Clone, Debug)]
pub struct VfsConfig {
    /// Memory for this client's uncommitted writes and fetched blocks: beyond it a
    /// writer waits for its uploads; readahead stays within a quarter of it.
    pub buffer_size: u64,
    /// Block uploads in flight at once (the upload workers).
    pub max_uploads: usize,
    /// Background block fetches in flight at once (the prefetch workers).
    pub max_downloads: usize,
    /// Whole blocks fetched in the background after a small random read: the block it
    /// fell in and the ones after it (0: none).
    pub prefetch_blocks: u32,
    /// How long attributes, names and listings are served from memory (each 0: off).
    pub meta_cache: MetaCacheTtl,
    /// With a non-zero TTL, `open` trusts attributes read that recently instead of
    /// reading them afresh (for read-only data: gives up close-to-open).
    pub open_cache_ns: u64,
    /// Stage written blocks in the local cache and upload them in the background
    /// (`--writeback`; needs a block cache on disk). See `writeback`.
    pub writeback: bool,
    /// Run uploads and prefetches on worker threads. Off, every store call happens on
    /// the calling thread, one at a time, and nothing is read ahead: the simulator
    /// needs that, as it schedules each client's calls on the client's own thread.
    pub background: bool,
    /// Verify block checksums on read (on by default). Turning it off only saves a
    /// CRC per 64 KiB; the simulator turns it off to prove its data checker catches
    /// the corrupt bytes that then get through.
    pub verify_checksums: bool,
}

impl Default for VfsConfig {
    fn default() -> Self {
        VfsConfig {
            buffer_size: 300 << 20,
            max_uploads: 8,
            max_downloads: 16,
            // Off until the differential test's rare failure with it is understood.
            prefetch_blocks: 0,
            meta_cache: MetaCacheTtl {
                attr: 5_000_000_000,
                entry: 5_000_000_000,
                negative: 0,
                dir: 5_000_000_000,
            },
            open_cache_ns: 0,
            writeback: false,
            background: true,
            verify_checksums: true,
        }
    }
}

/// One mounted volume as seen by one client.
pub struct Vfs {
    meta: Arc<Meta>,
    store: Arc<dyn ObjectStore>,
    clock: Clock,
    config: VfsConfig,
    handles: Handles,
    blocks: Arc<Blocks>,
    cache: Option<Arc<BlockCache>>,
    meta_cache: Mutex<MetaCache>,
    uploads: Pool,
    writeback: Option<Arc<Writeback>>,
    /// Blocking lock requests waiting for a conflicting lock to go.
    lock_waits: locks::LockWaits,
    /// The rate limits its store and peer traffic go through (for the control socket).
    limits: std::sync::OnceLock<crate::limit::Limits>,
    /// This client's metrics (for the control socket's `stats`).
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl Vfs {
    /// A client without a local block cache.
    pub fn new(
        meta: Arc<Meta>,
        store: Arc<dyn ObjectStore>,
        clock: Clock,
        config: VfsConfig,
    ) -> Vfs {
        Vfs::with_cache(meta, store, clock, config, None)
    }

    /// A client whose reads go through `cache` (if any) before the object store.
    pub fn with_cache(
        meta: Arc<Meta>,
        store: Arc<dyn ObjectStore>,
        clock: Clock,
        config: VfsConfig,
        cache: Option<Arc<BlockCache>>,
    ) -> Vfs {
        let workers = |n: usize| if config.background { n.max(1) } else { 0 };
        let blocks = Blocks::new(
            store.clone(),
            cache.clone(),
            config.verify_checksums,
            config.buffer_size / 2,
            workers(config.max_downloads),
        );
        let writeback = match &cache {
            Some(c) if config.writeback => Some(Arc::new(Writeback::new(
                store.clone(),
                c.clone(),
                meta.clone(),
                workers(config.max_uploads),
            ))),
            _ => None,
        };
        Vfs {
            meta,
            writeback,
            cache,
            meta_cache: Mutex::new(MetaCache::new(config.meta_cache, META_CACHE_ITEMS)),
            uploads: Pool::new("ferrofs-upload", workers(config.max_uploads)),
            store,
            clock,
            handles: Handles::default(),
            blocks: Arc::new(blocks),
            config,
            lock_waits: locks::LockWaits::default(),
            limits: std::sync::OnceLock::new(),
            metrics: std::sync::OnceLock::new(),
        }
    }

    fn block_size(&self) -> u32 {
        self.meta.format_info().block_size
    }

    /// Readahead state for a newly opened file: at most a quarter of the buffer ahead.
    fn readahead(&self) -> Readahead {
        let window = if self.config.background {
            self.config.buffer_size / 4
        } else {
            0
        };
        Readahead::new(self.block_size(), window)
    }

    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn block_cache(&self) -> Option<&Arc<BlockCache>> {
        self.cache.as_ref()
    }

    /// Makes this client a member of a cache group: reads ask blocks' owners, and the
    /// blocks it owns are served by [`Vfs::block_service`] (run by the caller's server).
    pub fn join_group(&self, group: Arc<crate::group::Group>) -> Result<()> {
        self.blocks.join_group(group)
    }

    pub fn group(&self) -> Option<&Arc<crate::group::Group>> {
        self.blocks.group()
    }

    /// What this client serves to its cache-group peers.
    pub fn block_service(&self) -> Arc<dyn crate::group::BlockService> {
        self.blocks.clone()
    }

    /// Records the limits this client's traffic goes through (set once, by the shell).
    pub fn set_limits(&self, limits: crate::limit::Limits) {
        let _ = self.limits.set(limits);
    }

    pub fn limits(&self) -> Option<&crate::limit::Limits> {
        self.limits.get()
    }

    /// Records this client's metrics (set once, by the shell).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    pub fn metrics(&self) -> Option<&Arc<crate::metrics::Metrics>> {
        self.metrics.get()
    }

    /// GETs this client sent to the object store for block data so far.
    pub fn store_gets(&self) -> u64 {
        self.blocks.store_gets()
    }

    /// Queues blocks an earlier run staged (found by `BlockCache::open`) for upload.
    /// Without writeback they are uploaded now, on this thread.
    pub fn resume_staged(&self, keys: Vec<BlockKey>) {
        let keys = self.committed_staged(keys);
        if keys.is_empty() {
            return;
        }
        tracing::info!(
            blocks = keys.len(),
            "uploading blocks staged by an earlier run"
        );
        match (&self.writeback, &self.cache) {
            (Some(wb), _) => wb.enqueue(keys),
            (None, Some(c)) => {
                let wb = Writeback::new(self.store.clone(), c.clone(), self.meta.clone(), 0);
                wb.enqueue(keys);
                while wb.backlog() > 0 && wb.upload_some(64) > 0 {}
                if wb.backlog() > 0 {
                    tracing::warn!(
                        blocks = wb.backlog(),
                        "staged blocks could not be uploaded; they stay staged for the next mount"
                    );
                }
            }
            (None, None) => {}
        }
    }

    /// Of the staged blocks an earlier run left, those to upload (`Meta::split_staged`);
    /// the others, of commits that never landed, are dropped from the cache. If the marks
    /// cannot be read, every block is kept.
    fn committed_staged(&self, keys: Vec<BlockKey>) -> Vec<BlockKey> {
        if keys.is_empty() {
            return keys;
        }
        let (keep, orphans) = match self.meta.split_staged(keys.clone()) {
            Ok(split) => split,
            Err(e) => {
                tracing::warn!(
                    "cannot read which staged slices were committed ({e}); uploading them all"
                );
                return keys;
            }
        };
        if let (false, Some(c)) = (orphans.is_empty(), &self.cache) {
            tracing::info!(
                blocks = orphans.len(),
                "dropping staged blocks of slices that were never committed"
            );
            for k in &orphans {
                c.discard_staged(k);
            }
        }
        keep
    }

    /// Uploads up to `limit` staged blocks on this thread (the simulator's way of
    /// running writeback); returns how many went up.
    pub fn upload_staged(&self, limit: usize) -> usize {
        self.writeback
            .as_ref()
            .map_or(0, |wb| wb.upload_some(limit))
    }

    /// Staged blocks not yet uploaded.
    pub fn writeback_backlog(&self) -> usize {
        self.writeback.as_ref().map_or(0, |wb| wb.backlog())
    }

    /// Waits up to `limit` for staged blocks to be uploaded; returns how many are left.
    pub fn drain_writeback(&self, limit: std::time::Duration) -> usize {
        self.writeback.as_ref().map_or(0, |wb| wb.drain(limit))
    }

    fn now(&self) -> Timespec {
        (self.clock)()
    }

    /// Attributes as this client sees them: the committed ones, plus the length and
    /// mtime of bytes it has buffered but not yet flushed. For a file open here, the
    /// committed attributes are read again together with that overlay, so that a
    /// commit in between cannot hide the new length (see `OpenFile::consistent`).
    fn overlay(&self, attr: Attr) -> Result<Attr> {
        let Some(file) = self.handles.file(attr.ino) else {
            return Ok(attr);
        };
        let ino = attr.ino;
        file.consistent(
            || self.committed_attr(ino),
            |mut a, st| {
                OpenFile::overlay_attr(st, &mut a);
                a
            },
        )
    }

    pub fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.overlay(self.lookup_committed(ctx, parent, name)?)
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.overlay(self.committed_attr(ino)?)
    }

    pub fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        let mut set = set.clone();
        if let Some(fh) = fh {
            // A change through a handle of this inode (ftruncate/futimens) was
            // permission-checked at open.
            if self.handles.get(fh).map(|h| h.ino == ino).unwrap_or(false) {
                set.via_handle = true;
            }
        }
        let ticket = self.ticket();
        let r = match self.handles.file(ino) {
            Some(file) => file.setattr(self, ctx, &set),
            None => self.meta.setattr(ctx, ino, &set, self.now()),
        };
        self.changed_attr(ino, r, ticket)
    }

    pub fn access(&self, ctx: &Ctx, ino: Ino, mask: u32) -> Result<()> {
        ferrofs_core::meta::perm::check(ctx, &self.committed_attr(ino)?, mask)
    }

    #[allow(clippy::too_many_arguments)] // mirrors mknod(2)'s arguments
    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        kind: FileType,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Attr> {
        let ticket = self.ticket();
        let r = self
            .meta
            .mknod(ctx, parent, name, kind, mode, umask, rdev, self.now());
        self.created(parent, name, r, ticket)
    }

    pub fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> Result<Attr> {
        let ticket = self.ticket();
        let r = self.meta.mkdir(ctx, parent, name, mode, umask, self.now());
        self.created(parent, name, r, ticket)
    }

    pub fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        let r = self.meta.unlink(ctx, parent, name, self.now());
        self.name_changed(parent, name);
        self.forget_attr(r?);
        Ok(())
    }

    pub fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        let r = self.meta.rmdir(ctx, parent, name, self.now());
        self.name_changed(parent, name);
        self.forget_attr(r?);
        Ok(())
    }

    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let r = self
            .meta
            .rename(ctx, parent, name, new_parent, new_name, flags, self.now());
        self.name_changed(parent, name);
        self.name_changed(new_parent, new_name);
        for ino in r? {
            // A moved directory's `..` changed too.
            self.forget_attr(ino);
            self.dir_changed(ino);
        }
        Ok(())
    }

    pub fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        let ticket = self.ticket();
        let r = self.meta.link(ctx, ino, new_parent, new_name, self.now());
        let attr = self.created(new_parent, new_name, r, ticket)?;
        self.overlay(attr)
    }

    pub fn symlink(&self, ctx: &Ctx, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr> {
        let ticket = self.ticket();
        let r = self.meta.symlink(ctx, parent, name, target, self.now());
        self.created(parent, name, r, ticket)
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.meta.readlink(ino)
    }

    /// Creates and opens a regular file (always exclusive: the kernel looks the name
    /// up first and opens an existing file instead).
    pub fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Fh, Attr)> {
        let ticket = self.ticket();
        let r = self.meta.mknod(
            ctx,
            parent,
            name,
            FileType::RegularFile,
            mode,
            umask,
            0,
            self.now(),
        );
        let attr = self.created(parent, name, r, ticket)?;
        // The creator may write the file it just created whatever its mode says, so
        // the open after create is not permission-checked.
        let attr = self
            .meta
            .open(&Ctx::root(), attr.ino, flags & !libc::O_TRUNC)?;
        let fh = self.handles.open(attr.ino, flags, self.readahead());
        Ok((fh, attr))
    }

    /// Opens a file. Close-to-open: its attributes and slice lists are read afresh
    /// from the engine, so everything another client closed before is seen (unless
    /// `--open-cache` allows attributes read within its TTL).
    pub fn open(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<(Fh, Attr)> {
        let attr = match self.open_cached_attr(ino) {
            Some(attr) => {
                self.meta.open_known(ctx, &attr, flags)?;
                attr
            }
            None => {
                let ticket = self.ticket();
                let attr = self.meta.open(ctx, ino, flags)?;
                self.remember_attr(&attr, ticket);
                if let Some(file) = self.handles.file(ino) {
                    file.forget_chunks();
                }
                attr
            }
        };
        let fh = self.handles.open(ino, flags, self.readahead());
        Ok((fh, self.overlay(attr)?))
    }

    pub fn read(&self, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        let h = self.handles.get(fh).ok_or(Errno::EBADF)?;
        if !h.readable() {
            return Err(Errno::EBADF);
        }
        h.file.read(self, offset, size)
    }

    pub fn write(&self, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        let h = self.handles.get(fh).ok_or(Errno::EBADF)?;
        if !h.writable() {
            return Err(Errno::EBADF);
        }
        h.file.write(self, offset, data)
    }

    /// `close()` of a descriptor: buffered writes become visible to other clients
    /// (close-to-open consistency).
    pub fn flush(&self, fh: Fh) -> Result<()> {
        let h = self.handles.get(fh).ok_or(Errno::EBADF)?;
        h.file.flush(self).inspect_err(|e| {
            tracing::error!(
                ino = h.ino.0,
                "flush failed; the data stays buffered until the last close: {e}"
            )
        })
    }

    /// Makes the file's data and metadata durable: objects are written, then the
    /// metadata engine is synced.
    pub fn fsync(&self, fh: Fh) -> Result<()> {
        let h = self.handles.get(fh).ok_or(Errno::EBADF)?;
        h.file.flush(self)?;
        self.meta.sync()
    }

    pub fn release(&self, fh: Fh) -> Result<()> {
        let h = self.handles.get(fh).ok_or(Errno::EBADF)?;
        // Flushed while the handle still counts: until the commit, others in this
        // client see the buffered length through the open file.
        let flushed = h
            .file
            .flush(self)
            .inspect_err(|e| tracing::error!(ino = h.ino.0, "flush at close failed: {e}"));
        self.handles.close(fh);
        // The last close of an unlinked file deletes it.
        let released = self.meta.release(h.ino);
        self.forget_attr(h.ino);
        released?;
        flushed
    }

    /// Opens a directory; it is counted as open until [`Vfs::releasedir`], so removing
    /// it meanwhile keeps it (unlinked) as Linux does.
    pub fn opendir(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<()> {
        let ticket = self.ticket();
        let attr = self.meta.opendir(ctx, ino, flags)?;
        self.remember_attr(&attr, ticket);
        Ok(())
    }

    pub fn releasedir(&self, ino: Ino) -> Result<()> {
        let r = self.meta.release(ino);
        self.forget_attr(ino);
        r
    }

    pub fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        offset: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        let mut entries = self.readdir_committed(ctx, ino, offset, limit, plus)?;
        for e in entries.iter_mut() {
            if let Some(a) = e.attr.take() {
                e.attr = Some(self.overlay(a)?);
            }
        }
        Ok(entries)
    }

    pub fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        let r = self.meta.setxattr(ctx, ino, name, value, mode, self.now());
        self.forget_attr(ino);
        r
    }

    pub fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        self.meta.getxattr(ctx, ino, name)
    }

    pub fn listxattr(&self, ctx: &Ctx, ino: Ino) -> Result<Vec<Vec<u8>>> {
        self.meta.listxattr(ctx, ino)
    }

    pub fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        let r = self.meta.removexattr(ctx, ino, name, self.now());
        self.forget_attr(ino);
        r
    }

    pub fn statfs(&self) -> Result<StatFs> {
        self.meta.statfs()
    }

    /// Deletes the objects of up to `limit` slices that no metadata refers to any more
    /// (the gc queue). Returns how many slices were collected.
    pub fn collect_garbage(&self, limit: usize) -> Result<usize> {
        gc::collect_garbage(self, limit)
    }

    /// Flushes every open file and syncs metadata: called at unmount.
    pub fn shutdown(&self) -> Result<()> {
        let mut result = Ok(());
        for file in self.handles.all_files() {
            if let Err(e) = file.flush(self) {
                tracing::error!(ino = file.ino().0, "flush at unmount failed: {e}");
                result = Err(e);
            }
        }
        self.meta.sync().and(result)
    }
}
