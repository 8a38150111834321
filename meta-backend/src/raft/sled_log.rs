//! A replica's Raft log on disk: two trees of the replica's sled database, beside its
//! metadata, so that one flush makes the log and the applied metadata durable.
//!
//! ```text
//! tree raft-entries:  index u64 BE → Entry (protobuf)
//! tree raft-state:    "hard" → HardState (protobuf), "conf" → ConfState (protobuf) as of
//!                     the last applied entry, "conf0" → the first ConfState,
//!                     "trunc" → index u64 | term u64 (entries up to it are compacted)
//! tree raft-snapshot: "snap" → the kept Snapshot (protobuf; its data: core::replica::snapshot)
//! ```
//!
//! sled recovers a prefix of its operations after a crash, across trees, which the
//! order of writes here relies on: a compaction stores its snapshot before its cut
//! and drops entries last; an installed snapshot is stored before the engine is
//! restored from it, so a crash in between leaves a log whose snapshot is ahead of the
//! engine, and the replica restores the engine from it when it starts.

use super::mem_log::kept_or_unavailable;
use super::replica::{check_range, DurableLog};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::sync::{Arc, Mutex};

const HARD: &[u8] = b"hard";
const CONF: &[u8] = b"conf";
const FIRST_CONF: &[u8] = b"conf0";
const TRUNC: &[u8] = b"trunc";
const SNAP: &[u8] = b"snap";

/// A handle on the log (clones share it).
#[derive(Clone)]
pub struct SledLog {
    db: sled::Db,
    entries: sled::Tree,
    state: sled::Tree,
    snapshots: sled::Tree,
    /// The compaction point and the last index, kept in memory.
    bounds: Arc<Mutex<Bounds>>,
    /// Raft asked for a snapshot the log does not have.
    wanted: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone, Copy, Debug)]
struct Bounds {
    trunc: (u64, u64),
    last: u64,
}

fn store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl SledLog {
    /// Opens the log in `db`. A new log starts with `voters` as its configuration; an
    /// existing one keeps its own.
    pub fn open(db: &sled::Db, voters: Vec<u64>) -> Result<SledLog, String> {
        let entries = db.open_tree("raft-entries").map_err(|e| e.to_string())?;
        let state = db.open_tree("raft-state").map_err(|e| e.to_string())?;
        let snapshots = db.open_tree("raft-snapshot").map_err(|e| e.to_string())?;
        let trunc = match state.get(TRUNC).map_err(|e| e.to_string())? {
            None => (0, 0),
            Some(b) if b.len() == 16 => (
                u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
                u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
            ),
            Some(_) => return Err("bad raft-state trunc record".into()),
        };
        let last = match entries.last().map_err(|e| e.to_string())? {
            Some((k, _)) => u64::from_be_bytes(k.as_ref().try_into().map_err(|_| "bad log key")?),
            None => 0,
        }
        .max(trunc.0);
        if state.get(CONF).map_err(|e| e.to_string())?.is_none() {
            let conf = ConfState {
                voters,
                ..ConfState::default()
            };
            let b = conf.write_to_bytes().map_err(|e| e.to_string())?;
            state
                .insert(FIRST_CONF, b.clone())
                .map_err(|e| e.to_string())?;
            state.insert(CONF, b).map_err(|e| e.to_string())?;
        }
        Ok(SledLog {
            db: db.clone(),
            entries,
            state,
            snapshots,
            bounds: Arc::new(Mutex::new(Bounds { trunc, last })),
            wanted: Arc::default(),
        })
    }

    fn bounds(&self) -> Bounds {
        *self.bounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put_trunc(&self, trunc: (u64, u64)) -> Result<(), String> {
        let mut b = trunc.0.to_be_bytes().to_vec();
        b.extend_from_slice(&trunc.1.to_be_bytes());
        self.state.insert(TRUNC, b).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn put_snapshot(&self, snap: &Snapshot) -> Result<(), String> {
        let b = snap.write_to_bytes().map_err(|e| e.to_string())?;
        self.snapshots.insert(SNAP, b).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Removes the entries in `[from, to]`.
    fn remove_entries(&self, from: u64, to: u64) -> Result<(), String> {
        let mut batch = sled::Batch::default();
        for i in from..=to {
            batch.remove(&i.to_be_bytes());
        }
        self.entries.apply_batch(batch).map_err(|e| e.to_string())
    }

    fn get_entry(&self, idx: u64) -> raft::Result<Option<Entry>> {
        match self.entries.get(idx.to_be_bytes()).map_err(store_err)? {
            None => Ok(None),
            Some(b) => Entry::parse_from_bytes(&b).map(Some).map_err(store_err),
        }
    }

    fn hard(&self) -> raft::Result<HardState> {
        match self.state.get(HARD).map_err(store_err)? {
            None => Ok(HardState::default()),
            Some(b) => HardState::parse_from_bytes(&b).map_err(store_err),
        }
    }

    fn put_hard(&self, hs: &HardState) -> Result<(), String> {
        let b = hs.write_to_bytes().map_err(|e| e.to_string())?;
        self.state.insert(HARD, b).map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl DurableLog for SledLog {
    fn append(&self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut guard = self.bounds.lock().unwrap_or_else(|e| e.into_inner());
        let bounds = &mut *guard;
        let last = &mut bounds.last;
        if first.index <= bounds.trunc.0 || first.index > *last + 1 {
            return Err(format!(
                "append at {} outside the log ({}..={})",
                first.index,
                bounds.trunc.0 + 1,
                *last
            ));
        }
        let mut batch = sled::Batch::default();
        // Entries from `first.index` on are replaced (a new leader's log wins).
        for i in first.index..=*last {
            batch.remove(&i.to_be_bytes());
        }
        for e in entries {
            let b = e.write_to_bytes().map_err(|e| e.to_string())?;
            batch.insert(&e.index.to_be_bytes(), b);
        }
        self.entries.apply_batch(batch).map_err(|e| e.to_string())?;
        *last = entries.last().map_or(*last, |e| e.index);
        Ok(())
    }

    fn set_hard_state(&self, hs: &HardState) {
        if let Err(e) = self.put_hard(hs) {
            tracing::error!("cannot write the raft hard state: {e}");
        }
    }

    fn set_commit(&self, commit: u64) {
        match self.hard() {
            Ok(mut hs) => {
                hs.commit = commit;
                self.set_hard_state(&hs);
            }
            Err(e) => tracing::error!("cannot read the raft hard state: {e}"),
        }
    }

    fn set_conf(&self, cs: &ConfState) {
        let r = cs
            .write_to_bytes()
            .map_err(|e| e.to_string())
            .and_then(|b| self.state.insert(CONF, b).map_err(|e| e.to_string()));
        if let Err(e) = r {
            tracing::error!("cannot write the raft configuration: {e}");
        }
    }

    fn first_conf(&self) -> ConfState {
        // Logs made before the first configuration was kept apart have only "conf".
        let read = |key: &[u8]| -> Option<ConfState> {
            let b = self.state.get(key).ok()??;
            ConfState::parse_from_bytes(&b).ok()
        };
        read(FIRST_CONF).or_else(|| read(CONF)).unwrap_or_default()
    }

    fn compact(&self, snap: &Snapshot, drop_to: u64) -> Result<(), String> {
        let mut bounds = self.bounds.lock().unwrap_or_else(|e| e.into_inner());
        let drop_to = drop_to.max(bounds.trunc.0);
        if drop_to > bounds.last || drop_to > snap.get_metadata().index {
            return Err(format!(
                "cannot compact to {drop_to}: past the log or the snapshot"
            ));
        }
        let term = if drop_to == bounds.trunc.0 {
            bounds.trunc.1
        } else {
            self.get_entry(drop_to)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("entry {drop_to} is missing"))?
                .term
        };
        self.put_snapshot(snap)?;
        self.put_trunc((drop_to, term))?;
        let from = bounds.trunc.0 + 1;
        bounds.trunc = (drop_to, term);
        drop(bounds);
        self.remove_entries(from, drop_to)
    }

    fn install(&self, snap: &Snapshot) -> Result<(), String> {
        let mut bounds = self.bounds.lock().unwrap_or_else(|e| e.into_inner());
        let m = snap.get_metadata();
        self.put_snapshot(snap)?;
        self.set_conf(m.get_conf_state());
        let mut hs = self.hard().map_err(|e| e.to_string())?;
        hs.commit = hs.commit.max(m.index);
        hs.term = hs.term.max(m.term);
        self.put_hard(&hs)?;
        self.put_trunc((m.index, m.term))?;
        let (from, to) = (bounds.trunc.0 + 1, bounds.last);
        *bounds = Bounds {
            trunc: (m.index, m.term),
            last: m.index,
        };
        drop(bounds);
        self.remove_entries(from, to)
    }

    fn kept_snapshot(&self) -> Snapshot {
        let read = || -> Result<Snapshot, String> {
            match self.snapshots.get(SNAP).map_err(|e| e.to_string())? {
                None => Ok(Snapshot::default()),
                Some(b) => Snapshot::parse_from_bytes(&b).map_err(|e| e.to_string()),
            }
        };
        read().unwrap_or_else(|e| {
            tracing::error!("cannot read the kept raft snapshot: {e}");
            Snapshot::default()
        })
    }

    fn take_snapshot_wanted(&self) -> bool {
        self.wanted.swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    fn sync(&self) -> Result<(), String> {
        self.db.flush().map(|_| ()).map_err(|e| e.to_string())
    }
}

impl raft::Storage for SledLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let conf = match self.state.get(CONF).map_err(store_err)? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(store_err)?,
            None => ConfState::default(),
        };
        Ok(RaftState {
            hard_state: self.hard()?,
            conf_state: conf,
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let b = self.bounds();
        check_range(low, high, b.trunc.0, b.last)?;
        let mut out = Vec::new();
        let max = max_size.into();
        let mut size = 0u64;
        for r in self.entries.range(low.to_be_bytes()..high.to_be_bytes()) {
            let (_, b) = r.map_err(store_err)?;
            let e = Entry::parse_from_bytes(&b).map_err(store_err)?;
            size += b.len() as u64;
            // At least one entry, then no more than `max` bytes (raft's own rule).
            if !out.is_empty() && max.is_some_and(|m| size > m) {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let b = self.bounds();
        if idx == b.trunc.0 {
            return Ok(b.trunc.1);
        }
        if idx < b.trunc.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.get_entry(idx)?
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.bounds().trunc.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.bounds().last)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let r = kept_or_unavailable(self.kept_snapshot(), request_index);
        if r.is_err() {
            self.wanted
                .store(true, std::sync::atomic::Ordering::Release);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::replica::{Replica, ReplicaConfig};
    use crate::SledKv;
    use ferrofs_core::kv::{self, Kv, WriteSet};
    use ferrofs_core::replica::{Command, RequestId};
    use raft::Storage;

    #[test]
    fn the_log_and_the_hard_state_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let kv = SledKv::open(dir.path()).unwrap();
            let log = SledLog::open(kv.db(), vec![1, 2, 3]).unwrap();
            let e = |index, term| Entry {
                index,
                term,
                ..Entry::default()
            };
            log.append(&[e(1, 1), e(2, 1), e(3, 1)]).unwrap();
            log.append(&[e(2, 2)]).unwrap(); // replaces 2 and 3
            log.set_hard_state(&HardState {
                term: 2,
                vote: 3,
                commit: 1,
                ..HardState::default()
            });
            log.sync().unwrap();
        }
        let kv = SledKv::open(dir.path()).unwrap();
        let log = SledLog::open(kv.db(), vec![9]).unwrap();
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.term(2).unwrap(), 2);
        let st = log.initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.vote), (2, 3));
        assert_eq!(
            st.conf_state.voters,
            vec![1, 2, 3],
            "the first configuration stays"
        );
        let got = log
            .entries(1, 3, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_replica_on_sled_restarts_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ReplicaConfig::new(1, 10);
        let open = || {
            let kv = Arc::new(SledKv::open(dir.path()).unwrap());
            let log = SledLog::open(kv.db(), vec![1]).unwrap();
            let engine: Arc<dyn Kv> = kv;
            Replica::new(&cfg, log, engine).unwrap()
        };
        let mut r = open();
        for _ in 0..30 {
            r.tick();
            r.handle_ready().unwrap();
        }
        assert!(r.is_leader());
        for seq in 1..=3u64 {
            let mut writes = WriteSet::new();
            writes.insert(format!("k{seq}").into_bytes(), Some(b"v".to_vec()));
            let cmd = Command {
                id: RequestId { client: 7, seq },
                done_below: seq,
                reads: vec![],
                writes,
            };
            r.propose(&cmd).unwrap();
            r.handle_ready().unwrap();
        }
        let applied = r.applied();
        assert!(applied >= 4, "the leader's empty entry and three commands");
        drop(r);
        let mut r = open();
        assert_eq!(r.applied(), applied, "resumes after what the engine holds");
        for _ in 0..30 {
            r.tick();
            r.handle_ready().unwrap();
        }
        assert!(r.is_leader());
        let v = kv::read(&**r.engine(), |t| t.get(b"k3")).unwrap();
        assert_eq!(v, Some(b"v".to_vec()));
    }
}
