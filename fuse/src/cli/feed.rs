//! The change feed in a mount of a `raft://` volume: the meta servers as the
//! `vfs::feed` source, the FUSE notifier as the kernel's caches, and the thread that
//! polls (`--meta-feed-interval`).

use crate::vfs::feed::{ChangeSource, FeedConfig, Follower, KernelCaches};
use crate::vfs::Vfs;
use ferrofs_core::replica::{ChangeBatch, Remote};
use ferrofs_core::{Ino, Result};
use ferrofs_meta::raft::wire::{Request, Response};
use ferrofs_meta::raft::RaftClient;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A feed call gives up after this long without an answer from any server.
const PATIENCE: Duration = Duration::from_secs(1);
/// The feed is out of sync (caches cleared) after this long without an answer.
pub const FAIL_AFTER: Duration = Duration::from_secs(2);
/// How often the feed client makes sure it asks the leader: any replica answers the
/// feed, but one cut off from the others would answer "nothing new" for ever.
const REHOME_EVERY: Duration = Duration::from_secs(1);

/// The meta servers' change feed.
struct ServerFeed {
    client: RaftClient,
    addrs: Vec<String>,
    rehomed: Option<Instant>,
}

impl ChangeSource for ServerFeed {
    fn changes(&mut self, since: u64) -> Result<ChangeBatch> {
        if self.rehomed.is_none_or(|t| t.elapsed() >= REHOME_EVERY) {
            // Only the leader answers this read: the client follows its redirects and
            // asks the leader from now on. Without a leader (an election), any
            // replica's feed will do meanwhile.
            let _ = self.client.get(b"setting", false);
            self.rehomed = Some(Instant::now());
        }
        let b = self.client.changes(since)?;
        if b.reset && since > 0 {
            // A replica that restarted or installed a snapshot lost its history;
            // another may still have it, and a reset drops every cache.
            for addr in &self.addrs {
                if let Ok(Response::Changes(other)) =
                    self.client.call_once(addr, &Request::Changes { since })
                {
                    if !other.reset {
                        return Ok(other);
                    }
                }
            }
        }
        Ok(b)
    }
}

/// The kernel's caches, through the FUSE notifier. Notifications are sent from the
/// feed's thread, never from a request handler (the kernel would wait on the handler's
/// own locks).
struct Notifier(fuser::Notifier);

impl KernelCaches for Notifier {
    fn forget_entry(&self, parent: Ino, name: &[u8]) {
        if let Err(e) = self
            .0
            .inval_entry(fuser::INodeNo(parent.0), OsStr::from_bytes(name))
        {
            tracing::debug!(?parent, "kernel entry invalidation failed: {e}");
        }
    }

    fn forget_inode(&self, ino: Ino, data: Option<(u64, u64)>) {
        // A negative offset: attributes only.
        let (offset, len) = data.map_or((-1, 0), |(o, l)| (o as i64, l as i64));
        if let Err(e) = self.0.inval_inode(fuser::INodeNo(ino.0), offset, len) {
            tracing::debug!(?ino, "kernel inode invalidation failed: {e}");
        }
    }
}

/// Starts following the feed of the volume at `url` (`raft://` only; `None` for
/// other engines), setting `in_sync` while caught up.
pub fn spawn(
    url: &ferrofs_meta::MetaUrl,
    vfs: Arc<Vfs>,
    notifier: fuser::Notifier,
    config: FeedConfig,
    in_sync: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let ferrofs_meta::MetaUrl::Raft { addrs, .. } = url else {
        return None;
    };
    let client = ferrofs_meta::url::feed_client(url, PATIENCE)?;
    let source = ServerFeed {
        client,
        addrs: addrs.clone(),
        rehomed: None,
    };
    let interval = config.interval;
    let follower = Follower::new(vfs, source, Notifier(notifier), config, in_sync);
    tracing::info!(?interval, "following the meta servers' change feed");
    Some(
        std::thread::Builder::new()
            .name("ferrofs-feed".into())
            .spawn(move || follower.run(&stop))
            .expect("spawn feed thread"),
    )
}
