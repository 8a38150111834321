//! Checker: the object store and the metadata agree.
//!
//! - every slice a chunk refers to has all its block objects, each of the stored length
//!   of its block (data, checksums, magic); at the end their checksums are verified too;
//! - objects of queued (`G`) slices are waiting for gc: fine during a run, but after the
//!   final gc pass the queue must be empty;
//! - an object that no chunk and no queue entry names is a leak. Leaks are legitimate
//!   when an upload's commit never happened (a crash between upload and commit, an error
//!   reported for a put that was applied, a file removed by another client before the
//!   flush committed); they are counted and reported, not failed.

use ferrofs_core::chunk::block::{decode_block, stored_len};
use ferrofs_core::chunk::{blocks_of_slice, decode_slices, BlockKey};
use ferrofs_core::meta::keys;
use ferrofs_core::{Ino, SliceId};
use std::collections::{BTreeMap, BTreeSet};

/// What the objects check found.
#[derive(Clone, Debug, Default)]
pub struct ObjectsReport {
    pub violations: Vec<String>,
    /// Objects nothing refers to.
    pub leaked: u64,
    pub leaked_bytes: u64,
    /// The first few leaked objects, by name.
    pub leaked_sample: Vec<String>,
    /// Objects of queued slices.
    pub queued: u64,
    pub objects: u64,
    /// Referenced objects missing because they are staged, not uploaded (writeback).
    pub unuploaded: u64,
}

/// Checks `objects` against `keyspace`. `final_gc_done`: the last gc pass ran with no
/// faults, so the queue must be empty.
pub fn check(
    keyspace: &BTreeMap<Vec<u8>, Vec<u8>>,
    objects: &BTreeMap<String, Vec<u8>>,
    block_size: u32,
    final_gc_done: bool,
    unuploaded: &BTreeSet<String>,
) -> ObjectsReport {
    let mut r = ObjectsReport::default();
    // slice → (size, an inode naming it)
    let mut referenced: BTreeMap<SliceId, (u32, Ino)> = BTreeMap::new();
    let mut queued: BTreeMap<SliceId, u32> = BTreeMap::new();
    for (k, v) in keyspace {
        match (k.first(), keys::tag_of(k)) {
            (Some(b'A'), Some(b'C')) => {
                let ino = Ino(u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8])));
                for s in decode_slices(v).unwrap_or_default() {
                    if s.id != SliceId::ZERO {
                        referenced.entry(s.id).or_insert((s.size, ino));
                    }
                }
            }
            (Some(b'G'), _) => {
                let id = SliceId(keys::id_of(k).unwrap_or(0));
                let size = v.as_slice().try_into().map(u32::from_be_bytes).unwrap_or(0);
                queued.insert(id, size);
            }
            _ => {}
        }
    }
    for (id, (size, ino)) in &referenced {
        for b in blocks_of_slice(*id, *size, block_size) {
            let name = b.object_name();
            match objects.get(&name) {
                // Staged by a writeback client and not uploaded yet (or lost with its
                // cache disk, which writeback accepts).
                None if unuploaded.contains(&name) => r.unuploaded += 1,
                None => r
                    .violations
                    .push(format!("objects: {name} of {id:?} (in {ino:?}) is missing")),
                Some(d) if d.len() as u64 != stored_len(b.len) => r.violations.push(format!(
                    "objects: {name} of {id:?} (in {ino:?}) has {} bytes, not {}",
                    d.len(),
                    stored_len(b.len)
                )),
                Some(d) if final_gc_done => {
                    if let Err(e) = decode_block(b.len, d) {
                        r.violations
                            .push(format!("objects: {name} of {id:?} (in {ino:?}): {e}"));
                    }
                }
                Some(_) => {}
            }
        }
    }
    for (name, data) in objects {
        r.objects += 1;
        let Some(key) = BlockKey::parse_object_name(name) else {
            r.violations.push(format!("objects: stray object {name}"));
            continue;
        };
        let named = |size: u32| blocks_of_slice(key.slice, size, block_size).contains(&key);
        if referenced
            .get(&key.slice)
            .is_some_and(|(size, _)| named(*size))
        {
            continue;
        }
        if queued.get(&key.slice).is_some_and(|size| named(*size)) {
            r.queued += 1;
            continue;
        }
        r.leaked += 1;
        r.leaked_bytes += data.len() as u64;
        if r.leaked_sample.len() < 8 {
            r.leaked_sample.push(name.clone());
        }
    }
    if final_gc_done && !queued.is_empty() {
        r.violations.push(format!(
            "objects: {} slices still queued after the final gc, e.g. {:?}",
            queued.len(),
            queued.keys().next()
        ));
    }
    r
}
