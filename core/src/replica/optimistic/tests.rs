use super::*;
use crate::kv::{self, MemKv};
use crate::replica::apply::{apply, reads_hold};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runs before each read (a test's interference).
type Hook = Arc<Mutex<Option<Box<dyn FnMut() + Send>>>>;

/// One replica in-process: reads and commits go straight to its engine. `before_read`
/// runs before every read, so a test can slip another client's commit in between.
#[derive(Clone, Default)]
struct Local {
    engine: Arc<MemKv>,
    before_read: Hook,
    /// Commits whose answer is lost once (the command is applied, then resent).
    lose_answers: Arc<AtomicUsize>,
    commits_sent: Arc<AtomicUsize>,
}

impl Local {
    fn hook(&self) {
        if let Some(f) = self.before_read.lock().unwrap().as_mut() {
            f();
        }
    }
}

impl Remote for Local {
    fn get(&self, key: &[u8], _fresh: bool) -> Result<Option<Vec<u8>>> {
        self.hook();
        kv::read(&*self.engine, |t| t.get(key))
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize, _fresh: bool) -> Result<Vec<KvPair>> {
        self.hook();
        kv::read(&*self.engine, |t| t.scan(start, end, limit))
    }
    fn check(&self, reads: &[ReadCheck]) -> Result<bool> {
        kv::read(&*self.engine, |t| reads_hold(t, reads))
    }
    fn commit(&self, cmd: &Command) -> Result<Outcome> {
        self.commits_sent.fetch_add(1, Ordering::SeqCst);
        let first = apply(&*self.engine, cmd)?;
        if self.lose_answers.load(Ordering::SeqCst) > 0 {
            self.lose_answers.fetch_sub(1, Ordering::SeqCst);
            // The answer was lost: the remote sends the same command again.
            self.commits_sent.fetch_add(1, Ordering::SeqCst);
            let again = apply(&*self.engine, cmd)?;
            assert_eq!(again, first, "a resent command got another answer");
            return Ok(again);
        }
        Ok(first)
    }
}

fn read_u64(t: &mut dyn Txn, key: &[u8]) -> Result<u64> {
    Ok(t.get(key)?
        .map(|v| u64::from_be_bytes(v.try_into().unwrap()))
        .unwrap_or(0))
}

fn increment(kv: &dyn Kv, key: &[u8]) {
    kv::txn(kv, |t| {
        let n = read_u64(t, key)?;
        t.set(key, &(n + 1).to_be_bytes());
        Ok(())
    })
    .unwrap();
}

fn value(engine: &MemKv, key: &[u8]) -> u64 {
    kv::read(engine, |t| read_u64(t, key)).unwrap()
}

#[test]
fn a_commit_that_lost_the_race_runs_again() {
    let remote = Local::default();
    let a = OptimisticKv::new(remote.clone(), 1, 0);
    let b = Arc::new(OptimisticKv::new(
        Local {
            before_read: Arc::default(),
            ..remote.clone()
        },
        2,
        0,
    ));
    // Once: after A reads x, B increments x.
    let fired = Arc::new(AtomicUsize::new(0));
    let (b2, f2) = (b.clone(), fired.clone());
    let mut reads = 0;
    *remote.before_read.lock().unwrap() = Some(Box::new(move || {
        reads += 1;
        if reads == 2 && f2.fetch_add(1, Ordering::SeqCst) == 0 {
            increment(&*b2, b"x");
        }
    }));
    kv::txn(&a, |t| {
        let n = read_u64(t, b"x")?;
        let _ = t.get(b"y")?; // the second read: B commits before it
        t.set(b"x", &(n + 10).to_be_bytes());
        Ok(())
    })
    .unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    // A's first run read x = 0 and conflicted; its second run read B's 1.
    assert_eq!(value(&remote.engine, b"x"), 11);
}

#[test]
fn a_lost_answer_does_not_apply_twice() {
    let remote = Local::default();
    let a = OptimisticKv::new(remote.clone(), 1, 0);
    remote.lose_answers.store(3, Ordering::SeqCst);
    for _ in 0..5 {
        increment(&a, b"n");
    }
    assert_eq!(value(&remote.engine, b"n"), 5);
    assert_eq!(remote.commits_sent.load(Ordering::SeqCst), 8);
}

#[test]
fn an_error_from_a_torn_view_is_not_returned() {
    let remote = Local::default();
    let a = OptimisticKv::new(remote.clone(), 1, 0);
    let b = Arc::new(OptimisticKv::new(
        Local {
            before_read: Arc::default(),
            ..remote.clone()
        },
        2,
        0,
    ));
    // Invariant kept by every transaction: p == q.
    let (b2, mut reads) = (b.clone(), 0);
    *remote.before_read.lock().unwrap() = Some(Box::new(move || {
        reads += 1;
        if reads == 2 {
            // Between A's reads of p and q, B moves both.
            kv::txn(&*b2, |t| {
                t.set(b"p", &1u64.to_be_bytes());
                t.set(b"q", &1u64.to_be_bytes());
                Ok(())
            })
            .unwrap();
        }
    }));
    let seen = kv::read(&a, |t| {
        let (p, q) = (read_u64(t, b"p")?, read_u64(t, b"q")?);
        if p != q {
            return Err(Errno::EIO); // "corrupt metadata", on a torn view
        }
        Ok(p)
    });
    assert_eq!(seen, Ok(1));
}

/// A transfer between two accounts: their sum stays 1000.
fn transfer(kv: &dyn Kv, from: &[u8], to: &[u8]) {
    kv::txn(kv, |t| {
        let f = read_u64(t, from)?;
        let g = read_u64(t, to)?;
        let (f, g) = if f + g == 0 { (1000, 0) } else { (f, g) };
        let amount = f.min(3);
        t.set(from, &(f - amount).to_be_bytes());
        t.set(to, &(g + amount).to_be_bytes());
        Ok(())
    })
    .unwrap();
}

#[test]
fn concurrent_clients_lose_no_update_and_keep_invariants() {
    // Four clients, interleaved deterministically: before every third read of client
    // 1, one of the other three commits an increment and a transfer, so client 1's
    // transactions lose races and run again.
    let remote = Local::default();
    let others: Vec<Arc<OptimisticKv<Local>>> = (2..=4u64)
        .map(|client| {
            let quiet = Local {
                before_read: Arc::default(),
                ..remote.clone()
            };
            Arc::new(OptimisticKv::new(quiet, client, 0))
        })
        .collect();
    let injected = Arc::new(AtomicUsize::new(0));
    let (counted, mut reads) = (injected.clone(), 0u64);
    *remote.before_read.lock().unwrap() = Some(Box::new(move || {
        reads += 1;
        if reads % 3 != 0 {
            return;
        }
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let other = &others[n % 3];
        increment(&**other, b"count");
        let (from, to): (&[u8], &[u8]) = if n % 2 == 0 {
            (b"acct-a", b"acct-b")
        } else {
            (b"acct-b", b"acct-a")
        };
        transfer(&**other, from, to);
    }));
    let kv = OptimisticKv::new(remote.clone(), 1, 0);
    for i in 0..150u64 {
        increment(&kv, b"count");
        if i % 2 == 0 {
            transfer(&kv, b"acct-a", b"acct-b");
        } else {
            transfer(&kv, b"acct-b", b"acct-a");
        }
    }
    let others = injected.load(Ordering::SeqCst) as u64;
    assert!(others > 100, "too little interference: {others}");
    assert_eq!(value(&remote.engine, b"count"), 150 + others);
    let sum = value(&remote.engine, b"acct-a") + value(&remote.engine, b"acct-b");
    assert_eq!(sum, 1000);
    // Only a bounded number of request records remain (one per client, plus floors).
    let records = remote
        .engine
        .dump()
        .into_iter()
        .filter(|(k, _)| k.first() == Some(&crate::replica::REQUEST_PREFIX))
        .count();
    assert!(records <= 8, "{records} request records left");
}

/// A remote that says which state each read came from: the number of commits applied
/// (an applied index), as a Raft leader's answers do.
#[derive(Clone, Default)]
struct Indexed {
    engine: Arc<MemKv>,
    applied: Arc<AtomicUsize>,
    checks: Arc<AtomicUsize>,
    before_read: Hook,
}

impl Remote for Indexed {
    fn get(&self, key: &[u8], fresh: bool) -> Result<Option<Vec<u8>>> {
        self.get_at(key, fresh).map(|(v, _)| v)
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize, fresh: bool) -> Result<Vec<KvPair>> {
        self.scan_at(start, end, limit, fresh).map(|(p, _)| p)
    }
    fn get_at(&self, key: &[u8], _fresh: bool) -> Result<(Option<Vec<u8>>, Option<u64>)> {
        if let Some(f) = self.before_read.lock().unwrap().as_mut() {
            f();
        }
        let v = kv::read(&*self.engine, |t| t.get(key))?;
        Ok((v, Some(self.applied.load(Ordering::SeqCst) as u64)))
    }
    fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        _fresh: bool,
    ) -> Result<(Vec<KvPair>, Option<u64>)> {
        let p = kv::read(&*self.engine, |t| t.scan(start, end, limit))?;
        Ok((p, Some(self.applied.load(Ordering::SeqCst) as u64)))
    }
    fn check(&self, reads: &[ReadCheck]) -> Result<bool> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        kv::read(&*self.engine, |t| reads_hold(t, reads))
    }
    fn commit(&self, cmd: &Command) -> Result<Outcome> {
        let o = apply(&*self.engine, cmd)?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(o)
    }
}

#[test]
fn reads_from_one_state_need_no_check_and_reads_across_a_commit_do() {
    let remote = Indexed::default();
    let a = OptimisticKv::new(remote.clone(), 1, 1);
    let b = OptimisticKv::new(remote.clone(), 2, 1);
    kv::txn(&a, |t| {
        t.set(b"x", b"1");
        t.set(b"y", b"1");
        Ok(())
    })
    .unwrap();
    let read_both =
        |kv: &OptimisticKv<Indexed>| kv::read(kv, |t| Ok((t.get(b"x")?, t.get(b"y")?))).unwrap();
    // Nothing commits between the two reads: both come from one state, no check.
    assert_eq!(read_both(&a), (Some(b"1".to_vec()), Some(b"1".to_vec())));
    assert_eq!(remote.checks.load(Ordering::SeqCst), 0);
    // Another client commits between them (a torn view): the states differ, the check
    // catches it and the read runs again.
    let once = Arc::new(AtomicUsize::new(0));
    let (b2, once2) = (Arc::new(b), once.clone());
    *remote.before_read.lock().unwrap() = Some(Box::new(move || {
        if once2.fetch_add(1, Ordering::SeqCst) == 1 {
            kv::txn(&*b2, |t| {
                t.set(b"x", b"2");
                t.set(b"y", b"2");
                Ok(())
            })
            .unwrap();
        }
    }));
    let (x, y) = read_both(&a);
    assert_eq!(x, y, "never a torn view");
    assert!(remote.checks.load(Ordering::SeqCst) >= 1);
}
