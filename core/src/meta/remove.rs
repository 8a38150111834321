//! Removing names: unlink and rmdir.

use super::data::{delete_inode, drop_link};
use super::keys;
use super::perm::{check, check_name, sticky_ok, W_OK, X_OK};
use super::store::{dir_is_empty, get_entry, load, load_dir, remove_entry, store, touch_dir};
use super::{lock, Meta};
use crate::errno::{Errno, Result};
use crate::kv;
use crate::types::{Ctx, Ino, Timespec};

impl Meta {
    /// Removes the name of a non-directory (EISDIR for directories). The last link of
    /// an inode open in this process keeps it (with a `U` key) until the last release.
    /// Returns the inode the name referred to (its link count changed).
    pub fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8], now: Timespec) -> Result<Ino> {
        check_name(name)?;
        if super::perm::is_dot(name) {
            return Err(Errno::EISDIR);
        }
        let opens = lock(&self.opens);
        let session = self.session_id();
        kv::txn(&**self.kv(), |t| {
            let p = load_dir(t, parent)?;
            check(ctx, &p.attr, X_OK)?;
            let e = get_entry(t, parent, name)?.ok_or(Errno::ENOENT)?;
            let n = load(t, e.ino)?;
            check(ctx, &p.attr, W_OK | X_OK)?;
            if !sticky_ok(ctx, &p.attr, &n.attr) {
                return Err(Errno::EPERM);
            }
            if n.is_dir() {
                return Err(Errno::EISDIR);
            }
            remove_entry(t, parent, name, &e);
            touch_dir(t, parent, 0, now)?;
            let open = opens.get(&e.ino).copied().unwrap_or(0) > 0;
            drop_link(t, e.ino, open, session, now).map(|()| e.ino)
        })
    }

    /// Removes an empty directory; returns its inode.
    pub fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8], now: Timespec) -> Result<Ino> {
        check_name(name)?;
        match name {
            b"." => return Err(Errno::EINVAL),
            b".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let opens = lock(&self.opens);
        let session = self.session_id();
        kv::txn(&**self.kv(), |t| {
            let p = load_dir(t, parent)?;
            check(ctx, &p.attr, X_OK)?;
            let e = get_entry(t, parent, name)?.ok_or(Errno::ENOENT)?;
            let mut n = load(t, e.ino)?;
            check(ctx, &p.attr, W_OK | X_OK)?;
            if !sticky_ok(ctx, &p.attr, &n.attr) {
                return Err(Errno::EPERM);
            }
            if !n.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if e.ino == Ino::ROOT {
                return Err(Errno::EBUSY);
            }
            if !dir_is_empty(t, e.ino)? {
                return Err(Errno::ENOTEMPTY);
            }
            remove_entry(t, parent, name, &e);
            touch_dir(t, parent, -1, now)?;
            if opens.get(&e.ino).copied().unwrap_or(0) > 0 {
                // Still open (a process's cwd or an open handle): keep it, unlinked,
                // until the last release, as for files.
                n.attr.nlink = 0;
                n.attr.ctime = now;
                store(t, &n);
                t.set(&keys::unlinked(e.ino), &session.to_be_bytes());
                Ok(e.ino)
            } else {
                delete_inode(t, &n).map(|()| e.ino)
            }
        })
    }
}
