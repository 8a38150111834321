//! `ferrofs cache-node`: a dedicated member of a cache group without a FUSE mount — the
//! independent cache cluster. It owns its share of the group's blocks, serves them to
//! readers (fetching each from object storage once), and leaves the group cleanly on
//! SIGINT/SIGTERM. Its counters are on a control socket (`{"op": "group"}`).

use super::{CacheNodeArgs, CliResult};
use crate::vfs::{system_clock, Vfs, VfsConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The control socket of the cache node with member id `id`.
pub fn socket_path(id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ferrofs-cache-node-{id}.sock"))
}

pub fn run(a: CacheNodeArgs) -> CliResult {
    if a.group.cache_group.is_none() {
        return Err("a cache node needs --cache-group NAME: the group it keeps blocks for".into());
    }
    if a.group.no_sharing {
        return Err("a cache node shares by definition: drop --no-sharing".into());
    }
    if a.cache_size == 0 {
        return Err("a cache node keeps blocks: give it a --cache-size above 0".into());
    }
    super::mount::block_signals();
    let metrics = crate::metrics::Metrics::new();
    let meta = Arc::new(super::open_meta_with(&a.meta_url, |kv| {
        Arc::new(crate::metrics::MeteredKv {
            inner: kv,
            metrics: metrics.clone(),
        })
    })?);
    let format = meta.format_info().clone();
    let own_limits = (a.limits.upload_limit, a.limits.download_limit);
    let limits =
        crate::limit::Limits::of_client(own_limits, (format.upload_limit, format.download_limit));
    let store = super::open_volume_store(
        &format,
        a.max_downloads,
        a.request_timeout,
        a.io_retries,
        &limits,
        Some(&metrics),
    )?;
    let cache = super::cache_opts::open_block_cache(
        &a.cache_dir,
        a.cache_size,
        a.free_space_ratio,
        a.cache_eviction,
        &format.uuid,
    )?
    .map(|(c, _staged)| c);
    let config = VfsConfig {
        max_downloads: a.max_downloads.max(1),
        ..VfsConfig::default()
    };
    let vfs = Arc::new(Vfs::with_cache(
        meta.clone(),
        store,
        system_clock(),
        config,
        cache,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let limits_thread = super::instrument(
        &vfs,
        &meta,
        &limits,
        own_limits,
        &metrics,
        a.metrics.as_deref(),
        &stop,
    );
    let joined = super::group::join(
        &a.group,
        &a.meta_url,
        &meta,
        &vfs,
        &a.cache_dir,
        &limits,
        stop.clone(),
    )?
    .ok_or("a cache node needs --cache-group NAME")?;
    let id = joined.id.clone().unwrap_or_default();
    let control = socket_path(&id);
    super::control::serve_at(control.clone(), vfs.clone());
    let addr = joined.server.as_ref().map(|s| s.addr().to_string());
    tracing::info!(
        member = %id,
        addr = addr.as_deref().unwrap_or(""),
        control = %control.display(),
        "cache node serving"
    );
    println!(
        "cache node {id} of group {} serving on {}",
        joined.group.name(),
        addr.unwrap_or_default()
    );
    wait_for_signal();
    tracing::info!(member = %id, "leaving the cache group");
    stop.store(true, Ordering::Relaxed);
    let c = joined.group.stats.snapshot();
    joined.leave();
    if let Some(t) = limits_thread {
        let _ = t.join();
    }
    let _ = std::fs::remove_file(&control);
    tracing::info!(
        served = c.served,
        bytes_out = c.bytes_out,
        store_gets = vfs.store_gets(),
        "cache node stopped"
    );
    Ok(())
}

fn wait_for_signal() {
    let set = super::mount::signal_set();
    let mut sig = 0;
    // SAFETY: `set` is initialised and blocked in every thread (block_signals ran first).
    unsafe {
        libc::sigwait(&set, &mut sig);
    }
}
