//! rename and renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE), with Linux's checks in
//! Linux's order (`do_renameat2`, `vfs_rename`, `may_delete`, `may_create`).

use super::attr_codec::{Entry, Inode};
use super::data::{delete_inode, drop_link};
use super::perm::{check, check_name, is_dot, sticky_ok, W_OK, X_OK};
use super::store::{
    add_entry, dir_is_empty, get_entry, load, load_dir, put_entry, remove_entry, touch_dir, update,
};
use super::{lock, Meta};
use crate::errno::{Errno, Result};
use crate::kv::{self, Txn};
use crate::types::{Ctx, Ino, RenameFlags, Timespec};

/// Deepest directory tree [`is_ancestor`] walks before calling the metadata corrupt.
const MAX_DEPTH: usize = 1 << 20;

/// Whether directory `a` is `b` or one of its ancestors (walking `parent` fields).
fn is_ancestor(t: &mut dyn Txn, a: Ino, b: Ino) -> Result<bool> {
    let mut cur = b;
    for _ in 0..MAX_DEPTH {
        if cur == a {
            return Ok(true);
        }
        if cur == Ino::ROOT {
            return Ok(false);
        }
        cur = load(t, cur)?.attr.parent;
    }
    Err(Errno::EIO)
}

/// Where a rename happens: the two directories and the two names.
struct Places<'a> {
    parent: Ino,
    name: &'a [u8],
    new_parent: Ino,
    new_name: &'a [u8],
}

impl Meta {
    /// Renames `parent/name` to `new_parent/new_name`. A replaced target loses a link
    /// (and is deleted, or kept while open, like an unlink). Returns the inodes whose
    /// attributes changed besides the parents: the source, and the replaced or
    /// exchanged target.
    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
        now: Timespec,
    ) -> Result<Vec<Ino>> {
        if flags.noreplace && flags.exchange {
            return Err(Errno::EINVAL);
        }
        check_name(name)?;
        check_name(new_name)?;
        if is_dot(name) || is_dot(new_name) {
            return Err(Errno::EBUSY);
        }
        let opens = lock(&self.opens);
        let session = self.session_id();
        let at = Places {
            parent,
            name,
            new_parent,
            new_name,
        };
        kv::txn(&**self.kv(), |t| {
            let Some((src_e, src, dst)) = check_rename(t, ctx, &at, flags)? else {
                return Ok(Vec::new());
            };
            let touched: Vec<Ino> = std::iter::once(src.ino())
                .chain(dst.as_ref().map(|(_, d)| d.ino()))
                .collect();
            match dst {
                Some((dst_e, dst)) if flags.exchange => {
                    exchange(t, &at, (&src_e, &src), (&dst_e, &dst), now).map(|()| touched)
                }
                dst => {
                    let open = |ino: Ino| opens.get(&ino).copied().unwrap_or(0) > 0;
                    let mut np_delta = 0;
                    remove_entry(t, parent, name, &src_e);
                    if let Some((dst_e, dst)) = dst {
                        remove_entry(t, new_parent, new_name, &dst_e);
                        if dst.is_dir() {
                            delete_inode(t, &dst)?;
                            np_delta -= 1;
                        } else {
                            drop_link(t, dst.ino(), open(dst.ino()), session, now)?;
                        }
                    }
                    add_entry(t, new_parent, new_name, src.attr.kind, src.ino())?;
                    let moved_dir = src.is_dir() && parent != new_parent;
                    update(t, src.ino(), |n| {
                        n.attr.ctime = now;
                        if moved_dir {
                            n.attr.parent = new_parent;
                        }
                    })?;
                    let op_delta = if moved_dir { -1 } else { 0 };
                    np_delta += if moved_dir { 1 } else { 0 };
                    touch_parents(t, &at, op_delta, np_delta, now).map(|()| touched)
                }
            }
        })
    }
}

type Checked = (Entry, Inode, Option<(Entry, Inode)>);

/// Every check of a rename; `None` when source and target are the same inode (nothing
/// to do), else the source entry and inode and the target's, if any.
fn check_rename(
    t: &mut dyn Txn,
    ctx: &Ctx,
    at: &Places<'_>,
    flags: RenameFlags,
) -> Result<Option<Checked>> {
    let op = load_dir(t, at.parent)?;
    check(ctx, &op.attr, X_OK)?;
    let np = load_dir(t, at.new_parent)?;
    check(ctx, &np.attr, X_OK)?;
    let src_e = get_entry(t, at.parent, at.name)?.ok_or(Errno::ENOENT)?;
    let src = load(t, src_e.ino)?;
    let dst = match get_entry(t, at.new_parent, at.new_name)? {
        Some(e) => Some((e, load(t, e.ino)?)),
        None => None,
    };
    // Linux's order: the target's existence (NOREPLACE, EXCHANGE) is judged before
    // the source-is-an-ancestor-of-the-target check.
    match &dst {
        None if flags.exchange => return Err(Errno::ENOENT),
        Some(_) if flags.noreplace => return Err(Errno::EEXIST),
        _ => {}
    }
    if src.is_dir() && is_ancestor(t, src.ino(), at.new_parent)? {
        return Err(Errno::EINVAL);
    }
    match &dst {
        Some((_, d)) if d.is_dir() && is_ancestor(t, d.ino(), at.parent)? => {
            return Err(if flags.exchange {
                Errno::EINVAL
            } else {
                Errno::ENOTEMPTY
            });
        }
        Some((_, d)) if d.ino() == src.ino() => return Ok(None),
        _ => {}
    }
    // may_delete(old_dir, source)
    check(ctx, &op.attr, W_OK | X_OK)?;
    if !sticky_ok(ctx, &op.attr, &src.attr) {
        return Err(Errno::EPERM);
    }
    // may_create(new_dir) or may_delete(new_dir, target)
    check(ctx, &np.attr, W_OK | X_OK)?;
    if let Some((_, d)) = &dst {
        if !sticky_ok(ctx, &np.attr, &d.attr) {
            return Err(Errno::EPERM);
        }
        if !flags.exchange {
            if src.is_dir() && !d.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if !src.is_dir() && d.is_dir() {
                return Err(Errno::EISDIR);
            }
        }
        if d.ino() == Ino::ROOT {
            return Err(Errno::EBUSY);
        }
    }
    if src.ino() == Ino::ROOT {
        return Err(Errno::EBUSY);
    }
    // A directory changing parent gets a new "..": write permission on it.
    if at.parent != at.new_parent {
        if src.is_dir() {
            check(ctx, &src.attr, W_OK)?;
        }
        if let (true, Some((_, d))) = (flags.exchange, &dst) {
            if d.is_dir() {
                check(ctx, &d.attr, W_OK)?;
            }
        }
    }
    if let (false, Some((_, d))) = (flags.exchange, &dst) {
        if d.is_dir() && !dir_is_empty(t, d.ino())? {
            return Err(Errno::ENOTEMPTY);
        }
    }
    Ok(Some((src_e, src, dst)))
}

/// RENAME_EXCHANGE: the two entries swap inodes (each keeps its cookie).
fn exchange(
    t: &mut dyn Txn,
    at: &Places<'_>,
    (src_e, src): (&Entry, &Inode),
    (dst_e, dst): (&Entry, &Inode),
    now: Timespec,
) -> Result<()> {
    let swapped_src = Entry {
        kind: dst.attr.kind,
        ino: dst.ino(),
        seq: src_e.seq,
    };
    let swapped_dst = Entry {
        kind: src.attr.kind,
        ino: src.ino(),
        seq: dst_e.seq,
    };
    put_entry(t, at.parent, at.name, &swapped_src);
    put_entry(t, at.new_parent, at.new_name, &swapped_dst);
    let cross = at.parent != at.new_parent;
    let (mut op_delta, mut np_delta) = (0, 0);
    if cross && src.is_dir() {
        op_delta -= 1;
        np_delta += 1;
    }
    if cross && dst.is_dir() {
        np_delta -= 1;
        op_delta += 1;
    }
    update(t, src.ino(), |n| {
        n.attr.ctime = now;
        if cross && n.is_dir() {
            n.attr.parent = at.new_parent;
        }
    })?;
    update(t, dst.ino(), |n| {
        n.attr.ctime = now;
        if cross && n.is_dir() {
            n.attr.parent = at.parent;
        }
    })?;
    touch_parents(t, at, op_delta, np_delta, now)
}

fn touch_parents(
    t: &mut dyn Txn,
    at: &Places<'_>,
    op_delta: i32,
    np_delta: i32,
    now: Timespec,
) -> Result<()> {
    if at.parent == at.new_parent {
        touch_dir(t, at.parent, op_delta + np_delta, now)?;
    } else {
        touch_dir(t, at.parent, op_delta, now)?;
        touch_dir(t, at.new_parent, np_delta, now)?;
    }
    Ok(())
}
