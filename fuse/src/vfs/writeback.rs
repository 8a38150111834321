//! Writeback (`--writeback`): blocks of committed slices are *staged* in the local
//! block cache (written and fsynced there) instead of uploaded before the commit; this
//! queue uploads them in the background, oldest first, retrying until the object store
//! takes them. Blocks staged by an earlier run that crashed are found in the cache dirs
//! at mount and queued again, if their commit landed (`Vfs::resume_staged`).
//!
//! The trade-off: `close` and `fsync` return once the blocks are on the local disk and
//! the metadata is committed (synced, for `fsync`), so a lost disk loses what was not
//! yet uploaded, and other clients cannot read those blocks until they are uploaded.

use super::cache::BlockCache;
use ferrofs_core::chunk::BlockKey;
use ferrofs_core::meta::Meta;
use ferrofs_core::SliceId;
use ferrofs_s3_backend::ObjectStore;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a worker waits after a failed upload before taking the next block.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queue {
    keys: VecDeque<BlockKey>,
    /// Blocks taken by a worker and not yet uploaded.
    busy: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
    stop: AtomicBool,
    store: Arc<dyn ObjectStore>,
    cache: Arc<BlockCache>,
    meta: Arc<Meta>,
    /// Uploaded slices whose `W` mark could not be cleared yet (retried).
    unmarked: Mutex<Vec<SliceId>>,
}

/// The background uploader of staged blocks.
pub struct Writeback {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Writeback {
    /// An uploader with `threads` workers (0: uploads run only in [`Self::upload_some`]).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cache: Arc<BlockCache>,
        meta: Arc<Meta>,
        threads: usize,
    ) -> Writeback {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            store,
            cache,
            meta,
            unmarked: Mutex::default(),
        });
        let workers = (0..threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("ferrofs-writeback-{i}"))
                    .spawn(move || work(&s))
                    .expect("spawn a writeback thread")
            })
            .collect();
        Writeback { shared, workers }
    }

    pub fn cache(&self) -> &Arc<BlockCache> {
        &self.shared.cache
    }

    /// Queues staged blocks for upload.
    pub fn enqueue(&self, keys: impl IntoIterator<Item = BlockKey>) {
        lock(&self.shared.queue).keys.extend(keys);
        self.shared.changed.notify_all();
    }

    /// Blocks staged and not yet uploaded.
    pub fn backlog(&self) -> usize {
        let q = lock(&self.shared.queue);
        q.keys.len() + q.busy
    }

    /// Uploads up to `limit` queued blocks on this thread; returns how many went up.
    pub fn upload_some(&self, limit: usize) -> usize {
        clear_marks(&self.shared);
        let mut done = 0;
        for _ in 0..limit {
            let Some(key) = lock(&self.shared.queue).keys.pop_front() else {
                break;
            };
            if upload(&self.shared, &key) {
                done += 1;
            } else {
                lock(&self.shared.queue).keys.push_back(key);
                break;
            }
        }
        done
    }

    /// Waits up to `limit` for the backlog to drain; returns what is left.
    pub fn drain(&self, limit: Duration) -> usize {
        let deadline = std::time::Instant::now() + limit;
        let mut q = lock(&self.shared.queue);
        while q.keys.len() + q.busy > 0 {
            let now = std::time::Instant::now();
            if now >= deadline || self.workers.is_empty() {
                break;
            }
            q = self
                .shared
                .changed
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        q.keys.len() + q.busy
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn work(s: &Shared) {
    loop {
        let key = {
            let mut q = lock(&s.queue);
            loop {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(k) = q.keys.pop_front() {
                    q.busy += 1;
                    break k;
                }
                q = s.changed.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let ok = upload(s, &key);
        {
            let mut q = lock(&s.queue);
            q.busy -= 1;
            if !ok {
                q.keys.push_back(key);
            }
        }
        s.changed.notify_all();
        if !ok {
            std::thread::sleep(RETRY_PAUSE);
        }
    }
}

/// Uploads one staged block. False: try again later. A staged block whose cache dir
/// failed is gone: that is logged as data loss, and not retried.
fn upload(s: &Shared, key: &BlockKey) -> bool {
    let name = key.object_name();
    let object = match s.cache.read_staged(key) {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if s.cache.is_staged(key) {
                return false; // its dir answered oddly; try again
            }
            tracing::error!(
                object = %name,
                "the cache dir of a staged block failed before it was uploaded; if the dir comes back, the next mount uploads it"
            );
            return true;
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::error!(
                object = %name,
                "a staged block is damaged on the cache disk ({e}); its data is lost"
            );
            s.cache.drop_staged(key);
            // It will never be uploaded: gc may have the slice once nothing else of
            // it is staged.
            if !s.cache.slice_is_staged(key.slice) {
                lock(&s.unmarked).push(key.slice);
                clear_marks(s);
            }
            return true;
        }
        Err(e) => {
            tracing::warn!(object = %name, "cannot read a staged block, will retry: {e}");
            return false;
        }
    };
    match s.store.put(&name, object.into()) {
        Ok(()) => {
            s.cache.uploaded(key);
            if !s.cache.slice_is_staged(key.slice) {
                // The whole slice is in the store: gc may collect it from now on.
                lock(&s.unmarked).push(key.slice);
            }
            clear_marks(s);
            true
        }
        Err(e) => {
            tracing::warn!(object = %name, "writeback upload failed, will retry: {e}");
            false
        }
    }
}

/// Clears the `W` marks of uploaded slices; what fails is tried again later.
fn clear_marks(s: &Shared) {
    let ids = std::mem::take(&mut *lock(&s.unmarked));
    for (i, id) in ids.iter().enumerate() {
        if let Err(e) = s.meta.slice_uploaded(*id) {
            tracing::warn!(
                slice = id.0,
                "cannot mark an uploaded slice, will retry: {e}"
            );
            lock(&s.unmarked).extend_from_slice(&ids[i..]);
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
