//! The client's metadata cache: attributes, name lookups (positive and negative) and
//! directory listing pages, each served from memory until its TTL runs out.
//!
//! Coherence rules (the shell applies them, see ARCHITECTURE.md "Metadata caches"):
//! - this client's own changes invalidate what they touch at once, so it always sees
//!   its own writes;
//! - `open` reads attributes from the engine (close-to-open) unless `--open-cache`;
//! - another client's change shows once the entry's TTL has run out, or as soon as
//!   the replicated engine's change feed reports it ([`MetaCache::apply_changes`],
//!   see `coherence`).
//!
//! Entries are bounded in number; past the bound the oldest insertions go first.
//! Time is passed in (nanoseconds on any monotonic scale).
//!
//! A read from the engine races with this client's own changes: a getattr may read
//! the old length, a write commit then invalidates the inode, and only then does the
//! getattr cache what it read, stale until its TTL runs out. So every put carries a
//! [`ReadTicket`] taken before the engine was asked, and is dropped if anything was
//! invalidated since.

use super::coherence::Changes;
use crate::types::{Attr, DirEntry, Ino};
use std::collections::{BTreeMap, VecDeque};

/// What a name lookup may be answered with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CachedEntry {
    /// The name refers to this inode.
    Found(Ino),
    /// The name did not exist (a negative entry).
    Missing,
}

#[derive(Clone, Debug)]
struct Timed<T> {
    value: T,
    /// When it was read from the engine.
    at: u64,
}

/// Where the cache's invalidations stood when a read from the engine began.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadTicket(u64);

/// Listing pages are keyed by directory, cookie, whether attributes were included and
/// how many entries were asked for.
type PageKey = (Ino, u64, bool, u32);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Key {
    Attr(Ino),
    Entry(Ino, Vec<u8>),
    Page(PageKey),
}

/// TTLs of the cache, in nanoseconds (0 turns that part off).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MetaCacheTtl {
    pub attr: u64,
    pub entry: u64,
    pub negative: u64,
    pub dir: u64,
}

impl MetaCacheTtl {
    /// Nothing cached: every lookup asks the engine.
    pub const OFF: MetaCacheTtl = MetaCacheTtl {
        attr: 0,
        entry: 0,
        negative: 0,
        dir: 0,
    };
}

/// Attributes, entries and listing pages of one client.
#[derive(Debug)]
pub struct MetaCache {
    ttl: MetaCacheTtl,
    capacity: usize,
    attrs: BTreeMap<Ino, Timed<Attr>>,
    entries: BTreeMap<(Ino, Vec<u8>), Timed<CachedEntry>>,
    pages: BTreeMap<PageKey, Timed<Vec<DirEntry>>>,
    /// Insertion order, for the bound (stale keys are skipped when popped).
    order: VecDeque<Key>,
    /// How many invalidations there have been.
    invalidations: u64,
}

impl MetaCache {
    /// A cache with `ttl`s holding at most about `capacity` items of each kind.
    pub fn new(ttl: MetaCacheTtl, capacity: usize) -> MetaCache {
        MetaCache {
            ttl,
            capacity,
            attrs: BTreeMap::new(),
            entries: BTreeMap::new(),
            pages: BTreeMap::new(),
            order: VecDeque::new(),
            invalidations: 0,
        }
    }

    /// Take this before reading from the engine what will be put into the cache.
    pub fn ticket(&self) -> ReadTicket {
        ReadTicket(self.invalidations)
    }

    /// Whether nothing was invalidated since `ticket` was taken (a put with it is kept).
    pub fn still_valid(&self, ticket: ReadTicket) -> bool {
        ticket.0 == self.invalidations
    }

    fn invalidated(&mut self) {
        self.invalidations += 1;
    }

    pub fn ttl(&self) -> MetaCacheTtl {
        self.ttl
    }

    /// Changes the TTLs (the change feed went down or came back). Items already held
    /// are served for the new TTLs from when they were read.
    pub fn set_ttl(&mut self, ttl: MetaCacheTtl) {
        self.ttl = ttl;
    }

    /// Cached attributes of `ino`, if still fresh at `now`.
    pub fn attr(&self, ino: Ino, now: u64) -> Option<Attr> {
        self.attr_within(ino, now, self.ttl.attr)
    }

    /// Cached attributes of `ino` read less than `max_age` before `now` (the open
    /// cache has its own TTL).
    pub fn attr_within(&self, ino: Ino, now: u64, max_age: u64) -> Option<Attr> {
        fresh(self.attrs.get(&ino), now, max_age).cloned()
    }

    /// Caches `attr`, read from the engine after `ticket` was taken, unless something
    /// was invalidated since.
    pub fn put_attr(&mut self, attr: Attr, now: u64, ticket: ReadTicket) {
        if self.ttl.attr == 0 || !self.still_valid(ticket) {
            return;
        }
        let ino = attr.ino;
        let t = Timed {
            value: attr,
            at: now,
        };
        if self.attrs.insert(ino, t).is_none() {
            self.remember(Key::Attr(ino));
        }
    }

    /// What `name` in `parent` was found to be, if still fresh at `now`.
    pub fn entry(&self, parent: Ino, name: &[u8], now: u64) -> Option<CachedEntry> {
        let e = self.entries.get(&(parent, name.to_vec()))?;
        let ttl = match e.value {
            CachedEntry::Found(_) => self.ttl.entry,
            CachedEntry::Missing => self.ttl.negative,
        };
        fresh(Some(e), now, ttl).copied()
    }

    pub fn put_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        entry: CachedEntry,
        now: u64,
        ticket: ReadTicket,
    ) {
        let ttl = match entry {
            CachedEntry::Found(_) => self.ttl.entry,
            CachedEntry::Missing => self.ttl.negative,
        };
        if ttl == 0 || !self.still_valid(ticket) {
            return;
        }
        let t = Timed {
            value: entry,
            at: now,
        };
        if self.entries.insert((parent, name.to_vec()), t).is_none() {
            self.remember(Key::Entry(parent, name.to_vec()));
        }
    }

    /// A cached listing page of `dir` from cookie `offset` of up to `limit` entries
    /// (with attributes if `plus`), if still fresh.
    pub fn page(
        &self,
        dir: Ino,
        offset: u64,
        plus: bool,
        limit: u32,
        now: u64,
    ) -> Option<&[DirEntry]> {
        let page = self.pages.get(&(dir, offset, plus, limit));
        fresh(page, now, self.ttl.dir).map(|v| v.as_slice())
    }

    #[allow(clippy::too_many_arguments)] // four of them are the page's key, as in `page`
    pub fn put_page(
        &mut self,
        dir: Ino,
        offset: u64,
        plus: bool,
        limit: u32,
        page: Vec<DirEntry>,
        now: u64,
        ticket: ReadTicket,
    ) {
        if self.ttl.dir == 0 || !self.still_valid(ticket) {
            return;
        }
        let key = (dir, offset, plus, limit);
        let t = Timed {
            value: page,
            at: now,
        };
        if self.pages.insert(key, t).is_none() {
            self.remember(Key::Page(key));
        }
    }

    /// Forgets the attributes of `ino`.
    pub fn forget_attr(&mut self, ino: Ino) {
        self.invalidated();
        self.attrs.remove(&ino);
    }

    /// Forgets what `name` in `parent` is.
    pub fn forget_entry(&mut self, parent: Ino, name: &[u8]) {
        self.invalidated();
        self.entries.remove(&(parent, name.to_vec()));
    }

    /// A directory changed: forgets its attributes and its listing pages.
    pub fn dir_changed(&mut self, dir: Ino) {
        self.invalidated();
        self.attrs.remove(&dir);
        self.forget_pages(dir);
    }

    fn forget_pages(&mut self, dir: Ino) {
        let pages: Vec<PageKey> = self
            .pages
            .range((dir, 0, false, 0)..=(dir, u64::MAX, true, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in pages {
            self.pages.remove(&k);
        }
    }

    /// Other clients' changes (a page of the change feed): forgets what they
    /// invalidate; a reset forgets everything. Chunks and extended attributes are not
    /// held here (open files keep slice lists; the kernel, ACLs).
    pub fn apply_changes(&mut self, c: &Changes) {
        if c.reset {
            self.clear();
            return;
        }
        if c.inodes.is_empty() && c.names.is_empty() && c.listings.is_empty() {
            return;
        }
        // Reads in flight may have seen the state before these changes.
        self.invalidated();
        for &ino in &c.inodes {
            self.attrs.remove(&ino);
            self.forget_pages(ino);
        }
        for (parent, name) in &c.names {
            self.entries.remove(&(*parent, name.clone()));
            self.forget_pages(*parent);
        }
        for &dir in &c.listings {
            self.forget_pages(dir);
        }
    }

    /// Everything held, as the invalidations that would forget it: before a reset,
    /// what caches filled from this one (the kernel's) have to drop too.
    pub fn held(&self) -> Changes {
        let mut c = Changes::default();
        c.inodes.extend(self.attrs.keys().copied());
        for ((parent, name), e) in &self.entries {
            c.names.insert((*parent, name.clone()));
            if let CachedEntry::Found(ino) = e.value {
                c.inodes.insert(ino);
            }
        }
        c.listings.extend(self.pages.keys().map(|k| k.0));
        c
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.invalidated();
        self.attrs.clear();
        self.entries.clear();
        self.pages.clear();
        self.order.clear();
    }

    /// Items held (attributes, entries, pages).
    pub fn len(&self) -> (usize, usize, usize) {
        (self.attrs.len(), self.entries.len(), self.pages.len())
    }

    fn remember(&mut self, key: Key) {
        self.order.push_back(key);
        let over = |c: &MetaCache| {
            c.attrs.len() > c.capacity || c.entries.len() > c.capacity || c.pages.len() > c.capacity
        };
        while over(self) {
            match self.order.pop_front() {
                Some(Key::Attr(i)) => {
                    self.attrs.remove(&i);
                }
                Some(Key::Entry(p, n)) => {
                    self.entries.remove(&(p, n));
                }
                Some(Key::Page(k)) => {
                    self.pages.remove(&k);
                }
                None => break,
            }
        }
        // Keys of items removed by invalidation stay in `order` until popped; bound
        // that backlog too.
        if self.order.len() > 4 * self.capacity.max(1) {
            let (a, e, p) = (&self.attrs, &self.entries, &self.pages);
            self.order.retain(|k| match k {
                Key::Attr(i) => a.contains_key(i),
                Key::Entry(pa, n) => e.contains_key(&(*pa, n.clone())),
                Key::Page(k) => p.contains_key(k),
            });
        }
    }
}

fn fresh<T>(t: Option<&Timed<T>>, now: u64, ttl: u64) -> Option<&T> {
    t.filter(|t| now.saturating_sub(t.at) < ttl && now >= t.at)
        .map(|t| &t.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FileType, Timespec};

    const S: u64 = 1_000_000_000;

    fn ttl(all: u64) -> MetaCacheTtl {
        MetaCacheTtl {
            attr: all,
            entry: all,
            negative: all,
            dir: all,
        }
    }

    fn attr(ino: u64) -> Attr {
        Attr {
            ino: Ino(ino),
            kind: FileType::RegularFile,
            perm: 0o644,
            uid: 0,
            gid: 0,
            nlink: 1,
            size: ino * 10,
            rdev: 0,
            atime: Timespec::default(),
            mtime: Timespec::default(),
            ctime: Timespec::default(),
            parent: Ino(0),
        }
    }

    #[test]
    fn items_expire_after_their_ttl() {
        let mut c = MetaCache::new(ttl(5 * S), 100);
        c.put_attr(attr(7), 0, c.ticket());
        c.put_entry(Ino(1), b"a", CachedEntry::Found(Ino(7)), 0, c.ticket());
        c.put_entry(Ino(1), b"b", CachedEntry::Missing, 0, c.ticket());
        assert_eq!(c.attr(Ino(7), 5 * S - 1).map(|a| a.size), Some(70));
        assert_eq!(c.entry(Ino(1), b"b", S), Some(CachedEntry::Missing));
        assert_eq!(c.attr(Ino(7), 5 * S), None);
        assert_eq!(c.entry(Ino(1), b"a", 5 * S), None);
    }

    #[test]
    fn zero_ttl_caches_nothing_and_negative_ttl_is_separate() {
        let mut c = MetaCache::new(
            MetaCacheTtl {
                negative: 0,
                ..ttl(S)
            },
            100,
        );
        c.put_entry(Ino(1), b"x", CachedEntry::Missing, 0, c.ticket());
        assert_eq!(c.entry(Ino(1), b"x", 0), None);
        let mut off = MetaCache::new(ttl(0), 100);
        off.put_attr(attr(1), 0, off.ticket());
        off.put_page(Ino(1), 0, true, 128, Vec::new(), 0, off.ticket());
        assert_eq!(off.len(), (0, 0, 0));
    }

    #[test]
    fn a_changed_dir_loses_its_pages_and_attrs_only() {
        let mut c = MetaCache::new(ttl(S), 100);
        c.put_attr(attr(2), 0, c.ticket());
        c.put_attr(attr(3), 0, c.ticket());
        c.put_page(Ino(2), 0, true, 128, Vec::new(), 0, c.ticket());
        c.put_page(Ino(2), 300, false, 256, Vec::new(), 0, c.ticket());
        c.put_page(Ino(3), 0, true, 128, Vec::new(), 0, c.ticket());
        assert!(
            c.page(Ino(3), 0, true, 256, 0).is_none(),
            "another page size"
        );
        c.dir_changed(Ino(2));
        assert!(c.attr(Ino(2), 0).is_none() && c.attr(Ino(3), 0).is_some());
        assert!(c.page(Ino(2), 0, true, 128, 0).is_none());
        assert!(c.page(Ino(2), 300, false, 256, 0).is_none());
        assert!(c.page(Ino(3), 0, true, 128, 0).is_some());
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_cached() {
        let mut c = MetaCache::new(ttl(S), 100);
        // A getattr takes its ticket and reads size 0 from the engine; meanwhile a
        // write commit changes the inode and invalidates it; then the read arrives.
        let before = c.ticket();
        c.forget_attr(Ino(4));
        let mut stale = attr(4);
        stale.size = 0;
        c.put_attr(stale, 0, before);
        assert!(c.attr(Ino(4), 0).is_none(), "stale attributes were cached");
        c.put_entry(Ino(1), b"n", CachedEntry::Missing, 0, before);
        c.put_page(Ino(1), 0, false, 128, Vec::new(), 0, before);
        assert_eq!(c.len(), (0, 0, 0));
        // Any invalidation counts, not just one of the same key: coarse but safe.
        let t = c.ticket();
        c.dir_changed(Ino(9));
        assert!(!c.still_valid(t));
        // A read that began after the invalidation is cached.
        c.put_attr(attr(4), 0, c.ticket());
        assert_eq!(c.attr(Ino(4), 0).map(|a| a.size), Some(40));
    }

    #[test]
    fn the_oldest_go_past_the_bound() {
        let mut c = MetaCache::new(ttl(S), 3);
        for i in 1..=5 {
            c.put_attr(attr(i), 0, c.ticket());
        }
        assert_eq!(c.len().0, 3);
        assert!(c.attr(Ino(1), 0).is_none() && c.attr(Ino(2), 0).is_none());
        assert!(c.attr(Ino(5), 0).is_some());
        // Invalidated keys do not pile up.
        for i in 0..100 {
            c.put_attr(attr(10 + i), 0, c.ticket());
            c.forget_attr(Ino(10 + i));
        }
        assert!(c.order.len() <= 12);
    }
}
