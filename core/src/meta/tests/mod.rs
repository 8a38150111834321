//! Unit tests of the metadata operations over [`MemKv`], with an invariant checker
//! run over the whole keyspace after each scenario.

mod attrs;
mod create;
mod data;
mod format;
mod invariants;
mod open;
mod readdir;
mod remove;
mod rename;
mod xattr;

use super::attr_codec::{decode_entry, decode_inode, decode_u64};
use super::keys;
use super::perm::{R_OK, W_OK, X_OK};
use super::Meta;
use crate::chunk::decode_slices;
use crate::format::Format;
use crate::kv::MemKv;
use crate::types::*;
use crate::Errno;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub fn ts(sec: i64) -> Timespec {
    Timespec::new(sec, 0)
}

pub fn root() -> Ctx {
    Ctx::root()
}

/// A user whose primary group equals its uid.
pub fn user(uid: u32) -> Ctx {
    Ctx::new(uid, uid, vec![])
}

pub struct Fx {
    pub kv: Arc<MemKv>,
    pub m: Meta,
}

pub fn setup() -> Fx {
    setup_with(Format::new("test-vol", "uuid-1"))
}

pub fn setup_with(f: Format) -> Fx {
    let kv = Arc::new(MemKv::new());
    Meta::format(&*kv, &f, false, ts(1)).unwrap();
    let m = Meta::load(kv.clone()).unwrap();
    Fx { kv, m }
}

impl Fx {
    pub fn file(&self, ctx: &Ctx, parent: Ino, name: &str, mode: u32) -> Attr {
        self.m
            .mknod(
                ctx,
                parent,
                name.as_bytes(),
                FileType::RegularFile,
                mode,
                0,
                0,
                ts(10),
            )
            .unwrap()
    }

    pub fn dir(&self, ctx: &Ctx, parent: Ino, name: &str, mode: u32) -> Attr {
        self.m
            .mkdir(ctx, parent, name.as_bytes(), mode, 0, ts(10))
            .unwrap()
    }

    pub fn attr(&self, ino: Ino) -> Attr {
        self.m.getattr(ino).unwrap()
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, Errno> {
        self.m.lookup(&root(), parent, name.as_bytes())
    }

    /// Names in a directory, listed fully.
    pub fn names(&self, dir: Ino) -> Vec<String> {
        self.m
            .readdir(&root(), dir, 2, usize::MAX, false)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect()
    }

    pub fn chmod(&self, ino: Ino, mode: u32) {
        let set = SetAttr {
            mode: Some(mode),
            ..Default::default()
        };
        self.m.setattr(&root(), ino, &set, ts(5)).unwrap();
    }

    pub fn chown(&self, ino: Ino, uid: u32, gid: u32) {
        let set = SetAttr {
            uid: Some(uid),
            gid: Some(gid),
            ..Default::default()
        };
        self.m.setattr(&root(), ino, &set, ts(5)).unwrap();
    }

    pub fn gc_ids(&self) -> Vec<u64> {
        self.m
            .gc_pending(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s.0)
            .collect()
    }

    /// Checks the invariants of ARCHITECTURE.md over the whole keyspace.
    pub fn check(&self) {
        check_invariants(&self.kv);
    }
}

/// Every entry points to a live inode of its type, `D` and `E` keys match, next_seq
/// exceeds every cookie, directory nlink = 2 + subdirectories, file nlink = number of
/// names, nlink 0 only with a `U` key, directories' parent fields match their entry,
/// counters match, no queued slice is referenced by a chunk.
pub fn check_invariants(kv: &MemKv) {
    let dump: BTreeMap<Vec<u8>, Vec<u8>> = kv.dump().into_iter().collect();
    let mut inodes = BTreeMap::new();
    let mut entries = Vec::new();
    let mut index = BTreeMap::new();
    let mut chunk_slices = BTreeSet::new();
    let mut gc = BTreeSet::new();
    let mut unlinked = BTreeSet::new();
    for (k, v) in &dump {
        match k[0] {
            b'A' => {
                let ino = Ino(u64::from_be_bytes(k[1..9].try_into().unwrap()));
                match k[9] {
                    b'I' => {
                        inodes.insert(ino, decode_inode(ino, v).unwrap());
                    }
                    b'D' => entries.push((ino, k[10..].to_vec(), decode_entry(v).unwrap())),
                    b'E' => {
                        index.insert((ino, keys::seq_of_dir_index(k).unwrap()), v.clone());
                    }
                    b'C' => {
                        for s in decode_slices(v).unwrap() {
                            if s.id != SliceId::ZERO {
                                chunk_slices.insert(s.id);
                            }
                        }
                    }
                    b'S' | b'X' => {}
                    t => panic!("unknown inode key tag {t}"),
                }
            }
            b'G' => {
                gc.insert(SliceId(keys::id_of(k).unwrap()));
            }
            b'U' => {
                unlinked.insert(Ino(keys::id_of(k).unwrap()));
            }
            _ => {}
        }
    }
    // Every inode key belongs to a live inode.
    for k in dump.keys().filter(|k| k[0] == b'A') {
        let ino = Ino(u64::from_be_bytes(k[1..9].try_into().unwrap()));
        assert!(
            inodes.contains_key(&ino),
            "key of missing inode {ino:?}: {k:?}"
        );
    }
    let mut links: BTreeMap<Ino, u32> = BTreeMap::new();
    let mut subdirs: BTreeMap<Ino, u32> = BTreeMap::new();
    assert_eq!(entries.len(), index.len(), "D and E keys differ in number");
    for (parent, name, e) in &entries {
        let p = &inodes[parent];
        assert!(p.is_dir(), "entry in non-directory");
        assert!(e.seq >= 3 && e.seq < p.next_seq, "bad seq {e:?}");
        assert_eq!(index.get(&(*parent, e.seq)), Some(name), "E key mismatch");
        let n = inodes
            .get(&e.ino)
            .unwrap_or_else(|| panic!("entry {name:?} → missing {:?}", e.ino));
        assert_eq!(n.attr.kind, e.kind);
        *links.entry(e.ino).or_default() += 1;
        if n.is_dir() {
            assert_eq!(n.attr.parent, *parent, "parent field of {:?}", e.ino);
            *subdirs.entry(*parent).or_default() += 1;
        }
    }
    let mut used = 0;
    for (ino, n) in &inodes {
        if n.is_dir() && unlinked.contains(ino) {
            // Removed while open: no links, no entries, kept until the last release.
            assert_eq!(n.attr.nlink, 0, "nlink of removed open dir {ino:?}");
            assert_eq!(links.get(ino), None, "removed dir {ino:?} still linked");
        } else if n.is_dir() {
            let want = 2 + subdirs.get(ino).copied().unwrap_or(0);
            assert_eq!(n.attr.nlink, want, "nlink of dir {ino:?}");
            if *ino != Ino::ROOT {
                assert_eq!(links.get(ino), Some(&1), "dir {ino:?} linked once");
            }
        } else {
            let l = links.get(ino).copied().unwrap_or(0);
            assert_eq!(n.attr.nlink, l, "nlink of {ino:?}");
            if l == 0 {
                assert!(unlinked.contains(ino), "{ino:?} has no links and no U key");
            }
        }
        if n.attr.kind == FileType::RegularFile {
            used += n.attr.size;
        }
    }
    for u in &unlinked {
        assert_eq!(
            inodes.get(u).map(|n| n.attr.nlink),
            Some(0),
            "U key of {u:?}"
        );
    }
    let counter = |name: &str| decode_u64(&dump[&keys::counter(name)]).unwrap();
    assert_eq!(
        counter(keys::TOTAL_INODES),
        inodes.len() as u64,
        "totalInodes"
    );
    assert_eq!(counter(keys::USED_SPACE), used, "usedSpace");
    assert!(
        gc.is_disjoint(&chunk_slices),
        "queued slice still referenced"
    );
}
