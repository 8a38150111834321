use super::*;

fn set() -> SetAttr {
    SetAttr::default()
}

fn mode(m: u32) -> SetAttr {
    SetAttr {
        mode: Some(m),
        ..set()
    }
}

fn owner(uid: Option<u32>, gid: Option<u32>) -> SetAttr {
    SetAttr { uid, gid, ..set() }
}

#[test]
fn chmod_rules() {
    let fx = setup();
    let u = Ctx::new(1000, 100, vec![200]);
    let f =
        fx.m.mknod(
            &u,
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(2),
        )
        .unwrap();
    let a = fx.m.setattr(&u, f.ino, &mode(0o100600), ts(3)).unwrap();
    assert_eq!((a.perm, a.ctime, a.mtime), (0o600, ts(3), ts(2)));
    // Not the owner: EPERM, even as a group member with write permission.
    let other = Ctx::new(1001, 100, vec![]);
    fx.m.setattr(&u, f.ino, &mode(0o666), ts(3)).unwrap();
    assert_eq!(
        fx.m.setattr(&other, f.ino, &mode(0o600), ts(4)).err(),
        Some(Errno::EPERM)
    );
    // Root may.
    assert_eq!(
        fx.m.setattr(&root(), f.ino, &mode(0o7777), ts(4))
            .unwrap()
            .perm,
        0o7777
    );
    // Setgid is dropped when the owner is not in the file's group...
    fx.chown(f.ino, 1000, 300);
    assert_eq!(
        fx.m.setattr(&u, f.ino, &mode(0o2755), ts(5)).unwrap().perm,
        0o755
    );
    // ...and kept when it is (primary or supplementary).
    fx.chown(f.ino, 1000, 200);
    assert_eq!(
        fx.m.setattr(&u, f.ino, &mode(0o2755), ts(5)).unwrap().perm,
        0o2755
    );
    // Sticky on a file is kept for non-root (Linux).
    assert_eq!(
        fx.m.setattr(&u, f.ino, &mode(0o1644), ts(5)).unwrap().perm,
        0o1644
    );
    // No actual change still stamps ctime.
    let a = fx.m.setattr(&u, f.ino, &mode(0o1644), ts(6)).unwrap();
    assert_eq!(a.ctime, ts(6));
    fx.check();
}

#[test]
fn anyone_may_only_clear_setuid_setgid() {
    // The kernel kills privileges on write/truncate by a non-owner with a SETATTR mode.
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o6777);
    let u = user(1000);
    assert_eq!(
        fx.m.setattr(&u, f.ino, &mode(0o777), ts(2)).unwrap().perm,
        0o777
    );
    assert_eq!(
        fx.m.setattr(&u, f.ino, &mode(0o777), ts(2)).err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        fx.m.setattr(&u, f.ino, &mode(0o4777), ts(2)).err(),
        Some(Errno::EPERM)
    );
    fx.chmod(f.ino, 0o6777);
    assert_eq!(
        fx.m.setattr(&u, f.ino, &mode(0o4777), ts(2)).unwrap().perm,
        0o4777
    );
    assert_eq!(
        fx.m.setattr(&u, f.ino, &mode(0o4775), ts(2)).err(),
        Some(Errno::EPERM)
    );
}

#[test]
fn chown_rules() {
    let fx = setup();
    let u = Ctx::new(1000, 100, vec![200]);
    let f =
        fx.m.mknod(
            &u,
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(2),
        )
        .unwrap();
    // Only root changes the owner.
    assert_eq!(
        fx.m.setattr(&u, f.ino, &owner(Some(1001), None), ts(3))
            .err(),
        Some(Errno::EPERM)
    );
    // The owner may "change" it to itself, and the group to one of its groups.
    fx.m.setattr(&u, f.ino, &owner(Some(1000), None), ts(3))
        .unwrap();
    let a =
        fx.m.setattr(&u, f.ino, &owner(None, Some(200)), ts(3))
            .unwrap();
    assert_eq!((a.uid, a.gid, a.ctime), (1000, 200, ts(3)));
    assert_eq!(
        fx.m.setattr(&u, f.ino, &owner(None, Some(300)), ts(3))
            .err(),
        Some(Errno::EPERM)
    );
    fx.m.setattr(&u, f.ino, &owner(None, Some(100)), ts(3))
        .unwrap();
    // A non-owner cannot change the group, even to its own.
    let other = Ctx::new(1001, 100, vec![]);
    assert_eq!(
        fx.m.setattr(&other, f.ino, &owner(None, Some(100)), ts(3))
            .err(),
        Some(Errno::EPERM)
    );
    // Root may do anything.
    let a =
        fx.m.setattr(&root(), f.ino, &owner(Some(5), Some(6)), ts(4))
            .unwrap();
    assert_eq!((a.uid, a.gid, a.ctime), (5, 6, ts(4)));
    fx.check();
}

#[test]
fn chown_clears_setuid_setgid_of_non_directories() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o6755);
    // Even root's chown clears them (group-exec set: setgid goes too).
    let a =
        fx.m.setattr(&root(), f.ino, &owner(Some(1000), Some(1000)), ts(2))
            .unwrap();
    assert_eq!(a.perm, 0o755);
    // Setgid without group-exec (mandatory locking) stays.
    fx.chmod(f.ino, 0o6745);
    let a =
        fx.m.setattr(&root(), f.ino, &owner(None, Some(1000)), ts(2))
            .unwrap();
    assert_eq!(a.perm, 0o2745);
    // By the owner too.
    fx.chmod(f.ino, 0o6755);
    let a =
        fx.m.setattr(&user(1000), f.ino, &owner(Some(1000), None), ts(2))
            .unwrap();
    assert_eq!(a.perm, 0o755);
    // Directories keep them.
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o6755);
    let a =
        fx.m.setattr(&root(), d.ino, &owner(Some(1000), Some(1000)), ts(2))
            .unwrap();
    assert_eq!(a.perm, 0o6755);
    // A mode given in the same call wins.
    fx.chmod(f.ino, 0o6755);
    let both = SetAttr {
        uid: Some(7),
        mode: Some(0o4755),
        ..set()
    };
    assert_eq!(
        fx.m.setattr(&root(), f.ino, &both, ts(2)).unwrap().perm,
        0o4755
    );
}

#[test]
fn utimes_rules() {
    let fx = setup();
    let u = user(1000);
    let f =
        fx.m.mknod(
            &u,
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(2),
        )
        .unwrap();
    let explicit = SetAttr {
        atime: Some(SetTime::At(Timespec::new(100, 5))),
        mtime: Some(SetTime::At(Timespec::new(200, 6))),
        ..set()
    };
    let a = fx.m.setattr(&u, f.ino, &explicit, ts(50)).unwrap();
    assert_eq!(
        (a.atime, a.mtime, a.ctime),
        (Timespec::new(100, 5), Timespec::new(200, 6), ts(50))
    );
    let now = SetAttr {
        atime: Some(SetTime::Now),
        mtime: Some(SetTime::Now),
        ..set()
    };
    let a = fx.m.setattr(&u, f.ino, &now, ts(60)).unwrap();
    assert_eq!((a.atime, a.mtime, a.ctime), (ts(60), ts(60), ts(60)));
    // Only one of them.
    let only_m = SetAttr {
        mtime: Some(SetTime::At(ts(70))),
        ..set()
    };
    let a = fx.m.setattr(&u, f.ino, &only_m, ts(61)).unwrap();
    assert_eq!((a.atime, a.mtime), (ts(60), ts(70)));
    // Others: explicit times need ownership (EPERM); "now" needs write permission.
    let other = user(1001);
    assert_eq!(
        fx.m.setattr(&other, f.ino, &explicit, ts(62)).err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        fx.m.setattr(&other, f.ino, &now, ts(62)).err(),
        Some(Errno::EACCES)
    );
    fx.m.setattr(&u, f.ino, &mode(0o646), ts(62)).unwrap();
    fx.m.setattr(&other, f.ino, &now, ts(63)).unwrap();
    assert_eq!(
        fx.m.setattr(&other, f.ino, &explicit, ts(63)).err(),
        Some(Errno::EPERM)
    );
    fx.m.setattr(&root(), f.ino, &explicit, ts(64)).unwrap();
    // An explicit ctime (restore tools).
    let c = SetAttr {
        ctime: Some(ts(3)),
        ..set()
    };
    assert_eq!(
        fx.m.setattr(&root(), f.ino, &c, ts(65)).unwrap().ctime,
        ts(3)
    );
}

#[test]
fn truncate_rules() {
    let fx = setup();
    let u = user(1000);
    let f =
        fx.m.mknod(
            &u,
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(2),
        )
        .unwrap();
    let size = |n: u64| SetAttr {
        size: Some(n),
        ..set()
    };
    let a = fx.m.setattr(&u, f.ino, &size(1000), ts(3)).unwrap();
    assert_eq!((a.size, a.mtime, a.ctime), (1000, ts(3), ts(3)));
    // Same size still stamps mtime and ctime.
    let a = fx.m.setattr(&u, f.ino, &size(1000), ts(4)).unwrap();
    assert_eq!((a.mtime, a.ctime), (ts(4), ts(4)));
    let other = user(1001);
    assert_eq!(
        fx.m.setattr(&other, f.ino, &size(0), ts(5)).err(),
        Some(Errno::EACCES)
    );
    let via = SetAttr {
        size: Some(0),
        via_handle: true,
        ..set()
    };
    assert_eq!(fx.m.setattr(&other, f.ino, &via, ts(5)).unwrap().size, 0);
    assert_eq!(
        fx.m.setattr(&u, f.ino, &size(FILE_SIZE_MAX + 1), ts(5))
            .err(),
        Some(Errno::EFBIG)
    );
    assert_eq!(
        fx.m.setattr(&u, f.ino, &size(FILE_SIZE_MAX), ts(5))
            .unwrap()
            .size,
        FILE_SIZE_MAX
    );
    fx.m.setattr(&u, f.ino, &size(0), ts(5)).unwrap();
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o777);
    assert_eq!(
        fx.m.setattr(&root(), d.ino, &size(0), ts(5)).err(),
        Some(Errno::EISDIR)
    );
    let p =
        fx.m.mknod(&root(), Ino::ROOT, b"p", FileType::Fifo, 0o666, 0, 0, ts(2))
            .unwrap();
    assert_eq!(
        fx.m.setattr(&root(), p.ino, &size(0), ts(5)).err(),
        Some(Errno::EINVAL)
    );
    // Root bypasses the write check.
    fx.m.setattr(&u, f.ino, &mode(0o000), ts(6)).unwrap();
    fx.m.setattr(&root(), f.ino, &size(10), ts(6)).unwrap();
    assert_eq!(
        fx.m.setattr(&root(), Ino(999), &size(10), ts(6)).err(),
        Some(Errno::ENOENT)
    );
    fx.check();
}

#[test]
fn access_checks() {
    let fx = setup();
    let u = Ctx::new(1000, 100, vec![]);
    let f =
        fx.m.mknod(
            &u,
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o640,
            0,
            0,
            ts(2),
        )
        .unwrap();
    fx.m.access(&u, f.ino, R_OK | W_OK).unwrap();
    assert_eq!(fx.m.access(&u, f.ino, X_OK), Err(Errno::EACCES));
    let member = Ctx::new(1001, 100, vec![]);
    fx.m.access(&member, f.ino, R_OK).unwrap();
    assert_eq!(fx.m.access(&member, f.ino, W_OK), Err(Errno::EACCES));
    let other = user(1002);
    fx.m.access(&other, f.ino, 0).unwrap();
    assert_eq!(fx.m.access(&other, f.ino, R_OK), Err(Errno::EACCES));
    fx.m.access(&root(), f.ino, R_OK | W_OK).unwrap();
    assert_eq!(fx.m.access(&root(), f.ino, X_OK), Err(Errno::EACCES));
    fx.chmod(f.ino, 0o010);
    fx.m.access(&root(), f.ino, X_OK).unwrap();
    fx.m.access(&root(), Ino::ROOT, X_OK).unwrap();
    assert_eq!(fx.m.access(&root(), Ino(999), 0), Err(Errno::ENOENT));
}
