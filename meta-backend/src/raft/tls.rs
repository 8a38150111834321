//! TLS for the meta servers' connections (clients and peers alike), with rustls.
//!
//! A server started with a certificate and key accepts only TLS; clients and peers
//! verify its certificate against a CA file (the server's own certificate, if it is
//! self-signed). The shared secret's challenge and proof (see `wire`) then run inside
//! the encrypted stream: TLS hides the traffic and proves the server, the secret
//! proves the client.
//!
//! A connection is read by one thread and written by others (see `net`), so a TLS
//! stream here is split by hand: the socket is cloned, and the rustls state machine
//! is shared under a lock that is held only to feed it ciphertext or take plaintext,
//! never across a blocking read. A write holds it while the socket takes the record;
//! our connections never stream bulk data both ways at once, so that does not
//! deadlock.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server's TLS settings.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit: {e}"))?;
    Ok(Arc::new(cfg))
}

/// A client's (or peer's) TLS settings: servers must show a certificate `ca` vouches for.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?
    {
        let c = c.map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("unusable CA certificate in {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", ca.display()));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A connection, plain or TLS. Clones share the connection (one reader, any writers).
pub enum Stream {
    Plain(TcpStream),
    Tls(TlsStream),
}

/// One side of a split TLS connection.
pub struct TlsStream {
    sock: TcpStream,
    conn: Arc<Mutex<rustls::Connection>>,
    /// Ciphertext read but not yet taken by rustls (its buffer was full).
    pending: Vec<u8>,
}

const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

impl Stream {
    /// The server side of a new connection.
    pub fn accept(sock: TcpStream, tls: Option<&Arc<rustls::ServerConfig>>) -> io::Result<Stream> {
        match tls {
            None => Ok(Stream::Plain(sock)),
            Some(cfg) => {
                refuse_plain(&sock)?;
                let conn = rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
                handshake(sock, conn.into())
            }
        }
    }

    /// The client side: `addr` is `host:port`, and the certificate must name `host`.
    pub fn connect(
        sock: TcpStream,
        addr: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Stream> {
        match tls {
            None => Ok(Stream::Plain(sock)),
            Some(cfg) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("bad host name {host}"))
                })?;
                let conn =
                    rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
                handshake(sock, conn.into())
            }
        }
    }

    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Plain(s) => Stream::Plain(s.try_clone()?),
            Stream::Tls(t) => Stream::Tls(TlsStream {
                sock: t.sock.try_clone()?,
                conn: t.conn.clone(),
                pending: Vec::new(),
            }),
        })
    }

    fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock().set_read_timeout(d)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock().peer_addr()
    }
}

/// A TLS client speaks first; a plain one waits for our challenge. Tell the latter
/// what to do instead of letting both wait.
fn refuse_plain(sock: &TcpStream) -> io::Result<()> {
    sock.set_read_timeout(Some(PLAIN_CLIENT_WAIT))?;
    let mut first = [0u8; 1];
    let r = sock.peek(&mut first);
    sock.set_read_timeout(None)?;
    match r {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a TLS client",
        )),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            let mut w = sock;
            let _ = super::wire::write_frame(&mut w, super::wire::KIND_DENIED, TLS_ONLY);
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a client without TLS",
            ))
        }
        Err(e) => Err(e),
    }
}

/// What a server that speaks only TLS answers a plain client (in a denied frame).
pub const TLS_ONLY: &[u8] = b"tls-only";
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const PLAIN_CLIENT_WAIT: Duration = Duration::from_secs(2);

fn handshake(mut sock: TcpStream, mut conn: rustls::Connection) -> io::Result<Stream> {
    let before = sock.read_timeout()?;
    sock.set_read_timeout(Some(HANDSHAKE_LIMIT))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    sock.set_read_timeout(before)?;
    Ok(Stream::Tls(TlsStream {
        sock,
        conn: Arc::new(Mutex::new(conn)),
        pending: Vec::new(),
    }))
}

impl TlsStream {
    fn lock(&self) -> std::sync::MutexGuard<'_, rustls::Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds what is pending to rustls, and sends what it has to answer.
    fn feed(&mut self, c: &mut rustls::Connection) -> io::Result<()> {
        let mut rd = &self.pending[..];
        // rustls takes no more while it holds plaintext not yet read.
        while !rd.is_empty() && c.wants_read() {
            c.read_tls(&mut rd)?;
            c.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let used = self.pending.len() - rd.len();
        self.pending.drain(..used);
        while c.wants_write() {
            c.write_tls(&mut self.sock)?;
        }
        Ok(())
    }
}

impl Read for TlsStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let conn = self.conn.clone();
                let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                if !self.pending.is_empty() {
                    self.feed(&mut c)?;
                }
                match c.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // Blocking, without the lock: writers go on meanwhile.
            let mut buf = [0u8; 16 << 10];
            let n = self.sock.read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let conn = self.conn.clone();
        let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
        let n = c.writer().write(data)?;
        while c.wants_write() {
            c.write_tls(&mut self.sock)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut c = self.lock();
        c.writer().flush()?;
        while c.wants_write() {
            c.write_tls(&mut &self.sock)?;
        }
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(out),
            Stream::Tls(t) => t.read(out),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(data),
            Stream::Tls(t) => t.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/tls")
            .join(name)
    }

    #[test]
    fn a_split_tls_stream_carries_frames_both_ways_and_refuses_a_stranger() {
        let server = server_config(&fixture("server.pem"), &fixture("server.key")).unwrap();
        let client = client_config(&fixture("ca.pem")).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut s = Stream::accept(s, Some(&server)).unwrap();
            let mut w = s.try_clone().unwrap();
            // Echo frames until the client goes.
            while let Ok((kind, body)) = super::super::wire::read_frame(&mut s) {
                super::super::wire::write_frame(&mut w, kind, &body).unwrap();
            }
            // A second connection from a client that trusts another CA fails.
            let (s, _) = l.accept().unwrap();
            assert!(Stream::accept(s, Some(&server)).is_err());
        });
        let sock = TcpStream::connect(&addr).unwrap();
        let mut c = Stream::connect(sock, &addr, Some(&client)).unwrap();
        let mut r = c.try_clone().unwrap();
        let big = vec![7u8; 300_000];
        for body in [&b"hello"[..], &big[..]] {
            super::super::wire::write_frame(&mut c, 2, body).unwrap();
            let (kind, got) = super::super::wire::read_frame(&mut r).unwrap();
            assert_eq!((kind, got.as_slice()), (2, body));
        }
        drop((c, r));
        let stranger = client_config(&fixture("other-ca.pem")).unwrap();
        let sock = TcpStream::connect(&addr).unwrap();
        assert!(Stream::connect(sock, &addr, Some(&stranger)).is_err());
        t.join().unwrap();
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = client_config(Path::new("/nonexistent/ca.pem"))
            .err()
            .unwrap();
        assert!(e.contains("cannot read the CA file"), "{e}");
        let e = server_config(&fixture("ca.pem"), &fixture("ca.pem"))
            .err()
            .unwrap();
        assert!(e.contains("private key"), "{e}");
    }
}
