//! Other clients' changes, as the replicated engine's change feed reports them
//! (`replica::feed`: the keys each applied command wrote), turned into what a client
//! has to forget: cached attributes, names, listing pages, the slice lists and data of
//! files, and (for the kernel's caches) extended attributes.
//!
//! The mapping follows the key layout of ARCHITECTURE.md ("Metadata key layout"):
//!
//! | key | invalidates |
//! | --- | --- |
//! | `A ino I` | the inode's attributes; its listing pages too (a directory's `..` entry names its parent, which a rename changes) |
//! | `A parent D name` | what `name` refers to in `parent` (positive or negative), and `parent`'s listing pages |
//! | `A parent E seq` | `parent`'s listing pages (the readdir order) |
//! | `A ino C chunk` | the slice list of that chunk of `ino`, and the kernel's pages of it |
//! | `A ino X name` | the kernel's attributes of `ino` (it caches ACLs with them) |
//! | `A ino S`, counters, `G`, `U`, `W`, `H`, `L`, `setting` | nothing: a symlink's target never changes, the rest is never cached |
//!
//! A command writes the attribute key of every inode whose attributes it changes
//! (size, times, links, mode, owner), so a name's entry need not drop the inode it
//! named: that inode's own `I` key comes with it.

use crate::meta::keys;
use crate::types::{ChunkIndex, Ino};
use std::collections::BTreeSet;

/// What one changed key invalidates.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Invalidation {
    /// `A ino I`: attributes of the inode, and its listing if it is a directory.
    Inode(Ino),
    /// `A parent D name`: the lookup of `name` in `parent`, and `parent`'s listing.
    Name(Ino, Vec<u8>),
    /// `A dir E seq`: the directory's listing.
    Listing(Ino),
    /// `A ino C chunk`: the file's data in that chunk.
    Chunk(Ino, ChunkIndex),
    /// `A ino X name`: an extended attribute of the inode.
    Xattr(Ino),
}

/// What the changed metadata key `key` invalidates in a client (`None`: nothing).
pub fn invalidation(key: &[u8]) -> Option<Invalidation> {
    if key.first() != Some(&b'A') || key.len() < 10 {
        return None;
    }
    let ino = Ino(u64::from_be_bytes(key[1..9].try_into().ok()?));
    let rest = &key[keys::NAME_OFFSET..];
    match keys::tag_of(key)? {
        b'I' if rest.is_empty() => Some(Invalidation::Inode(ino)),
        b'D' if !rest.is_empty() => Some(Invalidation::Name(ino, rest.to_vec())),
        b'E' => Some(Invalidation::Listing(ino)),
        b'C' => keys::chunk_index_of(key).map(|c| Invalidation::Chunk(ino, c)),
        b'X' => Some(Invalidation::Xattr(ino)),
        _ => None,
    }
}

/// A page of the change feed as invalidations, each once.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Changes {
    /// Everything is to be forgotten (the feed could not say what changed).
    pub reset: bool,
    /// Attributes (and listings, of directories).
    pub inodes: BTreeSet<Ino>,
    /// Names in directories (the directories' listings with them).
    pub names: BTreeSet<(Ino, Vec<u8>)>,
    /// Directory listings.
    pub listings: BTreeSet<Ino>,
    /// Chunks whose slice lists changed.
    pub chunks: BTreeSet<(Ino, ChunkIndex)>,
    /// Inodes whose extended attributes changed.
    pub xattrs: BTreeSet<Ino>,
}

impl Changes {
    /// What a page of changed keys invalidates.
    pub fn of_keys<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Changes {
        let mut c = Changes::default();
        for k in keys {
            c.add_key(k);
        }
        c
    }

    /// Everything: the feed lost track (`reset`).
    pub fn everything() -> Changes {
        Changes {
            reset: true,
            ..Changes::default()
        }
    }

    pub fn add_key(&mut self, key: &[u8]) {
        match invalidation(key) {
            Some(Invalidation::Inode(i)) => {
                self.inodes.insert(i);
            }
            Some(Invalidation::Name(p, n)) => {
                self.names.insert((p, n));
            }
            Some(Invalidation::Listing(d)) => {
                self.listings.insert(d);
            }
            Some(Invalidation::Chunk(i, c)) => {
                self.chunks.insert((i, c));
            }
            Some(Invalidation::Xattr(i)) => {
                self.xattrs.insert(i);
            }
            None => {}
        }
    }

    /// Nothing to invalidate.
    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.inodes.is_empty()
            && self.names.is_empty()
            && self.listings.is_empty()
            && self.chunks.is_empty()
            && self.xattrs.is_empty()
    }

    /// How many invalidations (a reset counts as one).
    pub fn len(&self) -> usize {
        self.reset as usize
            + self.inodes.len()
            + self.names.len()
            + self.listings.len()
            + self.chunks.len()
            + self.xattrs.len()
    }
}

#[cfg(test)]
mod tests;
