//! The records of a dump and their checks: what a record must hold to become keys.

use crate::chunk::SliceRef;
use crate::meta::attr_codec::Inode;
use crate::meta::namespace::check_target;
use crate::meta::perm::check_new_name;
use crate::meta::xattr::check_xattr_name;
use crate::types::{
    Attr, FileType, Ino, SliceId, Timespec, CHUNK_SIZE, NAME_MAX, SYMLINK_MAX, XATTR_NAME_MAX,
    XATTR_SIZE_MAX,
};
use serde::{Deserialize, Serialize};

/// A byte string: plain JSON text when it is UTF-8, else `{"hex": "..."}` (names and
/// values are bytes in POSIX, and JSON strings are Unicode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    Text(String),
    Hex { hex: String },
}

impl Bytes {
    pub fn of(b: &[u8]) -> Bytes {
        match std::str::from_utf8(b) {
            Ok(s) => Bytes::Text(s.to_string()),
            Err(_) => Bytes::Hex {
                hex: b.iter().map(|x| format!("{x:02x}")).collect(),
            },
        }
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, String> {
        match self {
            Bytes::Text(s) => Ok(s.as_bytes().to_vec()),
            Bytes::Hex { hex } => {
                if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
                    return Err(format!("{hex:?} is not hex"));
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        u8::from_str_radix(&hex[i..i + 2], 16)
                            .map_err(|_| format!("{hex:?} is not hex"))
                    })
                    .collect()
            }
        }
    }
}

/// A file type as the dump spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypeName {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Chardev,
    Blockdev,
}

impl From<FileType> for TypeName {
    fn from(t: FileType) -> TypeName {
        match t {
            FileType::RegularFile => TypeName::File,
            FileType::Directory => TypeName::Dir,
            FileType::Symlink => TypeName::Symlink,
            FileType::Fifo => TypeName::Fifo,
            FileType::Socket => TypeName::Socket,
            FileType::CharDevice => TypeName::Chardev,
            FileType::BlockDevice => TypeName::Blockdev,
        }
    }
}

impl From<TypeName> for FileType {
    fn from(t: TypeName) -> FileType {
        match t {
            TypeName::File => FileType::RegularFile,
            TypeName::Dir => FileType::Directory,
            TypeName::Symlink => FileType::Symlink,
            TypeName::Fifo => FileType::Fifo,
            TypeName::Socket => FileType::Socket,
            TypeName::Chardev => FileType::CharDevice,
            TypeName::Blockdev => FileType::BlockDevice,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

/// One inode: its attributes, and what hangs off it (chunks, target, xattrs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InodeRecord {
    pub ino: u64,
    #[serde(rename = "type")]
    pub kind: TypeName,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub rdev: u32,
    /// (seconds, nanoseconds) since the epoch.
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    /// Directories: the parent (the root's is itself).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parent: u64,
    /// Directories: the readdir cookie the next entry gets.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub next_seq: u64,
    /// Symlinks: the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<XattrRecord>,
    /// Regular files: the chunks that hold data, in index order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XattrRecord {
    pub name: Bytes,
    pub value: Bytes,
}

/// One chunk's slice list, each slice as `[pos, id, size, off, len]` (ARCHITECTURE.md,
/// "Data format"); id 0 is a hole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRecord {
    pub index: u32,
    pub slices: Vec<[u64; 5]>,
}

/// One directory entry, with its readdir cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRecord {
    pub parent: u64,
    pub name: Bytes,
    pub ino: u64,
    #[serde(rename = "type")]
    pub kind: TypeName,
    pub seq: u64,
}

fn ts(t: Timespec) -> (i64, u32) {
    (t.sec, t.nsec)
}

fn time(name: &str, (sec, nsec): (i64, u32)) -> Result<Timespec, String> {
    if nsec >= 1_000_000_000 {
        return Err(format!("{name} has {nsec} nanoseconds"));
    }
    Ok(Timespec::new(sec, nsec))
}

impl InodeRecord {
    /// The record of `n`; the caller adds target, xattrs and chunks.
    pub fn of(n: &Inode) -> InodeRecord {
        let a = &n.attr;
        InodeRecord {
            ino: a.ino.0,
            kind: a.kind.into(),
            mode: a.perm,
            uid: a.uid,
            gid: a.gid,
            nlink: a.nlink,
            size: a.size,
            rdev: a.rdev,
            atime: ts(a.atime),
            mtime: ts(a.mtime),
            ctime: ts(a.ctime),
            parent: a.parent.0,
            next_seq: n.next_seq,
            target: None,
            xattrs: Vec::new(),
            chunks: Vec::new(),
        }
    }

    /// The inode this record describes, if the record is whole and sensible.
    pub fn inode(&self) -> Result<Inode, String> {
        let kind = FileType::from(self.kind);
        let dir = kind == FileType::Directory;
        if self.ino == 0 {
            return Err("inode 0 does not exist".into());
        }
        if self.mode > 0o7777 {
            return Err(format!("mode {:o} has bits beyond 7777", self.mode));
        }
        if dir && (self.parent == 0 || self.next_seq < 3) {
            return Err("a directory needs a parent and a next_seq of at least 3".into());
        }
        if !dir && (self.parent != 0 || self.next_seq != 0) {
            return Err("only directories have a parent and a next_seq".into());
        }
        if self.ino == Ino::ROOT.0 && (!dir || self.parent != Ino::ROOT.0) {
            return Err("inode 1 must be the root directory, its own parent".into());
        }
        if (kind == FileType::Symlink) != self.target.is_some() {
            return Err("symlinks, and only symlinks, have a target".into());
        }
        if kind != FileType::RegularFile && !self.chunks.is_empty() {
            return Err("only regular files have chunks".into());
        }
        Ok(Inode {
            attr: Attr {
                ino: Ino(self.ino),
                kind,
                perm: self.mode,
                uid: self.uid,
                gid: self.gid,
                nlink: self.nlink,
                size: self.size,
                rdev: self.rdev,
                atime: time("atime", self.atime)?,
                mtime: time("mtime", self.mtime)?,
                ctime: time("ctime", self.ctime)?,
                parent: Ino(self.parent),
            },
            next_seq: self.next_seq,
        })
    }

    /// The symlink target, checked.
    pub fn target_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(t) = &self.target else {
            return Ok(None);
        };
        let t = t.to_vec()?;
        check_target(&t)
            .map_err(|e| format!("a symlink target is 1 to {SYMLINK_MAX} bytes ({e})"))?;
        Ok(Some(t))
    }
}

impl XattrRecord {
    /// (name, value), checked.
    pub fn pair(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let name = self.name.to_vec()?;
        let value = self.value.to_vec()?;
        check_xattr_name(&name)
            .map_err(|e| format!("an xattr name is 1 to {XATTR_NAME_MAX} bytes ({e})"))?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(format!("an xattr value is at most {XATTR_SIZE_MAX} bytes"));
        }
        Ok((name, value))
    }
}

impl ChunkRecord {
    pub fn of(index: u32, slices: &[SliceRef]) -> ChunkRecord {
        ChunkRecord {
            index,
            slices: slices
                .iter()
                .map(|s| {
                    [
                        s.pos as u64,
                        s.id.0,
                        s.size as u64,
                        s.off as u64,
                        s.len as u64,
                    ]
                })
                .collect(),
        }
    }

    /// The slice list, checked: every slice lies within the chunk and within the
    /// stored slice it reads from.
    pub fn slice_refs(&self) -> Result<Vec<SliceRef>, String> {
        self.slices
            .iter()
            .map(|&[pos, id, size, off, len]| {
                let small = |v: u64, what: &str| {
                    u32::try_from(v).map_err(|_| format!("slice {what} {v} is too large"))
                };
                let s = SliceRef {
                    pos: small(pos, "pos")?,
                    id: SliceId(id),
                    size: small(size, "size")?,
                    off: small(off, "off")?,
                    len: small(len, "len")?,
                };
                if pos + len > CHUNK_SIZE {
                    return Err(format!(
                        "a slice at {pos} of {len} bytes does not fit its 64 MiB chunk"
                    ));
                }
                if id != 0 && off + len > size {
                    return Err(format!(
                        "slice {id} is {size} bytes, but {len} bytes are read from {off}"
                    ));
                }
                Ok(s)
            })
            .collect()
    }
}

impl EntryRecord {
    /// The name, checked as a name a directory can hold.
    pub fn name_bytes(&self) -> Result<Vec<u8>, String> {
        let name = self.name.to_vec()?;
        check_new_name(&name).map_err(|e| {
            format!(
                "{:?} is not a file name (1 to {NAME_MAX} bytes without / or NUL, not . or ..: {e})",
                self.name
            )
        })?;
        if self.seq < 3 {
            return Err(format!("entry {:?} has seq {} (< 3)", self.name, self.seq));
        }
        Ok(name)
    }
}
