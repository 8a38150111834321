//! Where cached block objects are kept: a directory on a local disk ([`DiskDir`]) or
//! memory ([`MemDir`]), behind [`CacheDir`] so the simulator can put a faulty disk there.
//!
//! A cached block is the block object exactly as stored (data, per-64 KiB checksums,
//! magic) followed by a trailer naming its key (see `super::seal`), so a read verifies it
//! the same way as a fetched object and knows it is the right block. On disk:
//!
//! ```text
//! DIR/VOLUME-UUID/raw/chunks/{id/10^6}/{id/10^3}/{id}_{index}_{len}         cached
//! DIR/VOLUME-UUID/rawstaging/chunks/{id/10^6}/{id/10^3}/{id}_{index}_{len}  staged (writeback)
//! ```
//!
//! A file is written under a temporary name and renamed into place, so a crash leaves a
//! temp file (deleted by the next scan), never a partial block under a block's name;
//! staged files are fsynced (with their directory) before they count, as they may be
//! the only copy. A torn cached file is caught by its checksums on read.

use ferrofs_core::chunk::BlockKey;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A block found in a dir by [`CacheDir::scan`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Found {
    pub key: BlockKey,
    pub size: u64,
    pub staged: bool,
    /// Modification time (seconds), to restore eviction order oldest first.
    pub age: i64,
}

/// Storage of one cache dir.
pub trait CacheDir: Send + Sync {
    /// Where it is, for messages.
    fn describe(&self) -> String;
    /// The stored object of `key` (NotFound if absent).
    fn read(&self, key: &BlockKey, staged: bool) -> io::Result<Vec<u8>>;
    /// Stores the object of `key`; staged objects are durable when this returns.
    fn write(&self, key: &BlockKey, object: &[u8], staged: bool) -> io::Result<()>;
    /// Removes `key` (absent is not an error).
    fn remove(&self, key: &BlockKey, staged: bool) -> io::Result<()>;
    /// Turns a staged block into a cached one (it was uploaded).
    fn unstage(&self, key: &BlockKey) -> io::Result<()>;
    /// Every complete block in the dir; temp files and files of the wrong size are
    /// deleted on the way.
    fn scan(&self) -> io::Result<Vec<Found>>;
    /// Free and total bytes of the file system the dir is on (`None`: not a disk).
    fn space(&self) -> io::Result<Option<(u64, u64)>>;
    /// Whether the dir itself is still there (a vanished dir is a failed dir).
    fn exists(&self) -> bool;
}

/// A cache dir on a local file system.
pub struct DiskDir {
    root: PathBuf,
    temp_seq: AtomicU64,
}

impl DiskDir {
    /// Opens (creating if needed) the cache of volume `uuid` in `dir`.
    pub fn open(dir: &Path, uuid: &str) -> io::Result<DiskDir> {
        let root = dir.join(uuid);
        std::fs::create_dir_all(root.join("raw"))?;
        std::fs::create_dir_all(root.join("rawstaging"))?;
        Ok(DiskDir {
            root,
            temp_seq: AtomicU64::new(0),
        })
    }

    fn path(&self, key: &BlockKey, staged: bool) -> PathBuf {
        let area = if staged { "rawstaging" } else { "raw" };
        self.root.join(area).join(key.object_name())
    }

    fn scan_area(&self, staged: bool, out: &mut Vec<Found>) -> io::Result<()> {
        let area = self.root.join(if staged { "rawstaging" } else { "raw" });
        let mut leaves = Vec::new();
        for d1 in read_dir_or_empty(&area.join("chunks"))? {
            leaves.extend(read_dir_or_empty(&d1)?);
        }
        // Listing and stat-ing every file is I/O-bound on a cold disk: several threads
        // keep several requests in flight (a mount restores 200,000 blocks this way).
        let next = AtomicU64::new(0);
        let found = Mutex::new(Vec::new());
        let failed = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..SCAN_THREADS.min(leaves.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(dir) = leaves.get(i) else { return };
                    match scan_leaf(&area, dir, staged) {
                        Ok(mut f) => found
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .append(&mut f),
                        Err(e) => *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e),
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        out.append(&mut found.into_inner().unwrap_or_else(|e| e.into_inner()));
        Ok(())
    }
}

/// Threads listing a cache dir at mount.
const SCAN_THREADS: usize = 8;

/// The complete blocks in one leaf directory of an area; strays are deleted.
fn scan_leaf(area: &Path, dir: &Path, staged: bool) -> io::Result<Vec<Found>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for file in read_dir_or_empty(dir)? {
        let name = file.strip_prefix(area).ok().and_then(|p| p.to_str());
        let key = name.and_then(BlockKey::parse_object_name);
        let meta = match std::fs::symlink_metadata(&file) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match key {
            Some(key) if meta.is_file() && meta.len() == super::cache_file_len(&key) => {
                out.push(Found {
                    key,
                    size: meta.len(),
                    staged,
                    age: meta.mtime(),
                })
            }
            // A staged block cut short: the only copy of written data is damaged.
            Some(_) if staged && meta.is_file() => {
                tracing::error!(
                    file = %file.display(),
                    "a staged block is damaged (wrong size); the data written with it is lost"
                );
                let _ = std::fs::remove_file(&file);
            }
            // Temp files of a crashed write, partial or foreign files.
            _ if meta.is_file() => {
                tracing::debug!(file = %file.display(), "removing a stray cache file");
                let _ = std::fs::remove_file(&file);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn read_dir_or_empty(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.path())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl CacheDir for DiskDir {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn read(&self, key: &BlockKey, staged: bool) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(key, staged))
    }

    fn write(&self, key: &BlockKey, object: &[u8], staged: bool) -> io::Result<()> {
        let path = self.path(key, staged);
        let parent = path.parent().expect("block paths have a parent");
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = parent.join(format!("{}.tmp.{}.{seq}", key.slice.0, std::process::id()));
        let create = || std::fs::File::create(&temp);
        let mut f = match create() {
            // Subdirectories are made as needed, but never the dir itself: a cache disk
            // that was unmounted must not be recreated on the disk below it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.exists() => {
                std::fs::create_dir_all(parent)?;
                create()?
            }
            r => r?,
        };
        let written = f
            .write_all(object)
            .and_then(|()| if staged { f.sync_all() } else { Ok(()) });
        drop(f);
        if let Err(e) = written.and_then(|()| std::fs::rename(&temp, &path)) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        if staged {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    fn remove(&self, key: &BlockKey, staged: bool) -> io::Result<()> {
        match std::fs::remove_file(self.path(key, staged)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    fn unstage(&self, key: &BlockKey) -> io::Result<()> {
        let to = self.path(key, false);
        let rename = || std::fs::rename(self.path(key, true), &to);
        match rename() {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && to.parent().is_some_and(|p| !p.exists()) =>
            {
                std::fs::create_dir_all(to.parent().expect("has a parent"))?;
                rename()
            }
            r => r,
        }
    }

    fn scan(&self) -> io::Result<Vec<Found>> {
        let mut out = Vec::new();
        self.scan_area(true, &mut out)?;
        self.scan_area(false, &mut out)?;
        Ok(out)
    }

    fn space(&self) -> io::Result<Option<(u64, u64)>> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a NUL-terminated path and a zeroed out-parameter of the right type.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let frsize = st.f_frsize as u64;
        Ok(Some((
            st.f_bavail as u64 * frsize,
            st.f_blocks as u64 * frsize,
        )))
    }

    fn exists(&self) -> bool {
        self.root.join("raw").is_dir()
    }
}

/// A cache dir in memory (`--cache-dir memory`).
#[derive(Default)]
pub struct MemDir {
    blocks: Mutex<BTreeMap<(bool, BlockKey), Vec<u8>>>,
}

impl CacheDir for MemDir {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn read(&self, key: &BlockKey, staged: bool) -> io::Result<Vec<u8>> {
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks
            .get(&(staged, *key))
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn write(&self, key: &BlockKey, object: &[u8], staged: bool) -> io::Result<()> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks.insert((staged, *key), object.to_vec());
        Ok(())
    }

    fn remove(&self, key: &BlockKey, staged: bool) -> io::Result<()> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks.remove(&(staged, *key));
        Ok(())
    }

    fn unstage(&self, key: &BlockKey) -> io::Result<()> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let object = blocks
            .remove(&(true, *key))
            .ok_or(io::Error::from(io::ErrorKind::NotFound))?;
        blocks.insert((false, *key), object);
        Ok(())
    }

    fn scan(&self) -> io::Result<Vec<Found>> {
        Ok(Vec::new())
    }

    fn space(&self) -> io::Result<Option<(u64, u64)>> {
        Ok(None)
    }

    fn exists(&self) -> bool {
        true
    }
}
