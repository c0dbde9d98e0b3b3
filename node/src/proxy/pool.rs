//! Upstream connections per endpoint: a lock-free queue of idle HTTP/1.1 connections and one
//! shared multiplexed HTTP/2 connection. A checked-out HTTP/1.1 connection comes back only
//! when its response body ended cleanly; anything else closes it. Every connection holds a
//! slot of its upstream's `max_connections`; a request that finds them all taken waits as one
//! of `max_pending_requests` (or is turned away when those are full too).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshgate_actors::tls::UpstreamTls;
use meshgate_actors::upstream::{ConcurrencyLimits, Endpoint, LimitKind, Slot};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::body::ProxyBody;
use crate::error::GatewayError;

/// How long a pooled HTTP/1.1 connection may take to become ready again after its previous
/// response ended before it is given up in favour of another.
const READY_WAIT: Duration = Duration::from_millis(50);
/// Largest upstream response head accepted; a bigger one is a 502 and the connection is
/// closed (the same bound as client request heads).
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Connection settings taken from the upstream's spec.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    /// TLS to the endpoint (re-encryption or mesh mTLS); a failed handshake is a connect
    /// failure, never a fall back to plain text.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// The connections to one endpoint.
#[derive(Debug)]
pub struct ConnPool {
    address: SocketAddr,
    /// The endpoint's host, the default TLS server name.
    host: String,
    idle: ArrayQueue<H1Conn>,
    idle_timeout: Duration,
    h2: ArcSwapOption<H2Conn>,
    /// Serialises HTTP/2 connection setup so that a burst opens one connection, not many.
    h2_connecting: tokio::sync::Mutex<()>,
}

/// The upstream-wide connection bounds a checkout must respect.
pub struct ConnLimits<'a> {
    pub limits: &'a Arc<ConcurrencyLimits>,
    pub max_connections: u32,
    pub max_pending: u32,
    /// Every endpoint of the upstream: an idle connection to another endpoint may be closed
    /// to free a slot for this one.
    pub siblings: &'a [Arc<Endpoint>],
}

/// An HTTP/1.1 connection; dropping it closes the socket and frees its slot.
#[derive(Debug)]
pub struct H1Conn {
    sender: http1::SendRequest<ProxyBody>,
    task: AbortHandle,
    idle_since: Instant,
    slot: Slot,
}

impl Drop for H1Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The shared HTTP/2 connection; closed when the last stream using it is gone.
#[derive(Debug)]
pub struct H2Conn {
    sender: http2::SendRequest<ProxyBody>,
    task: AbortHandle,
    _slot: Slot,
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection in use by one request, given back by [`Lease::release`].
#[derive(Debug)]
pub enum Lease {
    H1 { conn: H1Conn, pool: Arc<ConnPool> },
    H2(Arc<H2Conn>),
}

impl Lease {
    /// The response ended cleanly: the connection may serve another request.
    pub fn release(self) {
        if let Lease::H1 { mut conn, pool } = self {
            conn.idle_since = Instant::now();
            let limits = conn.slot.limits().clone();
            // A full queue drops (closes) the extra connection.
            let _ = pool.idle.push(conn);
            // Someone may be waiting for a connection: this one, or its slot.
            limits.released().notify_waiters();
        }
    }
}

/// A connection ready to send one request.
pub enum Checkout {
    H1 { conn: H1Conn, reused: bool },
    H2(Arc<H2Conn>),
}

impl ConnPool {
    pub fn new(address: SocketAddr, host: &str, settings: &PoolSettings) -> Self {
        Self {
            address,
            host: host.to_string(),
            idle: ArrayQueue::new(settings.max_idle.max(1)),
            idle_timeout: settings.idle_timeout,
            h2: ArcSwapOption::empty(),
            h2_connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// A ready HTTP/1.1 connection: a pooled one if any is alive, else a new one within the
    /// upstream's connection bound.
    pub async fn checkout_h1(
        &self,
        settings: &PoolSettings,
        limits: &ConnLimits<'_>,
    ) -> Result<Checkout, GatewayError> {
        if let Some(conn) = self.take_idle().await {
            return Ok(Checkout::H1 { conn, reused: true });
        }
        // The slow paths (waiting for a slot, connecting and TLS) are boxed so that their
        // state does not weigh on every request's future.
        let slot = match Box::pin(self.connection_slot(limits, true)).await? {
            SlotOrIdle::Slot(slot) => slot,
            SlotOrIdle::Idle(conn) => return Ok(Checkout::H1 { conn, reused: true }),
        };
        let conn = Box::pin(self.connect_h1(settings, slot)).await?;
        Ok(Checkout::H1 {
            conn,
            reused: false,
        })
    }

    /// A pooled connection that is alive and ready, if any.
    async fn take_idle(&self) -> Option<H1Conn> {
        // Bounded: at most every idle connection once.
        for _ in 0..self.idle.capacity() {
            let mut conn = self.idle.pop()?;
            if conn.sender.is_closed() || conn.idle_since.elapsed() > self.idle_timeout {
                continue;
            }
            if conn.sender.is_ready() {
                return Some(conn);
            }
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, conn.sender.ready()).await {
                return Some(conn);
            }
        }
        None
    }

    /// Close one idle connection, freeing its slot; false when there is none.
    pub fn evict_idle(&self) -> bool {
        self.idle.pop().is_some()
    }

    /// A slot for a new connection. When `max_connections` are open, wait as a pending
    /// request (if `max_pending` allows) until a slot frees, an idle connection to this
    /// endpoint appears (`reuse_idle`), or one to another endpoint can be closed.
    async fn connection_slot(
        &self,
        limits: &ConnLimits<'_>,
        reuse_idle: bool,
    ) -> Result<SlotOrIdle, GatewayError> {
        let counters = limits.limits;
        if let Some(slot) = counters.try_acquire(LimitKind::Connection, limits.max_connections) {
            return Ok(SlotOrIdle::Slot(slot));
        }
        let _pending = counters
            .try_acquire(LimitKind::Pending, limits.max_pending)
            .ok_or(GatewayError::LimitReached(LimitKind::Pending))?;
        loop {
            let released = counters.released().notified();
            tokio::pin!(released);
            // Registered before looking, so a release between the look and the wait counts.
            released.as_mut().enable();
            if reuse_idle && let Some(conn) = self.take_idle().await {
                return Ok(SlotOrIdle::Idle(conn));
            }
            if let Some(slot) = counters.try_acquire(LimitKind::Connection, limits.max_connections)
            {
                return Ok(SlotOrIdle::Slot(slot));
            }
            if evict_sibling_idle(limits.siblings) {
                continue;
            }
            released.await;
        }
    }

    /// A fresh HTTP/1.1 connection that supports protocol upgrades (WebSocket); never pooled.
    pub async fn connect_upgradable(
        &self,
        settings: &PoolSettings,
    ) -> Result<http1::SendRequest<ProxyBody>, GatewayError> {
        let stream = self.open(settings).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| GatewayError::UpstreamProtocol(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    async fn connect_h1(
        &self,
        settings: &PoolSettings,
        slot: Slot,
    ) -> Result<H1Conn, GatewayError> {
        let stream = self.open(settings).await?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(MAX_RESPONSE_HEAD_BYTES)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| GatewayError::UpstreamProtocol(e.to_string()))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        })
        .abort_handle();
        Ok(H1Conn {
            sender,
            task,
            idle_since: Instant::now(),
            slot,
        })
    }

    /// The shared HTTP/2 connection, opened on first use and reopened when it has closed.
    pub async fn checkout_h2(
        &self,
        settings: &PoolSettings,
        limits: &ConnLimits<'_>,
    ) -> Result<Checkout, GatewayError> {
        if let Some(conn) = self.h2.load_full()
            && !conn.sender.is_closed()
        {
            return Ok(Checkout::H2(conn));
        }
        let _setup = self.h2_connecting.lock().await;
        if let Some(conn) = self.h2.load_full()
            && !conn.sender.is_closed()
        {
            return Ok(Checkout::H2(conn));
        }
        // A closed connection gives its slot back as soon as nothing holds it any more.
        self.h2.store(None);
        let SlotOrIdle::Slot(slot) = self.connection_slot(limits, false).await? else {
            return Err(GatewayError::UpstreamClosed);
        };
        let stream = self.open(settings).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| GatewayError::UpstreamProtocol(e.to_string()))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        })
        .abort_handle();
        let conn = Arc::new(H2Conn {
            sender,
            task,
            _slot: slot,
        });
        self.h2.store(Some(conn.clone()));
        Ok(Checkout::H2(conn))
    }
}

impl H1Conn {
    pub fn sender(&mut self) -> &mut http1::SendRequest<ProxyBody> {
        &mut self.sender
    }
}

impl H2Conn {
    pub fn sender(&self) -> http2::SendRequest<ProxyBody> {
        self.sender.clone()
    }
}

enum SlotOrIdle {
    Slot(Slot),
    Idle(H1Conn),
}

/// Close one idle connection of any endpoint of the upstream.
fn evict_sibling_idle(siblings: &[Arc<Endpoint>]) -> bool {
    siblings.iter().any(|e| {
        e.data_plane_if_created::<Arc<ConnPool>>()
            .is_some_and(|pool| pool.evict_idle())
    })
}

impl ConnPool {
    /// A connected transport to the endpoint: TCP, then TLS when the upstream uses it.
    async fn open(&self, settings: &PoolSettings) -> Result<Transport, GatewayError> {
        let stream = connect(self.address, settings.connect_timeout).await?;
        let Some(tls) = &settings.tls else {
            return Ok(Transport::Plain(stream));
        };
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(self.host.clone()).map_err(|e| {
                GatewayError::Tls(format!("invalid server name {:?}: {e}", self.host))
            })?,
        };
        let handshake = tls.connector.connect(name, stream);
        match tokio::time::timeout(settings.connect_timeout, handshake).await {
            Ok(Ok(stream)) => Ok(Transport::Tls(Box::new(stream))),
            Ok(Err(e)) => Err(GatewayError::Tls(e.to_string())),
            Err(_) => Err(GatewayError::ConnectTimeout(settings.connect_timeout)),
        }
    }
}

/// A connection to an endpoint, with or without TLS.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Transport {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Transport {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

async fn connect(address: SocketAddr, timeout: Duration) -> Result<TcpStream, GatewayError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(GatewayError::connect(e)),
        Err(_) => return Err(GatewayError::ConnectTimeout(timeout)),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
