use super::*;

fn set(fx: &Fx, ctx: &Ctx, ino: Ino, name: &str, v: &str, mode: XattrMode) -> Result<(), Errno> {
    fx.m.setxattr(ctx, ino, name.as_bytes(), v.as_bytes(), mode, ts(20))
}

#[test]
fn set_get_list_remove() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    set(&fx, &root(), f.ino, "user.a", "1", XattrMode::Any).unwrap();
    assert_eq!(fx.attr(f.ino).ctime, ts(20));
    set(&fx, &root(), f.ino, "user.b", "", XattrMode::Create).unwrap();
    assert_eq!(fx.m.getxattr(&root(), f.ino, b"user.a").unwrap(), b"1");
    assert_eq!(fx.m.getxattr(&root(), f.ino, b"user.b").unwrap(), b"");
    assert_eq!(
        fx.m.listxattr(&root(), f.ino).unwrap(),
        vec![b"user.a".to_vec(), b"user.b".to_vec()]
    );
    assert_eq!(
        set(&fx, &root(), f.ino, "user.a", "2", XattrMode::Create),
        Err(Errno::EEXIST)
    );
    set(&fx, &root(), f.ino, "user.a", "2", XattrMode::Replace).unwrap();
    assert_eq!(fx.m.getxattr(&root(), f.ino, b"user.a").unwrap(), b"2");
    assert_eq!(
        set(&fx, &root(), f.ino, "user.c", "2", XattrMode::Replace),
        Err(Errno::ENODATA)
    );
    assert_eq!(
        fx.m.getxattr(&root(), f.ino, b"user.c").err(),
        Some(Errno::ENODATA)
    );
    fx.m.removexattr(&root(), f.ino, b"user.a", ts(30)).unwrap();
    assert_eq!(fx.attr(f.ino).ctime, ts(30));
    assert_eq!(
        fx.m.removexattr(&root(), f.ino, b"user.a", ts(31)),
        Err(Errno::ENODATA)
    );
    assert_eq!(
        fx.m.listxattr(&root(), f.ino).unwrap(),
        vec![b"user.b".to_vec()]
    );
    assert_eq!(fx.m.listxattr(&root(), Ino(999)).err(), Some(Errno::ENOENT));
    fx.check();
}

#[test]
fn size_limits() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let long = format!("user.{}", "n".repeat(XATTR_NAME_MAX - 5));
    set(&fx, &root(), f.ino, &long, "v", XattrMode::Any).unwrap();
    let too_long = format!("{long}x");
    assert_eq!(
        set(&fx, &root(), f.ino, &too_long, "v", XattrMode::Any),
        Err(Errno::ERANGE)
    );
    assert_eq!(
        fx.m.getxattr(&root(), f.ino, too_long.as_bytes()).err(),
        Some(Errno::ERANGE)
    );
    assert_eq!(
        set(&fx, &root(), f.ino, "", "v", XattrMode::Any),
        Err(Errno::ERANGE)
    );
    let big = vec![0u8; XATTR_SIZE_MAX + 1];
    assert_eq!(
        fx.m.setxattr(&root(), f.ino, b"user.big", &big, XattrMode::Any, ts(2)),
        Err(Errno::E2BIG)
    );
    fx.m.setxattr(
        &root(),
        f.ino,
        b"user.big",
        &big[1..],
        XattrMode::Any,
        ts(2),
    )
    .unwrap();
}

#[test]
fn user_namespace_permissions() {
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
    set(&fx, &u, f.ino, "user.a", "1", XattrMode::Any).unwrap();
    let other = user(1001);
    assert_eq!(fx.m.getxattr(&other, f.ino, b"user.a").unwrap(), b"1");
    assert_eq!(
        set(&fx, &other, f.ino, "user.a", "2", XattrMode::Any),
        Err(Errno::EACCES)
    );
    assert_eq!(
        fx.m.removexattr(&other, f.ino, b"user.a", ts(3)),
        Err(Errno::EACCES)
    );
    fx.m.setattr(
        &u,
        f.ino,
        &SetAttr {
            mode: Some(0o200),
            ..Default::default()
        },
        ts(3),
    )
    .unwrap();
    assert_eq!(
        fx.m.getxattr(&u, f.ino, b"user.a").err(),
        Some(Errno::EACCES)
    );
    set(&fx, &u, f.ino, "user.a", "3", XattrMode::Any).unwrap();
    // Only regular files and directories carry user attributes.
    let l = fx.m.symlink(&u, Ino::ROOT, b"l", b"f", ts(2)).unwrap();
    assert_eq!(
        set(&fx, &u, l.ino, "user.a", "1", XattrMode::Any),
        Err(Errno::EPERM)
    );
    assert_eq!(
        fx.m.getxattr(&u, l.ino, b"user.a").err(),
        Some(Errno::ENODATA)
    );
    let p =
        fx.m.mknod(&u, Ino::ROOT, b"p", FileType::Fifo, 0o666, 0, 0, ts(2))
            .unwrap();
    assert_eq!(
        set(&fx, &root(), p.ino, "user.a", "1", XattrMode::Any),
        Err(Errno::EPERM)
    );
    // Sticky directories: only the owner (or root) sets user attributes.
    let d = fx.m.mkdir(&u, Ino::ROOT, b"d", 0o1777, 0, ts(2)).unwrap();
    assert_eq!(
        set(&fx, &other, d.ino, "user.a", "1", XattrMode::Any),
        Err(Errno::EPERM)
    );
    set(&fx, &u, d.ino, "user.a", "1", XattrMode::Any).unwrap();
    set(&fx, &root(), d.ino, "user.b", "1", XattrMode::Any).unwrap();
    fx.check();
}

#[test]
fn trusted_is_roots_and_others_pass() {
    let fx = setup();
    let u = user(1000);
    let f =
        fx.m.mknod(
            &u,
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o000,
            0,
            0,
            ts(2),
        )
        .unwrap();
    assert_eq!(
        set(&fx, &u, f.ino, "trusted.a", "1", XattrMode::Any),
        Err(Errno::EPERM)
    );
    set(&fx, &root(), f.ino, "trusted.a", "1", XattrMode::Any).unwrap();
    assert_eq!(
        fx.m.getxattr(&u, f.ino, b"trusted.a").err(),
        Some(Errno::ENODATA)
    );
    assert_eq!(fx.m.getxattr(&root(), f.ino, b"trusted.a").unwrap(), b"1");
    set(&fx, &u, f.ino, "security.selinux", "ctx", XattrMode::Any).unwrap();
    assert_eq!(
        fx.m.getxattr(&u, f.ino, b"security.selinux").unwrap(),
        b"ctx"
    );
    // Non-root does not see trusted names.
    assert_eq!(
        fx.m.listxattr(&u, f.ino).unwrap(),
        vec![b"security.selinux".to_vec()]
    );
    assert_eq!(fx.m.listxattr(&root(), f.ino).unwrap().len(), 2);
}
