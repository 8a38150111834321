//! Client sessions (`H` keys) and cleanup of inodes a crashed client left open (`U`).

use super::ids::{get_counter, set_counter};
use super::keys;
use super::store::load_opt;
use super::{data, lock, Meta};
use crate::errno::{Errno, Result};
use crate::kv;
use crate::types::Ino;

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

    /// Removes a session's record.
    pub fn close_session(&self, id: u64) -> Result<()> {
        kv::txn(&**self.kv(), |t| {
            t.delete(&keys::session(id));
            Ok(())
        })?;
        let mut s = lock(&self.session);
        if *s == id {
            *s = 0;
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

    /// Deletes the inodes that were unlinked while open and never closed because their
    /// client died (their `U` keys), queueing their data for gc; returns how many.
    /// Inodes open in this process are kept. Sessions carry no liveness yet, so this
    /// assumes no other live client shares the volume (true of the embedded engine).
    pub fn cleanup_orphans(&self) -> Result<u64> {
        let opens = lock(&self.opens);
        let (start, end) = keys::unlinked_range();
        kv::txn(&**self.kv(), |t| {
            let mut count = 0;
            for (k, _) in super::store::scan_all(t, &start, &end)? {
                let ino = Ino(keys::id_of(&k).ok_or(Errno::EIO)?);
                if opens.get(&ino).copied().unwrap_or(0) > 0 {
                    continue;
                }
                match load_opt(t, ino)? {
                    Some(n) if n.attr.nlink == 0 => {
                        data::delete_inode(t, &n)?;
                        count += 1;
                    }
                    _ => t.delete(&k),
                }
            }
            Ok(count)
        })
    }
}
