//! The test network: a TCP proxy per directed link, each opened or cut by the nemesis.
//!
//! Nodes are the clients (node [`CLIENTS`], every client thread together) and the
//! replicas `1..`. Link `(a, b)` is the connections `a` opens to `b`: replica `i`
//! reaches replica `j` only through the proxy of `(i, j)`, the clients reach `j`
//! through `(CLIENTS, j)`. A link is
//! - open: bytes are forwarded both ways;
//! - dropped: its connections are reset (both ends see ECONNRESET), and a new one is
//!   accepted and reset at once (refused, as the connecting side sees it);
//! - blackholed: nothing is read from or written to its connections, and a new one is
//!   accepted (the kernel answers the handshake) but not connected on. Senders block
//!   once the buffers fill, readers time out. Healed, held bytes flow and held
//!   connections go through, late, as TCP delivers them after a short partition.
//!
//! A cut stops both directions of the link's connections (a one-way loss kills a TCP
//! connection anyway). A connection ends, both ends closed, when either side closes or
//! fails; nothing a socket does can stop a proxy.
//!
//! A replica's NotLeader answer names the leader as that replica's `--peers` does: the
//! proxy of *its* link to the leader. A client that follows the hint connects to a
//! replica link's proxy, which tells the client's connection from a peer's by its
//! first frame after the handshake (a request, not a Raft message) and from then on
//! applies the clients' link to the same replica instead. So following a hint reaches
//! the leader exactly when the clients' link to it is open. (At connect time the
//! replica link decides: the partitions the nemesis makes never cut `(i, j)` while the
//! clients reach both `i` and `j`.)

use ferrofs_meta::raft::wire::{KIND_HELLO, KIND_REQUEST};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The clients' node.
pub const CLIENTS: usize = 0;

/// How often a stalled or idle connection looks at its link again.
const POLL: Duration = Duration::from_millis(20);

/// A link's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Open = 0,
    Drop = 1,
    Blackhole = 2,
}

/// Every link's state: `nodes × nodes`, by `(from, to)`.
pub struct Net {
    nodes: usize,
    links: Vec<AtomicU8>,
}

impl Net {
    pub fn new(nodes: usize) -> Arc<Net> {
        Arc::new(Net {
            nodes,
            links: (0..nodes * nodes).map(|_| AtomicU8::new(0)).collect(),
        })
    }

    pub fn link(&self, from: usize, to: usize) -> Link {
        match self.links[from * self.nodes + to].load(Ordering::SeqCst) {
            0 => Link::Open,
            1 => Link::Drop,
            _ => Link::Blackhole,
        }
    }

    pub fn set(&self, from: usize, to: usize, l: Link) {
        self.links[from * self.nodes + to].store(l as u8, Ordering::SeqCst);
    }

    /// Cuts (as `mode`) both directions between any two nodes that share no group,
    /// and opens the others. A node in no group is cut off from all.
    pub fn partition(&self, groups: &[Vec<usize>], mode: Link) {
        for a in 0..self.nodes {
            for b in (0..self.nodes).filter(|&b| b != a) {
                let together = groups.iter().any(|g| g.contains(&a) && g.contains(&b));
                self.set(a, b, if together { Link::Open } else { mode });
            }
        }
    }

    /// Every link open.
    pub fn heal(&self) {
        for l in &self.links {
            l.store(Link::Open as u8, Ordering::SeqCst);
        }
    }
}

/// Where a replica listens: the proxies of the links to it forward there (it may
/// move, see `Cluster::spawn`).
pub struct Upstream(Mutex<SocketAddr>);

impl Upstream {
    pub fn new(addr: &str) -> io::Result<Arc<Upstream>> {
        Ok(Arc::new(Upstream(Mutex::new(parse(addr)?))))
    }

    pub fn set(&self, addr: &str) -> io::Result<()> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = parse(addr)?;
        Ok(())
    }

    fn get(&self) -> SocketAddr {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn parse(addr: &str) -> io::Result<SocketAddr> {
    addr.parse()
        .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{addr}: {e}")))
}

/// A proxy of one link, listening on its own loopback port.
pub struct Proxy {
    pub addr: String,
}

/// What a proxy's connections need.
struct Route {
    net: Arc<Net>,
    from: usize,
    to: usize,
    upstream: Arc<Upstream>,
    /// Whether clients' connections are told apart (on a replica link).
    sniff: bool,
}

impl Proxy {
    /// A proxy of link `(from, to)` forwarding to `upstream` (`to`'s real address).
    /// With `sniff`, clients' connections follow the link `(CLIENTS, to)`.
    pub fn start(
        net: Arc<Net>,
        from: usize,
        to: usize,
        upstream: Arc<Upstream>,
        sniff: bool,
    ) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let route = Arc::new(Route {
            net,
            from,
            to,
            upstream,
            sniff,
        });
        thread::Builder::new()
            .name(format!("proxy-{from}-{to}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(c) => {
                            let r = route.clone();
                            // No thread, no connection (the closure drops it).
                            let _ = thread::Builder::new().spawn(move || connection(c, &r));
                        }
                        // Out of descriptors, say: later.
                        Err(_) => thread::sleep(POLL),
                    }
                }
            })?;
        Ok(Proxy { addr })
    }
}

/// One accepted connection, from the handshake to its end.
fn connection(down: TcpStream, r: &Route) {
    loop {
        match r.net.link(r.from, r.to) {
            Link::Open => break,
            Link::Drop => return reset(&down),
            Link::Blackhole => thread::sleep(POLL),
        }
    }
    // The replica is down: refused.
    let Ok(up) = TcpStream::connect_timeout(&r.upstream.get(), Duration::from_secs(1)) else {
        return reset(&down);
    };
    for s in [&down, &up] {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(POLL));
        let _ = s.set_write_timeout(Some(POLL));
    }
    let (Ok(down2), Ok(up2)) = (down.try_clone(), up.try_clone()) else {
        return;
    };
    let class = Arc::new(AtomicUsize::new(r.from));
    let dead = Arc::new(AtomicBool::new(false));
    let (net, to, c, d) = (r.net.clone(), r.to, class.clone(), dead.clone());
    let back = thread::Builder::new().spawn(move || pump(up2, down2, &net, to, &c, &d, false));
    if back.is_ok() {
        pump(down, up, &r.net, r.to, &class, &dead, r.sniff);
    }
}

/// What the first bytes from a connecting side say about it.
#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    /// Not known yet; the first `n` bytes may go on meanwhile (the handshake).
    Need(usize),
    /// Known: whether it is a client's, and how many bytes the handshake took (they
    /// go through under the link it connected on; a client's requests do not).
    Known { client: bool, handshake: usize },
}

/// Reads the handshake's answer (a `HELLO` frame) and the header of the next frame:
/// a request is a client's. Anything unexpected is left to the link (a peer).
fn sniff(p: &[u8]) -> Sniff {
    if p.len() < 5 {
        return Sniff::Need(0);
    }
    let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
    if p[4] != KIND_HELLO || len == 0 || len > 4096 {
        return Sniff::Known {
            client: false,
            handshake: 0,
        };
    }
    let end = 4 + len;
    if p.len() < end + 5 {
        return Sniff::Need(p.len().min(end));
    }
    Sniff::Known {
        client: p[end + 4] == KIND_REQUEST,
        handshake: end,
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Moves bytes from `src` to `dst` while the link of (`class`, `to`) lets them; ends
/// the connection (both sockets) when either side closes or the link is dropped.
fn pump(
    mut src: TcpStream,
    mut dst: TcpStream,
    net: &Net,
    to: usize,
    class: &AtomicUsize,
    dead: &AtomicBool,
    sniff_clients: bool,
) {
    let mut buf = vec![0u8; 64 << 10];
    // Read and not yet written.
    let mut queue: Vec<u8> = Vec::new();
    // While sniffing: everything read so far, and how much of it is queued.
    let mut prefix: Option<(Vec<u8>, usize)> = sniff_clients.then(|| (Vec::new(), 0));
    // A client's bytes after the handshake: forwarded once the handshake is, under
    // the clients' link.
    let mut after: Option<Vec<u8>> = None;
    let dropped = loop {
        if dead.load(Ordering::SeqCst) {
            break false;
        }
        if queue.is_empty() {
            if let Some(rest) = after.take() {
                class.store(CLIENTS, Ordering::SeqCst);
                queue = rest;
            }
        }
        match net.link(class.load(Ordering::SeqCst), to) {
            Link::Open => {}
            Link::Drop => break true,
            Link::Blackhole => {
                thread::sleep(POLL);
                continue;
            }
        }
        if !queue.is_empty() {
            match dst.write(&queue) {
                Ok(0) => break false,
                Ok(n) => drop(queue.drain(..n)),
                Err(e) if is_timeout(&e) => {}
                Err(_) => break false,
            }
            continue;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break false,
        };
        let Some((seen, queued)) = prefix.as_mut() else {
            queue.extend_from_slice(&buf[..n]);
            continue;
        };
        seen.extend_from_slice(&buf[..n]);
        match sniff(seen) {
            Sniff::Need(upto) => {
                queue.extend_from_slice(&seen[*queued..upto]);
                *queued = upto;
            }
            Sniff::Known { client, handshake } => {
                let split = handshake.max(*queued);
                queue.extend_from_slice(&seen[*queued..split]);
                if client {
                    after = Some(seen[split..].to_vec());
                } else {
                    queue.extend_from_slice(&seen[split..]);
                }
                prefix = None;
            }
        }
    };
    dead.store(true, Ordering::SeqCst);
    if dropped {
        // Reset when the last descriptor closes (the other pump's, within a POLL).
        reset(&src);
        reset(&dst);
    } else {
        let _ = src.shutdown(Shutdown::Both);
        let _ = dst.shutdown(Shutdown::Both);
    }
}

/// Makes closing `s` send a reset instead of a FIN.
fn reset(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests;
