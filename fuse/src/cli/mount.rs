//! `ferrofs mount`: checks the mount point and the volume, then serves FUSE requests
//! until unmounted. With `-d` it re-runs itself in the background and returns once the
//! mount is ready (or prints why it failed).

use super::mountinfo::mounted_at;
use super::umount::{pid_file, unmount};
use super::{open_meta, CliResult, MountArgs};
use crate::fs::{FerroFs, KernelCache};
use crate::vfs::feed::FeedConfig;
use crate::vfs::{system_clock, Vfs, VfsConfig};
use ferrofs_core::cache::meta::MetaCacheTtl;
use ferrofs_core::meta::usage::DeferredUsage;
use fuser::{Config, MountOption, SessionACL};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long unmounting waits for writeback uploads before leaving them for next time.
const WRITEBACK_DRAIN: Duration = Duration::from_secs(60);

/// Set in the environment of the background child so it serves in the foreground.
const DAEMON_ENV: &str = "FERROFS_DAEMON_CHILD";

pub fn run(a: MountArgs) -> CliResult {
    let mountpoint = check_mountpoint(&a.mountpoint)?;
    if a.background && std::env::var_os(DAEMON_ENV).is_none() {
        // Check the volume here, where the user sees the error, before going away.
        drop(open_meta(&a.meta_url)?);
        return spawn_background(&a, &mountpoint);
    }
    serve(&a, &mountpoint)
}

fn check_mountpoint(p: &Path) -> Result<PathBuf, String> {
    let path = p.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "mount point {} does not exist: create it with `mkdir -p {}`",
            p.display(),
            p.display()
        ),
        _ => format!("cannot use mount point {}: {e}", p.display()),
    })?;
    if !path.is_dir() {
        return Err(format!("mount point {} is not a directory", path.display()));
    }
    if let Some(m) = mounted_at(&path) {
        return Err(format!(
            "{} is busy: {} ({}) is already mounted there; unmount it first",
            path.display(),
            m.source,
            m.fs_type
        ));
    }
    Ok(path)
}

fn serve(a: &MountArgs, mountpoint: &Path) -> CliResult {
    // Signals are handled by one thread that unmounts; block them before any thread
    // starts (sled starts one when it opens), so that every thread inherits the mask.
    block_signals();
    // Clients of a replicated engine add up their usage-counter changes and write them
    // once a second (core::meta::usage), so that they do not conflict on them.
    let shared_engine = matches!(
        ferrofs_meta::MetaUrl::parse(&a.meta_url),
        Ok(ferrofs_meta::MetaUrl::Raft { .. })
    );
    let mut usage: Option<Arc<DeferredUsage>> = None;
    let metrics = crate::metrics::Metrics::new();
    let meta = Arc::new(super::open_meta_with(&a.meta_url, |kv| {
        let kv: Arc<dyn ferrofs_core::kv::Kv> = Arc::new(crate::metrics::MeteredKv {
            inner: kv,
            metrics: metrics.clone(),
        });
        if !shared_engine {
            return kv;
        }
        match DeferredUsage::new(kv.clone()) {
            Ok(d) => {
                usage = Some(d.clone());
                d
            }
            Err(e) => {
                tracing::warn!("usage counters are updated in every transaction: {e}");
                kv
            }
        }
    })?);
    let format = meta.format_info().clone();
    let own_limits = (a.limits.upload_limit, a.limits.download_limit);
    let limits =
        crate::limit::Limits::of_client(own_limits, (format.upload_limit, format.download_limit));
    let store = super::open_volume_store(
        &format,
        a.max_uploads.max(1) + a.max_downloads.max(1),
        a.request_timeout,
        a.io_retries,
        &limits,
        Some(&metrics),
    )?;
    let session_info = serde_json::json!({
        "host": hostname(),
        "pid": std::process::id(),
        "mountpoint": mountpoint,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let session = meta
        .new_session(&session_info.to_string())
        .map_err(|e| format!("cannot register the client session: {e}"))?;
    // Other clients may share a replicated engine: only sessions silent for longer
    // than SESSION_TTL are dead. The embedded engine admits one process: all are.
    let session_ttl = match ferrofs_meta::MetaUrl::parse(&a.meta_url) {
        Ok(ferrofs_meta::MetaUrl::Raft { .. }) => session_ttl_secs(),
        _ => 0,
    };
    if let Err(e) = meta.heartbeat(wall_clock()) {
        tracing::warn!("cannot record the session's heartbeat: {e}");
    }
    cleanup_dead_sessions(&meta, session_ttl);

    // Other clients' changes reach this one through the change feed of a replicated
    // engine; the embedded one has no other clients.
    let url = ferrofs_meta::MetaUrl::parse(&a.meta_url).map_err(|e| e.to_string())?;
    let feed = matches!(url, ferrofs_meta::MetaUrl::Raft { .. }) && !a.meta_feed_interval.is_zero();
    let lifetimes = Lifetimes::of(a, feed);
    let fallback = lifetimes.fallback();
    let config = VfsConfig {
        buffer_size: a.buffer_size,
        max_uploads: a.max_uploads.max(1),
        max_downloads: a.max_downloads.max(1),
        prefetch_blocks: a.prefetch,
        // With the feed, the long lifetimes apply once it is in sync.
        meta_cache: if feed { fallback.meta } else { lifetimes.meta },
        open_cache_ns: a.open_cache.as_nanos() as u64,
        writeback: a.writeback,
        background: true,
        verify_checksums: true,
    };
    let cache_spec = a.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let cache = super::cache_opts::open_block_cache(
        &cache_spec,
        a.cache_size,
        a.free_space_ratio,
        a.cache_eviction,
        &format.uuid,
    )?;
    let (cache, staged) = match cache {
        Some((c, staged)) => (Some(c), staged),
        None => (None, Vec::new()),
    };
    if a.writeback && (cache.is_none() || cache_spec == "memory") {
        return Err(
            "--writeback stages blocks on a local disk: give --cache-dir a directory (not memory) and a --cache-size above 0"
                .into(),
        );
    }
    let vfs = Arc::new(Vfs::with_cache(
        meta.clone(),
        store,
        system_clock(),
        config,
        cache,
    ));
    vfs.resume_staged(staged);
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
    let group = super::group::join(
        &a.group,
        &a.meta_url,
        &meta,
        &vfs,
        &cache_spec,
        &limits,
        stop.clone(),
    )?;
    let in_sync = Arc::new(AtomicBool::new(false));
    let mut fs = FerroFs::new(vfs.clone(), lifetimes.kernel).with_metrics(metrics.clone());
    if feed {
        fs = fs.with_fallback(fallback.kernel, in_sync.clone());
    }
    let is_root = unsafe { libc::geteuid() } == 0;
    let mut fuse_config = Config::default();
    fuse_config.mount_options = vec![
        MountOption::FSName(format!("ferrofs:{}", format.name)),
        MountOption::Subtype("ferrofs".into()),
        MountOption::RW,
        MountOption::NoAtime,
        // The core checks permissions on every operation too, but only the kernel can
        // check them on its cached names (a cached lookup never reaches us) and apply
        // fs.protected_* policies and its own errno order; so let it check first.
        MountOption::DefaultPermissions,
    ];
    if is_root {
        fuse_config
            .mount_options
            .extend([MountOption::Dev, MountOption::Suid]);
    }
    fuse_config.acl = if is_root || a.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    fuse_config.n_threads = Some(a.threads.max(1));

    let fuse_session = fuser::Session::new(fs, mountpoint, &fuse_config)
        .map_err(|e| format!("cannot mount at {}: {e}", mountpoint.display()))?;
    let _ = std::fs::write(pid_file(mountpoint), std::process::id().to_string());
    tracing::info!(
        volume = %format.name,
        mountpoint = %mountpoint.display(),
        "mounted"
    );
    spawn_signal_handler(mountpoint.to_path_buf());
    if let Ok(url) = ferrofs_meta::MetaUrl::parse(&a.meta_url) {
        super::status::serve_status(&url, meta.clone());
    }
    super::control::serve(mountpoint, vfs.clone());
    let gc = spawn_gc(vfs.clone(), stop.clone(), session_ttl, usage.clone());
    let feed_thread = if feed {
        let config = FeedConfig {
            interval: a.meta_feed_interval,
            synced: lifetimes.meta,
            fallback: fallback.meta,
            fail_after: super::feed::FAIL_AFTER,
        };
        let notifier = fuse_session.notifier();
        super::feed::spawn(&url, vfs.clone(), notifier, config, in_sync, stop.clone())
    } else {
        None
    };

    let served = fuse_session.run();

    stop.store(true, Ordering::Relaxed);
    let _ = gc.join();
    if let Some(t) = feed_thread {
        let _ = t.join();
    }
    if let Some(g) = group {
        g.leave();
    }
    if let Some(t) = limits_thread {
        let _ = t.join();
    }
    // `destroy` flushed open files; flush again in case the kernel skipped it.
    let shutdown = vfs.shutdown();
    let left = vfs.drain_writeback(WRITEBACK_DRAIN);
    if left > 0 {
        tracing::warn!(
            blocks = left,
            "staged blocks not uploaded yet; the next mount of this client uploads them"
        );
    }
    let _ = vfs.collect_garbage(10_000);
    if let Some(u) = &usage {
        if let Err(e) = u.flush() {
            tracing::warn!("cannot write the usage counters: {e} (fsck recounts them)");
        }
    }
    let _ = meta.close_session(session);
    let _ = meta.sync();
    let _ = std::fs::remove_file(pid_file(mountpoint));
    let _ = std::fs::remove_file(super::control::socket_path(mountpoint));
    if let Ok(url) = ferrofs_meta::MetaUrl::parse(&a.meta_url) {
        if let Some(path) = super::status::socket_path(&url) {
            let _ = std::fs::remove_file(path);
        }
    }
    tracing::info!(mountpoint = %mountpoint.display(), "unmounted");
    served.map_err(|e| format!("the FUSE session ended with an error: {e}"))?;
    shutdown.map_err(|e| format!("flushing at unmount failed: {e}"))
}

/// Cache lifetimes of a mount: the kernel's, and this client's metadata cache.
#[derive(Clone, Copy, Debug)]
struct Lifetimes {
    kernel: KernelCache,
    meta: MetaCacheTtl,
}

/// The defaults without the change feed: another client's change shows within
/// about the metadata cache's lifetime plus the kernel's...
const WITHOUT_FEED: (KernelCache, Duration) = (
    KernelCache {
        attr: Duration::from_secs(1),
        entry: Duration::from_secs(1),
        dir_entry: Duration::from_secs(1),
        negative: Duration::ZERO,
    },
    Duration::from_secs(5),
);

/// ...and with it, within one poll of the feed, whatever the lifetimes.
const WITH_FEED: (KernelCache, Duration) = (
    KernelCache {
        attr: Duration::from_secs(30),
        entry: Duration::from_secs(30),
        dir_entry: Duration::from_secs(30),
        negative: Duration::from_secs(30),
    },
    Duration::from_secs(60),
);

impl Lifetimes {
    fn new(kernel: KernelCache, meta: Duration) -> Lifetimes {
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        Lifetimes {
            kernel,
            meta: MetaCacheTtl {
                attr: ns(meta),
                entry: ns(meta),
                negative: ns(kernel.negative),
                dir: ns(meta),
            },
        }
    }

    /// The lifetimes given on the command line, else the defaults with or without the
    /// feed.
    fn of(a: &MountArgs, feed: bool) -> Lifetimes {
        let (k, meta) = if feed { WITH_FEED } else { WITHOUT_FEED };
        Lifetimes::new(
            KernelCache {
                attr: a.attr_cache.unwrap_or(k.attr),
                entry: a.entry_cache.unwrap_or(k.entry),
                dir_entry: a.dir_entry_cache.unwrap_or(k.dir_entry),
                negative: a.negative_entry_cache.unwrap_or(k.negative),
            },
            a.meta_cache.unwrap_or(meta),
        )
    }

    /// While the feed is out of sync: the defaults without it (or shorter ones given).
    fn fallback(&self) -> Lifetimes {
        let (k, meta) = WITHOUT_FEED;
        let meta_given = Duration::from_nanos(self.meta.attr);
        Lifetimes::new(
            KernelCache {
                attr: self.kernel.attr.min(k.attr),
                entry: self.kernel.entry.min(k.entry),
                dir_entry: self.kernel.dir_entry.min(k.dir_entry),
                negative: self.kernel.negative.min(k.negative),
            },
            meta_given.min(meta),
        )
    }
}

/// A mount sends a heartbeat this often...
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// ...and other clients count it dead after this long without one.
const SESSION_TTL: Duration = Duration::from_secs(60);
/// How often a client of a replicated engine writes its usage-counter changes.
const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Overrides SESSION_TTL (whole seconds; tests use a short one to see a killed
/// client's locks go). Heartbeats then come at least three times per TTL.
const SESSION_TTL_ENV: &str = "FERROFS_SESSION_TTL";

fn session_ttl_secs() -> u64 {
    std::env::var(SESSION_TTL_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(SESSION_TTL.as_secs())
}

fn wall_clock() -> ferrofs_core::Timespec {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ferrofs_core::Timespec::new(d.as_secs() as i64, d.subsec_nanos())
}

/// Removes dead clients' sessions, the files they left open after unlinking them and
/// the file locks they held.
fn cleanup_dead_sessions(meta: &ferrofs_core::meta::Meta, ttl_secs: u64) {
    match meta.cleanup_dead_clients(wall_clock(), ttl_secs) {
        Ok(c) if c == ferrofs_core::meta::Cleanup::default() => {}
        Ok(c) => tracing::info!(
            "removed {} dead client sessions, {} files they left open-but-deleted and {} locks held by {} of them",
            c.sessions,
            c.inodes,
            c.lock_ranges,
            c.lock_sessions
        ),
        Err(e) => tracing::warn!("cannot clean up after dead clients: {e}"),
    }
}

/// Background upkeep: gc of deleted data, the session heartbeat and (on shared
/// engines) cleanup after dead clients.
fn spawn_gc(
    vfs: Arc<Vfs>,
    stop: Arc<AtomicBool>,
    session_ttl: u64,
    usage: Option<Arc<DeferredUsage>>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("ferrofs-gc".into())
        .spawn(move || {
            let mut last_flush = std::time::Instant::now();
            let mut last_beat = std::time::Instant::now();
            let mut last_sweep = std::time::Instant::now();
            let sweep_every = Duration::from_secs(session_ttl);
            let beat_every = match session_ttl {
                0 => HEARTBEAT_EVERY,
                _ => HEARTBEAT_EVERY.min(sweep_every / 3),
            };
            while !stop.load(Ordering::Relaxed) {
                if let Some(u) = usage
                    .as_ref()
                    .filter(|_| last_flush.elapsed() >= USAGE_FLUSH_EVERY)
                {
                    last_flush = std::time::Instant::now();
                    if let Err(e) = u.flush() {
                        tracing::warn!("cannot write the usage counters yet: {e}");
                    }
                }
                if last_beat.elapsed() >= beat_every {
                    last_beat = std::time::Instant::now();
                    if let Err(e) = vfs.meta().heartbeat(wall_clock()) {
                        tracing::warn!("session heartbeat failed: {e}");
                    }
                }
                if session_ttl > 0 && last_sweep.elapsed() >= sweep_every {
                    last_sweep = std::time::Instant::now();
                    cleanup_dead_sessions(vfs.meta(), session_ttl);
                }
                match vfs.collect_garbage(1000) {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!("gc: {e}"),
                }
                for _ in 0..10 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .expect("spawn gc thread")
}

pub(super) fn signal_set() -> libc::sigset_t {
    // SAFETY: plain sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

pub(super) fn block_signals() {
    let set = signal_set();
    // SAFETY: `set` is initialised; blocking signals in this thread only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// On SIGINT/SIGTERM/SIGHUP: unmount, which ends the FUSE session and lets `serve`
/// flush and close everything. A second signal detaches even if files are open.
fn spawn_signal_handler(mountpoint: PathBuf) {
    std::thread::Builder::new()
        .name("ferrofs-signals".into())
        .spawn(move || {
            let set = signal_set();
            let mut attempts = 0;
            loop {
                let mut sig = 0;
                // SAFETY: `set` is initialised and blocked in every thread.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    return;
                }
                attempts += 1;
                tracing::info!(signal = sig, "unmounting {}", mountpoint.display());
                if let Err(e) = unmount(&mountpoint, attempts > 1) {
                    tracing::warn!("unmount failed ({e}); send the signal again to detach");
                }
            }
        })
        .expect("spawn signal thread");
}

fn spawn_background(a: &MountArgs, mountpoint: &Path) -> CliResult {
    use std::os::unix::process::CommandExt;
    let log = a.log.clone().unwrap_or_else(default_log_path);
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| {
            format!(
                "cannot open log file {}: {e}; choose one with --log",
                log.display()
            )
        })?;
    let start_len = log_file.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|s| s != "-d" && s != "--background")
        .collect();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args)
        .env(DAEMON_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| format!("log file: {e}"))?)
        .stderr(log_file);
    // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the mount process: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if mounted_at(mountpoint).is_some_and(|m| m.is_ferrofs()) {
            println!(
                "mounted at {} (pid {}, log {})",
                mountpoint.display(),
                child.id(),
                log.display()
            );
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = log_tail(&log, start_len);
            return Err(format!(
                "the mount process exited ({status}) before the mount was ready:\n{tail}"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the mount was not ready after 30 s; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_tail(log: &Path, from: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn default_log_path() -> PathBuf {
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/log/ferrofs.log")
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        home.join(".ferrofs").join("ferrofs.log")
    }
}

pub(super) fn default_cache_dir() -> String {
    if unsafe { libc::geteuid() } == 0 {
        "/var/lib/ferrofs/cache".to_string()
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        home.join(".ferrofs").join("cache").display().to_string()
    }
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
