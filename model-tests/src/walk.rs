//! Path resolution as the Linux VFS does it (`fs/namei.c`), over any namespace that can
//! look a name up in a directory and read a symlink. The model resolves paths with it,
//! and so does the library target, which has no kernel in front of it.
//!
//! What it reproduces: search permission is checked on every directory a component is
//! looked up in, the last one included (`may_lookup` runs for every component); symlinks
//! in the middle of a path are always followed, a final one only when asked; a relative
//! target resolves from the directory holding the link; at most 40 links are followed
//! in one resolution (`MAXSYMLINKS`), then ELOOP; a missing component gives ENOENT and a
//! non-directory one that has to be searched ENOTDIR. `fs.protected_symlinks` applies
//! only to links that end the path (`WALK_TRAILING`), and is left to the namespace.

use crate::ops::Who;
use crate::target::Kind;
use ferrofs_core::Errno;

/// `MAXSYMLINKS`.
pub const MAX_SYMLINKS: u32 = 40;

/// What the walker needs from a namespace.
pub trait Namespace {
    type Id: Copy + Eq + std::fmt::Debug;
    /// Looks `name` up in directory `dir` as `who`: EACCES without search permission on
    /// `dir`, `Ok(None)` if there is no such entry.
    fn lookup(
        &mut self,
        who: Who,
        dir: Self::Id,
        name: &str,
    ) -> Result<Option<(Self::Id, Kind)>, Errno>;
    /// The target of symlink `id`.
    fn readlink(&mut self, id: Self::Id) -> Result<String, Errno>;
    /// `may_follow_link`: whether `who` may follow `link`, found in `dir` as the final
    /// component of a path (kernel policy, `fs.protected_symlinks`; allowed by default).
    fn may_follow_trailing(
        &mut self,
        who: Who,
        dir: Self::Id,
        link: Self::Id,
    ) -> Result<(), Errno> {
        let _ = (who, dir, link);
        Ok(())
    }
}

/// The end of a walk: the directory holding the last component, its name, and what
/// it names (if anything).
#[derive(Clone, Debug)]
pub struct Walked<Id> {
    pub parent: Id,
    pub name: String,
    pub found: Option<(Id, Kind)>,
}

/// Resolves `comps` from directory `root`. An empty path is the root itself (as if it
/// were `.`, but only root runs ops on it, so no permission applies).
pub fn resolve<N: Namespace>(
    ns: &mut N,
    who: Who,
    root: N::Id,
    comps: &[&str],
    follow_last: bool,
) -> Result<Walked<N::Id>, Errno> {
    if comps.is_empty() {
        return Ok(Walked {
            parent: root,
            name: ".".into(),
            found: Some((root, Kind::Dir)),
        });
    }
    let mut links = 0;
    let owned: Vec<String> = comps.iter().map(|s| s.to_string()).collect();
    walk(ns, who, root, &owned, follow_last, true, &mut links)
}

fn walk<N: Namespace>(
    ns: &mut N,
    who: Who,
    start: N::Id,
    comps: &[String],
    follow_last: bool,
    trailing: bool,
    links: &mut u32,
) -> Result<Walked<N::Id>, Errno> {
    let mut dir = start;
    for (i, name) in comps.iter().enumerate() {
        let found = ns.lookup(who, dir, name)?;
        let last = i + 1 == comps.len();
        if last {
            if let (true, Some((id, Kind::Symlink))) = (follow_last, found) {
                // The body of a link that ends a path is walked like a new path: its
                // own last component ends it too ("trailing").
                let target = follow(ns, id, links, trailing.then_some((who, dir)))?;
                return walk(ns, who, dir, &target, true, trailing, links);
            }
            return Ok(Walked {
                parent: dir,
                name: name.clone(),
                found,
            });
        }
        dir = match found {
            None => return Err(Errno::ENOENT),
            Some((id, Kind::Dir)) => id,
            Some((id, Kind::Symlink)) => {
                let target = follow(ns, id, links, None)?;
                match walk(ns, who, dir, &target, true, false, links)?.found {
                    None => return Err(Errno::ENOENT),
                    Some((id, Kind::Dir)) => id,
                    Some(_) => return Err(Errno::ENOTDIR),
                }
            }
            Some(_) => return Err(Errno::ENOTDIR),
        };
    }
    unreachable!("walk of an empty path")
}

/// Counts a link against [`MAX_SYMLINKS`], checks `may_follow_link` for a trailing one
/// (`trailing`: who follows it, and the directory holding it), and reads it.
fn follow<N: Namespace>(
    ns: &mut N,
    link: N::Id,
    links: &mut u32,
    trailing: Option<(Who, N::Id)>,
) -> Result<Vec<String>, Errno> {
    if *links >= MAX_SYMLINKS {
        return Err(Errno::ELOOP);
    }
    *links += 1;
    if let Some((who, dir)) = trailing {
        ns.may_follow_trailing(who, dir, link)?;
    }
    let target = ns.readlink(link)?;
    // The generator makes only relative targets without `.` or `..`; an empty
    // component (from `a//b`) is skipped as the kernel does.
    let comps: Vec<String> = target
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    if comps.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(comps)
}

/// `generic_permission` for callers without supplementary groups: the owner class if
/// the caller owns the inode, else the group class if in its group, else other; root
/// (CAP_DAC_OVERRIDE) may read and write anything and search any directory.
/// `want` is a mask of 4 (read), 2 (write), 1 (execute/search).
pub fn permitted(who: Who, uid: u32, gid: u32, perm: u16, is_dir: bool, want: u16) -> bool {
    if who == Who::Root {
        return want & 1 == 0 || is_dir || perm & 0o111 != 0;
    }
    let bits = if who.uid() == uid {
        perm >> 6
    } else if who.gid() == gid {
        perm >> 3
    } else {
        perm
    } & 7;
    want & !bits == 0
}

/// Permission masks.
pub const R: u16 = 4;
pub const W: u16 = 2;
pub const X: u16 = 1;
