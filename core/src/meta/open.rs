//! Open files: open, opendir, release. Open counts are per process; the last release
//! of an inode whose last link is gone deletes it.

use super::data::delete_inode;
use super::perm::{check, R_OK, W_OK};
use super::store::{load, load_opt};
use super::{lock, Meta};
use crate::errno::{Errno, Result};
use crate::kv;
use crate::types::{Attr, Ctx, FileType, Ino};

const O_ACCMODE: i32 = 0o3;
const O_WRONLY: i32 = 0o1;
const O_RDWR: i32 = 0o2;
const O_TRUNC: i32 = 0o1000;

/// The permission bits an open with `flags` needs.
fn open_mask(flags: i32) -> u32 {
    let mut mask = match flags & O_ACCMODE {
        O_WRONLY => W_OK,
        O_RDWR => R_OK | W_OK,
        _ => R_OK,
    };
    if flags & O_TRUNC != 0 {
        mask |= W_OK;
    }
    mask
}

fn check_open(ctx: &Ctx, a: &Attr, flags: i32) -> Result<()> {
    let mask = open_mask(flags);
    if a.kind == FileType::Directory && mask & W_OK != 0 {
        return Err(Errno::EISDIR);
    }
    check(ctx, a, mask)
}

impl Meta {
    /// Opens `ino`: checks read/write permission for `flags` (O_TRUNC needs write;
    /// directories cannot be opened for writing: EISDIR) and counts the handle.
    pub fn open(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<Attr> {
        let mut opens = lock(&self.opens);
        let attr = kv::read(&**self.kv(), |t| {
            let a = load(t, ino)?.attr;
            check_open(ctx, &a, flags)?;
            Ok(a)
        })?;
        *opens.entry(ino).or_insert(0) += 1;
        Ok(attr)
    }

    /// Opens an inode whose attributes the caller already has (a client's open cache):
    /// the same checks as [`Meta::open`] against `attr`, without reading the engine.
    pub fn open_known(&self, ctx: &Ctx, attr: &Attr, flags: i32) -> Result<()> {
        let mut opens = lock(&self.opens);
        check_open(ctx, attr, flags)?;
        *opens.entry(attr.ino).or_insert(0) += 1;
        Ok(())
    }

    /// Opens a directory for listing (ENOTDIR, EACCES without read permission).
    /// The handle is counted like a file's: a directory removed while open stays (with
    /// no links) until its last `release`.
    pub fn opendir(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<Attr> {
        let mut opens = lock(&self.opens);
        let attr = kv::read(&**self.kv(), |t| {
            let a = load(t, ino)?.attr;
            if a.kind != FileType::Directory {
                return Err(Errno::ENOTDIR);
            }
            if flags & O_ACCMODE != 0 {
                return Err(Errno::EISDIR);
            }
            check(ctx, &a, R_OK)?;
            Ok(a)
        })?;
        *opens.entry(ino).or_insert(0) += 1;
        Ok(attr)
    }

    /// Closes one handle of `ino`. The last close of an inode with no links left
    /// deletes it and queues its data for gc.
    pub fn release(&self, ino: Ino) -> Result<()> {
        let mut opens = lock(&self.opens);
        let Some(count) = opens.get_mut(&ino) else {
            return Ok(());
        };
        *count -= 1;
        if *count > 0 {
            return Ok(());
        }
        opens.remove(&ino);
        // The lock is held until the deletion commits, so no open slips in between.
        // Should it fail, the `U` key stays and `cleanup_orphans` deletes the inode.
        kv::txn(&**self.kv(), |t| match load_opt(t, ino)? {
            Some(n) if n.attr.nlink == 0 => delete_inode(t, &n),
            _ => Ok(()),
        })
    }

    /// Handles of `ino` open in this process.
    pub fn open_count(&self, ino: Ino) -> u32 {
        lock(&self.opens).get(&ino).copied().unwrap_or(0)
    }
}
