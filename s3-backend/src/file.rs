//! A crash-safe object store in a local directory (the "bucket").
//!
//! A key `a/b/c` is the file `ROOT/a/b/c`. Objects are written to a temporary file in
//! the same directory, fsynced, renamed over the final name and the directory fsynced,
//! so a crash leaves either the old object, the new one or none — never a partial one —
//! and a put that returned is durable. Temporary files start with `.tmp.`, which no key
//! component may, so listings never show them; ones left behind by a crash are removed
//! when the store is opened.

use crate::error::StoreError;
use crate::key::{validate_key, TMP_PREFIX};
use crate::{Bytes, ObjectInfo, ObjectStore};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Temporary files older than this are leftovers of a crashed writer: no live put takes
/// an hour between creating its file and renaming it.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Makes temporary names unique within this process (the pid covers other processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Objects as files under a root directory.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
}

/// Whether an I/O error means "no such object": the file, or one of its parent
/// directories, is missing, or a parent is a file.
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FileStore {
    /// Opens the bucket directory `root`. Without `create` it must exist; with
    /// `create` it is made. Stale temporary files are removed in the background (see
    /// [`STALE_TEMP_AGE`]).
    pub fn open(root: &Path, create: bool) -> Result<FileStore, StoreError> {
        if !root.exists() {
            if !create {
                return Err(StoreError::Config(format!(
                    "the bucket directory {} does not exist: check the bucket path, or create the volume with `ferrofs format`",
                    root.display()
                )));
            }
            fs::create_dir_all(root).map_err(|e| {
                StoreError::io("create bucket directory", &root.display().to_string(), e)
            })?;
        }
        if !root.is_dir() {
            return Err(StoreError::Config(format!(
                "the bucket {} is not a directory",
                root.display()
            )));
        }
        let store = FileStore {
            root: root.to_path_buf(),
        };
        // Sweeping walks the whole bucket, which takes long for millions of objects:
        // do it in the background so that opening (and mounting) stays fast.
        let sweeper = FileStore {
            root: store.root.clone(),
        };
        let _ = std::thread::Builder::new()
            .name("ferrofs-tmp-sweep".into())
            .spawn(move || match sweeper.remove_stale_temp_files(STALE_TEMP_AGE) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(removed = n, root = %sweeper.root.display(), "removed stale temporary objects")
                }
                // Leftovers only waste space; failing to remove them must not stop a mount.
                Err(e) => {
                    tracing::warn!(error = %e, root = %sweeper.root.display(), "cannot remove stale temporary objects")
                }
            });
        Ok(store)
    }

    /// The bucket directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Creates `dir` and its missing ancestors below the root, fsyncing each new
    /// directory's parent so the new entries survive a crash with the object.
    fn make_dirs(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut d = dir;
        while d != self.root && !d.is_dir() {
            missing.push(d);
            d = match d.parent() {
                Some(p) => p,
                None => break,
            };
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(d) {
                Ok(()) => sync_dir(d.parent().unwrap_or(&self.root))?,
                // Another writer made it first: that writer syncs its parent.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn temp_path(dir: &Path, key: &str) -> PathBuf {
        let base = key.rsplit('/').next().unwrap_or(key);
        // Keep the name under NAME_MAX: a long key name is cut at a char boundary.
        let mut cut = base.len().min(128);
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        dir.join(format!(
            "{TMP_PREFIX}{}.{}.{n}",
            &base[..cut],
            std::process::id()
        ))
    }

    fn put_inner(&self, path: &Path, tmp: &Path, data: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(tmp, path)?;
        sync_dir(path.parent().unwrap_or(&self.root))
    }

    /// Removes temporary files under the root last modified more than `older_than`
    /// ago; returns how many were removed.
    pub fn remove_stale_temp_files(&self, older_than: Duration) -> Result<usize, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        let mut dirs = vec![self.root.clone()];
        let err = |e, p: &Path| {
            StoreError::io("remove stale temporary files", &p.display().to_string(), e)
        };
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).map_err(|e| err(e, &dir))? {
                let entry = entry.map_err(|e| err(e, &dir))?;
                let ft = entry.file_type().map_err(|e| err(e, &entry.path()))?;
                if ft.is_dir() {
                    dirs.push(entry.path());
                    continue;
                }
                let is_tmp = entry.file_name().to_string_lossy().starts_with(TMP_PREFIX);
                if !is_tmp || !ft.is_file() {
                    continue;
                }
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if stale {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if is_missing(&e) => {}
                        Err(e) => return Err(err(e, &entry.path())),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Lists `dir` (whose keys start with `key_prefix`, "" or ending in '/') in key order
    /// into `out`, skipping subtrees that cannot hold a wanted key.
    fn walk(
        &self,
        dir: &Path,
        key_prefix: &str,
        want: &Want<'_>,
        out: &mut Vec<ObjectInfo>,
    ) -> Result<(), StoreError> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(StoreError::io("list", key_prefix, e)),
        };
        // Sort a directory as "name/" so that its keys ("name/x") sort where they
        // belong among sibling files: "a.b" < "a/x" because '.' < '/'.
        let mut entries: Vec<(String, bool)> = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| StoreError::io("list", key_prefix, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: cannot be a key
            };
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            match entry.file_type() {
                Ok(ft) if ft.is_dir() => entries.push((format!("{key_prefix}{name}/"), true)),
                Ok(ft) if ft.is_file() => entries.push((format!("{key_prefix}{name}"), false)),
                _ => {}
            }
        }
        entries.sort_unstable();
        for (key, is_dir) in entries {
            if out.len() >= want.limit {
                return Ok(());
            }
            let path = self.root.join(&key);
            if is_dir {
                if want.may_hold(&key) {
                    self.walk(&path, &key, want, out)?;
                }
            } else if want.takes(&key) {
                match fs::metadata(&path) {
                    Ok(m) => out.push(ObjectInfo {
                        key,
                        size: m.len(),
                        modified: mtime(&m),
                    }),
                    Err(e) if is_missing(&e) => {} // deleted meanwhile
                    Err(e) => return Err(StoreError::io("list", &key, e)),
                }
            }
        }
        Ok(())
    }
}

/// What a listing asks for.
struct Want<'a> {
    prefix: &'a str,
    start_after: &'a str,
    limit: usize,
}

impl Want<'_> {
    fn takes(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && key > self.start_after
    }

    /// Whether the subtree of keys starting with `dir` ("a/b/") can hold a wanted key.
    fn may_hold(&self, dir: &str) -> bool {
        let prefix_ok = dir.starts_with(self.prefix) || self.prefix.starts_with(dir);
        // Every key under `dir` is <= start_after iff start_after sorts after `dir`
        // without being inside it.
        let all_before = dir < self.start_after && !self.start_after.starts_with(dir);
        prefix_ok && !all_before
    }
}

impl ObjectStore for FileStore {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dirs(&dir)
            .map_err(|e| StoreError::io("put (create directory)", key, e))?;
        let tmp = Self::temp_path(&dir, key);
        self.put_inner(&path, &tmp, &data).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StoreError::io("put", key, e)
        })
    }

    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        let not_found = || StoreError::NotFound(key.to_string());
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_missing(&e) => return Err(not_found()),
            Err(e) => return Err(StoreError::io("get", key, e)),
        };
        let meta = f.metadata().map_err(|e| StoreError::io("get", key, e))?;
        if !meta.is_file() {
            return Err(not_found());
        }
        let size = meta.len();
        let start = offset.min(size);
        let end = len.map_or(size, |n| start.saturating_add(n).min(size));
        let mut buf = vec![0u8; (end - start) as usize];
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], start + done as u64) {
                Ok(0) => break, // objects are immutable, but be safe against a short file
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::io("get", key, e)),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let path = self.path_of(key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: m.len(),
                modified: mtime(&m),
            })),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(StoreError::io("head", key, e)),
        }
    }

    /// Removes the object. The directory is not fsynced: a delete undone by a crash
    /// only leaves an unreferenced object, which `gc` finds and removes again.
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(_) if path.is_dir() => Ok(()), // a directory is no object
            Err(e) => Err(StoreError::io("delete", key, e)),
        }
    }

    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Start in the deepest directory the prefix names. Its directory part must be a
        // valid key path (else no key has this prefix, and joining it could leave root).
        let (dir, key_prefix) = match prefix.rfind('/') {
            Some(i) => {
                if validate_key(&prefix[..i]).is_err() {
                    return Ok(out);
                }
                (self.root.join(&prefix[..i]), &prefix[..=i])
            }
            None => (self.root.clone(), ""),
        };
        let want = Want {
            prefix,
            start_after,
            limit,
        };
        if want.may_hold(key_prefix) {
            self.walk(&dir, key_prefix, &want, &mut out)?;
        }
        Ok(out)
    }
}

/// A file's modification time in Unix seconds.
fn mtime(m: &fs::Metadata) -> Option<u64> {
    let t = m.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}
