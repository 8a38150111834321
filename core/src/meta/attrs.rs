//! Attributes: getattr, access, setattr (chmod, chown, utimes, truncate).

use super::data::resize;
use super::perm::{allowed, check, owner_or_root, S_ISGID, S_ISUID, S_IXGRP, W_OK};
use super::store::{load, store};
use super::Meta;
use crate::errno::{Errno, Result};
use crate::kv;
use crate::types::{Attr, Ctx, FileType, Ino, SetAttr, SetTime, Timespec, FILE_SIZE_MAX};

impl Meta {
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        kv::read(&**self.kv(), |t| Ok(load(t, ino)?.attr))
    }

    /// `access(2)`: `mask` of `R_OK|W_OK|X_OK`, or 0 (`F_OK`) for existence only.
    pub fn access(&self, ctx: &Ctx, ino: Ino, mask: u32) -> Result<()> {
        kv::read(&**self.kv(), |t| check(ctx, &load(t, ino)?.attr, mask))
    }

    /// Applies the changes of `set` with Linux's rules (see [`check_setattr`]). Every
    /// successful call stamps ctime; a size change (even to the same size) also mtime.
    pub fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, now: Timespec) -> Result<Attr> {
        kv::txn(&**self.kv(), |t| {
            let mut n = load(t, ino)?;
            let mode = check_setattr(ctx, &n.attr, set)?;
            let a = &mut n.attr;
            if let Some(size) = set.size {
                resize(t, ino, a.size, size)?;
                a.size = size;
                a.mtime = now;
            }
            if let Some(uid) = set.uid {
                a.uid = uid;
            }
            if let Some(gid) = set.gid {
                a.gid = gid;
            }
            match mode {
                Some(m) => a.perm = m,
                None if (set.uid.is_some() || set.gid.is_some())
                    && a.kind != FileType::Directory =>
                {
                    // chown of a non-directory drops setuid, and setgid when it means
                    // "setgid" rather than mandatory locking (group-exec set).
                    a.perm &= !S_ISUID;
                    if a.perm & S_IXGRP != 0 {
                        a.perm &= !S_ISGID;
                    }
                }
                None => {}
            }
            let time = |s: SetTime| match s {
                SetTime::Now => now,
                SetTime::At(ts) => ts,
            };
            if let Some(at) = set.atime {
                a.atime = time(at);
            }
            if let Some(mt) = set.mtime {
                a.mtime = time(mt);
            }
            a.ctime = set.ctime.unwrap_or(now);
            store(t, &n);
            Ok(n.attr)
        })
    }
}

/// Linux's checks of a setattr (`vfs_truncate`, `setattr_prepare`, `utimes`), in its
/// order. Returns the permission bits to store when `set.mode` is given.
///
/// - size: EISDIR for directories, EINVAL for other non-regular files, EACCES without
///   write permission (unless `via_handle`), EFBIG past [`FILE_SIZE_MAX`];
/// - uid: only root changes it (EPERM); the owner may "set" it to itself;
/// - gid: root, or the owner to a group it is in (or to the current group), else EPERM;
/// - mode: owner or root, else EPERM — except a change that only clears setuid/setgid,
///   which is how the kernel kills privileges on write/truncate/chown of a FUSE file
///   and is allowed to anyone; a non-root caller not in the (new) group loses setgid;
/// - times: explicit values need owner or root (EPERM); "now" needs owner, root or
///   write permission (EACCES), not checked again when the size changes too.
pub fn check_setattr(ctx: &Ctx, a: &Attr, set: &SetAttr) -> Result<Option<u16>> {
    let root = ctx.is_root();
    if let Some(size) = set.size {
        match a.kind {
            FileType::RegularFile => {}
            FileType::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        if !set.via_handle {
            check(ctx, a, W_OK)?;
        }
        if size > FILE_SIZE_MAX {
            return Err(Errno::EFBIG);
        }
    }
    if let Some(uid) = set.uid {
        if !root && (ctx.uid != a.uid || uid != a.uid) {
            return Err(Errno::EPERM);
        }
    }
    if let Some(gid) = set.gid {
        if !root && !(ctx.uid == a.uid && (ctx.in_group(gid) || gid == a.gid)) {
            return Err(Errno::EPERM);
        }
    }
    let mut mode = None;
    if let Some(m) = set.mode {
        let mut m = (m & 0o7777) as u16;
        if !owner_or_root(ctx, a) {
            let privs = S_ISUID | S_ISGID;
            let kill_only = m & !privs == a.perm & !privs
                && m & privs != a.perm & privs
                && m & privs & !a.perm == 0;
            if !kill_only {
                return Err(Errno::EPERM);
            }
        } else if !root && !ctx.in_group(set.gid.unwrap_or(a.gid)) {
            m &= !S_ISGID;
        }
        mode = Some(m);
    }
    let times = [set.atime, set.mtime];
    let explicit = times.iter().any(|t| matches!(t, Some(SetTime::At(_))));
    let touch = times.iter().any(|t| matches!(t, Some(SetTime::Now)));
    if explicit && !owner_or_root(ctx, a) {
        return Err(Errno::EPERM);
    }
    if touch && set.size.is_none() && !owner_or_root(ctx, a) && !allowed(ctx, a, W_OK) {
        return Err(Errno::EACCES);
    }
    Ok(mode)
}
