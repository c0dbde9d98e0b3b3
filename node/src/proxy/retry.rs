//! What a retry needs besides the policy: a request body that can be sent again (small ones
//! are buffered; big or streaming ones are sent once and only retried if they never left) and
//! that tells whether the client broke it, the classification of a failed try, and jittered
//! exponential back-off.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use meshgate_backoff::{Backoff, Jitter};
use meshgate_config::resilience::RetrySpec;
use tokio::time::Instant;

use super::body::{ClientBody, ProxyBody};
use crate::error::{ClientBodyFault, GatewayError, RetryOn};
use crate::filters::security::body::{BodyGuard, BodyVerdict, GuardedBody};

/// The client's request body, as the tries see it.
#[derive(Debug)]
pub struct RequestBody {
    send: Sendable,
    /// How the client broke a streamed body, if it did.
    watch: Option<BodyWatch>,
}

#[derive(Debug)]
enum Sendable {
    /// Nothing to send (GET, or a body that already ended).
    Empty,
    /// Small enough to keep: every try sends a copy.
    Buffered(Bytes),
    /// Streamed once; `None` after it was handed to a try that may have sent some of it.
    Stream(Option<ProxyBody>),
}

/// Where a streaming client body leaves the reason it failed: its framing or its connection
/// (noted by [`ClientBody`]), or the route's body limits (noted by the guard).
#[derive(Debug)]
struct BodyWatch {
    fault: Arc<OnceLock<ClientBodyFault>>,
    limits: Option<Arc<BodyVerdict>>,
}

impl BodyWatch {
    fn blame(&self) -> Option<GatewayError> {
        if let Some(r) = self.limits.as_ref().and_then(|v| v.get()) {
            return Some(GatewayError::ClientBody(r));
        }
        self.fault.get().map(|fault| GatewayError::from(*fault))
    }
}

impl RequestBody {
    /// Buffer the body when a try after a sent request is possible at all and the body is
    /// known to be at most `retry.max_body`; otherwise keep it streaming.
    pub async fn prepare(
        body: Incoming,
        retry: &RetrySpec,
        resend_possible: bool,
        deadline: Instant,
        count: Option<&Arc<AtomicU64>>,
        guard: Option<BodyGuard>,
    ) -> Result<Self, GatewayError> {
        if body.is_end_stream() && guard.is_none() {
            return Ok(Self::empty());
        }
        let watch = BodyWatch {
            fault: Arc::new(OnceLock::new()),
            limits: guard.as_ref().map(|g| g.verdict.clone()),
        };
        // A body of unknown length is counted as it streams (access log, metrics).
        let client = ClientBody::new(body, count.cloned(), watch.fault.clone());
        let streamed = ProxyBody::Client(client);
        // The route's size and rate limits (and bytes the WAF read ahead) wrap the client's body.
        let body = match guard {
            Some(guard) => ProxyBody::Guarded(Box::new(GuardedBody::new(streamed, guard))),
            None => streamed,
        };
        if body.is_end_stream() {
            return Ok(Self::empty());
        }
        let small = body
            .size_hint()
            .upper()
            .is_some_and(|n| n <= retry.max_body);
        if retry.attempts == 0 || !resend_possible || !small {
            return Ok(Self {
                send: Sendable::Stream(Some(body)),
                watch: Some(watch),
            });
        }
        let limit = usize::try_from(retry.max_body).unwrap_or(usize::MAX);
        // Boxed: only retried bodies are collected, and the collection's state would otherwise
        // be part of every request's future.
        let collected = Box::pin(tokio::time::timeout_at(
            deadline,
            Limited::new(body, limit).collect(),
        ))
        .await
        .map_err(|_| GatewayError::RequestTimeout)?
        // Longer than its declared length would be a framing error; the client's either way.
        .map_err(|_| watch.blame().unwrap_or(GatewayError::RequestBody))?;
        Ok(Self::buffered(collected.to_bytes()))
    }

    fn empty() -> Self {
        Self {
            send: Sendable::Empty,
            watch: None,
        }
    }

    fn buffered(bytes: Bytes) -> Self {
        Self {
            send: Sendable::Buffered(bytes),
            watch: None,
        }
    }

    /// The body for the next try; `None` when a stream was already given away.
    pub fn take(&mut self) -> Option<ProxyBody> {
        match &mut self.send {
            Sendable::Empty => Some(ProxyBody::Empty),
            Sendable::Buffered(bytes) => Some(ProxyBody::full(bytes.clone())),
            Sendable::Stream(stream) => stream.take(),
        }
    }

    /// Give back a body that was never sent (the connection was dead before writing).
    pub fn restore(&mut self, body: ProxyBody) {
        if let Sendable::Stream(slot @ None) = &mut self.send {
            *slot = Some(body);
        }
    }

    /// Whether another try can send the whole body again.
    pub fn can_resend(&self) -> bool {
        match &self.send {
            Sendable::Empty | Sendable::Buffered(_) => true,
            Sendable::Stream(stream) => stream.is_some(),
        }
    }

    /// The client's error when the streamed body failed under it (malformed, cut off, over a
    /// limit): then a failed try is the client's doing, whatever the upstream connection
    /// reported.
    pub fn client_fault(&self) -> Option<GatewayError> {
        self.watch.as_ref().and_then(BodyWatch::blame)
    }
}

/// How one try ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryFailure {
    /// Never reached the upstream: always safe to send again.
    Connect,
    /// Broke before response headers: the upstream may have acted on it.
    Reset,
    /// `per_try_timeout` ran out.
    Timeout,
    /// A status listed in `retry.statuses`.
    Status,
}

impl TryFailure {
    /// What the error says about retrying (see [`GatewayError::retry_on`]).
    pub fn of_error(e: &GatewayError) -> Option<Self> {
        Some(match e.retry_on()? {
            RetryOn::ConnectFailure => TryFailure::Connect,
            RetryOn::Reset => TryFailure::Reset,
            RetryOn::Timeout => TryFailure::Timeout,
        })
    }
}

/// Whether the policy sends the request again after `failure`. A request that may have
/// reached the upstream is re-sent only for idempotent methods (RFC 9110 §9.2.2) unless the
/// route opts in, and only with a body that can be sent whole again.
pub fn should_retry(
    retry: &RetrySpec,
    failure: TryFailure,
    method: &Method,
    body: &RequestBody,
) -> bool {
    if !body.can_resend() {
        return false;
    }
    let covered = match failure {
        TryFailure::Connect => return retry.on_connect_failure,
        TryFailure::Reset => retry.on_reset,
        TryFailure::Timeout => retry.on_timeout,
        TryFailure::Status => true,
    };
    covered && (retry.non_idempotent || method.is_idempotent())
}

pub fn is_retried_status(retry: &RetrySpec, status: StatusCode) -> bool {
    retry.attempts > 0 && retry.retries_status(status)
}

/// The wait before retry number `retry` (1-based): uniformly drawn below the exponential
/// ceiling (Envoy's fully jittered back-off), so that clients retrying together spread out.
pub fn backoff(retry: &RetrySpec, n: u32) -> Duration {
    Backoff::new(retry.backoff_base, retry.backoff_max)
        .with_jitter(Jitter::Full)
        .delay(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RequestBody {
        fn stream(body: ProxyBody) -> Self {
            Self {
                send: Sendable::Stream(Some(body)),
                watch: None,
            }
        }
    }

    #[test]
    fn connect_failures_are_retried_whatever_the_method() {
        let retry = RetrySpec::default();
        let body = RequestBody::stream(ProxyBody::Empty);
        assert!(should_retry(
            &retry,
            TryFailure::Connect,
            &Method::POST,
            &body
        ));
        assert!(!should_retry(
            &retry,
            TryFailure::Reset,
            &Method::POST,
            &body
        ));
        assert!(should_retry(&retry, TryFailure::Reset, &Method::PUT, &body));
        assert!(
            !should_retry(&retry, TryFailure::Timeout, &Method::GET, &body),
            "timeouts are not in the default policy"
        );
        let opted_in = RetrySpec {
            non_idempotent: true,
            ..RetrySpec::default()
        };
        assert!(should_retry(
            &opted_in,
            TryFailure::Reset,
            &Method::POST,
            &body
        ));
    }

    #[test]
    fn a_stream_that_left_is_never_sent_again() {
        let retry = RetrySpec::default();
        let mut body = RequestBody::stream(ProxyBody::Empty);
        let sent = body.take().unwrap();
        assert!(!should_retry(
            &retry,
            TryFailure::Connect,
            &Method::GET,
            &body
        ));
        body.restore(sent);
        assert!(body.can_resend());
        let mut buffered = RequestBody::buffered(Bytes::from_static(b"abc"));
        buffered.take();
        assert!(buffered.can_resend());
    }

    #[test]
    fn backoff_stays_below_its_ceiling() {
        let retry = RetrySpec::default();
        for n in 1..8 {
            for _ in 0..100 {
                assert!(backoff(&retry, n) <= retry.backoff_ceiling(n));
            }
        }
    }

    #[test]
    fn failures_are_classified_by_what_the_upstream_saw() {
        assert_eq!(
            TryFailure::of_error(&GatewayError::ConnectRefused),
            Some(TryFailure::Connect)
        );
        assert_eq!(
            TryFailure::of_error(&GatewayError::UpstreamProtocol("x".into())),
            Some(TryFailure::Reset)
        );
        assert_eq!(
            TryFailure::of_error(&GatewayError::UpstreamTimeout(Duration::from_secs(1))),
            Some(TryFailure::Timeout)
        );
        for not_retried in [
            GatewayError::NoEndpoint("u".into()),
            GatewayError::ClientAborted,
            GatewayError::RequestBody,
            GatewayError::LimitReached(meshgate_actors::upstream::LimitKind::Pending),
        ] {
            assert_eq!(TryFailure::of_error(&not_retried), None, "{not_retried:?}");
        }
    }
}
