use super::*;
use crate::kv::{self, Kv};

#[test]
fn format_creates_root_and_counters() {
    let fx = setup();
    let r = fx.attr(Ino::ROOT);
    assert_eq!(r.kind, FileType::Directory);
    assert_eq!((r.perm, r.uid, r.gid, r.nlink), (0o777, 0, 0, 2));
    assert_eq!(r.parent, Ino::ROOT);
    assert_eq!((r.atime, r.mtime, r.ctime), (ts(1), ts(1), ts(1)));
    assert_eq!(fx.m.format_info().name, "test-vol");
    let a = fx.file(&root(), Ino::ROOT, "f", 0o644);
    assert_eq!(a.ino, Ino(2), "first inode is 2");
    assert_eq!(fx.m.new_slice_id().unwrap(), SliceId(1));
    assert_eq!(fx.m.new_slice_id().unwrap(), SliceId(2));
    fx.check();
}

#[test]
fn format_twice_needs_force_and_keeps_data() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "keep", 0o644);
    let mut other = Format::new("renamed", "uuid-2");
    other.capacity = 1 << 30;
    assert_eq!(
        Meta::format(&*fx.kv, &other, false, ts(2)),
        Err(Errno::EEXIST)
    );
    Meta::format(&*fx.kv, &other, true, ts(2)).unwrap();
    let m = Meta::load(fx.kv.clone()).unwrap();
    assert_eq!(m.format_info(), &other);
    assert_eq!(m.lookup(&root(), Ino::ROOT, b"keep").unwrap().ino, f.ino);
    // Counters were kept: new ids do not collide with old ones.
    let g = m
        .mknod(
            &root(),
            Ino::ROOT,
            b"g",
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(3),
        )
        .unwrap();
    assert!(g.ino.0 > f.ino.0);
    check_invariants(&fx.kv);
}

#[test]
fn format_rejects_invalid_settings() {
    let kv = MemKv::new();
    let bad = Format::new("X", "u");
    assert_eq!(Meta::format(&kv, &bad, false, ts(1)), Err(Errno::EINVAL));
    assert!(kv.dump().is_empty());
}

#[test]
fn load_errors() {
    let kv: Arc<MemKv> = Arc::new(MemKv::new());
    assert_eq!(Meta::load(kv.clone()).err(), Some(Errno::ENOENT));
    kv::txn(&*kv, |t| {
        t.set(keys::SETTING, b"{not json");
        Ok(())
    })
    .unwrap();
    assert_eq!(Meta::load(kv.clone()).err(), Some(Errno::EIO));
    kv::txn(&*kv, |t| {
        t.set(keys::SETTING, &[0xff, 0xfe]);
        Ok(())
    })
    .unwrap();
    assert_eq!(Meta::load(kv).err(), Some(Errno::EIO));
}

#[test]
fn ids_come_in_batches() {
    let fx = setup();
    let counter =
        |name: &str| kv::read(&*fx.kv, |t| super::super::ids::get_counter(t, name)).unwrap();
    fx.file(&root(), Ino::ROOT, "a", 0o644);
    assert_eq!(counter(keys::NEXT_INODE), 2 + 256);
    for i in 0..300 {
        fx.file(&root(), Ino::ROOT, &format!("f{i}"), 0o644);
    }
    assert_eq!(counter(keys::NEXT_INODE), 2 + 512);
    fx.m.new_slice_id().unwrap();
    assert_eq!(counter(keys::NEXT_SLICE), 1 + 1024);
    // A second client gets its own, disjoint batches.
    let m2 = Meta::load(fx.kv.clone()).unwrap();
    let a = m2
        .mknod(
            &root(),
            Ino::ROOT,
            b"other",
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(3),
        )
        .unwrap();
    assert_eq!(a.ino, Ino(2 + 512));
    assert_eq!(m2.new_slice_id().unwrap(), SliceId(1025));
    fx.check();
}

#[test]
fn sessions() {
    let fx = setup();
    let a = fx.m.new_session("{\"host\":\"a\"}").unwrap();
    let m2 = Meta::load(fx.kv.clone()).unwrap();
    let b = m2.new_session("{\"host\":\"b\"}").unwrap();
    assert_ne!(a, b);
    assert_eq!(
        fx.m.list_sessions().unwrap(),
        vec![
            (a, "{\"host\":\"a\"}".to_string()),
            (b, "{\"host\":\"b\"}".to_string())
        ]
    );
    fx.m.close_session(a).unwrap();
    assert_eq!(fx.m.list_sessions().unwrap().len(), 1);
    fx.check();
}

#[test]
fn statfs_counts() {
    let mut f = Format::new("vol", "u");
    f.capacity = 1 << 30;
    f.inodes = 100;
    let fx = setup_with(f);
    let s = fx.m.statfs().unwrap();
    assert_eq!((s.total_bytes, s.used_bytes), (1 << 30, 0));
    assert_eq!((s.total_inodes, s.used_inodes), (100, 1));
    let a = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let set = SetAttr {
        size: Some(5000),
        ..Default::default()
    };
    fx.m.setattr(&root(), a.ino, &set, ts(3)).unwrap();
    let s = fx.m.statfs().unwrap();
    assert_eq!((s.used_bytes, s.used_inodes), (5000, 2));
    let unlimited = setup().m.statfs().unwrap();
    assert_eq!(unlimited.total_bytes, 1 << 50);
    assert_eq!(unlimited.total_inodes, 10_000_000_000);
    fx.m.sync().unwrap();
    fx.kv.sync().unwrap();
}

#[test]
fn inode_limit_gives_enospc() {
    let mut f = Format::new("vol", "u");
    f.inodes = 3;
    let fx = setup_with(f);
    fx.file(&root(), Ino::ROOT, "a", 0o644);
    fx.dir(&root(), Ino::ROOT, "b", 0o755);
    assert_eq!(
        fx.m.mknod(
            &root(),
            Ino::ROOT,
            b"c",
            FileType::RegularFile,
            0o644,
            0,
            0,
            ts(2)
        ),
        Err(Errno::ENOSPC)
    );
    fx.check();
}
