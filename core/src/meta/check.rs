//! The invariants of ARCHITECTURE.md ("Invariants"), checked over a whole metadata
//! keyspace.
//!
//! Used by the core's unit and property tests, by the simulator (during and after every
//! run) and, later, by an `fsck`. The checker never panics on corrupt values: every
//! problem it finds is a [`Violation`], so a caller can print all of them at once.
//!
//! What is checked:
//! - every key is one of the layout's, and every value decodes;
//! - the root exists, is a directory and is its own parent;
//! - every inode key belongs to a live inode; `D` entries and `E` index keys match one to
//!   one, and every cookie is below the directory's `next_seq`;
//! - every entry points to a live inode of the entry's type; a directory is linked exactly
//!   once and its `parent` field names that directory; a directory's `nlink` is 2 + its
//!   subdirectories; a non-directory's `nlink` is the number of entries naming it;
//! - every inode is reachable from the root (so there are no cycles), except inodes
//!   with `nlink == 0`, which exist only while open (a `U` key); a directory removed
//!   while open has no names and no entries;
//! - chunk keys belong to regular files and lie before the end of the file, their records
//!   are well formed, and no data record shows bytes past the end of the file;
//! - every non-zero slice id appears in at most one chunk; no queued (`G`) slice is
//!   referenced; every id is below its counter (`nextInode`, `nextSlice`, `nextSession`)
//!   when ids come from the counters ([`CheckOptions::ids_from_counters`]);
//! - the counters `totalInodes` and `usedSpace` match the inodes;
//! - every owner's lock ranges (`A ino K`) are sorted, disjoint and merged, no two
//!   owners hold conflicting locks over a common byte, and the `K session ino` index
//!   names exactly the (session, inode) pairs that hold locks.

use super::attr_codec::{decode_entry, decode_inode, decode_u32, decode_u64, Inode};
use super::keys;
use super::locks::{decode_ranges, LockRange};
use crate::chunk::{decode_slices, visible, SliceRef};
use crate::errno::Result;
use crate::format::Format;
use crate::kv::{self, Kv, KvPair};
use crate::types::{ChunkIndex, FileType, Ino, SliceId, CHUNK_SIZE};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Violations reported per check before the rest are summarised as a count.
const MAX_REPORTED: usize = 100;

/// One broken invariant: which one, and where.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Violation {
    /// A short stable name of the invariant, e.g. `"nlink"` or `"slice-shared"`.
    pub invariant: &'static str,
    /// What was found, naming the keys or inodes involved.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// How much the checker may assume about the clients of the volume.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CheckOptions {
    /// No client has a file open (every client is gone and orphans were cleaned up):
    /// then no inode may be unlinked-but-open (`nlink == 0`, `U` keys).
    pub no_open_files: bool,
    /// Every inode, slice and session id was handed out by its counter, as on a real
    /// volume: then every id in use is below its counter. (Unit tests that commit
    /// invented slice ids leave this off.)
    pub ids_from_counters: bool,
}

/// Reads the whole keyspace of `kv` in one read transaction.
pub fn dump(kv: &dyn Kv) -> Result<Vec<KvPair>> {
    kv::read(kv, |t| t.scan(&[], &[0xff; 16], usize::MAX))
}

/// Checks the invariants over the whole keyspace of `kv`, read in pages
/// ([`kv::for_each_page`]): the pairs are parsed as they come, never all held at once,
/// and no answer has to carry the whole keyspace. Pages are read at different moments,
/// so on a volume that clients are changing a violation may be a change caught half-way.
pub fn check_invariants(kv: &dyn Kv, opts: CheckOptions) -> Result<Vec<Violation>> {
    check_invariants_with(kv, opts, &mut |_, _| Ok(()))
}

/// Something else done with every (key, value) a check reads.
pub type AlsoVisit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<()>;

/// [`check_invariants`], handing every pair read to `also` as well, so that another
/// pass over the keyspace (`fsck`'s census) rides on the same reads.
pub fn check_invariants_with(
    kv: &dyn Kv,
    opts: CheckOptions,
    also: AlsoVisit,
) -> Result<Vec<Violation>> {
    let mut c = Checker::default();
    kv::for_each_page::<crate::errno::Errno>(kv, &[], &[0xff; 16], &mut |page| {
        for (k, v) in page {
            c.parse(k, v);
            also(k, v)?;
        }
        Ok(())
    })?;
    Ok(c.check(opts))
}

/// Checks the invariants over a keyspace given as (key, value) pairs in any order.
pub fn check_keyspace<'a>(
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    opts: CheckOptions,
) -> Vec<Violation> {
    let mut c = Checker::default();
    for (k, v) in pairs {
        c.parse(k, v);
    }
    c.check(opts)
}

impl Checker {
    /// Every check over what was parsed.
    fn check(mut self, opts: CheckOptions) -> Vec<Violation> {
        let c = &mut self;
        c.check_inode_keys();
        c.check_entries();
        c.check_links(opts);
        c.check_reachable();
        c.check_chunks(opts);
        c.check_counters(opts);
        c.check_locks();
        self.finish()
    }
}

#[derive(Default)]
struct Checker {
    out: Vec<Violation>,
    dropped: usize,
    setting: bool,
    counters: BTreeMap<String, u64>,
    inodes: BTreeMap<Ino, Inode>,
    /// Inodes that have some `A` key, with the tags seen.
    keyed: BTreeMap<Ino, BTreeSet<u8>>,
    /// (parent, name) → entry.
    entries: BTreeMap<(Ino, Vec<u8>), super::attr_codec::Entry>,
    /// (parent, seq) → name.
    index: BTreeMap<(Ino, u64), Vec<u8>>,
    chunks: BTreeMap<(Ino, ChunkIndex), Vec<SliceRef>>,
    gc: BTreeSet<SliceId>,
    unlinked: BTreeMap<Ino, u64>,
    sessions: BTreeSet<u64>,
    /// Symlink target lengths.
    targets: BTreeMap<Ino, usize>,
    /// (inode, session, owner) → the owner's lock ranges.
    locks: BTreeMap<(Ino, u64, u64), Vec<LockRange>>,
    /// The `K` index: (session, inode).
    held: BTreeSet<(u64, Ino)>,
}

fn ino_at(k: &[u8]) -> Ino {
    Ino(u64::from_be_bytes(
        k[1..9].try_into().expect("9-byte prefix"),
    ))
}

fn show(k: &[u8]) -> String {
    k.iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

impl Checker {
    fn bad(&mut self, invariant: &'static str, detail: String) {
        if self.out.len() < MAX_REPORTED {
            self.out.push(Violation { invariant, detail });
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self) -> Vec<Violation> {
        if self.dropped > 0 {
            let n = self.dropped;
            self.dropped = 0;
            self.out.push(Violation {
                invariant: "more",
                detail: format!("{n} more violations not shown"),
            });
        }
        self.out
    }

    fn parse(&mut self, k: &[u8], v: &[u8]) {
        if k == keys::SETTING {
            self.setting = true;
            let ok = std::str::from_utf8(v)
                .ok()
                .map(|s| Format::from_json(s).is_ok())
                .unwrap_or(false);
            if !ok {
                self.bad("decode", "the volume settings do not parse".into());
            }
            return;
        }
        match k.first() {
            Some(b'C') => match decode_u64(v) {
                Ok(n) => {
                    let name = String::from_utf8_lossy(&k[1..]).into_owned();
                    self.counters.insert(name, n);
                }
                Err(_) => self.bad("decode", format!("counter {} is not a u64", show(k))),
            },
            Some(b'A') if k.len() >= 10 => self.parse_inode_key(k, v),
            Some(b'G') if k.len() == 9 => match decode_u32(v) {
                Ok(_) => {
                    self.gc.insert(SliceId(keys::id_of(k).unwrap_or(0)));
                }
                Err(_) => self.bad("decode", format!("gc entry {} has no size", show(k))),
            },
            Some(b'U') if k.len() == 9 => match decode_u64(v) {
                Ok(s) => {
                    self.unlinked.insert(Ino(keys::id_of(k).unwrap_or(0)), s);
                }
                Err(_) => self.bad("decode", format!("{} has no session", show(k))),
            },
            Some(b'H') if k.len() == 9 => {
                self.sessions.insert(keys::id_of(k).unwrap_or(0));
            }
            // A session's last heartbeat.
            Some(b'L') if k.len() == 9 && v.len() == 8 => {}
            Some(b'K') if v.is_empty() && keys::held_of(k).is_some() => {
                let (session, ino) = keys::held_of(k).unwrap_or((0, Ino(0)));
                self.held.insert((session, ino));
            }
            // A staged (writeback) slice not uploaded yet: no invariant beyond its form.
            Some(b'W') if k.len() == 9 && v.is_empty() => {}
            // The replicated engine's own (`replica::apply`, `replica::members`): applied index, client floors (8 bytes before
            // they carried the index of the latest command), request outcomes, membership.
            Some(b'R') if matches!((k.len(), v.len()), (1, 8) | (9, 8) | (9, 16) | (17, 1)) => {}
            Some(b'R') if k == crate::replica::MEMBERS_KEY.as_slice() => {}
            // Cache groups: the peer secret and members' registrations.
            Some(b'N') if k == keys::PEER_SECRET && v.len() == 32 => {}
            Some(b'N') if keys::group_member_of(k).is_some() => {
                if crate::cache::group::Registration::decode(v).is_none() {
                    self.bad("decode", format!("{} is not a registration", show(k)));
                }
            }
            _ => self.bad("key", format!("unknown key {}", show(k))),
        }
    }

    fn parse_inode_key(&mut self, k: &[u8], v: &[u8]) {
        let ino = ino_at(k);
        let tag = k[9];
        self.keyed.entry(ino).or_default().insert(tag);
        match tag {
            b'I' if k.len() == 10 => match decode_inode(ino, v) {
                Ok(n) => {
                    self.inodes.insert(ino, n);
                }
                Err(_) => self.bad("decode", format!("attributes of {ino:?} do not decode")),
            },
            b'D' => match decode_entry(v) {
                Ok(e) => {
                    self.entries
                        .insert((ino, k[keys::NAME_OFFSET..].to_vec()), e);
                }
                Err(_) => self.bad("decode", format!("entry {} does not decode", show(k))),
            },
            b'E' if k.len() == 18 => {
                let seq = keys::seq_of_dir_index(k).unwrap_or(0);
                self.index.insert((ino, seq), v.to_vec());
            }
            b'C' if k.len() == 14 => match decode_slices(v) {
                Ok(list) => {
                    let idx = keys::chunk_index_of(k).unwrap_or(ChunkIndex(0));
                    self.chunks.insert((ino, idx), list);
                }
                Err(_) => self.bad("decode", format!("chunk {} does not decode", show(k))),
            },
            b'S' if k.len() == 10 => {
                self.targets.insert(ino, v.len());
            }
            b'X' => {}
            b'K' if k.len() == 26 => match decode_ranges(v) {
                Ok(ranges) => {
                    let (session, owner) = keys::lock_owner_of(k).unwrap_or((0, 0));
                    self.locks.insert((ino, session, owner), ranges);
                }
                Err(_) => self.bad("decode", format!("locks {} do not decode", show(k))),
            },
            _ => self.bad("key", format!("unknown inode key {}", show(k))),
        }
    }

    fn check_inode_keys(&mut self) {
        if !self.setting {
            self.bad("format", "no volume settings".into());
        }
        match self.inodes.get(&Ino::ROOT) {
            None => self.bad("root", "the root inode is missing".into()),
            Some(r) if !r.is_dir() || r.attr.parent != Ino::ROOT => {
                let detail = format!(
                    "the root is {:?} with parent {:?}",
                    r.attr.kind, r.attr.parent
                );
                self.bad("root", detail)
            }
            Some(_) => {}
        }
        let keyed = std::mem::take(&mut self.keyed);
        for (&ino, tags) in &keyed {
            let Some(n) = self.inodes.get(&ino) else {
                let tags: String = tags.iter().map(|&t| t as char).collect();
                self.bad(
                    "orphan-key",
                    format!("keys {tags} of missing inode {ino:?}"),
                );
                continue;
            };
            let kind = n.attr.kind;
            let size = n.attr.size;
            for &t in tags {
                let ok = match t {
                    b'D' | b'E' => kind == FileType::Directory,
                    b'C' => kind == FileType::RegularFile,
                    b'S' => kind == FileType::Symlink,
                    _ => true,
                };
                if !ok {
                    let detail = format!("{kind:?} {ino:?} has a '{}' key", t as char);
                    self.bad("key-kind", detail);
                }
            }
            let has_target = tags.contains(&b'S');
            if kind == FileType::Symlink && !has_target {
                self.bad(
                    "symlink",
                    format!("symlink {ino:?} has no target (size {size})"),
                );
            }
        }
        self.keyed = keyed;
    }

    fn check_entries(&mut self) {
        let mut seen_index = BTreeSet::new();
        let entries = std::mem::take(&mut self.entries);
        for (&(parent, ref name), &e) in &entries {
            let shown = format!("{parent:?}/{}", String::from_utf8_lossy(name));
            match self
                .inodes
                .get(&parent)
                .map(|p| (p.is_dir(), p.attr.nlink, p.next_seq))
            {
                Some((true, nlink, next_seq)) => {
                    if nlink == 0 {
                        self.bad("removed-dir", format!("{shown} is in a removed directory"));
                    }
                    if e.seq < 3 || e.seq >= next_seq.max(3) {
                        let d = format!("{shown} has cookie {} (next {next_seq})", e.seq);
                        self.bad("cookie", d);
                    }
                }
                Some(_) => self.bad("entry", format!("{shown}: parent is not a directory")),
                None => {} // reported as an orphan key
            }
            match self.index.get(&(parent, e.seq)) {
                Some(n) if n == name => {
                    seen_index.insert((parent, e.seq));
                }
                other => {
                    let d = format!(
                        "{shown} cookie {} indexes {:?}",
                        e.seq,
                        other.map(|n| show(n))
                    );
                    self.bad("index", d);
                }
            }
            match self.inodes.get(&e.ino) {
                None => self.bad("dangling", format!("{shown} → missing {:?}", e.ino)),
                Some(n) if n.attr.kind != e.kind => {
                    let d = format!(
                        "{shown} says {:?}, {:?} is {:?}",
                        e.kind, e.ino, n.attr.kind
                    );
                    self.bad("entry-kind", d)
                }
                Some(_) => {}
            }
        }
        self.entries = entries;
        let stray: Vec<_> = self
            .index
            .iter()
            .filter(|(k, _)| !seen_index.contains(k))
            .map(|((p, s), n)| format!("{p:?} cookie {s} → {}", show(n)))
            .collect();
        for s in stray {
            self.bad("index", format!("index key without entry: {s}"));
        }
    }

    fn check_links(&mut self, opts: CheckOptions) {
        let mut links: BTreeMap<Ino, Vec<Ino>> = BTreeMap::new();
        let mut subdirs: BTreeMap<Ino, u32> = BTreeMap::new();
        for ((parent, _), e) in &self.entries {
            links.entry(e.ino).or_default().push(*parent);
            if e.kind == FileType::Directory {
                *subdirs.entry(*parent).or_default() += 1;
            }
        }
        let inodes: Vec<Inode> = self.inodes.values().cloned().collect();
        for n in inodes {
            let ino = n.ino();
            let parents = links.get(&ino).cloned().unwrap_or_default();
            if n.is_dir() && self.unlinked.contains_key(&ino) {
                // Removed while open: no links, no entries, kept until the last release.
                if n.attr.nlink != 0 || !parents.is_empty() || subdirs.contains_key(&ino) {
                    let d = format!(
                        "removed open dir {ino:?} has nlink {}, names in {parents:?}",
                        n.attr.nlink
                    );
                    self.bad("removed-dir", d);
                }
                if opts.no_open_files {
                    self.bad(
                        "orphan",
                        format!("dir {ino:?} is removed-but-open with no client left"),
                    );
                }
            } else if n.is_dir() {
                let want = 2 + subdirs.get(&ino).copied().unwrap_or(0);
                if n.attr.nlink != want {
                    self.bad(
                        "nlink",
                        format!("dir {ino:?} has nlink {} not {want}", n.attr.nlink),
                    );
                }
                if ino == Ino::ROOT {
                    if !parents.is_empty() {
                        self.bad("root", format!("the root is linked from {parents:?}"));
                    }
                } else if parents.len() != 1 {
                    self.bad(
                        "dir-links",
                        format!("dir {ino:?} is linked from {parents:?}"),
                    );
                } else if parents[0] != n.attr.parent {
                    let d = format!(
                        "dir {ino:?} is in {:?}, says {:?}",
                        parents[0], n.attr.parent
                    );
                    self.bad("parent", d);
                }
            } else {
                let l = parents.len() as u32;
                if n.attr.nlink != l {
                    let d = format!("{ino:?} has nlink {} and {l} names", n.attr.nlink);
                    self.bad("nlink", d);
                }
                if l == 0 && !self.unlinked.contains_key(&ino) {
                    self.bad("orphan", format!("{ino:?} has no names and no U key"));
                }
                if l == 0 && opts.no_open_files {
                    self.bad(
                        "orphan",
                        format!("{ino:?} is unlinked-but-open with no client left"),
                    );
                }
                if let Some(&len) = self.targets.get(&ino) {
                    if n.attr.size != len as u64 {
                        let d =
                            format!("symlink {ino:?} has size {} and target {len}", n.attr.size);
                        self.bad("symlink", d);
                    }
                }
            }
        }
        let unlinked: Vec<Ino> = self.unlinked.keys().copied().collect();
        for u in unlinked {
            match self.inodes.get(&u) {
                Some(n) if n.attr.nlink == 0 => {}
                Some(n) => {
                    let d = format!("U key of {u:?}, which has nlink {}", n.attr.nlink);
                    self.bad("unlinked", d)
                }
                None => self.bad("unlinked", format!("U key of missing inode {u:?}")),
            }
        }
    }

    /// Every inode with a name is reachable from the root; a directory tree cut off from
    /// the root (a cycle) is not.
    fn check_reachable(&mut self) {
        let mut children: BTreeMap<Ino, Vec<Ino>> = BTreeMap::new();
        for ((parent, _), e) in &self.entries {
            children.entry(*parent).or_default().push(e.ino);
        }
        let mut seen = BTreeSet::new();
        let mut todo = vec![Ino::ROOT];
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some(c) = children.get(&d) {
                todo.extend(c.iter().copied());
            }
        }
        let cut: Vec<Ino> = self
            .inodes
            .values()
            .filter(|n| !seen.contains(&n.ino()) && n.attr.nlink > 0)
            .map(|n| n.ino())
            .collect();
        for ino in cut {
            self.bad(
                "unreachable",
                format!("{ino:?} is not reachable from the root"),
            );
        }
    }

    fn check_chunks(&mut self, opts: CheckOptions) {
        let mut owner: BTreeMap<SliceId, (Ino, ChunkIndex)> = BTreeMap::new();
        let chunks = std::mem::take(&mut self.chunks);
        for (&(ino, idx), list) in &chunks {
            let Some(n) = self.inodes.get(&ino) else {
                continue; // an orphan key
            };
            let size = n.attr.size;
            let start = idx.0 as u64 * CHUNK_SIZE;
            if start >= size && !list.is_empty() {
                let d = format!("{ino:?} chunk {} starts past its size {size}", idx.0);
                self.bad("chunk-past-eof", d);
            }
            for s in list {
                let bad_range = s.end() > CHUNK_SIZE;
                let bad_source =
                    s.id != SliceId::ZERO && s.off as u64 + s.len as u64 > s.size as u64;
                if bad_range || bad_source {
                    self.bad("slice-record", format!("{ino:?} chunk {}: {s:?}", idx.0));
                }
            }
            let limit = size.saturating_sub(start);
            for seg in visible(list) {
                if seg.slice.id != SliceId::ZERO && seg.end as u64 > limit {
                    let d = format!(
                        "{ino:?} chunk {} shows {:?} up to {} past the size {size}",
                        idx.0, seg.slice.id, seg.end
                    );
                    self.bad("data-past-eof", d);
                    break;
                }
            }
            let ids: BTreeSet<SliceId> = list
                .iter()
                .map(|s| s.id)
                .filter(|id| *id != SliceId::ZERO)
                .collect();
            for id in ids {
                if let Some((o, oi)) = owner.insert(id, (ino, idx)) {
                    let d = format!(
                        "{id:?} is in {o:?} chunk {} and {ino:?} chunk {}",
                        oi.0, idx.0
                    );
                    self.bad("slice-shared", d);
                }
                if self.gc.contains(&id) {
                    self.bad(
                        "gc-referenced",
                        format!("queued {id:?} is in {ino:?} chunk {}", idx.0),
                    );
                }
            }
        }
        self.chunks = chunks;
        if !opts.ids_from_counters {
            return;
        }
        let next_slice = self.counter(keys::NEXT_SLICE);
        let max_slice = owner.keys().chain(self.gc.iter()).max().copied();
        if let (Some(max), Some(next)) = (max_slice, next_slice) {
            if max.0 >= next {
                self.bad(
                    "counter",
                    format!("{max:?} is in use but nextSlice is {next}"),
                );
            }
        }
    }

    fn counter(&mut self, name: &str) -> Option<u64> {
        let v = self.counters.get(name).copied();
        if v.is_none() {
            self.bad("counter", format!("counter {name} is missing"));
        }
        v
    }

    fn check_counters(&mut self, opts: CheckOptions) {
        let total = self.inodes.len() as u64;
        if let Some(c) = self.counter(keys::TOTAL_INODES) {
            if c != total {
                self.bad(
                    "counter",
                    format!("totalInodes is {c}, there are {total} inodes"),
                );
            }
        }
        let used: u64 = self
            .inodes
            .values()
            .filter(|n| n.attr.kind == FileType::RegularFile)
            .map(|n| n.attr.size)
            .sum();
        if let Some(c) = self.counter(keys::USED_SPACE) {
            if c != used {
                self.bad(
                    "counter",
                    format!("usedSpace is {c}, the files hold {used}"),
                );
            }
        }
        if !opts.ids_from_counters {
            return;
        }
        if let (Some(next), Some(max)) = (
            self.counter(keys::NEXT_INODE),
            self.inodes.keys().next_back().copied(),
        ) {
            if max.0 >= next && max != Ino::ROOT {
                self.bad("counter", format!("{max:?} exists but nextInode is {next}"));
            }
        }
        let max_session = self
            .sessions
            .iter()
            .chain(self.unlinked.values())
            .chain(self.held.iter().map(|(s, _)| s))
            .max()
            .copied();
        if let (Some(next), Some(max)) = (self.counter(keys::NEXT_SESSION), max_session) {
            if max >= next {
                self.bad(
                    "counter",
                    format!("session {max} is in use but nextSession is {next}"),
                );
            }
        }
    }
}

/// (session, lock owner).
type OwnerKey = (u64, u64);

impl Checker {
    fn check_locks(&mut self) {
        // (session, owner) and one of its ranges, per inode.
        let mut by_inode: BTreeMap<Ino, Vec<(OwnerKey, LockRange)>> = BTreeMap::new();
        let mut found = Vec::new();
        for ((ino, session, owner), ranges) in &self.locks {
            let who = format!("{ino:?} session {session} owner {owner:#x}");
            if ranges.is_empty() {
                found.push(("lock-range", format!("{who} has an empty lock key")));
            }
            for w in ranges.windows(2) {
                if w[0].kind == w[1].kind && w[0].end.checked_add(1) == Some(w[1].start) {
                    let d = format!(
                        "{who}: {}..={} and {}..={} are not merged",
                        w[0].start, w[0].end, w[1].start, w[1].end
                    );
                    found.push(("lock-range", d));
                }
            }
            if !self.held.contains(&(*session, *ino)) {
                found.push(("lock-index", format!("{who} holds locks, no K index key")));
            }
            let list = by_inode.entry(*ino).or_default();
            list.extend(ranges.iter().map(|r| ((*session, *owner), *r)));
        }
        for (session, ino) in &self.held {
            let any = self
                .locks
                .range((*ino, *session, 0)..=(*ino, *session, u64::MAX))
                .next()
                .is_some();
            if !any {
                let d = format!("K index says session {session} holds locks on {ino:?}");
                found.push(("lock-index", d));
            }
        }
        for (ino, list) in &by_inode {
            for (i, (a, ra)) in list.iter().enumerate() {
                for (b, rb) in &list[i + 1..] {
                    let overlap = ra.start <= rb.end && rb.start <= ra.end;
                    if a != b && overlap && ra.kind.conflicts_with(rb.kind) {
                        let d = format!(
                            "{ino:?}: {a:?} holds {:?} {}..={}, {b:?} holds {:?} {}..={}",
                            ra.kind, ra.start, ra.end, rb.kind, rb.start, rb.end
                        );
                        found.push(("lock-conflict", d));
                    }
                }
            }
        }
        for (invariant, detail) in found {
            self.bad(invariant, detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::encode_slices;
    use crate::kv::{txn, MemKv};
    use crate::meta::attr_codec::{encode_entry, encode_inode, Entry};
    use crate::meta::Meta;
    use crate::types::{Ctx, Timespec};
    use std::sync::Arc;

    fn volume() -> (Arc<MemKv>, Meta) {
        let kv = Arc::new(MemKv::new());
        let now = Timespec::new(1, 0);
        Meta::format(&*kv, &Format::new("check-vol", "u"), false, now).unwrap();
        let m = Meta::load(kv.clone()).unwrap();
        (kv, m)
    }

    fn found(kv: &MemKv) -> Vec<&'static str> {
        let opts = CheckOptions {
            ids_from_counters: true,
            ..Default::default()
        };
        let mut v: Vec<_> = check_invariants(kv, opts)
            .unwrap()
            .into_iter()
            .map(|v| v.invariant)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn a_sound_volume_passes_and_each_break_is_named() {
        let (kv, m) = volume();
        let now = Timespec::new(2, 0);
        let c = Ctx::root();
        let d = m.mkdir(&c, Ino::ROOT, b"d", 0o755, 0, now).unwrap();
        let f = m
            .mknod(&c, d.ino, b"f", FileType::RegularFile, 0o644, 0, 0, now)
            .unwrap();
        let id = m.new_slice_id().unwrap();
        m.write_slice(f.ino, ChunkIndex(0), SliceRef::new(0, id, 10), now)
            .unwrap();
        assert!(found(&kv).is_empty(), "{:?}", found(&kv));

        // A second file naming the same slice, and a queued slice still in use.
        let g = m
            .mknod(&c, d.ino, b"g", FileType::RegularFile, 0o644, 0, 0, now)
            .unwrap();
        txn(&*kv, |t| {
            t.set(
                &keys::chunk(g.ino, ChunkIndex(0)),
                &encode_slices(&[SliceRef::new(0, id, 10)]),
            );
            t.set(&keys::gc(id), &10u32.to_be_bytes());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            found(&kv),
            [
                "chunk-past-eof",
                "data-past-eof",
                "gc-referenced",
                "slice-shared"
            ]
        );
    }

    #[test]
    fn conflicting_unmerged_or_unindexed_locks_are_found() {
        use crate::meta::{encode_ranges, LockKind, LockRange, LockRequest};
        let (kv, m) = volume();
        let now = Timespec::new(2, 0);
        let f = m
            .mknod(
                &Ctx::root(),
                Ino::ROOT,
                b"f",
                FileType::RegularFile,
                0o644,
                0,
                0,
                now,
            )
            .unwrap();
        m.new_session("{}").unwrap();
        let req = LockRequest {
            owner: 1,
            fh: 1,
            start: 0,
            end: 9,
            kind: Some(LockKind::Write),
            pid: 1,
        };
        m.set_lock(f.ino, &req).unwrap();
        assert!(found(&kv).is_empty(), "{:?}", found(&kv));
        let w = |start, end| LockRange {
            start,
            end,
            kind: LockKind::Write,
            pid: 1,
            fh: 1,
        };
        // Another owner of the session holding an overlapping write lock, and an
        // owner whose touching ranges were not merged.
        txn(&*kv, |t| {
            t.set(&keys::lock(f.ino, 1, 2), &encode_ranges(&[w(5, 5)]));
            t.set(
                &keys::lock(f.ino, 1, 3),
                &encode_ranges(&[w(20, 29), w(30, 39)]),
            );
            Ok(())
        })
        .unwrap();
        assert_eq!(found(&kv), ["lock-conflict", "lock-range"]);
        // Locks of a session with no index key, and an index key with no locks.
        txn(&*kv, |t| {
            t.delete(&keys::lock(f.ino, 1, 2));
            t.delete(&keys::lock(f.ino, 1, 3));
            t.delete(&keys::held(1, f.ino));
            t.set(&keys::held(1, Ino(77)), b"");
            Ok(())
        })
        .unwrap();
        assert_eq!(found(&kv), ["lock-index"]);
    }

    #[test]
    fn cycles_dangling_entries_and_counters_are_found() {
        let (kv, m) = volume();
        let now = Timespec::new(2, 0);
        let c = Ctx::root();
        let a = m.mkdir(&c, Ino::ROOT, b"a", 0o755, 0, now).unwrap();
        let b = m.mkdir(&c, a.ino, b"b", 0o755, 0, now).unwrap();
        // Move `a` into its own child by hand: a cycle cut off from the root.
        txn(&*kv, |t| {
            let e = t.get(&keys::dentry(Ino::ROOT, b"a"))?.unwrap();
            let idx = keys::dir_index(Ino::ROOT, decode_entry(&e)?.seq);
            t.delete(&keys::dentry(Ino::ROOT, b"a"));
            t.delete(&idx);
            let mut bn = decode_inode(b.ino, &t.get(&keys::attr(b.ino))?.unwrap())?;
            bn.attr.nlink += 1;
            bn.next_seq = 10;
            t.set(&keys::attr(b.ino), &encode_inode(&bn));
            let moved = Entry {
                kind: FileType::Directory,
                ino: a.ino,
                seq: 3,
            };
            t.set(&keys::dentry(b.ino, b"a"), &encode_entry(&moved));
            t.set(&keys::dir_index(b.ino, 3), b"a");
            let mut an = decode_inode(a.ino, &t.get(&keys::attr(a.ino))?.unwrap())?;
            an.attr.parent = b.ino;
            t.set(&keys::attr(a.ino), &encode_inode(&an));
            let mut root = decode_inode(Ino::ROOT, &t.get(&keys::attr(Ino::ROOT))?.unwrap())?;
            root.attr.nlink -= 1;
            t.set(&keys::attr(Ino::ROOT), &encode_inode(&root));
            Ok(())
        })
        .unwrap();
        assert_eq!(found(&kv), ["unreachable"]);

        // A dangling entry and a counter behind the ids in use.
        txn(&*kv, |t| {
            t.set(&keys::counter(keys::NEXT_INODE), &2u64.to_be_bytes());
            t.delete(&keys::attr(a.ino));
            Ok(())
        })
        .unwrap();
        let f = found(&kv);
        assert!(f.contains(&"dangling") && f.contains(&"counter"), "{f:?}");
    }
}
