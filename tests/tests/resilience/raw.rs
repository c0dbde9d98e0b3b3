//! A misbehaving backend written at the TCP level, for faults hyper will not produce: an
//! answer that is not HTTP, an oversized head, a fixed status, a reset before any header,
//! silence. It counts connections, requests, and connections the gateway closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the backend does with each request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Write these bytes as the answer and keep the connection open.
    Answer(Vec<u8>),
    /// Close the connection without answering.
    Reset,
}

#[derive(Debug, Default)]
pub struct RawStats {
    accepts: AtomicUsize,
    requests: AtomicUsize,
    closed_by_peer: AtomicUsize,
    closed: tokio::sync::Notify,
}

impl RawStats {
    fn peer_closed(&self) {
        self.closed_by_peer.fetch_add(1, Ordering::SeqCst);
        self.closed.notify_waiters();
    }
}

pub struct RawBackend {
    addr: SocketAddr,
    stats: Arc<RawStats>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(RawStats::default());
        let task = tokio::spawn(accept_loop(listener, behaviour, stats.clone()));
        Self { addr, stats, task }
    }

    /// A backend that answers every request with `status` and a short body.
    pub async fn status(status: u16) -> Self {
        let body = format!("raw {status}");
        let answer = format!(
            "HTTP/1.1 {status} Raw\r\ncontent-length: {}\r\nx-backend: raw\r\n\r\n{body}",
            body.len()
        );
        Self::start(Behaviour::Answer(answer.into_bytes())).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn accepts(&self) -> usize {
        self.stats.accepts.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Connections that the other side (the gateway) closed.
    pub fn closed_by_peer(&self) -> usize {
        self.stats.closed_by_peer.load(Ordering::SeqCst)
    }

    /// Wait (bounded) until the gateway closed `n` connections.
    pub async fn wait_closed_by_peer(&self, n: usize) {
        let wait = async {
            loop {
                let closed = self.stats.closed.notified();
                if self.closed_by_peer() >= n {
                    return;
                }
                closed.await;
            }
        };
        tokio::time::timeout(support::harness::PATIENCE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the gateway closed {} connections, expected {n}",
                    self.closed_by_peer()
                )
            });
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, behaviour: Behaviour, stats: Arc<RawStats>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        stats.accepts.fetch_add(1, Ordering::SeqCst);
        connections.spawn(serve(stream, behaviour.clone(), stats.clone()));
    }
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour, stats: Arc<RawStats>) {
    let mut buf = Vec::new();
    loop {
        match read_request(&mut stream, &mut buf).await {
            Some(()) => {}
            None => {
                stats.peer_closed();
                return;
            }
        }
        stats.requests.fetch_add(1, Ordering::SeqCst);
        match &behaviour {
            Behaviour::Reset => return,
            Behaviour::Answer(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    // The gateway hung up while we were still writing.
                    stats.peer_closed();
                    return;
                }
            }
        }
    }
}

/// Read one request head and its Content-Length body; `None` when the peer closed.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + length);
    Some(())
}
