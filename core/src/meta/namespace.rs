//! Looking names up and creating them: lookup, mknod, mkdir, symlink, link, readlink.

use super::ids::{add_counter, get_counter};
use super::keys;
use super::perm::{check, check_name, check_new_name, S_ISGID, S_IXGRP, W_OK, X_OK};
use super::store::{add_entry, get_entry, load, load_dir, new_inode, store, touch_dir};
use super::{Meta, LINK_MAX};
use crate::errno::{Errno, Result};
use crate::kv::{self, Txn};
use crate::types::{Attr, Ctx, FileType, Ino, Timespec, SYMLINK_MAX};

/// What to create.
struct NewNode<'a> {
    kind: FileType,
    mode: u32,
    umask: u32,
    rdev: u32,
    target: Option<&'a [u8]>,
}

/// A symlink target: empty → ENOENT, longer than [`SYMLINK_MAX`] → ENAMETOOLONG.
pub(crate) fn check_target(target: &[u8]) -> Result<()> {
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    if target.len() > SYMLINK_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

impl Meta {
    /// The attributes of `name` in directory `parent` (`.` and `..` included). Needs
    /// search permission on `parent`.
    pub fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        kv::read(&**self.kv(), |t| {
            let p = load_dir(t, parent)?;
            check(ctx, &p.attr, X_OK)?;
            let ino = match name {
                b"." => return Ok(p.attr),
                b".." => p.attr.parent,
                _ => get_entry(t, parent, name)?.ok_or(Errno::ENOENT)?.ino,
            };
            Ok(load(t, ino)?.attr)
        })
    }

    /// Creates a node of any type but directory and symlink. Devices need root (EPERM).
    #[allow(clippy::too_many_arguments)]
    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        kind: FileType,
        mode: u32,
        umask: u32,
        rdev: u32,
        now: Timespec,
    ) -> Result<Attr> {
        if matches!(kind, FileType::Directory | FileType::Symlink) {
            return Err(Errno::EINVAL);
        }
        let node = NewNode {
            kind,
            mode,
            umask,
            rdev,
            target: None,
        };
        self.create(ctx, parent, name, node, now)
    }

    pub fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        now: Timespec,
    ) -> Result<Attr> {
        let node = NewNode {
            kind: FileType::Directory,
            mode,
            umask,
            rdev: 0,
            target: None,
        };
        self.create(ctx, parent, name, node, now)
    }

    /// Creates a symlink to `target` (ENOENT if empty, ENAMETOOLONG past SYMLINK_MAX).
    pub fn symlink(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        now: Timespec,
    ) -> Result<Attr> {
        check_target(target)?;
        let node = NewNode {
            kind: FileType::Symlink,
            mode: 0o777,
            umask: 0,
            rdev: 0,
            target: Some(target),
        };
        self.create(ctx, parent, name, node, now)
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        kv::read(&**self.kv(), |t| match t.get(&keys::symlink(ino))? {
            Some(v) => Ok(v),
            None => {
                load(t, ino)?;
                Err(Errno::EINVAL)
            }
        })
    }

    /// A new link `new_parent/new_name` to `ino` (not a directory: EPERM).
    pub fn link(
        &self,
        ctx: &Ctx,
        ino: Ino,
        new_parent: Ino,
        new_name: &[u8],
        now: Timespec,
    ) -> Result<Attr> {
        check_new_name(new_name)?;
        kv::txn(&**self.kv(), |t| {
            let p = load_dir(t, new_parent)?;
            check(ctx, &p.attr, X_OK)?;
            let mut n = load(t, ino)?;
            if get_entry(t, new_parent, new_name)?.is_some() {
                return Err(Errno::EEXIST);
            }
            check(ctx, &p.attr, W_OK | X_OK)?;
            if n.is_dir() {
                return Err(Errno::EPERM);
            }
            if n.attr.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            if n.attr.nlink >= LINK_MAX {
                return Err(Errno::EMLINK);
            }
            n.attr.nlink += 1;
            n.attr.ctime = now;
            store(t, &n);
            add_entry(t, new_parent, new_name, n.attr.kind, ino)?;
            touch_dir(t, new_parent, 0, now)?;
            Ok(n.attr)
        })
    }

    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        node: NewNode<'_>,
        now: Timespec,
    ) -> Result<Attr> {
        check_new_name(name)?;
        // An id taken by a create that fails is simply never used.
        let ino = self.alloc_ino()?;
        kv::txn(&**self.kv(), |t| {
            let p = self.may_create(t, ctx, parent, name, &node)?;
            let setgid_dir = p.perm & S_ISGID != 0;
            let gid = if setgid_dir { p.gid } else { ctx.gid };
            let mut perm = (node.mode & !node.umask & 0o7777) as u16;
            if node.kind == FileType::Directory {
                if setgid_dir {
                    perm |= S_ISGID;
                }
            } else if perm & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP
                && !ctx.is_root()
                && !ctx.in_group(gid)
            {
                perm &= !S_ISGID;
            }
            let mut n = new_inode(ino, node.kind, perm, ctx.uid, gid, node.rdev, parent, now);
            if let Some(target) = node.target {
                n.attr.size = target.len() as u64;
                t.set(&keys::symlink(ino), target);
            }
            store(t, &n);
            add_entry(t, parent, name, node.kind, ino)?;
            let subdir = i32::from(node.kind == FileType::Directory);
            touch_dir(t, parent, subdir, now)?;
            add_counter(t, keys::TOTAL_INODES, 1)?;
            Ok(n.attr)
        })
    }

    /// The checks of a create, in Linux's order; returns the parent's attributes.
    fn may_create(
        &self,
        t: &mut dyn Txn,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        node: &NewNode<'_>,
    ) -> Result<Attr> {
        let p = load_dir(t, parent)?;
        check(ctx, &p.attr, X_OK)?;
        if get_entry(t, parent, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        check(ctx, &p.attr, W_OK | X_OK)?;
        if p.attr.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        let device = matches!(node.kind, FileType::CharDevice | FileType::BlockDevice);
        if device && !ctx.is_root() {
            return Err(Errno::EPERM);
        }
        let limit = self.format_info().inodes;
        if limit > 0 && get_counter(t, keys::TOTAL_INODES)? >= limit {
            return Err(Errno::ENOSPC);
        }
        Ok(p.attr)
    }
}
