//! The S3 store against a real S3 server (s3s-fs on loopback, see
//! `ferrofs_s3_backend::testing`): the shared store behaviour, listing across pages,
//! clear errors for bad keys, a missing bucket and an unreachable or silent endpoint,
//! retries (against a scripted HTTP server and through `FaultyStore`), and secrets kept
//! out of every message.
//!
//! Needs `s3s-fs` (`cargo install s3s-fs --version 0.14.1 --features binary --locked`,
//! or `FERROFS_S3S_FS=/path/to/s3s-fs`); without it these tests fail and say so.

mod common;

use common::{keys, Quirks};
use ferrofs_s3_backend::testing::S3Server;
use ferrofs_s3_backend::{
    open_store_with, probe, Bytes, Fault, FaultRates, FaultyStore, ObjectStore, Op, RandomFaults,
    RetryPolicy, RetryingStore, S3Config, S3Store, StoreError, StoreOptions, TransientKind,
};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// s3s-fs's deviations from AWS S3 (see `common::Quirks`).
const QUIRKS: Quirks = Quirks {
    head_of_prefix_fails: true,
    racing_overwrites_break_checksums: true,
};

#[test]
fn shared_store_behaviour_on_s3() {
    let server = S3Server::start();
    let mut n = 0;
    common::all(
        &mut || {
            n += 1;
            Arc::new(server.store(&format!("bucket-{n}")).unwrap())
        },
        QUIRKS,
    );
}

#[test]
fn shared_store_behaviour_under_a_prefix() {
    let server = S3Server::start();
    let url = server.create_bucket("shared");
    // Objects of others in the same bucket stay invisible.
    let whole = S3Store::open(server.config(&url)).unwrap();
    whole.put("other/x", Bytes::from_static(b"x")).unwrap();
    whole
        .put("vol0", Bytes::from_static(b"not under vol0/"))
        .unwrap();
    let mut n = 0;
    common::all(
        &mut || {
            n += 1;
            let store = S3Store::open(server.config(&format!("{url}/vols/vol{n}"))).unwrap();
            assert_eq!(store.describe(), format!("{url}/vols/vol{n}"));
            Arc::new(store)
        },
        QUIRKS,
    );
    let mut all = keys(&whole.list("", "", 1000).unwrap())
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    all.retain(|k| k.starts_with("vols/vol3/"));
    assert_eq!(
        all,
        ["vols/vol3/a/b"],
        "objects are stored under the prefix"
    );
}

#[test]
fn listing_pages_through_more_than_1000_keys() {
    let server = S3Server::start();
    let store = Arc::new(server.store("many").unwrap());
    let n = 1203;
    let names: Vec<String> = (0..n)
        .map(|i| format!("chunks/{}/{i}_0_1", i % 7))
        .collect();
    std::thread::scope(|sc| {
        for part in names.chunks(n / 8 + 1) {
            let store = store.clone();
            sc.spawn(move || {
                for k in part {
                    store.put(k, Bytes::from_static(b"z")).unwrap();
                }
            });
        }
    });
    let mut sorted = names.clone();
    sorted.sort();

    let before = store.stats().attempts;
    let listed = store.list("", "", 10_000).unwrap();
    assert_eq!(
        store.stats().attempts - before,
        2,
        "two pages of up to 1000"
    );
    assert_eq!(keys(&listed), sorted);
    assert!(listed.iter().all(|o| o.size == 1));

    // A limit over one page, from the middle, across the page boundary.
    let from = &sorted[150];
    let page = store.list("", from, 1001).unwrap();
    assert_eq!(keys(&page), sorted[151..1152].to_vec());
    // A prefix, and the exact limit.
    let in3: Vec<_> = sorted
        .iter()
        .filter(|k| k.starts_with("chunks/3/"))
        .collect();
    assert_eq!(keys(&store.list("chunks/3/", "", 10_000).unwrap()), in3);
    assert_eq!(store.list("chunks/", "", 1000).unwrap().len(), 1000);
}

#[test]
fn rejected_keys_are_named_and_not_retried() {
    let server = S3Server::start();
    let url = server.create_bucket("keys");
    for (ak, sk) in [
        (
            server.access_key().to_string(),
            "wrong-secret-0123456789".to_string(),
        ),
        (
            "AKWRONGWRONGWRONG".to_string(),
            server.secret_key().to_string(),
        ),
    ] {
        let mut c = server.config(&url);
        c.access_key = Some(ak);
        c.secret_key = Some(sk.clone());
        let store = S3Store::new(c).unwrap();
        let t = Instant::now();
        let e = store.check_bucket().unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Auth(_)), "{e:?}");
        assert!(msg.contains("rejected the access keys"), "{msg}");
        assert!(msg.contains(server.endpoint()), "{msg}");
        assert!(!msg.contains(&sk), "the secret leaked: {msg}");
        assert_eq!(store.stats().attempts, 1, "403s are not retried");
        assert!(t.elapsed() < Duration::from_secs(5));
        // Every operation says the same.
        let e = store.put("k", Bytes::from_static(b"v")).unwrap_err();
        assert!(matches!(e, StoreError::Auth(_)), "{e:?}");
        let e = store.get("k", 0, None).unwrap_err();
        assert!(matches!(e, StoreError::Auth(_)), "{e:?}");
        // A HEAD's 403 has no body to name the reason, but is still a key problem.
        let e = store.head("k").unwrap_err();
        assert!(matches!(e, StoreError::Auth(_)), "{e:?}");
        assert!(e.to_string().contains("access keys"), "{e}");
    }
}

#[test]
fn missing_bucket_says_to_create_it() {
    let server = S3Server::start();
    let url = server.bucket_url("nobucket");
    for create in [false, true] {
        let e = open_store_with("s3", &url, &server.options(), create).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Config(_)), "{e:?}");
        assert!(
            msg.contains("'nobucket' does not exist") && msg.contains("create it"),
            "{msg}"
        );
        assert!(msg.contains(server.endpoint()), "{msg}");
    }
    assert!(
        !server.data_dir().join("nobucket").exists(),
        "buckets are never created"
    );
    // Head, delete and list name the missing bucket too.
    let store = S3Store::new(server.config(&url)).unwrap();
    for e in [
        store.delete("k").unwrap_err(),
        store.list("", "", 5).unwrap_err(),
    ] {
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}

/// A loopback port with nothing listening.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn unreachable_endpoint_fails_quickly_and_clearly() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let mut c = S3Config::from_bucket_url(&format!("{endpoint}/b")).unwrap();
    c.access_key = Some("AKX".into());
    c.secret_key = Some("secret-xyz-123".into());
    c.max_retries = 2;
    let t = Instant::now();
    let e = S3Store::open(c).unwrap_err();
    let msg = e.to_string();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(e.transient_kind(), Some(TransientKind::Connect), "{e:?}");
    assert!(
        msg.contains(&format!("could not connect to {endpoint}")),
        "{msg}"
    );
    assert!(msg.contains("after 3 attempts"), "{msg}");

    // The same through open_store_with, with its options.
    let opts = StoreOptions {
        access_key: Some("AKX".into()),
        secret_key: Some("secret-xyz-123".into()),
        max_retries: Some(1),
        ..StoreOptions::default()
    };
    let e = open_store_with("s3", &format!("{endpoint}/b"), &opts, false).unwrap_err();
    assert!(e.to_string().contains("could not connect"), "{e}");
    assert!(e.to_string().contains("after 2 attempts"), "{e}");
}

#[test]
fn silent_endpoint_times_out_instead_of_hanging() {
    // Connections are accepted by the kernel but never answered.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let mut c = S3Config::from_bucket_url(&format!("{endpoint}/b")).unwrap();
    c.access_key = Some("AKX".into());
    c.secret_key = Some("secret-xyz-123".into());
    c.request_timeout = Duration::from_millis(300);
    c.max_retries = 1;
    let store = S3Store::new(c).unwrap();
    let t = Instant::now();
    let e = store.get("k", 0, None).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(e.transient_kind(), Some(TransientKind::Timeout), "{e:?}");
    assert!(e.to_string().contains("after 2 attempts"), "{e}");
    assert_eq!(store.stats().attempts, 2);
    assert_eq!(store.stats().given_up, 1);
    drop(listener);
}

/// An HTTP server on loopback whose `answer(n, request_head)` gives the full response
/// to the n-th request (one request per connection). Returns the endpoint and the
/// request count.
fn scripted_server(
    answer: impl Fn(usize, &str) -> String + Send + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let _ = conn.write_all(answer(n, &head).as_bytes());
            let _ = conn.flush();
        }
    });
    (endpoint, hits)
}

fn error_response(status: &str, code: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>scripted</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn scripted_store(endpoint: &str, max_retries: u32) -> S3Store {
    let mut c = S3Config::from_bucket_url(&format!("{endpoint}/b")).unwrap();
    c.access_key = Some("AKX".into());
    c.secret_key = Some("secret-xyz-123".into());
    c.max_retries = max_retries;
    S3Store::new(c).unwrap()
}

#[test]
fn server_errors_and_throttling_are_retried_until_they_pass() {
    let (endpoint, hits) = scripted_server(|n, head| {
        assert!(head.starts_with("GET /b/k"), "{head}");
        match n {
            0 => error_response("503 Slow Down", "SlowDown"),
            1 => error_response("500 Internal Server Error", "InternalError"),
            2 => error_response("429 Too Many Requests", "TooManyRequests"),
            _ => {
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_string()
            }
        }
    });
    let store = scripted_store(&endpoint, 4);
    assert_eq!(store.get("k", 0, None).unwrap(), b"hello");
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    let s = store.stats();
    assert_eq!((s.attempts, s.retries, s.given_up), (4, 3, 0));
}

#[test]
fn a_server_that_keeps_failing_surfaces_after_bounded_attempts() {
    let (endpoint, hits) = scripted_server(|_, _| error_response("503 Slow Down", "SlowDown"));
    let store = scripted_store(&endpoint, 3);
    let t = Instant::now();
    let e = store.put("k", Bytes::from_static(b"data")).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(e.transient_kind(), Some(TransientKind::Throttle), "{e:?}");
    assert!(e.to_string().contains("after 4 attempts"), "{e}");
    assert!(e.to_string().contains("SlowDown"), "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[test]
fn requests_in_flight_are_bounded() {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (n2, p2) = (now.clone(), peak.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (now, peak) = (n2.clone(), p2.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(in_flight, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
                now.fetch_sub(1, Ordering::SeqCst);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    let mut c = S3Config::from_bucket_url(&format!("{endpoint}/b")).unwrap();
    c.access_key = Some("AKX".into());
    c.secret_key = Some("secret-xyz-123".into());
    c.max_concurrency = 2;
    let store = S3Store::new(c).unwrap();
    std::thread::scope(|sc| {
        for i in 0..8 {
            let store = &store;
            sc.spawn(move || assert_eq!(store.get(&format!("k{i}"), 0, None).unwrap(), b"ok"));
        }
    });
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(store.stats().attempts, 8);
}

#[test]
fn client_errors_are_not_retried() {
    let (endpoint, hits) =
        scripted_server(|_, _| error_response("400 Bad Request", "InvalidArgument"));
    let store = scripted_store(&endpoint, 5);
    let e = store.get("k", 0, None).unwrap_err();
    assert!(matches!(e, StoreError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains("InvalidArgument"), "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn retries_hide_injected_transient_faults() {
    let server = S3Server::start();
    let mut c = server.config(&server.create_bucket("flaky"));
    c.max_retries = 0; // the RetryingStore does the retrying here
    let faulty = FaultyStore::new(
        S3Store::open(c).unwrap(),
        RandomFaults::new(42, FaultRates::transient(0.3)),
    );
    let policy = RetryPolicy {
        max_retries: 12,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    let store = RetryingStore::new(faulty, policy);
    for i in 0..40u32 {
        let data = i.to_be_bytes().repeat(100);
        store
            .put(&format!("o/{i:02}"), Bytes::from(data.clone()))
            .unwrap();
        assert_eq!(store.get(&format!("o/{i:02}"), 0, None).unwrap(), data);
        assert_eq!(
            store.get(&format!("o/{i:02}"), 4, Some(4)).unwrap(),
            &data[4..8]
        );
    }
    assert_eq!(store.list("o/", "", 100).unwrap().len(), 40);
    for i in (0..40).step_by(2) {
        store.delete(&format!("o/{i:02}")).unwrap();
    }
    assert_eq!(store.list("o/", "", 100).unwrap().len(), 20);
    let injected = store.inner().stats();
    assert!(
        injected.errors + injected.lost_responses > 20,
        "{injected:?}"
    );
    assert_eq!(store.stats().given_up, 0);
    assert!(store.stats().retries >= injected.errors + injected.lost_responses);
}

#[test]
fn a_persistently_failing_store_surfaces_after_n_attempts() {
    let server = S3Server::start();
    let mut c = server.config(&server.create_bucket("down"));
    c.max_retries = 0;
    let faulty = FaultyStore::new(S3Store::open(c).unwrap(), |op: Op, _: &str| match op {
        Op::Get => Fault::Error(TransientKind::ServerError),
        _ => Fault::None,
    });
    let store = RetryingStore::new(
        faulty,
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
    );
    store.put("k", Bytes::from_static(b"v")).unwrap();
    let e = store.get("k", 0, None).unwrap_err();
    assert!(e.is_transient());
    assert!(e.to_string().contains("after 4 attempts"), "{e}");
    assert_eq!(store.inner().stats().errors, 4);
    assert_eq!(store.stats().given_up, 1);
}

#[test]
fn secrets_never_show() {
    let server = S3Server::start();
    let url = server.create_bucket("sec");
    let secret = server.secret_key().to_string();
    let access = server.access_key().to_string();
    let config = server.config(&format!("{url}/p"));
    let opts = server.options();
    let store = open_store_with("s3", &format!("{url}/p"), &opts, false).unwrap();
    store.put("k", Bytes::from_static(b"v")).unwrap();
    let mut shown = vec![
        format!("{config:?}"),
        format!("{opts:?}"),
        format!("{store:?}"),
        store.describe(),
    ];
    assert_eq!(store.describe(), format!("{url}/p"));
    // Errors of every kind.
    let mut bad = config.clone();
    bad.access_key = Some("AKNOSUCHKEY0000".into());
    shown.push(S3Store::open(bad).unwrap_err().to_string());
    let mut missing = server.config(&server.bucket_url("nope"));
    missing.max_retries = 0;
    shown.push(S3Store::open(missing).unwrap_err().to_string());
    let mut unreachable = config.clone();
    unreachable.endpoint = Some(format!("http://127.0.0.1:{}", closed_port()));
    unreachable.max_retries = 0;
    let e = S3Store::open(unreachable).unwrap_err();
    shown.push(e.to_string());
    shown.push(format!("{e:?}"));
    for s in &shown {
        assert!(!s.contains(&secret), "secret in: {s}");
        assert!(!s.contains(&access), "access key in: {s}");
    }
}

#[test]
fn probe_and_open_store_with() {
    let server = S3Server::start();
    let url = server.create_bucket("probe");
    let store = open_store_with("s3", &url, &server.options(), true).unwrap();
    probe(&*store).unwrap();
    assert!(
        store.list("", "", 10).unwrap().is_empty(),
        "the probe cleans up"
    );
    // A big object, as a 4 MiB block, through the same path.
    let block: Vec<u8> = (0..4u32 << 20).map(|i| (i * 13 + i / 7) as u8).collect();
    store
        .put("chunks/0/0/7_0_4194304", Bytes::from(block.clone()))
        .unwrap();
    assert_eq!(store.get("chunks/0/0/7_0_4194304", 0, None).unwrap(), block);
    assert_eq!(
        store
            .get("chunks/0/0/7_0_4194304", 3 << 20, Some(65536))
            .unwrap(),
        &block[3 << 20..(3 << 20) + 65536]
    );
    // Callers inside a tokio runtime do not trip over the store's own runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(
            store.get("chunks/0/0/7_0_4194304", 0, Some(3)).unwrap(),
            &block[..3]
        );
    });
    drop(rt);
    // Dropping the store, or failing to make one, inside a runtime does not panic either.
    let tokio_rt = tokio::runtime::Runtime::new().unwrap();
    tokio_rt.block_on(async move {
        drop(store);
        let mut half = server.config(&url);
        half.secret_key = None;
        assert!(S3Store::new(half).is_err());
    });
}
