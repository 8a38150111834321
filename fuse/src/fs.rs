//! The FUSE adapter: translates fuser requests into [`Vfs`] calls and core errors
//! into errno replies. No file-system decision is made here.

use crate::vfs::{Fh, Vfs};
use ferrofs_core::meta::{LockKind, LockRequest};
use ferrofs_core::{
    Attr, Ctx, Errno, FileType, Ino, RenameFlags, SetAttr, SetTime, Timespec, XattrMode,
};
use fuser::{
    AccessFlags, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Kernel cache lifetimes, as given on the command line.
#[derive(Clone, Copy, Debug)]
pub struct KernelCache {
    pub attr: Duration,
    pub entry: Duration,
    pub dir_entry: Duration,
    /// How long the kernel may remember that a name does not exist.
    pub negative: Duration,
}

/// A ferrofs volume served over FUSE.
pub struct FerroFs {
    vfs: Arc<Vfs>,
    cache: KernelCache,
    /// With the change feed: the lifetimes used while it is out of sync, and whether
    /// it is in sync (`vfs::feed`).
    fallback: Option<(KernelCache, Arc<std::sync::atomic::AtomicBool>)>,
    /// Where each request's latency goes (`--metrics`, `ferrofs stats`).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl FerroFs {
    pub fn new(vfs: Arc<Vfs>, cache: KernelCache) -> Self {
        FerroFs {
            vfs,
            cache,
            fallback: None,
            metrics: None,
        }
    }

    /// Times every request into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn timer(&self, op: &'static str) -> Option<crate::metrics::OpTimer> {
        self.metrics.as_ref().map(|m| m.op(op))
    }

    /// Uses `fallback` lifetimes whenever `in_sync` is not set.
    pub fn with_fallback(
        mut self,
        fallback: KernelCache,
        in_sync: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        self.fallback = Some((fallback, in_sync));
        self
    }

    /// The kernel cache lifetimes to reply with now.
    fn ttl(&self) -> KernelCache {
        match &self.fallback {
            Some((f, in_sync)) if !in_sync.load(std::sync::atomic::Ordering::Acquire) => *f,
            _ => self.cache,
        }
    }

    fn entry_ttl(&self, attr: &Attr) -> Duration {
        if attr.kind == FileType::Directory {
            self.ttl().dir_entry
        } else {
            self.ttl().entry
        }
    }

    fn reply_entry(&self, reply: ReplyEntry, r: ferrofs_core::Result<Attr>) {
        match r {
            Ok(a) => reply.entry(&self.entry_ttl(&a), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// A lookup's reply; a missing name with a negative TTL becomes a negative entry
    /// (inode 0), which the kernel remembers for that long.
    fn reply_lookup(&self, reply: ReplyEntry, r: ferrofs_core::Result<Attr>) {
        match r {
            Err(Errno::ENOENT) if !self.ttl().negative.is_zero() => {
                let none = fuser::FileAttr {
                    ino: INodeNo(0),
                    size: 0,
                    blocks: 0,
                    atime: UNIX_EPOCH,
                    mtime: UNIX_EPOCH,
                    ctime: UNIX_EPOCH,
                    crtime: UNIX_EPOCH,
                    kind: fuser::FileType::RegularFile,
                    perm: 0,
                    nlink: 0,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    blksize: 4096,
                    flags: 0,
                };
                reply.entry(&self.ttl().negative, &none, Generation(0))
            }
            r => self.reply_entry(reply, r),
        }
    }
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

fn system_time(t: Timespec) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(t.nsec as u64)
    }
}

fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec::new(d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let mut sec = -(d.as_secs() as i64);
            let mut nsec = d.subsec_nanos();
            if nsec > 0 {
                sec -= 1;
                nsec = 1_000_000_000 - nsec;
            }
            Timespec::new(sec, nsec)
        }
    }
}

fn kind(k: FileType) -> fuser::FileType {
    match k {
        FileType::RegularFile => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> fuser::FileAttr {
    fuser::FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks(),
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.ctime),
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// The caller's credentials. Supplementary groups are read from `/proc` only for
/// non-root callers: root passes every check that groups could matter for.
fn ctx(req: &Request) -> Ctx {
    let (uid, gid) = (req.uid(), req.gid());
    let groups = if uid != 0 && req.pid() != 0 {
        supplementary_groups(req.pid(), uid, gid)
    } else {
        Vec::new()
    };
    Ctx::new(uid, gid, groups)
}

/// How long a process's supplementary groups are remembered: `/proc/PID/status` is read
/// at most this often per process instead of on every request (a process that changes
/// its groups is seen after this long).
const GROUPS_TTL: Duration = Duration::from_secs(1);

/// Keyed by thread id and credentials: a thread that changes its uid or gid (and with
/// them, usually, its groups) is looked up afresh.
type GroupsCache = std::collections::HashMap<(u32, u32, u32), (std::time::Instant, Vec<u32>)>;

fn supplementary_groups(pid: u32, uid: u32, gid: u32) -> Vec<u32> {
    let key = (pid, uid, gid);
    static CACHE: std::sync::Mutex<Option<GroupsCache>> = std::sync::Mutex::new(None);
    let now = std::time::Instant::now();
    let lock = || CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, groups)) = lock().get_or_insert_with(Default::default).get(&key) {
        if now.duration_since(*at) < GROUPS_TTL {
            return groups.clone();
        }
    }
    let groups = read_supplementary_groups(pid);
    let mut cache = lock();
    let map = cache.get_or_insert_with(Default::default);
    if map.len() > 4096 {
        map.retain(|_, (at, _)| now.duration_since(*at) < GROUPS_TTL);
    }
    map.insert(key, (now, groups.clone()));
    groups
}

fn read_supplementary_groups(pid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(timespec(t)),
    }
}

impl Filesystem for FerroFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        // fcntl record locks and flock go to getlk/setlk (flock as a whole-file lock
        // owned by the open file), so that they hold across clients.
        if let Err(missing) =
            config.add_capabilities(InitFlags::FUSE_POSIX_LOCKS | InitFlags::FUSE_FLOCK_LOCKS)
        {
            tracing::warn!(
                "the kernel does not offer {missing:?}: those locks stay local to this mount"
            );
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.vfs.shutdown() {
            tracing::error!("flushing at unmount failed: {e}");
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _timer = self.timer("lookup");
        self.reply_lookup(
            reply,
            self.vfs.lookup(&ctx(req), ino(parent), name.as_bytes()),
        );
    }

    fn getattr(&self, _req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _timer = self.timer("getattr");
        match self.vfs.getattr(ino(i)) {
            Ok(a) => reply.attr(&self.ttl().attr, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _timer = self.timer("setattr");
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime: ctime.map(timespec),
            via_handle: false,
        };
        match self
            .vfs
            .setattr(&ctx(req), ino(i), &set, fh.map(|f| Fh(f.0)))
        {
            Ok(a) => reply.attr(&self.ttl().attr, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, i: INodeNo, reply: ReplyData) {
        let _timer = self.timer("readlink");
        match self.vfs.readlink(ino(i)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _timer = self.timer("mknod");
        let Some(k) = FileType::from_mode(mode) else {
            return reply.error(fuser::Errno::EINVAL);
        };
        let r = self.vfs.mknod(
            &ctx(req),
            ino(parent),
            name.as_bytes(),
            k,
            mode & 0o7777,
            umask,
            rdev,
        );
        self.reply_entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let _timer = self.timer("mkdir");
        let r = self.vfs.mkdir(
            &ctx(req),
            ino(parent),
            name.as_bytes(),
            mode & 0o7777,
            umask,
        );
        self.reply_entry(reply, r);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timer = self.timer("unlink");
        reply_empty(
            reply,
            self.vfs.unlink(&ctx(req), ino(parent), name.as_bytes()),
        )
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timer = self.timer("rmdir");
        reply_empty(
            reply,
            self.vfs.rmdir(&ctx(req), ino(parent), name.as_bytes()),
        )
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _timer = self.timer("symlink");
        let r = self.vfs.symlink(
            &ctx(req),
            ino(parent),
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
        );
        self.reply_entry(reply, r);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("rename");
        let Some(flags) = RenameFlags::from_bits(flags.bits()) else {
            return reply.error(fuser::Errno::EINVAL);
        };
        let r = self.vfs.rename(
            &ctx(req),
            ino(parent),
            name.as_bytes(),
            ino(newparent),
            newname.as_bytes(),
            flags,
        );
        reply_empty(reply, r)
    }

    fn link(
        &self,
        req: &Request,
        i: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _timer = self.timer("link");
        let r = self
            .vfs
            .link(&ctx(req), ino(i), ino(newparent), newname.as_bytes());
        self.reply_entry(reply, r);
    }

    fn open(&self, req: &Request, i: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _timer = self.timer("open");
        match self.vfs.open(&ctx(req), ino(i), flags.0) {
            Ok((fh, _)) => reply.opened(FileHandle(fh.0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _timer = self.timer("read");
        match self.vfs.read(Fh(fh.0), offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _timer = self.timer("write");
        match self.vfs.write(Fh(fh.0), offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("flush");
        // A close(): the closing process's POSIX locks on the file go, whatever
        // descriptor they were taken through.
        let flushed = self.vfs.flush(Fh(fh.0));
        let unlocked = self.vfs.release_locks(Fh(fh.0), Some(lock_owner.0), false);
        reply_empty(reply, flushed.and(unlocked))
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("release");
        // The last reference to the open file: its flock (and OFD) locks go.
        if let Err(e) = self
            .vfs
            .release_locks(Fh(fh.0), lock_owner.map(|o| o.0), true)
        {
            tracing::warn!("cannot release the locks of a closed file: {e}");
        }
        reply_empty(reply, self.vfs.release(Fh(fh.0)))
    }

    fn getlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        let _timer = self.timer("getlk");
        let Some(Some(kind)) = lock_kind(typ) else {
            return reply.error(fuser::Errno::EINVAL);
        };
        match self.vfs.getlk(Fh(fh.0), lock_owner.0, start, end, kind) {
            Ok(Some(h)) => {
                let typ = match h.range.kind {
                    LockKind::Read => libc::F_RDLCK,
                    LockKind::Write => libc::F_WRLCK,
                };
                // The kernel refuses ends past OFFSET_MAX.
                let end = h.range.end.min(i64::MAX as u64);
                reply.locked(h.range.start, end, typ, h.range.pid)
            }
            Ok(None) => reply.locked(start, end, libc::F_UNLCK, 0),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setlk(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("setlk");
        let Some(kind) = lock_kind(typ) else {
            return reply.error(fuser::Errno::EINVAL);
        };
        let lock = LockRequest {
            owner: lock_owner.0,
            fh: fh.0,
            start,
            end,
            kind,
            pid,
        };
        if !sleep || kind.is_none() {
            return reply_empty(reply, self.vfs.setlk(Fh(fh.0), &lock));
        }
        // Waits without holding this thread; the kernel does not pass interrupts on
        // to fuser, so a signal for the waiting thread is looked for instead.
        let caller = req.pid();
        self.vfs.setlk_wait(
            Fh(fh.0),
            lock,
            Box::new(move || signal_pending(caller)),
            Box::new(move |r| reply_empty(reply, r)),
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("fsync");
        reply_empty(reply, self.vfs.fsync(Fh(fh.0)))
    }

    fn opendir(&self, req: &Request, i: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _timer = self.timer("opendir");
        match self.vfs.opendir(&ctx(req), ino(i), flags.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _timer = self.timer("readdir");
        match self.vfs.readdir(&ctx(req), ino(i), offset, 256, false) {
            Ok(entries) => {
                for e in entries {
                    let name = OsStr::from_bytes(&e.name);
                    if reply.add(INodeNo(e.ino.0), e.next_offset, kind(e.kind), name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _timer = self.timer("readdirplus");
        match self.vfs.readdir(&ctx(req), ino(i), offset, 128, true) {
            Ok(entries) => {
                for e in entries {
                    let Some(a) = e.attr.as_ref() else { continue };
                    let name = OsStr::from_bytes(&e.name);
                    let ttl = self.entry_ttl(a);
                    let full = reply.add(
                        INodeNo(e.ino.0),
                        e.next_offset,
                        name,
                        &ttl,
                        &file_attr(a),
                        Generation(0),
                    );
                    if full {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("releasedir");
        reply_empty(reply, self.vfs.releasedir(ino(i)))
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("fsyncdir");
        reply_empty(reply, self.vfs.meta().sync())
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _timer = self.timer("statfs");
        match self.vfs.statfs() {
            Ok(s) => {
                let bsize = 4096u64;
                let blocks = s.total_bytes / bsize;
                let free = s.total_bytes.saturating_sub(s.used_bytes) / bsize;
                let ffree = s.total_inodes.saturating_sub(s.used_inodes);
                reply.statfs(
                    blocks,
                    free,
                    free,
                    s.total_inodes,
                    ffree,
                    bsize as u32,
                    ferrofs_core::NAME_MAX as u32,
                    bsize as u32,
                )
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("setxattr");
        let mode = match flags {
            0 => XattrMode::Any,
            libc::XATTR_CREATE => XattrMode::Create,
            libc::XATTR_REPLACE => XattrMode::Replace,
            _ => return reply.error(fuser::Errno::EINVAL),
        };
        reply_empty(
            reply,
            self.vfs
                .setxattr(&ctx(req), ino(i), name.as_bytes(), value, mode),
        )
    }

    fn getxattr(&self, req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _timer = self.timer("getxattr");
        match self.vfs.getxattr(&ctx(req), ino(i), name.as_bytes()) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        let _timer = self.timer("listxattr");
        match self.vfs.listxattr(&ctx(req), ino(i)) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(&n);
                    buf.push(0);
                }
                reply_xattr(reply, &buf, size)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(&self, req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timer = self.timer("removexattr");
        reply_empty(
            reply,
            self.vfs.removexattr(&ctx(req), ino(i), name.as_bytes()),
        )
    }

    fn access(&self, req: &Request, i: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let _timer = self.timer("access");
        reply_empty(
            reply,
            self.vfs.access(&ctx(req), ino(i), mask.bits() as u32),
        )
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _timer = self.timer("create");
        let r = self.vfs.create(
            &ctx(req),
            ino(parent),
            name.as_bytes(),
            mode & 0o7777,
            umask,
            flags,
        );
        match r {
            Ok((fh, a)) => reply.created(
                &self.entry_ttl(&a),
                &file_attr(&a),
                Generation(0),
                FileHandle(fh.0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        i: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _timer = self.timer("fallocate");
        // Plain allocation only: space is not reserved in an object store, so
        // allocating means making the file at least offset+length long.
        if mode != 0 {
            return reply.error(fuser::Errno::EOPNOTSUPP);
        }
        let r = self.vfs.getattr(ino(i)).and_then(|a| {
            let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
            if end <= a.size {
                return Ok(());
            }
            let set = SetAttr {
                size: Some(end),
                ..SetAttr::default()
            };
            self.vfs
                .setattr(&ctx(req), ino(i), &set, Some(Fh(fh.0)))
                .map(|_| ())
        });
        reply_empty(reply, r)
    }
}

/// The kind of an `F_RDLCK`/`F_WRLCK` lock, `Some(None)` for `F_UNLCK`, None for
/// anything else.
fn lock_kind(typ: i32) -> Option<Option<LockKind>> {
    match typ {
        libc::F_RDLCK => Some(Some(LockKind::Read)),
        libc::F_WRLCK => Some(Some(LockKind::Write)),
        libc::F_UNLCK => Some(None),
        _ => None,
    }
}

/// Whether thread `tid` has a signal pending that it neither blocks nor ignores (so a
/// lock wait it is in would be interrupted on a local file system), or is gone. A
/// thread waiting for a FUSE reply cannot take the signal, so it stays pending in
/// `/proc/TID/status` until the wait ends; SIGKILL always counts.
fn signal_pending(tid: u32) -> bool {
    if tid == 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return true;
    };
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = mask("SigPnd:") | mask("ShdPnd:");
    let kill = 1u64 << (libc::SIGKILL - 1);
    pending & kill != 0 || pending & !mask("SigBlk:") & !mask("SigIgn:") != 0
}

fn reply_empty(reply: ReplyEmpty, r: ferrofs_core::Result<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if value.len() > size as usize {
        reply.error(fuser::Errno::ERANGE)
    } else {
        reply.data(value)
    }
}
