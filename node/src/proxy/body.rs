//! The one body type of the data plane: a client body forwarded upstream, an upstream body
//! streamed back (returning its connection to the pool when it ends), or bytes we made.
//! Nothing is buffered whole.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::Lease;
use meshgate_actors::upstream::{InFlight, Slot};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body.
#[derive(Debug, Default)]
pub enum ProxyBody {
    #[default]
    Empty,
    Full(Option<Bytes>),
    /// Streamed from the peer as it arrives.
    Incoming(Incoming),
    /// A client body of unknown length, streamed upstream while its bytes are counted.
    Counted(Incoming, Arc<AtomicU64>),
    /// An upstream response; holds the connection until the last frame.
    Upstream(UpstreamBody),
    /// A client body under the route's size and rate limits (`filters::security::body`).
    Guarded(Box<crate::filters::security::body::GuardedBody>),
}

impl ProxyBody {
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        if data.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(data))
        }
    }
}

impl From<Incoming> for ProxyBody {
    fn from(body: Incoming) -> Self {
        ProxyBody::Incoming(body)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ProxyBody::Counted(body, seen) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    seen.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                polled.map_err(Into::into)
            }
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Guarded(body) => Pin::new(&mut **body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Incoming(body) | ProxyBody::Counted(body, _) => body.is_end_stream(),
            ProxyBody::Upstream(body) => body.inner.is_end_stream(),
            ProxyBody::Guarded(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Incoming(body) | ProxyBody::Counted(body, _) => body.size_hint(),
            ProxyBody::Upstream(body) => body.inner.size_hint(),
            ProxyBody::Guarded(body) => body.size_hint(),
        }
    }
}

/// What a response keeps counted until its body ends: the endpoint's in-flight mark and the
/// upstream's concurrency slots (the request's, and the retry's when a retry answered).
#[derive(Debug)]
pub struct Held {
    pub in_flight: InFlight,
    pub slots: [Option<Slot>; 2],
}

/// An upstream response body. When it ends cleanly its HTTP/1.1 connection goes back to the
/// pool; when it fails or is dropped early the connection is closed (never reused mid-body).
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    held: Option<Held>,
}

impl UpstreamBody {
    pub fn new(inner: Incoming, lease: Lease, held: Held) -> Self {
        Self {
            inner,
            lease: Some(lease),
            held: Some(held),
        }
    }

    fn finish(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
        self.held = None;
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => {
                // The upstream broke mid-body: drop (close) the connection, surface the error
                // so the client connection is aborted rather than silently truncated.
                this.lease = None;
                this.held = None;
            }
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body the server never polled because it was empty (HEAD, 204, 304, length 0)
        // still ended cleanly.
        if self.inner.is_end_stream() {
            self.finish();
        }
    }
}
