//! The client side of the replicated engine: the core's [`Kv`] interface over a remote
//! engine, by optimistic concurrency.
//!
//! A transaction runs against the remote read view, each read recorded with a digest of
//! what it returned; its writes are buffered. Then:
//! - with writes, it is sent as one [`Command`] to be ordered and applied; on
//!   [`Outcome::Conflict`] (something it read has changed) it runs again, as a new
//!   request;
//! - without writes, its reads are checked together ([`Remote::check`]) if there are
//!   several — reads one at a time need not be of one moment — and it runs again if
//!   they no longer hold;
//! - an error decided on several reads is returned only once the same check passes, so
//!   a torn view never becomes an answer.
//!
//! Reads need not be linearizable one by one, only the transaction as a whole: a
//! commit re-checks every read, and [`Remote::check`] confirms several at one
//! linearizable moment. So only the first read of a read-only transaction asks for a
//! linearizable (`fresh`) read — a transaction of one read is then done — and every
//! other read takes what the leader has applied, which saves a quorum round per read.
//!
//! Request ids are `(client, seq)`; every command says below which seq this client has
//! all its answers, so replicas keep few records.

use super::command::{digest_pairs, digest_value, Command, Outcome, ReadCheck, RequestId};
use crate::errno::{Errno, Result};
use crate::kv::{BufferedTxn, Kv, KvPair, ReadView, Txn};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Runs of one transaction before the client gives up (each lost to another client's
/// commit, so the volume as a whole made progress meanwhile).
pub const MAX_ATTEMPTS: usize = 64;

/// What a client needs of the replicated engine (the shells: an RPC client, or the
/// simulator's network).
pub trait Remote: Send + Sync {
    /// A read of one key: linearizable if `fresh`, else as the leader has applied it
    /// (possibly a little behind).
    fn get(&self, key: &[u8], fresh: bool) -> Result<Option<Vec<u8>>>;
    /// A range read, linearizable if `fresh`.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize, fresh: bool) -> Result<Vec<KvPair>>;
    /// Several keys as the leader has applied them, in one round trip.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k, false)).collect()
    }
    /// [`Remote::get`], and the log index of the state the value was read from, if the
    /// remote can say (`None`: it cannot).
    fn get_at(&self, key: &[u8], fresh: bool) -> Result<(Option<Vec<u8>>, Option<u64>)> {
        Ok((self.get(key, fresh)?, None))
    }
    /// [`Remote::scan`] with the index of the state read.
    fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        fresh: bool,
    ) -> Result<(Vec<KvPair>, Option<u64>)> {
        Ok((self.scan(start, end, limit, fresh)?, None))
    }
    /// [`Remote::get_many`] with the index of the state read.
    fn get_many_at(&self, keys: &[Vec<u8>]) -> Result<(Values, Option<u64>)> {
        Ok((self.get_many(keys)?, None))
    }
    /// Whether all of `reads` hold at one linearizable moment.
    fn check(&self, reads: &[ReadCheck]) -> Result<bool>;
    /// Orders and applies `cmd`, and returns its outcome. If an answer is lost, the
    /// remote sends the same command (same id) again: replicas apply it once.
    fn commit(&self, cmd: &Command) -> Result<Outcome>;
}

/// What a `get_many` returns: each key's value, or none.
pub type Values = Vec<Option<Vec<u8>>>;

/// Records what a transaction read through it.
struct RecordingView<'a, R: Remote + ?Sized> {
    remote: &'a R,
    reads: Mutex<Vec<ReadCheck>>,
    /// The log index of the state each read came from (`None`: unknown), once the
    /// same for every read; `Some(None)` once they differ or one is unknown.
    state: Mutex<Option<Option<u64>>>,
    /// Whether the first read is to be linearizable (read-only transactions).
    fresh_first: bool,
}

impl<R: Remote + ?Sized> RecordingView<'_, R> {
    fn record(&self, r: ReadCheck) {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    fn served_at(&self, at: Option<u64>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = match *s {
            None => Some(at),
            Some(prev) if prev == at => Some(prev),
            Some(_) => Some(None),
        };
    }

    /// The one state every read came from, if they all did.
    fn one_state(&self) -> Option<u64> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flatten()
    }

    /// Whether the next read is to be linearizable.
    fn fresh(&self) -> bool {
        self.fresh_first
            && self
                .reads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    fn into_reads(self) -> (Vec<ReadCheck>, Option<u64>) {
        let one = self.one_state();
        (
            self.reads.into_inner().unwrap_or_else(|e| e.into_inner()),
            one,
        )
    }
}

impl<R: Remote + ?Sized> ReadView for RecordingView<'_, R> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (v, at) = self.remote.get_at(key, self.fresh())?;
        self.served_at(at);
        self.record(ReadCheck::Get {
            key: key.to_vec(),
            digest: v.as_deref().map(digest_value),
        });
        Ok(v)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.len() == 1 {
            // Possibly the one fresh read of the transaction.
            return Ok(vec![self.get(&keys[0])?]);
        }
        let (values, at) = self.remote.get_many_at(keys)?;
        if values.len() != keys.len() {
            return Err(Errno::EIO);
        }
        self.served_at(at);
        for (k, v) in keys.iter().zip(&values) {
            self.record(ReadCheck::Get {
                key: k.clone(),
                digest: v.as_deref().map(digest_value),
            });
        }
        Ok(values)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        let limit32 = limit.min(u32::MAX as usize) as u32;
        let (pairs, at) = self
            .remote
            .scan_at(start, end, limit32 as usize, self.fresh())?;
        self.served_at(at);
        self.record(ReadCheck::Scan {
            start: start.to_vec(),
            end: end.to_vec(),
            limit: limit32,
            digest: digest_pairs(&pairs),
        });
        Ok(pairs)
    }
}

#[derive(Default)]
struct Seqs {
    next: u64,
    /// Requests sent and not answered yet.
    in_flight: BTreeSet<u64>,
}

/// The [`Kv`] interface over a [`Remote`] replicated engine, for client `client` (an id
/// no other live client uses: the engine hands them out with sessions).
pub struct OptimisticKv<R: Remote> {
    remote: R,
    client: u64,
    seqs: Mutex<Seqs>,
}

impl<R: Remote> OptimisticKv<R> {
    /// `first_seq`: above every seq this client id used before (0 for a new id).
    pub fn new(remote: R, client: u64, first_seq: u64) -> Self {
        OptimisticKv {
            remote,
            client,
            seqs: Mutex::new(Seqs {
                next: first_seq.max(1),
                in_flight: BTreeSet::new(),
            }),
        }
    }

    pub fn remote(&self) -> &R {
        &self.remote
    }

    fn seqs(&self) -> std::sync::MutexGuard<'_, Seqs> {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new request id, and the seq below which every request is answered.
    fn begin(&self) -> (RequestId, u64) {
        let mut s = self.seqs();
        let seq = s.next;
        s.next += 1;
        s.in_flight.insert(seq);
        let done_below = *s.in_flight.first().unwrap_or(&seq);
        (
            RequestId {
                client: self.client,
                seq,
            },
            done_below,
        )
    }

    fn end(&self, id: RequestId) {
        self.seqs().in_flight.remove(&id.seq);
    }

    /// Sends one transaction's command; `None`: run the transaction again.
    fn commit(&self, reads: Vec<ReadCheck>, writes: crate::kv::WriteSet) -> Result<Option<()>> {
        let (id, done_below) = self.begin();
        let cmd = Command {
            id,
            done_below,
            reads,
            writes,
        };
        let r = self.remote.commit(&cmd);
        // Even a failed commit is over for this client: it is never sent again (the
        // transaction runs again as a new request, or fails).
        self.end(id);
        match r? {
            Outcome::Applied => Ok(Some(())),
            Outcome::Conflict => Ok(None),
            // Neither can happen to a well-formed first answer: say so loudly.
            Outcome::Stale | Outcome::Invalid => Err(Errno::EIO),
        }
    }

    /// Whether a run's reads were of one linearizable moment: trivially so for none,
    /// or for one fresh read, or when the first read was fresh and every read says it
    /// came from the state of one log index (that state is the same on every replica,
    /// and it was the current one when the fresh read was served); else the remote
    /// checks them.
    fn consistent(
        &self,
        reads: &[ReadCheck],
        one_state: Option<u64>,
        fresh_first: bool,
    ) -> Result<bool> {
        if reads.is_empty() || (fresh_first && (reads.len() == 1 || one_state.is_some())) {
            return Ok(true);
        }
        self.remote.check(reads)
    }

    fn run(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>, read_only: bool) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let view = RecordingView {
                remote: &self.remote,
                reads: Mutex::new(Vec::new()),
                state: Mutex::new(None),
                fresh_first: read_only,
            };
            let (result, writes) = {
                let mut t = BufferedTxn::new(&view);
                let result = f(&mut t);
                (result, t.into_writes())
            };
            let (reads, one_state) = view.into_reads();
            match result {
                Err(e) => {
                    if self.consistent(&reads, one_state, read_only)? {
                        return Err(e);
                    }
                }
                Ok(()) if read_only || writes.is_empty() => {
                    if self.consistent(&reads, one_state, read_only)? {
                        return Ok(());
                    }
                }
                Ok(()) => {
                    if self.commit(reads, writes)?.is_some() {
                        return Ok(());
                    }
                }
            }
        }
        Err(Errno::EIO)
    }
}

impl<R: Remote> Kv for OptimisticKv<R> {
    fn txn(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        self.run(f, false)
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        self.run(f, true)
    }

    /// A command is durable on a majority of replicas when it is answered.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
