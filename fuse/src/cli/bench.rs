//! `ferrofs bench PATH`: a quick performance check of any directory — a ferrofs mount
//! or a local disk, so the two compare in one command. `-p` threads each write and read
//! back one big file, then write, read and stat many small files, with a progress bar
//! per step and a table at the end. Page caches are dropped between writing and reading
//! when it runs as root (otherwise the reads may come from memory, and it says so).

use super::{BenchArgs, CliResult};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One measured step.
struct Step {
    name: &'static str,
    /// Bytes moved (0: a step counted in files).
    bytes: u64,
    files: u64,
    took: Duration,
}

impl Step {
    fn row(&self) -> (String, String, String) {
        let secs = self.took.as_secs_f64().max(1e-9);
        if self.bytes > 0 && self.name.contains("big") {
            (
                self.name.to_string(),
                format!("{:.1} MiB/s", self.bytes as f64 / secs / (1 << 20) as f64),
                format!("{:.2} s", secs),
            )
        } else {
            (
                self.name.to_string(),
                format!("{:.1} files/s", self.files as f64 / secs),
                format!("{:.3} ms/file", secs * 1e3 / self.files.max(1) as f64),
            )
        }
    }
}

fn bar(len: u64, prefix: &'static str, bytes: bool) -> ProgressBar {
    let b = ProgressBar::new(len);
    let template = if bytes {
        "{prefix:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}"
    } else {
        "{prefix:>18} [{bar:30}] {pos}/{len} files {per_sec}"
    };
    b.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(prefix);
    b
}

/// Runs `work(thread)` on `threads` threads; the first error wins.
fn parallel(
    threads: usize,
    work: impl Fn(usize) -> std::io::Result<()> + Send + Sync + 'static,
) -> Result<Duration, String> {
    let work = Arc::new(work);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let w = work.clone();
            std::thread::spawn(move || w(t))
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| "a benchmark thread panicked".to_string())?
            .map_err(|e| format!("benchmark I/O failed: {e}"))?;
    }
    Ok(start.elapsed())
}

fn drop_caches() -> bool {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn run(a: BenchArgs) -> CliResult {
    if !a.path.is_dir() {
        return Err(format!("{} is not a directory", a.path.display()));
    }
    let threads = a.threads.max(1);
    let dir = a
        .path
        .join(format!("__ferrofs_bench_{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = run_in(&a, &dir, threads);
    let _ = std::fs::remove_dir_all(&dir);
    let (steps, cold) = result?;
    println!(
        "\nferrofs bench {}: {threads} thread(s), big files {} each ({} writes), {} small files of {} each{}",
        a.path.display(),
        HumanBytes(a.big_file_size),
        HumanBytes(a.block_size),
        a.small_file_count * threads as u64,
        HumanBytes(a.small_file_size),
        if cold {
            ""
        } else {
            " (page cache NOT dropped before reads: not root)"
        }
    );
    let rows: Vec<_> = steps.iter().map(Step::row).collect();
    println!("{:<22} {:>16} {:>16}", "ITEM", "VALUE", "COST");
    for (item, value, cost) in rows {
        println!("{item:<22} {value:>16} {cost:>16}");
    }
    Ok(())
}

fn run_in(a: &BenchArgs, dir: &Path, threads: usize) -> Result<(Vec<Step>, bool), String> {
    let mut steps = Vec::new();
    let mut cold = true;
    let big = a.big_file_size;
    let chunk = a.block_size.clamp(4096, 64 << 20) as usize;
    let n = threads as u64;
    if big > 0 {
        let (d, buf) = (dir.to_path_buf(), pattern(chunk, 1));
        step(
            &mut steps,
            "write big file",
            threads,
            n,
            big * n,
            true,
            move |t, bar| {
                let mut f = std::fs::File::create(d.join(format!("big.{t}")))?;
                let mut left = big;
                while left > 0 {
                    let n = left.min(chunk as u64) as usize;
                    f.write_all(&buf[..n])?;
                    bar.inc(n as u64);
                    left -= n as u64;
                }
                f.sync_all()
            },
        )?;
        cold &= drop_caches();
        let d = dir.to_path_buf();
        step(
            &mut steps,
            "read big file",
            threads,
            n,
            big * n,
            true,
            move |t, bar| {
                let mut f = std::fs::File::open(d.join(format!("big.{t}")))?;
                let mut buf = vec![0u8; chunk];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    bar.inc(n as u64);
                }
            },
        )?;
        for t in 0..threads {
            let _ = std::fs::remove_file(dir.join(format!("big.{t}")));
        }
    }
    let count = a.small_file_count;
    let size = a.small_file_size as usize;
    if count > 0 {
        let total = count * n;
        let bytes = total * size as u64;
        let path = |d: &PathBuf, t: usize, i: u64| d.join(format!("s.{t}.{i}"));
        let (d, data) = (dir.to_path_buf(), pattern(size, 2));
        step(
            &mut steps,
            "write small files",
            threads,
            total,
            bytes,
            false,
            move |t, bar| {
                for i in 0..count {
                    let mut f = std::fs::File::create(path(&d, t, i))?;
                    f.write_all(&data)?;
                    f.sync_all()?;
                    bar.inc(1);
                }
                Ok(())
            },
        )?;
        cold &= drop_caches();
        let d = dir.to_path_buf();
        step(
            &mut steps,
            "read small files",
            threads,
            total,
            bytes,
            false,
            move |t, bar| {
                let mut buf = Vec::with_capacity(size);
                for i in 0..count {
                    buf.clear();
                    std::fs::File::open(path(&d, t, i))?.read_to_end(&mut buf)?;
                    if buf.len() != size {
                        return Err(std::io::Error::other(format!(
                            "read {} bytes of a {size}-byte file",
                            buf.len()
                        )));
                    }
                    bar.inc(1);
                }
                Ok(())
            },
        )?;
        cold &= drop_caches();
        let d = dir.to_path_buf();
        step(
            &mut steps,
            "stat small files",
            threads,
            total,
            0,
            false,
            move |t, bar| {
                for i in 0..count {
                    std::fs::metadata(path(&d, t, i))?;
                    bar.inc(1);
                }
                Ok(())
            },
        )?;
    }
    Ok((steps, cold))
}

/// One step: a progress bar (over bytes, or files), `work(thread, bar)` on every
/// thread, and the step's row.
fn step(
    steps: &mut Vec<Step>,
    name: &'static str,
    threads: usize,
    files: u64,
    bytes: u64,
    by_bytes: bool,
    work: impl Fn(usize, &ProgressBar) -> std::io::Result<()> + Send + Sync + 'static,
) -> Result<(), String> {
    let b = bar(if by_bytes { bytes } else { files }, name, by_bytes);
    let bb = b.clone();
    let took = parallel(threads, move |t| work(t, &bb))?;
    b.finish_and_clear();
    steps.push(Step {
        name,
        bytes,
        files,
        took,
    });
    Ok(())
}
