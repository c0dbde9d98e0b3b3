//! A client request body with limits enforced while it streams: the size limit (a chunked or
//! HTTP/2 body without a length is cut the moment it passes the limit, so the upstream gets an
//! aborted request, never a complete one) and the minimum rate (Apache mod_reqtimeout's
//! `MinRate`: the client may keep us waiting `window`, plus one second per `bytes_per_second`
//! bytes it sent — only time spent waiting for the client counts, not upstream back-pressure).
//! Bytes the WAF already read are replayed first.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use meshgate_config::security::BodyRate;
use tokio::time::{Instant, Sleep};

use crate::proxy::body::{BoxError, ProxyBody};

/// Why a streaming body was stopped; the error the body yields and the request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyRejection {
    /// RFC 9110 §15.5.14.
    #[error("request body too large")]
    TooLarge,
    /// RFC 9110 §15.5.9: the server gave up waiting for the body.
    #[error("request body too slow")]
    TooSlow,
}

/// Shared between the body (which trips it) and the request (which answers with it).
#[derive(Debug, Default)]
pub struct BodyVerdict(AtomicU8);

impl BodyVerdict {
    fn set(&self, r: BodyRejection) {
        let code = match r {
            BodyRejection::TooLarge => 1,
            BodyRejection::TooSlow => 2,
        };
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn get(&self) -> Option<BodyRejection> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(BodyRejection::TooLarge),
            2 => Some(BodyRejection::TooSlow),
            _ => None,
        }
    }
}

/// The limits a route puts on its request bodies, and what was already read.
#[derive(Debug)]
pub struct BodyGuard {
    pub max_size: u64,
    pub rate: Option<BodyRate>,
    /// Read (and inspected) before the route's action; sent first.
    pub prefix: Option<Bytes>,
    pub verdict: Arc<BodyVerdict>,
    /// Trailers that ended the body while the prefix was read.
    pub trailers: Option<http::HeaderMap>,
    /// Time already spent waiting for the client while reading the prefix.
    pub waited: Duration,
}

/// The guarded body.
pub struct GuardedBody {
    inner: ProxyBody,
    prefix: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
    max_size: u64,
    seen: u64,
    rate: Option<BodyRate>,
    waited: Duration,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    verdict: Arc<BodyVerdict>,
}

impl std::fmt::Debug for GuardedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedBody")
            .field("seen", &self.seen)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

impl GuardedBody {
    pub fn new(inner: ProxyBody, guard: BodyGuard) -> Self {
        let seen = guard.prefix.as_ref().map_or(0, |p| p.len() as u64);
        Self {
            inner,
            prefix: guard.prefix.filter(|p| !p.is_empty()),
            trailers: guard.trailers,
            max_size: guard.max_size,
            seen,
            rate: guard.rate,
            waited: guard.waited,
            waiting_since: None,
            timer: None,
            verdict: guard.verdict,
        }
    }

    fn reject(&mut self, r: BodyRejection) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.verdict.set(r);
        Poll::Ready(Some(Err(Box::new(r))))
    }

    /// While the client keeps us waiting: has it used up its allowance?
    fn poll_rate(&mut self, cx: &mut Context<'_>) -> Poll<BodyRejection> {
        let Some(rate) = self.rate else {
            return Poll::Pending;
        };
        let now = Instant::now();
        let since = *self.waiting_since.get_or_insert(now);
        let deadline = since + allowance(rate, self.seen).saturating_sub(self.waited);
        if now >= deadline {
            return Poll::Ready(BodyRejection::TooSlow);
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(BodyRejection::TooSlow)
    }
}

/// How long a client that sent `seen` bytes may keep us waiting in total.
pub fn allowance(rate: BodyRate, seen: u64) -> Duration {
    let per_byte = Duration::from_secs(1).as_nanos() as u64 / rate.bytes_per_second.max(1);
    rate.window + Duration::from_nanos(seen.saturating_mul(per_byte))
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => match this.poll_rate(cx) {
                Poll::Ready(r) => this.reject(r),
                Poll::Pending => Poll::Pending,
            },
            Poll::Ready(polled) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(frame)) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    this.seen += data.len() as u64;
                    if this.seen > this.max_size {
                        return this.reject(BodyRejection::TooLarge);
                    }
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.trailers.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + extra);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_grows_with_what_the_client_sent() {
        let rate = BodyRate {
            bytes_per_second: 1000,
            window: Duration::from_secs(10),
        };
        assert_eq!(allowance(rate, 0), Duration::from_secs(10));
        assert_eq!(allowance(rate, 5000), Duration::from_secs(15));
    }

    #[test]
    fn the_first_rejection_is_the_verdict() {
        let v = BodyVerdict::default();
        assert_eq!(v.get(), None);
        v.set(BodyRejection::TooSlow);
        v.set(BodyRejection::TooLarge);
        assert_eq!(v.get(), Some(BodyRejection::TooSlow));
    }
}
