//! The file workload: a volume formatted on the cluster whose data lives in a real S3
//! server (`s3s-fs` on loopback), and file clients that write files as a mount does.
//!
//! Each file client has its own `OptimisticKv<RaftClient>` (the mounts' engine, through
//! the clients' proxies) under a `Meta`, and loops: create `f-C-S` in the root
//! (`mknod`), take a new slice id, PUT its one block (`encode_block`, under the data
//! path's object name), commit it (`write_slice`). The content is a function of
//! (client, seq), so another file's bytes are told apart. Some acknowledged files are
//! then unlinked or renamed (`r-C-S`). Every step's outcome is recorded: acknowledged
//! (Ok) or failed (an error: it may or may not have happened).
//!
//! After the final heal, [`check`] compares the records with what a fresh client sees
//! (lookup by name, the chunk's slices, the objects GET from S3 and `decode_block`ed):
//! an acknowledged file that is missing, short or with other bytes is a lost
//! acknowledged write; a failed one may be missing or empty, but never torn.

use crate::SECRET;
use ferrofs_core::chunk::block::{decode_block, encode_block};
use ferrofs_core::chunk::{BlockKey, SliceRef};
use ferrofs_core::meta::Meta;
use ferrofs_core::replica::OptimisticKv;
use ferrofs_core::{ChunkIndex, Ctx, Errno, FileType, Ino, RenameFlags, Timespec};
use ferrofs_meta::raft::RaftClient;
use ferrofs_s3_backend::{Bytes, ObjectStore, SplitMix64};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest file written (one block of the volume's 4 MiB).
const MAX_LEN: u32 = 64 * 1024;

/// A file client's pause between files: the final check GETs every file from S3
/// (~30 ms each in a debug build here), which this keeps to ~10 s of a 60 s run.
const PAUSE: Duration = Duration::from_millis(50);

/// The step of a write that failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    Create,
    Slice,
    Put,
    Commit,
}

/// What was done to a file after it was written.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Later {
    Nothing,
    Unlinked { acked: bool },
    Renamed { to: String, acked: bool },
}

/// One file of the history.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileRec {
    pub name: String,
    pub len: u32,
    pub hash: u64,
    /// Ok: every step of the write was acknowledged. Err: the step that failed, and why.
    pub written: Result<(), (Step, String)>,
    pub later: Later,
}

/// What the final read found under a name.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Observed {
    Missing,
    /// Its size and its content read back (Err: why it could not be read).
    Present {
        size: u64,
        content: Result<Vec<u8>, String>,
    },
}

#[derive(Default)]
pub struct FileStats {
    pub stop: AtomicBool,
    pub records: Mutex<Vec<FileRec>>,
    pub bytes: AtomicU64,
    /// Errors that cannot come from faults (e.g. EEXIST on a fresh name).
    pub anomalies: Mutex<Vec<String>>,
}

/// FNV-1a.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The content of file `seq` of client `client`.
pub fn content(client: u64, seq: u64, len: u32) -> Vec<u8> {
    let mut r = SplitMix64::new(client << 32 | seq);
    let mut out = Vec::with_capacity(len as usize + 8);
    while out.len() < len as usize {
        out.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

fn now() -> Timespec {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec::new(d.as_secs() as i64, d.subsec_nanos())
}

/// A `Meta` over a fresh optimistic engine of client id `id`, once the volume loads.
pub fn open_meta(addrs: Vec<String>, id: u64, patience: Duration) -> Result<Meta, Errno> {
    let rc = RaftClient::new(addrs)
        .secret(SECRET.as_bytes())
        .patience(patience);
    Meta::load(Arc::new(OptimisticKv::new(rc, id, 1)))
}

/// The volume's object store, as the volume names it (storage, bucket, keys).
pub fn open_store(meta: &Meta) -> Result<Arc<dyn ObjectStore>, String> {
    let f = meta.format_info();
    let options = ferrofs_s3_backend::StoreOptions {
        access_key: f.access_key.clone(),
        secret_key: f.secret_key.clone(),
        ..Default::default()
    };
    ferrofs_s3_backend::open_store_with(&f.storage, &f.bucket, &options, false)
        .map_err(|e| e.to_string())
}

/// One file client (`n` from 0), until `stats.stop`.
pub fn client(n: u64, addrs: Vec<String>, seed: u64, stats: Arc<FileStats>) {
    let id = 9000 + n;
    let meta = loop {
        if stats.stop.load(Ordering::SeqCst) {
            return;
        }
        // 2 s: shorter than most faults (1 to 6 s), so a step fails when no leader
        // answers for that long, and its unknown outcome is checked (rare: in the runs
        // so far a leader always answered within 2 s, so none failed).
        match open_meta(addrs.clone(), id, Duration::from_secs(2)) {
            Ok(m) => break m,
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let store = match open_store(&meta) {
        Ok(s) => s,
        Err(e) => {
            stats.anomalies.lock().unwrap().push(format!(
                "file client {n}: cannot open the volume's store: {e}"
            ));
            return;
        }
    };
    let mut rng = SplitMix64::new(seed ^ (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let ctx = Ctx::root();
    let mut seq = 0;
    while !stats.stop.load(Ordering::SeqCst) {
        seq += 1;
        let name = format!("f-{n}-{seq}");
        let len = 1 + (rng.next_u64() % MAX_LEN as u64) as u32;
        let data = content(n, seq, len);
        let mut rec = FileRec {
            name: name.clone(),
            len,
            hash: hash(&data),
            written: Ok(()),
            later: Later::Nothing,
        };
        rec.written = (|| {
            let attr = meta
                .mknod(
                    &ctx,
                    Ino::ROOT,
                    name.as_bytes(),
                    FileType::RegularFile,
                    0o644,
                    0,
                    0,
                    now(),
                )
                .map_err(|e| (Step::Create, e.to_string()))?;
            let slice = meta
                .new_slice_id()
                .map_err(|e| (Step::Slice, e.to_string()))?;
            let key = BlockKey {
                slice,
                index: 0,
                len,
            };
            store
                .put(&key.object_name(), Bytes::from(encode_block(&data)))
                .map_err(|e| (Step::Put, e.to_string()))?;
            meta.write_slice(attr.ino, ChunkIndex(0), SliceRef::new(0, slice, len), now())
                .map_err(|e| (Step::Commit, e.to_string()))?;
            Ok(())
        })();
        if let Err((Step::Create, e)) = &rec.written {
            if e.contains("EEXIST") || e.contains("File exists") {
                stats.anomalies.lock().unwrap().push(format!(
                    "file client {n}: creating the fresh name {name} answered EEXIST (a create applied twice?)"
                ));
            }
        }
        if rec.written.is_ok() {
            stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
            match rng.next_u64() % 4 {
                0 => {
                    let r = meta.unlink(&ctx, Ino::ROOT, name.as_bytes(), now());
                    rec.later = Later::Unlinked { acked: r.is_ok() };
                }
                1 => {
                    let to = format!("r-{n}-{seq}");
                    let flags = RenameFlags {
                        noreplace: true,
                        exchange: false,
                    };
                    let r = meta.rename(
                        &ctx,
                        Ino::ROOT,
                        name.as_bytes(),
                        Ino::ROOT,
                        to.as_bytes(),
                        flags,
                        now(),
                    );
                    rec.later = Later::Renamed {
                        to,
                        acked: r.is_ok(),
                    };
                }
                _ => {}
            }
        }
        stats.records.lock().unwrap().push(rec);
        std::thread::sleep(PAUSE);
    }
}

/// What a fresh client finds under `name` in the root: the attributes, the chunk's
/// slices, and each slice's block GET from the store and verified.
pub fn observe(meta: &Meta, store: &dyn ObjectStore, name: &str) -> Result<Observed, String> {
    let attr = match meta.lookup(&Ctx::root(), Ino::ROOT, name.as_bytes()) {
        Ok(a) => a,
        Err(Errno::ENOENT) => return Ok(Observed::Missing),
        Err(e) => return Err(format!("lookup {name}: {e}")),
    };
    let block_size = meta.format_info().block_size;
    let slices = meta
        .read_chunk(attr.ino, ChunkIndex(0))
        .map_err(|e| format!("read the chunk of {name} (inode {}): {e}", attr.ino.0))?;
    let content = (|| {
        let mut buf = vec![0u8; attr.size as usize];
        for s in &slices {
            if s.id.0 == 0 {
                continue;
            }
            if s.size > block_size {
                return Err(format!("slice {s:?} spans blocks (never written here)"));
            }
            let key = BlockKey {
                slice: s.id,
                index: 0,
                len: s.size,
            };
            let object = store
                .get(&key.object_name(), 0, None)
                .map_err(|e| format!("GET {}: {e}", key.object_name()))?;
            let data = decode_block(s.size, &object)
                .map_err(|e| format!("object {}: {e}", key.object_name()))?;
            let (pos, off, len) = (s.pos as usize, s.off as usize, s.len as usize);
            let end = (pos + len).min(buf.len());
            if pos < end {
                buf[pos..end].copy_from_slice(&data[off..off + (end - pos)]);
            }
        }
        Ok(buf)
    })();
    Ok(Observed::Present {
        size: attr.size,
        content,
    })
}

/// Checks the records against what `look` finds under each name; returns the
/// anomalies. `look` errors (the final read failed) are anomalies too.
pub fn check(
    records: &[FileRec],
    mut look: impl FnMut(&str) -> Result<Observed, String>,
) -> (usize, Vec<String>) {
    let mut out = Vec::new();
    let mut verified = 0;
    // Whether `o` is the whole file of `r` (true), or an anomaly (pushed).
    let whole = |r: &FileRec, name: &str, o: &Observed, out: &mut Vec<String>| -> bool {
        match o {
            Observed::Missing => false,
            Observed::Present { size, content } => {
                let ok = *size == r.len as u64
                    && content
                        .as_ref()
                        .is_ok_and(|c| c.len() == r.len as usize && hash(c) == r.hash);
                if !ok {
                    let what = match content {
                        Ok(c) => format!("{} bytes, hash {:016x}", c.len(), hash(c)),
                        Err(e) => e.clone(),
                    };
                    out.push(format!(
                        "{name} (file {}): expected {} bytes, hash {:016x}; found size {size}, content {what}",
                        r.name, r.len, r.hash
                    ));
                }
                ok
            }
        }
    };
    for r in records {
        let mut get = |name: &str, out: &mut Vec<String>| match look(name) {
            Ok(o) => Some(o),
            Err(e) => {
                out.push(format!("{name}: cannot read it after the heal: {e}"));
                None
            }
        };
        match &r.written {
            Ok(()) => match &r.later {
                Later::Nothing | Later::Unlinked { acked: false } => {
                    let Some(o) = get(&r.name, &mut out) else {
                        continue;
                    };
                    let unlinked = r.later != Later::Nothing;
                    match o {
                        Observed::Missing if unlinked => verified += 1,
                        Observed::Missing => out.push(format!(
                            "lost acknowledged write: {} ({} bytes) is missing",
                            r.name, r.len
                        )),
                        o => {
                            if whole(r, &r.name, &o, &mut out) {
                                verified += 1;
                            } else {
                                out.push(format!("lost acknowledged write: {}", r.name));
                            }
                        }
                    }
                }
                Later::Unlinked { acked: true } => match get(&r.name, &mut out) {
                    Some(Observed::Missing) => verified += 1,
                    Some(_) => out.push(format!(
                        "{}: its unlink was acknowledged but it exists",
                        r.name
                    )),
                    None => {}
                },
                Later::Renamed { to, acked } => {
                    let (Some(old), Some(new)) = (get(&r.name, &mut out), get(to, &mut out)) else {
                        continue;
                    };
                    match (&old, &new) {
                        (Observed::Missing, Observed::Missing) => out.push(format!(
                            "lost acknowledged write: {} (renamed to {to}) is under neither name",
                            r.name
                        )),
                        (Observed::Present { .. }, Observed::Present { .. }) => {
                            out.push(format!("{} and {to} both exist after one rename", r.name))
                        }
                        (Observed::Present { .. }, Observed::Missing) if *acked => {
                            out.push(format!(
                                "{}: its rename to {to} was acknowledged but it kept its name",
                                r.name
                            ))
                        }
                        (Observed::Present { .. }, _) => {
                            if whole(r, &r.name, &old, &mut out) {
                                verified += 1;
                            }
                        }
                        (_, Observed::Present { .. }) => {
                            if whole(r, to, &new, &mut out) {
                                verified += 1;
                            }
                        }
                    }
                }
            },
            // Unknown outcome: missing, empty (the data never committed) or whole.
            Err((step, _)) => {
                let Some(o) = get(&r.name, &mut out) else {
                    continue;
                };
                match &o {
                    Observed::Missing => {}
                    Observed::Present { size: 0, content } if content.is_ok() => {}
                    Observed::Present { .. } if *step != Step::Commit => out.push(format!(
                        "{}: its write failed at {step:?}, before the commit, but it has data",
                        r.name
                    )),
                    o => {
                        if whole(r, &r.name, o, &mut out) {
                            verified += 1;
                        }
                    }
                }
            }
        }
    }
    (verified, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn rec(name: &str, seq: u64, written: Result<(), (Step, String)>, later: Later) -> FileRec {
        let data = content(1, seq, 100);
        FileRec {
            name: name.into(),
            len: 100,
            hash: hash(&data),
            written,
            later,
        }
    }

    fn present(seq: u64) -> Observed {
        Observed::Present {
            size: 100,
            content: Ok(content(1, seq, 100)),
        }
    }

    fn run(records: &[FileRec], seen: HashMap<&str, Observed>) -> (usize, Vec<String>) {
        check(records, |n| {
            Ok(seen.get(n).cloned().unwrap_or(Observed::Missing))
        })
    }

    #[test]
    fn a_lost_acknowledged_file_is_flagged() {
        let r = [rec("f-1-1", 1, Ok(()), Later::Nothing)];
        let (v, bad) = run(&r, HashMap::new());
        assert_eq!(v, 0);
        assert!(bad[0].contains("lost acknowledged write"), "{bad:?}");
        // Present and whole: verified.
        let (v, bad) = run(&r, HashMap::from([("f-1-1", present(1))]));
        assert_eq!((v, bad.len()), (1, 0), "{bad:?}");
        // Another file's bytes, or a short file: lost.
        let (_, bad) = run(&r, HashMap::from([("f-1-1", present(2))]));
        assert!(
            bad.iter().any(|b| b.contains("lost acknowledged")),
            "{bad:?}"
        );
        let short = Observed::Present {
            size: 50,
            content: Ok(content(1, 1, 50)),
        };
        let (_, bad) = run(&r, HashMap::from([("f-1-1", short)]));
        assert!(!bad.is_empty());
    }

    #[test]
    fn an_unknown_outcome_may_be_missing_or_empty_but_not_torn() {
        let failed = |step| rec("f-1-2", 2, Err((step, "EIO".into())), Later::Nothing);
        let r = [failed(Step::Commit)];
        assert!(run(&r, HashMap::new()).1.is_empty());
        let empty = Observed::Present {
            size: 0,
            content: Ok(vec![]),
        };
        assert!(run(&r, HashMap::from([("f-1-2", empty.clone())]))
            .1
            .is_empty());
        assert_eq!(run(&r, HashMap::from([("f-1-2", present(2))])), (1, vec![]));
        assert!(!run(&r, HashMap::from([("f-1-2", present(3))])).1.is_empty());
        // Failed before the commit: no data may show.
        let r = [failed(Step::Put)];
        assert!(run(&r, HashMap::from([("f-1-2", empty)])).1.is_empty());
        assert!(!run(&r, HashMap::from([("f-1-2", present(2))])).1.is_empty());
    }

    #[test]
    fn unlinks_and_renames() {
        let gone = rec("f-1-3", 3, Ok(()), Later::Unlinked { acked: true });
        assert!(run(std::slice::from_ref(&gone), HashMap::new())
            .1
            .is_empty());
        assert!(!run(&[gone], HashMap::from([("f-1-3", present(3))]))
            .1
            .is_empty());
        let maybe = rec("f-1-3", 3, Ok(()), Later::Unlinked { acked: false });
        assert!(run(std::slice::from_ref(&maybe), HashMap::new())
            .1
            .is_empty());
        assert!(run(&[maybe], HashMap::from([("f-1-3", present(3))]))
            .1
            .is_empty());
        let to = "r-1-3".to_string();
        let moved = |acked| {
            rec(
                "f-1-3",
                3,
                Ok(()),
                Later::Renamed {
                    to: to.clone(),
                    acked,
                },
            )
        };
        assert!(run(&[moved(true)], HashMap::from([("r-1-3", present(3))]))
            .1
            .is_empty());
        assert!(!run(&[moved(true)], HashMap::from([("f-1-3", present(3))]))
            .1
            .is_empty());
        assert!(run(&[moved(false)], HashMap::from([("f-1-3", present(3))]))
            .1
            .is_empty());
        assert!(!run(&[moved(false)], HashMap::new()).1.is_empty());
        let both = HashMap::from([("f-1-3", present(3)), ("r-1-3", present(3))]);
        assert!(!run(&[moved(false)], both).1.is_empty());
    }

    #[test]
    fn contents_differ_between_files() {
        assert_ne!(hash(&content(1, 1, 64)), hash(&content(1, 2, 64)));
        assert_ne!(hash(&content(1, 1, 64)), hash(&content(2, 1, 64)));
        assert_eq!(content(3, 4, 1000), content(3, 4, 1000));
    }
}
