//! The block cache options of `mount`: which dirs (`--cache-dir`, with `:` between dirs
//! and shell wildcards, or `memory`), how big, how full the disks may get, which
//! eviction policy.

use crate::vfs::cache::{BlockCache, CacheConfig, CacheDir, DiskDir, MemDir};
use ferrofs_core::cache::policy::PolicyKind;
use ferrofs_core::chunk::BlockKey;
use std::path::PathBuf;
use std::sync::Arc;

/// The dirs `spec` names: `memory`, or paths separated by `:`, each of which may be a
/// glob pattern matching existing directories (`/var/lib/kubelet/ferrofs_cache/*cache`).
/// A plain path is created if missing; a pattern must match at least one directory.
pub fn expand_cache_dirs(spec: &str) -> Result<Option<Vec<PathBuf>>, String> {
    if spec == "memory" {
        return Ok(None);
    }
    let mut dirs = Vec::new();
    for part in spec.split(':').filter(|p| !p.is_empty()) {
        if !part.contains(['*', '?', '[']) {
            dirs.push(PathBuf::from(part));
            continue;
        }
        let matches = glob::glob(part)
            .map_err(|e| format!("--cache-dir {part}: not a valid pattern: {e}"))?;
        let mut found: Vec<PathBuf> = matches
            .filter_map(Result::ok)
            .filter(|p| p.is_dir())
            .collect();
        if found.is_empty() {
            return Err(format!(
                "--cache-dir {part}: no directory matches; create the cache dirs first or fix the pattern"
            ));
        }
        found.sort();
        dirs.extend(found);
    }
    if dirs.is_empty() {
        return Err(
            "--cache-dir is empty: give one or more dirs separated by ':', or memory".into(),
        );
    }
    dirs.sort();
    dirs.dedup();
    Ok(Some(dirs))
}

/// A block cache, and the blocks an earlier run staged and did not upload.
pub type OpenedCache = (Arc<BlockCache>, Vec<BlockKey>);

/// Opens the block cache a mount asked for (`None` with `--cache-size 0`), and the
/// staged blocks an earlier run left to upload.
pub fn open_block_cache(
    spec: &str,
    size: u64,
    free_ratio: f64,
    policy: PolicyKind,
    uuid: &str,
) -> Result<Option<OpenedCache>, String> {
    if size == 0 {
        return Ok(None);
    }
    if !(0.0..1.0).contains(&free_ratio) {
        return Err(format!(
            "--free-space-ratio {free_ratio}: give a fraction from 0 to below 1, e.g. 0.1"
        ));
    }
    let dirs: Vec<Box<dyn CacheDir>> = match expand_cache_dirs(spec)? {
        None => vec![Box::new(MemDir::default())],
        Some(paths) => paths
            .iter()
            .map(|p| {
                DiskDir::open(p, uuid)
                    .map(|d| Box::new(d) as Box<dyn CacheDir>)
                    .map_err(|e| format!("cannot use cache dir {}: {e}", p.display()))
            })
            .collect::<Result<_, _>>()?,
    };
    let seed = std::process::id() as u64 ^ uuid.len() as u64;
    let config = CacheConfig {
        capacity: size,
        free_ratio,
        policy,
        seed,
        verify_keys: true,
    };
    let started = std::time::Instant::now();
    let (cache, staged) = BlockCache::open(dirs, &config);
    let c = cache.counters();
    tracing::info!(
        blocks = c.blocks,
        bytes = c.bytes,
        staged = staged.len(),
        "block cache ready in {:.2?}",
        started.elapsed()
    );
    Ok(Some((Arc::new(cache), staged)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_pick_up_every_matching_dir() {
        let t = tempfile::tempdir().unwrap();
        for d in ["a-cache", "b-cache", "other"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("c-cache"), b"a file, not a dir").unwrap();
        let root = t.path().display();
        let spec = format!("{root}/*-cache:{root}/plain");
        let dirs = expand_cache_dirs(&spec).unwrap().unwrap();
        let names: Vec<String> = dirs
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a-cache", "b-cache", "plain"]);
        assert_eq!(expand_cache_dirs("memory").unwrap(), None);
        let err = expand_cache_dirs(&format!("{root}/*-missing")).unwrap_err();
        assert!(err.contains("no directory matches"), "{err}");
        assert!(expand_cache_dirs(":").is_err());
    }
}
