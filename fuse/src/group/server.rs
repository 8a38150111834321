//! The peer server of a cache-group member: proves and checks the group key, then
//! answers requests from a [`BlockService`] on the runtime's blocking pool, many at once
//! per connection (responses go out as they are ready, matched by id). A frame that is
//! not the protocol closes that connection, never the server.

use super::net::{proof, random_bytes, read_frame, runtime, verify, HANDSHAKE_TIMEOUT};
use super::BlockService;
use ferrofs_core::cache::peer_wire::{Frame, Reply};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// Requests one connection may have in flight at once.
const IN_FLIGHT_PER_CONN: usize = 64;

/// A running peer server; stops when dropped.
pub struct PeerServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl PeerServer {
    /// Listens on `listen` (`host:port`; port 0 picks one) and serves `service` to
    /// whoever proves `key`.
    pub fn start(
        listen: &str,
        key: [u8; 32],
        service: Arc<dyn BlockService>,
    ) -> io::Result<PeerServer> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let rt = runtime();
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(std_listener)?
        };
        rt.spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok((sock, from)) => {
                            let service = service.clone();
                            tokio::spawn(async move {
                                if let Err(e) = serve_conn(sock, key, service).await {
                                    tracing::warn!(peer = %from, "cache group connection closed: {e}");
                                }
                            });
                        }
                        Err(e) => {
                            tracing::warn!("cache group server: accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    },
                }
            }
        });
        Ok(PeerServer {
            addr,
            stop: Some(stop),
        })
    }

    /// The address it listens on (with the port it got).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

async fn serve_conn(
    mut sock: TcpStream,
    key: [u8; 32],
    service: Arc<dyn BlockService>,
) -> io::Result<()> {
    let _ = sock.set_nodelay(true);
    let nonce = random_bytes()?;
    sock.write_all(&Frame::Challenge { nonce }.encode()).await?;
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut sock))
        .await
        .map_err(|_| invalid("no hello in time"))??;
    let theirs = match hello {
        Some(Frame::Hello {
            proof: p,
            nonce: theirs,
        }) if verify(&key, b'c', &nonce, &p) => theirs,
        Some(Frame::Hello { .. }) => {
            let _ = sock.write_all(&Frame::Denied.encode()).await;
            return Err(invalid(
                "it could not prove the group key (another volume or group, or a stranger)",
            ));
        }
        None => return Ok(()),
        Some(_) => return Err(invalid("it did not start with a hello")),
    };
    sock.write_all(
        &Frame::Welcome {
            proof: proof(&key, b's', &theirs),
        }
        .encode(),
    )
    .await?;

    let (mut r, mut w) = sock.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT_PER_CONN);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if w.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONN));
    let result = loop {
        let frame = match read_frame(&mut r).await {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let Frame::Request {
            id,
            op,
            local_only,
            key,
        } = frame
        else {
            break Err(invalid("it sent a frame that is not a request"));
        };
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| invalid("closed"))?;
        let (service, tx) = (service.clone(), tx.clone());
        tokio::spawn(async move {
            let reply = tokio::task::spawn_blocking(move || service.serve(op, local_only, &key))
                .await
                .unwrap_or_else(|e| Reply::Failed(format!("serving failed: {e}")));
            let _ = tx.send(Frame::Response { id, reply }.encode()).await;
            drop(permit);
        });
    };
    drop(tx);
    let _ = writer.await;
    result
}
