use super::*;
use ferrofs_meta::raft::wire::{self, KIND_RAFT};
use std::time::Instant;

/// An echo server that counts the connections it accepted.
fn echo_server() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            a.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let Ok(mut r) = s.try_clone() else { return };
                let _ = io::copy(&mut r, &mut s);
            });
        }
    });
    (addr, accepted)
}

/// A server that keeps what its connections sent, each once it ended.
fn sink_server() -> (String, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let g = g.clone();
            thread::spawn(move || {
                let mut v = Vec::new();
                let mut b = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut b) {
                    v.extend_from_slice(&b[..n]);
                }
                g.lock().unwrap().push(v);
            });
        }
    });
    (addr, got)
}

fn dial(p: &Proxy) -> TcpStream {
    let s = TcpStream::connect(&p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn echoes(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut b = vec![0; msg.len()];
    s.read_exact(&mut b)?;
    Ok(b)
}

/// Whether the connection was ended (EOF or reset) rather than left silent.
fn ended(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !is_timeout(&e),
    }
}

fn silent(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Err(e) if is_timeout(&e))
}

#[test]
fn forwards_bytes_both_ways() {
    let (up, accepted) = echo_server();
    let net = Net::new(3);
    let p = Proxy::start(net, 1, 2, Upstream::new(&up).unwrap(), false).unwrap();
    let mut s = dial(&p);
    assert_eq!(echoes(&mut s, b"hello").unwrap(), b"hello");
    // More than the buffers hold, written while it is read back.
    let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let b2 = big.clone();
    let writer = thread::spawn(move || w.write_all(&b2).unwrap());
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut back = vec![0; big.len()];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == big);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn a_dropped_link_resets_connections_and_refuses_new_ones_until_healed() {
    let (up, accepted) = echo_server();
    let net = Net::new(3);
    let p = Proxy::start(net.clone(), 1, 2, Upstream::new(&up).unwrap(), false).unwrap();
    let mut s = dial(&p);
    assert_eq!(echoes(&mut s, b"before").unwrap(), b"before");
    net.set(1, 2, Link::Drop);
    assert!(ended(&mut s), "an open connection of a dropped link ends");
    // Another link is not affected.
    let q = Proxy::start(net.clone(), 2, 1, Upstream::new(&up).unwrap(), false).unwrap();
    assert_eq!(echoes(&mut dial(&q), b"other").unwrap(), b"other");
    let mut t = dial(&p);
    let _ = t.write_all(b"refused?");
    assert!(ended(&mut t), "a new connection is refused");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "never reached upstream");
    net.heal();
    assert_eq!(echoes(&mut dial(&p), b"after").unwrap(), b"after");
}

#[test]
fn a_blackholed_link_holds_bytes_and_connections_until_healed() {
    let (up, accepted) = echo_server();
    let net = Net::new(3);
    let p = Proxy::start(net.clone(), 1, 2, Upstream::new(&up).unwrap(), false).unwrap();
    let mut s = dial(&p);
    assert_eq!(echoes(&mut s, b"before").unwrap(), b"before");
    net.set(1, 2, Link::Blackhole);
    thread::sleep(POLL * 3);
    s.write_all(b"held").unwrap();
    assert!(silent(&mut s));
    let mut t = dial(&p);
    t.write_all(b"late").unwrap();
    assert!(silent(&mut t));
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "not connected on");
    net.heal();
    let mut b = [0u8; 4];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"held");
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    t.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"late");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn new_connections_follow_a_moved_upstream() {
    let (a, at_a) = echo_server();
    let (b, at_b) = echo_server();
    let up = Upstream::new(&a).unwrap();
    let p = Proxy::start(Net::new(3), 1, 2, up.clone(), false).unwrap();
    let mut old = dial(&p);
    assert_eq!(echoes(&mut old, b"a").unwrap(), b"a");
    up.set(&b).unwrap();
    assert_eq!(echoes(&mut dial(&p), b"b").unwrap(), b"b");
    assert_eq!(echoes(&mut old, b"still a").unwrap(), b"still a");
    assert_eq!(at_a.load(Ordering::SeqCst), 1);
    assert_eq!(at_b.load(Ordering::SeqCst), 1);
}

#[test]
fn a_proxy_whose_upstream_is_down_refuses() {
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = gone.local_addr().unwrap().to_string();
    drop(gone);
    let p = Proxy::start(Net::new(3), 1, 2, Upstream::new(&addr).unwrap(), false).unwrap();
    let t0 = Instant::now();
    assert!(ended(&mut dial(&p)));
    assert!(t0.elapsed() < Duration::from_secs(2));
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    wire::write_frame(&mut v, kind, body).unwrap();
    v
}

#[test]
fn the_first_frame_after_the_handshake_tells_a_client_from_a_peer() {
    let hello = frame(KIND_HELLO, &[7; 32]);
    let request = frame(KIND_REQUEST, b"a request");
    let raft = frame(KIND_RAFT, b"a message");
    assert_eq!(sniff(&hello[..3]), Sniff::Need(0));
    assert_eq!(sniff(&hello[..20]), Sniff::Need(20));
    assert_eq!(sniff(&hello), Sniff::Need(hello.len()));
    let with = |f: &[u8], n: usize| [&hello[..], &f[..n]].concat();
    let known = |client, handshake| Sniff::Known { client, handshake };
    assert_eq!(sniff(&with(&request, 4)), Sniff::Need(hello.len()));
    assert_eq!(sniff(&with(&request, 5)), known(true, hello.len()));
    assert_eq!(sniff(&with(&raft, 5)), known(false, hello.len()));
    assert_eq!(
        sniff(&raft),
        known(false, 0),
        "no handshake: left to the link"
    );
}

#[test]
fn a_client_through_a_replica_link_follows_the_clients_link() {
    let (up, _) = echo_server();
    let net = Net::new(3);
    let p = Proxy::start(net.clone(), 1, 2, Upstream::new(&up).unwrap(), true).unwrap();
    let hello = frame(KIND_HELLO, &[7; 32]);
    let mut client = dial(&p);
    let mut peer = dial(&p);
    let first = [&hello[..], &frame(KIND_REQUEST, b"get")[..]].concat();
    assert_eq!(echoes(&mut client, &first).unwrap(), first);
    let first = [&hello[..], &frame(KIND_RAFT, b"append")[..]].concat();
    assert_eq!(echoes(&mut peer, &first).unwrap(), first);
    net.set(CLIENTS, 2, Link::Drop);
    assert!(ended(&mut client));
    assert_eq!(echoes(&mut peer, b"more").unwrap(), b"more");
    net.heal();
    net.set(1, 2, Link::Drop);
    assert!(ended(&mut peer));
}

#[test]
fn a_cut_client_link_lets_the_handshake_through_but_no_request() {
    let (up, got) = sink_server();
    let net = Net::new(3);
    let p = Proxy::start(net.clone(), 1, 2, Upstream::new(&up).unwrap(), true).unwrap();
    net.set(CLIENTS, 2, Link::Drop);
    let hello = frame(KIND_HELLO, &[7; 32]);
    let mut client = dial(&p);
    client
        .write_all(&[&hello[..], &frame(KIND_REQUEST, b"get")[..]].concat())
        .unwrap();
    assert!(ended(&mut client));
    let t0 = Instant::now();
    while got.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(2) {
        thread::sleep(POLL);
    }
    assert_eq!(*got.lock().unwrap(), vec![hello]);
}

#[test]
fn a_partition_cuts_the_links_between_groups_only() {
    let net = Net::new(4);
    // A bridge: 1 and 3 each see 2; the clients are with 2 and 3.
    net.partition(&[vec![1, 2], vec![2, 3, CLIENTS]], Link::Blackhole);
    for (a, b, l) in [
        (1, 3, Link::Blackhole),
        (3, 1, Link::Blackhole),
        (1, 2, Link::Open),
        (2, 1, Link::Open),
        (2, 3, Link::Open),
        (CLIENTS, 3, Link::Open),
        (CLIENTS, 2, Link::Open),
        (CLIENTS, 1, Link::Blackhole),
    ] {
        assert_eq!(net.link(a, b), l, "{a} -> {b}");
    }
    net.heal();
    assert_eq!(net.link(1, 3), Link::Open);
}
