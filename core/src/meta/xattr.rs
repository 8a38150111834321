//! Extended attributes, with Linux's namespace rules (`xattr_permission`):
//! `user.` needs read/write permission and exists only on regular files and
//! directories, `trusted.` is root's, other namespaces are not checked here.

use super::keys;
use super::perm::{check, owner_or_root, R_OK, S_ISVTX, W_OK};
use super::store::{load, scan_all, store};
use super::Meta;
use crate::errno::{Errno, Result};
use crate::kv;
use crate::types::{Attr, Ctx, FileType, Ino, Timespec, XattrMode, XATTR_NAME_MAX, XATTR_SIZE_MAX};

pub(crate) fn check_xattr_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    Ok(())
}

/// Whether `ctx` may read (`write == false`) or change attribute `name` of `a`.
fn xattr_permission(ctx: &Ctx, a: &Attr, name: &[u8], write: bool) -> Result<()> {
    let denied = if write { Errno::EPERM } else { Errno::ENODATA };
    if name.starts_with(b"trusted.") {
        return if ctx.is_root() { Ok(()) } else { Err(denied) };
    }
    if name.starts_with(b"user.") {
        match a.kind {
            FileType::RegularFile => {}
            FileType::Directory => {
                if write && a.perm & S_ISVTX != 0 && !owner_or_root(ctx, a) {
                    return Err(Errno::EPERM);
                }
            }
            _ => return Err(denied),
        }
        return check(ctx, a, if write { W_OK } else { R_OK });
    }
    Ok(())
}

impl Meta {
    pub fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
        now: Timespec,
    ) -> Result<()> {
        check_xattr_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::E2BIG);
        }
        kv::txn(&**self.kv(), |t| {
            let mut n = load(t, ino)?;
            xattr_permission(ctx, &n.attr, name, true)?;
            let key = keys::xattr(ino, name);
            let exists = t.get(&key)?.is_some();
            match mode {
                XattrMode::Create if exists => return Err(Errno::EEXIST),
                XattrMode::Replace if !exists => return Err(Errno::ENODATA),
                _ => {}
            }
            t.set(&key, value);
            n.attr.ctime = now;
            store(t, &n);
            Ok(())
        })
    }

    pub fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        check_xattr_name(name)?;
        kv::read(&**self.kv(), |t| {
            let n = load(t, ino)?;
            xattr_permission(ctx, &n.attr, name, false)?;
            t.get(&keys::xattr(ino, name))?.ok_or(Errno::ENODATA)
        })
    }

    /// The names of the inode's attributes (`trusted.` ones only for root).
    pub fn listxattr(&self, ctx: &Ctx, ino: Ino) -> Result<Vec<Vec<u8>>> {
        kv::read(&**self.kv(), |t| {
            load(t, ino)?;
            let (start, end) = keys::xattr_range(ino);
            Ok(scan_all(t, &start, &end)?
                .into_iter()
                .map(|(k, _)| k[keys::NAME_OFFSET..].to_vec())
                .filter(|name| ctx.is_root() || !name.starts_with(b"trusted."))
                .collect())
        })
    }

    pub fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8], now: Timespec) -> Result<()> {
        check_xattr_name(name)?;
        kv::txn(&**self.kv(), |t| {
            let mut n = load(t, ino)?;
            xattr_permission(ctx, &n.attr, name, true)?;
            let key = keys::xattr(ino, name);
            if t.get(&key)?.is_none() {
                return Err(Errno::ENODATA);
            }
            t.delete(&key);
            n.attr.ctime = now;
            store(t, &n);
            Ok(())
        })
    }
}
