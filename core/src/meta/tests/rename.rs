use super::*;

const NONE: RenameFlags = RenameFlags {
    noreplace: false,
    exchange: false,
};
const NOREPLACE: RenameFlags = RenameFlags {
    noreplace: true,
    exchange: false,
};
const EXCHANGE: RenameFlags = RenameFlags {
    noreplace: false,
    exchange: true,
};

fn mv(fx: &Fx, ctx: &Ctx, p: Ino, n: &str, np: Ino, nn: &str, f: RenameFlags) -> Result<(), Errno> {
    fx.m.rename(ctx, p, n.as_bytes(), np, nn.as_bytes(), f, ts(50))
        .map(drop)
}

#[test]
fn rename_file_within_and_across_directories() {
    let fx = setup();
    let a = fx.dir(&root(), Ino::ROOT, "a", 0o755);
    let b = fx.dir(&root(), Ino::ROOT, "b", 0o755);
    let f = fx.file(&root(), a.ino, "f", 0o644);
    mv(&fx, &root(), a.ino, "f", a.ino, "g", NONE).unwrap();
    assert_eq!(fx.names(a.ino), vec!["g"]);
    assert_eq!(fx.attr(f.ino).ctime, ts(50));
    let aa = fx.attr(a.ino);
    assert_eq!((aa.mtime, aa.ctime, aa.nlink), (ts(50), ts(50), 2));
    mv(&fx, &root(), a.ino, "g", b.ino, "h", NONE).unwrap();
    assert!(fx.names(a.ino).is_empty());
    assert_eq!(fx.names(b.ino), vec!["h"]);
    assert_eq!(fx.lookup(b.ino, "h").unwrap().ino, f.ino);
    assert_eq!(fx.attr(b.ino).mtime, ts(50));
    fx.check();
}

#[test]
fn rename_directory_across_parents_fixes_links_and_parent() {
    let fx = setup();
    let a = fx.dir(&root(), Ino::ROOT, "a", 0o755);
    let b = fx.dir(&root(), Ino::ROOT, "b", 0o755);
    let d = fx.dir(&root(), a.ino, "d", 0o755);
    assert_eq!(fx.attr(a.ino).nlink, 3);
    mv(&fx, &root(), a.ino, "d", b.ino, "d", NONE).unwrap();
    assert_eq!(fx.attr(a.ino).nlink, 2);
    assert_eq!(fx.attr(b.ino).nlink, 3);
    let da = fx.attr(d.ino);
    assert_eq!((da.parent, da.ctime), (b.ino, ts(50)));
    assert_eq!(fx.lookup(d.ino, "..").unwrap().ino, b.ino);
    fx.check();
}

#[test]
fn rename_replaces_targets() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let g = fx.file(&root(), Ino::ROOT, "g", 0o644);
    mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "g", NONE).unwrap();
    assert_eq!(fx.lookup(Ino::ROOT, "g").unwrap().ino, f.ino);
    assert_eq!(fx.m.getattr(g.ino).err(), Some(Errno::ENOENT));
    // A target with another link survives with one link less.
    let h = fx.file(&root(), Ino::ROOT, "h", 0o644);
    fx.m.link(&root(), h.ino, Ino::ROOT, b"h2", ts(3)).unwrap();
    mv(&fx, &root(), Ino::ROOT, "g", Ino::ROOT, "h", NONE).unwrap();
    let ha = fx.attr(h.ino);
    assert_eq!((ha.nlink, ha.ctime), (1, ts(50)));
    // An empty directory over an empty directory, across parents.
    let a = fx.dir(&root(), Ino::ROOT, "a", 0o755);
    let x = fx.dir(&root(), Ino::ROOT, "x", 0o755);
    let y = fx.dir(&root(), a.ino, "y", 0o755);
    assert_eq!(fx.attr(Ino::ROOT).nlink, 4);
    mv(&fx, &root(), Ino::ROOT, "x", a.ino, "y", NONE).unwrap();
    assert_eq!(fx.m.getattr(y.ino).err(), Some(Errno::ENOENT));
    assert_eq!(fx.attr(Ino::ROOT).nlink, 3);
    assert_eq!(fx.attr(a.ino).nlink, 3);
    assert_eq!(fx.attr(x.ino).parent, a.ino);
    // Within one parent.
    fx.dir(&root(), a.ino, "z", 0o755);
    mv(&fx, &root(), a.ino, "y", a.ino, "z", NONE).unwrap();
    assert_eq!(fx.attr(a.ino).nlink, 3);
    assert_eq!(fx.names(a.ino), vec!["z"]);
    fx.check();
}

#[test]
fn rename_replacing_open_file_keeps_it() {
    let fx = setup();
    fx.file(&root(), Ino::ROOT, "f", 0o644);
    let g = fx.file(&root(), Ino::ROOT, "g", 0o644);
    fx.m.open(&root(), g.ino, 0).unwrap();
    mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "g", NONE).unwrap();
    assert_eq!(fx.attr(g.ino).nlink, 0);
    fx.check();
    fx.m.release(g.ino).unwrap();
    assert_eq!(fx.m.getattr(g.ino).err(), Some(Errno::ENOENT));
    fx.check();
}

#[test]
fn same_inode_is_a_no_op() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    fx.m.link(&root(), f.ino, Ino::ROOT, b"g", ts(3)).unwrap();
    let before = fx.kv.dump();
    mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "g", NONE).unwrap();
    mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "f", NONE).unwrap();
    assert_eq!(fx.kv.dump(), before);
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    mv(&fx, &root(), Ino::ROOT, "d", Ino::ROOT, "d", NONE).unwrap();
    assert_eq!(fx.attr(d.ino).parent, Ino::ROOT);
    // Even without write permission (Linux returns before the checks).
    fx.chmod(Ino::ROOT, 0o555);
    mv(&fx, &user(9), Ino::ROOT, "f", Ino::ROOT, "g", NONE).unwrap();
    fx.check();
}

#[test]
fn type_mismatch_and_non_empty_targets() {
    let fx = setup();
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    fx.dir(&root(), Ino::ROOT, "e", 0o755);
    fx.file(&root(), Ino::ROOT, "f", 0o644);
    fx.file(&root(), d.ino, "inside", 0o644);
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "d", NONE),
        Err(Errno::EISDIR)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "e", Ino::ROOT, "f", NONE),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "e", Ino::ROOT, "d", NONE),
        Err(Errno::ENOTEMPTY)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "nope", Ino::ROOT, "x", NONE),
        Err(Errno::ENOENT)
    );
    let f = fx.lookup(Ino::ROOT, "f").unwrap();
    assert_eq!(
        mv(&fx, &root(), f.ino, "x", Ino::ROOT, "y", NONE),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "e", f.ino, "y", NONE),
        Err(Errno::ENOTDIR)
    );
    fx.check();
}

#[test]
fn directory_into_its_own_subtree() {
    let fx = setup();
    let a = fx.dir(&root(), Ino::ROOT, "a", 0o755);
    let b = fx.dir(&root(), a.ino, "b", 0o755);
    let c = fx.dir(&root(), b.ino, "c", 0o755);
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "a", c.ino, "x", NONE),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "a", a.ino, "x", NONE),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "a", b.ino, "c", NONE),
        Err(Errno::EINVAL)
    );
    // Over one of its own ancestors: the target is not empty.
    assert_eq!(
        mv(&fx, &root(), b.ino, "c", Ino::ROOT, "a", NONE),
        Err(Errno::ENOTEMPTY)
    );
    assert_eq!(
        mv(&fx, &root(), b.ino, "c", Ino::ROOT, "a", EXCHANGE),
        Err(Errno::EINVAL)
    );
    // Up the tree is fine.
    mv(&fx, &root(), b.ino, "c", Ino::ROOT, "c", NONE).unwrap();
    assert_eq!(fx.attr(c.ino).parent, Ino::ROOT);
    fx.check();
}

#[test]
fn dots_and_flags() {
    let fx = setup();
    fx.file(&root(), Ino::ROOT, "f", 0o644);
    fx.file(&root(), Ino::ROOT, "g", 0o644);
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, ".", Ino::ROOT, "x", NONE),
        Err(Errno::EBUSY)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "..", NONE),
        Err(Errno::EBUSY)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "", NONE),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "a/b", NONE),
        Err(Errno::EINVAL)
    );
    let both = RenameFlags {
        noreplace: true,
        exchange: true,
    };
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "x", both),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "g", NOREPLACE),
        Err(Errno::EEXIST)
    );
    mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "h", NOREPLACE).unwrap();
    assert_eq!(
        mv(&fx, &root(), Ino::ROOT, "h", Ino::ROOT, "x", EXCHANGE),
        Err(Errno::ENOENT)
    );
    fx.check();
}

#[test]
fn exchange_swaps_entries() {
    let fx = setup();
    let a = fx.dir(&root(), Ino::ROOT, "a", 0o755);
    let b = fx.dir(&root(), Ino::ROOT, "b", 0o755);
    let f = fx.file(&root(), a.ino, "f", 0o644);
    let d = fx.dir(&root(), b.ino, "d", 0o755);
    let cookie_f = fx.m.readdir(&root(), a.ino, 2, 10, false).unwrap()[0].next_offset;
    mv(&fx, &root(), a.ino, "f", b.ino, "d", EXCHANGE).unwrap();
    assert_eq!(fx.lookup(a.ino, "f").unwrap().ino, d.ino);
    assert_eq!(fx.lookup(b.ino, "d").unwrap().ino, f.ino);
    assert_eq!(fx.attr(d.ino).parent, a.ino);
    assert_eq!(fx.attr(a.ino).nlink, 3);
    assert_eq!(fx.attr(b.ino).nlink, 2);
    assert_eq!(fx.attr(f.ino).ctime, ts(50));
    assert_eq!(fx.attr(d.ino).ctime, ts(50));
    let ents = fx.m.readdir(&root(), a.ino, 2, 10, false).unwrap();
    assert_eq!(ents.len(), 1);
    assert_eq!(
        (ents[0].kind, ents[0].next_offset),
        (FileType::Directory, cookie_f)
    );
    // A non-empty directory may be exchanged; dir with dir across parents.
    fx.file(&root(), d.ino, "inside", 0o644);
    let e = fx.dir(&root(), b.ino, "e", 0o755);
    mv(&fx, &root(), a.ino, "f", b.ino, "e", EXCHANGE).unwrap();
    assert_eq!(fx.attr(d.ino).parent, b.ino);
    assert_eq!(fx.attr(e.ino).parent, a.ino);
    // Same parent.
    mv(&fx, &root(), b.ino, "d", b.ino, "e", EXCHANGE).unwrap();
    assert_eq!(fx.lookup(b.ino, "e").unwrap().ino, f.ino);
    fx.check();
}

#[test]
fn rename_permissions() {
    let fx = setup();
    let u = user(1000);
    let a = fx.dir(&u, Ino::ROOT, "a", 0o755);
    let b = fx.dir(&root(), Ino::ROOT, "b", 0o755);
    fx.file(&u, a.ino, "f", 0o644);
    // No write on the target directory.
    assert_eq!(
        mv(&fx, &u, a.ino, "f", b.ino, "f", NONE),
        Err(Errno::EACCES)
    );
    // No write on the source directory.
    assert_eq!(
        mv(&fx, &u, b.ino, "x", a.ino, "x", NONE),
        Err(Errno::ENOENT)
    );
    fx.file(&root(), b.ino, "rootfile", 0o644);
    assert_eq!(
        mv(&fx, &u, b.ino, "rootfile", a.ino, "x", NONE),
        Err(Errno::EACCES)
    );
    // No search on the source directory.
    fx.m.setattr(
        &u,
        a.ino,
        &SetAttr {
            mode: Some(0o644),
            ..Default::default()
        },
        ts(2),
    )
    .unwrap();
    assert_eq!(
        mv(&fx, &u, a.ino, "f", a.ino, "g", NONE),
        Err(Errno::EACCES)
    );
    fx.m.setattr(
        &u,
        a.ino,
        &SetAttr {
            mode: Some(0o755),
            ..Default::default()
        },
        ts(2),
    )
    .unwrap();
    mv(&fx, &u, a.ino, "f", a.ino, "g", NONE).unwrap();
    fx.check();
}

#[test]
fn moving_a_directory_needs_write_on_it() {
    let fx = setup();
    let u = user(1000);
    let a = fx.dir(&u, Ino::ROOT, "a", 0o777);
    let b = fx.dir(&u, Ino::ROOT, "b", 0o777);
    fx.dir(&root(), a.ino, "d", 0o755);
    assert_eq!(
        mv(&fx, &u, a.ino, "d", b.ino, "d", NONE),
        Err(Errno::EACCES)
    );
    // Within the same parent it does not.
    mv(&fx, &u, a.ino, "d", a.ino, "e", NONE).unwrap();
    // For an exchange, a directory target moving to the other parent needs it too.
    fx.file(&u, b.ino, "f", 0o644);
    assert_eq!(
        mv(&fx, &u, b.ino, "f", a.ino, "e", EXCHANGE),
        Err(Errno::EACCES)
    );
    mv(&fx, &root(), b.ino, "f", a.ino, "e", EXCHANGE).unwrap();
    fx.check();
}

#[test]
fn sticky_rename() {
    let fx = setup();
    let tmp = fx.dir(&root(), Ino::ROOT, "tmp", 0o1777);
    let (a, b) = (user(1000), user(1001));
    fx.m.mknod(
        &a,
        tmp.ino,
        b"fa",
        FileType::RegularFile,
        0o666,
        0,
        0,
        ts(2),
    )
    .unwrap();
    fx.m.mknod(
        &b,
        tmp.ino,
        b"fb",
        FileType::RegularFile,
        0o666,
        0,
        0,
        ts(2),
    )
    .unwrap();
    // b may not move a's file, nor replace it with its own.
    assert_eq!(
        mv(&fx, &b, tmp.ino, "fa", tmp.ino, "x", NONE),
        Err(Errno::EPERM)
    );
    assert_eq!(
        mv(&fx, &b, tmp.ino, "fb", tmp.ino, "fa", NONE),
        Err(Errno::EPERM)
    );
    mv(&fx, &b, tmp.ino, "fb", tmp.ino, "fb2", NONE).unwrap();
    mv(&fx, &a, tmp.ino, "fa", tmp.ino, "fb2", NONE).unwrap_err();
    mv(&fx, &root(), tmp.ino, "fa", tmp.ino, "fb2", NONE).unwrap();
    fx.check();
}

#[test]
fn cookies_change_on_rename() {
    let fx = setup();
    fx.file(&root(), Ino::ROOT, "a", 0o644);
    fx.file(&root(), Ino::ROOT, "b", 0o644);
    mv(&fx, &root(), Ino::ROOT, "a", Ino::ROOT, "c", NONE).unwrap();
    let ents = fx.m.readdir(&root(), Ino::ROOT, 2, 10, false).unwrap();
    let names: Vec<_> = ents.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, vec![b"b".to_vec(), b"c".to_vec()]);
    assert!(ents[0].next_offset < ents[1].next_offset);
    fx.check();
}

#[test]
fn both_parents_are_stamped() {
    let fx = setup();
    let a = fx.dir(&root(), Ino::ROOT, "a", 0o755);
    let b = fx.dir(&root(), Ino::ROOT, "b", 0o755);
    fx.file(&root(), a.ino, "f", 0o644);
    mv(&fx, &root(), a.ino, "f", b.ino, "f", NONE).unwrap();
    for d in [a.ino, b.ino] {
        let at = fx.attr(d);
        assert_eq!((at.mtime, at.ctime), (ts(50), ts(50)));
    }
    assert_eq!(fx.attr(Ino::ROOT).mtime, ts(10));
}

#[test]
fn exchange_files_in_one_directory() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let g = fx.file(&root(), Ino::ROOT, "g", 0o600);
    mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "g", EXCHANGE).unwrap();
    assert_eq!(fx.lookup(Ino::ROOT, "f").unwrap().ino, g.ino);
    assert_eq!(fx.lookup(Ino::ROOT, "g").unwrap().ino, f.ino);
    assert_eq!(fx.attr(f.ino).nlink, 1);
    // A file and a directory swap too (no type checks for an exchange).
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    mv(&fx, &root(), Ino::ROOT, "f", Ino::ROOT, "d", EXCHANGE).unwrap();
    assert_eq!(fx.lookup(Ino::ROOT, "f").unwrap().ino, d.ino);
    assert_eq!(fx.attr(Ino::ROOT).nlink, 3);
    fx.check();
}
