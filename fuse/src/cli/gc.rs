//! `ferrofs gc META-URL [--delete]`: finds what the object store holds that no metadata
//! refers to (leaked blocks: a client that crashed between upload and commit, a refused
//! commit) and the deletions still queued, and with `--delete` removes both. Blocks of
//! no known slice written in the last `--min-age` (1 h) are left alone: they may be
//! uploads whose commit is under way on a running client.

use super::{open_meta, CliResult, GcArgs};
use crate::vfs::{system_clock, Vfs, VfsConfig};
use ferrofs_core::meta::{Meta, ObjectState, SliceCensus};
use ferrofs_s3_backend::{ObjectInfo, ObjectStore};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub fn spinner(what: &'static str) -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {pos} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.set_prefix(what);
    b.enable_steady_tick(std::time::Duration::from_millis(200));
    b
}

/// The volume's metadata census, with a spinner.
fn census(meta: &Meta) -> Result<SliceCensus, String> {
    let bar = spinner("reading metadata: keys");
    let c = meta
        .slice_census(&mut |n| bar.set_position(n))
        .map_err(|e| format!("cannot read the metadata: {e}"))?;
    bar.finish_and_clear();
    Ok(c)
}

/// Every block object in the store (under `chunks/`), with a spinner.
pub fn list_blocks(store: &dyn ObjectStore) -> Result<Vec<ObjectInfo>, String> {
    let bar = spinner("listing objects:");
    let mut out: Vec<ObjectInfo> = Vec::new();
    loop {
        let after = out.last().map(|o| o.key.clone()).unwrap_or_default();
        let page = store
            .list("chunks/", &after, 1000)
            .map_err(|e| format!("cannot list the object store: {e}"))?;
        let done = page.len() < 1000;
        out.extend(page);
        bar.set_position(out.len() as u64);
        if done {
            bar.finish_and_clear();
            return Ok(out);
        }
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn run(a: GcArgs) -> CliResult {
    let meta = Arc::new(open_meta(&a.meta_url)?);
    let format = meta.format_info().clone();
    let store = super::open_tool_store(&format, a.threads.max(1))?;
    let c = census(&meta)?;
    let objects = list_blocks(store.as_ref())?;
    let now = now_secs();
    let min_age = a.min_age.as_secs();
    let mut counts = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    let mut leaked = Vec::new();
    for o in &objects {
        let state = c.classify(&o.key, o.modified, now, min_age);
        let name = match state {
            ObjectState::Referenced => "referenced",
            ObjectState::Pending => "queued for deletion",
            ObjectState::Staged => "staged (writeback)",
            ObjectState::Leaked => "leaked",
            ObjectState::Young => "unreferenced, too young",
            ObjectState::Foreign => "not a block",
        };
        let e = counts.entry(name).or_default();
        e.0 += 1;
        e.1 += o.size;
        if state == ObjectState::Leaked {
            leaked.push(o.key.clone());
        }
    }
    println!(
        "{} objects ({}) in {}; {} slices referenced, {} queued for deletion",
        objects.len(),
        HumanBytes(objects.iter().map(|o| o.size).sum()),
        store.describe(),
        c.referenced.len(),
        c.pending.len()
    );
    for (name, (n, bytes)) in &counts {
        println!(
            "  {name:<26} {n:>10} objects {:>12}",
            HumanBytes(*bytes).to_string()
        );
    }
    if !a.delete {
        if !leaked.is_empty() || !c.pending.is_empty() {
            println!(
                "run again with --delete to remove the leaked objects and the queued deletions"
            );
        }
        return Ok(());
    }
    let deleted = delete_all(store.clone(), leaked, a.threads.max(1))?;
    println!("deleted {deleted} leaked objects");
    // The queued deletions, as a client's background gc does them.
    let vfs = Vfs::new(meta, store, system_clock(), VfsConfig::default());
    let bar = spinner("queued deletions:");
    let mut slices = 0u64;
    loop {
        let n = vfs
            .collect_garbage(1000)
            .map_err(|e| format!("deleting queued slices failed: {e}"))?;
        slices += n as u64;
        bar.set_position(slices);
        if n == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    println!("deleted the objects of {slices} queued slices");
    Ok(())
}

/// Deletes `keys` on `threads` threads with a progress bar; returns how many went.
fn delete_all(
    store: Arc<dyn ObjectStore>,
    keys: Vec<String>,
    threads: usize,
) -> Result<u64, String> {
    let bar = ProgressBar::new(keys.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("deleting leaked [{bar:40}] {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let queue = Arc::new(Mutex::new(keys));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(None::<String>));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (q, store, bar, done, failed) = (
                queue.clone(),
                store.clone(),
                bar.clone(),
                done.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || loop {
                let Some(k) = q.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                    return;
                };
                match store.delete(&k) {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        bar.inc(1);
                    }
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(format!("cannot delete {k}: {e}"));
                        return;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    bar.finish_and_clear();
    if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    Ok(done.load(Ordering::Relaxed))
}
