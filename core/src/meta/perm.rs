//! Permission rules (Linux `generic_permission`, `check_sticky`, ownership) and name
//! validation. The FUSE shell mounts without `default_permissions`, so every check the
//! kernel would make is made here.

use crate::errno::{Errno, Result};
use crate::types::{Attr, Ctx, FileType, NAME_MAX};

pub const R_OK: u32 = 4;
pub const W_OK: u32 = 2;
pub const X_OK: u32 = 1;

pub const S_ISUID: u16 = 0o4000;
pub const S_ISGID: u16 = 0o2000;
pub const S_ISVTX: u16 = 0o1000;
pub const S_IXGRP: u16 = 0o0010;

/// Whether `ctx` may access `attr` for every bit of `mask` (`R_OK|W_OK|X_OK`).
/// Root may always read and write; it may execute a non-directory only if some
/// execute bit is set, and search any directory.
pub fn allowed(ctx: &Ctx, attr: &Attr, mask: u32) -> bool {
    let mask = mask & 7;
    if ctx.is_root() {
        return mask & X_OK == 0 || attr.kind == FileType::Directory || attr.perm & 0o111 != 0;
    }
    let p = attr.perm as u32;
    let bits = if ctx.uid == attr.uid {
        (p >> 6) & 7
    } else if ctx.in_group(attr.gid) {
        (p >> 3) & 7
    } else {
        p & 7
    };
    mask & !bits == 0
}

/// [`allowed`] as a result: EACCES when denied.
pub fn check(ctx: &Ctx, attr: &Attr, mask: u32) -> Result<()> {
    if allowed(ctx, attr, mask) {
        Ok(())
    } else {
        Err(Errno::EACCES)
    }
}

/// The owner of the inode, or root (`inode_owner_or_capable`).
pub fn owner_or_root(ctx: &Ctx, attr: &Attr) -> bool {
    ctx.is_root() || ctx.uid == attr.uid
}

/// Whether removing or renaming entry `victim` of directory `dir` is allowed by the
/// sticky bit: only the owner of the entry, the owner of the directory, or root.
pub fn sticky_ok(ctx: &Ctx, dir: &Attr, victim: &Attr) -> bool {
    dir.perm & S_ISVTX == 0 || ctx.is_root() || ctx.uid == victim.uid || ctx.uid == dir.uid
}

/// A name to look up or unlink: empty → ENOENT, too long → ENAMETOOLONG, `/` or NUL →
/// EINVAL. `.` and `..` pass; each operation decides what they mean.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(Errno::ENOENT);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Whether `name` is `.` or `..`.
pub fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// A name to create: as [`check_name`], and `.`/`..` already exist (EEXIST).
pub fn check_new_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if is_dot(name) {
        return Err(Errno::EEXIST);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Ino, Timespec};

    fn attr(kind: FileType, perm: u16, uid: u32, gid: u32) -> Attr {
        Attr {
            ino: Ino(2),
            kind,
            perm,
            uid,
            gid,
            nlink: 1,
            size: 0,
            rdev: 0,
            atime: Timespec::default(),
            mtime: Timespec::default(),
            ctime: Timespec::default(),
            parent: Ino(0),
        }
    }

    #[test]
    fn classes_do_not_fall_through() {
        let a = attr(FileType::RegularFile, 0o077, 10, 20);
        let owner = Ctx::new(10, 20, vec![]);
        assert!(!allowed(&owner, &a, R_OK));
        let member = Ctx::new(11, 99, vec![20]);
        assert!(allowed(&member, &a, R_OK | W_OK | X_OK));
        let other = Ctx::new(12, 30, vec![]);
        assert!(allowed(&other, &a, R_OK | W_OK | X_OK));
        let b = attr(FileType::RegularFile, 0o640, 10, 20);
        assert!(allowed(&Ctx::new(11, 20, vec![]), &b, R_OK));
        assert!(!allowed(&Ctx::new(11, 20, vec![]), &b, W_OK));
        assert!(!allowed(&other, &b, R_OK));
        assert!(allowed(&other, &b, 0));
    }

    #[test]
    fn root_rules() {
        let root = Ctx::root();
        let f = attr(FileType::RegularFile, 0o000, 10, 20);
        assert!(allowed(&root, &f, R_OK | W_OK));
        assert!(!allowed(&root, &f, X_OK));
        let fx = attr(FileType::RegularFile, 0o001, 10, 20);
        assert!(allowed(&root, &fx, X_OK));
        let d = attr(FileType::Directory, 0o000, 10, 20);
        assert!(allowed(&root, &d, R_OK | W_OK | X_OK));
    }

    #[test]
    fn sticky() {
        let dir = attr(FileType::Directory, 0o1777, 10, 0);
        let victim = attr(FileType::RegularFile, 0o644, 11, 0);
        assert!(sticky_ok(&Ctx::new(11, 0, vec![]), &dir, &victim));
        assert!(sticky_ok(&Ctx::new(10, 0, vec![]), &dir, &victim));
        assert!(sticky_ok(&Ctx::root(), &dir, &victim));
        assert!(!sticky_ok(&Ctx::new(12, 0, vec![]), &dir, &victim));
        let plain = attr(FileType::Directory, 0o777, 10, 0);
        assert!(sticky_ok(&Ctx::new(12, 0, vec![]), &plain, &victim));
    }

    #[test]
    fn names() {
        assert_eq!(check_name(b""), Err(Errno::ENOENT));
        assert_eq!(check_name(b"a/b"), Err(Errno::EINVAL));
        assert_eq!(check_name(b"a\0b"), Err(Errno::EINVAL));
        assert_eq!(check_name(&[b'x'; 256]), Err(Errno::ENAMETOOLONG));
        assert_eq!(check_name(&[b'x'; 255]), Ok(()));
        assert_eq!(check_name(b".."), Ok(()));
        assert_eq!(check_new_name(b"."), Err(Errno::EEXIST));
        assert_eq!(check_new_name(b".."), Err(Errno::EEXIST));
        assert_eq!(check_new_name(b"..."), Ok(()));
    }
}
