//! The embedded metadata engine: the core's transactional KV on a sled database.
//!
//! sled 0.34 offers atomic batches but its own transactions retry closures on conflict,
//! which the core's `Kv` contract forbids (a closure runs once). So writers are
//! serialized by a mutex: each runs its closure once on a `BufferedTxn` over the live
//! tree (no other writer can change it meanwhile) and applies the buffered writes as
//! one atomic `sled::Batch`. Readers take the read side of a lock whose write side is
//! held only while a batch is applied, so a read transaction sees one consistent state
//! and never waits for a writer's closure, only for its apply.

use crate::error::MetaError;
use ferrofs_core::kv::{BufferedTxn, Kv, KvPair, ReadView, Txn};
use ferrofs_core::{Errno, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// A metadata engine on a sled database directory.
pub struct SledKv {
    db: sled::Db,
    path: PathBuf,
    /// Held for a whole read-write transaction: makes transactions serializable.
    writer: Mutex<()>,
    /// Write side held while a batch is applied; read side for a whole read transaction.
    apply: RwLock<()>,
}

impl fmt::Debug for SledKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SledKv({})", self.path.display())
    }
}

/// Names of the files sled keeps in its directory; their presence tells a database
/// from an empty or unrelated directory.
const SLED_FILES: &[&str] = &["conf", "db"];

impl SledKv {
    /// Opens the database in `dir`, creating it (and the directory) if missing.
    pub fn open(dir: &Path) -> std::result::Result<SledKv, MetaError> {
        Self::open_with(dir, true)
    }

    /// Opens the database in `dir`; without `create`, a directory that holds no sled
    /// database is [`MetaError::NotFound`] (rather than silently starting an empty one).
    pub fn open_with(dir: &Path, create: bool) -> std::result::Result<SledKv, MetaError> {
        let path = dir.to_path_buf();
        let exists = SLED_FILES.iter().all(|f| dir.join(f).is_file());
        if !exists && !create {
            return Err(MetaError::NotFound { path });
        }
        // A database just closed may stay locked a moment (sled's flusher thread lets
        // go last; a process that just exited is still being torn down): wait a little
        // before calling it busy.
        let mut tries = 0;
        let opened = loop {
            match sled::Config::new().path(dir).open() {
                Err(e) if is_lock_error(&e) && tries < 30 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                r => break r,
            }
        };
        let db = opened.map_err(|source| {
            if is_lock_error(&source) {
                MetaError::Busy { path: path.clone() }
            } else {
                MetaError::Open {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        tracing::debug!(path = %path.display(), "opened sled metadata");
        Ok(SledKv {
            db,
            path,
            writer: Mutex::new(()),
            apply: RwLock::new(()),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sled database, for other trees beside the metadata (a replica's Raft log:
    /// one flush makes both durable).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

/// sled reports a held lock as a plain I/O error with this text (see its
/// `Config::try_lock`); there is no dedicated error kind to match on.
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn eio(op: &'static str, e: sled::Error) -> Errno {
    tracing::error!(op, error = %e, "sled metadata operation failed");
    Errno::EIO
}

/// The live tree as the core's read view.
struct View<'a>(&'a sled::Tree);

impl ReadView for View<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.0.get(key) {
            Ok(v) => Ok(v.map(|v| v.to_vec())),
            Err(e) => Err(eio("get", e)),
        }
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.0
            .range(start..end)
            .take(limit)
            .map(|r| match r {
                Ok((k, v)) => Ok((k.to_vec(), v.to_vec())),
                Err(e) => Err(eio("scan", e)),
            })
            .collect()
    }
}

/// A read-only transaction: writes are ignored, as `Kv::read` promises.
struct ReadOnly<'a>(View<'a>);

impl Txn for ReadOnly<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(key)
    }
    fn set(&mut self, _key: &[u8], _value: &[u8]) {}
    fn delete(&mut self, _key: &[u8]) {}
    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        self.0.scan(start, end, limit)
    }
}

impl Kv for SledKv {
    fn txn(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        // A panic in an earlier closure poisons the lock but applied nothing: go on.
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let view = View(&self.db);
        let mut t = BufferedTxn::new(&view);
        f(&mut t)?;
        let writes = t.into_writes();
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, w) in writes {
            match w {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        let _apply = self.apply.write().unwrap_or_else(|e| e.into_inner());
        self.db
            .apply_batch(batch)
            .map_err(|e| eio("apply_batch", e))
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        let _apply = self.apply.read().unwrap_or_else(|e| e.into_inner());
        f(&mut ReadOnly(View(&self.db)))
    }

    fn sync(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| eio("flush", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofs_core::kv::{read, txn};
    use std::sync::Arc;

    fn counter(t: &mut dyn Txn) -> Result<u64> {
        Ok(t.get(b"n")?
            .map(|v| u64::from_be_bytes(v.try_into().unwrap()))
            .unwrap_or(0))
    }

    #[test]
    fn concurrent_increments_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(SledKv::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        txn(&*kv, |t| {
                            let n = counter(t)?;
                            t.set(b"n", &(n + 1).to_be_bytes());
                            Ok(())
                        })
                        .unwrap();
                        // Readers run alongside and must never see a torn pair.
                        read(&*kv, |t| {
                            let a = t.get(b"a")?;
                            let b = t.get(b"b")?;
                            assert_eq!(a, b);
                            Ok(())
                        })
                        .unwrap();
                        txn(&*kv, |t| {
                            let n = counter(t)?.to_be_bytes();
                            t.set(b"a", &n);
                            t.set(b"b", &n);
                            Ok(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(read(&*kv, counter).unwrap(), 1600);
    }

    #[test]
    fn failed_txn_applies_nothing_and_reads_discard_writes() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SledKv::open(dir.path()).unwrap();
        let r: Result<()> = txn(&kv, |t| {
            t.set(b"x", b"1");
            Err(Errno::EEXIST)
        });
        assert_eq!(r, Err(Errno::EEXIST));
        read(&kv, |t| {
            t.set(b"y", b"2");
            assert_eq!(t.get(b"y")?, None);
            Ok(())
        })
        .unwrap();
        assert!(read(&kv, |t| t.scan(b"", b"\xff", 10)).unwrap().is_empty());
    }

    #[test]
    fn scan_merges_buffered_writes() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SledKv::open(dir.path()).unwrap();
        txn(&kv, |t| {
            for i in 0..10u8 {
                t.set(&[b'k', i], &[i]);
            }
            t.set(b"l", b"outside");
            Ok(())
        })
        .unwrap();
        let got = txn(&kv, |t| {
            for i in 0..6u8 {
                t.delete(&[b'k', i]);
            }
            t.set(&[b'k', 7], b"new");
            t.set(&[b'k', 20], b"x");
            t.scan(b"k", b"l", 3)
        })
        .unwrap();
        let want: Vec<KvPair> = vec![
            (vec![b'k', 6], vec![6]),
            (vec![b'k', 7], b"new".to_vec()),
            (vec![b'k', 8], vec![8]),
        ];
        assert_eq!(got, want);
        let all = read(&kv, |t| t.scan(b"k", b"l", 100)).unwrap();
        assert_eq!(all.len(), 5);
        assert!(read(&kv, |t| t.scan(b"l", b"k", 100)).unwrap().is_empty());
    }

    #[test]
    fn synced_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let kv = SledKv::open(dir.path()).unwrap();
            txn(&kv, |t| {
                t.set(b"durable", b"yes");
                Ok(())
            })
            .unwrap();
            kv.sync().unwrap();
        }
        let kv = SledKv::open_with(dir.path(), false).unwrap();
        assert_eq!(
            read(&kv, |t| t.get(b"durable")).unwrap(),
            Some(b"yes".to_vec())
        );
    }

    #[test]
    fn second_open_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledKv::open(dir.path()).unwrap();
        let err = SledKv::open(dir.path()).unwrap_err();
        assert!(matches!(err, MetaError::Busy { .. }), "{err:?}");
        assert!(err.to_string().contains("mounted"), "{err}");
    }

    #[test]
    fn empty_directory_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let err = SledKv::open_with(dir.path(), false).unwrap_err();
        assert!(matches!(err, MetaError::NotFound { .. }), "{err:?}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
