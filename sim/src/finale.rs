//! The end of a run: with every fault healed and every worker gone, a fresh client
//! cleans up orphans, runs gc to completion and reads every file back; then the
//! whole-world checkers run strictly.

use crate::checkers::{meta_consistency, objects};
use crate::rng::Rng;
use crate::workload::{Client, OWNED_FILES};
use crate::world::World;
use ferrofs_core::chunk::blocks_of_slice;
use ferrofs_core::{Errno, FileType, Ino, SliceId};
use std::sync::Arc;

/// Bytes per read when a file is read back whole.
const PIECE: u64 = 64 << 10;

/// The program of the last client: alone on the volume, with no faults.
pub fn janitor(world: &Arc<World>, me: usize, clients: usize, rng: &mut Rng) {
    let Some(mut c) = Client::mount(world, me, clients, rng) else {
        return;
    };
    // Alone on the volume: every other session is dead.
    match c
        .vfs
        .meta()
        .cleanup_orphans(ferrofs_core::Timespec::default(), 0)
    {
        Ok((_, n)) => world.note(me, "final.orphans", &[], n),
        Err(e) => return world.fail(me, format!("cleanup_orphans failed: {e:?}")),
    }
    for round in 0.. {
        match c.vfs.collect_garbage(1000) {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => return world.fail(me, format!("final gc failed: {e:?}")),
        }
        match c.vfs.meta().gc_pending(1000) {
            Ok(p) if p.is_empty() => break,
            // What is left may be slices whose staged (writeback) blocks were lost with
            // a cache disk: marked staged for good, nothing to delete. Clear their marks
            // (as an fsck would) and collect them.
            Ok(p) if round < 100 && p.iter().all(|&(id, size)| lost_staged(&c, id, size)) => {
                for &(id, _) in &p {
                    if let Err(e) = c.vfs.meta().slice_uploaded(id) {
                        return world.fail(me, format!("clearing a lost slice's mark: {e:?}"));
                    }
                }
                continue;
            }
            Ok(_) if round < 100 => continue,
            Ok(p) => return world.fail(me, format!("gc makes no progress on {p:?}")),
            Err(e) => return world.fail(me, format!("gc_pending failed: {e:?}")),
        }
    }
    for k in 0..clients {
        for n in 0..OWNED_FILES {
            c.check_owned(k, n);
        }
    }
    let data = c.layout.data_files.clone();
    for ino in data {
        read_back(&mut c, ino);
    }
    let s = c.layout.shared_dir;
    walk(&mut c, s, 0);
    c.unmount();
}

/// Reads all of shared inode `ino`, checking every byte.
/// Whether queued slice `id` is marked staged and each block of it is either in the
/// store or was lost from a writeback client's cache disk before it was uploaded:
/// nothing more of it will ever be uploaded.
fn lost_staged(c: &Client<'_>, id: SliceId, size: u32) -> bool {
    if !c.vfs.meta().slice_is_staged(id).unwrap_or(false) {
        return false;
    }
    let names: Vec<String> = blocks_of_slice(id, size, c.world.block_size())
        .iter()
        .map(|k| k.object_name())
        .collect();
    c.world.with(|st| {
        let gone = st.cache.may_be_unuploaded();
        names
            .iter()
            .all(|n| st.store.objects.contains_key(n) || gone.contains(n))
    })
}

fn read_back(c: &mut Client<'_>, ino: Ino) {
    let Ok(size) = c.vfs.getattr(ino).map(|a| a.size) else {
        return;
    };
    let Ok((fh, _)) = c.vfs.open(&c.ctx, ino, libc::O_RDONLY) else {
        return c.world.fail(c.me, format!("cannot open inode {}", ino.0));
    };
    let mut off = 0;
    while off < size {
        c.read_checked(fh, ino, off, PIECE.min(size - off) as u32);
        off += PIECE;
    }
    let _ = c.vfs.release(fh);
}

/// Lists every directory under `dir` and reads back every file.
fn walk(c: &mut Client<'_>, dir: Ino, depth: usize) {
    if depth > 16 {
        return c
            .world
            .fail(c.me, format!("/s is deeper than 16 at inode {}", dir.0));
    }
    let mut entries = Vec::new();
    let mut offset = 0;
    loop {
        match c.vfs.readdir(&c.ctx, dir, offset, 64, false) {
            Ok(page) if page.is_empty() => break,
            Ok(page) => {
                offset = page.last().map(|e| e.next_offset).unwrap_or(offset);
                entries.extend(page);
            }
            Err(e) => {
                return c
                    .world
                    .fail(c.me, format!("readdir of inode {} failed: {e:?}", dir.0))
            }
        }
    }
    // Alone on the volume, a listing shows every name once, as lookups see it.
    let mut seen = std::collections::BTreeSet::new();
    for e in &entries {
        if e.name == b"." || e.name == b".." {
            continue;
        }
        let shown = String::from_utf8_lossy(&e.name).into_owned();
        if !seen.insert(e.name.clone()) {
            return c.world.fail(
                c.me,
                format!("readdir of inode {} lists {shown} twice", dir.0),
            );
        }
        match c.vfs.lookup(&c.ctx, dir, &e.name) {
            Ok(a) if a.ino == e.ino => {}
            other => {
                let got = other.map(|a| a.ino);
                return c.world.fail(
                    c.me,
                    format!(
                        "readdir of inode {} lists {shown} as {:?}, lookup says {got:?}",
                        dir.0, e.ino
                    ),
                );
            }
        }
    }
    for e in entries {
        if e.name == b"." || e.name == b".." {
            continue;
        }
        match e.kind {
            FileType::Directory => walk(c, e.ino, depth + 1),
            FileType::RegularFile => read_back(c, e.ino),
            _ => {
                if let Err(err) = c.vfs.readlink(e.ino).map(drop).or_else(|e| match e {
                    Errno::EINVAL => Ok(()),
                    e => Err(e),
                }) {
                    c.world.fail(
                        c.me,
                        format!("readlink of inode {} failed: {err:?}", e.ino.0),
                    );
                }
            }
        }
    }
}

/// What the strict final checks found: violations, and leaked objects.
pub fn final_checks(world: &World) -> (Vec<String>, objects::ObjectsReport) {
    let st = world.lock();
    let mut found = meta_consistency::check(&st.kv.live, true);
    // After the heal phase every client uploaded what it had staged; only blocks lost
    // with a cache disk may still be missing.
    let lost = st.cache.may_be_unuploaded();
    let o = objects::check(
        &st.kv.live,
        &st.store.objects,
        world.block_size(),
        true,
        &lost,
    );
    found.extend(o.violations.iter().cloned());
    (found, o)
}
