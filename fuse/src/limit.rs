//! Per-client rate limits (`--upload-limit`, `--download-limit`), applied where bytes
//! cross the network: object-store puts and gets ([`LimitedStore`]), blocks from
//! cache-group peers ([`LimitedTransport`]) and blocks served to them
//! ([`LimitedService`]). `core::ratelimit::TokenBucket` decides how long each transfer
//! waits; a [`Limiter`] asks it with the monotonic clock and sleeps. Each transfer is
//! charged before it starts (a whole-object get by the volume's block size, corrected once
//! its length is known), so concurrency cannot overshoot the limit.

use crate::group::{BlockService, PeerError, Transport};
use ferrofs_core::cache::peer_wire::{Op, Reply};
use ferrofs_core::chunk::block::stored_len;
use ferrofs_core::chunk::BlockKey;
use ferrofs_core::ratelimit::{default_burst, TokenBucket};
use ferrofs_s3_backend::{Bytes, ObjectInfo, ObjectStore, Sleeper, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One direction's limit.
pub struct Limiter {
    bucket: Mutex<TokenBucket>,
    origin: Instant,
    sleeper: Arc<dyn Sleeper>,
    /// Transfers that had to wait, and the nanoseconds they waited.
    pub waits: AtomicU64,
    pub waited_ns: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limiter({} B/s)", self.rate())
    }
}

impl Limiter {
    /// A limit of `rate` bytes per second (0: none), sleeping with `sleeper`.
    pub fn new(rate: u64, sleeper: Arc<dyn Sleeper>) -> Arc<Limiter> {
        Arc::new(Limiter {
            bucket: Mutex::new(TokenBucket::new(rate, default_burst(rate), 0)),
            origin: Instant::now(),
            sleeper,
            waits: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
        })
    }

    /// A limit of `rate` bytes per second that sleeps the calling thread; `None` for 0.
    pub fn of(rate: u64) -> Option<Arc<Limiter>> {
        (rate > 0).then(|| Limiter::new(rate, Arc::new(ferrofs_s3_backend::ThreadSleeper)))
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn rate(&self) -> u64 {
        self.bucket.lock().unwrap_or_else(|e| e.into_inner()).rate()
    }

    /// Changes the limit from now on (a running client picking up a new default).
    pub fn set_rate(&self, rate: u64) {
        let now = self.now_ns();
        self.bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_rate(rate, default_burst(rate), now);
    }

    /// Waits until `n` more bytes may pass.
    pub fn pass(&self, n: u64) {
        let now = self.now_ns();
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(n, now);
        if wait > 0 {
            self.waits.fetch_add(1, Ordering::Relaxed);
            self.waited_ns.fetch_add(wait, Ordering::Relaxed);
            self.sleeper.sleep(Duration::from_nanos(wait));
        }
    }

    /// Corrects an estimate: `charged` bytes were passed, `actual` moved.
    fn settle(&self, charged: u64, actual: u64) {
        let now = self.now_ns();
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        if actual > charged {
            let _ = b.take(actual - charged, now);
        } else {
            b.refund(charged - actual, now);
        }
    }
}

/// How often a client rereads the volume's default limits.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(5);

/// The limits of one client.
#[derive(Clone, Default, Debug)]
pub struct Limits {
    pub upload: Option<Arc<Limiter>>,
    pub download: Option<Arc<Limiter>>,
}

impl Limits {
    /// Limits of `upload` and `download` bytes per second (0: none).
    pub fn new(upload: u64, download: u64) -> Limits {
        Limits {
            upload: Limiter::of(upload),
            download: Limiter::of(download),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.upload.is_none() && self.download.is_none()
    }

    /// A client's limits: its own (`Some`, fixed) or else the volume's defaults, which it
    /// follows; a followed direction always has a limiter (at rate 0 while unlimited), so
    /// a default set later applies to transfers already wrapped.
    pub fn of_client(own: (Option<u64>, Option<u64>), volume: (u64, u64)) -> Limits {
        let pick = |own: Option<u64>, volume: u64| match own {
            Some(r) => Limiter::of(r),
            None => Some(Limiter::new(
                volume,
                Arc::new(ferrofs_s3_backend::ThreadSleeper),
            )),
        };
        Limits {
            upload: pick(own.0, volume.0),
            download: pick(own.1, volume.1),
        }
    }

    /// Applies the volume's defaults `(upload, download)` to the directions the client
    /// did not set itself; true if a rate changed.
    pub fn follow(&self, own: (Option<u64>, Option<u64>), volume: (u64, u64)) -> bool {
        let mut changed = false;
        for (own, l, v, what) in [
            (own.0, &self.upload, volume.0, "upload"),
            (own.1, &self.download, volume.1, "download"),
        ] {
            if let (None, Some(l)) = (own, l) {
                if l.rate() != v {
                    tracing::info!(
                        "{what} limit is now {} (the volume's default)",
                        show_rate(v)
                    );
                    l.set_rate(v);
                    changed = true;
                }
            }
        }
        changed
    }

    /// The limits as JSON, for the control socket.
    pub fn json(&self) -> serde_json::Value {
        let one = |l: &Option<Arc<Limiter>>| match l {
            None => serde_json::Value::Null,
            Some(l) => serde_json::json!({
                "rate": l.rate(),
                "waits": l.waits.load(Ordering::Relaxed),
                "waited_ns": l.waited_ns.load(Ordering::Relaxed),
            }),
        };
        serde_json::json!({ "upload": one(&self.upload), "download": one(&self.download) })
    }
}

/// A rate for people: `unlimited` or MB/s.
pub fn show_rate(bytes_per_sec: u64) -> String {
    match bytes_per_sec {
        0 => "unlimited".into(),
        r => format!("{:.2} MB/s", r as f64 / 1e6),
    }
}

/// Rereads the volume's default limits every [`FOLLOW_EVERY`] until `stop` and applies
/// them to the directions the client did not set (nothing to do if it set both).
pub fn spawn_follower(
    meta: Arc<ferrofs_core::meta::Meta>,
    limits: Limits,
    own: (Option<u64>, Option<u64>),
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    if own.0.is_some() && own.1.is_some() {
        return None;
    }
    std::thread::Builder::new()
        .name("ferrofs-limits".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() < FOLLOW_EVERY {
                    continue;
                }
                last = Instant::now();
                match meta.read_settings() {
                    Ok(f) => {
                        limits.follow(own, (f.upload_limit, f.download_limit));
                    }
                    Err(e) => tracing::debug!("cannot reread the volume's limits: {e}"),
                }
            }
        })
        .ok()
}

/// An object store whose puts and gets stay within the limits.
#[derive(Debug)]
pub struct LimitedStore {
    inner: Arc<dyn ObjectStore>,
    limits: Limits,
    /// What a whole-object get of an object that is not a block is charged before its
    /// length is known.
    object_estimate: u64,
}

impl LimitedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, limits: Limits, block_size: u32) -> LimitedStore {
        LimitedStore {
            inner,
            limits,
            object_estimate: stored_len(block_size),
        }
    }
}

impl LimitedStore {
    /// The size of a whole object: a block object's name ends with its data length
    /// (`…/{slice}_{index}_{len}`), anything else is charged a block.
    fn whole_object_len(&self, key: &str) -> u64 {
        BlockKey::parse_object_name(key).map_or(self.object_estimate, |k| stored_len(k.len))
    }
}

impl ObjectStore for LimitedStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        if let Some(l) = &self.limits.upload {
            l.pass(data.len() as u64);
        }
        self.inner.put(key, data)
    }

    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        let Some(l) = &self.limits.download else {
            return self.inner.get(key, offset, len);
        };
        let charged = len.unwrap_or_else(|| self.whole_object_len(key));
        l.pass(charged);
        let got = self.inner.get(key, offset, len);
        l.settle(charged, got.as_ref().map_or(0, |d| d.len() as u64));
        got
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.inner.head(key)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }

    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix, start_after, limit)
    }
}

/// Blocks from peers count against the download limit (charged before the call, so a
/// wait never eats into the call's deadline).
pub struct LimitedTransport {
    pub inner: Arc<dyn Transport>,
    pub download: Arc<Limiter>,
}

impl Transport for LimitedTransport {
    fn call(
        &self,
        addr: &str,
        op: Op,
        local_only: bool,
        key: &BlockKey,
        timeout: Duration,
    ) -> Result<Reply, PeerError> {
        let charged = if op == Op::Get {
            stored_len(key.len)
        } else {
            0
        };
        self.download.pass(charged);
        let reply = self.inner.call(addr, op, local_only, key, timeout);
        let got = match &reply {
            Ok(Reply::Block(_, object)) => object.len() as u64,
            _ => 0,
        };
        self.download.settle(charged, got);
        reply
    }
}

/// Blocks served to peers count against the upload limit.
pub struct LimitedService {
    pub inner: Arc<dyn BlockService>,
    pub upload: Arc<Limiter>,
}

impl BlockService for LimitedService {
    fn serve(&self, op: Op, local_only: bool, key: &BlockKey) -> Reply {
        let reply = self.inner.serve(op, local_only, key);
        if let Reply::Block(_, object) = &reply {
            self.upload.pass(object.len() as u64);
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofs_s3_backend::MemStore;

    #[test]
    fn a_client_follows_the_volume_default_unless_it_set_its_own() {
        let l = Limits::of_client((Some(1000), None), (0, 0));
        assert_eq!(
            l.download.as_ref().unwrap().rate(),
            0,
            "followed, unlimited for now"
        );
        assert!(l.follow((Some(1000), None), (5000, 7000)));
        assert_eq!(l.upload.as_ref().unwrap().rate(), 1000, "its own wins");
        assert_eq!(l.download.as_ref().unwrap().rate(), 7000);
        assert!(!l.follow((Some(1000), None), (5000, 7000)));
        assert!(Limits::of_client((Some(0), Some(0)), (9, 9)).is_empty());
    }

    #[test]
    fn a_limited_store_moves_about_the_limit_per_second() {
        let limits = Limits::new(4 << 20, 4 << 20);
        let store = LimitedStore::new(Arc::new(MemStore::new()), limits, 1 << 20);
        let t = Instant::now();
        // 1 MiB of burst, then 8 MiB at 4 MiB/s: about 2 s each way.
        for i in 0..9 {
            store
                .put(&format!("k{i}"), Bytes::from(vec![0u8; 1 << 20]))
                .unwrap();
        }
        let up = t.elapsed();
        let t = Instant::now();
        for i in 0..9 {
            assert_eq!(store.get(&format!("k{i}"), 0, None).unwrap().len(), 1 << 20);
        }
        let down = t.elapsed();
        for d in [up, down] {
            assert!(
                d > Duration::from_millis(1800) && d < Duration::from_millis(2600),
                "{d:?}"
            );
        }
        let l = store.limits.upload.as_ref().unwrap();
        assert!(l.waits.load(Ordering::Relaxed) >= 7);
        let key = BlockKey {
            slice: ferrofs_core::SliceId(7),
            index: 1,
            len: 12_345,
        };
        assert_eq!(
            store.whole_object_len(&key.object_name()),
            stored_len(12_345)
        );
        assert_eq!(store.whole_object_len("setting"), stored_len(1 << 20));
    }

    /// Answers every get with a block at once.
    struct Instant1M;

    impl Transport for Instant1M {
        fn call(
            &self,
            _: &str,
            _: Op,
            _: bool,
            key: &BlockKey,
            _: Duration,
        ) -> Result<Reply, PeerError> {
            let data = vec![7u8; key.len as usize];
            Ok(Reply::Block(
                *key,
                ferrofs_core::chunk::block::encode_block(&data),
            ))
        }
    }

    impl BlockService for Instant1M {
        fn serve(&self, op: Op, local_only: bool, key: &BlockKey) -> Reply {
            self.call("", op, local_only, key, Duration::ZERO).unwrap()
        }
    }

    #[test]
    fn peer_traffic_counts_against_the_limits() {
        let key = BlockKey {
            slice: ferrofs_core::SliceId(1),
            index: 0,
            len: 1 << 20,
        };
        let limits = Limits::new(4 << 20, 4 << 20);
        let down = LimitedTransport {
            inner: Arc::new(Instant1M),
            download: limits.download.clone().unwrap(),
        };
        let up = LimitedService {
            inner: Arc::new(Instant1M),
            upload: limits.upload.clone().unwrap(),
        };
        let t = Instant::now();
        for _ in 0..9 {
            down.call("peer", Op::Get, false, &key, Duration::from_secs(1))
                .unwrap();
        }
        let d = t.elapsed();
        let t = Instant::now();
        for _ in 0..9 {
            up.serve(Op::Get, false, &key);
        }
        let u = t.elapsed();
        for e in [d, u] {
            assert!(
                e > Duration::from_millis(1800) && e < Duration::from_millis(2600),
                "{e:?}"
            );
        }
    }
}
