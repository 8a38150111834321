use super::*;
use crate::cache::meta::{CachedEntry, MetaCache, MetaCacheTtl};
use crate::format::Format;
use crate::kv::{Kv, KvPair, MemKv, Txn};
use crate::meta::Meta;
use crate::types::*;
use crate::Errno;
use proptest::prelude::*;
use std::sync::{Arc, Mutex};

#[test]
fn keys_map_to_what_they_invalidate() {
    let (i, p) = (Ino(7), Ino(3));
    assert_eq!(invalidation(&keys::attr(i)), Some(Invalidation::Inode(i)));
    assert_eq!(
        invalidation(&keys::dentry(p, b"n")),
        Some(Invalidation::Name(p, b"n".to_vec()))
    );
    assert_eq!(
        invalidation(&keys::dir_index(p, 9)),
        Some(Invalidation::Listing(p))
    );
    assert_eq!(
        invalidation(&keys::chunk(i, ChunkIndex(2))),
        Some(Invalidation::Chunk(i, ChunkIndex(2)))
    );
    assert_eq!(
        invalidation(&keys::xattr(i, b"user.a")),
        Some(Invalidation::Xattr(i))
    );
    for k in [
        keys::symlink(i),
        keys::counter(keys::NEXT_INODE),
        keys::gc(SliceId(1)),
        keys::unlinked(i),
        keys::staged(SliceId(1)),
        keys::session(1),
        keys::session_alive(1),
        keys::SETTING.to_vec(),
        b"R".to_vec(),
        b"A".to_vec(),
        // Malformed: a bare `D` without a name, a chunk key cut short.
        keys::dentry(p, b""),
        keys::chunk(i, ChunkIndex(1))[..12].to_vec(),
    ] {
        assert_eq!(invalidation(&k), None, "{k:?}");
    }
}

#[test]
fn a_page_of_keys_is_deduplicated() {
    let ks = [
        keys::attr(Ino(2)),
        keys::attr(Ino(2)),
        keys::dentry(Ino(1), b"a"),
        keys::dir_index(Ino(1), 5),
        keys::chunk(Ino(2), ChunkIndex(0)),
        keys::counter(keys::NEXT_SLICE),
    ];
    let c = Changes::of_keys(ks.iter().map(|k| k.as_slice()));
    assert_eq!(c.len(), 4);
    assert!(!c.is_empty() && !c.reset);
    assert!(Changes::of_keys([keys::session(1).as_slice()]).is_empty());
    assert!(!Changes::everything().is_empty());
}

fn attr(ino: u64, kind: FileType) -> Attr {
    Attr {
        ino: Ino(ino),
        kind,
        perm: 0o755,
        uid: 0,
        gid: 0,
        nlink: 1,
        size: 0,
        rdev: 0,
        atime: Timespec::default(),
        mtime: Timespec::default(),
        ctime: Timespec::default(),
        parent: Ino(1),
    }
}

const FOREVER: MetaCacheTtl = MetaCacheTtl {
    attr: u64::MAX,
    entry: u64::MAX,
    negative: u64::MAX,
    dir: u64::MAX,
};

#[test]
fn the_cache_forgets_what_changes_invalidate() {
    let mut c = MetaCache::new(FOREVER, 100);
    let t = c.ticket();
    c.put_attr(attr(1, FileType::Directory), 0, t);
    c.put_attr(attr(2, FileType::Directory), 0, t);
    c.put_attr(attr(5, FileType::RegularFile), 0, t);
    c.put_entry(Ino(1), b"a", CachedEntry::Found(Ino(5)), 0, t);
    c.put_entry(Ino(1), b"b", CachedEntry::Missing, 0, t);
    c.put_page(Ino(1), 0, false, 10, Vec::new(), 0, t);
    c.put_page(Ino(2), 0, true, 10, Vec::new(), 0, t);
    let held = c.held();
    assert_eq!(held.inodes.len(), 3);
    assert_eq!(held.names.len(), 2);
    assert_eq!(held.listings.len(), 2);

    // Chunks and xattrs are not held here: nothing is invalidated, tickets hold.
    let t = c.ticket();
    let data = Changes::of_keys([
        keys::chunk(Ino(5), ChunkIndex(0)).as_slice(),
        keys::xattr(Ino(5), b"user.x").as_slice(),
    ]);
    c.apply_changes(&data);
    assert!(c.still_valid(t));
    assert_eq!(c.len(), (3, 2, 2));

    // A new name "b" in 1: the negative entry and 1's listing go, the rest stays.
    c.apply_changes(&Changes::of_keys([keys::dentry(Ino(1), b"b").as_slice()]));
    assert!(!c.still_valid(t), "reads in flight must not be cached");
    assert_eq!(c.entry(Ino(1), b"b", 0), None);
    assert!(c.entry(Ino(1), b"a", 0).is_some());
    assert!(c.page(Ino(1), 0, false, 10, 0).is_none());
    assert!(c.page(Ino(2), 0, true, 10, 0).is_some());
    assert!(c.attr(Ino(1), 0).is_some());

    // Directory 2 was renamed (its `..` changed): its attributes and listing go.
    c.apply_changes(&Changes::of_keys([keys::attr(Ino(2)).as_slice()]));
    assert!(c.attr(Ino(2), 0).is_none());
    assert!(c.page(Ino(2), 0, true, 10, 0).is_none());

    c.put_page(Ino(1), 0, false, 10, Vec::new(), 0, c.ticket());
    c.apply_changes(&Changes::of_keys([keys::dir_index(Ino(1), 4).as_slice()]));
    assert!(c.page(Ino(1), 0, false, 10, 0).is_none());

    c.apply_changes(&Changes::everything());
    assert_eq!(c.len(), (0, 0, 0));
}

#[test]
fn ttls_can_be_shortened_and_lengthened() {
    let s = 1_000_000_000;
    let mut c = MetaCache::new(FOREVER, 100);
    c.put_attr(attr(5, FileType::RegularFile), 0, c.ticket());
    let short = MetaCacheTtl {
        attr: s,
        entry: s,
        negative: 0,
        dir: s,
    };
    c.set_ttl(short);
    assert!(c.attr(Ino(5), 2 * s).is_none());
    c.set_ttl(FOREVER);
    assert!(c.attr(Ino(5), 2 * s).is_some());
}

// The reference model: client B runs operations on the shared engine; the keys its
// transactions wrote are client A's change feed. After applying the feed, everything
// A's cache would answer equals what the engine answers.

/// An engine that records the keys its committed transactions wrote.
struct Recording {
    inner: MemKv,
    written: Mutex<Vec<Vec<u8>>>,
}

struct RecordingTxn<'a> {
    inner: &'a mut dyn Txn,
    keys: &'a mut Vec<Vec<u8>>,
}

impl Txn for RecordingTxn<'_> {
    fn get(&mut self, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.keys.push(key.to_vec());
        self.inner.set(key, value)
    }
    fn delete(&mut self, key: &[u8]) {
        self.keys.push(key.to_vec());
        self.inner.delete(key)
    }
    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> crate::Result<Vec<KvPair>> {
        self.inner.scan(start, end, limit)
    }
    fn get_many(&mut self, keys: &[Vec<u8>]) -> crate::Result<Vec<Option<Vec<u8>>>> {
        self.inner.get_many(keys)
    }
}

impl Kv for Recording {
    fn txn(&self, f: &mut dyn FnMut(&mut dyn Txn) -> crate::Result<()>) -> crate::Result<()> {
        let mut keys = Vec::new();
        self.inner.txn(&mut |t| {
            keys.clear();
            f(&mut RecordingTxn {
                inner: t,
                keys: &mut keys,
            })
        })?;
        self.written.lock().unwrap().extend(keys);
        Ok(())
    }
    fn sync(&self) -> crate::Result<()> {
        Ok(())
    }
}

const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

/// The two clients: A only reads (through its cache), B changes things.
struct World {
    kv: Arc<Recording>,
    a: Meta,
    b: Meta,
    cache: MetaCache,
    /// Directories and files known (inodes are looked up afresh by B).
    dirs: Vec<Ino>,
    files: Vec<Ino>,
    now: i64,
}

fn ts(sec: i64) -> Timespec {
    Timespec::new(sec, 0)
}

impl World {
    fn new() -> World {
        let kv = Arc::new(Recording {
            inner: MemKv::new(),
            written: Mutex::new(Vec::new()),
        });
        Meta::format(&*kv, &Format::new("feed-vol", "u"), false, ts(1)).unwrap();
        let a = Meta::load(kv.clone()).unwrap();
        let b = Meta::load(kv.clone()).unwrap();
        let c = Ctx::root();
        let d1 = b.mkdir(&c, Ino::ROOT, b"d1", 0o755, 0, ts(2)).unwrap().ino;
        let d2 = b.mkdir(&c, Ino::ROOT, b"d2", 0o755, 0, ts(2)).unwrap().ino;
        let f = b
            .mknod(&c, d1, b"a", FileType::RegularFile, 0o644, 0, 0, ts(2))
            .unwrap()
            .ino;
        kv.written.lock().unwrap().clear();
        World {
            kv,
            a,
            b,
            cache: MetaCache::new(FOREVER, 1 << 16),
            dirs: vec![Ino::ROOT, d1, d2],
            files: vec![f],
            now: 10,
        }
    }

    fn dir(&self, i: u8) -> Ino {
        self.dirs[i as usize % self.dirs.len()]
    }

    fn name(&self, i: u8) -> &'static [u8] {
        NAMES[i as usize % NAMES.len()]
    }

    fn inode(&self, i: u8) -> Ino {
        let all: Vec<Ino> = self.dirs.iter().chain(&self.files).copied().collect();
        all[i as usize % all.len()]
    }

    /// A reads something from the engine and caches it, as the mount does
    /// (`vfs::meta_cache`). With `slow`, B's `op` runs (and its feed is applied)
    /// between the read and the put.
    fn a_reads(&mut self, r: &Read, slow: Option<&Op>) {
        let c = Ctx::root();
        let ticket = self.cache.ticket();
        let mut attrs = Vec::new();
        let mut entries = Vec::new();
        let mut page = None;
        match *r {
            Read::Getattr(i) => {
                if let Ok(a) = self.a.getattr(self.inode(i)) {
                    attrs.push(a);
                }
            }
            Read::Lookup(d, n) => {
                let (dir, name) = (self.dir(d), self.name(n));
                match self.a.lookup(&c, dir, name) {
                    Ok(a) => {
                        entries.push((dir, name.to_vec(), CachedEntry::Found(a.ino)));
                        if a.kind == FileType::Directory {
                            self.dirs.push(a.ino);
                        } else {
                            self.files.push(a.ino);
                        }
                        attrs.push(a);
                    }
                    Err(Errno::ENOENT) => entries.push((dir, name.to_vec(), CachedEntry::Missing)),
                    Err(_) => {}
                }
            }
            Read::Readdir(d, offset, limit, plus) => {
                let dir = self.dir(d);
                let (offset, limit) = ([0, 1, 2, 3, 4][offset as usize % 5], 1 + limit as u32 % 4);
                if let Ok(es) = self.a.readdir(&c, dir, offset, limit as usize, plus) {
                    for e in &es {
                        if e.name != b"." && e.name != b".." {
                            entries.push((dir, e.name.clone(), CachedEntry::Found(e.ino)));
                        }
                        attrs.extend(e.attr.clone());
                    }
                    let names: Vec<DirEntry> = es
                        .into_iter()
                        .map(|e| DirEntry { attr: None, ..e })
                        .collect();
                    page = Some((dir, offset, plus, limit, names));
                }
            }
        }
        if let Some(op) = slow {
            self.b_does(op);
            self.feed();
        }
        let now = self.now_ns();
        for a in attrs {
            self.cache.put_attr(a, now, ticket);
        }
        for (dir, name, e) in entries {
            self.cache.put_entry(dir, &name, e, now, ticket);
        }
        if let Some((dir, offset, plus, limit, names)) = page {
            self.cache
                .put_page(dir, offset, plus, limit, names, now, ticket);
        }
    }

    fn now_ns(&self) -> u64 {
        self.now as u64 * 1_000_000_000
    }

    /// B changes something (errors are fine: the op just does nothing).
    fn b_does(&mut self, op: &Op) {
        let c = Ctx::root();
        self.now += 1;
        let now = ts(self.now);
        let b = &self.b;
        match *op {
            Op::Create(d, n) => {
                if let Ok(a) = b.mknod(
                    &c,
                    self.dir(d),
                    self.name(n),
                    FileType::RegularFile,
                    0o644,
                    0,
                    0,
                    now,
                ) {
                    self.files.push(a.ino);
                }
            }
            Op::Mkdir(d, n) => {
                if let Ok(a) = b.mkdir(&c, self.dir(d), self.name(n), 0o755, 0, now) {
                    self.dirs.push(a.ino);
                }
            }
            Op::Symlink(d, n) => {
                if let Ok(a) = b.symlink(&c, self.dir(d), self.name(n), b"target", now) {
                    self.files.push(a.ino);
                }
            }
            Op::Link(i, d, n) => {
                let _ = b.link(&c, self.inode(i), self.dir(d), self.name(n), now);
            }
            Op::Unlink(d, n) => {
                let _ = b.unlink(&c, self.dir(d), self.name(n), now);
            }
            Op::Rmdir(d, n) => {
                let _ = b.rmdir(&c, self.dir(d), self.name(n), now);
            }
            Op::Rename(d, n, d2, n2, exchange) => {
                let flags = RenameFlags {
                    noreplace: false,
                    exchange,
                };
                let (p, q) = (self.dir(d), self.dir(d2));
                let _ = b.rename(&c, p, self.name(n), q, self.name(n2), flags, now);
            }
            Op::Chmod(i, mode) => {
                let set = SetAttr {
                    mode: Some(0o700 | mode as u32),
                    ..Default::default()
                };
                let _ = b.setattr(&c, self.inode(i), &set, now);
            }
            Op::Truncate(i, size) => {
                let set = SetAttr {
                    size: Some(size as u64 * 1000),
                    ..Default::default()
                };
                let _ = b.setattr(&c, self.inode(i), &set, now);
            }
            Op::Write(i, pos) => {
                if let Ok(id) = b.new_slice_id() {
                    let s = crate::chunk::SliceRef::new(pos as u32 * 100, id, 100);
                    let _ = b.write_slice(self.inode(i), ChunkIndex(0), s, now);
                }
            }
            Op::Setxattr(i) => {
                let ino = self.inode(i);
                let _ = b.setxattr(&c, ino, b"user.k", b"v", XattrMode::Any, now);
            }
        }
    }

    /// Delivers the keys written since the last delivery to A's cache.
    fn feed(&mut self) {
        let keys = std::mem::take(&mut *self.kv.written.lock().unwrap());
        let changes = Changes::of_keys(keys.iter().map(|k| k.as_slice()));
        self.cache.apply_changes(&changes);
    }

    /// Everything A's cache would answer, compared with the engine: the first
    /// difference found.
    fn stale(&self) -> Option<String> {
        let c = Ctx::root();
        let now = self.now_ns();
        let held = self.cache.held();
        for &ino in &held.inodes {
            if let Some(cached) = self.cache.attr(ino, now) {
                let fresh = self.a.getattr(ino);
                if fresh.as_ref() != Ok(&cached) {
                    return Some(format!("attr {ino:?}: cached {cached:?}, engine {fresh:?}"));
                }
            }
        }
        for (dir, name) in &held.names {
            let Some(cached) = self.cache.entry(*dir, name, now) else {
                continue;
            };
            let fresh = match self.a.lookup(&c, *dir, name) {
                Ok(a) => Some(CachedEntry::Found(a.ino)),
                Err(Errno::ENOENT) => Some(CachedEntry::Missing),
                Err(_) => None,
            };
            if fresh != Some(cached) {
                return Some(format!(
                    "entry {dir:?}/{name:?}: cached {cached:?}, engine {fresh:?}"
                ));
            }
        }
        for &dir in &held.listings {
            for offset in 0..5 {
                for plus in [false, true] {
                    for limit in 1..=4u32 {
                        let Some(cached) = self.cache.page(dir, offset, plus, limit, now) else {
                            continue;
                        };
                        let fresh: Option<Vec<DirEntry>> =
                            self.a.readdir(&c, dir, offset, limit as usize, false).ok();
                        if fresh.as_deref() != Some(cached) {
                            return Some(format!(
                                "page {dir:?}@{offset}: cached {cached:?}, engine {fresh:?}"
                            ));
                        }
                    }
                }
            }
        }
        None
    }
}

#[derive(Clone, Debug)]
enum Read {
    Getattr(u8),
    Lookup(u8, u8),
    Readdir(u8, u8, u8, bool),
}

#[derive(Clone, Debug)]
enum Op {
    Create(u8, u8),
    Mkdir(u8, u8),
    Symlink(u8, u8),
    Link(u8, u8, u8),
    Unlink(u8, u8),
    Rmdir(u8, u8),
    Rename(u8, u8, u8, u8, bool),
    Chmod(u8, u8),
    Truncate(u8, u8),
    Write(u8, u8),
    Setxattr(u8),
}

#[derive(Clone, Debug)]
enum Step {
    /// A reads and caches.
    Read(Read),
    /// A read whose answer arrives after B's op and its feed.
    SlowRead(Read, Op),
    /// B changes something; its keys reach A's feed later.
    Change(Op),
    /// A applies the feed.
    Feed,
}

fn read() -> impl Strategy<Value = Read> {
    let b = any::<u8>;
    prop_oneof![
        b().prop_map(Read::Getattr),
        (b(), b()).prop_map(|(d, n)| Read::Lookup(d, n)),
        (b(), b(), b(), any::<bool>()).prop_map(|(d, o, l, p)| Read::Readdir(d, o, l, p)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let b = any::<u8>;
    prop_oneof![
        (b(), b()).prop_map(|(d, n)| Op::Create(d, n)),
        (b(), b()).prop_map(|(d, n)| Op::Mkdir(d, n)),
        (b(), b()).prop_map(|(d, n)| Op::Symlink(d, n)),
        (b(), b(), b()).prop_map(|(i, d, n)| Op::Link(i, d, n)),
        (b(), b()).prop_map(|(d, n)| Op::Unlink(d, n)),
        (b(), b()).prop_map(|(d, n)| Op::Rmdir(d, n)),
        (b(), b(), b(), b(), any::<bool>()).prop_map(|(d, n, e, m, x)| Op::Rename(d, n, e, m, x)),
        (b(), b()).prop_map(|(i, m)| Op::Chmod(i, m % 64)),
        (b(), b()).prop_map(|(i, s)| Op::Truncate(i, s % 8)),
        (b(), b()).prop_map(|(i, p)| Op::Write(i, p % 8)),
        b().prop_map(Op::Setxattr),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => read().prop_map(Step::Read),
        1 => (read(), op()).prop_map(|(r, o)| Step::SlowRead(r, o)),
        3 => op().prop_map(Step::Change),
        2 => Just(Step::Feed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After the feed is applied, A's cache answers only what the engine would.
    #[test]
    fn after_the_feed_the_cache_agrees_with_the_engine(steps in prop::collection::vec(step(), 1..60)) {
        let mut w = World::new();
        for s in &steps {
            match s {
                Step::Read(r) => w.a_reads(r, None),
                Step::SlowRead(r, o) => w.a_reads(r, Some(o)),
                Step::Change(o) => w.b_does(o),
                Step::Feed => {
                    w.feed();
                    if let Some(why) = w.stale() {
                        prop_assert!(false, "after {s:?}: {why}");
                    }
                }
            }
        }
        w.feed();
        if let Some(why) = w.stale() {
            prop_assert!(false, "at the end: {why}");
        }
    }
}

/// The checker above does see stale answers: without the feed, or with a feed that
/// only drops attributes, A's cache answers old state.
#[test]
fn without_the_feed_the_cache_is_stale() {
    let scenario = |apply: &dyn Fn(&mut World)| {
        let mut w = World::new();
        // A lists d1 (2) and stats what is there; B moves d2 under d1 and removes
        // d1/a.
        w.a_reads(&Read::Readdir(2, 0, 3, true), None);
        w.a_reads(&Read::Readdir(1, 0, 3, true), None);
        w.a_reads(&Read::Lookup(1, 0), None);
        w.a_reads(&Read::Lookup(2, 1), None);
        w.b_does(&Op::Unlink(1, 0));
        w.b_does(&Op::Create(2, 1));
        apply(&mut w);
        w.stale()
    };
    assert!(scenario(&|_| {}).is_some(), "no feed");
    let attrs_only = |w: &mut World| {
        let keys = std::mem::take(&mut *w.kv.written.lock().unwrap());
        let mut c = Changes::of_keys(keys.iter().map(|k| k.as_slice()));
        c.names.clear();
        c.listings.clear();
        w.cache.apply_changes(&c);
    };
    assert!(scenario(&attrs_only).is_some(), "names ignored");
    assert_eq!(scenario(&|w| w.feed()), None);

    // A renamed directory's `..` changes only through its attributes' key.
    let mut w = World::new();
    w.a_reads(&Read::Readdir(2, 0, 3, false), None);
    let d2 = w.dirs[2];
    let c = Ctx::root();
    w.b.rename(
        &c,
        Ino::ROOT,
        b"d2",
        w.dirs[1],
        b"x",
        RenameFlags::default(),
        ts(50),
    )
    .unwrap();
    let keys = std::mem::take(&mut *w.kv.written.lock().unwrap());
    let c = Changes::of_keys(keys.iter().map(|k| k.as_slice()));
    assert!(c.inodes.contains(&d2), "{c:?}");
    let mut names_only = c.clone();
    names_only.inodes.clear();
    w.cache.apply_changes(&names_only);
    assert!(
        w.stale().is_some_and(|s| s.contains("page")),
        "{:?}",
        w.stale()
    );
    w.cache.apply_changes(&c);
    assert_eq!(w.stale(), None);
}
