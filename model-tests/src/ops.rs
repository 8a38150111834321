//! The operations the tests run, and proptest strategies that generate random sequences
//! of them over a deliberately tiny namespace so that names collide often: three
//! directory names, three file names and two symlink names, paths at most three deep.
//!
//! Targets run concrete [`Op`]s: paths, not inode numbers. The strategies generate
//! [`OpGen`]s, whose paths and slots may be selectors ("the 7th existing directory",
//! "an open slot") that [`OpGen::concretize`] resolves against a shadow model as the
//! sequence runs; without them most operations would only meet ENOENT and EBADF. A
//! selector resolves to *something* whatever came before, so shrinking can drop any
//! operation and the rest still means something. Open files live in a few numbered
//! *slots*; each target keeps its own handle per slot, and an `Open` into a busy slot
//! first closes what was there. `cargo run --example op_stats` shows how often each
//! operation succeeds or fails with which errno.

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

/// One file-system operation, generic over how paths and slots are given: [`Op`] is
/// the concrete operation targets run; [`OpGen`] is what the strategies generate, with
/// selectors that [`OpGen::concretize`] resolves against the current namespace.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OpT<P, S> {
    Mkdir {
        who: Who,
        path: P,
        mode: u16,
    },
    /// `openat(path, flags, mode)` into `slot` (closing what the slot held first).
    Open {
        who: Who,
        path: P,
        flags: OpenFlags,
        mode: u16,
        slot: S,
    },
    /// `pwrite` of `len` bytes of the pattern `seed` at `offset`.
    Write {
        slot: S,
        offset: u64,
        len: u32,
        seed: u8,
    },
    /// `pread` of up to `len` bytes at `offset`.
    Read {
        slot: S,
        offset: u64,
        len: u32,
    },
    Ftruncate {
        slot: S,
        size: u64,
    },
    Fsync {
        slot: S,
    },
    Fstat {
        slot: S,
    },
    Close {
        slot: S,
    },
    /// `truncate(path, size)` (follows symlinks).
    Truncate {
        who: Who,
        path: P,
        size: u64,
    },
    Unlink {
        who: Who,
        path: P,
    },
    Rmdir {
        who: Who,
        path: P,
    },
    Rename {
        who: Who,
        from: P,
        to: P,
        mode: RenameMode,
    },
    /// `linkat(from, to, 0)`: does not follow a final symlink in `from`.
    Link {
        who: Who,
        from: P,
        to: P,
    },
    Symlink {
        who: Who,
        target: P,
        path: P,
    },
    Readlink {
        who: Who,
        path: P,
    },
    /// `chmod` (follows symlinks).
    Chmod {
        who: Who,
        path: P,
        mode: u16,
    },
    /// `chown` (`follow`) or `lchown`. At least one of `uid`, `gid` is set.
    Chown {
        who: Who,
        path: P,
        uid: Option<u32>,
        gid: Option<u32>,
        follow: bool,
    },
    /// `stat` (`follow`) or `lstat`.
    Stat {
        who: Who,
        path: P,
        follow: bool,
    },
    /// `opendir` + `readdir` to the end + `closedir`.
    Readdir {
        who: Who,
        path: P,
    },
    /// Make everything durable (`syncfs`). The ferrofs library target also drops its
    /// in-memory state and reloads it from the metadata engine when nothing is open.
    Sync,
}

/// A concrete operation.
pub type Op = OpT<Path, usize>;

/// A generated operation: paths and slots are selectors.
pub type OpGen = OpT<PathGen, SlotGen>;

/// How a generated operation names a path.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PathGen {
    /// This path, whatever exists.
    Lit(Path),
    /// The `index`-th (modulo) existing path of kind `want` (any kind if none has it;
    /// `or_else` if nothing exists). Never the root.
    Existing {
        index: u16,
        want: Want,
        or_else: Path,
    },
    /// `name` in the `dir`-th (modulo) existing directory, the root included.
    Fresh { dir: u16, name: &'static str },
    /// Rename targets, relative to the resolved source: `from/name`...
    ChildOfFrom(&'static str),
    /// ... `parent(from)/name` ...
    SiblingOfFrom(&'static str),
    /// ... or the first component of `from` (an ancestor of it if it is deeper than 1).
    AncestorOfFrom,
}

/// Kinds [`PathGen::Existing`] looks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Want {
    Any,
    File,
    Dir,
    Symlink,
}

/// How a generated operation names a slot: the `n`-th (modulo) open slot when there is
/// one (for `Open`: the `n`-th free one), else slot `n % SLOTS`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SlotGen(pub u8);

/// What selectors are resolved against: the namespace and open slots of the shadow model.
pub trait State {
    /// Every path except the root, with its kind, in a stable order.
    fn paths(&self) -> Vec<(Path, crate::target::Kind)>;
    /// Slots that hold an open file.
    fn open_slots(&self) -> Vec<usize>;
}

impl PathGen {
    fn resolve(
        &self,
        ns: &dyn State,
        paths: &[(Path, crate::target::Kind)],
        from: Option<&Path>,
    ) -> Path {
        use crate::target::Kind;
        match self {
            PathGen::Lit(p) => p.clone(),
            PathGen::Existing {
                index,
                want,
                or_else,
            } => {
                let want_kind = match want {
                    Want::Any => None,
                    Want::File => Some(Kind::File),
                    Want::Dir => Some(Kind::Dir),
                    Want::Symlink => Some(Kind::Symlink),
                };
                let matching: Vec<&Path> = paths
                    .iter()
                    .filter(|(_, k)| want_kind.is_none_or(|w| *k == w))
                    .map(|(p, _)| p)
                    .collect();
                let all: Vec<&Path> = paths.iter().map(|(p, _)| p).collect();
                let pool = if matching.is_empty() { all } else { matching };
                if pool.is_empty() {
                    or_else.clone()
                } else {
                    pool[*index as usize % pool.len()].clone()
                }
            }
            PathGen::Fresh { dir, name } => {
                let mut dirs: Vec<Path> = vec![Path::root()];
                dirs.extend(
                    paths
                        .iter()
                        .filter(|(_, k)| *k == Kind::Dir)
                        .map(|(p, _)| p.clone()),
                );
                let _ = ns;
                dirs[*dir as usize % dirs.len()].join(name)
            }
            PathGen::ChildOfFrom(name) => from.expect("rename source").join(name),
            PathGen::SiblingOfFrom(name) => {
                let mut p = from.expect("rename source").clone();
                p.0.pop();
                p.join(name)
            }
            PathGen::AncestorOfFrom => {
                let f = from.expect("rename source");
                if f.0.len() >= 2 {
                    Path(vec![f.0[0]])
                } else {
                    Path(vec!["a"])
                }
            }
        }
    }
}

impl SlotGen {
    fn busy(self, ns: &dyn State) -> usize {
        let open = ns.open_slots();
        if open.is_empty() {
            self.0 as usize % SLOTS
        } else {
            open[self.0 as usize % open.len()]
        }
    }

    fn free(self, ns: &dyn State) -> usize {
        let open = ns.open_slots();
        let free: Vec<usize> = (0..SLOTS).filter(|s| !open.contains(s)).collect();
        if free.is_empty() {
            self.0 as usize % SLOTS
        } else {
            free[self.0 as usize % free.len()]
        }
    }
}

impl OpGen {
    /// Resolves the selectors against `ns` (the state before this operation).
    pub fn concretize(&self, ns: &dyn State) -> Op {
        let paths = ns.paths();
        let p = |g: &PathGen| g.resolve(ns, &paths, None);
        let busy = |s: &SlotGen| s.busy(ns);
        match self {
            OpT::Mkdir { who, path, mode } => OpT::Mkdir {
                who: *who,
                path: p(path),
                mode: *mode,
            },
            OpT::Open {
                who,
                path,
                flags,
                mode,
                slot,
            } => OpT::Open {
                who: *who,
                path: p(path),
                flags: *flags,
                mode: *mode,
                slot: slot.free(ns),
            },
            OpT::Write {
                slot,
                offset,
                len,
                seed,
            } => OpT::Write {
                slot: busy(slot),
                offset: *offset,
                len: *len,
                seed: *seed,
            },
            OpT::Read { slot, offset, len } => OpT::Read {
                slot: busy(slot),
                offset: *offset,
                len: *len,
            },
            OpT::Ftruncate { slot, size } => OpT::Ftruncate {
                slot: busy(slot),
                size: *size,
            },
            OpT::Fsync { slot } => OpT::Fsync { slot: busy(slot) },
            OpT::Fstat { slot } => OpT::Fstat { slot: busy(slot) },
            OpT::Close { slot } => OpT::Close { slot: busy(slot) },
            OpT::Truncate { who, path, size } => OpT::Truncate {
                who: *who,
                path: p(path),
                size: *size,
            },
            OpT::Unlink { who, path } => OpT::Unlink {
                who: *who,
                path: p(path),
            },
            OpT::Rmdir { who, path } => OpT::Rmdir {
                who: *who,
                path: p(path),
            },
            OpT::Rename {
                who,
                from,
                to,
                mode,
            } => {
                let from = p(from);
                let to = to.resolve(ns, &paths, Some(&from));
                OpT::Rename {
                    who: *who,
                    from,
                    to,
                    mode: *mode,
                }
            }
            OpT::Link { who, from, to } => OpT::Link {
                who: *who,
                from: p(from),
                to: p(to),
            },
            OpT::Symlink { who, target, path } => OpT::Symlink {
                who: *who,
                target: p(target),
                path: p(path),
            },
            OpT::Readlink { who, path } => OpT::Readlink {
                who: *who,
                path: p(path),
            },
            OpT::Chmod { who, path, mode } => OpT::Chmod {
                who: *who,
                path: p(path),
                mode: *mode,
            },
            OpT::Chown {
                who,
                path,
                uid,
                gid,
                follow,
            } => OpT::Chown {
                who: *who,
                path: p(path),
                uid: *uid,
                gid: *gid,
                follow: *follow,
            },
            OpT::Stat { who, path, follow } => OpT::Stat {
                who: *who,
                path: p(path),
                follow: *follow,
            },
            OpT::Readdir { who, path } => OpT::Readdir {
                who: *who,
                path: p(path),
            },
            OpT::Sync => OpT::Sync,
        }
    }
}

/// A readable one-line form of a concrete operation.
pub struct Show<'a>(pub &'a Op);

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Op::Mkdir { who, path, mode } => write!(f, "{}: mkdir {path:?} {mode:#o}", who.short()),
            Op::Open {
                who,
                path,
                flags,
                mode,
                slot,
            } => {
                write!(
                    f,
                    "{}: open {path:?} {flags:?} {mode:#o} -> slot {slot}",
                    who.short()
                )
            }
            Op::Write {
                slot,
                offset,
                len,
                seed,
            } => {
                write!(f, "pwrite slot {slot} off={offset} len={len} seed={seed}")
            }
            Op::Read { slot, offset, len } => write!(f, "pread slot {slot} off={offset} len={len}"),
            Op::Ftruncate { slot, size } => write!(f, "ftruncate slot {slot} {size}"),
            Op::Fsync { slot } => write!(f, "fsync slot {slot}"),
            Op::Fstat { slot } => write!(f, "fstat slot {slot}"),
            Op::Close { slot } => write!(f, "close slot {slot}"),
            Op::Truncate { who, path, size } => {
                write!(f, "{}: truncate {path:?} {size}", who.short())
            }
            Op::Unlink { who, path } => write!(f, "{}: unlink {path:?}", who.short()),
            Op::Rmdir { who, path } => write!(f, "{}: rmdir {path:?}", who.short()),
            Op::Rename {
                who,
                from,
                to,
                mode,
            } => {
                write!(f, "{}: rename {from:?} {to:?} {mode:?}", who.short())
            }
            Op::Link { who, from, to } => write!(f, "{}: link {from:?} {to:?}", who.short()),
            Op::Symlink { who, target, path } => {
                write!(
                    f,
                    "{}: symlink {:?} {path:?}",
                    who.short(),
                    target.as_target()
                )
            }
            Op::Readlink { who, path } => write!(f, "{}: readlink {path:?}", who.short()),
            Op::Chmod { who, path, mode } => write!(f, "{}: chmod {path:?} {mode:#o}", who.short()),
            Op::Chown {
                who,
                path,
                uid,
                gid,
                follow,
            } => write!(
                f,
                "{}: {} {path:?} {uid:?}:{gid:?}",
                who.short(),
                if *follow { "chown" } else { "lchown" }
            ),
            Op::Stat { who, path, follow } => {
                write!(
                    f,
                    "{}: {} {path:?}",
                    who.short(),
                    if *follow { "stat" } else { "lstat" }
                )
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
fn leaf(pool: &'static [&'static str]) -> BoxedStrategy<&'static str> {
    prop_oneof![4 => select(pool), 1 => select(&ALL_NAMES[..])].boxed()
}

/// An intermediate component: mostly a directory name, sometimes anything (a file gives
/// ENOTDIR, a symlink is followed).
fn component() -> BoxedStrategy<&'static str> {
    prop_oneof![7 => select(&DIRS[..2]), 1 => Just("c"), 2 => select(&ALL_NAMES[..])].boxed()
}

/// A literal path of one to three components whose last one is drawn from `pool`.
pub fn path_to(pool: &'static [&'static str]) -> BoxedStrategy<Path> {
    let depth = prop_oneof![5 => Just(0usize), 4 => Just(1usize), 2 => Just(2usize)];
    (
        depth.prop_flat_map(|n| prop::collection::vec(component(), n)),
        leaf(pool),
    )
        .prop_map(|(mut dirs, last)| {
            dirs.push(last);
            Path(dirs)
        })
        .boxed()
}

/// A path expected to exist (of kind `want`), sometimes a literal one.
fn existing(want: Want, pool: &'static [&'static str]) -> BoxedStrategy<PathGen> {
    prop_oneof![
        5 => (any::<u16>(), path_to(pool)).prop_map(move |(index, or_else)| PathGen::Existing { index, want, or_else }),
        1 => (any::<u16>(), path_to(pool)).prop_map(|(index, or_else)| PathGen::Existing { index, want: Want::Any, or_else }),
        1 => path_to(pool).prop_map(PathGen::Lit),
    ]
    .boxed()
}

/// A path expected not to exist yet, sometimes an existing or literal one.
fn fresh(pool: &'static [&'static str]) -> BoxedStrategy<PathGen> {
    prop_oneof![
        7 => (any::<u16>(), leaf(pool)).prop_map(|(dir, name)| PathGen::Fresh { dir, name }),
        1 => (any::<u16>(), path_to(pool)).prop_map(|(index, or_else)| PathGen::Existing { index, want: Want::Any, or_else }),
        1 => path_to(pool).prop_map(PathGen::Lit),
    ]
    .boxed()
}

/// An operation on a path that may be the root: only root runs those (the root of the
/// temp dir or mount has no parent inside the test, so the search permission on it is
/// the only one a path walk to "." needs, and it is 0o777 for every target).
fn who_and_path(path: BoxedStrategy<PathGen>) -> BoxedStrategy<(Who, PathGen)> {
    (
        who(),
        prop_oneof![1 => Just(PathGen::Lit(Path::root())), 12 => path],
    )
        .prop_map(|(w, p)| {
            if p == PathGen::Lit(Path::root()) {
                (Who::Root, p)
            } else {
                (w, p)
            }
        })
        .boxed()
}

fn file_mode() -> impl Strategy<Value = u16> {
    select(&[0o644u16, 0o600, 0o666, 0o640, 0o604, 0o755, 0o444, 0o000][..])
}

fn dir_mode() -> impl Strategy<Value = u16> {
    select(&[0o755u16, 0o777, 0o700, 0o1777, 0o775, 0o555, 0o711, 0o000][..])
}

/// chmod modes: the usual ones, the sticky bit, and anything in `0o1777`. Set-id bits are
/// never generated (see `model.rs` for why).
fn chmod_mode() -> BoxedStrategy<u16> {
    prop_oneof![2 => file_mode(), 2 => dir_mode(), 1 => 0u16..=0o1777].boxed()
}

/// Offsets: small, just around 4 KiB pages, just around 64 KiB blocks (the block size of
/// the library target), anywhere below 800 KiB.
pub fn offset() -> BoxedStrategy<u64> {
    prop_oneof![
        3 => 0u64..8192,
        2 => (0u64..16, -16i64..16).prop_map(|(k, d)| (k as i64 * 4096 + d).max(0) as u64),
        2 => (0u64..12, -64i64..64).prop_map(|(k, d)| (k as i64 * 65536 + d).max(0) as u64),
        2 => 0u64..800_000,
    ]
    .boxed()
}

/// Write lengths up to 200 KiB; offset + length stays below 1 MiB.
pub fn write_len() -> BoxedStrategy<u32> {
    prop_oneof![
        1 => 0u32..=16,
        4 => 1u32..4096,
        3 => 4096u32..=70_000,
        1 => 60_000u32..=200_000,
    ]
    .boxed()
}

fn read_len() -> impl Strategy<Value = u32> {
    prop_oneof![2 => 0u32..4096, 2 => 4096u32..100_000, 1 => 100_000u32..=300_000]
}

fn truncate_size() -> BoxedStrategy<u64> {
    prop_oneof![2 => Just(0u64), 3 => offset(), 1 => 800_000u64..1_000_000].boxed()
}

fn slot() -> impl Strategy<Value = SlotGen> {
    any::<u8>().prop_map(SlotGen)
}

fn open_flags() -> BoxedStrategy<OpenFlags> {
    let access = prop_oneof![1 => Just(Access::Read), 1 => Just(Access::Write), 3 => Just(Access::ReadWrite)];
    prop_oneof![
        // O_CREAT|O_EXCL, read-write: "create".
        3 => Just(OpenFlags { access: Access::ReadWrite, creat: true, excl: true, trunc: false }),
        5 => (access, any::<bool>(), prop::bool::weighted(0.15)).prop_map(|(access, creat, trunc)| {
            OpenFlags { access, creat, excl: false, trunc }
        }),
    ]
    .boxed()
}

fn open_path(flags: OpenFlags) -> BoxedStrategy<PathGen> {
    if flags.creat && flags.excl {
        fresh(&FILES).boxed()
    } else if flags.creat {
        prop_oneof![fresh(&FILES), existing(Want::File, &FILES)].boxed()
    } else {
        prop_oneof![4 => existing(Want::File, &FILES), 1 => existing(Want::Symlink, &LINKS)].boxed()
    }
}

fn rename_mode() -> impl Strategy<Value = RenameMode> {
    prop_oneof![6 => Just(RenameMode::Plain), 2 => Just(RenameMode::NoReplace), 2 => Just(RenameMode::Exchange)]
}

/// Source and destination of a rename: unrelated paths, siblings, a directory moved
/// into its own subtree, or a target that is an ancestor of the source.
fn rename_paths() -> BoxedStrategy<(PathGen, PathGen)> {
    let from = || existing(Want::Any, &ALL_NAMES);
    prop_oneof![
        3 => (from(), fresh(&ALL_NAMES)),
        2 => (from(), existing(Want::Any, &ALL_NAMES)),
        2 => (from(), leaf(&ALL_NAMES)).prop_map(|(f, n)| (f, PathGen::SiblingOfFrom(n))),
        1 => (existing(Want::Dir, &DIRS), leaf(&ALL_NAMES)).prop_map(|(f, n)| (f, PathGen::ChildOfFrom(n))),
        1 => from().prop_map(|f| (f, PathGen::AncestorOfFrom)),
    ]
    .boxed()
}

/// Symlink targets: relative, never `..` (a `..` could leave the tree under test
/// through a link that a later rename moved to the root): an existing path (which
/// resolves when the link is made in the root) or one or two names.
fn symlink_target() -> BoxedStrategy<PathGen> {
    prop_oneof![
        2 => (any::<u16>(), select(&ALL_NAMES[..])).prop_map(|(index, n)| PathGen::Existing { index, want: Want::Any, or_else: Path(vec![n]) }),
        2 => select(&ALL_NAMES[..]).prop_map(|n| PathGen::Lit(Path(vec![n]))),
        1 => (select(&DIRS[..]), select(&ALL_NAMES[..])).prop_map(|(d, n)| PathGen::Lit(Path(vec![d, n]))),
    ]
    .boxed()
}

/// One operation, weighted towards ones that build up state.
pub fn op() -> BoxedStrategy<OpGen> {
    prop_oneof![
        6 => (who(), fresh(&DIRS), dir_mode()).prop_map(|(who, path, mode)| OpT::Mkdir { who, path, mode }).boxed(),
        10 => (who(), open_flags(), file_mode(), slot())
            .prop_flat_map(|(who, flags, mode, slot)| open_path(flags).prop_map(move |path| OpT::Open { who, path, flags, mode, slot })).boxed(),
        10 => (slot(), offset(), write_len(), any::<u8>())
            .prop_map(|(slot, offset, len, seed)| OpT::Write { slot, offset, len, seed }).boxed(),
        5 => (slot(), offset(), read_len()).prop_map(|(slot, offset, len)| OpT::Read { slot, offset, len }).boxed(),
        2 => (slot(), truncate_size()).prop_map(|(slot, size)| OpT::Ftruncate { slot, size }).boxed(),
        1 => slot().prop_map(|slot| OpT::Fsync { slot }).boxed(),
        2 => slot().prop_map(|slot| OpT::Fstat { slot }).boxed(),
        2 => slot().prop_map(|slot| OpT::Close { slot }).boxed(),
        2 => (who(), existing(Want::File, &FILES), truncate_size()).prop_map(|(who, path, size)| OpT::Truncate { who, path, size }).boxed(),
        4 => (who(), existing(Want::Any, &ALL_NAMES)).prop_map(|(who, path)| OpT::Unlink { who, path }).boxed(),
        3 => (who(), existing(Want::Dir, &DIRS)).prop_map(|(who, path)| OpT::Rmdir { who, path }).boxed(),
        6 => (who(), rename_paths(), rename_mode())
            .prop_map(|(who, (from, to), mode)| OpT::Rename { who, from, to, mode }).boxed(),
        3 => (who(), existing(Want::File, &FILES), fresh(&FILES)).prop_map(|(who, from, to)| OpT::Link { who, from, to }).boxed(),
        3 => (who(), symlink_target(), fresh(&LINKS))
            .prop_map(|(who, target, path)| OpT::Symlink { who, target, path }).boxed(),
        1 => (who(), existing(Want::Symlink, &LINKS)).prop_map(|(who, path)| OpT::Readlink { who, path }).boxed(),
        3 => (who_and_path(existing(Want::Any, &ALL_NAMES)), chmod_mode())
            .prop_map(|((who, path), mode)| OpT::Chmod { who, path, mode }).boxed(),
        2 => (who_and_path(existing(Want::Any, &ALL_NAMES)), chown_ids(), any::<bool>())
            .prop_map(|((who, path), (uid, gid), follow)| OpT::Chown { who, path, uid, gid, follow }).boxed(),
        4 => (who_and_path(existing(Want::Any, &ALL_NAMES)), any::<bool>())
            .prop_map(|((who, path), follow)| OpT::Stat { who, path, follow }).boxed(),
        3 => who_and_path(existing(Want::Dir, &DIRS)).prop_map(|(who, path)| OpT::Readdir { who, path }).boxed(),
        1 => Just(OpT::Sync).boxed(),
    ]
    .boxed()
}

/// `chown` ids: at least one of the two is set. (`chown(p, -1, -1)` is a no-op that
/// Linux allows anyone to do; it says nothing about ownership rules.)
fn chown_ids() -> BoxedStrategy<(Option<u32>, Option<u32>)> {
    let id = || select(&[0u32, 1000, 1001][..]);
    prop_oneof![
        (id(), id()).prop_map(|(u, g)| (Some(u), Some(g))),
        id().prop_map(|u| (Some(u), None)),
        id().prop_map(|g| (None, Some(g))),
    ]
    .boxed()
}

/// Operations that populate the namespace: a sequence starts with up to ten of them,
/// so that the rest finds something to work on (both parts shrink independently).
pub fn build_op() -> BoxedStrategy<OpGen> {
    let create = OpenFlags {
        access: Access::ReadWrite,
        creat: true,
        excl: true,
        trunc: false,
    };
    prop_oneof![
        3 => (who(), fresh(&DIRS), dir_mode()).prop_map(|(who, path, mode)| OpT::Mkdir { who, path, mode }).boxed(),
        3 => (who(), fresh(&FILES), file_mode(), slot())
            .prop_map(move |(who, path, mode, slot)| OpT::Open { who, path, flags: create, mode, slot }).boxed(),
        3 => (slot(), offset(), write_len(), any::<u8>())
            .prop_map(|(slot, offset, len, seed)| OpT::Write { slot, offset, len, seed }).boxed(),
        1 => (who(), symlink_target(), fresh(&LINKS))
            .prop_map(|(who, target, path)| OpT::Symlink { who, target, path }).boxed(),
    ]
    .boxed()
}

/// A sequence of a populating prefix and up to `max_len` operations of any kind.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<OpGen>> {
    (
        prop::collection::vec(build_op(), 0..=10),
        prop::collection::vec(op(), 1..=max_len),
    )
        .prop_map(|(mut a, b)| {
            a.extend(b);
            a
        })
}
