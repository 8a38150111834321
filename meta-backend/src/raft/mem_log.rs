//! A Raft log in memory that knows what is durable: appends and hard-state changes
//! are pending until [`DurableLog::sync`], and [`MemLog::crash`] drops what is pending,
//! as a power cut drops an unsynced file's tail. The simulator's replicas use it.
//!
//! It keeps the whole log (no compaction yet).

use super::replica::{check_range, DurableLog};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default, Debug)]
struct State {
    hard: HardState,
    conf: ConfState,
    /// `entries[i].index == i + 1`.
    entries: Vec<Entry>,
}

#[derive(Default, Debug)]
struct Inner {
    /// What Raft sees.
    current: State,
    /// What survives a crash.
    durable: State,
    /// Entries of `current` from this position on may differ from `durable`'s.
    dirty_from: usize,
}

/// A shared handle: clones are the same log (a replica and its "disk").
#[derive(Clone, Default, Debug)]
pub struct MemLog(Arc<Mutex<Inner>>);

impl MemLog {
    /// A new log of a cluster whose first voters are `voters`.
    pub fn new(voters: Vec<u64>) -> MemLog {
        let state = State {
            conf: ConfState {
                voters,
                ..ConfState::default()
            },
            ..State::default()
        };
        MemLog(Arc::new(Mutex::new(Inner {
            current: state.clone(),
            durable: state,
            dirty_from: 0,
        })))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything not synced.
    pub fn crash(&self) {
        let mut i = self.inner();
        i.current = i.durable.clone();
        i.dirty_from = i.current.entries.len();
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
        let log = &mut i.current.entries;
        if first.index == 0 || first.index > log.len() as u64 + 1 {
            return Err(format!(
                "append at {} leaves a gap after {}",
                first.index,
                log.len()
            ));
        }
        // Entries from `first.index` on are replaced (a new leader's log wins).
        log.truncate(first.index as usize - 1);
        log.extend_from_slice(entries);
        i.dirty_from = i.dirty_from.min(first.index as usize - 1);
        Ok(())
    }

    fn set_hard_state(&self, hs: &HardState) {
        self.inner().current.hard = hs.clone();
    }

    fn set_commit(&self, commit: u64) {
        self.inner().current.hard.commit = commit;
    }

    fn sync(&self) -> Result<(), String> {
        let i = &mut *self.inner();
        i.durable.hard = i.current.hard.clone();
        i.durable.conf = i.current.conf.clone();
        let from = i.dirty_from.min(i.current.entries.len());
        i.durable.entries.truncate(from);
        i.durable
            .entries
            .extend_from_slice(&i.current.entries[from..]);
        i.dirty_from = i.current.entries.len();
        Ok(())
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
        let log = &i.current.entries;
        check_range(low, high, log.len() as u64)?;
        let mut out = log[low as usize - 1..high as usize - 1].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let i = self.inner();
        if idx == 0 {
            return Ok(0);
        }
        i.current
            .entries
            .get(idx as usize - 1)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner().current.entries.len() as u64)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The whole log is kept, so no follower ever needs one.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
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
}
