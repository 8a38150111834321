//! Random operation sequences (errors allowed) must keep every invariant, and a failed
//! operation must leave the keyspace untouched.

use super::*;
use crate::chunk::SliceRef;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Mknod(u8, u8),
    Mkdir(u8, u8),
    Symlink(u8, u8),
    Unlink(u8, u8),
    Rmdir(u8, u8),
    Link(u8, u8, u8, u8),
    Rename(u8, u8, u8, u8, u8),
    Open(u8, u8),
    Release(u8),
    Truncate(u8, u8, u32),
    Write(u8, u8, u8, u16),
    Xattr(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..4u8;
    let n = 0..4u8;
    prop_oneof![
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Mknod(a, b)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Mkdir(a, b)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Symlink(a, b)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Unlink(a, b)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Rmdir(a, b)),
        (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
        (d.clone(), n.clone(), d.clone(), n.clone(), 0..3u8)
            .prop_map(|(a, b, c, e, f)| Op::Rename(a, b, c, e, f)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Open(a, b)),
        (0..8u8).prop_map(Op::Release),
        (d.clone(), n.clone(), 0..200_000_000u32).prop_map(|(a, b, c)| Op::Truncate(a, b, c)),
        (d.clone(), n.clone(), 0..3u8, any::<u16>()).prop_map(|(a, b, c, e)| Op::Write(a, b, c, e)),
        (d, n).prop_map(|(a, b)| Op::Xattr(a, b)),
    ]
}

/// Directory number `i`: the root, or the i-th directory found by walking the tree.
fn dir(fx: &Fx, i: u8) -> Ino {
    let mut dirs = vec![Ino::ROOT];
    let mut k = 0;
    while k < dirs.len() && dirs.len() <= i as usize {
        for e in
            fx.m.readdir(&root(), dirs[k], 2, usize::MAX, false)
                .unwrap()
        {
            if e.kind == FileType::Directory {
                dirs.push(e.ino);
            }
        }
        k += 1;
    }
    dirs.get(i as usize).copied().unwrap_or(Ino::ROOT)
}

fn name(n: u8) -> Vec<u8> {
    format!("n{n}").into_bytes()
}

fn run(fx: &Fx, opened: &mut Vec<Ino>, op: &Op) -> Result<(), Errno> {
    let now = ts(100);
    let c = root();
    let target = |d: u8, n: u8| fx.m.lookup(&c, dir(fx, d), &name(n)).map(|a| a.ino);
    match *op {
        Op::Mknod(d, n) => {
            fx.m.mknod(
                &c,
                dir(fx, d),
                &name(n),
                FileType::RegularFile,
                0o644,
                0,
                0,
                now,
            )
            .map(drop)
        }
        Op::Mkdir(d, n) => {
            fx.m.mkdir(&c, dir(fx, d), &name(n), 0o755, 0, now)
                .map(drop)
        }
        Op::Symlink(d, n) => fx.m.symlink(&c, dir(fx, d), &name(n), b"x", now).map(drop),
        Op::Unlink(d, n) => fx.m.unlink(&c, dir(fx, d), &name(n), now).map(drop),
        Op::Rmdir(d, n) => fx.m.rmdir(&c, dir(fx, d), &name(n), now).map(drop),
        Op::Link(d, n, d2, n2) => {
            let ino = target(d, n)?;
            fx.m.link(&c, ino, dir(fx, d2), &name(n2), now).map(drop)
        }
        Op::Rename(d, n, d2, n2, f) => {
            let flags = RenameFlags::from_bits(f as u32).unwrap();
            fx.m.rename(&c, dir(fx, d), &name(n), dir(fx, d2), &name(n2), flags, now)
                .map(drop)
        }
        Op::Open(d, n) => {
            let ino = target(d, n)?;
            fx.m.open(&c, ino, 0)?;
            opened.push(ino);
            Ok(())
        }
        Op::Release(i) => {
            if opened.is_empty() {
                return Ok(());
            }
            let ino = opened.remove(i as usize % opened.len());
            fx.m.release(ino)
        }
        Op::Truncate(d, n, size) => {
            let set = SetAttr {
                size: Some(size as u64),
                ..Default::default()
            };
            fx.m.setattr(&c, target(d, n)?, &set, now).map(drop)
        }
        Op::Write(d, n, chunk, len) => {
            let ino = target(d, n)?;
            let id = fx.m.new_slice_id()?;
            let r = SliceRef::new(len as u32 * 7, id, len as u32 + 1);
            fx.m.write_slice(ino, ChunkIndex(chunk as u32), r, now)
                .map(drop)
        }
        Op::Xattr(d, n) => {
            let ino = target(d, n)?;
            fx.m.setxattr(&c, ino, b"user.k", b"v", XattrMode::Any, now)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_ops_keep_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let fx = setup();
        let mut opened = Vec::new();
        for op in &ops {
            let before = fx.kv.dump();
            let r = run(&fx, &mut opened, op);
            if r.is_err() {
                // Only id counters may move on failure.
                let strip = |d: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
                    d.into_iter().filter(|(k, _)| k[0] != b'C' || k == &keys::counter(keys::USED_SPACE)).collect()
                };
                prop_assert_eq!(strip(fx.kv.dump()), strip(before), "failed {:?} wrote", op);
            }
            check_invariants(&fx.kv);
        }
        while let Some(ino) = opened.pop() {
            fx.m.release(ino).unwrap();
        }
        check_invariants(&fx.kv);
        let dump = fx.kv.dump();
        prop_assert!(dump.iter().all(|(k, _)| k[0] != b'U'), "U keys left after closing all");
    }
}
