use super::*;
use crate::chunk::SliceRef;

#[test]
fn unlink_file_and_hard_links() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    fx.m.link(&root(), f.ino, Ino::ROOT, b"g", ts(3)).unwrap();
    fx.m.unlink(&root(), Ino::ROOT, b"f", ts(4)).unwrap();
    let a = fx.attr(f.ino);
    assert_eq!((a.nlink, a.ctime), (1, ts(4)));
    let r = fx.attr(Ino::ROOT);
    assert_eq!((r.mtime, r.ctime), (ts(4), ts(4)));
    assert_eq!(fx.lookup(Ino::ROOT, "f").err(), Some(Errno::ENOENT));
    fx.m.unlink(&root(), Ino::ROOT, b"g", ts(5)).unwrap();
    assert_eq!(fx.m.getattr(f.ino).err(), Some(Errno::ENOENT));
    assert!(fx.names(Ino::ROOT).is_empty());
    fx.check();
}

#[test]
fn unlink_errors() {
    let fx = setup();
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    let f = fx.file(&root(), d.ino, "f", 0o644);
    assert_eq!(
        fx.m.unlink(&root(), Ino::ROOT, b"d", ts(2)),
        Err(Errno::EISDIR)
    );
    assert_eq!(
        fx.m.unlink(&root(), Ino::ROOT, b"nope", ts(2)),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        fx.m.unlink(&root(), f.ino, b"x", ts(2)),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(
        fx.m.unlink(&root(), Ino::ROOT, b".", ts(2)),
        Err(Errno::EISDIR)
    );
    assert_eq!(
        fx.m.unlink(&root(), Ino::ROOT, b"", ts(2)),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        fx.m.unlink(&root(), Ino::ROOT, &[b'a'; 256], ts(2)),
        Err(Errno::ENAMETOOLONG)
    );
    // Permission: W and X on the parent; the file's own mode does not matter.
    let u = user(1000);
    assert_eq!(fx.m.unlink(&u, d.ino, b"f", ts(2)), Err(Errno::EACCES));
    fx.chmod(d.ino, 0o757);
    fx.chmod(f.ino, 0o000);
    fx.m.unlink(&u, d.ino, b"f", ts(2)).unwrap();
    // Without search permission even a missing name is EACCES.
    fx.chmod(d.ino, 0o776);
    assert_eq!(fx.m.unlink(&u, d.ino, b"f", ts(2)), Err(Errno::EACCES));
    fx.check();
}

#[test]
fn sticky_directories_restrict_removal() {
    let fx = setup();
    let tmp = fx.dir(&root(), Ino::ROOT, "tmp", 0o1777);
    fx.chown(tmp.ino, 10, 10);
    let (a, b, owner) = (user(1000), user(1001), user(10));
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
        &a,
        tmp.ino,
        b"fa2",
        FileType::RegularFile,
        0o666,
        0,
        0,
        ts(2),
    )
    .unwrap();
    fx.m.mknod(
        &a,
        tmp.ino,
        b"fa3",
        FileType::RegularFile,
        0o666,
        0,
        0,
        ts(2),
    )
    .unwrap();
    fx.m.mkdir(&a, tmp.ino, b"da", 0o777, 0, ts(2)).unwrap();
    assert_eq!(fx.m.unlink(&b, tmp.ino, b"fa", ts(3)), Err(Errno::EPERM));
    assert_eq!(fx.m.rmdir(&b, tmp.ino, b"da", ts(3)), Err(Errno::EPERM));
    fx.m.unlink(&a, tmp.ino, b"fa", ts(3)).unwrap();
    fx.m.unlink(&owner, tmp.ino, b"fa2", ts(3)).unwrap();
    fx.m.unlink(&root(), tmp.ino, b"fa3", ts(3)).unwrap();
    fx.m.rmdir(&a, tmp.ino, b"da", ts(3)).unwrap();
    fx.check();
}

#[test]
fn rmdir_rules() {
    let fx = setup();
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    let e = fx.dir(&root(), d.ino, "e", 0o755);
    fx.file(&root(), e.ino, "f", 0o644);
    assert_eq!(fx.attr(d.ino).nlink, 3);
    assert_eq!(
        fx.m.rmdir(&root(), d.ino, b"e", ts(2)),
        Err(Errno::ENOTEMPTY)
    );
    assert_eq!(fx.m.rmdir(&root(), e.ino, b"f", ts(2)), Err(Errno::ENOTDIR));
    assert_eq!(fx.m.rmdir(&root(), d.ino, b".", ts(2)), Err(Errno::EINVAL));
    assert_eq!(
        fx.m.rmdir(&root(), d.ino, b"..", ts(2)),
        Err(Errno::ENOTEMPTY)
    );
    assert_eq!(
        fx.m.rmdir(&root(), d.ino, b"nope", ts(2)),
        Err(Errno::ENOENT)
    );
    assert_eq!(fx.m.rmdir(&user(7), d.ino, b"e", ts(2)), Err(Errno::EACCES));
    fx.m.unlink(&root(), e.ino, b"f", ts(3)).unwrap();
    fx.m.setxattr(&root(), e.ino, b"user.a", b"v", XattrMode::Any, ts(3))
        .unwrap();
    fx.m.rmdir(&root(), d.ino, b"e", ts(4)).unwrap();
    let da = fx.attr(d.ino);
    assert_eq!((da.nlink, da.mtime, da.ctime), (2, ts(4), ts(4)));
    assert_eq!(fx.m.getattr(e.ino).err(), Some(Errno::ENOENT));
    // A directory emptied by unlinks (entries leave no trace) can be removed.
    let g = fx.dir(&root(), d.ino, "g", 0o755);
    for i in 0..50 {
        fx.file(&root(), g.ino, &format!("x{i}"), 0o644);
    }
    for i in 0..50 {
        fx.m.unlink(&root(), g.ino, format!("x{i}").as_bytes(), ts(5))
            .unwrap();
    }
    fx.m.rmdir(&root(), d.ino, b"g", ts(6)).unwrap();
    fx.check();
}

#[test]
fn unlink_while_open_keeps_inode_until_release() {
    let fx = setup();
    let sid = fx.m.new_session("{}").unwrap();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let s = fx.m.new_slice_id().unwrap();
    fx.m.write_slice(f.ino, ChunkIndex(0), SliceRef::new(0, s, 100), ts(2))
        .unwrap();
    fx.m.open(&root(), f.ino, 2).unwrap();
    fx.m.open(&root(), f.ino, 0).unwrap();
    fx.m.unlink(&root(), Ino::ROOT, b"f", ts(3)).unwrap();
    let a = fx.attr(f.ino);
    assert_eq!((a.nlink, a.size), (0, 100));
    assert_eq!(
        fx.kv
            .dump()
            .into_iter()
            .find(|(k, _)| k == &keys::unlinked(f.ino))
            .map(|(_, v)| v),
        Some(sid.to_be_bytes().to_vec())
    );
    fx.check();
    // Still readable and writable through the handle.
    fx.m.write_slice(
        f.ino,
        ChunkIndex(0),
        SliceRef::new(100, fx.m.new_slice_id().unwrap(), 10),
        ts(4),
    )
    .unwrap();
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(0)).unwrap().len(), 2);
    assert!(fx.gc_ids().is_empty());
    fx.m.release(f.ino).unwrap();
    assert!(fx.m.getattr(f.ino).is_ok());
    fx.m.release(f.ino).unwrap();
    assert_eq!(fx.m.getattr(f.ino).err(), Some(Errno::ENOENT));
    assert_eq!(fx.gc_ids().len(), 2);
    assert!(fx.m.read_chunk(f.ino, ChunkIndex(0)).unwrap().is_empty());
    // Releasing something not open is harmless.
    fx.m.release(f.ino).unwrap();
    fx.check();
}

#[test]
fn unlink_deletes_everything_of_the_inode() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let s1 = fx.m.new_slice_id().unwrap();
    let s2 = fx.m.new_slice_id().unwrap();
    fx.m.write_slice(f.ino, ChunkIndex(0), SliceRef::new(0, s1, 10), ts(2))
        .unwrap();
    fx.m.write_slice(f.ino, ChunkIndex(7), SliceRef::new(0, s2, 20), ts(2))
        .unwrap();
    fx.m.setxattr(&root(), f.ino, b"user.k", b"v", XattrMode::Any, ts(2))
        .unwrap();
    fx.m.unlink(&root(), Ino::ROOT, b"f", ts(3)).unwrap();
    let (start, end) = keys::inode_range(f.ino);
    assert!(fx.kv.dump().iter().all(|(k, _)| !(k >= &start && k < &end)));
    assert_eq!(fx.m.gc_pending(10).unwrap(), vec![(s1, 10), (s2, 20)]);
    assert_eq!(fx.m.statfs().unwrap().used_bytes, 0);
    fx.check();
}

#[test]
fn cleanup_orphans_removes_inodes_of_a_dead_client() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let g = fx.file(&root(), Ino::ROOT, "g", 0o644);
    let s = fx.m.new_slice_id().unwrap();
    fx.m.write_slice(f.ino, ChunkIndex(0), SliceRef::new(0, s, 5), ts(2))
        .unwrap();
    {
        // A client opens both, unlinks both and dies without closing.
        let dead = Meta::load(fx.kv.clone()).unwrap();
        dead.new_session("{\"pid\":1}").unwrap();
        dead.open(&root(), f.ino, 0).unwrap();
        dead.open(&root(), g.ino, 0).unwrap();
        dead.unlink(&root(), Ino::ROOT, b"f", ts(3)).unwrap();
        dead.unlink(&root(), Ino::ROOT, b"g", ts(3)).unwrap();
    }
    // This client has g open itself (through a handle it had before).
    fx.m.open(&root(), g.ino, 0).unwrap();
    assert_eq!(fx.m.cleanup_orphans(ts(10), 0).unwrap(), (1, 1));
    assert_eq!(fx.m.getattr(f.ino).err(), Some(Errno::ENOENT));
    assert_eq!(fx.gc_ids(), vec![s.0]);
    assert_eq!(fx.attr(g.ino).nlink, 0);
    fx.check();
    fx.m.release(g.ino).unwrap();
    assert_eq!(fx.m.cleanup_orphans(ts(10), 0).unwrap(), (0, 0));
    fx.check();
}

#[test]
fn orphans_of_a_live_client_are_kept_until_its_heartbeats_stop() {
    let fx = setup();
    let me = Meta::load(fx.kv.clone()).unwrap();
    me.new_session("{\"pid\":1}").unwrap();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    // Another client, alive, keeps f open after unlinking it.
    let other = Meta::load(fx.kv.clone()).unwrap();
    other.new_session("{\"pid\":2}").unwrap();
    other.heartbeat(ts(100)).unwrap();
    other.open(&root(), f.ino, 0).unwrap();
    other.unlink(&root(), Ino::ROOT, b"f", ts(100)).unwrap();
    // 30 s later, with a 60 s TTL: it is alive, its file stays.
    assert_eq!(me.cleanup_orphans(ts(130), 60).unwrap(), (0, 0));
    assert_eq!(fx.attr(f.ino).nlink, 0);
    // It keeps beating; then it stops. 61 s after its last beat it is dead.
    other.heartbeat(ts(150)).unwrap();
    assert_eq!(me.cleanup_orphans(ts(200), 60).unwrap(), (0, 0));
    drop(other);
    assert_eq!(me.cleanup_orphans(ts(211), 60).unwrap(), (1, 1));
    assert_eq!(fx.m.getattr(f.ino).err(), Some(Errno::ENOENT));
    // The cleaning client's own session survives any TTL.
    assert_eq!(me.list_sessions().unwrap().len(), 1);
    fx.check();
}
