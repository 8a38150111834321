//! Other clients' changes, from the replicated engine's change feed, applied to this
//! client's caches and the kernel's: a [`Follower`] polls the feed, turns each page of
//! changed keys into invalidations (`core::cache::coherence`), forgets them in the
//! metadata cache and in open files' slice lists, then tells the kernel (through
//! [`KernelCaches`]: the FUSE notifier in a mount). The client cache goes first, so that
//! a kernel request that follows a notification reads afresh.
//!
//! While the feed is not in sync (before its first answer, and from a failure until it
//! answers again) the caches use short fallback TTLs; a failure clears them. See
//! ARCHITECTURE.md ("Metadata caches").

use super::Vfs;
use ferrofs_core::cache::coherence::Changes;
use ferrofs_core::cache::meta::MetaCacheTtl;
use ferrofs_core::replica::ChangeBatch;
use ferrofs_core::{Ino, Result, CHUNK_SIZE};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the changes come from (the meta servers in a mount).
pub trait ChangeSource: Send {
    /// What was changed after `since` (see `core::replica::feed`).
    fn changes(&mut self, since: u64) -> Result<ChangeBatch>;
}

/// The kernel's caches of a mount.
pub trait KernelCaches: Send {
    /// Forget what `name` in `parent` is (positive or negative).
    fn forget_entry(&self, parent: Ino, name: &[u8]);
    /// Forget the attributes of `ino` and, with `data`, its cached pages in
    /// `[offset, offset + len)` (`len` 0: to the end).
    fn forget_inode(&self, ino: Ino, data: Option<(u64, u64)>);
}

/// No kernel (tests, and a client without FUSE).
impl KernelCaches for () {
    fn forget_entry(&self, _: Ino, _: &[u8]) {}
    fn forget_inode(&self, _: Ino, _: Option<(u64, u64)>) {}
}

impl Vfs {
    /// Forgets what other clients' changes invalidate in this client (metadata cache,
    /// open files' slice lists) and returns what the kernel has to forget: the same
    /// changes, or for a reset everything this client's cache held (the kernel's
    /// entries and attributes came from it).
    pub fn apply_changes(&self, c: &Changes) -> Changes {
        if c.reset {
            let held = {
                let mut mc = self.mc();
                let held = mc.held();
                mc.clear();
                held
            };
            for f in self.handles.all_files() {
                f.forget_chunks();
            }
            return Changes {
                reset: true,
                ..held
            };
        }
        self.mc().apply_changes(c);
        for &(ino, idx) in &c.chunks {
            if let Some(f) = self.handles.file(ino) {
                f.forget_chunk(idx);
            }
        }
        c.clone()
    }

    /// The metadata cache's TTLs from now on (slice lists of open files follow the
    /// attribute TTL).
    pub fn set_meta_cache_ttl(&self, ttl: MetaCacheTtl) {
        self.mc().set_ttl(ttl);
    }
}

/// Tells the kernel what `c` (as returned by [`Vfs::apply_changes`]) invalidates.
pub fn notify_kernel(kernel: &dyn KernelCaches, c: &Changes) {
    for (parent, name) in &c.names {
        kernel.forget_entry(*parent, name);
    }
    // After a reset nothing is known about data: every page goes.
    let data = c.reset.then_some((0, 0));
    for &ino in c.inodes.iter().chain(&c.xattrs) {
        kernel.forget_inode(ino, data);
    }
    if !c.reset {
        for &(ino, idx) in &c.chunks {
            kernel.forget_inode(ino, Some((idx.0 as u64 * CHUNK_SIZE, CHUNK_SIZE)));
        }
    }
}

/// How a [`Follower`] polls, and the TTLs in and out of sync.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// Time between polls.
    pub interval: Duration,
    /// The metadata cache's TTLs while the feed is in sync.
    pub synced: MetaCacheTtl,
    /// Its TTLs while it is not.
    pub fallback: MetaCacheTtl,
    /// A feed that has not answered for this long is out of sync: caches are cleared.
    pub fail_after: Duration,
}

/// Pages read in one poll at most (a busy volume always has more).
const MAX_PAGES: usize = 16;

/// Follows the change feed for one client.
pub struct Follower<S: ChangeSource, K: KernelCaches> {
    vfs: Arc<Vfs>,
    source: S,
    kernel: K,
    config: FeedConfig,
    /// The feed index this client's caches reflect (`None` before the first answer).
    since: Option<u64>,
    in_sync: Arc<AtomicBool>,
    last_answer: Instant,
}

impl<S: ChangeSource, K: KernelCaches> Follower<S, K> {
    /// A follower, out of sync until the feed first answers: the cache gets the
    /// fallback TTLs now. It sets `in_sync` while the feed is in sync (the kernel's
    /// TTLs follow it).
    pub fn new(
        vfs: Arc<Vfs>,
        source: S,
        kernel: K,
        config: FeedConfig,
        in_sync: Arc<AtomicBool>,
    ) -> Self {
        vfs.set_meta_cache_ttl(config.fallback);
        in_sync.store(false, Ordering::Release);
        Follower {
            vfs,
            source,
            kernel,
            config,
            since: None,
            in_sync,
            last_answer: Instant::now(),
        }
    }

    /// Reads the feed until caught up (or [`MAX_PAGES`]) and applies it.
    pub fn poll(&mut self) -> Result<()> {
        for _ in 0..MAX_PAGES {
            let since = self.since.unwrap_or(0);
            let b = self.source.changes(since)?;
            self.last_answer = Instant::now();
            let mut c = Changes::of_keys(b.keys.iter().map(Vec::as_slice));
            // Before the first answer the cache was filled without the feed.
            c.reset |= b.reset || self.since.is_none();
            let more = !c.reset && !b.keys.is_empty() && b.upto > since;
            self.since = Some(if b.reset { b.upto } else { b.upto.max(since) });
            if c.reset {
                tracing::debug!(upto = b.upto, "change feed: caches start over");
            }
            if !c.is_empty() {
                let k = self.vfs.apply_changes(&c);
                notify_kernel(&self.kernel, &k);
            }
            if !self.in_sync.load(Ordering::Acquire) {
                self.vfs.set_meta_cache_ttl(self.config.synced);
                self.in_sync.store(true, Ordering::Release);
                tracing::info!(index = b.upto, "change feed in sync: long metadata TTLs");
            }
            if !more {
                break;
            }
        }
        Ok(())
    }

    /// A poll failed: past `fail_after` without an answer, the caches are cleared
    /// and stay on the fallback TTLs until the feed answers again. Where it left off
    /// is kept: what changed meanwhile is applied once it answers (or, if the feed no
    /// longer has it, everything is forgotten).
    fn failed(&mut self, e: ferrofs_core::Errno) {
        if !self.in_sync.load(Ordering::Acquire)
            || self.last_answer.elapsed() < self.config.fail_after
        {
            return;
        }
        tracing::warn!(
            "the change feed did not answer for {:?} ({e}): metadata caches cleared, short TTLs until it answers",
            self.last_answer.elapsed()
        );
        self.in_sync.store(false, Ordering::Release);
        self.vfs.set_meta_cache_ttl(self.config.fallback);
        let k = self.vfs.apply_changes(&Changes::everything());
        notify_kernel(&self.kernel, &k);
    }

    /// Polls every `interval` until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            if let Err(e) = self.poll() {
                self.failed(e);
            }
            let wait = self.config.interval.saturating_sub(began.elapsed());
            let until = Instant::now() + wait;
            while !stop.load(Ordering::Relaxed) {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{system_clock, VfsConfig};
    use ferrofs_core::format::Format;
    use ferrofs_core::kv::MemKv;
    use ferrofs_core::meta::{keys, Meta};
    use ferrofs_core::{Ctx, Errno, FileType, Timespec};
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A feed that answers what the test queued (an empty queue: nothing new).
    #[derive(Clone, Default)]
    struct Script(Arc<Mutex<VecDeque<Result<ChangeBatch>>>>);

    impl ChangeSource for Script {
        fn changes(&mut self, since: u64) -> Result<ChangeBatch> {
            self.0
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(ChangeBatch {
                    upto: since,
                    ..ChangeBatch::default()
                }))
        }
    }

    impl Script {
        fn push(&self, r: Result<ChangeBatch>) {
            self.0.lock().unwrap().push_back(r);
        }
    }

    /// What the kernel was told.
    #[derive(Clone, Default)]
    struct Told(Arc<Mutex<Vec<String>>>);

    impl KernelCaches for Told {
        fn forget_entry(&self, parent: Ino, name: &[u8]) {
            let n = String::from_utf8_lossy(name);
            self.0
                .lock()
                .unwrap()
                .push(format!("entry {}/{n}", parent.0));
        }
        fn forget_inode(&self, ino: Ino, data: Option<(u64, u64)>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("inode {} {data:?}", ino.0));
        }
    }

    impl Told {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    const S: u64 = 1_000_000_000;

    fn ttl(s: u64) -> MetaCacheTtl {
        MetaCacheTtl {
            attr: s * S,
            entry: s * S,
            negative: s * S,
            dir: s * S,
        }
    }

    #[test]
    fn the_follower_invalidates_here_and_in_the_kernel_and_falls_back_on_failure() {
        let kv = Arc::new(MemKv::new());
        let now = Timespec::new(1, 0);
        Meta::format(&*kv, &Format::new("feed-test", "u"), false, now).unwrap();
        let other = Meta::load(kv.clone()).unwrap();
        let config = VfsConfig {
            background: false,
            ..VfsConfig::default()
        };
        let store = Arc::new(ferrofs_s3_backend::MemStore::new());
        let vfs = Arc::new(Vfs::new(
            Arc::new(Meta::load(kv.clone()).unwrap()),
            store,
            system_clock(),
            config,
        ));
        let (script, told) = (Script::default(), Told::default());
        let in_sync = Arc::new(AtomicBool::new(true));
        let cfg = FeedConfig {
            interval: Duration::from_millis(1),
            synced: ttl(3600),
            fallback: ttl(1),
            fail_after: Duration::ZERO,
        };
        let mut f = Follower::new(
            vfs.clone(),
            script.clone(),
            told.clone(),
            cfg,
            in_sync.clone(),
        );
        assert!(
            !in_sync.load(Ordering::Acquire),
            "out of sync until it answers"
        );
        assert_eq!(vfs.mc().ttl(), ttl(1));

        // The first answer: whatever was cached before starts over.
        script.push(Ok(ChangeBatch {
            upto: 10,
            reset: true,
            keys: vec![],
        }));
        f.poll().unwrap();
        assert!(in_sync.load(Ordering::Acquire));
        assert_eq!(vfs.mc().ttl(), ttl(3600));
        assert_eq!(f.since, Some(10));

        // This client caches that "x" is missing; another creates it: the feed says
        // so, and both caches forget.
        let c = Ctx::root();
        vfs.getattr(Ino::ROOT).unwrap();
        assert_eq!(vfs.lookup(&c, Ino::ROOT, b"x").unwrap_err(), Errno::ENOENT);
        let x = other
            .mknod(&c, Ino::ROOT, b"x", FileType::RegularFile, 0o644, 0, 0, now)
            .unwrap();
        assert_eq!(vfs.lookup(&c, Ino::ROOT, b"x").unwrap_err(), Errno::ENOENT);
        told.take();
        script.push(Ok(ChangeBatch {
            upto: 11,
            reset: false,
            keys: vec![keys::dentry(Ino::ROOT, b"x"), keys::attr(Ino::ROOT)],
        }));
        f.poll().unwrap();
        assert_eq!(f.since, Some(11));
        assert_eq!(vfs.lookup(&c, Ino::ROOT, b"x").unwrap().ino, x.ino);
        assert_eq!(told.take(), vec!["entry 1/x", "inode 1 None"]);

        // A chunk written elsewhere: the kernel drops that chunk's pages.
        script.push(Ok(ChangeBatch {
            upto: 12,
            reset: false,
            keys: vec![keys::chunk(x.ino, ferrofs_core::ChunkIndex(1))],
        }));
        f.poll().unwrap();
        assert_eq!(
            told.take(),
            vec![format!(
                "inode {} Some(({CHUNK_SIZE}, {CHUNK_SIZE}))",
                x.ino.0
            )]
        );

        // The feed fails: the caches are cleared (the kernel told about everything
        // held) and the TTLs are short; where it left off is kept.
        assert!(vfs.mc().len().0 > 0);
        script.push(Err(Errno::EIO));
        if let Err(e) = f.poll() {
            f.failed(e);
        }
        assert!(!in_sync.load(Ordering::Acquire));
        assert_eq!(vfs.mc().ttl(), ttl(1));
        assert_eq!(vfs.mc().len(), (0, 0, 0));
        let t = told.take();
        assert!(t.contains(&"entry 1/x".to_string()), "{t:?}");
        assert!(
            t.contains(&format!("inode {} Some((0, 0))", x.ino.0)),
            "{t:?}"
        );
        assert_eq!(f.since, Some(12));

        // It answers again: in sync, long TTLs.
        f.poll().unwrap();
        assert!(in_sync.load(Ordering::Acquire));
        assert_eq!(vfs.mc().ttl(), ttl(3600));
    }
}
