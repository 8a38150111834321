//! `FaultyStore` and `RetryingStore` over the memory store: each fault does what it
//! says, seeded plans repeat, retries hide transient faults and give up after bounded
//! attempts, waiting through a pluggable sleeper (virtual time here).

use ferrofs_s3_backend::{
    Bytes, Fault, FaultPlan, FaultRates, FaultyStore, MemStore, ObjectStore, Op, RandomFaults,
    RetryPolicy, RetryingStore, StoreError, TransientKind,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A virtual clock: sleeping advances it, no real time passes.
#[derive(Default)]
struct Clock(AtomicU64);

impl Clock {
    fn sleeper(self: &Arc<Self>) -> Arc<dyn ferrofs_s3_backend::Sleeper> {
        let c = self.clone();
        Arc::new(move |d: Duration| {
            c.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
        })
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

/// A plan that replays a script of faults, then `Fault::None`.
fn script(faults: Vec<Fault>) -> impl FaultPlan {
    let faults = Mutex::new(faults.into_iter());
    move |_: Op, _: &str| faults.lock().unwrap().next().unwrap_or(Fault::None)
}

#[test]
fn each_fault_does_what_it_says() {
    let clock = Arc::new(Clock::default());
    let s = FaultyStore::with_sleeper(
        MemStore::new(),
        script(vec![
            Fault::Error(TransientKind::ServerError), // put a: not stored
            Fault::LostResponse,                      // put b: stored, error
            Fault::Corrupt,                           // put c: stored damaged
            Fault::Truncate,                          // put d: stored half
            Fault::Latency(Duration::from_millis(250)), // get b
            Fault::Corrupt,                           // get b
            Fault::Truncate,                          // get b
            Fault::Error(TransientKind::Timeout),     // delete b: not done
            Fault::LostResponse,                      // delete b: done, error
            Fault::Corrupt,                           // head: unharmed
        ]),
        clock.sleeper(),
    );
    let data = b"0123456789".to_vec();
    let e = s.put("a", Bytes::from(data.clone())).unwrap_err();
    assert_eq!(e.transient_kind(), Some(TransientKind::ServerError));
    assert!(e.to_string().contains("injected"), "{e}");
    assert_eq!(s.inner().head("a").unwrap(), None);

    let e = s.put("b", Bytes::from(data.clone())).unwrap_err();
    assert_eq!(e.transient_kind(), Some(TransientKind::Connection));
    assert_eq!(s.inner().get("b", 0, None).unwrap(), data);

    s.put("c", Bytes::from(data.clone())).unwrap();
    let c = s.inner().get("c", 0, None).unwrap();
    assert_eq!(c.len(), data.len());
    assert_eq!(c.iter().zip(&data).filter(|(x, y)| x != y).count(), 1);

    s.put("d", Bytes::from(data.clone())).unwrap();
    assert_eq!(s.inner().get("d", 0, None).unwrap(), b"01234");

    assert_eq!(s.get("b", 0, None).unwrap(), data);
    assert_eq!(clock.now(), Duration::from_millis(250));
    let got = s.get("b", 0, None).unwrap();
    assert_eq!(got.iter().zip(&data).filter(|(x, y)| x != y).count(), 1);
    assert_eq!(s.get("b", 2, Some(4)).unwrap(), b"23");

    assert!(s.delete("b").is_err());
    assert!(s.inner().head("b").unwrap().is_some());
    assert!(s.delete("b").is_err());
    assert!(s.inner().head("b").unwrap().is_none());

    assert_eq!(s.head("c").unwrap().unwrap().size, 10);
    let st = s.stats();
    assert_eq!(
        (
            st.calls,
            st.errors,
            st.lost_responses,
            st.corruptions,
            st.truncations,
            st.latencies
        ),
        (10, 2, 2, 2, 2, 1)
    );
    assert_eq!(st.harmful(), 8);
}

#[test]
fn random_faults_repeat_with_their_seed() {
    let rates = FaultRates {
        latency: 0.1,
        max_latency: Duration::from_millis(50),
        server_error: 0.1,
        throttle: 0.1,
        timeout: 0.1,
        lost_response: 0.1,
        corrupt: 0.1,
        truncate: 0.1,
    };
    let draw = |seed| {
        let p = RandomFaults::new(seed, rates);
        (0..500)
            .map(|i| p.decide([Op::Get, Op::Put, Op::List][i % 3], "k"))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(9), draw(9));
    assert_ne!(draw(9), draw(10));
    let faults = draw(9);
    let count = |f: &dyn Fn(&Fault) -> bool| faults.iter().filter(|x| f(x)).count();
    // Roughly the asked rates (30% none for data ops; more for lists, which are never
    // corrupted or truncated).
    assert!((20..=90).contains(&count(&|f| matches!(f, Fault::Latency(_)))));
    assert!((20..=90).contains(&count(&|f| *f == Fault::Error(TransientKind::Throttle))));
    assert!(count(&|f| *f == Fault::Corrupt) > 10);
    assert!(faults
        .iter()
        .all(|f| !matches!(f, Fault::Latency(d) if *d > Duration::from_millis(50))));
    for (i, f) in faults.iter().enumerate() {
        if i % 3 == 2 {
            assert!(
                !matches!(f, Fault::Corrupt | Fault::Truncate),
                "list got {f:?}"
            );
        }
    }
    // No faults at zero rates.
    let none = RandomFaults::new(1, FaultRates::default());
    assert!((0..100).all(|_| none.decide(Op::Put, "k") == Fault::None));
}

#[test]
fn retries_hide_transient_faults_in_virtual_time() {
    let clock = Arc::new(Clock::default());
    let faulty = FaultyStore::with_sleeper(
        MemStore::new(),
        RandomFaults::new(5, FaultRates::transient(0.5)),
        clock.sleeper(),
    );
    let policy = RetryPolicy {
        max_retries: 30,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    };
    let store = RetryingStore::with_sleeper(faulty, policy, clock.sleeper(), 1);
    for i in 0..100u32 {
        let k = format!("k{i}");
        store
            .put(&k, Bytes::copy_from_slice(&i.to_le_bytes()))
            .unwrap();
        assert_eq!(store.get(&k, 0, None).unwrap(), i.to_le_bytes());
    }
    assert_eq!(store.list("k", "", 1000).unwrap().len(), 100);
    let injected = store.inner().stats();
    assert!(injected.harmful() > 50, "{injected:?}");
    let st = store.stats();
    assert_eq!(st.retries, injected.harmful());
    assert_eq!(st.given_up, 0);
    // Time passed only on the virtual clock, bounded by the caps.
    assert!(clock.now() > Duration::ZERO);
    assert!(clock.now() <= Duration::from_secs(2) * st.retries as u32);
}

#[test]
fn persistent_failure_surfaces_after_bounded_attempts_with_growing_waits() {
    let waits = Arc::new(Mutex::new(Vec::new()));
    let w = waits.clone();
    let faulty = FaultyStore::new(MemStore::new(), |_: Op, _: &str| {
        Fault::Error(TransientKind::Throttle)
    });
    let policy = RetryPolicy {
        max_retries: 6,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
    };
    let store = RetryingStore::with_sleeper(
        faulty,
        policy,
        Arc::new(move |d: Duration| w.lock().unwrap().push(d)),
        3,
    );
    let e = store.put("k", Bytes::from_static(b"v")).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Unavailable {
                attempts: 7,
                kind: TransientKind::Throttle,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("after 7 attempts"), "{e}");
    assert_eq!(store.inner().stats().calls, 7);
    let waits = waits.lock().unwrap();
    assert_eq!(waits.len(), 6);
    for (i, w) in waits.iter().enumerate() {
        let cap = (Duration::from_millis(10) * (1 << i)).min(Duration::from_millis(200));
        assert!(*w <= cap, "wait {i} {w:?} > {cap:?}");
    }
}

#[test]
fn permanent_errors_are_not_retried() {
    let faulty = FaultyStore::new(MemStore::new(), |_: Op, _: &str| Fault::None);
    let store = RetryingStore::with_sleeper(
        faulty,
        RetryPolicy::default(),
        Arc::new(|_: Duration| panic!("no waiting for permanent errors")),
        0,
    );
    assert!(matches!(
        store.get("nope", 0, None),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.put("../x", Bytes::from_static(b"")),
        Err(StoreError::InvalidKey(_))
    ));
    assert_eq!(store.stats().retries, 0);
    assert_eq!(store.stats().attempts, 2);
}

#[test]
fn wrappers_take_shared_stores() {
    let shared: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let s = RetryingStore::new(
        FaultyStore::new(shared.clone(), |_: Op, _: &str| Fault::None),
        RetryPolicy::none(),
    );
    s.put("x", Bytes::from_static(b"1")).unwrap();
    assert_eq!(shared.get("x", 0, None).unwrap(), b"1");
    assert_eq!(s.describe(), "memory (with injected faults)");
}
