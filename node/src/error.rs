//! Errors on the request path, classified Pingora-style (who failed, may it be retried), and
//! the one JSON error body every gateway-made error response uses. The status, the retry
//! decision, the circuit breaker and outlier detection all read this one classification.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use meshgate_actors::upstream::LimitKind;

use crate::filters::security::body::BodyRejection;
use crate::proxy::body::ProxyBody;

/// Who caused a failure. Only the upstream's failures count against it (circuit breaker,
/// outlier detection); the client's and our own never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culprit {
    /// A bad, cut-off or too slow request: 4xx.
    Client,
    /// Our own bounds (limits, open circuit, no endpoint): 503.
    Gateway,
    /// The upstream refused, broke, hung or answered garbage: 502/504.
    Upstream,
}

/// Which `retry.on` condition covers a failed try, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// The request never left: safe to send again whatever the method.
    ConnectFailure,
    /// The connection broke before response headers: the upstream may have acted on it.
    Reset,
    /// The try ran past `per_try_timeout`.
    Timeout,
}

/// Everything that can end a request with a gateway-made response.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matched")]
    NoRoute,
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("no endpoint available for upstream {0}")]
    NoEndpoint(String),
    #[error("upstream refused the connection")]
    ConnectRefused,
    #[error("upstream connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("upstream connect failed: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake with the upstream failed (wrong certificate, wrong SPIFFE id, …).
    #[error("upstream TLS handshake failed: {0}")]
    Tls(String),
    #[error("upstream closed the connection before responding")]
    UpstreamClosed,
    #[error("upstream timed out after {0:?}")]
    UpstreamTimeout(Duration),
    #[error("upstream sent an invalid response: {0}")]
    UpstreamProtocol(String),
    #[error("upstream upgrade failed: {0}")]
    Upgrade(String),
    #[error("circuit breaker open; retry after {retry_after:?}")]
    CircuitOpen { retry_after: Duration },
    #[error("upstream {0:?} limit reached")]
    LimitReached(LimitKind),
    /// The client's body was malformed (a bad chunk size, a chunk without its CRLF, an
    /// HTTP/2 body longer or shorter than its content-length).
    #[error("request body could not be read")]
    RequestBody,
    /// The client stopped sending its body: closed or reset the connection, or reset the
    /// HTTP/2 stream, mid-body.
    #[error("client closed the request before its body ended")]
    ClientAborted,
    #[error("request body not received in time")]
    RequestTimeout,
    /// The client's body broke a security limit while streaming (413 or 408).
    #[error("{0}")]
    ClientBody(crate::filters::security::body::BodyRejection),
}

impl GatewayError {
    pub fn connect(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            GatewayError::ConnectRefused
        } else {
            GatewayError::Connect(e)
        }
    }

    /// Classify a hyper client error seen while waiting for response headers. A request body
    /// that failed under the client (see [`client_body_error`]) is the client's fault, however
    /// the upstream connection reported it.
    pub fn from_upstream(e: &hyper::Error) -> Self {
        if let Some(r) = body_rejection(e) {
            GatewayError::ClientBody(r)
        } else if let Some(fault) = client_body_fault(e) {
            fault.into()
        } else if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
            GatewayError::UpstreamClosed
        } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            GatewayError::UpstreamProtocol(e.to_string())
        } else {
            GatewayError::UpstreamClosed
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestBody => StatusCode::BAD_REQUEST,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::ClientAborted => CLIENT_CLOSED_REQUEST,
            GatewayError::ClientBody(BodyRejection::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::ClientBody(BodyRejection::TooSlow) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::NoEndpoint(_)
            | GatewayError::CircuitOpen { .. }
            | GatewayError::LimitReached(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::ConnectRefused
            | GatewayError::Connect(_)
            | GatewayError::Tls(_)
            | GatewayError::UpstreamClosed
            | GatewayError::UpstreamProtocol(_)
            | GatewayError::Upgrade(_) => StatusCode::BAD_GATEWAY,
            GatewayError::ConnectTimeout(_) | GatewayError::UpstreamTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    pub fn culprit(&self) -> Culprit {
        match self {
            GatewayError::NoRoute
            | GatewayError::BadRequest(_)
            | GatewayError::PayloadTooLarge
            | GatewayError::RequestBody
            | GatewayError::ClientAborted
            | GatewayError::RequestTimeout
            | GatewayError::ClientBody(_) => Culprit::Client,
            GatewayError::NoEndpoint(_)
            | GatewayError::CircuitOpen { .. }
            | GatewayError::LimitReached(_) => Culprit::Gateway,
            GatewayError::ConnectRefused
            | GatewayError::ConnectTimeout(_)
            | GatewayError::Connect(_)
            | GatewayError::Tls(_)
            | GatewayError::UpstreamClosed
            | GatewayError::UpstreamTimeout(_)
            | GatewayError::UpstreamProtocol(_)
            | GatewayError::Upgrade(_) => Culprit::Upstream,
        }
    }

    /// Which retry condition covers this failure; `None` = sending again cannot help (the
    /// client's fault, our own bound, or an upgrade refused).
    pub fn retry_on(&self) -> Option<RetryOn> {
        if self.culprit() != Culprit::Upstream {
            return None;
        }
        if self.never_reached_upstream() {
            Some(RetryOn::ConnectFailure)
        } else if self.is_reset() {
            Some(RetryOn::Reset)
        } else if matches!(self, GatewayError::UpstreamTimeout(_)) {
            Some(RetryOn::Timeout)
        } else {
            None
        }
    }

    /// True when no byte of the request can have reached the upstream application, so sending
    /// it again elsewhere is safe whatever the method.
    pub fn never_reached_upstream(&self) -> bool {
        matches!(
            self,
            GatewayError::ConnectRefused
                | GatewayError::ConnectTimeout(_)
                | GatewayError::Connect(_)
                | GatewayError::Tls(_)
                | GatewayError::NoEndpoint(_)
        )
    }

    /// The connection broke or the upstream answered with something that is not HTTP, before
    /// any response header: the request may or may not have been processed.
    pub fn is_reset(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamClosed | GatewayError::UpstreamProtocol(_)
        )
    }

    /// The message clients see (no internal detail such as addresses).
    pub fn public_message(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no route matched",
            GatewayError::BadRequest(reason) => reason,
            GatewayError::PayloadTooLarge => "request body too large",
            GatewayError::NoEndpoint(_) => "no upstream endpoint available",
            GatewayError::ConnectRefused => "upstream refused the connection",
            GatewayError::ConnectTimeout(_) => "upstream connect timed out",
            GatewayError::Connect(_) => "upstream connect failed",
            GatewayError::Tls(_) => "upstream TLS handshake failed",
            GatewayError::UpstreamClosed => "upstream closed the connection",
            GatewayError::UpstreamTimeout(_) => "upstream timed out",
            GatewayError::UpstreamProtocol(_) => "upstream sent an invalid response",
            GatewayError::Upgrade(_) => "upstream refused the protocol upgrade",
            GatewayError::CircuitOpen { .. } => "upstream circuit breaker is open",
            GatewayError::LimitReached(LimitKind::Connection | LimitKind::Pending) => {
                "upstream connection limit reached"
            }
            GatewayError::LimitReached(LimitKind::Request | LimitKind::Retry) => {
                "upstream concurrency limit reached"
            }
            GatewayError::RequestBody => "request body could not be read",
            GatewayError::ClientAborted => "client closed the request",
            GatewayError::RequestTimeout => "request body not received in time",
            GatewayError::ClientBody(BodyRejection::TooLarge) => "request body too large",
            GatewayError::ClientBody(BodyRejection::TooSlow) => "request body too slow",
        }
    }

    pub fn to_response(&self, request_id: &HeaderValue) -> Response<ProxyBody> {
        let mut response = error_response(self.status(), self.public_message(), request_id);
        if let GatewayError::CircuitOpen { retry_after } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_value(*retry_after));
        }
        response
    }
}

/// nginx's "client closed request": logged for a request whose client went away mid-body
/// (there is no standard code; the client rarely reads the answer).
pub const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// How a client's request body failed while we read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBodyFault {
    /// Bytes that are not a valid body: bad chunk framing, an HTTP/2 length mismatch.
    Malformed,
    /// The client went away mid-body (EOF, reset connection, reset HTTP/2 stream).
    Aborted,
}

impl From<ClientBodyFault> for GatewayError {
    fn from(fault: ClientBodyFault) -> Self {
        match fault {
            ClientBodyFault::Malformed => GatewayError::RequestBody,
            ClientBodyFault::Aborted => GatewayError::ClientAborted,
        }
    }
}

/// Classify an error that the client's request body stream yielded: our server side's view
/// of the client connection, so every such error is the client's doing. An unrecognised one
/// counts as malformed.
pub fn client_body_error(e: &(dyn std::error::Error + 'static)) -> ClientBodyFault {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_fault(io);
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if let Some(io) = h2.get_io() {
                return io_fault(io);
            }
            // RFC 9113 §8.1.1: a content-length that disagrees with the DATA frames is
            // malformed, detected (and reset) by our side; a reset or GOAWAY the client sent
            // means it gave up on the request.
            return if h2.is_remote() {
                ClientBodyFault::Aborted
            } else {
                ClientBodyFault::Malformed
            };
        }
        cause = err.source();
    }
    ClientBodyFault::Malformed
}

fn io_fault(e: &std::io::Error) -> ClientBodyFault {
    use std::io::ErrorKind;
    match e.kind() {
        // hyper's chunked and length decoders report a bad framing as invalid input or data
        // (RFC 9112 §7.1), and a connection that ended mid-body as an unexpected EOF.
        ErrorKind::InvalidInput | ErrorKind::InvalidData => ClientBodyFault::Malformed,
        _ => ClientBodyFault::Aborted,
    }
}

/// The client-side fault behind a failed upstream call, when the call failed because the
/// request body (polled by the upstream client) failed under the client: hyper wraps the
/// body's error in its own, so the chain is walked, as [`body_rejection`] does.
fn client_body_fault(e: &hyper::Error) -> Option<ClientBodyFault> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(fault) = err.downcast_ref::<crate::proxy::body::ClientBodyError>() {
            return Some(fault.fault());
        }
        cause = err.source();
    }
    None
}

/// The security limit a request body broke, when that is why a body-carrying call failed.
pub fn body_rejection(e: &(dyn std::error::Error + 'static)) -> Option<BodyRejection> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(r) = err.downcast_ref::<BodyRejection>() {
            return Some(*r);
        }
        cause = err.source();
    }
    None
}

/// `Retry-After` in whole seconds, rounded up, at least 1 (RFC 9110 §10.2.3).
pub fn retry_after_value(wait: Duration) -> HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

/// The standard error body: `{"error":{"code":404,"message":"…","request_id":"…"}}`.
pub fn error_body(status: StatusCode, message: &str, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "request_id": request_id,
        }
    });
    let mut text = body.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// A gateway-made error response in the standard shape.
pub fn error_response(
    status: StatusCode,
    message: &str,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let id = request_id.to_str().unwrap_or("");
    let body = error_body(status, message, id);
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(crate::server::request_id::HEADER, request_id.clone());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_standard_shape() {
        let body = error_body(StatusCode::NOT_FOUND, "no route matched", "abc");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": 404, "message": "no route matched", "request_id": "abc"}})
        );
    }

    #[test]
    fn statuses_follow_the_culprit() {
        assert_eq!(GatewayError::ConnectRefused.status(), 502);
        assert_eq!(
            GatewayError::UpstreamTimeout(Duration::from_secs(1)).status(),
            504
        );
        assert_eq!(GatewayError::NoEndpoint("u".into()).status(), 503);
        assert!(GatewayError::ConnectRefused.never_reached_upstream());
        assert!(!GatewayError::UpstreamClosed.never_reached_upstream());
        assert_eq!(
            GatewayError::CircuitOpen {
                retry_after: Duration::from_secs(1)
            }
            .status(),
            503
        );
        assert_eq!(GatewayError::LimitReached(LimitKind::Request).status(), 503);
    }

    #[test]
    fn the_status_class_follows_who_failed() {
        let all = [
            GatewayError::NoRoute,
            GatewayError::BadRequest("x"),
            GatewayError::PayloadTooLarge,
            GatewayError::RequestBody,
            GatewayError::ClientAborted,
            GatewayError::RequestTimeout,
            GatewayError::ClientBody(BodyRejection::TooSlow),
            GatewayError::NoEndpoint("u".into()),
            GatewayError::CircuitOpen {
                retry_after: Duration::from_secs(1),
            },
            GatewayError::LimitReached(LimitKind::Pending),
            GatewayError::ConnectRefused,
            GatewayError::ConnectTimeout(Duration::from_secs(1)),
            GatewayError::Tls("x".into()),
            GatewayError::UpstreamClosed,
            GatewayError::UpstreamTimeout(Duration::from_secs(1)),
            GatewayError::UpstreamProtocol("x".into()),
            GatewayError::Upgrade("x".into()),
        ];
        for e in all {
            let status = e.status();
            match e.culprit() {
                Culprit::Client => assert!(status.is_client_error(), "{e:?}"),
                Culprit::Gateway => assert_eq!(status, 503, "{e:?}"),
                Culprit::Upstream => assert!(status.is_server_error(), "{e:?}"),
            }
            // Only the upstream's failures can be helped by sending again.
            assert_eq!(
                e.retry_on().is_some(),
                e.culprit() == Culprit::Upstream && !matches!(e, GatewayError::Upgrade(_)),
                "{e:?}"
            );
        }
        assert_eq!(GatewayError::ClientAborted.status(), 499);
    }

    #[test]
    fn a_client_body_error_is_malformed_or_aborted() {
        use std::io::{Error, ErrorKind};
        let fault = |kind, what: &str| client_body_error(&Error::new(kind, what.to_string()));
        assert_eq!(
            fault(ErrorKind::InvalidInput, "Invalid chunk size line"),
            ClientBodyFault::Malformed
        );
        assert_eq!(
            fault(ErrorKind::InvalidData, "invalid chunk extension"),
            ClientBodyFault::Malformed
        );
        assert_eq!(
            fault(
                ErrorKind::UnexpectedEof,
                "end of file before message length reached"
            ),
            ClientBodyFault::Aborted
        );
        assert_eq!(
            fault(ErrorKind::ConnectionReset, "reset"),
            ClientBodyFault::Aborted
        );
        // A reason our HTTP/2 side raised itself (a length mismatch it detected); the client's
        // own RST_STREAM is covered end to end (`resilience/client_faults.rs`).
        let detected = h2::Error::from(h2::Reason::PROTOCOL_ERROR);
        assert_eq!(client_body_error(&detected), ClientBodyFault::Malformed);
        assert_eq!(
            GatewayError::from(ClientBodyFault::Aborted).status(),
            CLIENT_CLOSED_REQUEST
        );
    }

    #[test]
    fn an_open_circuit_says_when_to_come_back() {
        let r = GatewayError::CircuitOpen {
            retry_after: Duration::from_millis(1500),
        }
        .to_response(&HeaderValue::from_static("id"));
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(retry_after_value(Duration::from_millis(10)), "1");
        assert_eq!(retry_after_value(Duration::from_secs(30)), "30");
    }
}
