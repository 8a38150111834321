//! The clients: threads of this process, each with its own `RaftClient` (as mounts
//! have). Plain clients read a counter and compare-and-set it from what they read;
//! optimistic clients go through `OptimisticKv` (read-only transactions and increment
//! transactions). Every operation goes into its counter's history.

use crate::SECRET;
use ferrofs_core::kv::WriteSet;
use ferrofs_core::replica::command::digest_value;
use ferrofs_core::replica::{Command, Outcome, ReadCheck, RequestId};
use ferrofs_meta::raft::wire::{Request, Response};
use ferrofs_meta::raft::RaftClient;
use sim::checkers::linearizable::{CounterOp, CounterOut, Operation};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type History = Vec<Operation<CounterOp, CounterOut>>;

pub struct Shared {
    pub clock: AtomicU64,
    pub histories: Vec<Mutex<History>>,
    pub stop: AtomicBool,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub unknown: AtomicU64,
}

impl Shared {
    pub fn new(keys: usize) -> Shared {
        Shared {
            clock: AtomicU64::new(0),
            histories: (0..keys).map(|_| Mutex::new(Vec::new())).collect(),
            stop: AtomicBool::new(false),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
        }
    }

    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }
}

pub fn key(k: usize) -> Vec<u8> {
    format!("jepsen/counter/{k}").into_bytes()
}

pub fn value_of(v: &Option<Vec<u8>>) -> u64 {
    v.as_ref()
        .and_then(|v| v.as_slice().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// A client through `OptimisticKv` (what a mount uses): read-only transactions and
/// increment transactions.
pub fn optimistic_client(n: u64, addrs: Vec<String>, keys: usize, shared: Arc<Shared>) {
    use ferrofs_core::kv::{self, Kv};
    use ferrofs_core::replica::OptimisticKv;
    let rc = RaftClient::new(addrs)
        .secret(SECRET.as_bytes())
        .patience(Duration::from_secs(5));
    let engine = OptimisticKv::new(rc, 5000 + n, 1);
    let engine: &dyn Kv = &engine;
    let client_id = 5000 + n;
    let mut i = n as usize;
    while !shared.stop.load(Ordering::SeqCst) {
        i += 1;
        let k = i % keys;
        let call = shared.tick();
        if i.is_multiple_of(2) {
            if let Ok(v) = kv::read(engine, |t| t.get(&key(k))) {
                let ret = shared.tick();
                shared.histories[k].lock().unwrap().push(Operation {
                    client: client_id,
                    call,
                    ret: Some(ret),
                    input: CounterOp::Read,
                    output: Some(CounterOut::Value(value_of(&v))),
                });
                shared.ok.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let r = kv::txn(engine, |t| {
            let v = value_of(&t.get(&key(k))?);
            t.set(&key(k), &(v + 1).to_be_bytes());
            Ok(v)
        });
        let ret = shared.tick();
        let op = match r {
            // It read v and wrote v + 1 atomically: a compare-and-set from v.
            Ok(from) => {
                shared.ok.fetch_add(1, Ordering::Relaxed);
                Operation {
                    client: client_id,
                    call,
                    ret: Some(ret),
                    input: CounterOp::Cas { from },
                    output: Some(CounterOut::Swapped(true)),
                }
            }
            // It may have committed, once, at any time from its call on.
            Err(_) => {
                shared.unknown.fetch_add(1, Ordering::Relaxed);
                Operation {
                    client: client_id,
                    call,
                    ret: None,
                    input: CounterOp::Inc,
                    output: None,
                }
            }
        };
        shared.histories[k].lock().unwrap().push(op);
    }
}

/// One client: read a counter, then compare-and-set it, over and over.
pub fn client(n: u64, addrs: Vec<String>, keys: usize, shared: Arc<Shared>) {
    let rc = RaftClient::new(addrs)
        .secret(SECRET.as_bytes())
        .patience(Duration::from_secs(5));
    let client_id = 1000 + n;
    let mut seq = 1;
    let mut i = n as usize;
    while !shared.stop.load(Ordering::SeqCst) {
        i += 1;
        let k = i % keys;
        // A read.
        let call = shared.tick();
        let read = rc.call(&Request::Get(key(k)));
        let Ok(Response::Value(v)) = read else {
            // An unanswered read constrains nothing: not recorded.
            shared.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let ret = shared.tick();
        let from = value_of(&v);
        shared.histories[k].lock().unwrap().push(Operation {
            client: client_id,
            call,
            ret: Some(ret),
            input: CounterOp::Read,
            output: Some(CounterOut::Value(from)),
        });
        shared.ok.fetch_add(1, Ordering::Relaxed);
        // A compare-and-set from what was read.
        let mut writes = WriteSet::new();
        writes.insert(key(k), Some((from + 1).to_be_bytes().to_vec()));
        let cmd = Command {
            id: RequestId {
                client: client_id,
                seq,
            },
            done_below: seq,
            reads: vec![ReadCheck::Get {
                key: key(k),
                digest: v.as_deref().map(digest_value),
            }],
            writes,
        };
        seq += 1;
        let call = shared.tick();
        let r = rc.call(&Request::Commit(cmd));
        let ret = shared.tick();
        let (ret, output) = match r {
            Ok(Response::Outcome(Outcome::Applied)) => (Some(ret), Some(CounterOut::Swapped(true))),
            Ok(Response::Outcome(Outcome::Conflict)) => {
                (Some(ret), Some(CounterOut::Swapped(false)))
            }
            // No answer: it may have been applied, or not, at any time from its call on.
            _ => (None, None),
        };
        if output.is_some() {
            shared.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.unknown.fetch_add(1, Ordering::Relaxed);
        }
        shared.histories[k].lock().unwrap().push(Operation {
            client: client_id,
            call,
            ret,
            input: CounterOp::Cas { from },
            output,
        });
    }
}
