use super::*;

#[test]
fn mknod_sets_attrs_and_stamps_parent() {
    let fx = setup();
    let u = Ctx::new(1000, 100, vec![]);
    let a =
        fx.m.mknod(
            &u,
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o100666,
            0o022,
            0,
            ts(7),
        )
        .unwrap();
    assert_eq!(a.kind, FileType::RegularFile);
    assert_eq!(
        (a.perm, a.uid, a.gid, a.nlink, a.size),
        (0o644, 1000, 100, 1, 0)
    );
    assert_eq!((a.atime, a.mtime, a.ctime), (ts(7), ts(7), ts(7)));
    assert_eq!(a.parent, Ino(0));
    let r = fx.attr(Ino::ROOT);
    assert_eq!((r.mtime, r.ctime, r.nlink), (ts(7), ts(7), 2));
    assert_eq!(fx.lookup(Ino::ROOT, "f").unwrap(), a);
    assert_eq!(fx.attr(a.ino), a);
    for (i, kind) in [
        FileType::Fifo,
        FileType::Socket,
        FileType::CharDevice,
        FileType::BlockDevice,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("n{i}");
        let a =
            fx.m.mknod(
                &root(),
                Ino::ROOT,
                name.as_bytes(),
                kind,
                0o640,
                0,
                0x0801,
                ts(8),
            )
            .unwrap();
        assert_eq!((a.kind, a.rdev, a.perm), (kind, 0x0801, 0o640));
    }
    fx.check();
}

#[test]
fn mknod_rejects_dirs_symlinks_and_devices_for_users() {
    let fx = setup();
    let u = user(1000);
    for kind in [FileType::Directory, FileType::Symlink] {
        assert_eq!(
            fx.m.mknod(&root(), Ino::ROOT, b"x", kind, 0o644, 0, 0, ts(2)),
            Err(Errno::EINVAL)
        );
    }
    for kind in [FileType::CharDevice, FileType::BlockDevice] {
        assert_eq!(
            fx.m.mknod(&u, Ino::ROOT, b"x", kind, 0o644, 0, 1, ts(2)),
            Err(Errno::EPERM)
        );
    }
    fx.m.mknod(&u, Ino::ROOT, b"fifo", FileType::Fifo, 0o644, 0, 0, ts(2))
        .unwrap();
    fx.check();
}

#[test]
fn name_errors() {
    let fx = setup();
    let long = vec![b'a'; 256];
    let f = |name: &[u8]| {
        fx.m.mknod(
            &root(),
            Ino::ROOT,
            name,
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(2),
        )
    };
    assert_eq!(f(b"").err(), Some(Errno::ENOENT));
    assert_eq!(f(b"a/b").err(), Some(Errno::EINVAL));
    assert_eq!(f(b"a\0").err(), Some(Errno::EINVAL));
    assert_eq!(f(&long).err(), Some(Errno::ENAMETOOLONG));
    assert_eq!(f(b".").err(), Some(Errno::EEXIST));
    assert_eq!(f(b"..").err(), Some(Errno::EEXIST));
    assert!(f(&long[..255]).is_ok());
    assert_eq!(
        fx.m.mkdir(&root(), Ino::ROOT, b".", 0o755, 0, ts(2)).err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        fx.m.lookup(&root(), Ino::ROOT, &long).err(),
        Some(Errno::ENAMETOOLONG)
    );
    assert_eq!(
        fx.m.lookup(&root(), Ino::ROOT, b"").err(),
        Some(Errno::ENOENT)
    );
    assert_eq!(
        fx.m.lookup(&root(), Ino::ROOT, b"nope").err(),
        Some(Errno::ENOENT)
    );
    fx.check();
}

#[test]
fn create_errors() {
    let fx = setup();
    let file = fx.file(&root(), Ino::ROOT, "f", 0o644);
    // Existing name.
    assert_eq!(
        fx.m.mknod(
            &root(),
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(2)
        )
        .err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        fx.m.mkdir(&root(), Ino::ROOT, b"f", 0o755, 0, ts(2)).err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        fx.m.symlink(&root(), Ino::ROOT, b"f", b"t", ts(2)).err(),
        Some(Errno::EEXIST)
    );
    // Parent is not a directory / does not exist.
    assert_eq!(
        fx.m.mkdir(&root(), file.ino, b"x", 0o755, 0, ts(2)).err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(
        fx.m.lookup(&root(), file.ino, b"x").err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(
        fx.m.mkdir(&root(), Ino(999), b"x", 0o755, 0, ts(2)).err(),
        Some(Errno::ENOENT)
    );
    fx.check();
}

#[test]
fn create_needs_search_and_write_on_parent() {
    let fx = setup();
    let u = user(1000);
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    fx.file(&root(), d.ino, "exists", 0o644);
    // No write permission: EACCES, but an existing name is EEXIST first.
    assert_eq!(
        fx.m.mkdir(&u, d.ino, b"x", 0o755, 0, ts(2)).err(),
        Some(Errno::EACCES)
    );
    assert_eq!(
        fx.m.mkdir(&u, d.ino, b"exists", 0o755, 0, ts(2)).err(),
        Some(Errno::EEXIST)
    );
    // No search permission: EACCES even for an existing name.
    fx.chmod(d.ino, 0o776);
    assert_eq!(
        fx.m.mkdir(&u, d.ino, b"exists", 0o755, 0, ts(2)).err(),
        Some(Errno::EACCES)
    );
    assert_eq!(fx.m.lookup(&u, d.ino, b"exists").err(), Some(Errno::EACCES));
    fx.chmod(d.ino, 0o777);
    fx.m.mkdir(&u, d.ino, b"x", 0o755, 0, ts(2)).unwrap();
    // Root needs no permission bits on directories.
    fx.chmod(d.ino, 0o000);
    fx.m.mkdir(&root(), d.ino, b"y", 0o755, 0, ts(2)).unwrap();
    assert!(fx.m.lookup(&root(), d.ino, b"y").is_ok());
    fx.check();
}

#[test]
fn lookup_dot_and_dotdot() {
    let fx = setup();
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    let e = fx.dir(&root(), d.ino, "e", 0o755);
    assert_eq!(fx.lookup(e.ino, ".").unwrap().ino, e.ino);
    assert_eq!(fx.lookup(e.ino, "..").unwrap().ino, d.ino);
    assert_eq!(fx.lookup(d.ino, "..").unwrap().ino, Ino::ROOT);
    assert_eq!(fx.lookup(Ino::ROOT, "..").unwrap().ino, Ino::ROOT);
    assert_eq!(fx.lookup(Ino::ROOT, ".").unwrap().ino, Ino::ROOT);
}

#[test]
fn mkdir_links_and_umask() {
    let fx = setup();
    let d =
        fx.m.mkdir(&root(), Ino::ROOT, b"d", 0o777, 0o027, ts(3))
            .unwrap();
    assert_eq!(
        (d.kind, d.perm, d.nlink, d.parent),
        (FileType::Directory, 0o750, 2, Ino::ROOT)
    );
    assert_eq!(fx.attr(Ino::ROOT).nlink, 3);
    fx.dir(&root(), d.ino, "sub", 0o755);
    assert_eq!(fx.attr(d.ino).nlink, 3);
    fx.file(&root(), d.ino, "f", 0o644);
    assert_eq!(fx.attr(d.ino).nlink, 3);
    // Mode bits beyond 0o7777 are dropped; setuid/sticky kept.
    let s =
        fx.m.mkdir(&root(), Ino::ROOT, b"s", 0o41777, 0, ts(3))
            .unwrap();
    assert_eq!(s.perm, 0o1777);
    fx.check();
}

#[test]
fn setgid_directories_pass_group_and_bit() {
    let fx = setup();
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o777);
    fx.chown(d.ino, 0, 500);
    fx.chmod(d.ino, 0o2777);
    let u = Ctx::new(1000, 1000, vec![]);
    let f =
        fx.m.mknod(&u, d.ino, b"f", FileType::RegularFile, 0o644, 0, 0, ts(2))
            .unwrap();
    assert_eq!((f.uid, f.gid, f.perm), (1000, 500, 0o644));
    let sub = fx.m.mkdir(&u, d.ino, b"sub", 0o755, 0, ts(2)).unwrap();
    assert_eq!((sub.gid, sub.perm), (500, 0o2755));
    // A setgid-and-group-exec file made by a non-member loses setgid (Linux).
    let g =
        fx.m.mknod(&u, d.ino, b"g", FileType::RegularFile, 0o2755, 0, 0, ts(2))
            .unwrap();
    assert_eq!((g.gid, g.perm), (500, 0o755));
    // A member keeps it.
    let member = Ctx::new(1001, 1001, vec![500]);
    let h =
        fx.m.mknod(
            &member,
            d.ino,
            b"h",
            FileType::RegularFile,
            0o2755,
            0,
            0,
            ts(2),
        )
        .unwrap();
    assert_eq!(h.perm, 0o2755);
    // Without setgid on the parent, the caller's group is used.
    let plain = fx.dir(&root(), Ino::ROOT, "plain", 0o777);
    let p =
        fx.m.mknod(
            &u,
            plain.ino,
            b"p",
            FileType::RegularFile,
            0o2755,
            0,
            0,
            ts(2),
        )
        .unwrap();
    assert_eq!((p.gid, p.perm), (1000, 0o2755));
    let q = fx.m.mkdir(&u, plain.ino, b"q", 0o755, 0, ts(2)).unwrap();
    assert_eq!((q.gid, q.perm), (1000, 0o755));
    fx.check();
}

#[test]
fn symlink_and_readlink() {
    let fx = setup();
    let u = user(1000);
    let target = b"../some/where";
    let s = fx.m.symlink(&u, Ino::ROOT, b"l", target, ts(4)).unwrap();
    assert_eq!(
        (s.kind, s.perm, s.size, s.uid, s.nlink),
        (FileType::Symlink, 0o777, 13, 1000, 1)
    );
    assert_eq!(fx.m.readlink(s.ino).unwrap(), target.to_vec());
    assert_eq!(
        fx.m.symlink(&u, Ino::ROOT, b"e", b"", ts(4)).err(),
        Some(Errno::ENOENT)
    );
    let long = vec![b'x'; SYMLINK_MAX + 1];
    assert_eq!(
        fx.m.symlink(&u, Ino::ROOT, b"e", &long, ts(4)).err(),
        Some(Errno::ENAMETOOLONG)
    );
    assert!(fx
        .m
        .symlink(&u, Ino::ROOT, b"e", &long[..SYMLINK_MAX], ts(4))
        .is_ok());
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    assert_eq!(fx.m.readlink(f.ino).err(), Some(Errno::EINVAL));
    assert_eq!(fx.m.readlink(Ino(999)).err(), Some(Errno::ENOENT));
    fx.m.unlink(&root(), Ino::ROOT, b"l", ts(5)).unwrap();
    assert_eq!(fx.m.readlink(s.ino).err(), Some(Errno::ENOENT));
    fx.check();
}

#[test]
fn link_rules() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    let a = fx.m.link(&root(), f.ino, d.ino, b"g", ts(9)).unwrap();
    assert_eq!((a.ino, a.nlink, a.ctime), (f.ino, 2, ts(9)));
    let da = fx.attr(d.ino);
    assert_eq!((da.mtime, da.ctime, da.nlink), (ts(9), ts(9), 2));
    assert_eq!(fx.lookup(d.ino, "g").unwrap().ino, f.ino);
    // Errors.
    assert_eq!(
        fx.m.link(&root(), d.ino, Ino::ROOT, b"d2", ts(9)).err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        fx.m.link(&root(), f.ino, d.ino, b"g", ts(9)).err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        fx.m.link(&root(), f.ino, f.ino, b"x", ts(9)).err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(
        fx.m.link(&root(), Ino(999), d.ino, b"x", ts(9)).err(),
        Some(Errno::ENOENT)
    );
    assert_eq!(
        fx.m.link(&user(5), f.ino, d.ino, b"x", ts(9)).err(),
        Some(Errno::EACCES)
    );
    assert_eq!(
        fx.m.link(&root(), f.ino, d.ino, b".", ts(9)).err(),
        Some(Errno::EEXIST)
    );
    fx.check();
}

#[test]
fn link_limit() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    // Set nlink near the limit directly, then fix the entries the checker expects.
    crate::kv::txn(&*fx.kv, |t| {
        let mut n = super::super::store::load(t, f.ino)?;
        n.attr.nlink = super::super::LINK_MAX;
        super::super::store::store(t, &n);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        fx.m.link(&root(), f.ino, Ino::ROOT, b"g", ts(9)).err(),
        Some(Errno::EMLINK)
    );
}

#[test]
fn failed_ops_write_nothing() {
    let fx = setup();
    fx.file(&root(), Ino::ROOT, "f", 0o644);
    let before = fx.kv.dump();
    let _ = fx.m.mkdir(&root(), Ino::ROOT, b"f", 0o755, 0, ts(3));
    let _ = fx.m.mkdir(&user(3), Ino::ROOT, b"f", 0o755, 0, ts(3));
    let _ = fx.m.unlink(&root(), Ino::ROOT, b"nope", ts(3));
    let _ = fx.m.rmdir(&root(), Ino::ROOT, b"f", ts(3));
    let _ = fx.m.link(&root(), Ino::ROOT, Ino::ROOT, b"x", ts(3));
    let _ = fx.m.rename(
        &root(),
        Ino::ROOT,
        b"nope",
        Ino::ROOT,
        b"x",
        RenameFlags::default(),
        ts(3),
    );
    let _ = fx.m.setxattr(
        &root(),
        Ino::ROOT,
        b"user.x",
        b"v",
        XattrMode::Replace,
        ts(3),
    );
    // Only the id batch counter may have moved (ids of failed creates are not reused).
    let strip = |d: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
        d.into_iter()
            .filter(|(k, _)| k != &keys::counter(keys::NEXT_INODE))
            .collect()
    };
    assert_eq!(strip(fx.kv.dump()), strip(before));
}
