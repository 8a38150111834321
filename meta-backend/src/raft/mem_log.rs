//! A Raft log in memory that knows what is durable: appends, compactions and
//! hard-state changes are pending until [`DurableLog::sync`], and [`MemLog::crash`]
//! drops what is pending, as a power cut drops an unsynced file's tail. The
//! simulator's replicas use it.

use super::replica::{check_range, DurableLog};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default, Debug)]
struct State {
    hard: HardState,
    conf: ConfState,
    first_conf: ConfState,
    /// The kept snapshot (empty: none yet).
    snapshot: Snapshot,
    /// Entries up to this index (and term) are compacted away.
    trunc: (u64, u64),
    /// `entries[i].index == trunc.0 + 1 + i`.
    entries: Vec<Entry>,
}

impl State {
    fn last(&self) -> u64 {
        self.trunc.0 + self.entries.len() as u64
    }
}

#[derive(Default)]
struct Inner {
    /// What Raft sees.
    current: State,
    /// What survives a crash.
    durable: State,
    /// Entries of `current` from this index on may differ from `durable`'s; `None`:
    /// the whole state does (after a compaction or a snapshot).
    dirty_from: Option<u64>,
    /// Syncs that fail (an I/O error) before one succeeds again.
    failing_syncs: u32,
    /// Raft asked for a snapshot the log does not have (see `DurableLog`).
    wanted: bool,
    /// Runs at every successful sync (the simulator makes its engine durable there,
    /// as one flush makes a sled replica's log and engine durable).
    on_sync: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemLog")
            .field("current", &self.current)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

/// What a failing sync answers (see [`MemLog::fail_syncs`]).
pub const INJECTED_IO_ERROR: &str = "injected I/O error";

/// A shared handle: clones are the same log (a replica and its "disk").
#[derive(Clone, Default, Debug)]
pub struct MemLog(Arc<Mutex<Inner>>);

impl MemLog {
    /// A new log of a cluster whose first voters are `voters`.
    pub fn new(voters: Vec<u64>) -> MemLog {
        let conf = ConfState {
            voters,
            ..ConfState::default()
        };
        let state = State {
            first_conf: conf.clone(),
            conf,
            ..State::default()
        };
        MemLog(Arc::new(Mutex::new(Inner {
            current: state.clone(),
            durable: state,
            dirty_from: Some(1),
            failing_syncs: 0,
            wanted: false,
            on_sync: None,
        })))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything not synced.
    pub fn crash(&self) {
        let mut i = self.inner();
        i.current = i.durable.clone();
        i.dirty_from = Some(i.current.last() + 1);
    }

    /// A crash after which the disk holds more than was synced: the first `keep` of
    /// the entries written since the last sync (a prefix, as a log file's tail is), and
    /// the hard state too if every one of them was kept (it is written after them).
    /// A compaction or snapshot not yet synced is kept whole or not at all; kept, it
    /// makes the engine durable too (see [`MemLog::on_sync`]), since it was written after.
    pub fn crash_torn(&self, keep: usize) {
        let mut i = self.inner();
        match i.dirty_from {
            Some(from) if i.durable.trunc == i.current.trunc => {
                let from = from.clamp(i.current.trunc.0 + 1, i.current.last() + 1);
                let pos = (from - i.current.trunc.0 - 1) as usize;
                let written = i.current.entries.len() - pos;
                let keep = keep.min(written);
                let mut kept = i.durable.clone();
                kept.entries.truncate(pos);
                kept.entries
                    .extend_from_slice(&i.current.entries[pos..pos + keep]);
                if keep == written {
                    kept.hard = i.current.hard.clone();
                }
                i.durable = kept;
            }
            _ if keep > 0 => {
                // A compaction (or an installed snapshot) reached the disk: so did
                // everything written before it, the engine's applies included (sled
                // recovers a prefix of its writes).
                i.durable = i.current.clone();
                let hook = i.on_sync.clone();
                drop(i);
                if let Some(f) = hook {
                    f();
                }
                self.crash();
                return;
            }
            _ => {}
        }
        drop(i);
        self.crash();
    }

    /// Runs `f` at every successful sync.
    pub fn on_sync(&self, f: Arc<dyn Fn() + Send + Sync>) {
        self.inner().on_sync = Some(f);
    }

    /// The next `n` syncs fail with an I/O error and make nothing durable.
    pub fn fail_syncs(&self, n: u32) {
        self.inner().failing_syncs = n;
    }

    /// The durable entries (for checkers).
    pub fn durable_entries(&self) -> Vec<Entry> {
        self.inner().durable.entries.clone()
    }

    pub fn hard_state(&self) -> HardState {
        self.inner().current.hard.clone()
    }
}

impl DurableLog for MemLog {
    fn append(&self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut i = self.inner();
        let cur = &mut i.current;
        if first.index <= cur.trunc.0 || first.index > cur.last() + 1 {
            return Err(format!(
                "append at {} outside the log ({}..={})",
                first.index,
                cur.trunc.0 + 1,
                cur.last()
            ));
        }
        // Entries from `first.index` on are replaced (a new leader's log wins).
        cur.entries
            .truncate((first.index - cur.trunc.0 - 1) as usize);
        cur.entries.extend_from_slice(entries);
        if let Some(d) = i.dirty_from.as_mut() {
            *d = (*d).min(first.index);
        }
        Ok(())
    }

    fn set_hard_state(&self, hs: &HardState) {
        self.inner().current.hard = hs.clone();
    }

    fn set_commit(&self, commit: u64) {
        self.inner().current.hard.commit = commit;
    }

    fn set_conf(&self, cs: &ConfState) {
        self.inner().current.conf = cs.clone();
    }

    fn first_conf(&self) -> ConfState {
        self.inner().current.first_conf.clone()
    }

    fn compact(&self, snap: &Snapshot, drop_to: u64) -> Result<(), String> {
        let mut i = self.inner();
        let cur = &mut i.current;
        let drop_to = drop_to.max(cur.trunc.0);
        if drop_to > cur.last() || drop_to > snap.get_metadata().index {
            return Err(format!(
                "cannot compact to {drop_to}: past the log or the snapshot"
            ));
        }
        let term = if drop_to == cur.trunc.0 {
            cur.trunc.1
        } else {
            cur.entries[(drop_to - cur.trunc.0 - 1) as usize].term
        };
        cur.entries.drain(..(drop_to - cur.trunc.0) as usize);
        cur.trunc = (drop_to, term);
        cur.snapshot = snap.clone();
        i.dirty_from = None;
        Ok(())
    }

    fn install(&self, snap: &Snapshot) -> Result<(), String> {
        let mut i = self.inner();
        let m = snap.get_metadata();
        let cur = &mut i.current;
        cur.entries.clear();
        cur.trunc = (m.index, m.term);
        cur.conf = m.get_conf_state().clone();
        cur.hard.commit = cur.hard.commit.max(m.index);
        cur.hard.term = cur.hard.term.max(m.term);
        cur.snapshot = snap.clone();
        i.dirty_from = None;
        Ok(())
    }

    fn kept_snapshot(&self) -> Snapshot {
        self.inner().current.snapshot.clone()
    }

    fn take_snapshot_wanted(&self) -> bool {
        std::mem::take(&mut self.inner().wanted)
    }

    fn sync(&self) -> Result<(), String> {
        let hook = self.sync_log()?;
        if let Some(f) = hook {
            f();
        }
        Ok(())
    }
}

impl MemLog {
    fn sync_log(&self) -> Result<Option<Arc<dyn Fn() + Send + Sync>>, String> {
        let i = &mut *self.inner();
        if i.failing_syncs > 0 {
            i.failing_syncs -= 1;
            return Err(INJECTED_IO_ERROR.into());
        }
        match i.dirty_from {
            Some(from) if i.durable.trunc == i.current.trunc => {
                i.durable.hard = i.current.hard.clone();
                i.durable.conf = i.current.conf.clone();
                let from = from.clamp(i.current.trunc.0 + 1, i.current.last() + 1);
                let pos = (from - i.current.trunc.0 - 1) as usize;
                i.durable.entries.truncate(pos);
                i.durable
                    .entries
                    .extend_from_slice(&i.current.entries[pos..]);
            }
            _ => i.durable = i.current.clone(),
        }
        i.dirty_from = Some(i.current.last() + 1);
        Ok(i.on_sync.clone())
    }
}

impl raft::Storage for MemLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let i = self.inner();
        Ok(RaftState {
            hard_state: i.current.hard.clone(),
            conf_state: i.current.conf.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let i = self.inner();
        let cur = &i.current;
        check_range(low, high, cur.trunc.0, cur.last())?;
        let at = |idx: u64| (idx - cur.trunc.0 - 1) as usize;
        let mut out = cur.entries[at(low)..at(high)].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let i = self.inner();
        let cur = &i.current;
        if idx == cur.trunc.0 {
            return Ok(cur.trunc.1);
        }
        if idx < cur.trunc.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        cur.entries
            .get((idx - cur.trunc.0 - 1) as usize)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner().current.trunc.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner().current.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let r = kept_or_unavailable(self.kept_snapshot(), request_index);
        if r.is_err() {
            self.inner().wanted = true;
        }
        r
    }
}

/// What `raft::Storage::snapshot` answers from a log's kept snapshot: it, if it holds
/// the engine's state (a compaction keeps only where it cut) and is recent enough;
/// else "not yet" (the log then notes that one is wanted, and the replica makes it).
pub fn kept_or_unavailable(snap: Snapshot, request_index: u64) -> raft::Result<Snapshot> {
    let index = snap.get_metadata().index;
    if index == 0 || index < request_index || snap.data.is_empty() {
        return Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ));
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn a_crash_drops_what_was_not_synced_and_appends_replace_conflicts() {
        let log = MemLog::new(vec![1]);
        log.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        log.sync().unwrap();
        log.append(&[entry(3, 1)]).unwrap();
        log.set_hard_state(&HardState {
            term: 2,
            ..HardState::default()
        });
        log.crash();
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.hard_state().term, 0);
        // A new leader's entry replaces index 2 onwards.
        log.append(&[entry(2, 3)]).unwrap();
        log.sync().unwrap();
        log.crash();
        assert_eq!(log.term(2).unwrap(), 3);
        assert_eq!(log.last_index().unwrap(), 2);
        assert!(log.append(&[entry(5, 3)]).is_err(), "a gap");
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_of_what_was_written_and_a_failed_sync_nothing() {
        let log = MemLog::new(vec![1]);
        log.append(&[entry(1, 1)]).unwrap();
        log.sync().unwrap();
        log.append(&[entry(2, 1), entry(3, 1), entry(4, 1)])
            .unwrap();
        log.set_hard_state(&HardState {
            term: 5,
            commit: 4,
            ..HardState::default()
        });
        log.crash_torn(2);
        assert_eq!(
            log.last_index().unwrap(),
            3,
            "entries 2 and 3 reached the disk"
        );
        assert_eq!(log.hard_state().term, 0, "the hard state came after them");
        log.append(&[entry(4, 1)]).unwrap();
        log.set_hard_state(&HardState {
            term: 5,
            ..HardState::default()
        });
        log.crash_torn(9);
        assert_eq!((log.last_index().unwrap(), log.hard_state().term), (4, 5));
        log.append(&[entry(5, 5)]).unwrap();
        log.fail_syncs(1);
        assert_eq!(log.sync(), Err(INJECTED_IO_ERROR.to_string()));
        log.crash();
        assert_eq!(log.last_index().unwrap(), 4);
        log.append(&[entry(5, 5)]).unwrap();
        log.sync().unwrap();
        log.crash();
        assert_eq!(log.last_index().unwrap(), 5, "the next sync works");
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.data = vec![7; 3].into();
        s
    }

    #[test]
    fn compaction_keeps_the_snapshot_and_the_entries_after_the_cut() {
        let log = MemLog::new(vec![1]);
        let es: Vec<Entry> = (1..=10).map(|i| entry(i, 1 + i / 5)).collect();
        log.append(&es).unwrap();
        log.sync().unwrap();
        log.compact(&snapshot(8, 2), 6).unwrap();
        assert_eq!(log.first_index().unwrap(), 7);
        assert_eq!(log.term(6).unwrap(), 2, "the cut's term is kept");
        assert!(matches!(
            log.term(5),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let ctx = GetEntriesContext::empty(false);
        assert!(log.entries(5, 8, None, ctx).is_err());
        let ctx = GetEntriesContext::empty(false);
        assert_eq!(log.entries(7, 11, None, ctx).unwrap().len(), 4);
        assert_eq!(log.snapshot(0, 2).unwrap().get_metadata().index, 8);
        assert!(log.snapshot(9, 2).is_err(), "older than asked for");
        // Not synced: a crash brings the whole log back; synced, it stays compacted.
        log.crash();
        assert_eq!(log.first_index().unwrap(), 1);
        log.compact(&snapshot(8, 2), 6).unwrap();
        log.sync().unwrap();
        log.append(&[entry(11, 3)]).unwrap();
        log.sync().unwrap();
        log.crash();
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (7, 11)
        );
    }

    #[test]
    fn an_installed_snapshot_replaces_the_whole_log() {
        let log = MemLog::new(vec![1]);
        log.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        let mut s = snapshot(20, 4);
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        log.install(&s).unwrap();
        log.sync().unwrap();
        log.crash();
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (21, 20)
        );
        assert_eq!(log.term(20).unwrap(), 4);
        assert_eq!(log.hard_state().commit, 20);
        assert_eq!(
            log.initial_state().unwrap().conf_state.voters,
            vec![1, 2, 3]
        );
        log.append(&[entry(21, 4)]).unwrap();
        assert!(log.append(&[entry(20, 4)]).is_err(), "inside the snapshot");
    }
}
