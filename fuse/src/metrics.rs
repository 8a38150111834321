//! Per-mount metrics (issue 8): what this one client is doing, in the Prometheus text
//! format (OpenMetrics, through the Prometheus project's `prometheus-client`), served on
//! `--metrics HOST:PORT` at `/metrics`, and as a JSON snapshot for `ferrofs stats`.
//!
//! Measured where it happens: FUSE operations ([`OpTimer`], one per request), metadata
//! transactions ([`MeteredKv`]: latency, attempts beyond the first, errors) and
//! object-store requests ([`MeteredStore`]: count, errors, bytes, latency by op). Read at
//! scrape time from the counters the client keeps anyway ([`VfsCollector`]): the block
//! cache, the staging backlog, cache-group peer traffic, rate-limiter waits, used space
//! and inodes. Every name starts with `ferrofs_`; ARCHITECTURE.md lists them.

use crate::vfs::Vfs;
use ferrofs_core::kv::{Kv, Txn};
use ferrofs_s3_backend::{Bytes, ObjectInfo, ObjectStore, StoreError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirLabel {
    direction: String,
}

fn latency() -> Histogram {
    // 50 µs to ~1.6 s, doubling.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

type Hist = Family<OpLabel, Histogram, fn() -> Histogram>;

/// A handle on the `op` member of a family. The family's lock guard ends here: holding
/// it while another member is created would deadlock.
fn member(family: &Hist, op: &str) -> Histogram {
    let guard = family.get_or_create(&OpLabel { op: op.to_string() });
    guard.clone()
}

/// One FUSE operation's histogram (a handle into the family, looked up once) and
/// totals for `ferrofs stats`.
struct OpTotals {
    histogram: Histogram,
    count: AtomicU64,
    nanos: AtomicU64,
}

/// The metrics of one client process.
pub struct Metrics {
    registry: Mutex<Registry>,
    fuse_ops: Hist,
    fuse_totals: Mutex<BTreeMap<&'static str, Arc<OpTotals>>>,
    /// The `read` and `write` members of the transaction family, looked up once.
    meta_read: Histogram,
    meta_write: Histogram,
    meta_retries: Counter,
    meta_errors: Counter,
    object_requests: Family<OpLabel, Counter>,
    object_errors: Family<OpLabel, Counter>,
    object_latency: Hist,
    object_bytes: Family<DirLabel, Counter>,
    started: Instant,
    /// Log every FUSE request (op and latency) at info level, target `ferrofs::access`;
    /// switched at runtime through the control socket (`ferrofs access-log`).
    access_log: std::sync::atomic::AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("ferrofs");
        let fuse_ops: Hist = Family::new_with_constructor(latency);
        let meta_txns: Hist = Family::new_with_constructor(latency);
        let object_latency: Hist = Family::new_with_constructor(latency);
        let m = Metrics {
            fuse_ops: fuse_ops.clone(),
            fuse_totals: Mutex::default(),
            meta_read: member(&meta_txns, "read"),
            meta_write: member(&meta_txns, "write"),
            meta_retries: Counter::default(),
            meta_errors: Counter::default(),
            object_requests: Family::default(),
            object_errors: Family::default(),
            object_latency: object_latency.clone(),
            object_bytes: Family::default(),
            started: Instant::now(),
            access_log: std::sync::atomic::AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
        };
        registry.register(
            "fuse_op_duration_seconds",
            "Latency of FUSE requests, by operation",
            fuse_ops,
        );
        registry.register(
            "meta_txn_duration_seconds",
            "Latency of metadata transactions (op: read or write), retries included",
            meta_txns,
        );
        registry.register(
            "meta_txn_retries",
            "Metadata transaction attempts beyond the first (conflicts)",
            m.meta_retries.clone(),
        );
        registry.register(
            "meta_txn_errors",
            "Metadata transactions that failed",
            m.meta_errors.clone(),
        );
        registry.register(
            "object_requests",
            "Object-store requests, by operation",
            m.object_requests.clone(),
        );
        registry.register(
            "object_errors",
            "Object-store requests that failed (after retries), by operation",
            m.object_errors.clone(),
        );
        registry.register(
            "object_request_duration_seconds",
            "Latency of object-store requests, retries included, by operation",
            object_latency,
        );
        registry.register(
            "object_bytes",
            "Bytes moved to (up) and from (down) the object store",
            m.object_bytes.clone(),
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        Arc::new(m)
    }

    /// Adds the client's own counters (read at each scrape).
    pub fn watch(&self, vfs: &Arc<Vfs>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register_collector(Box::new(VfsCollector {
                vfs: Arc::downgrade(vfs),
            }));
    }

    /// Times one FUSE request until the guard is dropped. The request runs in a `fuse`
    /// span (debug level: with `--log-level debug` every line it logs names its op).
    pub fn op(self: &Arc<Self>, op: &'static str) -> OpTimer {
        OpTimer {
            metrics: self.clone(),
            op,
            start: Instant::now(),
            _span: tracing::debug_span!("fuse", op).entered(),
        }
    }

    /// Turns the access log on or off; returns whether it was on.
    pub fn set_access_log(&self, on: bool) -> bool {
        self.access_log.swap(on, Ordering::Relaxed)
    }

    pub fn access_log(&self) -> bool {
        self.access_log.load(Ordering::Relaxed)
    }

    /// Per request: one map lookup and atomic adds; the family (a label string and its
    /// lock) is touched only the first time an operation is seen.
    fn record_op(&self, op: &'static str, secs: f64, nanos: u64) {
        let t = self
            .fuse_totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_insert_with(|| {
                Arc::new(OpTotals {
                    histogram: member(&self.fuse_ops, op),
                    count: AtomicU64::new(0),
                    nanos: AtomicU64::new(0),
                })
            })
            .clone();
        t.histogram.observe(secs);
        t.count.fetch_add(1, Ordering::Relaxed);
        t.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!("cannot encode the metrics: {e}");
        }
        out
    }

    /// A snapshot for `ferrofs stats`: per FUSE op (count, total ns), object requests
    /// and bytes.
    pub fn snapshot(&self) -> serde_json::Value {
        let ops: serde_json::Map<String, serde_json::Value> = self
            .fuse_totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(op, t)| {
                let v = serde_json::json!([
                    t.count.load(Ordering::Relaxed),
                    t.nanos.load(Ordering::Relaxed)
                ]);
                (op.to_string(), v)
            })
            .collect();
        let count = |f: &Family<OpLabel, Counter>, op: &str| {
            f.get_or_create(&OpLabel { op: op.to_string() }).get()
        };
        let bytes = |d: &str| {
            self.object_bytes
                .get_or_create(&DirLabel {
                    direction: d.to_string(),
                })
                .get()
        };
        let errors: u64 = ["get", "put", "head", "delete", "list"]
            .iter()
            .map(|op| count(&self.object_errors, op))
            .sum();
        serde_json::json!({
            "uptime_secs": self.started.elapsed().as_secs_f64(),
            "fuse": ops,
            "object": {
                "get": count(&self.object_requests, "get"),
                "put": count(&self.object_requests, "put"),
                "errors": errors,
                "bytes_down": bytes("down"),
                "bytes_up": bytes("up"),
            },
            "meta": { "retries": self.meta_retries.get(), "errors": self.meta_errors.get() },
        })
    }

    /// Serves `/metrics` on `listen` from a thread; returns the address it got.
    pub fn serve(self: &Arc<Self>, listen: &str) -> std::io::Result<std::net::SocketAddr> {
        let listener = std::net::TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("ferrofs-metrics".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let Some(m) = me.upgrade() else { return };
                    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                    let _ = answer(&m, conn);
                }
            })?;
        Ok(addr)
    }
}

/// One HTTP request on the metrics port: `GET /metrics` (or `/`) gets the text.
fn answer(m: &Metrics, conn: std::net::TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // The rest of the request head.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut out = conn;
    let path = line.split_whitespace().nth(1).unwrap_or("");
    if line.starts_with("GET ") && (path == "/metrics" || path == "/") {
        let body = m.render();
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        let body = "not found: the metrics are at /metrics\n";
        write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

/// Records a FUSE request's latency when dropped.
pub struct OpTimer {
    metrics: Arc<Metrics>,
    op: &'static str,
    start: Instant,
    _span: tracing::span::EnteredSpan,
}

impl Drop for OpTimer {
    fn drop(&mut self) {
        let d = self.start.elapsed();
        self.metrics
            .record_op(self.op, d.as_secs_f64(), d.as_nanos() as u64);
        if self.metrics.access_log() {
            tracing::info!(target: "ferrofs::access", op = self.op, micros = d.as_micros() as u64, "request");
        }
    }
}

/// A metadata engine whose transactions are timed and counted.
pub struct MeteredKv {
    pub inner: Arc<dyn Kv>,
    pub metrics: Arc<Metrics>,
}

impl MeteredKv {
    fn run(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> ferrofs_core::Result<()>,
        read: bool,
    ) -> ferrofs_core::Result<()> {
        let start = Instant::now();
        let mut attempts = 0u64;
        let mut counted = |t: &mut dyn Txn| {
            attempts += 1;
            f(t)
        };
        let r = if read {
            self.inner.read(&mut counted)
        } else {
            self.inner.txn(&mut counted)
        };
        let histogram = if read {
            &self.metrics.meta_read
        } else {
            &self.metrics.meta_write
        };
        histogram.observe(start.elapsed().as_secs_f64());
        if attempts > 1 {
            self.metrics.meta_retries.inc_by(attempts - 1);
        }
        if r.is_err() {
            self.metrics.meta_errors.inc();
        }
        r
    }
}

impl Kv for MeteredKv {
    fn txn(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> ferrofs_core::Result<()>,
    ) -> ferrofs_core::Result<()> {
        self.run(f, false)
    }

    fn read(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> ferrofs_core::Result<()>,
    ) -> ferrofs_core::Result<()> {
        self.run(f, true)
    }

    fn sync(&self) -> ferrofs_core::Result<()> {
        self.inner.sync()
    }
}

/// An object store whose requests are counted and timed.
#[derive(Debug)]
pub struct MeteredStore {
    pub inner: Arc<dyn ObjectStore>,
    pub metrics: Arc<MetricsHandle>,
}

/// `Metrics` for a `Debug` store.
pub struct MetricsHandle(pub Arc<Metrics>);

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metrics")
    }
}

impl MeteredStore {
    fn timed<R>(
        &self,
        op: &str,
        f: impl FnOnce() -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let m = &self.metrics.0;
        let label = OpLabel { op: op.to_string() };
        m.object_requests.get_or_create(&label).inc();
        let start = Instant::now();
        let r = f();
        m.object_latency
            .get_or_create(&label)
            .observe(start.elapsed().as_secs_f64());
        if r.is_err() {
            m.object_errors.get_or_create(&label).inc();
        }
        r
    }

    fn bytes(&self, direction: &str, n: usize) {
        self.metrics
            .0
            .object_bytes
            .get_or_create(&DirLabel {
                direction: direction.to_string(),
            })
            .inc_by(n as u64);
    }
}

impl ObjectStore for MeteredStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let n = data.len();
        let r = self.timed("put", || self.inner.put(key, data));
        if r.is_ok() {
            self.bytes("up", n);
        }
        r
    }

    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        let r = self.timed("get", || self.inner.get(key, offset, len));
        if let Ok(d) = &r {
            self.bytes("down", d.len());
        }
        r
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.timed("head", || self.inner.head(key))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.timed("delete", || self.inner.delete(key))
    }

    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        self.timed("list", || self.inner.list(prefix, start_after, limit))
    }
}

/// The client's own counters, read at each scrape.
#[derive(Debug)]
struct VfsCollector {
    vfs: Weak<Vfs>,
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    let m = e.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for VfsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(vfs) = self.vfs.upgrade() else {
            return Ok(());
        };
        if let Some(c) = vfs.block_cache() {
            let c = c.counters();
            counter(&mut e, "blockcache_hits", "Block cache hits", c.index.hits)?;
            counter(
                &mut e,
                "blockcache_hit_bytes",
                "Bytes of block cache hits",
                c.index.hit_bytes,
            )?;
            counter(
                &mut e,
                "blockcache_misses",
                "Block cache misses",
                c.index.misses,
            )?;
            counter(
                &mut e,
                "blockcache_evictions",
                "Blocks evicted from the cache",
                c.index.evicted,
            )?;
            counter(
                &mut e,
                "blockcache_evicted_bytes",
                "Bytes evicted from the cache",
                c.index.evicted_bytes,
            )?;
            counter(
                &mut e,
                "blockcache_admitted_bytes",
                "Bytes admitted to the cache",
                c.index.admitted_bytes,
            )?;
            counter(
                &mut e,
                "blockcache_checksum_failures",
                "Cached blocks that failed their checksums (dropped and refetched)",
                c.checksum_failures,
            )?;
            gauge(
                &mut e,
                "blockcache_blocks",
                "Blocks in the cache",
                c.blocks as i64,
            )?;
            gauge(
                &mut e,
                "blockcache_bytes",
                "Bytes in the cache",
                c.bytes as i64,
            )?;
        }
        gauge(
            &mut e,
            "staging_blocks",
            "Blocks staged by writeback and not uploaded yet",
            vfs.writeback_backlog() as i64,
        )?;
        counter(
            &mut e,
            "object_block_gets",
            "GETs of block data sent to the object store",
            vfs.store_gets(),
        )?;
        if let Some(g) = vfs.group() {
            let c = g.stats.snapshot();
            counter(&mut e, "peer_calls", "Calls to cache-group peers", c.calls)?;
            counter(&mut e, "peer_hits", "Blocks peers gave (verified)", c.hits)?;
            counter(
                &mut e,
                "peer_bytes_in",
                "Bytes of blocks from peers",
                c.bytes_in,
            )?;
            counter(
                &mut e,
                "peer_failures",
                "Peer calls that failed",
                c.failures,
            )?;
            counter(
                &mut e,
                "peer_timeouts",
                "Peer calls that timed out",
                c.timeouts,
            )?;
            counter(
                &mut e,
                "peer_corrupt",
                "Peer answers that failed their checksums",
                c.corrupt,
            )?;
            counter(
                &mut e,
                "peer_skipped",
                "Peer calls skipped by an open breaker",
                c.skipped,
            )?;
            counter(&mut e, "peer_served", "Requests served to peers", c.served)?;
            counter(
                &mut e,
                "peer_bytes_out",
                "Bytes of blocks served to peers",
                c.bytes_out,
            )?;
            counter(
                &mut e,
                "peer_pulled",
                "Blocks pulled from a previous owner",
                c.pulled,
            )?;
        }
        if let Some(l) = vfs.limits() {
            for (dir, l) in [("upload", &l.upload), ("download", &l.download)] {
                let Some(l) = l else { continue };
                gauge(
                    &mut e,
                    &format!("{dir}_limit_bytes_per_second"),
                    "The rate limit in force (0: none)",
                    l.rate() as i64,
                )?;
                counter(
                    &mut e,
                    &format!("{dir}_limit_waits"),
                    "Transfers that waited for the rate limit",
                    l.waits.load(Ordering::Relaxed),
                )?;
            }
        }
        if let Ok(s) = vfs.meta().statfs() {
            gauge(
                &mut e,
                "used_bytes",
                "Bytes used by the volume",
                s.used_bytes as i64,
            )?;
            gauge(
                &mut e,
                "used_inodes",
                "Inodes used by the volume",
                s.used_inodes as i64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofs_core::kv::MemKv;
    use ferrofs_s3_backend::MemStore;

    #[test]
    fn requests_are_counted_timed_and_rendered() {
        let m = Metrics::new();
        let store = MeteredStore {
            inner: Arc::new(MemStore::new()),
            metrics: Arc::new(MetricsHandle(m.clone())),
        };
        store.put("a", Bytes::from_static(b"hello")).unwrap();
        assert_eq!(store.get("a", 0, None).unwrap(), b"hello");
        assert!(store.get("missing", 0, None).is_err());
        let kv = MeteredKv {
            inner: Arc::new(MemKv::new()),
            metrics: m.clone(),
        };
        ferrofs_core::kv::txn(&kv, |t| {
            t.set(b"k", b"v");
            Ok(())
        })
        .unwrap();
        drop(m.op("lookup"));
        drop(m.op("lookup"));
        let text = m.render();
        for want in [
            "ferrofs_object_requests_total{op=\"get\"} 2",
            "ferrofs_object_errors_total{op=\"get\"} 1",
            "ferrofs_object_bytes_total{direction=\"up\"} 5",
            "ferrofs_fuse_op_duration_seconds_count{op=\"lookup\"} 2",
            "ferrofs_meta_txn_duration_seconds_count{op=\"write\"} 1",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
        let s = m.snapshot();
        assert_eq!(s["fuse"]["lookup"][0], 2);
        assert_eq!(s["object"]["bytes_down"], 5);
    }
}
