//! The data oracle: what each file may contain, as far as the clients were told.
//!
//! **Owned files** `/c{k}/f{n}` are written only by client `k`, always as a full rewrite
//! (open with O_TRUNC, write everything, maybe fsync, close). The oracle keeps the
//! *shapes* the file may have now: exactly version `v`, some prefix of version `v` (a
//! rewrite that failed or was interrupted), or absent. A close that succeeded makes the
//! shape exact. Each change is stamped with the commit sequence number of the writer's
//! last metadata commit, so a system crash can tell what had been acknowledged as
//! durable (covered by a successful `sync` — anyone's, since the engine syncs
//! everything): the file may fall back to the newest durable shape, never further.
//!
//! **Shared files** are written by several clients at random offsets; the oracle logs
//! every write (stream, range) before it is issued, so that any byte read back can be
//! attributed to a write (or is 0).

use crate::pattern;
use std::collections::BTreeMap;

/// One state an owned file may be in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum Shape {
    Absent,
    /// Exactly version `version`, `len` bytes long.
    Exact {
        version: u32,
        len: u64,
    },
    /// The first `n` bytes of version `version`, for some `n <= len` (0 included).
    Prefix {
        version: u32,
        len: u64,
    },
}

impl Shape {
    pub fn version(self) -> Option<u32> {
        match self {
            Shape::Absent => None,
            Shape::Exact { version, .. } | Shape::Prefix { version, .. } => Some(version),
        }
    }
}

/// A change of an owned file under way.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pending {
    Rewrite { version: u32, len: u64 },
    Unlink,
}

/// How a change of an owned file ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Every step succeeded: the new shape is exact.
    Done,
    /// It failed part-way or its client crashed: it may or may not have happened,
    /// wholly or in part.
    Uncertain,
    /// It failed with nothing changed (an unlink that returned an error).
    Unchanged,
}

/// What the oracle knows of one owned file.
#[derive(Clone, Debug)]
pub struct OwnedFile {
    /// (shapes the file may have, commit after which they hold), oldest first; the
    /// last entry is the present. Entries older than the newest durable one are dropped.
    history: Vec<(Vec<Shape>, u64)>,
    /// The change under way.
    in_progress: Option<Pending>,
    /// Bumped at every change, so a reader can tell whether the file changed under it.
    pub generation: u64,
    next_version: u32,
    /// Length of each version begun (version `v` at `v - 1`).
    lens: Vec<u64>,
}

impl Default for OwnedFile {
    fn default() -> Self {
        OwnedFile {
            history: vec![(vec![Shape::Absent], 0)],
            in_progress: None,
            generation: 0,
            next_version: 1,
            lens: Vec::new(),
        }
    }
}

impl OwnedFile {
    fn now(&self) -> &[Shape] {
        &self.history.last().expect("history is never empty").0
    }

    /// The shapes a reader may see now: the present ones, and any prefix of a rewrite
    /// under way.
    pub fn accepted(&self) -> Vec<Shape> {
        let mut v = self.now().to_vec();
        match self.in_progress {
            Some(Pending::Rewrite { version, len }) => v.push(Shape::Prefix { version, len }),
            Some(Pending::Unlink) => v.push(Shape::Absent),
            None => {}
        }
        v
    }

    /// Whether the owner is rewriting the file now.
    pub fn busy(&self) -> bool {
        self.in_progress.is_some()
    }

    /// Whether the file is known exactly (one exact shape, nothing under way).
    pub fn exact(&self) -> Option<Shape> {
        match (self.now(), self.in_progress) {
            ([s], None) => Some(*s),
            _ => None,
        }
    }

    /// The oldest version whose bytes the file may still show (versions are numbered
    /// in order; `next` if none).
    pub fn oldest_live(&self) -> u32 {
        self.history
            .iter()
            .flat_map(|(s, _)| s.iter())
            .filter_map(|s| s.version())
            .chain(match self.in_progress {
                Some(Pending::Rewrite { version, .. }) => Some(version),
                _ => None,
            })
            .min()
            .unwrap_or(self.next_version)
    }

    /// Every version from `from` to the newest begun, with its length: what a read that
    /// raced rewrites may show pieces of.
    pub fn versions_since(&self, from: u32) -> Vec<(u32, u64)> {
        (from..self.next_version)
            .map(|v| (v, self.lens[v as usize - 1]))
            .collect()
    }

    fn push(&mut self, mut shapes: Vec<Shape>, seq: u64, acked: u64) {
        shapes.sort();
        shapes.dedup();
        self.history.push((shapes, seq));
        // Keep the newest entry that is durable (seq <= acked) and everything after it.
        let keep_from = self
            .history
            .iter()
            .rposition(|(_, s)| *s <= acked)
            .unwrap_or(0);
        self.history.drain(..keep_from);
        self.generation += 1;
    }

    /// The owner starts rewriting the file with `len` bytes: returns the new version.
    pub fn begin(&mut self, len: u64) -> u32 {
        let v = self.next_version;
        self.next_version += 1;
        self.lens.push(len);
        self.in_progress = Some(Pending::Rewrite { version: v, len });
        self.generation += 1;
        v
    }

    /// The owner starts removing the file.
    pub fn begin_unlink(&mut self) {
        self.in_progress = Some(Pending::Unlink);
        self.generation += 1;
    }

    /// The change under way ended. `seq` is the owner's last commit.
    pub fn end(&mut self, outcome: Outcome, seq: u64, acked: u64) {
        let Some(pending) = self.in_progress.take() else {
            return;
        };
        let new = match pending {
            Pending::Rewrite { version, len } => match outcome {
                Outcome::Done => Shape::Exact { version, len },
                _ => Shape::Prefix { version, len },
            },
            Pending::Unlink => Shape::Absent,
        };
        let shapes = match outcome {
            Outcome::Done => vec![new],
            Outcome::Uncertain => {
                let mut s = self.now().to_vec();
                s.push(new);
                s
            }
            Outcome::Unchanged => {
                self.generation += 1;
                return;
            }
        };
        self.push(shapes, seq, acked);
    }

    /// A system crash: the file may now show any shape it had since its newest durable
    /// one (the engine kept a prefix of the commits, at least up to `acked`).
    pub fn system_crash(&mut self, acked: u64) {
        debug_assert!(self.in_progress.is_none(), "crash the clients first");
        let from = self
            .history
            .iter()
            .rposition(|(_, s)| *s <= acked)
            .unwrap_or(0);
        // The newest durable shapes, and anything reached after them — including every
        // intermediate state of a later rewrite (truncated, partly written): the engine
        // may have kept any prefix of the commits after `acked`.
        let mut shapes: Vec<Shape> = self.history[from].0.clone();
        for (later, _) in &self.history[from + 1..] {
            shapes.extend(later.iter().map(|s| match *s {
                Shape::Exact { version, len } => Shape::Prefix { version, len },
                other => other,
            }));
        }
        shapes.sort();
        shapes.dedup();
        // What survived is durable now.
        self.history = vec![(shapes, 0)];
        self.generation += 1;
    }
}

/// One write into a shared file, logged before it was issued.
#[derive(Clone, Copy, Debug)]
pub struct SharedWrite {
    pub stream: u64,
    pub start: u64,
    pub end: u64,
}

/// Counts of what the data checks saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataStats {
    /// Reads of owned files compared exactly against the oracle.
    pub exact_reads: u64,
    /// Reads of owned files that raced a rewrite (checked for attribution only).
    pub raced_reads: u64,
    /// Reads of shared files checked for garbage.
    pub shared_reads: u64,
    /// Bytes compared.
    pub bytes_checked: u64,
    /// Reads that failed with EIO after the store or the metadata disk returned an
    /// injected error.
    pub eio_injected: u64,
    /// Reads that failed with ENOSPC after the full metadata disk refused a write.
    pub enospc_injected: u64,
    /// Other operations (namespace operations, unlinks, mounts) that failed with EIO or
    /// ENOSPC after an injected fault (store or metadata disk) hit one of their calls.
    pub op_errors_injected: u64,
    /// Reads that failed with EIO because the objects they planned to read were
    /// deleted meanwhile (truncate/rewrite/compaction + gc raced the read).
    pub eio_raced_gc: u64,
    /// Reads through an open handle that found the file gone: another client removed
    /// it, and its `Meta` cannot know the file is open here (open counts are per
    /// process), so it was deleted at once.
    pub enoent_open: u64,
    /// Reads that failed with EIO because the writer's staged (writeback) blocks were
    /// not uploaded yet, or were lost with its cache disk.
    pub eio_unuploaded: u64,
}

/// The oracle of one run.
#[derive(Debug, Default)]
pub struct Oracle {
    pub owned: BTreeMap<(usize, u32), OwnedFile>,
    pub shared: BTreeMap<u64, Vec<SharedWrite>>,
    next_write: u64,
    pub stats: DataStats,
}

impl Oracle {
    pub fn owned(&mut self, client: usize, file: u32) -> &mut OwnedFile {
        self.owned.entry((client, file)).or_default()
    }

    /// Logs a write of `len` bytes at `off` into shared inode `ino`; returns the stream
    /// the bytes must come from.
    pub fn shared_write(&mut self, ino: u64, off: u64, len: u64) -> u64 {
        self.next_write += 1;
        let stream = pattern::shared_stream(ino, self.next_write);
        self.shared.entry(ino).or_default().push(SharedWrite {
            stream,
            start: off,
            end: off + len,
        });
        stream
    }

    /// Client `client` died: its rewrites under way failed.
    pub fn client_crashed(&mut self, client: usize, seq: u64, acked: u64) {
        for ((c, _), f) in self.owned.iter_mut() {
            if *c == client && f.in_progress.is_some() {
                f.end(Outcome::Uncertain, seq, acked);
            }
        }
    }

    /// The metadata engine lost its unsynced tail; every client died before.
    pub fn system_crash(&mut self, acked: u64) {
        for f in self.owned.values_mut() {
            f.system_crash(acked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: Shape = Shape::Exact {
        version: 1,
        len: 10,
    };
    const V2: Shape = Shape::Exact {
        version: 2,
        len: 20,
    };

    #[test]
    fn a_completed_rewrite_is_exact_and_a_failed_one_is_uncertain() {
        let mut f = OwnedFile::default();
        assert_eq!(f.exact(), Some(Shape::Absent));
        let v = f.begin(10);
        assert_eq!(f.exact(), None);
        f.end(Outcome::Done, 5, 0);
        assert_eq!((v, f.exact()), (1, Some(V1)));
        f.begin(20);
        f.end(Outcome::Uncertain, 6, 0);
        assert_eq!(
            f.accepted(),
            vec![
                V1,
                Shape::Prefix {
                    version: 2,
                    len: 20
                }
            ]
        );
    }

    #[test]
    fn a_system_crash_falls_back_to_the_newest_synced_shape() {
        let mut f = OwnedFile::default();
        f.begin(10);
        f.end(Outcome::Done, 5, 0); // v1 at commit 5
        f.begin(20);
        f.end(Outcome::Done, 9, 7); // v2 at commit 9; commits up to 7 are synced
        f.system_crash(7);
        // v2 itself, or any state its rewrite went through (truncated, partly written).
        assert_eq!(
            f.accepted(),
            vec![
                V1,
                Shape::Prefix {
                    version: 2,
                    len: 20
                }
            ]
        );
        // Synced past v2: only v2 may survive.
        let mut g = OwnedFile::default();
        g.begin(10);
        g.end(Outcome::Done, 5, 0);
        g.begin(20);
        g.end(Outcome::Done, 9, 9);
        g.system_crash(9);
        assert_eq!(g.accepted(), vec![V2]);
        // Nothing synced: the file may not exist at all.
        let mut h = OwnedFile::default();
        h.begin(10);
        h.end(Outcome::Done, 5, 0);
        h.system_crash(0);
        assert_eq!(
            h.accepted(),
            vec![
                Shape::Absent,
                Shape::Prefix {
                    version: 1,
                    len: 10
                }
            ]
        );
    }
}
