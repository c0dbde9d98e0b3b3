//! The one body type of the data plane: a client body forwarded upstream (remembering how it
//! failed, if it did), an upstream body streamed back (returning its connection to the pool
//! when it ends), or bytes we made. Nothing is buffered whole.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::Lease;
use crate::error::{ClientBodyFault, client_body_error};
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
    /// The client's request body, streamed upstream.
    Client(ClientBody),
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
            ProxyBody::Client(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Guarded(body) => Pin::new(&mut **body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Incoming(body) => body.is_end_stream(),
            ProxyBody::Client(body) => body.is_end_stream(),
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
            ProxyBody::Incoming(body) => body.size_hint(),
            ProxyBody::Client(body) => body.size_hint(),
            ProxyBody::Upstream(body) => body.inner.size_hint(),
            ProxyBody::Guarded(body) => body.size_hint(),
        }
    }
}

/// The client's request body on its way upstream; a body of unknown length is counted as it
/// streams (access log, metrics). Every error it yields is the client's doing. The first one
/// is classified and kept where the request reads it after a failed try — an HTTP/2 upstream
/// connection does not pass a body's error on, it only resets the stream — and is yielded as
/// a [`ClientBodyError`], so that the HTTP/1.1 client's error chain says who failed too.
#[derive(Debug)]
pub struct ClientBody {
    inner: Incoming,
    counted: Option<Arc<AtomicU64>>,
    fault: Arc<OnceLock<ClientBodyFault>>,
}

impl ClientBody {
    pub fn new(
        inner: Incoming,
        counted: Option<Arc<AtomicU64>>,
        fault: Arc<OnceLock<ClientBodyFault>>,
    ) -> Self {
        Self {
            inner,
            counted,
            fault,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(counter), Some(data)) = (&this.counted, frame.data_ref()) {
                    counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let fault = *this.fault.get_or_init(|| client_body_error(&e));
                Poll::Ready(Some(Err(Box::new(ClientBodyError { fault, source: e }))))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error a [`ClientBody`] yields: the client's body failed, and how.
#[derive(Debug, thiserror::Error)]
#[error("client request body failed: {source}")]
pub struct ClientBodyError {
    fault: ClientBodyFault,
    source: hyper::Error,
}

impl ClientBodyError {
    pub fn fault(&self) -> ClientBodyFault {
        self.fault
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
