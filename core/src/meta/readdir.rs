//! Directory listing with stable cookies: `.` is 1, `..` is 2, every entry is its seq
//! (≥ 3). A call lists at most `limit` entries after cookie `offset` with one range
//! scan of the directory's `E` keys, so a directory is never loaded whole.

use super::attr_codec::Inode;
use super::keys;
use super::store::{get_entry, load, load_dir};
use super::Meta;
use crate::errno::{Errno, Result};
use crate::kv::{self, Txn};
use crate::types::{Ctx, DirEntry, FileType, Ino};

/// Cookie after `.`.
pub const COOKIE_DOT: u64 = 1;
/// Cookie after `..`.
pub const COOKIE_DOTDOT: u64 = 2;

impl Meta {
    /// Lists directory `ino` after cookie `offset` (0: from the start), at most `limit`
    /// entries; with `plus`, each entry carries its attributes. Permission to list was
    /// checked by [`Meta::opendir`] (the caller is not checked again, as with an open
    /// directory handle on Linux).
    pub fn readdir(
        &self,
        _ctx: &Ctx,
        ino: Ino,
        offset: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        kv::read(&**self.kv(), |t| {
            let dir = load_dir(t, ino)?;
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            if offset < COOKIE_DOT {
                out.push(dot(t, &dir, b".", dir.ino(), COOKIE_DOT, plus)?);
            }
            if offset < COOKIE_DOTDOT && out.len() < limit {
                out.push(dot(t, &dir, b"..", dir.attr.parent, COOKIE_DOTDOT, plus)?);
            }
            let want = limit - out.len();
            let from = offset.max(COOKIE_DOTDOT).checked_add(1);
            let (Some(from), true) = (from, want > 0) else {
                return Ok(out);
            };
            let start = keys::dir_index(ino, from);
            let end = keys::dir_index_end(ino);
            for (k, name) in t.scan(&start, &end, want)? {
                let seq = keys::seq_of_dir_index(&k).ok_or(Errno::EIO)?;
                let Some(e) = get_entry(t, ino, &name)? else {
                    continue;
                };
                if e.seq != seq {
                    continue;
                }
                let attr = if plus {
                    Some(load(t, e.ino)?.attr)
                } else {
                    None
                };
                out.push(DirEntry {
                    name,
                    ino: e.ino,
                    kind: e.kind,
                    next_offset: seq,
                    attr,
                });
            }
            Ok(out)
        })
    }
}

fn dot(
    t: &mut dyn Txn,
    dir: &Inode,
    name: &[u8],
    ino: Ino,
    cookie: u64,
    plus: bool,
) -> Result<DirEntry> {
    let attr = match plus {
        false => None,
        true if ino == dir.ino() => Some(dir.attr.clone()),
        true => Some(load(t, ino)?.attr),
    };
    Ok(DirEntry {
        name: name.to_vec(),
        ino,
        kind: FileType::Directory,
        next_offset: cookie,
        attr,
    })
}
