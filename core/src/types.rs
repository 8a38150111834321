//! Identifiers, units and attribute types shared by every part of ferrofs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An inode number. The root directory is [`Ino::ROOT`]; 0 is never a valid inode.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ino(pub u64);

impl Ino {
    pub const ROOT: Ino = Ino(1);
}

impl fmt::Debug for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ino:{}", self.0)
    }
}

/// The id of a slice: one flushed write, stored as one or more block objects.
/// [`SliceId::ZERO`] is the hole slice: it stores nothing and reads as zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SliceId(pub u64);

impl SliceId {
    pub const ZERO: SliceId = SliceId(0);
}

impl fmt::Debug for SliceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slice:{}", self.0)
    }
}

/// Index of a chunk within a file: byte offset / [`CHUNK_SIZE`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct ChunkIndex(pub u32);

/// Files are split into chunks of this many bytes (64 MiB).
pub const CHUNK_SIZE: u64 = 64 << 20;

/// Longest file name in bytes.
pub const NAME_MAX: usize = 255;
/// Longest symlink target in bytes.
pub const SYMLINK_MAX: usize = 4096;
/// Longest extended attribute name in bytes.
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value in bytes.
pub const XATTR_SIZE_MAX: usize = 65536;
/// Largest file size (chunk index must fit in u32).
pub const FILE_SIZE_MAX: u64 = CHUNK_SIZE * (u32::MAX as u64);

/// A point in time, seconds and nanoseconds since the Unix epoch. The core never reads
/// a clock: every operation that stamps times takes `now: Timespec` as an argument.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    pub const fn new(sec: i64, nsec: u32) -> Self {
        Timespec { sec, nsec }
    }
}

/// The type of an inode.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum FileType {
    RegularFile,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileType {
    /// The `S_IFMT` bits of this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::RegularFile => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
            FileType::CharDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
        }
    }

    /// The type named by the `S_IFMT` bits of `mode`, if any.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & 0o170000 {
            0o100000 => FileType::RegularFile,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            _ => return None,
        })
    }
}

/// Attributes of an inode, as stored and as returned to the kernel.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileType,
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    /// Length in bytes (regular files), target length (symlinks), 0 otherwise.
    pub size: u64,
    pub rdev: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    /// For directories, the parent directory (the root is its own parent); else `Ino(0)`.
    pub parent: Ino,
}

impl Attr {
    /// `st_mode`: type bits and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm as u32
    }

    /// 512-byte blocks used, as `st_blocks` reports them.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}

/// Who is asking: the caller's credentials, taken from the FUSE request (or the
/// simulated client). Permission checks are made against these.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (may or may not include `gid`).
    pub groups: Vec<u32>,
}

impl Ctx {
    pub fn root() -> Ctx {
        Ctx::default()
    }

    pub fn new(uid: u32, gid: u32, groups: Vec<u32>) -> Ctx {
        Ctx { uid, gid, groups }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the caller is in group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// A time to set with `setattr`: a given time, or "now" (`UTIME_NOW`). `UTIME_OMIT` is
/// expressed by leaving the field `None`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SetTime {
    Now,
    At(Timespec),
}

/// The changes of one `setattr` call; `None` fields are left alone.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SetAttr {
    /// New permission bits (`0o7777` is used; type bits are ignored).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    /// An explicit ctime (only used by restore tools); normally ctime is set to `now`.
    pub ctime: Option<Timespec>,
    /// The change comes through an open file handle (`ftruncate`, `futimens`): a size
    /// change then needs no write permission on the inode (it was checked at open).
    pub via_handle: bool,
}

/// Flags of `rename`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RenameFlags {
    /// `RENAME_NOREPLACE`: fail with EEXIST if the target exists.
    pub noreplace: bool,
    /// `RENAME_EXCHANGE`: atomically swap source and target (both must exist).
    pub exchange: bool,
}

impl RenameFlags {
    pub const NOREPLACE: u32 = 1;
    pub const EXCHANGE: u32 = 2;

    /// Flags from the Linux `renameat2` bits; `None` for unknown bits (EINVAL).
    pub fn from_bits(bits: u32) -> Option<RenameFlags> {
        if bits & !(Self::NOREPLACE | Self::EXCHANGE) != 0 {
            return None;
        }
        Some(RenameFlags {
            noreplace: bits & Self::NOREPLACE != 0,
            exchange: bits & Self::EXCHANGE != 0,
        })
    }
}

/// How `setxattr` may treat an existing attribute.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum XattrMode {
    /// Create or replace.
    #[default]
    Any,
    /// `XATTR_CREATE`: fail with EEXIST if it exists.
    Create,
    /// `XATTR_REPLACE`: fail with ENODATA if it does not exist.
    Replace,
}

/// One directory entry as `readdir` returns it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: Ino,
    pub kind: FileType,
    /// The cookie to resume listing *after* this entry.
    pub next_offset: u64,
    /// Attributes, filled when asked for (`readdirplus`).
    pub attr: Option<Attr>,
}

/// What `statfs` reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StatFs {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub used_inodes: u64,
    pub block_size: u32,
}
