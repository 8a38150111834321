//! Client sessions (`H` keys) and cleanup after crashed clients: the inodes they left
//! open (`U`) and the file locks they held (`K`).

use super::ids::{get_counter, set_counter};
use super::keys;
use super::store::load_opt;
use super::{data, lock, locks, Meta};
use crate::errno::{Errno, Result};
use crate::kv;
use crate::types::{Ino, Timespec};

impl Meta {
    /// Registers this client's session with its info (JSON: host, pid, mount point,
    /// start time) and returns its id. Inodes this client keeps open after their last
    /// unlink are recorded under this id.
    pub fn new_session(&self, info_json: &str) -> Result<u64> {
        let id = kv::txn(&**self.kv(), |t| {
            let id = get_counter(t, keys::NEXT_SESSION)?.max(1);
            set_counter(t, keys::NEXT_SESSION, id + 1);
            t.set(&keys::session(id), info_json.as_bytes());
            Ok(id)
        })?;
        *lock(&self.session) = id;
        Ok(id)
    }

    /// Removes a session's record, its heartbeat and any file lock it still holds.
    pub fn close_session(&self, id: u64) -> Result<()> {
        let mut locked = lock(&self.locked);
        kv::txn(&**self.kv(), |t| {
            t.delete(&keys::session(id));
            t.delete(&keys::session_alive(id));
            locks::drop_all_session_locks(t, id)?;
            Ok(())
        })?;
        let mut s = lock(&self.session);
        if *s == id {
            *s = 0;
            locked.clear();
        }
        Ok(())
    }

    /// Every registered session: (id, info JSON).
    pub fn list_sessions(&self) -> Result<Vec<(u64, String)>> {
        let (start, end) = keys::session_range();
        kv::read(&**self.kv(), |t| {
            super::store::scan_all(t, &start, &end)?
                .into_iter()
                .map(|(k, v)| {
                    let id = keys::id_of(&k).ok_or(Errno::EIO)?;
                    Ok((id, String::from_utf8_lossy(&v).into_owned()))
                })
                .collect()
        })
    }

    /// Records that this client is alive at `now` (its session's heartbeat). Mounts
    /// send one when they start and every few seconds after.
    pub fn heartbeat(&self, now: Timespec) -> Result<()> {
        let id = *lock(&self.session);
        if id == 0 {
            return Ok(());
        }
        let at = now.sec.max(0) as u64;
        kv::txn(&**self.kv(), |t| {
            t.set(&keys::session_alive(id), &at.to_be_bytes());
            Ok(())
        })
    }

    /// Cleans up after dead clients. A session is alive if it is this client's, or
    /// if its client sent a heartbeat less than `ttl_secs` before `now`. With
    /// `ttl_secs` 0 only this client's counts, which is right when no other client
    /// can be running (the embedded engine admits one process).
    ///
    /// Dead sessions' records are removed, and the inodes they kept open after their
    /// last unlink (`U` keys) are deleted, with their data queued for gc. Inodes open
    /// in this process are kept. Returns (sessions removed, inodes deleted); the file
    /// locks of dead sessions go too (see [`Meta::cleanup_dead_clients`]).
    pub fn cleanup_orphans(&self, now: Timespec, ttl_secs: u64) -> Result<(u64, u64)> {
        let c = self.cleanup_dead_clients(now, ttl_secs)?;
        Ok((c.sessions, c.inodes))
    }

    /// [`Meta::cleanup_orphans`], which also removes every file lock of a session that
    /// is not alive (found through the `K` index, whether or not its `H` record is
    /// left), and counts what went.
    pub fn cleanup_dead_clients(&self, now: Timespec, ttl_secs: u64) -> Result<Cleanup> {
        let opens = lock(&self.opens);
        let me = *lock(&self.session);
        let now = now.sec.max(0) as u64;
        let (ustart, uend) = keys::unlinked_range();
        let (hstart, hend) = keys::session_range();
        let (lstart, lend) = keys::session_alive_range();
        let (kstart, kend) = keys::held_range();
        kv::txn(&**self.kv(), |t| {
            let mut seen = std::collections::BTreeMap::new();
            for (k, v) in super::store::scan_all(t, &lstart, &lend)? {
                let at = u64::from_be_bytes(v.as_slice().try_into().map_err(|_| Errno::EIO)?);
                seen.insert(keys::id_of(&k).ok_or(Errno::EIO)?, at);
            }
            let alive = |id: u64| {
                id == me
                    || (ttl_secs > 0
                        && seen
                            .get(&id)
                            .is_some_and(|&at| now.saturating_sub(at) < ttl_secs))
            };
            let mut sessions = 0;
            let mut lock_sessions = 0;
            for (k, _) in super::store::scan_all(t, &hstart, &hend)? {
                let id = keys::id_of(&k).ok_or(Errno::EIO)?;
                if !alive(id) {
                    t.delete(&k);
                    t.delete(&keys::session_alive(id));
                    sessions += 1;
                }
            }
            // Sessions holding locks, one read each: the first `K` key of a session,
            // then on from the next session.
            let mut lock_ranges = 0;
            let mut from = kstart.clone();
            while let Some((k, _)) = t.scan(&from, &kend, 1)?.into_iter().next() {
                let (id, _) = keys::held_of(&k).ok_or(Errno::EIO)?;
                if !alive(id) {
                    lock_ranges += locks::drop_all_session_locks(t, id)?;
                    lock_sessions += 1;
                }
                match id.checked_add(1) {
                    Some(_) => from = keys::session_held_range(id).1,
                    None => break,
                }
            }
            let mut inodes = 0;
            for (k, v) in super::store::scan_all(t, &ustart, &uend)? {
                let ino = Ino(keys::id_of(&k).ok_or(Errno::EIO)?);
                let owner = v.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
                if alive(owner) || opens.get(&ino).copied().unwrap_or(0) > 0 {
                    continue;
                }
                match load_opt(t, ino)? {
                    Some(n) if n.attr.nlink == 0 => {
                        data::delete_inode(t, &n)?;
                        inodes += 1;
                    }
                    _ => t.delete(&k),
                }
            }
            Ok(Cleanup {
                sessions,
                inodes,
                lock_sessions,
                lock_ranges,
            })
        })
    }
}

/// What [`Meta::cleanup_dead_clients`] removed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Cleanup {
    /// Dead sessions' records (`H`).
    pub sessions: u64,
    /// Inodes dead sessions kept open after unlinking them, now deleted.
    pub inodes: u64,
    /// Dead sessions that still held file locks.
    pub lock_sessions: u64,
    /// Locked byte ranges of those sessions (an `flock` lock is one).
    pub lock_ranges: u64,
}
