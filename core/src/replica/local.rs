//! A replicated engine of one replica, in process: what [`OptimisticKv`] sends goes
//! straight to [`apply`] on a local engine. It has no availability to offer; it is there
//! so that the metadata code can be tested over the optimistic client exactly as it
//! runs over Raft, without a network.
//!
//! [`OptimisticKv`]: super::OptimisticKv

use super::apply::{apply, reads_hold};
use super::command::{Command, Outcome, ReadCheck};
use super::optimistic::Remote;
use crate::errno::Result;
use crate::kv::{self, Kv, KvPair};
use std::sync::Arc;

/// One in-process replica over `engine`.
#[derive(Clone)]
pub struct LocalReplica {
    engine: Arc<dyn Kv>,
}

impl LocalReplica {
    pub fn new(engine: Arc<dyn Kv>) -> Self {
        LocalReplica { engine }
    }
}

impl Remote for LocalReplica {
    fn get(&self, key: &[u8], _fresh: bool) -> Result<Option<Vec<u8>>> {
        kv::read(&*self.engine, |t| t.get(key))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize, _fresh: bool) -> Result<Vec<KvPair>> {
        kv::read(&*self.engine, |t| t.scan(start, end, limit))
    }

    fn check(&self, reads: &[ReadCheck]) -> Result<bool> {
        kv::read(&*self.engine, |t| reads_hold(t, reads))
    }

    fn commit(&self, cmd: &Command) -> Result<Outcome> {
        apply(&*self.engine, cmd)
    }
}
