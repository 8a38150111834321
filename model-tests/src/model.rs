//! The reference model: POSIX file-system semantics as Linux implements them, in memory,
//! written to be obviously right rather than fast or complete.
//!
//! It models regular files (contents as one byte vector), directories, symlinks, hard
//! links (`nlink`), files that stay alive while open after their last unlink, permission
//! bits with owner/group/other classes, root's bypass (CAP_DAC_OVERRIDE, CAP_FOWNER,
//! CAP_CHOWN), sticky directories, and the errno each operation returns in the order the
//! Linux VFS checks for them (`fs/namei.c`, `fs/open.c`, `fs/attr.c`; see each method).
//!
//! Deliberately not modelled (and never generated): set-uid/set-gid bits (their clearing
//! on write and chown, and set-gid directory inheritance, differ between kernel and FUSE
//! paths in ways that say nothing about ferrofs), supplementary groups, ACLs, xattrs,
//! times, `..` and `.` in paths, `O_APPEND`, special files. Kernel policy that depends
//! on sysctls (`fs.protected_hardlinks`, `fs.protected_symlinks`, `fs.protected_regular`)
//! is modelled behind [`ModelConfig`].

use crate::ops::{Op, OpenFlags, Path, RenameMode, State, Who, ALL_NAMES, SLOTS};
use crate::target::{join, Kind, Outcome, Stat, Target, Tree, TreeEntry, Value};
use crate::walk::{permitted, resolve, Namespace, Walked, R, W, X};
use ferrofs_core::Errno;
use std::collections::BTreeMap;

/// Kernel policy knobs the model honours.
#[derive(Clone, Copy, Debug, Default)]
pub struct ModelConfig {
    /// `fs.protected_hardlinks`: an unprivileged caller may hard-link only a regular
    /// file it owns or can read and write (EPERM otherwise). This is kernel policy, not
    /// file-system policy: on for comparisons with Linux (where the sysctl is 1), off
    /// for the library target, which has no kernel in front of it.
    pub protected_hardlinks: bool,
    /// `fs.protected_symlinks`: a symlink that ends a path, in a sticky world-writable
    /// directory, may be followed only by its owner or if the directory's owner owns
    /// it (EACCES otherwise; root is not exempt).
    pub protected_symlinks: bool,
    /// `fs.protected_regular`: `O_CREAT` on an existing regular file in a sticky
    /// directory that is world-writable (1), or also group-writable (2), is refused
    /// (EACCES) unless the caller or the directory's owner owns the file; root is not
    /// exempt.
    pub protected_regular: u8,
}

type Ino = u64;
const ROOT: Ino = 1;

#[derive(Clone, Debug)]
enum Body {
    File(Vec<u8>),
    Dir {
        entries: BTreeMap<String, Ino>,
        parent: Ino,
    },
    Symlink(String),
}

#[derive(Clone, Debug)]
struct Inode {
    body: Body,
    perm: u16,
    uid: u32,
    gid: u32,
    /// Number of entries naming a file or symlink. Directories compute theirs.
    nlink: u32,
}

impl Inode {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir { .. } => Kind::Dir,
            Body::Symlink(_) => Kind::Symlink,
        }
    }

    fn allows(&self, who: Who, want: u16) -> bool {
        permitted(
            who,
            self.uid,
            self.gid,
            self.perm,
            self.kind() == Kind::Dir,
            want,
        )
    }

    fn entries(&self) -> &BTreeMap<String, Ino> {
        match &self.body {
            Body::Dir { entries, .. } => entries,
            _ => panic!("not a directory"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Handle {
    ino: Ino,
    read: bool,
    write: bool,
}

/// The in-memory reference file system.
#[derive(Clone, Debug)]
pub struct Model {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    slots: [Option<Handle>; SLOTS],
    config: ModelConfig,
}

/// The model as a [`Target`].
pub struct ModelTarget {
    pub model: Model,
    name: String,
}

impl ModelTarget {
    pub fn new(config: ModelConfig) -> ModelTarget {
        ModelTarget {
            model: Model::new(config),
            name: "model".into(),
        }
    }
}

impl Target for ModelTarget {
    fn name(&self) -> &str {
        &self.name
    }
    fn apply(&mut self, op: &Op) -> Outcome {
        self.model.apply(op)
    }
    fn tree(&mut self) -> Tree {
        self.model.tree()
    }
}

impl State for Model {
    fn paths(&self) -> Vec<(Path, Kind)> {
        let mut out = Vec::new();
        self.collect_paths(ROOT, &[], &mut out);
        out
    }

    fn open_slots(&self) -> Vec<usize> {
        (0..SLOTS).filter(|&s| self.slots[s].is_some()).collect()
    }
}

/// The `'static` copy of a generated name.
fn intern(name: &str) -> &'static str {
    ALL_NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .expect("names come from the generator's pools")
}

impl Namespace for Model {
    type Id = Ino;

    fn lookup(&mut self, who: Who, dir: Ino, name: &str) -> Result<Option<(Ino, Kind)>, Errno> {
        let d = &self.inodes[&dir];
        if !d.allows(who, X) {
            return Err(Errno::EACCES);
        }
        Ok(d.entries()
            .get(name)
            .map(|&ino| (ino, self.inodes[&ino].kind())))
    }

    fn readlink(&mut self, id: Ino) -> Result<String, Errno> {
        match &self.inodes[&id].body {
            Body::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `may_follow_link` (fs/namei.c).
    fn may_follow_trailing(&mut self, who: Who, dir: Ino, link: Ino) -> Result<(), Errno> {
        let (d, l) = (self.ino(dir), self.ino(link));
        if !self.config.protected_symlinks
            || who.uid() == l.uid
            || d.perm & 0o1002 != 0o1002
            || d.uid == l.uid
        {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }
}

impl Model {
    /// An empty file system whose root is `0o777`, owned by root.
    pub fn new(config: ModelConfig) -> Model {
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT,
            Inode {
                body: Body::Dir {
                    entries: BTreeMap::new(),
                    parent: ROOT,
                },
                perm: 0o777,
                uid: 0,
                gid: 0,
                nlink: 0,
            },
        );
        Model {
            inodes,
            next_ino: ROOT + 1,
            slots: [None; SLOTS],
            config,
        }
    }

    pub fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Mkdir { who, path, mode } => self.mkdir(*who, &path.0, *mode),
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
            } => self.write(*slot, *offset, *len, *seed),
            Op::Read { slot, offset, len } => self.read(*slot, *offset, *len),
            Op::Ftruncate { slot, size } => self.ftruncate(*slot, *size),
            Op::Fsync { slot } => self.handle(*slot).map(|_| Value::Done),
            Op::Fstat { slot } => {
                let h = self.handle(*slot)?;
                Ok(Value::Stat(self.stat_of(h.ino)))
            }
            Op::Close { slot } => {
                self.handle(*slot)?;
                self.close(*slot);
                Ok(Value::Done)
            }
            Op::Truncate { who, path, size } => self.truncate(*who, &path.0, *size),
            Op::Unlink { who, path } => self.unlink(*who, &path.0),
            Op::Rmdir { who, path } => self.rmdir(*who, &path.0),
            Op::Rename {
                who,
                from,
                to,
                mode,
            } => self.rename(*who, &from.0, &to.0, *mode),
            Op::Link { who, from, to } => self.link(*who, &from.0, &to.0),
            Op::Symlink { who, target, path } => self.symlink(*who, &target.as_target(), &path.0),
            Op::Readlink { who, path } => {
                let (id, _) = self
                    .walk(*who, &path.0, false)?
                    .found
                    .ok_or(Errno::ENOENT)?;
                self.readlink(id).map(Value::Target)
            }
            Op::Chmod { who, path, mode } => self.chmod(*who, &path.0, *mode),
            Op::Chown {
                who,
                path,
                uid,
                gid,
                follow,
            } => self.chown(*who, &path.0, *uid, *gid, *follow),
            Op::Stat { who, path, follow } => {
                let (id, _) = self
                    .walk(*who, &path.0, *follow)?
                    .found
                    .ok_or(Errno::ENOENT)?;
                Ok(Value::Stat(self.stat_of(id)))
            }
            Op::Readdir { who, path } => self.readdir(*who, &path.0),
            Op::Sync => Ok(Value::Done),
        }
    }

    fn walk(&mut self, who: Who, path: &[&str], follow: bool) -> Result<Walked<Ino>, Errno> {
        resolve(self, who, ROOT, path, follow)
    }

    fn ino(&self, ino: Ino) -> &Inode {
        &self.inodes[&ino]
    }

    fn ino_mut(&mut self, ino: Ino) -> &mut Inode {
        self.inodes.get_mut(&ino).expect("live inode")
    }

    fn dir_entries_mut(&mut self, dir: Ino) -> &mut BTreeMap<String, Ino> {
        match &mut self.ino_mut(dir).body {
            Body::Dir { entries, .. } => entries,
            _ => panic!("not a directory"),
        }
    }

    fn nlink(&self, ino: Ino) -> u32 {
        let i = self.ino(ino);
        match &i.body {
            Body::Dir { entries, .. } => {
                let subdirs = entries
                    .values()
                    .filter(|e| self.ino(**e).kind() == Kind::Dir)
                    .count();
                // A removed directory kept alive by an open handle has nlink 0.
                if ino != ROOT && !self.is_linked_dir(ino) {
                    0
                } else {
                    2 + subdirs as u32
                }
            }
            _ => i.nlink,
        }
    }

    /// Whether directory `ino` is still in the tree.
    fn is_linked_dir(&self, ino: Ino) -> bool {
        match &self.ino(ino).body {
            Body::Dir { parent, .. } => {
                self.inodes.get(parent).map(|p| matches!(&p.body, Body::Dir { entries, .. } if entries.values().any(|&e| e == ino))).unwrap_or(false)
            }
            _ => false,
        }
    }

    fn stat_of(&self, ino: Ino) -> Stat {
        let i = self.ino(ino);
        let size = match &i.body {
            Body::File(d) => d.len() as u64,
            Body::Symlink(t) => t.len() as u64,
            Body::Dir { .. } => 0,
        };
        Stat::new(i.kind(), i.perm as u32, self.nlink(ino), size, i.uid, i.gid)
    }

    fn new_inode(&mut self, body: Body, perm: u16, who: Who) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Inode {
                body,
                perm,
                uid: who.uid(),
                gid: who.gid(),
                nlink: 1,
            },
        );
        ino
    }

    /// Drops `ino` if no entry names it and no handle holds it.
    fn gc(&mut self, ino: Ino) {
        let open = self.slots.iter().flatten().any(|h| h.ino == ino);
        let linked = match self.ino(ino).body {
            Body::Dir { .. } => self.is_linked_dir(ino),
            _ => self.ino(ino).nlink > 0,
        };
        if !open && !linked {
            self.inodes.remove(&ino);
        }
    }

    fn handle(&self, slot: usize) -> Result<Handle, Errno> {
        self.slots[slot].ok_or(Errno::EBADF)
    }

    fn close(&mut self, slot: usize) {
        if let Some(h) = self.slots[slot].take() {
            self.gc(h.ino);
        }
    }

    /// `may_create`: search and write permission on the directory.
    fn may_create(&self, who: Who, dir: Ino) -> Result<(), Errno> {
        if self.ino(dir).allows(who, W | X) {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }

    /// `may_delete` (fs/namei.c): EACCES without write+search on the directory, EPERM
    /// for the sticky bit (unless the caller owns the entry or the directory, or is
    /// root), then ENOTDIR / EISDIR when the victim's kind is not the expected one.
    fn may_delete(&self, who: Who, dir: Ino, victim: Ino, isdir: bool) -> Result<(), Errno> {
        let d = self.ino(dir);
        let v = self.ino(victim);
        if !d.allows(who, W | X) {
            return Err(Errno::EACCES);
        }
        if d.perm & 0o1000 != 0 && who != Who::Root && who.uid() != v.uid && who.uid() != d.uid {
            return Err(Errno::EPERM);
        }
        let vdir = v.kind() == Kind::Dir;
        if isdir && !vdir {
            return Err(Errno::ENOTDIR);
        }
        if !isdir && vdir {
            return Err(Errno::EISDIR);
        }
        Ok(())
    }

    /// `mkdir`: the final component is not followed (an existing symlink gives EEXIST);
    /// EEXIST is checked before write permission on the parent.
    fn mkdir(&mut self, who: Who, path: &[&str], mode: u16) -> Outcome {
        let w = self.walk(who, path, false)?;
        if w.found.is_some() {
            return Err(Errno::EEXIST);
        }
        self.may_create(who, w.parent)?;
        let ino = self.new_inode(
            Body::Dir {
                entries: BTreeMap::new(),
                parent: w.parent,
            },
            mode & 0o1777,
            who,
        );
        self.dir_entries_mut(w.parent).insert(w.name, ino);
        Ok(Value::Done)
    }

    /// `open` (fs/namei.c `open_last_lookups`, `do_open`, `may_open`):
    /// - `O_CREAT|O_EXCL` does not follow a final symlink and fails with EEXIST on any
    ///   existing name, before any permission check on the directory;
    /// - otherwise a final symlink is followed; `O_CREAT` on a dangling one creates its
    ///   target;
    /// - creating needs write+search on the directory; the creator's open is not checked
    ///   against the new file's mode;
    /// - an existing directory: EISDIR with `O_CREAT` or write access (`O_TRUNC` counts
    ///   as write access);
    /// - `O_CREAT` on an existing file: `fs.protected_regular` (see [`ModelConfig`]);
    /// - an existing file needs read and/or write permission (`O_TRUNC` needs write);
    /// - `O_TRUNC` then empties it.
    fn open(
        &mut self,
        who: Who,
        path: &[&str],
        flags: OpenFlags,
        mode: u16,
        slot: usize,
    ) -> Outcome {
        self.close(slot);
        let follow = !(flags.creat && flags.excl);
        let w = self.walk(who, path, follow)?;
        let writes = flags.access.writes() || flags.trunc;
        let ino = match w.found {
            None => {
                if !flags.creat {
                    return Err(Errno::ENOENT);
                }
                self.may_create(who, w.parent)?;
                let ino = self.new_inode(Body::File(Vec::new()), mode & 0o7777, who);
                self.dir_entries_mut(w.parent).insert(w.name, ino);
                ino
            }
            Some((ino, kind)) => {
                if flags.creat && flags.excl {
                    return Err(Errno::EEXIST);
                }
                if kind == Kind::Dir && (flags.creat || writes) {
                    return Err(Errno::EISDIR);
                }
                if flags.creat {
                    self.may_create_in_sticky(who, w.parent, ino)?;
                }
                debug_assert_ne!(kind, Kind::Symlink, "final symlinks are followed");
                let mut want = 0;
                if flags.access.reads() {
                    want |= R;
                }
                if writes {
                    want |= W;
                }
                if !self.ino(ino).allows(who, want) {
                    return Err(Errno::EACCES);
                }
                if flags.trunc {
                    if let Body::File(d) = &mut self.ino_mut(ino).body {
                        d.clear();
                    }
                }
                ino
            }
        };
        self.slots[slot] = Some(Handle {
            ino,
            read: flags.access.reads(),
            write: flags.access.writes(),
        });
        Ok(Value::Done)
    }

    /// `may_create_in_sticky` (fs/namei.c), for `O_CREAT` on an existing regular file.
    fn may_create_in_sticky(&self, who: Who, dir: Ino, file: Ino) -> Result<(), Errno> {
        let (d, f) = (self.ino(dir), self.ino(file));
        let level = self.config.protected_regular;
        if d.perm & 0o1000 == 0 || level == 0 || f.uid == d.uid || f.uid == who.uid() {
            return Ok(());
        }
        if d.perm & 0o002 != 0 || (level >= 2 && d.perm & 0o020 != 0) {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    /// `pwrite`: EBADF unless open for writing; zero bytes change nothing.
    fn write(&mut self, slot: usize, offset: u64, len: u32, seed: u8) -> Outcome {
        let h = self.handle(slot)?;
        if !h.write {
            return Err(Errno::EBADF);
        }
        if len == 0 {
            return Ok(Value::Written(0));
        }
        let data = crate::ops::pattern(seed, len as usize);
        if let Body::File(d) = &mut self.ino_mut(h.ino).body {
            let end = offset as usize + data.len();
            if d.len() < end {
                d.resize(end, 0);
            }
            d[offset as usize..end].copy_from_slice(&data);
        }
        Ok(Value::Written(len as u64))
    }

    /// `pread`: EBADF unless open for reading; EISDIR on a directory.
    fn read(&mut self, slot: usize, offset: u64, len: u32) -> Outcome {
        let h = self.handle(slot)?;
        if !h.read {
            return Err(Errno::EBADF);
        }
        match &self.ino(h.ino).body {
            Body::File(d) => {
                let start = (offset as usize).min(d.len());
                let end = (offset as usize + len as usize).min(d.len());
                Ok(Value::Data(d[start..end].to_vec()))
            }
            _ => Err(Errno::EISDIR),
        }
    }

    /// `ftruncate`: EINVAL unless a regular file open for writing.
    fn ftruncate(&mut self, slot: usize, size: u64) -> Outcome {
        let h = self.handle(slot)?;
        match &mut self.ino_mut(h.ino).body {
            Body::File(d) if h.write => {
                d.resize(size as usize, 0);
                Ok(Value::Done)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `truncate` (fs/open.c `vfs_truncate`): follows symlinks; EISDIR for a directory,
    /// then EACCES without write permission.
    fn truncate(&mut self, who: Who, path: &[&str], size: u64) -> Outcome {
        let (ino, kind) = self.walk(who, path, true)?.found.ok_or(Errno::ENOENT)?;
        if kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        if !self.ino(ino).allows(who, W) {
            return Err(Errno::EACCES);
        }
        if let Body::File(d) = &mut self.ino_mut(ino).body {
            d.resize(size as usize, 0);
        }
        Ok(Value::Done)
    }

    /// `unlink`: ENOENT, then `may_delete` (EACCES, EPERM, EISDIR).
    fn unlink(&mut self, who: Who, path: &[&str]) -> Outcome {
        let w = self.walk(who, path, false)?;
        let (ino, _) = w.found.ok_or(Errno::ENOENT)?;
        self.may_delete(who, w.parent, ino, false)?;
        self.dir_entries_mut(w.parent).remove(&w.name);
        self.ino_mut(ino).nlink -= 1;
        self.gc(ino);
        Ok(Value::Done)
    }

    /// `rmdir`: ENOENT, then `may_delete` (EACCES, EPERM, ENOTDIR), then ENOTEMPTY.
    fn rmdir(&mut self, who: Who, path: &[&str]) -> Outcome {
        let w = self.walk(who, path, false)?;
        let (ino, _) = w.found.ok_or(Errno::ENOENT)?;
        self.may_delete(who, w.parent, ino, true)?;
        if !self.ino(ino).entries().is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.dir_entries_mut(w.parent).remove(&w.name);
        self.gc(ino);
        Ok(Value::Done)
    }

    /// The child of `ancestor` on the way down to directory `dir`, if `ancestor` is a
    /// proper ancestor of `dir` (the kernel's `d_ancestor`).
    fn child_towards(&self, ancestor: Ino, dir: Ino) -> Option<Ino> {
        let mut cur = dir;
        while cur != ROOT {
            let parent = match self.ino(cur).body {
                Body::Dir { parent, .. } => parent,
                _ => return None,
            };
            if parent == ancestor {
                return Some(cur);
            }
            cur = parent;
        }
        None
    }

    /// `renameat2` (fs/namei.c `do_renameat2`, `vfs_rename`), in the kernel's order:
    /// 1. resolve both parents (neither final component is followed);
    /// 2. ENOENT for a missing source; EEXIST (NOREPLACE) for an existing target;
    ///    ENOENT (EXCHANGE) for a missing target;
    /// 3. EINVAL if the source is an ancestor of the target's directory; if the target
    ///    is an ancestor of the source's directory, ENOTEMPTY (EINVAL for EXCHANGE);
    /// 4. success without change if both names are the same inode;
    /// 5. `may_delete` on the source, then `may_delete` on the target (with the source's
    ///    kind, or the target's own for EXCHANGE) or `may_create` on the new directory;
    /// 6. moving a directory to another parent needs write permission on it (its `..`
    ///    changes), for EXCHANGE on both;
    /// 7. ENOTEMPTY when replacing a non-empty directory.
    fn rename(&mut self, who: Who, from: &[&str], to: &[&str], mode: RenameMode) -> Outcome {
        let wo = self.walk(who, from, false)?;
        let wn = self.walk(who, to, false)?;
        let (src, skind) = wo.found.ok_or(Errno::ENOENT)?;
        if mode == RenameMode::NoReplace && wn.found.is_some() {
            return Err(Errno::EEXIST);
        }
        if mode == RenameMode::Exchange && wn.found.is_none() {
            return Err(Errno::ENOENT);
        }
        let trap = if wo.parent == wn.parent {
            None
        } else {
            self.child_towards(wo.parent, wn.parent)
                .or_else(|| self.child_towards(wn.parent, wo.parent))
        };
        if trap == Some(src) {
            return Err(Errno::EINVAL);
        }
        if let Some((dst, _)) = wn.found {
            if trap == Some(dst) {
                return Err(if mode == RenameMode::Exchange {
                    Errno::EINVAL
                } else {
                    Errno::ENOTEMPTY
                });
            }
            if dst == src {
                return Ok(Value::Done);
            }
        }
        let sdir = skind == Kind::Dir;
        self.may_delete(who, wo.parent, src, sdir)?;
        match wn.found {
            None => self.may_create(who, wn.parent)?,
            Some((dst, dkind)) => {
                let isdir = if mode == RenameMode::Exchange {
                    dkind == Kind::Dir
                } else {
                    sdir
                };
                self.may_delete(who, wn.parent, dst, isdir)?;
            }
        }
        if wo.parent != wn.parent {
            if sdir && !self.ino(src).allows(who, W) {
                return Err(Errno::EACCES);
            }
            if let (RenameMode::Exchange, Some((dst, Kind::Dir))) = (mode, wn.found) {
                if !self.ino(dst).allows(who, W) {
                    return Err(Errno::EACCES);
                }
            }
        }
        if mode == RenameMode::Exchange {
            let (dst, _) = wn.found.expect("checked above");
            self.dir_entries_mut(wo.parent).insert(wo.name, dst);
            self.dir_entries_mut(wn.parent).insert(wn.name, src);
            self.set_parent(dst, wo.parent);
            self.set_parent(src, wn.parent);
            return Ok(Value::Done);
        }
        if let Some((dst, dkind)) = wn.found {
            if dkind == Kind::Dir && !self.ino(dst).entries().is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
        }
        self.dir_entries_mut(wo.parent).remove(&wo.name);
        let replaced = self.dir_entries_mut(wn.parent).insert(wn.name, src);
        self.set_parent(src, wn.parent);
        if let Some(old) = replaced {
            if self.ino(old).kind() != Kind::Dir {
                self.ino_mut(old).nlink -= 1;
            }
            self.gc(old);
        }
        Ok(Value::Done)
    }

    fn set_parent(&mut self, ino: Ino, new_parent: Ino) {
        if let Body::Dir { parent, .. } = &mut self.ino_mut(ino).body {
            *parent = new_parent;
        }
    }

    /// `linkat(old, new, 0)` (fs/namei.c `do_linkat`, `vfs_link`): the source's final
    /// symlink is not followed; ENOENT, then EEXIST, then `protected_hardlinks` (EPERM),
    /// then write+search on the new directory (EACCES), then EPERM for a directory.
    fn link(&mut self, who: Who, from: &[&str], to: &[&str]) -> Outcome {
        let (src, skind) = self.walk(who, from, false)?.found.ok_or(Errno::ENOENT)?;
        let wn = self.walk(who, to, false)?;
        if wn.found.is_some() {
            return Err(Errno::EEXIST);
        }
        if self.config.protected_hardlinks && who != Who::Root {
            let s = self.ino(src);
            let owner = s.uid == who.uid();
            let safe = skind == Kind::File && s.allows(who, R | W);
            if !owner && !safe {
                return Err(Errno::EPERM);
            }
        }
        self.may_create(who, wn.parent)?;
        if skind == Kind::Dir {
            return Err(Errno::EPERM);
        }
        self.dir_entries_mut(wn.parent).insert(wn.name, src);
        self.ino_mut(src).nlink += 1;
        Ok(Value::Done)
    }

    /// `symlink`: EEXIST for any existing name, then write+search on the directory.
    /// Symlinks are `0o777` and owned by the caller.
    fn symlink(&mut self, who: Who, target: &str, path: &[&str]) -> Outcome {
        let w = self.walk(who, path, false)?;
        if w.found.is_some() {
            return Err(Errno::EEXIST);
        }
        self.may_create(who, w.parent)?;
        let ino = self.new_inode(Body::Symlink(target.to_string()), 0o777, who);
        self.dir_entries_mut(w.parent).insert(w.name, ino);
        Ok(Value::Done)
    }

    /// `chmod` (fs/attr.c `setattr_prepare`): follows symlinks; only the owner or root.
    fn chmod(&mut self, who: Who, path: &[&str], mode: u16) -> Outcome {
        let (ino, _) = self.walk(who, path, true)?.found.ok_or(Errno::ENOENT)?;
        let i = self.ino_mut(ino);
        if who != Who::Root && who.uid() != i.uid {
            return Err(Errno::EPERM);
        }
        i.perm = mode & 0o7777;
        Ok(Value::Done)
    }

    /// `chown`/`lchown` (fs/attr.c `chown_ok`, `chgrp_ok`): root may do anything; the
    /// owner may "change" the uid to itself and the gid to a group it is in (or to the
    /// current gid); everyone else gets EPERM.
    fn chown(
        &mut self,
        who: Who,
        path: &[&str],
        uid: Option<u32>,
        gid: Option<u32>,
        follow: bool,
    ) -> Outcome {
        let (ino, _) = self.walk(who, path, follow)?.found.ok_or(Errno::ENOENT)?;
        let i = self.ino_mut(ino);
        if who != Who::Root {
            let owner = who.uid() == i.uid;
            if let Some(u) = uid {
                if !(owner && u == i.uid) {
                    return Err(Errno::EPERM);
                }
            }
            if let Some(g) = gid {
                if !(owner && (g == who.gid() || g == i.gid)) {
                    return Err(Errno::EPERM);
                }
            }
        }
        if let Some(u) = uid {
            i.uid = u;
        }
        if let Some(g) = gid {
            i.gid = g;
        }
        Ok(Value::Done)
    }

    /// `opendir` + `readdir`: follows symlinks; ENOTDIR, then EACCES without read
    /// permission.
    fn readdir(&mut self, who: Who, path: &[&str]) -> Outcome {
        let (ino, kind) = self.walk(who, path, true)?.found.ok_or(Errno::ENOENT)?;
        if kind != Kind::Dir {
            return Err(Errno::ENOTDIR);
        }
        let d = self.ino(ino);
        if !d.allows(who, R) {
            return Err(Errno::EACCES);
        }
        Ok(Value::Names(d.entries().keys().cloned().collect()))
    }

    /// The whole namespace, as root.
    pub fn tree(&self) -> Tree {
        let mut items = Vec::new();
        self.walk_tree(ROOT, "/".to_string(), &mut items);
        Tree::from_walk(items)
    }

    fn walk_tree(&self, ino: Ino, path: String, out: &mut Vec<(String, Ino, TreeEntry)>) {
        let i = self.ino(ino);
        let (content, target) = match &i.body {
            Body::File(d) => (Some((d.len() as u64, crate::target::fnv64(d))), None),
            Body::Symlink(t) => (None, Some(t.clone())),
            Body::Dir { .. } => (None, None),
        };
        out.push((
            path.clone(),
            ino,
            TreeEntry {
                stat: self.stat_of(ino),
                content,
                target,
                same_inode_as: None,
            },
        ));
        if let Body::Dir { entries, .. } = &i.body {
            for (name, &child) in entries {
                self.walk_tree(child, join(&path, name), out);
            }
        }
    }

    fn collect_paths(&self, ino: Ino, prefix: &[&'static str], out: &mut Vec<(Path, Kind)>) {
        if let Body::Dir { entries, .. } = &self.ino(ino).body {
            for (name, &child) in entries {
                let mut p = prefix.to_vec();
                p.push(intern(name));
                out.push((Path(p.clone()), self.ino(child).kind()));
                self.collect_paths(child, &p, out);
            }
        }
    }

    /// Number of live inodes (for tests of the model itself).
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Access;

    fn p(s: &'static str) -> Path {
        Path(s.split('/').filter(|c| !c.is_empty()).collect())
    }

    #[test]
    fn unlinked_file_lives_while_open() {
        let mut m = Model::new(ModelConfig::default());
        let flags = OpenFlags {
            access: Access::ReadWrite,
            creat: true,
            excl: true,
            trunc: false,
        };
        assert_eq!(
            m.apply(&Op::Open {
                who: Who::Root,
                path: p("f"),
                flags,
                mode: 0o644,
                slot: 0
            }),
            Ok(Value::Done)
        );
        assert_eq!(
            m.apply(&Op::Write {
                slot: 0,
                offset: 10,
                len: 5,
                seed: 1
            }),
            Ok(Value::Written(5))
        );
        assert_eq!(
            m.apply(&Op::Unlink {
                who: Who::Root,
                path: p("f")
            }),
            Ok(Value::Done)
        );
        let Ok(Value::Stat(s)) = m.apply(&Op::Fstat { slot: 0 }) else {
            panic!()
        };
        assert_eq!((s.nlink, s.size), (0, Some(15)));
        assert_eq!(m.inode_count(), 2);
        assert_eq!(m.apply(&Op::Close { slot: 0 }), Ok(Value::Done));
        assert_eq!(m.inode_count(), 1);
    }

    #[test]
    fn rename_into_own_subtree_and_onto_ancestor() {
        let mut m = Model::new(ModelConfig::default());
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(
                m.apply(&Op::Mkdir {
                    who: Who::Root,
                    path: p(d),
                    mode: 0o755
                }),
                Ok(Value::Done)
            );
        }
        let r = |m: &mut Model, from, to, mode| {
            m.apply(&Op::Rename {
                who: Who::Root,
                from: p(from),
                to: p(to),
                mode,
            })
        };
        assert_eq!(
            r(&mut m, "a", "a/b/x", RenameMode::Plain),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            r(&mut m, "a/b/c", "a", RenameMode::Plain),
            Err(Errno::ENOTEMPTY)
        );
        assert_eq!(
            r(&mut m, "a/b/c", "a", RenameMode::Exchange),
            Err(Errno::EINVAL)
        );
        assert_eq!(r(&mut m, "a/b", "a/b", RenameMode::Plain), Ok(Value::Done));
        assert_eq!(r(&mut m, "a/b/c", "c", RenameMode::Plain), Ok(Value::Done));
        let Ok(Value::Stat(s)) = m.apply(&Op::Stat {
            who: Who::Root,
            path: p("a"),
            follow: false,
        }) else {
            panic!()
        };
        assert_eq!(s.nlink, 3);
    }

    #[test]
    fn symlinks_are_followed_in_the_middle_and_loop() {
        let mut m = Model::new(ModelConfig::default());
        m.apply(&Op::Mkdir {
            who: Who::Root,
            path: p("a"),
            mode: 0o755,
        })
        .unwrap();
        m.apply(&Op::Symlink {
            who: Who::Root,
            target: p("a"),
            path: p("s"),
        })
        .unwrap();
        m.apply(&Op::Symlink {
            who: Who::Root,
            target: p("t"),
            path: p("t"),
        })
        .unwrap();
        let flags = OpenFlags {
            access: Access::Write,
            creat: true,
            excl: false,
            trunc: false,
        };
        assert_eq!(
            m.apply(&Op::Open {
                who: Who::Root,
                path: p("s/f"),
                flags,
                mode: 0o600,
                slot: 1
            }),
            Ok(Value::Done)
        );
        assert_eq!(
            m.apply(&Op::Readdir {
                who: Who::Root,
                path: p("s")
            }),
            Ok(Value::Names(vec!["f".into()]))
        );
        assert_eq!(
            m.apply(&Op::Stat {
                who: Who::Root,
                path: p("t"),
                follow: true
            }),
            Err(Errno::ELOOP)
        );
        assert!(m
            .apply(&Op::Stat {
                who: Who::Root,
                path: p("t"),
                follow: false
            })
            .is_ok());
    }
}
