//! `ferrofs warmup`: fills (or checks, or empties) the block cache of a running mount for
//! files and directory trees, so the first epoch of a training job reads from local disk.
//! The paths are walked through the mount; the mount process fetches the blocks.

use super::control;
use super::mountinfo::mounted_at;
use super::{CliResult, WarmupArgs};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Files sent to the mount per request (so huge trees stream, with progress).
const BATCH: usize = 10_000;

pub fn run(a: WarmupArgs) -> CliResult {
    let mut paths = a.paths.clone();
    if let Some(list) = &a.file {
        let text = std::fs::read_to_string(list)
            .map_err(|e| format!("cannot read the list {}: {e}", list.display()))?;
        paths.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(PathBuf::from),
        );
    }
    if paths.is_empty() {
        return Err("give the files or directories to warm up (or -f LIST)".into());
    }
    let mode = match (a.check, a.evict) {
        (true, true) => return Err("--check and --evict exclude each other".into()),
        (true, false) => "check",
        (false, true) => "evict",
        (false, false) => "fill",
    };
    let (mountpoint, files) = collect(&paths)?;
    let total: u64 = files.iter().map(|f| f.1).sum();
    let started = Instant::now();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(mode);
    let mut sum = Summary::default();
    for batch in files.chunks(BATCH) {
        let request = json!({
            "op": "warmup",
            "mode": mode,
            "inos": batch.iter().map(|f| f.0).collect::<Vec<u64>>(),
            "threads": a.threads,
            "background": a.background,
        });
        let before = sum.bytes;
        let done = control::ask(&mountpoint, &request, &mut |p| {
            bar.set_position(before + p["bytes"].as_u64().unwrap_or(0));
        })?;
        sum.add(&done);
        bar.set_position(sum.bytes);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if a.background {
        println!(
            "warm-up of {} files ({}) handed to the mount; it goes on in the background",
            files.len(),
            HumanBytes(total)
        );
        return Ok(());
    }
    let ratio = if sum.bytes == 0 {
        100.0
    } else {
        sum.cached as f64 * 100.0 / sum.bytes as f64
    };
    match mode {
        "fill" => println!(
            "warmed {} files ({} in blocks) in {secs:.1} s: {} fetched, {:.1}% now cached{}",
            files.len(),
            HumanBytes(sum.bytes),
            HumanBytes(sum.fetched),
            ratio,
            sum.failures()
        ),
        "check" => println!(
            "{} files, {} in blocks: {} cached ({ratio:.1}%){}",
            files.len(),
            HumanBytes(sum.bytes),
            HumanBytes(sum.cached),
            sum.failures()
        ),
        _ => {
            let kept = if sum.cached > 0 {
                format!(
                    "; {} stay until uploaded (writeback)",
                    HumanBytes(sum.cached)
                )
            } else {
                String::new()
            };
            println!(
                "dropped {} files ({}) from the cache{kept}{}",
                files.len(),
                HumanBytes(sum.bytes),
                sum.failures()
            )
        }
    }
    if sum.failed > 0 {
        return Err(format!(
            "{} blocks or files failed; see the mount's log",
            sum.failed
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Summary {
    bytes: u64,
    cached: u64,
    fetched: u64,
    failed: u64,
}

impl Summary {
    fn add(&mut self, v: &Value) {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        self.bytes += n("bytes");
        self.cached += n("cached");
        self.fetched += n("fetched");
        self.failed += n("failed");
    }

    fn failures(&self) -> String {
        if self.failed == 0 {
            String::new()
        } else {
            format!("; {} failed", self.failed)
        }
    }
}

/// The mount holding every path, and the regular files (inode, size) under them.
fn collect(paths: &[PathBuf]) -> Result<(PathBuf, Vec<(u64, u64)>), String> {
    let mut mountpoint: Option<PathBuf> = None;
    let mut files = Vec::new();
    let scan = ProgressBar::new_spinner();
    scan.set_message("listing files");
    for p in paths {
        let canon = p
            .canonicalize()
            .map_err(|e| format!("cannot warm up {}: {e}", p.display()))?;
        let m = ferrofs_mount_of(&canon)
            .ok_or_else(|| format!("{} is not on a ferrofs mount", p.display()))?;
        match &mountpoint {
            None => mountpoint = Some(m),
            Some(prev) if *prev != m => {
                return Err(format!(
                    "{} and {} are on different mounts: warm them up one mount at a time",
                    prev.display(),
                    m.display()
                ))
            }
            Some(_) => {}
        }
        walk(&canon, &mut files, &scan)?;
    }
    scan.finish_and_clear();
    files.sort_unstable();
    files.dedup();
    Ok((mountpoint.expect("at least one path"), files))
}

fn ferrofs_mount_of(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|a| mounted_at(a).is_some_and(|m| m.is_ferrofs()))
        .map(Path::to_path_buf)
}

fn walk(path: &Path, files: &mut Vec<(u64, u64)>, scan: &ProgressBar) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        files.push((meta.ino(), meta.size()));
        if files.len().is_multiple_of(1000) {
            scan.set_message(format!("listing files: {}", files.len()));
        }
    } else if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("{}: {e}", path.display()))?;
            walk(&e.path(), files, scan)?;
        }
    }
    Ok(())
}
