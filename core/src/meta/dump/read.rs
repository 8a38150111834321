//! Loading a dump: a streaming parse (records handed over as they are read, never the
//! whole document), each record checked and turned into keys, keys written in batches.

use super::record::{EntryRecord, InodeRecord};
use super::{DUMP_VERSION, SECTIONS};
use crate::chunk::encode_slices;
use crate::errno::Errno;
use crate::format::Format;
use crate::kv::{self, Kv, KvPair};
use crate::meta::attr_codec::{encode_entry, encode_inode, Entry};
use crate::meta::keys;
use crate::types::{FileType, Ino, SliceId};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

/// Bytes of keys and values written per transaction. Small: sled holds several times
/// a batch in memory for a while after applying it (a 200,000-file load peaked at 190 MB
/// with 16 KiB batches, 620 MB with 1 MiB and 3 GB with 8 MiB), and a raft load is no
/// faster with larger ones (bench/README.md, `dump-load.sh`).
const BATCH_BYTES: usize = 16 << 10;

/// The key ranges a load writes (and a failed load clears): inodes, counters, the gc
/// queue, staged slices. The settings key is written last.
const RANGES: [(&[u8], &[u8]); 4] = [(b"A", b"B"), (b"C", b"D"), (b"G", b"H"), (b"W", b"X")];

/// What a load wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub inodes: u64,
    pub entries: u64,
    /// Inodes that were unlinked but open when dumped: their data was queued for deletion.
    pub dropped_unlinked: u64,
    pub deleted_slices: u64,
    pub staged_slices: u64,
    /// Bytes of regular files (the new `usedSpace`).
    pub file_bytes: u64,
    /// Whether the dump's settings held no object-store secret key.
    pub no_secret_key: bool,
}

#[derive(Debug)]
pub enum LoadError {
    /// The engine already holds a volume (or part of one).
    NotEmpty(String),
    /// The document is not a dump this version can load; the message says where.
    Invalid(String),
    /// The engine failed.
    Meta(Errno),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotEmpty(m) | LoadError::Invalid(m) => write!(f, "{m}"),
            LoadError::Meta(e) => write!(f, "the metadata engine failed: {e}"),
        }
    }
}

/// Loads the dump read from `input` into the empty engine `kv`. On any error what was
/// written is removed again (the engine is left empty) and the error says what was
/// wrong, with the line and column for a bad document.
pub fn load(kv: &dyn Kv, input: impl std::io::Read) -> Result<LoadStats, LoadError> {
    ensure_empty(kv)?;
    let mut loader = Loader::new(kv);
    let result = loader.run(input);
    match result {
        Ok(()) => Ok(loader.stats),
        Err(e) => {
            clear(kv).map_err(|c| {
                LoadError::Invalid(format!(
                    "{e}; removing the partial load failed too ({c}): remove the engine's data before loading again"
                ))
            })?;
            Err(e)
        }
    }
}

fn ensure_empty(kv: &dyn Kv) -> Result<(), LoadError> {
    let (formatted, partial) = kv::read(kv, |t| {
        let formatted = t.get(keys::SETTING)?.is_some();
        let mut partial = false;
        for (s, e) in RANGES {
            partial |= !t.scan(s, e, 1)?.is_empty();
        }
        Ok((formatted, partial))
    })
    .map_err(LoadError::Meta)?;
    if formatted {
        return Err(LoadError::NotEmpty(
            "the engine already holds a volume: load into an empty one".into(),
        ));
    }
    if partial {
        return Err(LoadError::NotEmpty(
            "the engine holds metadata without volume settings (a load that was cut off?): load into an empty one".into(),
        ));
    }
    Ok(())
}

/// Deletes every key a load writes, page by page.
fn clear(kv: &dyn Kv) -> Result<(), String> {
    for (s, e) in RANGES {
        loop {
            let mut n = 0;
            kv::txn(kv, |t| {
                let page = t.scan(s, e, kv::PAGE)?;
                n = page.len();
                for (k, _) in page {
                    t.delete(&k);
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
        }
    }
    Ok(())
}

struct Loader<'k> {
    kv: &'k dyn Kv,
    batch: Vec<KvPair>,
    batch_bytes: usize,
    /// The next section allowed (index into [`SECTIONS`]).
    next_section: usize,
    version: bool,
    format: Option<Format>,
    counters: BTreeMap<String, u64>,
    unlinked: BTreeSet<u64>,
    /// Inodes loaded, ascending (8 bytes each: what lets entries be checked); the
    /// directories among them.
    inos: Vec<u64>,
    dirs: Vec<u64>,
    /// The last inode record read (loaded or not).
    last_ino: u64,
    max_slice: u64,
    stats: LoadStats,
    /// An error of the loader itself, kept while serde unwinds.
    failed: Option<LoadError>,
}

fn bad(m: impl Into<String>) -> LoadError {
    LoadError::Invalid(m.into())
}

impl<'k> Loader<'k> {
    fn new(kv: &'k dyn Kv) -> Self {
        Loader {
            kv,
            batch: Vec::new(),
            batch_bytes: 0,
            next_section: 0,
            version: false,
            format: None,
            counters: BTreeMap::new(),
            unlinked: BTreeSet::new(),
            inos: Vec::new(),
            dirs: Vec::new(),
            last_ino: 0,
            max_slice: 0,
            stats: LoadStats::default(),
            failed: None,
        }
    }

    fn run(&mut self, input: impl std::io::Read) -> Result<(), LoadError> {
        let mut de = serde_json::Deserializer::from_reader(input);
        let parsed = Document(self).deserialize(&mut de).and_then(|()| de.end());
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        parsed.map_err(|e| bad(format!("the dump is not valid: {e}")))?;
        self.finish()
    }

    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) -> Result<(), LoadError> {
        self.batch_bytes += k.len() + v.len();
        self.batch.push((k, v));
        if self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LoadError> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        kv::txn(self.kv, |t| {
            for (k, v) in &batch {
                t.set(k, v);
            }
            Ok(())
        })
        .map_err(LoadError::Meta)
    }

    /// Moves on to section `name`: known, and after the ones before it.
    fn enter(&mut self, name: &str) -> Result<(), LoadError> {
        let Some(i) = SECTIONS.iter().position(|s| *s == name) else {
            return Err(bad(format!(
                "unknown member {name:?}: a dump has {}",
                SECTIONS.join(", ")
            )));
        };
        if i < self.next_section {
            return Err(bad(format!(
                "member {name:?} is out of place or repeated: the order is {}",
                SECTIONS.join(", ")
            )));
        }
        if i > 0 && !self.version {
            return Err(bad(
                "this is not a ferrofs dump: it does not begin with \"ferrofs_dump\"",
            ));
        }
        if i > 1 && self.format.is_none() {
            return Err(bad("the dump has no \"setting\" before its records"));
        }
        self.next_section = i + 1;
        Ok(())
    }

    fn version(&mut self, v: u64) -> Result<(), LoadError> {
        if v != DUMP_VERSION {
            return Err(bad(format!(
                "this is a version {v} dump; this ferrofs loads version {DUMP_VERSION}"
            )));
        }
        self.version = true;
        Ok(())
    }

    fn setting(&mut self, f: Format) -> Result<(), LoadError> {
        f.validate()
            .map_err(|e| bad(format!("the dump's settings: {e}")))?;
        self.stats.no_secret_key = f.secret_key.is_none() && f.access_key.is_some();
        self.format = Some(f);
        Ok(())
    }

    fn counters(&mut self, c: BTreeMap<String, u64>) -> Result<(), LoadError> {
        let known = [
            keys::NEXT_INODE,
            keys::NEXT_SLICE,
            keys::NEXT_SESSION,
            keys::USED_SPACE,
            keys::TOTAL_INODES,
        ];
        if let Some(k) = c.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown counter {k:?}: the counters are {}",
                known.join(", ")
            )));
        }
        self.counters = c;
        Ok(())
    }

    fn inode(&mut self, rec: InodeRecord) -> Result<(), LoadError> {
        let at = |m: String| bad(format!("inode {}: {m}", rec.ino));
        let n = rec.inode().map_err(at)?;
        if self.last_ino >= rec.ino {
            return Err(at("inodes must come in ascending order, once each".into()));
        }
        self.last_ino = rec.ino;
        let target = rec.target_bytes().map_err(at)?;
        let mut chunks = Vec::with_capacity(rec.chunks.len());
        let mut last = None;
        for c in &rec.chunks {
            if last.is_some_and(|l| l >= c.index) {
                return Err(at("chunks must come in ascending order, once each".into()));
            }
            last = Some(c.index);
            let slices = c.slice_refs().map_err(at)?;
            for s in &slices {
                self.max_slice = self.max_slice.max(s.id.0);
            }
            chunks.push((c.index, slices));
        }
        if self.unlinked.remove(&rec.ino) {
            // Its last name went while a client had it open; no client has it open now.
            for (_, slices) in &chunks {
                for s in slices.iter().filter(|s| s.id != SliceId::ZERO) {
                    self.put(keys::gc(s.id), s.size.to_be_bytes().to_vec())?;
                }
            }
            self.stats.dropped_unlinked += 1;
            return Ok(());
        }
        let ino = Ino(rec.ino);
        self.put(keys::attr(ino), encode_inode(&n))?;
        for (index, slices) in &chunks {
            self.put(
                keys::chunk(ino, crate::types::ChunkIndex(*index)),
                encode_slices(slices),
            )?;
        }
        if let Some(t) = target {
            self.put(keys::symlink(ino), t)?;
        }
        let mut names = BTreeSet::new();
        for x in &rec.xattrs {
            let (name, value) = x.pair().map_err(at)?;
            if !names.insert(name.clone()) {
                return Err(at("an xattr is given twice".into()));
            }
            self.put(keys::xattr(ino, &name), value)?;
        }
        self.inos.push(rec.ino);
        if n.is_dir() {
            self.dirs.push(rec.ino);
        }
        self.stats.inodes += 1;
        if n.attr.kind == FileType::RegularFile {
            self.stats.file_bytes += n.attr.size;
        }
        Ok(())
    }

    fn entry(&mut self, rec: EntryRecord) -> Result<(), LoadError> {
        let at = |m: String| bad(format!("entry {:?} in {}: {m}", rec.name, rec.parent));
        let name = rec.name_bytes().map_err(at)?;
        if self.dirs.binary_search(&rec.parent).is_err() {
            return Err(at(format!("there is no directory {}", rec.parent)));
        }
        if self.inos.binary_search(&rec.ino).is_err() {
            return Err(at(format!("there is no inode {}", rec.ino)));
        }
        if rec.ino == Ino::ROOT.0 {
            return Err(at("the root has no name".into()));
        }
        let parent = Ino(rec.parent);
        let e = Entry {
            kind: rec.kind.into(),
            ino: Ino(rec.ino),
            seq: rec.seq,
        };
        self.put(keys::dentry(parent, &name), encode_entry(&e))?;
        self.put(keys::dir_index(parent, rec.seq), name)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn deleted_slice(&mut self, (id, size): (u64, u32)) -> Result<(), LoadError> {
        if id == 0 {
            return Err(bad("deleted_slices: slice 0 is the hole, never stored"));
        }
        self.max_slice = self.max_slice.max(id);
        self.put(keys::gc(SliceId(id)), size.to_be_bytes().to_vec())?;
        self.stats.deleted_slices += 1;
        Ok(())
    }

    fn staged_slice(&mut self, id: u64) -> Result<(), LoadError> {
        if id == 0 {
            return Err(bad("staged_slices: slice 0 is the hole, never stored"));
        }
        self.max_slice = self.max_slice.max(id);
        self.put(keys::staged(SliceId(id)), Vec::new())?;
        self.stats.staged_slices += 1;
        Ok(())
    }

    /// Counters, then the settings, which make the engine a volume.
    fn finish(&mut self) -> Result<(), LoadError> {
        let Some(format) = self.format.take() else {
            return Err(bad("the dump has no \"setting\""));
        };
        if self.inos.first() != Some(&Ino::ROOT.0) {
            return Err(bad("the dump has no root directory (inode 1)"));
        }
        if let Some(ino) = self.unlinked.first() {
            return Err(bad(format!(
                "unlinked_open names inode {ino}, which the dump does not hold"
            )));
        }
        // Ids of inodes not loaded (unlinked-open ones) are not handed out again either.
        let max_ino = self.last_ino.max(1);
        let dumped = |name: &str| self.counters.get(name).copied().unwrap_or(0);
        let counters = [
            (keys::NEXT_INODE, dumped(keys::NEXT_INODE).max(max_ino + 1)),
            (
                keys::NEXT_SLICE,
                dumped(keys::NEXT_SLICE).max(self.max_slice + 1),
            ),
            (keys::NEXT_SESSION, dumped(keys::NEXT_SESSION).max(1)),
            // Recounted: a live volume's clients may not have added theirs yet.
            (keys::TOTAL_INODES, self.stats.inodes),
            (keys::USED_SPACE, self.stats.file_bytes),
        ];
        for (name, value) in counters {
            self.put(keys::counter(name), value.to_be_bytes().to_vec())?;
        }
        self.flush()?;
        let json = format.to_json();
        kv::txn(self.kv, |t| {
            t.set(keys::SETTING, json.as_bytes());
            Ok(())
        })
        .map_err(LoadError::Meta)?;
        self.kv.sync().map_err(LoadError::Meta)
    }
}

/// The whole document: a map whose members are handed to the loader one by one.
struct Document<'l, 'k>(&'l mut Loader<'k>);

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Hands a loader error to serde as "stop", keeping the error itself.
fn stop<E: de::Error>(l: &mut Loader, r: Result<(), LoadError>) -> Result<(), E> {
    r.map_err(|e| {
        l.failed = Some(e);
        E::custom("load stopped")
    })
}

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a ferrofs dump (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let l = self.0;
        while let Some(key) = m.next_key::<String>()? {
            let r = l.enter(&key);
            stop(l, r)?;
            let r = match key.as_str() {
                "ferrofs_dump" => {
                    let v = m.next_value()?;
                    l.version(v)
                }
                "setting" => {
                    let f = m.next_value()?;
                    l.setting(f)
                }
                "counters" => {
                    let c = m.next_value()?;
                    l.counters(c)
                }
                "unlinked_open" => {
                    let u: Vec<u64> = m.next_value()?;
                    l.unlinked = u.into_iter().collect();
                    Ok(())
                }
                "inodes" => m.next_value_seed(Each(l, Loader::inode, PhantomData))?,
                "entries" => m.next_value_seed(Each(l, Loader::entry, PhantomData))?,
                "deleted_slices" => {
                    m.next_value_seed(Each(l, Loader::deleted_slice, PhantomData))?
                }
                "staged_slices" => m.next_value_seed(Each(l, Loader::staged_slice, PhantomData))?,
                _ => unreachable!("enter() knows the sections"),
            };
            stop(l, r)?;
        }
        Ok(())
    }
}

/// A JSON array whose elements go to a loader method as they are parsed.
struct Each<'l, 'k, T>(
    &'l mut Loader<'k>,
    fn(&mut Loader<'k>, T) -> Result<(), LoadError>,
    PhantomData<T>,
);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Each<'_, '_, T> {
    type Value = Result<(), LoadError>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Each<'_, '_, T> {
    type Value = Result<(), LoadError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        let Each(l, f, _) = self;
        while let Some(rec) = s.next_element::<T>()? {
            let r = f(l, rec);
            stop(l, r)?;
        }
        Ok(Ok(()))
    }
}
