//! [`VfsTarget`]: the ferrofs client library (`ferrofs::vfs::Vfs` over the core's
//! `Meta`) driven directly, on an in-memory metadata engine (`MemKv`) and object store
//! (`MemStore`), with 64 KiB blocks so that writes span several block objects.
//!
//! The target plays the part of the kernel in front of a FUSE file system mounted
//! without `default_permissions`, and no more: it resolves paths with `lookup` and
//! `readlink` ([`crate::walk`]), turns `open` flags into `create`/`open`/`opendir`
//! (O_TRUNC as a separate size change, as the kernel does without `atomic_o_trunc`),
//! and makes the checks the kernel makes on file descriptors (EBADF for the wrong
//! access mode, EISDIR for reading a directory, EINVAL for `ftruncate` without write
//! access, nothing sent for a zero-length write). Every other check — permissions,
//! existence, kinds, rename rules — is left to the core, which claims Linux's checks in
//! Linux's order; so a difference from the model is a difference of the core. The
//! kernel's `protected_hardlinks` policy is not played: compare with a model whose
//! `ModelConfig::protected_hardlinks` is off.
//!
//! [`Op::Sync`] flushes and fsyncs every open file, runs the garbage collector (which
//! deletes objects no metadata refers to) and, when nothing is open, drops the client
//! and the `Meta` and loads them again from the metadata engine: nothing may live only
//! in memory.

use crate::ops::{Op, OpenFlags, RenameMode, Who, SLOTS};
use crate::target::{fnv64, join, Kind, Outcome, Stat, Target, Tree, TreeEntry, Value};
use crate::walk::{resolve, Namespace, Walked};
use ferrofs::vfs::{Clock, Fh, Vfs, VfsConfig};
use ferrofs_core::chunk::{blocks_of_slice, decode_slices};
use ferrofs_core::format::{Format, MIN_BLOCK_SIZE};
use ferrofs_core::kv::{Kv, MemKv};
use ferrofs_core::meta::{keys, Meta};
use ferrofs_core::replica::{LocalReplica, OptimisticKv};
use ferrofs_core::{Attr, Ctx, Errno, FileType, Ino, RenameFlags, SetAttr, Timespec};
use ferrofs_s3_backend::{MemStore, ObjectStore};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Entries asked for per `readdir` call: small, so that listings take several pages.
const READDIR_PAGE: usize = 5;

#[derive(Clone, Copy, Debug)]
enum Slot {
    File {
        fh: Fh,
        ino: Ino,
        who: Who,
        read: bool,
        write: bool,
    },
    /// A directory opened read-only: the kernel keeps it to itself for these ops.
    Dir { ino: Ino },
}

/// The ferrofs client library as a [`Target`].
pub struct VfsTarget {
    name: String,
    /// The engine's state (of the one replica, when replicated).
    kv: Arc<MemKv>,
    /// What clients use: `kv` itself, or the optimistic client of a replica over it.
    engine: Arc<dyn Kv>,
    store: Arc<MemStore>,
    clock: Clock,
    vfs: Vfs,
    slots: Vec<Option<Slot>>,
}

fn ctx(who: Who) -> Ctx {
    Ctx::new(who.uid(), who.gid(), Vec::new())
}

fn kind(t: FileType) -> Kind {
    match t {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        other => panic!("the tests never make a {other:?}"),
    }
}

fn stat(a: &Attr) -> Stat {
    Stat::new(kind(a.kind), a.perm as u32, a.nlink, a.size, a.uid, a.gid)
}

impl Default for VfsTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl VfsTarget {
    /// A freshly formatted volume with 64 KiB blocks; the root is made `0o777`, owned
    /// by root, like the model's.
    pub fn new() -> VfsTarget {
        let kv = Arc::new(MemKv::new());
        Self::over(kv.clone(), kv)
    }

    /// The same over the replicated engine's client (`OptimisticKv`) and one in-process
    /// replica: every transaction runs optimistically and is applied as a command.
    pub fn replicated() -> VfsTarget {
        let kv = Arc::new(MemKv::new());
        let replica = LocalReplica::new(kv.clone());
        let engine = Arc::new(OptimisticKv::new(replica, 1, 0));
        let mut t = Self::over(kv, engine);
        t.name = "vfs over the replicated engine".into();
        t
    }

    fn over(kv: Arc<MemKv>, engine: Arc<dyn Kv>) -> VfsTarget {
        let store = Arc::new(MemStore::new());
        let tick = Arc::new(AtomicI64::new(1_700_000_000_000));
        // A fake clock that moves 1 ms per reading: times are never compared, but every
        // stamp differs, as it would in a mount.
        let clock: Clock = Arc::new(move || {
            let ms = tick.fetch_add(1, Ordering::Relaxed);
            Timespec::new(ms / 1000, (ms % 1000) as u32 * 1_000_000)
        });
        let mut format = Format::new("model-tests", "00000000-0000-0000-0000-000000000000");
        format.storage = "memory".into();
        format.block_size = MIN_BLOCK_SIZE;
        Meta::format(&*engine, &format, false, clock()).expect("format");
        let vfs = Self::client(&engine, &store, &clock);
        let set = SetAttr {
            mode: Some(0o777),
            uid: Some(0),
            gid: Some(0),
            ..SetAttr::default()
        };
        vfs.setattr(&Ctx::root(), Ino::ROOT, &set, None)
            .expect("chmod root");
        VfsTarget {
            name: "vfs".into(),
            kv,
            engine,
            store,
            clock,
            vfs,
            slots: vec![None; SLOTS],
        }
    }

    /// A client as a mount makes one: load the volume, clean up files left open by an
    /// earlier client, register a session.
    fn client(engine: &Arc<dyn Kv>, store: &Arc<MemStore>, clock: &Clock) -> Vfs {
        let meta = Meta::load(engine.clone()).expect("load volume");
        meta.new_session("{\"model-tests\":true}").expect("session");
        // One client at a time: every earlier session is dead.
        meta.cleanup_orphans(Timespec::default(), 0)
            .expect("cleanup of orphans");
        let store_dyn: Arc<dyn ObjectStore> = store.clone();
        Vfs::new(
            Arc::new(meta),
            store_dyn,
            clock.clone(),
            VfsConfig::default(),
        )
    }

    pub fn vfs(&self) -> &Vfs {
        &self.vfs
    }

    /// The metadata engine clients use (to dump the volume, say).
    pub fn engine(&self) -> &Arc<dyn Kv> {
        &self.engine
    }

    /// A client of the volume whose metadata is in `kv` (a restored copy of this one,
    /// say) over this target's object store and clock; `kv` is not formatted.
    pub fn sibling(&self, kv: Arc<MemKv>) -> VfsTarget {
        let engine: Arc<dyn Kv> = kv.clone();
        let vfs = Self::client(&engine, &self.store, &self.clock);
        VfsTarget {
            name: format!("{} (restored)", self.name),
            kv,
            engine,
            store: self.store.clone(),
            clock: self.clock.clone(),
            vfs,
            slots: vec![None; SLOTS],
        }
    }

    fn walk(&mut self, who: Who, path: &[&str], follow: bool) -> Result<Walked<Ino>, Errno> {
        let mut ns = Lookups { vfs: &self.vfs };
        resolve(&mut ns, who, Ino::ROOT, path, follow)
    }

    fn found(&mut self, who: Who, path: &[&str], follow: bool) -> Result<(Ino, Kind), Errno> {
        self.walk(who, path, follow)?.found.ok_or(Errno::ENOENT)
    }

    /// Closes a slot's handle the way `close(2)` does: FLUSH (its error is close's
    /// result), then RELEASE.
    fn close_slot(&mut self, slot: usize) -> Option<Outcome> {
        let s = self.slots[slot].take()?;
        Some(match s {
            Slot::Dir { ino } => self.vfs.releasedir(ino).map(|_| Value::Done),
            Slot::File { fh, .. } => {
                let flushed = self.vfs.flush(fh);
                let released = self.vfs.release(fh);
                flushed.and(released).map(|_| Value::Done)
            }
        })
    }

    /// Closes every open handle (end of a sequence); panics if a close fails.
    pub fn close_all(&mut self) {
        for slot in 0..SLOTS {
            if let Some(Err(e)) = self.close_slot(slot) {
                panic!("closing slot {slot} at the end failed: {e}");
            }
        }
    }

    fn open(
        &mut self,
        who: Who,
        path: &[&str],
        flags: OpenFlags,
        mode: u16,
        slot: usize,
    ) -> Outcome {
        if let Some(Err(e)) = self.close_slot(slot) {
            panic!("implicit close of slot {slot} failed: {e}");
        }
        let c = ctx(who);
        let mut bits = match flags.access {
            crate::ops::Access::Read => libc::O_RDONLY,
            crate::ops::Access::Write => libc::O_WRONLY,
            crate::ops::Access::ReadWrite => libc::O_RDWR,
        };
        let follow = !(flags.creat && flags.excl);
        let w = self.walk(who, path, follow)?;
        let (read, write) = (flags.access.reads(), flags.access.writes());
        match w.found {
            None if !flags.creat => Err(Errno::ENOENT),
            None => {
                bits |= libc::O_CREAT;
                if flags.excl {
                    bits |= libc::O_EXCL;
                }
                let (fh, attr) =
                    self.vfs
                        .create(&c, w.parent, w.name.as_bytes(), mode as u32, 0, bits)?;
                self.slots[slot] = Some(Slot::File {
                    fh,
                    ino: attr.ino,
                    who,
                    read,
                    write,
                });
                Ok(Value::Done)
            }
            // The kernel answers these two itself (`do_open`, `may_open`).
            Some(_) if flags.creat && flags.excl => Err(Errno::EEXIST),
            Some((_, Kind::Dir)) if flags.creat || write || flags.trunc => Err(Errno::EISDIR),
            Some((ino, Kind::Dir)) => {
                self.vfs.opendir(&c, ino, bits | libc::O_DIRECTORY)?;
                self.slots[slot] = Some(Slot::Dir { ino });
                Ok(Value::Done)
            }
            Some((ino, _)) => {
                let (fh, _) = self.vfs.open(&c, ino, bits)?;
                if flags.trunc {
                    // Without FUSE_ATOMIC_O_TRUNC the kernel opens without O_TRUNC and
                    // then truncates with a SETATTR that names no handle.
                    let set = SetAttr {
                        size: Some(0),
                        ..SetAttr::default()
                    };
                    if let Err(e) = self.vfs.setattr(&c, ino, &set, None) {
                        let _ = self.vfs.release(fh);
                        return Err(e);
                    }
                }
                self.slots[slot] = Some(Slot::File {
                    fh,
                    ino,
                    who,
                    read,
                    write,
                });
                Ok(Value::Done)
            }
        }
    }

    fn slot(&self, slot: usize) -> Result<Slot, Errno> {
        self.slots[slot].ok_or(Errno::EBADF)
    }

    fn read_all(&self, fh: Fh, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        while out.len() < len as usize {
            let got = self
                .vfs
                .read(fh, offset + out.len() as u64, len - out.len() as u32)?;
            if got.is_empty() {
                break;
            }
            out.extend_from_slice(&got);
        }
        Ok(out)
    }

    /// Every entry of directory `ino` except `.` and `..`, read in pages of
    /// `page` by cookie.
    pub fn list(&self, c: &Ctx, ino: Ino, page: usize) -> Result<Vec<(String, Ino)>, Errno> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let entries = self.vfs.readdir(c, ino, offset, page, false)?;
            let Some(last) = entries.last() else {
                return Ok(out);
            };
            offset = last.next_offset;
            for e in entries {
                if e.name != b"." && e.name != b".." {
                    out.push((String::from_utf8_lossy(&e.name).into_owned(), e.ino));
                }
            }
        }
    }

    fn readdir(&mut self, who: Who, path: &[&str]) -> Outcome {
        let (ino, _) = self.found(who, path, true)?;
        let c = ctx(who);
        self.vfs
            .opendir(&c, ino, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let listed = self.list(&c, ino, READDIR_PAGE);
        self.vfs.releasedir(ino)?;
        let mut names: Vec<String> = listed?.into_iter().map(|(n, _)| n).collect();
        names.sort();
        Ok(Value::Names(names))
    }

    fn setattr(&mut self, who: Who, path: &[&str], follow: bool, set: SetAttr) -> Outcome {
        let (ino, _) = self.found(who, path, follow)?;
        self.vfs
            .setattr(&ctx(who), ino, &set, None)
            .map(|_| Value::Done)
    }

    /// Flushes and fsyncs every open file, collects garbage, and reloads the client
    /// from the metadata engine if nothing is open.
    fn sync(&mut self) -> Outcome {
        for s in self.slots.iter().flatten() {
            if let Slot::File { fh, .. } = s {
                self.vfs.fsync(*fh)?;
            }
        }
        self.vfs.meta().sync()?;
        self.vfs.collect_garbage(100_000)?;
        if self.slots.iter().all(|s| s.is_none()) {
            self.vfs.shutdown()?;
            self.vfs = Self::client(&self.engine, &self.store, &self.clock);
        }
        Ok(Value::Done)
    }

    fn walk_tree(&self, ino: Ino, path: &str, out: &mut Vec<(String, Ino, TreeEntry)>) {
        let root = Ctx::root();
        let a = self
            .vfs
            .getattr(ino)
            .unwrap_or_else(|e| panic!("vfs: getattr {path}: {e}"));
        let st = stat(&a);
        let (content, target) = match st.kind {
            Kind::File => {
                let (fh, _) = self
                    .vfs
                    .open(&root, ino, libc::O_RDONLY)
                    .unwrap_or_else(|e| panic!("vfs: open {path}: {e}"));
                let data = self
                    .read_all(fh, 0, u32::MAX)
                    .unwrap_or_else(|e| panic!("vfs: read {path}: {e}"));
                self.vfs
                    .release(fh)
                    .unwrap_or_else(|e| panic!("vfs: release {path}: {e}"));
                (Some((data.len() as u64, fnv64(&data))), None)
            }
            Kind::Symlink => {
                let t = self
                    .vfs
                    .readlink(ino)
                    .unwrap_or_else(|e| panic!("vfs: readlink {path}: {e}"));
                (None, Some(String::from_utf8_lossy(&t).into_owned()))
            }
            Kind::Dir => (None, None),
        };
        out.push((
            path.to_string(),
            ino,
            TreeEntry {
                stat: st,
                content,
                target,
                same_inode_as: None,
            },
        ));
        if st.kind == Kind::Dir {
            let entries = self
                .list(&root, ino, 64)
                .unwrap_or_else(|e| panic!("vfs: readdir {path}: {e}"));
            for (name, child) in entries {
                self.walk_tree(child, &join(path, &name), out);
            }
        }
    }

    /// Checks what the model cannot see, once every handle is closed: after garbage
    /// collection, the object store holds exactly the block objects that chunk records
    /// refer to (none missing, none leaked), the gc queue is empty, and no inode is
    /// left marked unlinked-while-open. Returns the problems found.
    pub fn check_storage(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.slots.iter().any(|s| s.is_some()) {
            return vec!["check_storage called with open handles".into()];
        }
        if let Err(e) = self.vfs.collect_garbage(1_000_000) {
            problems.push(format!("gc failed: {e}"));
        }
        let block_size = self.vfs.meta().format_info().block_size;
        let mut referenced = BTreeSet::new();
        for (k, v) in self.kv.dump() {
            match k.first() {
                Some(b'A') if keys::tag_of(&k) == Some(b'C') => match decode_slices(&v) {
                    Ok(slices) => {
                        for s in slices {
                            for b in blocks_of_slice(s.id, s.size, block_size) {
                                referenced.insert(b.object_name());
                            }
                        }
                    }
                    Err(e) => problems.push(format!("undecodable chunk record {k:?}: {e}")),
                },
                Some(b'G') => problems.push(format!("gc queue not empty after gc: {k:?}")),
                Some(b'U') => problems.push(format!(
                    "unlinked-while-open key left with nothing open: {k:?}"
                )),
                _ => {}
            }
        }
        let stored: BTreeSet<String> = match self.store.list("", "", usize::MAX) {
            Ok(objs) => objs.into_iter().map(|o| o.key).collect(),
            Err(e) => {
                problems.push(format!("listing the store failed: {e}"));
                return problems;
            }
        };
        for missing in referenced.difference(&stored) {
            problems.push(format!(
                "referenced object missing from the store: {missing}"
            ));
        }
        for leaked in stored.difference(&referenced) {
            problems.push(format!(
                "object in the store that nothing refers to (leak): {leaked}"
            ));
        }
        problems
    }
}

/// The walker's view of the client: lookups as the caller, readlink.
struct Lookups<'a> {
    vfs: &'a Vfs,
}

impl Namespace for Lookups<'_> {
    type Id = Ino;

    fn lookup(&mut self, who: Who, dir: Ino, name: &str) -> Result<Option<(Ino, Kind)>, Errno> {
        match self.vfs.lookup(&ctx(who), dir, name.as_bytes()) {
            Ok(a) => Ok(Some((a.ino, kind(a.kind)))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn readlink(&mut self, id: Ino) -> Result<String, Errno> {
        self.vfs
            .readlink(id)
            .map(|t| String::from_utf8_lossy(&t).into_owned())
    }
}

impl Target for VfsTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Mkdir { who, path, mode } => {
                let w = self.walk(*who, &path.0, false)?;
                self.vfs
                    .mkdir(&ctx(*who), w.parent, w.name.as_bytes(), *mode as u32, 0)
                    .map(|_| Value::Done)
            }
            Op::Open {
                who,
                path,
                flags,
                mode,
                slot,
            } => self.open(*who, &path.0, *flags, *mode, *slot),
            Op::Write {
                slot,
                offset,
                len,
                seed,
            } => match self.slot(*slot)? {
                Slot::File {
                    fh, write: true, ..
                } => {
                    if *len == 0 {
                        // The kernel sends no WRITE for zero bytes.
                        return Ok(Value::Written(0));
                    }
                    let data = crate::ops::pattern(*seed, *len as usize);
                    self.vfs
                        .write(fh, *offset, &data)
                        .map(|n| Value::Written(n as u64))
                }
                _ => Err(Errno::EBADF),
            },
            Op::Read { slot, offset, len } => match self.slot(*slot)? {
                Slot::Dir { .. } => Err(Errno::EISDIR),
                Slot::File { fh, read: true, .. } => {
                    self.read_all(fh, *offset, *len).map(Value::Data)
                }
                Slot::File { .. } => Err(Errno::EBADF),
            },
            Op::Ftruncate { slot, size } => match self.slot(*slot)? {
                Slot::File {
                    fh,
                    ino,
                    who,
                    write: true,
                    ..
                } => {
                    let set = SetAttr {
                        size: Some(*size),
                        ..SetAttr::default()
                    };
                    self.vfs
                        .setattr(&ctx(who), ino, &set, Some(fh))
                        .map(|_| Value::Done)
                }
                _ => Err(Errno::EINVAL),
            },
            Op::Fsync { slot } => match self.slot(*slot)? {
                Slot::Dir { .. } => self.vfs.meta().sync().map(|_| Value::Done),
                Slot::File { fh, .. } => self.vfs.fsync(fh).map(|_| Value::Done),
            },
            Op::Fstat { slot } => {
                let ino = match self.slot(*slot)? {
                    Slot::Dir { ino } | Slot::File { ino, .. } => ino,
                };
                self.vfs.getattr(ino).map(|a| Value::Stat(stat(&a)))
            }
            Op::Close { slot } => self.close_slot(*slot).unwrap_or(Err(Errno::EBADF)),
            Op::Truncate { who, path, size } => self.setattr(
                *who,
                &path.0,
                true,
                SetAttr {
                    size: Some(*size),
                    ..SetAttr::default()
                },
            ),
            Op::Unlink { who, path } => {
                let w = self.walk(*who, &path.0, false)?;
                self.vfs
                    .unlink(&ctx(*who), w.parent, w.name.as_bytes())
                    .map(|_| Value::Done)
            }
            Op::Rmdir { who, path } => {
                let w = self.walk(*who, &path.0, false)?;
                self.vfs
                    .rmdir(&ctx(*who), w.parent, w.name.as_bytes())
                    .map(|_| Value::Done)
            }
            Op::Rename {
                who,
                from,
                to,
                mode,
            } => {
                let a = self.walk(*who, &from.0, false)?;
                let b = self.walk(*who, &to.0, false)?;
                let flags = RenameFlags {
                    noreplace: *mode == RenameMode::NoReplace,
                    exchange: *mode == RenameMode::Exchange,
                };
                self.vfs
                    .rename(
                        &ctx(*who),
                        a.parent,
                        a.name.as_bytes(),
                        b.parent,
                        b.name.as_bytes(),
                        flags,
                    )
                    .map(|_| Value::Done)
            }
            Op::Link { who, from, to } => {
                let (ino, _) = self.found(*who, &from.0, false)?;
                let w = self.walk(*who, &to.0, false)?;
                self.vfs
                    .link(&ctx(*who), ino, w.parent, w.name.as_bytes())
                    .map(|_| Value::Done)
            }
            Op::Symlink { who, target, path } => {
                let w = self.walk(*who, &path.0, false)?;
                self.vfs
                    .symlink(
                        &ctx(*who),
                        w.parent,
                        w.name.as_bytes(),
                        target.as_target().as_bytes(),
                    )
                    .map(|_| Value::Done)
            }
            Op::Readlink { who, path } => {
                let (ino, _) = self.found(*who, &path.0, false)?;
                self.vfs
                    .readlink(ino)
                    .map(|t| Value::Target(String::from_utf8_lossy(&t).into_owned()))
            }
            Op::Chmod { who, path, mode } => self.setattr(
                *who,
                &path.0,
                true,
                SetAttr {
                    mode: Some(*mode as u32),
                    ..SetAttr::default()
                },
            ),
            Op::Chown {
                who,
                path,
                uid,
                gid,
                follow,
            } => self.setattr(
                *who,
                &path.0,
                *follow,
                SetAttr {
                    uid: *uid,
                    gid: *gid,
                    ..SetAttr::default()
                },
            ),
            Op::Stat { who, path, follow } => {
                let (ino, _) = self.found(*who, &path.0, *follow)?;
                self.vfs.getattr(ino).map(|a| Value::Stat(stat(&a)))
            }
            Op::Readdir { who, path } => self.readdir(*who, &path.0),
            Op::Sync => self.sync(),
        }
    }

    fn tree(&mut self) -> Tree {
        let mut items = Vec::new();
        self.walk_tree(Ino::ROOT, "/", &mut items);
        Tree::from_walk(items)
    }
}
