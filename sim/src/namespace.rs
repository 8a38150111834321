//! Namespace operations in the small shared tree `/s`, so that clients collide.
//!
//! Paths are at most two directories deep under `/s`, with directory names `a`, `b` and
//! leaf names `a`..`d`: every client soon works on the same few names, creating,
//! renaming (plain, NOREPLACE, EXCHANGE), linking and removing them under each other.
//! Files created here get patterned data (logged like shared files), and reads of them
//! are checked for garbage. Errors are expected (EEXIST, ENOENT, ENOTEMPTY, ...); a
//! metadata-only operation failing with EIO or ENOSPC is not, unless an injected fault
//! (the metadata disk's, or the store's) hit one of the client's calls during the step.

use crate::workload::Client;
use ferrofs_core::{Errno, FileType, Ino, RenameFlags, SetAttr, XattrMode};

const DIRS: [&[u8]; 2] = [b"a", b"b"];
const LEAVES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

/// Metadata-only operations must not fail with EIO or ENOSPC, unless an injected fault
/// was returned to this client since the step began (`seen0`: its count then).
fn meta_only(c: &mut Client<'_>, seen0: u64, what: &str, r: Result<(), Errno>) {
    let Err(e @ (Errno::EIO | Errno::ENOSPC)) = r else {
        return;
    };
    let me = c.me;
    let explained = c.world.with(|st| {
        let injected = st.faults_seen[me] > seen0;
        if injected {
            st.oracle.stats.op_errors_injected += 1;
        }
        injected
    });
    if !explained {
        c.world.fail(
            me,
            format!(
                "{what} in /s failed with {}, which no fault explains",
                e.name()
            ),
        );
    }
}

/// A random directory of `/s` (it may not exist) and a leaf name.
fn path(c: &mut Client<'_>) -> (Result<Ino, Errno>, &'static [u8]) {
    let mut dir = Ok(c.layout.shared_dir);
    for _ in 0..c.rng.below(3) {
        let name = DIRS[c.rng.index(DIRS.len())];
        dir = dir
            .and_then(|d| c.vfs.lookup(&c.ctx, d, name))
            .and_then(|a| {
                if a.kind == FileType::Directory {
                    Ok(a.ino)
                } else {
                    Err(Errno::ENOTDIR)
                }
            });
    }
    (dir, LEAVES[c.rng.index(LEAVES.len())])
}

/// One random namespace operation.
pub fn step(c: &mut Client<'_>) {
    let seen0 = c.world.with(|st| st.faults_seen[c.me]);
    let op = c.rng.weighted(&[14, 14, 10, 8, 16, 6, 4, 5, 3, 8, 8, 2]);
    let (dir, name) = path(c);
    let Ok(dir) = dir else {
        return;
    };
    let me = c.me;
    let ctx = c.ctx.clone();
    match op {
        0 => {
            c.world.note(me, "ns.mkdir", name, dir.0);
            let r = c.vfs.mkdir(&ctx, dir, name, 0o755, 0o022).map(drop);
            meta_only(c, seen0, "mkdir", r);
        }
        1 => {
            c.world.note(me, "ns.create", name, dir.0);
            let flags = libc::O_RDWR | libc::O_CREAT;
            if let Ok((fh, a)) = c.vfs.create(&ctx, dir, name, 0o644, 0o022, flags) {
                if c.rng.chance(0.7) {
                    c.write_extents(fh, a.ino);
                }
                c.hold_or_close(fh, a.ino);
            }
        }
        2 => {
            c.world.note(me, "ns.unlink", name, dir.0);
            let r = c.vfs.unlink(&ctx, dir, name);
            meta_only(c, seen0, "unlink", r);
        }
        3 => {
            c.world.note(me, "ns.rmdir", name, dir.0);
            let r = c.vfs.rmdir(&ctx, dir, name);
            meta_only(c, seen0, "rmdir", r);
        }
        4 => {
            let (to, new_name) = path(c);
            let Ok(to) = to else { return };
            let flags = match c.rng.weighted(&[6, 2, 2]) {
                0 => RenameFlags::default(),
                1 => RenameFlags {
                    noreplace: true,
                    ..Default::default()
                },
                _ => RenameFlags {
                    exchange: true,
                    ..Default::default()
                },
            };
            let code = (flags.noreplace as u64) | (flags.exchange as u64) << 1;
            c.world.note(me, "ns.rename", name, code);
            let r = c.vfs.rename(&ctx, dir, name, to, new_name, flags);
            meta_only(c, seen0, "rename", r);
        }
        5 => {
            let (to, new_name) = path(c);
            let Ok(to) = to else { return };
            c.world.note(me, "ns.link", name, to.0);
            if let Ok(a) = c.vfs.lookup(&ctx, dir, name) {
                let r = c.vfs.link(&ctx, a.ino, to, new_name).map(drop);
                meta_only(c, seen0, "link", r);
            }
        }
        6 => {
            c.world.note(me, "ns.symlink", name, dir.0);
            let r = c.vfs.symlink(&ctx, dir, name, b"../x").map(drop);
            meta_only(c, seen0, "symlink", r);
        }
        7 => {
            let size = c.rng.below(96 << 10);
            c.world.note(me, "ns.truncate", name, size);
            if let Ok(a) = c.vfs.lookup(&ctx, dir, name) {
                let set = SetAttr {
                    size: Some(size),
                    ..SetAttr::default()
                };
                let _ = c.vfs.setattr(&ctx, a.ino, &set, None);
            }
        }
        8 => {
            c.world.note(me, "ns.chmod-xattr", name, dir.0);
            if let Ok(a) = c.vfs.lookup(&ctx, dir, name) {
                let set = SetAttr {
                    mode: Some(0o640 | c.rng.below(8) as u32),
                    ..SetAttr::default()
                };
                let r = c.vfs.setattr(&ctx, a.ino, &set, None).map(drop);
                let x = c
                    .vfs
                    .setxattr(&ctx, a.ino, b"user.sim", &[me as u8], XattrMode::Any);
                if a.kind != FileType::RegularFile {
                    meta_only(c, seen0, "chmod", r);
                }
                meta_only(c, seen0, "setxattr", x);
            }
        }
        9 => {
            c.world.note(me, "ns.readdir", &[], dir.0);
            let r = list(c, dir);
            meta_only(c, seen0, "readdir", r);
        }
        10 => {
            c.world.note(me, "ns.read", name, dir.0);
            if let Ok(a) = c.vfs.lookup(&ctx, dir, name) {
                if a.kind == FileType::RegularFile {
                    if let Ok((fh, _)) = c.vfs.open(&ctx, a.ino, libc::O_RDONLY) {
                        let off = c.rng.below(64 << 10);
                        let len = c.rng.range(1, 64 << 10) as u32;
                        c.read_checked(fh, a.ino, off, len);
                        let _ = c.vfs.release(fh);
                    }
                }
            }
        }
        _ => {
            c.world.note(me, "ns.open-write", name, dir.0);
            if let Ok(a) = c.vfs.lookup(&ctx, dir, name) {
                if a.kind == FileType::RegularFile {
                    if let Ok((fh, _)) = c.vfs.open(&ctx, a.ino, libc::O_RDWR) {
                        c.write_extents(fh, a.ino);
                        c.hold_or_close(fh, a.ino);
                    }
                }
            }
        }
    }
}

/// Lists a directory in small pages, as `ls` through the kernel would.
fn list(c: &mut Client<'_>, dir: Ino) -> Result<(), Errno> {
    c.vfs.opendir(&c.ctx, dir, libc::O_RDONLY)?;
    let mut offset = 0;
    let mut r = Ok(());
    for _ in 0..64 {
        match c.vfs.readdir(&c.ctx, dir, offset, 4, c.rng.chance(0.5)) {
            Ok(page) if page.is_empty() => break,
            Ok(page) => offset = page.last().map(|e| e.next_offset).unwrap_or(offset),
            Err(e) => {
                r = Err(e);
                break;
            }
        }
    }
    let _ = c.vfs.releasedir(dir);
    r
}
