//! The operations the tests run, and proptest strategies that generate random sequences
//! of them over a deliberately tiny namespace so that names collide often: three
//! directory names, three file names and two symlink names, paths at most three deep.
//!
//! Operations are stateless descriptions (paths, not inode numbers): shrinking can drop
//! any operation and the rest still means something. Open files live in a few numbered
//! *slots*; each target keeps its own handle per slot, and an `Open` into a busy slot
//! first closes what was there.

use proptest::prelude::*;
use proptest::sample::select;
use std::fmt;

/// Number of open-file slots.
pub const SLOTS: usize = 3;

/// Directory names.
pub const DIRS: [&str; 3] = ["a", "b", "c"];
/// File names.
pub const FILES: [&str; 3] = ["f", "g", "h"];
/// Symlink names.
pub const LINKS: [&str; 2] = ["s", "t"];
/// Every name.
pub const ALL_NAMES: [&str; 8] = ["a", "b", "c", "f", "g", "h", "s", "t"];

/// Who runs an operation. Unprivileged callers have no supplementary groups; Alice and
/// Bob share the primary group 1000, so group permission bits matter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Who {
    Root,
    /// uid 1000, gid 1000.
    Alice,
    /// uid 1001, gid 1000.
    Bob,
}

impl Who {
    pub fn uid(self) -> u32 {
        match self {
            Who::Root => 0,
            Who::Alice => 1000,
            Who::Bob => 1001,
        }
    }

    pub fn gid(self) -> u32 {
        match self {
            Who::Root => 0,
            Who::Alice | Who::Bob => 1000,
        }
    }

    fn short(self) -> &'static str {
        match self {
            Who::Root => "root",
            Who::Alice => "alice",
            Who::Bob => "bob",
        }
    }
}

/// A path relative to the root of the file system under test, as its components.
/// The empty path is the root itself.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<&'static str>);

impl Path {
    pub fn root() -> Path {
        Path(Vec::new())
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path relative to the root directory, for `*at` calls: `a/b`, or `.` for the root.
    pub fn relative(&self) -> String {
        if self.0.is_empty() {
            ".".to_string()
        } else {
            self.0.join("/")
        }
    }

    /// As a symlink target (always relative, never empty).
    pub fn as_target(&self) -> String {
        self.0.join("/")
    }

    /// Appends a component.
    pub fn join(&self, name: &'static str) -> Path {
        let mut v = self.0.clone();
        v.push(name);
        Path(v)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0.join("/"))
    }
}

/// The access mode of `open`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// The flags of `open` that the tests vary.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags {
    pub access: Access,
    pub creat: bool,
    pub excl: bool,
    pub trunc: bool,
}

impl fmt::Debug for OpenFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = match self.access {
            Access::Read => "O_RDONLY",
            Access::Write => "O_WRONLY",
            Access::ReadWrite => "O_RDWR",
        };
        write!(f, "{a}")?;
        if self.creat {
            write!(f, "|O_CREAT")?;
        }
        if self.excl {
            write!(f, "|O_EXCL")?;
        }
        if self.trunc {
            write!(f, "|O_TRUNC")?;
        }
        Ok(())
    }
}

/// The flavour of `rename`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RenameMode {
    Plain,
    NoReplace,
    Exchange,
}

/// One file-system operation.
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    Mkdir { who: Who, path: Path, mode: u16 },
    /// `openat(path, flags, mode)` into `slot` (closing what the slot held first).
    Open { who: Who, path: Path, flags: OpenFlags, mode: u16, slot: usize },
    /// `pwrite` of `len` bytes of the pattern `seed` at `offset`.
    Write { slot: usize, offset: u64, len: u32, seed: u8 },
    /// `pread` of up to `len` bytes at `offset`.
    Read { slot: usize, offset: u64, len: u32 },
    Ftruncate { slot: usize, size: u64 },
    Fsync { slot: usize },
    Fstat { slot: usize },
    Close { slot: usize },
    /// `truncate(path, size)` (follows symlinks).
    Truncate { who: Who, path: Path, size: u64 },
    Unlink { who: Who, path: Path },
    Rmdir { who: Who, path: Path },
    Rename { who: Who, from: Path, to: Path, mode: RenameMode },
    /// `linkat(from, to, 0)`: does not follow a final symlink in `from`.
    Link { who: Who, from: Path, to: Path },
    Symlink { who: Who, target: Path, path: Path },
    Readlink { who: Who, path: Path },
    /// `chmod` (follows symlinks).
    Chmod { who: Who, path: Path, mode: u16 },
    /// `chown` (`follow`) or `lchown`. At least one of `uid`, `gid` is set.
    Chown { who: Who, path: Path, uid: Option<u32>, gid: Option<u32>, follow: bool },
    /// `stat` (`follow`) or `lstat`.
    Stat { who: Who, path: Path, follow: bool },
    /// `opendir` + `readdir` to the end + `closedir`.
    Readdir { who: Who, path: Path },
    /// Make everything durable (`syncfs`). The ferrofs library target also drops its
    /// in-memory state and reloads it from the metadata engine when nothing is open.
    Sync,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Mkdir { who, path, mode } => write!(f, "{}: mkdir {path:?} {mode:#o}", who.short()),
            Op::Open { who, path, flags, mode, slot } => {
                write!(f, "{}: open {path:?} {flags:?} {mode:#o} -> slot {slot}", who.short())
            }
            Op::Write { slot, offset, len, seed } => {
                write!(f, "pwrite slot {slot} off={offset} len={len} seed={seed}")
            }
            Op::Read { slot, offset, len } => write!(f, "pread slot {slot} off={offset} len={len}"),
            Op::Ftruncate { slot, size } => write!(f, "ftruncate slot {slot} {size}"),
            Op::Fsync { slot } => write!(f, "fsync slot {slot}"),
            Op::Fstat { slot } => write!(f, "fstat slot {slot}"),
            Op::Close { slot } => write!(f, "close slot {slot}"),
            Op::Truncate { who, path, size } => write!(f, "{}: truncate {path:?} {size}", who.short()),
            Op::Unlink { who, path } => write!(f, "{}: unlink {path:?}", who.short()),
            Op::Rmdir { who, path } => write!(f, "{}: rmdir {path:?}", who.short()),
            Op::Rename { who, from, to, mode } => {
                write!(f, "{}: rename {from:?} {to:?} {mode:?}", who.short())
            }
            Op::Link { who, from, to } => write!(f, "{}: link {from:?} {to:?}", who.short()),
            Op::Symlink { who, target, path } => {
                write!(f, "{}: symlink {:?} {path:?}", who.short(), target.as_target())
            }
            Op::Readlink { who, path } => write!(f, "{}: readlink {path:?}", who.short()),
            Op::Chmod { who, path, mode } => write!(f, "{}: chmod {path:?} {mode:#o}", who.short()),
            Op::Chown { who, path, uid, gid, follow } => write!(
                f,
                "{}: {} {path:?} {uid:?}:{gid:?}",
                who.short(),
                if *follow { "chown" } else { "lchown" }
            ),
            Op::Stat { who, path, follow } => {
                write!(f, "{}: {} {path:?}", who.short(), if *follow { "stat" } else { "lstat" })
            }
            Op::Readdir { who, path } => write!(f, "{}: readdir {path:?}", who.short()),
            Op::Sync => write!(f, "sync"),
        }
    }
}

/// The bytes `Write { len, seed, .. }` writes: a pattern that differs between seeds and
/// along the buffer, so misplaced or stale bytes show.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u32 = 0x9e37_79b9 ^ ((seed as u32) << 16 | seed as u32);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push((x >> 11) as u8);
    }
    out
}

// ---------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------

/// Callers: mostly root, often an unprivileged user.
pub fn who() -> impl Strategy<Value = Who> {
    prop_oneof![6 => Just(Who::Root), 3 => Just(Who::Alice), 2 => Just(Who::Bob)]
}

/// A name from `pool` most of the time, any name otherwise (so kinds collide).
fn leaf(pool: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => select(pool), 1 => select(&ALL_NAMES[..])]
}

/// An intermediate component: mostly a directory name, sometimes anything (a file gives
/// ENOTDIR, a symlink is followed).
fn component() -> impl Strategy<Value = &'static str> {
    prop_oneof![7 => select(&DIRS[..2]), 1 => Just("c"), 2 => select(&ALL_NAMES[..])]
}

/// A path of one to three components whose last one is drawn from `pool`.
pub fn path_to(pool: &'static [&'static str]) -> impl Strategy<Value = Path> {
    let depth = prop_oneof![5 => Just(0usize), 4 => Just(1usize), 2 => Just(2usize)];
    (depth.prop_flat_map(|n| prop::collection::vec(component(), n)), leaf(pool)).prop_map(
        |(mut dirs, last)| {
            dirs.push(last);
            Path(dirs)
        },
    )
}

/// Any path, the root included (rarely).
fn any_path_or_root() -> impl Strategy<Value = Path> {
    prop_oneof![1 => Just(Path::root()), 12 => path_to(&ALL_NAMES)]
}

/// An operation on a path that may be the root: only root runs those (the root of the
/// temp dir / mount has no parent inside the test, so "." needs no search permission
/// we could set up identically everywhere).
fn who_and_path(path: impl Strategy<Value = Path>) -> impl Strategy<Value = (Who, Path)> {
    (who(), path).prop_map(|(w, p)| if p.is_root() { (Who::Root, p) } else { (w, p) })
}

fn file_mode() -> impl Strategy<Value = u16> {
    select(&[0o644u16, 0o600, 0o666, 0o640, 0o604, 0o755, 0o444, 0o000][..])
}

fn dir_mode() -> impl Strategy<Value = u16> {
    select(&[0o755u16, 0o777, 0o700, 0o1777, 0o775, 0o555, 0o711, 0o000][..])
}

/// chmod modes: the usual ones, the sticky bit, and anything in `0o1777`. Set-id bits are
/// never generated (see `model.rs` for why).
fn chmod_mode() -> impl Strategy<Value = u16> {
    prop_oneof![2 => file_mode(), 2 => dir_mode(), 1 => 0u16..=0o1777]
}

/// Offsets: small, just around 4 KiB pages, just around 64 KiB blocks (the block size of
/// the library target), anywhere below 800 KiB.
pub fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..8192,
        2 => (0u64..16, -16i64..16).prop_map(|(k, d)| (k as i64 * 4096 + d).max(0) as u64),
        2 => (0u64..12, -64i64..64).prop_map(|(k, d)| (k as i64 * 65536 + d).max(0) as u64),
        2 => 0u64..800_000,
    ]
}

/// Write lengths up to 200 KiB; offset + length stays below 1 MiB.
pub fn write_len() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => 0u32..=16,
        4 => 1u32..4096,
        3 => 4096u32..=70_000,
        1 => 60_000u32..=200_000,
    ]
}

fn read_len() -> impl Strategy<Value = u32> {
    prop_oneof![2 => 0u32..4096, 2 => 4096u32..100_000, 1 => 100_000u32..=300_000]
}

fn truncate_size() -> impl Strategy<Value = u64> {
    prop_oneof![2 => Just(0u64), 3 => offset(), 1 => 800_000u64..1_000_000]
}

fn slot() -> impl Strategy<Value = usize> {
    0..SLOTS
}

fn open_flags() -> impl Strategy<Value = OpenFlags> {
    let access = prop_oneof![1 => Just(Access::Read), 1 => Just(Access::Write), 2 => Just(Access::ReadWrite)];
    prop_oneof![
        // O_CREAT|O_EXCL, read-write: "create".
        3 => Just(OpenFlags { access: Access::ReadWrite, creat: true, excl: true, trunc: false }),
        5 => (access, any::<bool>(), prop::bool::weighted(0.15)).prop_map(|(access, creat, trunc)| {
            OpenFlags { access, creat, excl: false, trunc }
        }),
    ]
}

fn rename_mode() -> impl Strategy<Value = RenameMode> {
    prop_oneof![6 => Just(RenameMode::Plain), 2 => Just(RenameMode::NoReplace), 2 => Just(RenameMode::Exchange)]
}

/// Source and destination of a rename: unrelated paths, siblings, a directory moved
/// into its own subtree, or a target that is an ancestor of the source.
fn rename_paths() -> impl Strategy<Value = (Path, Path)> {
    prop_oneof![
        6 => (path_to(&ALL_NAMES), path_to(&ALL_NAMES)),
        2 => (path_to(&ALL_NAMES), leaf(&ALL_NAMES)).prop_map(|(from, name)| {
            let mut to = from.clone();
            to.0.pop();
            (from, to.join(name))
        }),
        1 => (path_to(&DIRS), leaf(&ALL_NAMES)).prop_map(|(from, name)| {
            let to = from.join(name);
            (from, to)
        }),
        1 => (path_to(&DIRS), leaf(&ALL_NAMES)).prop_map(|(to, name)| (to.join(name), to)),
    ]
}

/// Symlink targets: relative, one or two components, never `..` (a `..` could leave
/// the tree under test through a target that a later rename moved to the root).
fn symlink_target() -> impl Strategy<Value = Path> {
    prop_oneof![
        3 => select(&ALL_NAMES[..]).prop_map(|n| Path(vec![n])),
        2 => (select(&DIRS[..]), select(&ALL_NAMES[..])).prop_map(|(d, n)| Path(vec![d, n])),
    ]
}

/// One operation, weighted towards ones that build up state.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (who(), path_to(&DIRS), dir_mode()).prop_map(|(who, path, mode)| Op::Mkdir { who, path, mode }),
        8 => (who(), path_to(&FILES), open_flags(), file_mode(), slot())
            .prop_map(|(who, path, flags, mode, slot)| Op::Open { who, path, flags, mode, slot }),
        10 => (slot(), offset(), write_len(), any::<u8>())
            .prop_map(|(slot, offset, len, seed)| Op::Write { slot, offset, len, seed }),
        4 => (slot(), offset(), read_len()).prop_map(|(slot, offset, len)| Op::Read { slot, offset, len }),
        2 => (slot(), truncate_size()).prop_map(|(slot, size)| Op::Ftruncate { slot, size }),
        1 => slot().prop_map(|slot| Op::Fsync { slot }),
        2 => slot().prop_map(|slot| Op::Fstat { slot }),
        3 => slot().prop_map(|slot| Op::Close { slot }),
        2 => (who(), path_to(&FILES), truncate_size()).prop_map(|(who, path, size)| Op::Truncate { who, path, size }),
        4 => (who(), path_to(&ALL_NAMES)).prop_map(|(who, path)| Op::Unlink { who, path }),
        3 => (who(), path_to(&DIRS)).prop_map(|(who, path)| Op::Rmdir { who, path }),
        5 => (who(), rename_paths(), rename_mode())
            .prop_map(|(who, (from, to), mode)| Op::Rename { who, from, to, mode }),
        3 => (who(), path_to(&FILES), path_to(&FILES)).prop_map(|(who, from, to)| Op::Link { who, from, to }),
        3 => (who(), symlink_target(), path_to(&LINKS))
            .prop_map(|(who, target, path)| Op::Symlink { who, target, path }),
        1 => (who(), path_to(&LINKS)).prop_map(|(who, path)| Op::Readlink { who, path }),
        3 => (who_and_path(any_path_or_root()), chmod_mode())
            .prop_map(|((who, path), mode)| Op::Chmod { who, path, mode }),
        2 => (who_and_path(any_path_or_root()), chown_ids(), any::<bool>())
            .prop_map(|((who, path), (uid, gid), follow)| Op::Chown { who, path, uid, gid, follow }),
        4 => (who_and_path(any_path_or_root()), any::<bool>())
            .prop_map(|((who, path), follow)| Op::Stat { who, path, follow }),
        3 => who_and_path(prop_oneof![1 => Just(Path::root()), 3 => path_to(&DIRS)])
            .prop_map(|(who, path)| Op::Readdir { who, path }),
        1 => Just(Op::Sync),
    ]
}

/// `chown` ids: at least one of the two is set. (`chown(p, -1, -1)` is a no-op that
/// Linux allows anyone to do; it says nothing about ownership rules.)
fn chown_ids() -> impl Strategy<Value = (Option<u32>, Option<u32>)> {
    let id = || select(&[0u32, 1000, 1001][..]);
    prop_oneof![
        (id(), id()).prop_map(|(u, g)| (Some(u), Some(g))),
        id().prop_map(|u| (Some(u), None)),
        id().prop_map(|g| (None, Some(g))),
    ]
}

/// A sequence of up to `max_len` operations.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..=max_len)
}
