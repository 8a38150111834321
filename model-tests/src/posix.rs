//! [`PosixTarget`]: runs operations through the kernel on a real directory — a plain
//! local directory (Linux as the oracle) or the root of a ferrofs FUSE mount.
//!
//! Unprivileged operations run as the caller's *file-system* ids: `setfsuid`/`setfsgid`
//! on the calling thread only (the process stays root, which is also what lets it use a
//! FUSE mount made by root without `allow_other`: that check looks at the real and
//! effective ids, while FUSE requests carry the fs ids). Moving fsuid away from 0 drops
//! the file-system capabilities of the thread, so the kernel checks permissions as it
//! would for that user. The thread's supplementary groups are emptied (with the raw
//! syscall: glibc's `setgroups` would change every thread), matching the model's
//! callers. This needs root; constructors panic with a clear message otherwise.
//!
//! Paths are resolved by the kernel relative to an `O_PATH` descriptor of the root,
//! except `truncate(2)`, which has no `*at` form and gets an absolute path (the
//! directories above the root must be searchable by everyone; the tests arrange that).

use crate::ops::{Op, OpenFlags, RenameMode, Who, SLOTS};
use crate::target::{fnv64, join, Kind, Outcome, Stat, Target, Tree, TreeEntry, Value};
use ferrofs_core::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path as FsPath, PathBuf};

/// A real directory driven through system calls.
pub struct PosixTarget {
    name: String,
    root: PathBuf,
    rootfd: OwnedFd,
    /// Open descriptors and who opened them (handle operations run as the opener).
    slots: Vec<Option<(OwnedFd, Who)>>,
}

fn errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn check(rc: libc::c_int) -> Result<libc::c_int, Errno> {
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc)
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in test paths")
}

/// Runs `f` with the file-system ids of `who` on this thread; restores root after,
/// also when `f` panics.
fn as_who<T>(who: Who, f: impl FnOnce() -> T) -> T {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            unsafe {
                libc::setfsuid(0);
                libc::setfsgid(0);
            }
        }
    }
    if who == Who::Root {
        return f();
    }
    unsafe {
        libc::setfsgid(who.gid());
        libc::setfsuid(who.uid());
        // setfsuid reports the previous value, never an error: read it back.
        assert_eq!(
            libc::setfsuid(u32::MAX) as u32,
            who.uid(),
            "setfsuid failed (not root?)"
        );
        assert_eq!(
            libc::setfsgid(u32::MAX) as u32,
            who.gid(),
            "setfsgid failed (not root?)"
        );
    }
    let _restore = Restore;
    f()
}

/// Panics with a clear message unless the process is root: permission tests need to
/// switch file-system ids and the FUSE test needs to mount.
pub fn require_root(what: &str) {
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "{what} must run as root (it switches file-system uids with setfsuid and mounts FUSE); \
             run it with sudo or in the CI container"
        );
    }
}

impl PosixTarget {
    /// Takes over directory `root` (which must be empty): makes it `0o777`, owned by
    /// 0:0, like the model's root, sets the process umask to 0 (modes are compared
    /// exactly) and drops this thread's supplementary groups.
    pub fn new(name: &str, root: &FsPath) -> PosixTarget {
        require_root("PosixTarget");
        unsafe {
            libc::umask(0);
            let rc = libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>());
            assert_eq!(rc, 0, "setgroups: {}", std::io::Error::last_os_error());
        }
        let c = cstr(root.to_str().expect("utf-8 temp path"));
        unsafe {
            check(libc::chown(c.as_ptr(), 0, 0)).expect("chown root dir");
            check(libc::chmod(c.as_ptr(), 0o777)).expect("chmod root dir");
        }
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        let fd = check(fd).unwrap_or_else(|e| panic!("open {}: {e}", root.display()));
        PosixTarget {
            name: name.to_string(),
            root: root.to_path_buf(),
            rootfd: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: (0..SLOTS).map(|_| None).collect(),
        }
    }

    fn dirfd(&self) -> RawFd {
        self.rootfd.as_raw_fd()
    }

    fn fd(&self, slot: usize) -> Result<(RawFd, Who), Errno> {
        self.slots[slot]
            .as_ref()
            .map(|(f, w)| (f.as_raw_fd(), *w))
            .ok_or(Errno::EBADF)
    }

    /// Closes every open handle (end of a sequence).
    pub fn close_all(&mut self) {
        for s in &mut self.slots {
            *s = None;
        }
    }

    fn open(&mut self, who: Who, rel: &str, flags: OpenFlags, mode: u16, slot: usize) -> Outcome {
        self.slots[slot] = None;
        let mut f = match flags.access {
            crate::ops::Access::Read => libc::O_RDONLY,
            crate::ops::Access::Write => libc::O_WRONLY,
            crate::ops::Access::ReadWrite => libc::O_RDWR,
        } | libc::O_CLOEXEC;
        if flags.creat {
            f |= libc::O_CREAT;
        }
        if flags.excl {
            f |= libc::O_EXCL;
        }
        if flags.trunc {
            f |= libc::O_TRUNC;
        }
        let c = cstr(rel);
        let fd = as_who(who, || {
            check(unsafe { libc::openat(self.dirfd(), c.as_ptr(), f, mode as libc::c_uint) })
        })?;
        self.slots[slot] = Some((unsafe { OwnedFd::from_raw_fd(fd) }, who));
        Ok(Value::Done)
    }

    fn pwrite(&self, slot: usize, offset: u64, len: u32, seed: u8) -> Outcome {
        let (fd, who) = self.fd(slot)?;
        as_who(who, || Self::pwrite_fd(fd, offset, len, seed))
    }

    fn pwrite_fd(fd: RawFd, offset: u64, len: u32, seed: u8) -> Outcome {
        let data = crate::ops::pattern(seed, len as usize);
        let mut done = 0usize;
        loop {
            let n = unsafe {
                libc::pwrite(
                    fd,
                    data[done..].as_ptr().cast(),
                    data.len() - done,
                    (offset + done as u64) as i64,
                )
            };
            if n < 0 {
                return Err(errno());
            }
            done += n as usize;
            if done == data.len() || n == 0 {
                return Ok(Value::Written(done as u64));
            }
        }
    }

    fn pread(&self, slot: usize, offset: u64, len: u32) -> Outcome {
        let (fd, who) = self.fd(slot)?;
        as_who(who, || Self::pread_fd(fd, offset, len))
    }

    fn pread_fd(fd: RawFd, offset: u64, len: u32) -> Outcome {
        let mut buf = vec![0u8; len as usize];
        let mut done = 0usize;
        while done < buf.len() {
            let n = unsafe {
                libc::pread(
                    fd,
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    (offset + done as u64) as i64,
                )
            };
            if n < 0 {
                return Err(errno());
            }
            if n == 0 {
                break;
            }
            done += n as usize;
        }
        buf.truncate(done);
        Ok(Value::Data(buf))
    }

    fn fstatat(&self, rel: &str, follow: bool) -> Result<libc::stat, Errno> {
        let c = cstr(rel);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        check(unsafe { libc::fstatat(self.dirfd(), c.as_ptr(), &mut st, flags) })?;
        Ok(st)
    }

    fn readdir_fd(fd: RawFd) -> Result<Vec<String>, Errno> {
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            let e = errno();
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let mut names = Vec::new();
        let result = loop {
            unsafe { *libc::__errno_location() = 0 };
            let ent = unsafe { libc::readdir64(dir) };
            if ent.is_null() {
                let e = unsafe { *libc::__errno_location() };
                break if e == 0 { Ok(()) } else { Err(Errno(e)) };
            }
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        };
        unsafe { libc::closedir(dir) };
        result?;
        names.sort();
        Ok(names)
    }

    fn readdir(&self, who: Who, rel: &str) -> Outcome {
        let c = cstr(rel);
        let fd = as_who(who, || {
            check(unsafe {
                libc::openat(
                    self.dirfd(),
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            })
        })?;
        Ok(Value::Names(Self::readdir_fd(fd)?))
    }

    fn readlink(&self, rel: &str) -> Result<String, Errno> {
        let c = cstr(rel);
        let mut buf = vec![0u8; 4097];
        let n = unsafe {
            libc::readlinkat(self.dirfd(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        if n < 0 {
            return Err(errno());
        }
        buf.truncate(n as usize);
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn read_whole(&self, rel: &str) -> Vec<u8> {
        let c = cstr(rel);
        let fd = unsafe {
            libc::openat(
                self.dirfd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        let fd =
            check(fd).unwrap_or_else(|e| panic!("{}: open {rel} for the tree: {e}", self.name));
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            assert!(
                n >= 0,
                "{}: read {rel} for the tree: {}",
                self.name,
                errno()
            );
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    fn walk_tree(&self, rel: &str, path: &str, out: &mut Vec<(String, (u64, u64), TreeEntry)>) {
        let st = self
            .fstatat(rel, false)
            .unwrap_or_else(|e| panic!("{}: lstat {rel}: {e}", self.name));
        let stat = stat_of(&st);
        let (content, target) = match stat.kind {
            Kind::File => {
                let data = self.read_whole(rel);
                (Some((data.len() as u64, fnv64(&data))), None)
            }
            Kind::Symlink => (
                None,
                Some(self.readlink(rel).expect("readlink for the tree")),
            ),
            Kind::Dir => (None, None),
        };
        out.push((
            path.to_string(),
            (st.st_dev, st.st_ino),
            TreeEntry {
                stat,
                content,
                target,
                same_inode_as: None,
            },
        ));
        if stat.kind == Kind::Dir {
            let c = cstr(rel);
            let fd = check(unsafe {
                libc::openat(
                    self.dirfd(),
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            })
            .unwrap_or_else(|e| panic!("{}: opendir {rel}: {e}", self.name));
            let names = Self::readdir_fd(fd)
                .unwrap_or_else(|e| panic!("{}: readdir {rel}: {e}", self.name));
            for name in names {
                let child_rel = if rel == "." {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                self.walk_tree(&child_rel, &join(path, &name), out);
            }
        }
    }
}

/// The comparable part of a `struct stat`.
pub fn stat_of(st: &libc::stat) -> Stat {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        other => panic!("unexpected file type {other:#o}"),
    };
    Stat::new(
        kind,
        st.st_mode,
        st.st_nlink as u32,
        st.st_size as u64,
        st.st_uid,
        st.st_gid,
    )
}

impl Target for PosixTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        let dirfd = self.dirfd();
        let done = |rc: libc::c_int| check(rc).map(|_| Value::Done);
        match op {
            Op::Mkdir { who, path, mode } => {
                let c = cstr(&path.relative());
                as_who(*who, || {
                    done(unsafe { libc::mkdirat(dirfd, c.as_ptr(), *mode as libc::mode_t) })
                })
            }
            Op::Open {
                who,
                path,
                flags,
                mode,
                slot,
            } => self.open(*who, &path.relative(), *flags, *mode, *slot),
            Op::Write {
                slot,
                offset,
                len,
                seed,
            } => self.pwrite(*slot, *offset, *len, *seed),
            Op::Read { slot, offset, len } => self.pread(*slot, *offset, *len),
            Op::Ftruncate { slot, size } => {
                let (fd, who) = self.fd(*slot)?;
                as_who(who, || done(unsafe { libc::ftruncate(fd, *size as i64) }))
            }
            Op::Fsync { slot } => {
                let (fd, who) = self.fd(*slot)?;
                as_who(who, || done(unsafe { libc::fsync(fd) }))
            }
            Op::Fstat { slot } => {
                let (fd, who) = self.fd(*slot)?;
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                as_who(who, || check(unsafe { libc::fstat(fd, &mut st) }))?;
                Ok(Value::Stat(stat_of(&st)))
            }
            Op::Close { slot } => {
                let (fd, who) = self.slots[*slot].take().ok_or(Errno::EBADF)?;
                as_who(who, || done(unsafe { libc::close(fd.into_raw_fd()) }))
            }
            Op::Truncate { who, path, size } => {
                let abs = self.root.join(path.relative());
                let c = cstr(abs.to_str().expect("utf-8"));
                as_who(*who, || {
                    done(unsafe { libc::truncate(c.as_ptr(), *size as i64) })
                })
            }
            Op::Unlink { who, path } => {
                let c = cstr(&path.relative());
                as_who(*who, || {
                    done(unsafe { libc::unlinkat(dirfd, c.as_ptr(), 0) })
                })
            }
            Op::Rmdir { who, path } => {
                let c = cstr(&path.relative());
                as_who(*who, || {
                    done(unsafe { libc::unlinkat(dirfd, c.as_ptr(), libc::AT_REMOVEDIR) })
                })
            }
            Op::Rename {
                who,
                from,
                to,
                mode,
            } => {
                let (a, b) = (cstr(&from.relative()), cstr(&to.relative()));
                let flags: libc::c_uint = match mode {
                    RenameMode::Plain => 0,
                    RenameMode::NoReplace => libc::RENAME_NOREPLACE,
                    RenameMode::Exchange => libc::RENAME_EXCHANGE,
                };
                as_who(*who, || {
                    let rc = unsafe {
                        libc::syscall(
                            libc::SYS_renameat2,
                            dirfd,
                            a.as_ptr(),
                            dirfd,
                            b.as_ptr(),
                            flags,
                        )
                    };
                    done(rc as libc::c_int)
                })
            }
            Op::Link { who, from, to } => {
                let (a, b) = (cstr(&from.relative()), cstr(&to.relative()));
                as_who(*who, || {
                    done(unsafe { libc::linkat(dirfd, a.as_ptr(), dirfd, b.as_ptr(), 0) })
                })
            }
            Op::Symlink { who, target, path } => {
                let (t, c) = (cstr(&target.as_target()), cstr(&path.relative()));
                as_who(*who, || {
                    done(unsafe { libc::symlinkat(t.as_ptr(), dirfd, c.as_ptr()) })
                })
            }
            Op::Readlink { who, path } => {
                as_who(*who, || self.readlink(&path.relative())).map(Value::Target)
            }
            Op::Chmod { who, path, mode } => {
                let c = cstr(&path.relative());
                as_who(*who, || {
                    done(unsafe { libc::fchmodat(dirfd, c.as_ptr(), *mode as libc::mode_t, 0) })
                })
            }
            Op::Chown {
                who,
                path,
                uid,
                gid,
                follow,
            } => {
                let c = cstr(&path.relative());
                let flags = if *follow {
                    0
                } else {
                    libc::AT_SYMLINK_NOFOLLOW
                };
                let (u, g) = (uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX));
                as_who(*who, || {
                    done(unsafe { libc::fchownat(dirfd, c.as_ptr(), u, g, flags) })
                })
            }
            Op::Stat { who, path, follow } => {
                as_who(*who, || self.fstatat(&path.relative(), *follow))
                    .map(|st| Value::Stat(stat_of(&st)))
            }
            Op::Readdir { who, path } => self.readdir(*who, &path.relative()),
            Op::Sync => {
                let fd = check(unsafe {
                    libc::openat(
                        dirfd,
                        c".".as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                })?;
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                done(unsafe { libc::syncfs(fd.as_raw_fd()) })
            }
        }
    }

    fn tree(&mut self) -> Tree {
        let mut items = Vec::new();
        self.walk_tree(".", "/", &mut items);
        Tree::from_walk(items)
    }
}
