//! The control socket of a running mount: commands such as `ferrofs warmup` reach the
//! mount process here (it owns the block cache). One Unix socket per mount, beside its
//! pid file (`$TMPDIR/ferrofs<mountpoint>.sock`), root-only (0600).
//!
//! Protocol: the client sends one JSON request line; the mount answers with JSON lines,
//! progress (`{"progress": …}`) and a last line (`{"done": …}` or `{"error": "…"}`).
//!
//! - `{"op": "warmup", "mode": "fill"|"check"|"evict", "inos": [..], "threads": N,
//!   "background": bool}`: warm-up of the files with these inodes.
//! - `{"op": "cache"}`: the block cache's counters.
//! - `{"op": "group"}`: the cache group's members and peer traffic, and the GETs this
//!   process sent to the object store (a mount's, or a `ferrofs cache-node`'s).
//! - `{"op": "stats"}`: counters for `ferrofs stats` (FUSE ops with total latency, object
//!   requests and bytes, cache and peer hits).
//! - `{"op": "access-log", "on": bool}`: logs every FUSE request (op, latency) to the
//!   mount's log, or stops.
//! - `{"op": "limits"}`: the rate limits in force (bytes/s, 0 unlimited) and their waits.

use crate::vfs::{Vfs, WarmMode, Warmed};
use ferrofs_core::Ino;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The control socket of the mount at `mountpoint`.
pub fn socket_path(mountpoint: &Path) -> PathBuf {
    super::umount::pid_file(mountpoint).with_extension("sock")
}

/// Serves the control socket until the process exits.
pub fn serve(mountpoint: &Path, vfs: Arc<Vfs>) {
    serve_at(socket_path(mountpoint), vfs)
}

/// Serves a control socket at `path` (a cache node's) until the process exits.
pub fn serve_at(path: PathBuf, vfs: Arc<Vfs>) {
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot serve the control socket {}: {e}", path.display());
            return;
        }
    };
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    let _ = std::thread::Builder::new()
        .name("ferrofs-control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let vfs = vfs.clone();
                let _ = std::thread::Builder::new()
                    .name("ferrofs-control-conn".into())
                    .spawn(move || handle(conn, &vfs));
            }
        });
}

fn handle(conn: UnixStream, vfs: &Arc<Vfs>) {
    let mut line = String::new();
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut out = conn;
    let reply = match serde_json::from_str::<Value>(&line) {
        Err(e) => json!({ "error": format!("bad request: {e}") }),
        Ok(req) => match req["op"].as_str() {
            Some("warmup") => warmup(&req, vfs, &mut out),
            Some("cache") => cache_counters(vfs),
            Some("group") => group_counters(vfs),
            Some("stats") => stats(vfs),
            Some("access-log") => match (vfs.metrics(), req["on"].as_bool()) {
                (Some(m), Some(on)) => json!({ "done": { "was": m.set_access_log(on), "on": on } }),
                (None, _) => json!({ "error": "this process keeps no metrics" }),
                (_, None) => json!({ "error": "access-log needs \"on\": true or false" }),
            },
            Some("limits") => match vfs.limits() {
                Some(l) => json!({ "done": l.json() }),
                None => json!({ "error": "this process has no rate limits" }),
            },
            other => json!({ "error": format!("unknown op {other:?}") }),
        },
    };
    let _ = writeln!(out, "{reply}");
}

fn cache_counters(vfs: &Vfs) -> Value {
    match vfs.block_cache() {
        None => json!({ "error": "this mount has no block cache (--cache-size 0)" }),
        Some(c) => {
            let c = c.counters();
            json!({ "done": {
                "blocks": c.blocks, "bytes": c.bytes, "restored": c.restored,
                "hits": c.index.hits, "hit_bytes": c.index.hit_bytes, "misses": c.index.misses,
                "admitted": c.index.admitted, "admitted_bytes": c.index.admitted_bytes,
                "evicted": c.index.evicted, "evicted_bytes": c.index.evicted_bytes,
                "rejected": c.index.rejected, "dropped": c.index.dropped,
                "failed_dirs": c.index.failed_dirs, "checksum_failures": c.checksum_failures,
                "staged_lost": c.index.staged_lost,
                "io_errors": c.io_errors, "staged_backlog": vfs.writeback_backlog(),
            }})
        }
    }
}

/// What `ferrofs stats` shows: the metrics' snapshot plus cache and peer counters.
fn stats(vfs: &Vfs) -> Value {
    let Some(m) = vfs.metrics() else {
        return json!({ "error": "this process keeps no metrics" });
    };
    let mut v = m.snapshot();
    if let Some(c) = vfs.block_cache() {
        let c = c.counters();
        v["cache"] = json!({ "hits": c.index.hits, "misses": c.index.misses,
                             "hit_bytes": c.index.hit_bytes, "bytes": c.bytes });
    }
    if let Some(g) = vfs.group() {
        let c = g.stats.snapshot();
        v["peers"] = json!({ "hits": c.hits, "bytes_in": c.bytes_in, "failures": c.failures,
                             "served": c.served, "bytes_out": c.bytes_out });
    }
    v["staging"] = json!(vfs.writeback_backlog());
    json!({ "done": v })
}

fn group_counters(vfs: &Vfs) -> Value {
    let Some(g) = vfs.group() else {
        return json!({ "error": "this process is in no cache group (--cache-group)",
                       "store_gets": vfs.store_gets() });
    };
    let c = g.stats.snapshot();
    let members: Vec<Value> = g
        .members()
        .into_iter()
        .map(|(id, weight, addr)| json!({ "id": id, "weight": weight, "addr": addr }))
        .collect();
    json!({ "done": {
        "group": g.name(), "sharing": g.sharing(), "members": members,
        "membership_changes": g.changes(), "store_gets": vfs.store_gets(),
        "calls": c.calls, "hits": c.hits, "bytes_in": c.bytes_in, "failures": c.failures,
        "timeouts": c.timeouts, "corrupt": c.corrupt, "skipped": c.skipped,
        "served": c.served, "bytes_out": c.bytes_out, "pulled": c.pulled,
    }})
}

/// Totals of a warm-up, shared by its worker threads.
#[derive(Default)]
struct Totals {
    files: AtomicU64,
    bytes: AtomicU64,
    cached: AtomicU64,
    fetched: AtomicU64,
    failed: AtomicU64,
}

impl Totals {
    fn add(&self, w: Warmed) {
        self.bytes.fetch_add(w.bytes, Ordering::Relaxed);
        self.cached.fetch_add(w.cached, Ordering::Relaxed);
        self.fetched.fetch_add(w.fetched, Ordering::Relaxed);
    }

    fn json(&self) -> Value {
        json!({
            "files": self.files.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "cached": self.cached.load(Ordering::Relaxed),
            "fetched": self.fetched.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

fn warmup(req: &Value, vfs: &Arc<Vfs>, out: &mut UnixStream) -> Value {
    if vfs.block_cache().is_none() && vfs.group().is_none() {
        return json!({ "error": "this mount has no block cache (--cache-size 0) and is in no cache group: nothing to warm" });
    }
    let mode = match req["mode"].as_str() {
        Some("fill") => WarmMode::Fill,
        Some("check") => WarmMode::Check,
        Some("evict") => WarmMode::Evict,
        m => return json!({ "error": format!("unknown warm-up mode {m:?}") }),
    };
    let inos: Vec<Ino> = match req["inos"].as_array() {
        Some(a) => a.iter().filter_map(Value::as_u64).map(Ino).collect(),
        None => return json!({ "error": "a warm-up needs \"inos\"" }),
    };
    let threads = req["threads"].as_u64().unwrap_or(50).clamp(1, 256) as usize;
    let totals = Arc::new(Totals::default());
    if req["background"].as_bool() == Some(true) {
        let (vfs, t) = (vfs.clone(), totals.clone());
        let _ = std::thread::Builder::new()
            .name("ferrofs-warmup".into())
            .spawn(move || {
                run_warmup(&vfs, &inos, mode, threads, &t, &mut |_| {});
                tracing::info!(summary = %t.json(), "background warm-up done");
            });
        return json!({ "done": totals.json(), "background": true });
    }
    let mut last = Instant::now();
    run_warmup(vfs, &inos, mode, threads, &totals, &mut |t| {
        if last.elapsed() >= Duration::from_millis(200) {
            last = Instant::now();
            let _ = writeln!(out, "{}", json!({ "progress": t.json() }));
        }
    });
    json!({ "done": totals.json() })
}

/// Warms the blocks of `inos` on `threads` threads, calling `progress` now and then.
fn run_warmup(
    vfs: &Vfs,
    inos: &[Ino],
    mode: WarmMode,
    threads: usize,
    totals: &Totals,
    progress: &mut dyn FnMut(&Totals),
) {
    let mut keys = Vec::new();
    for &ino in inos {
        match vfs.blocks_of_file(ino) {
            Ok(k) => keys.extend(k),
            Err(e) => {
                tracing::warn!(ino = ino.0, "warm-up: cannot list the blocks: {e}");
                totals.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        totals.files.fetch_add(1, Ordering::Relaxed);
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.min(keys.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i) else { return };
                match vfs.warm_block(key, mode) {
                    Ok(w) => totals.add(w),
                    Err(e) => {
                        tracing::warn!(block = %key.object_name(), "warm-up failed: {e}");
                        totals.failed.fetch_add(1, Ordering::Relaxed);
                        totals.bytes.fetch_add(key.len as u64, Ordering::Relaxed);
                    }
                }
            });
        }
        // The caller's thread reports progress while the workers run.
        while next.load(Ordering::Relaxed) < keys.len() {
            std::thread::sleep(Duration::from_millis(50));
            progress(totals);
        }
    });
    progress(totals);
}

/// Sends `request` to the mount at `mountpoint`; calls `on_progress` with each
/// progress document and returns the last one.
pub fn ask(
    mountpoint: &Path,
    request: &Value,
    on_progress: &mut dyn FnMut(&Value),
) -> Result<Value, String> {
    let path = socket_path(mountpoint);
    let mut s = UnixStream::connect(&path).map_err(|e| {
        format!(
            "cannot reach the mount process of {} ({}: {e}); is it a ferrofs mount of this machine, and are you root?",
            mountpoint.display(),
            path.display()
        )
    })?;
    writeln!(s, "{request}").map_err(|e| format!("control socket: {e}"))?;
    for line in BufReader::new(s).lines() {
        let line = line.map_err(|e| format!("control socket: {e}"))?;
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("bad reply {line:?}: {e}"))?;
        if let Some(p) = v.get("progress") {
            on_progress(p);
            continue;
        }
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(e.to_string());
        }
        return Ok(v["done"].clone());
    }
    Err("the mount process closed the control socket without an answer".into())
}
