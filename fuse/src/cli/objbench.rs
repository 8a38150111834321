//! `ferrofs objbench`: put, get and delete throughput and latency of an object store on
//! its own, so a user can tell whether slowness is the store or ferrofs.

use super::{CliResult, ObjbenchArgs};
use crate::units::format_size;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub fn run(a: ObjbenchArgs) -> CliResult {
    let store = super::open_object_store(&a.storage, &a.bucket, &a.store.options(), false)?;
    let size =
        usize::try_from(a.block_size).map_err(|_| "--block-size is too large".to_string())?;
    let threads = a.threads.max(1);
    let prefix = format!("ferrofs-objbench/{}", std::process::id());
    let body: ferrofs_s3_backend::Bytes = (0..size).map(|i| (i * 31 + i / 4099) as u8).collect();
    println!(
        "object store {}: {} objects of {} with {} threads",
        store.describe(),
        a.count,
        format_size(size as u64),
        threads
    );
    let mut rows = Vec::new();
    for op in ["put", "get", "delete"] {
        let run = Run::new(op, a.count);
        run.go(threads, |i| {
            let key = format!("{prefix}/{i}");
            match op {
                "put" => store.put(&key, body.clone()).map(|_| ()),
                "get" => store.get(&key, 0, None).and_then(|b| {
                    if b.len() == body.len() {
                        Ok(())
                    } else {
                        Err(ferrofs_s3_backend::StoreError::Config(format!(
                            "{key}: read {} bytes, wrote {}",
                            b.len(),
                            body.len()
                        )))
                    }
                }),
                _ => store.delete(&key),
            }
            .map_err(|e| format!("{op} {key} failed: {e}"))
        })?;
        rows.push(run.summary(if op == "delete" { 0 } else { size }));
    }
    println!(
        "\n{:<8} {:>10} {:>12} {:>10} {:>10} {:>10}",
        "op", "objects/s", "throughput", "avg ms", "p50 ms", "p99 ms"
    );
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

/// One measured operation over `count` objects.
struct Run {
    op: &'static str,
    count: usize,
    next: AtomicUsize,
    latencies: Mutex<Vec<Duration>>,
    elapsed: Mutex<Duration>,
    bar: ProgressBar,
}

impl Run {
    fn new(op: &'static str, count: usize) -> Run {
        let bar = ProgressBar::new(count as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>7} [{bar:40}] {pos}/{len} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(op);
        Run {
            op,
            count,
            next: AtomicUsize::new(0),
            latencies: Mutex::new(Vec::with_capacity(count)),
            elapsed: Mutex::new(Duration::ZERO),
            bar,
        }
    }

    fn go(&self, threads: usize, f: impl Fn(usize) -> Result<(), String> + Sync) -> CliResult {
        let start = Instant::now();
        let first_error = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = self.next.fetch_add(1, Ordering::Relaxed);
                    if i >= self.count || first_error.lock().unwrap().is_some() {
                        return;
                    }
                    let t = Instant::now();
                    if let Err(e) = f(i) {
                        *first_error.lock().unwrap() = Some(e);
                        return;
                    }
                    self.latencies.lock().unwrap().push(t.elapsed());
                    self.bar.inc(1);
                });
            }
        });
        self.bar.finish();
        *self.elapsed.lock().unwrap() = start.elapsed();
        match first_error.into_inner().unwrap() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn summary(&self, object_size: usize) -> String {
        let mut lat = self.latencies.lock().unwrap().clone();
        lat.sort();
        let secs = self.elapsed.lock().unwrap().as_secs_f64().max(1e-9);
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(0.0)
        };
        let avg = lat.iter().map(|d| d.as_secs_f64()).sum::<f64>() / lat.len().max(1) as f64;
        let throughput = if object_size == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.1} MiB/s",
                (object_size * lat.len()) as f64 / secs / (1 << 20) as f64
            )
        };
        format!(
            "{:<8} {:>10.1} {:>12} {:>10.2} {:>10.2} {:>10.2}",
            self.op,
            lat.len() as f64 / secs,
            throughput,
            avg * 1e3,
            pct(0.5),
            pct(0.99)
        )
    }
}
