//! Value encodings: the fixed 80-byte inode record and the 17-byte directory entry.

use crate::errno::{Errno, Result};
use crate::types::{Attr, FileType, Ino, Timespec};

/// Bytes of an encoded inode record.
pub const ATTR_LEN: usize = 80;
const ATTR_VERSION: u8 = 1;

/// An inode as stored: its attributes and, for directories, the next readdir cookie.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Inode {
    pub attr: Attr,
    /// Directories: the seq the next linked entry gets (≥ 3). 0 for other types.
    pub next_seq: u64,
}

impl Inode {
    pub fn ino(&self) -> Ino {
        self.attr.ino
    }

    pub fn is_dir(&self) -> bool {
        self.attr.kind == FileType::Directory
    }
}

/// The one-byte code of a file type (in inode records and directory entries).
pub fn type_code(kind: FileType) -> u8 {
    match kind {
        FileType::RegularFile => 1,
        FileType::Directory => 2,
        FileType::Symlink => 3,
        FileType::Fifo => 4,
        FileType::Socket => 5,
        FileType::CharDevice => 6,
        FileType::BlockDevice => 7,
    }
}

pub fn type_from_code(c: u8) -> Result<FileType> {
    Ok(match c {
        1 => FileType::RegularFile,
        2 => FileType::Directory,
        3 => FileType::Symlink,
        4 => FileType::Fifo,
        5 => FileType::Socket,
        6 => FileType::CharDevice,
        7 => FileType::BlockDevice,
        _ => return Err(Errno::EIO),
    })
}

fn put_time(out: &mut Vec<u8>, t: Timespec) {
    out.extend_from_slice(&t.sec.to_be_bytes());
    out.extend_from_slice(&t.nsec.to_be_bytes());
}

/// Encodes the record: version u8, type u8, perm u16, uid u32, gid u32, nlink u32,
/// size u64, rdev u32, atime/mtime/ctime (i64 + u32), parent u64, next_seq u64.
pub fn encode_inode(n: &Inode) -> Vec<u8> {
    let a = &n.attr;
    let mut out = Vec::with_capacity(ATTR_LEN);
    out.push(ATTR_VERSION);
    out.push(type_code(a.kind));
    out.extend_from_slice(&a.perm.to_be_bytes());
    out.extend_from_slice(&a.uid.to_be_bytes());
    out.extend_from_slice(&a.gid.to_be_bytes());
    out.extend_from_slice(&a.nlink.to_be_bytes());
    out.extend_from_slice(&a.size.to_be_bytes());
    out.extend_from_slice(&a.rdev.to_be_bytes());
    put_time(&mut out, a.atime);
    put_time(&mut out, a.mtime);
    put_time(&mut out, a.ctime);
    out.extend_from_slice(&a.parent.0.to_be_bytes());
    out.extend_from_slice(&n.next_seq.to_be_bytes());
    debug_assert_eq!(out.len(), ATTR_LEN);
    out
}

/// Decodes a record of inode `ino`; anything malformed is corrupt metadata (EIO).
pub fn decode_inode(ino: Ino, b: &[u8]) -> Result<Inode> {
    if b.len() != ATTR_LEN || b[0] != ATTR_VERSION {
        return Err(Errno::EIO);
    }
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap());
    let time_at = |i: usize| Timespec::new(u64_at(i) as i64, u32_at(i + 8));
    Ok(Inode {
        attr: Attr {
            ino,
            kind: type_from_code(b[1])?,
            perm: u16_at(2),
            uid: u32_at(4),
            gid: u32_at(8),
            nlink: u32_at(12),
            size: u64_at(16),
            rdev: u32_at(24),
            atime: time_at(28),
            mtime: time_at(40),
            ctime: time_at(52),
            parent: Ino(u64_at(64)),
        },
        next_seq: u64_at(72),
    })
}

/// A directory entry: what `A parent D name` holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry {
    pub kind: FileType,
    pub ino: Ino,
    /// The entry's readdir cookie (its `E` key in the parent).
    pub seq: u64,
}

pub const ENTRY_LEN: usize = 17;

pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_LEN);
    out.push(type_code(e.kind));
    out.extend_from_slice(&e.ino.0.to_be_bytes());
    out.extend_from_slice(&e.seq.to_be_bytes());
    out
}

pub fn decode_entry(b: &[u8]) -> Result<Entry> {
    if b.len() != ENTRY_LEN {
        return Err(Errno::EIO);
    }
    Ok(Entry {
        kind: type_from_code(b[0])?,
        ino: Ino(u64::from_be_bytes(b[1..9].try_into().unwrap())),
        seq: u64::from_be_bytes(b[9..17].try_into().unwrap()),
    })
}

/// A u64 stored big-endian (counters, session ids).
pub fn decode_u64(b: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(b.try_into().map_err(|_| Errno::EIO)?))
}

/// A u32 stored big-endian (gc queue sizes).
pub fn decode_u32(b: &[u8]) -> Result<u32> {
    Ok(u32::from_be_bytes(b.try_into().map_err(|_| Errno::EIO)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Inode {
        Inode {
            attr: Attr {
                ino: Ino(42),
                kind: FileType::Directory,
                perm: 0o7755,
                uid: 1000,
                gid: u32::MAX,
                nlink: 3,
                size: u64::MAX - 1,
                rdev: 0x0102_0304,
                atime: Timespec::new(-5, 999_999_999),
                mtime: Timespec::new(1_700_000_000, 1),
                ctime: Timespec::new(i64::MAX, 0),
                parent: Ino(7),
            },
            next_seq: 99,
        }
    }

    #[test]
    fn inode_roundtrip() {
        let n = sample();
        let b = encode_inode(&n);
        assert_eq!(b.len(), ATTR_LEN);
        assert_eq!(decode_inode(Ino(42), &b).unwrap(), n);
        assert_eq!(decode_inode(Ino(42), &b[1..]), Err(Errno::EIO));
        let mut bad = b.clone();
        bad[0] = 2;
        assert_eq!(decode_inode(Ino(42), &bad), Err(Errno::EIO));
        let mut bad = b;
        bad[1] = 0;
        assert_eq!(decode_inode(Ino(42), &bad), Err(Errno::EIO));
    }

    #[test]
    fn entry_roundtrip() {
        for kind in [
            FileType::RegularFile,
            FileType::Directory,
            FileType::Symlink,
            FileType::Fifo,
            FileType::Socket,
            FileType::CharDevice,
            FileType::BlockDevice,
        ] {
            let e = Entry {
                kind,
                ino: Ino(5),
                seq: 3,
            };
            assert_eq!(decode_entry(&encode_entry(&e)).unwrap(), e);
        }
        assert_eq!(decode_entry(&[1, 2]), Err(Errno::EIO));
    }
}
