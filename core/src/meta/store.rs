//! Transaction-level helpers shared by the operations: loading and storing inodes,
//! directory entries, paged scans.

use super::attr_codec::{decode_entry, decode_inode, encode_entry, encode_inode, Entry, Inode};
use super::keys;
use crate::errno::{Errno, Result};
use crate::kv::{KvPair, Txn};
use crate::types::{Attr, FileType, Ino, Timespec};

/// Page size of [`scan_all`].
const PAGE: usize = 1024;

pub fn load_opt(t: &mut dyn Txn, ino: Ino) -> Result<Option<Inode>> {
    if ino.0 == 0 {
        return Ok(None);
    }
    match t.get(&keys::attr(ino))? {
        Some(v) => decode_inode(ino, &v).map(Some),
        None => Ok(None),
    }
}

/// The inode, or ENOENT.
pub fn load(t: &mut dyn Txn, ino: Ino) -> Result<Inode> {
    load_opt(t, ino)?.ok_or(Errno::ENOENT)
}

/// The directory, or ENOENT / ENOTDIR.
pub fn load_dir(t: &mut dyn Txn, ino: Ino) -> Result<Inode> {
    let n = load(t, ino)?;
    if !n.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    if n.attr.nlink == 0 {
        // Removed while open: nothing can be looked up or created in it.
        return Err(Errno::ENOENT);
    }
    Ok(n)
}

pub fn store(t: &mut dyn Txn, n: &Inode) {
    t.set(&keys::attr(n.ino()), &encode_inode(n));
}

/// Loads, changes and stores an inode.
pub fn update(t: &mut dyn Txn, ino: Ino, f: impl FnOnce(&mut Inode)) -> Result<Inode> {
    let mut n = load(t, ino)?;
    f(&mut n);
    store(t, &n);
    Ok(n)
}

/// Stamps mtime and ctime of a directory whose entries changed, and adjusts its link
/// count by `nlink_delta` (subdirectories added or removed).
pub fn touch_dir(t: &mut dyn Txn, dir: Ino, nlink_delta: i32, now: Timespec) -> Result<Inode> {
    update(t, dir, |d| {
        d.attr.mtime = now;
        d.attr.ctime = now;
        d.attr.nlink = d.attr.nlink.saturating_add_signed(nlink_delta);
    })
}

pub fn get_entry(t: &mut dyn Txn, parent: Ino, name: &[u8]) -> Result<Option<Entry>> {
    match t.get(&keys::dentry(parent, name))? {
        Some(v) => decode_entry(&v).map(Some),
        None => Ok(None),
    }
}

/// Links `name` → (`kind`, `ino`) into directory `parent` with the directory's next
/// readdir cookie. Returns the entry.
pub fn add_entry(
    t: &mut dyn Txn,
    parent: Ino,
    name: &[u8],
    kind: FileType,
    ino: Ino,
) -> Result<Entry> {
    let mut p = load(t, parent)?;
    let seq = p.next_seq.max(3);
    p.next_seq = seq + 1;
    store(t, &p);
    let e = Entry { kind, ino, seq };
    put_entry(t, parent, name, &e);
    Ok(e)
}

/// Writes both keys of an entry (its `D` record and its `E` index).
pub fn put_entry(t: &mut dyn Txn, parent: Ino, name: &[u8], e: &Entry) {
    t.set(&keys::dentry(parent, name), &encode_entry(e));
    t.set(&keys::dir_index(parent, e.seq), name);
}

/// Removes both keys of an entry.
pub fn remove_entry(t: &mut dyn Txn, parent: Ino, name: &[u8], e: &Entry) {
    t.delete(&keys::dentry(parent, name));
    t.delete(&keys::dir_index(parent, e.seq));
}

/// Whether directory `dir` has no entries.
pub fn dir_is_empty(t: &mut dyn Txn, dir: Ino) -> Result<bool> {
    let (start, end) = keys::dentry_range(dir);
    Ok(t.scan(&start, &end, 1)?.is_empty())
}

/// Every pair in `[start, end)`, read in pages.
pub fn scan_all(t: &mut dyn Txn, start: &[u8], end: &[u8]) -> Result<Vec<KvPair>> {
    let mut out: Vec<KvPair> = Vec::new();
    let mut from = start.to_vec();
    loop {
        let page = t.scan(&from, end, PAGE)?;
        let n = page.len();
        if let Some((k, _)) = page.last() {
            from = k.clone();
            from.push(0);
        }
        out.extend(page);
        if n < PAGE {
            return Ok(out);
        }
    }
}

/// A fresh inode record.
#[allow(clippy::too_many_arguments)]
pub fn new_inode(
    ino: Ino,
    kind: FileType,
    perm: u16,
    uid: u32,
    gid: u32,
    rdev: u32,
    parent: Ino,
    now: Timespec,
) -> Inode {
    let dir = kind == FileType::Directory;
    Inode {
        attr: Attr {
            ino,
            kind,
            perm,
            uid,
            gid,
            nlink: if dir { 2 } else { 1 },
            size: 0,
            rdev,
            atime: now,
            mtime: now,
            ctime: now,
            parent: if dir { parent } else { Ino(0) },
        },
        next_seq: if dir { 3 } else { 0 },
    }
}
