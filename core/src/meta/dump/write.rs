//! Writing a dump: the keyspace in pages, records out as they are read.

use super::record::{Bytes, ChunkRecord, EntryRecord, InodeRecord, XattrRecord};
use super::DUMP_VERSION;
use crate::chunk::decode_slices;
use crate::errno::Errno;
use crate::format::Format;
use crate::kv::{self, for_each_page, Kv};
use crate::meta::attr_codec::{decode_entry, decode_inode, decode_u32, decode_u64, Inode};
use crate::meta::keys;
use crate::types::{FileType, Ino};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

#[derive(Clone, Copy, Debug, Default)]
pub struct DumpOptions {
    /// Keep the object store's secret key in the settings (else it is left out).
    pub keep_secret_key: bool,
}

/// What a dump wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    pub inodes: u64,
    pub entries: u64,
    pub deleted_slices: u64,
    pub staged_slices: u64,
    /// Keys under an inode without attributes (damaged metadata `fsck` names); left out.
    pub orphan_keys: u64,
    /// Sessions of clients registered when the dump began.
    pub sessions: u64,
}

/// Where a dump stands, for a progress bar: the pass, and records written in it.
#[derive(Clone, Copy, Debug)]
pub enum DumpProgress {
    /// Inodes written, of about `total` (the `totalInodes` counter).
    Inodes { done: u64, total: u64 },
    /// Entries written (about one per inode but the root).
    Entries { done: u64, total: u64 },
}

#[derive(Debug)]
pub enum DumpError {
    /// The engine failed, or holds something this version cannot read.
    Meta(Errno, &'static str),
    /// Writing the output failed.
    Io(std::io::Error),
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Meta(e, what) => write!(f, "cannot read {what} from the engine: {e}"),
            DumpError::Io(e) => write!(f, "cannot write the dump: {e}"),
        }
    }
}

impl From<Errno> for DumpError {
    fn from(e: Errno) -> Self {
        DumpError::Meta(e, "a page of the keyspace")
    }
}

impl From<std::io::Error> for DumpError {
    fn from(e: std::io::Error) -> Self {
        DumpError::Io(e)
    }
}

type Out<'a> = &'a mut dyn Write;

fn meta(what: &'static str) -> impl Fn(Errno) -> DumpError {
    move |e| DumpError::Meta(e, what)
}

/// Writes the dump of the volume in `kv` to `out` (see the module doc). `progress` is
/// called every few thousand records.
pub fn dump(
    kv: &dyn Kv,
    out: Out,
    opts: DumpOptions,
    progress: &mut dyn FnMut(DumpProgress),
) -> std::result::Result<DumpStats, DumpError> {
    let mut stats = DumpStats::default();
    let (raw, counters) = kv::read(kv, |t| {
        let raw = t.get(keys::SETTING)?.ok_or(Errno::ENOENT)?;
        let (cs, ce) = (b"C".to_vec(), b"D".to_vec());
        Ok((raw, t.scan(&cs, &ce, 64)?))
    })
    .map_err(meta("the volume settings"))?;
    let mut format = std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| Format::from_json(s).ok())
        .ok_or(DumpError::Meta(Errno::EIO, "the volume settings"))?;
    if !opts.keep_secret_key {
        format.secret_key = None;
    }
    let mut named = BTreeMap::new();
    for (k, v) in &counters {
        let name = String::from_utf8_lossy(&k[1..]).into_owned();
        named.insert(name, decode_u64(v).map_err(meta("a counter"))?);
    }
    let total = named.get(keys::TOTAL_INODES).copied().unwrap_or(0);
    let (ss, se) = keys::session_range();
    for_each_page::<DumpError>(kv, &ss, &se, &mut |p| {
        stats.sessions += p.len() as u64;
        Ok(())
    })?;

    write!(out, "{{\"ferrofs_dump\":{DUMP_VERSION},\n\"setting\":")?;
    serde_json::to_writer(&mut *out, &format).map_err(std::io::Error::from)?;
    write!(out, ",\n\"counters\":")?;
    serde_json::to_writer(&mut *out, &named).map_err(std::io::Error::from)?;

    write!(out, ",\n\"unlinked_open\":[")?;
    let (us, ue) = keys::unlinked_range();
    let mut first = true;
    for_each_page::<DumpError>(kv, &us, &ue, &mut |p| {
        for (k, _) in p {
            let ino = keys::id_of(k).ok_or(DumpError::Meta(Errno::EIO, "an unlinked inode"))?;
            write!(out, "{}{ino}", sep(&mut first, false))?;
        }
        Ok(())
    })?;

    write!(out, "],\n\"inodes\":[")?;
    let mut group = InodeGroup::default();
    let mut first = true;
    let mut emit = |out: Out, g: &mut InodeGroup, stats: &mut DumpStats| -> std::io::Result<()> {
        if let Some(rec) = g.take(&mut stats.orphan_keys) {
            out.write_all(sep(&mut first, true).as_bytes())?;
            serde_json::to_writer(&mut *out, &rec)?;
            stats.inodes += 1;
            if stats.inodes.is_multiple_of(4096) {
                progress(DumpProgress::Inodes {
                    done: stats.inodes,
                    total,
                });
            }
        }
        Ok(())
    };
    for_each_page::<DumpError>(kv, b"A", b"B", &mut |p| {
        for (k, v) in p {
            if k.len() < 10 {
                stats.orphan_keys += 1;
                continue;
            }
            let ino = Ino(keys::id_of(k).unwrap_or(0));
            if group.ino != Some(ino) {
                emit(&mut *out, &mut group, &mut stats)?;
                group.ino = Some(ino);
            }
            group.add(ino, k, v)?;
        }
        Ok(())
    })?;
    emit(&mut *out, &mut group, &mut stats)?;
    progress(DumpProgress::Inodes {
        done: stats.inodes,
        total,
    });

    write!(out, "\n],\n\"entries\":[")?;
    let mut first = true;
    let total = stats.inodes.saturating_sub(1);
    for_each_page::<DumpError>(kv, b"A", b"B", &mut |p| {
        for (k, v) in p {
            if keys::tag_of(k) != Some(b'D') || k.len() <= keys::NAME_OFFSET {
                continue;
            }
            let e = decode_entry(v).map_err(meta("a directory entry"))?;
            let rec = EntryRecord {
                parent: keys::id_of(k).unwrap_or(0),
                name: Bytes::of(&k[keys::NAME_OFFSET..]),
                ino: e.ino.0,
                kind: e.kind.into(),
                seq: e.seq,
            };
            out.write_all(sep(&mut first, true).as_bytes())?;
            serde_json::to_writer(&mut *out, &rec).map_err(std::io::Error::from)?;
            stats.entries += 1;
            if stats.entries.is_multiple_of(4096) {
                progress(DumpProgress::Entries {
                    done: stats.entries,
                    total,
                });
            }
        }
        Ok(())
    })?;
    progress(DumpProgress::Entries {
        done: stats.entries,
        total,
    });

    write!(out, "\n],\n\"deleted_slices\":[")?;
    let (gs, ge) = keys::gc_range();
    let mut first = true;
    for_each_page::<DumpError>(kv, &gs, &ge, &mut |p| {
        for (k, v) in p {
            let id = keys::id_of(k).ok_or(DumpError::Meta(Errno::EIO, "the gc queue"))?;
            let size = decode_u32(v).map_err(meta("the gc queue"))?;
            write!(out, "{}[{id},{size}]", sep(&mut first, false))?;
            stats.deleted_slices += 1;
        }
        Ok(())
    })?;

    write!(out, "],\n\"staged_slices\":[")?;
    let mut first = true;
    for_each_page::<DumpError>(kv, b"W", b"X", &mut |p| {
        for (k, _) in p {
            let id = keys::id_of(k).ok_or(DumpError::Meta(Errno::EIO, "the staged slices"))?;
            write!(out, "{}{id}", sep(&mut first, false))?;
            stats.staged_slices += 1;
        }
        Ok(())
    })?;
    writeln!(out, "]}}")?;
    out.flush()?;
    Ok(stats)
}

/// What goes before an array element: nothing (or a newline) before the first, a comma
/// (and a newline) before the others.
fn sep(first: &mut bool, newline: bool) -> &'static str {
    match (std::mem::replace(first, false), newline) {
        (true, false) => "",
        (true, true) => "\n",
        (false, false) => ",",
        (false, true) => ",\n",
    }
}

/// The keys of one inode, gathered until the scan moves past it.
#[derive(Default)]
struct InodeGroup {
    ino: Option<Ino>,
    inode: Option<Inode>,
    target: Option<Vec<u8>>,
    xattrs: Vec<XattrRecord>,
    chunks: Vec<ChunkRecord>,
    /// Keys that belong in the record but came without the inode (so far).
    keys: u64,
}

impl InodeGroup {
    fn add(&mut self, ino: Ino, k: &[u8], v: &[u8]) -> std::result::Result<(), DumpError> {
        match keys::tag_of(k) {
            Some(b'I') if k.len() == 10 => {
                self.inode = Some(decode_inode(ino, v).map_err(meta("an inode"))?);
            }
            Some(b'C') => {
                let index = keys::chunk_index_of(k)
                    .ok_or(DumpError::Meta(Errno::EIO, "a chunk key"))?
                    .0;
                let slices = decode_slices(v).map_err(meta("a chunk's slice list"))?;
                self.chunks.push(ChunkRecord::of(index, &slices));
                self.keys += 1;
            }
            Some(b'S') => {
                self.target = Some(v.to_vec());
                self.keys += 1;
            }
            Some(b'X') => {
                self.xattrs.push(XattrRecord {
                    name: Bytes::of(&k[keys::NAME_OFFSET..]),
                    value: Bytes::of(v),
                });
                self.keys += 1;
            }
            // Entries go in their own section; locks are the clients' business.
            _ => {}
        }
        Ok(())
    }

    /// The record of the inode gathered, if it had attributes (else its keys count as
    /// orphans), and a fresh group.
    fn take(&mut self, orphans: &mut u64) -> Option<InodeRecord> {
        let g = std::mem::take(self);
        let Some(inode) = g.inode else {
            *orphans += g.keys;
            return None;
        };
        let mut rec = InodeRecord::of(&inode);
        if inode.attr.kind == FileType::Symlink {
            rec.target = Some(Bytes::of(g.target.as_deref().unwrap_or_default()));
        }
        rec.xattrs = g.xattrs;
        rec.chunks = g.chunks;
        Some(rec)
    }
}
