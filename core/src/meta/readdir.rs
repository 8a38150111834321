//! Directory listing with stable cookies: `.` is 1, `..` is 2, every entry is its seq
//! (≥ 3). A call lists at most `limit` entries after cookie `offset` with one range
//! scan of the directory's `E` keys, so a directory is never loaded whole.

use super::attr_codec::{decode_entry, decode_inode, Inode};
use super::keys;
use super::store::{load, load_dir};
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
            // A page in three reads, whatever its length: the names, their entries,
            // and (readdirplus) their attributes, each batch at once.
            let names = t.scan(&start, &end, want)?;
            let dentry_keys: Vec<Vec<u8>> =
                names.iter().map(|(_, n)| keys::dentry(ino, n)).collect();
            let mut found = Vec::with_capacity(names.len());
            for ((k, name), v) in names.into_iter().zip(t.get_many(&dentry_keys)?) {
                let seq = keys::seq_of_dir_index(&k).ok_or(Errno::EIO)?;
                let Some(v) = v else { continue };
                let e = decode_entry(&v)?;
                if e.seq == seq {
                    found.push((name, e, seq));
                }
            }
            let attrs = if plus {
                let attr_keys: Vec<Vec<u8>> =
                    found.iter().map(|(_, e, _)| keys::attr(e.ino)).collect();
                t.get_many(&attr_keys)?
                    .into_iter()
                    .zip(&found)
                    .map(|(v, (_, e, _))| match v {
                        Some(v) => decode_inode(e.ino, &v).map(|n| Some(n.attr)),
                        None => Err(Errno::ENOENT),
                    })
                    .collect::<Result<Vec<_>>>()?
            } else {
                vec![None; found.len()]
            };
            for ((name, e, seq), attr) in found.into_iter().zip(attrs) {
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
