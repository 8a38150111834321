//! Keeping a member's registration and its view of the group fresh: a member registers
//! its address and weight under its id, renews the registration every few seconds, reads
//! the group's registrations at the same time and hands them to its [`Group`]; leaving
//! cleanly removes it. A member that dies is dropped by the others once its registration
//! is older than [`super::MEMBER_TTL_SECS`] (its peers' breakers skip it sooner).

use super::Group;
use ferrofs_core::cache::group::{Registration, ViewChange};
use ferrofs_core::meta::Meta;
use ferrofs_core::Errno;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a member renews its registration and rereads the group's.
pub const REFRESH: Duration = Duration::from_secs(2);

/// A sharing member's registration details.
#[derive(Clone, Debug)]
pub struct Me {
    pub id: String,
    pub addr: String,
    pub weight: u32,
}

/// Renews `me`'s registration (a sharing member) and updates the group's view.
pub fn refresh(meta: &Meta, group: &Group, me: Option<&Me>) -> Result<ViewChange, Errno> {
    if let Some(me) = me {
        let r = Registration {
            addr: me.addr.clone(),
            weight: me.weight,
            seen: group.now_secs(),
        };
        meta.register_member(group.name(), &me.id, &r)?;
    }
    let members = meta.group_members(group.name())?;
    Ok(group.update(&members))
}

/// Refreshes every [`REFRESH`] until `stop`, then unregisters `me`.
pub fn spawn(
    meta: Arc<Meta>,
    group: Arc<Group>,
    me: Option<Me>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ferrofs-group".into())
        .spawn(move || {
            let mut last = Instant::now();
            let mut failing = false;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() < REFRESH {
                    continue;
                }
                last = Instant::now();
                match refresh(&meta, &group, me.as_ref()) {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!(group = %group.name(), "cache group membership is current again");
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(group = %group.name(), "cannot refresh the cache group's membership: {e:?} (retrying)");
                    }
                    Err(_) => {}
                }
            }
            if let Some(me) = &me {
                if let Err(e) = meta.unregister_member(group.name(), &me.id) {
                    tracing::warn!("cannot leave cache group {}: {e:?}", group.name());
                }
            }
        })
}

/// A member id that stays the same across restarts of one member: the host name and a
/// short hash of its cache dirs, so a restarted member owns the blocks it has cached.
pub fn default_member_id(host: &str, cache_dirs: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(cache_dirs.as_bytes());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect();
    format!("{host}-{:08x}", h as u32)
}
