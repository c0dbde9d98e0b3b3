//! What happens to a proxy connection between `accept` and its first HTTP or TLS byte: the
//! PROXY protocol header when the listener expects one (its source becomes the client), then
//! the per-client-IP connection limit — a connection over it is closed at once, unread.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use meshgate_config::security::ListenerSecurity;
use proxy_header::io::ProxiedStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::conn_limit::{ConnectionPermit, PerIpConnections};
use crate::filters::security::SecurityStats;

/// A client connection's byte stream, after any PROXY header.
#[derive(Debug)]
pub enum ClientStream {
    Plain(TcpStream),
    Proxied(Box<ProxiedStream<TcpStream>>),
}

/// An admitted connection: its stream, its client and its place in the per-IP counts.
#[derive(Debug)]
pub struct Admitted {
    pub stream: ClientStream,
    pub peer: SocketAddr,
    pub permit: Option<ConnectionPermit>,
}

/// Everything `admit` needs besides the connection.
pub struct Gate<'a> {
    pub listener: &'a str,
    pub security: Option<&'a ListenerSecurity>,
    pub header_timeout: Duration,
    pub per_ip: &'a Arc<PerIpConnections>,
    pub stats: &'a SecurityStats,
}

/// `None`: the connection was refused (and is closed when dropped).
pub async fn admit(stream: TcpStream, peer: SocketAddr, gate: Gate<'_>) -> Option<Admitted> {
    let Some(security) = gate.security else {
        return Some(Admitted {
            stream: ClientStream::Plain(stream),
            peer,
            permit: None,
        });
    };
    let (stream, peer) = if security.proxy_protocol {
        match super::proxy_protocol::accept(stream, gate.header_timeout).await {
            Ok((stream, source)) => (
                ClientStream::Proxied(Box::new(stream)),
                source.unwrap_or(peer),
            ),
            Err(e) => {
                SecurityStats::bump_relaxed(&gate.stats.proxy_protocol_failures);
                tracing::debug!(listener = gate.listener, %peer, error = %e, "connection closed");
                return None;
            }
        }
    } else {
        (ClientStream::Plain(stream), peer)
    };
    let policy = &security.policy;
    let limit = if policy.enabled {
        policy.max_connections_per_ip
    } else {
        0
    };
    match gate.per_ip.try_acquire(gate.listener, peer.ip(), limit) {
        Ok(permit) => Some(Admitted {
            stream,
            peer,
            permit,
        }),
        Err(super::conn_limit::OverLimit) => {
            SecurityStats::bump_relaxed(&gate.stats.connections_refused);
            tracing::debug!(listener = gate.listener, client = %peer.ip(), limit, "per-IP connection limit reached; connection closed");
            None
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Proxied(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Proxied(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Proxied(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Proxied(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Proxied(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Proxied(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
